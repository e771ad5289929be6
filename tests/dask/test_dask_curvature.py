"""Hessian-free's quantities on a cluster against the local ones: the loss,
gradient and squared gradient terms, and the Gauss-Newton and Hessian
products on a batch, gathered to the client or computed by the workers
(fastmlp/dask/_objective.py, _worker.py)."""

import dask.array as da
import numpy as np
import pytest
import scipy.sparse as sp

from fastmlp._network import LOSS_LOG, LOSS_SQUARED
from fastmlp.dask import _objective as objective_module
from fastmlp.solvers.objective import Objective

from dask_helpers import distributed_objective, small_layout
from test_dask_objective import UNEVEN, as_dask, problem

CASES = [("softmax", LOSS_LOG, "onehot"), ("identity", LOSS_SQUARED, "real")]


def setup(client, out, loss, kind, sparse=False, curvature_on="auto", weighted=True):
    X, Y, sw = problem(kind, np.float64)
    sw = sw if weighted else None
    if sparse:
        X[np.random.RandomState(1).rand(*X.shape) < 0.6] = 0
    layout = small_layout(X.shape[1], Y.shape[1], out)
    theta = np.random.RandomState(3).randn(layout.n_params) * 0.3
    local = Objective(layout, sp.csr_matrix(X) if sparse else X, Y, sw, loss, alpha=0.2,
                      l1=0.01, n_threads=1)
    _, Yd = as_dask(X, Y)
    Xd = da.from_array(X, chunks=(UNEVEN, -1))
    if sparse:
        Xd = Xd.map_blocks(sp.csr_matrix, dtype=X.dtype)
    swd = None if sw is None else as_dask(sw)[0]
    dist = distributed_objective(client, Xd, Yd, swd, layout, loss, alpha=0.2, l1=0.01,
                                 curvature_on=curvature_on)
    return local, dist, theta


def assert_close(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12 * np.abs(b).max())


@pytest.mark.parametrize("out,loss,kind", CASES)
@pytest.mark.parametrize("sparse", [False, True])
def test_loss_grad_fisher_equals_local(client, out, loss, kind, sparse):
    local, dist, theta = setup(client, out, loss, kind, sparse)
    value, grad, squares = dist.loss_grad_fisher(theta)
    ref_value, ref_grad, ref_squares = local.loss_grad_fisher(theta)
    np.testing.assert_allclose(value, ref_value, rtol=1e-12)
    assert_close(grad, ref_grad)
    assert_close(squares, ref_squares)
    assert dist.n_samples == local.n_samples == 500


@pytest.mark.parametrize("out,loss,kind", CASES)
@pytest.mark.parametrize("kind_of_curvature", ["gauss-newton", "hessian"])
@pytest.mark.parametrize("where", ["client", "workers"])
@pytest.mark.parametrize("sparse", [False, True])
def test_curvature_products_equal_local(client, out, loss, kind, kind_of_curvature, where,
                                        sparse):
    local, dist, theta = setup(client, out, loss, kind, sparse, curvature_on=where)
    rng = np.random.RandomState(5)
    # A batch across several parts (and skipping some), as HF draws it.
    rows = np.sort(rng.choice(500, size=120, replace=False)).astype(np.int64)
    for _ in range(3):  # several directions at one point: the cached batch
        v = rng.randn(theta.size)
        got = dist.curvature(theta, v, rows, kind_of_curvature)
        assert_close(got, local.curvature(theta, v, rows, kind_of_curvature))
    assert (dist._batch.local is not None) == (where == "client")
    # All rows, and a new batch.
    v = rng.randn(theta.size)
    assert_close(dist.curvature(theta, v, None, kind_of_curvature),
                 local.curvature(theta, v, None, kind_of_curvature))
    rows = np.sort(rng.choice(500, size=30, replace=False)).astype(np.int64)
    assert_close(dist.curvature(theta, v, rows, kind_of_curvature),
                 local.curvature(theta, v, rows, kind_of_curvature))


def test_gathered_batch_costs_one_round_per_batch(client):
    local, dist, theta = setup(client, "softmax", LOSS_LOG, "onehot", curvature_on="client")
    rows = np.arange(0, 500, 7, dtype=np.int64)
    v = np.ones(theta.size)
    dist.curvature(theta, v, rows)
    before = len(dist.round_times)
    for _ in range(5):
        dist.curvature(theta, v, rows)
    assert len(dist.round_times) == before  # CG's products: no round at all
    workers = setup(client, "softmax", LOSS_LOG, "onehot", curvature_on="workers")[1]
    workers.curvature(theta, v, rows)
    before = len(workers.round_times)
    for _ in range(5):
        workers.curvature(theta, v, rows)
    assert len(workers.round_times) == before + 5  # one round per product


def test_auto_gathers_small_batches_only(client, monkeypatch):
    local, dist, theta = setup(client, "softmax", LOSS_LOG, "onehot")
    rows = np.arange(0, 500, 5, dtype=np.int64)
    v = np.random.RandomState(0).randn(theta.size)
    expected = local.curvature(theta, v, rows)
    assert_close(dist.curvature(theta, v, rows), expected)
    assert dist._batch.local is not None
    # 100 rows of 6 features, 3 outputs and a weight, in float64: 8,000 bytes.
    monkeypatch.setattr(objective_module, "GATHER_BYTES", 7999)
    assert_close(dist.curvature(theta, v, rows.copy()), expected)  # the same batch, kept
    assert dist._batch.local is not None
    dist._batch = None
    assert_close(dist.curvature(theta, v, rows), expected)
    assert dist._batch.local is None


def test_curvature_on_is_checked(client):
    X, Y, _ = problem("onehot", np.float64)
    layout = small_layout(X.shape[1], Y.shape[1])
    with pytest.raises(ValueError, match="curvature_on"):
        distributed_objective(client, *as_dask(X, Y), None, layout, LOSS_LOG,
                              curvature_on="gpu")
