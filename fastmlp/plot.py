"""Pictures of a fitted network: training curves, weight magnitudes, and
the pattern of zero (pruned) weights.

Each function draws on ``ax`` (a new figure's axes when None) and returns
the matplotlib Axes. matplotlib is optional: ``pip install 'fastmlp[plot]'``.
To save without a display, draw on a ``matplotlib.figure.Figure`` (or use
the Agg backend)::

    from matplotlib.figure import Figure
    fig = Figure(figsize=(6, 4))
    fastmlp.plot.loss_curve(model, ax=fig.subplots())
    fig.savefig("curves.png")
"""

import numpy as np
import scipy.sparse as sp
from sklearn.utils.validation import check_is_fitted

__all__ = ["loss_curve", "weight_histogram", "sparsity"]


def _axes(ax):
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError(
            "fastmlp.plot needs matplotlib: pip install 'fastmlp[plot]' "
            "(or pip install matplotlib)."
        ) from None
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots()
    return ax


def loss_curve(estimator, ax=None):
    """Training loss per epoch, with the validation loss and score when the
    fit recorded them.

    The validation loss comes from a :class:`fastmlp.callbacks.History`
    callback (``validation_loss_curve_``); the validation score from
    ``early_stopping=True`` (``validation_scores_``, on a second y axis).

    Parameters
    ----------
    estimator : fitted MLPClassifier or MLPRegressor
    ax : matplotlib Axes or None

    Returns
    -------
    ax : matplotlib Axes (the loss axis)
    """
    check_is_fitted(estimator, "coefs_")
    curve = getattr(estimator, "loss_curve_", None)
    if not curve:
        raise ValueError(f"{type(estimator).__name__} has no loss_curve_ to plot.")
    ax = _axes(ax)
    unit = "iteration" if estimator.solver == "lbfgs" else "epoch"
    epochs = np.arange(1, len(curve) + 1)
    lines = ax.plot(epochs, curve, label="training loss")
    val_loss = getattr(estimator, "validation_loss_curve_", None)
    if val_loss:
        # A History may have joined after earlier warm-started fits: align right.
        lines += ax.plot(epochs[len(curve) - len(val_loss):], val_loss,
                         label="validation loss")
    ax.set_xlabel(unit)
    ax.set_ylabel("loss")
    scores = getattr(estimator, "validation_scores_", None)
    if scores:
        twin = ax.twinx()
        lines += twin.plot(epochs[len(curve) - len(scores):], scores, color="C2",
                           linestyle="--", label="validation score")
        twin.set_ylabel("validation score")
    # Right of centre is free: the loss falls low, the score climbs high.
    ax.legend(lines, [l.get_label() for l in lines], loc="center right")
    ax.set_title(f"{type(estimator).__name__}: training curves")
    return ax


def _weights(estimator):
    """Every weight layer as (dense 1-D values of its stored entries, total size)."""
    check_is_fitted(estimator, "coefs_")
    out = []
    for W in estimator.coefs_:
        if sp.issparse(W):
            out.append((np.asarray(W.tocoo().data), W.shape[0] * W.shape[1]))
        else:
            W = np.asarray(W)
            out.append((W.ravel(), W.size))
    return out


def weight_histogram(estimator, other=None, ax=None, bins=60, labels=None):
    """Histogram of weight magnitudes |w| (all layers, biases excluded).

    Zero weights (pruned, or absent from a sparse layer) are left out of the
    histogram and counted in the legend. With ``other`` (the same network
    after pruning, say) both histograms share the bins.

    Parameters
    ----------
    estimator : fitted MLPClassifier or MLPRegressor
    other : fitted estimator or None
    ax : matplotlib Axes or None
    bins : int
        Number of logarithmically spaced bins.
    labels : (str, str) or None
        Legend names; default ('before', 'after') with two models.

    Returns
    -------
    ax : matplotlib Axes
    """
    models = [estimator] if other is None else [estimator, other]
    if labels is None:
        labels = ["weights"] if other is None else ["before", "after"]
    ax = _axes(ax)
    mags, totals = [], []
    for m in models:
        layers = _weights(m)
        values = np.concatenate([np.abs(v) for v, _ in layers])
        mags.append(values[values > 0])
        totals.append(sum(n for _, n in layers))
    nonzero = np.concatenate(mags)
    if nonzero.size == 0:
        raise ValueError("every weight is zero: nothing to plot.")
    lo, hi = nonzero.min(), nonzero.max()
    edges = np.geomspace(lo, hi * (1 + 1e-9), bins + 1) if hi > lo else np.array([lo * 0.9, lo * 1.1])
    for values, total, label in zip(mags, totals, labels):
        ax.hist(values, bins=edges, histtype="stepfilled" if len(models) == 1 else "step",
                linewidth=1.5, label=f"{label}: {values.size:,} nonzero of {total:,}")
    ax.set_xscale("log")
    ax.set_xlabel("|weight|")
    ax.set_ylabel("weights")
    ax.legend(loc="best")
    ax.set_title("weight magnitudes")
    return ax


def _pattern(W):
    """Boolean (fan_in, fan_out) array: True where a weight exists.

    Dense layers: the nonzero entries. scipy.sparse layers: the stored
    entries (a pruned layer's survivors, even one that is exactly zero).
    """
    if sp.issparse(W):
        coo = W.tocoo()
        mask = np.zeros(W.shape, dtype=bool)
        mask[coo.row, coo.col] = True
        return mask
    return np.asarray(W) != 0


def sparsity(estimator, ax=None):
    """The pattern of zero (pruned) weights of every layer, side by side.

    Layer l is drawn as its (fan_in x fan_out) matrix, inputs down and
    outputs across, dark where a weight exists and white where it is zero
    or pruned; its density is written above it.

    Parameters
    ----------
    estimator : fitted MLPClassifier or MLPRegressor
    ax : matplotlib Axes or None

    Returns
    -------
    ax : matplotlib Axes
    """
    check_is_fitted(estimator, "coefs_")
    ax = _axes(ax)
    x0 = 0.0
    gap = 0.08 * max(W.shape[1] for W in estimator.coefs_)
    height = max(W.shape[0] for W in estimator.coefs_)
    for l, W in enumerate(estimator.coefs_):
        mask = _pattern(W)
        n_in, n_out = mask.shape
        ax.imshow(mask, cmap="Greys", vmin=0, vmax=1, interpolation="nearest",
                  extent=(x0, x0 + n_out, n_in, 0), aspect="auto")
        ax.text(x0 + n_out / 2, -0.02 * height, f"layer {l}\n{mask.mean():.1%} nonzero",
                ha="center", va="bottom", fontsize=8)
        x0 += n_out + gap
    ax.set_xlim(-gap / 2, x0 - gap / 2)
    ax.set_ylim(height, -0.12 * height)
    ax.set_xlabel("output unit (per layer)")
    ax.set_ylabel("input unit")
    ax.set_title("weight pattern (dark: nonzero)", pad=18)
    return ax
