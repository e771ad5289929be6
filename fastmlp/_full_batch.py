"""The estimators' side of the full-batch solvers 'lbfgs', 'bfgs' and 'hf'.

Builds the objective over the training rows, runs the solver driver from
fastmlp.solvers, and turns its per-iteration reports into loss_curve_,
verbose lines, early stopping and warnings. With warm_start=True the
driver's state (L-BFGS pairs, the BFGS matrix, HF's damping and last CG
iterate) is kept between fits, so fit(k) then fit(k) continues the run as
one fit(2k) would.
"""

import time
import warnings

import numpy as np
from sklearn.base import is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

from .exceptions import DivergenceWarning
from .solvers.hessian_free import HFState, hessian_free
from .solvers.objective import Objective, kernel_input
from .solvers.quasi_newton import (STATUS_NON_FINITE, DenseInverseHessian, LBFGSMemory, bfgs,
                                   lbfgs)

# Their passes over the data (_objective.loss_grad, _curvature's products and
# Fisher diagonal) run rows_parallel: the threads each take a share of the
# rows, BLAS held at one thread by the fit.
FULL_BATCH_SOLVERS = ("lbfgs", "bfgs", "hf")


def _solver_state(est, n_params, dtype):
    """The warm-started driver state, or a fresh one (also when the
    parameters changed meaning: another size, dtype or pruning pattern)."""
    pattern = tuple(None if s is None else hash(s[1].tobytes())
                    for s in est._layout.structure)
    key = (est.solver, n_params, np.dtype(dtype).str, pattern)
    saved = est.__dict__.get("_solver_state")
    if est.warm_start and saved is not None and saved[0] == key:
        return saved[1]
    if est.solver == "lbfgs":
        state = LBFGSMemory()
    elif est.solver == "bfgs":
        state = DenseInverseHessian(n_params)
    else:
        state = HFState(est.damping)
    # Kept only when asked for: BFGS's matrix alone is 8 n_params**2 bytes.
    if est.warm_start:
        est._solver_state = (key, state)
    else:
        est.__dict__.pop("_solver_state", None)
    return state


def _validation_split(est, y, sample_weight, n, random_state):
    rows = np.arange(n, dtype=np.int64)
    stratify = y if is_classifier(est) and est.n_outputs_ == 1 else None
    train_rows, val_rows = train_test_split(rows, random_state=random_state,
                                            test_size=est.validation_fraction,
                                            stratify=stratify)
    if val_rows.shape[0] < 2:
        raise ValueError(
            "The validation set is too small. Increase 'validation_fraction' "
            "or the size of your dataset."
        )
    sw_val = None if sample_weight is None else sample_weight[val_rows]
    return np.sort(train_rows), val_rows, y[val_rows], sw_val


def fit_full_batch(est, X, Y, y, sample_weight, n_threads, callbacks, random_state):
    """Fit est (a BaseMLP) with est.solver in FULL_BATCH_SOLVERS; callbacks
    are notified after every iteration (est._notify); random_state (a
    RandomState) draws the validation split and HF's curvature batches."""
    early_stopping = est.early_stopping and est.solver != "lbfgs"  # as scikit-learn's lbfgs
    train_rows = validate = None
    if early_stopping:
        Xk = kernel_input(X)
        train_rows, val_rows, y_val, sw_val = _validation_split(est, y, sample_weight,
                                                                X.shape[0], random_state)
        val_objective = None
        if callbacks:
            # The callbacks' validation loss: the data term on the validation rows.
            val_objective = Objective(est._layout, X, Y, sample_weight, est._loss_code, 0.0,
                                      0.0, n_threads, rows=val_rows, rows_parallel=True)

        def validate(new_theta):
            score = est._validation_score(Xk, val_rows, y_val, sw_val, n_threads)
            return score, None if val_objective is None else val_objective.loss(new_theta)

    objective = Objective(est._layout, X, Y, sample_weight, est._loss_code, est.alpha,
                          est.l1, n_threads, rows=train_rows, rows_parallel=True)
    run_full_batch(est, objective, callbacks, random_state, validate)


