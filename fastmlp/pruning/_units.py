"""Structured pruning: remove whole hidden units, shrinking the matrices."""

from numbers import Real

import numpy as np
import scipy.sparse as sp

from ._rebuild import check_fitted_mlp, index_views, rebuild, values_of


def unit_scores(W_in, W_out, by):
    """Importance of each unit from its incoming column of W_in and its
    outgoing row of W_out (dense or sparse value matrices)."""
    def norms(W, axis):
        if sp.issparse(W):
            return np.sqrt(np.asarray(W.multiply(W).sum(axis=axis)).ravel())
        return np.sqrt((np.asarray(W) ** 2).sum(axis=axis))

    incoming = norms(W_in, 0)
    outgoing = norms(W_out, 1)
    if by == "incoming":
        return incoming
    if by == "outgoing":
        return outgoing
    return incoming * outgoing


def prune_units(estimator, fraction, *, by="both"):
    """Remove the least important hidden units, in place.

    Removing unit j of hidden layer h deletes column j of ``coefs_[h-1]``,
    entry j of ``intercepts_[h-1]`` and row j of ``coefs_[h]``: the
    matrices (dense or pruned) get smaller, and ``hidden_layer_sizes``
    changes to the new sizes. The network then computes what the old one
    computes with those units' outputs removed; retrain to recover accuracy.

    Parameters
    ----------
    estimator : fitted MLPClassifier or MLPRegressor
    fraction : float or sequence of float in [0, 1)
        Fraction of each hidden layer's units to remove (one per hidden
        layer for a sequence). At least one unit per layer stays.
    by : {'both', 'incoming', 'outgoing'}, default='both'
        A unit's importance: the L2 norm of its incoming weights, of its
        outgoing weights, or ('both') their product, which does not change
        when a positively homogeneous unit (relu, leaky relu, identity) has
        its incoming weights scaled by c and outgoing by 1/c.

    Returns
    -------
    estimator : the same estimator, pruned.
    """
    check_fitted_mlp(estimator)
    if by not in ("both", "incoming", "outgoing"):
        raise ValueError(f"by must be 'both', 'incoming' or 'outgoing', got {by!r}")
    idx_coefs, idx_intercepts = index_views(estimator)
    n_hidden = len(idx_coefs) - 1
    if isinstance(fraction, (Real, np.floating, np.integer)) and not isinstance(fraction, bool):
        fractions = np.full(n_hidden, float(fraction))
    else:
        fractions = np.asarray(fraction, dtype=float)
        if fractions.shape != (n_hidden,):
            raise ValueError(f"fraction must be a number or one number per hidden layer "
                             f"({n_hidden}), got {fraction!r}")
    if not np.all((fractions >= 0) & (fractions < 1)):
        raise ValueError(f"fraction must be in [0, 1), got {fraction!r}")
    coefs = list(idx_coefs)
    intercepts = list(idx_intercepts)
    for h in range(1, n_hidden + 1):
        n_units = coefs[h].shape[0]
        n_keep = max(1, n_units - int(round(fractions[h - 1] * n_units)))
        if n_keep == n_units:
            continue
        scores = unit_scores(values_of(estimator, coefs[h - 1]),
                             values_of(estimator, coefs[h]), by)
        keep = np.sort(np.argsort(-scores, kind="stable")[:n_keep])
        coefs[h - 1] = _columns(coefs[h - 1], keep)
        intercepts[h - 1] = intercepts[h - 1][keep]
        coefs[h] = _rows(coefs[h], keep)
    return rebuild(estimator, coefs, intercepts)


def _columns(W, keep):
    return W.tocsc()[:, keep].tocsc() if sp.issparse(W) else W[:, keep]


def _rows(W, keep):
    return W.tocsc()[keep, :].tocsc() if sp.issparse(W) else W[keep, :]
