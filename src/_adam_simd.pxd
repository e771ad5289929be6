# Adam's update (src/_updates.pxd, step_span) in AVX2 and AVX-512.
#
# The build targets the baseline ISA, where the update's square root and
# division run two lanes at a time, and it was the largest single cost of
# training small networks (a fifth to a third of a W2 epoch). Same
# arithmetic as the plain loop (with fused multiply-adds), except that in
# float64 with AVX-512 the square root and the division of two vectors in
# three are not the hardware's: the divider takes ~30 cycles for a vector
# of 8 doubles' square root and quotient (12 ns, a one-off measurement),
# while a 14-bit estimate (vrsqrt14pd, vrcp14pd) refined by Newton steps
# runs on the multiply-add ports; the third vector of each group of three
# in a span takes the divider, which works beside the ports (the W2
# float64 epoch 3-5% faster than Newton steps for all). The Newton steps
# and a final residual correction give the quotient to within an ulp or so
# (tests/test_kernels.py checks a few ulp against the exact formula).
# Which vectors take which depends only on the span (a piece of theta, the
# same for every thread count), so results do not depend on the threads.
# float32 keeps the exact instructions: vsqrtps/vdivps are fast enough.
#
# The kernels run with subnormals flushed to zero (MXCSR FTZ and DAZ, set
# on entry and restored on exit). The moments of a parameter that gets no
# gradient (the bias of a dead unit) decay geometrically through the
# subnormal range, and every vector holding one took a microcode assist of
# ~100 cycles: on W2 float32 the update took twice as long. Flushing moves
# m by less than 1.2e-38 (float32; 2.3e-308 float64) and sqrt(v) by less
# than 1.1e-19 (1.5e-154), nothing beside the default eps of 1e-8 (a
# float32 fit with eps below ~1e-17 would see the difference).
from cython cimport floating
from _simd cimport fm_isa

