"""fastmlp, scikit-learn and PyTorch side by side, in one process.

Every library trains the same network on the same data, in the same dtype,
with the same solver (Adam, learning rate 1e-3, L2 1e-4 on the weights),
batch size and batch order policy (a fresh permutation every epoch, each
batch gathered by index), on the same number of threads. The workloads are
those of the asv suite (benchmarks/benchmarks/common.py).

Printed, as markdown tables that can be pasted into the README:

- seconds per training epoch, and the ratios to fastmlp's; the "GEMM floor"
  is the forward and backward matrix products of one epoch done by numpy's
  BLAS alone (nothing else), and "floor / fastmlp" is fastmlp's time as a
  fraction of it;
- the latency of ``predict`` on one sample of the digits network (the full
  call a user makes, input validation included);
- the peak memory a fit needs beyond X, measured in a fresh process by
  tracemalloc (every numpy allocation; fastmlp and scikit-learn) and by the
  growth of the resident set (all three), next to the bound of the issue,
  "2 x the activations of one batch + parameters x (optimiser state + 2)":
  itemsize x (batch x inputs + 2 x batch x (hidden + output units) +
  parameters x (2 + optimiser state)), where the activations of a batch are
  x_0 (the gathered input rows, counted once: no delta is kept for them)
  and every layer's output x_{l+1} = phi(W_l x_l + b_l) (counted twice:
  with its delta), as scikit-learn's ``activations`` list holds them; and
  the strict figure without x_0;
- the performance targets, met or not.

Timings are medians over ``--repeats`` rounds; within a round the libraries
run one after the other, and each ratio is the median of the per-round
ratios, so a change in machine load affects both sides of a ratio alike.

Usage::

    python benchmarks/compare.py                 # everything (a few minutes)
    python benchmarks/compare.py --quick         # tiny sizes, seconds (CI)
    python benchmarks/compare.py --threads 1 --workloads W1 --repeats 7

PyTorch is optional: without it its columns say so.
"""

import argparse
import gc
import glob
import json
import os
import platform
import re
import subprocess
import sys
import time
import tracemalloc
import warnings
from statistics import median

# One OpenMP runtime serves the whole process (PyTorch's libgomp.so.1 and
# the system one fastmlp links share a soname: the first loaded wins), so
# its wait policy applies to every library alike. Passive, unless set
# outside: on a shared machine a thread spinning at a barrier takes the core
# its partner needs (fastmlp measured 7x slower under PyTorch's default).
# --omp-default instead runs every library under the runtime's default
# policy (PyTorch's choice): PyTorch, imported first, loads the runtime
# before fastmlp sets its own default.
if "--omp-default" in sys.argv[1:]:
    try:
        import torch  # noqa: F401
    except ImportError:
        pass
else:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
# Run from a source checkout built in place, the package next to benchmarks/ is
# the one measured; an unbuilt checkout must not shadow the installed package.
if glob.glob(os.path.join(os.path.dirname(HERE), "fastmlp", "_epoch*")):
    sys.path.insert(1, os.path.dirname(HERE))

from benchmarks.common import (  # noqa: E402
    DTYPES, WORKLOADS, estimator_params, fit_quietly, make_data, n_parameters)

# Epochs per timed fit: each fit lasts about a second at full size.
EPOCHS = {"W1": 2, "W2": 30, "W3": 10}
TARGETS = {
    "torch_w1_f32": 2.0,
    "floor_w1": 0.85,
    "sklearn_w1_f64": 1.7,
    "sklearn_w2": 10.0,
    "sklearn_w3": 5.0,
    "predict_us": 20.0,
}
# Pause between libraries so that one library's idle worker threads
# (OpenBLAS and OpenMP spin a while before sleeping) do not eat into the next
# library's time.
SETTLE = 0.2


