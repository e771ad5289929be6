"""Canonical Huffman codes of at most 15 bits (the bit streams are compiled:
src/_huffman.pyx).

A code is given by its code lengths alone (canonical Huffman, as in
DEFLATE): symbols sorted by (length, symbol) take consecutive codes. A
stream stores the lengths as 4-bit nibbles, one per symbol of the alphabet,
then the code bits.
"""

import heapq

import numpy as np

from .. import _huffman

MAX_LEN = 15
# Largest alphabet a stream may have (its table is one nibble per symbol).
MAX_ALPHABET = 4096


class CodeError(ValueError):
    """Bytes that are not a valid stream (the caller names the stream)."""


def code_lengths(freqs):
    """Huffman code lengths (0 for unused symbols), none above 15 bits.

    Ties are broken by symbol, so the lengths depend on the counts only.
    If the optimal code is longer than 15 bits, the counts are halved
    (rounding up) until it is not — near-optimal, and rare: it needs
    counts spanning a ratio above ~1000 across 16 levels.
    """
    freqs = np.asarray(freqs, dtype=np.int64)
    lengths = np.zeros(freqs.size, dtype=np.uint8)
    used = np.flatnonzero(freqs)
    if used.size == 0:
        return lengths
    if used.size == 1:
        lengths[used] = 1
        return lengths
    f = freqs[used]
    while True:
        heap = [(int(c), int(i), [int(i)]) for i, c in enumerate(f)]
        heapq.heapify(heap)
        depth = np.zeros(used.size, dtype=np.int64)
        while len(heap) > 1:
            c1, k1, m1 = heapq.heappop(heap)
            c2, k2, m2 = heapq.heappop(heap)
            depth[m1] += 1
            depth[m2] += 1
            heapq.heappush(heap, (c1 + c2, min(k1, k2), m1 + m2))
        if depth.max() <= MAX_LEN:
            lengths[used] = depth
            return lengths
        f = (f + 1) // 2


def _canonical(lengths):
    """(count, first, offset, sorted_symbols) of the canonical code."""
    lengths = np.asarray(lengths, dtype=np.int64)
    count = np.bincount(lengths, minlength=MAX_LEN + 1).astype(np.int64)
    count[0] = 0
    first = np.zeros(MAX_LEN + 1, dtype=np.int64)
    offset = np.zeros(MAX_LEN + 1, dtype=np.int64)
    code = 0
    for L in range(1, MAX_LEN + 1):
        code = (code + count[L - 1]) << 1
        first[L] = code
        offset[L] = offset[L - 1] + count[L - 1]
    used = np.flatnonzero(lengths)
    order = np.lexsort((used, lengths[used]))
    return count, first, offset, used[order].astype(np.int32)


def codes(lengths):
    """The canonical code of each symbol (uint32; 0 for unused symbols)."""
    count, first, offset, syms = _canonical(lengths)
    out = np.zeros(len(lengths), dtype=np.uint32)
    L = np.asarray(lengths, dtype=np.int64)[syms]
    out[syms] = first[L] + (np.arange(syms.size) - offset[L])
    return out


def pack_lengths(lengths):
    """One nibble per symbol, low nibble first."""
    lengths = np.asarray(lengths, dtype=np.uint8)
    if lengths.size % 2:
        lengths = np.append(lengths, np.uint8(0))
    return (lengths[0::2] | (lengths[1::2] << 4)).astype(np.uint8)


def table_bytes(alphabet):
    return (alphabet + 1) // 2


def encoded_bits(freqs, lengths):
    return int(np.dot(np.asarray(freqs, dtype=np.int64), lengths.astype(np.int64)))


def encode(symbols, alphabet):
    """Bytes of the code-length table followed by the code bits."""
    symbols = np.ascontiguousarray(symbols, dtype=np.int32)
    freqs = np.bincount(symbols, minlength=alphabet)
    lengths = code_lengths(freqs)
    nbits = encoded_bits(freqs, lengths)
    out = np.zeros((nbits + 7) // 8, dtype=np.uint8)
    used = _huffman.encode(symbols, codes(lengths), lengths, out)
    assert used == out.size
    return pack_lengths(lengths).tobytes() + out.tobytes()


def size(symbols, alphabet):
    """Bytes :func:`encode` would produce, without encoding."""
    freqs = np.bincount(np.asarray(symbols, dtype=np.int64), minlength=alphabet)
    return table_bytes(alphabet) + (encoded_bits(freqs, code_lengths(freqs)) + 7) // 8


# Messages for the error codes of the compiled decoder (src/_huffman.pyx).
_ERRORS = {
    -1: "truncated: the bits end before the last symbol",
    -2: "a bit pattern that is no code",
    -3: "fewer bytes than its code table needs",
    -4: "nonzero padding after the code lengths",
    -5: "the code lengths do not make a prefix code",
    -6: "bytes after an empty stream",
    -7: "a code table with no symbols for a non-empty stream",
    -8: "bytes after the last symbol",
    -9: "nonzero padding bits after the last symbol",
}


def decode(data, n, alphabet):
    """``n`` symbols (int32) from :func:`encode`'s bytes; CodeError if they
    are not exactly such a stream (wrong table, truncated, trailing bytes).

    One compiled pass: table, canonical code and bits are all checked there.
    """
    if not 1 <= alphabet <= MAX_ALPHABET:
        raise CodeError(f"Huffman streams have alphabets of 1 to {MAX_ALPHABET} symbols, "
                        f"not {alphabet}")
    out = np.empty(n, dtype=np.int32)
    status = _huffman.decode_stream(np.frombuffer(data, dtype=np.uint8), alphabet, out)
    if status:
        raise CodeError(_ERRORS[status])
    return out
