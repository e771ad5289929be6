"""The full-batch training objective as a function of the flat parameters.

    f(theta) = (sum_i sw_i loss_i + alpha/2 ||W||^2 + l1 ||W||_1) / sum_i sw_i

W: all weights, not biases. This is scikit-learn's MLP objective (with
an added L1 term); minibatch solvers apply the same formula per batch.
"""

import numpy as np

from .. import _objective

# Rows per compiled chunk: large enough for efficient gemm, small enough
# that the workspace stays a few MB.
CHUNK_ROWS = 2048


def kernel_input(X):
    """X as the kernels take it: an ndarray, or (data, indices, indptr)."""
    if hasattr(X, "indptr"):
        return (X.data, X.indices, X.indptr)
    return X


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
    """

    def __init__(self, layout, X, Y, sample_weight, loss_code, alpha, l1,
                 n_threads, rows=None):
        self.layout = layout
        self.X = kernel_input(X)
        self.Y = Y
        self.sample_weight = sample_weight
        self.loss_code = loss_code
        self.alpha = float(alpha)
        self.l1 = float(l1)
        self.n_threads = n_threads
        if rows is None:
            rows = np.arange(Y.shape[0], dtype=np.int64)
        self.rows = rows
        if sample_weight is None:
            total = len(rows)
        else:
            total = float(np.sum(sample_weight[rows], dtype=np.float64))
        self.scale = 1.0 / total
        self.n_evals = 0

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
            CHUNK_ROWS, self.n_threads)
        return data + self.penalty(theta, grad), grad

    def loss(self, theta):
        """The objective's value alone (no backward pass)."""
        data = _objective.loss_grad(
            theta, self.X, self.Y, self.sample_weight, self.rows,
            self.layout.net, self.loss_code, self.scale, None, False,
            CHUNK_ROWS, self.n_threads)
        return data + self.penalty(theta)
