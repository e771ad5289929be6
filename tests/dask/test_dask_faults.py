"""A worker killed mid-fit: its data is re-created on the others and the
evaluation retried with a bit-identical result, or the fit stops with an
error naming the worker; never a hang (fastmlp/dask/_placement.py)."""

import os
import signal
import threading
import time

import dask
import dask.array as da
import numpy as np
import pytest
from distributed import Client, LocalCluster

from fastmlp._network import LOSS_LOG
from fastmlp.dask import MLPClassifier, WorkerLostError
from fastmlp.dask import _objective as objective_module

from dask_helpers import distributed_objective, make_data, small_layout

pytestmark = [pytest.mark.timeout(180),
              pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")]


@pytest.fixture(scope="module")
def proc_client():
    """Two worker processes under nannies (a killed worker is restarted).

    LocalCluster retires a worker whose replacement has not registered
    within lost-worker-timeout (15 s by default), which a busy machine
    exceeds: the replacement would be closed and later tests left with one.
    """
    with dask.config.set({"distributed.deploy.lost-worker-timeout": "300s"}), \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                         dashboard_address=":0") as cluster, \
            Client(cluster, set_as_default=False) as c:
        yield c


@pytest.fixture
def pclient(proc_client):
    """The client, once both workers are up (a killed one is restarted)."""
    proc_client.wait_for_workers(2, timeout=120)
    return proc_client


def kill(client, address):
    """SIGKILL the worker process at address (as a crash would)."""
    pid = client.run(os.getpid, workers=[address])[address]
    os.kill(pid, signal.SIGKILL)


def problem(client, n=3000, n_features=20, chunks=250):
    """Data made by the workers from a seeded graph (re-creatable anywhere)."""
    rng = da.random.RandomState(0)
    Xd = rng.standard_normal((n, n_features), chunks=(chunks, n_features))
    labels = (Xd[:, :3] + 0.3 * rng.standard_normal((n, 3), chunks=(chunks, 3))).argmax(axis=1)
    Yd = (labels[:, None] == da.arange(3)[None, :]).astype(np.float64)
    swd = rng.uniform(0.5, 2.0, n, chunks=chunks)
    layout = small_layout(n_features, 3)
    theta = np.random.RandomState(0).randn(layout.n_params) * 0.3
    return distributed_objective(client, Xd, Yd, swd, layout, LOSS_LOG), theta


def _set_delay(seconds):
    """On a worker: make every loss-and-gradient evaluation take longer."""
    from fastmlp.dask import _worker

    op = getattr(_worker, "_undelayed", _worker.OPS["loss_grad"])
    _worker._undelayed = op

    def delayed_op(*args):
        time.sleep(seconds)
        return op(*args)

    _worker.OPS["loss_grad"] = delayed_op if seconds else op


def test_worker_killed_during_an_evaluation(pclient):
    obj, theta = problem(pclient)
    value, grad = obj(theta)
    victim = obj.placement.homes[1]
    pclient.run(_set_delay, 1.5)  # the evaluation below is surely running
    errors = []

    def kill_soon():
        time.sleep(0.5)
        try:
            kill(pclient, victim)
        except Exception as exc:  # reported below, not lost in the thread
            errors.append(exc)

    killer = threading.Thread(target=kill_soon)
    killer.start()
    try:
        again, grad_again = obj(theta)
    finally:
        killer.join()
        pclient.run(_set_delay, 0.0, workers=[h for h in obj.placement.homes])
    assert not errors
    assert again == value  # same groups, same order: bit-identical
    np.testing.assert_array_equal(grad_again, grad)
    assert len(obj.placement.recoveries) == 1 and victim in obj.placement.recoveries[0]
    assert victim not in obj.placement.homes
    assert obj(theta)[0] == value


def test_fit_survives_a_worker_lost_between_evaluations(pclient, monkeypatch):
    X, y, _ = make_data(n=1200)
    Xd, yd = da.from_array(X, chunks=200), da.from_array(y, chunks=200)
    params = dict(hidden_layer_sizes=(10,), max_iter=15, tol=0.0, random_state=0,
                  client=pclient)
    reference = MLPClassifier(**params).fit(Xd, yd)

    real_call = objective_module.DistributedObjective.__call__
    recoveries = []

    def call_and_kill_once(self, theta):
        if self.n_evals == 5:
            kill(pclient, self.placement.homes[0])
        result = real_call(self, theta)
        recoveries[:] = self.placement.recoveries
        return result

    monkeypatch.setattr(objective_module.DistributedObjective, "__call__", call_and_kill_once)
    survivor = MLPClassifier(**params).fit(Xd, yd)
    assert len(recoveries) == 1
    assert survivor.loss_curve_ == reference.loss_curve_
    for a, b in zip(survivor.coefs_, reference.coefs_):
        np.testing.assert_array_equal(a, b)


def test_rebuild_is_not_held_up_by_another_placement_of_the_same_data(pclient, monkeypatch):
    """Another placement of the same dask graph (an earlier fit whose futures
    are not yet garbage-collected, or a concurrent one) still wants the lost
    worker's parts: the rebuild must not wait on the chunk tasks it pinned."""
    from fastmlp.dask import _placement

    monkeypatch.setattr(_placement, "REBUILD_TIMEOUT", 30.0)
    earlier, theta = problem(pclient)
    obj, _ = problem(pclient)
    value, grad = obj(theta)
    earlier(theta)
    victim = obj.placement.homes[0]
    assert earlier.placement.homes[0] == victim
    kill(pclient, victim)
    again, grad_again = obj(theta)
    assert again == value
    np.testing.assert_array_equal(grad_again, grad)
    assert victim not in obj.placement.homes


def test_data_that_cannot_be_recreated_gives_a_clear_error(pclient):
    """Chunks scattered from the client have no graph to rebuild them from."""
    X, y, sw = make_data(n=1000, n_features=6)
    Y = np.eye(3)[y]
    hosts = sorted(pclient.nthreads())
    blocks = [pclient.scatter(X[i:i + 250], workers=[hosts[i // 500]]) for i in range(0, 1000, 250)]
    Xd = da.concatenate([da.from_delayed(b, (250, 6), dtype=X.dtype) for b in blocks])
    Yd = da.from_array(Y, chunks=(250, 3))
    obj = distributed_objective(pclient, Xd, Yd, None, small_layout(6, 3), LOSS_LOG,
                                hosts=hosts)
    theta = np.zeros(obj.layout.n_params)
    obj(theta)
    kill(pclient, hosts[0])
    with pytest.raises(WorkerLostError, match=hosts[0]):
        obj(theta)
