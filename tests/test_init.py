"""Initial weights (fastmlp/_init.py)."""

import numpy as np
import pytest

from fastmlp import MLPRegressor
from fastmlp._init import SPARSE_CONNECTIONS, init_theta, sparse_weights
from fastmlp._network import Layout


@pytest.mark.parametrize("fan_in,fan_out", [(64, 256), (256, 32), (5, 7), (15, 3)])
def test_sparse_weights_have_15_normal_inputs_per_unit(fan_in, fan_out):
    W = sparse_weights(fan_in, fan_out, np.random.RandomState(0))
    assert W.shape == (fan_in, fan_out)
    k = min(SPARSE_CONNECTIONS, fan_in)
    np.testing.assert_array_equal((W != 0).sum(axis=0), np.full(fan_out, k))


def test_sparse_weights_are_standard_normal_at_uniform_inputs():
    W = sparse_weights(100, 2000, np.random.RandomState(1))
    values = W[W != 0]
    assert abs(values.mean()) < 0.03 and abs(values.std() - 1) < 0.03
    # Every input is equally likely: about 2000 * 15 / 100 = 300 uses each.
    uses = (W != 0).sum(axis=1)
    assert uses.min() > 220 and uses.max() < 380


def test_sparse_init_theta_is_reproducible_with_zero_biases():
    layout = Layout([64, 256, 32, 64], ["logistic", "logistic", "identity"])
    a = init_theta(layout, "sparse", None, np.random.RandomState(3), np.float32)
    b = init_theta(layout, "sparse", None, np.random.RandomState(3), np.float32)
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    coefs, intercepts = layout.views(a)
    for W in coefs:
        np.testing.assert_array_equal((W != 0).sum(axis=0), np.full(W.shape[1], 15))
    for c in intercepts:
        assert not c.any()


def test_estimator_starts_from_the_sparse_initialisation():
    X = np.random.RandomState(0).rand(50, 20)
    est = MLPRegressor(hidden_layer_sizes=(40,), activation="logistic", init="sparse", solver="sgd", momentum=0,
                       learning_rate_init=1e-12, max_iter=1, random_state=0)
    with pytest.warns(Warning):  # not converged
        est.fit(X, X)
    for W in est.coefs_:
        np.testing.assert_array_equal((np.abs(W) > 1e-9).sum(axis=0), np.full(W.shape[1], 15))
