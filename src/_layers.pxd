# The network as a chain of dense blocks over one flat parameter vector.
#
# theta holds, for each layer l, W_l (units[l] x units[l+1], row-major) at
# w_off[l] followed by its bias b_l. Activations are row-major batch x units.
# forward() leaves phi(A W + b) of every layer in its slot of `acts`;
# backward() consumes the output delta in the last slot and overwrites each
# slot with that layer's delta on the way down (an activation is dead once
# its delta exists), so one extra batch x max(units) buffer is all it needs.
from cython cimport floating
from cython.parallel cimport prange
from libc.string cimport memcpy, memset
from _small_gemm cimport (prod_nn, prod_tn, prod_nt, small_gemm, kernels_take,
                          prod_nn_bias_relu, prod_nt_relu_grad, FM_KC,
                          FM_NN, FM_TN, FM_NT, small_max_work,
                          small_gemm_epi, small_gemm_idx, FM_EPI_NONE,
                          FM_EPI_BIAS_RELU, FM_EPI_RELU_GRAD)
from _blas cimport gemm, mm_nn, mm_nt
from _cache cimport prefetch
from _simd cimport fm_isa
from _activations cimport bias_act, deriv_set, deriv_mul, PAR_MIN, ACT_RELU
from _dropout cimport (Dropout, dropout_forward, dropout_backward, dropout_rows,
                       dropout_deriv_rows)
from _sparse_layers cimport (SpNet, SP_DENSE, SP_GEMM, sp_use_kernels, sp_forward,
                             sp_backward, sp_densify, sp_dense_w,
                             sp_gather_grad)


cdef struct Net:
    int n_layers                # L weight layers; units has L + 1 entries
    const int* units
    const long long* w_off      # W_l at theta[w_off[l]], b_l right after it
    const int* act              # act[L - 1] is the output activation
    double slope                # leaky relu negative slope
    const Dropout* drop         # NULL: no dropout (all but the training epoch)
    const long long* b_off      # b_l at theta[b_off[l]]
    SpNet sp                    # pruned layers (_sparse_layers.pxd)
    bint exact_tn               # A^T delta in the small kernels up to small_max_work()
                                # where a batch may split (rows_split): set by the epoch
    const long long* xrows      # not NULL: the first layer's input is rows xrows[]
                                # of X0 (row stride ld0), read in place (rows_in_place)
    bint w0_fused               # backward leaves the first layer's weight gradient
                                # to the update (the epoch's tn_adam step)


cdef struct Csr:                # sparse X in CSR form (NULL data when dense)
    const void* data
    const int* indices
    const int* indptr


cdef inline floating* slot(const Net* net, floating* acts, Py_ssize_t B,
                           int l) noexcept nogil:
    """Activations of layer l >= 1 (layer 0 is the input)."""
    cdef Py_ssize_t off = 0
    cdef int i
    for i in range(1, l):
        off += net.units[i]
    return acts + B * off


cdef enum:
    # Rows ahead of the copy whose lines gather_rows asks for: a shuffled
    # batch's rows lie anywhere in X, often beyond the caches, and each
    # row's first lines would otherwise wait on memory in turn.
    GATHER_AHEAD = 2


cdef inline void prefetch_row(const floating* X, Py_ssize_t s0,
                              Py_ssize_t n_feat, const long long* rows,
                              Py_ssize_t B, Py_ssize_t r) noexcept nogil:
    """Ask for the cache lines of X[rows[r], :n_feat] (unit column stride),
    if r < B."""
    cdef Py_ssize_t j
    cdef const char* p
    if r < B:
        p = <const char*>(X + rows[r] * s0)
        for j in range(0, n_feat * <Py_ssize_t>sizeof(floating), 64):
            prefetch(p + j)


