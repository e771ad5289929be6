"""Property tests over random shapes, dtypes, values and settings (hypothesis).

The CI profile runs a few dozen examples per property; HYPOTHESIS_PROFILE=
thorough runs 10,000 (tests/conftest.py). A crash of the process — the
kernels reading or writing out of bounds — fails the whole run.
"""

import tempfile
import warnings
from pathlib import Path

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import assume, event, given
from hypothesis import strategies as st

import fastmlp
from fastmlp import MLPClassifier, MLPRegressor

from test_persist import assert_same

SOLVERS = ["adam", "sgd", "lbfgs", "adagrad", "adadelta", "rmsprop"]
ACTIVATIONS = ["identity", "logistic", "tanh", "relu", "leaky_relu"]


def quiet(f, *a, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return f(*a, **kw)


@st.composite
def estimators(draw, regressor=None):
    if regressor is None:
        regressor = draw(st.booleans())
    kw = dict(
        hidden_layer_sizes=tuple(draw(st.lists(st.integers(1, 6), max_size=2))),
        activation=draw(st.sampled_from(ACTIVATIONS)),
        solver=draw(st.sampled_from(SOLVERS)),
        max_iter=draw(st.integers(1, 4)),
        batch_size=draw(st.sampled_from(["auto", 1, 3, 16])),
        alpha=draw(st.sampled_from([0.0, 1e-4, 1.0])),
        early_stopping=draw(st.booleans()),
        random_state=draw(st.integers(0, 3)),
        n_threads=draw(st.sampled_from([1, 2])),
    )
    if regressor:
        return MLPRegressor(loss=draw(st.sampled_from(["squared_error", "poisson"])), **kw)
    return MLPClassifier(loss=draw(st.sampled_from(["log_loss", "squared_error", "hinge"])), **kw)


def any_floats(dtype):
    return st.floats(width=np.dtype(dtype).itemsize * 8, allow_subnormal=True)


@st.composite
def datasets(draw, finite=False, max_rows=30):
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    n = draw(st.integers(1, max_rows))
    d = draw(st.integers(1, 5))
    if finite:
        elements = st.floats(-1e3, 1e3, width=np.dtype(dtype).itemsize * 8)
    else:
        elements = any_floats(dtype)
    X = draw(hnp.arrays(dtype, (n, d), elements=elements))
    labels = draw(hnp.arrays(np.int64, n, elements=st.integers(0, 2)))
    values = draw(hnp.arrays(np.float64, n, elements=st.floats(0, 1e3) if finite
                             else any_floats(np.float64)))
    return X, labels, values


def check_outputs(est, X):
    """Finite outputs, probabilities summing to 1 — or a clear ValueError."""
    try:
        if isinstance(est, MLPClassifier) and est.loss != "hinge":
            proba = est.predict_proba(X)
            assert proba.shape == (X.shape[0], len(est.classes_))
            assert np.isfinite(proba).all()
            tol = 1e-5 if est.coefs_[0].dtype == np.float32 else 1e-12
            np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=tol)
            assert ((proba >= 0) & (proba <= 1)).all()
        out = est.predict(X)
    except ValueError as exc:
        assert "not finite" in str(exc) or "NaN" in str(exc) or "infinity" in str(exc), exc
        return
    if isinstance(est, MLPRegressor):
        assert np.isfinite(out).all()
    else:
        assert set(np.unique(out)) <= set(est.classes_)


@given(estimators(), datasets(), st.data())
def test_fit_and_predict_never_crash_nor_return_nan_silently(est, data, draw):
    X, labels, values = data
    y = values if isinstance(est, MLPRegressor) else labels
    try:
        quiet(est.fit, X, y)
    except ValueError as exc:
        assert str(exc)  # refused, with a message
        return
    check_outputs(est, X)
    check_outputs(est, draw.draw(hnp.arrays(X.dtype, (draw.draw(st.integers(1, 9)), X.shape[1]),
                                            elements=any_floats(X.dtype))))


@given(estimators(regressor=False), datasets(finite=True))
def test_predict_proba_rows_are_finite_and_sum_to_one(est, data):
    X, labels, _ = data
    assume(len(np.unique(labels)) > 1 and est.loss != "hinge")
    try:
        quiet(est.fit, X, labels)
    except ValueError as exc:
        assert "validation set is too small" in str(exc) or "train set will be empty" in str(
            exc) or "least populated class" in str(exc) or "test_size" in str(exc), exc
        return
    check_outputs(est, X)


