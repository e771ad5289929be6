# Turning the Python-level arguments shared by every kernel entry point into
# the C structs the nogil code reads. The arrays stay owned by the caller's
# objects, so the pointers live as long as those do.
from cython cimport floating
from _layers cimport Net, Csr


cdef inline Net unpack_net(tuple net) except *:
    """net = (units int32, w_off int64, act int32, slope float)."""
    cdef const int[::1] units = net[0]
    cdef const long long[::1] w_off = net[1]
    cdef const int[::1] act = net[2]
    cdef Net nt
    nt.n_layers = units.shape[0] - 1
    nt.units = &units[0]
    nt.w_off = &w_off[0]
    nt.act = &act[0]
    nt.slope = net[3]
    nt.drop = NULL
    return nt


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
