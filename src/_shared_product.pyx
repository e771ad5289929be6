"""Products with a pruned layer kept in shared-weight form, for measuring.

Deep Compression's inference could run on the codebook indices themselves
(one byte per stored weight plus a per-layer codebook) instead of decoding
them once to float weights. To decide, ``benchmarks/compression.py
shared`` times these two kernels against each other: the same CSC
column-dot loop over ``X`` (row-major ``B x n_in``), one reading the float
weight ``data[k]``, the other the centroid ``codebook[codes[k]]``. Nothing
else differs, so the gap is the price of the look-up. (The production
sparse kernels, src/_sparse_layers.pxd, tile and vectorise on top of this.)
"""
from cython cimport floating
from libc.stdint cimport uint8_t

# What a stored weight is: itself (float, double) or a codebook index.
ctypedef fused stored_t:
    float
    double
    uint8_t


def csc_product(const floating[:, ::1] X, const int[::1] indptr, const int[::1] indices,
                const floating[::1] data, floating[:, ::1] out):
    """out = X @ W for the CSC matrix W = (data, indices, indptr)."""
    _check(X.shape[0], out.shape[0], indptr.shape[0], out.shape[1])
    with nogil:
        _product(X, indptr, indices, data, data, out)


def csc_shared_product(const floating[:, ::1] X, const int[::1] indptr,
                       const int[::1] indices, const uint8_t[::1] codes,
                       const floating[::1] codebook, floating[:, ::1] out):
    """out = X @ W for the CSC matrix W whose k-th stored weight is
    ``codebook[codes[k]]``."""
    _check(X.shape[0], out.shape[0], indptr.shape[0], out.shape[1])
    with nogil:
        _product(X, indptr, indices, codes, codebook, out)


cdef void _product(const floating[:, ::1] X, const int[::1] indptr, const int[::1] indices,
                   const stored_t[::1] stored, const floating[::1] codebook,
                   floating[:, ::1] out) noexcept nogil:
    # One loop for both forms: the weight fetch is chosen at compile time.
    cdef Py_ssize_t B = X.shape[0], n_out = out.shape[1], r, j, k
    cdef floating acc
    for r in range(B):
        for j in range(n_out):
            acc = 0
            for k in range(indptr[j], indptr[j + 1]):
                if stored_t is uint8_t:
                    acc = acc + X[r, indices[k]] * codebook[stored[k]]
                else:
                    acc = acc + X[r, indices[k]] * <floating>stored[k]
            out[r, j] = acc


cdef _check(Py_ssize_t rows_x, Py_ssize_t rows_out, Py_ssize_t n_ptr, Py_ssize_t n_out):
    # Callers (the benchmark, the tests) pass checked CSC structures; the
    # shapes are checked here.
    if rows_x != rows_out or n_ptr != n_out + 1:
        raise ValueError("X and out need the same rows; indptr n_out + 1 entries")
