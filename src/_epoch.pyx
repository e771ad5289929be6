"""One whole training epoch of a first-order solver, without the GIL.

Python calls run_epoch once per epoch (so progress, stopping rules and
callbacks live between epochs); everything inside it, shuffling included,
is compiled. Buffers are allocated by the caller once per fit. A batch's
input rows are not copied where the first layer's kernels read them by
index (small and medium first layers, input of unit column stride).

With two or more threads, an epoch of dense layers with enough work per
batch (src/_layers.pxd, rows_split: SPLIT_ALWAYS_WORK, or SPLIT_MIN_WORK
where the cores exchange a cache line fast enough, exchange_pass) runs as one
parallel region in which
every thread walks the same batches (split_worker): the per-operation
parallel loops of the one-thread path cost a futex wake-up per region under
OMP_WAIT_POLICY=PASSIVE, more than a small batch's work, and BLAS's own
threads, taking turns with OpenMP's on the same cores, spin-wait for each
other (on a busy machine for whole time slices). Products too large for the
small kernels go to BLAS, which each thread calls on its own block with
BLAS on one thread. Per batch:

1. each thread forwards, takes the loss delta of and back-propagates the
   deltas of its own rows (rows are independent; the first layer reads
   them in place by index where its kernels can, _layers.rows_in_place,
   else each thread gathers its rows into xbuf);
2. barrier; each thread computes, over all rows, the gradient entries of
   its own range of theta, and scans them (the divergence guard,
   src/_guard.pxd). Where every product runs in the small kernels
   (_layers.grad_cut_free), the ranges are cut where the threads' stages
   take equal time: thread 0 moves the cuts every CUT_WINDOW batches from
   the times measured (a parameter's gradient costs more in some layers
   than in others: the first reads its rows by index). Else each thread
   takes whole update chunks (src/_updates.pxd), as in stage 3;
3. barrier; if any gradient was non-finite every thread stops (theta
   untouched, as on one thread); else each thread applies the update rule
   to its own share of the update chunks (its optimiser state stays in its
   cache);
4. barrier; every thread adds the chunks' sums in chunk order.

With batches of at least IN_PLACE_MIN_WORK (or below SPLIT_MID_WORK)
forward multiply-adds of relu layers whose deltas the one-thread epoch
writes over their outputs, stages 1 and 2 go layer by layer instead, with no buffer of hidden deltas: from
the output layer down, each thread computes the layer's entries of its own
update chunks over all rows (each layer's chunks shared between the
threads), a barrier, then the delta of the layer's input for its own rows
over that input (whose gradient entries every thread has read), a barrier.

A process busy on the other core stalls the barriers; thread 0 then
finishes the epoch alone (SOLO_CHECK).

The barriers are src/fm_barrier.h's spin barrier. Where every product runs
in the small kernels, every value is computed by the same chain of
operations as on one thread, so the results are the same bits whatever the
number of threads; BLAS may split a block's sums differently from the whole
product's, so with it they agree to rounding.
"""
import numpy as np
from cython cimport floating
from libc.math cimport isfinite, pow, sqrt
from cpython.exc cimport PyErr_CheckSignals
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC

from cython.parallel cimport parallel
from _layers cimport (Net, Csr, forward, backward, slot, batch_input,
                      rows_contiguous, gather_rows, rows_split, rows_in_place,
                      forward_rows, delta_rows, delta_rows_in_place, grad_range,
                      backward_uses_tmp, grad_cut_free)
from _args cimport (unpack_net, unpack_input, new_sparse_work, array_data,
                    array_len)
cimport numpy as cnp
from _losses cimport Classes, class_at, output_loss_delta, LOSS_LOG
from _activations cimport ACT_SOFTMAX, ACT_LOGISTIC
from _updates cimport (Rule, Pieces, apply_step, step_chunks, sum_parts,
                      RULE_ADAM)
from _rng cimport shuffle as rng_shuffle, next_u64, Perm, perm_init, perm_at
from _dropout cimport Dropout
from _guard cimport all_finite, span_bad, sum_squares
from _small_gemm cimport (tn_adam, small_gemm_idx, FM_TN, FM_EPI_NONE,
                          SMALL_PAR_MIN)
from _sparse_layers cimport SP_DENSE
from _simd cimport fm_isa
from libc.float cimport FLT_MAX, DBL_MAX

cnp.import_array()

cdef extern from "fm_fpenv.h":
    unsigned long fm_ftz_enter() noexcept nogil
    void fm_ftz_leave(unsigned long old) noexcept nogil

cdef extern from "fm_barrier.h":
    ctypedef struct fm_barrier:
        int n
    int FM_HAVE_SPIN_BARRIER
    void fm_barrier_init(fm_barrier* b, int n) noexcept nogil
    void fm_barrier_set_n(fm_barrier* b, int n) noexcept nogil
    void fm_barrier_wait(fm_barrier* b, int* local_sense) noexcept nogil
    int fm_team_id() noexcept nogil
    int fm_team_size() noexcept nogil
    double fm_barrier_wait_timed(fm_barrier* b, int* local_sense) noexcept nogil
    void fm_publish(int* p, int v) noexcept nogil
    int fm_acquire(const int* p) noexcept nogil
    void fm_count_up(int* p) noexcept nogil
    int fm_wait_join(const int* join, const int* closed) noexcept nogil
    void fm_wait_value(const int* p, int v) noexcept nogil
    int fm_wait_value_for(const int* p, int v, double limit, double* waited) noexcept nogil

# Signals (Ctrl-C) are looked at no more often than this, in seconds.
cdef double SIGNAL_INTERVAL = 0.05


cdef inline double now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + 1e-9 * ts.tv_nsec


cdef int check_signals() except -1 with gil:
    return PyErr_CheckSignals()


cdef extern from "Python.h":
    # PyErr_CheckSignals declared without Cython's exception check, so that
    # signal_pending can hand the exception on instead of swallowing it.
    int check_signals_raw "PyErr_CheckSignals"()


cdef int signal_pending() noexcept with gil:
    """-1, leaving the handler's exception set, if a signal handler raised."""
    return check_signals_raw()


cdef int raise_pending() except -1:
    """Propagate the exception signal_pending left set."""
    return -1


cdef inline double weight_sum(const floating* sw, const long long* rows,
                              Py_ssize_t b) noexcept nogil:
    """The batch's total sample weight (b without weights)."""
    cdef Py_ssize_t i
    cdef double s = 0
    if sw == NULL:
        return b
    for i in range(b):
        s += sw[rows[i]]
    return s


cdef inline const long long* batch_rows(
        const unsigned short* i16, const int* i32, const long long* i64,
        const Perm* perm, Py_ssize_t start, Py_ssize_t b,
        long long* buf) noexcept nogil:
    """Rows start..start+b of the epoch's order as int64: in place for an
    int64 index, else widened into buf (b entries), or computed into it
    from the keyed permutation where there is no index."""
    cdef Py_ssize_t i
    if perm != NULL:
        for i in range(b):
            buf[i] = perm_at(perm, start + i)
        return buf
    if i64 != NULL:
        return i64 + start
    if i32 != NULL:
        for i in range(b):
            buf[i] = i32[start + i]
    else:
        for i in range(b):
            buf[i] = i16[start + i]
    return buf


cdef inline void shuffle_rows(unsigned short* i16, int* i32, long long* i64,
                              Py_ssize_t n, unsigned long long* s) noexcept nogil:
    """Shuffle whichever of the three index widths is given."""
    if i16 != NULL:
        rng_shuffle(i16, n, s)
    elif i32 != NULL:
        rng_shuffle(i32, n, s)
    elif i64 != NULL:
        rng_shuffle(i64, n, s)


