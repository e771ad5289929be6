"""Quasi-Newton solvers: L-BFGS and BFGS over any loss-and-gradient callable.

Both minimise f with steps x <- x + a d, d = -H g, where H approximates the
inverse Hessian from the pairs s = x_{k+1} - x_k, y = g_{k+1} - g_k, and the
step length a satisfies the strong Wolfe conditions (scipy.optimize's
line searches, c1 = 1e-4, c2 = 0.9). L-BFGS keeps the last 30 pairs (the
two-loop recursion, Nocedal & Wright, Numerical Optimization, Alg. 7.4;
scipy's L-BFGS-B keeps 10). BFGS keeps a dense n x n matrix and by default
takes scipy.optimize's BFGS's steps (H_0 = I, its line search). Either
approximation can be handed back in to continue where a previous call
stopped (warm starts): the iterates are then those of one uninterrupted
run.

Stopping follows scipy's L-BFGS-B as scikit-learn's 'lbfgs' solver drives
it: max|g_i| <= tol, a relative loss reduction below 2.2e-9 (L-BFGS-B's
factr = 1e7), max_iter iterations, or more than max_fun evaluations at the
end of an iteration.
"""

import math
import warnings

import numpy as np
from scipy.linalg.blas import daxpy, ddot, dsymv, dsyr, dsyr2
from scipy.optimize import OptimizeResult
# scipy.optimize.line_search is line_search_wolfe2; line_search_wolfe1
# (MINPACK's dcsrch, which scipy's BFGS tries first) has no public name.
from scipy.optimize._linesearch import line_search_wolfe1, line_search_wolfe2

# L-BFGS-B's default stopping rule on the relative reduction (factr * eps).
FTOL = 1e7 * np.finfo(float).eps
# Pairs L-BFGS keeps unless told otherwise (read when an LBFGSMemory is
# made, so setting it changes later fits). scipy's L-BFGS-B, which
# scikit-learn's 'lbfgs' runs, keeps 10; 30 reach a lower loss per iteration
# (README, "Measured"; benchmarks/second_order.py lbfgs --memory) for O(m n)
# more work per iteration and 16 m bytes per parameter.
LBFGS_MEMORY = 30
# BFGS stores an n x n float64 matrix: 10,000 parameters take 800 MB.
BFGS_MAX_PARAMS = 10_000

STATUS_CONVERGED, STATUS_LIMIT, STATUS_LINE_SEARCH, STATUS_NON_FINITE = 0, 1, 2, 3


class LBFGSMemory:
    """The last m (s, y) pairs of L-BFGS: its inverse-Hessian approximation.

    Parameters
    ----------
    m : int or None
        Pairs kept (2 m float64 vectors of the parameters' size); None:
        LBFGS_MEMORY. More pairs give a better approximation, so more
        progress per iteration, for O(m n) more work per iteration.
    """

    def __init__(self, m=None):
        self.m = int(LBFGS_MEMORY if m is None else m)
        if self.m < 1:
            raise ValueError(f"L-BFGS needs at least one pair, got m={m}.")
        self.previous_loss = None  # the loss before the last step
        self.s = []
        self.y = []
        self.rho = []

    def __len__(self):
        return len(self.s)

    def reset(self):
        self.s, self.y, self.rho = [], [], []

    def update(self, s, y):
        """Add a pair; pairs with s.y <= 0 are skipped (H stays positive
        definite). Returns whether the pair was kept."""
        s = np.ascontiguousarray(s, dtype=np.float64)
        y = np.ascontiguousarray(y, dtype=np.float64)
        sy = float(s @ y)
        if not sy > 1e-10 * float(y @ y):
            return False
        if len(self.s) == self.m:
            del self.s[0], self.y[0], self.rho[0]
        self.s.append(s)
        self.y.append(y)
        self.rho.append(1.0 / sy)
        return True

    def direction(self, g):
        """-H g by the two-loop recursion, H_0 = (s.y / y.y) I (newest pair)."""
        # In-place BLAS calls: with many pairs the recursion is 4 m vector
        # operations per iteration, which numpy temporaries would double.
        q = -np.asarray(g, dtype=np.float64)
        a = np.empty(len(self.s))
        for i in range(len(self.s) - 1, -1, -1):
            a[i] = self.rho[i] * ddot(self.s[i], q)
            q = daxpy(self.y[i], q, a=-a[i])
        if self.s:
            q *= 1.0 / (self.rho[-1] * ddot(self.y[-1], self.y[-1]))
        for i in range(len(self.s)):
            b = self.rho[i] * ddot(self.y[i], q)
            q = daxpy(self.s[i], q, a=a[i] - b)
        return q


