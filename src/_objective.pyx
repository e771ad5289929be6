"""Loss and gradient over many rows, as sums that add up across chunks.

The full-batch solvers (L-BFGS, BFGS, Hessian-free), the validation loss
and the gradient tests call this. Rows are processed in chunks so the
workspace stays small whatever the data size; a distributed caller sums the
results of several calls.

With rows_parallel and several threads (the full-batch solvers, the Dask
workers) the rows are cut into one contiguous share per thread (data
parallel): each thread runs its share's chunks on its own workspace and
gradient, BLAS on one thread, and the gradients are added at the end, in
thread order. One parallel region a call, where the chunk-by-chunk pass
woke the threads for every product and element-wise loop and left BLAS's
threads and OpenMP's taking turns on the cores (L-BFGS on two threads ran
slower than on one).
"""
import numpy as np
cimport numpy as cnp
cnp.import_array()
from cython cimport floating
from cython.parallel cimport prange
from _layers cimport backward
from _passes cimport (Pass, open_pass, pass_input, work_buffer, forward_loss,
                      share_threads, dense_only, share_start, add_shares)


def loss_grad(floating[::1] theta, X, const floating[:, ::1] Y,
              const floating[::1] sample_weight, long long[::1] rows,
              tuple net, int loss, double scale, floating[::1] grad,
              bint accumulate=False, Py_ssize_t chunk=1024,
              int n_threads=1, dict work=None, bint rows_parallel=False):
    """Data term of the objective over X[rows]: no penalty is included.

    Returns sum_i scale * sw_i * loss_i and, if grad is not None, writes its
    gradient into grad (adds to it with accumulate=True). work: a dict the
    caller keeps between calls to reuse the buffers (see _passes.pxd).
    rows_parallel: with n_threads > 1 and dense layers, the threads take a
    share of the rows each (the caller should hold BLAS at one thread);
    results agree with one thread's to rounding. Otherwise the chunks run
    one after another, each product and loop on n_threads.
    """
    cdef Pass p
    cdef int T = share_threads(rows_parallel, n_threads, rows.shape[0], &chunk)
    work = open_pass(net, X, sample_weight, rows, chunk, work, &p)
    if not dense_only(&p.nt):
        T = 1
    cdef Py_ssize_t n = p.n
    cdef Py_ssize_t B = p.B
    cdef Py_ssize_t acts_len = B * sum(net[0][1:])
    cdef Py_ssize_t tmp_len = B * max(net[0][1:])
    cdef Py_ssize_t x_len = B * net[0][0] if p.X != NULL else 1
    dtype = np.float32 if floating is float else np.float64
    cdef floating[::1] acts = work_buffer(work, "acts", T * acts_len, dtype)
    cdef floating[::1] tmp = work_buffer(work, "tmp", T * tmp_len, dtype)
    cdef floating[::1] xbuf = work_buffer(work, "xbuf", T * x_len, dtype)
    cdef double[::1] row_loss = work_buffer(work, "row_loss", T * B, np.float64)
    cdef floating* g = NULL
    if grad is not None:
        g = &grad[0]
    if n == 0:
        if g != NULL and not accumulate:
            grad[:] = 0
        return 0.0
    cdef double total = 0
    if T == 1:
        with nogil:
            total = share_loss_grad(&p, &theta[0], &Y[0, 0], &rows[0], 0, n,
                                    &acts[0], &tmp[0], &xbuf[0], &row_loss[0],
                                    g, accumulate, loss, scale, n_threads)
        return total

    cdef Py_ssize_t P = theta.shape[0]
    cdef floating[::1] grads
    cdef floating* gs = NULL
    if g != NULL:
        grads = work_buffer(work, "grads", (T - 1) * P, dtype)
        gs = &grads[0]
    cdef double[::1] totals = np.zeros(T)
    cdef Py_ssize_t r0, r1
    cdef int t
    with nogil:
        for t in prange(T, schedule="static", num_threads=T):
            r0 = share_start(n, B, t, T)
            r1 = share_start(n, B, t + 1, T)
            totals[t] = share_loss_grad(
                &p, &theta[0], &Y[0, 0], &rows[0], r0, r1,
                &acts[0] + t * acts_len, &tmp[0] + t * tmp_len,
                &xbuf[0] + t * x_len, &row_loss[0] + t * B,
                (g if t == 0 else gs + (t - 1) * P) if g != NULL else NULL,
                accumulate if t == 0 else False, loss, scale, 1)
        if g != NULL:
            add_shares(g, gs, T, P)
    for t in range(T):
        total += totals[t]
    return total


cdef double share_loss_grad(const Pass* p, const floating* theta,
                            const floating* Y, const long long* rows,
                            Py_ssize_t r0, Py_ssize_t r1, floating* acts,
                            floating* tmp, floating* xbuf, double* row_loss,
                            floating* g, bint accumulate, int loss,
                            double scale, int n_threads) noexcept nogil:
    """Loss of rows[r0:r1] in chunks of p.B; their gradient into g (added to
    it with accumulate), if g is not NULL."""
    cdef Py_ssize_t start = r0, b
    cdef int ld0
    cdef const floating* X0
    cdef double total = 0
    while start < r1:
        b = min(p.B, r1 - start)
        X0 = pass_input(p, rows + start, b, xbuf, &ld0, n_threads)
        total += forward_loss(&p.nt, theta, X0, ld0, &p.csr, rows + start, b,
                              acts, Y, <const floating*>p.sw, scale, loss,
                              row_loss, n_threads)
        if g != NULL:
            backward(&p.nt, theta, X0, ld0, &p.csr, rows + start, b, acts,
                     tmp, g, accumulate or start > r0, n_threads)
        start += b
    return total