MODELS = {}


def fitted_model(kind, dtype):
    """A few fixed models, fitted once (the property varies the inputs)."""
    key = (kind, np.dtype(dtype).name)
    if key not in MODELS:
        rng = np.random.RandomState(0)
        X = rng.randn(300, 7).astype(dtype)
        if kind == "multiclass":
            est = MLPClassifier((32, 16), max_iter=20, random_state=0)
            y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)
        elif kind == "binary":
            est = MLPClassifier((16,), activation="tanh", max_iter=20, random_state=0)
            y = X[:, 0] > 0
        else:
            est = MLPRegressor(hidden_layer_sizes=(16, 8), max_iter=20, random_state=0)
            y = X[:, :2] @ [1.0, -2.0]
        MODELS[key] = quiet(est.fit, X, y)
    return MODELS[key]


@given(st.sampled_from(["multiclass", "binary", "regression"]),
       st.sampled_from([np.float64, np.float32]), st.data())
def test_predictions_invariant_to_row_order_and_batching(kind, dtype, data):
    est = fitted_model(kind, dtype)
    n = data.draw(st.integers(1, 2600))
    X = np.random.RandomState(data.draw(st.integers(0, 2**31))).randn(n, 7).astype(dtype) * 3
    if n < 60:
        perm = np.asarray(data.draw(st.permutations(range(n))))
    else:
        perm = np.random.RandomState(n).permutation(n)
    cuts = sorted(set(data.draw(st.lists(st.integers(0, n), max_size=4))) | {0, n})
    method = est.predict if kind == "regression" else est.predict_proba
    whole = method(X)
    shuffled = method(X[perm])
    batched = np.concatenate([method(X[a:b]) for a, b in zip(cuts[:-1], cuts[1:]) if b > a])
    # Rows are computed independently; BLAS may round a row differently
    # depending on where it sits in a block, so bits agree within a few ulps.
    tol = dict(rtol=1e-4, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(shuffled, whole[perm], **tol)
    np.testing.assert_allclose(batched, whole, **tol)
    if kind != "regression":
        top2 = np.sort(whole, axis=1)[:, -2:]
        clear = (top2[:, 1] - top2[:, 0]) > 1e-3
        labels = est.predict(X)
        assert np.array_equal(est.predict(X[perm])[clear[perm]], labels[perm][clear[perm]])


@st.composite
def prunings(draw):
    """None (dense), or how to prune: (unit fraction, sparsity, scope, keep output dense)."""
    if draw(st.integers(0, 3)) == 0:
        return None
    return (draw(st.sampled_from([0.0, 0.0, 0.5])), draw(st.floats(0.3, 0.99) | st.floats(0, 0.99)),
            draw(st.sampled_from(["layer", "global"])), draw(st.booleans()))


def prune(est, how):
    from fastmlp.pruning import prune_magnitude, prune_units

    units, sparsity, scope, keep_output_dense = how
    if units and len(est.coefs_) > 1:
        prune_units(est, units)
    if keep_output_dense and len(est.coefs_) == 1:
        return est
    return prune_magnitude(est, sparsity, scope=scope, keep_output_dense=keep_output_dense)


@given(estimators(), datasets(finite=True, max_rows=40), prunings())
def test_save_load_round_trips_are_bit_identical_dense_and_pruned(est, data, how):
    X, labels, values = data
    y = values if isinstance(est, MLPRegressor) else labels
    try:
        quiet(est.fit, X, y)
    except ValueError:
        return
    if how is not None:
        prune(est, how)
    event("pruned" if any(sp.issparse(W) for W in est.coefs_) else "dense")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.fmlp"
        fastmlp.save(est, path)
        loaded = fastmlp.load(path)
    assert_same(est.__getstate__(), loaded.__getstate__())
    for W, V in zip(est.coefs_, loaded.coefs_):
        if sp.issparse(W):  # the pattern, as the kernels index it
            assert_same(W.indptr, V.indptr)
            assert_same(W.indices, V.indices)
    try:
        want = est.predict(X)
    except ValueError:  # non-finite outputs are refused, for both alike
        with pytest.raises(ValueError):
            loaded.predict(X)
        return
    assert_same(want, loaded.predict(X))
