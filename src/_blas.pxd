# Row-major matrix products on scipy's Fortran (column-major) BLAS.
#
# A row-major r x c matrix is the column-major c x r matrix with the same
# memory, so each product below is the column-major gemm of the transposed
# problem: operands are swapped instead of data being transposed.
from cython cimport floating
from scipy.linalg.cython_blas cimport sgemm, dgemm, sgemv, dgemv


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
