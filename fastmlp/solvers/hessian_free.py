"""Hessian-free optimisation (Martens, "Deep learning via Hessian-free
optimization", ICML 2010).

Each iteration takes the gradient g on the whole training set, then
minimises the damped quadratic model

    q(p) = g^T p + 1/2 p^T (C + lambda I) p

by preconditioned conjugate gradient, C being the Gauss-Newton matrix (or
the Hessian) estimated on a random curvature batch and reached only through
curvature-vector products. As in the paper:

- CG starts from 0.95 times the previous iteration's final CG iterate;
- CG stops when q made little relative progress over the last
  k = max(10, 0.1 i) iterations: i > k, q(p_i) < 0 and
  (q(p_i) - q(p_{i-k})) / q(p_i) < k * 5e-4, or after max_cg_iter;
- the iterates p_i at i = ceil(1.3^j) are kept, and the step is chosen by
  backtracking from the last one while the full-batch loss keeps decreasing;
- the preconditioner is M = (diag(F) + lambda)^0.75, F = sum_i w_i g_i g_i^T
  the empirical Fisher matrix, g_i row i's gradient and w_i its weight share
  (g = sum_i w_i g_i): F is a weighted mean like the curvature matrix, so
  that its diagonal and lambda are on one scale (Martens' code divides the
  summed squares by the number of rows);
- lambda follows Levenberg-Marquardt: with the reduction ratio
  rho = (f(theta + p) - f(theta)) / (g^T p + 1/2 p^T C p), lambda * 3/2 when
  rho < 1/4, lambda * 2/3 when rho > 3/4;
- a backtracking line search (Armijo, c = 1e-2, rate * 0.8 up to 60 times)
  is the final safeguard; a step with no decrease is not taken.

The objective protocol
----------------------
The driver reaches the problem only through an object with:

``n_samples`` : int
    Rows of the training set. Curvature batches are positions in
    ``range(n_samples)``, drawn by the driver.
``loss_grad_fisher(theta) -> (loss, grad, squares)``
    Full-batch loss, gradient ``grad = sum_i w_i g_i`` and the empirical
    Fisher diagonal ``sum_i w_i g_i**2``, g_i being row i's gradient and
    w_i its share of the total weight (a sum over rows, like the others;
    add the penalty's diagonal curvature). Called once per iteration.
``loss(theta) -> float``
    Full-batch loss alone (backtracking and line search).
``curvature(theta, v, rows, kind) -> ndarray``
    ``C v`` for the batch ``rows`` (sorted int64 positions), ``kind``
    'gauss-newton' or 'hessian': the batch's weighted mean of the rows'
    curvature, so that it estimates the full set's, plus the penalty's.

theta and v are ndarrays of the dtype of theta0; returned arrays may be
of any float dtype. fastmlp.solvers.objective.Objective implements it; a
distributed objective implements the same four members by summing its
workers' results (all four are sums over rows).
"""

import math

import numpy as np
from scipy.optimize import OptimizeResult
from sklearn.utils import check_random_state

from .quasi_newton import STATUS_CONVERGED, STATUS_LIMIT, STATUS_LINE_SEARCH, STATUS_NON_FINITE

CG_DECAY = 0.95
CG_EPSILON = 5e-4
CG_SAVE_RATIO = 1.3
PRECONDITIONER_EXPONENT = 0.75
ARMIJO_C = 1e-2
LINE_SEARCH_SHRINK = 0.8
LINE_SEARCH_STEPS = 60
# Iterations in a row without a step before giving up.
MAX_REJECTED = 10


class HFState:
    """What one HF iteration hands the next: the damping, the last CG
    iterate and the random stream of the curvature batches. Pass the same
    object to continue a run (warm starts)."""

    def __init__(self, damping):
        self.damping = float(damping)
        self.previous = None
        self.rng = None


def _save_points(max_cg_iter):
    points = set()
    j = 1
    while math.ceil(CG_SAVE_RATIO ** j) <= max_cg_iter:
        points.add(math.ceil(CG_SAVE_RATIO ** j))
        j += 1
    return points


