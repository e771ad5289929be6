"""Pruned models with the rest of fastmlp: dropout, per-layer activations,
ONNX export, plots, the compiled predict on sparse input."""

import copy
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import load_digits

from fastmlp import MLPClassifier
from fastmlp.pruning import prune_magnitude, prune_units, retrain

X, Y = load_digits(return_X_y=True)
X, Y = X[:400] / 16, Y[:400]


def fitted(**kw):
    params = dict(hidden_layer_sizes=(30, 20), max_iter=15, random_state=0)
    params.update(kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return MLPClassifier(**params).fit(X, Y)


def test_retrain_with_dropout_and_per_layer_activations():
    est = prune_magnitude(fitted(dropout=0.2, activation=["tanh", "relu"]), 0.7)
    pattern = [W.indices.copy() for W in est.coefs_]
    retrain(est, X, Y, epochs=3)
    assert [np.array_equal(p, W.indices) for p, W in zip(pattern, est.coefs_)] == [True] * 3
    # Dropout only acts in training: predictions are the plain forward pass.
    ref = copy.deepcopy(est)
    ref.coefs_ = [W.toarray() for W in est.coefs_]
    np.testing.assert_allclose(est.predict_proba(X), ref.predict_proba(X), rtol=1e-12,
                               atol=1e-12)


def test_sparse_input_on_pruned_first_layer():
    est = prune_magnitude(fitted(), 0.8)
    Xs = sp.csr_matrix(X)
    np.testing.assert_allclose(est.predict_proba(Xs), est.predict_proba(X), rtol=1e-12,
                               atol=1e-12)
    retrain(est, Xs, Y, epochs=2)  # the epoch reads CSR rows into the pruned layer
    assert sp.isspmatrix_csc(est.coefs_[0])


def test_onnx_export_of_a_pruned_model():
    skl2onnx = pytest.importorskip("skl2onnx")
    ort = pytest.importorskip("onnxruntime")
    import fastmlp.onnx  # noqa: F401  registers the converters

    est = prune_units(prune_magnitude(fitted(), 0.8), 0.25)
    X32 = X.astype(np.float32)
    onx = skl2onnx.to_onnx(est, X32[:1], options={"zipmap": False})
    sess = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    _, proba = sess.run(None, {sess.get_inputs()[0].name: X32})
    np.testing.assert_allclose(proba, est.predict_proba(X32), rtol=1e-5, atol=1e-5)


def test_plots_of_a_pruned_model():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    from fastmlp import plot

    est = fitted()
    pruned = prune_magnitude(copy.deepcopy(est), 0.9)
    plot.weight_histogram(est, other=pruned)
    ax = plot.sparsity(pruned)
    assert "10.0% nonzero" in [t.get_text().split("\n")[1] for t in ax.texts][0]
