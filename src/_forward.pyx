"""Prediction: the network's outputs for many rows, chunk by chunk.

Workspaces are allocated per call, so one fitted model can predict from
many threads at once.
"""
import numpy as np
from cython cimport floating
from libc.string cimport memcpy
from _layers cimport (Net, Csr, forward, slot, batch_input, rows_contiguous)
from _args cimport unpack_net, unpack_input, new_sparse_work
from _sparse_layers cimport fm_simd_avx2


def predict(floating[::1] theta, X, tuple net, floating[:, ::1] out,
            long long[::1] rows, Py_ssize_t chunk=1024, int n_threads=1):
    """out[r] = network output (after the output activation) for X[rows[r]]."""
    cdef Net nt = unpack_net(net)
    cdef Csr csr
    cdef const floating* X_ptr
    cdef Py_ssize_t s0 = 0, s1 = 0
    unpack_input(X, &csr, &X_ptr, &s0, &s1)
    cdef int L = nt.n_layers
    cdef Py_ssize_t n = rows.shape[0], k = nt.units[L], n_feat = nt.units[0]
    if n == 0:
        return
    cdef Py_ssize_t B = max(1, min(chunk, n))
    dtype = np.float32 if floating is float else np.float64
    cdef floating[::1] acts = np.empty(B * sum(net[0][1:]), dtype=dtype)
    cdef floating[::1] xbuf = np.empty(B * n_feat if X_ptr != NULL else 1,
                                       dtype=dtype)
    cdef floating[::1] sp_work = new_sparse_work(net, B, dtype)
    nt.sp.work = &sp_work[0]
    cdef Py_ssize_t start, b
    cdef int ld0
    cdef const floating* X0
    cdef bint contiguous
    with nogil:
        contiguous = rows_contiguous(X_ptr, s0, s1, n_feat, &rows[0], n)
        start = 0
        while start < n:
            b = min(B, n - start)
            X0 = batch_input(X_ptr, s0, s1, n_feat, &rows[start], b,
                             contiguous, &xbuf[0], &ld0, n_threads)
            forward(&nt, &theta[0], X0, ld0, &csr, &rows[start], b, &acts[0],
                    True, n_threads)
            memcpy(&out[start, 0], slot(&nt, &acts[0], b, L),
                   b * k * sizeof(floating))
            start += b


def sparse_kernel_variant():
    """'avx2' or 'baseline': the vector code pruned layers run on here."""
    return "avx2" if fm_simd_avx2() else "baseline"
