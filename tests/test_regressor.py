"""MLPRegressor as a user meets it."""

import numpy as np
import pytest
from sklearn.datasets import make_regression

from fastmlp import MLPRegressor


def test_single_output_learns():
    X, y = make_regression(500, 10, noise=1.0, random_state=0)
    y = y / y.std()
    reg = MLPRegressor(hidden_layer_sizes=(64,), max_iter=300, random_state=0).fit(X, y)
    assert reg.out_activation_ == "identity"
    assert reg.predict(X).shape == (500,)
    assert reg.score(X, y) > 0.95


def test_multi_output():
    X, Y = make_regression(400, 8, n_targets=3, noise=0.5, random_state=1)
    Y = Y / Y.std(0)
    reg = MLPRegressor(hidden_layer_sizes=(64,), solver="lbfgs", max_iter=300, random_state=0).fit(X, Y)
    assert reg.n_outputs_ == 3 and reg.predict(X).shape == (400, 3)
    assert reg.score(X, Y) > 0.95


def test_poisson():
    rng = np.random.RandomState(0)
    X = rng.randn(800, 4)
    y = rng.poisson(np.exp(0.5 * X[:, 0] - 0.3 * X[:, 1]))
    reg = MLPRegressor(loss="poisson", hidden_layer_sizes=(16,), max_iter=300,
                       random_state=0).fit(X, y)
    assert reg.out_activation_ == "exp"
    pred = reg.predict(X)
    assert (pred > 0).all()
    assert np.corrcoef(np.log(pred), 0.5 * X[:, 0] - 0.3 * X[:, 1])[0, 1] > 0.9
    with pytest.raises(ValueError, match="y >= 0"):
        MLPRegressor(loss="poisson").fit(X, -np.abs(y) - 1)


@pytest.mark.parametrize("solver", ["adam", "hf"])
def test_binary_cross_entropy(solver):
    """Logistic outputs fitted to fractions in [0, 1] (an autoencoder of
    pixel intensities): predict returns the logistic outputs, and the
    reported loss is the mean cross-entropy -y log p - (1 - y) log(1 - p),
    summed over outputs, plus the L2 penalty."""
    rng = np.random.RandomState(0)
    X = rng.rand(300, 6)
    Y = np.column_stack([X[:, 0], 0.5 * (X[:, 1] + X[:, 2]), 1 - X[:, 3]])
    reg = MLPRegressor(loss="binary_cross_entropy", hidden_layer_sizes=(16,), solver=solver,
                       max_iter=300 if solver == "adam" else 30, learning_rate_init=0.01,
                       alpha=0.0, tol=0, random_state=0).fit(X, Y)
    assert reg.out_activation_ == "logistic"
    P = reg.predict(X)
    assert P.shape == Y.shape and ((P > 0) & (P < 1)).all()
    assert reg.score(X, Y) > 0.95
    entropy = -(Y * np.log(P) + (1 - Y) * np.log1p(-P)).sum(1).mean()
    floor = -(Y * np.log(Y) + (1 - Y) * np.log1p(-Y)).sum(1).mean()  # p = y
    # The final loss_ is that of the last update's start (one step behind
    # for adam) and entropy the loss at the end: close, both near the floor.
    np.testing.assert_allclose(reg.loss_, entropy, rtol=0.05 if solver == "adam" else 1e-6)
    assert entropy < floor + 0.02


def test_binary_cross_entropy_survives_save_and_load(tmp_path):
    from fastmlp import _persist

    X = np.random.RandomState(0).rand(50, 4)
    reg = MLPRegressor(loss="binary_cross_entropy", hidden_layer_sizes=(8,), max_iter=20,
                       random_state=0).fit(X, X)
    _persist.save(reg, tmp_path / "model")
    back = _persist.load(tmp_path / "model")
    assert back.loss == "binary_cross_entropy" and back.out_activation_ == "logistic"
    np.testing.assert_array_equal(back.predict(X), reg.predict(X))


def test_binary_cross_entropy_needs_targets_in_unit_interval():
    X = np.random.RandomState(0).rand(20, 3)
    for bad in (X - 0.5, X + 0.5):
        with pytest.raises(ValueError, match=r"0 <= y <= 1"):
            MLPRegressor(loss="binary_cross_entropy").fit(X, bad)
    with pytest.raises(ValueError, match="loss"):
        MLPRegressor(loss="cross_entropy").fit(X, X)


def test_early_stopping_uses_r2():
    X, y = make_regression(400, 5, noise=5.0, random_state=0)
    reg = MLPRegressor(hidden_layer_sizes=(32,), early_stopping=True, learning_rate_init=0.01, max_iter=500,
                       random_state=0).fit(X, y / y.std())
    assert reg.best_validation_score_ == max(reg.validation_scores_) > 0.8


def test_partial_fit_continues():
    X, y = make_regression(300, 5, random_state=0)
    y = y / y.std()
    reg = MLPRegressor(hidden_layer_sizes=(16,), random_state=0, learning_rate_init=0.01)
    for _ in range(30):
        reg.partial_fit(X, y)
    assert reg.n_iter_ == 1 and reg.t_ == 30 * 300
    assert reg.score(X, y) > 0.8
