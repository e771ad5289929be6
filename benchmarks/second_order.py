"""Benchmarks of the second-order solvers (plain script; slow, not a test).

    python benchmarks/second_order.py lbfgs   # digits 64-100-10: fastmlp vs scikit-learn lbfgs
    python benchmarks/second_order.py bfgs    # fastmlp bfgs vs scipy.optimize BFGS, same objective
    python benchmarks/second_order.py hf      # deep autoencoder: HF vs Adam, same CPU time
    python benchmarks/second_order.py hf --budget 60 --chunk 2 --max-cg-iter 50 --adam-lr
                                              # HF alone for 60 s (tuning)

Every run is single-threaded (n_threads=1, BLAS limited to one thread) and
timed in CPU seconds of this process (time.process_time), which other
processes on a shared machine do not inflate; on an idle machine they equal
wall-clock seconds. Run from the repository root after building the kernels.
"""

import argparse
import glob
import os
import sys
import time
import warnings

import numpy as np
import scipy.optimize
from sklearn.datasets import load_digits
from threadpoolctl import threadpool_limits

_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
if glob.glob(os.path.join(_ROOT, "fastmlp", "_epoch*")):  # a checkout built in place
    sys.path.insert(0, _ROOT)

from fastmlp import MLPClassifier, MLPRegressor  # noqa: E402
from fastmlp._init import init_theta  # noqa: E402
from fastmlp._network import LOSS_LOG, Layout  # noqa: E402
from fastmlp.solvers.objective import Objective  # noqa: E402
from fastmlp.solvers.quasi_newton import bfgs  # noqa: E402


def digits():
    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


def timed(fn):
    start = time.process_time()
    out = fn()
    return out, time.process_time() - start


def bench_lbfgs(args):
    """Training loss and fit time at the same max_iter, per seed."""
    from sklearn.neural_network import MLPClassifier as SkMLPClassifier

    X, y = digits()
    print(f"digits {X.shape[0]}x{X.shape[1]}, hidden (100,), tol={args.tol}, single thread")
    print("max_iter seed | loss fastmlp  scikit-learn  ratio | iters | time fastmlp  sklearn  "
          "speed-up")
    ratios, speedups = [], []
    for max_iter in args.max_iter:
        for seed in range(args.seeds):
            kw = dict(hidden_layer_sizes=(100,), solver="lbfgs", max_iter=max_iter,
                      random_state=seed, tol=args.tol)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ours, t_ours = timed(lambda: MLPClassifier(n_threads=1, **kw).fit(X, y))
                ref, t_ref = timed(lambda: SkMLPClassifier(**kw).fit(X, y))
            ratios.append(ours.loss_ / ref.loss_)
            speedups.append(t_ref / t_ours)
            print(f"{max_iter:8d} {seed:4d} | {ours.loss_:12.6g}  {ref.loss_:12.6g}  "
                  f"{ratios[-1]:5.3f} | {ours.n_iter_:3d} {ref.n_iter_:3d} | "
                  f"{t_ours:8.2f}s {t_ref:8.2f}s  {speedups[-1]:5.1f}x", flush=True)
    print(f"loss ratio fastmlp/scikit-learn: geometric mean {np.exp(np.mean(np.log(ratios))):.3f}, "
          f"lower or equal in {sum(r <= 1 + 1e-9 for r in ratios)} of {len(ratios)} runs; "
          f"median speed-up {np.median(speedups):.1f}x")


def bench_bfgs(args):
    """fastmlp's bfgs and scipy's BFGS from the same start on one objective."""
    X, y = digits()
    layout = Layout([64, args.hidden, 10], ["tanh", "softmax"])
    Y = np.eye(10)[y]
    obj = Objective(layout, X, Y, None, LOSS_LOG, 1e-2, 0.0, 1)
    print(f"digits, 64-{args.hidden}-10 tanh, alpha=1e-2: {layout.n_params} parameters, "
          f"gtol={args.gtol}")
    print("seed | loss fastmlp bfgs   scipy BFGS | iters | evals | time fastmlp  scipy | "
          "max|theta diff|")
    for seed in range(args.seeds):
        theta0 = init_theta(layout, "glorot", layout.activations, np.random.RandomState(seed),
                            np.float64)
        (theta, f, nit, res), t_ours = timed(lambda: bfgs(
            obj, theta0, max_iter=args.max_iter, max_fun=15000, tol=args.gtol, ftol=0))
        ref, t_ref = timed(lambda: scipy.optimize.minimize(
            obj, theta0, jac=True, method="BFGS",
            options={"gtol": args.gtol, "maxiter": args.max_iter}))
        print(f"{seed:4d} | {f:16.10g} {ref.fun:16.10g} | {nit:4d} {ref.nit:4d} | "
              f"{res.nfev:4d} {ref.nfev:4d} | {t_ours:7.2f}s {t_ref:7.2f}s | "
              f"{np.abs(theta - ref.x).max():.2e}", flush=True)


