"""First-order solvers: the update rules and the compiled epoch's workspace.

The rules themselves run in src/_updates.pxd; this module holds their
hyper-parameters, their state between calls (so partial_fit continues where
it stopped), the learning-rate schedules that change between epochs, and
the buffers the compiled epoch needs, allocated once per fit.
"""

import math
from contextlib import nullcontext

import numpy as np

from .. import _aligned, _epoch
from .._threads import blas_threads

RULES = {"sgd": 0, "adam": 1, "adagrad": 2, "adadelta": 3, "rmsprop": 4}
FIRST_ORDER_SOLVERS = tuple(RULES)
# Decay of the squared-gradient average when rho=None (Hinton's lecture
# notes for RMSProp, Zeiler 2012 for AdaDelta).
DEFAULT_RHO = {"rmsprop": 0.9, "adadelta": 0.95}
# scikit-learn's schedules (for 'sgd' only, as there) and fastmlp's (for every
# first-order solver).
SKLEARN_SCHEDULES = ("constant", "invscaling", "adaptive")
SCHEDULES = SKLEARN_SCHEDULES + ("cosine", "step")


class Optimizer:
    """An update rule, its state over theta and its learning-rate schedule.

    Parameters
    ----------
    solver : str
        One of FIRST_ORDER_SOLVERS.
    n_params : int
    dtype : numpy dtype of theta.
    learning_rate_init, momentum, nesterovs_momentum, beta_1, beta_2,
    epsilon, rho, learning_rate, power_t :
        As the estimators document them. scikit-learn's schedules
        ('constant', 'invscaling', 'adaptive') apply to 'sgd' only, as in
        scikit-learn; 'cosine' and 'step' apply to every rule.
    n_epochs : int
        'cosine' anneals over this many epochs (the estimator's max_iter).
    lr_step_size, lr_decay : int, float
        'step' multiplies the rate by lr_decay every lr_step_size epochs.
    lr_min : float
        'cosine' ends at this rate.
    state, step, current_lr, epochs : optional
        The state of an earlier run to continue (the arrays are updated in
        place): ``state`` (2, n_params), ``step`` int64 (1,), the learning
        rate the schedule had reached and the epochs it has counted. New
        state by default.
    """

    def __init__(self, solver, n_params, dtype, *, learning_rate_init,
                 momentum=0.9, nesterovs_momentum=True, beta_1=0.9,
                 beta_2=0.999, epsilon=1e-8, rho=None,
                 learning_rate="constant", power_t=0.5, n_epochs=200,
                 lr_step_size=30, lr_decay=0.1, lr_min=0.0, state=None, step=None,
                 current_lr=None, epochs=0):
        self.solver = solver
        self.learning_rate_init = float(learning_rate_init)
        self.learning_rate = float(learning_rate_init if current_lr is None else current_lr)
        self.momentum = float(momentum)
        self.nesterovs_momentum = bool(nesterovs_momentum)
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)
        self.rho = float(DEFAULT_RHO.get(solver, 0.9) if rho is None else rho)
        if learning_rate not in SKLEARN_SCHEDULES or solver == "sgd":
            self.schedule = learning_rate
        else:
            self.schedule = "constant"
        self.power_t = float(power_t)
        self.n_epochs = int(n_epochs)
        self.lr_step_size = int(lr_step_size)
        self.lr_decay = float(lr_decay)
        self.lr_min = float(lr_min)
        self.epochs = int(epochs)  # epochs completed under this schedule
        # Row 0: velocity / first moment / squared-gradient average;
        # row 1: second moment (Adam) or squared-update average (AdaDelta).
        self.state = _aligned.zeros((2, n_params), dtype) if state is None else state
        self.step = np.zeros(1, dtype=np.int64) if step is None else step

    def rule(self):
        """The fields of _updates.Rule for this epoch."""
        return {
            "kind": RULES[self.solver],
            "lr": self.learning_rate,
            "momentum": self.momentum,
            "nesterov": self.nesterovs_momentum,
            "beta1": self.beta_1,
            "beta2": self.beta_2,
            "eps": self.epsilon,
            "rho": self.rho,
        }

    def iteration_ends(self, time_step):
        """Update the learning rate after an epoch (time_step: samples seen)."""
        self.epochs += 1
        if self.schedule == "invscaling":
            self.learning_rate = self.learning_rate_init / (time_step + 1) ** self.power_t
        elif self.schedule == "cosine":
            # Loshchilov & Hutter's cosine annealing (SGDR without restarts),
            # held at lr_min once n_epochs have passed.
            frac = min(self.epochs, self.n_epochs) / self.n_epochs
            self.learning_rate = self.lr_min + 0.5 * (self.learning_rate_init - self.lr_min) * (
                1 + math.cos(math.pi * frac))
        elif self.schedule == "step":
            self.learning_rate = self.learning_rate_init * self.lr_decay ** (
                self.epochs // self.lr_step_size)

    def trigger_stopping(self, msg, verbose):
        """Stop, or with the 'adaptive' schedule divide the rate by 5 first."""
        if self.schedule != "adaptive":
            if verbose:
                print(msg + " Stopping.")
            return True
        if self.learning_rate <= 1e-6:
            if verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self.learning_rate /= 5.0
        if verbose:
            print(msg + " Setting learning rate to %f" % self.learning_rate)
        return False


# Stored multiply-adds per batch below which a pruned network's epoch (the
# two-core epoch takes dense layers only) runs on one thread: each sparse
# kernel's parallel region wakes the other thread, under the passive OpenMP
# policy a futex wake-up, once per operation and batch. Retraining measured
# on 1 / 2 threads before this rule: 4.7M multiply-adds a batch 0.53x, 12M
# 0.66x; above it 48M 1.1x, 75M 1.4x, 150M 1.6x (benchmarks/pruning.py
# retrain; README, "Threads").
PRUNED_PAR_MIN_WORK = 1 << 25


def epoch_threads(layout, batch_size, n_threads):
    """Threads a stochastic epoch of this layout runs on: n_threads, or one
    for a pruned network below PRUNED_PAR_MIN_WORK stored multiply-adds a
    batch."""
    if n_threads > 1 and any(layout.is_sparse(l) for l in range(layout.n_layers)):
        if int(batch_size) * int(layout.n_params) < PRUNED_PAR_MIN_WORK:
            return 1
    return n_threads


class EpochRunner:
    """The compiled epoch and its buffers, allocated once per fit.

    Parameters
    ----------
    layout : Layout
    dtype : numpy dtype
    batch_size : int
    dropout : sequence of float or None
        Dropout rate of each hidden layer (None or all zeros: no dropout).
    """

    def __init__(self, layout, dtype, batch_size, dropout=None):
        B = int(batch_size)
        units = layout.units
        self.layout = layout
        self.batch_size = B
        # On cache-line boundaries, as theta is (fastmlp/_aligned: 6% of a
        # small float64 network's epoch).
        self.grad = _aligned.empty(layout.n_params, dtype)
        self.acts = _aligned.empty(B * int(units[1:].sum()), dtype)
        # The gathered input batch, where the first layer cannot read the
        # rows in place (_epoch.needs_xbuf): sized by the first run.
        self.xbuf = _aligned.empty(1, dtype)
        self.row_loss = np.empty(B)
        self.pieces = layout.pieces()
        self.part = np.empty(3 * max(1, len(self.pieces[3]) - 1))
        self.dropout = None
        if dropout is not None and any(p > 0 for p in dropout):
            hidden = units[1:-1].astype(np.int64)
            if len(dropout) != len(hidden):
                raise ValueError("one dropout rate per hidden layer is needed")
            keep = 1.0 - np.asarray(dropout, dtype=np.float64)
            unit_off = np.concatenate([[0], np.cumsum(hidden)[:-1]]).astype(np.int64)
            # 1 where a unit of the last batch was kept (0/1 per batch row).
            self.mask = np.zeros(B * int(hidden.sum()), dtype=np.uint8)
            self.dropout = (keep, unit_off, self.mask)
        # The one-thread backward's workspace for a hidden delta; none where
        # each is written over its layer's output (relu layers, no dropout:
        # src/_layers.pxd, backward_uses_tmp).
        uses_tmp = _epoch.needs_tmp(layout.net, B, self.dropout is not None)
        self.tmp = _aligned.empty(B * int(units[1:].max()) if uses_tmp else 1, dtype)
        # Pruned layers' workspace; zeros, as their dense copies need.
        self.sp_work = _aligned.zeros(layout.work_len(B), dtype)
        # Epochs the two-core epoch runs on one thread after thread 0 had
        # to finish one alone (a busy machine), the current back-off, and
        # where two threads' gradient stages were last cut.
        self.split_state = np.zeros(3, dtype=np.int64)
        # The two-core epoch (src/_epoch.pyx) of large batches writes the
        # hidden deltas over the layer outputs where the one-thread epoch
        # does (_epoch.split_in_place); else it keeps them all, batch x (the
        # hidden units together), in tmp, enlarged by the first epoch run
        # split when too small.
        self._hidden_len = B * int(units[1:-1].sum())
        self._split = _epoch.split_applies(layout.net, B)
        self._split_deltas = not _epoch.split_in_place(layout.net, B, self.dropout is not None)
        # Each batch's rows widened to int64 from the narrow row order (one
        # batch per thread in the two-core epoch): sized by the first run.
        self.rows_buf = None

    def run(self, theta, X, Y, sample_weight, idx, rng_state, shuffle,
            optimizer, loss_code, alpha, l1, n_threads, drop_state=None, timing=None):
        """One epoch over rows idx; returns (mean batch loss, finite).

        idx: an index array (shuffled in place), or the number of samples n
        for all of range(n) in a keyed order (no array; _epoch.run_epoch).

        drop_state: the dropout stream's state, a uint64 array of length 1
        updated in place; required when the runner has dropout.
        timing: None, or 3 float64 the two-core epoch fills (see
        _epoch.run_epoch; benchmarks/thread_split.py).
        """
        dropout = None
        if self.dropout is not None:
            if drop_state is None:
                raise ValueError("a dropout runner needs drop_state")
            dropout = self.dropout + (drop_state,)
        deltas = None
        blas = nullcontext()
        split = n_threads > 1 and self._split
        if split:
            if self._split_deltas:
                if self.tmp.shape[0] < self._hidden_len:
                    dtype = self.tmp.dtype
                    self.tmp = None  # not both alive at once: that was a fit's peak
                    self.tmp = _aligned.empty(self._hidden_len, dtype)
                deltas = self.tmp
            # Each thread calls BLAS on its own block. A fit has capped BLAS
            # at one thread already (this then changes nothing); a direct
            # call may not have.
            blas = blas_threads(1, wait=False)
        if (self.xbuf.shape[0] < self.batch_size * self.layout.units[0]
                and _epoch.needs_xbuf(self.layout.net, self.batch_size, X)):
            dtype = self.xbuf.dtype
            self.xbuf = None
            self.xbuf = _aligned.empty(self.batch_size * int(self.layout.units[0]), dtype)
        n_rows = self.batch_size * (n_threads if split else 1)
        if self.rows_buf is None or self.rows_buf.shape[0] < n_rows:
            self.rows_buf = None
            self.rows_buf = np.empty(n_rows, dtype=np.int64)
        with blas:
            loss_sum, _, finite = _epoch.run_epoch(
                theta, self.grad, optimizer.state, X, Y, sample_weight, idx,
                rng_state, shuffle, self.batch_size, self.layout.net, loss_code,
                optimizer.rule(), self.pieces, self.acts, self.tmp, self.xbuf,
                self.row_loss, self.part, optimizer.step, alpha, l1, n_threads,
                dropout, self.sp_work, deltas, timing, self.split_state, self.rows_buf)
        n = idx if isinstance(idx, (int, np.integer)) else len(idx)
        return loss_sum / n, finite
