"""Python entry points to the hand-written vector kernels.

The layer products of src/_small_gemm.pxd, Adam's update of
src/_adam_simd.pxd, the divergence guard of src/_guard.pxd and the output
layer's loss and delta of src/_losses.pxd, for the tests (against numpy and the plain loops) and
for benchmarks/small_gemm.py (the crossover with BLAS). Training never
calls these: forward, backward and the update call the same kernels from C.
"""
from cython cimport floating

import numpy as np

from _blas cimport mm_nn, mm_tn, mm_nt, blas_avx512, blas_pre_avx512
from _simd cimport fm_isa, fm_set_isa
from _small_gemm cimport (small_gemm_idx, tn_adam, FM_NN, FM_TN,
                          FM_NT, FM_EPI_NONE, FM_EPI_BIAS_RELU, small_max_work,
                          fm_pack_deep)
from _adam_simd cimport adam_span
from _vexp cimport fm_exp_shift, fm_exp_shift_f
from _guard cimport all_finite, sum_squares
from _losses cimport Classes, output_loss_delta, LOSS_LOG
from _activations cimport ACT_SOFTMAX

KINDS = {"nn": 0, "tn": 1, "nt": 2}


def max_work():
    """Multiply-adds beyond which a product goes to BLAS (sys.maxsize: none,
    where the kernels are AVX-512 and OpenBLAS's are not)."""
    return small_max_work()


def isa():
    """The kernels' instruction set: 0 none (BLAS), 1 AVX2, 2 AVX-512."""
    return fm_isa()


def blas_core():
    """What scipy's BLAS runs here: 2 an OpenBLAS with AVX-512 kernels (A^T
    delta products below TN_MIN_WORK then go to it where the bits need not
    be the kernels': src/_small_gemm.pxd, prod_tn), 1 an OpenBLAS with
    older ones (max_work), 0 unknown (another BLAS)."""
    return 2 if blas_avx512() else 1 if blas_pre_avx512() else 0


def set_isa_cap(int cap):
    """Cap the instruction set (2 lifts the cap); returns the previous cap."""
    return fm_set_isa(cap)


def pack_deep_enabled(bint on):
    """Whether this module's NN and TN products pack B in aligned panels
    where src/_small_gemm.pxd does (deeper than a panel or of rows 2 KiB
    apart or more, over 16 rows of C or more); returns the previous
    setting. Off, they read B in place: the same bits (tests,
    benchmarks/small_gemm.py)."""
    global fm_pack_deep
    cdef bint was = fm_pack_deep != 0
    fm_pack_deep = on
    return was



