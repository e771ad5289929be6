"""The compiled kernels with pruned (sparse) layers, against the same network
run dense with the removed weights set to zero: predictions, loss,
gradient (and finite differences), training epochs, threads."""

import numpy as np
import pytest
import scipy.sparse as sp

from fastmlp import _forward
from fastmlp._network import HIDDEN_ACTIVATIONS, LOSS_LOG, SP_GEMM, SP_KERNEL, Layout
from fastmlp.solvers.first_order import EpochRunner, Optimizer
from fastmlp.solvers.objective import Objective, kernel_input
from reference import forward as ref_forward

# Both pruned-layer paths: the sparse kernels and gemm on a dense copy.
MODES = {"kernels": 1.0, "gemm": 0.0}


def pruned_pair(units, acts, density, dtype, seed=0, mode="kernels", dense_layers=(),
                slope=0.01):
    """(dense layout, dense theta with removed weights zero, pruned layout,
    its theta, compact(dense vector) -> pruned vector)."""
    rng = np.random.RandomState(seed)
    dense = Layout(units, acts, slope)
    theta_d = (rng.randn(dense.n_params) * 0.5).astype(dtype)
    coefs, intercepts = dense.views(theta_d)
    masks = []
    for l, W in enumerate(coefs):
        keep = rng.rand(*W.shape) < density if l not in dense_layers else np.ones(W.shape, bool)
        W[~keep] = 0
        masks.append(keep)
    pruned_coefs = [W.copy() if l in dense_layers else
                    sp.csc_matrix((W[m], np.nonzero(m)), shape=W.shape)
                    for l, (W, m) in enumerate(zip(coefs, masks))]
    layout = Layout.from_coefs(pruned_coefs, acts, slope, max_sparse_density=MODES[mode])
    theta = layout.pack(pruned_coefs, intercepts, dtype)

    def compact(vec):
        c, b = dense.views(vec)
        parts = []
        for l, W in enumerate(layout.views(theta)[0]):
            if sp.issparse(W):
                cols = np.repeat(np.arange(W.shape[1]), np.diff(W.indptr))
                parts.append(c[l][W.indices, cols])
            else:
                parts.append(c[l].ravel())
            parts.append(b[l])
        return np.concatenate(parts)

    np.testing.assert_array_equal(compact(theta_d), theta)
    return dense, theta_d, layout, theta, compact


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("hidden", HIDDEN_ACTIVATIONS)
@pytest.mark.parametrize("out", ["identity", "softmax", "logistic", "exp"])
def test_predict_matches_dense_with_zeros(hidden, out, mode, dtype):
    dense, theta_d, layout, theta, _ = pruned_pair(
        [23, 37, 19, 4], [hidden, hidden, out], 0.3, dtype, mode=mode, slope=0.2)
    rng = np.random.RandomState(1)
    X = rng.randn(71, 23).astype(dtype)
    expected = ref_forward(dense, theta_d.astype(float), X.astype(float))
    tol = 1e-12 if dtype == np.float64 else 2e-5
    # Batch sizes: in-place rows (< 4), a single partial tile, tile pairs
    # with an odd tile out, several chunks.
    for chunk in (1, 3, 5, 16, 40, 71):
        out_arr = np.empty((71, 4), dtype=dtype)
        _forward.predict(theta, X, layout.net, out_arr, np.arange(71, dtype=np.int64), chunk, 1)
        np.testing.assert_allclose(out_arr, expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", ["F", "strided", "csr", "rows"])
def test_predict_input_kinds(kind, mode):
    dense, theta_d, layout, theta, _ = pruned_pair([30, 50, 3], ["relu", "softmax"], 0.2,
                                                   np.float64, mode=mode)
    rng = np.random.RandomState(2)
    X = rng.randn(90, 30)
    X[rng.rand(90, 30) < 0.5] = 0
    rows = np.arange(90, dtype=np.int64)
    Xk = X
    if kind == "F":
        Xk = np.asfortranarray(X)
    elif kind == "strided":
        Xk = np.repeat(X, 2, axis=1)[:, ::2]
    elif kind == "csr":
        Xk = kernel_input(sp.csr_matrix(X))
    else:
        rows = rng.permutation(90)[:41].astype(np.int64)
    for chunk in (2, 33, 90):
        out = np.empty((len(rows), 3))
        _forward.predict(theta, Xk, layout.net, out, rows, chunk, 1)
        np.testing.assert_allclose(out, ref_forward(dense, theta_d, X)[rows], rtol=1e-12,
                                   atol=1e-13)


OUTPUTS = [("softmax", 1, "onehot"), ("logistic", 1, "binary"), ("identity", 0, "real"),
           ("identity", 2, "onehot"), ("exp", 4, "counts")]


def targets(kind, n, k, rng, dtype):
    if kind == "onehot":
        Y = np.eye(k)[rng.randint(0, k, n)]
    elif kind == "binary":
        Y = (rng.rand(n, k) < 0.5).astype(float)
    elif kind == "counts":
        Y = rng.poisson(2.0, (n, k)).astype(float)
    else:
        Y = rng.randn(n, k)
    return Y.astype(dtype)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("sparse_x", [False, True], ids=["dense-X", "csr-X"])
@pytest.mark.parametrize("hidden", HIDDEN_ACTIVATIONS)
@pytest.mark.parametrize("out,code,kind", OUTPUTS)
def test_gradient_is_the_dense_gradient_at_survivors(hidden, out, code, kind, sparse_x, mode,
                                                     dtype):
    """The dense gradient is checked against finite differences
    (tests/solvers/test_objective.py); a pruned network's gradient is that
    gradient at the surviving weights."""
    dense, theta_d, layout, theta, compact = pruned_pair(
        [9, 21, 13, 3], [hidden, hidden, out], 0.35, dtype, mode=mode, slope=0.1)
    rng = np.random.RandomState(3)
    n = 45
    X = rng.randn(n, 9)
    X[rng.rand(n, 9) < 0.4] = 0
    X = X.astype(dtype)
    Y = targets(kind, n, 3, rng, dtype)
    sw = rng.uniform(0.5, 2, n).astype(dtype)
    Xk = sp.csr_matrix(X) if sparse_x else X
    for rows in (np.arange(n, dtype=np.int64), np.arange(2, dtype=np.int64)):
        ld, gd = Objective(dense, Xk, Y, sw, code, 0.3, 0.05, 1, rows=rows)(theta_d)
        ls, gs = Objective(layout, Xk, Y, sw, code, 0.3, 0.05, 1, rows=rows)(theta)
        tol = 1e-10 if dtype == np.float64 else 2e-4
        np.testing.assert_allclose(ls, ld, rtol=tol)
        np.testing.assert_allclose(gs, compact(gd), rtol=tol, atol=tol * np.abs(gd).max())


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("hidden", HIDDEN_ACTIVATIONS)
def test_gradient_finite_differences(hidden, mode):
    """Central differences of the pruned objective, every coordinate."""
    _, _, layout, theta, _ = pruned_pair([7, 12, 9, 3], [hidden, hidden, "softmax"], 0.4,
                                         np.float64, mode=mode, slope=0.1)
    rng = np.random.RandomState(4)
    X = rng.randn(37, 7)
    Y = targets("onehot", 37, 3, rng, np.float64)
    obj = Objective(layout, X, Y, None, LOSS_LOG, 0.2, 0.0, 1)
    _, grad = obj(theta)
    eps = 1e-6
    fd = np.empty(theta.size)
    for i in range(theta.size):
        e = np.zeros_like(theta)
        e[i] = eps
        fd[i] = (obj.loss(theta + e) - obj.loss(theta - e)) / (2 * eps)
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-7)


