# Register-blocked matrix products for the small shapes of small networks.
#
# For products of a few hundred rows and columns (a batch of 32-100 rows
# times a 64x100 layer) OpenBLAS's per-call cost (argument checks, the
# choice of kernel, packing both operands into its blocked layout) is a
# large part of the time. The kernels here pack only the right-hand
# operand, and only where it would not stay in L1 in place: each output
# block of MR rows x NV vectors is held in registers while the shared
# dimension streams past, reading that operand's rows in place in a small
# product, or from an aligned panel at most FM_KC deep (B^T always; B when
# deeper than a panel or of rows 2 KiB apart, which fall on few L1 sets).
#
# Every output element is one chain of fused multiply-adds over the shared
# dimension in index order (with the NT product, in chains of FM_KC
# restarted per panel and added to the output; NN and TN go on from the
# last panel's sums), whatever the block, the packing, the thread split or
# the ISA (AVX2 and AVX-512 give the same bits).
#
# The left-hand operand of NN and TN may also be given as row indices into
# a larger matrix (small_gemm_idx: a batch's input rows read from X in
# place, no gathered copy), with the same chains and so the same bits.
#
# The kernels exist for AVX2+FMA and AVX-512 (src/_simd.pxd picks one at run
# time); on other CPUs, and outside the measured crossovers (SMALL_MAX_WORK
# and the TN band below, benchmarks/small_gemm.py), the products go to BLAS
# as before.
from cython cimport floating
from cython.parallel cimport prange
from _blas cimport mm_nn, mm_tn, mm_nt, blas_avx512, blas_pre_avx512
from cpython.pyport cimport PY_SSIZE_T_MAX
from _simd cimport fm_isa, FM_ISA_AVX512
# For its C: the Adam epilogue below uses _adam_simd's vector macros, which
# this cimport places ahead of this file's C in every module.
from _adam_simd cimport adam_span
from libc.string cimport memset

