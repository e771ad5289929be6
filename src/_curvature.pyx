"""Curvature for the second-order solvers, as sums over rows.

curvature_product returns the Gauss-Newton product G v or the Hessian
product H v of the data term; loss_grad_fisher returns the loss and gradient
together with the empirical Fisher diagonal sum_i w_i (grad loss_i)**2 (the
diagonal preconditioner of the Hessian-free solver). Like
_objective.loss_grad, every result is sum_i scale * sw_i * (row i's term)
over X[rows], processed in chunks, so results add up across chunks and row
subsets (a distributed caller sums them), and every kernel takes the
caller's workspace dict (work, see _passes.pxd). Penalties are added by the
Python wrappers (solvers/objective.py).
See _rop.pxd for the R-operator passes and the curvature of each output/loss
pair.
"""
import numpy as np
cimport numpy as cnp
cnp.import_array()
from cython cimport floating
from libc.string cimport memcpy
from _blas cimport mm_tn, mm_nt
from _activations cimport deriv_set
from _layers cimport Net, Csr, forward, backward, slot, csr_grad, col_sums
from _losses cimport no_classes, output_loss_delta
from _args cimport unpack_input
from cython.parallel cimport prange
from _passes cimport (Pass, open_pass, pass_input, work_buffer, forward_loss,
                      share_threads, dense_only, share_start, add_shares)
from _sparse_layers cimport SP_KERNEL, SP_GEMM, sp_backward
from _rop cimport r_forward, r_backward, output_curvature, layer_input


cdef int check_no_gemm_layers(Net nt) except -1:
    cdef int l
    for l in range(nt.n_layers):
        if nt.sp.mode[l] == SP_GEMM:
            raise ValueError("the curvature kernels run pruned layers on the sparse "
                             "kernels: build the layout with max_sparse_density=1")
    return 0


def curvature_product(floating[::1] theta, floating[::1] v, X,
                      const floating[:, ::1] Y,
                      const floating[::1] sample_weight, long long[::1] rows,
                      tuple net, int loss, double scale, floating[::1] out,
                      bint gauss_newton=True, bint accumulate=False,
                      Py_ssize_t chunk=1024, int n_threads=1,
                      floating[::1] cache=None, bint fill_cache=False,
                      dict work=None, bint rows_parallel=False):
    """out (+)= sum_i scale * sw_i * C_i v over X[rows], without penalties.

    C_i is row i's Gauss-Newton matrix J_i^T H_i J_i (gauss_newton=True) or
    its Hessian. v and out have theta's layout and dtype.

    The forward pass depends on theta and rows only: given a cache of
    len(rows) * sum(units[1:]) elements, fill_cache=True stores it there and
    fill_cache=False reads it back instead of recomputing it (conjugate
    gradient multiplies many v at one theta). Same chunk, n_threads and
    rows_parallel for both calls. rows_parallel: as _objective.loss_grad's.
    """
    cdef Pass p
    cdef int T = share_threads(rows_parallel, n_threads, rows.shape[0], &chunk)
    work = open_pass(net, X, sample_weight, rows, chunk, work, &p)
    check_no_gemm_layers(p.nt)
    if not dense_only(&p.nt):
        T = 1
    cdef Py_ssize_t n = p.n, B = p.B
    if v.shape[0] != theta.shape[0] or out.shape[0] != theta.shape[0]:
        raise ValueError("v and out must have theta's length")
    if n == 0:
        if not accumulate:
            out[:] = 0
        return
    dtype = np.float32 if floating is float else np.float64
    cdef Py_ssize_t width = max(net[0][1:])
    cdef Py_ssize_t n_acts = sum(net[0][1:])
    cdef Py_ssize_t x_len = B * net[0][0] if p.X != NULL else 1
    cdef floating[::1] acts = work_buffer(work, "acts", T * B * n_acts, dtype)
    cdef floating[::1] racts = work_buffer(work, "racts", T * B * n_acts, dtype)
    cdef floating[::1] tmp = work_buffer(work, "tmp", T * B * width, dtype)
    cdef floating[::1] tmp2 = work_buffer(work, "tmp2", T * B * width, dtype)
    cdef floating[::1] xbuf = work_buffer(work, "xbuf", T * x_len, dtype)
    cdef double[::1] row_loss = work_buffer(work, "row_loss", T * B, np.float64)
    cdef floating* cached = NULL
    if cache is not None:
        if cache.shape[0] != n * n_acts:
            raise ValueError("cache must hold len(rows) * sum(units[1:]) elements")
        cached = &cache[0]
    if T == 1:
        with nogil:
            curvature_share(&p, &theta[0], &v[0], &Y[0, 0], &rows[0], 0, n,
                            &acts[0], &racts[0], &tmp[0], &tmp2[0], &xbuf[0],
                            &row_loss[0], cached, fill_cache, &out[0],
                            accumulate, loss, scale, gauss_newton, n_threads)
        return
    cdef Py_ssize_t P = theta.shape[0], r0, r1
    cdef floating[::1] outs = work_buffer(work, "shares", (T - 1) * P, dtype)
    cdef int t
    with nogil:
        for t in prange(T, schedule="static", num_threads=T):
            r0 = share_start(n, B, t, T)
            r1 = share_start(n, B, t + 1, T)
            curvature_share(&p, &theta[0], &v[0], &Y[0, 0], &rows[0], r0, r1,
                            &acts[0] + t * B * n_acts, &racts[0] + t * B * n_acts,
                            &tmp[0] + t * B * width, &tmp2[0] + t * B * width,
                            &xbuf[0] + t * x_len, &row_loss[0] + t * B, cached,
                            fill_cache,
                            &out[0] if t == 0 else &outs[0] + (t - 1) * P,
                            accumulate if t == 0 else False, loss, scale,
                            gauss_newton, 1)
        add_shares(&out[0], &outs[0], T, P)


