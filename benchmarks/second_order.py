"""Benchmarks of the second-order solvers (plain script; slow, not a test).

    python benchmarks/second_order.py lbfgs       # digits 64-100-10: fastmlp vs scikit-learn lbfgs
    python benchmarks/second_order.py bfgs        # fastmlp bfgs vs scipy.optimize BFGS, same objective
    python benchmarks/second_order.py bfgs --problem small    # 4-5-3 tanh (several minima)
    python benchmarks/second_order.py bfgs --problem digits   # digits 64-20-10 (slow for scipy)
    python benchmarks/second_order.py bfgs --problem autoencoder --max-iter 300 --seeds 3
    python benchmarks/second_order.py hf          # deep autoencoder: HF vs a grid of Adam runs,
                                                  # same CPU time (--budget, default 60 s),
                                                  # logistic outputs and cross-entropy
    python benchmarks/second_order.py hf --seed 1               # another start (0, 1, 2 in the README)
    python benchmarks/second_order.py hf --loss squared_error   # identity outputs, squared error
    python benchmarks/second_order.py hf --adam-lr             # HF alone (tuning)
    python benchmarks/second_order.py hf-profile  # one HF iteration's parts: gradient, G v, CG step

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
from fastmlp._network import LOSS_LOG, LOSS_SQUARED, Layout  # noqa: E402
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
    """Training loss and fit time at the same max_iter, per seed: fastmlp's
    L-BFGS (--memory pairs) against scikit-learn's (scipy's L-BFGS-B, 10
    pairs), same data, initial weights, tol and max_fun."""
    from sklearn.neural_network import MLPClassifier as SkMLPClassifier

    from fastmlp.solvers import quasi_newton

    if args.memory is not None:
        quasi_newton.LBFGS_MEMORY = args.memory  # every LBFGSMemory made from here on
    X, y = digits()
    print(f"digits {X.shape[0]}x{X.shape[1]}, hidden (100,), tol={args.tol}, single thread; "
          f"fastmlp keeps {quasi_newton.LBFGS_MEMORY} pairs, scikit-learn (L-BFGS-B) 10")
    print("max_iter seed | loss fastmlp  scikit-learn  ratio | iters | time fastmlp  sklearn  "
          "speed-up")
    runs = {}
    for max_iter in args.max_iter:
        for seed in range(args.seeds):
            kw = dict(hidden_layer_sizes=(100,), solver="lbfgs", max_iter=max_iter,
                      random_state=seed, tol=args.tol)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ours, t_ours = timed(lambda: MLPClassifier(n_threads=1, **kw).fit(X, y))
                ref, t_ref = timed(lambda: SkMLPClassifier(**kw).fit(X, y))
            ratio, speedup = ours.loss_ / ref.loss_, t_ref / t_ours
            runs.setdefault(max_iter, []).append((ratio, speedup))
            print(f"{max_iter:8d} {seed:4d} | {ours.loss_:12.6g}  {ref.loss_:12.6g}  "
                  f"{ratio:5.3f} | {ours.n_iter_:3d} {ref.n_iter_:3d} | "
                  f"{t_ours:8.2f}s {t_ref:8.2f}s  {speedup:5.2f}x", flush=True)
    every = [run for group in runs.values() for run in group]
    for max_iter, group in [*runs.items(), ("all", every)]:
        ratios, speedups = np.array(group).T
        print(f"max_iter {max_iter}: loss fastmlp/scikit-learn geometric mean "
              f"{np.exp(np.mean(np.log(ratios))):.3f} (worst {ratios.max():.3f}), lower or "
              f"equal in {np.sum(ratios <= 1)} of {len(group)} runs; faster in "
              f"{np.sum(speedups > 1)} of {len(group)} (median speed-up "
              f"{np.median(speedups):.2f}x, slowest {speedups.min():.2f}x)")
    both = sum(r <= 1 and x > 1 for r, x in every)
    print(f"lbfgs reaches a loss at least as low as scikit-learn's in less time: "
          f"{'met' if both == len(every) else 'NOT met'} per run ({both} of {len(every)})")


def bfgs_problem(args):
    """(objective, layout, description, initialisation), the problems of
    tests/solvers/test_quasi_newton.py: --problem convex has no hidden layer
    (80 rows, 4-3 softmax, alpha=0.1: one minimum); small is 4-5-3 tanh,
    alpha=1, and digits 64-H-10 tanh, alpha=1e-2: non-convex, with several
    minima, where two solvers that take different steps may end in
    different ones. autoencoder is digits 64-32-16-32-64, logistic hidden
    units, squared error, alpha=1e-4, Martens' sparse initialisation (the
    'hf' benchmark's problem at a size BFGS takes: 5,264 parameters)."""
    from sklearn.datasets import make_classification

    if args.problem in ("small", "convex"):
        X, y = make_classification(80, 4, n_informative=3, n_redundant=0, n_classes=3,
                                   random_state=0)
        hidden = [5] if args.problem == "small" else []
        alpha = 1.0 if args.problem == "small" else 0.1
        layout = Layout([4, *hidden, 3], ["tanh"] * len(hidden) + ["softmax"])
        return (Objective(layout, X, np.eye(3)[y], None, LOSS_LOG, alpha, 0.0, 1), layout,
                f"make_classification 80x4, 4-{'5-' * len(hidden)}3, alpha={alpha:g}",
                None)
    X, y = digits()
    if args.problem == "autoencoder":
        layout = Layout([64, 32, 16, 32, 64], ["logistic"] * 3 + ["identity"])
        return (Objective(layout, X, X, None, LOSS_SQUARED, 1e-4, 0.0, 1), layout,
                "digits autoencoder 64-32-16-32-64 logistic, alpha=1e-4", "sparse")
    layout = Layout([64, args.hidden, 10], ["tanh", "softmax"])
    return (Objective(layout, X, np.eye(10)[y], None, LOSS_LOG, 1e-2, 0.0, 1), layout,
            f"digits, 64-{args.hidden}-10 tanh, alpha=1e-2", "glorot")


