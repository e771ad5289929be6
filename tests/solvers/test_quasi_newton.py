"""L-BFGS and BFGS drivers: against scipy, their updates against the
textbook formulas, stopping rules, warm starts, any-callable objectives."""

import math

import numpy as np
import pytest
import scipy.optimize
from scipy.optimize import rosen, rosen_der
from sklearn.datasets import make_classification

from fastmlp._network import LOSS_LOG, Layout
from fastmlp.solvers.objective import Objective
from fastmlp.solvers.quasi_newton import (BFGS_MAX_PARAMS, DenseInverseHessian, LBFGSMemory,
                                          bfgs, check_bfgs_size, lbfgs)

SOLVERS = {"lbfgs": lbfgs, "bfgs": bfgs}


def rosenbrock(x):
    return rosen(x), rosen_der(x)


def small_net(hidden=(5,), alpha=1.0, seed=0):
    X, y = make_classification(80, 4, n_informative=3, n_redundant=0, n_classes=3,
                               random_state=0)
    layout = Layout([4, *hidden, 3], ["tanh"] * len(hidden) + ["softmax"])
    theta0 = np.random.RandomState(seed).randn(layout.n_params) * 0.5
    return Objective(layout, X, np.eye(3)[y], None, LOSS_LOG, alpha, 0.0, 1), theta0


# ------------------------------------------------------------ updates
def test_two_loop_recursion_is_the_bfgs_recursion():
    """-H g from the pairs equals the explicit BFGS inverse update of H_0."""
    rng = np.random.RandomState(0)
    n, m = 6, 4
    A = rng.randn(n, n)
    A = A @ A.T + n * np.eye(n)  # pairs of a convex quadratic: s.y > 0
    memory = LBFGSMemory(m)
    pairs = [(s, A @ s) for s in rng.randn(m + 2, n)]
    for s, y in pairs:
        assert memory.update(s, y)
    kept = pairs[-m:]
    s, y = kept[-1]
    H = (s @ y) / (y @ y) * np.eye(n)
    for s, y in kept:
        rho = 1 / (s @ y)
        V = np.eye(n) - rho * np.outer(y, s)
        H = V.T @ H @ V + rho * np.outer(s, s)
    g = rng.randn(n)
    g_before = g.copy()
    np.testing.assert_allclose(memory.direction(g), -H @ g, rtol=1e-12)
    np.testing.assert_array_equal(g, g_before)  # the in-place recursion works on a copy


def test_memory_keeps_m_pairs_by_default_lbfgs_memory(monkeypatch):
    from fastmlp.solvers import quasi_newton

    assert LBFGSMemory().m == quasi_newton.LBFGS_MEMORY == 30
    monkeypatch.setattr(quasi_newton, "LBFGS_MEMORY", 10)
    assert LBFGSMemory().m == 10 and LBFGSMemory(3).m == 3
    memory = LBFGSMemory(3)
    for s in np.eye(5):
        memory.update(s, 2 * s)
    assert len(memory) == 3
    np.testing.assert_array_equal(memory.s[0], np.eye(5)[2])  # the oldest are dropped
    with pytest.raises(ValueError, match="at least one pair"):
        LBFGSMemory(0)


@pytest.mark.parametrize("initial", ["identity", "scaled"])
def test_dense_update_is_the_bfgs_formula(initial):
    rng = np.random.RandomState(1)
    n = 7
    A = rng.randn(n, n)
    A = A @ A.T + n * np.eye(n)
    approx = DenseInverseHessian(n, initial)
    g = rng.randn(n)
    np.testing.assert_array_equal(approx.direction(g), -g)
    H = None
    for s in rng.randn(5, n):
        y = A @ s
        approx.update(s, y)
        if H is None:  # H_0: scipy's I, or Nocedal & Wright's eq. 6.20
            H = np.eye(n) if initial == "identity" else (s @ y) / (y @ y) * np.eye(n)
        rho = 1 / (s @ y)
        V = np.eye(n) - rho * np.outer(y, s)
        H = V.T @ H @ V + rho * np.outer(s, s)
    np.testing.assert_allclose(approx.direction(g), -H @ g, rtol=1e-10)


def test_bfgs_options_are_checked():
    with pytest.raises(ValueError, match="'scaled' or 'identity'"):
        DenseInverseHessian(3, "eye")
    kw = dict(max_iter=1, max_fun=10, tol=0)
    with pytest.raises(ValueError, match="line_search must be one of"):
        bfgs(rosenbrock, np.zeros(3), line_search="armijo", **kw)
    with pytest.raises(ValueError, match="differs from the inverse_hessian"):
        bfgs(rosenbrock, np.zeros(3), inverse_hessian=DenseInverseHessian(3, "scaled"),
             initial="identity", **kw)


