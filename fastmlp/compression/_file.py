"""``.fmz`` files: a compressed model in the fastmlp model-file container.

The file is the container of fastmlp/_container.py (its magic, version,
checksums and checks) with kind ``fastmlp.compressed``. Its metadata holds:

``class``, ``fastmlp_version``
    as in ``fastmlp.save`` files
``dtype``
    the estimator's float dtype (``float32`` or ``float64``)
``state``
    the estimator's state as ``fastmlp.save`` encodes it, minus the
    parameters, the optimiser state, the training curves and the
    hyperparameters left at their defaults (the loader fills those in)
``layers``
    per layer, its geometry and how its streams are coded
    (fastmlp/compression/_layers.py: ``ENTRY_KEYS``)

and two sections besides the state's arrays: ``tables`` (float32: each
layer's codebook or [lo, step], then its bias levels or float32 biases) and
``payload`` (uint8: each layer's weight, position and bias streams, end to
end). Loading decodes the layers once and gives the estimator ordinary
parameters (pruned layers as scipy.sparse CSC): the compressed form is for
storage, the sparse kernels for inference.
"""

import functools
import inspect
import os

import numpy as np

from .. import _container, _persist
from .._network import Layout
from ..exceptions import ModelFileError
from ._huffman import CodeError
from ._layers import Reader, decode_layer

KIND = "fastmlp.compressed"
META_KEYS = {"class", "fastmlp_version", "dtype", "state", "layers"}
# Kept even at their defaults: they decide what the network computes.
ALWAYS_KEPT = {"hidden_layer_sizes", "activation", "negative_slope", "loss"}
# Training-time state that describes the uncompressed parameters.
DROPPED = {"coefs_", "intercepts_", "_optimizer", "_best_theta", "_opt_state", "_opt_step",
           "_opt_lr", "_opt_epochs", "_resume", "_random_state", "_rng_streams", "callbacks"}
CURVES = ("loss_curve_", "validation_scores_")


def _same(a, b):
    return type(a) is type(b) and a == b


@functools.lru_cache(maxsize=None)
def _defaults(cls):
    """{hyperparameter: default} of an estimator class (one signature read)."""
    params = inspect.signature(cls.__init__).parameters
    return {name: params[name].default for name in cls._get_param_names()}


def stored_state(est):
    """The estimator state a ``.fmz`` file keeps (no parameters)."""
    state = est.__getstate__()
    defaults = _defaults(type(est))
    out = {}
    for key, value in state.items():
        if key in DROPPED:
            continue
        if key in defaults and key not in ALWAYS_KEPT and _same(value, defaults[key]):
            continue
        if key in CURVES and isinstance(value, list):
            value = []  # the curves of the uncompressed training
        out[key] = value
    return out


def save(model, path):
    """Write a :class:`CompressedModel` to ``path``, atomically.

    Parameters
    ----------
    model : CompressedModel
    path : str or os.PathLike
        Conventionally ``*.fmz``.
    """
    from .. import __version__
    from ._compress import CompressedModel

    if not isinstance(model, CompressedModel):
        raise TypeError(f"expected a CompressedModel (from fastmlp.compression.compress), "
                        f"got {type(model).__name__}")
    est = model.estimator
    enc = _persist._Encoder()
    encoded = model.encoded()
    meta = {"class": type(est).__name__, "fastmlp_version": __version__,
            "dtype": est._theta.dtype.name,
            "state": enc.encode(stored_state(est), "state"),
            "layers": [entry for entry, _, _ in encoded]}
    tables = np.concatenate([floats for _, floats, _ in encoded]).astype(np.float32)
    payload = np.frombuffer(b"".join(b"".join(streams) for _, _, streams in encoded),
                            dtype=np.uint8)
    arrays = dict(enc.arrays)
    for name in ("tables", "payload"):
        if name in arrays:  # cannot happen: the encoder's names start with 'state'
            raise RuntimeError(f"section name {name!r} taken")
    arrays["tables"] = tables
    arrays["payload"] = payload
    _container.write(path, KIND, meta, arrays, enc.sparse)


