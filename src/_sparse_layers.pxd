# Pruned layers: products with a sparse weight matrix W (n_in x n_out).
#
# theta holds a pruned layer's surviving weights in CSC order (column o =
# output unit o). The forward product Z = A W walks W's columns; the
# backward product delta_prev = delta W^T walks its rows (CSR tables with a
# permutation back to the CSC positions in theta); the weight gradient is
# computed only at the stored (i, o), an SDDMM: dW[p] = A[:, i] . delta[:, o].
# Every pass costs O(nnz * batch), not O(n_in * n_out * batch).
#
# Batch layout. Activations and deltas are row-major batch x units, so a
# batch row's inputs to one output are a gather. The kernels first pack the
# batch into tiles of TILE rows, unit-major inside a tile (P[tile][i][t] =
# A[tile*TILE + t, i]), so that one stored weight multiplies TILE contiguous
# values: the inner loop is a fixed-length axpy into TILE register
# accumulators, which the compiler vectorises; a tile of all inputs is a
# few hundred KB and stays in cache while the weights stream past. Batches
# smaller than SMALL_B skip the packing (it would pad them to TILE rows).
#
# Threads own disjoint outputs (tile x output-block items in the forward
# pass, input units in delta W^T, columns in the SDDMM), each summed in a
# fixed order: results do not depend on the thread count.
#
# Layers denser than the measured crossover (fastmlp/_network.py
# SPARSE_KERNEL_MAX_DENSITY) are scattered into a dense buffer and use gemm
# (mode SP_GEMM); the helpers for that are at the end.
from cython cimport floating
from cython.parallel cimport prange
from libc.string cimport memset

cdef enum:
    SP_DENSE = 0        # dense W: gemm (not handled here)
    SP_KERNEL = 1       # sparse W: the kernels below
    SP_GEMM = 2         # sparse W, dense enough that gemm on a copy is faster
    TILE = 16           # batch rows per packed tile (fastmlp/_network.py SP_TILE)
    SMALL_B = 4         # below this many rows, no packing
    OUT_BLOCK = 32      # outputs per forward work item
    SP_PAR_MIN = 65536  # multiply-adds below which threads do not pay


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


# ---------------------------------------------------------------- packing
cdef inline void pack_dense(const floating* A, Py_ssize_t lda, Py_ssize_t B,
                            Py_ssize_t n, floating* P,
                            int n_threads) noexcept nogil:
    """P[tile][i][t] = A[tile*TILE + t, i]; rows past B are zero."""
    cdef Py_ssize_t n_tiles = (B + TILE - 1) // TILE, k
    if n_threads > 1 and n_tiles > 1 and B * n >= SP_PAR_MIN:
        for k in prange(n_tiles, schedule='static', num_threads=n_threads):
            pack_tile(A, lda, B, n, P, k)
    else:
        for k in range(n_tiles):
            pack_tile(A, lda, B, n, P, k)


cdef inline void pack_tile(const floating* A, Py_ssize_t lda, Py_ssize_t B,
                           Py_ssize_t n, floating* P,
                           Py_ssize_t k) noexcept nogil:
    cdef Py_ssize_t t, i, r0 = k * TILE
    cdef Py_ssize_t rows = min(<Py_ssize_t>TILE, B - r0)
    cdef floating* out = P + k * n * TILE
    cdef const floating* a = A + r0 * lda
    if rows < TILE:
        memset(out, 0, n * TILE * sizeof(floating))
        for t in range(rows):
            for i in range(n):
                out[i * TILE + t] = a[t * lda + i]
        return
    # Sequential writes; the TILE row streams are read in step.
    for i in range(n):
        for t in range(TILE):
            out[i * TILE + t] = a[t * lda + i]


