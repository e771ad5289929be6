"""The full-batch kernels' kept workspace (src/_passes.pxd): a work dict
reused across calls of other sizes, dtypes, kernels and nets gives what a
fresh call gives."""

import numpy as np
import pytest

from fastmlp import _curvature, _objective
from fastmlp._network import LOSS_LOG
from fastmlp.solvers.objective import curvature_net

from test_sparse_layers import pruned_pair


def loss_grad(layout, theta, X, Y, rows, chunk, work):
    grad = np.empty_like(theta)
    loss = _objective.loss_grad(theta, X, Y, None, rows, layout.net, LOSS_LOG, 0.1, grad,
                                False, chunk, 1, work)
    return loss, grad


def products(layout, theta, v, X, Y, rows, chunk, work):
    net = curvature_net(layout)
    out = []
    for gauss_newton in (True, False):
        o = np.empty_like(theta)
        _curvature.curvature_product(theta, v, X, Y, None, rows, net, LOSS_LOG, 0.1, o,
                                     gauss_newton, False, chunk, 1, None, False, work)
        out.append(o)
    grad, diag = np.empty_like(theta), np.empty_like(theta)
    loss = _curvature.loss_grad_fisher(theta, X, None, Y, None, rows, net, LOSS_LOG, 0.1,
                                       grad, diag, False, chunk, 1, work)
    return [loss, grad, diag] + out


@pytest.mark.parametrize("mode", ["kernels", "gemm"])
def test_a_kept_workspace_gives_what_a_fresh_one_gives(mode):
    rng = np.random.RandomState(0)
    work = {}
    # Growing and shrinking batches, both dtypes, pruned layers on the gemm
    # fallback (whose dense copies must stay zero outside the mask), then a
    # dense net of other widths: all through one dict.
    for dtype in (np.float64, np.float32, np.float64):
        _, _, layout, theta, _ = pruned_pair([9, 23, 17, 4], ["tanh", "relu", "softmax"],
                                             0.4, dtype, seed=1, mode=mode)
        X = rng.randn(60, 9).astype(dtype)
        Y = np.eye(4)[rng.randint(0, 4, 60)].astype(dtype)
        v = rng.randn(theta.size).astype(dtype)
        for rows, chunk in [(np.arange(60), 16), (np.arange(5, 12), 64),
                            (np.sort(rng.choice(60, 40, replace=False)), 7)]:
            rows = rows.astype(np.int64)
            kept = loss_grad(layout, theta, X, Y, rows, chunk, work)
            fresh = loss_grad(layout, theta, X, Y, rows, chunk, None)
            for a, b in zip(kept, fresh):
                np.testing.assert_array_equal(a, b)
            kept = products(layout, theta, v, X, Y, rows, chunk, work)
            fresh = products(layout, theta, v, X, Y, rows, chunk, None)
            for a, b in zip(kept, fresh):
                np.testing.assert_array_equal(a, b)
    assert work["acts"].dtype == np.float64