def test_chunked_objective_adds_up():
    import fastmlp.solvers.objective as mod

    _, _, layout, theta, _ = pruned_pair([20, 40, 4], ["tanh", "softmax"], 0.2, np.float64)
    rng = np.random.RandomState(5)
    X = rng.randn(101, 20)
    Y = targets("onehot", 101, 4, rng, np.float64)
    obj = Objective(layout, X, Y, None, LOSS_LOG, 0.1, 0.0, 1)
    full = obj(theta)
    old = mod.CHUNK_ROWS
    try:
        mod.CHUNK_ROWS = 19
        chunked = obj(theta)
    finally:
        mod.CHUNK_ROWS = old
    np.testing.assert_allclose(chunked[0], full[0], rtol=1e-12)
    np.testing.assert_allclose(chunked[1], full[1], rtol=1e-10, atol=1e-14)


def numpy_adam_epoch(layout, theta, X, Y, rows, batch, lr, alpha):
    """Adam over the pruned network's own parameters, batch by batch, on the
    compiled (finite-difference-checked) gradient."""
    theta = theta.copy()
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    for t, start in enumerate(range(0, len(rows), batch), 1):
        r = rows[start:start + batch]
        _, g = Objective(layout, X, Y, None, LOSS_LOG, alpha, 0.0, 1, rows=r)(theta)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        theta -= lr * np.sqrt(1 - 0.999**t) / (1 - 0.9**t) * m / (np.sqrt(v) + 1e-8)
    return theta


@pytest.mark.parametrize("mode", MODES)
def test_epoch_updates_survivors_like_the_reference(mode):
    _, _, layout, theta, _ = pruned_pair([15, 33, 18, 3], ["relu", "tanh", "softmax"], 0.3,
                                         np.float64, mode=mode)
    rng = np.random.RandomState(6)
    X = rng.randn(70, 15)
    Y = targets("onehot", 70, 3, rng, np.float64)
    rows = np.arange(70, dtype=np.int64)[::-1].copy()
    expected = numpy_adam_epoch(layout, theta, X, Y, rows, 20, 0.01, 0.1)
    runner = EpochRunner(layout, np.float64, 20)
    opt = Optimizer("adam", layout.n_params, np.float64, learning_rate_init=0.01)
    assert opt.state.shape == (2, layout.n_params)  # one entry per survivor
    got = theta.copy()
    for _ in range(1):
        _, finite = runner.run(got, X, Y, None, rows.copy(), np.array([0], np.uint64), False,
                               opt, LOSS_LOG, 0.1, 0.0, 1)
    assert finite
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