class DenseInverseHessian:
    """BFGS's inverse-Hessian approximation as a dense n x n float64 matrix.

    Only the upper triangle is stored up to date (symmetric BLAS updates
    need no n x n temporaries). The matrix is allocated at the first update;
    until then the direction is -g.

    Parameters
    ----------
    n : int
        Parameters.
    initial : {'identity', 'scaled'}
        H_0, to which the first pair's update is applied: 'identity' is I,
        as in scipy.optimize's BFGS; 'scaled' is (s.y / y.y) I (Nocedal &
        Wright's eq. 6.20), which puts the first quasi-Newton step on the
        scale of the curvature just seen.
    """

    def __init__(self, n, initial="identity"):
        check_bfgs_size(n)
        if initial not in ("scaled", "identity"):
            raise ValueError(f"initial must be 'scaled' or 'identity', got {initial!r}.")
        self.n = int(n)
        self.initial = initial
        self.previous_loss = None  # the loss before the last step
        self.H = None

    def __len__(self):
        return 0 if self.H is None else 1

    def reset(self):
        self.H = None

    def update(self, s, y):
        sy = float(s @ y)
        if not sy > 1e-10 * float(y @ y):
            return False
        rho = 1.0 / sy
        if self.H is None:
            self.H = np.zeros((self.n, self.n), order="F")
            self.H[np.diag_indices(self.n)] = (sy / float(y @ y) if self.initial == "scaled"
                                              else 1.0)
        # H <- (I - rho s y^T) H (I - rho y s^T) + rho s s^T
        #    = H - rho (s Hy^T + Hy s^T) + (rho^2 y^T H y + rho) s s^T
        Hy = dsymv(1.0, self.H, y)
        dsyr2(-rho, s, Hy, a=self.H, overwrite_a=True)
        dsyr(rho * rho * float(y @ Hy) + rho, s, a=self.H, overwrite_a=True)
        return True

    def direction(self, g):
        if self.H is None:
            return -g
        return dsymv(-1.0, self.H, g)


def check_bfgs_size(n_params):
    """Refuse a BFGS matrix that would not fit (see BFGS_MAX_PARAMS)."""
    if n_params > BFGS_MAX_PARAMS:
        raise ValueError(
            f"solver='bfgs' keeps a dense n_params x n_params inverse-Hessian "
            f"approximation: this network has {n_params:,} parameters, which needs "
            f"{8 * n_params**2 / 1e9:.1f} GB (the limit is {BFGS_MAX_PARAMS:,} "
            "parameters). Use solver='lbfgs' (limited memory) or solver='hf' "
            "(Hessian-free) for networks this size."
        )


class _Evaluations:
    """The objective as the line search calls it: float64 in and out, one
    call per point (values and gradients of the last points are cached),
    non-finite values reported as an infinite loss (a step too long)."""

    def __init__(self, objective, dtype):
        self.objective = objective
        self.dtype = dtype
        self.count = 0
        self.cache = []
        self.best = None  # lowest (f, x, g) since the last line search began

    def __call__(self, x):
        for cx, f, g in self.cache:
            if np.array_equal(cx, x):
                return f, g
        loss, grad = self.objective(x.astype(self.dtype))
        self.count += 1
        loss = float(loss)
        grad = np.asarray(grad, dtype=np.float64)
        if not (math.isfinite(loss) and np.isfinite(grad).all()):
            loss, grad = math.inf, np.zeros_like(x)
        self.cache = self.cache[-2:] + [(x.copy(), loss, grad)]
        if self.best is None or loss < self.best[0]:
            self.best = (loss, self.cache[-1][0], grad)
        return loss, grad

    def f(self, x):
        return self(x)[0]

    def g(self, x):
        return self(x)[1]


LINE_SEARCHES = ("wolfe2", "wolfe12")


