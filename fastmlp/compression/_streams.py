"""Entropy-coded streams of small non-negative integers.

A stream is ``n`` symbols of an alphabet ``0 .. alphabet-1``. It is written
with whichever codec makes it smallest (all are tried; a codec is a name in
the file's metadata):

``"bits"``     fixed width, ceil(log2(alphabet)) bits per symbol
``"huffman"``  canonical Huffman (alphabets up to 4096; _huffman.py)
``"zlib"``     raw DEFLATE, level 9, of the symbols as uint8 (uint16 above 256)
``"lzma"``     raw LZMA2, preset 9e, of the same bytes

Decoding checks the length, the codec's own structure and every symbol
against the alphabet, and raises CodeError on any mismatch.
"""

import lzma
import zlib

import numpy as np

from .. import _sparse_positions
from . import _huffman
from ._huffman import CodeError

CODECS = ("bits", "huffman", "zlib", "lzma")
MAX_HUFFMAN_ALPHABET = _huffman.MAX_ALPHABET
# Raw LZMA2 needs the same filters on both sides; a 1 MiB dictionary covers
# any layer's stream and keeps the decoder's allocation small.
_LZMA_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME,
                  "dict_size": 1 << 20}]


def _width(alphabet):
    return max(1, int(alphabet - 1).bit_length())


def _symbol_bytes(symbols, alphabet):
    dtype = np.uint8 if alphabet <= 256 else np.dtype("<u2")
    return np.asarray(symbols).astype(dtype).tobytes()


def _encode_bits(symbols, alphabet):
    w = _width(alphabet)
    shifts = np.arange(w - 1, -1, -1, dtype=np.int64)
    bits = ((np.asarray(symbols, dtype=np.int64)[:, None] >> shifts) & 1).astype(np.uint8)
    return np.packbits(bits.ravel()).tobytes()


def _decode_bits(data, n, alphabet):
    w = _width(alphabet)
    raw = np.frombuffer(data, dtype=np.uint8)
    if raw.size != (n * w + 7) // 8:
        raise CodeError(f"{raw.size} bytes for {n} symbols of {w} bits")
    bits = np.unpackbits(raw)
    if bits[n * w:].any():
        raise CodeError("nonzero padding bits after the last symbol")
    weights = (1 << np.arange(w - 1, -1, -1, dtype=np.int64))
    return (bits[: n * w].reshape(n, w).astype(np.int64) @ weights).astype(np.int32)


def _encode_zlib(symbols, alphabet):
    c = zlib.compressobj(9, zlib.DEFLATED, -15, 9)
    return c.compress(_symbol_bytes(symbols, alphabet)) + c.flush()


def _encode_lzma(symbols, alphabet):
    return lzma.compress(_symbol_bytes(symbols, alphabet), format=lzma.FORMAT_RAW,
                         filters=_LZMA_FILTERS)


def _inflate(decompressor, data, expected, errors):
    try:
        out = decompressor.decompress(data, max_length=expected)
    except errors as exc:
        raise CodeError(f"corrupt compressed data ({exc})") from None
    if len(out) != expected or not decompressor.eof or decompressor.unused_data:
        raise CodeError(f"compressed data does not hold exactly {expected} bytes")
    return out


def _decode_bytes(raw, n, alphabet):
    dtype = np.uint8 if alphabet <= 256 else np.dtype("<u2")
    return np.frombuffer(raw, dtype=dtype).astype(np.int32)


def encode(symbols, alphabet, codecs=CODECS):
    """(codec, bytes): the smallest encoding of ``symbols`` among ``codecs``.

    Ties go to the earlier codec in CODECS (the cheaper to decode).
    """
    symbols = np.asarray(symbols)
    best = None
    for codec in CODECS:
        if codec not in codecs:
            continue
        if codec == "huffman" and alphabet > MAX_HUFFMAN_ALPHABET:
            continue
        data = _ENCODERS[codec](symbols, alphabet)
        if best is None or len(data) < len(best[1]):
            best = (codec, data)
    return best


def sizes(symbols, alphabet):
    """{codec: encoded bytes} for every applicable codec (for reports)."""
    symbols = np.asarray(symbols)
    out = {}
    for codec in CODECS:
        if codec == "huffman" and alphabet > MAX_HUFFMAN_ALPHABET:
            continue
        out[codec] = len(_ENCODERS[codec](symbols, alphabet))
    return out


def decode(codec, data, n, alphabet):
    """The ``n`` symbols (int32) of a stream; CodeError if ``data`` is not one."""
    if codec == "huffman":
        return _huffman.decode(data, n, alphabet)  # its symbols lie in the alphabet
    if codec == "bits":
        out = _decode_bits(data, n, alphabet)
    elif codec in ("zlib", "lzma"):
        expected = n * (1 if alphabet <= 256 else 2)
        if codec == "zlib":
            d, errors = zlib.decompressobj(-15), zlib.error
        else:
            d, errors = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=_LZMA_FILTERS), lzma.LZMAError
        out = _decode_bytes(_inflate(d, data, expected, errors), n, alphabet)
    else:
        raise CodeError(f"unknown codec {codec!r}; expected one of {list(CODECS)}")
    if out.size and (out.min() < 0 or out.max() >= alphabet):
        raise CodeError(f"a symbol outside the alphabet 0..{alphabet - 1}")
    return out


_ENCODERS = {"bits": _encode_bits, "huffman": _huffman.encode, "zlib": _encode_zlib,
             "lzma": _encode_lzma}


# ------------------------------------------------------------ sparse positions
def gap_symbols(positions, skip):
    """Relative indices of increasing ``positions`` as symbols 0..skip.

    Symbol g in 1..skip: the next stored weight is g places after the
    previous (the first counts from -1). Symbol 0: advance ``skip`` places
    without a weight (for gaps longer than ``skip``), as Han et al.'s filler
    zeros.
    """
    positions = np.asarray(positions, dtype=np.int64)
    gaps = np.diff(positions, prepend=-1)
    fill = (gaps - 1) // skip
    out = np.zeros(positions.size + int(fill.sum()), dtype=np.int32)
    out[np.cumsum(fill + 1) - 1] = gaps - skip * fill
    return out


# Messages for the error codes of src/_sparse_positions.pyx.
_GAP_ERRORS = {
    -1: "the position stream ends with a skip",
    -2: "a position beyond the layer's weights",
    -3: "the positions are not the layer's declared number of weights",
    -4: "a gap symbol outside the alphabet",
}


def csc_from_gaps(symbols, skip, n_in, n_out, nnz):
    """(indptr, indices), int32: the canonical CSC structure of an
    ``n_in x n_out`` layer whose ``nnz`` weights :func:`gap_symbols` coded
    (flat positions ``col * n_in + row``). CodeError unless the positions
    lie in the layer, number ``nnz`` and the stream ends on a weight."""
    indptr = np.empty(n_out + 1, dtype=np.int32)
    indices = np.empty(nnz, dtype=np.int32)
    status = _sparse_positions.gaps_to_csc(np.ascontiguousarray(symbols, dtype=np.int32),
                                           skip, n_in, n_out, indptr, indices)
    if status:
        raise CodeError(_GAP_ERRORS[status])
    return indptr, indices


def best_skip(positions, candidates=(4, 8, 16, 32, 64, 128, 256)):
    """The skip length (alphabet skip + 1) that Huffman-codes the gaps in the
    fewest bytes, table included."""
    best = None
    for skip in candidates:
        sym = gap_symbols(positions, skip)
        size = _huffman.size(sym, skip + 1)
        if best is None or size < best[1]:
            best = (skip, size)
    return best[0]
