# The softmax log loss of class-index targets in AVX-512 and AVX2, float64
# and float32, exp included.
#
# The softmax of the log loss took one libm exp per output, and its scalar
# bias add, maximum, sums and scaling: with 10 classes a thirteenth of a W2
# float64 epoch (digits, batch 32), more than its output layer's products.
# Here a row goes to a lane, eight rows at once with AVX-512 and four with
# AVX2, for up to 16 outputs.
#
# exp: Cody-Waite reduction x = n ln2 + r (ln2 in two parts, |r| <= ln2/2,
# n = round(x / ln2)), e^r by its Taylor polynomial to degree 13 (the first
# term left out, r^14 / 14!, is below 4.3e-18 relative), then 2^n: AVX-512
# by vscalefpd; AVX2 as two products by 2^h and 2^(n-h), h = floor(n/2),
# each factor a normal number built from its exponent bits, so the first
# product is exact and the second rounds once, as vscalefpd does: the two
# give the same bits. Both give 0 below the range (subnormals flushed when
# the epoch's FTZ mode is on) and keep NaN: within an ulp of libm's
# (tests/test_kernels.py). A row's sum runs over its outputs in order, as
# the scalar loop's does, whatever its lane, so a row's values do not depend
# on how rows are split over threads, nor on the instruction set.
# float32 (AVX2 on both instruction sets: eight rows at once): the same
# reduction with ln2 in float parts, the polynomial to degree 7 (r^8 / 8!
# is below 5.1e-9), 2^n in two products: within a float32 ulp of the exact
# value. Wider rows and CPUs without AVX2 keep the scalar loop.
from _simd cimport fm_isa

