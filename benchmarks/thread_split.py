"""The two-core epoch (src/_epoch.pyx) against the one-thread epoch.

For each workload and dtype: milliseconds per epoch of the compiled epoch
alone (no Python around it) with n_threads=1 and 2, the minimum and the
median over the rounds; for the two-thread epochs, thread 0's share of time
working and waiting at the barriers (from run_epoch's ``timing``) and how
many batches ran split (the rest thread 0 ran alone, when waiting cost more
than working); and the cost of one pass through the barrier by two threads
doing nothing else. Run on a quiet machine (the load average is printed):
a process busy on the other core makes the split epoch fall back to one
thread. Run on a build without the two-core epoch (main before it), it gives
that build's 1-thread baseline.

With ``--fits 10,50``: whole fits of that many epochs (MLPClassifier.fit,
wall clock, median of 5) on one and two threads instead, which is what a
user meets: the compiled epoch plus what runs between epochs.

    python benchmarks/thread_split.py [--epochs 200] [--workloads W2,W3] [--gather]
                                      [--separate-update]
    python benchmarks/thread_split.py --pair-cuts --epochs 1200 --workloads W3
    python benchmarks/thread_split.py --join-wait 0,30,100 --epochs 1600 --workloads W3
    python benchmarks/thread_split.py --pair-rows --epochs 1600
    python benchmarks/thread_split.py --fits 10,50 --workloads W3
    python benchmarks/thread_split.py --fits 2 --workloads W1 [--dropout 0.2] [--busy]
    python benchmarks/thread_split.py --fits 10 --workloads W1 --solver lbfgs [--busy]

``--pair-cuts`` times two-thread epochs that cut the gradient stage by
measured time (the default) against epochs that give each thread whole
update chunks, alternating epoch by epoch in one process so that the
machine's drift falls on both alike, and prints the median of the paired
ratios. ``--join-wait 0,30,100`` does the same for how long thread 0 waits
for the other thread before an epoch's first batch (0: it starts alone and
the other joins at a later batch). ``--pair-rows`` does the same, on one
and two threads, for epochs over a shuffled index array against epochs
given the row count (each batch's rows computed from a keyed permutation).

``--solver lbfgs`` (or bfgs, hf) times full-batch fits of that many
iterations instead: their passes run data parallel (src/_objective.pyx).
"""

import argparse
import inspect
import os
import sys
from statistics import median
from time import perf_counter

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.dirname(HERE))

from benchmarks.common import WORKLOADS, make_data  # noqa: E402
from fastmlp import _epoch  # noqa: E402
from fastmlp._network import LOSS_LOG, Layout  # noqa: E402
from fastmlp._threads import blas_threads  # noqa: E402
from fastmlp.solvers.first_order import EpochRunner, Optimizer  # noqa: E402
from fastmlp.solvers.objective import kernel_input  # noqa: E402


def _all_rows(n):
    """The rows of a fit's epochs: the count (a keyed order, no index) where
    the build takes one, else an int32 index shuffled in place."""
    return n if hasattr(_epoch, "epoch_order") else np.arange(n, dtype=np.int32)


