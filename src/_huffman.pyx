"""Canonical Huffman bit streams: encode symbols, decode them with checks.

Codes are written most significant bit first, the last byte padded with
zero bits. Encoding takes its code table from fastmlp/compression/_huffman.py.
Decoding reads a whole stream as it is stored (code-length table, then bits)
and checks every step against the input, since the bytes come from a file:
it never reads past the buffer and stops at the first bit pattern that is
no code.
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


# Errors of decode_stream (messages in fastmlp/compression/_huffman.py).
cdef enum:
    E_TRUNCATED = -1        # the bits end before the last symbol
    E_NO_CODE = -2          # a bit pattern that is no code
    E_SHORT_TABLE = -3      # fewer bytes than the code-length table
    E_TABLE_PADDING = -4    # nonzero padding nibble after the code lengths
    E_NOT_PREFIX = -5       # the lengths break Kraft's inequality
    E_EMPTY_TRAILING = -6   # bytes after an empty stream's table
    E_NO_SYMBOLS = -7       # no symbol has a code, yet symbols are wanted
    E_TRAILING = -8         # whole bytes after the last symbol
    E_BIT_PADDING = -9      # nonzero padding bits after the last symbol
    MAX_ALPHABET = 4096
    # Codes up to FAST_BITS long decode with one table look-up; longer ones
    # (rare: symbols below ~1/1024 of the stream) by the canonical search.
    FAST_BITS = 10


def decode_stream(const uint8_t[::1] data, Py_ssize_t alphabet, int32_t[::1] out):
    """Decode a whole stream of ``_huffman.encode``: the code-length table
    (one nibble per symbol of the alphabet, low nibble first), then the code
    bits. Fills ``out`` (its length is the symbol count); returns 0, or one
    of the negative E_* codes above.

    Everything is checked against the bytes: the table's padding and Kraft
    sum, every code, the end of the data, the trailing bytes and padding
    bits. The symbols written are indices below ``alphabet``.
    """
    if alphabet < 1 or alphabet > MAX_ALPHABET:
        raise ValueError("alphabet must lie in [1, 4096]")
    cdef int status
    with nogil:
        status = _decode_stream(data, alphabet, out)
    return status


cdef int _decode_stream(const uint8_t[::1] data, Py_ssize_t alphabet,
                        int32_t[::1] out) noexcept nogil:
    cdef uint8_t lengths[MAX_ALPHABET + 1]
    cdef int32_t sorted_symbols[MAX_ALPHABET]
    cdef int64_t count[MAX_LEN + 1]
    cdef int64_t first[MAX_LEN + 1]
    cdef int64_t offset[MAX_LEN + 1]
    cdef int64_t nxt[MAX_LEN + 1]
    cdef int32_t fast_sym[1 << FAST_BITS]
    cdef uint8_t fast_len[1 << FAST_BITS]
    cdef Py_ssize_t nbytes = data.shape[0], n = out.shape[0]
    cdef Py_ssize_t t = (alphabet + 1) // 2, s, i, pos
    cdef int64_t kraft = 0, code, c, lo, hi, j
    cdef int L, nacc, Lc, length
    cdef uint64_t acc
    if nbytes < t:
        return E_SHORT_TABLE
    for s in range(t):
        lengths[2 * s] = data[s] & 15
        lengths[2 * s + 1] = data[s] >> 4
    if alphabet % 2 and lengths[alphabet]:
        return E_TABLE_PADDING
    for L in range(MAX_LEN + 1):
        count[L] = 0
    for s in range(alphabet):
        count[lengths[s]] += 1
    count[0] = 0
    for L in range(1, MAX_LEN + 1):
        kraft += count[L] << (MAX_LEN - L)
    if kraft > (1 << MAX_LEN):
        return E_NOT_PREFIX
    if n == 0:
        return E_EMPTY_TRAILING if nbytes != t else 0
    if kraft == 0:
        return E_NO_SYMBOLS
    # Canonical code: symbols sorted by (length, symbol) take
    # consecutive codes, the first of each length given by first[L].
    code = 0
    first[0] = offset[0] = 0
    for L in range(1, MAX_LEN + 1):
        code = (code + count[L - 1]) << 1
        first[L] = code
        offset[L] = offset[L - 1] + count[L - 1]
        nxt[L] = offset[L]
    for s in range(alphabet):
        if lengths[s]:
            sorted_symbols[nxt[lengths[s]]] = <int32_t>s
            nxt[lengths[s]] += 1
    for j in range(1 << FAST_BITS):
        fast_len[j] = 0
    for L in range(1, FAST_BITS + 1):
        for c in range(count[L]):
            lo = (first[L] + c) << (FAST_BITS - L)
            hi = (first[L] + c + 1) << (FAST_BITS - L)
            for j in range(lo, hi):
                fast_len[j] = <uint8_t>L
                fast_sym[j] = sorted_symbols[offset[L] + c]
    # acc holds the next nacc unread bits in its low bits.
    acc = 0
    nacc = 0
    pos = t
    for i in range(n):
        while nacc <= 56 and pos < nbytes:
            acc = (acc << 8) | data[pos]
            pos += 1
            nacc += 8
        if nacc >= FAST_BITS:
            j = <int64_t>((acc >> (nacc - FAST_BITS)) & ((1 << FAST_BITS) - 1))
        else:
            j = <int64_t>((acc << (FAST_BITS - nacc)) & ((1 << FAST_BITS) - 1))
        length = fast_len[j]
        if length:
            if length > nacc:
                return E_TRUNCATED
            out[i] = fast_sym[j]
            nacc -= length
            continue
        for Lc in range(FAST_BITS + 1, MAX_LEN + 2):
            if Lc > MAX_LEN:
                return E_NO_CODE
            if Lc > nacc:
                return E_TRUNCATED
            code = <int64_t>((acc >> (nacc - Lc)) & ((<uint64_t>1 << Lc) - 1))
            if code >= first[Lc] and code - first[Lc] < count[Lc]:
                out[i] = sorted_symbols[offset[Lc] + code - first[Lc]]
                nacc -= Lc
                break
    # Unread: nacc bits of the buffer plus the bytes never loaded.
    if nacc >= 8 or pos < nbytes:
        return E_TRAILING
    if nacc and (acc & ((<uint64_t>1 << nacc) - 1)):
        return E_BIT_PADDING
    return 0