cdef inline void gather_rows(const floating* X, Py_ssize_t s0, Py_ssize_t s1,
                             const long long* rows, Py_ssize_t B,
                             Py_ssize_t n_feat, floating* out,
                             int n_threads) noexcept nogil:
    """out[r, :] = X[rows[r], :] for any (element) strides s0, s1."""
    cdef Py_ssize_t r, j
    cdef const floating* src
    if s1 == 1:
        if n_threads > 1 and B * n_feat >= PAR_MIN:
            for r in prange(B, schedule='static', num_threads=n_threads):
                prefetch_row(X, s0, n_feat, rows, B, r + GATHER_AHEAD)
                memcpy(out + r * n_feat, X + rows[r] * s0,
                       n_feat * sizeof(floating))
        else:
            for r in range(B):
                prefetch_row(X, s0, n_feat, rows, B, r + GATHER_AHEAD)
                memcpy(out + r * n_feat, X + rows[r] * s0,
                       n_feat * sizeof(floating))
    else:
        for r in range(B):
            src = X + rows[r] * s0
            for j in range(n_feat):
                out[r * n_feat + j] = src[j * s1]


cdef inline void csr_row_times(const floating* data, const int* indices,
                               Py_ssize_t p0, Py_ssize_t p1,
                               const floating* W, Py_ssize_t n_out,
                               floating* z) noexcept nogil:
    cdef Py_ssize_t p, j
    cdef floating v
    cdef const floating* w
    memset(z, 0, n_out * sizeof(floating))
    for p in range(p0, p1):
        v = data[p]
        w = W + <Py_ssize_t>indices[p] * n_out
        for j in range(n_out):
            z[j] = z[j] + v * w[j]


cdef inline void csr_matmul(const Csr* X, const long long* rows, Py_ssize_t B,
                            const floating* W, Py_ssize_t n_out, floating* Z,
                            int n_threads) noexcept nogil:
    """Z = X[rows] @ W for CSR X and dense row-major W."""
    cdef const floating* data = <const floating*>X.data
    cdef Py_ssize_t r, i
    if n_threads > 1 and B > 1 and B * n_out >= PAR_MIN // 8:
        for r in prange(B, schedule='static', num_threads=n_threads):
            i = rows[r]
            csr_row_times(data, X.indices, X.indptr[i], X.indptr[i + 1],
                          W, n_out, Z + r * n_out)
    else:
        for r in range(B):
            i = rows[r]
            csr_row_times(data, X.indices, X.indptr[i], X.indptr[i + 1],
                          W, n_out, Z + r * n_out)


cdef inline void csr_grad_cols(const floating* data, const Csr* X,
                               const long long* rows, Py_ssize_t B,
                               const floating* D, Py_ssize_t n_out,
                               floating* dW, Py_ssize_t j0,
                               Py_ssize_t j1) noexcept nogil:
    cdef Py_ssize_t r, p, j
    cdef floating v
    cdef floating* g
    cdef const floating* d
    for r in range(B):
        d = D + r * n_out
        for p in range(X.indptr[rows[r]], X.indptr[rows[r] + 1]):
            v = data[p]
            g = dW + <Py_ssize_t>X.indices[p] * n_out
            for j in range(j0, j1):
                g[j] = g[j] + v * d[j]


cdef inline void csr_grad(const Csr* X, const long long* rows, Py_ssize_t B,
                          const floating* D, Py_ssize_t n_in,
                          Py_ssize_t n_out, floating* dW, bint accumulate,
                          int n_threads) noexcept nogil:
    """dW (+)= X[rows].T @ D; threads own disjoint column blocks of dW."""
    cdef const floating* data = <const floating*>X.data
    cdef Py_ssize_t c, n_blocks = (n_out + 31) // 32
    if not accumulate:
        memset(dW, 0, n_in * n_out * sizeof(floating))
    if n_threads > 1 and n_blocks > 1:
        for c in prange(n_blocks, schedule='static', num_threads=n_threads):
            csr_grad_cols(data, X, rows, B, D, n_out, dW, c * 32,
                          min(n_out, c * 32 + 32))
    else:
        csr_grad_cols(data, X, rows, B, D, n_out, dW, 0, n_out)


