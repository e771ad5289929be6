"""Prediction: the network's outputs for many rows, chunk by chunk.

Workspaces are allocated per call, so one fitted model can predict from
many threads at once.
"""
import numpy as np
cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.math cimport isfinite
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memcpy, memset
from _layers cimport (Net, Csr, forward, slot, batch_input, rows_contiguous)
from _small_gemm cimport small_max_work, kernels_take
from _args cimport unpack_net, unpack_input, new_sparse_work, sparse_work_len
from _sparse_layers cimport fm_simd_avx2

cnp.import_array()

# Rows per forward pass of predict_dense (its workspace holds this many),
# fewer where that keeps every product in the small kernels, which alone
# let threads take whole chunks (splits_rows_c): with each thread calling
# OpenBLAS on its own chunks, 784-256-128-10's 10,000-row float32 predict
# took 222-340 ms in chunks of 1024 (BLAS for the first layer) against
# 141-174 in the kernels' chunks (AMD Zen 1, two threads); one thread ran
# within 10% either way. Not below DENSE_CHUNK_MIN, where packing the
# weights for every chunk would cost more than BLAS saves.
cdef enum:
    DENSE_CHUNK = 1024
    DENSE_CHUNK_MIN = 128
# Below this many input values predict_dense keeps the GIL: releasing and
# taking it back costs more than the pass.
cdef enum:
    NOGIL_MIN = 16384


def predict(floating[::1] theta, X, tuple net, floating[:, ::1] out,
            long long[::1] rows, Py_ssize_t chunk=1024, int n_threads=1):
    """out[r] = network output (after the output activation) for X[rows[r]],
    at most chunk rows at a time (and no more than predict_dense takes, so
    that both give the same outputs)."""
    cdef Net nt = unpack_net(net)
    cdef Csr csr
    cdef const floating* X_ptr
    cdef Py_ssize_t s0 = 0, s1 = 0
    unpack_input(X, &csr, &X_ptr, &s0, &s1)
    cdef int L = nt.n_layers
    cdef Py_ssize_t n = rows.shape[0], k = nt.units[L], n_feat = nt.units[0]
    if n == 0:
        return
    cdef Py_ssize_t B = max(1, min(chunk, n, dense_chunk(&nt)))
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


cdef inline bint all_finite(const floating* x, Py_ssize_t n) noexcept nogil:
    cdef bint finite = True
    cdef Py_ssize_t i
    for i in range(n):
        finite = finite & (isfinite(x[i]) != 0)
    return finite


cdef inline int dense_chunks(Net* nt, const floating* theta,
                             const floating* X, Py_ssize_t n, floating* out,
                             Py_ssize_t chunk, Py_ssize_t c0, Py_ssize_t c1,
                             floating* acts, int n_threads) noexcept nogil:
    """Outputs of the rows of chunks c0:c1 (chunk rows each) on
    n_threads, acts holding one chunk's activations and nt.sp.work its
    pruned layers' workspace. Returns 0; 1 if the chunks' X holds a
    non-finite value; 2 if an output is not finite."""
    cdef int L = nt.n_layers
    cdef Py_ssize_t n_feat = nt.units[0], k = nt.units[L], c, start, b
    cdef Csr csr
    csr.data = NULL
    for c in range(c0, c1):
        start = c * chunk
        b = min(chunk, n - start)
        if not all_finite(X + start * n_feat, b * n_feat):
            return 1
        forward(nt, theta, X + start * n_feat, <int>n_feat, &csr, NULL, b,
                acts, True, n_threads)
        memcpy(out + start * k, slot(nt, acts, b, L), b * k * sizeof(floating))
        # Here rather than in the caller: numpy's isfinite().all() costs
        # more than a small network's whole pass.
        if not all_finite(out + start * k, b * k):
            return 2
    return 0


