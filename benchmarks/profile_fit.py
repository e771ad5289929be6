"""One fastmlp fit of a workload, to profile: where an epoch's time goes.

Prints the CPU seconds of each compiled epoch and of the rest of the fit
(input checks, target encoding, initialisation, buffers: paid once per fit).
Run it under a sampling profiler for the epoch's breakdown, e.g.::

    perf record -D 6000 -o w1.data python benchmarks/profile_fit.py W1 float32 --epochs 30
    perf report -i w1.data --no-children --sort symbol

(``-D`` skips most of the start-up and data generation.) One thread for OpenMP
and BLAS, so that every sample is the fit's own work.

``--call-cost`` does the same on the epoch's first row only: one step of one
row, mostly what a call of the compiled epoch costs besides its batches.

``--epoch-only`` runs the compiled epoch alone, ``--epochs`` times on the
arguments of one fit's last epoch (no Python between epochs, no fit around
them), and prints its CPU time per epoch: the figure to profile an epoch's
kernels with (``perf record ... --epoch-only --epochs 8000``).

``--overhead`` instead times fits of 1 and of ``--epochs`` epochs (median of
``--fits``) for fastmlp and scikit-learn and solves for each one's fixed
cost per fit and marginal cost per epoch, ``fixed = t(1) - (t(E) - t(1)) /
(E - 1)``: what compare.py's seconds per epoch (whole fits divided by their
epochs) include besides the epochs. ``--cprofile`` prints cProfile's top
functions of ``--fits`` one-epoch fastmlp fits: the Python side of the
fixed cost.

Usage::

    python benchmarks/profile_fit.py W1 float64 --epochs 5 --fits 3
    python benchmarks/profile_fit.py W3 float64 --overhead --epochs 5 --fits 21
    python benchmarks/profile_fit.py W2 float32 --cprofile --fits 100
    python benchmarks/profile_fit.py W2 float64 --epoch-only --epochs 2000
    python benchmarks/profile_fit.py W2 float32 --call-cost --epochs 20000
"""

import argparse
import glob
import os
import sys
import time
from statistics import median

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def epoch_times(workload, X, y, params):
    """Print the CPU seconds of each epoch of one fit and of the rest."""
    from benchmarks.common import WORKLOADS, fit_quietly
    from fastmlp import MLPClassifier
    from fastmlp.solvers import first_order

    B = WORKLOADS[workload]["batch_size"]
    epochs = []
    run = first_order.EpochRunner.run

    def timed_run(self, *a, **kw):
        t0 = time.process_time()
        out = run(self, *a, **kw)
        epochs.append(time.process_time() - t0)
        return out

    fit_quietly(MLPClassifier(**{**params, "max_iter": 1}), X[:2 * B], y[:2 * B])  # warm-up
    first_order.EpochRunner.run = timed_run
    try:
        epochs.clear()
        t0 = time.process_time()
        fit_quietly(MLPClassifier(**params), X, y)
        total = time.process_time() - t0
    finally:
        first_order.EpochRunner.run = run
    return epochs, total


def epoch_only(X, y, params, epochs, one_row=False):
    """CPU seconds per call of _epoch.run_epoch on the arguments a 3-epoch
    fit passed it last (the weights keep training; the batches are reshuffled
    each call, as in a fit). With one_row, on the first row of the epoch
    only: one step of one row, so mostly the call's own cost."""
    from benchmarks.common import fit_quietly
    from fastmlp import MLPClassifier, _epoch

    run = _epoch.run_epoch
    last = []

    def keep(*a, **kw):
        last[:] = [a, kw]
        return run(*a, **kw)

    _epoch.run_epoch = keep
    try:
        fit_quietly(MLPClassifier(**{**params, "max_iter": 3}), X, y)
    finally:
        _epoch.run_epoch = run
    a, kw = last
    if one_row:
        a = list(a)
        # the rows: a count (all rows, keyed order) or an index (run_epoch)
        a[6] = 1 if isinstance(a[6], int) else a[6][:1].copy()
    t0 = time.process_time()
    for _ in range(epochs):
        run(*a, **kw)
    return (time.process_time() - t0) / epochs


