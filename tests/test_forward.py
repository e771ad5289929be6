"""The compiled prediction pass against the numpy reference forward."""

import sys
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from fastmlp import _forward, _kernels
from fastmlp._network import HIDDEN_ACTIVATIONS, Layout
from fastmlp._threads import blas_threads

from reference import forward as ref_forward


@pytest.mark.parametrize("hidden", HIDDEN_ACTIVATIONS)
@pytest.mark.parametrize("out", ["identity", "logistic", "softmax", "exp"])
@pytest.mark.parametrize("kind", ["C", "F", "csr", "rows"])
def test_predict_matches_reference(hidden, out, kind, dtype):
    rng = np.random.RandomState(0)
    layout = Layout([7, 11, 5, 4], [hidden, hidden, out], negative_slope=0.2)
    theta = (rng.randn(layout.n_params) * 0.5).astype(dtype)
    X = rng.randn(37, 7).astype(dtype)
    X[rng.rand(37, 7) < 0.3] = 0
    rows = np.arange(37, dtype=np.int64)
    Xk = X
    if kind == "F":
        Xk = np.asfortranarray(X)
    elif kind == "csr":
        Xs = sp.csr_matrix(X)
        Xk = (Xs.data, Xs.indices, Xs.indptr)
    elif kind == "rows":
        rows = rng.permutation(37)[:20].astype(np.int64)
    out_arr = np.empty((len(rows), 4), dtype=dtype)
    _forward.predict(theta, Xk, layout.net, out_arr, rows, 8, 1)
    expected = ref_forward(layout, theta.astype(float), X.astype(float))[rows]
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(out_arr, expected, rtol=tol, atol=tol)


def test_softmax_is_stable_for_huge_inputs():
    layout = Layout([2, 3], ["softmax"])
    theta = np.array([1e3, -1e3, 0, -1e3, 1e3, 0, 0, 0, 0], dtype=np.float64)
    X = np.array([[1.0, 0.0], [0.0, 1.0], [1e300, 0.0]])
    out = np.empty((3, 3))
    _forward.predict(theta, X, layout.net, out, np.arange(3, dtype=np.int64), 8, 1)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out.sum(1), 1)


@pytest.mark.parametrize("n_rows", [1, 3, 1500])
def test_predict_dense_matches_reference(n_rows, dtype):
    # 1 row goes through gemv, 1500 rows through two chunks without the GIL.
    rng = np.random.RandomState(1)
    layout = Layout([13, 9, 4], ["tanh", "softmax"])
    theta = (rng.randn(layout.n_params) * 0.5).astype(dtype)
    X = rng.randn(n_rows, 13).astype(dtype)
    out = _forward.predict_dense(theta, X, layout.net, 2)
    assert out.dtype == dtype and out.shape == (n_rows, 4)
    expected = ref_forward(layout, theta.astype(float), X.astype(float))
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(out, expected, rtol=tol, atol=tol)


def _split_case(dtype):
    # 600 x 600 weights cut predict_dense's chunks to 184 rows (every product
    # in the small kernels), or, where the kernels take any product
    # (_kernels.max_work), leave them at 1,024: 2,500 rows make 14 or 3.
    rng = np.random.RandomState(3)
    layout = Layout([600, 600, 3], ["relu", "softmax"])
    theta = (rng.randn(layout.n_params) * 0.05).astype(dtype)
    return layout, theta, rng.randn(2500, 600).astype(dtype)