def epochs(layout, X, Y, batch, dtype, n_threads, rounds):
    """Seconds per epoch, and summed (work, wait, split batches, batches)."""
    rng = np.random.RandomState(0)
    theta = (rng.randn(layout.n_params) * 0.05).astype(dtype)
    runner = EpochRunner(layout, dtype, batch)
    opt = Optimizer("adam", layout.n_params, dtype, learning_rate_init=1e-3)
    rows = _all_rows(X.shape[0])
    state = np.array([1], dtype=np.uint64)
    Xk = kernel_input(X)
    timing = np.zeros(3)
    totals = np.zeros(4)
    seconds = []
    # A build before the two-core epoch has no timing: its 1-thread column
    # is the baseline to compare with.
    kw = {"timing": timing} if "timing" in inspect.signature(runner.run).parameters else {}
    # BLAS capped as a fit caps it (fastmlp/_base.py): one thread when the
    # epoch runs split (each thread calls it on its own block), else the
    # epoch's count. Left at its default, BLAS's threads fight the epoch's.
    split = n_threads > 1 and getattr(runner, "_split", False)
    with blas_threads(1 if split else n_threads):
        for _ in range(rounds):
            t0 = perf_counter()
            runner.run(theta, Xk, Y, None, rows, state, True, opt, LOSS_LOG, 1e-4, 0.0,
                       n_threads, **kw)
            seconds.append(perf_counter() - t0)
            totals[:3] += timing
            totals[3] += -(-X.shape[0] // batch)
            timing[:] = 0
    return seconds, totals


def paired(layout, X, Y, batch, dtype, rounds, setters, rows=None, n_threads=2):
    """Epochs (two threads) of one fit per setter, in turn epoch by epoch
    (each setter called before its fit's epoch): seconds of each. rows: each
    fit's rows (default: the row count, as fits pass it)."""
    Xk = kernel_input(X)
    runs = []
    for j in range(len(setters)):
        theta = (np.random.RandomState(0).randn(layout.n_params) * 0.05).astype(dtype)
        opt = Optimizer("adam", layout.n_params, dtype, learning_rate_init=1e-3)
        runs.append((theta, EpochRunner(layout, dtype, batch), opt,
                     _all_rows(X.shape[0]) if rows is None else rows[j],
                     np.array([1], dtype=np.uint64)))
    seconds = tuple([] for _ in setters)
    with blas_threads(1):
        for r in range(rounds + 2):  # two to warm up
            order = list(range(len(setters)))
            for j in (order[::-1] if r % 2 else order):
                setters[j]()
                theta, runner, opt, rows, state = runs[j]
                t0 = perf_counter()
                runner.run(theta, Xk, Y, None, rows, state, True, opt, LOSS_LOG, 1e-4,
                           0.0, n_threads)
                if r >= 2:
                    seconds[j].append(perf_counter() - t0)
    return seconds


def _rounds(w, epochs):
    return max(3, epochs // (4 if w == "W3" else 1) // (20 if w == "W1" else 1))


def _cases(workloads):
    for w in workloads:
        spec = WORKLOADS[w]
        X, y = make_data(w)[:2]
        units = [X.shape[1], *spec["hidden"], 10]
        layout = Layout(units, ["relu"] * len(spec["hidden"]) + ["softmax"])
        for dtype in (np.float32, np.float64):
            yield w, layout, X.astype(dtype), np.eye(10, dtype=dtype)[y], spec["batch_size"], dtype


def _ratio_cell(base, other):
    ratio = np.array(base) / np.array(other)
    q1, q2, q3 = np.percentile(ratio, [25, 50, 75])
    return f"{q2:.3f} ({q1:.3f}-{q3:.3f})"


def pair_cuts(workloads, epochs):
    print("| workload | dtype | whole chunks ms (min / median) | cut by time ms (min / median) "
          "| chunks / cuts, paired (median, quartiles) |")
    print("| --- | --- | ---: | ---: | ---: |")
    old = _epoch.grad_cuts_enabled(True)
    try:
        for w, layout, X, Y, batch, dtype in _cases(workloads):
            chunks, cuts = paired(layout, X, Y, batch, dtype, _rounds(w, epochs),
                                  [lambda: _epoch.grad_cuts_enabled(False),
                                   lambda: _epoch.grad_cuts_enabled(True)])
            print(f"| {w} | {np.dtype(dtype).name} "
                  f"| {min(chunks) * 1e3:.3f} / {median(chunks) * 1e3:.3f} "
                  f"| {min(cuts) * 1e3:.3f} / {median(cuts) * 1e3:.3f} "
                  f"| {_ratio_cell(chunks, cuts)} |", flush=True)
    finally:
        _epoch.grad_cuts_enabled(old)


def join_waits(workloads, epochs, waits_us):
    """Two-thread epochs with thread 0 waiting up to each of waits_us for
    the other thread before the first batch (0: it starts alone), in turn."""
    print("| workload | dtype | wait (us) | ms (min / median) "
          f"| wait {waits_us[0]:g} us / this, paired (median, quartiles) |")
    print("| --- | --- | ---: | ---: | ---: |")
    old = _epoch.join_wait_seconds(0)[0]
    try:
        for w, layout, X, Y, batch, dtype in _cases(workloads):
            times = paired(layout, X, Y, batch, dtype, _rounds(w, epochs),
                           [lambda v=v: _epoch.join_wait_seconds(v * 1e-6) for v in waits_us])
            for v, t in zip(waits_us, times):
                print(f"| {w} | {np.dtype(dtype).name} | {v:g} "
                      f"| {min(t) * 1e3:.3f} / {median(t) * 1e3:.3f} "
                      f"| {_ratio_cell(times[0], t)} |", flush=True)
    finally:
        _epoch.join_wait_seconds(old)


def pair_rows(workloads, epochs):
    """Epochs over a shuffled uint16 index array (what fits with a
    validation split shuffle, and all fits before the keyed order) against
    epochs given the row count (the keyed order), in turn."""
    print("| workload | dtype | threads | index array ms (min / median) "
          "| row count ms (min / median) | array / count, paired (median, quartiles) |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for w, layout, X, Y, batch, dtype in _cases(workloads):
        n = X.shape[0]
        for n_threads in (1, 2):
            rounds = _rounds(w, epochs) // (2 if n_threads == 1 else 1)
            arr, count = paired(layout, X, Y, batch, dtype, rounds, [lambda: None] * 2,
                                rows=[np.arange(n, dtype=np.uint16), n],
                                n_threads=n_threads)
            print(f"| {w} | {np.dtype(dtype).name} | {n_threads} "
                  f"| {min(arr) * 1e3:.3f} / {median(arr) * 1e3:.3f} "
                  f"| {min(count) * 1e3:.3f} / {median(count) * 1e3:.3f} "
                  f"| {_ratio_cell(arr, count)} |", flush=True)


BUSY_LOOP = "import time\nend = time.time() + 3600\nwhile time.time() < end:\n    pass\n"


def fit_times(workloads, fits, dropout=None, busy=False, solver="adam"):
    """Whole fits: ms per epoch, median of 5, n_threads 1 and 2; with busy,
    while another process spins on a core (a shared machine)."""
    import subprocess

    from benchmarks.common import estimator_params, fit_quietly
    from fastmlp import MLPClassifier

    spinner = subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) if busy else None
    try:
        _fit_times(workloads, fits, dropout, estimator_params, fit_quietly, MLPClassifier,
                   solver)
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()


def _fit_times(workloads, fits, dropout, estimator_params, fit_quietly, MLPClassifier,
               solver):
    unit = "epoch" if solver not in ("lbfgs", "bfgs", "hf") else "iteration"

    print(f"| workload | dtype | {unit}s a fit | 1 thread ms/{unit} | 2 threads ms/{unit} "
          "| 1 / 2 |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for w in workloads:
        X, y = make_data(w)[:2]
        for dtype in (np.float32, np.float64):
            Xd = X.astype(dtype)
            for E in fits:
                ms = {}
                for nt in (1, 2):
                    params = {**estimator_params(w, E), "n_threads": nt, "solver": solver}
                    if dropout:
                        params["dropout"] = dropout
                    fit_quietly(MLPClassifier(**params), Xd, y)
                    runs = []
                    for _ in range(5):
                        t0 = perf_counter()
                        fit_quietly(MLPClassifier(**params), Xd, y)
                        runs.append((perf_counter() - t0) / E * 1e3)
                    ms[nt] = median(runs)
                print(f"| {w} | {np.dtype(dtype).name} | {E} | {ms[1]:.2f} | {ms[2]:.2f} "
                      f"| {ms[1] / ms[2]:.2f} |", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--workloads", default="W2,W3")
    parser.add_argument("--fits", default=None,
                        help="comma-separated epochs a fit: time whole fits instead")
    parser.add_argument("--dropout", type=float, default=None,
                        help="with --fits: the fits' dropout rate")
    parser.add_argument("--busy", action="store_true",
                        help="with --fits: another process spins on a core meanwhile")
    parser.add_argument("--solver", default="adam",
                        help="with --fits: the fits' solver ('lbfgs': iterations a fit)")
    parser.add_argument("--gather", action="store_true",
                        help="gather every batch's input rows into a buffer, also where "
                             "the first layer can read them in place (the comparison)")
    parser.add_argument("--separate-update", action="store_true",
                        help="take Adam's step on the first layer's weights in its own "
                             "pass, also where float32 fuses it into their gradient's "
                             "product (the comparison)")
    parser.add_argument("--pair-cuts", action="store_true",
                        help="two threads: the gradient stage cut by measured time against "
                             "whole update chunks, epoch by epoch in turn")
    parser.add_argument("--join-wait", default=None,
                        help="two threads: comma-separated longest waits (us) of thread 0 "
                             "for the other before the first batch, epoch by epoch in turn; "
                             "the first is the base (0: start alone)")
    parser.add_argument("--pair-rows", action="store_true",
                        help="one and two threads: epochs over a shuffled index array "
                             "against epochs given the row count (keyed order), in turn")
    args = parser.parse_args(argv)
    if args.gather:
        _epoch.rows_in_place_enabled(False)
    if args.separate_update:
        _epoch.w0_fused_enabled(False)
    if (args.dropout or args.busy or args.solver != "adam") and not args.fits:
        parser.error("--dropout, --busy and --solver go with --fits")
    print(f"load average {os.getloadavg()[0]:.2f}; {len(os.sched_getaffinity(0))} cores")
    if args.fits:
        fit_times(args.workloads.split(","), [int(e) for e in args.fits.split(",")],
                  args.dropout, args.busy, args.solver)
        print(f"load average {os.getloadavg()[0]:.2f} at the end")
        return
    if args.pair_cuts:
        pair_cuts(args.workloads.split(","), args.epochs)
        print(f"load average {os.getloadavg()[0]:.2f} at the end")
        return
    if args.pair_rows:
        pair_rows(args.workloads.split(","), args.epochs)
        print(f"load average {os.getloadavg()[0]:.2f} at the end")
        return
    if args.join_wait:
        join_waits(args.workloads.split(","), args.epochs,
                   [float(v) for v in args.join_wait.split(",")])
        print(f"load average {os.getloadavg()[0]:.2f} at the end")
        return
    if hasattr(_epoch, "barrier_seconds"):
        passes = [_epoch.barrier_seconds(2, 100_000)[0] for _ in range(3)]
        print(f"barrier, two threads: {min(passes) * 1e9:.0f} ns per pass (best of 3)")
    print("| workload | dtype | split | 1 thread ms (min / median) | 2 threads ms (min / median) "
          "| 1 / 2 (min) | thread 0 work / wait ms | batches split |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for w in args.workloads.split(","):
        spec = WORKLOADS[w]
        X, y = make_data(w)[:2]
        units = [X.shape[1], *spec["hidden"], 10]
        layout = Layout(units, ["relu"] * len(spec["hidden"]) + ["softmax"])
        rounds = _rounds(w, args.epochs)
        for dtype in (np.float32, np.float64):
            Xd = X.astype(dtype)
            Y = np.eye(10, dtype=dtype)[y]
            one, _ = epochs(layout, Xd, Y, spec["batch_size"], dtype, 1, rounds)
            two, tot = epochs(layout, Xd, Y, spec["batch_size"], dtype, 2, rounds)
            split = (hasattr(_epoch, "split_applies")
                     and _epoch.split_applies(layout.net, spec["batch_size"]))
            print(f"| {w} | {np.dtype(dtype).name} | {'yes' if split else 'no'} "
                  f"| {min(one) * 1e3:.3f} / {median(one) * 1e3:.3f} "
                  f"| {min(two) * 1e3:.3f} / {median(two) * 1e3:.3f} "
                  f"| {min(one) / min(two):.2f} "
                  f"| {tot[0] / rounds * 1e3:.3f} / {tot[1] / rounds * 1e3:.3f} "
                  f"| {tot[2] / max(1, tot[3]):.0%} |", flush=True)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
