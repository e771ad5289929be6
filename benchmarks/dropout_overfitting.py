"""Dropout against overfitting: a wide net on a small training set.

The digits data (8x8 images, 10 classes) with only ``--train`` training
samples (default 100, ten per class) and the other ~1,700 as the test set.
A wide network (3 hidden layers of 512 relu units, ~560,000 weights: far
more than 100 samples can pin down) trained with Adam for ``--epochs``
epochs, with no early stopping, once without dropout and once with each
rate of ``--rates``, over ``--seeds`` train/test splits (each split and
initialisation seeded alike for every rate). Both reach 100% training
accuracy; the test accuracy is what differs.

Printed: per split, training and test accuracy for each rate, and the test
accuracy every ``--every`` epochs (recorded by a callback, so the curve
shows the plain net freezing once it has memorised the training set while
the dropout net keeps improving); then the mean and standard deviation over
the splits, and the mean paired difference to the plain network.

``--cost`` instead measures what dropout costs per epoch: the compiled
epoch on all of digits (1,797 rows, batch 200, the same network), with and
without dropout 0.5, alternated ``--repeats`` times; printed are the median
epoch times and the median of the per-round ratios.

Usage (from the repository root, with fastmlp built or installed)::

    python benchmarks/dropout_overfitting.py                  # a few minutes
    python benchmarks/dropout_overfitting.py --seeds 2 --epochs 100   # quick
    python benchmarks/dropout_overfitting.py --cost
"""

import argparse
import glob
import os
import sys
import time
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
if glob.glob(os.path.join(_ROOT, "fastmlp", "_epoch*")):  # a checkout built in place
    sys.path.insert(0, _ROOT)
from fastmlp import MLPClassifier  # noqa: E402


class TestAccuracy:
    """Callback: the test accuracy every `every` epochs."""

    def __init__(self, X, y, every):
        self.X, self.y, self.every = X, y, every
        self.curve = {}

    def on_epoch_end(self, estimator, info):
        if info["epoch"] % self.every == 0:
            self.curve[info["epoch"]] = estimator.score(self.X, self.y)


def epoch_cost(hidden, repeats, threads):
    from fastmlp._network import LOSS_LOG, Layout
    from fastmlp.solvers.first_order import EpochRunner, Optimizer

    X, y = load_digits(return_X_y=True)
    layout = Layout([64, *hidden, 10], ["relu"] * len(hidden) + ["softmax"])
    rows = np.arange(len(X), dtype=np.int64)
    print("| dtype | epoch, no dropout | epoch, dropout 0.5 | ratio (median of rounds) |")
    print("| --- | --- | --- | --- |")
    for dtype in (np.float32, np.float64):
        theta0 = (np.random.RandomState(0).randn(layout.n_params) * 0.05).astype(dtype)
        Xd, Y = (X / 16.0).astype(dtype), np.eye(10, dtype=dtype)[y]
        runners = {rate: EpochRunner(layout, dtype, 200, [rate] * len(hidden))
                   for rate in (0.0, 0.5)}
        times = {0.0: [], 0.5: []}
        for _ in range(repeats):
            for rate, runner in runners.items():
                opt = Optimizer("adam", layout.n_params, dtype, learning_rate_init=1e-3)
                theta = theta0.copy()
                start = time.perf_counter()
                runner.run(theta, Xd, Y, None, rows.copy(), np.ones(1, np.uint64), True, opt,
                           LOSS_LOG, 1e-4, 0.0, threads, np.ones(1, np.uint64))
                times[rate].append(time.perf_counter() - start)
        ratio = np.median(np.array(times[0.5]) / np.array(times[0.0]))
        print(f"| {np.dtype(dtype).name} | {1e3 * np.median(times[0.0]):.1f} ms | "
              f"{1e3 * np.median(times[0.5]):.1f} ms | {ratio:.3f} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=int, default=100, help="training samples (default 100)")
    parser.add_argument("--hidden", default="512,512,512", help="hidden layer sizes")
    parser.add_argument("--epochs", type=int, default=500)
    parser.add_argument("--rates", default="0.5", help="dropout rates to compare with 0")
    parser.add_argument("--seeds", type=int, default=5, help="train/test splits")
    parser.add_argument("--every", type=int, default=100, help="epochs between test scores")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cost", action="store_true",
                        help="measure the cost of dropout per epoch instead")
    parser.add_argument("--repeats", type=int, default=15, help="rounds for --cost")
    args = parser.parse_args(argv)
    hidden = tuple(int(s) for s in args.hidden.split(","))
    if args.cost:
        return epoch_cost(hidden, args.repeats, args.threads)
    rates = [0.0] + [float(r) for r in args.rates.split(",")]

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    print(f"digits: {args.train} training samples, {len(X) - args.train} test samples; "
          f"network {[64, *hidden, 10]}, Adam, {args.epochs} epochs, no early stopping; "
          f"{args.seeds} splits, {args.threads} thread(s)\n")
    test = {r: [] for r in rates}
    for seed in range(args.seeds):
        Xtr, Xte, ytr, yte = train_test_split(X, y, train_size=args.train, stratify=y,
                                              random_state=seed)
        for rate in rates:
            curve = TestAccuracy(Xte, yte, args.every)
            est = MLPClassifier(hidden, dropout=rate, max_iter=args.epochs, tol=0.0,
                                n_iter_no_change=args.epochs + 1, random_state=seed,
                                n_threads=args.threads, callbacks=[curve])
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                est.fit(Xtr, ytr)
            seconds = time.perf_counter() - start
            acc = est.score(Xte, yte)
            test[rate].append(acc)
            trail = " ".join(f"{e}:{a:.3f}" for e, a in curve.curve.items())
            print(f"split {seed}  dropout {rate:.2f}  train {est.score(Xtr, ytr):.3f}  "
                  f"test {acc:.4f}  ({seconds:.1f} s)  test by epoch: {trail}", flush=True)

    print("\n| dropout | test accuracy (mean ± std) | vs no dropout (paired mean) |")
    print("| --- | --- | --- |")
    base = np.array(test[0.0])
    for rate in rates:
        acc = np.array(test[rate])
        diff = "" if rate == 0 else f"{100 * (acc - base).mean():+.2f} points " \
                                    f"({int((acc > base).sum())}/{len(acc)} splits better)"
        print(f"| {rate:.2f} | {100 * acc.mean():.2f}% ± {100 * acc.std():.2f} | {diff} |")


if __name__ == "__main__":
    main()
