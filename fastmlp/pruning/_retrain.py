"""Retraining with the sparsity pattern fixed, and prune-retrain schedules."""

import warnings
from numbers import Integral

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from ._magnitude import layer_targets, prune_magnitude
from ._rebuild import check_fitted_mlp


def retrain(estimator, X, y, *, epochs, sample_weight=None, learning_rate_init=None):
    """Train a (pruned) estimator further with its sparsity pattern fixed.

    Runs the estimator's own solver, as ``fit`` with ``warm_start=True``
    would, for ``epochs`` epochs (iterations for 'lbfgs'): only the
    surviving weights and the biases are parameters, so removed weights stay
    removed, and the optimiser's state has one entry per surviving weight.
    Its stopping rules (``tol``, ``n_iter_no_change``, ``early_stopping``)
    apply as in ``fit``. The estimator's parameters are left as they were.

    Parameters
    ----------
    estimator : fitted MLPClassifier or MLPRegressor
    X, y : training data, as for ``fit``.
    epochs : int >= 1
    sample_weight : array-like of shape (n_samples,), default=None
    learning_rate_init : float, default=None
        Learning rate for this retraining (default: the estimator's).
        Han et al. (2015) retrain at a lower rate than the original training.

    Returns
    -------
    estimator
    """
    check_fitted_mlp(estimator)
    if not isinstance(epochs, (Integral, np.integer)) or isinstance(epochs, bool) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
    saved = {k: getattr(estimator, k) for k in ("warm_start", "max_iter", "learning_rate_init")}
    changes = {"warm_start": True, "max_iter": int(epochs)}
    if learning_rate_init is not None:
        changes["learning_rate_init"] = learning_rate_init
    estimator.set_params(**changes)
    try:
        with warnings.catch_warnings():
            # A fixed number of epochs is the point here, not convergence.
            warnings.filterwarnings("ignore", category=ConvergenceWarning)
            if sample_weight is None:
                estimator.fit(X, y)
            else:
                estimator.fit(X, y, sample_weight=sample_weight)
    finally:
        estimator.set_params(**saved)
    return estimator


def sparsity_schedule(sparsity, steps):
    """Targets of an iterative schedule reaching ``sparsity`` in ``steps``.

    Each step removes the same fraction of the weights that remain, so the
    density after step k is ``(1 - sparsity) ** (k / steps)``: the early
    steps, on a still redundant network, remove the most weights.

    Returns
    -------
    list of float (or of arrays, for per-layer sparsities), increasing.
    """
    if not isinstance(steps, (Integral, np.integer)) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    target = np.asarray(sparsity, dtype=float)
    if not np.all((target >= 0) & (target < 1)):
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity!r}")
    out = [1 - (1 - target) ** (k / steps) for k in range(1, steps + 1)]
    out[-1] = target  # exactly the target, whatever the rounding
    return [float(s) if s.ndim == 0 else s for s in out]


def prune_retrain(estimator, X, y, sparsity, *, steps=1, schedule=None, retrain_epochs=10,
                  scope="layer", keep_output_dense=False, learning_rate_init=None,
                  sample_weight=None, callback=None):
    """Iterative pruning (Han et al., 2015): prune, retrain, repeat.

    At each step of the schedule the smallest weights are removed
    (:func:`prune_magnitude`) and the network is retrained with the new
    sparsity pattern fixed (:func:`retrain`). In place.

    Parameters
    ----------
    estimator : fitted MLPClassifier or MLPRegressor
    X, y : training data, as for ``fit``.
    sparsity : float or sequence of float in [0, 1)
        Final fraction of weights removed (per layer, or in total with
        ``scope='global'``).
    steps : int, default=1
        Number of prune-retrain rounds, on :func:`sparsity_schedule`.
    schedule : sequence, default=None
        Explicit increasing sparsity targets, instead of ``steps``; the last
        must be ``sparsity``.
    retrain_epochs : int, default=10
        Epochs (iterations for 'lbfgs') after each pruning step; 0: none.
    scope, keep_output_dense : as for :func:`prune_magnitude`.
    learning_rate_init : float, default=None
        Learning rate for retraining (default: the estimator's).
    sample_weight : array-like, default=None
    callback : callable(step, target, estimator) or None
        Called after each round.

    Returns
    -------
    estimator
    """
    check_fitted_mlp(estimator)
    n_layers = len(estimator.coefs_)
    final = layer_targets(sparsity, n_layers, False)
    if schedule is None:
        schedule = sparsity_schedule(sparsity, steps)
    else:
        schedule = list(schedule)
        if not schedule:
            raise ValueError("schedule must hold at least one sparsity")
        levels = [layer_targets(s, n_layers, False, name="schedule") for s in schedule]
        if any(np.any(b < a) for a, b in zip(levels[:-1], levels[1:])):
            raise ValueError(f"schedule must be increasing, got {schedule!r}")
        if not np.allclose(levels[-1], final):
            raise ValueError(f"schedule must end at sparsity={sparsity!r}, got {schedule!r}")
    if not isinstance(retrain_epochs, (Integral, np.integer)) or retrain_epochs < 0:
        raise ValueError(f"retrain_epochs must be an integer >= 0, got {retrain_epochs!r}")
    for step, target in enumerate(schedule, 1):
        prune_magnitude(estimator, target, scope=scope, keep_output_dense=keep_output_dense)
        if retrain_epochs:
            retrain(estimator, X, y, epochs=int(retrain_epochs), sample_weight=sample_weight,
                    learning_rate_init=learning_rate_init)
        if callback is not None:
            callback(step, target, estimator)
    return estimator