def test_epochs_are_identical_across_threads_and_reruns():
    _, _, layout, theta, _ = pruned_pair([200, 300, 100, 10], ["relu", "relu", "softmax"],
                                         0.1, np.float64)
    rng = np.random.RandomState(7)
    X = rng.randn(600, 200)
    Y = targets("onehot", 600, 10, rng, np.float64)
    results = []
    for n_threads in (1, 2, 2):
        th = theta.copy()
        runner = EpochRunner(layout, np.float64, 128)
        opt = Optimizer("adam", layout.n_params, np.float64, learning_rate_init=1e-3)
        for _ in range(2):
            runner.run(th, X, Y, None, np.arange(600, dtype=np.int64), np.array([3], np.uint64),
                       True, opt, LOSS_LOG, 1e-3, 0.0, n_threads)
        results.append(th)
    # No gemm and no reduction split by thread: bit-identical.
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[1], results[2])


def test_layer_with_no_weights_left():
    dense, theta_d, layout, theta, _ = pruned_pair([6, 8, 3], ["relu", "softmax"], 0.0,
                                                   np.float64)
    assert layout.w_size[0] == 0 and layout.w_size[1] == 0
    X = np.random.RandomState(8).randn(40, 6)
    out = np.empty((40, 3))
    _forward.predict(theta, X, layout.net, out, np.arange(40, dtype=np.int64), 16, 1)
    np.testing.assert_allclose(out, ref_forward(dense, theta_d, X), rtol=1e-12)
    Y = targets("onehot", 40, 3, np.random.RandomState(9), np.float64)
    _, g = Objective(layout, X, Y, None, LOSS_LOG, 0.0, 0.0, 1)(theta)
    assert g.shape == theta.shape and np.isfinite(g).all()


def test_modes_are_what_the_tests_claim():
    _, _, kernels, _, _ = pruned_pair([6, 8, 3], ["relu", "softmax"], 0.5, np.float64)
    _, _, gemm, _, _ = pruned_pair([6, 8, 3], ["relu", "softmax"], 0.5, np.float64, mode="gemm")
    assert list(kernels.sp_mode) == [SP_KERNEL, SP_KERNEL]
    assert list(gemm.sp_mode) == [SP_GEMM, SP_GEMM]


BASELINE_SCRIPT = """
import sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from test_sparse_layers import pruned_pair, targets
from fastmlp import _forward
from fastmlp.solvers.objective import Objective
assert _forward.sparse_kernel_variant() == "baseline"
out = {}
for dtype in (np.float64, np.float32):
    _, _, layout, theta, _ = pruned_pair([40, 70, 30, 5], ["relu", "tanh", "softmax"], 0.2, dtype)
    rng = np.random.RandomState(0)
    X = rng.randn(77, 40).astype(dtype)
    Y = targets("onehot", 77, 5, rng, dtype)
    pred = np.empty((77, 5), dtype=dtype)
    _forward.predict(theta, X, layout.net, pred, np.arange(77, dtype=np.int64), 1024, 1)
    loss, grad = Objective(layout, X, Y, None, 1, 0.0, 0.0, 1)(theta)
    out[dtype.__name__] = (pred, grad)
np.savez(sys.argv[2], **{k + "_" + n: v for k, (p, g) in out.items() for n, v in (("p", p), ("g", g))})
"""


def test_baseline_vector_variant_agrees(tmp_path):
    """FASTMLP_NO_AVX2=1 selects the kernels built for the baseline ISA."""
    import os
    import subprocess
    import sys

    import fastmlp

    tests_dir = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastmlp.__file__)))
    env = dict(os.environ, FASTMLP_NO_AVX2="1",
               PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    path = tmp_path / "baseline.npz"
    subprocess.run([sys.executable, "-c", BASELINE_SCRIPT, tests_dir, str(path)], env=env,
                   check=True, cwd=tmp_path)
    base = np.load(path)
    for dtype in (np.float64, np.float32):
        _, _, layout, theta, _ = pruned_pair([40, 70, 30, 5], ["relu", "tanh", "softmax"], 0.2,
                                             dtype)
        rng = np.random.RandomState(0)
        X = rng.randn(77, 40).astype(dtype)
        Y = targets("onehot", 77, 5, rng, dtype)
        pred = np.empty((77, 5), dtype=dtype)
        _forward.predict(theta, X, layout.net, pred, np.arange(77, dtype=np.int64), 1024, 1)
        _, grad = Objective(layout, X, Y, None, LOSS_LOG, 0.0, 0.0, 1)(theta)
        tol = 1e-12 if dtype == np.float64 else 1e-5
        name = np.dtype(dtype).name
        np.testing.assert_allclose(base[name + "_p"], pred, rtol=tol, atol=tol)
        np.testing.assert_allclose(base[name + "_g"], grad, rtol=tol * 10,
                                   atol=tol * np.abs(grad).max())