def reconstruction_error(est, X):
    """Mean over samples of the squared reconstruction error ||x - x_hat||^2."""
    return float(np.mean(np.sum((est.predict(X) - X) ** 2, axis=1)))


def bench_hf(args):
    """Deep autoencoder: HF run in chunks of iterations (warm starts continue
    the run exactly), then Adam for as long; reconstruction errors at the
    chunk boundaries, fit time only on the clock."""
    X, _ = digits()
    if args.float32:
        X = X.astype(np.float32)
    hidden = (256, 128, 32, 128, 256)
    common = dict(hidden_layer_sizes=hidden, activation="logistic", random_state=0, tol=0,
                  n_threads=1)
    print(f"digits autoencoder 64-{'-'.join(map(str, hidden))}-64, logistic hidden units, "
          f"squared error, {X.dtype}, single thread")
    print(f"hf: damping={args.damping}, curvature_batch_size={args.batch}, "
          f"max_cg_iter={args.max_cg_iter}, curvature={args.curvature}")
    checkpoints, columns = [], {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hf = MLPRegressor(solver="hf", max_iter=args.chunk, warm_start=True, damping=args.damping,
                          curvature_batch_size=args.batch, max_cg_iter=args.max_cg_iter,
                          curvature=args.curvature, **common)
        clock, errors = 0.0, []
        while (clock < args.budget if args.budget else
               len(errors) < args.hf_iter // args.chunk):
            _, seconds = timed(lambda: hf.fit(X, X))
            clock += seconds
            checkpoints.append(clock)
            errors.append(reconstruction_error(hf, X))
            print(f"  hf {len(errors) * args.chunk:4d} iterations, {clock:7.1f}s: "
                  f"error {errors[-1]:.4f}, damping {hf._solver_state[1].damping:.3g}",
                  flush=True)
        columns["hf"] = errors
        for lr in args.adam_lr:
            adam = MLPRegressor(solver="adam", learning_rate_init=lr, **common)
            clock, errors, epochs = 0.0, [], 0
            for t in checkpoints:
                while clock < t:
                    _, seconds = timed(lambda: adam.partial_fit(X, X))
                    clock += seconds
                    epochs += 1
                errors.append(reconstruction_error(adam, X))
            columns[f"adam lr={lr:g} ({epochs} epochs)"] = errors
    print("reconstruction error, mean over images of ||x - x_hat||^2 "
          f"(the mean image scores {np.mean(np.sum((X - X.mean(0)) ** 2, axis=1)):.3f}):")
    print(f"{'seconds':>8s} {'hf iter':>7s} " + " ".join(f"{c:>24s}" for c in columns))
    for k, t in enumerate(checkpoints):
        print(f"{t:8.1f} {(k + 1) * args.chunk:7d} "
              + " ".join(f"{columns[c][k]:24.4f}" for c in columns))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="which", required=True)
    p = sub.add_parser("lbfgs")
    p.add_argument("--max-iter", type=int, nargs="+", default=[30, 200])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--tol", type=float, default=0.0,
                   help="0 (default) compares whole runs of max_iter iterations")
    p = sub.add_parser("bfgs")
    p.add_argument("--hidden", type=int, default=20)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--gtol", type=float, default=1e-5)
    p.add_argument("--max-iter", type=int, default=2000)
    p = sub.add_parser("hf")
    p.add_argument("--hf-iter", type=int, default=100, help="HF iterations; sets the budget")
    p.add_argument("--budget", type=float, default=None,
                   help="CPU seconds for HF instead of --hf-iter (whole chunks)")
    p.add_argument("--chunk", type=int, default=10, help="HF iterations between checkpoints")
    p.add_argument("--damping", type=float, default=1e-3)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--max-cg-iter", type=int, default=250)
    p.add_argument("--curvature", default="gauss-newton")
    p.add_argument("--adam-lr", type=float, nargs="*", default=[1e-3, 3e-3, 1e-2],
                   help="Adam learning rates to compare (none: HF alone)")
    p.add_argument("--float32", action="store_true")
    args = parser.parse_args(argv)
    with threadpool_limits(1):
        {"lbfgs": bench_lbfgs, "bfgs": bench_bfgs, "hf": bench_hf}[args.which](args)


if __name__ == "__main__":
    main()
