# Curvature-vector products: Pearlmutter's R-operator on the chain of dense
# blocks in _layers.pxd.
#
# For a direction v (laid out like theta: V_l at w_off[l], c_l after it) the
# R-operator R{.} = d/dr (.)(theta + r v) at r = 0 runs alongside the passes
# backprop already has:
#
#   forward   R{Z_l} = R{A_l} W_l + A_l V_l + c_l      (R{A_0} = 0)
#             R{A_{l+1}} = phi'(Z_l) R{Z_l}
#   output    R{delta} = w H_out R{z}                    (per row, see below)
#   backward  R{dW_l} = R{A_l}^T delta_l + A_l^T R{delta_l},  R{db_l} = sum R{delta_l}
#             R{delta_{l-1}} = (R{delta_l} W_l^T + delta_l V_l^T) phi'(Z_{l-1})
#                              + (delta_l W_l^T) phi''(Z_{l-1}) R{Z_{l-1}}
#
# R{dW, db} is the Hessian product H v. The Gauss-Newton product
# G v = J^T H_out J v is the R-forward pass (J v) followed by the ordinary
# backward pass of _layers.pxd started from H_out J v: the network's own
# second derivatives are left out.
#
# Pruned layers (_sparse_layers.pxd) keep their mask: v holds a direction for
# the stored weights only, and every product with W or V (and the weight
# terms of the Hessian) runs through the sparse kernels at the stored
# positions. The callers pass a layout whose pruned layers all use the
# sparse kernels (no SP_GEMM dense copy, which these passes would have to
# keep for theta and v at once).
#
# As backprop does, everything is read off the activation *outputs*
# a = phi(z): phi''(z) R{z} = kappa(a) R{a} with kappa = 1 - 2a (logistic),
# -2a (tanh), 0 for the piecewise-linear units, so R{a} is stored instead of
# R{z}.
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport INFINITY
from libc.string cimport memcpy
from _blas cimport mm_nn, mm_tn, mm_nt
from _mathf cimport fexp, flog, logistic
from _activations cimport (ACT_IDENTITY, ACT_LOGISTIC, ACT_TANH, ACT_RELU,
                           ACT_LEAKY_RELU, ACT_SOFTMAX, ACT_EXP, PAR_MIN,
                           bias_act, deriv_mul)
from _losses cimport (LOSS_SQUARED, LOSS_LOG, LOSS_HINGE, LOSS_HINGE_BINARY,
                      LOSS_POISSON)
from _layers cimport Net, Csr, slot, csr_matmul, csr_grad, col_sums
from _sparse_layers cimport (SP_KERNEL, SMALL_B, SpTables, sp_tables,
                             packed_area, pack_dense, gather_tiles,
                             sp_forward, sp_backward)
from _sparse_layers cimport gather_rows as sp_gather_rows


# ------------------------------------------------------------ output layer
#
# H_out is the second derivative of the row's loss with respect to the output
# layer's pre-activation z (output activation included). For the Gauss-Newton
# matrix the network is split where the rest of the loss is convex, so that
# G = J^T H_out J is positive semi-definite for every output/loss pair:
#
#   softmax + log-loss      split at z: H = ysum (diag(p) - p p^T)     G = H
#   logistic + log-loss     split at z: H = diag(p (1 - p))           G = H
#   exp + Poisson           split at z: H = diag(exp(z))              G = H
#   identity + squared      split at z: H = I                         G = H
#   softmax/logistic        split at p = sigma(z), where 1/2 |p - y|^2 has
#     + squared error       Hessian I: G_out = S^T S with S = dp/dz; the exact
#                           H adds sum_j (p_j - y_j) d2p_j/dz2, indefinite
#   identity + hinge        piecewise linear in z: H = G = 0 wherever the
#     (both kinds)          loss is differentiable, so G v = 0 and H v holds
#                           only the network's second-order terms, weighted
#                           by the (sub)gradient


