"""One whole training epoch of a first-order solver, without the GIL.

Python calls run_epoch once per epoch (so progress, stopping rules and
callbacks live between epochs); everything inside it, shuffling included,
is compiled. Buffers are allocated by the caller once per fit.
"""
import numpy as np
from cython cimport floating
from libc.math cimport isfinite, pow, sqrt
from cpython.exc cimport PyErr_CheckSignals
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC

from _layers cimport (Net, Csr, forward, backward, slot, batch_input,
                      rows_contiguous)
from _args cimport unpack_net, unpack_input, new_sparse_work
from _losses cimport output_loss_delta, LOSS_LOG
from _activations cimport ACT_SOFTMAX, ACT_LOGISTIC
from _updates cimport Rule, Pieces, apply_step, RULE_ADAM
from _rng cimport shuffle as rng_shuffle, next_u64
from _dropout cimport Dropout
from _guard cimport all_finite

# Signals (Ctrl-C) are looked at no more often than this, in seconds.
cdef double SIGNAL_INTERVAL = 0.05


cdef inline double now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + 1e-9 * ts.tv_nsec


cdef int check_signals() except -1 with gil:
    return PyErr_CheckSignals()


def run_epoch(floating[::1] theta, floating[::1] grad,
              floating[:, ::1] opt_state, X, Y,
              const floating[::1] sample_weight, idx,
              unsigned long long[::1] rng_state, bint shuffle,
              Py_ssize_t batch_size, tuple net, int loss, dict rule,
              tuple pieces, floating[::1] acts, floating[::1] tmp,
              floating[::1] xbuf, double[::1] row_loss, double[::1] part,
              long long[::1] step_count, double alpha, double l1,
              int n_threads, tuple dropout=None,
              floating[::1] sp_work=None):
    """Run one epoch over the samples idx (shuffled in place first; int32,
    or int64 for 2**31 rows or more).

    Parameters
    ----------
    theta, grad : flat parameters and gradient workspace.
    opt_state : (2, n_params) optimiser state, updated in place.
    X : C/F/strided ndarray or (data, indices, indptr) of a CSR matrix.
    Y : targets (n_samples, n_outputs) of theta's dtype or, for the log
        loss of a softmax or one-logistic output, the class indices
        (n_samples,) as int32.
    sample_weight : weights or None.
    net : (units, w_off, act, slope), see _layers.Net.
    rule : dict with the Rule fields; rule['lr'] is the base learning rate.
    pieces : (lo, hi, is_weight, chunk_ptr), see _updates.Pieces.
    acts, tmp, xbuf, row_loss, part : workspaces sized for batch_size.
    step_count : [number of updates so far] (Adam's t), updated in place.
    dropout : None, or (keep, unit_off, mask, state), see _dropout.Dropout:
        keep probabilities per hidden layer (float64), unit offsets of the
        hidden layers (int64), a uint8 mask workspace of batch_size x hidden
        units, and [the dropout stream's state] (uint64, updated in place;
        one key is drawn from it per batch).
    sp_work : zeros of Layout.work_len(batch_size), the pruned layers'
        workspace (allocated here when None).

    Returns
    -------
    loss_sum : sum over batches of (batch loss * batch length).
    n_batches : batches completed.
    finite : False if a loss or a gradient became non-finite, or a step
        took a parameter beyond the dtype's range; the epoch stops there.
        In the first two cases theta and the optimiser state are those of
        the last finite step (_guard.pxd); in the third, theta holds the
        non-finite values (an update of finite values by a finite gradient
        overflowing: parameters near the dtype's largest value).
    """
    cdef Net nt = unpack_net(net)
    if sp_work is None:
        sp_work = new_sparse_work(net, batch_size, np.float32 if floating is float
                                  else np.float64)
    nt.sp.work = &sp_work[0]

    cdef const long long[::1] p_lo = pieces[0]
    cdef const long long[::1] p_hi = pieces[1]
    cdef const signed char[::1] p_w = pieces[2]
    cdef const long long[::1] p_ptr = pieces[3]
    cdef Pieces pc
    pc.lo = &p_lo[0]
    pc.hi = &p_hi[0]
    pc.is_weight = &p_w[0]
    pc.chunk_ptr = &p_ptr[0]
    pc.n_chunks = p_ptr.shape[0] - 1

    cdef Rule r
    r.kind = rule['kind']
    r.lr = rule['lr']
    r.momentum = rule['momentum']
    r.nesterov = rule['nesterov']
    r.beta1 = rule['beta1']
    r.beta2 = rule['beta2']
    r.eps = rule['eps']
    r.rho = rule['rho']
    cdef double lr0 = r.lr

    cdef Dropout dp
    cdef const double[::1] d_keep
    cdef const long long[::1] d_off
    cdef unsigned char[::1] d_mask
    cdef unsigned long long[::1] d_state
    if dropout is not None:
        d_keep, d_off, d_mask, d_state = dropout
        dp.keep = &d_keep[0]
        dp.unit_off = &d_off[0]
        dp.mask = &d_mask[0]
        nt.drop = &dp

    cdef Csr csr
    cdef const floating* X_ptr
    cdef Py_ssize_t s0 = 0, s1 = 0, n_feat = nt.units[0]
    unpack_input(X, &csr, &X_ptr, &s0, &s1)

    cdef const floating* sw = NULL
    cdef const floating[:, ::1] Y_mat
    cdef const int[::1] Y_cls
    cdef const floating* Yp = NULL
    cdef const int* cls = NULL
    if Y.ndim == 1:
        Y_cls = Y
        cls = &Y_cls[0]
        # The kernel indexes the output row with these: refuse what would
        # read outside it.
        if loss != LOSS_LOG or nt.act[nt.n_layers - 1] not in (ACT_SOFTMAX,
                                                                ACT_LOGISTIC):
            raise ValueError("class-index targets need the log loss of a "
                             "softmax or logistic output")
        if Y_cls.shape[0] and (np.min(Y) < 0 or np.max(Y) >= max(
                2, nt.units[nt.n_layers])):
            raise ValueError("class indices out of range for the output layer")
    else:
        Y_mat = Y
        Yp = &Y_mat[0, 0]
    if sample_weight is not None:
        sw = &sample_weight[0]

    # An int32 idx is half the memory of int64; the kernels read each
    # batch's rows widened into brows (batch_size entries).
    cdef int[::1] idx32
    cdef long long[::1] idx64
    cdef long long[::1] brows
    cdef long long* rows
    cdef bint narrow = idx.dtype == np.int32
    if narrow:
        idx32 = idx
        brows = np.empty(batch_size, dtype=np.int64)
    else:
        idx64 = idx

    cdef Py_ssize_t n = idx.shape[0], start, b, i
    cdef Py_ssize_t k = nt.units[nt.n_layers]
    cdef int L = nt.n_layers
    cdef bint contiguous
    cdef const floating* X0
    cdef int ld0
    cdef floating* out
    cdef double swsum, data_loss, sq, ab, total = 0, t_last
    cdef Py_ssize_t n_done = 0
    cdef bint finite = True
    cdef long long t

    with nogil:
        if shuffle and narrow:
            rng_shuffle(&idx32[0], n, &rng_state[0])
        elif shuffle:
            rng_shuffle(&idx64[0], n, &rng_state[0])
        t_last = now()
        start = 0
        while start < n:
            b = min(batch_size, n - start)
            if narrow:
                for i in range(b):
                    brows[i] = idx32[start + i]
                rows = &brows[0]
            else:
                rows = &idx64[start]
            contiguous = rows_contiguous(X_ptr, s0, s1, n_feat, rows, b)
            X0 = batch_input(X_ptr, s0, s1, n_feat, rows, b,
                             contiguous, &xbuf[0], &ld0, n_threads)
            if nt.drop != NULL:
                dp.key = next_u64(&d_state[0])
            forward(&nt, &theta[0], X0, ld0, &csr, rows, b, &acts[0],
                    False, n_threads)
            if sw == NULL:
                swsum = b
            else:
                swsum = 0
                for i in range(b):
                    swsum += sw[rows[i]]
            out = slot(&nt, &acts[0], b, L)
            data_loss = output_loss_delta(
                out, &theta[0] + nt.b_off[L - 1], Yp, cls, k, sw, rows, b,
                1 / swsum, loss, nt.act[L - 1], &row_loss[0], n_threads)
            if not isfinite(data_loss):
                finite = False
                break
            backward(&nt, &theta[0], X0, ld0, &csr, rows, b, &acts[0],
                     &tmp[0], &grad[0], False, n_threads)
            if not all_finite(&grad[0], grad.shape[0], n_threads):
                finite = False  # theta and the optimiser state untouched
                break
            step_count[0] += 1
            if r.kind == RULE_ADAM:
                t = step_count[0]
                r.lr = lr0 * sqrt(1 - pow(r.beta2, t)) / (1 - pow(r.beta1, t))
            finite = apply_step(&theta[0], &grad[0], &opt_state[0, 0],
                                &opt_state[1, 0], &pc, &r,
                                <floating>(alpha / swsum),
                                <floating>(l1 / swsum), &part[0], &sq, &ab,
                                n_threads)
            total += (data_loss + (0.5 * alpha * sq + l1 * ab) / swsum) * b
            n_done += 1
            if not finite:
                break
            if now() - t_last > SIGNAL_INTERVAL:
                check_signals()
                t_last = now()
            start += b
    return total, n_done, finite
