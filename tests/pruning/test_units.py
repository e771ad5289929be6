"""Structured pruning: whole hidden units removed, matrices shrunk."""

import copy
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import load_digits

from fastmlp import MLPClassifier
from fastmlp.pruning import prune_magnitude, prune_units, retrain
from fastmlp.pruning._units import unit_scores

X, Y = load_digits(return_X_y=True)
X, Y = X[:400] / 16, Y[:400]


def fitted(**kw):
    params = dict(hidden_layer_sizes=(30, 20), max_iter=15, random_state=0)
    params.update(kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return MLPClassifier(**params).fit(X, Y)


def without_units(est, removed):
    """The original network with the removed units' outgoing weights zeroed:
    it computes what the shrunk network computes."""
    ref = copy.deepcopy(est)
    for h, units in removed.items():
        ref.coefs_[h][units, :] = 0
    return ref


@pytest.mark.parametrize("by", ["both", "incoming", "outgoing"])
def test_removes_the_weakest_units(by):
    est = fitted()
    pruned = prune_units(copy.deepcopy(est), 0.5, by=by)
    assert pruned.hidden_layer_sizes == (15, 10)
    assert [W.shape for W in pruned.coefs_] == [(64, 15), (15, 10), (10, 10)]
    assert [b.shape for b in pruned.intercepts_] == [(15,), (10,), (10,)]
    # Layer by layer: the second layer's units are scored without the
    # first layer's removed units.
    removed = {}
    ref = copy.deepcopy(est)
    for h in (1, 2):
        s = unit_scores(ref.coefs_[h - 1], ref.coefs_[h], by)
        removed[h] = np.sort(np.argsort(-s, kind="stable")[len(s) // 2:])
        ref.coefs_[h][removed[h], :] = 0
    ref = without_units(est, removed)
    np.testing.assert_allclose(pruned.predict_proba(X), ref.predict_proba(X), rtol=1e-12,
                               atol=1e-12)
    kept = np.setdiff1d(np.arange(30), removed[1])
    np.testing.assert_array_equal(pruned.coefs_[0], est.coefs_[0][:, kept])


def test_scores():
    W_in = np.array([[3.0, 0.0], [4.0, 1.0]])
    W_out = np.array([[1.0, 0.0, 0.0], [2.0, 2.0, 1.0]])
    np.testing.assert_allclose(unit_scores(W_in, W_out, "incoming"), [5, 1])
    np.testing.assert_allclose(unit_scores(W_in, W_out, "outgoing"), [1, 3])
    np.testing.assert_allclose(unit_scores(sp.csc_matrix(W_in), sp.csc_matrix(W_out), "both"),
                               [5, 3])


def test_on_pruned_layers_and_then_retrained():
    est = prune_magnitude(fitted(), 0.6)
    nnz_before = [W.nnz for W in est.coefs_]
    pruned = prune_units(copy.deepcopy(est), [0.3, 0.5])
    assert pruned.hidden_layer_sizes == (21, 10)
    assert all(sp.isspmatrix_csc(W) for W in pruned.coefs_)
    assert [W.shape for W in pruned.coefs_] == [(64, 21), (21, 10), (10, 10)]
    assert all(W.nnz <= n for W, n in zip(pruned.coefs_, nnz_before))
    retrain(pruned, X, Y, epochs=3)  # warm-start fit on the new sizes
    assert pruned.hidden_layer_sizes == (21, 10) and pruned.n_iter_ == 3
    assert all(sp.isspmatrix_csc(W) for W in pruned.coefs_)


def test_keeps_at_least_one_unit_and_bad_arguments():
    pruned = prune_units(fitted(), 0.99)
    assert pruned.hidden_layer_sizes == (1, 1)
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        prune_units(fitted(), 1.0)
    with pytest.raises(ValueError, match="one number per hidden layer"):
        prune_units(fitted(), [0.5])
    with pytest.raises(ValueError, match="by must be"):
        prune_units(fitted(), 0.5, by="l1")
