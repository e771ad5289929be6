"""The Hessian-free driver: its CG, its damping, and its objective protocol
(exercised with a plain-numpy objective, as a distributed one would be)."""

import math

import numpy as np
import pytest
from sklearn.datasets import make_classification

from fastmlp._network import LOSS_LOG, Layout
from fastmlp.solvers.hessian_free import (HFState, _save_points, conjugate_gradient,
                                          hessian_free)
from fastmlp.solvers.objective import Objective


class LeastSquares:
    """f = sum_i w_i (a_i.theta - b_i)^2 / 2 through the HF protocol only."""

    def __init__(self, n=200, d=12, seed=0):
        rng = np.random.RandomState(seed)
        self.A = rng.randn(n, d) * np.linspace(0.1, 10, d)  # ill-conditioned
        self.b = rng.randn(n)
        self.w = rng.uniform(0.5, 2, n)
        self.w /= self.w.sum()
        self.n_samples = n
        self.batches = []

    def loss(self, theta):
        r = self.A @ theta - self.b
        return 0.5 * float(self.w @ r**2)

    def loss_grad_fisher(self, theta):
        r = self.A @ theta - self.b
        rows = self.A * r[:, None]
        return self.loss(theta), self.w @ rows, self.w @ rows**2

    def curvature(self, theta, v, rows, kind):
        self.batches.append(rows)
        A, w = self.A[rows], self.w[rows]
        return A.T @ (w * (A @ v)) / w.sum()

    def minimum(self):
        sw = np.sqrt(self.w)
        return np.linalg.lstsq(self.A * sw[:, None], self.b * sw, rcond=None)[0]


# ------------------------------------------------------------------- CG
def spd(n, seed=0, cond=1e3):
    rng = np.random.RandomState(seed)
    Q = np.linalg.qr(rng.randn(n, n))[0]
    return Q @ np.diag(np.logspace(0, np.log10(cond), n)) @ Q.T, rng.randn(n)


def q(A, g, x):
    return g @ x + 0.5 * x @ A @ x


def test_cg_minimises_the_quadratic_and_keeps_geometric_iterates():
    A, g = spd(40)
    saved, x, n_iter = conjugate_gradient(lambda v: A @ v, g, np.zeros(40), np.ones(40), 500,
                                          _save_points(500))
    best = q(A, g, np.linalg.solve(A, -g))
    assert q(A, g, x) <= best + 1e-3 * abs(best)
    # Martens' relative-progress test stopped it before the cap.
    assert n_iter < 500
    steps = [i for i, _ in saved]
    assert steps[:-1] == sorted(p for p in _save_points(500) if p <= n_iter)[:len(steps) - 1]
    assert steps[-1] == n_iter
    values = [q(A, g, xi) for _, xi in saved]
    assert all(a > b for a, b in zip(values, values[1:]))  # CG decreases q


def test_save_points_are_ceil_of_powers_of_1_3():
    assert sorted(_save_points(30)) == [2, 3, 4, 5, 7, 9, 11, 14, 18, 24]


def test_cg_preconditioner_and_warm_start():
    A, g = spd(30, seed=1, cond=1e4)
    x_star = np.linalg.solve(A, -g)
    plain = conjugate_gradient(lambda v: A @ v, g, np.zeros(30), np.ones(30), 8, set())
    jacobi = conjugate_gradient(lambda v: A @ v, g, np.zeros(30), np.diag(A).copy(), 8, set())
    warm = conjugate_gradient(lambda v: A @ v, g, 0.95 * x_star, np.ones(30), 8, set())
    err = [np.linalg.norm(r[1] - x_star) for r in (plain, jacobi, warm)]
    assert err[2] < err[0] and err[2] < 0.05 * np.linalg.norm(x_star)


def test_cg_stops_at_negative_curvature():
    A = np.diag([1.0, -1.0, 2.0])
    saved, x, n_iter = conjugate_gradient(lambda v: A @ v, np.ones(3), np.zeros(3), np.ones(3),
                                          50, set())
    assert n_iter < 3 and np.isfinite(x).all()