def fit_seconds(est_class, params, X, y, repeats):
    """Median CPU seconds of a fresh fit (after one unmeasured)."""
    from benchmarks.common import fit_quietly

    fit_quietly(est_class(**params), X, y)
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        fit_quietly(est_class(**params), X, y)
        times.append(time.process_time() - t0)
    return median(times)


def overhead(workload, dtype, X, y, epochs, repeats):
    """Print the fixed and per-epoch costs of fastmlp's and scikit-learn's fits."""
    from sklearn.neural_network import MLPClassifier as SkMLP

    from benchmarks.common import estimator_params
    from fastmlp import MLPClassifier

    if epochs < 2:
        raise SystemExit("--overhead needs --epochs of 2 or more")
    print(f"| workload | dtype | library | 1-epoch fit | {epochs}-epoch fit | per epoch "
          "| fixed cost |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: |")
    for name, cls, extra in (("fastmlp", MLPClassifier, {"n_threads": 1}),
                             ("scikit-learn", SkMLP, {})):
        t1 = fit_seconds(cls, {**estimator_params(workload, 1), **extra}, X, y, repeats)
        tE = fit_seconds(cls, {**estimator_params(workload, epochs), **extra}, X, y, repeats)
        per = (tE - t1) / (epochs - 1)
        print(f"| {workload} | {dtype} | {name} | {t1 * 1e3:.2f} ms | {tE * 1e3:.2f} ms "
              f"| {per * 1e3:.2f} ms | {(t1 - per) * 1e3:.2f} ms |", flush=True)


def cprofile(workload, X, y, repeats):
    """Print cProfile's top functions (own time) of repeated 1-epoch fits."""
    import cProfile
    import pstats

    from benchmarks.common import estimator_params, fit_quietly
    from fastmlp import MLPClassifier

    params = {**estimator_params(workload, 1), "n_threads": 1}
    fit_quietly(MLPClassifier(**params), X, y)
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(repeats):
        fit_quietly(MLPClassifier(**params), X, y)
    prof.disable()
    pstats.Stats(prof).sort_stats("tottime").print_stats(25)


def main(argv=None):
    from benchmarks.common import DTYPES, WORKLOADS, estimator_params, make_data

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("workload", choices=sorted(WORKLOADS))
    parser.add_argument("dtype", choices=DTYPES)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--fits", type=int, default=1)
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--overhead", action="store_true",
                      help="fixed cost per fit and cost per epoch, fastmlp and scikit-learn")
    what.add_argument("--cprofile", action="store_true",
                      help="cProfile's top functions of --fits one-epoch fits")
    what.add_argument("--epoch-only", action="store_true",
                      help="CPU time per compiled epoch alone, over --epochs calls")
    what.add_argument("--call-cost", action="store_true",
                      help="CPU time per call of the compiled epoch on one row (one "
                           "step: the call's fixed cost and one update), over --epochs calls")
    args = parser.parse_args(argv)

    X, y, _, _ = make_data(args.workload)
    X = X.astype(args.dtype)
    if args.overhead:
        overhead(args.workload, args.dtype, X, y, args.epochs, args.fits)
        return 0
    if args.cprofile:
        cprofile(args.workload, X, y, args.fits)
        return 0
    params = {**estimator_params(args.workload, args.epochs), "n_threads": 1}
    if args.epoch_only or args.call_cost:
        for _ in range(args.fits):
            t = epoch_only(X, y, params, args.epochs, one_row=args.call_cost)
            what = "call on one row" if args.call_cost else "compiled epoch"
            print(f"{args.workload} {args.dtype}: {t * 1e3:.4f} ms per {what}", flush=True)
        return 0
    for _ in range(args.fits):
        epochs, total = epoch_times(args.workload, X, y, params)
        print(f"{args.workload} {args.dtype}: epochs "
              + ", ".join(f"{e:.4f}" for e in epochs)
              + f" s; rest of the fit {total - sum(epochs):.4f} s", flush=True)
    return 0


if __name__ == "__main__":
    # Before numpy loads OpenBLAS: one thread from the start.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    # A source checkout built in place is the one profiled (as in compare.py).
    if glob.glob(os.path.join(os.path.dirname(HERE), "fastmlp", "_epoch*")):
        sys.path.insert(1, os.path.dirname(HERE))
    sys.exit(main())
