"""Quasi-Newton solvers over the compiled full-batch objective."""

import numpy as np
import scipy.optimize


class BestTracker:
    """Wraps an objective and remembers the best finite point it has seen.

    A fit interrupted (Ctrl-C) inside a scipy driver, or one whose driver
    returns a non-finite point, falls back to this point.
    """

    def __init__(self, objective, theta0):
        self.objective = objective
        self.best_theta = theta0.copy()
        self.best_loss = np.inf

    def __call__(self, theta):
        loss, grad = self.objective(theta)
        if not (np.isfinite(loss) and np.isfinite(grad).all()):
            # scipy's line searches treat an infinite value as "step too long".
            return np.inf, np.zeros_like(grad)
        if loss < self.best_loss:
            self.best_loss = loss
            self.best_theta[:] = theta
        return loss, grad


def lbfgs(objective, theta0, *, max_iter, max_fun, tol, on_iteration=None):
    """Minimise with scipy's L-BFGS-B, as scikit-learn's MLP does.

    Parameters
    ----------
    objective : callable theta -> (loss, grad)
    theta0 : ndarray, dtype of the fit
    max_iter, max_fun, tol : as scikit-learn's 'lbfgs' solver uses them.
    on_iteration : callable(loss) or None
        Called after every iteration with the current loss; a true return
        value stops the minimisation there (scipy's result then has
        status 99).

    Returns
    -------
    theta, loss, n_iter, result : result is scipy's OptimizeResult (None when
        interrupted, in which case theta is the best point seen).
    """
    dtype = theta0.dtype
    tracker = BestTracker(objective, theta0)

    def fun(x):
        loss, grad = tracker(x.astype(dtype, copy=False))
        return loss, grad.astype(np.float64)

    def callback(intermediate_result):
        if on_iteration is not None and on_iteration(float(intermediate_result.fun)):
            raise StopIteration

    try:
        res = scipy.optimize.minimize(
            fun, theta0.astype(np.float64), method="L-BFGS-B", jac=True,
            callback=callback,
            options={"maxfun": max_fun, "maxiter": max_iter, "gtol": tol},
        )
    except KeyboardInterrupt:
        return tracker.best_theta, tracker.best_loss, None, None
    theta = res.x.astype(dtype)
    if not np.isfinite(res.fun) or not np.isfinite(theta).all():
        return tracker.best_theta, tracker.best_loss, res.nit, res
    return theta, float(res.fun), res.nit, res
