"""One layer in compressed form, and its encoding into bytes.

A layer's weights are stored in theta's order for that layer: row-major
``n_in x n_out`` for a dense layer; for a pruned layer, the survivors in
canonical CSC order, whose flat column-major positions ``col * n_in + row``
increase, so the sparsity pattern is a stream of gaps between them. Decoding
turns the gaps straight into the CSC structure (src/_sparse_positions.pyx).
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
    csc : (indptr, indices) int32 ndarrays, the canonical CSC structure of a
        pruned layer, or None for a dense one
    bias_bits : int or None, None: biases kept as float32
    bias_table : float32 ndarray, [lo, step], or the float32 biases
    bias_symbols : int32 ndarray or None
    """

    shape: tuple
    method: str
    bits: int
    table: np.ndarray
    symbols: np.ndarray
    csc: tuple
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

    def positions(self):
        """Flat CSC positions (col * n_in + row, int64, increasing) of a
        pruned layer's weights; None if dense."""
        if self.csc is None:
            return None
        indptr, indices = self.csc
        cols = np.repeat(np.arange(self.shape[1], dtype=np.int64), np.diff(indptr))
        return cols * self.shape[0] + indices.astype(np.int64)

    def matrix(self, dtype):
        """coefs_ entry: dense ndarray or scipy.sparse.csc_matrix of dtype."""
        import scipy.sparse as sp

        values = self.weights().astype(dtype)
        if self.csc is None:
            return values.reshape(self.shape)
        indptr, indices = self.csc
        return sp.csc_matrix((values, indices, indptr), shape=self.shape)


# ------------------------------------------------------------------ bytes
# A layer's entry (written in binary by _header.py): its geometry and how
# its streams are coded. The streams' symbol counts and alphabets follow
# from the geometry, so only their codecs and byte lengths are stored:
# [weights, positions, biases] (None where a layer has no such stream).
ENTRY_KEYS = {"shape", "method", "bits", "table", "nnz", "skip", "gaps", "bias_bits",
              "codecs", "nbytes"}


def encode_layer(code, codecs=_streams.CODECS):
    """(entry, floats, streams): the layer's entry (a dict), float32 values
    (codebook, then bias levels or biases) and encoded byte streams, in the
    order :func:`decode_layer` reads them."""
    n_in, n_out = code.shape
    entry = {"shape": [int(n_in), int(n_out)], "method": code.method, "bits": int(code.bits),
             "table": int(code.table.size), "nnz": None, "skip": None, "gaps": None,
             "bias_bits": code.bias_bits}
    pieces = [_streams.encode(code.symbols, code.alphabet, codecs)]
    positions = code.positions()
    if positions is None:
        pieces.append(None)
    else:
        skip = _streams.best_skip(positions)
        gaps = _streams.gap_symbols(positions, skip)
        entry.update(nnz=int(positions.size), skip=skip, gaps=int(gaps.size))
        pieces.append(_streams.encode(gaps, skip + 1, codecs))
    if code.bias_bits is None:
        pieces.append(None)
    else:
        pieces.append(_streams.encode(code.bias_symbols, 1 << code.bias_bits, codecs))
    entry["codecs"] = [p and p[0] for p in pieces]
    entry["nbytes"] = [p and len(p[1]) for p in pieces]
    floats = np.concatenate([code.table, code.bias_table]).astype(np.float32)
    return entry, floats, [p[1] for p in pieces if p]


def _int(entry, key, lo, hi, what):
    v = entry[key]
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise CodeError(f"{what}: {key} must be an integer in [{lo}, {hi}], got {v!r}")
    return v


def _stream(entry, i, reader, n, alphabet, what):
    codec, nbytes = entry["codecs"][i], entry["nbytes"][i]
    if codec in ("bits", "huffman") and n > 8 * nbytes:
        # At least one bit per symbol: a bound before anything is allocated.
        raise CodeError(f"{what}: {nbytes} bytes cannot hold {n} symbols")
    data = reader.take(nbytes, what)
    try:
        return _streams.decode(codec, data, n, alphabet)
    except CodeError as exc:
        raise CodeError(f"{what}: {exc}") from None


def _floats(reader, n, what):
    out = np.frombuffer(reader.take(4 * n, what), dtype="<f4").astype(np.float32)
    if not np.isfinite(out).all():
        raise CodeError(f"{what}: non-finite values")
    return out


def decode_layer(entry, reader, l):
    """The LayerCode of layer ``l`` from its entry (as _header.unpack_layers
    reads it) and the bytes that follow in ``reader`` (a _header.ByteReader:
    codebook, bias levels or biases, then the streams); CodeError naming the
    problem if they do not hold one."""
    what = f"layer {l}"
    n_in, n_out = entry["shape"]
    for v in (n_in, n_out):
        if not 1 <= v < 2**31:
            raise CodeError(f"{what}: invalid shape {entry['shape']!r}")
    shared = entry["method"] == "shared"
    bits = _int(entry, "bits", 1, 8 if shared else 16, what)
    n_table = _int(entry, "table", 1 if shared else 2, 1 << bits if shared else 2, what)
    sparse = entry["nnz"] is not None
    if sparse:
        size = n_in * n_out
        nnz = _int(entry, "nnz", 0, size, what)
        skip = _int(entry, "skip", 1, 4095, what)
        n_gaps = _int(entry, "gaps", nnz, nnz + size // skip, what)
    bias_bits = entry["bias_bits"]
    if bias_bits is not None:
        bias_bits = _int(entry, "bias_bits", 1, 16, what)
    table = _floats(reader, n_table, f"{what} codebook")
    bias_table = _floats(reader, n_out if bias_bits is None else 2,
                         f"{what} {'biases' if bias_bits is None else 'bias levels'}")
    symbols = _stream(entry, 0, reader, nnz if sparse else n_in * n_out,
                      n_table if shared else 1 << bits, f"{what} weights")
    csc = None
    if sparse:
        gaps = _stream(entry, 1, reader, n_gaps, skip + 1, f"{what} positions")
        try:
            csc = _streams.csc_from_gaps(gaps, skip, n_in, n_out, nnz)
        except CodeError as exc:
            raise CodeError(f"{what} positions: {exc}") from None
    bias_symbols = None
    if bias_bits is not None:
        bias_symbols = _stream(entry, 2, reader, n_out, 1 << bias_bits, f"{what} biases")
    return LayerCode((n_in, n_out), entry["method"], bits, table, symbols, csc,
                     bias_bits, bias_table, bias_symbols)
