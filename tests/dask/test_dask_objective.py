"""The distributed loss and gradient against the local ones, determinism,
and where the data lives (fastmlp/dask/_objective.py, _placement.py,
_worker.py)."""

import dask.array as da
import numpy as np
import pytest
import scipy.sparse as sp

from fastmlp._network import LOSS_LOG, LOSS_POISSON, LOSS_SQUARED
from fastmlp.dask._placement import split_contiguous
from fastmlp.solvers.objective import Objective

from dask_helpers import distributed_objective, small_layout

CASES = [  # (output activation, loss, target kind)
    ("softmax", LOSS_LOG, "onehot"),
    ("logistic", LOSS_LOG, "binary"),
    ("identity", LOSS_SQUARED, "real"),
    ("exp", LOSS_POISSON, "counts"),
]
UNEVEN = (70, 13, 200, 1, 96, 120)  # 500 rows in uneven chunks


def problem(kind, dtype, n=500, n_features=6, n_out=3, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, n_features)
    if kind == "onehot":
        Y = np.eye(n_out)[rng.randint(0, n_out, n)]
    elif kind == "binary":
        Y = (rng.rand(n, n_out) < 0.5).astype(float)
    elif kind == "counts":
        Y = rng.poisson(1.5, (n, n_out)).astype(float)
    else:
        Y = rng.randn(n, n_out)
    sw = rng.uniform(0.1, 2.0, n)
    return X.astype(dtype), Y.astype(dtype), sw.astype(dtype)


def as_dask(*arrays, chunks=UNEVEN):
    return [da.from_array(a, chunks=(chunks,) + a.shape[1:]) for a in arrays]


@pytest.mark.parametrize("out,loss,kind", CASES)
@pytest.mark.parametrize("weighted", [False, True])
def test_loss_and_gradient_equal_local(client, out, loss, kind, weighted):
    X, Y, sw = problem(kind, np.float64)
    sw = sw if weighted else None
    layout = small_layout(X.shape[1], Y.shape[1], out)
    theta = np.random.RandomState(3).randn(layout.n_params) * 0.3
    local = Objective(layout, X, Y, sw, loss, alpha=0.2, l1=0.01, n_threads=1)
    Xd, Yd = as_dask(X, Y)
    swd = None if sw is None else as_dask(sw)[0]
    dist = distributed_objective(client, Xd, Yd, swd, layout, loss, alpha=0.2, l1=0.01)
    value, grad = dist(theta)
    ref_value, ref_grad = local(theta)
    np.testing.assert_allclose(value, ref_value, rtol=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-12, atol=1e-14 * np.abs(ref_grad).max())
    np.testing.assert_allclose(dist.loss(theta), ref_value, rtol=1e-12)
    assert grad.dtype == np.float64


def test_float32_trains_in_float32(client):
    X, Y, sw = problem("onehot", np.float32)
    layout = small_layout(X.shape[1], Y.shape[1])
    theta = (np.random.RandomState(3).randn(layout.n_params) * 0.3).astype(np.float32)
    Xd, Yd, swd = as_dask(X, Y, sw)
    value, grad = distributed_objective(client, Xd, Yd, swd, layout, LOSS_LOG)(theta)
    ref_value, ref_grad = Objective(layout, X, Y, sw, LOSS_LOG, 0.0, 0.0, 1)(theta)
    assert grad.dtype == np.float32
    np.testing.assert_allclose(value, ref_value, rtol=1e-5)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-4, atol=1e-5)


def test_sparse_chunks_equal_local(client):
    X, Y, sw = problem("onehot", np.float64)
    X[np.random.RandomState(1).rand(*X.shape) < 0.6] = 0
    layout = small_layout(X.shape[1], Y.shape[1])
    theta = np.random.RandomState(3).randn(layout.n_params) * 0.3
    Xd = da.from_array(X, chunks=(UNEVEN, -1)).map_blocks(sp.csr_matrix, dtype=X.dtype)
    _, Yd = as_dask(X, Y)
    value, grad = distributed_objective(client, Xd, Yd, None, layout, LOSS_LOG)(theta)
    ref_value, ref_grad = Objective(layout, sp.csr_matrix(X), Y, None, LOSS_LOG, 0, 0, 1)(theta)
    np.testing.assert_allclose(value, ref_value, rtol=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-12, atol=1e-15)