cdef inline void csr_grad_block(const Csr* X, const long long* rows,
                                Py_ssize_t B, const floating* D,
                                Py_ssize_t n_out, floating* dW, Py_ssize_t i0,
                                Py_ssize_t i1, Py_ssize_t j0,
                                Py_ssize_t j1) noexcept nogil:
    """Rows i0:i1, columns j0:j1 of csr_grad's dW = X[rows].T @ D (not
    accumulating), each entry's sum in csr_grad's order (the two-core
    epoch's gradient stage)."""
    cdef const floating* data = <const floating*>X.data
    cdef Py_ssize_t r, p, i, j
    cdef floating v
    cdef floating* g
    cdef const floating* d
    for i in range(i0, i1):
        memset(dW + i * n_out + j0, 0, (j1 - j0) * sizeof(floating))
    for r in range(B):
        d = D + r * n_out
        for p in range(X.indptr[rows[r]], X.indptr[rows[r] + 1]):
            i = X.indices[p]
            if i < i0 or i >= i1:
                continue
            v = data[p]
            g = dW + i * n_out
            for j in range(j0, j1):
                g[j] = g[j] + v * d[j]


cdef inline void col_sums(const floating* D, Py_ssize_t B, Py_ssize_t n,
                          floating* out, bint accumulate) noexcept nogil:
    cdef Py_ssize_t r, j
    cdef const floating* d
    if not accumulate:
        memset(out, 0, n * sizeof(floating))
    for r in range(B):
        d = D + r * n
        for j in range(n):
            out[j] = out[j] + d[j]


cdef inline void forward(const Net* net, const floating* theta,
                         const floating* X0, int ld0, const Csr* Xs,
                         const long long* rows, Py_ssize_t B, floating* acts,
                         bint output_act, int n_threads) noexcept nogil:
    """Fill the activation slots for a batch.

    The input is X0 (B rows, row stride ld0) or, when Xs.data is not NULL,
    rows `rows` of the CSR matrix Xs. With output_act false the last slot
    keeps the output layer's pre-bias values A W, for the fused loss.
    """
    cdef int l, L = net.n_layers
    cdef Py_ssize_t n_in, n_out
    cdef const floating* W
    cdef const floating* A = X0
    cdef int lda = ld0
    cdef floating* Z
    cdef bint act_done
    for l in range(L):
        n_in = net.units[l]
        n_out = net.units[l + 1]
        W = theta + net.w_off[l]
        Z = slot(net, acts, B, l + 1)
        act_done = False
        if sp_use_kernels(&net.sp, l, B, A):  # pruned (_sparse_layers.pxd)
            sp_forward(&net.sp, l, n_in, n_out, W, A, lda,
                       Xs.data if l == 0 else NULL, Xs.indices, Xs.indptr,
                       rows, B, Z, n_threads)
        else:
            if net.sp.mode[l] == SP_GEMM:  # pruned, but gemm is faster
                W = sp_densify(&net.sp, l, n_in, n_out, W)
            if l == 0 and Xs.data != NULL:
                csr_matmul(Xs, rows, B, W, n_out, Z, n_threads)
            elif l == 0 and net.xrows != NULL:
                act_done = (l < L - 1 or output_act) and net.act[l] == ACT_RELU
                small_gemm_idx(FM_NN, B, n_out, n_in, A, lda, net.xrows, W, n_out,
                               Z, n_out, 0,
                               FM_EPI_BIAS_RELU if act_done else FM_EPI_NONE,
                               theta + net.b_off[l], <floating*>NULL, n_threads)
            elif ((l < L - 1 or output_act) and net.act[l] == ACT_RELU
                    and prod_nn_bias_relu(A, lda, W, Z, <int>B, <int>n_in,
                                          <int>n_out, theta + net.b_off[l],
                                          n_threads)):
                act_done = True
            else:
                prod_nn(A, lda, W, Z, <int>B, <int>n_in, <int>n_out, 0,
                        n_threads)
        if (l < L - 1 or output_act) and not act_done:
            bias_act(Z, theta + net.b_off[l], B, n_out, net.act[l],
                     <floating>net.slope, n_threads)
        if net.drop != NULL and l < L - 1:
            dropout_forward(net.drop, l, Z, B, n_out, n_threads)
        A = Z
        lda = <int>n_out


