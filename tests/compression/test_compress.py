"""compress(): what the compressed estimator holds and computes."""

import copy
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import load_digits, make_regression

from fastmlp import MLPClassifier, MLPRegressor
from fastmlp.compression import CompressedModel, compress
from fastmlp.pruning import prune_magnitude

X, Y = load_digits(return_X_y=True)
X, Y = X[:500] / 16, Y[:500]


def fitted(Est=MLPClassifier, dtype=np.float64, **kw):
    params = dict(hidden_layer_sizes=(40, 20), max_iter=60, random_state=0, n_threads=1)
    params.update(kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if Est is MLPClassifier:
            return Est(**params).fit(X.astype(dtype), Y)
        Xr, yr = make_regression(200, 12, n_targets=2, random_state=0)
        return Est(**params).fit(Xr.astype(dtype), yr / 100)


@pytest.mark.parametrize("bits", [1, 3, 5, 8])
def test_shared_layers_hold_at_most_2_to_bits_values(bits, dtype):
    est = fitted(dtype=dtype)
    prune_magnitude(est, 0.7)
    model = compress(est, bits=bits)
    assert isinstance(model, CompressedModel)
    for l, (W, code) in enumerate(zip(model.estimator.coefs_, model.layers)):
        assert sp.issparse(W) and W.dtype == dtype
        values = np.unique(W.data)
        assert values.size <= 2 ** bits
        # exactly the float32 codebook, widened to the model's dtype
        np.testing.assert_array_equal(W.data, code.table[code.symbols].astype(dtype))
        np.testing.assert_array_equal(W.indices, est.coefs_[l].indices)
        np.testing.assert_array_equal(W.indptr, est.coefs_[l].indptr)


def test_original_estimator_untouched():
    est = fitted()
    prune_magnitude(est, 0.5)
    theta = est._theta.copy()
    compress(est, bits=2, X=X, y=Y, fine_tune_epochs=1)
    np.testing.assert_array_equal(est._theta, theta)


def test_five_bits_keep_accuracy_and_predictions_close():
    est = fitted()
    prune_magnitude(est, 0.8)
    model = compress(est, bits=5)
    p0, p1 = est.predict_proba(X), model.estimator.predict_proba(X)
    assert np.abs(p0 - p1).max() < 0.1
    # The pruned net is a weak one (accuracy ~0.4): quantising it moves a
    # few of its borderline predictions either way, ±0.012 over six seeds.
    assert (est.predict(X) == model.estimator.predict(X)).mean() >= 0.95
    assert model.estimator.score(X, Y) >= est.score(X, Y) - 0.02


@pytest.mark.parametrize("bits", [8, 16])
def test_linear_quantisation(bits):
    est = fitted(MLPRegressor)
    model = compress(est, method="linear", bits=bits, bias_bits=None)
    for W0, W1, code in zip(est.coefs_, model.estimator.coefs_, model.layers):
        lo, step = code.table
        assert code.symbols.max() < 2 ** bits
        assert np.abs(W1 - W0).max() <= 0.5 * step * (1 + 1e-5) + 1e-7
    for b0, b1 in zip(est.intercepts_, model.estimator.intercepts_):
        np.testing.assert_array_equal(b1, b0.astype(np.float32).astype(b0.dtype))


def test_dense_layers_and_bias_bits():
    est = fitted()
    model = compress(est, bits=4, bias_bits=6)
    for W, b, code in zip(model.estimator.coefs_, model.estimator.intercepts_, model.layers):
        assert isinstance(W, np.ndarray) and code.csc is None and code.positions() is None
        assert np.unique(W).size <= 16
        assert np.unique(b).size <= 64 and code.bias_symbols.max() < 64


def test_layer_sizes_report():
    est = fitted()
    prune_magnitude(est, 0.9)
    model = compress(est, bits=5)
    sizes = model.layer_sizes()
    assert [s["dense_float32"] for s in sizes] == [4 * (64 * 40 + 40), 4 * (40 * 20 + 20),
                                                  4 * (20 * 10 + 10)]
    for s in sizes:
        assert s["stored"] == s["table"] + s["weights"] + s["positions"] + s["biases"]
        assert s["codecs"]["weights"] in ("bits", "huffman", "zlib", "lzma")
    assert sum(s["stored"] for s in sizes) < sum(s["dense_float32"] for s in sizes) / 15


@pytest.mark.parametrize("kwargs,match", [
    ({"bits": 0}, "bits must be an integer in"),
    ({"bits": 9}, "bits must be an integer in"),
    ({"bits": 17, "method": "linear"}, "bits must be an integer in"),
    ({"bits": 2.0}, "bits must be an integer"),
    ({"method": "kmeans"}, "method must be one of"),
    ({"bias_bits": 0}, "bias_bits"),
    ({"fine_tune_epochs": -1}, "fine_tune_epochs"),
    ({"fine_tune_epochs": 2}, "needs the training data"),
    ({"fine_tune_epochs": 2, "method": "linear", "bits": 8, "X": X, "y": Y}, "method='shared'"),
    ({"learning_rate": 0.0}, "learning_rate"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        compress(fitted(max_iter=2), **kwargs)


def test_unfitted_or_foreign_estimators():
    from sklearn.exceptions import NotFittedError
    from sklearn.neural_network import MLPClassifier as SkMLP

    with pytest.raises(NotFittedError):
        compress(MLPClassifier())
    with pytest.raises(TypeError, match="fastmlp"):
        compress(SkMLP())


def test_compressed_estimator_can_still_train():
    # It is an ordinary fitted estimator: warm-started training works (and
    # naturally leaves the shared values).
    model = compress(fitted(), bits=3)
    est = copy.deepcopy(model.estimator)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.partial_fit(X, Y)
    assert np.unique(est.coefs_[0]).size > 8
