"""Ways of running one distributed evaluation, and what each costs beyond compute.

The same loss-and-gradient round of fastmlp.dask (784-256-128-10 network,
data placed once on a LocalCluster of 2 worker processes, 1 thread each)
done five ways; for each, the median of (wall time - slowest worker's own
compute time) over the rounds, in ms:

- scatter + submit: theta scattered straight to each worker (plus the
  scheduler's who_has), one task per worker pinned to its parts, results
  gathered straight from the workers (fastmlp.dask before the actors);
- submit, theta as argument: one task per worker with theta inside it (so
  theta goes to the scheduler and on to each worker), direct gather;
- Actor handle: the parts held by one dask actor per worker, called
  through ``distributed.Actor`` (which goes through the scheduler unless
  the client was made with direct_to_workers=True);
- actor, direct call: the same actors called straight on their workers
  (what fastmlp.dask does now);
- and, for scale, a trivial task (submit + result) and a trivial direct
  actor call (no-op method).

Usage: python benchmarks/dask_transport.py [--rows 1024] [--rounds 30]
"""

import argparse
import asyncio
import os
import time
import uuid

import numpy as np

UNITS = [784, 256, 128, 10]


class Noop:
    def ping(self, x=None):
        return None


def _identity(x):
    return x


def _scatter_submit(obj, spec, vectors):
    """fastmlp.dask's round before actors: scatter, who_has, submit, gather."""
    from fastmlp.dask._worker import run_groups

    client = obj.client
    plan = obj.placement.plan()
    hosts = [h for h, _ in plan]

    async def go():
        name = f"bench-vectors-{uuid.uuid4().hex[:12]}"
        futures = await client.scatter({f"{name}-{i}": vectors for i in range(len(hosts))},
                                       workers=hosts, direct=True, asynchronous=True)
        who_has = await client.scheduler.who_has(keys=list(futures))
        where = {who_has[k][0]: f for k, f in futures.items() if who_has.get(k)}
        tasks = []
        for host, groups in plan:
            parts = [f for g in groups for f in obj.placement.group_parts(g)]
            sizes = [len(obj.placement.group_parts(g)) for g in groups]
            tasks.append(client.submit(run_groups, where[host], spec, sizes, parts,
                                       workers=[host], allow_other_workers=False, pure=False))
        return await client.gather(tasks, direct=True, asynchronous=True)

    return client.sync(go)


def _submit_argument(obj, spec, vectors):
    from fastmlp.dask._worker import run_groups

    client = obj.client
    tasks = []
    for host, groups in obj.placement.plan():
        parts = [f for g in groups for f in obj.placement.group_parts(g)]
        sizes = [len(obj.placement.group_parts(g)) for g in groups]
        tasks.append(client.submit(run_groups, vectors, spec, sizes, parts, workers=[host],
                                   allow_other_workers=False, pure=False))
    return client.gather(tasks, direct=True)


def _actor_handle(obj, spec, vectors):
    with obj.client.as_current():  # an Actor handle binds to the current client
        handles = [f.result() for _, f in obj._actors.values()]
        calls = [h.run(vectors, spec) for h in handles]
        return [c.result() for c in calls]


def _actor_direct(obj, spec, vectors):
    evaluators = obj._evaluators(obj.placement.plan())
    return obj.client.sync(obj._call, spec, vectors, evaluators)


VARIANTS = [("scatter + submit", _scatter_submit),
            ("submit, theta as argument", _submit_argument),
            ("Actor handle", _actor_handle),
            ("actor, direct call", _actor_direct)]


def time_variant(obj, fn, vectors, rounds):
    from fastmlp.dask._worker import RoundSpec

    spec = RoundSpec("loss_grad", obj.layout.net, obj.loss_code, obj.scale, obj.n_threads)
    for _ in range(3):
        fn(obj, spec, vectors)
    overhead = []
    for _ in range(rounds):
        t = time.perf_counter()
        results = fn(obj, spec, vectors)
        wall = time.perf_counter() - t
        compute = max(sum(r[2] for r in result) for result in results)
        overhead.append(wall - compute)
    return np.array(overhead) * 1e3, compute * 1e3


def floors(client, n=40):
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()

    import dask.array as da
    from distributed import Client, LocalCluster

    from fastmlp._network import LOSS_LOG, Layout
    from fastmlp.dask import DistributedObjective

    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, \
            Client(cluster, set_as_default=False) as client:
        rng = da.random.RandomState(0)
        X = rng.standard_normal((args.rows, UNITS[0]), chunks=(args.rows // 8, UNITS[0]))
        labels = rng.randint(0, UNITS[-1], args.rows, chunks=args.rows // 8)
        Y = (labels[:, None] == da.arange(UNITS[-1])[None, :]).astype(np.float64)
        layout = Layout(UNITS, ["relu", "relu", "softmax"])
        obj = DistributedObjective.from_dask(client, X, Y, layout, LOSS_LOG, alpha=1e-4)
        theta = np.random.RandomState(0).randn(layout.n_params) * 0.05
        obj(theta)  # creates the actors
        vectors = theta[None, :]
        print(f"{'variant':<28} {'overhead ms':>11} {'(p10-p90)':>13} {'compute ms':>10}")
        for name, fn in VARIANTS:
            overhead, compute = time_variant(obj, fn, vectors, args.rounds)
            print(f"{name:<28} {np.median(overhead):11.1f} "
                  f"{np.percentile(overhead, 10):6.1f}-{np.percentile(overhead, 90):<6.1f} "
                  f"{compute:10.1f}")
        submit, direct = floors(client)
        print(f"{'trivial task, submit+result':<28} {submit:11.1f}")
        print(f"{'trivial direct actor call':<28} {direct:11.1f}")
        obj.release()
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
