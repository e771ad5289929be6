"""Pruning benchmarks: what a pruned network costs against a dense one.

    python benchmarks/pruning.py forward    [--threads N] [--dtype float64]
    python benchmarks/pruning.py crossover  [--threads N] [--dtype float64]
    python benchmarks/pruning.py epoch      [--threads N] [--dtype float64]
    python benchmarks/pruning.py digits
    python benchmarks/pruning.py retrain    [--dtype float32]
    python benchmarks/pruning.py all

forward: the LeNet-300-100 shape (784-300-100-10, relu) with 95% of every
layer's weights removed; the whole forward pass at batch 256 and batch 1 on
fastmlp's sparse kernels, on fastmlp's dense (BLAS) pass over the unpruned
network, and on scipy.sparse products (``A @ W`` with W in CSR and CSC,
the faster counted) with numpy for bias and activation.

crossover: one 784x300 layer at densities from 1% to 70%: a training step
(forward and backward) and a forward pass, on the sparse kernels and on gemm
over a dense copy; the ratio says where gemm starts to win
(fastmlp/_network.py SPARSE_KERNEL_MAX_DENSITY).

epoch: one Adam epoch (batch 200, 10,000 random rows) of 784-300-100-10,
dense and 90% pruned.

digits: 64-300-100-10 on scikit-learn's digits (75/25 split): dense test
accuracy, and after removing 90% of the weights in 3 rounds with 40
retraining epochs each (fastmlp.pruning.prune_retrain), with one magnitude
threshold across layers ('global') and with every layer at 90% ('layer').

retrain: fastmlp.pruning.retrain (2 epochs of 8,000 rows) of pruned networks of several sizes on 1 and 2 threads, whole
calls: where two threads start to pay for a pruned network
(fastmlp/solvers/first_order.py, PRUNED_PAR_MIN_WORK).

Times are the fastest of interleaved repeats (the machine may be shared;
compare the ratios, which come from one run).
"""

import argparse
import copy
import time
import warnings

import numpy as np
import scipy.sparse as sp

from fastmlp import MLPClassifier, _forward
from fastmlp._network import LOSS_LOG, Layout
from fastmlp._threads import blas_threads
from fastmlp.pruning import prune_retrain
from fastmlp.solvers.first_order import EpochRunner, Optimizer
from fastmlp.solvers.objective import Objective

LENET = [784, 300, 100, 10]
LENET_ACTS = ["relu", "relu", "softmax"]


def fastest(fns, repeats, inner):
    """Fastest time per call of each fn, measured in interleaved rounds."""
    best = [np.inf] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            for _ in range(inner):
                fn()
            best[i] = min(best[i], (time.perf_counter() - start) / inner)
    return best


def pruned_network(units, acts, density, dtype, seed=0, max_sparse_density=None):
    """(dense layout, dense theta with the pruned weights zeroed, pruned
    layout, its compact theta, coefs as CSC): every layer keeps its
    largest-magnitude `density` fraction of weights."""
    rng = np.random.RandomState(seed)
    dense = Layout(units, acts)
    theta = (rng.randn(dense.n_params) * 0.05).astype(dtype)
    coefs, intercepts = dense.views(theta)
    for W in coefs:
        k = max(1, int(round(density * W.size)))
        thr = np.partition(np.abs(W).ravel(), W.size - k)[W.size - k]
        W[np.abs(W) < thr] = 0
    csc = [sp.csc_matrix(W) for W in coefs]
    pruned = Layout.from_coefs(csc, acts, max_sparse_density=max_sparse_density)
    return dense, theta, pruned, pruned.pack(csc, intercepts, dtype), csc, intercepts