cdef inline void backward(const Net* net, const floating* theta,
                          const floating* X0, int ld0, const Csr* Xs,
                          const long long* rows, Py_ssize_t B, floating* acts,
                          floating* tmp, floating* grad, bint accumulate,
                          int n_threads) noexcept nogil:
    """Gradient of the batch loss, given the output delta in the last slot.

    Writes (or with accumulate, adds) dW_l = A_{l-1}.T delta_l and
    db_l = sum_rows delta_l into grad, which has theta's layout; with
    net.w0_fused, all but the first layer's dW (the epoch's tn_adam step
    computes it from the first layer's delta, left in its slot).
    """
    cdef int l, L = net.n_layers
    cdef Py_ssize_t n_in, n_out
    cdef const floating* W
    cdef const floating* A
    cdef floating* D
    cdef floating* dW
    cdef int lda
    cdef bint sparse
    cdef bint bias_done = False  # the product of layer l + 1 summed D
    for l in range(L - 1, -1, -1):
        n_in = net.units[l]
        n_out = net.units[l + 1]
        W = theta + net.w_off[l]
        dW = grad + net.w_off[l]
        D = slot(net, acts, B, l + 1)
        if l == 0:
            A = X0
            lda = ld0
        else:
            A = slot(net, acts, B, l)
            lda = <int>n_in
        sparse = sp_use_kernels(&net.sp, l, B, A)
        if sparse:  # pruned (_sparse_layers.pxd)
            sp_backward(&net.sp, l, n_in, n_out, W, A, lda,
                        Xs.data if l == 0 else NULL, Xs.indices, Xs.indptr,
                        rows, B, D, dW, accumulate, tmp if l > 0 else NULL,
                        n_threads)
        else:
            if net.sp.mode[l] == SP_GEMM:  # dense copies; forward filled W
                W = sp_dense_w(&net.sp, l, W)
                dW = <floating*>W + n_in * n_out
            if l == 0 and net.w0_fused:
                pass
            elif l == 0 and Xs.data != NULL:
                csr_grad(Xs, rows, B, D, n_in, n_out, dW,
                         accumulate and net.sp.mode[l] != SP_GEMM, n_threads)
            elif l == 0 and net.xrows != NULL:
                small_gemm_idx(FM_TN, n_in, n_out, B, A, lda, net.xrows, D, n_out,
                               dW, n_out, accumulate, FM_EPI_NONE,
                               <const floating*>NULL, <floating*>NULL, n_threads)
            else:
                prod_tn(A, lda, D, dW, <int>B, <int>n_in, <int>n_out,
                        1 if accumulate and net.sp.mode[l] != SP_GEMM else 0,
                        n_threads, net.exact_tn)
            if net.sp.mode[l] == SP_GEMM:
                sp_gather_grad(&net.sp, l, n_in, n_out, dW,
                               grad + net.w_off[l], accumulate)
        if not bias_done:
            col_sums(D, B, n_out, grad + net.b_off[l], accumulate)
        bias_done = False
        if l > 0:
            # Through a relu, the product writes the next delta straight
            # over the activations it is read off, and sums its columns
            # (the next layer's bias gradient) while they are in registers.
            if (not sparse and net.drop == NULL and net.act[l - 1] == ACT_RELU
                    and prod_nt_relu_grad(D, W, slot(net, acts, B, l),
                                          <int>B, <int>n_out, <int>n_in,
                                          grad + net.b_off[l - 1], accumulate,
                                          n_threads)):
                bias_done = True
                continue
            if not sparse:
                prod_nt(D, W, tmp, <int>B, <int>n_out, <int>n_in, 0,
                        n_threads)
            if net.drop != NULL:
                dropout_backward(net.drop, l - 1, tmp, slot(net, acts, B, l),
                                 B, n_in, n_threads)
            deriv_set(tmp, slot(net, acts, B, l), B * n_in, net.act[l - 1],
                      <floating>net.slope, n_threads)


