"""The compact binary header of a ``.fmz`` model: varints, the layer table
and the DEFLATE'd state document.

The header replaces per-file JSON that cost about 1.5 KB on a 7 KB digits
model (a fifth of the file): numbers are LEB128 varints (one byte below 128),
flags are bits, and what follows from other fields (a layer's input count,
a linear layer's table size, which streams exist) is not stored. See
fastmlp/compression/_file.py for where the header sits in the file.

Layer entry, one per layer, in order::

    varint  n_out
    byte    flags: 1 linear quantisation (else shared codebook), 2 pruned
            (a position stream), 4 float32 biases (else quantised); other
            bits must be 0
    varint  bits
    varint  table size                         (shared only; linear: 2)
    varint  nnz, skip, gap symbols             (pruned only)
    varint  bias bits                          (quantised biases only)
    byte    codecs: weights | positions << 2 | biases << 4, each an index
            into _streams.CODECS (absent streams: 0; bits 6-7: 0)
    varint  bytes of each stream present (weights, positions, biases)

:func:`unpack_layers` returns each entry as a dict with the keys of
``_layers.ENTRY_KEYS``, which ``_layers.decode_layer`` then checks;
:func:`pack_layers` writes such dicts, whatever their values (the tests
forge files with it).
"""

import json
import zlib

from .. import _container
from . import _streams
from ._huffman import CodeError

LINEAR, SPARSE, FLOAT_BIASES = 1, 2, 4
MAX_VARINT_BYTES = 9  # values below 2**63
# Bounds on what a header may declare, checked before anything is allocated.
MAX_LAYERS = 1 << 16
MAX_DOCUMENT = 1 << 26


class ByteReader:
    """Reads a ``bytes`` object front to back; CodeError, naming the field,
    if it ends early."""

    def __init__(self, data):
        self.data = data
        self.pos = 0

    def left(self):
        return len(self.data) - self.pos

    def take(self, n, what):
        if n > self.left():
            raise CodeError(f"truncated: {what} needs {n} bytes, {self.left()} left")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def byte(self, what):
        if self.pos >= len(self.data):
            raise CodeError(f"truncated: the data ends before {what}")
        self.pos += 1
        return self.data[self.pos - 1]

    def varint(self, what):
        value = shift = 0
        for _ in range(MAX_VARINT_BYTES):
            b = self.byte(what)
            value |= (b & 0x7F) << shift
            if b < 0x80:
                if b == 0 and shift:
                    raise CodeError(f"{what}: a varint with a redundant zero byte")
                return value
            shift += 7
        raise CodeError(f"{what}: a varint longer than {MAX_VARINT_BYTES} bytes")


def varint(value):
    """LEB128 bytes of a non-negative integer below 2**63."""
    value = int(value)
    if not 0 <= value < 1 << 63:
        raise ValueError(f"a varint holds integers in [0, 2**63), not {value}")
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# ------------------------------------------------------------------ layers
def _codec_index(codec):
    return 0 if codec is None else _streams.CODECS.index(codec)


def pack_layers(n_features, entries):
    """Bytes of the layer table: n_features, the layer count, the entries."""
    out = [varint(n_features), varint(len(entries))]
    for e in entries:
        sparse = e["nnz"] is not None
        linear = e["method"] == "linear"
        float_biases = e["bias_bits"] is None
        flags = LINEAR * linear | SPARSE * sparse | FLOAT_BIASES * float_biases
        out += [varint(e["shape"][1]), bytes([flags]), varint(e["bits"])]
        if not linear:
            out.append(varint(e["table"]))
        if sparse:
            out += [varint(e["nnz"]), varint(e["skip"]), varint(e["gaps"])]
        if not float_biases:
            out.append(varint(e["bias_bits"]))
        codecs = [_codec_index(c) for c in e["codecs"]]
        out.append(bytes([codecs[0] | codecs[1] << 2 | codecs[2] << 4]))
        out += [varint(n) for n in e["nbytes"] if n is not None]
    return b"".join(out)


