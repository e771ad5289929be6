"""Canonical Huffman bit streams: encode symbols, decode them with checks.

Codes are written most significant bit first, the last byte padded with
zero bits. The code tables come from fastmlp/compression/_huffman.py, which
checks them; decoding still checks every step against the input, since the
bits come from a file: it never reads past the buffer and stops at the first
bit pattern that is no code.
"""
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int32_t, int64_t

# Longest code the tables may hold (the file format's limit).
cdef enum:
    MAX_LEN = 15


def encode(const int32_t[::1] symbols, const uint32_t[::1] codes,
           const uint8_t[::1] lengths, uint8_t[::1] out):
    """Write the codes of ``symbols`` into ``out``; return the bytes used.

    ``out`` must hold ceil(sum(lengths[symbols]) / 8) bytes; symbols must be
    valid indices of ``codes``/``lengths`` (the caller checks both).
    """
    cdef Py_ssize_t i, n = symbols.shape[0], pos = 0
    cdef uint64_t acc = 0
    cdef int nbits = 0, length
    cdef int32_t s
    with nogil:
        for i in range(n):
            s = symbols[i]
            length = lengths[s]
            acc = (acc << length) | codes[s]
            nbits += length
            while nbits >= 8:
                nbits -= 8
                out[pos] = <uint8_t>(acc >> nbits)
                pos += 1
            acc &= (<uint64_t>1 << nbits) - 1
        if nbits:
            out[pos] = <uint8_t>(acc << (8 - nbits))
            pos += 1
    return pos


cdef int64_t _decode(const uint8_t[::1] data, const int64_t[::1] count,
                     const int64_t[::1] first, const int64_t[::1] offset,
                     const int32_t[::1] sorted_symbols, int32_t[::1] out) noexcept nogil:
    cdef Py_ssize_t i, n = out.shape[0]
    cdef int64_t bit = 0, total = 8 * <int64_t>data.shape[0], code
    cdef int length
    for i in range(n):
        code = 0
        length = 0
        while True:
            if bit >= total:
                return -1
            code = (code << 1) | ((data[bit >> 3] >> (7 - (bit & 7))) & 1)
            bit += 1
            length += 1
            # Canonical codes: the codes of one length are consecutive.
            if code >= first[length] and code - first[length] < count[length]:
                out[i] = sorted_symbols[offset[length] + code - first[length]]
                break
            if length == MAX_LEN:
                return -2
    return bit


def decode(const uint8_t[::1] data, const int64_t[::1] count, const int64_t[::1] first,
           const int64_t[::1] offset, const int32_t[::1] sorted_symbols, int32_t[::1] out):
    """Decode ``out.shape[0]`` symbols; return the number of bits read.

    ``count[L]``, ``first[L]``, ``offset[L]`` (L = 0..15): how many codes have
    length L, the first code of that length, and where its symbols start in
    ``sorted_symbols`` (canonical order). Returns -1 if the data ends before
    the last symbol, -2 on a bit pattern that is no code.
    """
    if count.shape[0] != MAX_LEN + 1 or first.shape[0] != MAX_LEN + 1 \
            or offset.shape[0] != MAX_LEN + 1:
        raise ValueError("code tables must have 16 entries")
    cdef int64_t used
    with nogil:
        used = _decode(data, count, first, offset, sorted_symbols, out)
    return used
