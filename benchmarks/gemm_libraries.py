"""The matrix products of a training epoch, by each library's own BLAS.

compare.py's "GEMM floor" times an epoch's products with numpy's BLAS. This
script times the same products (per batch and layer: Z = A W forward,
dW = A^T D and, but for the first layer, D W^T backward; transposes as
flags) four ways:

- numpy (``np.matmul``: the OpenBLAS numpy ships, compare.py's floor);
- scipy's BLAS (``scipy.linalg.blas``: the OpenBLAS build fastmlp's kernels
  call through ``scipy.linalg.cython_blas``), column-major calls on the
  row-major buffers exactly as ``src/_blas.pxd`` makes them;
- PyTorch (``torch.mm``: its own CPU GEMM, MKL or oneDNN in the wheels);
- fastmlp's own kernels (``fastmlp._kernels.product``: src/_small_gemm.pxd,
  every product in them; training runs a layer's products there up to 2^26
  multiply-adds, but for an ``A^T D`` below 2^20 off the two-core epoch,
  which goes to OpenBLAS; left out on a CPU without AVX2).

The buffers start on 64-byte boundaries, as training's do.

It answers whether a gap between fastmlp and PyTorch is overhead around the
products or the products themselves: PyTorch's epoch can only be k times
fastmlp's if its GEMM is, at least, that much faster than OpenBLAS's minus
fastmlp's other work.

Usage::

    python benchmarks/gemm_libraries.py                 # W1, both dtypes
    python benchmarks/gemm_libraries.py --workloads W1,W3 --repeats 5
"""

import argparse
import os
import re
import sys
import time
from statistics import median

import numpy as np
# Loaded before threadpoolctl caps the BLAS libraries it finds: scipy's
# OpenBLAS is another library than numpy's.
from scipy.linalg import blas

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from benchmarks.common import DTYPES, WORKLOADS  # noqa: E402

N_CLASSES = 10
N_FEATURES = {"W1": 784, "W2": 64, "W3": 40}


def shapes(workload):
    units = [N_FEATURES[workload], *WORKLOADS[workload]["hidden"], N_CLASSES]
    return units, WORKLOADS[workload]["batch_size"], WORKLOADS[workload]["n_train"]


class Buffers:
    """A batch of inputs, the weights and every product's output."""

    def __init__(self, units, B, dtype, seed=0):
        from fastmlp import _aligned

        rng = np.random.default_rng(seed)

        def normal(*shape):
            out = _aligned.empty(shape, dtype)
            out[...] = rng.standard_normal(shape)
            return out

        self.X = normal(B, units[0])
        self.W = [normal(a, b) for a, b in zip(units[:-1], units[1:])]
        self.Z = [_aligned.empty((B, b), dtype) for b in units[1:]]
        self.dW = [_aligned.empty(w.shape, dtype) for w in self.W]
        self.dA = [_aligned.empty((B, a), dtype) for a in units[1:-1]]


def numpy_batch(buf):
    acts = [buf.X]
    for W, Z in zip(buf.W, buf.Z):
        np.matmul(acts[-1], W, out=Z)
        acts.append(Z)
    for l in range(len(buf.W) - 1, -1, -1):
        np.matmul(acts[l].T, buf.Z[l], out=buf.dW[l])
        if l > 0:
            np.matmul(buf.Z[l], buf.W[l].T, out=buf.dA[l - 1])


def scipy_batch_fn(buf):
    """The batch as fastmlp's _blas.pxd calls it: a row-major r x c matrix is
    the column-major c x r one (its .T here, an F-ordered view, no copy)."""
    gemm = blas.sgemm if buf.X.dtype == np.float32 else blas.dgemm

    def run():
        acts = [buf.X]
        for W, Z in zip(buf.W, buf.Z):
            # mm_nn: Z^T = W^T A^T
            gemm(1.0, W.T, acts[-1].T, c=Z.T, overwrite_c=1)
            acts.append(Z)
        for l in range(len(buf.W) - 1, -1, -1):
            # mm_tn: dW^T = D^T (A^T)^T
            gemm(1.0, buf.Z[l].T, acts[l].T, trans_b=1, c=buf.dW[l].T, overwrite_c=1)
            if l > 0:
                # mm_nt: dA^T = (W^T)^T D^T
                gemm(1.0, buf.W[l].T, buf.Z[l].T, trans_a=1, c=buf.dA[l - 1].T,
                     overwrite_c=1)

    return run