cdef void curvature_share(const Pass* p, const floating* theta,
                          const floating* v, const floating* Y,
                          const long long* rows, Py_ssize_t r0, Py_ssize_t r1,
                          floating* acts, floating* racts, floating* tmp,
                          floating* tmp2, floating* xbuf, double* row_loss,
                          floating* cached, bint fill_cache, floating* out,
                          bint accumulate, int loss, double scale,
                          bint gauss_newton, int n_threads) noexcept nogil:
    """curvature_product over rows[r0:r1] in chunks of p.B (the cache is
    indexed by row position: the same chunks on every call)."""
    cdef int L = p.nt.n_layers
    cdef Py_ssize_t k = p.nt.units[L], n_acts = 0, start = r0, b
    cdef int ld0, l
    cdef const floating* X0
    cdef floating* Z
    cdef floating* RZ
    cdef const floating* bias = theta + p.nt.b_off[L - 1]
    cdef const floating* sw = <const floating*>p.sw
    for l in range(1, L + 1):
        n_acts += p.nt.units[l]
    while start < r1:
        b = min(p.B, r1 - start)
        X0 = pass_input(p, rows + start, b, xbuf, &ld0, n_threads)
        if cached != NULL and not fill_cache:
            memcpy(acts, cached + start * n_acts, b * n_acts * sizeof(floating))
        else:
            forward(&p.nt, theta, X0, ld0, &p.csr, rows + start, b, acts, False,
                    n_threads)
            if cached != NULL:
                memcpy(cached + start * n_acts, acts, b * n_acts * sizeof(floating))
        r_forward(&p.nt, theta, v, X0, ld0, &p.csr, rows + start, b, acts,
                  racts, tmp, n_threads)
        Z = slot(&p.nt, acts, b, L)
        RZ = slot(&p.nt, racts, b, L)
        output_curvature(Z, bias, Y, k, sw, rows + start, b, scale, loss,
                         p.nt.act[L - 1], RZ, gauss_newton, n_threads)
        if gauss_newton:
            # J^T (H_out J v): the ordinary backward pass from H_out J v.
            memcpy(Z, RZ, b * k * sizeof(floating))
            backward(&p.nt, theta, X0, ld0, &p.csr, rows + start, b, acts, tmp,
                     out, accumulate or start > r0, n_threads)
        else:
            output_loss_delta(Z, bias, Y, no_classes(), k, sw, rows + start, b,
                              scale, loss, p.nt.act[L - 1], row_loss, n_threads)
            r_backward(&p.nt, theta, v, X0, ld0, &p.csr, rows + start, b, acts,
                       racts, tmp, tmp2, out, accumulate or start > r0,
                       n_threads)
        start += b


cdef void square_rows(const floating* A, int lda, Py_ssize_t B, Py_ssize_t n,
                      const floating* row_scale, floating* out) noexcept nogil:
    """out = A**2 (B x n, packed), row r times row_scale[r] if given."""
    cdef Py_ssize_t r, j
    cdef floating c = 1
    for r in range(B):
        if row_scale != NULL:
            c = row_scale[r]
        for j in range(n):
            out[r * n + j] = c * A[r * lda + j] * A[r * lda + j]


