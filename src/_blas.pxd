# Row-major matrix products on scipy's Fortran (column-major) BLAS.
#
# A row-major r x c matrix is the column-major c x r matrix with the same
# memory, so each product below is the column-major gemm of the transposed
# problem: operands are swapped instead of data being transposed.
from cython cimport floating
from scipy.linalg.cython_blas cimport sgemm, dgemm


cdef inline void gemm(char ta, char tb, int m, int n, int k, floating alpha,
                      const floating* a, int lda, const floating* b, int ldb,
                      floating beta, floating* c, int ldc) noexcept nogil:
    if floating is float:
        sgemm(&ta, &tb, &m, &n, &k, &alpha, <float*>a, &lda, <float*>b, &ldb,
              &beta, c, &ldc)
    else:
        dgemm(&ta, &tb, &m, &n, &k, &alpha, <double*>a, &lda, <double*>b, &ldb,
              &beta, c, &ldc)


cdef inline void mm_nn(const floating* A, int lda, const floating* B,
                       floating* C, int r, int k, int c,
                       floating beta) noexcept nogil:
    """C[r, c] = A[r, k] @ B[k, c] + beta C (row-major; A has row stride lda)."""
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
