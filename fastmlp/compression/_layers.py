"""One layer in compressed form, and its encoding into bytes.

A layer's weights are stored in theta's order for that layer: row-major
``n_in x n_out`` for a dense layer; for a pruned layer, the survivors in
canonical CSC order, whose flat column-major positions ``col * n_in + row``
increase, so the sparsity pattern is a stream of gaps between them.
"""

from dataclasses import dataclass

import numpy as np

from . import _streams
from ._huffman import CodeError
from ._quantize import dequantize


@dataclass
class LayerCode:
    """A compressed layer.

    Attributes
    ----------
    shape : (n_in, n_out)
    method : 'shared' (codebook) or 'linear' (lo + q * step)
    bits : int, bits per weight before entropy coding
    table : float32 ndarray, the codebook or [lo, step]
    symbols : int32 ndarray, one per stored weight, in theta's order
    positions : int64 ndarray or None, flat CSC positions of a pruned layer
    bias_bits : int or None, None: biases kept as float32
    bias_table : float32 ndarray, [lo, step], or the float32 biases
    bias_symbols : int32 ndarray or None
    """

    shape: tuple
    method: str
    bits: int
    table: np.ndarray
    symbols: np.ndarray
    positions: np.ndarray
    bias_bits: int
    bias_table: np.ndarray
    bias_symbols: np.ndarray

    @property
    def alphabet(self):
        return self.table.size if self.method == "shared" else 1 << self.bits

    @property
    def n_weights(self):
        return self.symbols.size

    def weights(self):
        """The stored weights, float32, in theta's order."""
        return dequantize(self.method, self.table, self.symbols)

    def biases(self):
        if self.bias_bits is None:
            return self.bias_table
        return dequantize("linear", self.bias_table, self.bias_symbols)

    def structure(self):
        """(indptr, indices) of the CSC pattern, int32; None if dense."""
        if self.positions is None:
            return None
        n_in, n_out = self.shape
        cols, rows = np.divmod(self.positions, n_in)
        indptr = np.zeros(n_out + 1, dtype=np.int32)
        np.cumsum(np.bincount(cols, minlength=n_out), out=indptr[1:])
        return indptr, rows.astype(np.int32)

    def matrix(self, dtype):
        """coefs_ entry: dense ndarray or scipy.sparse.csc_matrix of dtype."""
        import scipy.sparse as sp

        values = self.weights().astype(dtype)
        if self.positions is None:
            return values.reshape(self.shape)
        indptr, indices = self.structure()
        return sp.csc_matrix((values, indices, indptr), shape=self.shape)


def sparse_positions(W):
    """Flat CSC positions (col * n_in + row) of a canonical CSC matrix."""
    n_in = W.shape[0]
    cols = np.repeat(np.arange(W.shape[1], dtype=np.int64), np.diff(W.indptr))
    return cols * n_in + W.indices.astype(np.int64)


# ------------------------------------------------------------------ bytes
# A layer's metadata (JSON): its geometry and how its streams are coded.
# The streams' symbol counts and alphabets follow from the geometry, so only
# their codecs and byte lengths are stored: [weights, positions, biases]
# (None where a layer has no such stream).
ENTRY_KEYS = {"shape", "method", "bits", "table", "nnz", "skip", "gaps", "bias_bits",
              "codecs", "nbytes"}


def encode_layer(code, codecs=_streams.CODECS):
    """(entry, floats, streams): the layer's metadata (JSON), float32 values
    (codebook, then bias levels or biases) and encoded byte streams, in the
    order :func:`decode_layer` reads them."""
    n_in, n_out = code.shape
    entry = {"shape": [int(n_in), int(n_out)], "method": code.method, "bits": int(code.bits),
             "table": int(code.table.size), "nnz": None, "skip": None, "gaps": None,
             "bias_bits": code.bias_bits}
    pieces = [_streams.encode(code.symbols, code.alphabet, codecs)]
    if code.positions is None:
        pieces.append(None)
    else:
        skip = _streams.best_skip(code.positions)
        gaps = _streams.gap_symbols(code.positions, skip)
        entry.update(nnz=int(code.positions.size), skip=skip, gaps=int(gaps.size))
        pieces.append(_streams.encode(gaps, skip + 1, codecs))
    if code.bias_bits is None:
        pieces.append(None)
    else:
        pieces.append(_streams.encode(code.bias_symbols, 1 << code.bias_bits, codecs))
    entry["codecs"] = [p and p[0] for p in pieces]
    entry["nbytes"] = [p and len(p[1]) for p in pieces]
    floats = np.concatenate([code.table, code.bias_table]).astype(np.float32)
    return entry, floats, [p[1] for p in pieces if p]