cdef void inverse_weights(const floating* sw, const long long* rows,
                          Py_ssize_t B, double scale,
                          floating* out) noexcept nogil:
    """out[r] = 1 / w_r, w_r = scale * sw[rows[r]] (0 where w_r is 0: that
    row's delta is 0 too)."""
    cdef Py_ssize_t r
    cdef double w
    for r in range(B):
        w = scale * (sw[rows[r]] if sw != NULL else 1)
        out[r] = <floating>(1 / w) if w != 0 else 0


cdef void backward_fisher(const Net* net, const floating* theta,
                          const floating* X0, int ld0, const Csr* Xs,
                          const Csr* Xsq, const long long* rows, Py_ssize_t B,
                          floating* acts, floating* tmp, floating* sqa,
                          floating* sqd, const floating* inv_w, floating* grad,
                          floating* diag, bint accumulate,
                          int n_threads) noexcept nogil:
    """_layers.backward plus diag (+)= sum_r g_r^2 / w_r, g_r row r's term of
    the gradient (its weight w_r = inv_w[r]^-1 included): per weight,
    (A^2)^T (delta^2 / w) (at the stored weights of a pruned layer)."""
    cdef int l, L = net.n_layers
    cdef Py_ssize_t n_in, n_out
    cdef const floating* A
    cdef floating* D
    cdef int lda
    cdef floating beta = 1 if accumulate else 0
    for l in range(L - 1, -1, -1):
        n_in = net.units[l]
        n_out = net.units[l + 1]
        D = slot(net, acts, B, l + 1)
        A = layer_input(net, acts, X0, ld0, B, l, &lda)
        square_rows(D, <int>n_out, B, n_out, inv_w, sqd)
        if net.sp.mode[l] == SP_KERNEL:
            if A != NULL:
                square_rows(A, lda, B, n_in, NULL, sqa)
            sp_backward(&net.sp, l, n_in, n_out, theta + net.w_off[l],
                        sqa if A != NULL else NULL, <int>n_in,
                        Xsq.data if l == 0 else NULL, Xsq.indices,
                        Xsq.indptr, rows, B, sqd, diag + net.w_off[l],
                        accumulate, NULL, n_threads)
            sp_backward(&net.sp, l, n_in, n_out, theta + net.w_off[l], A, lda,
                        Xs.data if l == 0 else NULL, Xs.indices, Xs.indptr,
                        rows, B, D, grad + net.w_off[l], accumulate,
                        tmp if l > 0 else NULL, n_threads)
        elif l == 0 and Xs.data != NULL:
            csr_grad(Xs, rows, B, D, n_in, n_out, grad + net.w_off[l],
                     accumulate, n_threads)
            csr_grad(Xsq, rows, B, sqd, n_in, n_out, diag + net.w_off[l],
                     accumulate, n_threads)
        else:
            mm_tn(A, lda, D, grad + net.w_off[l], <int>B, <int>n_in,
                  <int>n_out, beta)
            square_rows(A, lda, B, n_in, NULL, sqa)
            mm_tn(sqa, <int>n_in, sqd, diag + net.w_off[l], <int>B,
                  <int>n_in, <int>n_out, beta)
        col_sums(D, B, n_out, grad + net.b_off[l], accumulate)
        col_sums(sqd, B, n_out, diag + net.b_off[l], accumulate)
        if l > 0:
            if net.sp.mode[l] != SP_KERNEL:
                mm_nt(D, theta + net.w_off[l], tmp, <int>B, <int>n_out,
                      <int>n_in, 0)
            deriv_set(tmp, slot(net, acts, B, l), B * n_in, net.act[l - 1],
                      <floating>net.slope, n_threads)


