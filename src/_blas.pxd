# Row-major matrix products on scipy's Fortran (column-major) BLAS.
#
# A row-major r x c matrix is the column-major c x r matrix with the same
# memory, so each product below is the column-major gemm of the transposed
# problem: operands are swapped instead of data being transposed.
from cython cimport floating
from scipy.linalg.cython_blas cimport sgemm, dgemm, sgemv, dgemv

cdef extern from *:
    """
    #ifndef FM_BLAS_CORE_DEFINED
    #define FM_BLAS_CORE_DEFINED
    #if defined(__linux__) || defined(__APPLE__)
    #include <dlfcn.h>
    #include <strings.h>
    #define FM_HAVE_DLADDR 1
    #endif
    static int fm_blas_core_v = -1;  /* racing first calls write the same value */

    /* What kernels the BLAS behind fn runs (fn: scipy's dgemm wrapper; the
       library is found among its module's dependencies), by OpenBLAS's core
       name: 2 AVX-512 ones, 1 others (a DYNAMIC_ARCH OpenBLAS that does not
       know the CPU runs older kernels: 0.3.30 on AMD's Zen 5 picks Haswell,
       at half src/_small_gemm.pxd's AVX-512 rate), 0 when it cannot tell
       (another BLAS). An OpenBLAS running AVX-512 kernels has a small-matrix
       A^T B kernel faster than src/_small_gemm.pxd's below ~1M multiply-adds,
       and is faster from ~64M up. */
    static int fm_blas_core_probe(void* fn) {
        int v = 0;
        if (fm_blas_core_v >= 0) return fm_blas_core_v;
    #ifdef FM_HAVE_DLADDR
        {
            static const char* names[] = {
                "scipy_openblas_get_corename", "openblas_get_corename",
                "scipy_openblas_get_corename64_", "openblas_get_corename64_"};
            static const char* avx512[] = {"skylakex", "cooperlake", "sapphirerapids"};
            Dl_info info;
            void* h = NULL;
            size_t i, j;
            if (fn && dladdr(fn, &info) && info.dli_fname)
                h = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
            for (i = 0; h && i < sizeof(names) / sizeof(names[0]); i++) {
                char* (*corename)(void) = (char* (*)(void))dlsym(h, names[i]);
                const char* core = corename ? corename() : NULL;
                if (!core) continue;
                v = 1;
                for (j = 0; j < sizeof(avx512) / sizeof(avx512[0]); j++)
                    if (strcasecmp(core, avx512[j]) == 0) v = 2;
                break;
            }
            if (h) dlclose(h);
        }
    #endif
        fm_blas_core_v = v;
        return v;
    }
    #endif
    """
    int fm_blas_core_probe(void* fn) noexcept nogil


cdef inline bint blas_avx512() noexcept nogil:
    """True if scipy's BLAS is an OpenBLAS running AVX-512 kernels here."""
    return fm_blas_core_probe(<void*>dgemm) == 2


cdef inline bint blas_pre_avx512() noexcept nogil:
    """True if scipy's BLAS is an OpenBLAS running kernels older than
    AVX-512 here (on an AVX-512 CPU: one it does not know)."""
    return fm_blas_core_probe(<void*>dgemm) == 1


cdef inline void gemm(char ta, char tb, int m, int n, int k, floating alpha,
                      const floating* a, int lda, const floating* b, int ldb,
                      floating beta, floating* c, int ldc) noexcept nogil:
    if floating is float:
        sgemm(&ta, &tb, &m, &n, &k, &alpha, <float*>a, &lda, <float*>b, &ldb,
              &beta, c, &ldc)
    else:
        dgemm(&ta, &tb, &m, &n, &k, &alpha, <double*>a, &lda, <double*>b, &ldb,
              &beta, c, &ldc)


cdef inline void gemv(char ta, int m, int n, const floating* a, int lda,
                      const floating* x, floating beta,
                      floating* y) noexcept nogil:
    cdef int one = 1
    cdef floating alpha = 1
    if floating is float:
        sgemv(&ta, &m, &n, &alpha, <float*>a, &lda, <float*>x, &one, &beta,
              y, &one)
    else:
        dgemv(&ta, &m, &n, &alpha, <double*>a, &lda, <double*>x, &one, &beta,
              y, &one)


cdef inline void mm_nn(const floating* A, int lda, const floating* B,
                       floating* C, int r, int k, int c,
                       floating beta) noexcept nogil:
    """C[r, c] = A[r, k] @ B[k, c] + beta C (row-major; A has row stride lda)."""
    if r == 1:
        # One row: gemv, which skips gemm's packing of B (most of the cost
        # of a one-sample predict).
        gemv(c'N', c, k, B, c, A, beta, C)
    else:
        gemm(c'N', c'N', c, r, k, 1, B, c, A, lda, beta, C, c)


cdef inline void mm_tn(const floating* A, int lda, const floating* B,
                       floating* C, int r, int k, int c,
                       floating beta) noexcept nogil:
    """C[k, c] = A[r, k].T @ B[r, c] + beta C (row-major)."""
    gemm(c'N', c'T', c, k, r, 1, B, c, A, lda, beta, C, c)


cdef inline void mm_nt(const floating* A, const floating* B, floating* C,
                       int r, int c, int k, floating beta) noexcept nogil:
    """C[r, k] = A[r, c] @ B[k, c].T + beta C (row-major)."""
    gemm(c'T', c'N', k, r, c, 1, B, c, A, c, beta, C, k)