def test_pairs_without_positive_curvature_are_skipped():
    memory = LBFGSMemory()
    assert not memory.update(np.array([1.0, 0.0]), np.array([-1.0, 0.0]))
    assert len(memory) == 0


# ----------------------------------------------------------- against scipy
def test_lbfgs_reaches_scipy_minimum_on_rosenbrock():
    x0 = np.full(10, -1.2)
    theta, f, nit, res = lbfgs(rosenbrock, x0, max_iter=500, max_fun=15000, tol=1e-8)
    ref = scipy.optimize.minimize(rosenbrock, x0, jac=True, method="L-BFGS-B",
                                  options={"maxiter": 500, "gtol": 1e-8})
    assert res.status == 0 and res.success
    np.testing.assert_allclose(theta, ref.x, atol=1e-4)
    assert f < 1e-8 and ref.fun < 1e-8
    np.testing.assert_allclose(x0, -1.2)  # the start is not modified


def scipy_bfgs_path(obj, theta0, gtol):
    ref = scipy.optimize.minimize(obj, theta0, jac=True, method="BFGS",
                                  options={"gtol": gtol, "maxiter": 1000, "return_all": True})
    return ref, np.array(ref.allvecs[1:])


def test_bfgs_matches_scipy_bfgs_on_a_convex_net():
    """No hidden layer: a convex objective with one minimum, which both reach
    by the same steps, also with fastmlp's other conventions (H_0 scaled by
    s.y / y.y, lbfgs's line search), which take other steps to it."""
    obj, theta0 = small_net(hidden=(), alpha=0.1)
    ref, path = scipy_bfgs_path(obj, theta0, 1e-8)
    for kw in [{}, dict(initial="scaled", line_search="wolfe2")]:
        iterates = []
        theta, f, nit, res = bfgs(obj, theta0, max_iter=1000, max_fun=15000, tol=1e-8, ftol=0,
                                  callback=lambda t, loss, info: iterates.append(t), **kw)
        assert res.status == 0 and ref.success
        np.testing.assert_allclose(f, ref.fun, rtol=1e-12)
        np.testing.assert_allclose(theta, ref.x, atol=1e-6)
        if not kw:
            assert nit == ref.nit and res.nfev == ref.nfev
            np.testing.assert_allclose(iterates, path, rtol=0, atol=1e-10)


@pytest.mark.parametrize("seed", range(5))
def test_bfgs_follows_scipy_bfgs_on_a_small_net(seed):
    """A hidden layer makes several minima (4-5-3 tanh); from every start
    fastmlp's bfgs takes scipy's BFGS's steps to the same one: the same
    number of iterations and evaluations, each iterate equal to rounding
    (they differ in how the update is computed: BLAS rank-2 updates here,
    n x n products in scipy)."""
    obj, theta0 = small_net(hidden=(5,), alpha=1.0, seed=seed)
    ref, path = scipy_bfgs_path(obj, theta0, 1e-6)
    iterates = []
    theta, f, nit, res = bfgs(obj, theta0, max_iter=1000, max_fun=15000, tol=1e-6, ftol=0,
                              callback=lambda t, loss, info: iterates.append(t))
    assert res.status == 0 and np.abs(res.jac).max() <= 1e-6 and ref.success
    assert nit == ref.nit and res.nfev == ref.nfev
    # Rounding grows near the minimum, where the steps are tiny and the
    # curvature pairs ill-conditioned; the first 100 iterates agree closely.
    np.testing.assert_allclose(iterates[:100], path[:100], rtol=0, atol=1e-8)
    np.testing.assert_allclose(theta, ref.x, rtol=0, atol=1e-8)
    np.testing.assert_allclose(f, ref.fun, rtol=1e-13)


# ------------------------------------------------------------- interface
@pytest.mark.parametrize("name", SOLVERS)
def test_any_callable_and_dtype(name):
    """A plain function returning float32 lists-of-arrays works; results
    have theta0's dtype, the objective sees theta0's dtype."""
    seen = set()

    def quadratic(theta):
        seen.add(theta.dtype)
        return float(np.sum((theta - 3.0) ** 2)), (2 * (theta - 3.0)).astype(np.float32)

    theta, f, nit, res = SOLVERS[name](quadratic, np.zeros(5, np.float32), max_iter=50,
                                       max_fun=100, tol=1e-5)
    assert theta.dtype == np.float32 and seen == {np.dtype(np.float32)}
    np.testing.assert_allclose(theta, 3.0, atol=1e-4)
    assert res.status == 0