cdef extern from *:
    """
    #define FM_NN 0   /* C = A B:     a(i, p) = A[i * lda + p], b(p, j) = B[p * ldb + j] */
    #define FM_TN 1   /* C = A^T B:   a(i, p) = A[p * lda + i], b(p, j) = B[p * ldb + j] */
    #define FM_NT 2   /* C = A B^T:   a(i, p) = A[i * lda + p], b(p, j) = B[j * ldb + p] */
    #define FM_KC 128 /* depth of one packed panel of B^T (NT), or of B (deep NN, TN) */
    /* NN and TN pack B in panels (when deeper than FM_KC or of rows
       FM_PACK_ROW_BYTES apart or more) for this many of C's rows or more
       (fewer would not repay the copy); fm_pack_deep = 0 turns it off
       (tests, benchmarks). */
    #define FM_PACK_MIN_ROWS 16
    #define FM_PACK_ROW_BYTES 2048
    #define FM_ACC_CHAIN 2
    static int fm_pack_deep = 1;
    /* Epilogues, on the finished sums (accumulate off):
       FM_EPI_BIAS_RELU: C = max(sum + bias[j], 0), a relu layer's forward;
       FM_EPI_RELU_GRAD: C = C_old > 0 ? sum : 0 (the delta through a relu,
       read off its output, which it overwrites; one panel of depth only),
       and when cs is not NULL cs[j] += each row's value, rows in order. */
    /* A's rows in the kernels: in place, or rows ridx[] of a matrix of row
       stride lda: C's rows (NN) or the shared dimension (TN) */
    #define FM_IDX_NONE 0
    #define FM_IDX_ROWS 1
    #define FM_IDX_DEPTH 2
    #define FM_EPI_NONE 0
    #define FM_EPI_BIAS_RELU 1
    #define FM_EPI_RELU_GRAD 2
    /* FM_EPI_ADAM (TN only, fm_small_gemm_adam_*): the sums are a weight
       gradient, and Adam's step is applied to the parameters and moments at
       the same offsets as C's (which is not written) while the block is in
       registers: the gradient is never stored and read back. */
    #define FM_EPI_ADAM 3

    /* The step's arguments and results (FM_EPI_ADAM). th, s1, s2: the
       weights and Adam's two moments; C is th itself, never written (the
       blocks' offsets in C are theirs). */
    typedef struct {
        void* th;
        void* s1;
        void* s2;
        double lr, b1, b2, eps, l2;
        /* the blocks' running sums, in vector lanes (reduced once, by the
           caller): th^2 before the step (when l2 != 0) in double lanes, and
           th * 0 after it in the dtype's lanes (0 unless non-finite) */
        double sqv[8] __attribute__((aligned(64)));
        unsigned char badv[64] __attribute__((aligned(64)));
    } fm_adam_epi;

    #ifdef FM_HAVE_X86_KERNELS
    /* Vector operations, by suffix: Z = AVX-512, Y = AVX2; D/F = double/float.
       M is the mask of the last vector of a block (its first r lanes; with
       AVX2, r itself). */
    #define FM_LD_ZD(p) _mm512_loadu_pd(p)
    #define FM_LDM_ZD(m, p) _mm512_maskz_loadu_pd(m, p)
    #define FM_ST_ZD(p, x) _mm512_storeu_pd(p, x)
    #define FM_STM_ZD(p, m, x) _mm512_mask_storeu_pd(p, m, x)
    #define FM_FMA_ZD(a, b, c) _mm512_fmadd_pd(a, b, c)
    #define FM_BC_ZD(x) _mm512_set1_pd(x)
    #define FM_ZERO_ZD() _mm512_setzero_pd()
    #define FM_ADD_ZD(a, b) _mm512_add_pd(a, b)
    #define FM_MK_ZD(r) ((__mmask8)((1u << (r)) - 1u))
    #define FM_RELU_ZD(x) _mm512_max_pd(x, _mm512_setzero_pd())
    #define FM_POS_ZD(o, x) _mm512_maskz_mov_pd(_mm512_cmp_pd_mask(o, _mm512_setzero_pd(), _CMP_GT_OQ), x)

    #define FM_LD_ZF(p) _mm512_loadu_ps(p)
    #define FM_LDM_ZF(m, p) _mm512_maskz_loadu_ps(m, p)
    #define FM_ST_ZF(p, x) _mm512_storeu_ps(p, x)
    #define FM_STM_ZF(p, m, x) _mm512_mask_storeu_ps(p, m, x)
    #define FM_FMA_ZF(a, b, c) _mm512_fmadd_ps(a, b, c)
    #define FM_BC_ZF(x) _mm512_set1_ps(x)
    #define FM_ZERO_ZF() _mm512_setzero_ps()
    #define FM_ADD_ZF(a, b) _mm512_add_ps(a, b)
    #define FM_MK_ZF(r) ((__mmask16)((1u << (r)) - 1u))
    #define FM_RELU_ZF(x) _mm512_max_ps(x, _mm512_setzero_ps())
    #define FM_POS_ZF(o, x) _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(o, _mm512_setzero_ps(), _CMP_GT_OQ), x)

    /* AVX2: the last vector of a block moves in 128-, 64- and 32-bit
       pieces, its lane count r standing for the mask: vmaskmov is microcode
       on AMD's Zen 1 (~10 cycles a load, ~12 a store, against 1-2 for a
       plain move; a one-off loop), and the block kernels load B's last
       vector at every step of the shared dimension. The lanes from r on
       load as zeros, as vmaskmov's do, so the bits are the same. */
    static inline __attribute__((always_inline)) FM_TARGET_AVX2 __m128
    fm_ldq_f(const float* p, int r) {   /* r <= 4 lanes of 4 */
        if (r >= 4) return _mm_loadu_ps(p);
        if (r == 3) return _mm_movelh_ps(_mm_castsi128_ps(_mm_loadl_epi64((const __m128i*)p)),
                                         _mm_load_ss(p + 2));
        if (r == 2) return _mm_castsi128_ps(_mm_loadl_epi64((const __m128i*)p));
        return r == 1 ? _mm_load_ss(p) : _mm_setzero_ps();
    }
    static inline __attribute__((always_inline)) FM_TARGET_AVX2 __m256
    fm_ldm_yf(int r, const float* p) {
        if (r >= 8) return _mm256_loadu_ps(p);
        if (r > 4) return _mm256_set_m128(fm_ldq_f(p + 4, r - 4), _mm_loadu_ps(p));
        return _mm256_set_m128(_mm_setzero_ps(), fm_ldq_f(p, r));
    }
    static inline __attribute__((always_inline)) FM_TARGET_AVX2 void
    fm_stm_yf(float* p, int r, __m256 x) {
        __m128 q = _mm256_castps256_ps128(x);
        if (r >= 8) { _mm256_storeu_ps(p, x); return; }
        if (r >= 4) { _mm_storeu_ps(p, q); p += 4; r -= 4; q = _mm256_extractf128_ps(x, 1); }
        if (r >= 2) { _mm_storel_epi64((__m128i*)p, _mm_castps_si128(q)); p += 2; r -= 2;
                      q = _mm_movehl_ps(q, q); }
        if (r) _mm_store_ss(p, q);
    }
    static inline __attribute__((always_inline)) FM_TARGET_AVX2 __m256d
    fm_ldm_yd(int r, const double* p) {
        if (r >= 4) return _mm256_loadu_pd(p);
        if (r == 3) return _mm256_set_m128d(_mm_load_sd(p + 2), _mm_loadu_pd(p));
        return _mm256_set_m128d(_mm_setzero_pd(), r == 2 ? _mm_loadu_pd(p)
                                : r == 1 ? _mm_load_sd(p) : _mm_setzero_pd());
    }
    static inline __attribute__((always_inline)) FM_TARGET_AVX2 void
    fm_stm_yd(double* p, int r, __m256d x) {
        __m128d q = _mm256_castpd256_pd128(x);
        if (r >= 4) { _mm256_storeu_pd(p, x); return; }
        if (r >= 2) { _mm_storeu_pd(p, q); p += 2; r -= 2; q = _mm256_extractf128_pd(x, 1); }
        if (r) _mm_store_sd(p, q);
    }

    #define FM_LD_YD(p) _mm256_loadu_pd(p)
    #define FM_LDM_YD(m, p) fm_ldm_yd(m, p)
    #define FM_ST_YD(p, x) _mm256_storeu_pd(p, x)
    #define FM_STM_YD(p, m, x) fm_stm_yd(p, m, x)
    #define FM_FMA_YD(a, b, c) _mm256_fmadd_pd(a, b, c)
    #define FM_BC_YD(x) _mm256_set1_pd(x)
    #define FM_ZERO_YD() _mm256_setzero_pd()
    #define FM_ADD_YD(a, b) _mm256_add_pd(a, b)
    #define FM_MK_YD(r) ((int)(r))
    #define FM_RELU_YD(x) _mm256_max_pd(x, _mm256_setzero_pd())
    #define FM_POS_YD(o, x) _mm256_and_pd(_mm256_cmp_pd(o, _mm256_setzero_pd(), _CMP_GT_OQ), x)

    #define FM_LD_YF(p) _mm256_loadu_ps(p)
    #define FM_LDM_YF(m, p) fm_ldm_yf(m, p)
    #define FM_ST_YF(p, x) _mm256_storeu_ps(p, x)
    #define FM_STM_YF(p, m, x) fm_stm_yf(p, m, x)
    #define FM_FMA_YF(a, b, c) _mm256_fmadd_ps(a, b, c)
    #define FM_BC_YF(x) _mm256_set1_ps(x)
    #define FM_ZERO_YF() _mm256_setzero_ps()
    #define FM_ADD_YF(a, b) _mm256_add_ps(a, b)
    #define FM_MK_YF(r) ((int)(r))
    #define FM_RELU_YF(x) _mm256_max_ps(x, _mm256_setzero_ps())
    #define FM_POS_YF(o, x) _mm256_and_ps(_mm256_cmp_ps(o, _mm256_setzero_ps(), _CMP_GT_OQ), x)

    /* Adam (src/_adam_simd.pxd's arithmetic) on one block of weight
       gradients g, MR rows of NV vectors held row by row (the last vector
       masked by `last`); the parameters at offset off, row stride ldc. In
       float64 with AVX-512 the second vector of each row takes the
       divider's exact quotient, the others Newton steps (the separate
       kernel: one vector in three); elsewhere all are exact, and the bits
       are the separate kernel's. */
    #define FM_ADAM_TILE_VEC(S, MK, STEP) do { \
                t = FM_LDM_##S(MK, th + o); \
                gi = FM_LD_##S(gr + v * LN); \
                if (PEN) { \
                    FM_ADAM_SUMS_##S(t, sq, ab, 0); \
                    gi = FM_ADAM_FMA_##S(vl2, t, gi); \
                } \
                m = FM_ADAM_FMA_##S(vb1, FM_LDM_##S(MK, s1 + o), FM_ADAM_MUL_##S(vc1, gi)); \
                w = FM_ADAM_FMA_##S(vb2, FM_LDM_##S(MK, s2 + o), \
                                    FM_ADAM_MUL_##S(FM_ADAM_MUL_##S(vc2, gi), gi)); \
                FM_STM_##S(s1 + o, MK, m); \
                FM_STM_##S(s2 + o, MK, w); \
                t = FM_ADAM_SUB_##S(t, STEP(FM_ADAM_MUL_##S(vlr, m), w, veps)); \
                FM_STM_##S(th + o, MK, t); \
                bad = FM_ADAM_FMA_##S(t, zero, bad); } while (0)
    #define FM_DEFINE_ADAM_TILE(NAME, T, S, L, MT, DV, SD, ATTR) \
    static inline __attribute__((always_inline)) ATTR void NAME##_adam_rows(const int NV, \
            const int PEN, const T* g, int MR, MT last, T* th, T* s1, T* s2, Py_ssize_t ldc, \
            fm_adam_epi* ep) { \
        __typeof__(FM_ADAM_SET_##S(0)) vb1 = FM_ADAM_SET_##S((T)ep->b1), \
            vc1 = FM_ADAM_SET_##S(1 - (T)ep->b1), vb2 = FM_ADAM_SET_##S((T)ep->b2), \
            vc2 = FM_ADAM_SET_##S(1 - (T)ep->b2), vlr = FM_ADAM_SET_##S((T)ep->lr), \
            veps = FM_ADAM_SET_##S((T)ep->eps), vl2 = FM_ADAM_SET_##S((T)ep->l2), \
            zero = FM_ADAM_SET_##S(0), bad = FM_ADAM_LD_##S((T*)ep->badv), t, gi, m, w; \
        DV sq = FM_ADAM_LD_##SD(ep->sqv), ab = FM_ADAM_SET_##SD(0); \
        MT full = FM_MK_##S(L); \
        const Py_ssize_t LN = L; \
        for (int i = 0; i < MR; i++) { \
            const T* gr = g + i * NV * L; \
            Py_ssize_t o = i * ldc; \
            int v = 0; \
            if (NV > 1) { FM_ADAM_TILE_VEC(S, full, FM_ADAM_STEP_##S); v++; o += L; } \
            if (NV > 2) { FM_ADAM_TILE_VEC(S, full, FM_ADAM_STEPX_##S); v++; o += L; } \
            if (NV > 3) { FM_ADAM_TILE_VEC(S, full, FM_ADAM_STEP_##S); v++; o += L; } \
            FM_ADAM_TILE_VEC(S, last, FM_ADAM_STEP_##S); \
        } \
        (void)full; \
        FM_ADAM_ST_##S((T*)ep->badv, bad); \
        if (PEN) FM_ADAM_ST_##SD(ep->sqv, sq); \
        (void)ab; \
    } \
    static __attribute__((noinline)) ATTR void NAME##_adam_tile(const T* g, int MR, int NV, \
            MT last, Py_ssize_t off, Py_ssize_t ldc, fm_adam_epi* ep) { \
        T* th = (T*)ep->th + off; \
        T* s1 = (T*)ep->s1 + off; \
        T* s2 = (T*)ep->s2 + off; \
        int pen = ep->l2 != 0; \
        switch (NV * 2 + pen) { \
            case 2: NAME##_adam_rows(1, 0, g, MR, last, th, s1, s2, ldc, ep); break; \
            case 3: NAME##_adam_rows(1, 1, g, MR, last, th, s1, s2, ldc, ep); break; \
            case 4: NAME##_adam_rows(2, 0, g, MR, last, th, s1, s2, ldc, ep); break; \
            case 5: NAME##_adam_rows(2, 1, g, MR, last, th, s1, s2, ldc, ep); break; \
            case 6: NAME##_adam_rows(3, 0, g, MR, last, th, s1, s2, ldc, ep); break; \
            case 7: NAME##_adam_rows(3, 1, g, MR, last, th, s1, s2, ldc, ep); break; \
            case 8: NAME##_adam_rows(4, 0, g, MR, last, th, s1, s2, ldc, ep); break; \
            default: NAME##_adam_rows(4, 1, g, MR, last, th, s1, s2, ldc, ep); break; \
        } \
    }

    /* One MR x NV-vector block of C (MR, NV constants after inlining: the
       accumulators live in registers). The last vector is masked by `last`.
       The epilogue (FM_EPI_*, no accumulate) works on the finished sums in
       registers: `bias`, `cs` are offset to the block's first column. */
    #define FM_DEFINE_UKR(NAME, T, S, L, MT, ATTR) \
    static inline __attribute__((always_inline)) ATTR void NAME##_ukr( \
            const int MR, const int NV, const int IDX, const int ADAM, const int BF, Py_ssize_t k, \
            const T* a, Py_ssize_t asi, Py_ssize_t asp, const long long* ridx, \
            Py_ssize_t rs, const T* b, Py_ssize_t ldb, T* c, Py_ssize_t ldc, \
            MT last, int accumulate, int epi, const T* bias, T* cs, fm_adam_epi* ep) { \
        __typeof__(FM_ZERO_##S()) acc[8][4], bv[4], x; \
        const T* arow[8]; \
        if (IDX == FM_IDX_ROWS) \
            _Pragma("GCC unroll 8") for (int i = 0; i < MR; i++) arow[i] = a + ridx[i] * rs; \
        /* accumulate == FM_ACC_CHAIN: C holds the chains' sums over the \
           shared dimension so far (an earlier packed panel), and they go on \
           from there: the bits of one unbroken chain */ \
        _Pragma("GCC unroll 8") for (int i = 0; i < MR; i++) \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) \
                acc[i][v] = accumulate != FM_ACC_CHAIN ? FM_ZERO_##S() \
                    : v < NV - 1 ? FM_LD_##S(c + i * ldc + v * L) \
                                 : FM_LDM_##S(last, c + i * ldc + v * L); \
        for (Py_ssize_t p = 0; p < k; p++) { \
            const T* bp = b + p * ldb; \
            const T* ap = IDX == FM_IDX_DEPTH ? a + ridx[p] * rs : a + p * asp; \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV - 1; v++) bv[v] = FM_LD_##S(bp + v * L); \
            bv[NV - 1] = BF ? FM_LD_##S(bp + (NV - 1) * L) : FM_LDM_##S(last, bp + (NV - 1) * L); \
            _Pragma("GCC unroll 8") for (int i = 0; i < MR; i++) { \
                x = FM_BC_##S(IDX == FM_IDX_ROWS ? arow[i][p] : ap[i * asi]); \
                _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) \
                    acc[i][v] = FM_FMA_##S(x, bv[v], acc[i][v]); \
            } \
        } \
        if (epi == FM_EPI_BIAS_RELU) { \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) { \
                bv[v] = v < NV - 1 ? FM_LD_##S(bias + v * L) \
                                   : FM_LDM_##S(last, bias + v * L); \
                _Pragma("GCC unroll 8") for (int i = 0; i < MR; i++) \
                    acc[i][v] = FM_RELU_##S(FM_ADD_##S(acc[i][v], bv[v])); \
            } \
        } else if (epi == FM_EPI_RELU_GRAD) { \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) { \
                _Pragma("GCC unroll 8") for (int i = 0; i < MR; i++) \
                    acc[i][v] = FM_POS_##S(v < NV - 1 \
                        ? FM_LD_##S(c + i * ldc + v * L) \
                        : FM_LDM_##S(last, c + i * ldc + v * L), acc[i][v]); \
                if (cs) { \
                    bv[v] = v < NV - 1 ? FM_LD_##S(cs + v * L) \
                                       : FM_LDM_##S(last, cs + v * L); \
                    /* the empty asm keeps each add in row order: the \
                       build's -fassociative-math would make a tree of them */ \
                    _Pragma("GCC unroll 8") for (int i = 0; i < MR; i++) { \
                        bv[v] = FM_ADD_##S(bv[v], acc[i][v]); \
                        __asm__("" : "+v"(bv[v])); \
                    } \
                    if (v < NV - 1) FM_ST_##S(cs + v * L, bv[v]); \
                    else FM_STM_##S(cs + v * L, last, bv[v]); \
                } \
            } \
        } \
        if (ADAM) { /* epi == FM_EPI_ADAM, known where inlined */ \
            /* the sums leave the registers for a tile on the stack, which \
               one update loop (not unrolled into every block shape) reads: \
               the gradient never reaches memory that outlives the block */ \
            T tile[8 * 4 * L] __attribute__((aligned(64))); \
            _Pragma("GCC unroll 8") for (int i = 0; i < MR; i++) \
                _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) \
                    FM_ST_##S(tile + (i * NV + v) * L, acc[i][v]); \
            NAME##_adam_tile(tile, MR, NV, last, c - (T*)ep->th, ldc, ep); \
            return; \
        } \
        _Pragma("GCC unroll 8") for (int i = 0; i < MR; i++) { \
            T* cp = c + i * ldc; \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV - 1; v++) { \
                x = acc[i][v]; \
                if (accumulate == 1) x = FM_ADD_##S(x, FM_LD_##S(cp + v * L)); \
                FM_ST_##S(cp + v * L, x); \
            } \
            x = acc[i][NV - 1]; \
            if (accumulate == 1) x = FM_ADD_##S(x, FM_LDM_##S(last, cp + (NV - 1) * L)); \
            FM_STM_##S(cp + (NV - 1) * L, last, x); \
        } \
    }

    /* All m rows of one column block: blocks of MRF rows, then 4, 2, 1, in
       order (the column sums of FM_EPI_RELU_GRAD add the rows in order). */
    #define FM_UKR_AT(NAME, MRR, NV) \
        NAME##_ukr(MRR, NV, IDX, ADAM, BF, k, IDX == FM_IDX_ROWS ? a : a + i * asi, asi, asp, \
                   IDX == FM_IDX_ROWS ? ridx + i : ridx, rs, b, ldb, c + i * ldc, ldc, \
                   last, acc, epi, bias, cs, ep)
    #define FM_ROWS(NAME, MRF, NV) do { \
        for (; i + MRF <= m; i += MRF) \
            FM_UKR_AT(NAME, MRF, NV); \
        if (MRF > 4 && i + 4 <= m) { \
            FM_UKR_AT(NAME, 4, NV); \
            i += 4; } \
        if (MRF > 2 && i + 2 <= m) { \
            FM_UKR_AT(NAME, 2, NV); \
            i += 2; } \
        if (i < m) \
            FM_UKR_AT(NAME, 1, NV); \
    } while (0)

    /* One copy of the block loop with BF constant (NAME##_block_w: B's last
       vector loads whole; _p: masked, or in pieces). Two functions, not one
       holding both: the compiler's time grows faster than a function's size. */
    #define FM_DEFINE_BLOCK_COPY(NAME, T, MT, ATTR, SUF, BF) \
    ATTR static __attribute__((noinline)) void NAME##_block_##SUF(int nv, Py_ssize_t m, \
            Py_ssize_t k, const T* a, Py_ssize_t asi, Py_ssize_t asp, int idx, \
            const long long* ridx, Py_ssize_t rs, const T* b, Py_ssize_t ldb, T* c, \
            Py_ssize_t ldc, MT last, int acc, int epi, const T* bias, T* cs, fm_adam_epi* ep) { \
        NAME##_block_bf(BF, nv, m, k, a, asi, asp, idx, ridx, rs, b, ldb, c, ldc, last, acc, \
                        epi, bias, cs, ep); \
    }

    /* MR1..MR4: rows per block for blocks of 1..4 vectors (as many
       accumulators as the register file holds beside the B vectors); NVX:
       the most vectors a block has (AVX2: 3, since 3 rows of 4 vectors and
       the 4 of B take 16 registers before the broadcast, and the compiler
       spills accumulators); BFD: copies of the kernels for B read whole. */
    #define FM_DEFINE_SMALL_GEMM(NAME, T, S, L, MT, DV, SD, ATTR, NVX, BFD, MR1, MR2, MR3, MR4) \
    FM_DEFINE_ADAM_TILE(NAME, T, S, L, MT, DV, SD, ATTR) \
    FM_DEFINE_UKR(NAME, T, S, L, MT, ATTR) \
    static inline __attribute__((always_inline)) ATTR void NAME##_rows(const int IDX, \
            const int ADAM, const int BF, int nv, Py_ssize_t m, Py_ssize_t k, const T* a, Py_ssize_t asi, Py_ssize_t asp, \
            const long long* ridx, Py_ssize_t rs, const T* b, Py_ssize_t ldb, T* c, \
            Py_ssize_t ldc, MT last, int acc, int epi, const T* bias, T* cs, \
            fm_adam_epi* ep) { \
        Py_ssize_t i = 0; \
        switch (nv) { \
            case 1: FM_ROWS(NAME, MR1, 1); break; \
            case 2: FM_ROWS(NAME, MR2, 2); break; \
            case 3: FM_ROWS(NAME, MR3, 3); break; \
            default: if (NVX > 3) FM_ROWS(NAME, MR4, 4); break; \
        } \
    } \
    /* One of A's strides is 1 (TN: along C's rows; NN, NT: along the shared \
       dimension): compiled with it constant, the broadcasts' addresses are \
       immediate offsets from one pointer. With ridx, A's rows are rows \
       ridx[] of a matrix of row stride rs (FM_IDX_*). BF: B's last vector \
       loads whole (full, or a zero-padded panel's). */ \
    static inline __attribute__((always_inline)) ATTR void NAME##_block_bf(const int BF, \
            int nv, Py_ssize_t m, Py_ssize_t k, const T* a, \
            Py_ssize_t asi, Py_ssize_t asp, int idx, const long long* ridx, Py_ssize_t rs, \
            const T* b, Py_ssize_t ldb, T* c, Py_ssize_t ldc, MT last, int acc, int epi, \
            const T* bias, T* cs, fm_adam_epi* ep) { \
        if (epi == FM_EPI_ADAM) { /* TN only: A's rows in place or by index */ \
            if (idx == FM_IDX_DEPTH) \
                NAME##_rows(FM_IDX_DEPTH, 1, BF, nv, m, k, a, 1, 0, ridx, rs, b, ldb, c, ldc, \
                            last, 0, epi, NULL, NULL, ep); \
            else \
                NAME##_rows(FM_IDX_NONE, 1, BF, nv, m, k, a, 1, asp, ridx, rs, b, ldb, c, ldc, \
                            last, 0, epi, NULL, NULL, ep); \
        } else if (idx == FM_IDX_DEPTH) \
            NAME##_rows(FM_IDX_DEPTH, 0, BF, nv, m, k, a, 1, 0, ridx, rs, b, ldb, c, ldc, last, \
                        acc, epi, bias, cs, ep); \
        else if (idx == FM_IDX_ROWS) \
            NAME##_rows(FM_IDX_ROWS, 0, BF, nv, m, k, a, 0, 1, ridx, rs, b, ldb, c, ldc, last, \
                        acc, epi, bias, cs, ep); \
        else if (asi == 1) \
            NAME##_rows(FM_IDX_NONE, 0, BF, nv, m, k, a, 1, asp, ridx, rs, b, ldb, c, ldc, last, \
                        acc, epi, bias, cs, ep); \
        else \
            NAME##_rows(FM_IDX_NONE, 0, BF, nv, m, k, a, asi, 1, ridx, rs, b, ldb, c, ldc, last, \
                        acc, epi, bias, cs, ep); \
    } \
    /* With AVX2 (BFD) the kernels read a partial last vector of B in pieces, \
       whose scratch registers made the compiler spill accumulators of the \
       4 x 3-vector block in every step of the shared dimension: B whole \
       (bf) gets its own copy of the kernels. */ \
    FM_DEFINE_BLOCK_COPY(NAME, T, MT, ATTR, w, 1) \
    FM_DEFINE_BLOCK_COPY(NAME, T, MT, ATTR, p, 0) \
    static inline __attribute__((always_inline)) ATTR void NAME##_block(int bf, int nv, \
            Py_ssize_t m, Py_ssize_t k, const T* a, Py_ssize_t asi, Py_ssize_t asp, int idx, \
            const long long* ridx, Py_ssize_t rs, const T* b, Py_ssize_t ldb, T* c, \
            Py_ssize_t ldc, MT last, int acc, int epi, const T* bias, T* cs, fm_adam_epi* ep) { \
        if (BFD && bf) \
            NAME##_block_w(nv, m, k, a, asi, asp, idx, ridx, rs, b, ldb, c, ldc, last, acc, \
                           epi, bias, cs, ep); \
        else \
            NAME##_block_p(nv, m, k, a, asi, asp, idx, ridx, rs, b, ldb, c, ldc, last, acc, \
                           epi, bias, cs, ep); \
    } \
    ATTR static void NAME(int kind, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, \
            const T* A, Py_ssize_t lda, const long long* ridx, const T* B, Py_ssize_t ldb, \
            T* C, Py_ssize_t ldc, int accumulate, int epi, const T* bias, T* cs, \
            fm_adam_epi* ep) { \
        const Py_ssize_t NB = 4 * L; \
        Py_ssize_t asi = kind == FM_TN ? 1 : lda, asp = kind == FM_TN ? lda : 1; \
        int idx = !ridx ? FM_IDX_NONE : kind == FM_TN ? FM_IDX_DEPTH : FM_IDX_ROWS; \
        T panel[FM_KC * 4 * L] __attribute__((aligned(64))); \
        /* C's vectors spread evenly over the fewest blocks of at most NVX \
           (13 as 4 3 3 3, not 4 4 4 1: a block of one vector runs at a \
           quarter of the multiply-add rate, its row broadcasts the bound), \
           the larger blocks first so the masked vector ends the last. */ \
        Py_ssize_t nv_all = (n + L - 1) / L, n_blk = (nv_all + NVX - 1) / NVX; \
        /* NN and TN pack B when it would not stay in L1 read in place: \
           deeper than one panel, or rows 2 KiB apart or more (which fall on \
           few L1 sets); and when C has the rows to repay the copy. An \
           unaligned B also splits a cache line in every load in place. \
           The chains go on across panels only from C's plain sums: not \
           with accumulate, nor an epilogue that reads C. */ \
        int pack = fm_pack_deep && kind != FM_NT && m >= FM_PACK_MIN_ROWS && k > 0 && !accumulate \
                   && (epi == FM_EPI_NONE || epi == FM_EPI_BIAS_RELU) \
                   && (k > FM_KC || ldb * (Py_ssize_t)sizeof(T) >= FM_PACK_ROW_BYTES); \
        for (Py_ssize_t j0 = 0, blk = 0; j0 < n; blk++) { \
            int nv = (int)(nv_all / n_blk + (blk < nv_all % n_blk)); \
            Py_ssize_t nc = n - j0 < nv * L ? n - j0 : nv * L; \
            MT last = FM_MK_##S((int)(nc - (nv - 1) * L)); \
            if (kind != FM_NT && !pack) { \
                NAME##_block(last == FM_MK_##S(L), nv, m, k, A, asi, asp, idx, ridx, lda, B + j0, ldb, C + j0, ldc, last, \
                             accumulate, epi, bias ? bias + j0 : bias, cs ? cs + j0 : cs, ep); \
                j0 += nc; \
                continue; \
            } \
            if (kind != FM_NT) { \
                /* B's columns j0.. in aligned panels of equal depth (at most \
                   FM_KC) that stay in L1 while every row block streams past, \
                   each chain going on from the last panel's sums in C. */ \
                Py_ssize_t n_pan = (k + FM_KC - 1) / FM_KC, kc0 = (k + n_pan - 1) / n_pan; \
                for (Py_ssize_t p0 = 0; p0 < k; p0 += kc0) { \
                    Py_ssize_t kc = k - p0 < kc0 ? k - p0 : kc0; \
                    for (Py_ssize_t p = 0; p < kc; p++) { \
                        const T* src = B + (p0 + p) * ldb + j0; \
                        for (int v = 0; v < nv - 1; v++) \
                            FM_ST_##S(panel + p * NB + v * L, FM_LD_##S(src + v * L)); \
                        FM_ST_##S(panel + p * NB + (nv - 1) * L, \
                                  FM_LDM_##S(last, src + (nv - 1) * L)); \
                    } \
                    NAME##_block(1, nv, m, kc, \
                                 idx == FM_IDX_NONE ? A + p0 * asp : idx == FM_IDX_ROWS ? A + p0 : A, \
                                 asi, asp, idx, idx == FM_IDX_DEPTH ? ridx + p0 : ridx, lda, panel, NB, \
                                 C + j0, ldc, last, p0 > 0 ? FM_ACC_CHAIN : 0, \
                                 p0 + kc >= k ? epi : FM_EPI_NONE, bias ? bias + j0 : bias, cs, ep); \
                } \
                j0 += nc; \
                continue; \
            } \
            /* B^T's columns j0.. are B's rows: copy them, FM_KC deep at a \
               time, into a row-major panel the block kernel streams. */ \
            for (Py_ssize_t p0 = 0; p0 < k || p0 == 0; p0 += FM_KC) { \
                Py_ssize_t kc = k - p0 < FM_KC ? k - p0 : FM_KC; \
                for (Py_ssize_t jj = 0; jj < nc; jj++) { \
                    const T* src = B + (j0 + jj) * ldb + p0; \
                    for (Py_ssize_t p = 0; p < kc; p++) panel[p * NB + jj] = src[p]; \
                } \
                for (Py_ssize_t p = 0; p < kc; p++) \
                    for (Py_ssize_t jj = nc; jj < nv * L; jj++) panel[p * NB + jj] = 0; \
                NAME##_block(1, nv, m, kc, A + p0 * asp, asi, asp, FM_IDX_NONE, NULL, 0, panel, NB, C + j0, ldc, \
                             last, accumulate || p0 > 0, p0 + kc >= k ? epi : FM_EPI_NONE, \
                             bias ? bias + j0 : bias, cs ? cs + j0 : cs, ep); \
            } \
            j0 += nc; \
        } \
    }

    FM_DEFINE_SMALL_GEMM(fm_sg_d_avx512, double, ZD, 8, __mmask8, __m512d, ZD, FM_TARGET_AVX512, 4, 0, 8, 8, 8, 6)
    FM_DEFINE_SMALL_GEMM(fm_sg_f_avx512, float, ZF, 16, __mmask16, __m512d, ZD, FM_TARGET_AVX512, 4, 0, 8, 8, 8, 6)
    FM_DEFINE_SMALL_GEMM(fm_sg_d_avx2, double, YD, 4, int, __m256d, YD, FM_TARGET_AVX2, 3, 1, 8, 6, 4, 3)
    FM_DEFINE_SMALL_GEMM(fm_sg_f_avx2, float, YF, 8, int, __m256d, YD, FM_TARGET_AVX2, 3, 1, 8, 6, 4, 3)
    #endif

    /* C (+)= op(A) op(B) (see FM_NN...) on m x n C, shared dimension k.
       Returns 0, doing nothing, when this CPU has no kernel. */
    #ifdef FM_HAVE_X86_KERNELS
    #define FM_SG_PICK(NAME, ...) switch (fm_isa()) { \
        case FM_ISA_AVX512: NAME##_avx512(__VA_ARGS__); return 1; \
        case FM_ISA_AVX2: NAME##_avx2(__VA_ARGS__); return 1; }
    #else
    #define FM_SG_PICK(NAME, ...)
    #endif
    #define FM_DEFINE_SG_ENTRY(NAME, T) \
    static int fm_small_gemm_idx_##T(int kind, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, \
            const T* A, Py_ssize_t lda, const long long* ridx, const T* B, Py_ssize_t ldb, \
            T* C, Py_ssize_t ldc, int accumulate, int epi, const T* bias, T* cs) { \
        FM_SG_PICK(NAME, kind, m, n, k, A, lda, ridx, B, ldb, C, ldc, accumulate, epi, bias, \
                   cs, NULL) \
        return 0; \
    } \
    static int fm_small_gemm_adam_##T(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, \
            const T* A, Py_ssize_t lda, const long long* ridx, const T* B, \
            fm_adam_epi* ep) { \
        FM_SG_PICK(NAME, FM_TN, m, n, k, A, lda, ridx, B, n, (T*)ep->th, n, 0, FM_EPI_ADAM, \
                   NULL, NULL, ep) \
        return 0; \
    } \
    static int fm_small_gemm_epi_##T(int kind, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, \
            const T* A, Py_ssize_t lda, const T* B, Py_ssize_t ldb, T* C, \
            Py_ssize_t ldc, int accumulate, int epi, const T* bias, T* cs) { \
        return fm_small_gemm_idx_##T(kind, m, n, k, A, lda, NULL, B, ldb, C, ldc, accumulate, \
                                     epi, bias, cs); \
    } \
    static int fm_small_gemm_##T(int kind, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, \
            const T* A, Py_ssize_t lda, const T* B, Py_ssize_t ldb, T* C, \
            Py_ssize_t ldc, int accumulate) { \
        return fm_small_gemm_epi_##T(kind, m, n, k, A, lda, B, ldb, C, ldc, accumulate, \
                                     FM_EPI_NONE, NULL, NULL); \
    }
    FM_DEFINE_SG_ENTRY(fm_sg_d, double)
    FM_DEFINE_SG_ENTRY(fm_sg_f, float)
    """
    int FM_NN
    int FM_TN
    int FM_NT
    int FM_KC
    int fm_pack_deep
    int FM_EPI_NONE
    int FM_EPI_BIAS_RELU
    int FM_EPI_RELU_GRAD
    int FM_EPI_ADAM
    ctypedef struct fm_adam_epi:
        void* th
        void* s1
        void* s2
        double lr, b1, b2, eps, l2
        double sqv[8]
        unsigned char badv[64]
    int fm_small_gemm_adam_d "fm_small_gemm_adam_double"(
        Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const double* A, Py_ssize_t lda,
        const long long* ridx, const double* B, fm_adam_epi* ep) noexcept nogil
    int fm_small_gemm_adam_f "fm_small_gemm_adam_float"(
        Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const float* A, Py_ssize_t lda,
        const long long* ridx, const float* B, fm_adam_epi* ep) noexcept nogil
    int fm_small_gemm_epi_d "fm_small_gemm_epi_double"(
        int kind, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const double* A,
        Py_ssize_t lda, const double* B, Py_ssize_t ldb, double* C,
        Py_ssize_t ldc, int accumulate, int epi, const double* bias,
        double* cs) noexcept nogil
    int fm_small_gemm_idx_d "fm_small_gemm_idx_double"(
        int kind, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const double* A,
        Py_ssize_t lda, const long long* ridx, const double* B, Py_ssize_t ldb,
        double* C, Py_ssize_t ldc, int accumulate, int epi, const double* bias,
        double* cs) noexcept nogil
    int fm_small_gemm_idx_f "fm_small_gemm_idx_float"(
        int kind, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const float* A,
        Py_ssize_t lda, const long long* ridx, const float* B, Py_ssize_t ldb,
        float* C, Py_ssize_t ldc, int accumulate, int epi, const float* bias,
        float* cs) noexcept nogil
    int fm_small_gemm_epi_f "fm_small_gemm_epi_float"(
        int kind, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const float* A,
        Py_ssize_t lda, const float* B, Py_ssize_t ldb, float* C,
        Py_ssize_t ldc, int accumulate, int epi, const float* bias,
        float* cs) noexcept nogil
    int fm_small_gemm_d "fm_small_gemm_double"(int kind, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                        const double* A, Py_ssize_t lda, const double* B,
                        Py_ssize_t ldb, double* C, Py_ssize_t ldc,
                        int accumulate) noexcept nogil
    int fm_small_gemm_f "fm_small_gemm_float"(int kind, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                        const float* A, Py_ssize_t lda, const float* B,
                        Py_ssize_t ldb, float* C, Py_ssize_t ldc,
                        int accumulate) noexcept nogil

