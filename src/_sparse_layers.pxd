# Pruned layers: products with a sparse weight matrix W (n_in x n_out).
#
# theta holds a pruned layer's surviving weights in CSC order (column o =
# output unit o); the layout also keeps CSR tables (row i = input unit i)
# with each CSR position's place in theta. Forward Z = A W, backward
# delta_prev = delta W^T and the weight gradient at the stored (i, o) only
# (an SDDMM, dW[p] = A[:, i] . delta[:, o]) all cost O(nnz * batch), not
# O(n_in * n_out * batch).
#
# Batch layouts. Activations and deltas are row-major batch x units, so the
# values one stored weight meets are strided. The kernels repack a batch:
#  - tiles of TILE batch rows (128 bytes: 16 doubles, 32 floats), unit-major
#    inside a tile, P[k][i][t] = A[k*TILE + t, i]: a stored weight then
#    multiplies one contiguous row of each of two tiles into 2 * TILE
#    register accumulators.
#    The forward pass gathers over W's columns from the input tiles (Z = A W,
#    one output unit at a time), the backward pass over W's rows from the
#    delta tiles (delta W^T, one input unit at a time).
#  - whole transposed rows, At[i][r] = A[r, i] (batch padded with zeros to
#    whole tiles): the SDDMM's dot products then run over long contiguous
#    rows, which the hardware prefetcher streams.
# (Measured on the 784x300 LeNet layer at 5-10% density: gathers from tiles
# beat gathers from whole rows by ~1.5x, whole-row dots beat per-tile dots
# by ~1.3x; scattering into an output tile held in L1 was slower than both.)
# Batches below SMALL_B rows skip the packing (it would pad them to a whole
# tile) and read the activations in place.
#
# Threads own disjoint outputs: (tile pair, output block) items in the
# forward pass, (tile pair, input block) items in delta W^T, columns in the SDDMM; each
# value is summed in a fixed order, so results do not depend on the thread
# count.
#
# Layers denser than the measured crossover (fastmlp/_network.py
# SPARSE_KERNEL_MAX_DENSITY) are scattered into a dense buffer and use gemm
# (mode SP_GEMM); the helpers for that are at the end.
#
# Workspace (the caller's, see Layout.work_len): first, per layer, either
# the CSR-ordered copy of its weights (SP_KERNEL, nnz) or its dense weights
# and gradient (SP_GEMM, 2 * n_in * n_out; zeros when allocated); then,
# 64-byte aligned, one batch's packed activations and deltas.
from cython cimport floating
from cython.parallel cimport prange
from libc.stdint cimport uintptr_t
from libc.string cimport memcpy, memset

cdef enum:
    SP_DENSE = 0        # dense W: gemm (not handled here)
    SP_KERNEL = 1       # sparse W: the kernels below
    SP_GEMM = 2         # sparse W, dense enough that gemm on a copy is faster
    TILE_D = 16         # batch rows per tile, double
    TILE_F = 32         # batch rows per tile, float
    TILE_MAX = 32       # (fastmlp/_network.py SP_TILE)
    SMALL_B = 4         # below this many rows, no packing
    UNIT_BLOCK = 32     # units per work item of the gathers
    SP_PAR_MIN = 65536  # multiply-adds below which threads do not pay
    ALIGN_SLACK = 16    # spare workspace elements for aligning the tiles


cdef struct SpNet:
    const int* mode          # per layer: SP_DENSE, SP_KERNEL or SP_GEMM
    const long long* off     # per layer, 2 each: offset in pool, offset in work
    const int* pool          # the index tables, see sp_tables
    void* work               # per-call scratch of the entry point (or NULL)
    Py_ssize_t work_at       # where the batch-sized part of work starts


cdef struct SpTables:
    const int* col_ptr       # CSC: n_out + 1 column pointers
    const int* row_idx       # CSC: row (input) of each stored weight
    const int* row_ptr       # CSR: n_in + 1 row pointers
    const int* col_idx       # CSR: column (output) of each stored weight
    const int* perm          # CSR position -> CSC position (theta order)


