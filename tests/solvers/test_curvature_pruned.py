"""Curvature products, Fisher diagonal and second-order fits of pruned
networks: the stored weights of a pruned layer are the parameters (the mask
stays fixed), so every product must equal the dense network's with the
removed weights zero, restricted to the stored positions."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning

from fastmlp import MLPClassifier
from fastmlp._network import LOSS_LOG, LOSS_SQUARED, SP_GEMM
from fastmlp.pruning import prune_magnitude, retrain
from fastmlp.solvers import objective as objective_module
from fastmlp.solvers.objective import Objective, curvature_net
from test_sparse_layers import pruned_pair

PAIRS = [("softmax", LOSS_LOG, "onehot"), ("logistic", LOSS_LOG, "binary"),
         ("identity", LOSS_SQUARED, "real"), ("softmax", LOSS_SQUARED, "onehot")]


def targets(kind, rng, n, k):
    if kind == "onehot":
        return np.eye(k)[rng.randint(0, k, n)]
    if kind == "binary":
        return (rng.rand(n, k) < 0.5).astype(float)
    return rng.randn(n, k)


def embed(compact, n_dense, v):
    """The dense-layout vector with v at the stored positions, zero elsewhere."""
    where = compact(np.arange(n_dense, dtype=np.float64)).astype(np.int64)
    out = np.zeros(n_dense, dtype=v.dtype)
    out[where] = v
    return out


@pytest.mark.parametrize("chunk", [3, 16, 2048])
@pytest.mark.parametrize("mode", ["kernels", "gemm"])
@pytest.mark.parametrize("input_kind", ["dense", "csr"])
@pytest.mark.parametrize("out,code,kind", PAIRS)
def test_pruned_products_are_the_dense_ones_at_stored_weights(out, code, kind, input_kind,
                                                              mode, chunk, dtype, monkeypatch):
    """Per-layer activations, sample weights, L2 and L1; batches below the
    sparse kernels' packing threshold, partial tiles and whole chunks; the
    first layer dense (dense_layers) or pruned."""
    monkeypatch.setattr(objective_module, "CHUNK_ROWS", chunk)
    rng = np.random.RandomState(0)
    acts = ["tanh", "logistic", "relu", out]
    for dense_layers in [(), (0,)]:
        dense, theta_d, layout, theta, compact = pruned_pair(
            [9, 23, 17, 11, 4], acts, 0.35, dtype, seed=1, mode=mode,
            dense_layers=dense_layers)
        n = 41
        X = rng.randn(n, 9)
        X[rng.rand(n, 9) < 0.5] = 0
        X = X.astype(dtype)
        if input_kind == "csr":
            X = sp.csr_matrix(X)
        Y = targets(kind, rng, n, 4).astype(dtype)
        sw = rng.uniform(0.5, 2.0, n).astype(dtype)
        obj_d = Objective(dense, X, Y, sw, code, 0.3, 0.05, n_threads=1)
        obj_p = Objective(layout, X, Y, sw, code, 0.3, 0.05, n_threads=1)
        tol = 1e-10 if dtype == np.float64 else 2e-4
        for curvature in ("gauss-newton", "hessian"):
            v = rng.randn(theta.size).astype(dtype)
            got = obj_p.curvature(theta, v, kind=curvature)
            want = compact(obj_d.curvature(theta_d, embed(compact, dense.n_params, v),
                                           kind=curvature))
            np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())
            rows = np.arange(2, 30, 3)  # a curvature batch
            got = obj_p.curvature(theta, v, rows, kind=curvature)
            want = compact(obj_d.curvature(theta_d, embed(compact, dense.n_params, v), rows,
                                           kind=curvature))
            np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())
        loss_p, grad_p, diag_p = obj_p.loss_grad_fisher(theta)
        loss_d, grad_d, diag_d = obj_d.loss_grad_fisher(theta_d)
        np.testing.assert_allclose(loss_p, loss_d, rtol=tol)
        np.testing.assert_allclose(grad_p, compact(grad_d), rtol=tol,
                                   atol=tol * np.abs(grad_d).max())
        np.testing.assert_allclose(diag_p, compact(diag_d), rtol=tol,
                                   atol=tol * np.abs(diag_d).max())


def test_gemm_layers_run_on_the_sparse_kernels():
    _, _, layout, _, _ = pruned_pair([6, 8, 3], ["tanh", "softmax"], 0.5, np.float64,
                                     mode="gemm")
    assert (layout.sp_mode == SP_GEMM).any()
    net = curvature_net(layout)
    assert not (net[5] == SP_GEMM).any()
    np.testing.assert_array_equal(net[1], layout.w_off)
    np.testing.assert_array_equal(net[4], layout.b_off)


def test_products_threads_do_not_change_pruned_results():
    dense, theta_d, layout, theta, compact = pruned_pair(
        [30, 200, 150, 10], ["tanh", "logistic", "softmax"], 0.2, np.float64, seed=3)
    rng = np.random.RandomState(4)
    X = rng.randn(700, 30)
    Y = np.eye(10)[rng.randint(0, 10, 700)]
    v = rng.randn(theta.size)
    one = Objective(layout, X, Y, None, LOSS_LOG, 0.0, 0.0, n_threads=1)
    two = Objective(layout, X, Y, None, LOSS_LOG, 0.0, 0.0, n_threads=2)
    for curvature in ("gauss-newton", "hessian"):
        a = one.curvature(theta, v, kind=curvature)
        b = two.curvature(theta, v, kind=curvature)
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12 * np.abs(a).max())


@pytest.mark.parametrize("solver", ["lbfgs", "bfgs", "hf"])
def test_retraining_a_pruned_model_keeps_the_mask(solver):
    X, y = load_digits(return_X_y=True)
    X = X[:600] / 16.0
    y = y[:600]
    clf = MLPClassifier(hidden_layer_sizes=(24,), solver="lbfgs", max_iter=60, random_state=0,
                        activation=("tanh",))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    prune_magnitude(clf, 0.7)
    patterns = [(W.indptr.copy(), W.indices.copy()) for W in clf.coefs_]
    before = clf._layout.n_params
    clf.set_params(solver=solver, curvature_batch_size=300)
    loss_before = Objective(clf._layout, X, np.eye(10)[y], None, LOSS_LOG, clf.alpha, 0.0,
                            1).loss(clf._theta)
    retrain(clf, X, y, epochs=10)
    assert clf._layout.n_params == before
    for W, (indptr, indices) in zip(clf.coefs_, patterns):
        assert sp.issparse(W)
        np.testing.assert_array_equal(W.indptr, indptr)
        np.testing.assert_array_equal(W.indices, indices)
    assert clf.loss_ < loss_before
