"""Retraining with the pattern fixed, and prune-retrain schedules."""

import copy
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import load_digits

from fastmlp import MLPClassifier, MLPRegressor
from fastmlp.pruning import prune_magnitude, prune_retrain, retrain, sparsity_schedule

X, Y = load_digits(return_X_y=True)
X, Y = X[:500] / 16, Y[:500]


def fitted(**kw):
    params = dict(hidden_layer_sizes=(40,), max_iter=20, random_state=0)
    params.update(kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return MLPClassifier(**params).fit(X, Y)


def pattern(est):
    return [(W.indptr.copy(), W.indices.copy()) for W in est.coefs_]


@pytest.mark.parametrize("solver", ["adam", "sgd", "adagrad", "rmsprop", "adadelta", "lbfgs"])
def test_retrain_updates_survivors_only(solver):
    est = prune_magnitude(fitted(solver=solver), 0.8)
    before = pattern(est)
    values = [W.data.copy() for W in est.coefs_]
    bias = est.intercepts_[0].copy()
    score = est.score(X, Y)
    retrain(est, X, Y, epochs=5)
    for (indptr, indices), W, v in zip(before, est.coefs_, values):
        np.testing.assert_array_equal(W.indptr, indptr)
        np.testing.assert_array_equal(W.indices, indices)
        assert not np.array_equal(W.data, v)
    assert not np.array_equal(est.intercepts_[0], bias)
    assert est.n_iter_ <= 5 and est.max_iter == 20 and est.warm_start is False
    if solver != "lbfgs":
        assert est._opt_state.shape == (2, est._theta.size)
    assert est.score(X, Y) >= score - 0.02


def test_retraining_recovers_accuracy():
    est = fitted(max_iter=60)
    pruned = prune_magnitude(copy.deepcopy(est), 0.85)
    drop = pruned.score(X, Y)
    retrain(pruned, X, Y, epochs=30, learning_rate_init=0.01)
    assert pruned.score(X, Y) > drop + 0.05
    assert pruned.score(X, Y) > est.score(X, Y) - 0.05


def test_partial_fit_and_optimizer_state_after_pruning():
    est = fitted()
    m_before = est._opt_state.copy()
    pruned = prune_magnitude(copy.deepcopy(est), 0.7)
    W = pruned.coefs_[0]
    cols = np.repeat(np.arange(W.shape[1]), np.diff(W.indptr))
    # The Adam moments of the survivors came along.
    n_in, n_out = est.coefs_[0].shape
    np.testing.assert_array_equal(pruned._opt_state[:, :W.nnz],
                                  m_before[:, W.indices * n_out + cols])
    pattern_before = pattern(pruned)
    pruned.partial_fit(X, Y)
    assert [np.array_equal(a[1], b.indices) for a, b in zip(pattern_before, pruned.coefs_)] \
        == [True, True]


def test_early_stopping_retrain_and_regressor():
    est = fitted(early_stopping=True, max_iter=30)
    pruned = prune_magnitude(est, 0.8)
    assert pruned._best_theta.shape == pruned._theta.shape
    assert pruned.best_validation_score_ == -np.inf
    retrain(pruned, X, Y, epochs=4)
    assert np.isfinite(pruned.best_validation_score_)
    reg = MLPRegressor(hidden_layer_sizes=(20,), max_iter=30, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reg.fit(X, Y.astype(float))
    prune_magnitude(reg, 0.5)
    assert reg.best_loss_ == np.inf
    retrain(reg, X, Y.astype(float), epochs=3, learning_rate_init=1e-4)
    assert np.isfinite(reg.best_loss_) and reg.learning_rate_init == 0.001


def test_float32_stays_float32():
    est = fitted()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est32 = MLPClassifier((40,), max_iter=10, random_state=0).fit(X.astype(np.float32), Y)
    prune_retrain(est32, X.astype(np.float32), Y, 0.8, steps=2, retrain_epochs=2)
    assert all(W.dtype == np.float32 for W in est32.coefs_)
    assert est32._theta.dtype == np.float32
    del est


def test_same_seed_same_retraining():
    a = prune_retrain(fitted(), X, Y, 0.8, steps=2, retrain_epochs=3)
    b = prune_retrain(fitted(), X, Y, 0.8, steps=2, retrain_epochs=3)
    np.testing.assert_array_equal(a._theta, b._theta)


def test_schedule():
    s = sparsity_schedule(0.9, 3)
    np.testing.assert_allclose(1 - np.array(s), 0.1 ** (np.arange(1, 4) / 3))
    assert s[-1] == 0.9
    seen = []
    est = prune_retrain(fitted(), X, Y, 0.9, steps=3, retrain_epochs=1,
                        callback=lambda step, target, e: seen.append((step, target,
                                                                      e.sparsity_.copy())))
    assert [t for _, t, _ in seen] == s
    for _, target, sparsity in seen:
        np.testing.assert_allclose(sparsity, target, atol=2e-3)
    est = prune_retrain(fitted(), X, Y, 0.8, schedule=[0.3, 0.8], retrain_epochs=0)
    np.testing.assert_allclose(est.sparsity_, 0.8, atol=2e-3)
    assert all(sp.issparse(W) for W in est.coefs_)


@pytest.mark.parametrize("kwargs,match", [
    (dict(schedule=[0.5, 0.3, 0.8]), "increasing"),
    (dict(schedule=[0.5, 0.7]), "end at"),
    (dict(schedule=[]), "at least one"),
    (dict(steps=0), "steps"),
    (dict(retrain_epochs=-1), "retrain_epochs"),
])
def test_bad_schedules(kwargs, match):
    with pytest.raises(ValueError, match=match):
        prune_retrain(fitted(), X, Y, 0.8, **kwargs)


def test_bad_epochs():
    with pytest.raises(ValueError, match="epochs"):
        retrain(fitted(), X, Y, epochs=0)
