"""The compiled loss and gradient against a numpy reference and against
finite differences, for every hidden activation, output/loss pair, dtype
and input kind."""

import numpy as np
import pytest
import scipy.sparse as sp

from fastmlp._network import (LOSS_HINGE, LOSS_HINGE_BINARY, LOSS_LOG, LOSS_POISSON,
                              LOSS_SQUARED, Layout)
from fastmlp.solvers.objective import Objective

from reference import objective as ref_objective

HIDDEN = ["identity", "logistic", "tanh", "relu", "leaky_relu"]
# (output activation, loss code, reference loss name, target kind)
OUTPUTS = [
    ("softmax", LOSS_LOG, "log", "onehot"),
    ("logistic", LOSS_LOG, "log", "binary"),
    # MLPRegressor(loss='binary_cross_entropy'): fractional targets in [0, 1]
    ("logistic", LOSS_LOG, "log", "unit"),
    ("softmax", LOSS_SQUARED, "squared", "onehot"),
    ("logistic", LOSS_SQUARED, "squared", "binary"),
    ("identity", LOSS_SQUARED, "squared", "real"),
    ("identity", LOSS_HINGE, "hinge", "onehot"),
    ("identity", LOSS_HINGE_BINARY, "hinge_binary", "binary"),
    ("exp", LOSS_POISSON, "poisson", "counts"),
]


def make_problem(hidden, out, kind, dtype, n=23, n_features=5, n_out=3, seed=0,
                 sparse=False):
    rng = np.random.RandomState(seed)
    layout = Layout([n_features, 7, 4, n_out], [hidden, hidden, out], negative_slope=0.1)
    theta = (rng.randn(layout.n_params) * 0.5).astype(dtype)
    X = rng.randn(n, n_features)
    if sparse:
        X[rng.rand(*X.shape) < 0.6] = 0
    if kind == "onehot":
        Y = np.eye(n_out)[rng.randint(0, n_out, n)]
    elif kind == "binary":
        Y = (rng.rand(n, n_out) < 0.5).astype(float)
    elif kind == "counts":
        Y = rng.poisson(2.0, (n, n_out)).astype(float)
    elif kind == "unit":
        Y = rng.rand(n, n_out)
    else:
        Y = rng.randn(n, n_out)
    sw = rng.uniform(0.5, 2.0, n)
    X = X.astype(dtype)
    return layout, theta, (sp.csr_matrix(X) if sparse else X), Y.astype(dtype), sw.astype(dtype)


@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize("out,code,ref_loss,kind", OUTPUTS)
def test_loss_matches_reference(hidden, out, code, ref_loss, kind, dtype):
    layout, theta, X, Y, sw = make_problem(hidden, out, kind, dtype)
    obj = Objective(layout, X, Y, sw, code, alpha=0.3, l1=0.05, n_threads=1)
    expected = ref_objective(layout, theta.astype(float), X.astype(float), Y.astype(float),
                             ref_loss, sw.astype(float), alpha=0.3, l1=0.05)
    rtol = 1e-10 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(obj.loss(theta), expected, rtol=rtol)
    np.testing.assert_allclose(obj(theta)[0], expected, rtol=rtol)


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize("out,code,ref_loss,kind", OUTPUTS)
def test_gradient_finite_differences(hidden, out, code, ref_loss, kind, dtype, sparse):
    """Central differences along random directions and per coordinate."""
    layout, theta, X, Y, sw = make_problem(hidden, out, kind, dtype, sparse=sparse)
    obj = Objective(layout, X, Y, sw, code, alpha=0.3, l1=0.05, n_threads=1)
    _, grad = obj(theta)
    assert grad.dtype == dtype
    rng = np.random.RandomState(1)
    if dtype == np.float64:
        eps, rtol = 1e-6, 1e-6
        # Every coordinate, in double precision.
        fd = np.empty(theta.size)
        for i in range(theta.size):
            e = np.zeros_like(theta)
            e[i] = eps
            fd[i] = (obj.loss(theta + e) - obj.loss(theta - e)) / (2 * eps)
        np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-7)
    else:
        # float32 is tied to the finite-difference-checked float64 gradient
        # at the same point, then checked directly where the loss is smooth
        # enough for float32 differences (a hinge kink is too often crossed).
        obj64 = Objective(layout, X.astype(np.float64), Y.astype(np.float64),
                          sw.astype(np.float64), code, alpha=0.3, l1=0.05, n_threads=1)
        g64 = obj64(theta.astype(np.float64))[1]
        np.testing.assert_allclose(grad, g64, rtol=1e-3, atol=1e-4 * np.abs(g64).max())
        if "hinge" in ref_loss:
            return
        eps, rtol = 1e-2, 5e-3
    for _ in range(5):
        v = rng.randn(theta.size).astype(dtype)
        v /= np.linalg.norm(v)
        fd = (obj.loss(theta + eps * v) - obj.loss(theta - eps * v)) / (2 * eps)
        np.testing.assert_allclose(float(np.dot(grad.astype(float), v)), fd,
                                   rtol=rtol, atol=rtol * np.abs(grad).max())