class Reader:
    """Sequential reader of the float32 table and the byte payload, checking
    every length against what is left."""

    def __init__(self, floats, payload):
        self.floats, self.payload = floats, payload
        self.f = self.p = 0

    def take_floats(self, n, what):
        if self.f + n > self.floats.size:
            raise CodeError(f"{what}: needs {n} float32 values, only "
                            f"{self.floats.size - self.f} left")
        out = self.floats[self.f:self.f + n]
        self.f += n
        if not np.isfinite(out).all():
            raise CodeError(f"{what}: non-finite values")
        return out

    def take_bytes(self, n, what):
        if self.p + n > self.payload.size:
            raise CodeError(f"{what}: needs {n} bytes, only {self.payload.size - self.p} left")
        out = self.payload[self.p:self.p + n].tobytes()
        self.p += n
        return out

    def done(self):
        if self.f != self.floats.size or self.p != self.payload.size:
            raise CodeError(f"{self.floats.size - self.f} float32 values and "
                            f"{self.payload.size - self.p} payload bytes left unread")


def _int(entry, key, lo, hi, what):
    v = entry[key]
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise CodeError(f"{what}: {key} must be an integer in [{lo}, {hi}], got {v!r}")
    return v


def _stream(entry, i, reader, n, alphabet, what):
    codec, nbytes = entry["codecs"][i], entry["nbytes"][i]
    if codec not in _streams.CODECS:
        raise CodeError(f"{what}: unknown codec {codec!r}")
    if not isinstance(nbytes, int) or isinstance(nbytes, bool) or nbytes < 0:
        raise CodeError(f"{what}: invalid byte count {nbytes!r}")
    if codec in ("bits", "huffman") and n > 8 * nbytes:
        # At least one bit per symbol: a bound before anything is allocated.
        raise CodeError(f"{what}: {nbytes} bytes cannot hold {n} symbols")
    data = reader.take_bytes(nbytes, what)
    try:
        return _streams.decode(codec, data, n, alphabet)
    except CodeError as exc:
        raise CodeError(f"{what}: {exc}") from None


def decode_layer(entry, reader, l, n_in_expected):
    """The LayerCode of layer ``l`` from its metadata and the readers;
    CodeError naming the problem if they do not hold one."""
    what = f"layer {l}"
    if not isinstance(entry, dict) or set(entry) != ENTRY_KEYS:
        raise CodeError(f"{what}: expected an object with keys {sorted(ENTRY_KEYS)}")
    shape = entry["shape"]
    if (not isinstance(shape, list) or len(shape) != 2
            or not all(isinstance(s, int) and not isinstance(s, bool) and 1 <= s < 2**31
                       for s in shape)):
        raise CodeError(f"{what}: invalid shape {shape!r}")
    n_in, n_out = shape
    if n_in_expected is not None and n_in != n_in_expected:
        raise CodeError(f"{what}: takes {n_in} inputs, the previous layer has "
                        f"{n_in_expected} units")
    for key in ("codecs", "nbytes"):
        if not isinstance(entry[key], list) or len(entry[key]) != 3:
            raise CodeError(f"{what}: {key} must be a list of 3 entries")
    method = entry["method"]
    if method not in ("shared", "linear"):
        raise CodeError(f"{what}: unknown method {method!r}")
    shared = method == "shared"
    bits = _int(entry, "bits", 1, 8 if shared else 16, what)
    n_table = _int(entry, "table", 1 if shared else 2, 1 << bits if shared else 2, what)
    table = reader.take_floats(n_table, f"{what} codebook")
    alphabet = n_table if shared else 1 << bits
    sparse = entry["nnz"] is not None
    if sparse:
        size = n_in * n_out
        nnz = _int(entry, "nnz", 0, size, what)
        skip = _int(entry, "skip", 1, 4095, what)
        n_gaps = _int(entry, "gaps", nnz, nnz + size // skip, what)
    elif (entry["skip"], entry["gaps"], entry["codecs"][1], entry["nbytes"][1]) != (None,) * 4:
        raise CodeError(f"{what}: a dense layer has no position stream")
    symbols = _stream(entry, 0, reader, nnz if sparse else n_in * n_out, alphabet,
                      f"{what} weights")
    positions = None
    if sparse:
        gaps = _stream(entry, 1, reader, n_gaps, skip + 1, f"{what} positions")
        try:
            positions = _streams.positions_from_gaps(gaps, skip, n_in * n_out)
        except CodeError as exc:
            raise CodeError(f"{what} positions: {exc}") from None
        if positions.size != nnz:
            raise CodeError(f"{what} positions: {positions.size} positions, expected {nnz}")
    bias_bits = entry["bias_bits"]
    if bias_bits is None:
        if (entry["codecs"][2], entry["nbytes"][2]) != (None, None):
            raise CodeError(f"{what}: float32 biases take no stream")
        bias_table, bias_symbols = reader.take_floats(n_out, f"{what} biases"), None
    else:
        bias_bits = _int(entry, "bias_bits", 1, 16, what)
        bias_table = reader.take_floats(2, f"{what} bias levels")
        bias_symbols = _stream(entry, 2, reader, n_out, 1 << bias_bits, f"{what} biases")
    return LayerCode((n_in, n_out), method, bits, table, symbols, positions,
                     bias_bits, bias_table, bias_symbols)