def _line_search(evals, x, d, f, g, f_prev, method):
    """A step along d: (x_new, f_new, g_new, s), s the step for the
    curvature pair, or None without a decrease.

    method 'wolfe2' is scipy.optimize.line_search (line_search_wolfe2:
    bracketing and cubic zoom, Nocedal & Wright's Alg. 3.5-3.6), first trial
    a = 1, as lbfgs runs it; 'wolfe12' is what scipy.optimize's BFGS runs:
    MINPACK-2's dcsrch (More & Thuente; line_search_wolfe1), then
    line_search_wolfe2 if it fails, first trial a = min(1, 2.02 (f - f_prev)
    / g.d) from the previous decrease f_prev - f.
    Both look for a strong-Wolfe step (c1 = 1e-4, c2 = 0.9). Without one (a
    search cut short, e.g. along a direction where the loss keeps falling up
    to a non-finite region) the lowest point evaluated if lower than f.
    """
    evals.best = None
    alpha = None
    with warnings.catch_warnings():
        # scipy's LineSearchWarning is not public; a failed search is
        # handled here.
        warnings.filterwarnings("ignore", category=RuntimeWarning,
                                message="(The line search|Rounding errors)")
        if method == "wolfe12":
            alpha = line_search_wolfe1(evals.f, evals.g, x, d, gfk=g, old_fval=f,
                                       old_old_fval=f_prev, c1=1e-4, c2=0.9, amin=1e-100,
                                       amax=1e100)[0]
        if alpha is None:
            alpha = line_search_wolfe2(evals.f, evals.g, x, d, gfk=g, old_fval=f,
                                       old_old_fval=f_prev if method == "wolfe12" else None,
                                       c1=1e-4, c2=0.9,
                                       amax=1e100 if method == "wolfe12" else None)[0]
    if alpha is not None:
        x_new = x + alpha * d
        f_new, g_new = evals(x_new)
        if f_new <= f:
            # scipy's BFGS pairs alpha d (the step in exact arithmetic)
            # with the gradients; x_new - x is the step the floats took.
            return x_new, f_new, g_new, alpha * d if method == "wolfe12" else x_new - x
    if evals.best is not None and evals.best[0] < f:
        f_new, x_new, g_new = evals.best
        return x_new, f_new, g_new, x_new - x
    return None


def _minimize(objective, theta0, approx, *, max_iter, max_fun, tol, ftol, on_iteration,
              callback, line_search="wolfe2"):
    """The quasi-Newton loop shared by lbfgs and bfgs (line_search: a
    method of _line_search)."""
    dtype = theta0.dtype
    evals = _Evaluations(objective, dtype)
    x = theta0.astype(np.float64)
    nit, f, g = 0, math.nan, None

    def result(status, message):
        return OptimizeResult(x=x.astype(dtype), fun=f, jac=g, nit=nit, nfev=evals.count,
                              status=status, message=message, success=status == 0)

    try:
        f, g = evals(x)
        if not math.isfinite(f):
            return theta0.copy(), f, 0, result(
                STATUS_NON_FINITE, "the loss or its gradient is non-finite at the start")
        while True:
            if np.abs(g).max() <= tol:
                status, message = STATUS_CONVERGED, "max|gradient| <= tol"
                break
            if nit >= max_iter:
                status, message = STATUS_LIMIT, "STOP: TOTAL NO. OF ITERATIONS REACHED LIMIT"
                break
            if evals.count > max_fun:
                status, message = (STATUS_LIMIT,
                                   "STOP: TOTAL NO. OF F,G EVALUATIONS EXCEEDS LIMIT")
                break
            step = None
            if len(approx):
                d = approx.direction(g)
                if float(d @ g) < 0:
                    step = _line_search(evals, x, d, f, g, approx.previous_loss, line_search)
                if step is None:
                    approx.reset()  # a stale approximation: restart from -g
            if step is None and line_search == "wolfe12":
                # scipy's BFGS: the first trial a = 1.01 / |g| along -g, set
                # through a made-up previous loss f + |g| / 2.
                step = _line_search(evals, x, -g, f, g, f + np.linalg.norm(g) / 2, line_search)
            elif step is None:
                # Without curvature information the first trial moves a unit
                # distance, as L-BFGS-B's first step does.
                step = _line_search(evals, x, -g / np.linalg.norm(g), f, g, None, line_search)
            if step is None:
                all_inf = all(not math.isfinite(c[1]) for c in evals.cache)
                status = STATUS_NON_FINITE if all_inf else STATUS_LINE_SEARCH
                message = ("the loss became non-finite along the search direction"
                           if all_inf else "ABNORMAL: the line search found no decrease")
                break
            x_new, f_new, g_new, s = step
            approx.update(s, g_new - g)
            approx.previous_loss = f  # kept with the pairs: a warm start continues the run
            f_old = f
            x, f, g = x_new, f_new, g_new
            nit += 1
            stop = on_iteration is not None and on_iteration(f)
            if callback is not None:
                stop = callback(x.astype(dtype), f, {"n_evals": evals.count}) or stop
            if stop:
                status, message = STATUS_CONVERGED, "stopped by the caller"
                break
            if (f_old - f) / max(abs(f_old), abs(f), 1.0) <= ftol:
                status, message = STATUS_CONVERGED, "CONVERGENCE: REL_REDUCTION_OF_F <= FACTR*EPSMCH"
                break
    except KeyboardInterrupt:
        return x.astype(dtype), f, nit, None
    return x.astype(dtype), f, nit, result(status, message)