def torch_batch_fn(torch, buf):
    t = torch.from_numpy
    X, W, Z, dW, dA = t(buf.X), [t(w) for w in buf.W], [t(z) for z in buf.Z], \
        [t(d) for d in buf.dW], [t(a) for a in buf.dA]

    def run():
        acts = [X]
        for w, z in zip(W, Z):
            torch.mm(acts[-1], w, out=z)
            acts.append(z)
        for l in range(len(W) - 1, -1, -1):
            torch.mm(acts[l].t(), Z[l], out=dW[l])
            if l > 0:
                torch.mm(Z[l], W[l].t(), out=dA[l - 1])

    return run


def fastmlp_batch_fn(kernels, buf):
    def run():
        acts = [buf.X]
        for W, Z in zip(buf.W, buf.Z):
            kernels.product("nn", acts[-1], W, Z)
            acts.append(Z)
        for l in range(len(buf.W) - 1, -1, -1):
            kernels.product("tn", acts[l], buf.Z[l], buf.dW[l])
            if l > 0:
                kernels.product("nt", buf.Z[l], buf.W[l], buf.dA[l - 1])

    return run


def check_same_products(fns, buf):
    """Every library computes the same dW (guards the scipy call's flags)."""
    results = []
    for fn in fns.values():
        fn()
        results.append([d.copy() for d in buf.dW])
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_allclose(a, b, rtol=1e-3 if a.dtype == np.float32 else 1e-9,
                                       atol=1e-3 * np.abs(a).max())


def epoch_seconds(fn, n_batches, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        for _ in range(n_batches):
            fn()
        times.append(time.process_time() - t0)
    return median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workloads", default="W1")
    parser.add_argument("--dtypes", default=",".join(DTYPES))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    from threadpoolctl import threadpool_info, threadpool_limits

    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        torch.set_num_threads(1)
    with open("/proc/cpuinfo") as f:
        cpu = re.search(r"model name\s*:\s*(.*)", f.read()).group(1)
    blas = sorted({f"{i['filepath'].split('/')[-1]} ({i['internal_api']} {i['version']}, "
                   f"{i.get('architecture')})" for i in threadpool_info()
                   if i["user_api"] == "blas"})
    print(f"{cpu}; one thread, CPU time, median of {args.repeats}; BLAS: {'; '.join(blas)}; "
          f"PyTorch {torch.__version__ if torch else 'not installed'}.\n")
    from fastmlp import _kernels

    print("| workload | dtype | numpy (floor) | scipy BLAS (fastmlp's) | fastmlp kernels "
          "| PyTorch | scipy / numpy | numpy / PyTorch | numpy / kernels | PyTorch / kernels |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    with threadpool_limits(1):
        for w in args.workloads.split(","):
            units, B, n = shapes(w)
            for d in args.dtypes.split(","):
                buf = Buffers(units, B, np.dtype(d))
                fns = {"numpy": lambda: numpy_batch(buf), "scipy": scipy_batch_fn(buf)}
                if _kernels.isa():
                    fns["kernels"] = fastmlp_batch_fn(_kernels, buf)
                if torch is not None:
                    fns["torch"] = torch_batch_fn(torch, buf)
                check_same_products(fns, buf)
                sec = {k: epoch_seconds(f, n // B, args.repeats) for k, f in fns.items()}
                tc, kc = sec.get("torch"), sec.get("kernels")

                def cell(x, fmt="{:.3f} s"):
                    return "—" if x is None else fmt.format(x)

                print(f"| {w} | {d} | {sec['numpy']:.3f} s | {sec['scipy']:.3f} s | "
                      f"{cell(kc)} | {cell(tc)} | {sec['scipy'] / sec['numpy']:.2f} | "
                      f"{cell(tc and sec['numpy'] / tc, '{:.2f}')} | "
                      f"{cell(kc and sec['numpy'] / kc, '{:.2f}')} | "
                      f"{cell(tc and kc and tc / kc, '{:.2f}')} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
