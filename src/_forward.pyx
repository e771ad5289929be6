"""Prediction: the network's outputs for many rows, chunk by chunk.

Workspaces are allocated per call, so one fitted model can predict from
many threads at once.
"""
import numpy as np
cimport numpy as cnp
from cython cimport floating
from libc.math cimport isfinite
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memset
from _layers cimport (Net, Csr, forward, slot, batch_input, rows_contiguous)
from _args cimport unpack_net, unpack_input, new_sparse_work, sparse_work_len
from _sparse_layers cimport fm_simd_avx2

cnp.import_array()

# Rows per forward pass of predict_dense (its workspace holds this many).
cdef enum:
    DENSE_CHUNK = 1024
# Below this many input values predict_dense keeps the GIL: releasing and
# taking it back costs more than the pass.
cdef enum:
    NOGIL_MIN = 16384


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


cdef inline int dense_rows(Net* nt, const floating* theta,
                           const floating* X, Py_ssize_t n, floating* out,
                           Py_ssize_t sp_len, int n_threads) noexcept nogil:
    """out = outputs for the n rows of the C-contiguous X; sp_len is
    sparse_work_len(net, min(n, DENSE_CHUNK)).

    Returns 0; 1 if X holds a non-finite value (out is then untouched);
    2 if an output is not finite; -1 if the workspace cannot be allocated.
    """
    cdef int L = nt.n_layers
    cdef Py_ssize_t n_feat = nt.units[0], k = nt.units[L], width = 0
    cdef Py_ssize_t i, start, b, B = min(n, <Py_ssize_t>DENSE_CHUNK)
    cdef bint finite = True
    cdef Csr csr
    cdef floating* acts
    for i in range(n * n_feat):
        finite = finite & (isfinite(X[i]) != 0)
    if not finite:
        return 1
    for i in range(1, L + 1):
        width += nt.units[i]
    # One block: the activations, then the pruned layers' workspace, whose
    # dense copies (the first sp.work_at values) must start as zeros.
    acts = <floating*>malloc((B * width + sp_len) * sizeof(floating))
    if acts == NULL:
        return -1
    nt.sp.work = acts + B * width
    memset(nt.sp.work, 0, nt.sp.work_at * sizeof(floating))
    csr.data = NULL
    start = 0
    while start < n:
        b = min(B, n - start)
        forward(nt, theta, X + start * n_feat, <int>n_feat, &csr, NULL, b,
                acts, True, n_threads)
        memcpy(out + start * k, slot(nt, acts, b, L), b * k * sizeof(floating))
        start += b
    free(acts)
    # Here rather than in the caller: numpy's isfinite().all() costs more
    # than a small network's whole pass.
    for i in range(n * k):
        finite = finite & (isfinite(out[i]) != 0)
    return 0 if finite else 2


def predict_dense(cnp.ndarray theta, object X, tuple net, int n_threads=1):
    """Outputs for the rows of X when X is a well-behaved dense array.

    The fast path of predict: X must be a 2-D, C-contiguous, aligned,
    native-endian ndarray of theta's dtype, with at least one row, the
    network's input width, and only finite values. Anything else returns
    None, and the caller validates X in full (with scikit-learn's errors);
    so does an output that is not finite, for the caller's error.
    """
    if not cnp.PyArray_Check(X):
        return None
    cdef cnp.ndarray Xa = <cnp.ndarray>X
    cdef int typ = cnp.PyArray_TYPE(theta)
    if (cnp.PyArray_NDIM(Xa) != 2 or cnp.PyArray_TYPE(Xa) != typ
            or not cnp.PyArray_IS_C_CONTIGUOUS(Xa)
            or not cnp.PyArray_ISBEHAVED_RO(Xa)
            or not cnp.PyArray_IS_C_CONTIGUOUS(theta)
            or (typ != cnp.NPY_FLOAT64 and typ != cnp.NPY_FLOAT32)):
        return None
    cdef Net nt = unpack_net(net)
    cdef Py_ssize_t n = cnp.PyArray_DIM(Xa, 0)
    if n == 0 or cnp.PyArray_DIM(Xa, 1) != nt.units[0]:
        return None
    cdef Py_ssize_t sp_len = sparse_work_len(net, min(n, <Py_ssize_t>DENSE_CHUNK))
    cdef cnp.npy_intp dims[2]
    dims[0] = n
    dims[1] = nt.units[nt.n_layers]
    cdef cnp.ndarray out = cnp.PyArray_EMPTY(2, dims, typ, 0)
    cdef void* th = cnp.PyArray_DATA(theta)
    cdef void* x = cnp.PyArray_DATA(Xa)
    cdef void* o = cnp.PyArray_DATA(out)
    cdef int rc
    cdef bint release = n * nt.units[0] >= NOGIL_MIN
    if typ == cnp.NPY_FLOAT64:
        if release:
            with nogil:
                rc = dense_rows(&nt, <double*>th, <double*>x, n, <double*>o, sp_len, n_threads)
        else:
            rc = dense_rows(&nt, <double*>th, <double*>x, n, <double*>o, sp_len, n_threads)
    else:
        if release:
            with nogil:
                rc = dense_rows(&nt, <float*>th, <float*>x, n, <float*>o, sp_len, n_threads)
        else:
            rc = dense_rows(&nt, <float*>th, <float*>x, n, <float*>o, sp_len, n_threads)
    if rc < 0:
        raise MemoryError("no memory for the prediction workspace")
    return out if rc == 0 else None


def sparse_kernel_variant():
    """'avx2' or 'baseline': the vector code pruned layers run on here."""
    return "avx2" if fm_simd_avx2() else "baseline"
