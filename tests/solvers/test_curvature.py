"""The compiled curvature-vector products and Fisher diagonal.

H v is checked against central differences of the gradient, G v against
J^T H_out J built explicitly from a finite-difference Jacobian, for every
hidden activation, output/loss pair and dtype.
"""

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import expit, softmax

from fastmlp._network import LOSS_HINGE, LOSS_HINGE_BINARY, LOSS_LOG, LOSS_POISSON, Layout
from fastmlp.solvers import objective as objective_module
from fastmlp.solvers.objective import Objective

from reference import activation as ref_activation
from reference import forward as ref_forward
from solvers.test_objective import HIDDEN, OUTPUTS, make_problem

HINGES = (LOSS_HINGE, LOSS_HINGE_BINARY)


def objective(layout, X, Y, sw, code, alpha=0.3, l1=0.05, **kw):
    return Objective(layout, X, Y, sw, code, alpha=alpha, l1=l1, n_threads=1, **kw)


def unit(rng, n, dtype=np.float64):
    v = rng.randn(n)
    return (v / np.linalg.norm(v)).astype(dtype)


# ----------------------------------------------------------- Hessian
def kinks(layout, theta, X, Y, code):
    """The sign pattern that decides which smooth piece of the objective theta
    lies on: ReLU pre-activations and hinge margins."""
    coefs, intercepts = layout.views(theta.astype(np.float64))
    A = np.asarray(X.todense() if sp.issparse(X) else X, dtype=np.float64)
    signs = []
    for l, (W, b) in enumerate(zip(coefs, intercepts)):
        Z = A @ W + b
        act = layout.activations[l]
        if l < layout.n_layers - 1:
            if act in ("relu", "leaky_relu"):
                signs.append(Z > 0)
            A = ref_activation(act, Z, layout.negative_slope)
    if code == LOSS_HINGE_BINARY:
        signs.append(1 - (2 * Y - 1) * Z > 0)
    elif code == LOSS_HINGE:
        t = Y.argmax(1)
        other = Z.copy()
        other[np.arange(len(Z)), t] = -np.inf
        signs.append(1 + other.max(1) - Z[np.arange(len(Z)), t] > 0)
        signs.append(other.argmax(1))
    return [s.ravel() for s in signs]


def fd_hessian_product(obj, theta, v, eps):
    return (obj(theta + eps * v)[1].astype(np.float64)
            - obj(theta - eps * v)[1].astype(np.float64)) / (2 * eps)


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize("out,code,ref_loss,kind", OUTPUTS)
def test_hessian_product_finite_differences(hidden, out, code, ref_loss, kind, dtype,
                                            sparse):
    """H v against (g(theta + eps v) - g(theta - eps v)) / 2 eps, on a segment
    that crosses no kink (the difference is meaningless across one)."""
    layout, theta, X, Y, sw = make_problem(hidden, out, kind, dtype, sparse=sparse)
    obj = objective(layout, X, Y, sw, code)
    rng = np.random.RandomState(2)
    steps = [1e-5] if dtype == np.float64 else [1e-2, 3e-3, 1e-3]
    rtol = 1e-6 if dtype == np.float64 else 1e-2
    checked = 0
    for _ in range(20):
        v = unit(rng, theta.size, dtype)
        for eps in steps:
            lo = kinks(layout, theta - eps * v, X, Y, code)
            hi = kinks(layout, theta + eps * v, X, Y, code)
            if all(np.array_equal(a, b) for a, b in zip(lo, hi)):
                break
        else:
            continue
        hv = obj.curvature(theta, v, kind="hessian")
        assert hv.dtype == dtype
        fd = fd_hessian_product(obj, theta, v, eps)
        scale = max(np.abs(fd).max(), 1e-3)
        np.testing.assert_allclose(hv, fd, rtol=rtol, atol=rtol * scale)
        checked += 1
        if checked == 3:
            break
    assert checked == 3


@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize("out,code,ref_loss,kind", OUTPUTS)
def test_float32_products_follow_float64(hidden, out, code, ref_loss, kind):
    layout, theta, X, Y, sw = make_problem(hidden, out, kind, np.float32)
    obj32 = objective(layout, X, Y, sw, code)
    obj64 = objective(layout, X.astype(np.float64), Y.astype(np.float64),
                      sw.astype(np.float64), code)
    v = unit(np.random.RandomState(3), theta.size, np.float32)
    for curvature in ("gauss-newton", "hessian"):
        p32 = obj32.curvature(theta, v, kind=curvature)
        p64 = obj64.curvature(theta.astype(np.float64), v.astype(np.float64), kind=curvature)
        assert p32.dtype == np.float32
        np.testing.assert_allclose(p32, p64, rtol=1e-3, atol=1e-4 * max(np.abs(p64).max(), 1))