cdef extern from *:
    """
    #include <float.h>
    #ifdef FM_HAVE_X86_KERNELS
    #define FM_ADAM_LD_ZD(p) _mm512_loadu_pd(p)
    #define FM_ADAM_ST_ZD(p, x) _mm512_storeu_pd(p, x)
    #define FM_ADAM_SET_ZD(x) _mm512_set1_pd(x)
    #define FM_ADAM_ADD_ZD(a, b) _mm512_add_pd(a, b)
    #define FM_ADAM_SUB_ZD(a, b) _mm512_sub_pd(a, b)
    #define FM_ADAM_MUL_ZD(a, b) _mm512_mul_pd(a, b)
    #define FM_ADAM_FMA_ZD(a, b, c) _mm512_fmadd_pd(a, b, c)
    #define FM_ADAM_ABS_ZD(a) _mm512_abs_pd(a)
    /* l1 * sign(t) (0 at 0) */
    #define FM_ADAM_SGN_ZD(t, l1v) _mm512_sub_pd( \
        _mm512_maskz_mov_pd(_mm512_cmp_pd_mask(t, _mm512_setzero_pd(), _CMP_GT_OQ), l1v), \
        _mm512_maskz_mov_pd(_mm512_cmp_pd_mask(t, _mm512_setzero_pd(), _CMP_LT_OQ), l1v))

    /* sq += t * t, and with L1 ab += |t|, in double lanes (sq, ab are
       __m512d); without an L1 penalty the loss does not use ab */
    #define FM_ADAM_SUMS_ZD(t, sq, ab, L1) do { \
        sq = _mm512_fmadd_pd(t, t, sq); \
        if (L1) ab = _mm512_add_pd(ab, _mm512_abs_pd(t)); } while (0)
    /* lr m / (sqrt(w) + eps): see the file's comment */
    static inline __attribute__((always_inline)) FM_TARGET_AVX512 __m512d
    fm_adam_step_zd(__m512d lrm, __m512d w, __m512d eps) {
        const __m512d one = _mm512_set1_pd(1.0);
        __m512d y, t, e, p, d, r, q;
        /* below DBL_MIN (0, subnormal) the estimate is inf, but sqrt(w) <
           1.5e-154 vanishes beside eps: clamp w there (d = eps all the same
           for eps above 1e-138) */
        w = _mm512_max_pd(w, _mm512_set1_pd(DBL_MIN));
        /* sqrt(w) = t (1 - e)^(-1/2) with t = w y, e = 1 - t y (one
           rounding: the series then gives sqrt(t / y), within t's rounding), |e| < 2^-13 from the 14-bit estimate y: the
           binomial series to e^4 leaves 35/128 e^5 < 2^-66. One polynomial
           on the multiply-add ports instead of two Newton steps in sequence
           (three fewer operations, a shorter dependency chain). */
        y = _mm512_rsqrt14_pd(w);
        t = _mm512_mul_pd(w, y);
        e = _mm512_fnmadd_pd(t, y, one);
        p = _mm512_fmadd_pd(e, _mm512_set1_pd(35.0 / 128), _mm512_set1_pd(5.0 / 16));
        p = _mm512_fmadd_pd(e, p, _mm512_set1_pd(3.0 / 8));
        p = _mm512_fmadd_pd(e, p, _mm512_set1_pd(0.5));
        d = _mm512_fmadd_pd(_mm512_mul_pd(t, e), p, t);
        d = _mm512_add_pd(d, eps);
        /* the quotient: 1/d to ~28 bits, then one residual step */
        r = _mm512_rcp14_pd(d);
        r = _mm512_fmadd_pd(r, _mm512_fnmadd_pd(d, r, one), r);
        q = _mm512_mul_pd(lrm, r);
        return _mm512_fmadd_pd(_mm512_fnmadd_pd(d, q, lrm), r, q);
    }
    #define FM_ADAM_STEP_ZD(lrm, w, eps) fm_adam_step_zd(lrm, w, eps)
    /* the exact quotient, on the divider: a third of the vectors take it,
       the divider working beside the multiply-add ports' Newton steps */
    #define FM_ADAM_STEPX_ZD(lrm, w, eps) \
        _mm512_div_pd(lrm, _mm512_add_pd(_mm512_sqrt_pd(w), eps))

    #define FM_ADAM_LD_ZF(p) _mm512_loadu_ps(p)
    #define FM_ADAM_ST_ZF(p, x) _mm512_storeu_ps(p, x)
    #define FM_ADAM_SET_ZF(x) _mm512_set1_ps(x)
    #define FM_ADAM_ADD_ZF(a, b) _mm512_add_ps(a, b)
    #define FM_ADAM_SUB_ZF(a, b) _mm512_sub_ps(a, b)
    #define FM_ADAM_MUL_ZF(a, b) _mm512_mul_ps(a, b)
    #define FM_ADAM_FMA_ZF(a, b, c) _mm512_fmadd_ps(a, b, c)
    #define FM_ADAM_ABS_ZF(a) _mm512_abs_ps(a)
    #define FM_ADAM_SGN_ZF(t, l1v) _mm512_sub_ps( \
        _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(t, _mm512_setzero_ps(), _CMP_GT_OQ), l1v), \
        _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(t, _mm512_setzero_ps(), _CMP_LT_OQ), l1v))

    #define FM_ADAM_SUMS_ZF(t, sq, ab, L1) do { \
        __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(t)); \
        __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(t), 1))); \
        sq = _mm512_fmadd_pd(lo, lo, _mm512_fmadd_pd(hi, hi, sq)); \
        if (L1) ab = _mm512_add_pd(ab, _mm512_add_pd(_mm512_abs_pd(lo), _mm512_abs_pd(hi))); } while (0)
    #define FM_ADAM_STEP_ZF(lrm, w, eps) _mm512_div_ps(lrm, _mm512_add_ps(_mm512_sqrt_ps(w), eps))
    #define FM_ADAM_STEPX_ZF FM_ADAM_STEP_ZF

    #define FM_ADAM_LD_YD(p) _mm256_loadu_pd(p)
    #define FM_ADAM_ST_YD(p, x) _mm256_storeu_pd(p, x)
    #define FM_ADAM_SET_YD(x) _mm256_set1_pd(x)
    #define FM_ADAM_ADD_YD(a, b) _mm256_add_pd(a, b)
    #define FM_ADAM_SUB_YD(a, b) _mm256_sub_pd(a, b)
    #define FM_ADAM_MUL_YD(a, b) _mm256_mul_pd(a, b)
    #define FM_ADAM_FMA_YD(a, b, c) _mm256_fmadd_pd(a, b, c)
    #define FM_ADAM_ABS_YD(a) _mm256_andnot_pd(_mm256_set1_pd(-0.0), a)
    #define FM_ADAM_SGN_YD(t, l1v) _mm256_sub_pd( \
        _mm256_and_pd(_mm256_cmp_pd(t, _mm256_setzero_pd(), _CMP_GT_OQ), l1v), \
        _mm256_and_pd(_mm256_cmp_pd(t, _mm256_setzero_pd(), _CMP_LT_OQ), l1v))

    #define FM_ADAM_SUMS_YD(t, sq, ab, L1) do { \
        sq = _mm256_fmadd_pd(t, t, sq); \
        if (L1) ab = _mm256_add_pd(ab, FM_ADAM_ABS_YD(t)); } while (0)
    #define FM_ADAM_STEP_YD(lrm, w, eps) _mm256_div_pd(lrm, _mm256_add_pd(_mm256_sqrt_pd(w), eps))
    #define FM_ADAM_STEPX_YD FM_ADAM_STEP_YD

    #define FM_ADAM_LD_YF(p) _mm256_loadu_ps(p)
    #define FM_ADAM_ST_YF(p, x) _mm256_storeu_ps(p, x)
    #define FM_ADAM_SET_YF(x) _mm256_set1_ps(x)
    #define FM_ADAM_ADD_YF(a, b) _mm256_add_ps(a, b)
    #define FM_ADAM_SUB_YF(a, b) _mm256_sub_ps(a, b)
    #define FM_ADAM_MUL_YF(a, b) _mm256_mul_ps(a, b)
    #define FM_ADAM_FMA_YF(a, b, c) _mm256_fmadd_ps(a, b, c)
    #define FM_ADAM_ABS_YF(a) _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a)
    #define FM_ADAM_SGN_YF(t, l1v) _mm256_sub_ps( \
        _mm256_and_ps(_mm256_cmp_ps(t, _mm256_setzero_ps(), _CMP_GT_OQ), l1v), \
        _mm256_and_ps(_mm256_cmp_ps(t, _mm256_setzero_ps(), _CMP_LT_OQ), l1v))

    #define FM_ADAM_SUMS_YF(t, sq, ab, L1) do { \
        __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(t)); \
        __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(t, 1)); \
        sq = _mm256_fmadd_pd(lo, lo, _mm256_fmadd_pd(hi, hi, sq)); \
        if (L1) ab = _mm256_add_pd(ab, _mm256_add_pd(FM_ADAM_ABS_YD(lo), FM_ADAM_ABS_YD(hi))); } while (0)
    #define FM_ADAM_STEP_YF(lrm, w, eps) _mm256_div_ps(lrm, _mm256_add_ps(_mm256_sqrt_ps(w), eps))
    #define FM_ADAM_STEPX_YF FM_ADAM_STEP_YF

    /* Adam on n parameters; with pen, the L2/L1 penalty gradient is added
       and out[0] receives sum th^2 and, with an L1 term, out[1] sum |th|
       (before the step; the loss weighs sum |th| by l1 only).
       Returns the number of non-finite parameters after the step (0 or 1).
       DV: the double vector type (the sums); SD: its suffix. The loop is
       inlined three times, PEN and L1 constant (no penalty / L2 / L2+L1),
       so that each runs only the operations it needs. Non-finite values
       are caught by one multiply-add per vector: bad += t * 0 stays 0
       unless t is inf or NaN. */
    #define FM_ADAM_VEC(S, I, STEP) do { \
            t = FM_ADAM_LD_##S(th + (I)); \
            gi = FM_ADAM_LD_##S(g + (I)); \
            if (PEN) { \
                FM_ADAM_SUMS_##S(t, sq, ab, L1); \
                gi = FM_ADAM_FMA_##S(vl2, t, gi); \
                if (L1) gi = FM_ADAM_ADD_##S(gi, FM_ADAM_SGN_##S(t, vl1)); \
            } \
            m = FM_ADAM_FMA_##S(vb1, FM_ADAM_LD_##S(s1 + (I)), FM_ADAM_MUL_##S(vc1, gi)); \
            w = FM_ADAM_FMA_##S(vb2, FM_ADAM_LD_##S(s2 + (I)), \
                                FM_ADAM_MUL_##S(FM_ADAM_MUL_##S(vc2, gi), gi)); \
            FM_ADAM_ST_##S(s1 + (I), m); \
            FM_ADAM_ST_##S(s2 + (I), w); \
            t = FM_ADAM_SUB_##S(t, STEP(FM_ADAM_MUL_##S(vlr, m), w, veps)); \
            FM_ADAM_ST_##S(th + (I), t); \
            bad = FM_ADAM_FMA_##S(t, zero, bad); } while (0)

    #define FM_DEFINE_ADAM(NAME, T, S, L, DV, SD, BIG, ATTR) \
    static inline __attribute__((always_inline)) ATTR int NAME##_loop( \
            const int PEN, const int L1, T* th, const T* g, T* s1, T* s2, \
            Py_ssize_t n, T lr, T b1, T b2, T eps, T l2, T l1, double* out) { \
        __typeof__(FM_ADAM_SET_##S(0)) vb1 = FM_ADAM_SET_##S(b1), \
            vc1 = FM_ADAM_SET_##S(1 - b1), vb2 = FM_ADAM_SET_##S(b2), \
            vc2 = FM_ADAM_SET_##S(1 - b2), vlr = FM_ADAM_SET_##S(lr), \
            veps = FM_ADAM_SET_##S(eps), vl2 = FM_ADAM_SET_##S(l2), \
            vl1 = FM_ADAM_SET_##S(l1), zero = FM_ADAM_SET_##S(0), \
            bad = FM_ADAM_SET_##S(0), t, gi, m, w; \
        DV sq = FM_ADAM_SET_##SD(0), ab = FM_ADAM_SET_##SD(0); \
        double lanes[8], tsq = 0, tab = 0; \
        T blanes[16]; \
        int ok = 1; \
        Py_ssize_t i = 0; \
        /* One vector at I; STEP the quotient's form (FM_ADAM_STEPX_: the \
           divider's, for every third vector of a span where that is \
           another unit than the multiply-add ports). */ \
        for (; i + 3 * L <= n; i += 3 * L) { \
            FM_ADAM_VEC(S, i, FM_ADAM_STEPX_##S); \
            FM_ADAM_VEC(S, i + L, FM_ADAM_STEP_##S); \
            FM_ADAM_VEC(S, i + 2 * L, FM_ADAM_STEP_##S); \
        } \
        for (; i + L <= n; i += L) { \
            FM_ADAM_VEC(S, i, FM_ADAM_STEP_##S); \
        } \
        FM_ADAM_ST_##S(blanes, bad); \
        for (int h = 0; h < L; h++) ok &= blanes[h] == 0; \
        for (; i < n; i++) { \
            T tt = th[i], gg = g[i], mm, ww; \
            if (PEN) { \
                tsq += (double)tt * tt; \
                if (L1) tab += tt < 0 ? -(double)tt : (double)tt; \
                gg = gg + l2 * tt + (tt > 0 ? l1 : (tt < 0 ? -l1 : 0)); \
            } \
            mm = b1 * s1[i] + (1 - b1) * gg; \
            ww = b2 * s2[i] + (1 - b2) * gg * gg; \
            s1[i] = mm; \
            s2[i] = ww; \
            tt = tt - lr * mm / ((T)__builtin_sqrt(ww) + eps); \
            th[i] = tt; \
            ok &= (tt < 0 ? -tt : tt) <= BIG; \
        } \
        if (PEN) { \
            FM_ADAM_ST_##SD(lanes, sq); \
            for (int h = 0; h < (int)(sizeof(DV) / sizeof(double)); h++) tsq += lanes[h]; \
            FM_ADAM_ST_##SD(lanes, ab); \
            for (int h = 0; h < (int)(sizeof(DV) / sizeof(double)); h++) tab += lanes[h]; \
            out[0] += tsq; \
            out[1] += tab; \
        } \
        return !ok; \
    } \
    ATTR static int NAME(T* th, const T* g, T* s1, T* s2, Py_ssize_t n, T lr, \
            T b1, T b2, T eps, T l2, T l1, int pen, double* out) { \
        unsigned int csr = _mm_getcsr(); \
        int bad; \
        _mm_setcsr(csr | 0x8040); \
        if (!pen) bad = NAME##_loop(0, 0, th, g, s1, s2, n, lr, b1, b2, eps, l2, l1, out); \
        else if (l1 == 0) bad = NAME##_loop(1, 0, th, g, s1, s2, n, lr, b1, b2, eps, l2, l1, out); \
        else bad = NAME##_loop(1, 1, th, g, s1, s2, n, lr, b1, b2, eps, l2, l1, out); \
        _mm_setcsr(csr); \
        return bad; \
    }

    FM_DEFINE_ADAM(fm_adam_d_avx512, double, ZD, 8, __m512d, ZD, DBL_MAX, FM_TARGET_AVX512)
    FM_DEFINE_ADAM(fm_adam_f_avx512, float, ZF, 16, __m512d, ZD, FLT_MAX, FM_TARGET_AVX512)
    FM_DEFINE_ADAM(fm_adam_d_avx2, double, YD, 4, __m256d, YD, DBL_MAX, FM_TARGET_AVX2)
    FM_DEFINE_ADAM(fm_adam_f_avx2, float, YF, 8, __m256d, YD, FLT_MAX, FM_TARGET_AVX2)
    #endif

    /* Returns -1, doing nothing, when this CPU has no kernel; else the
       number of non-finite parameters (0 or 1), see FM_DEFINE_ADAM. */
    #ifdef FM_HAVE_X86_KERNELS
    #define FM_ADAM_PICK(NAME, ...) switch (fm_isa()) { \
        case FM_ISA_AVX512: return NAME##_avx512(__VA_ARGS__); \
        case FM_ISA_AVX2: return NAME##_avx2(__VA_ARGS__); }
    #else
    #define FM_ADAM_PICK(NAME, ...)
    #endif
    #define FM_DEFINE_ADAM_ENTRY(NAME, T) \
    static int fm_adam_##T(T* th, const T* g, T* s1, T* s2, Py_ssize_t n, T lr, T b1, \
            T b2, T eps, T l2, T l1, int pen, double* out) { \
        FM_ADAM_PICK(NAME, th, g, s1, s2, n, lr, b1, b2, eps, l2, l1, pen, out) \
        return -1; \
    }
    FM_DEFINE_ADAM_ENTRY(fm_adam_d, double)
    FM_DEFINE_ADAM_ENTRY(fm_adam_f, float)
    """
    int fm_adam_d "fm_adam_double"(double* th, const double* g, double* s1, double* s2,
                  Py_ssize_t n, double lr, double b1, double b2, double eps,
                  double l2, double l1, int pen, double* out) noexcept nogil
    int fm_adam_f "fm_adam_float"(float* th, const float* g, float* s1, float* s2,
                  Py_ssize_t n, float lr, float b1, float b2, float eps,
                  float l2, float l1, int pen, double* out) noexcept nogil


cdef inline bint adam_span(floating* th, const floating* g, floating* s1,
                           floating* s2, Py_ssize_t n, floating lr,
                           floating b1, floating b2, floating eps,
                           floating l2, floating l1,
                           double* out) noexcept nogil:
    """Adam on n parameters as step_span does it: out += [sum th^2,
    sum |th| (0 when l1 == 0), n bad]. False, doing nothing, if the CPU has
    no kernel."""
    cdef int bad
    cdef bint pen = l2 != 0 or l1 != 0
    if floating is float:
        bad = fm_adam_f(th, g, s1, s2, n, lr, b1, b2, eps, l2, l1, pen, out)
    else:
        bad = fm_adam_d(th, g, s1, s2, n, lr, b1, b2, eps, l2, l1, pen, out)
    if bad < 0:
        return False
    out[2] += bad
    return True