cdef inline bint backward_uses_tmp(const Net* net, Py_ssize_t B) noexcept nogil:
    """False if backward on batches of up to B rows never touches tmp: every
    hidden delta is written over its layer's output by prod_nt_relu_grad
    (dense relu layers, no dropout, products in the kernels); then an epoch
    needs no tmp workspace (net.drop must be set as the epoch sets it)."""
    cdef int l
    if fm_isa() == 0 or net.drop != NULL:
        return True
    for l in range(1, net.n_layers):
        if (net.sp.mode[l] != SP_DENSE or net.act[l - 1] != ACT_RELU
                or net.units[l + 1] > FM_KC
                or B * net.units[l] * net.units[l + 1] > small_max_work()):
            return True
    return False


cdef inline const floating* batch_input(
        const floating* X, Py_ssize_t s0, Py_ssize_t s1, Py_ssize_t n_feat,
        const long long* rows, Py_ssize_t B, bint contiguous, floating* xbuf,
        int* ld, int n_threads) noexcept nogil:
    """Row-major input rows for a batch: a pointer into X when the rows are
    consecutive and unit-stride (no copy), else gathered into xbuf. NULL for
    CSR input (X NULL), whose first layer reads the matrix directly."""
    if X == NULL:
        ld[0] = 0
        return NULL
    if contiguous:
        ld[0] = <int>s0
        return X + rows[0] * s0
    gather_rows(X, s0, s1, rows, B, n_feat, xbuf, n_threads)
    ld[0] = <int>n_feat
    return xbuf


cdef inline bint rows_contiguous(const floating* X, Py_ssize_t s0,
                                 Py_ssize_t s1, Py_ssize_t n_feat,
                                 const long long* rows,
                                 Py_ssize_t n) noexcept nogil:
    """True if X is dense with unit column stride and rows are consecutive."""
    cdef Py_ssize_t i
    if X == NULL or s1 != 1 or s0 < n_feat:
        return False
    for i in range(1, n):
        if rows[i] != rows[i - 1] + 1:
            return False
    return True


# The same passes cut for the two-core epoch (src/_epoch.pyx): forward and
# the delta recursion on a thread's own rows of the batch, the gradient of a
# thread's own range of parameters over all rows. Each product is the call
# forward() and backward() make, on a block of rows or columns. The small
# kernels compute every output element as the same chain of multiply-adds
# whatever the block (src/_small_gemm.pxd), so a network whose products all
# run in them gets the results of the whole batch on one thread, bit for
# bit. Larger products go to BLAS, called by each thread on its own block
# with BLAS itself on one thread (the fit caps it: fastmlp/_base.py); its
# sums may be split differently for a block than for the whole product, so
# those networks agree across thread counts to rounding. Unlike backward(),
# the deltas of hidden layers go to their own slots in `deltas` (acts'
# layout), since the gradient stage, which runs after every row's deltas
# exist, still needs the activations.


cdef inline bint rows_split(const Net* net, Py_ssize_t B,
                            Py_ssize_t min_work) noexcept nogil:
    """True if batches of up to B rows can run the split passes below:
    dense layers, and a batch's forward products of at least min_work
    multiply-adds (below that, splitting a batch costs more than it
    saves)."""
    cdef int l
    cdef Py_ssize_t work = 0
    for l in range(net.n_layers):
        if net.sp.mode[l] != SP_DENSE:
            return False
        work += B * net.units[l] * net.units[l + 1]
    return work >= min_work