cdef inline SpTables sp_tables(const SpNet* sp, int l, Py_ssize_t n_in,
                               Py_ssize_t n_out) noexcept nogil:
    cdef SpTables t
    cdef const int* p = sp.pool + sp.off[2 * l]
    cdef Py_ssize_t nnz = p[n_out]
    t.col_ptr = p
    t.row_idx = p + n_out + 1
    t.row_ptr = t.row_idx + nnz
    t.col_idx = t.row_ptr + n_in + 1
    t.perm = t.col_idx + nnz
    return t


cdef inline Py_ssize_t tile_of(const floating* like) noexcept nogil:
    """Batch rows per tile for this type (128 bytes)."""
    return TILE_F if floating is float else TILE_D


cdef inline floating* packed_area(const SpNet* sp,
                                  const floating* like) noexcept nogil:
    """Start of the packed batch, aligned to 64 bytes so that tile rows
    start on cache lines (the workspace has ALIGN_SLACK spare elements)."""
    cdef uintptr_t a = <uintptr_t>(<floating*>sp.work + sp.work_at)
    return <floating*>((a + 63) & ~(<uintptr_t>63))


# ---------------------------------------------------------------- packing
# Both layouts put element (batch row r, unit i) at
#   (r // T) * tile_step + i * unit_step + r % T:
# tiles: tile_step = n * T, unit_step = T; whole rows: tile_step = T,
# unit_step = padded batch length.
cdef inline void pack_rows(const floating* A, Py_ssize_t lda, Py_ssize_t B,
                           Py_ssize_t n, floating* P, Py_ssize_t tile_step,
                           Py_ssize_t unit_step, Py_ssize_t k) noexcept nogil:
    """Batch rows of tile k of row-major A into P; rows past B are zero."""
    cdef Py_ssize_t T = tile_of(A)
    cdef Py_ssize_t t, i, r0 = k * T
    cdef Py_ssize_t rows = min(T, B - r0)
    cdef floating* out = P + k * tile_step
    cdef const floating* a = A + r0 * lda
    if rows < T:
        for i in range(n):
            memset(out + i * unit_step, 0, T * sizeof(floating))
        for t in range(rows):
            for i in range(n):
                out[i * unit_step + t] = a[t * lda + i]
        return
    # Sequential writes; the T row streams are read in step.
    for i in range(n):
        for t in range(T):
            out[i * unit_step + t] = a[t * lda + i]


cdef inline void pack_dense(const floating* A, Py_ssize_t lda, Py_ssize_t B,
                            Py_ssize_t n, floating* P, bint whole_rows,
                            int n_threads) noexcept nogil:
    cdef Py_ssize_t T = tile_of(A)
    cdef Py_ssize_t n_tiles = (B + T - 1) // T, k
    cdef Py_ssize_t tile_step = T if whole_rows else n * T
    cdef Py_ssize_t unit_step = n_tiles * T if whole_rows else T
    if n_threads > 1 and n_tiles > 1 and B * n >= SP_PAR_MIN:
        for k in prange(n_tiles, schedule='static', num_threads=n_threads):
            pack_rows(A, lda, B, n, P, tile_step, unit_step, k)
    else:
        for k in range(n_tiles):
            pack_rows(A, lda, B, n, P, tile_step, unit_step, k)