def test_zero_weight_rows_are_dropped_rows(client):
    """sample_weight travels with its rows: zero-weight rows count for nothing."""
    X, Y, sw = problem("real", np.float64)
    sw[::3] = 0
    layout = small_layout(X.shape[1], Y.shape[1], "identity")
    theta = np.random.RandomState(3).randn(layout.n_params) * 0.3
    value, grad = distributed_objective(client, *as_dask(X, Y, sw), layout, LOSS_SQUARED)(theta)
    keep = sw > 0
    ref = Objective(layout, X[keep], Y[keep], sw[keep], LOSS_SQUARED, 0, 0, 1)(theta)
    np.testing.assert_allclose(value, ref[0], rtol=1e-12)
    np.testing.assert_allclose(grad, ref[1], rtol=1e-12, atol=1e-15)


def test_result_does_not_depend_on_which_worker_holds_what(client):
    X, Y, sw = problem("onehot", np.float64)
    layout = small_layout(X.shape[1], Y.shape[1])
    theta = np.random.RandomState(3).randn(layout.n_params) * 0.3
    hosts = sorted(client.nthreads())
    a = distributed_objective(client, *as_dask(X, Y, sw), layout, LOSS_LOG, hosts=hosts)
    b = distributed_objective(client, *as_dask(X, Y, sw), layout, LOSS_LOG, hosts=hosts[::-1])
    assert a.placement.homes == hosts and b.placement.homes == hosts[::-1]
    (va, ga), (vb, gb) = a(theta), b(theta)
    assert va == vb
    np.testing.assert_array_equal(ga, gb)
    assert a(theta)[0] == va  # and again


def test_parts_stay_put_after_first_evaluation(client):
    """Only theta goes out and partial sums come back: no chunk of X (or of
    the parts built from it) crosses the network after the first evaluation."""
    X, Y, sw = problem("onehot", np.float64, n=2000)
    # X persisted with dask's own placement, so setting up may move chunks.
    Xd, Yd, swd = client.persist(as_dask(X, Y, sw, chunks=250))
    layout = small_layout(X.shape[1], Y.shape[1])
    theta = np.random.RandomState(3).randn(layout.n_params) * 0.3
    obj = distributed_objective(client, Xd, Yd, swd, layout, LOSS_LOG)
    part_keys = {f.key for f in obj.placement.futures}
    who_has = client.who_has(obj.placement.futures)
    for g, home in enumerate(obj.placement.homes):
        for f in obj.placement.group_parts(g):
            assert list(who_has[f.key]) == [home]

    def logs():
        return client.run(lambda dask_worker: (
            [set(e["keys"]) for e in dask_worker.transfer_incoming_log],
            [set(e["keys"]) for e in dask_worker.transfer_outgoing_log]))

    first = obj(theta)
    before = logs()
    for _ in range(4):
        again = obj(theta)
        assert again[0] == first[0]
    after = logs()
    data_keys = part_keys | {k for k in map(str, Xd.__dask_keys__())}
    for w in after:
        new_in = after[w][0][len(before[w][0]):]
        new_out = after[w][1][len(before[w][1]):]
        assert new_in == [], f"worker {w} received {new_in}"
        moved = set().union(*new_out) if new_out else set()
        assert not moved & data_keys, f"worker {w} sent data chunks {moved & data_keys}"
    assert len(obj.round_times) == 5


def test_split_contiguous_balances_rows():
    assert split_contiguous([10] * 8, 2) == [0, 4, 8]
    assert split_contiguous([1, 1, 100, 1], 2) == [0, 2, 4] or split_contiguous(
        [1, 1, 100, 1], 2) == [0, 3, 4]
    b = split_contiguous([5, 1, 1, 1, 1, 1], 4)
    assert b[0] == 0 and b[-1] == 6 and all(x < y for x, y in zip(b, b[1:]))
