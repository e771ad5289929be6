# Turning the Python-level arguments shared by every kernel entry point into
# the C structs the nogil code reads. The arrays stay owned by the caller's
# objects, so the pointers live as long as those do.
from cython cimport floating
from _layers cimport Net, Csr
from _sparse_layers cimport TILE_MAX, ALIGN_SLACK


cdef inline Net unpack_net(tuple net) except *:
    """net = (units int32, w_off int64, act int32, slope float, b_off int64,
    sp_mode int32, sp_off int64, sp_pool int32, (dense_len, per_row)), see
    fastmlp/_network.Layout. The sparse workspace pointer is left NULL: the
    caller sets nt.sp.work to a buffer of sparse_work_len(net, B) zeros."""
    cdef const int[::1] units = net[0]
    cdef const long long[::1] w_off = net[1]
    cdef const int[::1] act = net[2]
    cdef const long long[::1] b_off = net[4]
    cdef const int[::1] sp_mode = net[5]
    cdef const long long[::1] sp_off = net[6]
    cdef const int[::1] sp_pool = net[7]
    cdef Net nt
    nt.n_layers = units.shape[0] - 1
    nt.units = &units[0]
    nt.w_off = &w_off[0]
    nt.act = &act[0]
    nt.slope = net[3]
    nt.drop = NULL
    nt.exact_tn = False
    nt.b_off = &b_off[0]
    nt.sp.mode = &sp_mode[0]
    nt.sp.off = &sp_off[0]
    nt.sp.pool = &sp_pool[0]
    nt.sp.work = NULL
    nt.sp.work_at = net[8][0]
    return nt


cdef inline Py_ssize_t sparse_work_len(tuple net, Py_ssize_t B) except -1:
    """Length of the pruned layers' workspace for batches of up to B rows,
    as Layout.work_len (at least 1, so that it has an address)."""
    return (<Py_ssize_t>net[8][0] + (B + TILE_MAX) * <Py_ssize_t>net[8][1]
            + (ALIGN_SLACK if net[8][1] else 1))


cdef inline object new_sparse_work(tuple net, Py_ssize_t B, object dtype):
    """A workspace for sparse_work_len(net, B): the dense copies of
    SP_GEMM layers (first net[8][0] entries) must start as zeros; the rest
    is scratch."""
    import numpy as np
    work = np.empty(sparse_work_len(net, B), dtype=dtype)
    work[:net[8][0]] = 0
    return work


cdef inline int unpack_input(object X, Csr* csr, const floating** ptr,
                             Py_ssize_t* s0, Py_ssize_t* s1) except -1:
    """X is a 2-D ndarray (any strides) or (data, indices, indptr) of CSR."""
    cdef const floating[:, :] Xd
    cdef const floating[::1] data
    cdef const int[::1] indices
    cdef const int[::1] indptr
    csr.data = NULL
    ptr[0] = NULL
    if isinstance(X, tuple):
        data = X[0]
        indices = X[1]
        indptr = X[2]
        # A CSR matrix with no stored values still needs non-NULL pointers.
        csr.data = &data[0] if data.shape[0] > 0 else <const void*>&indptr[0]
        csr.indices = &indices[0] if indices.shape[0] > 0 else &indptr[0]
        csr.indptr = &indptr[0]
    else:
        Xd = X
        ptr[0] = &Xd[0, 0]
        s0[0] = Xd.strides[0] // <Py_ssize_t>sizeof(floating)
        s1[0] = Xd.strides[1] // <Py_ssize_t>sizeof(floating)
    return 0