def test_predict_dense_splits_rows_over_threads_with_the_same_outputs(dtype):
    layout, theta, X = _split_case(dtype)
    # Only where the small kernels take every product of a chunk.
    assert _forward.splits_rows(layout.net, 2500, 2) == (_kernels.isa() != 0)
    assert not _forward.splits_rows(layout.net, 2500, 1)
    assert not _forward.splits_rows(layout.net, 300, 2)  # fewer rows than two chunks
    assert not _forward.splits_rows(Layout([13, 9, 4], ["tanh", "softmax"]).net, 1500, 2)
    # 784 x 1024 weights: chunks of 1,024 rows would reach BLAS's products,
    # unless the kernels take products of any size.
    assert _forward.splits_rows(Layout([784, 1024, 10], ["relu", "softmax"]).net,
                                10000, 2) == (_kernels.max_work() == sys.maxsize)
    with blas_threads(1):
        one = _forward.predict_dense(theta, X, layout.net, 1)
        for n_threads in (2, 3):
            np.testing.assert_array_equal(
                _forward.predict_dense(theta, X, layout.net, n_threads), one)
        # The row-index path takes the same chunks, so the same outputs.
        out = np.empty_like(one)
        _forward.predict(theta, X, layout.net, out, np.arange(2500, dtype=np.int64), 1024, 2)
    np.testing.assert_array_equal(out, one)
    expected = ref_forward(layout, theta.astype(float), X.astype(float))
    tol = 1e-10 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(one, expected, rtol=tol, atol=tol)


def test_split_predict_declines_bad_input_or_output_in_any_chunk(dtype):
    layout, theta, X = _split_case(dtype)
    for row in (0, 1200, 2499):  # the first, a middle and the last chunk
        bad = X.copy()
        bad[row, 7] = np.nan
        assert _forward.predict_dense(theta, bad, layout.net, 2) is None
        big = X.copy()
        big[row] = np.finfo(dtype).max  # finite input, overflowing sums
        assert _forward.predict_dense(theta, big, layout.net, 2) is None
    assert _forward.predict_dense(theta, X, layout.net, 2) is not None


def test_predict_dense_declines_what_it_cannot_read():
    # None sends the caller to the full validation, which raises or converts.
    layout = Layout([3, 1], ["identity"])
    theta = np.ones(layout.n_params)
    X = np.arange(12.0).reshape(4, 3)
    swapped = X.astype(X.dtype.newbyteorder())
    unaligned = np.frombuffer(b"\0" + X.tobytes(), dtype=np.float64, offset=1).reshape(4, 3)
    with_nan, with_inf = X.copy(), X.copy()
    with_nan[2, 1] = np.nan
    with_inf[3, 2] = -np.inf
    for bad in [X.tolist(), np.asfortranarray(X), X[:, :2], X.astype(np.float32),
                X[0], X[:0], X.reshape(2, 2, 3), swapped, unaligned, with_nan, with_inf]:
        assert _forward.predict_dense(theta, bad, layout.net, 1) is None
    # So does an output that overflows: the caller's own pass raises for it.
    assert _forward.predict_dense(np.full_like(theta, 1e308), X, layout.net, 1) is None
    np.testing.assert_allclose(_forward.predict_dense(theta, X, layout.net, 1),
                               X.sum(1, keepdims=True) + 1)


@pytest.mark.parametrize("sparsity", [0.3, 0.9])
def test_predict_dense_runs_pruned_layers(sparsity, dtype):
    # 0.3 keeps gemm on a dense copy (its zeroed workspace), 0.9 the sparse
    # kernels: the fast path must agree with predict, which validates fully.
    from sklearn.datasets import load_digits

    from fastmlp import MLPClassifier
    from fastmlp.pruning import kernel_choice, prune_magnitude

    X, y = load_digits(return_X_y=True)
    X = (X[:300] / 16).astype(dtype)
    est = MLPClassifier(hidden_layer_sizes=(40,), max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y[:300])
    prune_magnitude(est, sparsity)
    expected_kernel = "sparse" if sparsity > 0.5 else "gemm on dense copy"
    assert expected_kernel in kernel_choice(est)
    for n_rows in [1, 300]:
        out = _forward.predict_dense(est._theta, X[:n_rows], est._layout.net, 1)
        ref = np.empty_like(out)
        _forward.predict(est._theta, np.asfortranarray(X[:n_rows]), est._layout.net, ref,
                         np.arange(n_rows, dtype=np.int64), 1024, 1)
        np.testing.assert_array_equal(out, ref)