@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize("out,code,ref_loss,kind", OUTPUTS)
def test_hessian_is_symmetric(hidden, out, code, ref_loss, kind):
    layout, theta, X, Y, sw = make_problem(hidden, out, kind, np.float64)
    obj = objective(layout, X, Y, sw, code)
    rng = np.random.RandomState(4)
    u, v = unit(rng, theta.size), unit(rng, theta.size)
    for curvature in ("gauss-newton", "hessian"):
        a = u @ obj.curvature(theta, v, kind=curvature)
        b = v @ obj.curvature(theta, u, kind=curvature)
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)


# ------------------------------------------------------- Gauss-Newton
def split_output(layout, theta, X, code):
    """The network's output where G splits it: the pre-activation z, or the
    probabilities p for squared error on softmax/logistic outputs."""
    out_act = layout.activations[-1]
    if out_act in ("softmax", "logistic") and code not in (LOSS_LOG,):
        return ref_forward(layout, theta, X)
    return ref_forward(layout, theta, X, pre_output=True)


def loss_hessian(layout, theta, X, Y, code):
    """Per-row Hessian of the loss with respect to split_output (n, k, k)."""
    n, k = Y.shape
    out_act = layout.activations[-1]
    Z = ref_forward(layout, theta, X, pre_output=True)
    if code in HINGES:
        return np.zeros((n, k, k))
    if code == LOSS_LOG and out_act == "softmax":
        P = softmax(Z, axis=1)
        return Y.sum(1)[:, None, None] * (np.einsum("ij,jk->ijk", P, np.eye(k))
                                          - P[:, :, None] * P[:, None, :])
    if code == LOSS_LOG:
        P = expit(Z)
        return np.einsum("ij,jk->ijk", P * (1 - P), np.eye(k))
    if code == LOSS_POISSON:
        return np.einsum("ij,jk->ijk", np.exp(Z), np.eye(k))
    return np.broadcast_to(np.eye(k), (n, k, k))  # squared error


def explicit_gauss_newton(layout, theta, X, Y, sw, code, alpha, eps=1e-6):
    """sum_i w_i J_i^T H_i J_i + alpha / sum(sw) on the weights, J by central
    differences of split_output."""
    n, k = Y.shape
    J = np.empty((n, k, theta.size))
    for j in range(theta.size):
        e = np.zeros_like(theta)
        e[j] = eps
        J[:, :, j] = (split_output(layout, theta + e, X, code)
                      - split_output(layout, theta - e, X, code)) / (2 * eps)
    H = loss_hessian(layout, theta, X, Y, code)
    w = sw / sw.sum()
    G = np.einsum("i,iap,iab,ibq->pq", w, J, H, J)
    G[np.diag_indices_from(G)] += alpha / sw.sum() * layout.weight_mask()
    return G


@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize("out,code,ref_loss,kind", OUTPUTS)
def test_gauss_newton_matches_explicit_product(hidden, out, code, ref_loss, kind, dtype):
    layout, theta, X, Y, sw = make_problem(hidden, out, kind, dtype, n=11)
    obj = objective(layout, X, Y, sw, code)
    G = explicit_gauss_newton(layout, theta.astype(float), X.astype(float), Y.astype(float),
                              sw.astype(float), code, alpha=0.3)
    rng = np.random.RandomState(5)
    rtol = 1e-6 if dtype == np.float64 else 1e-3
    for _ in range(3):
        v = unit(rng, theta.size, dtype)
        gv = obj.curvature(theta, v, kind="gauss-newton")
        expected = G @ v.astype(float)
        np.testing.assert_allclose(gv, expected, rtol=rtol,
                                   atol=rtol * np.abs(expected).max())
    if code in HINGES:
        # G of a piecewise-linear loss is the penalty's curvature alone.
        np.testing.assert_allclose(G, np.diag(0.3 / sw.astype(float).sum()
                                              * layout.weight_mask()), atol=1e-8)


@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize("out,code,ref_loss,kind", OUTPUTS)
def test_gauss_newton_is_positive_semidefinite(hidden, out, code, ref_loss, kind, dtype):
    """Every output/loss pair: the split makes H_out positive semi-definite.
    No penalty, so G's own quadratic form is what is tested."""
    layout, theta, X, Y, sw = make_problem(hidden, out, kind, dtype)
    obj = objective(layout, X, Y, sw, code, alpha=0.0, l1=0.0)
    rng = np.random.RandomState(6)
    for _ in range(20):
        v = rng.randn(theta.size).astype(dtype)
        q = float(v.astype(float) @ obj.curvature(theta, v).astype(float))
        tol = 1e-12 if dtype == np.float64 else 1e-5
        assert q >= -tol * float(v.astype(float) @ v.astype(float))