def test_chunks_add_up(dtype):
    """The objective is a sum over rows: chunking never changes it."""
    import fastmlp.solvers.objective as mod

    layout, theta, X, Y, sw = make_problem("tanh", "softmax", "onehot", dtype, n=101)
    obj = Objective(layout, X, Y, sw, LOSS_LOG, alpha=0.1, l1=0.0, n_threads=1)
    full = obj(theta)
    old = mod.CHUNK_ROWS
    try:
        mod.CHUNK_ROWS = 7
        chunked = obj(theta)
    finally:
        mod.CHUNK_ROWS = old
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(chunked[0], full[0], rtol=tol)
    np.testing.assert_allclose(chunked[1], full[1], rtol=tol * 100, atol=tol)


def test_row_subsets_sum_to_whole():
    layout, theta, X, Y, sw = make_problem("relu", "softmax", "onehot", np.float64, n=40)
    rows = np.arange(40, dtype=np.int64)
    whole = Objective(layout, X, Y, sw, LOSS_LOG, 0.0, 0.0, 1, rows=rows)
    a = Objective(layout, X, Y, sw, LOSS_LOG, 0.0, 0.0, 1, rows=rows[:13])
    b = Objective(layout, X, Y, sw, LOSS_LOG, 0.0, 0.0, 1, rows=rows[13:])
    wa, wb = sw[:13].sum(), sw[13:].sum()
    la, ga = a(theta)
    lb, gb = b(theta)
    lw, gw = whole(theta)
    np.testing.assert_allclose((wa * la + wb * lb) / (wa + wb), lw, rtol=1e-12)
    np.testing.assert_allclose((wa * ga + wb * gb) / (wa + wb), gw, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("n", [300, 700])
def test_large_products_on_two_threads_match_one(n, dtype):
    # Products large enough for the threaded paths (BLAS and OpenMP loops).
    rng = np.random.RandomState(3)
    layout = Layout([50, 500, 90, 3], ["tanh", "relu", "softmax"])
    theta = (rng.randn(layout.n_params) * 0.1).astype(dtype)
    X = rng.randn(n, 50).astype(dtype)
    Y = np.eye(3)[rng.randint(0, 3, n)].astype(dtype)
    one, two = (Objective(layout, X, Y, None, LOSS_LOG, alpha=0.1, l1=0.0, n_threads=t)
                for t in (1, 2))
    (l1, g1), (l2, g2) = one(theta), two(theta)
    tol = 1e-10 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(l2, l1, rtol=tol)
    np.testing.assert_allclose(g2, g1, rtol=tol, atol=tol * np.abs(g1).max())
    # Same thread count, same bits.
    np.testing.assert_array_equal(two(theta)[1], g2)
    expected = ref_objective(layout, theta.astype(float), X.astype(float), Y.astype(float),
                             "log", None, alpha=0.1)
    np.testing.assert_allclose(l2, expected, rtol=tol)
    if dtype == np.float64:
        v = rng.randn(layout.n_params)
        h = 1e-6
        fd = (one.loss(theta + h * v) - one.loss(theta - h * v)) / (2 * h)
        np.testing.assert_allclose(float(np.dot(g2, v)), fd, rtol=1e-6)



@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("n", [300, 1000, 2051])
def test_rows_parallel_passes_agree_with_one_thread(n, sparse, dtype):
    # Each thread a share of the rows (contiguous chunks), its own workspace
    # and gradient, summed in thread order: the same sums regrouped, and the
    # same bits on every call with the same thread count.
    from fastmlp import _objective
    from fastmlp._threads import blas_threads

    layout, theta, X, Y, sw = make_problem("tanh", "softmax", "onehot", dtype, n=n,
                                           sparse=sparse)
    Xk = Objective(layout, X, Y, sw, LOSS_LOG, 0.0, 0.0, 1).X
    rows = np.random.RandomState(1).permutation(n).astype(np.int64)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    ref_g = np.empty_like(theta)
    ref = _objective.loss_grad(theta, Xk, Y, sw, rows, layout.net, LOSS_LOG, 0.5, ref_g)

    def run(T, g, acc, work):
        return _objective.loss_grad(theta, Xk, Y, sw, rows, layout.net, LOSS_LOG, 0.5, g,
                                    acc, 1024, T, work, True)

    with blas_threads(1):
        for T in (2, 3, 8):
            work = {}
            g = np.full_like(theta, np.nan)  # written, not read
            val = run(T, g, False, work)
            np.testing.assert_allclose(val, ref, rtol=tol)
            np.testing.assert_allclose(g, ref_g, rtol=0, atol=tol * np.abs(ref_g).max())
            acc = np.ones_like(theta)
            run(T, acc, True, work)
            np.testing.assert_allclose(acc - 1, ref_g, rtol=0, atol=2 * tol * np.abs(ref_g).max())
            for _ in range(10):  # the threads' shares never overlap, run after run
                fresh = np.empty_like(theta)
                assert run(T, fresh, False, {}) == val and np.array_equal(fresh, g)
                assert run(T, None, False, work) == val
