"""Cost of one distributed evaluation (fastmlp.dask) beyond the compute itself.

On a LocalCluster of 2 worker processes (1 thread each), for a 784-256-128-10
network (P = 235,146 parameters), in one of three modes:

``overhead`` (default): the same data cut into 8 or 32 row chunks (the
two evaluated in turn, so that they see the same load); per
loss-and-gradient evaluation, the wall time of the round trip and the
slowest worker's own compute time (measured inside its call), whose
difference is the overhead of distribution; where that overhead goes on
the critical path (fastmlp.dask._objective.RoundTime: the solver's thread
to the client's event loop, θ to the worker's actor thread, the actor's
call beyond the operation, the reply back, the return to the solver's
thread and the sum); and the bytes each worker process sent and received
over TCP (all its traffic, counted at the socket-stream layer) against
2 (P + 1) 8 W + 10%. For scale: one trivial dask task (submit + result),
one trivial direct actor call, and the CPU cost per row of a loss and
gradient and of a curvature product in this process (the figures of the
scaling note in the README).

``transport``: the same round done four ways (scatter θ + one pinned task
per worker; one task per worker with θ as argument; the actors through
``distributed.Actor``; the actors called straight on their workers, as
fastmlp.dask does): the median overhead of each, the variants taking turns
round by round so that they see the same load.

``curvature``: Hessian-free's two layouts of the curvature products on a
batch of --batch rows: gathered to the client (one round, then every CG
product computed there) or on the workers (one round per product).

Usage: PYTHONPATH=. python benchmarks/dask_overhead.py [--mode overhead|transport|curvature]
       [--rows 8192] [--evals 30] [--batch 1000]
"""

import argparse
import os
import time
import uuid

import numpy as np

UNITS = [784, 256, 128, 10]


# ------------------------------------------------------------------ set-up
def cluster():
    """(cluster, client): the 2-process LocalCluster every mode runs on."""
    from distributed import Client, LocalCluster

    c = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                     dashboard_address=":0")
    return c, Client(c, set_as_default=False)


def problem(client, n_rows, n_chunks, **kwargs):
    """(objective, theta): a DistributedObjective over random classification
    data cut into n_chunks row chunks, generated on the workers."""
    import dask.array as da

    from fastmlp._network import LOSS_LOG, Layout
    from fastmlp.dask import DistributedObjective

    rng = da.random.RandomState(0)
    chunk = n_rows // n_chunks
    X = rng.standard_normal((n_rows, UNITS[0]), chunks=(chunk, UNITS[0]))
    labels = rng.randint(0, UNITS[-1], n_rows, chunks=chunk)
    Y = (labels[:, None] == da.arange(UNITS[-1])[None, :]).astype(np.float64)
    layout = Layout(UNITS, ["relu", "relu", "softmax"])
    obj = DistributedObjective.from_dask(client, X, Y, layout, LOSS_LOG, alpha=1e-4, **kwargs)
    theta = np.random.RandomState(0).randn(layout.n_params) * 0.05
    return obj, theta


def spread(values_ms):
    """'median (p10-p90)' of values in ms."""
    v = np.asarray(values_ms)
    return f"{np.median(v):6.1f} ({np.percentile(v, 10):5.1f}-{np.percentile(v, 90):5.1f})"


# ------------------------------------------------------------------ floors
def _identity(x):
    return x


class Noop:
    def ping(self, x=None):
        return None


def floors(client, n=40):
    """ms, medians: one trivial task (submit + result); one trivial direct
    actor call. The floor of any round trip on this machine."""
    for i in range(5):
        client.submit(_identity, i, pure=False).result()
    submit = []
    for i in range(n):
        t = time.perf_counter()
        client.submit(_identity, i, pure=False).result()
        submit.append(time.perf_counter() - t)
    host = sorted(client.nthreads())[0]
    actor = client.submit(Noop, actor=True, workers=[host], pure=False)
    key = actor.key
    actor.result()

    async def call():
        await client.rpc(host).actor_execute(actor=key, function="ping", args=[], kwargs={})

    direct = []
    for i in range(n + 5):
        t = time.perf_counter()
        client.sync(call)
        direct.append(time.perf_counter() - t)
    client.cancel([actor])
    return float(np.median(submit)) * 1e3, float(np.median(direct[5:])) * 1e3


# ---------------------------------------------------------- byte counting
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


# ----------------------------------------------------------------- overhead
BREAKDOWN = ("dispatch", "to_worker", "in_worker", "from_worker", "collect")


