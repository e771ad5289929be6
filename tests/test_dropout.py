"""Dropout: the compiled epoch's masks and gradients against a numpy
reference, and the estimators' behaviour (training only, reproducible)."""

import warnings

import numpy as np
import pytest
from sklearn.datasets import make_classification

from fastmlp import MLPClassifier, MLPRegressor
from fastmlp._network import LOSS_LOG, Layout
from fastmlp.solvers.first_order import EpochRunner, Optimizer

import reference

HIDDEN = ["identity", "logistic", "tanh", "relu", "leaky_relu"]


def masks_of(runner, layout, B):
    """The last batch's 0/1 masks, one (B, units) array per hidden layer."""
    out, off = [], 0
    for n in layout.units[1:-1]:
        out.append(runner.mask[B * off:B * (off + n)].reshape(B, n).astype(float))
        off += n
    return out


def masked_objective(layout, theta, X, Y, sw, masks, rates):
    """The batch objective of the thinned network (no penalty)."""
    coefs, intercepts = layout.views(theta)
    A = X
    for l, (W, b) in enumerate(zip(coefs, intercepts)):
        Z = A @ W + b
        if l == layout.n_layers - 1:
            ell = reference.row_losses("log", layout.activations[-1], Z, Y)
            return np.dot(sw, ell) / sw.sum()
        A = reference.activation(layout.activations[l], Z, layout.negative_slope)
        A = A * masks[l] / (1 - rates[l])


def one_epoch(layout, theta, X, Y, sw, rates, lr=0.5, n_threads=1, seed=11, batch=None):
    B = batch or len(X)
    runner = EpochRunner(layout, theta.dtype, B, rates)
    opt = Optimizer("sgd", layout.n_params, theta.dtype, learning_rate_init=lr, momentum=0.0)
    rows = np.arange(len(X), dtype=np.int64)
    state = np.array([seed], dtype=np.uint64)
    theta = theta.copy()
    loss, finite = runner.run(theta, X, Y, sw, rows, np.zeros(1, np.uint64), False, opt,
                              LOSS_LOG, 0.0, 0.0, n_threads, state)
    assert finite
    return theta, loss, runner, state


@pytest.mark.parametrize("hidden", HIDDEN)
def test_epoch_with_dropout_is_a_gradient_step_of_the_thinned_net(hidden):
    """Full batch, plain SGD: the update equals lr times the finite-difference
    gradient of the masked network, with the masks the kernel drew."""
    rng = np.random.RandomState(0)
    layout = Layout([5, 9, 7, 3], [hidden, hidden, "softmax"], negative_slope=0.1)
    theta = rng.randn(layout.n_params) * 0.5
    X = rng.randn(30, 5)
    Y = np.eye(3)[rng.randint(0, 3, 30)]
    sw = rng.uniform(0.5, 2.0, 30)
    rates = [0.3, 0.5]
    new, loss, runner, _ = one_epoch(layout, theta, X, Y, sw, rates)
    masks = masks_of(runner, layout, 30)
    assert 0 < masks[0].mean() < 1 and 0 < masks[1].mean() < 1
    f = lambda t: masked_objective(layout, t, X, Y, sw, masks, rates)
    np.testing.assert_allclose(loss, f(theta), rtol=1e-12)
    eps = 1e-6
    fd = np.array([(f(theta + eps * e) - f(theta - eps * e)) / (2 * eps)
                   for e in np.eye(theta.size)])
    np.testing.assert_allclose((theta - new) / 0.5, fd, rtol=1e-5, atol=1e-7)


def test_float32_draws_the_same_masks():
    rng = np.random.RandomState(1)
    layout = Layout([6, 20, 3], ["tanh", "softmax"])
    theta = rng.randn(layout.n_params) * 0.3
    X = rng.randn(40, 6)
    Y = np.eye(3)[rng.randint(0, 3, 40)]
    r64 = one_epoch(layout, theta, X, Y, None, [0.4])
    r32 = one_epoch(layout, theta.astype(np.float32), X.astype(np.float32),
                    Y.astype(np.float32), None, [0.4])
    assert r32[0].dtype == np.float32
    np.testing.assert_array_equal(r32[2].mask, r64[2].mask)
    np.testing.assert_allclose(r32[0], r64[0], rtol=1e-4, atol=1e-5)


def test_masks_keep_the_rate_and_change_with_every_batch():
    rng = np.random.RandomState(2)
    layout = Layout([4, 300, 200, 2], ["relu", "relu", "softmax"])
    theta = rng.randn(layout.n_params) * 0.1
    X = rng.randn(512, 4)
    Y = np.eye(2)[rng.randint(0, 2, 512)]
    _, _, runner, state = one_epoch(layout, theta, X, Y, None, [0.25, 0.6], batch=256)
    m1, m2 = masks_of(runner, layout, 256)
    assert abs(m1.mean() - 0.75) < 0.01 and abs(m2.mean() - 0.4) < 0.01
    # Rows and units are not correlated: no two rows share a mask.
    assert len({row.tobytes() for row in m1}) == 256
    # Two batches per epoch: one key drawn per batch from the stream.
    assert state[0] != 11
    again = one_epoch(layout, theta, X, Y, None, [0.25, 0.6], batch=256, seed=12)[2]
    assert not np.array_equal(again.mask, runner.mask)


