# The divergence guard of the first-order epoch: a step is applied only if
# its gradient is finite, so a fit that diverges stops with the parameters of
# its last finite step without keeping a copy of them (a parameter vector of
# memory). A NaN or infinite gradient would otherwise reach every parameter
# (and optimiser moment) it touches before any check after the step saw it.
from cython cimport floating
from cython.parallel cimport prange
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcpy
from _simd cimport fm_isa

cdef extern from *:
    """
    /* The test below in AVX-512 and AVX2 (the build's baseline vectorises it
       two doubles at a time: 7% of a W2 float64 epoch). 1 if bad, 0 if all
       finite, -1 (nothing done) without a kernel. */
    #ifdef FM_HAVE_X86_KERNELS
    #define FM_DEFINE_SPAN_BAD(NAME, T, U, MASK, ONE, VEC, LD, AND, ADD, OR, SET1, ATTR) \
    ATTR static int NAME(const T* g, Py_ssize_t n) { \
        const U* u = (const U*)g; \
        const Py_ssize_t L = sizeof(VEC) / sizeof(U); \
        VEC m = SET1(MASK), one = SET1((ONE)), a0 = SET1(0), a1 = SET1(0); \
        U acc = 0; \
        Py_ssize_t i = 0; \
        for (; i + 2 * L <= n; i += 2 * L) { \
            a0 = OR(a0, ADD(AND(LD(u + i), m), one)); \
            a1 = OR(a1, ADD(AND(LD(u + i + L), m), one)); \
        } \
        a0 = OR(a0, a1); \
        U lanes[sizeof(VEC) / sizeof(U)]; \
        memcpy(lanes, &a0, sizeof(VEC)); \
        for (Py_ssize_t h = 0; h < L; h++) acc |= lanes[h]; \
        for (; i < n; i++) acc |= (u[i] & (U)(MASK)) + (U)(ONE); \
        return (int)(acc >> (8 * sizeof(U) - 1)); \
    }
    #define FM_LD512(p) _mm512_loadu_si512((const void*)(p))
    #define FM_LD256(p) _mm256_loadu_si256((const __m256i*)(p))
    FM_DEFINE_SPAN_BAD(fm_span_bad_d_avx512, double, uint64_t, 0x7ff0000000000000ull,
                       1ull << 52, __m512i, FM_LD512, _mm512_and_si512, _mm512_add_epi64,
                       _mm512_or_si512, _mm512_set1_epi64, FM_TARGET_AVX512)
    FM_DEFINE_SPAN_BAD(fm_span_bad_f_avx512, float, uint32_t, 0x7f800000u, 1u << 23,
                       __m512i, FM_LD512, _mm512_and_si512, _mm512_add_epi32,
                       _mm512_or_si512, _mm512_set1_epi32, FM_TARGET_AVX512)
    FM_DEFINE_SPAN_BAD(fm_span_bad_d_avx2, double, uint64_t, 0x7ff0000000000000ull,
                       1ull << 52, __m256i, FM_LD256, _mm256_and_si256, _mm256_add_epi64,
                       _mm256_or_si256, _mm256_set1_epi64x, FM_TARGET_AVX2)
    FM_DEFINE_SPAN_BAD(fm_span_bad_f_avx2, float, uint32_t, 0x7f800000u, 1u << 23,
                       __m256i, FM_LD256, _mm256_and_si256, _mm256_add_epi32,
                       _mm256_or_si256, _mm256_set1_epi32, FM_TARGET_AVX2)
    #define FM_SPAN_BAD_PICK(NAME, g, n) switch (fm_isa()) { \
        case FM_ISA_AVX512: return NAME##_avx512(g, n); \
        case FM_ISA_AVX2: return NAME##_avx2(g, n); }
    #else
    #define FM_SPAN_BAD_PICK(NAME, g, n)
    #endif
    /* sum x^2 in double lanes (float widened), for the bound on a fused
       weight gradient (src/_epoch.pyx); -1 without a kernel. */
    #ifdef FM_HAVE_X86_KERNELS
    FM_TARGET_AVX512 static double fm_sumsq_d_avx512(const double* x, Py_ssize_t n) {
        __m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd(), v;
        Py_ssize_t i = 0;
        for (; i + 16 <= n; i += 16) {
            v = _mm512_loadu_pd(x + i); a0 = _mm512_fmadd_pd(v, v, a0);
            v = _mm512_loadu_pd(x + i + 8); a1 = _mm512_fmadd_pd(v, v, a1);
        }
        if (i + 8 <= n) { v = _mm512_loadu_pd(x + i); a0 = _mm512_fmadd_pd(v, v, a0); i += 8; }
        v = _mm512_maskz_loadu_pd((__mmask8)((1u << (n - i)) - 1u), x + i);
        a1 = _mm512_fmadd_pd(v, v, a1);
        return _mm512_reduce_add_pd(_mm512_add_pd(a0, a1));
    }
    FM_TARGET_AVX512 static double fm_sumsq_f_avx512(const float* x, Py_ssize_t n) {
        __m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd(), v;
        Py_ssize_t i = 0;
        for (; i + 16 <= n; i += 16) {
            v = _mm512_cvtps_pd(_mm256_loadu_ps(x + i)); a0 = _mm512_fmadd_pd(v, v, a0);
            v = _mm512_cvtps_pd(_mm256_loadu_ps(x + i + 8)); a1 = _mm512_fmadd_pd(v, v, a1);
        }
        double s = _mm512_reduce_add_pd(_mm512_add_pd(a0, a1));
        for (; i < n; i++) s += (double)x[i] * x[i];
        return s;
    }
    FM_TARGET_AVX2 static double fm_sumsq_d_avx2(const double* x, Py_ssize_t n) {
        __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd(), v;
        double lanes[4], s = 0;
        Py_ssize_t i = 0;
        for (; i + 8 <= n; i += 8) {
            v = _mm256_loadu_pd(x + i); a0 = _mm256_fmadd_pd(v, v, a0);
            v = _mm256_loadu_pd(x + i + 4); a1 = _mm256_fmadd_pd(v, v, a1);
        }
        _mm256_storeu_pd(lanes, _mm256_add_pd(a0, a1));
        for (; i < n; i++) s += x[i] * x[i];
        return s + lanes[0] + lanes[1] + lanes[2] + lanes[3];
    }
    FM_TARGET_AVX2 static double fm_sumsq_f_avx2(const float* x, Py_ssize_t n) {
        __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd(), v;
        double lanes[4], s = 0;
        Py_ssize_t i = 0;
        for (; i + 8 <= n; i += 8) {
            v = _mm256_cvtps_pd(_mm_loadu_ps(x + i)); a0 = _mm256_fmadd_pd(v, v, a0);
            v = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4)); a1 = _mm256_fmadd_pd(v, v, a1);
        }
        _mm256_storeu_pd(lanes, _mm256_add_pd(a0, a1));
        for (; i < n; i++) s += (double)x[i] * x[i];
        return s + lanes[0] + lanes[1] + lanes[2] + lanes[3];
    }
    #endif
    /* NAME_T(x, n): kernel K for this CPU, or -1 without one */
    #define FM_GUARD_ENTRY(RET, NAME, K, T) \
    static RET NAME##_##T(const T* x, Py_ssize_t n) { \
        FM_SPAN_BAD_PICK(K, x, n) \
        return -1; \
    }
    FM_GUARD_ENTRY(double, fm_sumsq, fm_sumsq_d, double)
    FM_GUARD_ENTRY(double, fm_sumsq, fm_sumsq_f, float)
    FM_GUARD_ENTRY(int, fm_span_bad, fm_span_bad_d, double)
    FM_GUARD_ENTRY(int, fm_span_bad, fm_span_bad_f, float)
    """
    int fm_span_bad_d "fm_span_bad_double"(const double* g, Py_ssize_t n) noexcept nogil
    int fm_span_bad_f "fm_span_bad_float"(const float* g, Py_ssize_t n) noexcept nogil
    double fm_sumsq_d "fm_sumsq_double"(const double* x, Py_ssize_t n) noexcept nogil
    double fm_sumsq_f "fm_sumsq_float"(const float* x, Py_ssize_t n) noexcept nogil


