"""Deep Compression figures: file size, accuracy and load time of .fmz models.

Run from the repository root with the kernels built:

    PYTHONPATH=. python benchmarks/compression.py digits [--seeds 0,1,2] [--bits 5]
    PYTHONPATH=. python benchmarks/compression.py synthetic [--bits 5]
    PYTHONPATH=. python benchmarks/compression.py load
    PYTHONPATH=. python benchmarks/compression.py shared

digits: 64-300-100-10 on scikit-learn's digits (75/25 split). synthetic: a
784-300-100-10 net on make_classification (12,000 samples, 784 standardised
features of which 40 informative, 10 classes, class_sep 3). Both: train dense (Adam), prune with
three prune-retrain rounds to the target sparsity (global threshold),
share the weights with 2**bits centroids per layer, fine-tune the centroids,
write the .fmz file. The ratio is the float32 dense model's bytes (every
weight and bias, 4 bytes each) over the whole .fmz file's bytes (metadata
and container included); the payload-only ratio is printed beside it.
load: seconds to load the .fmz and predict one row, over seconds to
unpickle the dense model (as `fastmlp train -o model.pkl` writes it), best
of interleaved repeats.
shared: inference from the shared-weight form against decoded weights, on
both models' pruned layers: the bytes each form keeps per layer, and the
time of one layer product (1 row and 256 rows) by the same compiled CSC
loop reading float weights or codebook[uint8 index] (src/_shared_product.pyx),
with the production predict of the whole network beside them.
"""

import argparse
import copy
import os
import pickle
import tempfile
import time
import warnings

import numpy as np
from sklearn.datasets import load_digits, make_classification
from sklearn.model_selection import train_test_split

from fastmlp import MLPClassifier
from fastmlp.compression import compress, load
from fastmlp.pruning import prune_retrain


def data(name, seed=0):
    if name == "digits":
        X, y = load_digits(return_X_y=True)
        X = X / 16.0
    else:
        X, y = make_classification(12_000, 784, n_informative=40, n_redundant=0,
                                   n_classes=10, n_clusters_per_class=1, class_sep=3.0,
                                   random_state=0)
        X = (X - X.mean(0)) / X.std(0)
    return train_test_split(X, y, test_size=0.25, random_state=seed, stratify=y)


# Pruning schedules: target sparsity, dense epochs, retraining epochs per
# round. Digits retrains 60 epochs a round: with 40, seed 1 lost 1.11 points
# to pruning alone (README, "Compression").
SPECS = {"digits": dict(sparsity=0.92, epochs=200, retrain=60),
         "synthetic": dict(sparsity=0.95, epochs=30, retrain=10)}


def dense_float32_bytes(est):
    return 4 * sum(W.shape[0] * W.shape[1] + W.shape[1] for W in est.coefs_)


def run(name, seed, bits, sparsity, epochs, retrain, fine_tune, threads, folder):
    Xtr, Xte, ytr, yte = data(name, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dense = MLPClassifier((300, 100), max_iter=epochs, random_state=seed,
                              n_threads=threads).fit(Xtr, ytr)
        pruned = prune_retrain(copy.deepcopy(dense), Xtr, ytr, sparsity, steps=3,
                               retrain_epochs=retrain, scope="global")
    model = compress(pruned, bits=bits, X=Xtr, y=ytr, fine_tune_epochs=fine_tune,
                     random_state=seed)
    path = os.path.join(folder, f"{name}-{seed}.fmz")
    model.save(path)
    loaded = load(path)
    assert np.array_equal(loaded.predict_proba(Xte), model.estimator.predict_proba(Xte))
    ref = dense_float32_bytes(dense)
    size = os.path.getsize(path)
    payload = sum(s["stored"] for s in model.layer_sizes())
    acc = [m.score(Xte, yte) for m in (dense, pruned, loaded)]
    with open(os.path.join(folder, f"{name}-{seed}.pkl"), "wb") as f:
        pickle.dump(dense, f, protocol=pickle.HIGHEST_PROTOCOL)
    return {"ratio": ref / size, "payload_ratio": ref / payload, "size": size, "ref": ref,
            "acc": acc, "sparsity": 1 - pruned._layout.w_size.sum() / (ref / 4),
            "sizes": model.layer_sizes(), "model": model}


def report(name, args):
    spec = dict(SPECS[name])
    if args.retrain is not None:
        spec["retrain"] = args.retrain
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"{name}: 3 prune-retrain rounds to {spec['sparsity']:.0%} (global, "
          f"{spec['retrain']} epochs each), {args.bits}-bit sharing, "
          f"{args.fine_tune} fine-tuning epochs")
    print(f"{'seed':>4} {'weights pruned':>15} {'file B':>8} {'ratio':>7} {'payload':>8} "
          f"{'dense acc':>10} {'pruned':>7} {'.fmz':>7} {'change':>7}")
    with tempfile.TemporaryDirectory() as folder:
        for seed in seeds:
            r = run(name, seed, args.bits, spec["sparsity"], spec["epochs"], spec["retrain"],
                    args.fine_tune, args.threads, folder)
            d, p, c = r["acc"]
            print(f"{seed:>4} {r['sparsity']:>15.3f} {r['size']:>8} {r['ratio']:>6.1f}x "
                  f"{r['payload_ratio']:>7.1f}x {d:>10.4f} {p:>7.4f} {c:>7.4f} "
                  f"{100 * (c - d):>+6.2f}")
        print("per layer (last seed): " + "; ".join(
            f"{s['dense_float32']} -> {s['stored']} B ({s['codecs']['weights']}/"
            f"{s['codecs']['positions']})" for s in r["sizes"]))