cdef enum:
    # Multiply-adds above which BLAS is used: the crossover measured with
    # benchmarks/small_gemm.py (README, "Small products"), on operands
    # aligned as training's are. With deep or wide B packed in panels, the
    # kernels beat OpenBLAS 0.3.30 on all three products up to 400^3 and
    # W1's 200 x 784 x 256 (both dtypes); at 512^3 its TN is faster, and
    # so is its float64 NN above ~400 x 1024 x 256 (small_max_work: no limit
    # where the kernels are AVX-512 and OpenBLAS's are not, 1.65-2.1x its
    # speed on Zen 5 up to 1024^3). Below ~1M OpenBLAS's
    # small-matrix TN kernel (in its AVX-512 builds) is a little faster and
    # is used where OpenBLAS runs its AVX-512 kernels (_blas.blas_avx512);
    # on AMD's Zen 1 (AVX2, OpenBLAS's Haswell kernels) the kernels here
    # were 1.03-1.5x as fast below 1M, and 2.5-3x on Zen 5 (AVX-512, where
    # OpenBLAS 0.3.30 falls back to its Haswell kernels). Except where a
    # network's epoch may run split (prod_tn's exact): the kernels here
    # give the same bits for any split of the output's columns; OpenBLAS
    # does not (src/_epoch.pyx).
    SMALL_MAX_WORK = 67108864
    TN_MIN_WORK = 1048576
    # Multiply-adds above which the rows are split over threads.
    SMALL_PAR_MIN = 262144
    SMALL_ROW_ALIGN = 8     # thread row splits fall on whole row blocks