def cmd_forward(args):
    dtype = np.dtype(args.dtype)
    dense, theta_d, pruned, theta_s, csc, intercepts = pruned_network(
        LENET, LENET_ACTS, 0.05, dtype)
    csr = [W.tocsr() for W in csc]
    n = args.threads
    print(f"784-300-100-10 relu, 95% of each layer's weights removed, {dtype.name}, "
          f"{n} thread(s), {_forward.sparse_kernel_variant()} sparse kernels")
    for B, repeats, inner in ((256, 60, 1), (1, 60, 20)):
        X = np.random.RandomState(1).rand(B, 784).astype(dtype)
        rows = np.arange(B, dtype=np.int64)
        out = np.empty((B, 10), dtype=dtype)

        def with_scipy(mats):
            def run():
                A = X
                for l, W in enumerate(mats):
                    Z = A @ W + intercepts[l]
                    if l < len(mats) - 1:
                        A = np.maximum(Z, 0)
                    else:
                        Z = np.exp(Z - Z.max(axis=1, keepdims=True))
                        A = Z / Z.sum(axis=1, keepdims=True)
                return A
            return run

        with blas_threads(n):
            t_dense, t_sparse, t_csr, t_csc = fastest([
                lambda: _forward.predict(theta_d, X, dense.net, out, rows, 1024, n),
                lambda: _forward.predict(theta_s, X, pruned.net, out, rows, 1024, n),
                with_scipy(csr), with_scipy(csc)], repeats, inner)
        t_scipy = min(t_csr, t_csc)
        print(f"  batch {B:>3}: sparse kernels {t_sparse * 1e6:9.1f} us | dense BLAS "
              f"{t_dense * 1e6:9.1f} us ({t_dense / t_sparse:5.2f}x) | scipy.sparse "
              f"{t_scipy * 1e6:9.1f} us ({t_scipy / t_sparse:5.2f}x)")
    # The first layer's product alone: fastmlp's kernel vs scipy's.
    X = np.random.RandomState(1).rand(256, 784).astype(dtype)
    one = Layout.from_coefs([csc[0]], ["identity"])
    th1 = one.pack([csc[0]], [intercepts[0]], dtype)
    out1 = np.empty((256, 300), dtype=dtype)
    rows = np.arange(256, dtype=np.int64)
    t_ours, t_csr, t_csc = fastest([
        lambda: _forward.predict(th1, X, one.net, out1, rows, 1024, n),
        lambda: X @ csr[0], lambda: X @ csc[0]], 60, 1)
    print(f"  first layer alone, batch 256: A @ W {t_ours * 1e6:.1f} us; scipy.sparse "
          f"{min(t_csr, t_csc) * 1e6:.1f} us ({min(t_csr, t_csc) / t_ours:.2f}x)")


def cmd_crossover(args):
    dtype = np.dtype(args.dtype)
    n = args.threads
    print(f"one 784x300 relu layer (+ a 300x10 softmax layer), {dtype.name}, {n} thread(s):"
          " time on gemm over a dense copy / time on the sparse kernels")
    print(f"{'density':>8} {'train step B=256':>17} {'forward B=256':>14} {'forward B=1':>12}")
    rng = np.random.RandomState(0)
    X = rng.rand(256, 784).astype(dtype)
    Y = np.eye(10, dtype=dtype)[rng.randint(0, 10, 256)]
    rows = np.arange(256, dtype=np.int64)
    out = np.empty((256, 10), dtype=dtype)
    for density in (0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.7):
        ratios = []
        nets = []
        for max_d in (1.0, 0.0):  # all sparse kernels; all gemm on a copy
            _, _, layout, theta, csc, _ = pruned_network(
                [784, 300, 10], ["relu", "softmax"], density, dtype, max_sparse_density=max_d)
            # Keep the small output layer on the same path as in practice: dense.
            coefs, intercepts = layout.views(theta)
            coefs = [coefs[0], coefs[1].toarray()]
            layout = Layout.from_coefs(coefs, ["relu", "softmax"], max_sparse_density=max_d)
            nets.append((layout, layout.pack(coefs, intercepts, dtype)))
        with blas_threads(n):
            objs = [Objective(lay, X, Y, None, LOSS_LOG, 0.0, 0.0, n) for lay, _ in nets]
            t = fastest([lambda o=o, th=th: o(th) for o, (_, th) in zip(objs, nets)], 10, 5)
            ratios.append(t[1] / t[0])
            t = fastest([lambda lay=lay, th=th: _forward.predict(th, X, lay.net, out, rows,
                                                                  1024, n)
                         for lay, th in nets], 10, 5)
            ratios.append(t[1] / t[0])
            o1 = np.empty((1, 10), dtype=dtype)
            t = fastest([lambda lay=lay, th=th: _forward.predict(th, X[:1], lay.net, o1,
                                                                  rows[:1], 1024, n)
                         for lay, th in nets], 10, 200)
            ratios.append(t[1] / t[0])
        print(f"{density:>8.2f} {ratios[0]:>17.2f} {ratios[1]:>14.2f} {ratios[2]:>12.2f}")