cdef inline void pack_csr(const void* data_, const int* indices,
                          const int* indptr, const long long* rows,
                          Py_ssize_t B, Py_ssize_t n,
                          floating* P) noexcept nogil:
    """pack_dense for the rows `rows` of a CSR matrix."""
    cdef const floating* data = <const floating*>data_
    cdef Py_ssize_t n_tiles = (B + TILE - 1) // TILE, r, p
    cdef floating* out
    memset(P, 0, n_tiles * n * TILE * sizeof(floating))
    for r in range(B):
        out = P + (r // TILE) * n * TILE + r % TILE
        for p in range(indptr[rows[r]], indptr[rows[r] + 1]):
            out[<Py_ssize_t>indices[p] * TILE] = data[p]


# ------------------------------------------------ gather-multiply-add core
# The two inner kernels are C with GCC/Clang vector extensions: written as
# Cython loops, -fassociative-math lets GCC vectorise across stored weights
# (16 reductions fed by gathers) instead of across a tile's rows. Here one
# vector lane is one batch row of the tile and the accumulators stay in
# registers, with two or four stored weights in flight so that the add
# chains overlap. On x86 an AVX2+FMA variant is picked at run time when the
# CPU has it (the build targets the baseline ISA); other compilers get the
# same sums as plain loops.
cdef extern from *:
    """
    #include <string.h>
    #define FM_TILE 16
    #if defined(__GNUC__)
    typedef double fm_d2 __attribute__((vector_size(16)));
    typedef double fm_d4 __attribute__((vector_size(32)));
    typedef float fm_f4 __attribute__((vector_size(16)));
    typedef float fm_f8 __attribute__((vector_size(32)));

    /* z[t * ldo + o] = sum_{p in ptr[o]:ptr[o+1]} w[p'] X[idx[p] * 16 + t] for
       o0 <= o < o1, t < rows; p' = perm[p] (or p when perm is NULL). NV
       vectors of type V hold a tile row; U stored weights are in flight. */
    #define FM_DEFINE_SPMM(NAME, T, V, NV, U, ATTR) \
    ATTR static void NAME(const T* w, const int* ptr, const int* idx, \
            const int* perm, Py_ssize_t o0, Py_ssize_t o1, const T* X, T* z, \
            Py_ssize_t ldo, Py_ssize_t rows) { \
        const V zero = {0}; \
        for (Py_ssize_t o = o0; o < o1; o++) { \
            V a[U][NV], x; \
            T acc[FM_TILE]; \
            for (int u = 0; u < U; u++) \
                for (int j = 0; j < NV; j++) a[u][j] = zero; \
            Py_ssize_t p = ptr[o], p1 = ptr[o + 1]; \
            for (; p + U <= p1; p += U) { \
                for (int u = 0; u < U; u++) { \
                    T v = w[perm ? perm[p + u] : p + u]; \
                    const T* xp = X + (Py_ssize_t)idx[p + u] * FM_TILE; \
                    for (int j = 0; j < NV; j++) { \
                        memcpy(&x, xp + j * (FM_TILE / NV), sizeof(V)); \
                        a[u][j] += v * x; \
                    } \
                } \
            } \
            for (; p < p1; p++) { \
                T v = w[perm ? perm[p] : p]; \
                const T* xp = X + (Py_ssize_t)idx[p] * FM_TILE; \
                for (int j = 0; j < NV; j++) { \
                    memcpy(&x, xp + j * (FM_TILE / NV), sizeof(V)); \
                    a[0][j] += v * x; \
                } \
            } \
            for (int u = 1; u < U; u++) \
                for (int j = 0; j < NV; j++) a[0][j] += a[u][j]; \
            for (int j = 0; j < NV; j++) \
                memcpy(acc + j * (FM_TILE / NV), &a[0][j], sizeof(V)); \
            for (Py_ssize_t t = 0; t < rows; t++) z[t * ldo + o] = acc[t]; \
        } \
    }

    /* g[p] (+)= sum_k PA[k * sa + row[p] * 16 : +16] . PD[k * sd : +16] for
       p0 <= p < p1 (PD: one column's slot in the first tile); U stored
       weights at a time share the loads of PD. */
    #define FM_DEFINE_SDDMM(NAME, T, V, NV, U, ATTR) \
    ATTR static void NAME(const T* PA, const T* PD, const int* row, \
            Py_ssize_t p0, Py_ssize_t p1, Py_ssize_t sa, Py_ssize_t sd, \
            Py_ssize_t n_tiles, T* g, int accumulate) { \
        const V zero = {0}; \
        Py_ssize_t p = p0; \
        while (p < p1) { \
            int n = p1 - p < U ? (int)(p1 - p) : U; \
            V s[U][NV], d[NV], x; \
            const T* a[U]; \
            for (int u = 0; u < U; u++) { \
                a[u] = PA + (Py_ssize_t)row[p + (u < n ? u : 0)] * FM_TILE; \
                for (int j = 0; j < NV; j++) s[u][j] = zero; \
            } \
            for (Py_ssize_t k = 0; k < n_tiles; k++) { \
                const T* dp = PD + k * sd; \
                for (int j = 0; j < NV; j++) \
                    memcpy(&d[j], dp + j * (FM_TILE / NV), sizeof(V)); \
                for (int u = 0; u < U; u++) { \
                    const T* xp = a[u] + k * sa; \
                    for (int j = 0; j < NV; j++) { \
                        memcpy(&x, xp + j * (FM_TILE / NV), sizeof(V)); \
                        s[u][j] += x * d[j]; \
                    } \
                } \
            } \
            for (int u = 0; u < n; u++) { \
                T lanes[FM_TILE / NV], total = 0; \
                for (int j = 1; j < NV; j++) s[u][0] += s[u][j]; \
                memcpy(lanes, &s[u][0], sizeof(V)); \
                for (int i = 0; i < FM_TILE / NV; i++) total += lanes[i]; \
                g[p + u] = accumulate ? g[p + u] + total : total; \
            } \
            p += n; \
        } \
    }

    FM_DEFINE_SPMM(fm_spmm_d_base, double, fm_d2, 8, 1, )
    FM_DEFINE_SPMM(fm_spmm_f_base, float, fm_f4, 4, 2, )
    FM_DEFINE_SDDMM(fm_sddmm_d_base, double, fm_d2, 8, 1, )
    FM_DEFINE_SDDMM(fm_sddmm_f_base, float, fm_f4, 4, 2, )

    #if defined(__x86_64__) || defined(__i386__)
    #define FM_AVX2 __attribute__((target("avx2,fma")))
    FM_DEFINE_SPMM(fm_spmm_d_avx2, double, fm_d4, 4, 2, FM_AVX2)
    FM_DEFINE_SPMM(fm_spmm_f_avx2, float, fm_f8, 2, 4, FM_AVX2)
    FM_DEFINE_SDDMM(fm_sddmm_d_avx2, double, fm_d4, 4, 2, FM_AVX2)
    FM_DEFINE_SDDMM(fm_sddmm_f_avx2, float, fm_f8, 2, 4, FM_AVX2)
    static int fm_cpu_avx2 = -1;  /* racing first calls write the same value */
    static int fm_use_avx2(void) {
        if (fm_cpu_avx2 < 0) {
            __builtin_cpu_init();
            fm_cpu_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        }
        return fm_cpu_avx2;
    }
    #define FM_PICK(NAME) (fm_use_avx2() ? NAME##_avx2 : NAME##_base)
    #else
    #define FM_PICK(NAME) NAME##_base
    #endif

    #else  /* no vector extensions: the same sums as plain loops */
    #define FM_DEFINE_SPMM(NAME, T) \
    static void NAME(const T* w, const int* ptr, const int* idx, const int* perm, \
            Py_ssize_t o0, Py_ssize_t o1, const T* X, T* z, Py_ssize_t ldo, \
            Py_ssize_t rows) { \
        for (Py_ssize_t o = o0; o < o1; o++) { \
            T acc[FM_TILE] = {0}; \
            for (Py_ssize_t p = ptr[o]; p < ptr[o + 1]; p++) { \
                T v = w[perm ? perm[p] : p]; \
                const T* x = X + (Py_ssize_t)idx[p] * FM_TILE; \
                for (int t = 0; t < FM_TILE; t++) acc[t] += v * x[t]; \
            } \
            for (Py_ssize_t t = 0; t < rows; t++) z[t * ldo + o] = acc[t]; \
        } \
    }
    #define FM_DEFINE_SDDMM(NAME, T) \
    static void NAME(const T* PA, const T* PD, const int* row, Py_ssize_t p0, \
            Py_ssize_t p1, Py_ssize_t sa, Py_ssize_t sd, Py_ssize_t n_tiles, T* g, \
            int accumulate) { \
        for (Py_ssize_t p = p0; p < p1; p++) { \
            T s = 0; \
            for (Py_ssize_t k = 0; k < n_tiles; k++) \
                for (int t = 0; t < FM_TILE; t++) \
                    s += PA[k * sa + (Py_ssize_t)row[p] * FM_TILE + t] * PD[k * sd + t]; \
            g[p] = accumulate ? g[p] + s : s; \
        } \
    }
    FM_DEFINE_SPMM(fm_spmm_d_base, double)
    FM_DEFINE_SPMM(fm_spmm_f_base, float)
    FM_DEFINE_SDDMM(fm_sddmm_d_base, double)
    FM_DEFINE_SDDMM(fm_sddmm_f_base, float)
    #define FM_PICK(NAME) NAME##_base
    #endif

    static void fm_spmm_d(const double* w, const int* ptr, const int* idx,
            const int* perm, Py_ssize_t o0, Py_ssize_t o1, const double* X,
            double* z, Py_ssize_t ldo, Py_ssize_t rows) {
        FM_PICK(fm_spmm_d)(w, ptr, idx, perm, o0, o1, X, z, ldo, rows);
    }
    static void fm_spmm_f(const float* w, const int* ptr, const int* idx,
            const int* perm, Py_ssize_t o0, Py_ssize_t o1, const float* X,
            float* z, Py_ssize_t ldo, Py_ssize_t rows) {
        FM_PICK(fm_spmm_f)(w, ptr, idx, perm, o0, o1, X, z, ldo, rows);
    }
    static void fm_sddmm_d(const double* PA, const double* PD, const int* row,
            Py_ssize_t p0, Py_ssize_t p1, Py_ssize_t sa, Py_ssize_t sd,
            Py_ssize_t n_tiles, double* g, int accumulate) {
        FM_PICK(fm_sddmm_d)(PA, PD, row, p0, p1, sa, sd, n_tiles, g, accumulate);
    }
    static void fm_sddmm_f(const float* PA, const float* PD, const int* row,
            Py_ssize_t p0, Py_ssize_t p1, Py_ssize_t sa, Py_ssize_t sd,
            Py_ssize_t n_tiles, float* g, int accumulate) {
        FM_PICK(fm_sddmm_f)(PA, PD, row, p0, p1, sa, sd, n_tiles, g, accumulate);
    }
    """
    void fm_spmm_d(const double* w, const int* ptr, const int* idx,
                   const int* perm, Py_ssize_t o0, Py_ssize_t o1,
                   const double* X, double* z, Py_ssize_t ldo,
                   Py_ssize_t rows) noexcept nogil
    void fm_spmm_f(const float* w, const int* ptr, const int* idx,
                   const int* perm, Py_ssize_t o0, Py_ssize_t o1,
                   const float* X, float* z, Py_ssize_t ldo,
                   Py_ssize_t rows) noexcept nogil
    void fm_sddmm_d(const double* PA, const double* PD, const int* row,
                    Py_ssize_t p0, Py_ssize_t p1, Py_ssize_t sa, Py_ssize_t sd,
                    Py_ssize_t n_tiles, double* g, int accumulate) noexcept nogil
    void fm_sddmm_f(const float* PA, const float* PD, const int* row,
                    Py_ssize_t p0, Py_ssize_t p1, Py_ssize_t sa, Py_ssize_t sd,
                    Py_ssize_t n_tiles, float* g, int accumulate) noexcept nogil


cdef inline void spmm_item(const floating* w, const int* ptr, const int* idx,
                           const int* perm, Py_ssize_t n_in, Py_ssize_t n_out,
                           const floating* P, Py_ssize_t B, floating* Z,
                           Py_ssize_t item, Py_ssize_t n_blocks) noexcept nogil:
    cdef Py_ssize_t k = item // n_blocks
    cdef Py_ssize_t o0 = (item % n_blocks) * OUT_BLOCK
    cdef Py_ssize_t o1 = min(n_out, o0 + OUT_BLOCK)
    cdef Py_ssize_t rows = min(<Py_ssize_t>TILE, B - k * TILE)
    cdef const floating* X = P + k * n_in * TILE
    cdef floating* z = Z + k * TILE * n_out
    if floating is float:
        fm_spmm_f(w, ptr, idx, perm, o0, o1, X, z, n_out, rows)
    else:
        fm_spmm_d(w, ptr, idx, perm, o0, o1, X, z, n_out, rows)


cdef inline void spmm_packed(const floating* w, const int* ptr,
                             const int* idx, const int* perm, Py_ssize_t n_in,
                             Py_ssize_t n_out, const floating* P, Py_ssize_t B,
                             floating* Z, int n_threads) noexcept nogil:
    """Z[r, o] = sum_{p in ptr[o]:ptr[o+1]} w[p'] A[r, idx[p]] (Z row-major
    B x n_out) from the packed A in P (n_in units per tile)."""
    cdef Py_ssize_t n_tiles = (B + TILE - 1) // TILE
    cdef Py_ssize_t n_blocks = (n_out + OUT_BLOCK - 1) // OUT_BLOCK
    cdef Py_ssize_t item, n_items = n_tiles * n_blocks
    if n_threads > 1 and n_items > 1 and ptr[n_out] * B >= SP_PAR_MIN:
        for item in prange(n_items, schedule='static', num_threads=n_threads):
            spmm_item(w, ptr, idx, perm, n_in, n_out, P, B, Z, item, n_blocks)
    else:
        for item in range(n_items):
            spmm_item(w, ptr, idx, perm, n_in, n_out, P, B, Z, item, n_blocks)


cdef inline void spmm_rows(const floating* w, const int* ptr, const int* idx,
                           const int* perm, Py_ssize_t n_out,
                           const floating* A, Py_ssize_t lda, Py_ssize_t B,
                           floating* Z) noexcept nogil:
    """spmm_packed for a few rows, read in place from row-major A."""
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


# --------------------------------------------------------------- SDDMM
cdef inline void sddmm_col(const floating* PA, const floating* PD,
                           const SpTables* t, Py_ssize_t n_in,
                           Py_ssize_t n_out, Py_ssize_t n_tiles, Py_ssize_t o,
                           floating* g, bint accumulate) noexcept nogil:
    if floating is float:
        fm_sddmm_f(PA, PD + o * TILE, t.row_idx, t.col_ptr[o], t.col_ptr[o + 1],
                   n_in * TILE, n_out * TILE, n_tiles, g, accumulate)
    else:
        fm_sddmm_d(PA, PD + o * TILE, t.row_idx, t.col_ptr[o], t.col_ptr[o + 1],
                   n_in * TILE, n_out * TILE, n_tiles, g, accumulate)


cdef inline void sddmm_packed(const floating* PA, const floating* PD,
                              const SpTables* t, Py_ssize_t n_in,
                              Py_ssize_t n_out, Py_ssize_t B, floating* g,
                              bint accumulate, int n_threads) noexcept nogil:
    """g[p] (+)= sum_r A[r, i] D[r, o] for each stored (i, o), from packed
    A (n_in units) and D (n_out units); threads own columns."""
    cdef Py_ssize_t n_tiles = (B + TILE - 1) // TILE, o
    if n_threads > 1 and n_out > 1 and t.col_ptr[n_out] * B >= SP_PAR_MIN:
        for o in prange(n_out, schedule='dynamic', chunksize=8,
                        num_threads=n_threads):
            sddmm_col(PA, PD, t, n_in, n_out, n_tiles, o, g, accumulate)
    else:
        for o in range(n_out):
            sddmm_col(PA, PD, t, n_in, n_out, n_tiles, o, g, accumulate)


cdef inline void sddmm_rows(const floating* A, Py_ssize_t lda,
                            const floating* D, const SpTables* t,
                            Py_ssize_t n_out, Py_ssize_t B, floating* g,
                            bint accumulate) noexcept nogil:
    """sddmm_packed for a few rows, read in place (D row-major B x n_out)."""
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
cdef inline void sp_forward(const SpNet* sp, int l, Py_ssize_t n_in,
                            Py_ssize_t n_out, const floating* w,
                            const floating* A, Py_ssize_t lda,
                            const void* xs_data, const int* xs_indices,
                            const int* xs_indptr, const long long* rows,
                            Py_ssize_t B, floating* Z,
                            int n_threads) noexcept nogil:
    """Z = A W (row-major B x n_out, no bias) for a SP_KERNEL layer. The
    input is A (row stride lda) or, when A is NULL, rows `rows` of a CSR
    matrix."""
    cdef SpTables t = sp_tables(sp, l, n_in, n_out)
    cdef floating* P = <floating*>sp.work + sp.work_at
    if A != NULL and B < SMALL_B:
        spmm_rows(w, t.col_ptr, t.row_idx, NULL, n_out, A, lda, B, Z)
        return
    if A != NULL:
        pack_dense(A, lda, B, n_in, P, n_threads)
    else:
        pack_csr(xs_data, xs_indices, xs_indptr, rows, B, n_in, P)
    spmm_packed(w, t.col_ptr, t.row_idx, NULL, n_in, n_out, P, B, Z, n_threads)


cdef inline void sp_backward(const SpNet* sp, int l, Py_ssize_t n_in,
                             Py_ssize_t n_out, const floating* w,
                             const floating* A, Py_ssize_t lda,
                             const void* xs_data, const int* xs_indices,
                             const int* xs_indptr, const long long* rows,
                             Py_ssize_t B, const floating* D, floating* g,
                             bint accumulate, floating* D_prev,
                             int n_threads) noexcept nogil:
    """For a SP_KERNEL layer with output delta D (row-major B x n_out):
    g (+)= dW at the stored weights and, unless D_prev is NULL,
    D_prev = D W^T (row-major B x n_in). A as in sp_forward."""
    cdef SpTables t = sp_tables(sp, l, n_in, n_out)
    cdef Py_ssize_t n_pad = ((B + TILE - 1) // TILE) * TILE
    cdef floating* PA = <floating*>sp.work + sp.work_at
    cdef floating* PD = PA + n_pad * n_in
    if A != NULL and B < SMALL_B:
        sddmm_rows(A, lda, D, &t, n_out, B, g, accumulate)
        if D_prev != NULL:
            spmm_rows(w, t.row_ptr, t.col_idx, t.perm, n_in, D, n_out, B,
                      D_prev)
        return
    if A != NULL:
        pack_dense(A, lda, B, n_in, PA, n_threads)
    else:
        pack_csr(xs_data, xs_indices, xs_indptr, rows, B, n_in, PA)
    pack_dense(D, n_out, B, n_out, PD, n_threads)
    sddmm_packed(PA, PD, &t, n_in, n_out, B, g, accumulate, n_threads)
    if D_prev != NULL:
        spmm_packed(w, t.row_ptr, t.col_idx, t.perm, n_out, n_in, PD, B,
                    D_prev, n_threads)


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