# ------------------------------------------------------------------ PyTorch
def load_torch():
    """The torch module, or None when it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    return torch


class TorchMLP:
    """A PyTorch training loop equal to the estimators' Adam epoch.

    Same layer sizes, relu, scikit-learn's Glorot-uniform initialisation is
    not reproduced (PyTorch's own is used; it does not change the work), the
    L2 penalty alpha/2 ||W||^2 / batch as weight decay alpha/batch on the
    weights only (biases unpenalised), mean cross-entropy per batch, Adam
    fused into one kernel when PyTorch offers it (its fastest CPU variant).
    No autograd graph outlives a step and nothing is moved between devices.
    """

    def __init__(self, torch, units, batch_size, dtype, alpha=1e-4, lr=1e-3, seed=0,
                 shuffle=True, eps=1e-8):
        self.torch = torch
        self.shuffle = shuffle
        torch.manual_seed(seed)
        layers = []
        for i, (a, b) in enumerate(zip(units[:-1], units[1:])):
            layers.append(torch.nn.Linear(a, b))
            if i < len(units) - 2:
                layers.append(torch.nn.ReLU())
        self.model = torch.nn.Sequential(*layers).to(getattr(torch, np.dtype(dtype).name))
        weights = [p for n, p in self.model.named_parameters() if n.endswith("weight")]
        biases = [p for n, p in self.model.named_parameters() if n.endswith("bias")]
        groups = [{"params": weights, "weight_decay": alpha / batch_size},
                  {"params": biases, "weight_decay": 0.0}]
        try:
            self.opt = torch.optim.Adam(groups, lr=lr, betas=(0.9, 0.999), eps=eps, fused=True)
        except (RuntimeError, TypeError, ValueError):
            self.opt = torch.optim.Adam(groups, lr=lr, betas=(0.9, 0.999), eps=eps)
        self.loss = torch.nn.CrossEntropyLoss()
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def linear_layers(self):
        return [m for m in self.model if isinstance(m, self.torch.nn.Linear)]

    def set_weights(self, coefs, intercepts):
        """Start from given weights (scikit-learn's layout: W is in x out)."""
        with self.torch.no_grad():
            for lin, W, b in zip(self.linear_layers(), coefs, intercepts):
                lin.weight.copy_(self.torch.from_numpy(W.T.copy()))
                lin.bias.copy_(self.torch.from_numpy(b))

    def fit(self, X, y, epochs):
        """Train; returns the last epoch's mean batch loss."""
        torch = self.torch
        Xt = torch.from_numpy(X)  # shares X's memory
        yt = torch.from_numpy(np.asarray(y, dtype=np.int64))
        n, B = Xt.shape[0], self.batch_size
        self.model.train()
        for _ in range(epochs):
            perm = (torch.randperm(n, generator=self.generator) if self.shuffle
                    else torch.arange(n))
            total = 0.0
            for start in range(0, n, B):
                idx = perm[start:start + B]
                self.opt.zero_grad(set_to_none=True)
                loss = self.loss(self.model(Xt.index_select(0, idx)), yt.index_select(0, idx))
                loss.backward()
                self.opt.step()
                total += loss.item() * idx.shape[0]
        return total / n

    def predict(self, X):
        torch = self.torch
        with torch.inference_mode():
            return self.model(torch.from_numpy(X)).argmax(1).numpy()


# ------------------------------------------------------------- GEMM floor
class GemmFloor:
    """The matrix products of one training epoch, and nothing else.

    Per batch: Z_l = A_l W_l for every layer (forward), dW_l = A_l^T D_l for
    every layer and D_l W_l^T for every layer but the first (backward), on
    preallocated buffers with numpy's BLAS (transposes are flags, not
    copies). The input rows are read in place, not gathered.
    """

    def __init__(self, units, batch_size, dtype, seed=0):
        rng = np.random.default_rng(seed)
        self.units = units
        self.B = batch_size
        self.W = [rng.standard_normal((a, b)).astype(dtype) for a, b in zip(units[:-1], units[1:])]
        self.dW = [np.empty_like(w) for w in self.W]
        self.Z = [np.empty((batch_size, b), dtype) for b in units[1:]]
        self.dA = [np.empty((batch_size, a), dtype) for a in units[1:-1]]

    def epoch(self, X):
        B, L = self.B, len(self.W)
        n = X.shape[0]
        for start in range(0, n - B + 1, B):
            A = X[start:start + B]
            acts = [A]
            for l in range(L):
                np.matmul(acts[-1], self.W[l], out=self.Z[l])
                acts.append(self.Z[l])
            for l in range(L - 1, -1, -1):
                np.matmul(acts[l].T, self.Z[l], out=self.dW[l])
                if l > 0:
                    np.matmul(self.Z[l], self.W[l].T, out=self.dA[l - 1])
        rest = n % B
        if rest:
            tail = GemmFloor(self.units, rest, X.dtype)
            tail.W = self.W
            tail.epoch(X[n - rest:])


# ------------------------------------------------------------------ timing
# perf_counter (wall clock) by default; --clock cpu uses process_time, the
# CPU time of all the process's threads: with one thread it is the compute
# time, little affected by other processes competing for the cores.
CLOCK = time.perf_counter


def timed(fn):
    gc.collect()
    time.sleep(SETTLE)
    t0 = CLOCK()
    out = fn()
    return CLOCK() - t0, out


def epoch_times(workload, dtype, data, epochs, repeats, torch):
    """Per-round seconds per epoch of each library (None: not run)."""
    from sklearn.neural_network import MLPClassifier as SkMLP

    from fastmlp import MLPClassifier as FastMLP

    X, y = data[0].astype(dtype), data[1]
    units = [X.shape[1], *WORKLOADS[workload]["hidden"], 10]
    B = WORKLOADS[workload]["batch_size"]
    params = estimator_params(workload, epochs)
    runs = {
        "fastmlp": lambda: fit_quietly(FastMLP(**params), X, y).loss_,
        "sklearn": lambda: fit_quietly(SkMLP(**params), X, y).loss_,
    }
    if torch is not None:
        runs["torch"] = lambda: TorchMLP(torch, units, B, dtype).fit(X, y, epochs)
    floor = GemmFloor(units, B, dtype)

    def run_floor():
        for _ in range(epochs):
            floor.epoch(X)

    runs["floor"] = run_floor
    # Warm-up: first-call costs (thread pools, lazy imports) are not an epoch's.
    small = max(2 * B, 1)
    fit_quietly(FastMLP(**estimator_params(workload, 1)), X[:small], y[:small])
    fit_quietly(SkMLP(**estimator_params(workload, 1)), X[:small], y[:small])
    if torch is not None:
        TorchMLP(torch, units, B, dtype).fit(X[:small], y[:small], 1)
    times = {k: [] for k in runs}
    losses = {}
    for _ in range(repeats):
        for name, fn in runs.items():
            seconds, loss = timed(fn)
            times[name].append(seconds / epochs)
            if loss is not None:
                losses[name] = float(loss)
    return times, losses


def predict_latency(data, repeats, torch, calls=2000):
    """Seconds per one-sample predict call on the digits (W2) network."""
    from sklearn.neural_network import MLPClassifier as SkMLP

    from fastmlp import MLPClassifier as FastMLP

    X, y, X_test, _ = data
    params = estimator_params("W2", 5)
    models = {
        "fastmlp": fit_quietly(FastMLP(**params), X, y).predict,
        "sklearn": fit_quietly(SkMLP(**params), X, y).predict,
    }
    if torch is not None:
        net = TorchMLP(torch, [X.shape[1], *WORKLOADS["W2"]["hidden"], 10], 32, X.dtype)
        net.fit(X, y, 5)
        models["torch"] = net.predict
    x1 = np.ascontiguousarray(X_test[:1])
    per_call = {k: [] for k in models}
    for _ in range(repeats):
        for name, predict in models.items():
            n = calls if name != "sklearn" else max(1, calls // 10)
            predict(x1)
            seconds, _ = timed(lambda: [predict(x1) for _ in range(n)])
            per_call[name].append(seconds / n)
    return per_call


# ------------------------------------------------------------------ memory
def _status_kib(field):
    with open("/proc/self/status") as f:
        return int(re.search(field + r":\s+(\d+)", f.read()).group(1))


def memory_child(lib, workload, dtype, size, n_threads):
    """Peak bytes of one fit beyond X and y (run in a fresh process)."""
    from threadpoolctl import threadpool_limits

    data = make_data(workload, size)
    X, y = data[0].astype(dtype), data[1]
    units = [X.shape[1], *WORKLOADS[workload]["hidden"], 10]
    B = WORKLOADS[workload]["batch_size"]
    epochs = 1
    if lib == "torch":
        torch = load_torch()
        torch.set_num_threads(n_threads)

        def fit(Xf, yf):
            TorchMLP(torch, units, B, dtype).fit(Xf, yf, epochs)
    else:
        if lib == "fastmlp":
            from fastmlp import MLPClassifier as Est
        else:
            from sklearn.neural_network import MLPClassifier as Est
        params = {**estimator_params(workload, epochs),
                  **({"n_threads": n_threads} if lib == "fastmlp" else {})}

        def fit(Xf, yf):
            fit_quietly(Est(**params), Xf, yf)

    out = {}
    with threadpool_limits(n_threads):
        fit(X[:2 * B], y[:2 * B])  # library start-up costs are not the fit's
        gc.collect()
        rss = None
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset the peak resident set to the current one
            rss = _status_kib("VmRSS")
        except OSError:
            pass
        fit(X, y)
        if rss is not None:
            out["rss"] = (_status_kib("VmHWM") - rss) * 1024
        if lib != "torch":  # torch's allocator is invisible to tracemalloc
            gc.collect()
            tracemalloc.start()
            fit(X, y)
            out["traced"] = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    return out


def memory_bound(workload, dtype, n_features, state=2, input_batch=True):
    """The issue's bound, in bytes: "2 x the activations of one batch +
    parameters x (optimiser state + 2)"; Adam keeps 2 state vectors.

    The activations of a batch are x_0, the batch's input rows, and the
    output x_{l+1} = phi(W_l x_l + b_l) of every layer (scikit-learn's
    ``activations`` list holds the same). Every layer output is counted
    twice (it and its delta, which backpropagation needs); x_0 once, as
    the input has no delta. x_0 is the gathered batch: the shuffled rows
    of X copied into one contiguous block, which a BLAS product needs (X
    itself is not counted). input_batch=False leaves x_0 out: the strict
    figure.
    """
    spec = WORKLOADS[workload]
    units = [n_features, *spec["hidden"], 10]
    B = spec["batch_size"]
    acts = (B * units[0] if input_batch else 0) + 2 * B * sum(units[1:])
    return np.dtype(dtype).itemsize * (acts + n_parameters(units) * (state + 2))


def peak_memory(cases, libs, size, n_threads):
    rows = []
    for workload, dtype in cases:
        row = {"workload": workload, "dtype": dtype}
        for lib in libs:
            cmd = [sys.executable, os.path.abspath(__file__), "--memory-child",
                   json.dumps([lib, workload, dtype, size, n_threads])]
            # A fixed mmap threshold: blocks of 64 KiB and more are mapped
            # afresh and unmapped when freed, so the resident set follows
            # the allocations instead of glibc's reuse of freed heap.
            env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
            res = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if res.returncode != 0:
                raise RuntimeError(f"memory measurement of {lib} failed:\n{res.stderr}")
            row[lib] = json.loads(res.stdout.strip().splitlines()[-1])
        n_features = 64 if workload == "W2" else (784 if workload == "W1" else 40)
        row["bound"] = memory_bound(workload, dtype, n_features)
        row["strict"] = memory_bound(workload, dtype, n_features, input_batch=False)
        rows.append(row)
    return rows


# ------------------------------------------------------------------ output
def ratio_median(num, den):
    return median(a / b for a, b in zip(num, den))


def fmt_s(x):
    if x is None:
        return "—"
    return f"{x:.3g}" if x >= 0.1 else f"{x * 1e3:.3g} ms"


def fmt_mib(x):
    # To the KiB: the small workloads' figures differ by KiBs.
    return "—" if x is None else f"{x / 2**20:.3f} MiB"


def header(n_threads, repeats, torch, clock):
    import scipy
    import sklearn
    from threadpoolctl import threadpool_info

    import fastmlp

    try:
        with open("/proc/cpuinfo") as f:
            cpu = re.search(r"model name\s*:\s*(.*)", f.read()).group(1)
    except (OSError, AttributeError):
        cpu = platform.processor() or platform.machine()
    blas = sorted({f"{i['internal_api']} {i['version']}" for i in threadpool_info()
                   if i["user_api"] == "blas"})
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        f"{cpu}, {os.cpu_count()} cores; {n_threads} thread(s) per library; "
        f"{'wall-clock' if clock == 'wall' else 'CPU'} time, median of {repeats} "
        f"round(s); load average {load:.1f} at start.",
        f"fastmlp {fastmlp.__version__}, scikit-learn {sklearn.__version__}, "
        f"numpy {np.__version__}, scipy {scipy.__version__}, "
        f"PyTorch {torch.__version__ if torch else 'not installed'}; BLAS: {', '.join(blas)}; "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY') or 'default (unset)'}.",
    ]
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes and one round: checks that everything runs")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for every library (default: all cores)")
    parser.add_argument("--workloads", default="W1,W2,W3")
    parser.add_argument("--dtypes", default=",".join(DTYPES))
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="wall clock, or the process's CPU time (meaningful "
                             "with --threads 1 on a busy machine)")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory table")
    parser.add_argument("--memory-only", action="store_true",
                        help="only the memory table (and its targets): no timings")
    parser.add_argument("--omp-default", action="store_true",
                        help="every library under OpenMP's default wait policy "
                             "(PyTorch's) instead of OMP_WAIT_POLICY=PASSIVE")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.memory_only and args.no_memory:
        parser.error("--memory-only and --no-memory leave nothing to run")
    if args.memory_child:
        print(json.dumps(memory_child(*json.loads(args.memory_child))))
        return 0

    from threadpoolctl import threadpool_limits

    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    n_threads = args.threads or len(os.sched_getaffinity(0))
    # fastmlp reads OMP_NUM_THREADS when n_threads is None.
    os.environ["OMP_NUM_THREADS"] = str(n_threads)
    size = 0.02 if args.quick else 1.0
    repeats = 1 if args.quick else args.repeats
    epochs = {k: 1 for k in EPOCHS} if args.quick else EPOCHS
    torch = None if args.no_torch else load_torch()
    if torch is not None:
        torch.set_num_threads(n_threads)
    workloads = [w for w in args.workloads.split(",") if w]
    dtypes = [d for d in args.dtypes.split(",") if d]
    for w in workloads:
        if w not in WORKLOADS:
            parser.error(f"unknown workload {w!r}; choose from {', '.join(WORKLOADS)}")
    for d in dtypes:
        if d not in DTYPES:
            parser.error(f"unknown dtype {d!r}; choose from {', '.join(DTYPES)}")

    out = header(n_threads, repeats, torch, args.clock)
    if torch is None:
        why = "left out (--no-torch)" if args.no_torch else "not installed: its columns are empty"
        out.append(f"PyTorch {why}.")
    print("\n".join(out) + "\n", flush=True)

    data = {} if args.memory_only else {w: make_data(w, size) for w in workloads}
    results = {}
    latency = None
    with threadpool_limits(n_threads):
        for w in data:
            for d in dtypes:
                results[w, d] = epoch_times(w, d, data[w], epochs[w], repeats, torch)
        if "W2" in data:
            latency = predict_latency(data["W2"], repeats, torch,
                                      calls=200 if args.quick else 2000)

    lines = [] if args.memory_only else ["#### Training: seconds per epoch", "",
             "| workload | dtype | fastmlp | scikit-learn | PyTorch | GEMM floor "
             "| scikit-learn / fastmlp | PyTorch / fastmlp | floor / fastmlp |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    ratios = {}
    for (w, d), (times, _) in results.items():
        fm = times["fastmlp"]
        r_sk = ratio_median(times["sklearn"], fm)
        r_tc = ratio_median(times["torch"], fm) if "torch" in times else None
        r_fl = ratio_median(times["floor"], fm)
        ratios[w, d] = (r_sk, r_tc, r_fl)
        med = {k: median(v) for k, v in times.items()}
        lines.append(
            f"| {w} | {d} | {fmt_s(med['fastmlp'])} | {fmt_s(med['sklearn'])} "
            f"| {fmt_s(med.get('torch'))} | {fmt_s(med['floor'])} | {r_sk:.2f} "
            f"| {'—' if r_tc is None else f'{r_tc:.2f}'} | {r_fl:.2f} |")
    if results:
        lines += ["", "Training loss after the timed epochs (fastmlp and scikit-learn start "
                  "from the same weights): " + "; ".join(
            f"{w} {d}: " + ", ".join(f"{k} {v:.3f}" for k, v in losses.items())
            for (w, d), (_, losses) in results.items())]

    if latency is not None:
        med = {k: median(v) * 1e6 for k, v in latency.items()}
        torch_us = f"{med['torch']:.1f}" if "torch" in med else "—"
        lines += ["", "#### Predict: one sample, digits network (float64), µs per call", "",
                  "| fastmlp | scikit-learn | PyTorch | scikit-learn / fastmlp |",
                  "| ---: | ---: | ---: | ---: |",
                  f"| {med['fastmlp']:.1f} | {med['sklearn']:.1f} "
                  f"| {torch_us} "
                  f"| {ratio_median(latency['sklearn'], latency['fastmlp']):.1f} |"]
    if lines:
        print("\n".join(lines), flush=True)

    mem_rows = []
    if not args.no_memory:
        libs = ["fastmlp", "sklearn"] + (["torch"] if torch is not None else [])
        cases = [(w, d) for w in workloads for d in dtypes]
        if args.quick:
            cases = cases[:1]
        mem_rows = peak_memory(cases, libs, size, n_threads)
        lines = ["", "#### Peak memory of one fit beyond X (one epoch)", "",
                 "| workload | dtype | bound | strict bound | fastmlp traced | fastmlp RSS "
                 "| scikit-learn traced | scikit-learn RSS | PyTorch RSS | fastmlp / bound "
                 "| fastmlp / strict |",
                 "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in mem_rows:
            fm, sk, tc = r["fastmlp"], r["sklearn"], r.get("torch", {})
            lines.append(
                f"| {r['workload']} | {r['dtype']} | {fmt_mib(r['bound'])} "
                f"| {fmt_mib(r['strict'])} "
                f"| {fmt_mib(fm.get('traced'))} | {fmt_mib(fm.get('rss'))} "
                f"| {fmt_mib(sk.get('traced'))} | {fmt_mib(sk.get('rss'))} "
                f"| {fmt_mib(tc.get('rss'))} | {fm['traced'] / r['bound']:.3f} "
                f"| {fm['traced'] / r['strict']:.3f} |")
        lines += ["", "bound: the issue's \"2 x the activations of one batch + parameters x "
                  "(optimiser state + 2)\", in bytes itemsize x (batch x inputs + 2 x batch x "
                  "(hidden + output units) + parameters x (2 + 2 Adam moments)). The "
                  "activations of a batch are its input rows x_0 and every layer's output "
                  "x_{l+1} = phi(W_l x_l + b_l), as scikit-learn's `activations` list holds "
                  "them; x_0 (the batch's rows: gathered into one block where the first "
                  "layer needs it, read from X in place where its kernels take row "
                  "indices; X itself is not counted) is counted once, having no delta, "
                  "each layer "
                  "output twice (it and its delta). strict bound: the same without x_0. "
                  "traced: tracemalloc peak (every numpy allocation); RSS: growth of the "
                  "peak resident set."]
        print("\n".join(lines), flush=True)

    print("\n".join([""] + targets_table(ratios, latency, mem_rows)))
    return 0


def targets_table(ratios, latency, mem_rows):
    lines = ["#### Targets", "", "| figure | target | measured | met |",
             "| --- | --- | ---: | --- |"]

    def row(name, target, value, ok):
        shown = "—" if value is None else value
        lines.append(f"| {name} | {target} | {shown} | "
                     f"{'—' if value is None else ('yes' if ok else 'no')} |")

    r = ratios.get(("W1", "float32"))
    row("W1 float32: PyTorch / fastmlp", f"≥ {TARGETS['torch_w1_f32']}",
        None if r is None or r[1] is None else f"{r[1]:.2f}",
        r is not None and r[1] is not None and r[1] >= TARGETS["torch_w1_f32"])
    for d in DTYPES:
        r = ratios.get(("W1", d))
        row(f"W1 {d}: GEMM floor / fastmlp", f"≥ {TARGETS['floor_w1']}",
            None if r is None else f"{r[2]:.2f}", r is not None and r[2] >= TARGETS["floor_w1"])
    r = ratios.get(("W1", "float64"))
    row("W1 float64: scikit-learn / fastmlp", f"≥ {TARGETS['sklearn_w1_f64']}",
        None if r is None else f"{r[0]:.2f}", r is not None and r[0] >= TARGETS["sklearn_w1_f64"])
    for w, key in (("W2", "sklearn_w2"), ("W3", "sklearn_w3")):
        for d in DTYPES:
            r = ratios.get((w, d))
            if r is not None:
                row(f"{w} {d}: scikit-learn / fastmlp", f"≥ {TARGETS[key]:g}",
                    f"{r[0]:.1f}", r[0] >= TARGETS[key])
    if latency is not None:
        us = median(latency["fastmlp"]) * 1e6
        row("predict, one sample, digits net", f"≤ {TARGETS['predict_us']:g} µs",
            f"{us:.1f} µs", us <= TARGETS["predict_us"])
    for m in mem_rows:
        traced = m["fastmlp"].get("traced")
        row(f"fit memory beyond X, {m['workload']} {m['dtype']}", "≤ bound",
            f"{traced / m['bound']:.3f} × bound", traced <= m["bound"])
    return lines


if __name__ == "__main__":
    sys.exit(main())
