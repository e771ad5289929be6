"""One fastmlp fit of a workload, to profile: where an epoch's time goes.

Prints the CPU seconds of each compiled epoch and of the rest of the fit
(input checks, target encoding, initialisation, buffers: paid once per fit).
Run it under a sampling profiler for the epoch's breakdown, e.g.::

    perf record -D 6000 -o w1.data python benchmarks/profile_fit.py W1 float32 --epochs 30
    perf report -i w1.data --no-children --sort symbol

(``-D`` skips most of the start-up and data generation.) One thread for OpenMP
and BLAS, so that every sample is the fit's own work.

Usage::

    python benchmarks/profile_fit.py W1 float64 --epochs 5 --fits 3
"""

import argparse
import glob
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def main(argv=None):
    from benchmarks.common import (DTYPES, WORKLOADS, estimator_params, fit_quietly,
                                   make_data)

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("workload", choices=sorted(WORKLOADS))
    parser.add_argument("dtype", choices=DTYPES)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--fits", type=int, default=1)
    args = parser.parse_args(argv)

    from fastmlp import MLPClassifier
    from fastmlp.solvers import first_order

    X, y, _, _ = make_data(args.workload)
    X = X.astype(args.dtype)
    B = WORKLOADS[args.workload]["batch_size"]
    epochs = []
    run = first_order.EpochRunner.run

    def timed_run(self, *a, **kw):
        t0 = time.process_time()
        out = run(self, *a, **kw)
        epochs.append(time.process_time() - t0)
        return out

    params = {**estimator_params(args.workload, args.epochs), "n_threads": 1}
    fit_quietly(MLPClassifier(**{**params, "max_iter": 1}), X[:2 * B], y[:2 * B])  # warm-up
    first_order.EpochRunner.run = timed_run
    try:
        for _ in range(args.fits):
            epochs.clear()
            t0 = time.process_time()
            fit_quietly(MLPClassifier(**params), X, y)
            total = time.process_time() - t0
            print(f"{args.workload} {args.dtype}: epochs "
                  + ", ".join(f"{e:.4f}" for e in epochs)
                  + f" s; rest of the fit {total - sum(epochs):.4f} s", flush=True)
    finally:
        first_order.EpochRunner.run = run
    return 0


if __name__ == "__main__":
    # Before numpy loads OpenBLAS: one thread from the start.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    # A source checkout built in place is the one profiled (as in compare.py).
    if glob.glob(os.path.join(os.path.dirname(HERE), "fastmlp", "_epoch*")):
        sys.path.insert(1, os.path.dirname(HERE))
    sys.exit(main())