@pytest.mark.parametrize("out,code,ref_loss,kind", [o for o in OUTPUTS
                                                    if o[1] not in HINGES and
                                                    not (o[0] in ("softmax", "logistic")
                                                         and o[2] == "squared")])
def test_hessian_equals_gauss_newton_for_a_linear_model(out, code, ref_loss, kind):
    """Without hidden layers z is linear in theta: H = G for matching pairs."""
    rng = np.random.RandomState(7)
    layout = Layout([5, 3], [out])
    X = rng.randn(30, 5)
    _, _, _, Y, sw = make_problem("tanh", out, kind, np.float64, n=30)
    theta = rng.randn(layout.n_params) * 0.5
    obj = objective(layout, X, Y, sw, code)
    v = unit(rng, theta.size)
    np.testing.assert_allclose(obj.curvature(theta, v, kind="hessian"),
                               obj.curvature(theta, v, kind="gauss-newton"), rtol=1e-12,
                               atol=1e-15)


# ------------------------------------------------- sums over rows
@pytest.mark.parametrize("curvature", ["gauss-newton", "hessian"])
def test_products_add_up_over_chunks_rows_and_input_kinds(curvature, dtype, monkeypatch):
    layout, theta, X, Y, sw = make_problem("logistic", "softmax", "onehot", dtype, n=101)
    v = unit(np.random.RandomState(8), theta.size, dtype)
    whole = objective(layout, X, Y, sw, LOSS_LOG).curvature(theta, v, kind=curvature)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    atol = tol * np.abs(whole).max()
    Xcsr = sp.csr_matrix(X)
    np.testing.assert_allclose(
        objective(layout, Xcsr, Y, sw, LOSS_LOG).curvature(theta, v, kind=curvature), whole,
        rtol=tol * 10, atol=atol * 10)
    F = np.asfortranarray(X)
    np.testing.assert_allclose(
        objective(layout, F, Y, sw, LOSS_LOG).curvature(theta, v, kind=curvature), whole,
        rtol=tol * 10, atol=atol * 10)
    monkeypatch.setattr(objective_module, "CHUNK_ROWS", 7)
    np.testing.assert_allclose(
        objective(layout, X, Y, sw, LOSS_LOG).curvature(theta, v, kind=curvature), whole,
        rtol=tol * 10, atol=atol * 10)
    # A batch estimate is the batch's weighted mean: the weighted mean of two
    # halves' estimates is the whole (the penalty term appears once in each).
    obj = objective(layout, X, Y, sw, LOSS_LOG, alpha=0.0)
    rows = np.arange(101)
    full = obj.curvature(theta, v, kind=curvature)
    a = obj.curvature(theta, v, rows=rows[:40], kind=curvature)
    b = obj.curvature(theta, v, rows=rows[40:], kind=curvature)
    wa, wb = float(sw[:40].sum()), float(sw[40:].sum())
    np.testing.assert_allclose((wa * a + wb * b) / (wa + wb), full, rtol=tol * 100,
                               atol=atol * 100)


def test_batch_of_an_objective_on_a_row_subset():
    """Batch positions index the objective's own rows, not X's."""
    layout, theta, X, Y, sw = make_problem("tanh", "identity", "real", np.float64, n=40)
    subset = np.arange(10, 30, dtype=np.int64)
    obj = objective(layout, X, Y, sw, 0, rows=subset)
    direct = objective(layout, X[10:20], Y[10:20], sw[10:20], 0)
    v = unit(np.random.RandomState(9), theta.size)
    got = obj.curvature(theta, v, rows=np.arange(10))
    # Same data term; the penalty curvature is scaled by each objective's total weight.
    pen = layout.weight_mask() * v * 0.3
    np.testing.assert_allclose(got - pen / sw[10:30].sum(),
                               direct.curvature(theta, v) - pen / sw[10:20].sum(),
                               rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="kind"):
        obj.curvature(theta, v, kind="newton")


# --------------------------------------------------- Fisher diagonal
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
@pytest.mark.parametrize("out,code,ref_loss,kind", OUTPUTS)
def test_fisher_diagonal_is_the_weighted_mean_of_squared_row_gradients(out, code, ref_loss,
                                                                      kind, dtype, sparse):
    layout, theta, X, Y, sw = make_problem("tanh", out, kind, dtype, sparse=sparse)
    sw[3] = 0  # a zero weight contributes nothing
    obj = objective(layout, X, Y, sw, code, alpha=0.3, l1=0.05)
    loss, grad, diag = obj.loss_grad_fisher(theta)
    ref_loss_value, ref_grad = obj(theta)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(loss, ref_loss_value, rtol=tol)
    np.testing.assert_allclose(grad, ref_grad, rtol=tol, atol=tol * np.abs(ref_grad).max())
    # The empirical Fisher diagonal: row i's squared gradient, weighted by
    # its share of the total weight (the curvature products' scale).
    expected = np.zeros(theta.size)
    ones = np.ones(len(sw), dtype=dtype)
    for i in range(len(sw)):
        row = objective(layout, X, Y, ones, code, alpha=0.0, l1=0.0,
                        rows=np.array([i], dtype=np.int64))
        g = row(theta)[1].astype(np.float64)
        expected += float(sw[i]) / float(sw.astype(float).sum()) * g * g
    expected += 0.3 / float(sw.astype(float).sum()) * layout.weight_mask()
    rtol = 1e-10 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(diag, expected, rtol=rtol, atol=rtol * expected.max())


