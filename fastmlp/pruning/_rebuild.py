"""Giving a fitted estimator a smaller network made of some of its parameters.

Every pruning operation is expressed on *index* matrices: the layout's views
of ``1 + arange(n_params)``, so each stored entry names the position (plus
one, so that none is zero) of its parameter in theta. A pruning step selects
or slices these matrices exactly as it would the weights; the result
defines both the new layout (its sparsity pattern and layer sizes) and the
gather ``theta[src]`` that moves the surviving parameters, the optimiser
state and the early-stopping snapshot into the new, compact vector.
"""

import numpy as np
import scipy.sparse as sp
from sklearn.utils.validation import check_is_fitted

from .._network import Layout


def check_fitted_mlp(estimator):
    """The estimator, if it is a fitted fastmlp MLP."""
    from .._base import BaseMLP

    if not isinstance(estimator, BaseMLP):
        raise TypeError(
            f"expected a fastmlp MLPClassifier or MLPRegressor, got {type(estimator).__name__}"
        )
    check_is_fitted(estimator, "coefs_")
    return estimator


def index_views(estimator):
    """(coefs, intercepts) of theta positions + 1, as float64 matrices shaped
    (and, for pruned layers, sparse) like the estimator's."""
    layout = estimator._layout
    estimator._theta  # the layout follows coefs_ if they were replaced
    layout = estimator._layout
    return layout.views(np.arange(1, layout.n_params + 1, dtype=np.float64))


def values_of(estimator, index_matrix):
    """The parameters an index matrix (or vector) names, in its shape."""
    theta = estimator._theta
    if sp.issparse(index_matrix):
        out = index_matrix.copy()
        out.data = theta[index_matrix.data.astype(np.int64) - 1].astype(np.float64)
        return out
    return theta[np.asarray(index_matrix).astype(np.int64) - 1].astype(np.float64)


def stored_entries(W):
    """(rows, cols, values) of a dense or sparse matrix's stored entries,
    in storage order (row-major for dense, CSC order for sparse)."""
    if sp.issparse(W):
        W = W.tocsc()
        cols = np.repeat(np.arange(W.shape[1]), np.diff(W.indptr))
        return W.indices.astype(np.int64), cols, W.data
    n_in, n_out = W.shape
    rows, cols = np.divmod(np.arange(n_in * n_out), n_out)
    return rows, cols, np.asarray(W).ravel()


def rebuild(estimator, index_coefs, index_intercepts):
    """Replace the estimator's network by the one the index matrices define.

    Parameters keep their values; a sparse index matrix makes that layer a
    pruned (CSC) layer. The optimiser state and early-stopping snapshot are
    gathered the same way, the stopping counters restart (the pruned network
    is compared with itself from now on), and ``hidden_layer_sizes`` follows
    the layer sizes if hidden units were removed.
    """
    old = estimator._layout
    theta = estimator._theta
    layout = Layout.from_coefs(index_coefs, old.activations, old.negative_slope)
    src = layout.pack(index_coefs, index_intercepts, np.float64).astype(np.int64) - 1
    estimator._layout_obj = layout
    estimator._set_theta(theta[src])
    opt_state = estimator.__dict__.get("_opt_state")
    if opt_state is not None and opt_state.shape[1] == old.n_params:
        estimator._opt_state = np.ascontiguousarray(opt_state[:, src])
    best = estimator.__dict__.get("_best_theta")
    if best is not None and best.shape == (old.n_params,):
        estimator._best_theta = best[src]
    estimator.__dict__.pop("_runner", None)
    estimator._no_improvement_count = 0
    if getattr(estimator, "best_loss_", None) is not None:
        estimator.best_loss_ = np.inf
    if getattr(estimator, "best_validation_score_", None) is not None:
        estimator.best_validation_score_ = -np.inf
    hidden = tuple(int(u) for u in layout.units[1:-1])
    if hidden != tuple(int(u) for u in old.units[1:-1]):
        estimator.hidden_layer_sizes = hidden
    return estimator