cdef inline void out_curv_row(const floating* z, const floating* b,
                              const floating* y, floating* u, Py_ssize_t k,
                              int loss, int out_act, floating w,
                              bint gauss_newton) noexcept nogil:
    """u <- w H_out u (w G_out u with gauss_newton) for one row.

    z holds the output layer's pre-bias values (z + b is the pre-activation),
    u holds R{z}. Exponentials are recomputed instead of stored, as k is small
    and this needs no per-row workspace.
    """
    cdef Py_ssize_t j
    cdef floating m, s, lse, p, ysum, pu, q, gp, rgp, g, d
    if out_act == ACT_SOFTMAX:
        m = -INFINITY
        for j in range(k):
            if z[j] + b[j] > m:
                m = z[j] + b[j]
        s = 0
        for j in range(k):
            s = s + fexp(z[j] + b[j] - m)
        lse = m + flog(s)
        pu = 0
        for j in range(k):
            pu = pu + fexp(z[j] + b[j] - lse) * u[j]
        if loss == LOSS_LOG:
            ysum = 0
            for j in range(k):
                ysum = ysum + y[j]
            for j in range(k):
                u[j] = w * ysum * fexp(z[j] + b[j] - lse) * (u[j] - pu)
            return
        # Squared error on p: u becomes R{p} = S u first.
        q = 0
        gp = 0
        for j in range(k):
            p = fexp(z[j] + b[j] - lse)
            u[j] = p * (u[j] - pu)
            q = q + p * u[j]
            gp = gp + (p - y[j]) * p
        if gauss_newton:  # S R{p}
            for j in range(k):
                p = fexp(z[j] + b[j] - lse)
                u[j] = w * p * (u[j] - q)
            return
        # delta_j = p_j (g_j - gp), g = p - y; its R-derivative:
        rgp = 0
        for j in range(k):
            p = fexp(z[j] + b[j] - lse)
            rgp = rgp + u[j] * (2 * p - y[j])
        for j in range(k):
            p = fexp(z[j] + b[j] - lse)
            u[j] = w * (u[j] * (p - y[j] - gp) + p * (u[j] - rgp))
    elif out_act == ACT_LOGISTIC:
        for j in range(k):
            p = logistic(z[j] + b[j])
            s = p * (1 - p)
            if loss == LOSS_LOG:
                d = s
            elif gauss_newton:
                d = s * s
            else:  # delta = (p - y) s, ds/dz = s (1 - 2p)
                d = s * (s + (p - y[j]) * (1 - 2 * p))
            u[j] = w * d * u[j]
    elif out_act == ACT_EXP:
        for j in range(k):
            u[j] = w * fexp(z[j] + b[j]) * u[j]
    elif loss == LOSS_SQUARED:
        for j in range(k):
            u[j] = w * u[j]
    else:  # hinge: piecewise linear
        for j in range(k):
            u[j] = 0


cdef inline void output_curvature(
        const floating* Z, const floating* b, const floating* Y,
        Py_ssize_t k, const floating* sw, const long long* rows,
        Py_ssize_t n_rows, double scale, int loss, int out_act, floating* U,
        bint gauss_newton, int n_threads) noexcept nogil:
    """U <- w_r H_out U row by row, w_r = scale * sw[rows[r]]."""
    cdef Py_ssize_t r, i
    if n_threads > 1 and n_rows > 1 and n_rows * k >= PAR_MIN // 4:
        for r in prange(n_rows, schedule='static', num_threads=n_threads):
            i = rows[r]
            out_curv_row(Z + r * k, b, Y + i * k, U + r * k, k, loss, out_act,
                         <floating>(scale * (sw[i] if sw != NULL else 1)),
                         gauss_newton)
    else:
        for r in range(n_rows):
            i = rows[r]
            out_curv_row(Z + r * k, b, Y + i * k, U + r * k, k, loss, out_act,
                         <floating>(scale * (sw[i] if sw != NULL else 1)),
                         gauss_newton)


# -------------------------------------------------------- element-wise maps

cdef inline void rdelta_span(const floating* T, const floating* T2,
                             floating* A, floating* RA, Py_ssize_t n, int act,
                             floating slope) noexcept nogil:
    """RA <- T2 phi' + T kappa RA, then A <- T phi' (phi', kappa from A)."""
    cdef Py_ssize_t i
    cdef floating a, d
    if act == ACT_IDENTITY:
        for i in range(n):
            RA[i] = T2[i]
            A[i] = T[i]
    elif act == ACT_RELU:
        for i in range(n):
            if A[i] > 0:
                RA[i] = T2[i]
                A[i] = T[i]
            else:
                RA[i] = 0
                A[i] = 0
    elif act == ACT_LEAKY_RELU:
        for i in range(n):
            if A[i] > 0:
                RA[i] = T2[i]
                A[i] = T[i]
            else:
                RA[i] = slope * T2[i]
                A[i] = slope * T[i]
    elif act == ACT_LOGISTIC:
        for i in range(n):
            a = A[i]
            d = a * (1 - a)
            RA[i] = T2[i] * d + T[i] * (1 - 2 * a) * RA[i]
            A[i] = T[i] * d
    elif act == ACT_TANH:
        for i in range(n):
            a = A[i]
            d = 1 - a * a
            RA[i] = T2[i] * d - 2 * T[i] * a * RA[i]
            A[i] = T[i] * d


