"""The full-batch training objective as a function of the flat parameters.

    f(theta) = (sum_i sw_i loss_i + alpha/2 ||W||^2 + l1 ||W||_1) / sum_i sw_i

W: all weights, not biases. This is scikit-learn's MLP objective (with
an added L1 term); minibatch solvers apply the same formula per batch.

Besides the loss and gradient, `Objective` gives the second-order solvers
curvature-vector products and the empirical Fisher diagonal: it
implements the protocol of `fastmlp.solvers.hessian_free.hessian_free`.
"""

import numpy as np

from .. import _curvature, _objective
from .._network import SP_GEMM, Layout

CURVATURES = ("gauss-newton", "hessian")

# Rows per compiled chunk: large enough for efficient gemm, small enough
# that the workspace stays a few MB.
CHUNK_ROWS = 2048
# Largest forward pass kept between curvature products at one point.
CACHE_BYTES = 256 << 20


def kernel_input(X):
    """X as the kernels take it: an ndarray, or (data, indices, indptr)."""
    if hasattr(X, "indptr"):
        return (X.data, X.indices, X.indptr)
    return X


def curvature_net(layout):
    """The kernel tuple that _curvature's functions take for this layout.

    Pruned layers keep their mask; the curvature kernels run them all on the
    sparse kernels, so a layer dense enough for the gemm fallback (SP_GEMM)
    is switched to them here. Dense layouts are returned as they are.
    """
    if not (layout.sp_mode == SP_GEMM).any():
        return layout.net
    return Layout(layout.units, layout.activations, layout.negative_slope,
                  layout.structure, max_sparse_density=1.0).net