cdef bint classes_in_range(Classes c, Py_ssize_t n, Py_ssize_t k) noexcept nogil:
    """Whether every class index is in range(k): the kernel indexes the
    output row with them. A width that cannot reach k needs no look."""
    cdef Py_ssize_t i, v
    if (c.size == 1 and k >= 256) or (c.size == 2 and k >= 65536):
        return True
    for i in range(n):
        v = class_at(c, i)
        if v < 0 or v >= k:
            return False
    return True


cdef inline double sum_in_order(const double* x, Py_ssize_t n) noexcept nogil:
    """The rows' losses added up: one function for both epoch paths, so the
    compiler turns the sum into the same instructions in both."""
    cdef Py_ssize_t i
    cdef double s = 0
    for i in range(n):
        s += x[i]
    return s


cdef inline Py_ssize_t hidden_units(const Net* nt) noexcept nogil:
    """Units of all the hidden layers together."""
    cdef Py_ssize_t h = 0
    cdef int l
    for l in range(1, nt.n_layers):
        h += nt.units[l]
    return h


cdef enum:
    # Rows per thread below which a batch's first stage runs on thread 0
    # alone (the others wait at the barrier): one row block of the product
    # kernels (8 rows) per thread at least.
    SPLIT_MIN_ROWS = 8
    # Rows of a thread's share are a multiple of this. The kernels' sums do
    # not depend on the split (src/_small_gemm.pxd); shares of whole 8-row
    # blocks cut W3's 100-row batches 56/44, and its epochs ran 2-3% slower
    # on two threads than with shares of 50 (benchmarks/thread_split.py).
    SPLIT_ALIGN = 2
    # Thread 0 compares, after every batch, the time it waited at the
    # barriers with the time it worked, over windows of SOLO_CHECK batches:
    # split, a batch takes its work plus its wait, alone about twice its
    # work. When waiting costs more than working, by more than SOLO_SLACK
    # (the other thread lost its core to another process), thread 0 finishes the epoch alone and the other threads leave: the
    # same results, and no core spent waiting for one that is not running.
    SOLO_CHECK = 16
    # Batches between moves of the gradient stage's cuts (rebalance_cuts),
    # and the parameters they are rounded to (a 64-byte line of float32).
    CUT_WINDOW = 4
    CUT_ALIGN = 16
    CUT_MAX_THREADS = 64

cdef double SOLO_SLACK = 200e-6
# Tests: thread 0 waits for the other threads before the first batch, so
# that every batch runs split (a test's few small batches would otherwise
# often be over before the others have woken up). Never in fits.
cdef bint JOIN_AT_START = False

# Else thread 0 waits for the others before its first batch, at most this
# long (seconds) and 1 us per batch of the epoch (a split batch, 1.5M
# multiply-adds or more, takes ~40 us or more: a wait in vain costs a few
# percent of an epoch at most); if they have not all started by then it
# begins alone. W3's epochs (a 40 us cap): 0.9-2.8% faster than starting
# alone every time, over three runs (benchmarks/thread_split.py
# --join-wait 0,30,100), nearly all joining at batch 0.
cdef double JOIN_WAIT = 100e-6
cdef double JOIN_WAIT_PER_BATCH = 1e-6


# Forward multiply-adds per batch below which a batch is never split, and
# from which it is split whatever the cores' exchange costs. Below that it
# is split where a pass of two threads through the barrier (one cache line
# each way, exchange_pass, measured at run time) takes at most
# FAST_EXCHANGE seconds (below SPLIT_MID_WORK) or SLOW_EXCHANGE (from it).
# Each batch exchanges activations, gradients and parameters between the
# cores, so what the halved arithmetic saves depends on how fast a cache
# line crosses (benchmarks/thread_split.py, idle 2-core machines): W2
# (digits 64-100-10, batch 32: 237k) ran 0.71-0.86x as fast on two threads
# as on one where a pass took 170-200 ns (Zen 1), 1.2x (float32) and 1.33x
# (float64) where it took 22-57 ns (Zen 5), and 0.54x in minutes where it
# took ~290 ns (the same Zen 5); splitting paid from ~100k (118k:
# 1.09-1.23x; 59k, float32: 0.96x). W3 (40-100-100-10, batch 100: 1.5M)
# ran 1.14-1.29x at 170-200 ns, 1.5-1.6x at 22-57 ns and 0.86x (float32),
# 0.93x (float64) at ~350 ns. Larger batches were not measured in a slow
# minute; W1 (47M) ran 1.6-1.7x at 22-57 ns. The structure (Net.exact_tn,
# the fused first-layer step) follows SPLIT_MIN_WORK alone, so that
# whether a batch runs split changes no bits.
cdef enum:
    SPLIT_MID_DEFAULT = 524288
    SPLIT_ALWAYS_DEFAULT = 4194304
cdef Py_ssize_t SPLIT_MIN_WORK = 98304
cdef Py_ssize_t SPLIT_MID_WORK = SPLIT_MID_DEFAULT
cdef Py_ssize_t SPLIT_ALWAYS_WORK = SPLIT_ALWAYS_DEFAULT
cdef double FAST_EXCHANGE = 100e-9
cdef double SLOW_EXCHANGE = 250e-9
# The measurement is redone when older than this (seconds): on a shared
# machine the pass time moved between ~25 and ~290 ns from minute to minute
# (the virtual cores moved, or a neighbour shared them), and a busy core
# makes it slow for a while.
cdef double EXCHANGE_TTL = 1.0
cdef double exchange_s = 0, exchange_at = -1e300


cdef double exchange_seconds(int n_threads, Py_ssize_t rounds,
                             int* team) noexcept nogil:
    """Seconds per pass of n_threads threads through the barrier, timed
    after a first pass (the team's start-up is not a pass); team: the size
    OpenMP gave."""
    cdef fm_barrier bar
    cdef double t[2]
    t[0] = t[1] = 0
    team[0] = 1
    fm_barrier_init(&bar, n_threads)
    with parallel(num_threads=n_threads):
        exchange_rounds(&bar, rounds, team, t)
    return (t[1] - t[0]) / max(1, rounds)


cdef void exchange_rounds(fm_barrier* bar, Py_ssize_t rounds, int* team,
                          double* t) noexcept nogil:
    cdef Py_ssize_t i
    cdef int sense = 0
    fm_barrier_set_n(bar, fm_team_size())
    fm_barrier_wait(bar, &sense)
    if fm_team_id() == 0:
        team[0] = fm_team_size()
        t[0] = now()
    for i in range(rounds):
        fm_barrier_wait(bar, &sense)
    if fm_team_id() == 0:
        t[1] = now()


cdef double exchange_pass() noexcept nogil:
    """Seconds per pass of two threads through the barrier (1.0 where
    OpenMP gives one thread), kept for EXCHANGE_TTL seconds: 200 passes
    (~10 us on a fast pair of cores), and 200 more only if those were slow
    (a hiccup is forgiven; a busy core, ~12 us a pass, costs ~5 ms a
    second)."""
    global exchange_s, exchange_at
    cdef int team = 1
    cdef double t = now()
    if t - exchange_at > EXCHANGE_TTL:
        exchange_s = exchange_seconds(2, 200, &team)
        if team == 2 and exchange_s > FAST_EXCHANGE:
            exchange_s = min(exchange_s, exchange_seconds(2, 200, &team))
        if team < 2:
            exchange_s = 1.0  # no second thread to split with
        exchange_at = now()
    return exchange_s


cdef bint split_now(const Net* nt, Py_ssize_t B, int n_threads) noexcept nogil:
    """True if an epoch of this network on n_threads runs split."""
    if (n_threads < 2 or not FM_HAVE_SPIN_BARRIER
            or not rows_split(nt, B, SPLIT_MIN_WORK)):
        return False
    if rows_split(nt, B, SPLIT_ALWAYS_WORK):
        return True
    return exchange_pass() <= (SLOW_EXCHANGE if rows_split(nt, B, SPLIT_MID_WORK)
                               else FAST_EXCHANGE)


