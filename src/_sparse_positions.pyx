"""Relative indices of a pruned layer (fastmlp/compression/_streams.py:
``gap_symbols``) straight to its canonical CSC structure, checked.

A symbol g in 1..skip puts the next stored weight g flat positions after the
previous one (the first counts from -1); 0 advances ``skip`` positions with
no weight. Flat positions are column-major (``col * n_in + row``), so they
come in CSC order: one pass fills the column pointers and row indices, with
no position array, sort or count in between.
"""
from libc.stdint cimport int32_t, int64_t

# Errors (messages in fastmlp/compression/_streams.py).
cdef enum:
    E_ENDS_WITH_SKIP = -1   # the stream ends with a skip
    E_BEYOND = -2           # a position beyond the layer's weights
    E_COUNT = -3            # more or fewer weights than the layer declares
    E_SYMBOL = -4           # a symbol outside 0..skip


def gaps_to_csc(const int32_t[::1] gaps, int64_t skip, int64_t n_in, int64_t n_out,
                int32_t[::1] indptr, int32_t[::1] indices):
    """Fill ``indptr`` (n_out + 1) and ``indices`` (the declared nnz) from
    the gap symbols; return 0 or a negative error code."""
    if indptr.shape[0] != n_out + 1 or n_in < 1 or skip < 1:
        raise ValueError("indptr must hold n_out + 1 entries; n_in and skip must be >= 1")
    cdef int status
    with nogil:
        status = _gaps_to_csc(gaps, skip, n_in, n_out, indptr, indices)
    return status


cdef int _gaps_to_csc(const int32_t[::1] gaps, int64_t skip, int64_t n_in, int64_t n_out,
                      int32_t[::1] indptr, int32_t[::1] indices) noexcept nogil:
    cdef Py_ssize_t i, n = gaps.shape[0], nnz = indices.shape[0], k = 0
    cdef int64_t pos = -1, size = n_in * n_out, col, cur = 0
    cdef int32_t g
    if n and gaps[n - 1] == 0:
        return E_ENDS_WITH_SKIP
    indptr[0] = 0
    for i in range(n):
        g = gaps[i]
        if g < 0 or g > skip:
            return E_SYMBOL
        if g == 0:
            pos += skip
            continue
        pos += g
        if pos >= size:
            return E_BEYOND
        if k >= nnz:
            return E_COUNT
        col = pos // n_in
        while cur < col:
            cur += 1
            indptr[cur] = <int32_t>k
        indices[k] = <int32_t>(pos - col * n_in)
        k += 1
    if k != nnz:
        return E_COUNT
    while cur < n_out:
        cur += 1
        indptr[cur] = <int32_t>k
    return 0
