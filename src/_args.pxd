# Turning the Python-level arguments shared by every kernel entry point into
# the C structs the nogil code reads. The arrays stay owned by the caller's
# objects, so the pointers live as long as those do.
from cython cimport floating
cimport numpy as cnp
from _layers cimport Net, Csr
from _sparse_layers cimport TILE_MAX, ALIGN_SLACK


cdef inline void* array_data(object a, int typ, Py_ssize_t n, bint write,
                             str name) except NULL:
    """The data of a: a C-contiguous, native-order ndarray of numpy type typ
    (or an equivalent one) with at least max(n, 1) entries, writable if
    write; unaligned data is accepted, as memoryviews accept it (arrays
    rebuilt from pickle buffers: the Dask workers' parts). The
    pointer comes straight from the array: a typed memoryview would
    allocate an object on every call (with two dozen arguments, a few KB of
    an epoch's transient memory, and a microsecond of a predict)."""
    if (not cnp.PyArray_Check(a)
            or not cnp.PyArray_EquivTypenums(cnp.PyArray_TYPE(<cnp.ndarray>a), typ)
            or not cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>a)
            or not cnp.PyArray_ISNOTSWAPPED(<cnp.ndarray>a)
            or (write and not cnp.PyArray_ISWRITEABLE(<cnp.ndarray>a))
            or cnp.PyArray_SIZE(<cnp.ndarray>a) < max(n, 1)):
        raise ValueError(
            f"{name} must be a {'writable ' if write else ''}C-contiguous "
            f"{cnp.PyArray_DescrFromType(typ)} array of at least {max(n, 1)} entries")
    return cnp.PyArray_DATA(<cnp.ndarray>a)


cdef inline Py_ssize_t array_len(object a) except -1:
    """The number of entries of the ndarray a."""
    if not cnp.PyArray_Check(a):
        raise ValueError("an ndarray is needed")
    return cnp.PyArray_SIZE(<cnp.ndarray>a)


cdef inline Net unpack_net(tuple net) except *:
    """net = (units int32, w_off int64, act int32, slope float, b_off int64,
    sp_mode int32, sp_off int64, sp_pool int32, (dense_len, per_row)), see
    fastmlp/_network.Layout. The sparse workspace pointer is left NULL: the
    caller sets nt.sp.work to a buffer of sparse_work_len(net, B) zeros."""
    cdef Py_ssize_t L = array_len(net[0]) - 1
    if L < 1:
        raise ValueError("a network needs at least one layer")
    cdef Net nt
    nt.n_layers = <int>L
    nt.units = <const int*>array_data(net[0], cnp.NPY_INT32, L + 1, False, "units")
    nt.w_off = <const long long*>array_data(net[1], cnp.NPY_INT64, L, False, "w_off")
    nt.act = <const int*>array_data(net[2], cnp.NPY_INT32, L, False, "act")
    nt.slope = net[3]
    nt.drop = NULL
    nt.exact_tn = False
    nt.xrows = NULL
    nt.w0_fused = False
    nt.b_off = <const long long*>array_data(net[4], cnp.NPY_INT64, L, False, "b_off")
    nt.sp.mode = <const int*>array_data(net[5], cnp.NPY_INT32, L, False, "sp_mode")
    nt.sp.off = <const long long*>array_data(net[6], cnp.NPY_INT64, 2 * L, False, "sp_off")
    nt.sp.pool = <const int*>array_data(net[7], cnp.NPY_INT32, 1, False, "sp_pool")
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
    """X is a 2-D ndarray (any strides) or (data, indices, indptr) of CSR,
    read without memoryview objects (see array_data)."""
    cdef int ft = cnp.NPY_FLOAT32 if floating is float else cnp.NPY_FLOAT64
    cdef cnp.ndarray Xa
    cdef Py_ssize_t isz = sizeof(floating)
    csr.data = NULL
    ptr[0] = NULL
    if isinstance(X, tuple):
        if len(X) != 3:
            raise ValueError("a CSR input is (data, indices, indptr)")
        csr.indptr = <const int*>array_data(X[2], cnp.NPY_INT32, 1, False, "indptr")
        # A CSR matrix with no stored values still needs non-NULL pointers.
        csr.data = (array_data(X[0], ft, 1, False, "data") if array_len(X[0])
                    else <const void*>csr.indptr)
        csr.indices = (<const int*>array_data(X[1], cnp.NPY_INT32, 1, False, "indices")
                       if array_len(X[1]) else csr.indptr)
        return 0
    if (not cnp.PyArray_Check(X) or cnp.PyArray_NDIM(<cnp.ndarray>X) != 2
            or not cnp.PyArray_EquivTypenums(cnp.PyArray_TYPE(<cnp.ndarray>X), ft)
            or not cnp.PyArray_ISNOTSWAPPED(<cnp.ndarray>X)):
        raise ValueError(f"X must be a 2-D {'float32' if floating is float else 'float64'} "
                         "array in native byte order")
    Xa = <cnp.ndarray>X
    if cnp.PyArray_STRIDE(Xa, 0) % isz or cnp.PyArray_STRIDE(Xa, 1) % isz:
        raise ValueError("X's strides must be whole elements")
    ptr[0] = <const floating*>cnp.PyArray_DATA(Xa)
    s0[0] = cnp.PyArray_STRIDE(Xa, 0) // isz
    s1[0] = cnp.PyArray_STRIDE(Xa, 1) // isz
    return 0
