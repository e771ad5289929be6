"""Centroid fine-tuning: the codebook gradient is the sum of the shared
weights' gradients (checked by finite differences), and training lowers the loss."""

import copy
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits, make_regression

from fastmlp import MLPClassifier, MLPRegressor
from fastmlp.compression import compress
from fastmlp.compression._finetune import CodebookObjective, training_targets
from fastmlp.pruning import prune_magnitude

X, Y = load_digits(return_X_y=True)
X, Y = X[:300] / 16, Y[:300]


def fitted(Est, dtype, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if Est is MLPClassifier:
            params = dict(hidden_layer_sizes=(20, 12), max_iter=30, random_state=0, n_threads=1)
            params.update(kw)
            return Est(**params).fit(X.astype(dtype), Y)
        Xr, yr = make_regression(200, 8, n_targets=2, random_state=0)
        kw.setdefault("activation", "tanh")
        return Est(hidden_layer_sizes=(16,), max_iter=50, random_state=0, n_threads=1, **kw).fit(Xr.astype(dtype), yr / 100), Xr.astype(dtype), yr / 100


@pytest.mark.parametrize("Est", [MLPClassifier, MLPRegressor])
@pytest.mark.parametrize("alpha,l1", [(0.0, 0.0), (1e-2, 1e-3)])
def test_codebook_gradient_matches_finite_differences(Est, alpha, l1):
    if Est is MLPClassifier:
        # tanh: smooth, so finite differences see no relu kinks
        est, Xd, yd = fitted(Est, np.float64, alpha=alpha, activation="tanh"), X, Y
    else:
        est, Xd, yd = fitted(Est, np.float64, alpha=alpha)
    est.set_params(l1=l1)
    prune_magnitude(est, 0.5)
    model = compress(est, bits=3, bias_bits=None)
    e = model.estimator
    Xk, Yk, sw = training_targets(e, Xd, yd, None)
    f = CodebookObjective(e, model.layers, Xk, Yk, sw)
    p = f.params()
    rows = np.arange(Yk.shape[0], dtype=np.int64)
    _, g = f(p, rows)
    rng = np.random.default_rng(0)
    # float32 centroids: perturb by more than their rounding, compare to FD.
    for i in rng.choice(p.size, 12, replace=False):
        h = 1e-4
        up, down = p.copy(), p.copy()
        up[i] += h
        down[i] -= h
        up[i] = np.float32(up[i])
        down[i] = np.float32(down[i])
        fd = (f(up, rows)[0] - f(down, rows)[0]) / (up[i] - down[i])
        np.testing.assert_allclose(g[i], fd, rtol=2e-3, atol=5e-6)


def test_fine_tuning_lowers_the_loss_and_keeps_sharing(dtype):
    est = fitted(MLPClassifier, dtype, max_iter=200, learning_rate_init=3e-3)
    prune_magnitude(est, 0.8)
    plain = compress(est, bits=2)
    tuned = compress(est, bits=2, X=X, y=Y, fine_tune_epochs=15, learning_rate=3e-3)
    Xk, Yk, _ = training_targets(tuned.estimator, X, Y, None)

    def loss(m):
        from fastmlp.solvers.objective import Objective

        e = m.estimator
        return Objective(e._layout, Xk, Yk, None, e._loss_code, e.alpha, e.l1, 1).loss(e._theta)

    assert loss(tuned) < 0.9 * loss(plain)
    assert tuned.fine_tune_loss_[-1] < tuned.fine_tune_loss_[0]
    for l, code in enumerate(tuned.layers):
        W = tuned.estimator.coefs_[l]
        assert W.dtype == dtype
        np.testing.assert_array_equal(W.data, code.table[code.symbols].astype(dtype))
        assert np.unique(W.data).size <= 4
        # the pattern is untouched
        np.testing.assert_array_equal(W.indices, est.coefs_[l].indices)


def test_fine_tuning_is_reproducible():
    est = fitted(MLPClassifier, np.float64)
    a = compress(est, bits=3, X=X, y=Y, fine_tune_epochs=2, random_state=3)
    b = compress(est, bits=3, X=X, y=Y, fine_tune_epochs=2, random_state=3)
    np.testing.assert_array_equal(a.estimator._theta, b.estimator._theta)


def test_fine_tuning_honours_sample_and_class_weights():
    est = fitted(MLPClassifier, np.float64)
    sw = np.where(Y == 3, 10.0, 1.0)
    a = compress(est, bits=3, X=X, y=Y, fine_tune_epochs=2)
    b = compress(est, bits=3, X=X, y=Y, sample_weight=sw, fine_tune_epochs=2)
    assert not np.array_equal(a.estimator._theta, b.estimator._theta)
    est2 = copy.deepcopy(est).set_params(class_weight={3: 10.0})
    c = compress(est2, bits=3, X=X, y=Y, fine_tune_epochs=2)
    np.testing.assert_allclose(b.estimator._theta, c.estimator._theta, rtol=1e-6, atol=1e-7)