cdef inline Py_ssize_t small_max_work() noexcept nogil:
    """Multiply-adds above which a product goes to BLAS: SMALL_MAX_WORK, or
    no limit where these kernels are AVX-512 and OpenBLAS's are not."""
    if fm_isa() == FM_ISA_AVX512 and blas_pre_avx512():
        return PY_SSIZE_T_MAX
    return SMALL_MAX_WORK


cdef inline int small_gemm(int kind, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                           const floating* A, Py_ssize_t lda,
                           const floating* B, Py_ssize_t ldb, floating* C,
                           Py_ssize_t ldc, int accumulate,
                           int n_threads) noexcept nogil:
    """The kernels above on C's rows split across threads; 0 if no kernel.

    A thread's rows are a whole number of row blocks, so the split changes
    no sum: results do not depend on n_threads.
    """
    return small_gemm_epi(kind, m, n, k, A, lda, B, ldb, C, ldc, accumulate,
                          FM_EPI_NONE, NULL, NULL, n_threads)


cdef inline int small_gemm_epi(int kind, Py_ssize_t m, Py_ssize_t n,
                               Py_ssize_t k, const floating* A, Py_ssize_t lda,
                               const floating* B, Py_ssize_t ldb, floating* C,
                               Py_ssize_t ldc, int accumulate, int epi,
                               const floating* bias, floating* cs,
                               int n_threads) noexcept nogil:
    """small_gemm with an epilogue (FM_EPI_*); column sums (cs) keep the
    rows on one thread, whose order they add them in."""
    return small_gemm_idx(kind, m, n, k, A, lda, <const long long*>NULL, B,
                          ldb, C, ldc, accumulate, epi, bias, cs, n_threads)