def run_full_batch(est, objective, callbacks, random_state, validate=None):
    """Run est.solver on objective (fastmlp.solvers.objective.Objective, or
    any object with its protocol, such as fastmlp.dask's distributed one)
    and set est's parameters, loss_curve_, loss_ and n_iter_.

    validate : callable(theta) -> (validation score, validation loss or None)
        For early stopping on the score (est's parameters are theta when it
        is called); None: no early stopping.
    """
    solver = est.solver
    theta = est._theta
    early_stopping = validate is not None
    if early_stopping and not hasattr(est, "_best_theta"):
        est._best_theta = theta.copy()
    state = _solver_state(est, theta.size, theta.dtype)
    n_before = len(est.loss_curve_)
    last = [time.perf_counter()]
    stopped_by_callback = [False]

    def callback(new_theta, loss, info):
        est.loss_curve_.append(loss)
        # The estimator's parameters are the iterate's while it is reported:
        # a callback may use them (predict, score a held-out set).
        theta[:] = new_theta
        val_score = val_loss = None
        if early_stopping:
            val_score, val_loss = validate(new_theta)
        stop = False
        if early_stopping or solver == "hf":
            est._update_no_improvement_count(val_score, new_theta)
            stop = est._no_improvement_count > est.n_iter_no_change
        now = time.perf_counter()
        if callbacks and est._notify(callbacks, loss, val_score, val_loss, None, now - last[0]):
            stopped_by_callback[0] = stop = True
        if est.verbose:
            line = "Iteration %d, loss = %.8f" % (len(est.loss_curve_) - n_before, loss)
            if val_score is not None:
                line += ", validation score = %.6f" % val_score
            if solver == "hf":
                line += (", damping = %.3g, CG iterations = %d, rho = %.3f"
                         % (info["damping"], info["cg_iterations"], info["rho"]))
            print(line + ", time = %.3fs" % (now - last[0]))
        if stop and est.verbose and not stopped_by_callback[0]:
            what = "Validation score" if early_stopping else "Training loss"
            print(f"{what} did not improve more than tol={est.tol:f} for "
                  f"{est.n_iter_no_change} consecutive iterations. Stopping.")
        last[0] = time.perf_counter()
        return stop

    common = dict(max_iter=est.max_iter, tol=est.tol, callback=callback)
    if solver == "lbfgs":
        result = lbfgs(objective, theta, max_fun=est.max_fun, memory=state, **common)
    elif solver == "bfgs":
        result = bfgs(objective, theta, max_fun=est.max_fun, inverse_hessian=state, **common)
    else:
        result = hessian_free(objective, theta, batch_size=est.curvature_batch_size,
                              max_cg_iter=est.max_cg_iter, curvature=est.curvature,
                              random_state=random_state, state=state, **common)
    new_theta, loss, n_iter, res = result
    theta[:] = new_theta
    est.loss_ = float(loss)
    est.n_iter_ = min(n_iter, est.max_iter)
    if early_stopping:
        theta[:] = est._best_theta
    if res is None:
        # Ctrl-C may land between a step and its report: count the reports.
        est.n_iter_ = len(est.loss_curve_) - n_before
        warnings.warn("Training interrupted by user.")
    elif res.status == STATUS_NON_FINITE:
        warnings.warn(
            f"Training diverged after {n_iter} iteration(s): {res.message}. The parameters of "
            "the last finite iterate are kept. Scale the inputs or increase alpha.",
            DivergenceWarning,
        )
    elif res.status != 0 and not stopped_by_callback[0]:
        warnings.warn(
            f"{solver} failed to converge after {est.n_iter_} iteration(s) "
            f"(status={res.status}): {res.message}. Increase max_iter"
            + (" or max_fun" if solver != "hf" else "") + ", or scale the data.",
            ConvergenceWarning,
        )
