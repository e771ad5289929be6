"""A data set larger than one worker's memory limit, trained with fastmlp.dask.

Four worker processes are started with a small ``memory_limit``; the data
(generated on the workers from a seeded dask graph, never on the client) is
larger than one worker's limit. The distributed L-BFGS fit is compared with
a local fit, with the same parameters, on a subsample that fits in memory:
both should reach the same loss (the noise floor of the generating model),
on their training data and on held-out data.

Usage: python benchmarks/dask_memory.py [--rows 1500000] [--limit 1GB]
"""

import argparse
import os
import time

import numpy as np

N_FEATURES = 100
PARAMS = dict(hidden_layer_sizes=(32,), activation="tanh", max_iter=30, tol=0.0,
              alpha=1e-4, random_state=0)


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


def _rss():
    import psutil

    return psutil.Process().memory_info().rss


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_500_000)
    parser.add_argument("--chunk", type=int, default=50_000)
    parser.add_argument("--limit", default="1GB")
    parser.add_argument("--subsample", type=int, default=150_000)
    args = parser.parse_args()

    import dask
    from dask.utils import parse_bytes
    from distributed import Client, LocalCluster

    import fastmlp
    import fastmlp.dask

    limit = parse_bytes(args.limit)
    data_bytes = args.rows * N_FEATURES * 8
    print(f"data: {args.rows} x {N_FEATURES} float64 = {data_bytes / 1e9:.2f} GB; "
          f"4 workers with memory_limit={args.limit} each ({limit / 1e9:.2f} GB)")
    X, y = make(args.rows, args.chunk, seed=0)
    with LocalCluster(n_workers=4, threads_per_worker=1, processes=True,
                      memory_limit=limit, dashboard_address=":0") as cluster, \
            Client(cluster, set_as_default=False) as client:
        start = time.perf_counter()
        dist = fastmlp.dask.MLPRegressor(client=client, **PARAMS).fit(X, y)
        seconds = time.perf_counter() - start
        rss = client.run(_rss)
        print(f"distributed fit: {seconds:.1f} s, {dist.n_iter_} iterations, "
              f"final loss {dist.loss_:.6f}")
        print("worker memory after the fit (RSS, GB): "
              + ", ".join(f"{v / 1e9:.2f}" for v in rss.values()))
        spilled = client.run(lambda dask_worker: len(getattr(dask_worker.data, "slow", {})))
        print(f"keys spilled to disk per worker: {list(spilled.values())}")

    with dask.config.set(scheduler="threads"):
        Xs, ys = dask.compute(X[:args.subsample], y[:args.subsample])
        Xt, yt = dask.compute(*make(200_000, args.chunk, seed=99))
    start = time.perf_counter()
    local = fastmlp.MLPRegressor(solver="lbfgs", **PARAMS).fit(Xs, ys)
    seconds = time.perf_counter() - start
    print(f"local fit on {args.subsample} rows: {seconds:.1f} s, final loss {local.loss_:.6f}")

    def half_mse(model):
        return 0.5 * float(np.mean((model.predict(Xt) - yt) ** 2))

    print(f"held-out half squared error: distributed {half_mse(dist):.6f}, "
          f"local subsample {half_mse(local):.6f}, noise floor {0.5 * 0.3 ** 2:.6f}")
    print(f"load average: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