def measure(client, n_rows, chunkings, n_evals):
    """{n_chunks: (RoundTimes, bytes per evaluation)}, and P.

    The objectives of every chunking are evaluated in turn, round after
    round, so that they see the same machine load; the bytes are counted
    afterwards, a few evaluations of each on its own.
    """
    problems = {n: problem(client, n_rows, n) for n in chunkings}
    for obj, theta in problems.values():
        for _ in range(3):
            obj(theta)
        obj.round_times.clear()
    for _ in range(n_evals):
        for obj, theta in problems.values():
            obj(theta)
    out = {}
    for n, (obj, theta) in problems.items():
        client.run(_count_stream_bytes)
        for _ in range(5):
            obj(theta)
        traffic = client.run(_stream_bytes)
        out[n] = (obj.round_times[:n_evals], sum(r + w for r, w in traffic.values()) / 5,
                  len(traffic))
        obj.release()
    return out, obj.layout.n_params


def local_costs(n_rows):
    """Per-row costs in this process on one thread, in CPU microseconds
    (thread time: what a core spends, whatever the machine's load):
    (loss and gradient, one Gauss-Newton product on all rows)."""
    from fastmlp._network import LOSS_LOG, Layout
    from fastmlp._threads import blas_threads
    from fastmlp.solvers.objective import Objective

    rng = np.random.RandomState(0)
    X = rng.standard_normal((n_rows, UNITS[0]))
    Y = np.eye(UNITS[-1])[rng.randint(0, UNITS[-1], n_rows)]
    layout = Layout(UNITS, ["relu", "relu", "softmax"])
    theta = rng.randn(layout.n_params) * 0.05
    v = rng.randn(layout.n_params)
    obj = Objective(layout, X, Y, None, LOSS_LOG, 1e-4, 0.0, 1)

    def cpu_us(fn):
        fn()
        times = []
        for _ in range(5):
            t = time.thread_time()
            fn()
            times.append(time.thread_time() - t)
        return float(np.median(times)) * 1e6 / n_rows

    with blas_threads(1):
        return cpu_us(lambda: obj(theta)), cpu_us(lambda: obj.curvature(theta, v))


def run_overhead(client, args):
    client.run(_count_stream_bytes)
    print("ms per evaluation, median (p10-p90); MB per evaluation")
    print(f"{'chunks':>6} {'wall':>8} {'compute':>8} {'overhead':>19} "
          + " ".join(f"{n:>11}" for n in BREAKDOWN) + f" {'MB/eval':>8} {'bound':>7}")
    results, P = measure(client, args.rows, (8, 32), args.evals)
    for n_chunks, (rounds, moved, n_workers) in results.items():
        ms = {name: np.array([getattr(r, name) for r in rounds]) * 1e3
              for name in ("wall", "compute", "overhead") + BREAKDOWN}
        bound = 2 * (P + 1) * 8 * n_workers * 1.1
        print(f"{n_chunks:>6} {np.median(ms['wall']):8.1f} {np.median(ms['compute']):8.1f} "
              f"{spread(ms['overhead']):>19} "
              + " ".join(f"{np.median(ms[n]):11.1f}" for n in BREAKDOWN)
              + f" {moved / 1e6:8.3f} {bound / 1e6:7.3f}")
    print(f"P = {P}; bytes: sum over the {n_workers} workers of bytes sent + received; "
          "bound: 2 (P + 1) 8 W + 10%; the two chunkings evaluated in turn")
    submit, direct = floors(client)
    print(f"for scale: one trivial dask task, submit + result: {submit:.1f} ms; "
          f"one trivial direct actor call: {direct:.1f} ms")


# ---------------------------------------------------------------- transport
def _plan_tasks(obj):
    """[(host, part futures, group sizes)] of the objective's placement."""
    out = []
    for host, groups in obj.placement.plan():
        parts = [f for g in groups for f in obj.placement.group_parts(g)]
        sizes = [len(obj.placement.group_parts(g)) for g in groups]
        out.append((host, parts, sizes))
    return out


def _scatter_submit(obj, spec, vectors):
    """fastmlp.dask's round before actors: scatter, who_has, submit, gather."""
    from fastmlp.dask._worker import run_groups

    client = obj.client
    plan = _plan_tasks(obj)

    async def go():
        name = f"bench-vectors-{uuid.uuid4().hex[:12]}"
        futures = await client.scatter({f"{name}-{i}": vectors for i in range(len(plan))},
                                       workers=[h for h, _, _ in plan], direct=True,
                                       asynchronous=True)
        who_has = await client.scheduler.who_has(keys=list(futures))
        where = {who_has[k][0]: f for k, f in futures.items() if who_has.get(k)}
        tasks = [client.submit(run_groups, where[host], spec, sizes, parts, workers=[host],
                               allow_other_workers=False, pure=False)
                 for host, parts, sizes in plan]
        return await client.gather(tasks, direct=True, asynchronous=True)

    return client.sync(go)


