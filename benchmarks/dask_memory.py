"""A data set larger than the workers' memory, trained with fastmlp.dask.

Two worker processes are started with a small ``memory_limit``; the data
(generated on the workers from a seeded dask graph, never on the client) is
larger than one worker's limit, and each worker's share is as large as its
whole limit, so Dask must spill part of it to disk: each evaluation reads
the spilled parts back one at a time (the workers' actors hold the parts'
keys, not the parts). The distributed L-BFGS fit is compared with a local
fit, with the same parameters, on a subsample that fits in memory: both
should reach the same loss, on their training data and on held-out data.
Printed: the fit's time, each worker's peak RSS against its limit, how many
keys (the parts, and any chunk Dask still holds) and bytes each worker had on
disk at the end, and the losses.

Usage: python benchmarks/dask_memory.py [--rows 1500000] [--workers 2] [--limit 600MB]
       [--max-iter 60]
"""

import argparse
import os
import time

import numpy as np

N_FEATURES = 100
PARAMS = dict(hidden_layer_sizes=(32,), activation="tanh", tol=0.0, alpha=1e-4,
              random_state=0)


def _teacher(block, w1, w2, noise_seed):
    """Targets of a block: a fixed random tanh network plus noise."""
    rng = np.random.RandomState(noise_seed + int(abs(block[0, 0]) * 1e6) % 100000)
    return np.tanh(block @ w1) @ w2 + 0.3 * rng.standard_normal(block.shape[0])


def make(n_rows, chunk, seed):
    import dask.array as da

    rng = np.random.RandomState(1234)
    w1, w2 = rng.randn(N_FEATURES, 8) / np.sqrt(N_FEATURES), rng.randn(8)
    X = da.random.RandomState(seed).standard_normal((n_rows, N_FEATURES),
                                                    chunks=(chunk, N_FEATURES))
    y = X.map_blocks(_teacher, w1, w2, seed, drop_axis=1, dtype=np.float64)
    return X, y


def _peak_rss():
    """This process's peak resident set size, in bytes (Linux: ru_maxrss in kB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _spilled(dask_worker):
    """(number of keys, bytes) this worker holds on disk."""
    data = dask_worker.data
    if not hasattr(data, "slow"):
        return 0, 0
    return len(data.slow), int(data.spilled_total.disk)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_500_000)
    parser.add_argument("--chunk", type=int, default=50_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", default="600MB")
    parser.add_argument("--max-iter", type=int, default=60)
    parser.add_argument("--subsample", type=int, default=150_000)
    args = parser.parse_args()

    import dask
    from dask.utils import parse_bytes
    from distributed import Client, LocalCluster

    import fastmlp
    import fastmlp.dask

    params = dict(PARAMS, max_iter=args.max_iter)
    limit = parse_bytes(args.limit)
    data_bytes = args.rows * N_FEATURES * 8
    print(f"data: {args.rows} x {N_FEATURES} float64 = {data_bytes / 1e9:.2f} GB in "
          f"{-(-args.rows // args.chunk)} chunks; {args.workers} workers with "
          f"memory_limit={args.limit} each ({limit / 1e9:.2f} GB): "
          f"{data_bytes / args.workers / limit:.0%} of a worker's limit per worker")
    X, y = make(args.rows, args.chunk, seed=0)
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      memory_limit=limit, dashboard_address=":0") as cluster, \
            Client(cluster, set_as_default=False) as client:
        start = time.perf_counter()
        dist = fastmlp.dask.MLPRegressor(client=client, **params).fit(X, y)
        seconds = time.perf_counter() - start
        peak = client.run(_peak_rss)
        spilled = client.run(_spilled)
        print(f"distributed fit: {seconds:.1f} s, {dist.n_iter_} iterations, "
              f"final loss {dist.loss_:.6f}")
        print("peak worker RSS (GB): " + ", ".join(f"{v / 1e9:.2f}" for v in peak.values())
              + f" (limit {limit / 1e9:.2f})")
        print("on disk at the end of the fit, per worker: " + ", ".join(
            f"{n} keys ({b / 1e6:.0f} MB)" for n, b in spilled.values()))

    with dask.config.set(scheduler="threads"):
        Xs, ys = dask.compute(X[:args.subsample], y[:args.subsample])
        Xt, yt = dask.compute(*make(200_000, args.chunk, seed=99))
    start = time.perf_counter()
    local = fastmlp.MLPRegressor(solver="lbfgs", **params).fit(Xs, ys)
    seconds = time.perf_counter() - start
    print(f"local fit on {args.subsample} rows: {seconds:.1f} s, final loss {local.loss_:.6f}")

    def half_mse(model):
        return 0.5 * float(np.mean((model.predict(Xt) - yt) ** 2))

    print(f"held-out half squared error: distributed {half_mse(dist):.6f}, "
          f"local subsample {half_mse(local):.6f}, noise floor {0.5 * 0.3 ** 2:.6f}")
    print(f"load average: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