_DOC_COMMON = """
    objective : callable theta -> (loss, grad)
        Any callable: it receives an ndarray of theta0's dtype (do not keep
        or modify it) and returns a float and an array of theta's shape (a
        distributed objective may do a round trip per call). A non-finite
        loss or gradient counts as a step too long.
    theta0 : ndarray
        The starting point; not modified. Results have its dtype; the
        solver's own vectors are float64.
    max_iter : int
        Iterations (accepted steps).
    max_fun : int
        Stop at the end of the first iteration that leaves more than max_fun
        objective calls made (scipy's L-BFGS-B rule, as in scikit-learn).
    tol : float
        Stop when max_i |grad_i| <= tol (L-BFGS-B's gtol).
    ftol : float
        Stop when (f_k - f_{k+1}) / max(|f_k|, |f_{k+1}|, 1) <= ftol
        (L-BFGS-B's rule; its default factr=1e7 gives FTOL).
    on_iteration : callable(loss) or None
        Called after each iteration; a True return value stops the solver.
    callback : callable(theta, loss, info) or None
        Called after each iteration with the new iterate (theta0's dtype) and
        a dict (key 'n_evals'); a True return value stops the solver.
"""

_DOC_RETURNS = """
    Returns
    -------
    theta, loss, n_iter, result
        The last iterate, its loss and the number of iterations. result is a
        scipy OptimizeResult (fields x, fun, jac, nit, nfev, status, message,
        success; status 0: converged or stopped by a callback, 1: max_iter or
        max_fun reached, 2: the line search found no decrease, 3: non-finite
        loss at the start or everywhere along the search direction), or
        None if interrupted (Ctrl-C), theta then being the last iterate.
"""


def lbfgs(objective, theta0, *, max_iter, max_fun, tol, ftol=FTOL, on_iteration=None,
          callback=None, memory=None):
    return _minimize(objective, theta0, LBFGSMemory() if memory is None else memory,
                     max_iter=max_iter, max_fun=max_fun, tol=tol, ftol=ftol,
                     on_iteration=on_iteration, callback=callback)


lbfgs.__doc__ = """Minimise with limited-memory BFGS (LBFGS_MEMORY pairs, 30 by default).

    The stopping rules and parameters mean what scikit-learn's 'lbfgs'
    solver (scipy's L-BFGS-B without bounds) means by them.

    Parameters
    ----------""" + _DOC_COMMON + """    memory : LBFGSMemory or None
        Pairs to start from, updated in place: pass the same object again to
        continue a run (warm start). A fresh LBFGSMemory() (LBFGS_MEMORY
        pairs) when None; LBFGSMemory(10) keeps as many as scipy's L-BFGS-B.
""" + _DOC_RETURNS


def bfgs(objective, theta0, *, max_iter, max_fun, tol, ftol=FTOL, on_iteration=None,
         callback=None, inverse_hessian=None, initial=None, line_search="wolfe12"):
    if line_search not in LINE_SEARCHES:
        raise ValueError(f"line_search must be one of {LINE_SEARCHES}, got {line_search!r}.")
    if inverse_hessian is None:
        inverse_hessian = DenseInverseHessian(theta0.size,
                                              "identity" if initial is None else initial)
    elif initial is not None and initial != inverse_hessian.initial:
        raise ValueError(f"initial={initial!r} differs from the inverse_hessian given "
                         f"(initial={inverse_hessian.initial!r}).")
    return _minimize(objective, theta0, inverse_hessian, max_iter=max_iter,
                     max_fun=max_fun, tol=tol, ftol=ftol, on_iteration=on_iteration,
                     callback=callback, line_search=line_search)


bfgs.__doc__ = """Minimise with BFGS (a dense inverse-Hessian approximation).

    Memory is 8 n**2 bytes for n parameters; above BFGS_MAX_PARAMS a
    ValueError names the alternatives. Same stopping rules as lbfgs. The
    defaults are scipy.optimize's BFGS's conventions (H_0 = I, its line
    search and first step), so that from the same start both take the same
    steps up to rounding (tests/solvers/test_quasi_newton.py; with
    ftol=0 and tol its gtol the two stop at the same iterate).

    Parameters
    ----------""" + _DOC_COMMON + """    inverse_hessian : DenseInverseHessian or None
        The approximation to start from, updated in place (warm starts); a
        fresh one with `initial` when None.
    initial : {'identity', 'scaled'} or None
        H_0 of a fresh approximation (see DenseInverseHessian); None:
        'identity', scipy's. 'scaled' (Nocedal & Wright's eq. 6.20) takes
        fewer iterations on small nets but converges more slowly on larger
        ones (README, "Measured").
    line_search : {'wolfe12', 'wolfe2'}
        'wolfe12' (default): scipy's BFGS's search; 'wolfe2': lbfgs's (see
        _line_search).
""" + _DOC_RETURNS
