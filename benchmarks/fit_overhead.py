"""The fixed cost of a fit: what a fit costs beyond its epochs.

compare.py times whole fits and divides by the epochs, so whatever a fit
pays once (input checks, target encoding, initialisation, buffers) counts
in its seconds per epoch. This script fits each workload for 1 and for
``--epochs`` epochs (CPU time, one thread, median of ``--repeats``) and
solves for the fixed cost and the marginal cost of an epoch:

    fixed = t(1) - (t(E) - t(1)) / (E - 1)

next to scikit-learn's. ``--profile`` prints cProfile's top functions of
fastmlp's 1-epoch fits instead.

Usage::

    python benchmarks/fit_overhead.py --workloads W2,W3 --repeats 15
    python benchmarks/fit_overhead.py --workloads W3 --dtypes float64 --profile
"""

import argparse
import glob
import os
import sys
import time
from statistics import median

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def fit_seconds(est_class, params, X, y, repeats):
    """Median CPU seconds of a fresh fit."""
    from benchmarks.common import fit_quietly

    fit_quietly(est_class(**params), X, y)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        fit_quietly(est_class(**params), X, y)
        times.append(time.process_time() - t0)
    return median(times)


def main(argv=None):
    from benchmarks.common import DTYPES, estimator_params, fit_quietly, make_data

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workloads", default="W2,W3")
    parser.add_argument("--dtypes", default=",".join(DTYPES))
    parser.add_argument("--epochs", type=int, default=5,
                        help="epochs of the longer fit (default 5)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--no-sklearn", action="store_true")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile fastmlp's 1-epoch fits instead of timing")
    args = parser.parse_args(argv)

    from sklearn.neural_network import MLPClassifier as SkMLP

    from fastmlp import MLPClassifier as FastMLP

    E = args.epochs
    libs = {"fastmlp": FastMLP} if args.no_sklearn else {"fastmlp": FastMLP, "sklearn": SkMLP}
    if not args.profile:
        print(f"| workload | dtype | library | 1-epoch fit | {E}-epoch fit | per epoch "
              "| fixed cost |")
        print("| --- | --- | --- | ---: | ---: | ---: | ---: |")
    for w in args.workloads.split(","):
        X, y = make_data(w)[:2]
        for d in args.dtypes.split(","):
            Xd = X.astype(d)
            if args.profile:
                import cProfile
                import pstats

                params = {**estimator_params(w, 1), "n_threads": 1}
                fit_quietly(FastMLP(**params), Xd, y)
                prof = cProfile.Profile()
                prof.enable()
                for _ in range(args.repeats):
                    fit_quietly(FastMLP(**params), Xd, y)
                prof.disable()
                print(f"## {w} {d}: {args.repeats} one-epoch fits")
                pstats.Stats(prof).sort_stats("tottime").print_stats(25)
                continue
            for name, cls in libs.items():
                extra = {"n_threads": 1} if name == "fastmlp" else {}
                t1 = fit_seconds(cls, {**estimator_params(w, 1), **extra}, Xd, y, args.repeats)
                tE = fit_seconds(cls, {**estimator_params(w, E), **extra}, Xd, y, args.repeats)
                per = (tE - t1) / (E - 1)
                print(f"| {w} | {d} | {name} | {t1 * 1e3:.2f} ms | {tE * 1e3:.2f} ms "
                      f"| {per * 1e3:.2f} ms | {(t1 - per) * 1e3:.2f} ms |", flush=True)
    return 0


if __name__ == "__main__":
    # Before numpy loads OpenBLAS: one thread from the start.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    # A source checkout built in place is the one measured (as in compare.py).
    if glob.glob(os.path.join(os.path.dirname(HERE), "fastmlp", "_epoch*")):
        sys.path.insert(1, os.path.dirname(HERE))
    sys.exit(main())
