"""The workers' side of a round (fastmlp/dask/_worker.py): parts read from
the worker's data store, in memory or spilled to disk by Dask, and never
held between evaluations."""

import gc

import dask.array as da
import numpy as np
import pytest
from distributed.spill import SpillBuffer

from fastmlp._network import LOSS_LOG
from fastmlp.dask._data import Part
from fastmlp.dask._worker import RoundSpec, StoredParts, run_groups

from dask_helpers import distributed_objective, small_layout


def parts_and_theta(n_parts=6, rows=40, seed=0):
    rng = np.random.RandomState(seed)
    layout = small_layout(5, 3)
    parts = [Part(rng.randn(rows, 5), np.eye(3)[rng.randint(0, 3, rows)],
                  rng.uniform(0.5, 2.0, rows)) for _ in range(n_parts)]
    theta = rng.randn(layout.n_params) * 0.3
    return layout, parts, theta


def test_spilled_parts_are_read_from_disk_and_stay_there(tmp_path):
    layout, parts, theta = parts_and_theta()
    spec = RoundSpec("loss_grad", layout.net, LOSS_LOG, 1.0 / 240, 1)
    expected = run_groups(theta[None, :], spec, [3, 3], parts)
    one = parts[0].X.nbytes + parts[0].Y.nbytes
    # Room for two parts in memory: four go to disk.
    data = SpillBuffer(str(tmp_path), target=int(2.5 * one) + 2000)
    keys = [f"part-{i}" for i in range(len(parts))]
    for k, p in zip(keys, parts):
        data[k] = p
    del p, parts
    gc.collect()
    on_disk = set(data.slow)
    assert len(on_disk) >= 3
    got = run_groups(theta[None, :], spec, [3, 3], StoredParts(data, keys))
    for (v, g, _), (v0, g0, _) in zip(got, expected):
        assert v == v0
        np.testing.assert_array_equal(g, g0)
    # Read where they were: nothing brought back to memory, nothing rewritten.
    assert set(data.slow) == on_disk
    gc.collect()
    assert not set(data.slow.cache) & on_disk  # no reference left to them


def test_missing_part_is_a_clear_error(tmp_path):
    layout, parts, theta = parts_and_theta(n_parts=2)
    spec = RoundSpec("loss", layout.net, LOSS_LOG, 1.0, 1)
    data = {"a": parts[0]}
    with pytest.raises(RuntimeError, match="'b' of the training data is no longer"):
        run_groups(theta[None, :], spec, [2], StoredParts(data, ["a", "b"]))


def _spill_keys(keys, dask_worker=None):
    """Spill these keys of this worker to disk; the keys on disk after."""
    data = dask_worker.data
    for k in keys:
        if k in data.fast:
            data.fast.evict(k)
    gc.collect()
    return {k for k in keys if k in data.slow}, {k for k in keys if k in data.slow.cache}


def _where(keys, dask_worker=None):
    data = dask_worker.data
    gc.collect()
    return ({k for k in keys if k in data.fast}, {k for k in keys if k in data.slow},
            {k for k in keys if k in data.slow.cache})


def test_actors_hold_keys_so_dask_can_spill_the_parts(client):
    rng = np.random.RandomState(3)
    X, Y, sw = rng.randn(300, 5), np.eye(3)[rng.randint(0, 3, 300)], rng.uniform(0.5, 2, 300)
    layout = small_layout(5, 3)
    obj = distributed_objective(client, da.from_array(X, chunks=50),
                                da.from_array(Y, chunks=(50, 3)), da.from_array(sw, chunks=50),
                                layout, LOSS_LOG)
    try:
        theta = rng.randn(layout.n_params) * 0.3
        before = obj(theta)  # creates the actors
        keys = [f.key for f in obj.placement.futures]
        spilled = client.run(_spill_keys, keys)
        for on_disk, referenced in spilled.values():
            # Nothing (an actor, a task) keeps a spilled part alive.
            assert not referenced
        assert set().union(*(d for d, _ in spilled.values())) == set(keys)
        after = obj(theta)
        assert after[0] == before[0]
        np.testing.assert_array_equal(after[1], before[1])
        for fast, slow, referenced in client.run(_where, keys).values():
            assert not fast and not referenced  # read from disk, left there
    finally:
        obj.release()