def test_masks_do_not_depend_on_the_thread_count():
    rng = np.random.RandomState(3)
    layout = Layout([10, 256, 3], ["relu", "softmax"])  # 256 x 256 >= the threading threshold
    theta = rng.randn(layout.n_params) * 0.1
    X = rng.randn(256, 10)
    Y = np.eye(3)[rng.randint(0, 3, 256)]
    a = one_epoch(layout, theta, X, Y, None, [0.5], n_threads=1)
    b = one_epoch(layout, theta, X, Y, None, [0.5], n_threads=2)
    np.testing.assert_array_equal(a[2].mask, b[2].mask)
    np.testing.assert_allclose(a[0], b[0], rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- estimators
X, Y = make_classification(300, 12, n_informative=6, n_classes=3, random_state=0)


def fit(est, X=X, y=Y, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X, y, **kw)


def test_dropout_changes_training_but_fits_are_reproducible():
    kw = dict(hidden_layer_sizes=(64, 32), max_iter=15, random_state=0)
    plain = fit(MLPClassifier(**kw))
    default = fit(MLPClassifier(dropout=0.0, **kw))
    a = fit(MLPClassifier(dropout=0.3, **kw))
    b = fit(MLPClassifier(dropout=0.3, **kw))
    for p, d, ca, cb in zip(plain.coefs_, default.coefs_, a.coefs_, b.coefs_):
        np.testing.assert_array_equal(p, d)  # dropout=0 is no dropout
        np.testing.assert_array_equal(ca, cb)  # same seed, same masks
    assert not np.allclose(a.coefs_[0], plain.coefs_[0])
    c = fit(MLPClassifier(dropout=0.3, **{**kw, "random_state": 1}))
    assert not np.allclose(a.coefs_[1], c.coefs_[1])


def test_prediction_has_no_dropout():
    est = fit(MLPRegressor(hidden_layer_sizes=(40, 20), dropout=(0.5, 0.2), max_iter=10, random_state=0),
              y=Y.astype(float))
    out = est.predict(X)
    np.testing.assert_array_equal(out, est.predict(X))
    expected = reference.forward(est._layout, est._theta, X)[:, 0]
    np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-12)


def test_per_layer_rates_and_bad_rates():
    one = fit(MLPClassifier((16, 16), dropout=(0.0, 0.5), max_iter=5, random_state=0))
    both = fit(MLPClassifier((16, 16), dropout=0.5, max_iter=5, random_state=0))
    assert not np.allclose(one.coefs_[0], both.coefs_[0])
    with pytest.raises(ValueError, match="dropout has 3 rates but the network has 2"):
        MLPClassifier((16, 16), dropout=(0.1, 0.2, 0.3)).fit(X, Y)
    with pytest.raises(ValueError, match=r"dropout rates must be in \[0, 1\)"):
        MLPClassifier((16, 16), dropout=(0.1, 1.0)).fit(X, Y)
    with pytest.raises(ValueError, match="dropout"):
        MLPClassifier((16,), dropout=1.0).fit(X, Y)
    with pytest.raises(ValueError, match="dropout needs a first-order solver"):
        MLPClassifier((16,), dropout=0.2, solver="lbfgs").fit(X, Y)


def test_partial_fit_continues_the_dropout_stream():
    """Two partial_fit calls are two epochs of one fit: the second call draws
    new masks rather than repeating the first call's."""
    kw = dict(hidden_layer_sizes=(32,), dropout=0.4, shuffle=False, random_state=0,
              batch_size=300, n_iter_no_change=100)
    whole = fit(MLPClassifier(max_iter=2, **kw))
    parts = MLPClassifier(**kw)
    parts.partial_fit(X, Y, classes=np.unique(Y))
    parts.partial_fit(X, Y)
    for a, b in zip(whole.coefs_, parts.coefs_):
        np.testing.assert_array_equal(a, b)


def test_dropout_fit_with_two_threads_matches_one():
    kw = dict(hidden_layer_sizes=(300,), dropout=0.5, max_iter=3, random_state=0)
    Xb, yb = make_classification(600, 120, n_informative=20, random_state=1)
    a = fit(MLPClassifier(n_threads=1, **kw), Xb, yb)
    b = fit(MLPClassifier(n_threads=2, **kw), Xb, yb)
    np.testing.assert_allclose(a.coefs_[0], b.coefs_[0], rtol=1e-9, atol=1e-12)
