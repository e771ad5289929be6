"""What a fit holds in memory beyond X, allocation by allocation.

compare.py measures the peak of a one-epoch fit (tracemalloc) against the
issue's bound; this script says what makes up that peak. Each case runs in
a fresh process, as compare.py's do: a fit of two batches first (start-up
costs are not the fit's), then a one-epoch fit under tracemalloc, with a
snapshot taken as the first epoch starts. It prints, per case, the memory
live at that moment grouped by the line of fastmlp that allocated it
(innermost fastmlp frame of the traceback), what the epoch itself adds
while it runs (its transient peak), and the fit's peak against the bound
(compare.memory_bound; "strict" without the input batch).

Usage::

    python benchmarks/fit_memory.py                      # W1-W3, float32 and float64
    python benchmarks/fit_memory.py --workloads W2 --dtypes float32 --top 30
"""

import argparse
import gc
import glob
import json
import linecache
import os
import subprocess
import sys
import tracemalloc
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
if glob.glob(os.path.join(os.path.dirname(HERE), "fastmlp", "_epoch*")):
    sys.path.insert(1, os.path.dirname(HERE))


def _site(traceback, package_dir):
    """'file.py:line  source' of the innermost frame inside the package."""
    for frame in reversed(traceback):  # oldest first: walk back from the newest
        if frame.filename.startswith(package_dir):
            rel = os.path.relpath(frame.filename, os.path.dirname(package_dir))
            code = linecache.getline(frame.filename, frame.lineno).strip()
            return f"{rel}:{frame.lineno}  {code}"
    return "(outside fastmlp: the estimator object, C-level caches)"


def measure(workload, dtype, n_threads):
    """The breakdown of one case, as a dict (run in a fresh process)."""
    import fastmlp
    from benchmarks.common import WORKLOADS, estimator_params, fit_quietly, make_data
    from fastmlp import MLPClassifier
    from fastmlp.solvers import first_order

    X, y = make_data(workload)[:2]
    X = X.astype(dtype)
    B = WORKLOADS[workload]["batch_size"]
    params = {**estimator_params(workload, 1), "n_threads": n_threads}
    fit_quietly(MLPClassifier(**params), X[:2 * B], y[:2 * B])
    seen = {}
    run = first_order.EpochRunner.run

    def watched_run(self, *args, **kwargs):
        if "snapshot" not in seen:
            seen["snapshot"] = tracemalloc.take_snapshot()
            seen["before"] = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            out = run(self, *args, **kwargs)
            seen["epoch_peak"] = tracemalloc.get_traced_memory()[1]
            return out
        return run(self, *args, **kwargs)

    first_order.EpochRunner.run = watched_run
    try:
        gc.collect()
        tracemalloc.start(30)
        fit_quietly(MLPClassifier(**params), X, y)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    finally:
        first_order.EpochRunner.run = run
    package_dir = os.path.dirname(fastmlp.__file__)
    sizes, counts = Counter(), Counter()
    snapshot = seen["snapshot"].filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)])
    for trace in snapshot.traces:
        site = _site(trace.traceback, package_dir)
        sizes[site] += trace.size
        counts[site] += 1
    return {"peak": peak, "before_epoch": seen["before"],
            "epoch_transient": seen["epoch_peak"] - seen["before"],
            "sites": [(s, n, counts[s]) for s, n in sizes.most_common()]}


def main(argv=None):
    from benchmarks.common import DTYPES
    from compare import memory_bound

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workloads", default="W1,W2,W3")
    parser.add_argument("--dtypes", default=",".join(DTYPES))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--top", type=int, default=15,
                        help="allocation sites listed per case (the rest summed)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(*json.loads(args.child))))
        return 0
    features = {"W1": 784, "W2": 64, "W3": 40}
    for w in args.workloads.split(","):
        for d in args.dtypes.split(","):
            cmd = [sys.executable, os.path.abspath(__file__), "--child",
                   json.dumps([w, d, args.threads])]
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:
                raise RuntimeError(f"{w} {d} failed:\n{res.stderr}")
            r = json.loads(res.stdout.strip().splitlines()[-1])
            bound = memory_bound(w, d, features[w])
            strict = memory_bound(w, d, features[w], input_batch=False)
            print(f"### {w} {d}: peak {r['peak']:,} B = {r['peak'] / bound:.3f} x bound "
                  f"({bound:,} B; {r['peak'] - bound:+,} B), {r['peak'] / strict:.3f} x "
                  f"strict ({strict:,} B)\n")
            print("| bytes | blocks | allocated at (live as the first epoch starts) |")
            print("| ---: | ---: | --- |")
            for site, size, count in r["sites"][:args.top]:
                print(f"| {size:,} | {count} | `{site}` |")
            rest = r["sites"][args.top:]
            if rest:
                print(f"| {sum(s for _, s, _ in rest):,} | {sum(c for _, _, c in rest)} "
                      f"| {len(rest)} other sites |")
            print(f"| {r['before_epoch']:,} | | total live as the first epoch starts |")
            print(f"| {r['epoch_transient']:,} | | added while the epoch runs (its transient "
                  "peak) |\n", flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