def bench_bfgs(args):
    """fastmlp's bfgs, with each of --conventions, and scipy's BFGS from the
    same start on one objective; scipy's is left out on --problem
    autoencoder (its update is n x n matrix products: O(n**3) an iteration)."""
    obj, layout, name, init = bfgs_problem(args)
    conventions = [tuple(c.split(",")) for c in args.conventions]
    with_scipy = args.problem != "autoencoder"
    print(f"{name}: {layout.n_params} parameters, gtol={args.gtol}, max_iter={args.max_iter}; "
          f"fastmlp conventions (H_0, line search): "
          f"{', '.join('/'.join(c) for c in conventions)}"
          f"{'' if with_scipy else '; scipy BFGS not run'}")
    print(f"seed {'run':24s} |     final loss | iters evals |    time | max|theta - scipy's| "
          f"| loss after {', '.join(map(str, args.checkpoints))} iterations")
    same = {c: 0 for c in conventions}
    for seed in range(args.seeds):
        if init is None:  # the test's start
            theta0 = np.random.RandomState(seed).randn(layout.n_params) * 0.5
        else:
            theta0 = init_theta(layout, init, layout.activations, np.random.RandomState(seed),
                                np.float64)
        runs = {}
        for initial, line_search in conventions:
            curve = []
            (theta, f, nit, res), t = timed(lambda: bfgs(
                obj, theta0, max_iter=args.max_iter, max_fun=15000, tol=args.gtol, ftol=0,
                initial=initial, line_search=line_search,
                callback=lambda x, loss, info: curve.append(loss)))
            runs[(initial, line_search)] = (theta, f, nit, res.nfev, t, curve)
        if with_scipy:
            curve = []

            def record(intermediate_result):  # scipy passes an OptimizeResult by this name
                curve.append(intermediate_result.fun)

            ref, t = timed(lambda: scipy.optimize.minimize(
                obj, theta0, jac=True, method="BFGS", callback=record,
                options={"gtol": args.gtol, "maxiter": args.max_iter}))
            runs["scipy"] = (ref.x, ref.fun, ref.nit, ref.nfev, t, curve)
        for key, (theta, f, nit, nfev, t, curve) in runs.items():
            label = "scipy BFGS" if key == "scipy" else "fastmlp " + "/".join(key)
            diff = "-"
            if with_scipy:
                gap = np.abs(theta - ref.x).max()
                diff = f"{gap:.2e}"
                if key != "scipy" and (abs(f - ref.fun) <= args.loss_rtol * abs(ref.fun)
                                       and gap <= args.theta_atol):
                    same[key] += 1
            at = ", ".join(f"{curve[k - 1]:.6g}" if k <= len(curve) else "-"
                           for k in args.checkpoints)
            print(f"{seed:4d} {label:24s} | {f:14.10g} | {nit:5d} {nfev:5d} | {t:6.2f}s | "
                  f"{diff:>20s} | {at}", flush=True)
    if with_scipy:
        for key, n in same.items():
            print(f"fastmlp {'/'.join(key)} reaches scipy BFGS's minimum (loss within "
                  f"{args.loss_rtol:g} relative, parameters within {args.theta_atol:g}): "
                  f"{'met' if n == args.seeds else 'NOT met'} ({n} of {args.seeds} starts)")