def _section(path, contents, name, dtype):
    arr = contents.arrays.pop(name, None)
    if arr is None or arr.dtype != dtype or arr.ndim != 1:
        raise ModelFileError(f"{path}: a compressed model needs a 1-D {np.dtype(dtype)} "
                             f"section {name!r}")
    return arr


def load(path):
    """Load a compressed model saved by :func:`save` as a fitted estimator.

    The weights are decoded once (pruned layers become scipy.sparse CSC
    matrices for the sparse kernels); predictions are bit-identical to
    those of the ``CompressedModel.estimator`` that was saved. Safe on
    files from anywhere: nothing in the file is imported, called or
    unpickled, every count is checked before it is trusted.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    estimator : MLPClassifier or MLPRegressor

    Raises
    ------
    fastmlp.ModelFileError
        The file is not a valid compressed model (wrong kind, truncated,
        corrupt, inconsistent); the message says why.
    """
    path = os.fspath(path)
    return from_contents(path, _container.read(path, kinds=(KIND,)))


def from_contents(path, contents):
    """The estimator of a compressed model file already read by the container
    reader (``fastmlp.load`` reads any fastmlp model file this way)."""
    meta = contents.meta
    if set(meta) != META_KEYS:
        raise ModelFileError(f"{path}: the metadata must hold {sorted(META_KEYS)}, "
                             f"it holds {sorted(meta)}")
    name = meta["class"]
    cls = _persist.ESTIMATORS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ModelFileError(f"{path}: unknown estimator class {name!r}; this fastmlp "
                             f"loads {', '.join(sorted(_persist.ESTIMATORS))}")
    if meta["dtype"] not in ("float32", "float64"):
        raise ModelFileError(f"{path}: dtype must be 'float32' or 'float64', "
                             f"got {meta['dtype']!r}")
    dtype = np.dtype(meta["dtype"])
    tables = _section(path, contents, "tables", np.float32)
    payload = _section(path, contents, "payload", np.uint8)
    entries = meta["layers"]
    if not isinstance(entries, list) or not entries:
        raise ModelFileError(f"{path}: 'layers' must be a non-empty list")
    reader = Reader(tables, payload)
    codes = []
    try:
        for l, entry in enumerate(entries):
            codes.append(decode_layer(entry, reader, l, codes[-1].shape[1] if codes else None))
        reader.done()
    except CodeError as exc:
        raise ModelFileError(f"{path}: {exc}") from None
    decoder = _persist._Decoder(path, contents)
    state = decoder.decode(meta["state"], "state")
    if not isinstance(state, dict) or "coefs_" in state or "intercepts_" in state:
        raise ModelFileError(f"{path}: the stored state must be a dict without parameters")
    for name, default in _defaults(cls).items():
        state.setdefault(name, default)  # left out on saving
    # The parameter vector and its layout, built once from the decoded
    # layers (the estimator would otherwise derive them from coefs_ twice).
    probe = cls.__new__(cls)
    probe.__dict__.update(state)
    try:
        layout = Layout([codes[0].shape[0]] + [c.shape[1] for c in codes],
                        probe._layer_activations(len(codes)), state["negative_slope"],
                        [c.structure() for c in codes])
    except (KeyError, ValueError, TypeError) as exc:
        raise ModelFileError(f"{path}: the stored model is inconsistent: "
                             f"{type(exc).__name__}: {exc}") from None
    theta = np.empty(layout.n_params, dtype=dtype)
    for l, c in enumerate(codes):
        theta[layout.coef_slice(l)] = c.weights()
        theta[layout.intercept_slice(l)] = c.biases()
    state["coefs_"], state["intercepts_"] = layout.views(theta)
    state["_theta_vec"], state["_layout_obj"] = theta, layout
    est = cls.__new__(cls)
    try:
        est.__setstate__(state)
    except (ValueError, TypeError) as exc:
        raise ModelFileError(f"{path}: the stored model is inconsistent: {exc}") from None
    unused = (set(contents.arrays) | set(contents.sparse)) - decoder.used
    if unused:
        raise ModelFileError(f"{path}: sections {sorted(unused)} are not part of the model")
    return est