def _submit_argument(obj, spec, vectors):
    from fastmlp.dask._worker import run_groups

    tasks = [obj.client.submit(run_groups, vectors, spec, sizes, parts, workers=[host],
                               allow_other_workers=False, pure=False)
             for host, parts, sizes in _plan_tasks(obj)]
    return obj.client.gather(tasks, direct=True)


def _actor_handle(obj, spec, vectors):
    with obj.client.as_current():  # an Actor handle binds to the current client
        handles = [f.result() for _, f in obj._actors.values()]
        calls = [h.run(vectors, spec) for h in handles]
        return [c.result()[0] for c in calls]


def _actor_direct(obj, spec, vectors):
    evaluators = obj._evaluators(obj.placement.plan())
    return [result for result, _ in obj.client.sync(obj._call, spec, vectors, evaluators)]


VARIANTS = [("scatter + submit", _scatter_submit),
            ("submit, theta as argument", _submit_argument),
            ("Actor handle", _actor_handle),
            ("actor, direct call", _actor_direct)]


def run_transport(client, args):
    obj, theta = problem(client, args.rows, 8)
    obj(theta)  # creates the actors
    vectors = theta[None, :]
    spec = obj._spec("loss_grad")
    overhead = {name: [] for name, _ in VARIANTS}
    compute = {name: [] for name, _ in VARIANTS}
    for i in range(3 + args.evals):  # 3 to warm up
        for name, fn in VARIANTS:
            t = time.perf_counter()
            results = fn(obj, spec, vectors)
            wall = time.perf_counter() - t
            slowest = max(sum(r[2] for r in result) for result in results)
            if i >= 3:
                overhead[name].append((wall - slowest) * 1e3)
                compute[name].append(slowest * 1e3)
    print(f"{'variant':<28} {'overhead ms, median (p10-p90)':>30} {'compute ms':>10}")
    for name, _ in VARIANTS:
        print(f"{name:<28} {spread(overhead[name]):>30} {np.median(compute[name]):10.1f}")
    obj.release()
    submit, direct = floors(client)
    print(f"{'trivial task, submit+result':<28} {submit:30.1f}")
    print(f"{'trivial direct actor call':<28} {direct:30.1f}")


# ---------------------------------------------------------------- curvature
def run_curvature(client, args, n_products=10):
    rng = np.random.RandomState(2)
    rows = np.sort(rng.choice(args.rows, args.batch, replace=False))
    for where in ("client", "workers"):
        obj, theta = problem(client, args.rows, 8, curvature_on=where)
        v = np.random.RandomState(1).randn(theta.shape[0])
        obj(theta)  # the actors
        t = time.perf_counter()
        obj.curvature(theta, v, rows)  # gathers (client) or weighs (workers) the batch
        first = (time.perf_counter() - t) * 1e3
        obj.round_times.clear()
        times = []
        for _ in range(n_products):
            t = time.perf_counter()
            obj.curvature(theta, v, rows)
            times.append((time.perf_counter() - t) * 1e3)
        if where == "client":
            print(f"HF curvature batch of {args.batch} rows, gathered: {first:.1f} ms once "
                  f"(incl. the first product), then {np.median(times):.1f} ms per product "
                  "on the client")
        else:
            compute = np.median([r.compute for r in obj.round_times]) * 1e3
            print(f"on the workers: {first:.1f} ms for the first product (incl. weighing "
                  f"the batch), then {np.median(times):.1f} ms per product round "
                  f"({compute:.1f} ms of it the slowest worker's compute)")
        obj.release()


MODES = {"overhead": run_overhead, "transport": run_transport, "curvature": run_curvature}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=sorted(MODES), default="overhead")
    parser.add_argument("--rows", type=int, default=None,
                        help="rows of data (default: 8192; transport: 1024)")
    parser.add_argument("--evals", type=int, default=30)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    if args.rows is None:
        args.rows = 1024 if args.mode == "transport" else 8192

    print(f"mode {args.mode}, {args.rows} rows; load average before: "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    c, client = cluster()
    with c, client:
        MODES[args.mode](client, args)
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    if args.mode == "overhead":
        grad, product = local_costs(args.rows)
        print(f"for scale, in this process on one thread ({args.rows} rows): "
              f"loss and gradient {grad:.1f} us of CPU per row ({1e6 / grad:,.0f} rows/s "
              f"per core), Gauss-Newton product {product:.1f} us per row "
              f"({1e6 / product:,.0f} rows/s per core)")


if __name__ == "__main__":
    main()
