"""The small-product kernels (src/_small_gemm.pxd) against BLAS, per shape.

For each layer product of training (forward A W: "nn", weight gradient
A^T D: "tn", input gradient D W^T: "nt") of the workloads' shapes, and a
ladder of square-ish sizes around the crossover, prints microseconds per
product with the kernels and with scipy's BLAS (the fallback), one thread,
and their ratio. The crossover SMALL_MAX_WORK in src/_small_gemm.pxd is
where the ratio falls below 1. --nn-grid prints BLAS / kernels for A W over
a grid of batch x n_in x n_out (float32 and float64): where the wider
range NN_WIDE_MAX_WORK / NN_NARROW_ROW comes from.

Usage::

    python benchmarks/small_gemm.py            # about half a minute
    python benchmarks/small_gemm.py --nn-grid  # about five minutes
    python benchmarks/small_gemm.py --quick    # a few shapes (CI)
    python benchmarks/small_gemm.py --no-pack  # deep products read B in place
    python benchmarks/small_gemm.py --large    # products past SMALL_MAX_WORK too

With --large, the ladder goes on past SMALL_MAX_WORK (2^26), where the
kernels are used only if they are AVX-512 and OpenBLAS runs older kernels
(_kernels.max_work()).
"""

import argparse
import glob
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
if glob.glob(os.path.join(os.path.dirname(HERE), "fastmlp", "_kernels*")):
    sys.path.insert(0, os.path.dirname(HERE))

# (batch, n_in, n_out) of every layer of the workloads (benchmarks/common.py)
LAYERS = {
    "W1": [(200, 784, 256), (200, 256, 128), (200, 128, 10)],
    "W2": [(32, 64, 100), (32, 100, 10)],
    "W3": [(100, 40, 100), (100, 100, 100), (100, 100, 10)],
}
LADDER = [(64, 64, 64), (128, 128, 128), (160, 160, 160), (200, 200, 200),
          (256, 256, 256), (320, 320, 320), (200, 512, 256), (400, 400, 400),
          (512, 512, 512), (200, 1024, 512)]
LARGE = [(512, 1024, 1024), (1024, 1024, 1024), (200, 4096, 1024), (256, 2048, 2048),
         (2000, 784, 256)]
GRID_ROWS = (50, 100, 200, 400)
GRID_INPUTS = (128, 256, 512, 784, 1024)
GRID_OUTPUTS = (64, 128, 256, 384, 512)


def operands(kind, batch, n_in, n_out, dtype, rng):
    """(A, B, C) of the product a layer of this shape does, on 64-byte
    boundaries as training's weights, activations and deltas are
    (fastmlp._aligned): numpy's own arrays start 16 bytes past one, and
    every vector load of an unaligned row splits a cache line."""
    from fastmlp import _aligned

    def r(*shape):
        out = _aligned.empty(shape, dtype)
        out[...] = rng.standard_normal(shape)
        return out
    if kind == "nn":        # Z = A W
        return r(batch, n_in), r(n_in, n_out), r(batch, n_out)
    if kind == "tn":        # dW = A^T D
        return r(batch, n_in), r(batch, n_out), r(n_in, n_out)
    return r(batch, n_out), r(n_in, n_out), r(batch, n_in)  # D W^T


def seconds(fn, min_time):
    """Seconds per call: CPU time of enough calls to last min_time."""
    reps = 1
    while True:
        t0 = time.process_time()
        fn(reps)
        t = time.process_time() - t0
        if t >= min_time:
            return t / reps
        reps = max(2 * reps, int(reps * 1.2 * min_time / max(t, 1e-6)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--min-time", type=float, default=0.05)
    parser.add_argument("--nn-grid", action="store_true",
                        help="A W over a grid of shapes: BLAS time / kernels time")
    parser.add_argument("--no-pack", action="store_true",
                        help="the kernels read a deep NN or TN product's B in place "
                             "instead of packing it in panels")
    parser.add_argument("--large", action="store_true",
                        help="also products past SMALL_MAX_WORK (up to 1024^3)")
    args = parser.parse_args(argv)

    import threadpoolctl

    from fastmlp import _kernels as _products

    if _products.isa() == 0:
        print("This CPU has no AVX2: the products use BLAS, nothing to compare.")
        return 0
    isa = {1: "AVX2", 2: "AVX-512"}[_products.isa()]
    _products.pack_deep_enabled(not args.no_pack)
    rng = np.random.default_rng(0)
    shapes = [(w, s) for w, ls in LAYERS.items() for s in ls]
    shapes += [("-", s) for s in LADDER + (LARGE if args.large else [])]
    if args.quick:
        shapes = shapes[3:5]
    min_time = 0.002 if args.quick else args.min_time
    if args.nn_grid:
        return nn_grid(_products, isa, rng, min_time)
    print(f"Kernels: {isa}; BLAS and kernels on one thread; microseconds per product, "
          "and the rate in billions of multiply-adds a second.\n")
    print("| workload | batch x n_in x n_out | dtype | product | kernels | BLAS | BLAS / kernels "
          "| kernels GMAC/s | BLAS GMAC/s |")
    print("| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
    with threadpoolctl.threadpool_limits(1):
        for w, (b, i, o) in shapes:
            for dtype in (np.float32, np.float64):
                for kind in ("nn", "tn", "nt"):
                    A, B, C = operands(kind, b, i, o, dtype, rng)
                    small = seconds(lambda n: _products.product(kind, A, B, C, repeat=n),
                                    min_time)
                    blas = seconds(lambda n: _products.product(kind, A, B, C, blas=True,
                                                               repeat=n), min_time)
                    macs = 1e-9 * b * i * o
                    print(f"| {w} | {b} x {i} x {o} | {np.dtype(dtype).name} | {kind} | "
                          f"{1e6 * small:.2f} | {1e6 * blas:.2f} | {blas / small:.2f} | "
                          f"{macs / small:.1f} | {macs / blas:.1f} |")
    return 0


def nn_grid(_products, isa, rng, min_time):
    """BLAS time / kernels time of A W for each shape of the grid."""
    import threadpoolctl

    print(f"Kernels: {isa}; one thread; A W, BLAS time / kernels time "
          "(above 1: the kernels are faster).")
    with threadpoolctl.threadpool_limits(1):
        for dtype in (np.float32, np.float64):
            print(f"\n{np.dtype(dtype).name}\n")
            print("| batch x n_in | " + " | ".join(f"n_out {o}" for o in GRID_OUTPUTS) + " |")
            print("| --- |" + " ---: |" * len(GRID_OUTPUTS))
            for b in GRID_ROWS:
                for i in GRID_INPUTS:
                    cells = []
                    for o in GRID_OUTPUTS:
                        A, B, C = operands("nn", b, i, o, dtype, rng)
                        small = seconds(lambda n: _products.product("nn", A, B, C, repeat=n),
                                        min_time)
                        blas = seconds(lambda n: _products.product("nn", A, B, C, blas=True,
                                                                   repeat=n), min_time)
                        cells.append(f"{blas / small:.2f}")
                    print(f"| {b} x {i} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