def unpack_layers(reader):
    """(n_features, [entry dict]) read from a ByteReader."""
    n_features = reader.varint("the input count")
    n_layers = reader.varint("the layer count")
    if not 1 <= n_layers <= MAX_LAYERS:
        raise CodeError(f"the layer count must lie in [1, {MAX_LAYERS}], got {n_layers}")
    entries = []
    n_in = n_features
    for l in range(n_layers):
        what = f"layer {l}"
        n_out = reader.varint(f"{what} output count")
        flags = reader.byte(f"{what} flags")
        if flags & ~(LINEAR | SPARSE | FLOAT_BIASES):
            raise CodeError(f"{what}: unknown flag bits {flags:#04x}")
        linear, sparse = bool(flags & LINEAR), bool(flags & SPARSE)
        e = {"shape": [n_in, n_out], "method": "linear" if linear else "shared",
             "bits": reader.varint(f"{what} bits"), "nnz": None, "skip": None, "gaps": None,
             "bias_bits": None}
        e["table"] = 2 if linear else reader.varint(f"{what} table size")
        if sparse:
            for key in ("nnz", "skip", "gaps"):
                e[key] = reader.varint(f"{what} {key}")
        if not flags & FLOAT_BIASES:
            e["bias_bits"] = reader.varint(f"{what} bias bits")
        packed = reader.byte(f"{what} codecs")
        present = (True, sparse, e["bias_bits"] is not None)
        codecs = [packed & 3, packed >> 2 & 3, packed >> 4 & 3]
        if packed >> 6 or any(c and not p for c, p in zip(codecs, present)):
            raise CodeError(f"{what}: invalid codec byte {packed:#04x}")
        e["codecs"] = [_streams.CODECS[c] if p else None for c, p in zip(codecs, present)]
        e["nbytes"] = [reader.varint(f"{what} stream length") if p else None
                       for p in present]
        entries.append(e)
        n_in = n_out
    return n_features, entries


# ------------------------------------------------------------------ document
# DEFLATE's preset dictionary for the state document: the strings a state
# is made of, so that a typical one (~500 bytes of JSON) packs into ~60
# bytes, not ~300. Part of format 2: never edit it (a new dictionary is a
# new format). Commoner strings last (DEFLATE reaches them by shorter
# distances).
DOCUMENT_DICTIONARY = (
    b'"feature_names_in_":{"$":"strings","dtype":"<U","shape":[],"items":['
    b'"class_weight":"balanced","dropout":,"l1":,"init":"glorot","checkpoint":'
    b'"curvature":"gauss_newton","curvature_batch_size":,"damping":,"max_cg_iter":'
    b'"solver":"sgd","lbfgs","bfgs","hessian_free","adam","momentum":0.9,'
    b'"nesterovs_momentum":false,"power_t":0.5,"rho":,"lr_decay":,"lr_min":,'
    b'"lr_step_size":,"max_fun":15000,"learning_rate":"invscaling","adaptive",'
    b'"learning_rate_init":0.001,"batch_size":"auto","alpha":0.0001,"tol":0.0001,'
    b'"shuffle":false,"verbose":true,"warm_start":true,"early_stopping":true,'
    b'"validation_fraction":0.1,"n_iter_no_change":10,"beta_1":0.9,"beta_2":0.999,'
    b'"epsilon":1e-08,"hidden_layer_sizes":{"$":"tuple","items":[100]},'
    b'"loss":"squared_error","poisson","hinge","activation":"identity","logistic",'
    b'"tanh","leaky_relu","_y_type":"binary","multilabel-indicator",'
    b'{"class":"MLPRegressor","fastmlp_version":"0.1.0","dtype":"float32",'
    b'"state":{"$":"dict","items":{"activation":"relu","max_iter":200,'
    b'"loss":"log_loss","random_state":0,"negative_slope":0.01,"n_threads":1,'
    b'"classes_":{"$":"values","dtype":"<i8","shape":[10],'
    b'"items":[0,1,2,3,4,5,6,7,8,9]},"_y_type":"multiclass","n_iter_":,"t_":,'
    b'"loss_curve_":[],"_no_improvement_count":0,"best_loss_":{"$":"float","v":"inf"},'
    b'"validation_scores_":null,"best_validation_score_":null,"loss_":0.'
)


def pack_document(doc):
    """A JSON document (no NaN/inf), DEFLATE'd with the preset dictionary,
    behind its two lengths."""
    text = json.dumps(doc, separators=(",", ":"), allow_nan=False).encode("utf-8")
    c = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zdict=DOCUMENT_DICTIONARY)
    packed = c.compress(text) + c.flush()
    return varint(len(text)) + varint(len(packed)) + packed


def unpack_document(reader):
    """The JSON document :func:`pack_document` wrote, read from a ByteReader;
    CodeError unless it inflates to exactly its declared length and parses."""
    size = reader.varint("the state's length")
    if size > MAX_DOCUMENT:
        raise CodeError(f"the state declares {size} bytes, more than the {MAX_DOCUMENT} "
                        f"allowed")
    packed = reader.take(reader.varint("the state's packed length"), "the state")
    d = zlib.decompressobj(-15, zdict=DOCUMENT_DICTIONARY)
    try:
        text = d.decompress(packed, size)
    except zlib.error as exc:
        raise CodeError(f"the state is not valid DEFLATE data ({exc})") from None
    if len(text) != size or not d.eof or d.unused_data or d.unconsumed_tail:
        raise CodeError(f"the state does not inflate to exactly its {size} bytes")
    try:
        return json.loads(text.decode("utf-8"), parse_constant=_container.refuse_constant,
                          parse_float=_container.finite_float)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CodeError(f"the state is not valid JSON: {exc}") from None
