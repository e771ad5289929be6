# What the full-batch kernels (_objective.loss_grad, _curvature's products and
# Fisher diagonal) share: opening a pass over X[rows] in chunks of rows, the
# workspace those chunks run in, and the forward pass with the output loss.
#
# The workspace is a dict of named numpy buffers that a caller may keep
# between calls (solvers/objective.Objective keeps one per fit): a buffer is
# reused while it is large enough and of the call's dtype, so a solver
# calling a kernel thousands of times allocates (and page-faults) only once.
# Without one (work=None), a call allocates its own, as before.
from cython cimport floating
from cython.parallel cimport prange
from _layers cimport Net, Csr, forward, slot, batch_input, rows_contiguous
from _sparse_layers cimport SP_DENSE
from _args cimport unpack_net, unpack_input, sparse_work_len
from _losses cimport no_classes, output_loss_delta


cdef inline object work_buffer(dict work, str name, Py_ssize_t size,
                               object dtype):
    """work[name] if it holds at least size elements of dtype, else a new
    such buffer, kept there."""
    import numpy as np
    buf = work.get(name)
    if buf is None or buf.shape[0] < size or buf.dtype != dtype:
        buf = np.empty(max(size, 1), dtype=dtype)
        work[name] = buf
    return buf


cdef struct Pass:
    Net nt
    Csr csr            # X when it is CSR (csr.data NULL otherwise)
    const void* X      # dense X (const floating*; NULL for CSR)
    Py_ssize_t s0, s1  # its strides, in elements
    const void* sw     # sample weights (const floating*; NULL without)
    Py_ssize_t n       # rows in the pass
    Py_ssize_t B       # rows per chunk
    bint contiguous    # rows consecutive in a unit-stride dense X


cdef inline dict open_pass(tuple net, object X,
                           const floating[::1] sample_weight,
                           const long long[::1] rows, Py_ssize_t chunk,
                           dict work, Pass* p):
    """Fill p for a pass over X[rows], attaching the pruned layers' workspace
    kept in work (a new dict when work is None), which is returned.

    The dense copies of SP_GEMM layers at the head of that workspace must
    start as zeros; the kernels write only the stored weights' positions, so
    they stay zeros elsewhere while the buffer serves the same net.
    """
    import numpy as np
    cdef const floating* X_ptr = NULL
    cdef floating[::1] sp
    if work is None:
        work = {}
    p.nt = unpack_net(net)
    p.s0 = 0
    p.s1 = 0
    unpack_input(X, &p.csr, &X_ptr, &p.s0, &p.s1)
    p.X = X_ptr
    p.sw = &sample_weight[0] if sample_weight is not None else NULL
    p.n = rows.shape[0]
    p.B = max(1, min(chunk, p.n))
    p.contiguous = p.n > 0 and rows_contiguous(X_ptr, p.s0, p.s1, p.nt.units[0],
                                                &rows[0], p.n)
    dtype = np.float32 if floating is float else np.float64
    size = sparse_work_len(net, p.B)
    held = work.get("sparse")
    if (held is None or held.shape[0] < size or held.dtype != dtype
            or work.get("sparse_net") is not net):
        held = np.empty(size, dtype=dtype)
        held[:net[8][0]] = 0
        work["sparse"] = held
        work["sparse_net"] = net
    sp = held
    p.nt.sp.work = &sp[0]
    return work


cdef inline const floating* pass_input(const Pass* p, const long long* rows,
                                       Py_ssize_t b, floating* xbuf, int* ld,
                                       int n_threads) noexcept nogil:
    """The input rows of a chunk (batch_input): into X when they are
    consecutive, else gathered into xbuf; NULL for CSR X."""
    return batch_input(<const floating*>p.X, p.s0, p.s1, p.nt.units[0], rows,
                       b, p.contiguous, xbuf, ld, n_threads)


cdef inline double forward_loss(
        const Net* nt, const floating* theta, const floating* X0, int ld0,
        const Csr* csr, const long long* rows, Py_ssize_t b, floating* acts,
        const floating* Y, const floating* sw, double scale, int loss,
        double* row_loss, int n_threads) noexcept nogil:
    """Forward pass of a chunk, then its output layer's loss (returned,
    weighted by scale * sw) and delta (in the output slot)."""
    cdef int L = nt.n_layers
    forward(nt, theta, X0, ld0, csr, rows, b, acts, False, n_threads)
    return output_loss_delta(slot(nt, acts, b, L), theta + nt.b_off[L - 1],
                             Y, no_classes(), nt.units[L], sw, rows, b, scale, loss,
                             nt.act[L - 1], row_loss, n_threads)


# Rows a thread must get for a pass to run data parallel (rows_parallel):
# below this the start of the parallel region and the final sum cost more
# than they save.
cdef enum:
    PAR_MIN_ROWS = 128


cdef inline int share_threads(bint rows_parallel, int n_threads, Py_ssize_t n,
                              Py_ssize_t* chunk) noexcept:
    """Threads that take a share of n rows each (1: the chunks run one after
    another, each operation on n_threads); chunk is shortened so that every
    share has rows."""
    cdef int T
    if not rows_parallel or n_threads < 2 or n < 2 * PAR_MIN_ROWS:
        return 1
    T = <int>min(<Py_ssize_t>n_threads, n // PAR_MIN_ROWS)
    chunk[0] = min(chunk[0], (n + T - 1) // T)
    return T


cdef inline bint dense_only(const Net* nt) noexcept nogil:
    cdef int l
    for l in range(nt.n_layers):
        if nt.sp.mode[l] != SP_DENSE:
            return False
    return True


cdef inline Py_ssize_t share_start(Py_ssize_t n, Py_ssize_t B, int t,
                                   int T) noexcept nogil:
    """First row of share t of T (share t is rows share_start(t) to
    share_start(t + 1)): whole chunks of B rows, in order. Returned, not
    stored through a pointer: in a prange body Cython makes a variable
    thread-private only where the body assigns it."""
    cdef Py_ssize_t n_chunks = (n + B - 1) // B
    return min(n, t * n_chunks // T * B)


cdef inline void add_shares(floating* out, const floating* shares, int T,
                            Py_ssize_t P) noexcept nogil:
    """out[i] += shares[(u - 1) * P + i] for u = 1..T-1, in that order."""
    cdef Py_ssize_t i
    cdef int u
    cdef floating s
    for i in prange(P, schedule="static", num_threads=T):
        s = out[i]
        for u in range(1, T):
            s = s + shares[(u - 1) * P + i]
        out[i] = s
