"""Magnitude pruning: what is removed, what the pruned model computes, and
what it holds (pickling, sklearn tools, the sparsity report)."""

import copy
import pickle
import warnings

import joblib
import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.datasets import load_digits, make_regression
from sklearn.linear_model import LogisticRegression

from fastmlp import MLPClassifier, MLPRegressor
from fastmlp.pruning import kernel_choice, prune_magnitude

X_DIGITS, Y_DIGITS = load_digits(return_X_y=True)
X_DIGITS = X_DIGITS[:400] / 16


def fitted(Est=MLPClassifier, dtype=np.float64, **kw):
    params = dict(hidden_layer_sizes=(40, 20), max_iter=15, random_state=0)
    params.update(kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if Est is MLPClassifier:
            return Est(**params).fit(X_DIGITS.astype(dtype), Y_DIGITS[:400])
        X, y = make_regression(200, 12, n_targets=2, random_state=0)
        return Est(**params).fit(X.astype(dtype), y / 100)


def dense_with_zeros(est, pruned):
    """The original model with the weights the pruned one lacks set to 0."""
    ref = copy.deepcopy(est)
    for l, W in enumerate(pruned.coefs_):
        ref.coefs_[l][...] = W.toarray() if sp.issparse(W) else W
    for l, b in enumerate(pruned.intercepts_):
        ref.intercepts_[l][...] = b
    return ref


@pytest.mark.parametrize("Est", [MLPClassifier, MLPRegressor])
def test_layer_scope_removes_the_smallest_of_each_layer(Est, dtype):
    est = fitted(Est, dtype)
    before = [W.copy() for W in est.coefs_]
    pruned = prune_magnitude(copy.deepcopy(est), 0.8)
    assert all(sp.isspmatrix_csc(W) and W.dtype == dtype for W in pruned.coefs_)
    for W, W0 in zip(pruned.coefs_, before):
        assert W.nnz == round(0.2 * W0.size)
        kept = np.zeros(W0.shape, bool)
        coo = W.tocoo()
        kept[coo.row, coo.col] = True
        assert np.abs(W0[kept]).min() >= np.abs(W0[~kept]).max()
        np.testing.assert_array_equal(W.toarray()[kept], W0[kept])  # values unchanged
    np.testing.assert_allclose(pruned.sparsity_, 0.8, atol=1e-3)
    X = X_DIGITS.astype(dtype) if Est is MLPClassifier else \
        make_regression(200, 12, random_state=1)[0].astype(dtype)
    ref = dense_with_zeros(est, pruned)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    if Est is MLPClassifier:
        np.testing.assert_allclose(pruned.predict_proba(X), ref.predict_proba(X), rtol=tol,
                                   atol=tol)
        np.testing.assert_array_equal(pruned.predict(X), ref.predict(X))
    else:
        np.testing.assert_allclose(pruned.predict(X), ref.predict(X), rtol=tol, atol=tol)


def test_global_scope_uses_one_threshold():
    est = fitted()
    mags = np.concatenate([np.abs(W).ravel() for W in est.coefs_])
    pruned = prune_magnitude(copy.deepcopy(est), 0.9, scope="global")
    kept = sum(W.nnz for W in pruned.coefs_)
    assert kept == round(0.1 * mags.size)
    threshold = np.sort(mags)[::-1][kept - 1]
    for W in pruned.coefs_:
        assert np.abs(W.data).min() >= threshold
    # Layers are not pruned alike: the report shows each one's own share.
    assert len(set(np.round(pruned.sparsity_, 3))) > 1
    total = sum(W.shape[0] * W.shape[1] for W in est.coefs_)
    assert 1 - kept / total == pytest.approx(0.9, abs=1e-3)


def test_keep_output_dense_and_per_layer_targets():
    est = fitted()
    pruned = prune_magnitude(copy.deepcopy(est), 0.7, keep_output_dense=True)
    assert not sp.issparse(pruned.coefs_[-1])
    np.testing.assert_array_equal(pruned.coefs_[-1], est.coefs_[-1])
    np.testing.assert_allclose(pruned.sparsity_, [0.7, 0.7, 0.0], atol=1e-3)
    pruned = prune_magnitude(copy.deepcopy(est), [0.5, 0.0, 0.9])
    assert not sp.issparse(pruned.coefs_[1])  # nothing removed: stays dense
    np.testing.assert_allclose(pruned.sparsity_, [0.5, 0.0, 0.9], atol=1e-3)


def test_pruning_again_only_removes():
    est = prune_magnitude(fitted(), 0.5)
    survivors = [set(zip(*W.nonzero())) for W in est.coefs_]
    prune_magnitude(est, 0.3)  # already sparser: keeps everything
    assert [set(zip(*W.nonzero())) for W in est.coefs_] == survivors
    prune_magnitude(est, 0.8)
    for W, before in zip(est.coefs_, survivors):
        assert set(zip(*W.nonzero())) <= before
    np.testing.assert_allclose(est.sparsity_, 0.8, atol=1e-3)


def test_sparsity_and_kernels_of_a_dense_model():
    est = fitted()
    np.testing.assert_array_equal(est.sparsity_, [0.0, 0.0, 0.0])
    assert kernel_choice(est) == ["gemm"] * 3
    assert kernel_choice(prune_magnitude(est, 0.9)) == ["sparse"] * 3
    assert not hasattr(MLPClassifier(), "sparsity_")


@pytest.mark.parametrize("Est", [MLPClassifier, MLPRegressor])
def test_pruned_model_persists(Est, tmp_path):
    pruned = prune_magnitude(fitted(Est), 0.85)
    X = X_DIGITS if Est is MLPClassifier else make_regression(50, 12, random_state=1)[0]
    state = pruned.__getstate__()
    for W in state["coefs_"]:
        assert type(W) is sp.csc_matrix
        assert all(type(getattr(W, a)) is np.ndarray for a in ("data", "indices", "indptr"))
    assert type(pruned.sparsity_) is np.ndarray
    for loaded in (pickle.loads(pickle.dumps(pruned)),
                   (joblib.dump(pruned, tmp_path / "m.joblib"),
                    joblib.load(tmp_path / "m.joblib"))[1]):
        np.testing.assert_array_equal(loaded.predict(X), pruned.predict(X))
        np.testing.assert_array_equal(loaded.sparsity_, pruned.sparsity_)
        assert all(W.data.base is loaded._theta for W in loaded.coefs_)
    assert len(pickle.dumps(pruned)) < 0.5 * len(pickle.dumps(fitted(Est)))


def test_assigned_sparse_coefs_are_used():
    est = fitted()
    W = est.coefs_[0].copy()
    W[np.abs(W) < np.quantile(np.abs(W), 0.6)] = 0
    ref = copy.deepcopy(est)
    ref.coefs_[0][...] = W
    est.coefs_[0] = sp.csr_matrix(W)  # any sparse format
    np.testing.assert_allclose(est.predict_proba(X_DIGITS), ref.predict_proba(X_DIGITS),
                               rtol=1e-12, atol=1e-12)
    assert sp.isspmatrix_csc(est.coefs_[0]) and est.sparsity_[0] == pytest.approx(0.6, abs=0.01)
    est.coefs_[0] = est.coefs_[0].toarray()  # and back to dense
    assert est.sparsity_[0] == 0 and not sp.issparse(est.coefs_[0])
    np.testing.assert_allclose(est.predict_proba(X_DIGITS), ref.predict_proba(X_DIGITS),
                               rtol=1e-12, atol=1e-12)


def test_sklearn_tools_still_work():
    pruned = prune_magnitude(fitted(), 0.9)
    c = clone(pruned)
    assert not hasattr(c, "coefs_") and c.get_params() == pruned.get_params()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c.fit(X_DIGITS, Y_DIGITS[:400])  # a fresh fit is dense again
    assert c.sparsity_.max() == 0


@pytest.mark.parametrize("kwargs,match", [
    (dict(sparsity=1.0), r"in \[0, 1\)"),
    (dict(sparsity=-0.1), r"in \[0, 1\)"),
    (dict(sparsity=[0.5, 0.5]), "one number per weight layer"),
    (dict(sparsity=0.5, scope="all"), "scope"),
    (dict(sparsity=[0.5, 0.5, 0.5], scope="global"), "one sparsity"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        prune_magnitude(fitted(), **kwargs)


def test_needs_a_fitted_fastmlp_estimator():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        prune_magnitude(MLPClassifier(), 0.5)
    with pytest.raises(TypeError, match="fastmlp"):
        prune_magnitude(LogisticRegression(), 0.5)
