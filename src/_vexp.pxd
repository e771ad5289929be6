# The softmax log loss of one row in AVX-512 (float64), exp included.
#
# The softmax of the log loss took one libm exp per output, and its scalar
# bias add, maximum, sums and scaling: with 10 classes a thirteenth of a W2
# float64 epoch (digits, batch 32), more than its output layer's products.
# Here a row of up to 16 outputs is two vectors.
#
# exp: Cody-Waite reduction x = n ln2 + r (ln2 in two parts, |r| <= ln2/2,
# n = round(x / ln2)), e^r by its Taylor polynomial to degree 13 (the first
# term left out, r^14 / 14!, is below 4.3e-18 relative), 2^n by vscalefpd,
# which gives 0 (subnormals flushed) below the range and keeps NaN: within
# an ulp of libm's (tests/test_kernels.py). The row's sum is a fixed tree,
# so a row's values do not depend on how rows are split over threads.
# float32, wider rows and CPUs without AVX-512 keep the scalar loop.
from _simd cimport fm_isa

cdef extern from *:
    """
    #include <math.h>
    #ifdef FM_HAVE_X86_KERNELS
    static inline __attribute__((always_inline)) FM_TARGET_AVX512 __m512d
    fm_exp_zd(__m512d x) {
        static const double c[14] = {
            1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0,
            1.0 / 3628800.0, 1.0 / 362880.0, 1.0 / 40320.0, 1.0 / 5040.0,
            1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0};
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

    FM_TARGET_AVX512 static void fm_exp_shift_avx512(double* z, Py_ssize_t n, double m) {
        for (Py_ssize_t i = 0; i < n; i += 8) {
            __mmask8 k = n - i >= 8 ? (__mmask8)0xff : (__mmask8)((1u << (n - i)) - 1u);
            __m512d x = _mm512_sub_pd(_mm512_maskz_loadu_pd(k, z + i), _mm512_set1_pd(m));
            _mm512_mask_storeu_pd(z + i, k, fm_exp_zd(x));
        }
    }

    /* class_loss_delta_row's softmax (src/_losses.pxd) for k <= 16 */
    FM_TARGET_AVX512 static double fm_softmax_row_avx512(double* z, const double* b, int t,
                                                         Py_ssize_t k, double w) {
        __mmask8 k0 = k >= 8 ? (__mmask8)0xff : (__mmask8)((1u << k) - 1u);
        __mmask8 k1 = k > 8 ? (__mmask8)((1u << (k - 8)) - 1u) : (__mmask8)0;
        const __m512d ninf = _mm512_set1_pd(-INFINITY);
        __m512d z0 = _mm512_add_pd(_mm512_maskz_loadu_pd(k0, z), _mm512_maskz_loadu_pd(k0, b));
        __m512d z1 = _mm512_add_pd(_mm512_maskz_loadu_pd(k1, z + 8),
                                   _mm512_maskz_loadu_pd(k1, b + 8));
        /* lane t of the row, and below its delta, taken in registers: a
           scalar load of a masked store's data waits for the store */
        const __m512i ti = _mm512_set1_epi64(t & 7);
        const __mmask8 t0 = t < 8 ? (__mmask8)(1u << t) : 0, t1 = t < 8 ? 0 : (__mmask8)(1u << (t - 8));
        double m, s, zt, inv;
        zt = _mm512_cvtsd_f64(_mm512_permutexvar_pd(ti, t < 8 ? z0 : z1));
        /* the row's largest value (a NaN is passed over, as the scalar
           loop's comparison does; it reaches the loss through exp) */
        m = _mm512_reduce_max_pd(_mm512_max_pd(_mm512_mask_mov_pd(ninf, k0, z0),
                                               _mm512_mask_mov_pd(ninf, k1, z1)));
        z0 = _mm512_maskz_mov_pd(k0, fm_exp_zd(_mm512_sub_pd(z0, _mm512_set1_pd(m))));
        z1 = _mm512_maskz_mov_pd(k1, fm_exp_zd(_mm512_sub_pd(z1, _mm512_set1_pd(m))));
        s = _mm512_reduce_add_pd(_mm512_add_pd(z0, z1));
        inv = w / s;
        z0 = _mm512_mul_pd(z0, _mm512_set1_pd(inv));
        z1 = _mm512_mul_pd(z1, _mm512_set1_pd(inv));
        z0 = _mm512_mask_sub_pd(z0, t0, z0, _mm512_set1_pd(w));
        z1 = _mm512_mask_sub_pd(z1, t1, z1, _mm512_set1_pd(w));
        _mm512_mask_storeu_pd(z, k0, z0);
        _mm512_mask_storeu_pd(z + 8, k1, z1);
        return w * ((m + log(s)) - zt);
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

    /* 1 if done (the row's loss in *loss), 0 (nothing done) without AVX-512
       or above 16 outputs */
    static int fm_softmax_row(double* z, const double* b, int t, Py_ssize_t k, double w,
                              double* loss) {
    #ifdef FM_HAVE_X86_KERNELS
        if (k <= 16 && fm_isa() == FM_ISA_AVX512) {
            *loss = fm_softmax_row_avx512(z, b, t, k, w);
            return 1;
        }
    #endif
        return 0;
    }
    """
    int fm_exp_shift(double* z, Py_ssize_t n, double m) noexcept nogil
    int fm_softmax_row(double* z, const double* b, int t, Py_ssize_t k,
                       double w, double* loss) noexcept nogil
