"""Loss and gradient over many rows, as sums that add up across chunks.

The full-batch solvers (L-BFGS, BFGS, Hessian-free), the validation loss
and the gradient tests call this. Rows are processed in chunks so the
workspace stays small whatever the data size; a distributed caller sums the
results of several calls.
"""
import numpy as np
from cython cimport floating
from _layers cimport backward
from _passes cimport Pass, open_pass, pass_input, work_buffer, forward_loss


def loss_grad(floating[::1] theta, X, const floating[:, ::1] Y,
              const floating[::1] sample_weight, long long[::1] rows,
              tuple net, int loss, double scale, floating[::1] grad,
              bint accumulate=False, Py_ssize_t chunk=1024,
              int n_threads=1, dict work=None):
    """Data term of the objective over X[rows]: no penalty is included.

    Returns sum_i scale * sw_i * loss_i and, if grad is not None, writes its
    gradient into grad (adds to it with accumulate=True). work: a dict the
    caller keeps between calls to reuse the buffers (see _passes.pxd).
    """
    cdef Pass p
    work = open_pass(net, X, sample_weight, rows, chunk, work, &p)
    cdef Py_ssize_t n = p.n, B = p.B
    dtype = np.float32 if floating is float else np.float64
    cdef floating[::1] acts = work_buffer(work, "acts", B * sum(net[0][1:]), dtype)
    cdef floating[::1] tmp = work_buffer(work, "tmp", B * max(net[0][1:]), dtype)
    cdef floating[::1] xbuf = work_buffer(
        work, "xbuf", B * net[0][0] if p.X != NULL else 1, dtype)
    cdef double[::1] row_loss = work_buffer(work, "row_loss", B, np.float64)
    cdef floating* g = NULL
    if grad is not None:
        g = &grad[0]
    cdef Py_ssize_t start = 0, b
    cdef int ld0
    cdef const floating* X0
    cdef double total = 0
    if n == 0:
        if g != NULL and not accumulate:
            grad[:] = 0
        return 0.0
    with nogil:
        while start < n:
            b = min(B, n - start)
            X0 = pass_input(&p, &rows[start], b, &xbuf[0], &ld0, n_threads)
            total += forward_loss(&p.nt, &theta[0], X0, ld0, &p.csr,
                                  &rows[start], b, &acts[0], &Y[0, 0],
                                  <const floating*>p.sw, scale, loss,
                                  &row_loss[0], n_threads)
            if g != NULL:
                backward(&p.nt, &theta[0], X0, ld0, &p.csr, &rows[start], b,
                         &acts[0], &tmp[0], g, accumulate or start > 0,
                         n_threads)
            start += b
    return total