def best_of(fns, repeats):
    best = [np.inf] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t)
    return best


def load_time(args):
    with tempfile.TemporaryDirectory() as folder:
        for name in ("digits", "synthetic"):
            run(name, 0, args.bits, **SPECS[name], fine_tune=args.fine_tune,
                threads=args.threads, folder=folder)
            Xtr, Xte, _, _ = data(name)
            fmz = os.path.join(folder, f"{name}-0.fmz")
            pkl = os.path.join(folder, f"{name}-0.pkl")

            def unpickle():
                with open(pkl, "rb") as f:
                    pickle.load(f)

            t_fmz, t_pkl = best_of([lambda: load(fmz).predict(Xte[:1]), unpickle],
                                   args.repeats)
            print(f"{name}: load + first predict {t_fmz * 1e3:.2f} ms, unpickle dense "
                  f"{t_pkl * 1e3:.2f} ms ({os.path.getsize(pkl)} B): ratio "
                  f"{t_fmz / t_pkl:.2f}")


def shared_form(args):
    from fastmlp._shared_product import csc_product, csc_shared_product

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        for name, spec in SPECS.items():
            r = run(name, 0, args.bits, **spec, fine_tune=args.fine_tune, threads=args.threads,
                    folder=folder)
            est = load(os.path.join(folder, f"{name}-0.fmz"))
            dtype = est._theta.dtype
            print(f"{name} ({dtype}): per pruned layer, bytes kept (weights + CSC "
                  f"structure) and product time, decoded vs shared")
            totals = np.zeros(2)
            for l, (W, code) in enumerate(zip(est.coefs_, r["model"].layers)):
                codes = code.symbols.astype(np.uint8)
                codebook = code.table.astype(dtype)
                assert np.array_equal(codebook[codes], W.data)
                structure = W.indptr.nbytes + W.indices.nbytes
                kept = (W.data.nbytes + structure, codes.nbytes + codebook.nbytes + structure)
                totals += kept
                times = []
                for rows in (1, 256):
                    X = rng.standard_normal((rows, W.shape[0])).astype(dtype)
                    out = np.empty((rows, W.shape[1]), dtype=dtype)
                    repeats = max(5, args.repeats * (4 if rows == 1 else 1))
                    times.append(best_of([
                        lambda: csc_product(X, W.indptr, W.indices, W.data, out),
                        lambda: csc_shared_product(X, W.indptr, W.indices, codes, codebook,
                                                   out)], repeats))
                print(f"  layer {l} {W.shape[0]}x{W.shape[1]}, {W.nnz} weights: "
                      f"{kept[0]} -> {kept[1]} B; 1 row {times[0][0] * 1e6:.1f} -> "
                      f"{times[0][1] * 1e6:.1f} us ({times[0][1] / times[0][0]:.2f}x), "
                      f"256 rows {times[1][0] * 1e3:.3f} -> {times[1][1] * 1e3:.3f} ms "
                      f"({times[1][1] / times[1][0]:.2f}x)")
            resident = est._theta.nbytes + est._layout.sp_pool.nbytes
            X = data(name)[1][:256]
            t1, t256 = best_of([lambda: est.predict_proba(X[:1]),
                                lambda: est.predict_proba(X)], args.repeats)
            print(f"  all layers: {totals[0]:.0f} -> {totals[1]:.0f} B kept "
                  f"({totals[1] / totals[0]:.2f}x); the loaded estimator's parameters "
                  f"and kernel tables: {resident} B; production predict_proba: 1 row "
                  f"{t1 * 1e6:.0f} us, 256 rows {t256 * 1e3:.3f} ms")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["digits", "synthetic", "load", "shared"])
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--bits", type=int, default=5)
    ap.add_argument("--fine-tune", type=int, default=5)
    ap.add_argument("--retrain", type=int, default=None,
                    help="retraining epochs per pruning round (default: per data set)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=50)
    args = ap.parse_args()
    if args.what == "load":
        load_time(args)
    elif args.what == "shared":
        shared_form(args)
    else:
        report(args.what, args)


if __name__ == "__main__":
    main()
