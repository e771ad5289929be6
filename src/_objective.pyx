"""Loss and gradient over many rows, as sums that add up across chunks.

The full-batch solvers (L-BFGS, BFGS, Hessian-free), the validation loss
and the gradient tests call this. Rows are processed in chunks so the
workspace stays small whatever the data size; a distributed caller sums the
results of several calls.
"""
import numpy as np
from cython cimport floating
from _layers cimport (Net, Csr, forward, backward, slot, batch_input,
                      rows_contiguous)
from _args cimport unpack_net, unpack_input, new_sparse_work
from _losses cimport output_loss_delta


def loss_grad(floating[::1] theta, X, const floating[:, ::1] Y,
              const floating[::1] sample_weight, long long[::1] rows,
              tuple net, int loss, double scale, floating[::1] grad,
              bint accumulate=False, Py_ssize_t chunk=1024,
              int n_threads=1):
    """Data term of the objective over X[rows]: no penalty is included.

    Returns sum_i scale * sw_i * loss_i and, if grad is not None, writes its
    gradient into grad (adds to it with accumulate=True).
    """
    cdef Net nt = unpack_net(net)
    cdef Csr csr
    cdef const floating* X_ptr
    cdef Py_ssize_t s0 = 0, s1 = 0
    unpack_input(X, &csr, &X_ptr, &s0, &s1)
    cdef int L = nt.n_layers
    cdef Py_ssize_t n = rows.shape[0], k = nt.units[L], n_feat = nt.units[0]
    cdef Py_ssize_t B = max(1, min(chunk, n))
    dtype = np.float32 if floating is float else np.float64
    cdef floating[::1] acts = np.empty(B * sum(net[0][1:]), dtype=dtype)
    cdef floating[::1] tmp = np.empty(B * max(net[0][1:]), dtype=dtype)
    cdef floating[::1] xbuf = np.empty(B * n_feat if X_ptr != NULL else 1,
                                       dtype=dtype)
    cdef double[::1] row_loss = np.empty(B)
    cdef floating[::1] sp_work = new_sparse_work(net, B, dtype)
    nt.sp.work = &sp_work[0]
    cdef const floating* sw = NULL
    if sample_weight is not None:
        sw = &sample_weight[0]
    cdef floating* g = NULL
    if grad is not None:
        g = &grad[0]
    cdef Py_ssize_t start, b
    cdef int ld0
    cdef const floating* X0
    cdef double total = 0
    cdef bint contiguous
    if n == 0:
        if g != NULL and not accumulate:
            grad[:] = 0
        return 0.0
    with nogil:
        contiguous = rows_contiguous(X_ptr, s0, s1, n_feat, &rows[0], n)
        start = 0
        while start < n:
            b = min(B, n - start)
            X0 = batch_input(X_ptr, s0, s1, n_feat, &rows[start], b,
                             contiguous, &xbuf[0], &ld0, n_threads)
            forward(&nt, &theta[0], X0, ld0, &csr, &rows[start], b, &acts[0],
                    False, n_threads)
            total += output_loss_delta(
                slot(&nt, &acts[0], b, L),
                &theta[0] + nt.b_off[L - 1], &Y[0, 0], NULL,
                k, sw, &rows[start], b, scale, loss, nt.act[L - 1],
                &row_loss[0], n_threads)
            if g != NULL:
                backward(&nt, &theta[0], X0, ld0, &csr, &rows[start], b,
                         &acts[0], &tmp[0], g, accumulate or start > 0,
                         n_threads)
            start += b
    return total