cdef inline void rdelta(const floating* T, const floating* T2, floating* A,
                        floating* RA, Py_ssize_t n, int act, floating slope,
                        int n_threads) noexcept nogil:
    cdef Py_ssize_t c, n_chunks, lo
    if n_threads > 1 and n >= PAR_MIN:
        n_chunks = (n + 4095) // 4096
        for c in prange(n_chunks, schedule='static', num_threads=n_threads):
            lo = c * 4096
            rdelta_span(T + lo, T2 + lo, A + lo, RA + lo, min(4096, n - lo),
                        act, slope)
    else:
        rdelta_span(T, T2, A, RA, n, act, slope)


# ---------------------------------------------------------------- passes

cdef inline void sp_times_wt(const Net* net, int l, Py_ssize_t n_in,
                             Py_ssize_t n_out, const floating* w,
                             const floating* D, Py_ssize_t B,
                             floating* out, int n_threads) noexcept nogil:
    """out = D W^T (row-major B x n_in) for a pruned layer whose stored
    weights are w: sp_backward's delta product without its weight gradient
    (V^T has no gradient to go with it)."""
    cdef SpTables t = sp_tables(&net.sp, l, n_in, n_out)
    cdef floating* P
    cdef floating* wc
    cdef Py_ssize_t q
    if B < SMALL_B:
        sp_gather_rows(w, t.row_ptr, t.col_idx, t.perm, n_in, D, n_out, B,
                       out)
        return
    P = packed_area(&net.sp, w)
    pack_dense(D, n_out, B, n_out, P, False, n_threads)
    wc = <floating*>net.sp.work + net.sp.off[2 * l + 1]
    for q in range(t.row_ptr[n_in]):
        wc[q] = w[t.perm[q]]  # CSR order, read sequentially by the gather
    gather_tiles(wc, t.row_ptr, t.col_idx, n_out, n_in, P, B, out, n_threads)