cdef inline int small_gemm_idx(int kind, Py_ssize_t m, Py_ssize_t n,
                               Py_ssize_t k, const floating* A, Py_ssize_t lda,
                               const long long* ridx, const floating* B,
                               Py_ssize_t ldb, floating* C, Py_ssize_t ldc,
                               int accumulate, int epi, const floating* bias,
                               floating* cs, int n_threads) noexcept nogil:
    """small_gemm_epi where, with ridx, A's rows are rows ridx[] of the
    matrix A of row stride lda (NN: C's m rows; TN: the k rows of the
    shared dimension): a batch's input rows read in place, not gathered."""
    cdef Py_ssize_t chunk, c, n_chunks, i0, rows
    cdef const floating* Ai
    cdef const long long* ri
    if fm_isa() == 0:
        return 0
    if (n_threads > 1 and m * n * k >= SMALL_PAR_MIN and m >= 2 * SMALL_ROW_ALIGN
            and cs == NULL):
        chunk = (m + n_threads - 1) // n_threads
        chunk = (chunk + SMALL_ROW_ALIGN - 1) // SMALL_ROW_ALIGN * SMALL_ROW_ALIGN
        n_chunks = (m + chunk - 1) // chunk
        for c in prange(n_chunks, schedule='static', num_threads=n_threads):
            i0 = c * chunk
            rows = min(chunk, m - i0)
            ri = ridx
            if kind == FM_TN:
                Ai = A + i0
            elif ridx != NULL:
                Ai = A
                ri = ridx + i0
            else:
                Ai = A + i0 * lda
            if floating is float:
                fm_small_gemm_idx_f(kind, rows, n, k, Ai, lda, ri, B, ldb,
                                    C + i0 * ldc, ldc, accumulate, epi, bias, cs)
            else:
                fm_small_gemm_idx_d(kind, rows, n, k, Ai, lda, ri, B, ldb,
                                    C + i0 * ldc, ldc, accumulate, epi, bias, cs)
        return 1
    if floating is float:
        return fm_small_gemm_idx_f(kind, m, n, k, A, lda, ridx, B, ldb, C, ldc,
                                   accumulate, epi, bias, cs)
    else:
        return fm_small_gemm_idx_d(kind, m, n, k, A, lda, ridx, B, ldb, C, ldc,
                                   accumulate, epi, bias, cs)