cdef inline int dense_rows(Net* nt, const floating* theta,
                           const floating* X, Py_ssize_t n, floating* out,
                           Py_ssize_t chunk, Py_ssize_t sp_len,
                           int n_threads) noexcept nogil:
    """out = outputs for the n rows of the C-contiguous X, chunk rows at a
    time (dense_chunk); sp_len is sparse_work_len(net, min(n, chunk)).

    From n_threads chunks of rows up, where the small kernels take every
    product (splits_rows), each thread takes whole chunks with its own
    workspace, every product on that thread (BLAS should be held at one);
    else each product is split. Either way a chunk is the same chain of
    operations, so the outputs do not depend on n_threads.

    Returns 0; 1 if X holds a non-finite value; 2 if an output is not
    finite; -1 if a workspace cannot be allocated (out is then
    meaningless).
    """
    cdef int L = nt.n_layers
    cdef Py_ssize_t width = 0, i, c
    cdef Py_ssize_t B = min(n, chunk)
    cdef Py_ssize_t n_chunks = (n + chunk - 1) // chunk
    cdef int rc = 0
    cdef int* codes
    cdef floating* acts
    cdef Net own
    for i in range(1, L + 1):
        width += nt.units[i]
    if not splits_rows_c(nt, n, chunk, n_threads):
        # One block: the activations, then the pruned layers' workspace,
        # whose dense copies (the first sp.work_at values) must start as zeros.
        acts = <floating*>malloc((B * width + sp_len) * sizeof(floating))
        if acts == NULL:
            return -1
        nt.sp.work = acts + B * width
        memset(nt.sp.work, 0, nt.sp.work_at * sizeof(floating))
        rc = dense_chunks(nt, theta, X, n, out, chunk, 0, n_chunks, acts, n_threads)
        free(acts)
        return rc
    codes = <int*>calloc(n_chunks, sizeof(int))
    if codes == NULL:
        return -1
    with parallel(num_threads=n_threads):
        own = nt[0]
        acts = <floating*>malloc((B * width + sp_len) * sizeof(floating))
        if acts != NULL:
            own.sp.work = acts + B * width
            memset(own.sp.work, 0, own.sp.work_at * sizeof(floating))
        # Dynamic: on a shared machine one core may fall behind.
        for c in prange(n_chunks, schedule="dynamic"):
            if acts == NULL:
                codes[c] = -1
            else:
                codes[c] = dense_chunks(&own, theta, X, n, out, chunk, c, c + 1, acts, 1)
        free(acts)
    for c in range(n_chunks):
        if codes[c] == -1:
            rc = -1
            break
        if codes[c] == 1 or (codes[c] == 2 and rc == 0):
            rc = codes[c]
    free(codes)
    return rc


cdef inline Py_ssize_t dense_chunk(const Net* nt) noexcept nogil:
    """Rows per chunk of predict_dense (see DENSE_CHUNK)."""
    cdef Py_ssize_t widest = 1, rows
    cdef int l
    for l in range(nt.n_layers):
        widest = max(widest, <Py_ssize_t>nt.units[l] * nt.units[l + 1])
    rows = small_max_work() // widest // 8 * 8
    return DENSE_CHUNK if rows < DENSE_CHUNK_MIN else min(rows, <Py_ssize_t>DENSE_CHUNK)


cdef inline bint splits_rows_c(const Net* nt, Py_ssize_t n, Py_ssize_t chunk,
                               int n_threads) noexcept nogil:
    """True if each thread takes whole chunks: at least one a thread, and
    every dense product of a chunk in the small kernels."""
    cdef int l
    if n_threads < 2 or n < n_threads * chunk:
        return False
    for l in range(nt.n_layers):
        if not kernels_take(chunk, nt.units[l], nt.units[l + 1]):
            return False
    return True


def splits_rows(tuple net, Py_ssize_t n_rows, int n_threads):
    """True if predict_dense gives each of n_threads whole chunks of rows,
    every product on its thread: the caller should hold BLAS at one thread."""
    cdef Net nt = unpack_net(net)
    return splits_rows_c(&nt, n_rows, dense_chunk(&nt), n_threads)


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
    cdef Py_ssize_t chunk = dense_chunk(&nt)
    cdef Py_ssize_t sp_len = sparse_work_len(net, min(n, chunk))
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
                rc = dense_rows(&nt, <double*>th, <double*>x, n, <double*>o, chunk, sp_len, n_threads)
        else:
            rc = dense_rows(&nt, <double*>th, <double*>x, n, <double*>o, chunk, sp_len, n_threads)
    else:
        if release:
            with nogil:
                rc = dense_rows(&nt, <float*>th, <float*>x, n, <float*>o, chunk, sp_len, n_threads)
        else:
            rc = dense_rows(&nt, <float*>th, <float*>x, n, <float*>o, chunk, sp_len, n_threads)
    if rc < 0:
        raise MemoryError("no memory for the prediction workspace")
    return out if rc == 0 else None


def sparse_kernel_variant():
    """'avx2' or 'baseline': the vector code pruned layers run on here."""
    return "avx2" if fm_simd_avx2() else "baseline"
