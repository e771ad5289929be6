"""Fine-tuning shared weights: train the centroids, not the weights.

Every weight of a shared layer is its centroid, so the gradient of the loss
with respect to a centroid is the sum of the gradients of the weights that
share it (Han et al., 2016). The weights' gradient comes from the compiled
backward pass (solvers/objective.py, the same loss and penalty as ``fit``),
summed per centroid with one ``bincount``; biases train as usual. Updates
are Adam's, on float64 copies of the centroids; the network always holds
the float32-rounded centroids it will be stored with, so the loss is that
of the model as it will be saved.
"""

import numpy as np
from sklearn.utils import check_random_state

from .._threads import blas_threads, effective_n_threads
from .._validation import as_float_input
from ..solvers.objective import Objective


def training_targets(est, X, y, sample_weight):
    """X, Y and sample weights as ``fit`` prepares them (the model's dtype,
    its label encoding and class weights)."""
    from sklearn.utils.validation import _check_sample_weight

    dtype = est._theta.dtype
    X = as_float_input(est, X, reset=False, dtype=dtype)
    Y, y = est._validate_targets(y, X, incremental=True, first_pass=False)
    if sample_weight is not None:
        sample_weight = _check_sample_weight(sample_weight, X, dtype=X.dtype,
                                             ensure_non_negative=True)
    cw = est._class_weights(y, False)
    if cw is not None:
        cw = cw.astype(X.dtype)
        sample_weight = cw if sample_weight is None else sample_weight * cw
    return X, Y, sample_weight


class CodebookObjective:
    """Loss and gradient as functions of the codebooks and biases.

    The parameter vector is every 'shared' layer's codebook, then every
    layer's biases. Calling it writes the float32-rounded parameters into
    the estimator (so its weights are always the shared ones) and returns
    ``(loss, gradient)`` over ``rows`` of the training data.
    """

    def __init__(self, est, layers, X, Y, sample_weight):
        self.est, self.layers = est, layers
        self.theta, self.layout = est._theta, est._layout
        self.sw = sample_weight
        self.obj = Objective(self.layout, X, Y, sample_weight, est._loss_code, est.alpha,
                             est.l1, effective_n_threads(est.n_threads))
        self.shared = [l for l, c in enumerate(layers) if c.method == "shared"]
        self.bias_sl = [self.layout.intercept_slice(l) for l in range(self.layout.n_layers)]
        sizes = [layers[l].table.size for l in self.shared]
        sizes += [s.stop - s.start for s in self.bias_sl]
        self.cuts = np.cumsum([0] + sizes)

    def params(self):
        return np.concatenate([self.layers[l].table.astype(np.float64) for l in self.shared]
                              + [self.theta[s].astype(np.float64) for s in self.bias_sl])

    def _part(self, vec, k):
        return vec[self.cuts[k]:self.cuts[k + 1]]

    def set(self, params):
        """Write ``params`` into the codebooks and the network."""
        for k, l in enumerate(self.shared):
            c = self.layers[l]
            c.table = self._part(params, k).astype(np.float32)
            self.theta[self.layout.coef_slice(l)] = c.table[c.symbols]
        for j, s in enumerate(self.bias_sl):
            self.theta[s] = self._part(params, len(self.shared) + j)

    def __call__(self, params, rows):
        self.set(params)
        obj = self.obj
        obj.rows = rows
        obj.scale = 1.0 / (len(rows) if self.sw is None
                           else max(float(np.sum(self.sw[rows], dtype=np.float64)), 1e-300))
        loss, grad = obj(self.theta)
        g = np.empty(self.cuts[-1])
        for k, l in enumerate(self.shared):
            c = self.layers[l]
            # A centroid moves all its weights: its gradient is theirs, summed.
            self._part(g, k)[:] = np.bincount(c.symbols, grad[self.layout.coef_slice(l)],
                                              minlength=c.table.size)
        for j, s in enumerate(self.bias_sl):
            self._part(g, len(self.shared) + j)[:] = grad[s]
        return loss, g


def fine_tune(est, layers, X, y, *, epochs, learning_rate, batch_size=200,
              sample_weight=None, random_state=None):
    """Train the codebooks of ``layers`` (and the biases) for ``epochs`` epochs.

    ``layers``: the LayerCode of every layer, in order; those with method
    'shared' get their ``table`` (the codebook) updated in place, the
    others stay fixed. The estimator's parameters follow. Returns the
    training loss of each epoch (mean over its batches).
    """
    X, Y, sw = training_targets(est, X, y, sample_weight)
    f = CodebookObjective(est, layers, X, Y, sw)
    params = f.params()
    m = np.zeros_like(params)
    v = np.zeros_like(params)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    rng = check_random_state(random_state)
    n = Y.shape[0]
    batch_size = max(1, min(int(batch_size), n))
    step = 0
    losses = []
    with blas_threads(f.obj.n_threads):
        for _ in range(int(epochs)):
            order = rng.permutation(n)
            total = 0.0
            for start in range(0, n, batch_size):
                rows = np.sort(order[start:start + batch_size]).astype(np.int64)
                loss, g = f(params, rows)
                total += loss * len(rows)
                step += 1
                m = beta1 * m + (1 - beta1) * g
                v = beta2 * v + (1 - beta2) * g * g
                lr = learning_rate * np.sqrt(1 - beta2 ** step) / (1 - beta1 ** step)
                params -= lr * m / (np.sqrt(v) + eps)
            losses.append(total / n)
    f.set(params)
    return losses