def loss_grad_fisher(floating[::1] theta, X, Xsq, const floating[:, ::1] Y,
                     const floating[::1] sample_weight, long long[::1] rows,
                     tuple net, int loss, double scale, floating[::1] grad,
                     floating[::1] diag, bint accumulate=False,
                     Py_ssize_t chunk=1024, int n_threads=1, dict work=None,
                     bint rows_parallel=False):
    """loss_grad's loss and gradient, and the empirical Fisher diagonal.

    Returns sum_i w_i loss_i with w_i = scale * sw_i, writes its gradient
    sum_i w_i grad loss_i into grad and sum_i w_i (grad loss_i)**2 into diag
    (adds to both with accumulate): the weighted mean of the squared rows'
    gradients, on the scale of the curvature products' weighted mean.
    Xsq is None for dense X and (data**2, indices, indptr) for CSR X.
    rows_parallel: as _objective.loss_grad's.
    """
    cdef Pass p
    cdef int T = share_threads(rows_parallel, n_threads, rows.shape[0], &chunk)
    work = open_pass(net, X, sample_weight, rows, chunk, work, &p)
    check_no_gemm_layers(p.nt)
    if not dense_only(&p.nt):
        T = 1
    cdef Csr csr_sq
    cdef const floating* Xsq_ptr
    cdef Py_ssize_t t0 = 0, t1 = 0, n = p.n, B = p.B
    csr_sq.data = NULL
    if p.csr.data != NULL:
        if Xsq is None:
            raise ValueError("CSR X needs Xsq = (data**2, indices, indptr)")
        unpack_input(Xsq, &csr_sq, &Xsq_ptr, &t0, &t1)
    if n == 0:
        if not accumulate:
            grad[:] = 0
            diag[:] = 0
        return 0.0
    dtype = np.float32 if floating is float else np.float64
    cdef Py_ssize_t width = max(net[0])
    cdef Py_ssize_t n_acts = sum(net[0][1:])
    cdef Py_ssize_t x_len = B * net[0][0] if p.X != NULL else 1
    cdef floating[::1] acts = work_buffer(work, "acts", T * B * n_acts, dtype)
    cdef floating[::1] tmp = work_buffer(work, "tmp", T * B * width, dtype)
    cdef floating[::1] sqa = work_buffer(work, "sqa", T * B * width, dtype)
    cdef floating[::1] sqd = work_buffer(work, "sqd", T * B * width, dtype)
    cdef floating[::1] inv_w = work_buffer(work, "inv_w", T * B, dtype)
    cdef floating[::1] xbuf = work_buffer(work, "xbuf", T * x_len, dtype)
    cdef double[::1] row_loss = work_buffer(work, "row_loss", T * B, np.float64)
    cdef double total = 0
    if T == 1:
        with nogil:
            total = fisher_share(&p, &csr_sq, &theta[0], &Y[0, 0], &rows[0], 0, n,
                                 &acts[0], &tmp[0], &sqa[0], &sqd[0], &inv_w[0],
                                 &xbuf[0], &row_loss[0], &grad[0], &diag[0],
                                 accumulate, loss, scale, n_threads)
        return total
    cdef Py_ssize_t P = theta.shape[0], r0, r1
    cdef floating[::1] shares = work_buffer(work, "shares", 2 * (T - 1) * P, dtype)
    cdef double[::1] totals = np.zeros(T)
    cdef int t
    with nogil:
        for t in prange(T, schedule="static", num_threads=T):
            r0 = share_start(n, B, t, T)
            r1 = share_start(n, B, t + 1, T)
            totals[t] = fisher_share(
                &p, &csr_sq, &theta[0], &Y[0, 0], &rows[0], r0, r1,
                &acts[0] + t * B * n_acts, &tmp[0] + t * B * width,
                &sqa[0] + t * B * width, &sqd[0] + t * B * width,
                &inv_w[0] + t * B, &xbuf[0] + t * x_len, &row_loss[0] + t * B,
                &grad[0] if t == 0 else &shares[0] + (t - 1) * P,
                &diag[0] if t == 0 else &shares[0] + (T - 1 + t - 1) * P,
                accumulate if t == 0 else False, loss, scale, 1)
        add_shares(&grad[0], &shares[0], T, P)
        add_shares(&diag[0], &shares[0] + (T - 1) * P, T, P)
    for t in range(T):
        total += totals[t]
    return total


cdef double fisher_share(const Pass* p, const Csr* csr_sq, const floating* theta,
                         const floating* Y, const long long* rows,
                         Py_ssize_t r0, Py_ssize_t r1, floating* acts,
                         floating* tmp, floating* sqa, floating* sqd,
                         floating* inv_w, floating* xbuf, double* row_loss,
                         floating* grad, floating* diag, bint accumulate,
                         int loss, double scale, int n_threads) noexcept nogil:
    """loss_grad_fisher over rows[r0:r1] in chunks of p.B."""
    cdef Py_ssize_t start = r0, b
    cdef int ld0
    cdef const floating* X0
    cdef const floating* sw = <const floating*>p.sw
    cdef double total = 0
    while start < r1:
        b = min(p.B, r1 - start)
        X0 = pass_input(p, rows + start, b, xbuf, &ld0, n_threads)
        total += forward_loss(&p.nt, theta, X0, ld0, &p.csr, rows + start, b,
                              acts, Y, sw, scale, loss, row_loss, n_threads)
        inverse_weights(sw, rows + start, b, scale, inv_w)
        backward_fisher(&p.nt, theta, X0, ld0, &p.csr, csr_sq, rows + start, b,
                        acts, tmp, sqa, sqd, inv_w, grad, diag,
                        accumulate or start > r0, n_threads)
        start += b
    return total
