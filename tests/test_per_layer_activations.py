"""activation=('relu', 'tanh', ...): one activation per hidden layer."""

import warnings

import numpy as np
import pytest
from scipy.special import expit, softmax
from sklearn.datasets import make_classification
from sklearn.neural_network import MLPClassifier as SkMLP

from fastmlp import MLPClassifier, MLPRegressor
from fastmlp._network import LOSS_LOG, Layout
from fastmlp.solvers.objective import Objective

X, Y = make_classification(200, 8, n_informative=5, n_classes=3, random_state=0)


def fit(est, X=X, y=Y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X, y)


def test_matches_a_hand_written_forward_pass():
    est = fit(MLPClassifier((12, 9, 7, 5), activation=("relu", "tanh", "logistic", "leaky_relu"),
                            negative_slope=0.2, max_iter=20, random_state=0))
    W, b = est.coefs_, est.intercepts_
    a = np.maximum(X @ W[0] + b[0], 0)
    a = np.tanh(a @ W[1] + b[1])
    a = expit(a @ W[2] + b[2])
    z = a @ W[3] + b[3]
    a = np.where(z > 0, z, 0.2 * z)
    expected = softmax(a @ W[4] + b[4], axis=1)
    np.testing.assert_allclose(est.predict_proba(X), expected, rtol=1e-10, atol=1e-13)
    assert est._layout.activations == ("relu", "tanh", "logistic", "leaky_relu", "softmax")


def test_a_string_keeps_its_meaning():
    a = fit(MLPClassifier((10, 6), activation="tanh", max_iter=10, random_state=0))
    b = fit(MLPClassifier((10, 6), activation=("tanh", "tanh"), max_iter=10, random_state=0))
    c = fit(MLPClassifier((10, 6), activation=("tanh", "relu"), max_iter=10, random_state=0))
    for ca, cb in zip(a.coefs_, b.coefs_):
        np.testing.assert_array_equal(ca, cb)
    assert not np.allclose(a.coefs_[1], c.coefs_[1])


def initial_coefs(est, X, y):
    est.set_params(solver="sgd", learning_rate_init=1e-12, momentum=0.0, max_iter=1)
    return fit(est, X, y).coefs_


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("activation", ["relu", "logistic", "tanh"])
def test_single_string_initialisation_is_scikit_learns(activation, n_classes):
    """scikit-learn's Glorot factor follows the hidden activation for every
    layer, the output layer included (binary and multiclass alike)."""
    Xc, yc = make_classification(80, 6, n_informative=4, n_classes=n_classes, random_state=1)
    ours = initial_coefs(MLPClassifier((7,), activation=activation, random_state=2), Xc, yc)
    ref = initial_coefs(SkMLP((7,), activation=activation, random_state=2), Xc, yc)
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a, b, atol=1e-9)


def test_glorot_factor_per_layer():
    """Layer l's bound is sqrt(f / (fan_in + fan_out)) with f = 2 after a
    logistic layer and 6 otherwise; the output layer follows the last
    hidden layer, as scikit-learn's does."""
    Xw = np.random.RandomState(0).randn(300, 200)
    yw = np.arange(300) % 2
    for acts in [("logistic", "relu"), ("relu", "logistic")]:
        coefs = initial_coefs(MLPClassifier((150, 120), activation=acts, random_state=0), Xw, yw)
        factors = [2 if a == "logistic" else 6 for a in acts + (acts[-1],)]
        for W, f in zip(coefs, factors):
            bound = np.sqrt(f / sum(W.shape))
            assert 0.95 * bound < np.abs(W).max() <= bound


@pytest.mark.parametrize("Est", [MLPClassifier, MLPRegressor])
def test_bad_per_layer_activations(Est):
    with pytest.raises(ValueError, match="activation has 3 entries but the network has 2"):
        Est(hidden_layer_sizes=(4, 4), activation=("relu", "tanh", "relu")).fit(X, Y)
    with pytest.raises(ValueError, match="activation 'gelu' is not one of"):
        Est(hidden_layer_sizes=(4, 4), activation=("relu", "gelu")).fit(X, Y)
    with pytest.raises(ValueError, match="activation"):
        Est(hidden_layer_sizes=(4,), activation=3).fit(X, Y)


def test_gradient_of_a_mixed_network_matches_finite_differences():
    rng = np.random.RandomState(0)
    layout = Layout([5, 6, 5, 4, 3], ["leaky_relu", "tanh", "logistic", "softmax"], 0.1)
    theta = rng.randn(layout.n_params) * 0.5
    Xs = rng.randn(25, 5)
    Ys = np.eye(3)[rng.randint(0, 3, 25)]
    obj = Objective(layout, Xs, Ys, None, LOSS_LOG, alpha=0.1, l1=0.0, n_threads=1)
    _, grad = obj(theta)
    eps = 1e-6
    fd = np.array([(obj.loss(theta + eps * e) - obj.loss(theta - eps * e)) / (2 * eps)
                   for e in np.eye(theta.size)])
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-7)


def test_pickle_and_clone_keep_per_layer_activations():
    import pickle

    from sklearn.base import clone

    est = fit(MLPClassifier((6, 5), activation=["tanh", "relu"], max_iter=5, random_state=0))
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.predict_proba(X), est.predict_proba(X))
    assert clone(est).get_params()["activation"] == ["tanh", "relu"]