class Objective:
    """Loss and gradient of the whole training set (or of rows ``rows``).

    Parameters
    ----------
    layout : Layout
    X : ndarray or CSR matrix, of theta's dtype.
    Y : ndarray (n_samples, n_outputs), of theta's dtype.
    sample_weight : ndarray or None
    loss_code : int
    alpha, l1 : float
        L2 and L1 penalty strengths.
    n_threads : int
    rows : int64 ndarray or None
        Subset of rows; all rows by default.
    rows_parallel : bool
        Every pass (loss, gradient, curvature products, Fisher diagonal)
        runs its threads on a share of the rows each, BLAS held at one
        thread by the caller (_objective.loss_grad).
    """

    def __init__(self, layout, X, Y, sample_weight, loss_code, alpha, l1,
                 n_threads, rows=None, rows_parallel=False):
        self.layout = layout
        self.X = kernel_input(X)
        self.Y = Y
        self.sample_weight = sample_weight
        self.loss_code = loss_code
        self.alpha = float(alpha)
        self.l1 = float(l1)
        self.n_threads = n_threads
        self.rows_parallel = bool(rows_parallel)
        if rows is None:
            rows = np.arange(Y.shape[0], dtype=np.int64)
        self.rows = rows
        if sample_weight is None:
            total = len(rows)
        else:
            total = float(np.sum(sample_weight[rows], dtype=np.float64))
        self.scale = 1.0 / total
        self.n_evals = 0
        # The weights' blocks of theta, as views: the penalty's curvature is
        # added at every CG step, where a boolean mask would gather and scatter.
        self._weight_slices = [layout.coef_slice(l) for l in range(layout.n_layers)]
        self._batch = None  # (positions, rows, scale) of the last curvature batch
        self._Xsq = None
        self._forward_cache = None  # (theta, rows, activations, chunk)
        # The kernels' buffers, kept for the whole fit (see src/_passes.pxd):
        # solvers call them thousands of times. One call at a time.
        self._work = {}
        self._curvature_net = curvature_net(layout)

    def penalty(self, theta, grad=None):
        """The penalty's value; adds its gradient to grad when given."""
        value = 0.0
        if self.alpha == 0 and self.l1 == 0:
            return value
        for l in range(self.layout.n_layers):
            sl = self.layout.coef_slice(l)
            w = theta[sl]
            value += 0.5 * self.alpha * float(np.dot(w, w)) + self.l1 * float(np.abs(w).sum())
            if grad is not None:
                g = grad[sl]
                g += (self.alpha * self.scale) * w
                if self.l1:
                    g += (self.l1 * self.scale) * np.sign(w)
        return value * self.scale

    def __call__(self, theta):
        """(loss, gradient) at theta."""
        grad = np.empty_like(theta)
        self.n_evals += 1
        data = _objective.loss_grad(
            theta, self.X, self.Y, self.sample_weight, self.rows,
            self.layout.net, self.loss_code, self.scale, grad, False,
            CHUNK_ROWS, self.n_threads, self._work, self.rows_parallel)
        return data + self.penalty(theta, grad), grad

    def loss(self, theta):
        """The objective's value alone (no backward pass)."""
        data = _objective.loss_grad(
            theta, self.X, self.Y, self.sample_weight, self.rows,
            self.layout.net, self.loss_code, self.scale, None, False,
            CHUNK_ROWS, self.n_threads, self._work, self.rows_parallel)
        return data + self.penalty(theta)

    # ------------------------------------------------------------ curvature
    @property
    def n_samples(self):
        """Number of rows; curvature batches are positions in range(n_samples)."""
        return len(self.rows)

    def curvature(self, theta, v, rows=None, kind="gauss-newton"):
        """Curvature-vector product of the objective, estimated on a batch.

        Parameters
        ----------
        theta, v : ndarray of the fit's dtype, shape (n_params,)
        rows : int64 ndarray or None
            Positions in range(n_samples) of the curvature batch; all rows
            when None.
        kind : {'gauss-newton', 'hessian'}
            The Gauss-Newton matrix G = J^T H_out J (positive semi-definite)
            or the exact Hessian H.

        Returns
        -------
        ndarray : (C_batch + P) v, where C_batch is the data term's curvature
            averaged over the batch with the sample weights (an estimate of
            the whole set's) and P the penalty's: alpha / sum_i sw_i on the
            weights (the L1 term has zero curvature wherever it is
            differentiable).
        """
        if kind not in CURVATURES:
            raise ValueError(f"kind must be one of {CURVATURES}, got {kind!r}")
        theta = np.ascontiguousarray(theta)
        v = np.ascontiguousarray(v, dtype=theta.dtype)
        if rows is None:
            rows, scale = self.rows, self.scale
        else:
            rows, scale = self._batch_rows(np.asarray(rows, dtype=np.int64))
        out = np.empty_like(theta)
        cache, fill = self._cached_forward(theta, rows)
        _curvature.curvature_product(
            theta, v, self.X, self.Y, self.sample_weight, rows, self._curvature_net,
            self.loss_code, scale, out, kind == "gauss-newton", False,
            CHUNK_ROWS, self.n_threads, cache, fill, self._work, self.rows_parallel)
        if self.alpha:
            for sl in self._weight_slices:
                out[sl] += (self.alpha * self.scale) * v[sl]
        return out

    def _batch_rows(self, positions):
        """(rows of X, scale) of a curvature batch, kept for the next call:
        CG asks for many products on one batch."""
        held = self._batch
        if held is not None and np.array_equal(held[0], positions):
            return held[1], held[2]
        rows = self.rows[positions]
        if self.sample_weight is None:
            total = len(rows)
        else:
            total = float(np.sum(self.sample_weight[rows], dtype=np.float64))
        scale = 1.0 / total if total > 0 else 0.0
        self._batch = (positions.copy(), rows, scale)
        return rows, scale

    def _cached_forward(self, theta, rows):
        """(buffer, fill): the forward pass of the last (theta, rows), kept
        because successive products at one point (CG) share it."""
        size = len(rows) * int(self.layout.units[1:].sum())
        if size * theta.itemsize > CACHE_BYTES:
            return None, False
        held = self._forward_cache
        if (held is not None and held[3] == CHUNK_ROWS and held[2].dtype == theta.dtype
                and np.array_equal(held[1], rows) and np.array_equal(held[0], theta)):
            return held[2], False
        self._forward_cache = (theta.copy(), rows.copy(), np.empty(size, dtype=theta.dtype),
                               CHUNK_ROWS)
        return self._forward_cache[2], True

    def loss_grad_fisher(self, theta):
        """(loss, gradient, squares) at theta, in one compiled pass.

        The gradient of the data term is sum_i w_i grad loss_i with
        w_i = sw_i / sum_j sw_j; squares is the empirical Fisher diagonal
        sum_i w_i (grad loss_i)**2 (Martens' diagonal preconditioner
        statistic: the weighted mean of the squared rows' gradients, on the
        scale of the curvature products, which are weighted means too), plus
        the L2 penalty's curvature alpha / sum_j sw_j on the weights.
        """
        theta = np.ascontiguousarray(theta)
        if isinstance(self.X, tuple) and self._Xsq is None:
            data, indices, indptr = self.X
            self._Xsq = (np.square(data), indices, indptr)
        grad = np.empty_like(theta)
        diag = np.empty_like(theta)
        self.n_evals += 1
        data = _curvature.loss_grad_fisher(
            theta, self.X, self._Xsq, self.Y, self.sample_weight, self.rows,
            self._curvature_net, self.loss_code, self.scale, grad, diag, False,
            CHUNK_ROWS, self.n_threads, self._work, self.rows_parallel)
        if self.alpha:
            for sl in self._weight_slices:
                diag[sl] += self.alpha * self.scale
        return data + self.penalty(theta, grad), grad, diag
