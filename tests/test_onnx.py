"""ONNX export through skl2onnx: ONNX Runtime's outputs against fastmlp's."""

import importlib
import sys
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import make_classification, make_multilabel_classification
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

skl2onnx = pytest.importorskip(
    "skl2onnx", reason="ONNX export needs skl2onnx: pip install 'fastmlp[onnx]'")
ort = pytest.importorskip(
    "onnxruntime", reason="running ONNX models needs onnxruntime: pip install 'fastmlp[onnx]'")

import fastmlp.onnx  # noqa: E402  registers the converters
from fastmlp import MLPClassifier, MLPRegressor  # noqa: E402

HIDDEN = ["identity", "logistic", "tanh", "relu", "leaky_relu", ("relu", "leaky_relu", "tanh")]
TOL = dict(rtol=1e-5, atol=1e-5)

X, Y3 = make_classification(120, 7, n_informative=5, n_classes=3, random_state=0)
XM, YM = make_multilabel_classification(120, 7, n_classes=4, random_state=0)


def fit(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X, y)


def run(model, X, **options):
    onx = skl2onnx.to_onnx(model, X[:1], **options)
    sess = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: X})


def sizes(activation):
    return (9, 6, 5) if isinstance(activation, tuple) else (9, 6)


@pytest.mark.parametrize("activation", HIDDEN, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("problem", ["binary", "multiclass", "multilabel"])
def test_classifier_round_trip(activation, dtype, problem):
    if problem == "multilabel":
        Xp, y = XM, YM
    else:
        Xp, y = X, (Y3 % 2 if problem == "binary" else Y3)
    Xp = Xp.astype(dtype)
    est = fit(MLPClassifier(sizes(activation), activation=activation, negative_slope=0.2,
                            max_iter=30, random_state=0), Xp, y)
    label, proba = run(est, Xp, options={"zipmap": False})
    assert proba.dtype == dtype
    np.testing.assert_allclose(proba, est.predict_proba(Xp), **TOL)
    np.testing.assert_array_equal(label, est.predict(Xp))


@pytest.mark.parametrize("activation", HIDDEN, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("loss,n_outputs", [("squared_error", 1), ("squared_error", 3),
                                            ("poisson", 2)])
def test_regressor_round_trip(activation, dtype, loss, n_outputs):
    rng = np.random.RandomState(0)
    y = np.abs(X[:, :n_outputs] + 0.1 * rng.randn(len(X), n_outputs))
    y = y[:, 0] if n_outputs == 1 else y
    est = fit(MLPRegressor(loss, hidden_layer_sizes=sizes(activation), activation=activation,
                           max_iter=30, random_state=0), X.astype(dtype), y)
    (out,) = run(est, X.astype(dtype))
    assert out.dtype == dtype and out.shape == (len(X), n_outputs)
    np.testing.assert_allclose(out, est.predict(X.astype(dtype)).reshape(len(X), -1), **TOL)


@pytest.mark.parametrize("loss", ["hinge", "squared_error"])
@pytest.mark.parametrize("n_classes", [2, 3])
def test_other_classifier_losses(loss, n_classes):
    y = Y3 % n_classes
    est = fit(MLPClassifier((8,), loss=loss, max_iter=30, random_state=0), X, y)
    label, scores = run(est, X, options={"zipmap": False})
    np.testing.assert_array_equal(label, est.predict(X))
    if loss == "hinge":  # raw scores, the values predict thresholds
        raw = est._forward(X)
        expected = np.hstack([-raw, raw]) if n_classes == 2 else raw
        np.testing.assert_allclose(scores, expected, **TOL)
        assert np.array_equal(est.classes_[scores.argmax(1)], label)
    else:
        np.testing.assert_allclose(scores, est.predict_proba(X), **TOL)


def test_hinge_multilabel_thresholds_scores_at_zero():
    est = fit(MLPClassifier((8,), loss="hinge", max_iter=30, random_state=0), XM, YM)
    label, scores = run(est, XM, options={"zipmap": False})
    np.testing.assert_array_equal(label, est.predict(XM))
    np.testing.assert_allclose(scores, est._forward(XM), **TOL)


def test_string_labels_zipmap_and_nocl():
    y = np.array(["ant", "bee", "cat"])[Y3]
    est = fit(MLPClassifier((8,), max_iter=30, random_state=0), X, y)
    label, proba = run(est, X.astype(np.float32))  # default: ZipMap
    assert list(label) == list(est.predict(X))
    assert set(proba[0]) == {"ant", "bee", "cat"}
    np.testing.assert_allclose([p["bee"] for p in proba], est.predict_proba(X)[:, 1], **TOL)
    index, _ = run(est, X, options={"zipmap": False, "nocl": True})
    np.testing.assert_array_equal(est.classes_[index], est.predict(X))


def test_inside_a_pipeline():
    pipe = fit(make_pipeline(StandardScaler(), MLPClassifier((8,), max_iter=30,
                                                             random_state=0)), X * 10, Y3)
    label, proba = run(pipe, (X * 10).astype(np.float32), options={"zipmap": False})
    np.testing.assert_allclose(proba, pipe.predict_proba(X * 10), **TOL)


def test_float32_model_with_float64_input():
    est = fit(MLPClassifier((8,), max_iter=30, random_state=0), X.astype(np.float32), Y3)
    _, proba = run(est, X, options={"zipmap": False})
    assert proba.dtype == np.float64
    np.testing.assert_allclose(proba, est.predict_proba(X.astype(np.float32)), **TOL)


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_scipy_sparse_coefs_are_written_dense(fmt):
    """A pruned layer (a scipy.sparse coefs_ entry) exports like the dense
    matrix with the same zeros. fastmlp's own predict does not take sparse
    coefs_ yet, so the reference is the dense twin."""
    est = fit(MLPClassifier((12, 8), max_iter=30, random_state=0), X, Y3)
    W = est.coefs_[0]
    W[np.abs(W) < np.quantile(np.abs(W), 0.8)] = 0  # 80% pruned, in place
    expected = est.predict_proba(X)
    pruned = fit(MLPClassifier((12, 8), max_iter=30, random_state=0), X, Y3)
    pruned.coefs_[0] = sp.csr_matrix(W).asformat(fmt)
    pruned.coefs_[1] = est.coefs_[1]
    pruned.coefs_[2] = est.coefs_[2]
    pruned.intercepts_ = est.intercepts_
    _, proba = run(pruned, X, options={"zipmap": False})
    np.testing.assert_allclose(proba, expected, **TOL)


def test_to_onnx_helper_and_missing_dependency_message(monkeypatch):
    est = fit(MLPRegressor(hidden_layer_sizes=(4,), max_iter=5, random_state=0), X, Y3 * 1.0)
    onx = fastmlp.onnx.to_onnx(est, X[:1].astype(np.float32))
    assert onx.graph.output[0].name == "variable"
    monkeypatch.setitem(sys.modules, "skl2onnx", None)
    monkeypatch.delitem(sys.modules, "fastmlp.onnx")
    with pytest.raises(ImportError, match=r"pip install 'fastmlp\[onnx\]'"):
        importlib.import_module("fastmlp.onnx")