def product(str kind, const floating[:, :] A, const floating[:, ::1] B,
            floating[:, ::1] C, bint accumulate=False, int n_threads=1,
            bint blas=False, int repeat=1, const long long[::1] rows=None,
            const floating[::1] bias=None):
    """C (+)= A @ B ("nn"), A.T @ B ("tn") or A @ B.T ("nt"), in place.

    A may have any row stride (unit column stride), as the layer inputs do.
    With rows ("nn", "tn"), A[rows] takes A's place, read in place (a
    batch's input rows). With bias ("nn", kernels, no accumulate), C =
    max(A @ B + bias, 0): a relu layer's forward pass. With blas, scipy's
    BLAS does the product (the fallback path; not with rows). repeat runs
    it that many times (for timing without Python in the loop). Returns
    False if the kernels were asked for but this CPU has none.
    """
    cdef int kd = KINDS[kind]
    cdef int epi = FM_EPI_NONE
    cdef const floating* bp = NULL
    if bias is not None:
        if kd != FM_NN or blas or accumulate:
            raise ValueError("bias is for the kernels' nn product, without accumulate")
        if bias.shape[0] != B.shape[1]:
            raise ValueError("bias needs one value per column of C")
        epi = FM_EPI_BIAS_RELU
        bp = &bias[0] if bias.shape[0] else NULL
    if A.shape[1] > 1 and A.strides[1] != sizeof(floating):
        raise ValueError("A needs unit column stride")
    cdef Py_ssize_t lda = A.strides[0] // sizeof(floating) if A.shape[0] > 1 else A.shape[1]
    cdef Py_ssize_t m, n, k, i
    cdef Py_ssize_t n_rows = A.shape[0]
    cdef const long long* ridx = NULL
    if rows is not None:
        if kd == FM_NT or blas:
            raise ValueError("rows is for the kernels' nn and tn products")
        for i in range(rows.shape[0]):
            if not 0 <= rows[i] < A.shape[0]:
                raise ValueError("rows out of range")
        n_rows = rows.shape[0]
        ridx = &rows[0] if n_rows else NULL
        if A.shape[0] == 1:
            lda = A.shape[1]
    if kd == FM_NN:
        m, k, n = n_rows, A.shape[1], B.shape[1]
        if B.shape[0] != k:
            raise ValueError("shapes do not match")
    elif kd == FM_TN:
        k, m, n = n_rows, A.shape[1], B.shape[1]
        if B.shape[0] != k:
            raise ValueError("shapes do not match")
    else:
        m, k, n = A.shape[0], A.shape[1], B.shape[0]
        if B.shape[1] != k:
            raise ValueError("shapes do not match")
    if C.shape[0] != m or C.shape[1] != n:
        raise ValueError("C has the wrong shape")
    if lda < max(1, A.shape[1]):
        lda = max(1, A.shape[1])
    cdef const floating* a = &A[0, 0] if A.shape[0] * A.shape[1] else NULL
    cdef const floating* b = &B[0, 0] if B.shape[0] * B.shape[1] else NULL
    cdef floating* c = &C[0, 0] if C.shape[0] * C.shape[1] else NULL
    cdef int ok = 1, it
    cdef floating beta = 1 if accumulate else 0
    with nogil:
        for it in range(repeat):
            if blas:
                if kd == FM_NN:
                    mm_nn(a, <int>lda, b, c, <int>m, <int>k, <int>n, beta)
                elif kd == FM_TN:
                    mm_tn(a, <int>lda, b, c, <int>k, <int>m, <int>n, beta)
                else:
                    mm_nt(a, b, c, <int>m, <int>k, <int>n, beta)
            else:
                ok = small_gemm_idx(kd, m, n, k, a, lda, ridx, b, B.shape[1], c,
                                    n, accumulate, epi, bp, <floating*>NULL,
                                    n_threads)
    return bool(ok)


def adam(floating[::1] theta, floating[::1] grad, floating[::1] m,
         floating[::1] v, double lr, double beta1, double beta2, double eps,
         double l2=0.0, double l1=0.0):
    """One Adam step in place (lr bias-corrected), as training takes it.

    Returns (sum theta^2, sum |theta|, n_bad) of the weights before the
    step (sum |theta| is 0 when l1 is: the loss uses it only with l1), or
    None if this CPU has no kernel.
    """
    cdef double out[3]
    out[0] = out[1] = out[2] = 0
    cdef Py_ssize_t n = theta.shape[0]
    if grad.shape[0] != n or m.shape[0] != n or v.shape[0] != n:
        raise ValueError("lengths differ")
    if n == 0:
        return 0.0, 0.0, 0
    if not adam_span(&theta[0], &grad[0], &m[0], &v[0], n, <floating>lr,
                     <floating>beta1, <floating>beta2, <floating>eps,
                     <floating>l2, <floating>l1, out):
        return None
    return out[0], out[1], int(out[2])


