"""Cost of one distributed evaluation (fastmlp.dask) beyond the compute itself.

On a LocalCluster of 2 worker processes (1 thread each), for a 784-256-128-10
network (P = 235,146 parameters) on the same data cut into 8 or 32 row
chunks, this measures per loss-and-gradient evaluation:

- wall time of the round trip, and the slowest worker's own compute time
  (measured inside its task); their difference is the overhead of
  distribution (scatter theta, schedule, gather the partial sums);
- bytes each worker process sent and received over TCP (all its traffic,
  counted at the socket-stream layer), against 2 (P + 1) 8 W + 10%;
- for scale, the round trip of one trivial dask task (submit + result) on
  the same cluster: the floor of any Dask round trip on this machine.

Then, for Hessian-free, the two layouts of the curvature products on a
batch of --batch rows: gathered to the client (one round, then every CG
product computed there) or on the workers (one round per product).

Usage: PYTHONPATH=. python benchmarks/dask_overhead.py [--rows 8192] [--evals 30]
       [--batch 1000]
"""

import argparse
import os
import time

import numpy as np

UNITS = [784, 256, 128, 10]


def _count_stream_bytes():
    """In a worker: count the bytes of all its TCP traffic (reset if counting).

    Reads are counted where tornado's IOStream fills buffers; writes where
    distributed's TCP comm reports the bytes of each message it writes.
    """
    from distributed.comm.tcp import TCP
    from tornado.iostream import IOStream

    if getattr(IOStream, "_fastmlp_bytes", None) is not None:
        IOStream._fastmlp_bytes[:] = [0, 0]
        return
    counts = [0, 0]
    read_bytes, read_into, write = IOStream.read_bytes, IOStream.read_into, TCP.write

    def counted_read_bytes(self, num_bytes, *args, **kwargs):
        counts[0] += num_bytes
        return read_bytes(self, num_bytes, *args, **kwargs)

    def counted_read_into(self, buf, *args, **kwargs):
        counts[0] += memoryview(buf).nbytes
        return read_into(self, buf, *args, **kwargs)

    async def counted_write(self, *args, **kwargs):
        n = await write(self, *args, **kwargs)
        counts[1] += n
        return n

    IOStream.read_bytes, IOStream.read_into, TCP.write = (
        counted_read_bytes, counted_read_into, counted_write)
    IOStream._fastmlp_bytes = counts


def _stream_bytes():
    from tornado.iostream import IOStream

    return tuple(IOStream._fastmlp_bytes)


def _identity(x):
    return x


def bare_round_trip(client, n=50):
    """Median wall seconds of submitting one trivial task and getting its result."""
    for i in range(5):
        client.submit(_identity, i, pure=False).result()
    times = []
    for i in range(n):
        t = time.perf_counter()
        client.submit(_identity, i, pure=False).result()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def measure(client, n_rows, n_chunks, n_evals):
    import dask.array as da

    from fastmlp._network import LOSS_LOG, Layout
    from fastmlp.dask import DistributedObjective

    rng = da.random.RandomState(0)
    chunk = n_rows // n_chunks
    X = rng.standard_normal((n_rows, UNITS[0]), chunks=(chunk, UNITS[0]))
    labels = rng.randint(0, UNITS[-1], n_rows, chunks=chunk)
    Y = (labels[:, None] == da.arange(UNITS[-1])[None, :]).astype(np.float64)
    layout = Layout(UNITS, ["relu", "relu", "softmax"])
    obj = DistributedObjective.from_dask(client, X, Y, layout, LOSS_LOG, alpha=1e-4)
    theta = np.random.RandomState(0).randn(layout.n_params) * 0.05
    for _ in range(3):
        obj(theta)
    client.run(_count_stream_bytes)
    obj.round_times.clear()
    for _ in range(n_evals):
        obj(theta)
    traffic = client.run(_stream_bytes)
    rounds = np.array(obj.round_times)
    obj.release()
    return rounds, traffic, layout.n_params