cdef inline bint grad_cut_free(const Net* net, Py_ssize_t B) noexcept nogil:
    """True if grad_range's entries are the same bits whatever range of
    theta it is asked for: every weight gradient in the small kernels,
    whose chains do not depend on the block; BLAS (past small_max_work(), or
    on a CPU without the kernels) may split its sums by the block."""
    cdef int l
    for l in range(net.n_layers):
        if fm_isa() == 0 or B * net.units[l] * net.units[l + 1] > small_max_work():
            return False
    return True


cdef enum:
    # Above this many multiply-adds in the first layer's product, its batch
    # is gathered: W1's (200 x 784 x 256, X of 63-125 MB) runs 3-9% faster
    # from a gathered copy than with rows read in place twice from memory
    # (benchmarks/thread_split.py --workloads W1, with and without
    # --gather); W2's and W3's, whose X stays in the caches, are no faster.
    ROWS_IN_PLACE_MAX_WORK = 8388608


cdef inline bint rows_in_place(const Net* net, Py_ssize_t B,
                                Py_ssize_t s1) noexcept nogil:
    """True if the first layer reads a batch's input rows in place, by
    index, instead of gathered into a buffer: dense input of unit column
    stride s1 and a dense first layer whose products (A W, A^T delta) both
    run in the small kernels, which take the rows' indices, and up to
    ROWS_IN_PLACE_MAX_WORK."""
    cdef Py_ssize_t work = B * net.units[0] * net.units[1]
    return (s1 == 1 and fm_isa() != 0 and net.sp.mode[0] == SP_DENSE
            and work <= ROWS_IN_PLACE_MAX_WORK)


cdef inline void forward_rows(const Net* net, const floating* theta,
                              const floating* X0, int ld0, const Csr* Xs,
                              const long long* rows, Py_ssize_t B,
                              Py_ssize_t r0, Py_ssize_t r1,
                              floating* acts) noexcept nogil:
    """forward(..., output_act=False) for rows r0:r1 of a batch of B rows
    (dense input X0, row stride ld0, or rows `rows` of the CSR matrix Xs
    when its data is not NULL), on the calling thread."""
    cdef int l, L = net.n_layers
    cdef Py_ssize_t n_in, n_out, nr = r1 - r0
    cdef const floating* A = X0 + (r0 * ld0 if net.xrows == NULL else 0)
    cdef Py_ssize_t lda = ld0
    cdef floating* Z
    cdef bint relu
    for l in range(L):
        n_in = net.units[l]
        n_out = net.units[l + 1]
        Z = slot(net, acts, B, l + 1) + r0 * n_out
        # prod_nn's and prod_nn_bias_relu's choices, made for the whole batch
        # (the epilogue's bias and relu are bias_act's arithmetic)
        if l == 0 and Xs.data != NULL:
            csr_matmul(Xs, rows + r0, nr, theta + net.w_off[l], n_out, Z, 1)
            if l < L - 1:
                bias_act(Z, theta + net.b_off[l], nr, n_out, net.act[l],
                         <floating>net.slope, 1)
        elif l == 0 and net.xrows != NULL:
            relu = l < L - 1 and net.act[l] == ACT_RELU
            small_gemm_idx(FM_NN, nr, n_out, n_in, A, lda, net.xrows + r0,
                           theta + net.w_off[l], n_out, Z, n_out, 0,
                           FM_EPI_BIAS_RELU if relu else FM_EPI_NONE,
                           theta + net.b_off[l], <floating*>NULL, 1)
            if l < L - 1 and not relu:
                bias_act(Z, theta + net.b_off[l], nr, n_out, net.act[l],
                         <floating>net.slope, 1)
        elif not (l < L - 1 and net.act[l] == ACT_RELU
                and B * n_in * n_out <= small_max_work()
                and prod_nn_bias_relu(A, <int>lda, theta + net.w_off[l], Z,
                                      <int>nr, <int>n_in, <int>n_out,
                                      theta + net.b_off[l], 1)):
            if (B * n_in * n_out > small_max_work()
                    or not small_gemm(FM_NN, nr, n_out, n_in, A, lda,
                                      theta + net.w_off[l], n_out, Z, n_out,
                                      0, 1)):
                mm_nn(A, <int>lda, theta + net.w_off[l], Z, <int>nr,
                      <int>n_in, <int>n_out, 0)
            if l < L - 1:
                bias_act(Z, theta + net.b_off[l], nr, n_out, net.act[l],
                         <floating>net.slope, 1)
        if net.drop != NULL and l < L - 1:
            dropout_rows(net.drop, l, slot(net, acts, B, l + 1), B, r0, r1,
                         n_out)
        A = Z
        lda = n_out