def reconstruction_error(est, X):
    """Mean over samples of the squared reconstruction error ||x - x_hat||^2."""
    return float(np.mean(np.sum((est.predict(X) - X) ** 2, axis=1)))


def cross_entropy(est, X):
    """Mean over samples of sum_j -x_j log p_j - (1 - x_j) log(1 - p_j), p
    the logistic outputs (loss='binary_cross_entropy' only; without the L2
    penalty)."""
    P = np.clip(est.predict(X).astype(np.float64), 1e-15, 1 - 1e-15)
    return float(np.mean(np.sum(-(X * np.log(P) + (1 - X) * np.log1p(-P)), axis=1)))


AUTOENCODER = (256, 128, 32, 128, 256)


def autoencoder_data(args):
    X, _ = digits()
    return X.astype(np.float32) if args.float32 else X


def scores(est, X, loss):
    """(squared error, cross-entropy or None) of an autoencoder."""
    return (reconstruction_error(est, X),
            cross_entropy(est, X) if loss == "binary_cross_entropy" else None)


def bench_hf(args):
    """Deep autoencoder: HF against a grid of Adam runs, same CPU budget.

    HF runs in chunks of iterations (warm starts continue the run exactly)
    until the budget is spent; every Adam run (each learning rate, each
    initialisation) then gets the same CPU time, and its error is read at
    HF's chunk boundaries. Only fitting is on the clock. HF and Adam runs
    with the same init start from the same weights (same random_state: the
    initialisation is the estimator's first draw). Both train on --loss;
    the figure compared is the squared reconstruction error (the one Martens
    reports), and with the cross-entropy loss that too is printed."""
    X = autoencoder_data(args)
    common = dict(hidden_layer_sizes=AUTOENCODER, activation="logistic",
                  random_state=args.seed, tol=0, alpha=args.alpha, n_threads=1, loss=args.loss)
    output = ("logistic output, cross-entropy" if args.loss == "binary_cross_entropy"
              else "identity output, squared error")
    print(f"digits autoencoder 64-{'-'.join(map(str, AUTOENCODER))}-64, logistic hidden units, "
          f"{output}, alpha={args.alpha}, {X.dtype}, random_state={args.seed}, single thread")
    print(f"hf: init={args.hf_init}, damping={args.damping}, curvature_batch_size={args.batch}, "
          f"max_cg_iter={args.max_cg_iter}, curvature={args.curvature}")
    checkpoints, columns, entropies = [], {}, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hf = MLPRegressor(solver="hf", init=args.hf_init, max_iter=args.chunk, warm_start=True,
                          damping=args.damping, curvature_batch_size=args.batch,
                          max_cg_iter=args.max_cg_iter, curvature=args.curvature, **common)
        clock, errors, ces = 0.0, [], []
        while (clock < args.budget if args.budget else
               len(errors) < args.hf_iter // args.chunk):
            _, seconds = timed(lambda: hf.fit(X, X))
            clock += seconds
            checkpoints.append(clock)
            err, ce = scores(hf, X, args.loss)
            errors.append(err)
            ces.append(ce)
            print(f"  hf {len(errors) * args.chunk:4d} iterations, {clock:7.1f}s: "
                  f"error {err:.4f}" + (f", cross-entropy {ce:.3f}" if ce is not None else "")
                  + f", damping {hf._solver_state[1].damping:.3g}", flush=True)
        columns["hf"], entropies["hf"] = errors, ces
        for init in args.adam_init:
            for lr in args.adam_lr:
                adam = MLPRegressor(solver="adam", init=init, learning_rate_init=lr,
                                    batch_size=args.adam_batch, **common)
                clock, errors, ces, epochs = 0.0, [], [], 0
                for t in checkpoints:
                    while clock < t:
                        _, seconds = timed(lambda: adam.partial_fit(X, X))
                        clock += seconds
                        epochs += 1
                    err, ce = scores(adam, X, args.loss)
                    errors.append(err)
                    ces.append(ce)
                name = f"adam {init} {lr:g}"
                columns[name], entropies[name] = errors, ces
                print(f"  adam init={init} lr={lr:g}: {epochs} epochs, error {errors[-1]:.4f}"
                      + (f", cross-entropy {ces[-1]:.3f}" if ces[-1] is not None else ""),
                      flush=True)
    tables = [("reconstruction error, mean over images of ||x - x_hat||^2 (the mean image "
               f"scores {np.mean(np.sum((X - X.mean(0)) ** 2, axis=1)):.3f})", columns)]
    if args.loss == "binary_cross_entropy":
        tables.append(("cross-entropy, mean over images of sum_j -x_j log p_j - (1 - x_j) "
                       "log(1 - p_j) (the training loss, without the L2 penalty)", entropies))
    for title, table in tables:
        print(title + ":")
        print(f"{'seconds':>8s} {'hf iter':>7s} " + " ".join(f"{c:>18s}" for c in table)
              + "   best adam")
        adams = [c for c in table if c != "hf"]
        for k, t in enumerate(checkpoints):
            best = min(adams, key=lambda c: table[c][k]) if adams else None
            print(f"{t:8.1f} {(k + 1) * args.chunk:7d} "
                  + " ".join(f"{table[c][k]:18.4f}" for c in table)
                  + (f"   {best[5:]}" if best else ""))
    adams = [c for c in columns if c != "hf"]
    if adams:
        for what, table in tables:
            what = what.split(",")[0]
            ahead = [table["hf"][k] < min(table[c][k] for c in adams)
                     for k in range(len(checkpoints))]
            # The first checkpoint from which HF stays ahead to the end.
            lead = len(ahead)
            while lead > 0 and ahead[lead - 1]:
                lead -= 1
            print(f"{what}: HF below the best Adam at {sum(ahead)} of {len(ahead)} checkpoints"
                  + (f", from {checkpoints[ahead.index(True)]:.1f} s to "
                     f"{checkpoints[len(ahead) - 1 - ahead[::-1].index(True)]:.1f} s"
                     if any(ahead) else "")
                  + (f"; at every checkpoint from {checkpoints[lead]:.1f} s to the end"
                     if lead < len(ahead) else ""))
            best = min(adams, key=lambda c: table[c][-1])
            hf_err, adam_err = table["hf"][-1], table[best][-1]
            verdict = "met" if hf_err < adam_err else "NOT met"
            print(f"{what}: HF beats the best of {len(adams)} Adam runs at "
                  f"{checkpoints[-1]:.0f} CPU s: {verdict} (HF {hf_err:.4f}, best Adam "
                  f"{adam_err:.4f} with {best[5:]}, ratio {hf_err / adam_err:.2f})")


def bench_hf_profile(args):
    """Where an HF iteration's time goes: one full-batch gradient (with the
    Fisher diagonal), one loss, one curvature product on the batch, and one
    CG step as the driver makes it (product, damping, preconditioner and
    vector updates), at the sparse initial point."""
    from fastmlp.solvers.hessian_free import conjugate_gradient

    X = autoencoder_data(args)
    cross_entropy = args.loss == "binary_cross_entropy"
    layout = Layout([64, *AUTOENCODER, 64], ["logistic"] * len(AUTOENCODER)
                    + ["logistic" if cross_entropy else "identity"])
    obj = Objective(layout, X, X, None, LOSS_LOG if cross_entropy else LOSS_SQUARED,
                    args.alpha, 0.0, 1)
    theta = init_theta(layout, args.hf_init, layout.activations, np.random.RandomState(0),
                       X.dtype)
    rows = np.sort(np.random.RandomState(0).choice(len(X), args.batch, replace=False))
    v = np.random.RandomState(1).randn(theta.size).astype(X.dtype)

    def per_call(fn, repeat):
        fn()
        start = time.process_time()
        for _ in range(repeat):
            fn()
        return (time.process_time() - start) / repeat * 1e3

    f, g, fisher = obj.loss_grad_fisher(theta)
    g = g.astype(np.float64)
    precond = (fisher.astype(np.float64) + args.damping) ** 0.75
    n_cg = [0]

    def damped(u):  # as the driver's
        out = np.asarray(obj.curvature(theta, u.astype(X.dtype, copy=False), rows),
                         dtype=np.float64)
        out += args.damping * u
        return out

    def cg():  # CG's own stopping test may end it before the cap
        n_cg[0] += conjugate_gradient(damped, g, np.zeros_like(g), precond, 50, set())[2]

    print(f"digits autoencoder 64-{'-'.join(map(str, AUTOENCODER))}-64 ({layout.n_params} "
          f"parameters), {X.dtype}, {len(X)} rows, curvature batch {args.batch}, one thread")
    grad = per_call(lambda: obj(theta), 10)
    fisher_ms = per_call(lambda: obj.loss_grad_fisher(theta), 10)
    loss = per_call(lambda: obj.loss(theta), 10)
    gn = per_call(lambda: obj.curvature(theta, v, rows, "gauss-newton"), 30)
    hess = per_call(lambda: obj.curvature(theta, v, rows, "hessian"), 30)
    cg()  # warm-up
    n_cg[0] = 0
    start = time.process_time()
    for _ in range(3):
        cg()
    step = (time.process_time() - start) * 1e3 / n_cg[0]
    print(f"  loss and gradient, all rows      {grad:8.2f} ms")
    print(f"  loss, gradient and Fisher diag   {fisher_ms:8.2f} ms")
    print(f"  loss alone, all rows             {loss:8.2f} ms")
    print(f"  G v on the batch                 {gn:8.2f} ms  ({gn / grad:.2f} gradients)")
    print(f"  H v on the batch                 {hess:8.2f} ms  ({hess / grad:.2f} gradients)")
    print(f"  one CG step (G v and the rest)   {step:8.2f} ms  (overhead {step - gn:.2f} ms, "
          f"{(step - gn) / step:.0%})")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="which", required=True)
    p = sub.add_parser("lbfgs")
    p.add_argument("--max-iter", type=int, nargs="+", default=[30, 100, 200])
    p.add_argument("--seeds", type=int, default=10, help="seeds 0 .. SEEDS-1")
    p.add_argument("--tol", type=float, default=0.0,
                   help="0 (default) compares whole runs of max_iter iterations")
    p.add_argument("--memory", type=int, default=None,
                   help="pairs fastmlp's L-BFGS keeps (sets fastmlp.solvers.quasi_newton."
                        "LBFGS_MEMORY; default: its value, 30); 10 is L-BFGS-B's")
    p = sub.add_parser("bfgs")
    p.add_argument("--problem", choices=["convex", "small", "digits", "autoencoder"],
                   default="convex")
    p.add_argument("--hidden", type=int, default=20, help="digits' hidden units")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--gtol", type=float, default=1e-5)
    p.add_argument("--max-iter", type=int, default=2000)
    p.add_argument("--loss-rtol", type=float, default=1e-6)
    p.add_argument("--theta-atol", type=float, default=1e-3)
    p.add_argument("--conventions", nargs="+", default=["identity,wolfe12", "scaled,wolfe2"],
                   help="fastmlp runs, each INITIAL,LINE_SEARCH (bfgs's initial and "
                        "line_search; the default first, scipy's conventions)")
    p.add_argument("--checkpoints", type=int, nargs="+", default=[10, 30, 100, 300],
                   help="report the loss after these iterations")
    for name in ("hf", "hf-profile"):
        p = sub.add_parser(name)
        p.add_argument("--hf-init", default="sparse", help="HF's initialisation")
        p.add_argument("--damping", type=float, default=1.0)
        p.add_argument("--batch", type=int, default=500, help="curvature batch rows")
        p.add_argument("--alpha", type=float, default=1e-4)
        p.add_argument("--float32", action="store_true")
        p.add_argument("--loss", choices=["squared_error", "binary_cross_entropy"],
                       default="binary_cross_entropy",
                       help="the autoencoder's loss (both solvers): identity outputs with "
                            "squared error, or logistic outputs with cross-entropy")
    p = sub.choices["hf"]
    p.add_argument("--budget", type=float, default=60.0,
                   help="CPU seconds for HF (whole chunks); 0: --hf-iter iterations")
    p.add_argument("--hf-iter", type=int, default=30, help="HF iterations when --budget 0")
    p.add_argument("--chunk", type=int, default=2, help="HF iterations between checkpoints")
    p.add_argument("--max-cg-iter", type=int, default=60)
    p.add_argument("--curvature", default="gauss-newton")
    p.add_argument("--adam-lr", type=float, nargs="*", default=[1e-3, 3e-3, 1e-2, 3e-2],
                   help="Adam learning rates to compare (none: HF alone)")
    p.add_argument("--adam-init", nargs="*", default=["glorot", "sparse"],
                   help="Adam's initialisations, each with every learning rate")
    p.add_argument("--adam-batch", type=int, default=200)
    p.add_argument("--seed", type=int, default=0,
                   help="random_state of every run (initial weights, batches)")
    args = parser.parse_args(argv)
    with threadpool_limits(1):
        {"lbfgs": bench_lbfgs, "bfgs": bench_bfgs, "hf": bench_hf,
         "hf-profile": bench_hf_profile}[args.which](args)


if __name__ == "__main__":
    main()