cdef inline void add_to(floating* out, const floating* x,
                        Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        out[i] = out[i] + x[i]


cdef inline const floating* layer_input(const Net* net, floating* acts,
                                       const floating* X0, int ld0,
                                       Py_ssize_t B, int l,
                                       int* lda) noexcept nogil:
    """Layer l's input rows and their leading dimension (lda): X0 for the
    first layer, the activations of layer l otherwise."""
    if l == 0:
        lda[0] = ld0
        return X0
    lda[0] = <int>net.units[l]
    return slot(net, acts, B, l)


cdef inline void r_forward(const Net* net, const floating* theta,
                           const floating* v, const floating* X0, int ld0,
                           const Csr* Xs, const long long* rows, Py_ssize_t B,
                           const floating* acts, floating* racts,
                           floating* tmp, int n_threads) noexcept nogil:
    """Fill racts (laid out like acts) with R{A_l} of the hidden layers and
    R{z} (bias direction included) in the output slot.

    acts must hold forward()'s activations; the output slot is not read.
    tmp: B * max(units[1:]) scratch (pruned layers).
    """
    cdef int l, L = net.n_layers
    cdef Py_ssize_t n_in, n_out
    cdef floating* RZ
    cdef const floating* A
    cdef int lda
    for l in range(L):
        n_in = net.units[l]
        n_out = net.units[l + 1]
        RZ = slot(net, racts, B, l + 1)
        A = layer_input(net, <floating*>acts, X0, ld0, B, l, &lda)
        if net.sp.mode[l] == SP_KERNEL:
            sp_forward(&net.sp, l, n_in, n_out, v + net.w_off[l], A, lda,
                       Xs.data if l == 0 else NULL, Xs.indices, Xs.indptr,
                       rows, B, RZ, n_threads)
            if l > 0:
                sp_forward(&net.sp, l, n_in, n_out, theta + net.w_off[l],
                           slot(net, racts, B, l), <int>n_in, NULL, NULL,
                           NULL, rows, B, tmp, n_threads)
                add_to(RZ, tmp, B * n_out)
        elif l == 0 and Xs.data != NULL:
            csr_matmul(Xs, rows, B, v + net.w_off[0], n_out, RZ, n_threads)
        else:
            mm_nn(A, lda, v + net.w_off[l], RZ, <int>B, <int>n_in,
                  <int>n_out, 0)
            if l > 0:
                mm_nn(slot(net, racts, B, l), <int>n_in, theta + net.w_off[l],
                      RZ, <int>B, <int>n_in, <int>n_out, 1)
        bias_act(RZ, v + net.b_off[l], B, n_out, ACT_IDENTITY,
                 <floating>net.slope, n_threads)
        if l < L - 1:
            deriv_mul(slot(net, <floating*>acts, B, l + 1), RZ, RZ, B * n_out,
                      net.act[l], <floating>net.slope, n_threads)


cdef inline void r_backward(const Net* net, const floating* theta,
                            const floating* v, const floating* X0, int ld0,
                            const Csr* Xs, const long long* rows, Py_ssize_t B,
                            floating* acts, floating* racts, floating* tmp,
                            floating* tmp2, floating* hv, bint accumulate,
                            int n_threads) noexcept nogil:
    """Hessian product: R{gradient} written (or added) into hv.

    Needs the activations in acts with the output delta in the last slot, and
    r_forward()'s R{A} in racts with R{delta} in the last slot. Both are
    consumed (overwritten by the deltas and their R-derivatives).
    """
    cdef int l, L = net.n_layers
    cdef Py_ssize_t n_in, n_out
    cdef floating* D
    cdef floating* RD
    cdef floating* out
    cdef const floating* A
    cdef int lda
    cdef floating beta = 1 if accumulate else 0
    for l in range(L - 1, -1, -1):
        n_in = net.units[l]
        n_out = net.units[l + 1]
        D = slot(net, acts, B, l + 1)
        RD = slot(net, racts, B, l + 1)
        out = hv + net.w_off[l]
        A = layer_input(net, acts, X0, ld0, B, l, &lda)
        if net.sp.mode[l] == SP_KERNEL:
            # out (+)= A^T RD + R{A}^T D at the stored weights;
            # tmp = D W^T, tmp2 = RD W^T + D V^T.
            if l > 0:
                sp_times_wt(net, l, n_in, n_out, v + net.w_off[l], D, B, tmp,
                            n_threads)
            sp_backward(&net.sp, l, n_in, n_out, theta + net.w_off[l], A, lda,
                        Xs.data if l == 0 else NULL, Xs.indices, Xs.indptr,
                        rows, B, RD, out, accumulate,
                        tmp2 if l > 0 else NULL, n_threads)
            if l > 0:
                add_to(tmp2, tmp, B * n_in)
                sp_backward(&net.sp, l, n_in, n_out, theta + net.w_off[l],
                            slot(net, racts, B, l), <int>n_in, NULL, NULL,
                            NULL, rows, B, D, out, True, tmp, n_threads)
        else:
            if l == 0 and Xs.data != NULL:
                csr_grad(Xs, rows, B, RD, n_in, n_out, out, accumulate,
                         n_threads)
            else:
                mm_tn(A, lda, RD, out, <int>B, <int>n_in, <int>n_out, beta)
            if l > 0:
                mm_tn(slot(net, racts, B, l), <int>n_in, D, out, <int>B,
                      <int>n_in, <int>n_out, 1)
                mm_nt(D, theta + net.w_off[l], tmp, <int>B, <int>n_out,
                      <int>n_in, 0)
                mm_nt(RD, theta + net.w_off[l], tmp2, <int>B, <int>n_out,
                      <int>n_in, 0)
                mm_nt(D, v + net.w_off[l], tmp2, <int>B, <int>n_out,
                      <int>n_in, 1)
        col_sums(RD, B, n_out, hv + net.b_off[l], accumulate)
        if l > 0:
            rdelta(tmp, tmp2, slot(net, acts, B, l), slot(net, racts, B, l),
                   B * n_in, net.act[l - 1], <floating>net.slope, n_threads)