@pytest.mark.parametrize("name", SOLVERS)
def test_max_iter_and_max_fun(name):
    x0 = np.full(6, -1.2)
    _, _, nit, res = SOLVERS[name](rosenbrock, x0, max_iter=7, max_fun=15000, tol=0)
    assert nit == 7 and res.status == 1 and "ITERATIONS" in res.message
    calls = []

    def counted(x):
        calls.append(1)
        return rosenbrock(x)

    _, _, nit, res = SOLVERS[name](counted, x0, max_iter=500, max_fun=20, tol=0)
    assert res.status == 1 and "EVALUATIONS" in res.message
    assert res.nfev == len(calls) > 20 and nit <= 20


@pytest.mark.parametrize("name", SOLVERS)
def test_callbacks_see_every_iteration_and_can_stop(name):
    losses, infos = [], []

    def on_iteration(loss):
        losses.append(loss)

    def callback(theta, loss, info):
        infos.append((theta.copy(), loss))
        return len(infos) == 5

    theta, f, nit, res = SOLVERS[name](rosenbrock, np.full(4, -1.2), max_iter=100,
                                       max_fun=1000, tol=0, on_iteration=on_iteration,
                                       callback=callback)
    assert nit == 5 and len(losses) == 5 and res.status == 0
    assert losses == [loss for _, loss in infos] and f == losses[-1]
    np.testing.assert_array_equal(theta, infos[-1][0])
    assert all(a > b for a, b in zip(losses, losses[1:]))


@pytest.mark.parametrize("name", SOLVERS)
def test_non_finite_values(name):
    """A non-finite start is reported; non-finite trial points are steps too
    long, never accepted."""
    _, f, nit, res = SOLVERS[name](lambda x: (math.nan, x), np.ones(3), max_iter=5,
                                   max_fun=100, tol=0)
    assert res.status == 3 and nit == 0

    def wall(x):  # finite only inside |x| < 2
        if np.abs(x).max() >= 2:
            return math.inf, np.full_like(x, math.nan)
        return float(-np.sum(x)), -np.ones_like(x)

    theta, f, nit, res = SOLVERS[name](wall, np.zeros(3), max_iter=50, max_fun=200, tol=0)
    assert np.isfinite(f) and np.abs(theta).max() < 2 and nit > 0


@pytest.mark.parametrize("name", SOLVERS)
def test_keyboard_interrupt_returns_the_last_iterate(name):
    iterates = []

    def objective(x):
        if len(iterates) == 4:
            raise KeyboardInterrupt
        return rosenbrock(x)

    theta, f, nit, res = SOLVERS[name](objective, np.full(4, -1.2), max_iter=100,
                                       max_fun=1000, tol=0,
                                       callback=lambda t, loss, info: iterates.append(t))
    assert res is None and nit == 4
    np.testing.assert_array_equal(theta, iterates[-1])
    assert f == rosenbrock(theta)[0]


# ------------------------------------------------------------ warm starts
@pytest.mark.parametrize("name,state", [("lbfgs", LBFGSMemory), ("bfgs", DenseInverseHessian)])
def test_continuing_with_the_state_is_one_run(name, state):
    """fit(k) + fit(k) with the curvature kept is fit(2k), bit for bit."""
    obj, theta0 = small_net(hidden=(5,), alpha=0.1)
    kw = dict(max_fun=15000, tol=0, ftol=0)
    key = "memory" if name == "lbfgs" else "inverse_hessian"
    one = SOLVERS[name](obj, theta0, max_iter=30, **kw)
    s = state() if name == "lbfgs" else state(theta0.size)
    first = SOLVERS[name](obj, theta0, max_iter=15, **{key: s}, **kw)
    second = SOLVERS[name](obj, first[0], max_iter=15, **{key: s}, **kw)
    np.testing.assert_array_equal(second[0], one[0])
    assert second[1] == one[1]
    # Without the state the second half restarts from -g: a different path.
    cold = SOLVERS[name](obj, first[0], max_iter=15, **kw)
    assert cold[1] != one[1]


def test_bfgs_refuses_large_networks():
    check_bfgs_size(BFGS_MAX_PARAMS)
    with pytest.raises(ValueError, match=r"'lbfgs'.*'hf'"):
        check_bfgs_size(BFGS_MAX_PARAMS + 1)
    with pytest.raises(ValueError, match="10,001 parameters"):
        bfgs(rosenbrock, np.zeros(BFGS_MAX_PARAMS + 1), max_iter=1, max_fun=1, tol=0)