cdef enum:
    GUARD_SPAN = 8192          # elements per (parallel) span of the scan
    PAR_MIN_GUARD = 65536


cdef inline int span_bad(const floating* g, Py_ssize_t n) noexcept nogil:
    """1 if g[0:n] holds a NaN or an infinity."""
    cdef Py_ssize_t i
    cdef const uint32_t* u32 = <const uint32_t*>g
    cdef const uint64_t* u64 = <const uint64_t*>g
    cdef uint32_t m32 = 0x7f800000u, a32 = 0
    cdef uint64_t m64 = 0x7ff0000000000000u, a64 = 0
    cdef int bad = fm_span_bad_f(<const float*>g, n) if floating is float \
        else fm_span_bad_d(<const double*>g, n)
    if bad >= 0:
        return bad
    # NaN and infinity are the values whose exponent bits are all ones; adding
    # one to the exponent field then carries into the sign bit. Integer AND,
    # ADD and OR reductions vectorise (a floating comparison per element
    # compiled to scalar ucomisd: 6% of a W2 float64 epoch).
    if floating is float:
        for i in range(n):
            a32 = a32 | ((u32[i] & m32) + (<uint32_t>1 << 23))
        return <int>(a32 >> 31)
    else:
        for i in range(n):
            a64 = a64 | ((u64[i] & m64) + (<uint64_t>1 << 52))
        return <int>(a64 >> 63)


cdef inline bint all_finite(const floating* g, Py_ssize_t n,
                            int n_threads) noexcept nogil:
    """True if every g[i] is finite."""
    cdef Py_ssize_t c, lo, n_spans = (n + GUARD_SPAN - 1) // GUARD_SPAN
    cdef int bad = 0
    if n_threads > 1 and n >= PAR_MIN_GUARD:
        for c in prange(n_spans, schedule='static', num_threads=n_threads):
            lo = c * GUARD_SPAN
            bad += span_bad(g + lo, min(<Py_ssize_t>GUARD_SPAN, n - lo))
    else:
        bad = span_bad(g, n)
    return bad == 0



cdef inline double sum_squares(const floating* x, Py_ssize_t n) noexcept nogil:
    """sum x^2 in double (inf or NaN if any x is, or the sum overflows)."""
    cdef Py_ssize_t i
    cdef double s = 0
    if fm_isa() != 0:
        return fm_sumsq_f(<const float*>x, n) if floating is float \
            else fm_sumsq_d(<const double*>x, n)
    for i in range(n):
        s += <double>x[i] * x[i]
    return s