def adam_product(const floating[:, :] A, const floating[:, ::1] D,
                 floating[:, ::1] theta, floating[:, ::1] m, floating[:, ::1] v,
                 double lr, double beta1, double beta2, double eps,
                 double l2=0.0, rows=None):
    """Adam's step on the weights theta with the gradient A^T D computed
    and consumed block by block (tn_adam, the float32 epoch's first layer);
    A's rows are rows[] of A when rows is given. Returns (sum theta^2
    before the step (0 when l2 is), n_bad), or None if this CPU has no
    kernel."""
    cdef Py_ssize_t k = D.shape[0], n_in = theta.shape[0], n_out = theta.shape[1]
    cdef long long[::1] r
    cdef const long long* rp = NULL
    cdef double sq = 0
    cdef int bad
    if A.strides[1] != sizeof(floating):
        raise ValueError("A needs unit column stride")
    if rows is not None:
        r = np.ascontiguousarray(rows, dtype=np.int64)
        if r.shape[0] != k or (k and (np.min(r) < 0 or np.max(r) >= A.shape[0])):
            raise ValueError("rows must hold D's row count of A's row indices")
        rp = &r[0] if k else NULL
    elif A.shape[0] != k:
        raise ValueError("A and D need the same number of rows")
    if (A.shape[1] != n_in or D.shape[1] != n_out or tuple(m.shape) != tuple(theta.shape)
            or tuple(v.shape) != tuple(theta.shape)):
        raise ValueError("shapes differ")
    if n_in == 0 or n_out == 0 or k == 0:
        raise ValueError("empty operands")
    bad = tn_adam(&A[0, 0], A.strides[0] // sizeof(floating), rp, n_in, n_out, k,
                  &D[0, 0], &theta[0, 0], &m[0, 0], &v[0, 0], lr, beta1, beta2, eps,
                  l2, &sq)
    if bad < 0:
        return None
    return sq, bad


def squares(const floating[::1] x):
    """sum x^2 in double, as the fused step's gradient bound takes it."""
    if x.shape[0] == 0:
        return 0.0
    return sum_squares(&x[0], x.shape[0])


def finite(const floating[::1] g, int n_threads=1):
    """The first-order epoch's test before a step: every g[i] finite."""
    if g.shape[0] == 0:
        return True
    return bool(all_finite(&g[0], g.shape[0], n_threads))


def exp_shift(floating[::1] z, double m):
    """z[j] = exp(z[j] - m) in place, as the softmax log loss takes it
    (src/_vexp.pxd). False, doing nothing, without AVX2."""
    if z.shape[0] == 0:
        return True
    if floating is double:
        done = fm_exp_shift(&z[0], z.shape[0], m)
    else:
        done = fm_exp_shift_f(&z[0], z.shape[0], <float>m)
    return bool(done)


def softmax_log_loss(floating[:, ::1] Z, const floating[::1] b, classes,
                     const long long[::1] rows, sample_weight=None,
                     double inv_norm=1.0, int n_threads=1):
    """The training step's softmax log loss on outputs Z (rows of the batch,
    before the bias b) against class indices classes[rows] (uint8, uint16,
    int32 or int64): Z becomes the output delta in place; returns the rows'
    losses (weights inv_norm * sample_weight[rows], in Z's dtype)."""
    cdef const unsigned char[::1] cl = np.ascontiguousarray(classes).view(np.uint8)
    cdef const floating[::1] sw
    cdef const floating* swp = NULL
    cdef Classes c
    cdef Py_ssize_t n = Z.shape[0], k = Z.shape[1]
    cdef double[::1] loss = np.zeros(max(n, 1))
    if b.shape[0] != k or rows.shape[0] != n:
        raise ValueError("b needs Z's columns, rows Z's rows")
    if n and cl.shape[0] == 0:
        raise ValueError("no class indices for the rows")
    c.p = &cl[0] if cl.shape[0] else NULL
    c.size = np.asarray(classes).dtype.itemsize
    if sample_weight is not None:
        sw = sample_weight
        swp = &sw[0]
    if n:
        output_loss_delta(&Z[0, 0], &b[0], <const floating*>NULL, c, k, swp, &rows[0], n,
                          inv_norm, LOSS_LOG, ACT_SOFTMAX, &loss[0], n_threads)
    return np.asarray(loss)[:n]
