# exp of a short row of doubles, shifted: z[j] = exp(z[j] - m), in AVX-512.
#
# The softmax of the log loss took one libm exp per output: with 10 classes
# the calls were a twentieth of a W2 float64 epoch (digits, batch 32), more
# than its output layer's products. Here a row is one or two vectors.
#
# Cody-Waite reduction x = n ln2 + r (ln2 in two parts, |r| <= ln2 / 2,
# n = round(x / ln2)), e^r by its Taylor polynomial to degree 13 (the first
# term left out, r^14 / 14!, is below 4.3e-18 relative), 2^n by vscalefpd,
# which gives 0 (subnormals flushed) below the range and keeps NaN. The
# result is within an ulp or so of libm's (tests/test_kernels.py). float32
# and CPUs without AVX-512 keep libm's exp.
from _simd cimport fm_isa

cdef extern from *:
    """
    #ifdef FM_HAVE_X86_KERNELS
    FM_TARGET_AVX512 static void fm_exp_shift_avx512(double* z, Py_ssize_t n, double m) {
        static const double c[14] = {
            1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0,
            1.0 / 3628800.0, 1.0 / 362880.0, 1.0 / 40320.0, 1.0 / 5040.0,
            1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0};
        const __m512d vm = _mm512_set1_pd(m), lo = _mm512_set1_pd(-746.0),
            log2e = _mm512_set1_pd(1.4426950408889634),
            ln2hi = _mm512_set1_pd(6.93147180369123816490e-01),
            ln2lo = _mm512_set1_pd(1.90821492927058770002e-10);
        for (Py_ssize_t i = 0; i < n; i += 8) {
            __mmask8 k = n - i >= 8 ? (__mmask8)0xff : (__mmask8)((1u << (n - i)) - 1u);
            __m512d x = _mm512_sub_pd(_mm512_maskz_loadu_pd(k, z + i), vm), nf, r, p;
            /* below -746 the result is 0; max(lo, x) keeps a NaN x */
            x = _mm512_max_pd(lo, x);
            nf = _mm512_roundscale_pd(_mm512_mul_pd(x, log2e),
                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            r = _mm512_fnmadd_pd(nf, ln2hi, x);
            r = _mm512_fnmadd_pd(nf, ln2lo, r);
            p = _mm512_set1_pd(c[0]);
            for (int j = 1; j < 14; j++) p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(c[j]));
            _mm512_mask_storeu_pd(z + i, k, _mm512_scalef_pd(p, nf));
        }
    }
    #endif

    /* 1 if done, 0 (nothing done) without AVX-512 */
    static int fm_exp_shift(double* z, Py_ssize_t n, double m) {
    #ifdef FM_HAVE_X86_KERNELS
        if (fm_isa() == FM_ISA_AVX512) {
            fm_exp_shift_avx512(z, n, m);
            return 1;
        }
    #endif
        return 0;
    }
    """
    int fm_exp_shift(double* z, Py_ssize_t n, double m) noexcept nogil