def measure_curvature(client, n_rows, batch, n_products=10):
    """ms: gathering the batch; one product on the client; one product round
    on the workers, and the slowest worker's compute within it."""
    import dask.array as da

    from fastmlp._network import LOSS_LOG, Layout
    from fastmlp.dask import DistributedObjective

    rng = da.random.RandomState(0)
    X = rng.standard_normal((n_rows, UNITS[0]), chunks=(n_rows // 8, UNITS[0]))
    labels = rng.randint(0, UNITS[-1], n_rows, chunks=n_rows // 8)
    Y = (labels[:, None] == da.arange(UNITS[-1])[None, :]).astype(np.float64)
    layout = Layout(UNITS, ["relu", "relu", "softmax"])
    theta = np.random.RandomState(0).randn(layout.n_params) * 0.05
    v = np.random.RandomState(1).randn(layout.n_params)
    rows = np.sort(np.random.RandomState(2).choice(n_rows, batch, replace=False))
    out = {}
    for where in ("client", "workers"):
        obj = DistributedObjective.from_dask(client, X, Y, layout, LOSS_LOG, alpha=1e-4,
                                             curvature_on=where)
        obj(theta)  # the actors
        t = time.perf_counter()
        obj.curvature(theta, v, rows)  # gathers (client) or weighs (workers) the batch
        first = time.perf_counter() - t
        obj.round_times.clear()
        times = []
        for _ in range(n_products):
            t = time.perf_counter()
            obj.curvature(theta, v, rows)
            times.append(time.perf_counter() - t)
        out[where] = (first * 1e3, float(np.median(times)) * 1e3,
                      float(np.median([c for _, c in obj.round_times])) * 1e3
                      if obj.round_times else None)
        obj.release()
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8192)
    parser.add_argument("--evals", type=int, default=30)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()

    from distributed import Client, LocalCluster

    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, \
            Client(cluster, set_as_default=False) as client:
        client.run(_count_stream_bytes)
        print(f"{'chunks':>6} {'wall ms':>8} {'compute ms':>10} {'overhead ms':>11} "
              f"{'(p10-p90)':>13} {'MB/eval':>8} {'bound MB':>9}")
        for n_chunks in (8, 32):
            rounds, traffic, P = measure(client, args.rows, n_chunks, args.evals)
            wall, compute = rounds[:, 0] * 1e3, rounds[:, 1] * 1e3
            overhead = wall - compute
            moved = sum(r + w for r, w in traffic.values()) / args.evals
            bound = 2 * (P + 1) * 8 * len(traffic) * 1.1
            print(f"{n_chunks:>6} {np.median(wall):8.1f} {np.median(compute):10.1f} "
                  f"{np.median(overhead):11.1f} "
                  f"{np.percentile(overhead, 10):6.1f}-{np.percentile(overhead, 90):<6.1f} "
                  f"{moved / 1e6:8.3f} {bound / 1e6:9.3f}")
        print(f"P = {P}; bytes: sum over the {len(traffic)} workers of bytes sent + received")
        print(f"one trivial dask task, submit + result: {bare_round_trip(client) * 1e3:.1f} ms")
        curv = measure_curvature(client, args.rows, args.batch)
        first, product, _ = curv["client"]
        print(f"HF curvature batch of {args.batch} rows, gathered: {first:.1f} ms once "
              f"(incl. the first product), then {product:.1f} ms per product on the client")
        first, product, compute = curv["workers"]
        print(f"on the workers: {first:.1f} ms for the first product (incl. weighing the "
              f"batch), then {product:.1f} ms per product round ({compute:.1f} ms of it "
              "the slowest worker's compute)")
    print(f"load average after: {os.getloadavg()[0]:.1f}")

    # For scale: the same evaluation in this process on all rows.
    from fastmlp._network import LOSS_LOG, Layout
    from fastmlp._threads import blas_threads
    from fastmlp.solvers.objective import Objective

    rng = np.random.RandomState(0)
    X = rng.standard_normal((args.rows, UNITS[0]))
    Y = np.eye(UNITS[-1])[rng.randint(0, UNITS[-1], args.rows)]
    layout = Layout(UNITS, ["relu", "relu", "softmax"])
    theta = rng.randn(layout.n_params) * 0.05
    for threads in (1, 2):
        obj = Objective(layout, X, Y, None, LOSS_LOG, 1e-4, 0.0, threads)
        with blas_threads(threads):
            obj(theta)
            times = []
            for _ in range(5):
                t = time.perf_counter()
                obj(theta)
                times.append(time.perf_counter() - t)
        print(f"local evaluation, {threads} thread(s), {args.rows} rows: "
              f"{np.median(times) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
