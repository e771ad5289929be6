"""``.fmz`` files: a compressed model in the fastmlp model-file container.

The file is the container of fastmlp/_container.py (its magic, version,
checksums and checks) with kind ``fastmlp.compressed``, metadata
``{"format": 2}`` and one uint8 section, ``model``, laid out as

==========  ==============================================================
field       content
==========  ==============================================================
state       the state document (_header.py: two varint lengths, then raw
            DEFLATE of JSON): ``class``, ``fastmlp_version``, ``dtype``
            (the estimator's float dtype) and ``state``, the estimator's
            state as ``fastmlp.save`` encodes it (arrays inline) minus the
            parameters, the optimiser state, the training curves, the
            hyperparameters left at their defaults and what the layers
            determine (see ``DERIVED``)
layers      varint input count, varint layer count, one binary entry per
            layer (_header.py)
per layer   float32 codebook (or linear [lo, step]); float32 bias levels
            [lo, step] (or the float32 biases); the layer's weight,
            position and bias streams (_streams.py)
==========  ==============================================================

The container's CRC-32 covers the section, so a corrupt file fails there;
what a forged file declares is checked field by field before it is used.
Format 1 (JSON layer metadata, November 2026 development builds) is
refused by name.

Loading decodes the layers once, in compiled code (src/_huffman.pyx,
src/_sparse_positions.pyx), and builds the fitted estimator directly: its
parameters as ordinary arrays (pruned layers as scipy.sparse CSC for the
sparse kernels), its layout from the decoded structure, and only what the
file declares checked — the stored hyperparameters against their
constraints, the fitted attributes as ``__setstate__`` checks them. Why the
compressed form is not kept for inference: README, "Compression".
"""

import functools
import inspect
import os

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.utils._param_validation import validate_parameter_constraints

from .. import _container, _persist
from .._memory import check_memory
from .._network import Layout
from .._state import check_fitted_attributes
from ..exceptions import ModelFileError
from . import _header
from ._huffman import CodeError
from ._layers import decode_layer

KIND = "fastmlp.compressed"
FORMAT = 2
# Decoded sizes above which loading checks the free memory first (below,
# reading /proc/meminfo would cost more than the allocation risks).
CHECKED_ABOVE = 16 << 20
SECTION = "model"
DOCUMENT_KEYS = {"class", "fastmlp_version", "dtype", "state"}
# Kept even at their defaults: they decide what the network computes.
ALWAYS_KEPT = {"activation", "negative_slope", "loss"}
# Training-time state that describes the uncompressed parameters.
DROPPED = {"coefs_", "intercepts_", "_optimizer", "_best_theta", "_opt_state", "_opt_step",
           "_opt_lr", "_opt_epochs", "_resume", "_random_state", "_rng_streams", "callbacks"}
CURVES = ("loss_curve_", "validation_scores_")


def _units(est):
    return [est.coefs_[0].shape[0]] + [W.shape[1] for W in est.coefs_]


# What the layers determine, from the units and the (partial) estimator:
# left out on saving when equal, filled in on loading.
DERIVED = {
    "hidden_layer_sizes": lambda units, est: tuple(units[1:-1]),
    "n_features_in_": lambda units, est: units[0],
    "n_outputs_": lambda units, est: units[-1],
    "n_layers_": lambda units, est: len(units),
    "out_activation_": lambda units, est: est._output_spec(None)[0],
    "_loss_code": lambda units, est: est._output_spec(None)[1],
}


def _same(a, b):
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
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
    units = _units(est)
    out = {}
    for key, value in state.items():
        if key in DROPPED:
            continue
        if key in defaults and key not in ALWAYS_KEPT and _same(value, defaults[key]):
            continue
        if key in DERIVED and _same(value, DERIVED[key](units, est)):
            continue
        if key in CURVES and isinstance(value, list):
            value = []  # the curves of the uncompressed training
        out[key] = value
    return out


def file_bytes(model):
    """The ``model`` section of a :class:`CompressedModel`'s file."""
    from .. import __version__

    est = model.estimator
    encoded = model.encoded()
    doc = {"class": type(est).__name__, "fastmlp_version": __version__,
           "dtype": est._theta.dtype.name,
           "state": _persist._Encoder(inline_arrays=True).encode(stored_state(est), "state")}
    parts = [_header.pack_document(doc),
             _header.pack_layers(est.coefs_[0].shape[0], [e for e, _, _ in encoded])]
    for _, floats, streams in encoded:
        parts.append(np.asarray(floats, dtype="<f4").tobytes())
        parts.extend(streams)
    return b"".join(parts)


def save(model, path):
    """Write a :class:`CompressedModel` to ``path``, atomically.

    Parameters
    ----------
    model : CompressedModel
    path : str or os.PathLike
        Conventionally ``*.fmz``.
    """
    from ._compress import CompressedModel

    if not isinstance(model, CompressedModel):
        raise TypeError(f"expected a CompressedModel (from fastmlp.compression.compress), "
                        f"got {type(model).__name__}")
    blob = np.frombuffer(file_bytes(model), dtype=np.uint8)
    _container.write(path, KIND, {"format": FORMAT}, {SECTION: blob})


