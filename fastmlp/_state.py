"""What a fitted estimator's state must hold before it may predict or train.

``__setstate__`` runs these checks for pickle, joblib, skops and
``fastmlp.load`` alike. The compiled kernels trust the layer shapes they are
given (no bounds checks in the hot path), so a state whose shapes, output
count or optimiser buffers disagree is refused here, with a ValueError
naming the attribute, before it can reach them.
"""

from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp

OUTPUT_ACTIVATIONS = ("identity", "logistic", "softmax", "exp")
Y_TYPES = ("binary", "multiclass", "multilabel-indicator")
N_LOSS_CODES = 5
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
RESUME_KEYS = {"train_rows", "val_rows", "fingerprint"}
OPTIMIZER_STATE = ("_opt_state", "_opt_step", "_opt_lr", "_opt_epochs")


def _fail(attr, msg):
    raise ValueError(f"invalid fitted state: {attr} {msg}")


def _is_int(v):
    return isinstance(v, Integral) and not isinstance(v, (bool, np.bool_))


def _is_real(v):
    return isinstance(v, Real) and not isinstance(v, (bool, np.bool_))


def _expect_int(state, attr, value=None, minimum=0):
    v = state.get(attr)
    if not _is_int(v) or v < minimum:
        _fail(attr, f"must be an integer >= {minimum}, got {v!r}")
    if value is not None and v != value:
        _fail(attr, f"is {v} but the layers say {value}")


def _expect_array(state, attr, shape, dtype):
    v = state[attr]
    if not isinstance(v, np.ndarray) or v.shape != shape or v.dtype != dtype:
        got = (f"a {v.dtype} array of shape {v.shape}" if isinstance(v, np.ndarray)
               else type(v).__name__)
        _fail(attr, f"must be a {np.dtype(dtype)} array of shape {shape}, got {got}")


def _check_layers(state):
    coefs, intercepts = state.get("coefs_"), state.get("intercepts_")
    if not isinstance(coefs, list) or not coefs:
        _fail("coefs_", "must be a non-empty list of 2-D arrays")
    if not isinstance(intercepts, list) or len(intercepts) != len(coefs):
        _fail("intercepts_", f"must be a list of {len(coefs)} arrays, one per layer")
    dtype = None
    for l, (W, b) in enumerate(zip(coefs, intercepts)):
        if not (isinstance(W, np.ndarray) or sp.issparse(W)) or W.ndim != 2:
            _fail(f"coefs_[{l}]", f"must be a 2-D array, got {type(W).__name__}"
                  + (f" with {W.ndim} dimensions" if hasattr(W, "ndim") else ""))
        if W.dtype not in FLOAT_DTYPES:
            _fail(f"coefs_[{l}]", f"must be float32 or float64, is {W.dtype}")
        dtype = W.dtype if dtype is None else dtype
        if W.dtype != dtype:
            _fail(f"coefs_[{l}]", f"is {W.dtype} but coefs_[0] is {dtype}")
        if min(W.shape) < 1:
            _fail(f"coefs_[{l}]", f"has shape {W.shape}; every layer needs at least one unit")
        if sp.issparse(W):
            _check_pruned_layer(W, f"coefs_[{l}]")
        if l and W.shape[0] != coefs[l - 1].shape[1]:
            _fail(f"coefs_[{l}]", f"has {W.shape[0]} rows but layer {l - 1} has "
                  f"{coefs[l - 1].shape[1]} units")
        if not isinstance(b, np.ndarray) or b.shape != (W.shape[1],) or b.dtype != dtype:
            _fail(f"intercepts_[{l}]", f"must be a {dtype} array of shape ({W.shape[1]},)")
    # A pruned layer's parameters are its stored weights (fastmlp/_network.py).
    n_params = sum((W.nnz if sp.issparse(W) else W.shape[0] * W.shape[1]) + W.shape[1]
                   for W in coefs)
    return dtype, n_params


def _check_pruned_layer(W, attr):
    """A pruned layer: a CSC matrix in canonical form (the structure the
    sparse kernels index without bounds checks)."""
    if W.format != "csc":
        _fail(attr, f"must be a CSC matrix (a pruned layer), is {W.format.upper()}")
    n_in, n_out = W.shape
    indptr, indices, data = W.indptr, W.indices, W.data
    for name, a in (("indptr", indptr), ("indices", indices), ("data", data)):
        if not isinstance(a, np.ndarray) or a.ndim != 1:
            _fail(attr, f"{name} must be a 1-D array")
    if indptr.dtype.kind not in "iu" or indices.dtype.kind not in "iu":
        _fail(attr, f"indices and indptr must be integers, are {indices.dtype} and "
              f"{indptr.dtype}")
    nnz = data.shape[0]
    if indptr.shape[0] != n_out + 1:
        _fail(attr, f"indptr has {indptr.shape[0]} entries; {n_out} columns need {n_out + 1}")
    if indices.shape[0] != nnz:
        _fail(attr, f"has {indices.shape[0]} indices for {nnz} stored weights")
    if indptr[0] != 0 or indptr[-1] != nnz:
        _fail(attr, f"indptr must run from 0 to nnz={nnz}, runs from {indptr[0]} to "
              f"{indptr[-1]}")
    steps = np.diff(indptr.astype(np.int64))
    if (steps < 0).any():
        _fail(attr, "indptr is not non-decreasing")
    if nnz and (indices.min() < 0 or indices.max() >= n_in):
        _fail(attr, f"row indices must lie in [0, {n_in}), found {indices.min()} to "
              f"{indices.max()}")
    if nnz >= 2**31:
        _fail(attr, "has 2**31 or more stored weights")
    if nnz:
        cols = np.repeat(np.arange(n_out, dtype=np.int64), steps)
        if not (np.diff(cols * n_in + indices.astype(np.int64)) > 0).all():
            _fail(attr, "has unsorted or duplicate row indices within a column")