# Forward multiply-adds per batch from which the two-core epoch writes the
# hidden deltas over the layer outputs where the one-thread epoch does
# (in_place): no batch x hidden-units buffer, but two more barriers a hidden
# layer and every layer's gradient shared between the threads. W1 (47M):
# whole fits 0-2% slower than with the buffer (compare.py), float64's
# compiled epoch 4-5% (benchmarks/thread_split.py); W3 (1.5M): 1.26-1.31x
# as fast as one thread with the buffer, 0.97-1.06x in place.
cdef Py_ssize_t IN_PLACE_MIN_WORK = 33554432

# Read a batch's input rows in place, by index, where the first layer's
# kernels can (_layers.rows_in_place): no gathered copy of the batch. Off
# only in tests and benchmarks, to compare with the gathered batch.
cdef bint ROWS_IN_PLACE = True


cdef inline bint split_in_place_c(const Net* nt, Py_ssize_t B) noexcept nogil:
    # Below SPLIT_MID_WORK too: there a deltas buffer put a small
    # network's fit over the issue's memory bound (W2 float32: 1.027x it;
    # the parameters, their gradient and moments are most of the fit), and
    # in place costs 8-9% of a W2 epoch split (0.273 -> 0.295 ms float32,
    # 0.436 -> 0.477 float64, against 0.350 / 0.610 on one thread).
    return (not backward_uses_tmp(nt, B)
            and (rows_split(nt, B, IN_PLACE_MIN_WORK)
                 or not rows_split(nt, B, SPLIT_MID_WORK)))


def split_in_place(tuple net, Py_ssize_t batch_size, bint dropout):
    """True if the two-core epoch of this network writes its hidden deltas
    over the layer outputs (no deltas buffer); see IN_PLACE_MIN_WORK."""
    cdef Net nt = unpack_net(net)
    return not dropout and bool(split_in_place_c(&nt, batch_size))


def in_place_min_work(Py_ssize_t work):
    """Set IN_PLACE_MIN_WORK (for tests: 0 puts every network that can be
    in place); returns the previous setting."""
    global IN_PLACE_MIN_WORK
    old = IN_PLACE_MIN_WORK
    IN_PLACE_MIN_WORK = work
    return old


cdef Py_ssize_t widest_layer(const Net* nt) noexcept nogil:
    cdef Py_ssize_t w = 0
    cdef int l
    for l in range(1, nt.n_layers + 1):
        w = max(w, nt.units[l])
    return w


def needs_tmp(tuple net, Py_ssize_t batch_size, bint dropout):
    """True if the one-thread epoch's backward uses its tmp workspace
    (batch_size x the widest layer) for batches of up to batch_size rows;
    False when every hidden delta is written in place (relu layers)."""
    cdef Net nt = unpack_net(net)
    return dropout or backward_uses_tmp(&nt, batch_size)


def rows_in_place_enabled(bint on):
    """Let the first layer read a batch's input rows in place where it can
    (on: the default) or always gather them (tests, benchmarks); returns
    the previous setting."""
    global ROWS_IN_PLACE
    old = ROWS_IN_PLACE
    ROWS_IN_PLACE = on
    return old