def load(path):
    """Load a ``.fmz`` file written by :func:`save` as a fitted estimator
    (``fastmlp.load`` reads it too); it predicts bit-identically to the
    saved ``CompressedModel.estimator``.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.fmz`` file.

    Returns
    -------
    estimator : MLPClassifier or MLPRegressor
        Fitted, its parameters the compressed ones (pruned layers sparse).

    Raises
    ------
    fastmlp.ModelFileError
        Not a valid compressed model (another kind of model file, truncated,
        corrupt, forged or inconsistent); the message says what is wrong.
    """
    return _persist.read(path, kinds=(KIND,))


def from_contents(path, contents):
    """The estimator of a compressed model file already read by the
    container reader (``fastmlp.load``'s loader for its kind)."""
    meta = contents.meta
    if meta != {"format": FORMAT}:
        if "layers" in meta:
            raise ModelFileError(f"{path}: a .fmz file of format 1 (a development build's "
                                 f"JSON layout); this fastmlp reads format {FORMAT}: "
                                 f"compress the model again")
        raise ModelFileError(f"{path}: the metadata must be {{'format': {FORMAT}}}, got "
                             f"{meta!r} (a newer fastmlp's file?)")
    blob = contents.arrays.get(SECTION)
    if (set(contents.arrays) != {SECTION} or contents.sparse or blob.dtype != np.uint8
            or blob.ndim != 1):
        raise ModelFileError(f"{path}: a compressed model holds exactly one 1-D uint8 "
                             f"section {SECTION!r}")
    reader = _header.ByteReader(blob.tobytes())
    try:
        doc = _header.unpack_document(reader)
        _, entries = _header.unpack_layers(reader)
        needed = decoded_bytes(entries)
        if needed > CHECKED_ABOVE:
            check_memory(needed, f"loading {path}")
        codes = [decode_layer(e, reader, l) for l, e in enumerate(entries)]
        if reader.left():
            raise CodeError(f"{reader.left()} bytes after the last layer")
    except CodeError as exc:
        raise ModelFileError(f"{path}: {exc}") from None
    if not isinstance(doc, dict) or set(doc) != DOCUMENT_KEYS:
        raise ModelFileError(f"{path}: the state document must hold {sorted(DOCUMENT_KEYS)}")
    cls = _persist.estimator_class(path, doc["class"])
    if doc["dtype"] not in ("float32", "float64"):
        raise ModelFileError(f"{path}: dtype must be 'float32' or 'float64', "
                             f"got {doc['dtype']!r}")
    state = _persist._Decoder(path, _container.Contents(KIND, {}, {}, {}, None)).decode(
        doc["state"], "state")
    if not isinstance(state, dict) or DROPPED & set(state):
        raise ModelFileError(f"{path}: the stored state must be a dict without parameters "
                             f"or training state")
    try:
        return _estimator(cls, np.dtype(doc["dtype"]), state, codes)
    except (KeyError, ValueError, TypeError) as exc:
        raise ModelFileError(f"{path}: the stored model is inconsistent: "
                             f"{type(exc).__name__}: {exc}") from None


def decoded_bytes(entries):
    """About the bytes that decoding and building the estimator allocate,
    from the layer entries alone (counts clamped to their valid ranges:
    decode_layer reports invalid ones). A few KB of stream can declare a
    layer of 2**31 x 2**31 weights; a valid but huge model must fail at
    once with MemoryError, not page the machine."""
    total = 0
    for e in entries:
        n_in, n_out = e["shape"]
        size = n_in * n_out
        if e["nnz"] is None:
            # symbols (int32), float32 weights, theta (float64)
            total += 16 * size
        else:
            nnz = min(e["nnz"], size)
            gaps = min(e["gaps"], nnz + size)
            # symbols, weights, theta, row indices and the kernels' CSC/CSR
            # tables (five int32 per weight); gap symbols; column pointers
            total += 36 * nnz + 4 * gaps + 8 * (n_in + n_out + 2)
        total += 24 * n_out  # biases: symbols, float32, theta
    return total


def _estimator(cls, dtype, stored, codes):
    """The fitted estimator of a decoded file, built directly.

    ``__setstate__`` would check every layer's structure and every
    hyperparameter again (about half the load time of a small model); here
    the layers come from the decoder, which checked them as it built them,
    and the defaults are valid by definition. What remains to check is what
    the file declares: its hyperparameters and fitted attributes.
    """
    defaults = _defaults(cls)
    given = {k: stored[k] for k in stored if k in defaults}
    validate_parameter_constraints(
        {k: cls._parameter_constraints[k] for k in given if k in cls._parameter_constraints},
        given, caller_name=cls.__name__)
    est = cls.__new__(cls)
    state = est.__dict__
    state.update(defaults)
    state.update(stored)
    units = [codes[0].shape[0]] + [c.shape[1] for c in codes]
    for key, derive in DERIVED.items():
        if key not in state or key in defaults and key not in given:
            state[key] = derive(units, est)
    if est._hidden_sizes() != units[1:-1]:
        raise ValueError(f"hidden_layer_sizes {est.hidden_layer_sizes!r} does not match "
                         f"the layers' units {units}")
    layout = Layout(units, est._layer_activations(len(codes)), est.negative_slope,
                    [c.csc for c in codes])
    theta = np.empty(layout.n_params, dtype=dtype)
    for l, c in enumerate(codes):
        theta[layout.coef_slice(l)] = c.weights()
        theta[layout.intercept_slice(l)] = c.biases()
    state["_theta_vec"], state["_layout_obj"] = theta, layout
    state["coefs_"], state["intercepts_"] = layout.views(theta)
    check_fitted_attributes(state, isinstance(est, ClassifierMixin), dtype, theta.size)
    return est