cdef inline floating* delta_slot(const Net* net, floating* acts,
                                 floating* deltas, Py_ssize_t B,
                                 int l) noexcept nogil:
    """Where the split passes keep layer l's delta: the output's in its
    activation slot (as output_loss_delta leaves it), hidden layers' in
    deltas."""
    if l == net.n_layers:
        return slot(net, acts, B, l)
    return slot(net, deltas, B, l)


cdef inline void delta_rows(const Net* net, const floating* theta,
                            Py_ssize_t B, Py_ssize_t r0, Py_ssize_t r1,
                            floating* acts, floating* deltas,
                            floating* scratch) noexcept nogil:
    """backward()'s delta recursion for rows r0:r1, given their output delta
    in the last slot of acts: each hidden layer's delta into its slot of
    deltas (acts untouched). With dropout, scratch holds a row of the widest
    hidden layer."""
    cdef int l, L = net.n_layers
    cdef Py_ssize_t n_in, n_out, nr = r1 - r0
    cdef floating* out
    cdef const floating* d
    for l in range(L - 1, 0, -1):
        n_in = net.units[l]
        n_out = net.units[l + 1]
        out = slot(net, deltas, B, l) + r0 * n_in
        d = delta_slot(net, acts, deltas, B, l + 1) + r0 * n_out
        # prod_nt's choice, made for the whole batch
        if (B * n_in * n_out > small_max_work()
                or not small_gemm(FM_NT, nr, n_in, n_out, d, n_out,
                                  theta + net.w_off[l], n_out, out, n_in, 0, 1)):
            mm_nt(d, theta + net.w_off[l], out, <int>nr, <int>n_out, <int>n_in, 0)
        if net.drop != NULL and net.drop.keep[l - 1] < 1:
            dropout_deriv_rows(net.drop, l - 1, slot(net, deltas, B, l),
                               slot(net, acts, B, l), scratch, B, r0, r1, n_in,
                               net.act[l - 1], <floating>net.slope)
        else:
            deriv_mul(slot(net, acts, B, l) + r0 * n_in, out, out, nr * n_in,
                      net.act[l - 1], <floating>net.slope, 1)


cdef inline void delta_rows_in_place(const Net* net, const floating* theta,
                                     Py_ssize_t B, Py_ssize_t r0,
                                     Py_ssize_t r1, floating* acts,
                                     int l) noexcept nogil:
    """Hidden layer l's delta for rows r0:r1 written over its output:
    (delta_{l+1} W_l^T) * [out > 0], with delta_{l+1} in layer l+1's slot of
    acts. Where backward_uses_tmp is False (relu layers, no dropout,
    products in the kernels), as backward computes it there: the two-core
    epoch's delta stage without a deltas buffer."""
    cdef Py_ssize_t n_in = net.units[l], n_out = net.units[l + 1]
    if r1 > r0:
        small_gemm_epi(FM_NT, r1 - r0, n_in, n_out,
                       slot(net, acts, B, l + 1) + r0 * n_out, n_out,
                       theta + net.w_off[l], n_out,
                       slot(net, acts, B, l) + r0 * n_in, n_in, 0,
                       FM_EPI_RELU_GRAD, <const floating*>NULL,
                       <floating*>NULL, 1)