# ---------------------------------------------------------------- driver
def test_protocol_objective_reaches_the_minimum():
    obj = LeastSquares()
    theta, f, n_iter, res = hessian_free(obj, np.zeros(12), max_iter=60, tol=1e-8,
                                         batch_size=50, damping=1.0, random_state=0)
    np.testing.assert_allclose(theta, obj.minimum(), rtol=1e-5, atol=1e-8)
    assert res.status == 0 and n_iter < 60
    # Curvature batches are sorted, distinct positions of the requested size.
    assert all(len(r) == 50 and np.all(np.diff(r) > 0) and r.dtype == np.int64
               for r in obj.batches)


def test_exact_model_shrinks_the_damping():
    """Full-batch curvature of a quadratic: the model is exact, rho = 1, and
    Levenberg-Marquardt multiplies lambda by 2/3 every iteration."""
    obj = LeastSquares()
    state = HFState(10.0)
    rhos = []
    hessian_free(obj, np.zeros(12), max_iter=4, tol=0, batch_size=obj.n_samples,
                 state=state, callback=lambda t, f, info: rhos.append(info["rho"]))
    np.testing.assert_allclose(rhos, 1.0, rtol=1e-6)
    np.testing.assert_allclose(state.damping, 10.0 * (2 / 3) ** 4)


def small_net_objective(dtype=np.float64):
    X, y = make_classification(120, 6, n_informative=4, n_classes=3, random_state=0)
    layout = Layout([6, 8, 3], ["tanh", "softmax"])
    theta0 = (np.random.RandomState(0).randn(layout.n_params) * 0.3).astype(dtype)
    return (Objective(layout, X.astype(dtype), np.eye(3, dtype=dtype)[y], None, LOSS_LOG,
                      1e-3, 0.0, 1), theta0)


@pytest.mark.parametrize("curvature", ["gauss-newton", "hessian"])
def test_trains_a_network_reproducibly(curvature, dtype):
    obj, theta0 = small_net_objective(dtype)
    losses = []
    theta, f, n_iter, res = hessian_free(
        obj, theta0, max_iter=15, tol=0, batch_size=60, damping=0.1, curvature=curvature,
        random_state=0, on_iteration=losses.append)
    assert theta.dtype == dtype and n_iter == 15 and res.status == 1
    assert f == losses[-1] and f < 0.5 * obj.loss(theta0)
    assert all(b <= a for a, b in zip(losses, losses[1:]))  # steps never raise the loss
    again = hessian_free(obj, theta0, max_iter=15, tol=0, batch_size=60, damping=0.1,
                         curvature=curvature, random_state=0)
    np.testing.assert_array_equal(again[0], theta)


def test_continuing_with_the_state_is_one_run():
    obj, theta0 = small_net_objective()
    kw = dict(tol=0, batch_size=60, damping=0.1)
    one = hessian_free(obj, theta0, max_iter=10, random_state=0, **kw)
    state = HFState(0.1)
    first = hessian_free(obj, theta0, max_iter=5, random_state=0, state=state, **kw)
    # The state carries the batch stream on: a new random_state is ignored.
    second = hessian_free(obj, first[0], max_iter=5, random_state=1, state=state, **kw)
    np.testing.assert_array_equal(second[0], one[0])


def test_non_finite_start_and_interrupt():
    obj, theta0 = small_net_objective()

    class Broken:
        n_samples = 10

        def loss_grad_fisher(self, theta):
            return math.nan, np.zeros_like(theta), np.zeros_like(theta)

    theta, f, n_iter, res = hessian_free(Broken(), theta0, max_iter=5, tol=0)
    assert res.status == 3 and n_iter == 0
    np.testing.assert_array_equal(theta, theta0)

    iterates = []
    calls = [0]
    inner = obj.curvature

    def curvature(*args):
        calls[0] += 1
        if len(iterates) == 2:
            raise KeyboardInterrupt
        return inner(*args)

    obj.curvature = curvature
    theta, f, n_iter, res = hessian_free(obj, theta0, max_iter=20, tol=0, damping=0.1,
                                         callback=lambda t, f, i: iterates.append(t))
    assert res is None and n_iter == 2
    np.testing.assert_array_equal(theta, iterates[-1])
    assert f == pytest.approx(obj.loss(theta))
    with pytest.raises(ValueError, match="curvature"):
        hessian_free(obj, theta0, max_iter=1, tol=0, curvature="newton")