@pytest.mark.parametrize("rows_parallel,sparse", [(False, False), (True, False), (True, True)])
@pytest.mark.parametrize("curvature", ["gauss-newton", "hessian"])
@pytest.mark.parametrize("hidden", HIDDEN)
def test_threaded_products_match_one_thread(hidden, curvature, rows_parallel, sparse):
    """Big enough for the OpenMP loops to run in parallel, or for two shares
    of the rows (rows_parallel, BLAS at one thread); rows are independent, so
    only the summation order may differ."""
    from fastmlp._threads import blas_threads

    rng = np.random.RandomState(10)
    layout = Layout([20, 64, 64, 8], [hidden, hidden, "softmax"], negative_slope=0.1)
    theta = rng.randn(layout.n_params) * 0.3
    X = rng.randn(1500, 20)
    if sparse:
        X[rng.rand(*X.shape) < 0.7] = 0
        X = sp.csr_matrix(X)
    Y = np.eye(8)[rng.randint(0, 8, 1500)]
    v = unit(rng, theta.size)
    one = Objective(layout, X, Y, None, LOSS_LOG, 0.0, 0.0, n_threads=1)
    two = Objective(layout, X, Y, None, LOSS_LOG, 0.0, 0.0, n_threads=2,
                    rows_parallel=rows_parallel)
    with blas_threads(1 if rows_parallel else 2):
        a, b = one.curvature(theta, v, kind=curvature), two.curvature(theta, v, kind=curvature)
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12 * np.abs(a).max())
        # again from the kept forward pass (each share's rows in their place)
        np.testing.assert_array_equal(two.curvature(theta, v, kind=curvature), b)
        batch = np.arange(100, 1400)
        np.testing.assert_allclose(two.curvature(theta, v, batch, kind=curvature),
                                   one.curvature(theta, v, batch, kind=curvature),
                                   rtol=1e-10, atol=1e-12 * np.abs(a).max())
        fa, fb = one.loss_grad_fisher(theta), two.loss_grad_fisher(theta)
        np.testing.assert_allclose(fb[0], fa[0], rtol=1e-12)
        for x, y in zip(fa[1:], fb[1:]):
            np.testing.assert_allclose(y, x, rtol=1e-10, atol=1e-12 * np.abs(x).max())
        if rows_parallel:  # eight shares, the same bits call after call
            eight = lambda: Objective(layout, X, Y, None, LOSS_LOG, 0.0, 0.0, n_threads=8,
                                      rows_parallel=True)
            c8, f8 = eight().curvature(theta, v, kind=curvature), eight().loss_grad_fisher(theta)
            np.testing.assert_allclose(c8, a, rtol=1e-10, atol=1e-12 * np.abs(a).max())
            for _ in range(5):
                np.testing.assert_array_equal(eight().curvature(theta, v, kind=curvature), c8)
                again = eight().loss_grad_fisher(theta)
                assert again[0] == f8[0]
                for x, y in zip(f8[1:], again[1:]):
                    np.testing.assert_array_equal(y, x)


@pytest.mark.parametrize("curvature", ["gauss-newton", "hessian"])
def test_forward_pass_kept_between_products_at_one_point(curvature, dtype):
    layout, theta, X, Y, sw = make_problem("tanh", "softmax", "onehot", dtype, n=50)
    rng = np.random.RandomState(11)
    obj = objective(layout, X, Y, sw, LOSS_LOG)
    rows = np.arange(5, 45)
    u, v = unit(rng, theta.size, dtype), unit(rng, theta.size, dtype)
    first = obj.curvature(theta, v, rows, kind=curvature)
    obj.curvature(theta, u, rows, kind=curvature)  # from the kept forward pass
    np.testing.assert_array_equal(obj.curvature(theta, v, rows, kind=curvature), first)
    fresh = objective(layout, X, Y, sw, LOSS_LOG)
    theta[3] += 0.1  # in place: a new point, however the array is passed
    np.testing.assert_array_equal(obj.curvature(theta, v, rows, kind=curvature),
                                  fresh.curvature(theta, v, rows, kind=curvature))
    np.testing.assert_array_equal(obj.curvature(theta, v, rows[:-1], kind=curvature),
                                  fresh.curvature(theta, v, rows[:-1], kind=curvature))