cdef inline void grad_block(const floating* A, Py_ssize_t lda,
                            const long long* ridx, Py_ssize_t n_in,
                            const floating* D, Py_ssize_t n_out, Py_ssize_t B,
                            floating* dW, Py_ssize_t i0, Py_ssize_t i1,
                            Py_ssize_t j0, Py_ssize_t j1) noexcept nogil:
    """Rows i0:i1, columns j0:j1 of dW = A.T D (B rows; dW has n_out
    columns, A n_in; with ridx, A's rows are rows ridx[] of A, whose
    products rows_in_place keeps in the kernels)."""
    # prod_tn's choice with exact set, made for the whole product
    if (B * n_in * n_out > small_max_work()
            or not small_gemm_idx(FM_TN, i1 - i0, j1 - j0, B, A + i0, lda, ridx,
                                  D + j0, n_out, dW + i0 * n_out + j0, n_out, 0,
                                  FM_EPI_NONE, <const floating*>NULL,
                                  <floating*>NULL, 1)):
        # column-major: dW block^T (j x i) = D block^T (j x B) A block (B x i)
        gemm(c'N', c'T', <int>(j1 - j0), <int>(i1 - i0), <int>B, 1, D + j0,
             <int>n_out, A + i0, <int>lda, 0, dW + i0 * n_out + j0, <int>n_out)


cdef inline void grad_range(const Net* net, const floating* X0, int ld0,
                            const Csr* Xs, const long long* brows,
                            Py_ssize_t B, floating* acts, floating* deltas,
                            floating* grad, Py_ssize_t lo,
                            Py_ssize_t hi) noexcept nogil:
    """backward()'s gradient over all B rows, for the entries grad[lo:hi]
    only (theta's layout): the range of parameters a thread also updates,
    so that the gradient stays in that thread's cache. The input is X0 or,
    when Xs.data is not NULL, rows brows of the CSR matrix Xs."""
    cdef int l
    cdef Py_ssize_t n_in, n_out, a, e, p, q, i, j, j1, rows, r
    cdef const floating* A
    cdef Py_ssize_t lda
    cdef const floating* D
    cdef const floating* d
    cdef floating* dW
    cdef floating* db
    for l in range(net.n_layers):
        n_in = net.units[l]
        n_out = net.units[l + 1]
        A = X0 if l == 0 else slot(net, acts, B, l)
        lda = ld0 if l == 0 else n_in
        D = delta_slot(net, acts, deltas, B, l + 1)
        dW = grad + net.w_off[l]
        # weights: a partial row, whole rows, a partial row
        p = max(lo, net.w_off[l]) - net.w_off[l]
        q = min(hi, net.w_off[l] + n_in * n_out) - net.w_off[l]
        while p < q:
            i = p // n_out
            j = p - i * n_out
            if j != 0 or q - p < n_out:
                j1 = min(n_out, j + (q - p))
                rows = 1
            else:
                j1 = n_out
                rows = (q - p) // n_out
            if l == 0 and Xs.data != NULL:
                csr_grad_block(Xs, brows, B, D, n_out, dW, i, i + rows, j, j1)
            else:
                grad_block(A, lda, net.xrows if l == 0 else <const long long*>NULL,
                           n_in, D, n_out, B, dW, i, i + rows, j, j1)
            p = (i + rows - 1) * n_out + j1
        # biases: col_sums on the columns in range, in its order
        a = max(lo, net.b_off[l]) - net.b_off[l]
        e = min(hi, net.b_off[l] + n_out) - net.b_off[l]
        if a < e:
            db = grad + net.b_off[l]
            for j in range(a, e):
                db[j] = 0
            for r in range(B):
                d = D + r * n_out
                for j in range(a, e):
                    db[j] = db[j] + d[j]
