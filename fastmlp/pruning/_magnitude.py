"""Unstructured pruning: remove the weights of smallest magnitude."""

from numbers import Real

import numpy as np
import scipy.sparse as sp

from ._rebuild import check_fitted_mlp, index_views, rebuild, stored_entries, values_of


def layer_targets(sparsity, n_layers, keep_output_dense, name="sparsity"):
    """Per-layer target sparsities (output layer 0 with keep_output_dense)."""
    if isinstance(sparsity, (Real, np.floating, np.integer)) and not isinstance(sparsity, bool):
        targets = np.full(n_layers, float(sparsity))
    else:
        targets = np.asarray(sparsity, dtype=float)
        if targets.shape != (n_layers,):
            raise ValueError(
                f"{name} must be a number or one number per weight layer ({n_layers}), "
                f"got {sparsity!r}"
            )
    if not np.all((targets >= 0) & (targets < 1)):
        raise ValueError(f"{name} must be in [0, 1) (the fraction of weights removed), "
                         f"got {sparsity!r}")
    if keep_output_dense:
        targets[-1] = 0.0
    return targets


def prune_magnitude(estimator, sparsity, *, scope="layer", keep_output_dense=False):
    """Remove each layer's smallest-magnitude weights, in place.

    A pruned layer's ``coefs_[l]`` becomes a ``scipy.sparse.csc_matrix``
    holding the surviving weights (its ``data`` is a view into the model's
    parameters); predictions equal those of the dense network with the
    removed weights set to zero, and later training (:func:`retrain`,
    ``partial_fit``, ``fit`` with ``warm_start=True``) updates the survivors
    only. Pruning an already pruned layer removes further weights from the
    survivors; weights are never restored.

    Parameters
    ----------
    estimator : fitted MLPClassifier or MLPRegressor
    sparsity : float or sequence of float in [0, 1)
        Fraction of each layer's ``n_in * n_out`` weights to remove (a layer
        already sparser keeps its survivors). A sequence gives one target
        per weight layer (``scope='layer'`` only).
    scope : {'layer', 'global'}, default='layer'
        'layer': every layer reaches its target on its own. 'global': one
        magnitude threshold across the pruned layers, removing ``sparsity``
        of their weights in total (so layers with small weights lose more).
    keep_output_dense : bool, default=False
        Leave the output layer as it is.

    Returns
    -------
    estimator : the same estimator, pruned.
    """
    check_fitted_mlp(estimator)
    if scope not in ("layer", "global"):
        raise ValueError(f"scope must be 'layer' or 'global', got {scope!r}")
    if scope == "global" and not isinstance(sparsity, (Real, np.floating, np.integer)):
        raise ValueError("scope='global' takes one sparsity for all layers")
    idx_coefs, idx_intercepts = index_views(estimator)
    n_layers = len(idx_coefs)
    targets = layer_targets(sparsity, n_layers, keep_output_dense)
    layers = [l for l in range(n_layers) if not (keep_output_dense and l == n_layers - 1)]
    entries = {l: stored_entries(idx_coefs[l]) for l in layers}
    magnitudes = {l: np.abs(values_of(estimator, entries[l][2])) for l in layers}
    keep = {}
    if scope == "layer":
        for l in layers:
            n_keep = int(round((1 - targets[l]) * np.prod(idx_coefs[l].shape)))
            keep[l] = _largest(magnitudes[l], n_keep)
    elif layers:
        total = sum(int(np.prod(idx_coefs[l].shape)) for l in layers)
        n_keep = int(round((1 - float(sparsity)) * total))
        chosen = _largest(np.concatenate([magnitudes[l] for l in layers]), n_keep)
        bounds = np.cumsum([0] + [len(magnitudes[l]) for l in layers])
        for l, lo, hi in zip(layers, bounds[:-1], bounds[1:]):
            keep[l] = chosen[lo:hi]
    new_coefs = list(idx_coefs)
    for l in layers:
        rows, cols, pos = entries[l]
        W = idx_coefs[l]
        if keep[l].all() and not sp.issparse(W):
            continue  # a dense layer that loses nothing stays dense
        k = keep[l]
        new_coefs[l] = sp.csc_matrix((pos[k], (rows[k], cols[k])), shape=W.shape)
    return rebuild(estimator, new_coefs, idx_intercepts)


def _largest(values, n_keep):
    """Boolean mask of the n_keep largest values (ties: earlier first)."""
    mask = np.zeros(len(values), dtype=bool)
    n_keep = min(max(n_keep, 0), len(values))
    order = np.argsort(-values, kind="stable")
    mask[order[:n_keep]] = True
    return mask