cdef inline int tn_adam(const floating* A, Py_ssize_t lda,
                        const long long* ridx, Py_ssize_t m, Py_ssize_t n,
                        Py_ssize_t k, const floating* D, floating* th,
                        floating* s1, floating* s2, double lr, double b1,
                        double b2, double eps, double l2,
                        double* sq) noexcept nogil:
    """Adam's step on the m x n weights th (moments s1, s2, row-major) with
    the gradient A^T D (+ l2 th) computed block by block in registers (A: k
    rows of stride lda, or rows ridx[] of it; D: k x n): the gradient is
    never stored. sq += sum th^2 before the step (with l2 != 0). Returns 1
    if the step made a parameter non-finite, 0 if not, -1 (nothing done)
    without a kernel. On one thread."""
    cdef fm_adam_epi ep
    cdef int done, h
    cdef const floating* bad
    ep.th = th
    ep.s1 = s1
    ep.s2 = s2
    ep.lr = lr
    ep.b1 = b1
    ep.b2 = b2
    ep.eps = eps
    ep.l2 = l2
    memset(ep.sqv, 0, sizeof(ep.sqv))
    memset(ep.badv, 0, sizeof(ep.badv))
    if floating is float:
        done = fm_small_gemm_adam_f(m, n, k, A, lda, ridx, D, &ep)
    else:
        done = fm_small_gemm_adam_d(m, n, k, A, lda, ridx, D, &ep)
    if not done:
        return -1
    bad = <const floating*>ep.badv
    done = 0
    for h in range(64 // sizeof(floating)):
        done |= bad[h] != 0
    for h in range(8):
        sq[0] += ep.sqv[h]
    return done


# The products of forward and backward (src/_layers.pxd), row-major, with the
# signatures of _blas.mm_nn, mm_tn, mm_nt plus the thread count: the
# kernels above for small products, BLAS for large ones and on CPUs without
# AVX2. beta is 0 or 1.
cdef inline void prod_nn(const floating* A, int lda, const floating* B,
                         floating* C, int r, int k, int c, floating beta,
                         int n_threads) noexcept nogil:
    """C[r, c] = A[r, k] @ B[k, c] + beta C."""
    if (<Py_ssize_t>r * k * c > small_max_work()
            or not small_gemm(FM_NN, r, c, k, A, lda, B, c, C, c,
                              beta != 0, n_threads)):
        mm_nn(A, lda, B, C, r, k, c, beta)


cdef inline void prod_tn(const floating* A, int lda, const floating* B,
                         floating* C, int r, int k, int c, floating beta,
                         int n_threads, bint exact) noexcept nogil:
    """C[k, c] = A[r, k].T @ B[r, c] + beta C. exact: in the kernels here
    up to small_max_work(), which give the same bits for any split of C's columns
    (the two-core epoch's), though an OpenBLAS running AVX-512 kernels is
    faster below TN_MIN_WORK."""
    cdef Py_ssize_t work = <Py_ssize_t>r * k * c
    if (work > small_max_work()
            or (work <= TN_MIN_WORK and not exact and fm_isa() == FM_ISA_AVX512
                and blas_avx512())
            or not small_gemm(FM_TN, k, c, r, A, lda, B, c, C, c,
                              beta != 0, n_threads)):
        mm_tn(A, lda, B, C, r, k, c, beta)


cdef inline void prod_nt(const floating* A, const floating* B, floating* C,
                         int r, int c, int k, floating beta,
                         int n_threads) noexcept nogil:
    """C[r, k] = A[r, c] @ B[k, c].T + beta C."""
    if (<Py_ssize_t>r * k * c > small_max_work()
            or not small_gemm(FM_NT, r, k, c, A, c, B, c, C, k,
                              beta != 0, n_threads)):
        mm_nt(A, B, C, r, c, k, beta)


cdef inline bint prod_nn_bias_relu(const floating* A, int lda,
                                   const floating* B, floating* C, int r,
                                   int k, int c, const floating* bias,
                                   int n_threads) noexcept nogil:
    """C[r, c] = max(A[r, k] @ B[k, c] + bias, 0) in the kernels, the bias
    and relu applied to the sums in registers (bias_act's arithmetic, one
    pass over C fewer). False, doing nothing, where prod_nn would use BLAS."""
    return (<Py_ssize_t>r * k * c <= small_max_work()
            and small_gemm_epi(FM_NN, r, c, k, A, lda, B, c, C, c, 0,
                               FM_EPI_BIAS_RELU, bias, <floating*>NULL,
                               n_threads) != 0)


cdef inline bint prod_nt_relu_grad(const floating* A, const floating* B,
                                   floating* C, int r, int c, int k,
                                   floating* cs, bint cs_add,
                                   int n_threads) noexcept nogil:
    """C[r, k] = (A[r, c] @ B[k, c].T) * [C > 0]: the delta through a relu
    layer overwriting that layer's output C, as prod_nt then deriv_set do
    it; and cs[k] (+)= its column sums, as col_sums adds them (rows in
    order). False, doing nothing, where prod_nt would use BLAS or the shared
    dimension c spans more than one packed panel (C would be overwritten by
    partial sums before the last one reads it)."""
    if <Py_ssize_t>r * k * c > small_max_work() or c > FM_KC or fm_isa() == 0:
        return False
    if not cs_add:
        memset(cs, 0, k * sizeof(floating))
    return small_gemm_epi(FM_NT, r, k, c, A, c, B, c, C, k, 0,
                          FM_EPI_RELU_GRAD, <const floating*>NULL, cs,
                          n_threads) != 0


cdef inline bint kernels_take(Py_ssize_t r, Py_ssize_t k,
                              Py_ssize_t c) noexcept nogil:
    """True if prod_nn, prod_tn and prod_nt of a layer of k inputs and c
    outputs on r rows all run in the kernels above (none goes to BLAS), for
    r and any fewer rows."""
    cdef Py_ssize_t work = r * k * c
    return fm_isa() != 0 and work <= small_max_work()