def check_fitted_state(state, classifier):
    """Raise ValueError unless a fitted state is coherent.

    Parameters
    ----------
    state : dict
        ``__getstate__``'s dict. Unfitted states (no ``coefs_``) pass.
    classifier : bool
    """
    if "coefs_" not in state:
        return
    dtype, n_params = _check_layers(state)
    check_fitted_attributes(state, classifier, dtype, n_params)


def check_fitted_attributes(state, classifier, dtype, n_params):
    """The checks of :func:`check_fitted_state` that follow the layers'.

    For a loader that built ``coefs_`` and ``intercepts_`` itself from
    checked data (fastmlp/compression/_file.py), so that re-checking the
    layers would only repeat work. ``dtype`` and ``n_params``: the
    parameters' float dtype and count.
    """
    coefs = state["coefs_"]
    _expect_int(state, "n_features_in_", coefs[0].shape[0], minimum=1)
    _expect_int(state, "n_outputs_", coefs[-1].shape[1], minimum=1)
    _expect_int(state, "n_layers_", len(coefs) + 1, minimum=2)
    if state.get("out_activation_") not in OUTPUT_ACTIVATIONS:
        _fail("out_activation_", f"must be one of {OUTPUT_ACTIVATIONS}, got "
              f"{state.get('out_activation_')!r}")
    code = state.get("_loss_code")
    if not _is_int(code) or not 0 <= code < N_LOSS_CODES:
        _fail("_loss_code", f"must be an integer in [0, {N_LOSS_CODES}), got {code!r}")
    names = state.get("feature_names_in_")
    if names is not None and (not isinstance(names, np.ndarray)
                              or names.shape != (coefs[0].shape[0],)):
        _fail("feature_names_in_", f"must be an array of {coefs[0].shape[0]} names")
    if classifier:
        _check_classes(state)
    for attr in ("n_iter_", "t_", "_no_improvement_count"):
        if attr in state:
            _expect_int(state, attr)
    for attr in ("loss_curve_", "validation_scores_"):
        v = state.get(attr)
        if v is not None and (not isinstance(v, list) or not all(_is_real(x) for x in v)):
            _fail(attr, "must be a list of numbers")
    opt = [a for a in OPTIMIZER_STATE if a in state]
    if opt:
        if len(opt) != len(OPTIMIZER_STATE):
            _fail(", ".join(OPTIMIZER_STATE), "must be present together")
        _expect_array(state, "_opt_state", (2, n_params), dtype)
        _expect_array(state, "_opt_step", (1,), np.int64)
        if not _is_real(state["_opt_lr"]):
            _fail("_opt_lr", f"must be a number, got {state['_opt_lr']!r}")
        _expect_int(state, "_opt_epochs")
    if "_rng_streams" in state:
        _expect_array(state, "_rng_streams", (2,), np.uint64)
    if "_best_theta" in state:
        _expect_array(state, "_best_theta", (n_params,), dtype)
    if "_resume" in state:
        _check_resume_record(state["_resume"])


def _check_classes(state):
    classes, y_type = state.get("classes_"), state.get("_y_type")
    if not isinstance(classes, np.ndarray) or classes.ndim != 1 or classes.size < 1:
        _fail("classes_", "must be a non-empty 1-D array")
    if y_type not in Y_TYPES:
        _fail("_y_type", f"must be one of {Y_TYPES}, got {y_type!r}")
    n_out = state["n_outputs_"]
    if y_type == "binary":
        if n_out != 1 or classes.size > 2:
            _fail("classes_", f"has {classes.size} classes for a binary model with "
                  f"{n_out} outputs (1 output, at most 2 classes expected)")
    elif classes.size != n_out or n_out < 2:
        _fail("classes_", f"has {classes.size} classes but the network has {n_out} outputs")


def _check_resume_record(record):
    if not isinstance(record, dict) or set(record) != RESUME_KEYS:
        _fail("_resume", f"must be a dict with keys {sorted(RESUME_KEYS)}")
    for key in ("train_rows", "val_rows"):
        rows = record[key]
        if rows is None and key == "val_rows":
            continue
        # A row count: all rows, in the epochs' keyed order (no index).
        if key == "train_rows" and isinstance(rows, int) and not isinstance(rows, bool):
            if rows < 0:
                _fail("_resume['train_rows']", f"must be a row count >= 0, got {rows}")
            continue
        # uint16 and int32: the epoch's narrow row indices (up to 65536
        # rows, fewer than 2**31).
        if (not isinstance(rows, np.ndarray) or rows.ndim != 1
                or rows.dtype not in (np.uint16, np.int32, np.int64)):
            _fail(f"_resume[{key!r}]", "must be a 1-D uint16, int32 or int64 array"
                  + (" or a row count" if key == "train_rows" else ""))
    if not isinstance(record["fingerprint"], dict):
        _fail("_resume['fingerprint']", "must be a dict")