def conjugate_gradient(product, g, x0, precond, max_iter, save_at):
    """Minimise q(x) = g.x + x.A x / 2 by preconditioned CG from x0.

    product(v) = A v; precond: the diagonal of M (A^-1 ~ M^-1).
    Returns (saved, x, n_iter): saved is [(i, x_i)] at the iterations in
    save_at and the last, x the last iterate.
    """
    x = x0.copy()
    r = -g - product(x) if x.any() else -g.copy()
    inv_precond = 1.0 / precond
    y = r * inv_precond
    d = y.copy()
    ry = float(r @ y)
    q_hist = [0.5 * float(x @ (g - r))]
    saved = []
    i = 0
    while i < max_iter:
        Ad = product(d)
        dAd = float(d @ Ad)
        if not dAd > 0:  # no positive curvature along d (Hessian products)
            break
        alpha = ry / dAd
        x += alpha * d
        r -= alpha * Ad
        i += 1
        np.multiply(r, inv_precond, out=y)
        ry_new = float(r @ y)
        d *= ry_new / ry
        d += y
        ry = ry_new
        # r = -g - A x, so q(x) = x.(g - r) / 2 needs no extra product.
        q = 0.5 * (float(x @ g) - float(x @ r))
        q_hist.append(q)
        if i in save_at:
            saved.append((i, x.copy()))
        k = max(10, int(0.1 * i))
        if i > k and q < 0 and (q - q_hist[i - k]) / q < k * CG_EPSILON:
            break
        if ry == 0:
            break
    if not saved or saved[-1][0] != i:
        saved.append((i, x.copy()))
    return saved, x, i