cdef inline void pack_csr(const void* data_, const int* indices,
                          const int* indptr, const long long* rows,
                          Py_ssize_t B, Py_ssize_t n, floating* P,
                          bint whole_rows) noexcept nogil:
    """pack_dense for the rows `rows` of a CSR matrix."""
    cdef const floating* data = <const floating*>data_
    cdef Py_ssize_t T = tile_of(P)
    cdef Py_ssize_t n_tiles = (B + T - 1) // T, r, p
    cdef Py_ssize_t tile_step = T if whole_rows else n * T
    cdef Py_ssize_t unit_step = n_tiles * T if whole_rows else T
    cdef floating* out
    memset(P, 0, n_tiles * n * T * sizeof(floating))
    for r in range(B):
        out = P + (r // T) * tile_step + r % T
        for p in range(indptr[rows[r]], indptr[rows[r] + 1]):
            out[<Py_ssize_t>indices[p] * unit_step] = data[p]


cdef inline void rows_to_tiles(const floating* At, Py_ssize_t n,
                               Py_ssize_t n_tiles, floating* P,
                               int n_threads) noexcept nogil:
    """The tiled layout of whole rows At (n x n_tiles * T)."""
    cdef Py_ssize_t T = tile_of(At), k, i
    if n_threads > 1 and n_tiles > 1 and n * n_tiles * T >= SP_PAR_MIN:
        for k in prange(n_tiles, schedule='static', num_threads=n_threads):
            for i in range(n):
                memcpy(P + (k * n + i) * T, At + i * n_tiles * T + k * T,
                       T * sizeof(floating))
    else:
        for k in range(n_tiles):
            for i in range(n):
                memcpy(P + (k * n + i) * T, At + i * n_tiles * T + k * T,
                       T * sizeof(floating))


# ---------------------------------------------------------- inner kernels
# C with GCC/Clang vector extensions: written as Cython loops, GCC
# vectorises the gathers across stored weights (16 reductions fed by
# gathers, as -fassociative-math allows) rather than across a tile's rows.
# One vector lane is one batch row, the accumulators stay in registers, and
# upcoming tile rows are prefetched (their addresses are known from the
# indices; no hardware prefetcher can guess them). On x86 an AVX2+FMA
# variant is picked at run time when the CPU has it (the build targets the
# baseline ISA; FASTMLP_NO_AVX2=1 in the environment forces the baseline
# variant); compilers without vector extensions (or a build with
# -DFASTMLP_PLAIN_C) get the same sums as plain loops.
cdef extern from *:
    """
    #include <stdlib.h>
    #include <string.h>
    #define FM_PREFETCH_AHEAD 8
    #if defined(__GNUC__) && !defined(FASTMLP_PLAIN_C)
    typedef double fm_d2 __attribute__((vector_size(16)));
    typedef double fm_d4 __attribute__((vector_size(32)));
    typedef float fm_f4 __attribute__((vector_size(16)));
    typedef float fm_f8 __attribute__((vector_size(32)));
    #define FM_LD(v, p) memcpy(&(v), (p), sizeof(v))
    #define FM_ST(p, v) memcpy((p), &(v), sizeof(v))

    /* z[t * ldo + o] = sum_{p in ptr[o]:ptr[o+1]} w[p] X[idx[p] * TL + t] for
       o0 <= o < o1 and t < rows, where X is one tile (rows of TL = NV
       vectors V of L lanes); with Y (the next tile) not NULL, the same for
       Y into z + TL * ldo (rows2 rows), sharing the index and weight loads
       and giving the add chains two independent sets of accumulators. */
    #define FM_DEFINE_GATHER(NAME, T, V, TL, NV, ATTR) \
    ATTR static void NAME(const T* w, const int* ptr, const int* idx, \
            Py_ssize_t o0, Py_ssize_t o1, const T* X, const T* Y, T* z, \
            Py_ssize_t ldo, Py_ssize_t rows, Py_ssize_t rows2) { \
        const Py_ssize_t L = TL / NV; \
        const V zero = {0}; \
        for (Py_ssize_t o = o0; o < o1; o++) { \
            V a[NV], b[NV], x; \
            T acc[TL]; \
            Py_ssize_t p = ptr[o], p1 = ptr[o + 1]; \
            for (int j = 0; j < NV; j++) { a[j] = zero; b[j] = zero; } \
            if (Y) { \
                for (; p < p1; p++) { \
                    Py_ssize_t ahead = p + FM_PREFETCH_AHEAD < p1 ? p + FM_PREFETCH_AHEAD : p1 - 1; \
                    Py_ssize_t pf = (Py_ssize_t)idx[ahead] * TL; \
                    __builtin_prefetch(X + pf); __builtin_prefetch(X + pf + TL - 1); \
                    __builtin_prefetch(Y + pf); __builtin_prefetch(Y + pf + TL - 1); \
                    T v = w[p]; \
                    Py_ssize_t off = (Py_ssize_t)idx[p] * TL; \
                    for (int j = 0; j < NV; j++) { \
                        FM_LD(x, X + off + j * L); a[j] += v * x; \
                        FM_LD(x, Y + off + j * L); b[j] += v * x; \
                    } \
                } \
            } else { \
                for (; p + 1 < p1; p += 2) { \
                    Py_ssize_t ahead = p + FM_PREFETCH_AHEAD < p1 ? p + FM_PREFETCH_AHEAD : p1 - 1; \
                    Py_ssize_t pf = (Py_ssize_t)idx[ahead] * TL; \
                    __builtin_prefetch(X + pf); __builtin_prefetch(X + pf + TL - 1); \
                    T v = w[p], u = w[p + 1]; \
                    Py_ssize_t off = (Py_ssize_t)idx[p] * TL, off2 = (Py_ssize_t)idx[p + 1] * TL; \
                    for (int j = 0; j < NV; j++) { \
                        FM_LD(x, X + off + j * L); a[j] += v * x; \
                        FM_LD(x, X + off2 + j * L); b[j] += u * x; \
                    } \
                } \
                if (p < p1) { \
                    T v = w[p]; \
                    Py_ssize_t off = (Py_ssize_t)idx[p] * TL; \
                    for (int j = 0; j < NV; j++) { FM_LD(x, X + off + j * L); a[j] += v * x; } \
                } \
                for (int j = 0; j < NV; j++) { a[j] += b[j]; b[j] = zero; } \
            } \
            for (int j = 0; j < NV; j++) FM_ST(acc + j * L, a[j]); \
            for (Py_ssize_t t = 0; t < rows; t++) z[t * ldo + o] = acc[t]; \
            if (Y) { \
                for (int j = 0; j < NV; j++) FM_ST(acc + j * L, b[j]); \
                for (Py_ssize_t t = 0; t < rows2; t++) z[(TL + t) * ldo + o] = acc[t]; \
            } \
        } \
    }

    /* g[p] (+)= At[row[p]] . d over n values (a multiple of 4 L), for
       p0 <= p < p1: whole-row dot products, four vectors at a time. */
    #define FM_DEFINE_DOTS(NAME, T, V, ATTR) \
    ATTR static void NAME(const T* At, const T* d, const int* row, \
            Py_ssize_t p0, Py_ssize_t p1, Py_ssize_t n, T* g, int accumulate) { \
        const Py_ssize_t L = sizeof(V) / sizeof(T); \
        const V zero = {0}; \
        for (Py_ssize_t p = p0; p < p1; p++) { \
            const T* a = At + (Py_ssize_t)row[p] * n; \
            V s0 = zero, s1 = zero, s2 = zero, s3 = zero, x, y; \
            T lanes[sizeof(V) / sizeof(T)], total = 0; \
            for (Py_ssize_t t = 0; t < n; t += 4 * L) { \
                FM_LD(x, a + t); FM_LD(y, d + t); s0 += x * y; \
                FM_LD(x, a + t + L); FM_LD(y, d + t + L); s1 += x * y; \
                FM_LD(x, a + t + 2 * L); FM_LD(y, d + t + 2 * L); s2 += x * y; \
                FM_LD(x, a + t + 3 * L); FM_LD(y, d + t + 3 * L); s3 += x * y; \
            } \
            s0 = (s0 + s1) + (s2 + s3); \
            FM_ST(lanes, s0); \
            for (Py_ssize_t h = 0; h < L; h++) total += lanes[h]; \
            g[p] = accumulate ? g[p] + total : total; \
        } \
    }

    FM_DEFINE_GATHER(fm_gather_d_base, double, fm_d2, 16, 8, )
    FM_DEFINE_GATHER(fm_gather_f_base, float, fm_f4, 32, 8, )
    FM_DEFINE_DOTS(fm_dots_d_base, double, fm_d2, )
    FM_DEFINE_DOTS(fm_dots_f_base, float, fm_f4, )

    #if defined(__x86_64__) || defined(__i386__)
    #define FM_AVX2 __attribute__((target("avx2,fma")))
    FM_DEFINE_GATHER(fm_gather_d_avx2, double, fm_d4, 16, 4, FM_AVX2)
    FM_DEFINE_GATHER(fm_gather_f_avx2, float, fm_f8, 32, 4, FM_AVX2)
    FM_DEFINE_DOTS(fm_dots_d_avx2, double, fm_d4, FM_AVX2)
    FM_DEFINE_DOTS(fm_dots_f_avx2, float, fm_f8, FM_AVX2)
    static int fm_cpu_avx2 = -1;  /* racing first calls write the same value */
    static int fm_use_avx2(void) {
        if (fm_cpu_avx2 < 0) {
            const char* off = getenv("FASTMLP_NO_AVX2");  /* tests the baseline */
            __builtin_cpu_init();
            fm_cpu_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")
                          && !(off && off[0] && off[0] != '0');
        }
        return fm_cpu_avx2;
    }
    #define FM_PICK(NAME) (fm_use_avx2() ? NAME##_avx2 : NAME##_base)
    #else
    #define FM_PICK(NAME) NAME##_base
    #endif

    #else  /* no vector extensions: the same sums as plain loops */
    #define FM_DEFINE_GATHER(NAME, T, TL) \
    static void NAME(const T* w, const int* ptr, const int* idx, \
            Py_ssize_t o0, Py_ssize_t o1, const T* X, const T* Y, T* z, \
            Py_ssize_t ldo, Py_ssize_t rows, Py_ssize_t rows2) { \
        for (int half = 0; half < (Y ? 2 : 1); half++) { \
            const T* S = half ? Y : X; \
            T* zz = z + half * TL * ldo; \
            for (Py_ssize_t o = o0; o < o1; o++) { \
                T acc[TL] = {0}; \
                for (Py_ssize_t p = ptr[o]; p < ptr[o + 1]; p++) \
                    for (int t = 0; t < TL; t++) \
                        acc[t] += w[p] * S[(Py_ssize_t)idx[p] * TL + t]; \
                for (Py_ssize_t t = 0; t < (half ? rows2 : rows); t++) zz[t * ldo + o] = acc[t]; \
            } \
        } \
    }
    #define FM_DEFINE_DOTS(NAME, T) \
    static void NAME(const T* At, const T* d, const int* row, \
            Py_ssize_t p0, Py_ssize_t p1, Py_ssize_t n, T* g, int accumulate) { \
        for (Py_ssize_t p = p0; p < p1; p++) { \
            T s = 0; \
            for (Py_ssize_t t = 0; t < n; t++) s += At[(Py_ssize_t)row[p] * n + t] * d[t]; \
            g[p] = accumulate ? g[p] + s : s; \
        } \
    }
    FM_DEFINE_GATHER(fm_gather_d_base, double, 16)
    FM_DEFINE_GATHER(fm_gather_f_base, float, 32)
    FM_DEFINE_DOTS(fm_dots_d_base, double)
    FM_DEFINE_DOTS(fm_dots_f_base, float)
    #define FM_PICK(NAME) NAME##_base
    #endif

    #if defined(__GNUC__) && !defined(FASTMLP_PLAIN_C) && (defined(__x86_64__) || defined(__i386__))
    #define FM_SIMD_AVX2() fm_use_avx2()
    #else
    #define FM_SIMD_AVX2() 0
    #endif

    static void fm_gather_d(const double* w, const int* ptr, const int* idx,
            Py_ssize_t o0, Py_ssize_t o1, const double* X, const double* Y, double* z,
            Py_ssize_t ldo, Py_ssize_t rows, Py_ssize_t rows2) {
        FM_PICK(fm_gather_d)(w, ptr, idx, o0, o1, X, Y, z, ldo, rows, rows2);
    }
    static void fm_gather_f(const float* w, const int* ptr, const int* idx,
            Py_ssize_t o0, Py_ssize_t o1, const float* X, const float* Y, float* z,
            Py_ssize_t ldo, Py_ssize_t rows, Py_ssize_t rows2) {
        FM_PICK(fm_gather_f)(w, ptr, idx, o0, o1, X, Y, z, ldo, rows, rows2);
    }
    static void fm_dots_d(const double* At, const double* d, const int* row,
            Py_ssize_t p0, Py_ssize_t p1, Py_ssize_t n, double* g, int accumulate) {
        FM_PICK(fm_dots_d)(At, d, row, p0, p1, n, g, accumulate);
    }
    static void fm_dots_f(const float* At, const float* d, const int* row,
            Py_ssize_t p0, Py_ssize_t p1, Py_ssize_t n, float* g, int accumulate) {
        FM_PICK(fm_dots_f)(At, d, row, p0, p1, n, g, accumulate);
    }
    """
    void fm_gather_d(const double* w, const int* ptr, const int* idx,
                     Py_ssize_t o0, Py_ssize_t o1, const double* X,
                     const double* Y, double* z, Py_ssize_t ldo,
                     Py_ssize_t rows, Py_ssize_t rows2) noexcept nogil
    void fm_gather_f(const float* w, const int* ptr, const int* idx,
                     Py_ssize_t o0, Py_ssize_t o1, const float* X,
                     const float* Y, float* z, Py_ssize_t ldo,
                     Py_ssize_t rows, Py_ssize_t rows2) noexcept nogil
    void fm_dots_d(const double* At, const double* d, const int* row,
                   Py_ssize_t p0, Py_ssize_t p1, Py_ssize_t n, double* g,
                   int accumulate) noexcept nogil
    void fm_dots_f(const float* At, const float* d, const int* row,
                   Py_ssize_t p0, Py_ssize_t p1, Py_ssize_t n, float* g,
                   int accumulate) noexcept nogil
    int fm_simd_avx2 "FM_SIMD_AVX2"() noexcept nogil


# --------------------------------------------------- gathers over tiles
cdef inline void gather_item(const floating* w, const int* ptr,
                             const int* idx, Py_ssize_t n_src,
                             Py_ssize_t n_dst, const floating* P,
                             Py_ssize_t B, floating* Z, Py_ssize_t item,
                             Py_ssize_t n_blocks) noexcept nogil:
    """One (pair of tiles, block of destination units) work item."""
    cdef Py_ssize_t T = tile_of(w)
    cdef Py_ssize_t k = 2 * (item // n_blocks), n_tiles = (B + T - 1) // T
    cdef Py_ssize_t o0 = (item % n_blocks) * UNIT_BLOCK
    cdef Py_ssize_t o1 = min(n_dst, o0 + UNIT_BLOCK)
    cdef Py_ssize_t rows = min(T, B - k * T), rows2 = 0
    cdef const floating* X = P + k * n_src * T
    cdef const floating* Y = NULL
    if k + 1 < n_tiles:
        Y = X + n_src * T
        rows2 = min(T, B - (k + 1) * T)
    if floating is float:
        fm_gather_f(w, ptr, idx, o0, o1, X, Y, Z + k * T * n_dst, n_dst,
                    rows, rows2)
    else:
        fm_gather_d(w, ptr, idx, o0, o1, X, Y, Z + k * T * n_dst, n_dst,
                    rows, rows2)


cdef inline void gather_tiles(const floating* w, const int* ptr,
                              const int* idx, Py_ssize_t n_src,
                              Py_ssize_t n_dst, const floating* P,
                              Py_ssize_t B, floating* Z,
                              int n_threads) noexcept nogil:
    """Z[r, o] = sum_{p in ptr[o]:ptr[o+1]} w[p] S[r, idx[p]] (Z row-major
    B x n_dst) for S packed in tiles in P (n_src units per tile)."""
    cdef Py_ssize_t T = tile_of(w)
    cdef Py_ssize_t n_pairs = ((B + T - 1) // T + 1) // 2
    cdef Py_ssize_t n_blocks = (n_dst + UNIT_BLOCK - 1) // UNIT_BLOCK
    cdef Py_ssize_t item, n_items = n_pairs * n_blocks
    if n_threads > 1 and n_items > 1 and ptr[n_dst] * B >= SP_PAR_MIN:
        for item in prange(n_items, schedule='static', num_threads=n_threads):
            gather_item(w, ptr, idx, n_src, n_dst, P, B, Z, item, n_blocks)
    else:
        for item in range(n_items):
            gather_item(w, ptr, idx, n_src, n_dst, P, B, Z, item, n_blocks)


cdef inline void sddmm_whole_rows(const floating* At, const floating* Dt,
                                  const SpTables* t, Py_ssize_t n_out,
                                  Py_ssize_t n, floating* g, bint accumulate,
                                  int n_threads) noexcept nogil:
    """g[p] (+)= At[i] . Dt[o] (rows of n values) for each stored p = (i, o);
    threads own columns o."""
    cdef Py_ssize_t o
    if n_threads > 1 and n_out > 1 and t.col_ptr[n_out] * n >= SP_PAR_MIN:
        for o in prange(n_out, schedule='dynamic', chunksize=8,
                        num_threads=n_threads):
            if floating is float:
                fm_dots_f(At, Dt + o * n, t.row_idx, t.col_ptr[o],
                          t.col_ptr[o + 1], n, g, accumulate)
            else:
                fm_dots_d(At, Dt + o * n, t.row_idx, t.col_ptr[o],
                          t.col_ptr[o + 1], n, g, accumulate)
    else:
        for o in range(n_out):
            if floating is float:
                fm_dots_f(At, Dt + o * n, t.row_idx, t.col_ptr[o],
                          t.col_ptr[o + 1], n, g, accumulate)
            else:
                fm_dots_d(At, Dt + o * n, t.row_idx, t.col_ptr[o],
                          t.col_ptr[o + 1], n, g, accumulate)


# -------------------------------------------------- a few rows, unpacked
cdef inline void gather_rows(const floating* w, const int* ptr,
                             const int* idx, const int* perm,
                             Py_ssize_t n_out, const floating* A,
                             Py_ssize_t lda, Py_ssize_t B,
                             floating* Z) noexcept nogil:
    """Z[r, o] = sum_{p in ptr[o]:ptr[o+1]} w[p'] A[r, idx[p]] (p' = perm[p],
    or p when perm is NULL), read in place from row-major A."""
    cdef Py_ssize_t r, o, p
    cdef const floating* a
    cdef floating s
    for r in range(B):
        a = A + r * lda
        for o in range(n_out):
            s = 0
            if perm == NULL:
                for p in range(ptr[o], ptr[o + 1]):
                    s = s + w[p] * a[idx[p]]
            else:
                for p in range(ptr[o], ptr[o + 1]):
                    s = s + w[perm[p]] * a[idx[p]]
            Z[r * n_out + o] = s


cdef inline void sddmm_rows(const floating* A, Py_ssize_t lda,
                            const floating* D, const SpTables* t,
                            Py_ssize_t n_out, Py_ssize_t B, floating* g,
                            bint accumulate) noexcept nogil:
    """g[p] (+)= sum_r A[r, i] D[r, o] for stored p = (i, o), read in place."""
    cdef Py_ssize_t o, p, r, i
    cdef floating s
    for o in range(n_out):
        for p in range(t.col_ptr[o], t.col_ptr[o + 1]):
            i = t.row_idx[p]
            s = 0
            for r in range(B):
                s = s + A[r * lda + i] * D[r * n_out + o]
            g[p] = g[p] + s if accumulate else s


# --------------------------------------------- one layer, forward/backward
cdef inline bint sp_use_kernels(const SpNet* sp, int l, Py_ssize_t B,
                                const void* A) noexcept nogil:
    """Whether layer l's product on B rows of A runs here. Pruned layers do;
    SP_GEMM ones only for a few rows of dense input, where reading them in
    place beats any gemm. The forward and backward passes of a batch must
    agree: the backward pass of an SP_GEMM layer uses the dense copy that
    its forward pass made."""
    return sp.mode[l] == SP_KERNEL or (sp.mode[l] == SP_GEMM and B < SMALL_B
                                       and A != NULL)


cdef inline void sp_forward(const SpNet* sp, int l, Py_ssize_t n_in,
                            Py_ssize_t n_out, const floating* w,
                            const floating* A, Py_ssize_t lda,
                            const void* xs_data, const int* xs_indices,
                            const int* xs_indptr, const long long* rows,
                            Py_ssize_t B, floating* Z,
                            int n_threads) noexcept nogil:
    """Z = A W (row-major B x n_out, no bias) for a pruned layer (see
    sp_use_kernels). The input is A (row stride lda) or, when A is NULL,
    rows `rows` of a CSR matrix."""
    cdef SpTables t = sp_tables(sp, l, n_in, n_out)
    cdef floating* P = packed_area(sp, w)
    if A != NULL and B < SMALL_B:
        gather_rows(w, t.col_ptr, t.row_idx, NULL, n_out, A, lda, B, Z)
        return
    if A != NULL:
        pack_dense(A, lda, B, n_in, P, False, n_threads)
    else:
        pack_csr(xs_data, xs_indices, xs_indptr, rows, B, n_in, P, False)
    gather_tiles(w, t.col_ptr, t.row_idx, n_in, n_out, P, B, Z, n_threads)


cdef inline void sp_backward(const SpNet* sp, int l, Py_ssize_t n_in,
                             Py_ssize_t n_out, const floating* w,
                             const floating* A, Py_ssize_t lda,
                             const void* xs_data, const int* xs_indices,
                             const int* xs_indptr, const long long* rows,
                             Py_ssize_t B, const floating* D, floating* g,
                             bint accumulate, floating* D_prev,
                             int n_threads) noexcept nogil:
    """For a pruned layer (see sp_use_kernels) with output delta D
    (row-major B x n_out): g (+)= dW at the stored weights (theta order)
    and, unless D_prev is NULL, D_prev = D W^T (row-major B x n_in). A as
    in sp_forward."""
    cdef SpTables t = sp_tables(sp, l, n_in, n_out)
    cdef Py_ssize_t T = tile_of(w), n_tiles = (B + T - 1) // T, q
    cdef Py_ssize_t n_pad = n_tiles * T
    cdef floating* At = packed_area(sp, w)
    cdef floating* Dt = At + n_pad * n_in
    cdef floating* PD = Dt + n_pad * n_out
    cdef floating* wc
    if A != NULL and B < SMALL_B:
        sddmm_rows(A, lda, D, &t, n_out, B, g, accumulate)
        if D_prev != NULL:
            gather_rows(w, t.row_ptr, t.col_idx, t.perm, n_in, D, n_out, B,
                        D_prev)
        return
    if A != NULL:
        pack_dense(A, lda, B, n_in, At, True, n_threads)
    else:
        pack_csr(xs_data, xs_indices, xs_indptr, rows, B, n_in, At, True)
    pack_dense(D, n_out, B, n_out, Dt, True, n_threads)
    sddmm_whole_rows(At, Dt, &t, n_out, n_pad, g, accumulate, n_threads)
    if D_prev != NULL:
        wc = <floating*>sp.work + sp.off[2 * l + 1]
        for q in range(t.row_ptr[n_in]):
            wc[q] = w[t.perm[q]]  # CSR order, read sequentially below
        rows_to_tiles(Dt, n_out, n_tiles, PD, n_threads)
        gather_tiles(wc, t.row_ptr, t.col_idx, n_out, n_in, PD, B, D_prev,
                     n_threads)


# ------------------------------------------- SP_GEMM: gemm on a dense copy
cdef inline floating* sp_dense_w(const SpNet* sp, int l,
                                 const floating* w) noexcept nogil:
    """The layer's dense weight buffer, then its gradient buffer (w: the
    stored weights, which fix the type)."""
    return <floating*>sp.work + sp.off[2 * l + 1]


cdef inline floating* sp_densify(const SpNet* sp, int l, Py_ssize_t n_in,
                                 Py_ssize_t n_out,
                                 const floating* w) noexcept nogil:
    """Scatter the stored weights into the dense buffer (whose other
    entries stay zero: the workspace is zeroed when allocated)."""
    cdef SpTables t = sp_tables(sp, l, n_in, n_out)
    cdef floating* Wd = sp_dense_w(sp, l, w)
    cdef Py_ssize_t o, p
    for o in range(n_out):
        for p in range(t.col_ptr[o], t.col_ptr[o + 1]):
            Wd[<Py_ssize_t>t.row_idx[p] * n_out + o] = w[p]
    return Wd


cdef inline void sp_gather_grad(const SpNet* sp, int l, Py_ssize_t n_in,
                                Py_ssize_t n_out, const floating* Gd,
                                floating* g, bint accumulate) noexcept nogil:
    """g (+)= the dense gradient Gd at the stored weights."""
    cdef SpTables t = sp_tables(sp, l, n_in, n_out)
    cdef Py_ssize_t o, p
    for o in range(n_out):
        for p in range(t.col_ptr[o], t.col_ptr[o + 1]):
            if accumulate:
                g[p] = g[p] + Gd[<Py_ssize_t>t.row_idx[p] * n_out + o]
            else:
                g[p] = Gd[<Py_ssize_t>t.row_idx[p] * n_out + o]