def cmd_epoch(args):
    dtype = np.dtype(args.dtype)
    n = args.threads
    rng = np.random.RandomState(0)
    X = rng.rand(10_000, 784).astype(dtype)
    Y = np.eye(10, dtype=dtype)[rng.randint(0, 10, 10_000)]
    dense, theta_d, pruned, theta_s, _, _ = pruned_network(LENET, LENET_ACTS, 0.10, dtype)
    runs = []
    for layout, theta in ((dense, theta_d), (pruned, theta_s)):
        runner = EpochRunner(layout, dtype, 200)
        opt = Optimizer("adam", layout.n_params, dtype, learning_rate_init=1e-4)
        idx = np.arange(10_000, dtype=np.int64)
        state = np.array([1], dtype=np.uint64)
        th = theta.copy()
        runs.append(lambda r=runner, o=opt, i=idx, s=state, t=th:
                    r.run(t, X, Y, None, i, s, True, o, LOSS_LOG, 1e-4, 0.0, n))
    with blas_threads(n):
        t_dense, t_sparse = fastest(runs, 5, 1)
    print(f"Adam epoch, 10,000 rows, batch 200, 784-300-100-10, {dtype.name}, {n} thread(s): "
          f"dense {t_dense * 1e3:.1f} ms, 90% pruned {t_sparse * 1e3:.1f} ms "
          f"({t_dense / t_sparse:.2f}x faster)")


def cmd_digits(args):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X / 16, y, random_state=0, stratify=y)
    print("digits, 64-300-100-10 relu, Adam, 75/25 split; pruned: 90% of all weights removed "
          "in 3 rounds of prune + 40 retraining epochs; test accuracy change in points")
    changes = {"global": [], "layer": []}
    for seed in range(args.seeds):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = MLPClassifier((300, 100), random_state=seed, n_threads=args.threads)
            est.fit(Xtr, ytr)
            dense = est.score(Xte, yte)
            line = f"  seed {seed}: dense {100 * dense:.2f}%"
            for scope in changes:
                pruned = prune_retrain(copy.deepcopy(est), Xtr, ytr, 0.9, steps=3,
                                       retrain_epochs=40, scope=scope)
                kept = sum(W.nnz for W in pruned.coefs_) / sum(W.size for W in est.coefs_)
                changes[scope].append(100 * (pruned.score(Xte, yte) - dense))
                line += (f" | {scope} {changes[scope][-1]:+.2f} (layer sparsity "
                         f"{', '.join(f'{s:.2f}' for s in pruned.sparsity_)}; "
                         f"total {1 - kept:.3f})")
        print(line)
    for scope, c in changes.items():
        print(f"  {scope:>6}: mean {np.mean(c):+.2f} points, worst {np.min(c):+.2f}")


RETRAIN_CASES = [((256, 128), 0.9, 200), ((1024, 1024), 0.95, 128), ((1024, 1024), 0.9, 256),
                 ((2048, 1024), 0.9, 128), ((2048, 2048), 0.95, 256), ((2048, 2048), 0.9, 256)]


def cmd_retrain(args):
    from sklearn.datasets import make_classification

    from fastmlp.pruning import prune_magnitude, retrain
    from fastmlp.solvers.first_order import PRUNED_PAR_MIN_WORK

    dtype = np.dtype(args.dtype)
    X, y = make_classification(8000, 784, n_informative=100, n_classes=10, random_state=0)
    X = X.astype(dtype)
    print(f"retrain, 2 epochs of 8,000 rows, {dtype.name}; ms an epoch on 1 / 2 "
          f"threads (one thread below {PRUNED_PAR_MIN_WORK:,} stored multiply-adds a batch)")
    for hidden, sparsity, batch in RETRAIN_CASES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            base = MLPClassifier(hidden, batch_size=batch, max_iter=1, random_state=0,
                                 n_threads=1).fit(X, y)
            prune_magnitude(base, sparsity)
            work = batch * base._layout.n_params
            ms = {}
            for _ in range(2):
                for n in (1, 2):
                    est = copy.deepcopy(base)
                    est.n_threads = n
                    t0 = time.perf_counter()
                    retrain(est, X, y, epochs=2)
                    t = (time.perf_counter() - t0) / 2 * 1e3
                    ms[n] = min(ms.get(n, t), t)
        print(f"  784-{'-'.join(map(str, hidden))}-10 at {sparsity:.0%}, batch {batch} "
              f"({work / 1e6:.1f}M a batch): {ms[1]:.1f} / {ms[2]:.1f} ms, "
              f"1 / 2 = {ms[1] / ms[2]:.2f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["forward", "crossover", "epoch", "digits", "retrain",
                                         "all"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    parser.add_argument("--seeds", type=int, default=5, help="digits: models trained")
    args = parser.parse_args(argv)
    commands = {"forward": cmd_forward, "crossover": cmd_crossover, "epoch": cmd_epoch,
                "digits": cmd_digits, "retrain": cmd_retrain}
    for name in (commands if args.what == "all" else [args.what]):
        commands[name](args)


if __name__ == "__main__":
    main()