def hessian_free(objective, theta0, *, max_iter, tol, batch_size=1000, damping=1.0,
                 max_cg_iter=250, curvature="gauss-newton", random_state=None,
                 on_iteration=None, callback=None, state=None):
    """Minimise with Hessian-free optimisation (see the module docstring).

    Parameters
    ----------
    objective : object implementing the protocol in the module docstring.
    theta0 : ndarray
        The starting point; not modified.
    max_iter : int
        Outer iterations (each one full-batch gradient and one CG run).
    tol : float
        Stop when max_i |grad_i| <= tol.
    batch_size : int
        Rows of the curvature batch, drawn anew each iteration (clipped to
        n_samples).
    damping : float
        Initial lambda (when state is None).
    max_cg_iter : int
        Cap on CG iterations per outer iteration.
    curvature : {'gauss-newton', 'hessian'}
        Products with the Gauss-Newton matrix (positive semi-definite) or the
        exact Hessian (CG stops at a direction of non-positive curvature).
    random_state : int, RandomState or None
        Draws the curvature batches (unless state already has a stream).
    on_iteration : callable(loss) or None
        Called after each iteration; True stops.
    callback : callable(theta, loss, info) or None
        Called after each iteration with the current iterate and a dict
        (keys 'damping', 'cg_iterations', 'rho', 'step', 'n_evals'); True stops.
    state : HFState or None
        Damping, last CG iterate and batch stream to start from, updated in
        place.

    Returns
    -------
    theta, loss, n_iter, result
        The last iterate, its loss, the iterations made and an
        OptimizeResult (fields x, fun, nit, nfev, status, message, success;
        status 0: converged or stopped by a callback, 1: max_iter reached,
        2: no decrease found in MAX_REJECTED iterations in a row, 3: a
        non-finite loss or gradient), or None if interrupted (Ctrl-C), theta
        then being the last iterate.
    """
    if curvature not in ("gauss-newton", "hessian"):
        raise ValueError(f"curvature must be 'gauss-newton' or 'hessian', got {curvature!r}")
    dtype = theta0.dtype
    if state is None:
        state = HFState(damping)
    if state.rng is None:
        state.rng = check_random_state(random_state)
    rng = state.rng
    n = int(objective.n_samples)
    batch = min(int(batch_size), n)
    save_at = _save_points(max_cg_iter)
    theta = theta0.astype(np.float64)
    n_evals = 0
    nit, rejected = 0, 0
    f = math.nan

    def result(status, message):
        return OptimizeResult(x=theta.astype(dtype), fun=f, nit=nit, nfev=n_evals,
                              status=status, message=message, success=status == 0)

    def full_loss(x):
        nonlocal n_evals
        n_evals += 1
        value = float(objective.loss(x.astype(dtype, copy=False)))
        return value if math.isfinite(value) else math.inf

    try:
        while True:
            f_new, g_new, fisher = objective.loss_grad_fisher(theta.astype(dtype))
            n_evals += 1
            g_new = np.asarray(g_new, dtype=np.float64)
            if not (math.isfinite(f_new) and np.isfinite(g_new).all()):
                # At the start, or where the gradient overflows at an
                # accepted point (accepted points have a finite loss).
                return theta.astype(dtype), f, nit, result(
                    STATUS_NON_FINITE, "the loss or its gradient became non-finite")
            f, g = float(f_new), g_new
            if np.abs(g).max() <= tol:
                status, message = STATUS_CONVERGED, "max|gradient| <= tol"
                break
            lam = state.damping
            rows = np.sort(rng.choice(n, size=batch, replace=False)).astype(np.int64)
            theta_k = theta.astype(dtype)

            def curv(v):
                u = v.astype(dtype, copy=False)
                return np.asarray(objective.curvature(theta_k, u, rows, curvature),
                                  dtype=np.float64)

            precond = (np.asarray(fisher, dtype=np.float64) + lam) ** PRECONDITIONER_EXPONENT
            x0 = (CG_DECAY * state.previous if state.previous is not None
                  else np.zeros_like(theta))
            def damped(v):
                out = curv(v)
                out += lam * v
                return out

            saved, state.previous, n_cg = conjugate_gradient(
                damped, g, x0, precond, max_cg_iter, save_at)

            # CG backtracking: from the last kept iterate back while f drops.
            p = saved[-1][1]
            f_p = full_loss(theta + p)
            for _, candidate in reversed(saved[:-1]):
                f_c = full_loss(theta + candidate)
                if not f_c < f_p:
                    break
                p, f_p = candidate, f_c
            slope = float(g @ p)
            model = slope + 0.5 * float(p @ curv(p))
            rho = (f_p - f) / model if model < 0 else -math.inf
            if rho < 0.25:
                state.damping = lam * 1.5
            elif rho > 0.75:
                state.damping = lam * (2.0 / 3.0)

            # Final safeguard: an Armijo backtracking line search along p.
            rate, f_rate = 1.0, f_p
            accepted = False
            if slope < 0:
                for _ in range(LINE_SEARCH_STEPS):
                    if f_rate <= f + ARMIJO_C * rate * slope:
                        accepted = True
                        break
                    rate *= LINE_SEARCH_SHRINK
                    f_rate = full_loss(theta + rate * p)
            else:
                state.previous = None  # not a descent direction: start CG afresh
            nit += 1
            if accepted:
                theta = theta + rate * p
                rejected = 0
                f_iter = f_rate
            else:
                rejected += 1
                f_iter = f
            info = {"damping": lam, "cg_iterations": n_cg, "rho": rho,
                    "step": rate if accepted else 0.0, "n_evals": n_evals}
            stop = on_iteration is not None and on_iteration(f_iter)
            if callback is not None:
                stop = callback(theta.astype(dtype), f_iter, info) or stop
            f = f_iter
            if stop:
                status, message = STATUS_CONVERGED, "stopped by the caller"
                break
            if rejected >= MAX_REJECTED:
                status, message = (STATUS_LINE_SEARCH,
                                   f"no decrease found in {MAX_REJECTED} iterations in a row")
                break
            if nit >= max_iter:
                status, message = STATUS_LIMIT, "maximum number of iterations reached"
                break
    except KeyboardInterrupt:
        return theta.astype(dtype), f, nit, None
    return theta.astype(dtype), f, nit, result(status, message)