cdef extern from *:
    """
    #include <math.h>
    #ifdef FM_HAVE_X86_KERNELS
    /* 1/13!, ..., 1/2, 1, 1: e^r's Taylor coefficients, highest first */
    static const double fm_exp_c[14] = {
        1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0,
        1.0 / 3628800.0, 1.0 / 362880.0, 1.0 / 40320.0, 1.0 / 5040.0,
        1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0};

    static inline __attribute__((always_inline)) FM_TARGET_AVX512 __m512d
    fm_exp_zd(__m512d x) {
        const double* c = fm_exp_c;
        __m512d nf, r, p;
        /* the result is 0 below -746 and 2^1024 (inf) above 710; max and
           min with the bound second keep a NaN x */
        x = _mm512_min_pd(_mm512_set1_pd(710.0), _mm512_max_pd(_mm512_set1_pd(-746.0), x));
        nf = _mm512_roundscale_pd(_mm512_mul_pd(x, _mm512_set1_pd(1.4426950408889634)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        r = _mm512_fnmadd_pd(nf, _mm512_set1_pd(6.93147180369123816490e-01), x);
        r = _mm512_fnmadd_pd(nf, _mm512_set1_pd(1.90821492927058770002e-10), r);
        p = _mm512_set1_pd(c[0]);
        for (int j = 1; j < 14; j++) p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(c[j]));
        return _mm512_scalef_pd(p, nf);
    }

    /* 2^n for integral n in [-1022, 1023]: n + 1023 in the exponent field
       (added to 2^52 + 1023 it is the integer in the low mantissa bits) */
    static inline __attribute__((always_inline)) FM_TARGET_AVX2 __m256d
    fm_pow2_yd(__m256d n) {
        __m256i bits = _mm256_castpd_si256(_mm256_add_pd(n, _mm256_set1_pd(4503599627371519.0)));
        return _mm256_castsi256_pd(_mm256_slli_epi64(bits, 52));
    }

    static inline __attribute__((always_inline)) FM_TARGET_AVX2 __m256d
    fm_exp_yd(__m256d x) {
        const double* c = fm_exp_c;
        __m256d nf, r, p, h;
        x = _mm256_min_pd(_mm256_set1_pd(710.0), _mm256_max_pd(_mm256_set1_pd(-746.0), x));
        nf = _mm256_round_pd(_mm256_mul_pd(x, _mm256_set1_pd(1.4426950408889634)),
                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        r = _mm256_fnmadd_pd(nf, _mm256_set1_pd(6.93147180369123816490e-01), x);
        r = _mm256_fnmadd_pd(nf, _mm256_set1_pd(1.90821492927058770002e-10), r);
        p = _mm256_set1_pd(c[0]);
        for (int j = 1; j < 14; j++) p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(c[j]));
        /* n in [-1076, 1024]: h and n - h in [-538, 512] */
        h = _mm256_floor_pd(_mm256_mul_pd(nf, _mm256_set1_pd(0.5)));
        p = _mm256_mul_pd(p, fm_pow2_yd(h));
        /* the build's -fassociative-math would multiply the two factors
           first: 2^1024 overflows where the result does not */
        __asm__("" : "+x"(p));
        return _mm256_mul_pd(p, fm_pow2_yd(_mm256_sub_pd(nf, h)));
    }

    FM_TARGET_AVX512 static void fm_exp_shift_avx512(double* z, Py_ssize_t n, double m) {
        for (Py_ssize_t i = 0; i < n; i += 8) {
            __mmask8 k = n - i >= 8 ? (__mmask8)0xff : (__mmask8)((1u << (n - i)) - 1u);
            __m512d x = _mm512_sub_pd(_mm512_maskz_loadu_pd(k, z + i), _mm512_set1_pd(m));
            _mm512_mask_storeu_pd(z + i, k, fm_exp_zd(x));
        }
    }

    /* The softmax log loss of n rows of k <= 16 outputs (rows k apart in z,
       bias b added) against class indices, eight rows at a time, a row per
       lane: each row's delta w (softmax - onehot) written over it and its
       loss w ((m + log(s)) - z_t) in loss[r]. Row r is sample rows[r], its
       class cls[rows[r]] (cls_size bytes an index), its weight w =
       inv_norm sw[rows[r]] (1 without sw). Every row takes the same
       operations whatever its lane (max and sum over the outputs in index
       order), so any split of the rows gives the same bits. A row to a
       vector (the previous kernel) left 6 of 8 lanes idle in the second
       vector of a 10-class row and waited on two horizontal reductions a
       row: ~140 cycles a row on W2 float64, 7% of its epoch. */
    static inline long long fm_class_index(const void* p, int size, long long i) {
        if (size == 1) return ((const unsigned char*)p)[i];
        if (size == 2) return ((const unsigned short*)p)[i];
        if (size == 4) return ((const int*)p)[i];
        return ((const long long*)p)[i];
    }
    FM_TARGET_AVX512 static void fm_softmax_lanes_avx512(double* z, const double* b,
            const void* cls, int cls_size, const double* sw, const long long* rows,
            double inv_norm, Py_ssize_t n, Py_ssize_t k, double* loss) {
        double e[16 * 8] __attribute__((aligned(64)));
        long long tl[8] __attribute__((aligned(64)));
        double wl[8] __attribute__((aligned(64))), ml[8] __attribute__((aligned(64))),
               sl[8] __attribute__((aligned(64))), zl[8] __attribute__((aligned(64)));
        const __m512i vidx = _mm512_mullo_epi64(_mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7),
                                                _mm512_set1_epi64(k));
        for (Py_ssize_t r0 = 0; r0 < n; r0 += 8) {
            int nr = n - r0 < 8 ? (int)(n - r0) : 8;
            __mmask8 mk = (__mmask8)((1u << nr) - 1u);
            double* base = z + r0 * k;
            for (int r = 0; r < 8; r++) {
                long long i = rows[r0 + (r < nr ? r : 0)];  /* idle lanes: a real row */
                tl[r] = fm_class_index(cls, cls_size, i);
                wl[r] = inv_norm * (sw ? sw[i] : 1.0);
            }
            const __m512i ti = _mm512_load_si512((const void*)tl);
            const __m512d w = _mm512_load_pd(wl);
            /* the largest output (max_pd returns its second operand when
               the first is NaN: a NaN is passed over, as the scalar loop's
               comparison does; it reaches the loss through exp) */
            __m512d m = _mm512_set1_pd(-INFINITY), zt = _mm512_setzero_pd(), v, s, inv;
            for (Py_ssize_t j = 0; j < k; j++) {
                v = _mm512_add_pd(_mm512_mask_i64gather_pd(_mm512_setzero_pd(), mk, vidx,
                                                           base + j, 8),
                                  _mm512_set1_pd(b[j]));
                _mm512_store_pd(e + j * 8, v);
                m = _mm512_max_pd(v, m);
                zt = _mm512_mask_mov_pd(zt, _mm512_cmpeq_epi64_mask(ti, _mm512_set1_epi64(j)), v);
            }
            s = _mm512_setzero_pd();
            for (Py_ssize_t j = 0; j < k; j++) {
                v = fm_exp_zd(_mm512_sub_pd(_mm512_load_pd(e + j * 8), m));
                _mm512_store_pd(e + j * 8, v);
                s = _mm512_add_pd(s, v);
            }
            inv = _mm512_div_pd(w, s);
            for (Py_ssize_t j = 0; j < k; j++) {
                v = _mm512_mul_pd(_mm512_load_pd(e + j * 8), inv);
                v = _mm512_mask_sub_pd(v, _mm512_cmpeq_epi64_mask(ti, _mm512_set1_epi64(j)), v, w);
                _mm512_mask_i64scatter_pd(base + j, mk, vidx, v, 8);
            }
            _mm512_store_pd(ml, m);
            _mm512_store_pd(sl, s);
            _mm512_store_pd(zl, zt);
            for (int r = 0; r < nr; r++)
                loss[r0 + r] = wl[r] * ((ml[r] + log(sl[r])) - zl[r]);
        }
    }
    /* float32: 2^n for integral n in [-126, 127], as fm_pow2_yd */
    static inline __attribute__((always_inline)) FM_TARGET_AVX2 __m256
    fm_pow2_ys(__m256 n) {
        __m256i bits = _mm256_castps_si256(_mm256_add_ps(n, _mm256_set1_ps(8388735.0f)));
        return _mm256_castsi256_ps(_mm256_slli_epi32(bits, 23));
    }

    static inline __attribute__((always_inline)) FM_TARGET_AVX2 __m256
    fm_exp_ys(__m256 x) {
        static const float c[8] = {1.0f / 5040.0f, 1.0f / 720.0f, 1.0f / 120.0f,
                                   1.0f / 24.0f, 1.0f / 6.0f, 0.5f, 1.0f, 1.0f};
        __m256 nf, r, p, h;
        /* 0 below -104 (e^-104 < 2^-150), inf above 89 */
        x = _mm256_min_ps(_mm256_set1_ps(89.0f), _mm256_max_ps(_mm256_set1_ps(-104.0f), x));
        nf = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        r = _mm256_fnmadd_ps(nf, _mm256_set1_ps(0.693145751953125f), x);
        r = _mm256_fnmadd_ps(nf, _mm256_set1_ps(1.428606765330187045e-06f), r);
        p = _mm256_set1_ps(c[0]);
        for (int j = 1; j < 8; j++) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c[j]));
        /* n in [-150, 128]: h and n - h in [-75, 64] */
        h = _mm256_floor_ps(_mm256_mul_ps(nf, _mm256_set1_ps(0.5f)));
        p = _mm256_mul_ps(p, fm_pow2_ys(h));
        __asm__("" : "+x"(p));  /* as in fm_exp_yd */
        return _mm256_mul_ps(p, fm_pow2_ys(_mm256_sub_ps(nf, h)));
    }

    /* The AVX2 kernels, generated for float64 (four rows to a vector) and
       float32 (eight): OP(x) names _mm256_x_pd or _mm256_x_ps, EXP the
       vector exp, CMPEQ / SET1I the class lanes' integer compare and
       broadcast, LOG the scalar log of the loss. */
    #define FM_YD(x) _mm256_##x##_pd
    #define FM_YS(x) _mm256_##x##_ps

    /* z[i] = exp(z[i] - m) */
    #define FM_DEFINE_EXP_SHIFT_AVX2(NAME, T, W, OP, EXP)                          \
    FM_TARGET_AVX2 static void NAME(T* z, Py_ssize_t n, T m) {                    \
        T t[W] __attribute__((aligned(32)));                                      \
        Py_ssize_t i = 0;                                                         \
        for (; i + W <= n; i += W)                                                \
            OP(storeu)(z + i, EXP(OP(sub)(OP(loadu)(z + i), OP(set1)(m))));       \
        if (i < n) {                                                              \
            int j;                                                                \
            for (j = 0; j < W; j++) t[j] = i + j < n ? z[i + j] : m;              \
            OP(store)(t, EXP(OP(sub)(OP(load)(t), OP(set1)(m))));                 \
            for (j = 0; i + j < n; j++) z[i + j] = t[j];                          \
        }                                                                         \
    }

    /* fm_softmax_lanes_avx512 with W rows to an AVX2 vector. AVX2's
       gathers and scatters are slow on some CPUs (microcoded on Zen 1): a
       block of W rows is copied into lanes and back with plain moves. In
       float32 each row's values are the scalar float loop's but for exp
       (and so for every value after it). */
    #define FM_DEFINE_SOFTMAX_LANES_AVX2(NAME, T, V, W, OP, EXP, IT, CMPEQ, SET1I, LOG) \
    FM_TARGET_AVX2 static void NAME(T* z, const T* b, const void* cls, int cls_size,   \
            const T* sw, const long long* rows, double inv_norm, Py_ssize_t n,       \
            Py_ssize_t k, double* loss) {                                            \
        T e[16 * W] __attribute__((aligned(32)));                                    \
        IT tl[W] __attribute__((aligned(32)));                                       \
        T wl[W] __attribute__((aligned(32))), ml[W] __attribute__((aligned(32))),    \
          sl[W] __attribute__((aligned(32))), zl[W] __attribute__((aligned(32)));    \
        for (Py_ssize_t r0 = 0; r0 < n; r0 += W) {                                   \
            int nr = n - r0 < W ? (int)(n - r0) : W;                                 \
            T* base = z + r0 * k;                                                    \
            for (int r = 0; r < W; r++) {                                            \
                long long i = rows[r0 + (r < nr ? r : 0)];  /* idle lanes: a real row */ \
                tl[r] = (IT)fm_class_index(cls, cls_size, i);                         \
                wl[r] = (T)(inv_norm * (sw ? (double)sw[i] : 1.0));                  \
                for (Py_ssize_t j = 0; j < k; j++)                                   \
                    e[j * W + r] = r < nr ? base[r * k + j] : (T)0;                  \
            }                                                                        \
            const __m256i ti = _mm256_load_si256((const __m256i*)tl);                \
            const V w = OP(load)(wl);                                                \
            V m = OP(set1)(-INFINITY), zt = OP(setzero)(), v, s, inv, is_t;          \
            for (Py_ssize_t j = 0; j < k; j++) {                                     \
                v = OP(add)(OP(load)(e + j * W), OP(set1)(b[j]));                    \
                OP(store)(e + j * W, v);                                             \
                m = OP(max)(v, m);  /* a NaN v is passed over, as with AVX-512 */    \
                is_t = OP(castsi256)(CMPEQ(ti, SET1I((IT)j)));                        \
                zt = OP(blendv)(zt, v, is_t);                                        \
            }                                                                        \
            s = OP(setzero)();                                                       \
            for (Py_ssize_t j = 0; j < k; j++) {                                     \
                v = EXP(OP(sub)(OP(load)(e + j * W), m));                            \
                OP(store)(e + j * W, v);                                             \
                s = OP(add)(s, v);                                                   \
            }                                                                        \
            inv = OP(div)(w, s);                                                     \
            for (Py_ssize_t j = 0; j < k; j++) {                                     \
                v = OP(mul)(OP(load)(e + j * W), inv);                               \
                is_t = OP(castsi256)(CMPEQ(ti, SET1I((IT)j)));                        \
                OP(store)(e + j * W, OP(blendv)(v, OP(sub)(v, w), is_t));            \
            }                                                                        \
            for (int r = 0; r < nr; r++)                                             \
                for (Py_ssize_t j = 0; j < k; j++)                                   \
                    base[r * k + j] = e[j * W + r];                                  \
            OP(store)(ml, m);                                                        \
            OP(store)(sl, s);                                                        \
            OP(store)(zl, zt);                                                       \
            for (int r = 0; r < nr; r++)                                             \
                loss[r0 + r] = wl[r] * ((ml[r] + LOG(sl[r])) - zl[r]);               \
        }                                                                            \
    }

    FM_DEFINE_EXP_SHIFT_AVX2(fm_exp_shift_avx2, double, 4, FM_YD, fm_exp_yd)
    FM_DEFINE_EXP_SHIFT_AVX2(fm_exp_shift_avx2_f, float, 8, FM_YS, fm_exp_ys)
    FM_DEFINE_SOFTMAX_LANES_AVX2(fm_softmax_lanes_avx2, double, __m256d, 4, FM_YD, fm_exp_yd,
                                 long long, _mm256_cmpeq_epi64, _mm256_set1_epi64x, log)
    FM_DEFINE_SOFTMAX_LANES_AVX2(fm_softmax_lanes_avx2_f, float, __m256, 8, FM_YS, fm_exp_ys,
                                 int, _mm256_cmpeq_epi32, _mm256_set1_epi32, logf)
    #endif

    /* 1 if done, 0 (nothing done) without AVX2 */
    static int fm_exp_shift(double* z, Py_ssize_t n, double m) {
    #ifdef FM_HAVE_X86_KERNELS
        if (fm_isa() == FM_ISA_AVX512) {
            fm_exp_shift_avx512(z, n, m);
            return 1;
        }
        if (fm_isa() == FM_ISA_AVX2) {
            fm_exp_shift_avx2(z, n, m);
            return 1;
        }
    #endif
        return 0;
    }

    /* 1 if this CPU has a lanes kernel for k outputs */
    static int fm_softmax_lanes_take(Py_ssize_t k) {
    #ifdef FM_HAVE_X86_KERNELS
        return k <= 16 && fm_isa() >= FM_ISA_AVX2;
    #else
        return 0;
    #endif
    }
    /* float32: done if 1, nothing done (0) without AVX2 */
    static int fm_exp_shift_f(float* z, Py_ssize_t n, float m) {
    #ifdef FM_HAVE_X86_KERNELS
        if (fm_isa() >= FM_ISA_AVX2) {
            fm_exp_shift_avx2_f(z, n, m);
            return 1;
        }
    #endif
        return 0;
    }
    static void fm_softmax_lanes_f(float* z, const float* b, const void* cls, int cls_size,
            const float* sw, const long long* rows, double inv_norm, Py_ssize_t n,
            Py_ssize_t k, double* loss) {
    #ifdef FM_HAVE_X86_KERNELS
        fm_softmax_lanes_avx2_f(z, b, cls, cls_size, sw, rows, inv_norm, n, k, loss);
    #endif
    }
    static void fm_softmax_lanes(double* z, const double* b, const void* cls, int cls_size,
            const double* sw, const long long* rows, double inv_norm, Py_ssize_t n,
            Py_ssize_t k, double* loss) {
    #ifdef FM_HAVE_X86_KERNELS
        if (fm_isa() == FM_ISA_AVX512)
            fm_softmax_lanes_avx512(z, b, cls, cls_size, sw, rows, inv_norm, n, k, loss);
        else
            fm_softmax_lanes_avx2(z, b, cls, cls_size, sw, rows, inv_norm, n, k, loss);
    #endif
    }
    """
    int fm_exp_shift(double* z, Py_ssize_t n, double m) noexcept nogil
    int fm_exp_shift_f(float* z, Py_ssize_t n, float m) noexcept nogil
    int fm_softmax_lanes_take(Py_ssize_t k) noexcept nogil
    void fm_softmax_lanes_f(float* z, const float* b, const void* cls,
                            int cls_size, const float* sw, const long long* rows,
                            double inv_norm, Py_ssize_t n, Py_ssize_t k,
                            double* loss) noexcept nogil
    void fm_softmax_lanes(double* z, const double* b, const void* cls,
                          int cls_size, const double* sw, const long long* rows,
                          double inv_norm, Py_ssize_t n, Py_ssize_t k,
                          double* loss) noexcept nogil