def needs_xbuf(tuple net, Py_ssize_t batch_size, X):
    """True if epochs on the kernel input X (see run_epoch) gather batches
    of its rows into xbuf: dense X whose first layer cannot read them in
    place (_layers.rows_in_place)."""
    if isinstance(X, tuple):
        return False
    cdef Net nt = unpack_net(net)
    return not (ROWS_IN_PLACE and X.ndim == 2
                and rows_in_place(&nt, batch_size,
                                  X.strides[1] // X.itemsize if X.shape[1] > 1 else 1))


def split_min_work(Py_ssize_t work):
    """Set the forward multiply-adds per batch from which an epoch may run
    split (for tests: 0 splits every network that can be, whatever the
    exchange costs); returns the previous setting."""
    global SPLIT_MIN_WORK, SPLIT_MID_WORK, SPLIT_ALWAYS_WORK
    old = SPLIT_MIN_WORK
    SPLIT_MIN_WORK = work
    SPLIT_MID_WORK = 0 if work == 0 else SPLIT_MID_DEFAULT
    SPLIT_ALWAYS_WORK = 0 if work == 0 else SPLIT_ALWAYS_DEFAULT
    return old


def fast_exchange(double seconds, double ttl=1.0, slow=None):
    """Set the barrier pass times at most which batches below SPLIT_MID_WORK
    (seconds) and from it up to SPLIT_ALWAYS_WORK (slow, if given) run
    split (0: never; 1: always), and how long a measurement is kept (0:
    measure again at every epoch); returns the previous (seconds, ttl,
    slow). For tests and benchmarks."""
    global FAST_EXCHANGE, SLOW_EXCHANGE, EXCHANGE_TTL, exchange_at
    old = (FAST_EXCHANGE, EXCHANGE_TTL, SLOW_EXCHANGE)
    FAST_EXCHANGE = seconds
    EXCHANGE_TTL = ttl
    if slow is not None:
        SLOW_EXCHANGE = slow
    exchange_at = -1e300
    return old


def exchange_pass_seconds():
    """The barrier pass time the split choice last measured (measuring it
    if none is kept): seconds, 1.0 where OpenMP gives one thread."""
    return exchange_pass()


def split_runs(tuple net, Py_ssize_t batch_size, int n_threads):
    """True if an epoch of this network on n_threads runs split now (the
    split structure applies and, between the thresholds, the cores exchange
    fast); split_applies tells whether it may."""
    cdef Net nt = unpack_net(net)
    return bool(split_now(&nt, batch_size, n_threads))


# Cut the gradient stage where the threads take equal time (split_worker),
# where the results allow it. Off only in benchmarks, to compare with whole
# update chunks.
cdef bint GRAD_CUTS = True


def grad_cuts_enabled(bint on):
    """Let the split epoch cut its gradient stage by measured time (True)
    or give each thread whole update chunks; returns the previous setting."""
    global GRAD_CUTS
    old = GRAD_CUTS
    GRAD_CUTS = on
    return old


def rebalanced_cuts(cuts, seconds):
    """rebalance_cuts on copies (for tests): the cuts (n_threads + 1 theta
    indices) after threads took these seconds for their ranges."""
    cdef Py_ssize_t[::1] c = np.array(cuts, dtype=np.intp)
    cdef double[::1] t = np.array(seconds, dtype=np.float64)
    if c.shape[0] != t.shape[0] + 1 or not 1 <= t.shape[0] <= CUT_MAX_THREADS:
        raise ValueError("cuts needs one entry more than seconds")
    rebalance_cuts(&c[0], &t[0], <int>t.shape[0])
    return np.asarray(c).tolist()


def join_wait_seconds(double seconds, per_batch=None):
    """Set how long thread 0 waits for the team before its first batch, at
    most (and at most per_batch a batch of the epoch, if given); returns the
    previous (seconds, per_batch), for benchmarks and tests."""
    global JOIN_WAIT, JOIN_WAIT_PER_BATCH
    old = (JOIN_WAIT, JOIN_WAIT_PER_BATCH)
    JOIN_WAIT = seconds
    if per_batch is not None:
        JOIN_WAIT_PER_BATCH = per_batch
    return old


def join_at_start(bint wait):
    """Make the split epoch's thread 0 wait for the other threads before
    its first batch (for tests); returns the previous setting."""
    global JOIN_AT_START
    old = JOIN_AT_START
    JOIN_AT_START = wait
    return old


cdef struct Split:
    # shared between the threads of split_worker
    fm_barrier bar
    int bad                # some thread's gradient was not finite
    int stop               # thread 0 saw a signal handler raise
    int solo               # thread 0 goes on alone (see SOLO_CHECK)
    int ready              # threads other than 0 that have started
    int join_at            # the batch they join at (-1: not yet)
    int closed             # thread 0 has finished the epoch
    bint wait_team         # thread 0 waits for the others before batch 0
    double join_wait       # else at most this long (seconds)
    bint in_place          # hidden deltas over the layer outputs, layer by layer
    bint x_in_place        # the first layer reads X's rows by index (no gather)
    # the problem
    Net* nt
    const Csr* csr         # CSR X (data NULL when X is dense)
    const Pieces* pc
    Rule rule              # rule.lr: the base rate
    Py_ssize_t s0, s1, n_feat, n, B
    const unsigned short* idx16  # the epoch's rows (one of the three,
    const int* idx32
    const long long* idx64
    const Perm* perm       # or the keyed order of all rows: no index)
    long long* brows       # n_threads x B: each thread's widened batch rows
    Classes cls
    int loss
    double* row_loss
    double* part
    bint cut_on            # thread t's gradient stage covers theta[cut[t]:cut[t + 1]]
    Py_ssize_t cut[CUT_MAX_THREADS + 1]  # (else whole chunks)
    double grad_s[CUT_MAX_THREADS]       # seconds of each one's stage, this window
    void* scratch          # n_threads x widest hidden layer (dropout)
    Py_ssize_t widest
    unsigned long long d_stream   # the dropout stream at the epoch's start
    unsigned long long d_end      # and after it (from thread 0)
    long long step0
    double alpha, l1
    # results, from thread 0
    double work_s          # its seconds working in split batches
    double wait_s          # its seconds waiting at their barriers
    Py_ssize_t n_split     # batches run split (the others: thread 0 alone)
    double total
    Py_ssize_t n_done
    bint finite


cdef inline void share(Py_ssize_t n, int tid, int nth, Py_ssize_t align,
                       Py_ssize_t* lo, Py_ssize_t* hi) noexcept nogil:
    """Thread tid's part of range(n): whole blocks of align."""
    cdef Py_ssize_t per = (n + nth - 1) // nth
    per = (per + align - 1) // align * align
    lo[0] = min(n, tid * per)
    hi[0] = min(n, lo[0] + per)


cdef inline Py_ssize_t first_chunk_from(const Pieces* pc,
                                        Py_ssize_t x) noexcept nogil:
    """The first update chunk starting at or after theta index x."""
    cdef Py_ssize_t a = 0, b = pc.n_chunks, c
    while a < b:
        c = (a + b) // 2
        if pc.lo[pc.chunk_ptr[c]] < x:
            a = c + 1
        else:
            b = c
    return a


cdef inline void layer_chunks(const Net* nt, const Pieces* pc, int l, int tid,
                              int nth, Py_ssize_t* c0,
                              Py_ssize_t* c1) noexcept nogil:
    """Thread tid's share of the update chunks that start in layer l (the
    in-place split epoch's: each thread updates, and computes the gradient
    of, whole chunks of every layer; a chunk's entries past its layer's
    end belong to the same thread in the later layers' stages)."""
    cdef Py_ssize_t s = first_chunk_from(pc, nt.w_off[l])
    cdef Py_ssize_t e = first_chunk_from(pc, nt.b_off[l] + nt.units[l + 1])
    share(e - s, tid, nth, 1, c0, c1)
    c0[0] += s
    c1[0] += s


cdef void rebalance_cuts(Py_ssize_t* cut, double* grad_s,
                         int nth) noexcept nogil:
    """Move the gradient stage's cuts halfway to where each thread's range
    would take the same time at the rates (parameters a second) measured
    since the last move; reset the times."""
    cdef Py_ssize_t n = cut[nth], old_lo, old_hi, c
    cdef Py_ssize_t least = max(n // (4 * nth), 1 if n >= nth else 0)
    cdef double total = 0, before = 0
    cdef int t
    for t in range(nth):
        if grad_s[t] <= 0 or cut[t + 1] <= cut[t]:
            return  # nothing measured: keep the cuts
        total += (cut[t + 1] - cut[t]) / grad_s[t]
    old_lo = cut[0]
    for t in range(nth - 1):
        old_hi = cut[t + 1]
        before += (old_hi - old_lo) / grad_s[t]
        c = old_hi + (<Py_ssize_t>(n * before / total) - old_hi) // 2
        c = (c + CUT_ALIGN // 2) // CUT_ALIGN * CUT_ALIGN
        # every range keeps a quarter of an even share, to be measured
        cut[t + 1] = max(cut[t] + least, min(n - (nth - 1 - t) * least, c))
        old_lo = old_hi
    for t in range(nth):
        grad_s[t] = 0


cdef void split_worker(Split* S, floating* theta, floating* grad,
                       floating* m1, floating* m2, const floating* X,
                       const floating* Y, const floating* sw, floating* xbuf,
                       floating* acts, floating* deltas) noexcept nogil:
    """One thread's walk through the epoch (see the module's docstring)."""
    cdef int tid = fm_team_id(), nth = fm_team_size(), sense = 0, l
    # The thread's own copy of the network and dropout: each thread draws the
    # batch's dropout key from its own copy of the stream (the same keys).
    cdef Net net_own = S.nt[0]
    cdef Dropout drop_own
    cdef Net* nt = &net_own
    cdef unsigned long long d_stream = S.d_stream
    cdef floating* scratch = NULL
    cdef int L = nt.n_layers
    cdef Py_ssize_t k = nt.units[L], n_feat = S.n_feat
    cdef Py_ssize_t start = 0, b, i, r0, r1, c0, c1, lo, hi, g0, g1
    cdef long long* mine = S.brows + tid * S.B
    cdef const long long* rows
    cdef const floating* X0
    cdef int ld0
    cdef Rule r = S.rule
    cdef double lr0 = S.rule.lr, swsum, data_loss, sq, ab, total = 0
    cdef double t_last = now()
    cdef Py_ssize_t n_done = 0
    cdef bint finite = True
    cdef long long t
    cdef double waited = 0, worked = 0, t_batch = 0, wb = 0, t_grad, t_start = 0
    cdef Py_ssize_t n_timed = 0
    # Thread 0 waits a bounded time for the others (JOIN_WAIT), then starts
    # alone: they join at a batch boundary once they have all started
    # (waking a sleeping OpenMP thread can take longer than a batch, much
    # longer on a busy machine), or not at all this epoch.
    cdef bint solo = True, gave_up = False
    cdef int j
    cdef unsigned long fpenv = fm_ftz_enter()
    fm_barrier_set_n(&S.bar, nth)
    if tid == 0 and nth > 1:
        if S.wait_team:
            fm_wait_value(&S.ready, nth - 1)
            solo = False
        elif S.join_wait > 0:
            # A woken thread usually starts within tens of microseconds; a
            # first batch alone costs W3 ~0.2 ms more than one split.
            solo = not fm_wait_value_for(&S.ready, nth - 1, S.join_wait, &t_start)
            S.wait_s += t_start
        if not solo:
            fm_publish(&S.join_at, 0)
    if tid != 0:
        fm_count_up(&S.ready)
        j = fm_wait_join(&S.join_at, &S.closed)
        if j < 0:
            fm_ftz_leave(fpenv)
            return
        solo = False
        n_done = j
        start = j * S.B
    if S.nt.drop != NULL:
        drop_own = S.nt.drop[0]
        net_own.drop = &drop_own
        for j in range(<int>n_done):
            next_u64(&d_stream)
        scratch = <floating*>S.scratch + tid * S.widest
    while start < S.n:
        if tid == 0:
            t_batch = now()
            wb = 0
        b = min(S.B, S.n - start)
        if nt.drop != NULL:
            drop_own.key = next_u64(&d_stream)
        rows = batch_rows(S.idx16, S.idx32, S.idx64, S.perm, start, b, mine)
        if solo:
            r0 = 0
            r1 = b
        elif b >= SPLIT_MIN_ROWS * nth:
            share(b, tid, nth, SPLIT_ALIGN, &r0, &r1)
        else:
            r0 = 0
            r1 = b if tid == 0 else 0
        net_own.xrows = NULL
        if X == NULL:  # CSR: the first layer reads the matrix's rows
            X0 = NULL
            ld0 = 0
        elif rows_contiguous(X, S.s0, S.s1, n_feat, rows, b):
            X0 = X + rows[0] * S.s0
            ld0 = <int>S.s0
        elif S.x_in_place:
            X0 = X
            ld0 = <int>S.s0
            net_own.xrows = rows
        else:
            gather_rows(X, S.s0, S.s1, rows + r0, r1 - r0, n_feat,
                        xbuf + r0 * n_feat, 1)
            X0 = xbuf
            ld0 = <int>n_feat
        swsum = weight_sum(sw, rows, b)
        if r1 > r0:
            forward_rows(nt, theta, X0, ld0, S.csr, rows, b, r0, r1, acts)
            output_loss_delta(slot(nt, acts, b, L) + r0 * k,
                              theta + nt.b_off[L - 1], Y, S.cls, k, sw,
                              rows + r0, r1 - r0, 1 / swsum, S.loss,
                              nt.act[L - 1], S.row_loss + r0, 1)
            if not S.in_place:
                delta_rows(nt, theta, b, r0, r1, acts, deltas, scratch)
        if not solo:
            wb += fm_barrier_wait_timed(&S.bar, &sense)
        data_loss = sum_in_order(S.row_loss, b)
        if not isfinite(data_loss):
            finite = False
            break
        if solo:
            c0 = 0
            c1 = S.pc.n_chunks
        else:
            share(S.pc.n_chunks, tid, nth, 1, &c0, &c1)
        if S.in_place:
            # Layer by layer from the output: the layer's entries of this
            # thread's update chunks (layer_chunks), over all rows of the
            # batch, scanned by the guard while in cache; once every thread
            # has read the layer's input (barrier), that input's delta over
            # it for this thread's rows, and a barrier before the next layer
            # reads it. Each layer's chunks are shared, not theta's: shares
            # of theta would leave whole layers to one thread while the
            # other waits.
            for l in range(L - 1, -1, -1):
                for j in range(l + 1):
                    layer_chunks(nt, S.pc, j, 0 if solo else tid,
                                 1 if solo else nth, &c0, &c1)
                    if c1 <= c0:
                        continue
                    g0 = max(nt.w_off[l], S.pc.lo[S.pc.chunk_ptr[c0]])
                    g1 = min(nt.b_off[l] + nt.units[l + 1],
                             S.pc.hi[S.pc.chunk_ptr[c1] - 1])
                    if g0 < g1:
                        grad_range(nt, X0, ld0, S.csr, rows, b, acts, acts, grad,
                                   g0, g1)
                        if span_bad(grad + g0, g1 - g0):
                            fm_publish(&S.bad, 1)
                if l > 0:
                    if not solo:
                        wb += fm_barrier_wait_timed(&S.bar, &sense)
                    delta_rows_in_place(nt, theta, b, r0, r1, acts, l)
                    if not solo:
                        wb += fm_barrier_wait_timed(&S.bar, &sense)
        elif S.cut_on and not solo:
            t_grad = now()
            lo = S.cut[tid]
            hi = S.cut[tid + 1]
            if hi > lo:
                grad_range(nt, X0, ld0, S.csr, rows, b, acts, deltas, grad, lo, hi)
                if span_bad(grad + lo, hi - lo):
                    fm_publish(&S.bad, 1)
            S.grad_s[tid] += now() - t_grad
        elif c1 > c0:
            lo = S.pc.lo[S.pc.chunk_ptr[c0]]
            hi = S.pc.hi[S.pc.chunk_ptr[c1] - 1]
            grad_range(nt, X0, ld0, S.csr, rows, b, acts, deltas, grad, lo, hi)
            if span_bad(grad + lo, hi - lo):
                fm_publish(&S.bad, 1)
        if not solo:
            wb += fm_barrier_wait_timed(&S.bar, &sense)
        if fm_acquire(&S.bad):
            finite = False  # theta and the optimiser state untouched
            break
        t = S.step0 + n_done + 1
        if r.kind == RULE_ADAM:
            r.lr = lr0 * sqrt(1 - pow(r.beta2, t)) / (1 - pow(r.beta1, t))
        if S.in_place:
            for j in range(L):
                layer_chunks(nt, S.pc, j, 0 if solo else tid, 1 if solo else nth,
                             &c0, &c1)
                step_chunks(theta, grad, m1, m2, S.pc, c0, c1, &r,
                            <floating>(S.alpha / swsum), <floating>(S.l1 / swsum),
                            S.part)
        else:
            step_chunks(theta, grad, m1, m2, S.pc, c0, c1, &r,
                        <floating>(S.alpha / swsum), <floating>(S.l1 / swsum),
                        S.part)
        if tid == 0:
            if now() - t_last > SIGNAL_INTERVAL:
                if signal_pending():
                    S.stop = 1
                t_last = now()
            if not solo:
                worked += now() - t_batch - wb
                waited += wb
                S.work_s += now() - t_batch - wb
                S.wait_s += wb
                S.n_split += 1
                if waited > worked + SOLO_SLACK:
                    S.solo = 1
                    gave_up = True
                if (n_done + 1) % SOLO_CHECK == 0:
                    waited = 0
                    worked = 0
        if not solo:
            wb = fm_barrier_wait_timed(&S.bar, &sense)
            waited += wb
            if tid == 0:
                S.wait_s += wb
            if S.solo:
                if tid != 0:
                    break
                solo = True
            elif tid == 0 and S.cut_on:
                # every thread's time for this batch was written before the
                # last barrier; none reads the cuts before the next one
                n_timed += 1
                if n_timed % CUT_WINDOW == 0:
                    rebalance_cuts(S.cut, S.grad_s, nth)
        finite = sum_parts(S.part, S.pc.n_chunks, &sq, &ab)
        total += (data_loss + (0.5 * S.alpha * sq + S.l1 * ab) / swsum) * b
        n_done += 1
        if not finite or S.stop:
            break
        start += b
        if (tid == 0 and solo and not gave_up and nth > 1 and start < S.n
                and n_done < 2147483647 and fm_acquire(&S.ready) == nth - 1):
            fm_publish(&S.join_at, <int>n_done)  # after this batch's update
            solo = False
    if tid == 0:
        fm_publish(&S.closed, 1)
        S.d_end = d_stream
        S.total = total
        S.n_done = n_done
        S.finite = finite
    fm_ftz_leave(fpenv)


# Off: every step takes the separate update (tests compare the two).
cdef bint W0_FUSED = True


def w0_fused_enabled(bint on):
    """Turn the first layer's fused gradient-and-Adam step on or off;
    returns the previous setting (for tests and benchmarks)."""
    global W0_FUSED
    old = W0_FUSED
    W0_FUSED = on
    return old


# Off: the fused step's gradient is always computed and scanned first, as
# when the bound below cannot prove it finite (tests take that path).
cdef bint W0_BOUND = True


def w0_bound_enabled(bint on):
    """Turn the fused step's gradient bound on or off (off: the gradient is
    computed and scanned before every fused step); returns the previous
    setting, for tests."""
    global W0_BOUND
    old = W0_BOUND
    W0_BOUND = on
    return old


def w0_fused(tuple net, Py_ssize_t batch_size, dtype, str rule="adam",
             double l1=0.0, bint dense_input=True):
    """True if the one-thread epoch fuses Adam's step on the first layer's
    weights into their gradient's product (w0_fused_applies)."""
    cdef Net nt = unpack_net(net)
    return bool(w0_fused_applies(&nt, batch_size, RULE_ADAM if rule == "adam" else -1, l1,
                                 dense_input, np.dtype(dtype).itemsize))


cdef inline bint w0_fused_applies(const Net* nt, Py_ssize_t B, int rule,
                                  double l1, bint dense_x,
                                  size_t itemsize) noexcept nogil:
    """True if the one-thread epoch applies Adam to the first layer's
    weights inside their gradient's product (tn_adam): float32 Adam without
    an L1 term, a dense first layer over dense input whose A^T delta runs in
    the kernels on one thread, in a network whose batches never run split
    (so that every thread count takes the same path: the loss's sum of
    squared weights is added in another order).

    float32 only: there it is 3-5% faster on W2 and gives the separate
    step's bits where that step's A^T delta runs in the kernels too (exact
    square root and division either way). In float64
    it was 2-5% slower (the blocks' parameters and moments, twice float32's
    bytes, crowd the product's operands out of L1), and its Newton-step
    quotients fall on other vectors than the separate kernel's."""
    return (W0_FUSED and itemsize == 4 and rule == RULE_ADAM and l1 == 0 and dense_x
            and fm_isa() != 0 and nt.sp.mode[0] == SP_DENSE and nt.w_off[0] == 0
            and nt.b_off[0] == <Py_ssize_t>nt.units[0] * nt.units[1]
            and B * nt.units[0] * nt.units[1] < SMALL_PAR_MIN
            and not (FM_HAVE_SPIN_BARRIER and rows_split(nt, B, SPLIT_MIN_WORK)))


cdef bint w0_grad_finite(const Net* nt, const floating* X0, int ld0,
                         Py_ssize_t B, floating* acts, floating* grad,
                         int n_threads) noexcept nogil:
    """True if the first layer's weight gradient X0^T delta (never stored
    by the fused step) is finite: every entry is at most
    |X0's column| |delta's column| <= sqrt(sum X0^2) sqrt(sum delta^2), so
    finite sums of squares whose roots' product is below half the dtype's
    largest value prove it. Otherwise (huge or non-finite values) the
    gradient is computed into grad and scanned, as the separate step's
    guard would."""
    cdef Py_ssize_t i, n0 = nt.units[0], n1 = nt.units[1]
    cdef const floating* D = slot(nt, acts, B, 1)
    cdef double sx = 0, sd = sum_squares(D, B * n1)
    cdef double big = 0.5 * (FLT_MAX if floating is float else DBL_MAX)
    for i in range(B):
        sx += sum_squares(X0 + (nt.xrows[i] if nt.xrows != NULL else i) * ld0, n0)
    if W0_BOUND and sqrt(sx) * sqrt(sd) <= big:  # False for NaN
        return True
    small_gemm_idx(FM_TN, n0, n1, B, X0, ld0, nt.xrows, D, n1, grad, n1, 0,
                   FM_EPI_NONE, <const floating*>NULL, <floating*>NULL, 1)
    return all_finite(grad, n0 * n1, n_threads)


def run_epoch(floating[::1] theta, grad, opt_state, X, Y, sample_weight, idx,
              rng_state, bint shuffle, Py_ssize_t batch_size, tuple net,
              int loss, dict rule, tuple pieces, acts, tmp, xbuf, row_loss,
              part, step_count, double alpha, double l1, int n_threads,
              tuple dropout=None, sp_work=None, deltas=None, timing=None,
              split_state=None, rows_buf=None):
    """Run one epoch over the samples idx: an index array (shuffled in place
    first; uint16, int32, or int64: any, though the narrowest the row count
    allows is the least memory) or the number of samples n, for all of
    range(n) in an order of their own (keyed from rng_state: no index
    array, see _rng.Perm).

    The arrays are C-contiguous ndarrays; the workspaces and the floating
    arrays (grad, opt_state, acts, tmp, xbuf, sp_work, deltas, sample_weight)
    of theta's dtype, the rest float64 (row_loss, part, timing), int64
    (step_count, split_state, rows_buf) or uint64 (rng_state). Their data
    is read straight from them (_args.array_data), with no memoryview
    object; theta, whose dtype picks the float32 or float64 code, is the one
    typed memoryview.

    Parameters
    ----------
    theta, grad : flat parameters and gradient workspace.
    opt_state : (2, n_params) optimiser state, updated in place.
    X : C/F/strided ndarray or (data, indices, indptr) of a CSR matrix.
    Y : targets (n_samples, n_outputs) of theta's dtype or, for the log
        loss of a softmax or one-logistic output, the class indices
        (n_samples,) as uint8, uint16, int32 or int64.
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
    deltas : batch_size x (sum of the hidden layers' units), the hidden
        deltas of the two-core epoch (used with n_threads >= 2 when
        split_applies and not split_in_place; allocated here when None and
        needed). It may be tmp, which the two-core epoch does not use.
    timing : None, or 3 float64 that a split epoch fills with thread 0's
        seconds working and waiting at the barriers, and the number of
        batches it ran split (the rest it ran alone: SOLO_CHECK), for
        benchmarks/thread_split.py; untouched by the one-thread path.
    split_state : None, or 2 or 3 int64 kept by the caller between epochs
        (zeros at first): after an epoch that thread 0 finished alone, the
        next ones run the split epoch on one thread (the same results, no
        barrier), 1, 2, 4 ... up to 16 epochs while that repeats, before
        trying two threads again; the third, where two threads' gradient
        stages were last cut (see split_worker), the next epoch's start.
    rows_buf : None, or int64 workspace of n_threads x batch_size entries
        (batch_size with one thread) for the batches' rows widened from a
        narrow idx (allocated here when None).

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
    cdef int ft = cnp.NPY_FLOAT32 if floating is float else cnp.NPY_FLOAT64
    cdef object fdt = np.float32 if floating is float else np.float64
    cdef Py_ssize_t n_params = theta.shape[0]
    cdef floating* th = &theta[0] if n_params else NULL
    cdef floating* gr = <floating*>array_data(grad, ft, n_params, True, "grad")
    if (not cnp.PyArray_Check(opt_state) or cnp.PyArray_NDIM(<cnp.ndarray>opt_state) != 2
            or cnp.PyArray_DIM(<cnp.ndarray>opt_state, 0) != 2
            or cnp.PyArray_DIM(<cnp.ndarray>opt_state, 1) != n_params):
        raise ValueError("opt_state must be 2 x theta's length")
    cdef floating* m1 = <floating*>array_data(opt_state, ft, 2 * n_params, True,
                                              "opt_state")
    cdef floating* m2 = m1 + n_params
    cdef floating* ac = <floating*>array_data(acts, ft, 1, True, "acts")
    cdef floating* tm = <floating*>array_data(tmp, ft, 1, True, "tmp")
    cdef double* rl = <double*>array_data(row_loss, cnp.NPY_FLOAT64, batch_size,
                                          True, "row_loss")
    cdef long long* sc = <long long*>array_data(step_count, cnp.NPY_INT64, 1, True,
                                                "step_count")
    cdef unsigned long long* rng = <unsigned long long*>array_data(
        rng_state, cnp.NPY_UINT64, 1, True, "rng_state")
    cdef double* tmg = NULL
    if timing is not None:
        tmg = <double*>array_data(timing, cnp.NPY_FLOAT64, 3, True, "timing")
    cdef long long* sst = NULL
    cdef Py_ssize_t n_sst = 0
    if split_state is not None:
        sst = <long long*>array_data(split_state, cnp.NPY_INT64, 2, True,
                                     "split_state")
        n_sst = array_len(split_state)
    cdef Net nt = unpack_net(net)
    # The one-thread path computes A^T delta as the split path does wherever
    # a batch could run split, so that any thread count gives the same bits.
    nt.exact_tn = rows_split(&nt, batch_size, SPLIT_MIN_WORK)
    if sp_work is None:
        sp_work = new_sparse_work(net, batch_size, fdt)
    nt.sp.work = <floating*>array_data(sp_work, ft, 1, True, "sp_work")

    cdef Pieces pc
    pc.n_chunks = array_len(pieces[3]) - 1
    cdef Py_ssize_t n_pieces = array_len(pieces[0])
    pc.lo = <const long long*>array_data(pieces[0], cnp.NPY_INT64, n_pieces, False, "lo")
    pc.hi = <const long long*>array_data(pieces[1], cnp.NPY_INT64, n_pieces, False, "hi")
    pc.is_weight = <const signed char*>array_data(pieces[2], cnp.NPY_INT8, n_pieces,
                                                  False, "is_weight")
    pc.chunk_ptr = <const long long*>array_data(pieces[3], cnp.NPY_INT64,
                                                pc.n_chunks + 1, False, "chunk_ptr")
    cdef double* pt = <double*>array_data(part, cnp.NPY_FLOAT64, 3 * pc.n_chunks, True,
                                          "part")

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
    cdef unsigned long long* d_state = NULL
    if dropout is not None:
        if len(dropout) != 4:
            raise ValueError("dropout is (keep, unit_off, mask, state)")
        dp.keep = <const double*>array_data(dropout[0], cnp.NPY_FLOAT64,
                                            nt.n_layers - 1, False, "keep")
        dp.unit_off = <const long long*>array_data(dropout[1], cnp.NPY_INT64,
                                                   nt.n_layers - 1, False, "unit_off")
        dp.mask = <unsigned char*>array_data(dropout[2], cnp.NPY_UINT8, 1, True, "mask")
        d_state = <unsigned long long*>array_data(dropout[3], cnp.NPY_UINT64, 1, True,
                                                  "dropout state")
        nt.drop = &dp

    cdef Csr csr
    cdef const floating* X_ptr
    cdef Py_ssize_t s0 = 0, s1 = 0, n_feat = nt.units[0]
    unpack_input(X, &csr, &X_ptr, &s0, &s1)

    cdef const floating* sw = NULL
    cdef const floating* Yp = NULL
    cdef Classes cls
    cdef int ytyp
    cls.p = NULL
    cls.size = 0
    cdef Perm keyed
    cdef const Perm* perm = NULL
    cdef Py_ssize_t n, n_y = array_len(Y), start, b, i
    if isinstance(idx, (int, np.integer)) and not isinstance(idx, (bool, np.bool_)):
        n = idx
        if n < 0:
            raise ValueError(f"idx must be an index array or a row count >= 0, not {n}")
        if n_y and n > cnp.PyArray_DIM(<cnp.ndarray>Y, 0):
            raise ValueError(f"{n} rows asked of targets for {Y.shape[0]}")
        perm = &keyed
    else:
        n = array_len(idx)
    if cnp.PyArray_NDIM(<cnp.ndarray>Y) not in (1, 2):
        raise ValueError("Y must be class indices (1-D) or targets (2-D)")
    if cnp.PyArray_NDIM(<cnp.ndarray>Y) == 1:
        if loss != LOSS_LOG or nt.act[nt.n_layers - 1] not in (ACT_SOFTMAX,
                                                                ACT_LOGISTIC):
            raise ValueError("class-index targets need the log loss of a "
                             "softmax or logistic output")
        ytyp = cnp.PyArray_TYPE(<cnp.ndarray>Y)
        for typ in (cnp.NPY_UINT8, cnp.NPY_UINT16, cnp.NPY_INT32, cnp.NPY_INT64):
            if cnp.PyArray_EquivTypenums(ytyp, typ):
                break
        else:
            raise ValueError("class indices must be uint8, uint16, int32 or "
                             f"int64, not {Y.dtype}")
        cls.size = cnp.PyArray_ITEMSIZE(<cnp.ndarray>Y)
        if n_y:
            cls.p = array_data(Y, ytyp, n_y, False, "class indices")
        elif n:
            raise ValueError("no class indices for the rows")
        # The kernel indexes the output row with these: refuse what would
        # read outside it (a compiled pass, no temporaries).
        if cls.p != NULL and not classes_in_range(
                cls, n_y, max(2, nt.units[nt.n_layers])):
            raise ValueError("class indices out of range for the output layer")
    elif n_y or n:  # an epoch of no rows may have no targets (as before)
        Yp = <const floating*>array_data(Y, ft, 1, False, "Y")
    if sample_weight is not None and (n or array_len(sample_weight)):
        sw = <const floating*>array_data(sample_weight, ft, 1, False, "sample_weight")

    # A uint16 or int32 idx is a quarter or half the memory of int64; the
    # kernels read each batch's rows widened into rows_buf.
    cdef unsigned short* p16 = NULL
    cdef int* p32 = NULL
    cdef long long* p64 = NULL
    cdef const long long* rows
    cdef int ityp
    if perm == NULL:
        ityp = cnp.PyArray_TYPE(<cnp.ndarray>idx)
        if cnp.PyArray_EquivTypenums(ityp, cnp.NPY_UINT16):
            p16 = <unsigned short*>array_data(idx, ityp, 1, True, "idx") if n else NULL
        elif cnp.PyArray_EquivTypenums(ityp, cnp.NPY_INT32):
            p32 = <int*>array_data(idx, ityp, 1, True, "idx") if n else NULL
        elif cnp.PyArray_EquivTypenums(ityp, cnp.NPY_INT64):
            p64 = <long long*>array_data(idx, ityp, 1, True, "idx") if n else NULL
        else:
            raise ValueError(f"idx must be uint16, int32 or int64, not {idx.dtype}")
    cdef bint x_in_place = (X_ptr != NULL and ROWS_IN_PLACE
                            and rows_in_place(&nt, batch_size, s1))
    if X_ptr != NULL and not x_in_place and array_len(xbuf) < batch_size * n_feat:
        xbuf = np.empty(batch_size * n_feat, dtype=fdt)
    cdef floating* xb = <floating*>array_data(xbuf, ft, 1, True, "xbuf")
    if rows_buf is None:
        rows_buf = np.empty(max(1, batch_size), dtype=np.int64)
    cdef long long* rb = <long long*>array_data(rows_buf, cnp.NPY_INT64, batch_size,
                                                True, "rows_buf")

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

    cdef Split S
    cdef int team
    cdef object split_scratch
    cdef floating* dl
    if split_now(&nt, batch_size, n_threads):
        # Where the one-thread backward writes every hidden delta over its
        # layer's output, so does the split epoch of large batches (layer
        # by layer): no deltas buffer, the largest beyond the issue's bound.
        S.in_place = split_in_place_c(&nt, batch_size)
        S.x_in_place = x_in_place
        if S.in_place:
            deltas = acts
        elif deltas is None:
            deltas = np.empty(max(1, batch_size * hidden_units(&nt)), dtype=fdt)
        dl = <floating*>array_data(deltas, ft, 1 if S.in_place else
                                   batch_size * hidden_units(&nt), True, "deltas")
        if array_len(rows_buf) < n_threads * batch_size:
            rows_buf = np.empty(n_threads * batch_size, dtype=np.int64)
            rb = <long long*>array_data(rows_buf, cnp.NPY_INT64, 1, True, "rows_buf")
        team = n_threads
        if sst != NULL and sst[0] > 0:
            sst[0] -= 1
            team = 1
        fm_barrier_init(&S.bar, team)
        S.bad = 0
        S.stop = 0
        S.solo = 0
        S.ready = 0
        S.join_at = -1
        S.closed = 0
        S.wait_team = JOIN_AT_START
        S.join_wait = min(JOIN_WAIT,
                          JOIN_WAIT_PER_BATCH * ((n + batch_size - 1) // batch_size))
        S.nt = &nt
        S.csr = &csr
        S.pc = &pc
        S.rule = r
        S.s0 = s0
        S.s1 = s1
        S.n_feat = n_feat
        S.n = n
        S.B = batch_size
        S.idx16 = p16
        S.idx32 = p32
        S.idx64 = p64
        S.perm = perm
        S.brows = rb
        S.cls = cls
        S.loss = loss
        S.row_loss = rl
        S.part = pt
        S.step0 = sc[0]
        S.alpha = alpha
        S.l1 = l1
        S.total = 0
        S.work_s = 0
        S.wait_s = 0
        S.n_split = 0
        S.n_done = 0
        S.finite = True
        S.cut_on = (GRAD_CUTS and 1 < team <= CUT_MAX_THREADS and not S.in_place
                    and grad_cut_free(&nt, batch_size))
        if S.cut_on:
            for i in range(team):
                S.cut[i] = n_params * i // team // CUT_ALIGN * CUT_ALIGN
                S.grad_s[i] = 0
            S.cut[team] = n_params
            if team == 2 and n_sst >= 3 and 0 < sst[2] < n_params:
                S.cut[1] = sst[2]  # where the last epoch left it
        S.scratch = NULL
        S.widest = 0
        S.d_stream = S.d_end = 0
        if nt.drop != NULL:
            S.widest = 1
            for i in range(1, nt.n_layers):
                S.widest = max(S.widest, <Py_ssize_t>nt.units[i])
            split_scratch = np.empty(team * S.widest, dtype=fdt)
            S.scratch = array_data(split_scratch, ft, 1, True, "scratch")
            S.d_stream = d_state[0]
        with nogil:
            if perm != NULL:
                perm_init(&keyed, n, rng, shuffle)
            elif shuffle:
                shuffle_rows(p16, p32, p64, n, rng)
            with parallel(num_threads=team):
                split_worker(&S, th, gr, m1, m2, X_ptr, Yp, sw, xb, ac, dl)
        sc[0] += S.n_done
        if nt.drop != NULL:
            d_state[0] = S.d_end
        if S.cut_on and team == 2 and n_sst >= 3:
            sst[2] = S.cut[1]
        if sst != NULL and team > 1:
            if S.solo:
                sst[1] = min(16, max(1, 2 * sst[1]))
                sst[0] = sst[1]
            else:
                sst[1] = 0
        if tmg != NULL:
            tmg[0] = S.work_s
            tmg[1] = S.wait_s
            tmg[2] = S.n_split
        if S.stop:
            raise_pending()
        return S.total, S.n_done, S.finite

    if (backward_uses_tmp(&nt, batch_size)
            and array_len(tmp) < batch_size * widest_layer(&nt)):
        raise ValueError("tmp is too small for the batch size")
    # Adam's step on the first layer's weights fused into their gradient's
    # product (tn_adam), where nothing runs split: it depends on the
    # network and batch size only, so any thread count takes the same path.
    nt.w0_fused = w0_fused_applies(&nt, batch_size, r.kind, l1, X_ptr != NULL,
                                   sizeof(floating))
    cdef Py_ssize_t w0n = <Py_ssize_t>nt.units[0] * nt.units[1]
    cdef double sq0
    cdef int bad0
    cdef unsigned long fpenv = fm_ftz_enter()
    try:
        with nogil:
            if perm != NULL:
                perm_init(&keyed, n, rng, shuffle)
            elif shuffle:
                shuffle_rows(p16, p32, p64, n, rng)
            t_last = now()
            start = 0
            while start < n:
                b = min(batch_size, n - start)
                rows = batch_rows(p16, p32, p64, perm, start, b, rb)
                contiguous = rows_contiguous(X_ptr, s0, s1, n_feat, rows, b)
                if x_in_place and not contiguous:
                    X0 = X_ptr
                    ld0 = <int>s0
                    nt.xrows = rows
                else:
                    nt.xrows = NULL
                    X0 = batch_input(X_ptr, s0, s1, n_feat, rows, b,
                                     contiguous, xb, &ld0, n_threads)
                if nt.drop != NULL:
                    dp.key = next_u64(d_state)
                forward(&nt, th, X0, ld0, &csr, rows, b, ac, False, n_threads)
                swsum = weight_sum(sw, rows, b)
                out = slot(&nt, ac, b, L)
                output_loss_delta(
                    out, th + nt.b_off[L - 1], Yp, cls, k, sw, rows, b,
                    1 / swsum, loss, nt.act[L - 1], rl, n_threads)
                data_loss = sum_in_order(rl, b)
                if not isfinite(data_loss):
                    finite = False
                    break
                backward(&nt, th, X0, ld0, &csr, rows, b, ac, tm, gr, False,
                         n_threads)
                if nt.w0_fused:
                    if (not all_finite(gr + w0n, n_params - w0n, n_threads)
                            or not w0_grad_finite(&nt, X0, ld0, b, ac, gr, n_threads)):
                        finite = False
                        break
                elif not all_finite(gr, n_params, n_threads):
                    finite = False  # theta and the optimiser state untouched
                    break
                sc[0] += 1
                if r.kind == RULE_ADAM:
                    t = sc[0]
                    r.lr = lr0 * sqrt(1 - pow(r.beta2, t)) / (1 - pow(r.beta1, t))
                sq0 = 0
                bad0 = 0
                if nt.w0_fused:
                    bad0 = tn_adam(X0, ld0, nt.xrows, nt.units[0], nt.units[1], b,
                                   slot(&nt, ac, b, 1), th, m1, m2, r.lr, r.beta1,
                                   r.beta2, r.eps, <floating>(alpha / swsum), &sq0)
                finite = apply_step(th, gr, m1, m2, &pc, &r,
                                    <floating>(alpha / swsum),
                                    <floating>(l1 / swsum), pt, &sq, &ab,
                                    n_threads, w0n if nt.w0_fused else 0)
                sq += sq0
                finite = finite and bad0 == 0
                total += (data_loss + (0.5 * alpha * sq + l1 * ab) / swsum) * b
                n_done += 1
                if not finite:
                    break
                if now() - t_last > SIGNAL_INTERVAL:
                    check_signals()
                    t_last = now()
                start += b
    finally:
        fm_ftz_leave(fpenv)
    return total, n_done, finite


def epoch_order(Py_ssize_t n, rng_state, bint shuffle=True):
    """The order in which an epoch given the row count n (no index array)
    visits the rows, int64 (n,), drawing from rng_state (uint64, [state],
    advanced in place) as the epoch does: for tests and benchmarks."""
    cdef unsigned long long* rng = <unsigned long long*>array_data(
        rng_state, cnp.NPY_UINT64, 1, True, "rng_state")
    if n < 0:
        raise ValueError("n must be >= 0")
    cdef Perm p
    perm_init(&p, n, rng, shuffle)
    out = np.empty(n, dtype=np.int64)
    cdef long long[::1] o = out
    cdef Py_ssize_t i
    with nogil:
        for i in range(n):
            o[i] = perm_at(&p, i)
    return out


def barrier_seconds(int n_threads, Py_ssize_t rounds):
    """Wall seconds per pass through the two-core epoch's barrier
    (src/fm_barrier.h) by n_threads threads doing nothing else, the team's
    start-up left out, and the team size OpenMP gave
    (benchmarks/thread_split.py)."""
    cdef int team = 1
    cdef double seconds
    with nogil:
        seconds = exchange_seconds(n_threads, rounds, &team)
    return seconds, team


def split_applies(tuple net, Py_ssize_t batch_size):
    """True if an epoch of this network may run split over the threads when
    given two or more (see the module's docstring; split_runs tells whether
    it does now): the one-thread path then takes the split path's
    arithmetic, so that the thread count and the choice change no bits.
    Else it runs the one-thread path with its parallel loops."""
    cdef Net nt = unpack_net(net)
    return bool(FM_HAVE_SPIN_BARRIER) and rows_split(&nt, batch_size, SPLIT_MIN_WORK)
