"""The compiled epoch against the same epoch written in numpy over the
compiled objective: batches, update rules, penalties, shuffling, threads."""

import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

from fastmlp import _epoch, _kernels
from fastmlp._network import LOSS_LOG, LOSS_SQUARED, Layout
from fastmlp.solvers.first_order import EpochRunner, Optimizer
from fastmlp.solvers.objective import Objective, kernel_input

SOLVERS = ["sgd", "adam", "adagrad", "adadelta", "rmsprop"]


def problem(dtype, n=50, seed=0):
    rng = np.random.RandomState(seed)
    layout = Layout([6, 9, 5, 3], ["tanh", "relu", "softmax"])
    theta = (rng.randn(layout.n_params) * 0.4).astype(dtype)
    X = rng.randn(n, 6).astype(dtype)
    Y = np.eye(3, dtype=dtype)[rng.randint(0, 3, n)]
    sw = rng.uniform(0.5, 2, n).astype(dtype)
    return layout, theta, X, Y, sw


def reference_epoch(layout, theta, X, Y, sw, rows, batch, opt, alpha, l1):
    """The epoch as scikit-learn's optimisers would run it, in float64."""
    theta = theta.astype(float).copy()
    s1 = np.zeros_like(theta)
    s2 = np.zeros_like(theta)
    t = 0
    total = 0.0
    for start in range(0, len(rows), batch):
        r = rows[start:start + batch]
        obj = Objective(layout, X.astype(float), Y.astype(float),
                        None if sw is None else sw.astype(float), LOSS_LOG, alpha, l1, 1, rows=r)
        loss, g = obj(theta)
        total += loss * len(r)
        t += 1
        lr = opt.learning_rate
        if opt.solver == "sgd":
            s1 = opt.momentum * s1 - lr * g
            theta += opt.momentum * s1 - lr * g if opt.nesterovs_momentum else s1
        elif opt.solver == "adam":
            s1 = opt.beta_1 * s1 + (1 - opt.beta_1) * g
            s2 = opt.beta_2 * s2 + (1 - opt.beta_2) * g**2
            lr_t = lr * np.sqrt(1 - opt.beta_2**t) / (1 - opt.beta_1**t)
            theta -= lr_t * s1 / (np.sqrt(s2) + opt.epsilon)
        elif opt.solver == "adagrad":
            s1 += g**2
            theta -= lr * g / (np.sqrt(s1) + opt.epsilon)
        elif opt.solver == "rmsprop":
            s1 = opt.rho * s1 + (1 - opt.rho) * g**2
            theta -= lr * g / (np.sqrt(s1) + opt.epsilon)
        else:
            s1 = opt.rho * s1 + (1 - opt.rho) * g**2
            d = np.sqrt(s2 + opt.epsilon) / np.sqrt(s1 + opt.epsilon) * g
            s2 = opt.rho * s2 + (1 - opt.rho) * d**2
            theta -= lr * d
    return theta, total / len(rows)


def run(layout, theta, X, Y, sw, rows, batch, opt, alpha=0.0, l1=0.0, n_threads=1,
        shuffle=False, seed=0):
    runner = EpochRunner(layout, theta.dtype, batch)
    rng_state = np.array([seed], dtype=np.uint64)
    rows = rows.copy()
    loss, finite = runner.run(theta, kernel_input(X), Y, sw, rows, rng_state, shuffle, opt,
                              LOSS_LOG, alpha, l1, n_threads)
    return loss, finite, rows


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("weighted", [False, True])
def test_epoch_matches_reference(solver, weighted, dtype):
    layout, theta, X, Y, sw = problem(dtype)
    sw = sw if weighted else None
    lr = 1.0 if solver == "adadelta" else 0.05
    make = lambda: Optimizer(solver, layout.n_params, dtype, learning_rate_init=lr,
                             momentum=0.9, nesterovs_momentum=True)
    rows = np.arange(50, dtype=np.int64)[::-1].copy()  # not contiguous: gathers
    expected, exp_loss = reference_epoch(layout, theta, X, Y, sw, rows, 16, make(), 0.2, 0.01)
    got = theta.copy()
    loss, finite, _ = run(layout, got, X, Y, sw, rows, 16, make(), alpha=0.2, l1=0.01)
    assert finite
    tol = 1e-10 if dtype == np.float64 else 2e-4
    np.testing.assert_allclose(got, expected, rtol=tol, atol=tol)
    np.testing.assert_allclose(loss, exp_loss, rtol=tol)


def test_plain_sgd_full_batch_is_a_gradient_step(dtype):
    layout, theta, X, Y, _ = problem(dtype)
    opt = Optimizer("sgd", layout.n_params, dtype, learning_rate_init=0.1, momentum=0.0)
    rows = np.arange(50, dtype=np.int64)
    loss0, grad = Objective(layout, X, Y, None, LOSS_LOG, 0.0, 0.0, 1)(theta)
    got = theta.copy()
    loss, finite, _ = run(layout, got, X, Y, None, rows, 50, opt)
    tol = 1e-12 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(got, theta - dtype.type(0.1) * grad, rtol=tol, atol=tol)
    np.testing.assert_allclose(loss, loss0, rtol=tol)


@pytest.mark.parametrize("order", ["F", "strided", "csr"])
def test_input_layouts_give_the_same_epoch(order):
    layout, theta, X, Y, sw = problem(np.float64)
    rows = np.arange(50, dtype=np.int64)
    opt = lambda: Optimizer("adam", layout.n_params, np.float64, learning_rate_init=0.01)
    ref = theta.copy()
    run(layout, ref, X, Y, sw, rows, 8, opt(), alpha=0.1, shuffle=True, seed=3)
    if order == "F":
        X2 = np.asfortranarray(X)
    elif order == "strided":
        X2 = np.repeat(X, 2, axis=1)[:, ::2]
        assert not X2.flags.c_contiguous
    else:
        X2 = sp.csr_matrix(X)
    got = theta.copy()
    run(layout, got, X2, Y, sw, rows, 8, opt(), alpha=0.1, shuffle=True, seed=3)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-14)


@pytest.fixture
def rows_gathered():
    """Run the test's epochs with every batch's input rows gathered."""
    old = _epoch.rows_in_place_enabled(False)
    try:
        yield
    finally:
        _epoch.rows_in_place_enabled(old)


def input_of(X, order):
    """X in a layout whose rows the first layer reads in place (all but F)."""
    if order == "strided":  # rows farther apart than their length
        X2 = np.zeros((X.shape[0], X.shape[1] + 5), X.dtype)
        X2[:, 2:2 + X.shape[1]] = X
        return X2[:, 2:2 + X.shape[1]]
    if order == "reversed":  # a negative row stride
        return X[::-1].copy()[::-1]
    if order == "unaligned":  # as arrays rebuilt from pickle buffers can be
        Xu = np.frombuffer(bytearray(X.nbytes + 1), X.dtype, X.size, 1).reshape(X.shape)
        Xu[:] = X
        assert not Xu.flags.aligned
        return Xu
    return np.asfortranarray(X) if order == "F" else X


@pytest.mark.parametrize("order", ["C", "strided", "reversed", "unaligned", "F"])
@pytest.mark.parametrize("acts", [["tanh", "relu", "softmax"], ["relu", "relu", "softmax"]])
def test_input_rows_read_in_place_give_the_gathered_bits(order, acts, dtype, every_batch_split,
                                                         rows_gathered):
    # A's rows by index in the first layer's kernels (forward, A^T delta, the
    # two-core epoch's rows and gradient chunks) against a gathered batch.
    layout, theta, X, Y, sw = split_problem(dtype, [12, 40, 24, 3], acts, n=150)
    X = input_of(X, order)
    make = lambda: Optimizer("adam", layout.n_params, dtype, learning_rate_init=0.01)
    for n_threads in (1, 2):
        _epoch.rows_in_place_enabled(True)
        assert _epoch.needs_xbuf(layout.net, 40, kernel_input(X)) == (order == "F")
        got = epoch_twice(layout, theta, X, Y, sw, 40, make, n_threads, l1=1e-4)
        _epoch.rows_in_place_enabled(False)
        assert _epoch.needs_xbuf(layout.net, 40, kernel_input(X))
        want = epoch_twice(layout, theta, X, Y, sw, 40, make, n_threads, l1=1e-4)
        assert not np.array_equal(got[0], theta)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
        assert got[3] == want[3]


def test_large_first_layers_gather_their_batch():
    # Above 2^23 multiply-adds in the first layer (W1: 200 x 784 x 256) a
    # gathered batch measured faster than its rows read in place from a
    # large X (_layers.ROWS_IN_PLACE_MAX_WORK); at or below, read in place.
    X = kernel_input(np.zeros((300, 784)))
    assert _epoch.needs_xbuf(Layout([784, 256, 10], ["relu", "softmax"]).net, 200, X)
    assert not _epoch.needs_xbuf(Layout([784, 53, 10], ["relu", "softmax"]).net, 200, X)
    assert _epoch.needs_xbuf(Layout([784, 54, 10], ["relu", "softmax"]).net, 200, X)


@pytest.mark.parametrize("n_threads", [1, 2])
def test_an_epoch_reading_rows_in_place_keeps_no_input_buffer(n_threads, rows_gathered):
    layout, theta, X, Y, sw = problem(np.float64, n=64)
    opt = Optimizer("adam", layout.n_params, np.float64, learning_rate_init=0.01)
    rows = np.arange(64, dtype=np.int64)
    state = np.array([1], dtype=np.uint64)
    sizes = []
    for enabled, Xi in ((True, X), (True, np.asfortranarray(X)), (False, X)):
        _epoch.rows_in_place_enabled(enabled)
        runner = EpochRunner(layout, np.float64, 16)
        runner.run(theta.copy(), kernel_input(Xi), Y, sw, rows, state, True, opt, LOSS_LOG,
                   0.0, 0.0, n_threads)
        sizes.append(runner.xbuf.size)
    assert sizes == [1, 16 * 6, 16 * 6]
    # A direct call whose buffer is too small for the gather gets one of its
    # own: the same epoch as with the runner's.
    results = []
    for xbuf_len in (1, 16 * 6):
        runner = EpochRunner(layout, np.float64, 16)
        o = Optimizer("adam", layout.n_params, np.float64, learning_rate_init=0.01)
        th = theta.copy()
        _epoch.run_epoch(th, runner.grad, o.state, kernel_input(X), Y, sw, rows.copy(),
                         np.array([1], dtype=np.uint64), True, 16, layout.net, LOSS_LOG,
                         o.rule(), runner.pieces, runner.acts, runner.tmp,
                         np.zeros(xbuf_len), runner.row_loss, runner.part, o.step, 0.0, 0.0,
                         n_threads)
        results.append(th)
    assert not np.array_equal(results[0], theta)
    assert np.array_equal(results[0], results[1])


def test_shuffle_is_seeded():
    layout, theta, X, Y, sw = problem(np.float64)
    rows = np.arange(50, dtype=np.int64)
    opt = lambda: Optimizer("sgd", layout.n_params, np.float64, learning_rate_init=0.1)
    a, b, c = theta.copy(), theta.copy(), theta.copy()
    _, _, ra = run(layout, a, X, Y, sw, rows, 10, opt(), shuffle=True, seed=7)
    _, _, rb = run(layout, b, X, Y, sw, rows, 10, opt(), shuffle=True, seed=7)
    _, _, rc = run(layout, c, X, Y, sw, rows, 10, opt(), shuffle=True, seed=8)
    assert np.array_equal(ra, rb) and np.array_equal(a, b)
    assert not np.array_equal(ra, rc) and not np.array_equal(a, c)
    assert sorted(ra) == list(range(50))


# Row counts around the keyed order's two kinds (a byte table up to 256
# rows, a Feistel network beyond) and its powers of two (cycle walking).
ORDER_SIZES = [0, 1, 2, 3, 7, 255, 256, 257, 300, 1000, 4096, 4097, 65536, 65537]


@pytest.mark.parametrize("n", ORDER_SIZES)
def test_the_keyed_order_is_a_seeded_permutation_of_the_rows(n):
    # An epoch given the row count n visits each of range(n) once, in an
    # order drawn from the shuffle stream: no index array.
    orders = []
    for seed in (7, 7, 8):
        state = np.array([seed], dtype=np.uint64)
        orders.append(_epoch.epoch_order(n, state))
        assert state[0] != seed or n <= 1
    assert orders[0].dtype == np.int64
    assert np.array_equal(np.sort(orders[0]), np.arange(n))
    assert np.array_equal(orders[0], orders[1])
    if n >= 3:
        assert not np.array_equal(orders[0], orders[2])
        assert not np.array_equal(orders[0], np.arange(n))
    state = np.array([7], dtype=np.uint64)
    assert np.array_equal(_epoch.epoch_order(n, state, shuffle=False), np.arange(n))
    assert state[0] == 7
    with pytest.raises(ValueError, match="n must be"):
        _epoch.epoch_order(-1, state)


@pytest.mark.parametrize("n", [10, 300, 4000])
def test_the_keyed_order_looks_random(n):
    # Over 1,000 epochs: each row's position is uniform (chi-square over
    # ten bins), and rows 1 apart and rows 2**(k // 2) apart (the same low
    # half of the Feistel network's input) share a batch of 32 as often as
    # chance has it. Four rounds of the network put the latter pair at
    # n = 300 together 13% too often.
    K, B = 1000, 32
    state = np.array([3], dtype=np.uint64)
    pos = np.argsort(np.stack([_epoch.epoch_order(n, state) for _ in range(K)]), axis=1)
    bins = min(n, 10)
    counts = np.stack([np.bincount(pos[:, i] * bins // n, minlength=bins)
                       for i in range(min(n, 50))])
    expected = K / bins
    chi2 = ((counts - expected) ** 2 / expected).sum() / (counts.shape[0] * (bins - 1))
    assert chi2 < 1.3
    if n > B:
        batch = pos // B
        sizes = np.bincount(np.arange(n) // B)
        chance = ((sizes * (sizes - 1)).sum() / (n * (n - 1)))
        half = 1 << (int(np.ceil(np.log2(n))) // 2)
        for d in (1, half):
            together = (batch[:, :n - d] == batch[:, d:]).mean()
            assert abs(together / chance - 1) < 0.06, (d, together / chance)


@pytest.mark.parametrize("n,batch", [(150, 40), (400, 64)])
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("order", ["C", "csr"])
def test_an_epoch_over_a_row_count_is_the_epoch_over_its_keyed_order(n, batch, n_threads,
                                                                     order):
    # Fits pass the row count: the epoch computes each batch's rows from the
    # keyed order (in every thread); the same steps as over that order's
    # index array.
    layout, theta, X, Y, sw = split_problem(np.float64, [12, 24, 10, 4],
                                            ["relu", "tanh", "softmax"], n=n)
    X = kernel_input(sp.csr_matrix(X)) if order == "csr" else X
    make = lambda: Optimizer("adam", layout.n_params, np.float64, learning_rate_init=0.01)
    state = np.array([5], dtype=np.uint64)
    a, b = theta.copy(), theta.copy()
    oa, ob = make(), make()
    runner = EpochRunner(layout, np.float64, batch)
    la, fa = runner.run(a, X, Y, sw, n, state, True, oa, LOSS_LOG, 1e-3, 0.0, n_threads)
    order = _epoch.epoch_order(n, np.array([5], dtype=np.uint64))
    lb, fb = EpochRunner(layout, np.float64, batch).run(
        b, X, Y, sw, order, np.array([5], dtype=np.uint64), False, ob, LOSS_LOG, 1e-3, 0.0,
        n_threads)
    assert fa and fb and la == lb
    assert not np.array_equal(a, theta) and np.array_equal(a, b)
    assert np.array_equal(oa.state, ob.state)
    assert state[0] != 5


def test_a_bad_row_count_is_refused():
    layout, theta, X, Y, sw = problem(np.float64)
    opt = Optimizer("sgd", layout.n_params, np.float64, learning_rate_init=0.1)
    state = np.array([1], dtype=np.uint64)
    runner = EpochRunner(layout, np.float64, 10)
    for n, match in ((-1, "row count"), (51, "51 rows asked")):
        with pytest.raises(ValueError, match=match):
            runner.run(theta, X, Y, sw, n, state, True, opt, LOSS_LOG, 0.0, 0.0, 1)


def test_thread_counts_agree():
    rng = np.random.RandomState(0)
    layout = Layout([300, 400, 200, 10], ["relu", "relu", "softmax"])
    theta = (rng.randn(layout.n_params) * 0.05).astype(np.float64)
    X = rng.randn(600, 300)
    Y = np.eye(10)[rng.randint(0, 10, 600)]
    rows = np.arange(600, dtype=np.int64)
    results = []
    for n_threads in (1, 2):
        th = theta.copy()
        opt = Optimizer("adam", layout.n_params, np.float64, learning_rate_init=1e-3)
        loss, finite, _ = run(layout, th, X, Y, None, rows, 200, opt, alpha=1e-3,
                              n_threads=n_threads, shuffle=True)
        results.append((th, loss))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-12)


def test_divergence_is_reported():
    layout, theta, X, Y, _ = problem(np.float64)
    opt = Optimizer("sgd", layout.n_params, np.float64, learning_rate_init=1e200, momentum=0)
    rows = np.arange(50, dtype=np.int64)
    loss, finite, _ = run(layout, theta, X * 1e100, Y, None, rows, 5, opt)
    assert not finite


@pytest.mark.parametrize("out", ["softmax", "logistic"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_class_indices_match_the_indicator_matrix(out, weighted, n_threads, dtype):
    # The log loss read from class indices (no n_samples x k matrix) is the
    # loss of the one-hot targets: same parameters after an epoch of Adam,
    # same mean loss.
    rng = np.random.RandomState(1)
    k = 4 if out == "softmax" else 1
    layout = Layout([6, 9, k], ["relu", out])
    theta = (rng.randn(layout.n_params) * 0.5).astype(dtype)
    n = 300  # 300 x 4 outputs: the threaded loss loop runs with 2 threads
    X = rng.randn(n, 6).astype(dtype)
    classes = rng.randint(0, max(k, 2), n).astype(np.int32)
    Y = (np.eye(k, dtype=dtype)[classes] if k > 1
         else classes[:, None].astype(dtype))
    sw = rng.uniform(0.5, 2, n).astype(dtype) if weighted else None
    rows = rng.permutation(n).astype(np.int64)  # gathered batches
    make = lambda: Optimizer("adam", layout.n_params, dtype, learning_rate_init=0.05)
    a, b = theta.copy(), theta.copy()
    loss_a, fin_a, _ = run(layout, a, X, Y, sw, rows, 32, make(), alpha=0.1,
                           n_threads=n_threads)
    loss_b, fin_b, _ = run(layout, b, X, classes, sw, rows, 32, make(), alpha=0.1,
                           n_threads=n_threads)
    assert fin_a and fin_b
    assert not np.array_equal(a, theta)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(b, a, rtol=tol, atol=tol)
    np.testing.assert_allclose(loss_b, loss_a, rtol=tol)


def test_class_indices_out_of_range_are_refused():
    layout, theta, X, Y, _ = problem(np.float64)
    opt = Optimizer("adam", layout.n_params, np.float64, learning_rate_init=0.01)
    rows = np.arange(50, dtype=np.int64)
    for bad in (3, -1):
        classes = np.zeros(50, dtype=np.int32)
        classes[7] = bad
        with pytest.raises(ValueError, match="out of range"):
            run(layout, theta.copy(), X, classes, None, rows, 10, opt)
    regression = Layout([6, 9, 3], ["relu", "identity"])
    with pytest.raises(ValueError, match="class-index targets"):
        run(regression, np.zeros(regression.n_params), X, np.zeros(50, np.int32),
            None, rows, 10,
            Optimizer("adam", regression.n_params, np.float64, learning_rate_init=0.01))
    # Every width the epoch reads is checked; the one-byte index against
    # 3 classes too (it could hold up to 255).
    for dtype in (np.uint8, np.uint16, np.int64):
        classes = np.zeros(50, dtype=dtype)
        classes[-1] = 3
        with pytest.raises(ValueError, match="out of range"):
            run(layout, theta.copy(), X, classes, None, rows, 10, opt)
    with pytest.raises(ValueError, match="must be uint8, uint16, int32 or int64"):
        run(layout, theta.copy(), X, np.zeros(50, np.int8), None, rows, 10, opt)


@pytest.mark.parametrize("n_threads", [1, 2])
def test_every_class_index_width_gives_the_same_epoch(n_threads, every_batch_split):
    # Fits keep class indices in the narrowest width the class count allows
    # (or read the user's int64 labels in place): the same bits from each.
    layout, theta, X, _, sw = split_problem(np.float64, [12, 24, 10, 4],
                                            ["relu", "tanh", "softmax"])
    classes = np.random.RandomState(2).randint(0, 4, X.shape[0])
    make = lambda: Optimizer("adam", layout.n_params, np.float64, learning_rate_init=0.01)
    got = [epoch_twice(layout, theta, X, classes.astype(dtype), sw, 16, make, n_threads)
           for dtype in (np.int32, np.uint8, np.uint16, np.int64)]
    assert not np.array_equal(got[0][0], theta)
    for g in got[1:]:
        assert np.array_equal(g[0], got[0][0]) and np.array_equal(g[1], got[0][1])
        assert g[2:] == got[0][2:]


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("n_threads,B", [(1, 8), (2, 8), (2, 32)])
def test_a_non_finite_gradient_stops_before_the_step(solver, n_threads, B, every_batch_split):
    # The loss is finite on every batch but the third's gradient overflows
    # (inputs of 1e200 through output weights of 1e150, softmax logits of
    # ~1e150: a finite cross-entropy). The epoch must stop with the
    # parameters and optimiser state of the second step exactly, no
    # copy of them kept (a NaN or inf step would reach every parameter).
    # With two threads, batches of 32 split their rows, 8 do not.
    rng = np.random.RandomState(0)
    layout = Layout([4, 5, 3], ["relu", "softmax"])
    theta = np.zeros(layout.n_params)
    (W0, W1), _ = layout.views(theta)
    W0[:] = rng.randn(4, 5) * 1e-200
    W1[:] = rng.randn(5, 3) * 1e150
    X = rng.randn(3 * B, 4)
    X[2 * B:] *= 1e200
    classes = rng.randint(0, 3, 3 * B).astype(np.int32)
    rows = np.arange(3 * B, dtype=np.int64)
    make = lambda: Optimizer(solver, layout.n_params, np.float64, learning_rate_init=1e-210,
                             momentum=0.9)
    ref_opt = make()
    ref = theta.copy()
    _, finite, _ = run(layout, ref, X, classes, None, rows[:2 * B], B, ref_opt)
    assert finite and not np.array_equal(ref, theta)
    opt = make()
    got = theta.copy()
    _, finite, _ = run(layout, got, X, classes, None, rows, B, opt, n_threads=n_threads)
    assert not finite
    assert np.array_equal(got, ref)
    assert np.array_equal(opt.state, ref_opt.state) and opt.step[0] == ref_opt.step[0] == 2


@pytest.mark.parametrize("order", ["C", "csr"])
@pytest.mark.parametrize("narrow", [np.int32, np.uint16])
def test_narrow_and_int64_row_indices_give_the_same_epoch(order, narrow):
    # Fits shuffle 2-byte row indices (up to 65536 rows) or 4-byte ones
    # (fewer than 2**31); the epoch must be the one 8-byte indices give:
    # same permutation, same steps.
    layout, theta, X, Y, sw = problem(np.float64)
    X = sp.csr_matrix(X) if order == "csr" else X
    opt = lambda: Optimizer("adam", layout.n_params, np.float64, learning_rate_init=0.01)
    a, b = theta.copy(), theta.copy()
    rows = np.arange(50, dtype=np.int64)
    la, _, ra = run(layout, a, X, Y, sw, rows, 8, opt(), alpha=0.1, shuffle=True, seed=3)
    lb, _, rb = run(layout, b, X, Y, sw, rows.astype(narrow), 8, opt(), alpha=0.1,
                    shuffle=True, seed=3)
    assert rb.dtype == narrow and np.array_equal(ra, rb)
    assert not np.array_equal(ra, rows)
    assert np.array_equal(a, b) and la == lb


# The two-core epoch (src/_epoch.pyx, split_worker) against the one-thread
# path: the same bits. Batches of 40 split their rows 24/16 (whole blocks of
# 8), the last batch of 30 splits 16/14, batches below 16 rows run on one
# thread inside the region; gradient columns and update chunks split too.
SPLIT_LAYOUTS = [([6, 9, 5, 3], ["tanh", "relu", "softmax"]),
                 ([40, 100, 100, 10], ["relu", "relu", "softmax"]),
                 ([7, 33, 2], ["logistic", "softmax"]),
                 ([5, 17, 3], ["leaky_relu", "identity"]),
                 ([7, 30, 17, 11, 3], ["relu", "relu", "relu", "identity"]),
                 ([9, 4], ["softmax"])]  # no hidden layer: one gradient stage


def split_problem(dtype, units, acts, n=150, seed=0):
    rng = np.random.RandomState(seed)
    layout = Layout(units, acts)
    theta = (rng.randn(layout.n_params) * 0.3).astype(dtype)
    X = rng.randn(n, units[0]).astype(dtype)
    Y = np.eye(units[-1], dtype=dtype)[rng.randint(0, units[-1], n)]
    sw = rng.uniform(0.5, 2, n).astype(dtype)
    return layout, theta, X, Y, sw


def epoch_twice(layout, theta, X, Y, sw, batch, make, n_threads, epochs=3, alpha=1e-3,
                l1=0.0, loss=LOSS_LOG, idx_dtype=np.int64):
    """theta, optimiser state, step count and losses after a few epochs."""
    runner = EpochRunner(layout, theta.dtype, batch)
    opt = make()
    th = theta.copy()
    # idx_dtype None: the row count, for all rows in a keyed order (fits)
    rows = X.shape[0] if idx_dtype is None else np.arange(X.shape[0], dtype=idx_dtype)
    state = np.array([5], dtype=np.uint64)
    losses = []
    timing = np.zeros(3)
    split = 0
    # whether it runs split now (between the thresholds, the measured
    # exchange, kept for longer than these epochs take)
    splits = _epoch.split_runs(layout.net, batch, n_threads)
    for _ in range(epochs):
        loss_value, finite = runner.run(th, kernel_input(X), Y, sw, rows, state, True, opt,
                                        loss, alpha, l1, n_threads, timing=timing)
        assert finite
        losses.append(loss_value)
        split += timing[2]
    # (thread 0's count of batches run split)
    if splits and X.shape[0] > 2 * batch:
        assert split > 0
    return th, opt.state.copy(), int(opt.step[0]), losses


@pytest.mark.parametrize("units,acts", SPLIT_LAYOUTS)
@pytest.mark.parametrize("solver,nesterov", [("sgd", False), ("sgd", True), ("adam", False),
                                             ("adagrad", False), ("adadelta", False),
                                             ("rmsprop", False)])
@pytest.mark.parametrize("weighted", [False, True])
def test_the_two_core_epoch_gives_the_one_thread_bits(units, acts, solver, nesterov, weighted,
                                                       dtype, every_batch_split):
    layout, theta, X, Y, sw = split_problem(dtype, units, acts)
    assert _epoch.split_applies(layout.net, 40)
    sw = sw if weighted else None
    lr = 1.0 if solver == "adadelta" else 0.01
    make = lambda: Optimizer(solver, layout.n_params, dtype, learning_rate_init=lr,
                             momentum=0.9, nesterovs_momentum=nesterov)
    loss = LOSS_LOG if acts[-1] == "softmax" else LOSS_SQUARED
    one = epoch_twice(layout, theta, X, Y, sw, 40, make, 1, l1=1e-4, loss=loss)
    for n_threads in (2, 3):
        got = epoch_twice(layout, theta, X, Y, sw, 40, make, n_threads, l1=1e-4, loss=loss)
        assert not np.array_equal(got[0], theta)
        assert np.array_equal(got[0], one[0]) and np.array_equal(got[1], one[1])
        assert got[2] == one[2] == 3 * 4
        assert got[3] == one[3]


@pytest.mark.parametrize("batch", [1, 8, 16, 20, 150])
@pytest.mark.parametrize("hidden", [["relu", "tanh"], ["relu", "relu"]])
def test_every_batch_size_splits_to_the_same_bits(batch, hidden, every_batch_split):
    # From one row (thread 0 alone in every stage but the update) to the
    # whole data in one batch, narrow row indices (widened per thread).
    layout, theta, X, Y, sw = split_problem(np.float64, [12, 24, 10, 4],
                                            hidden + ["softmax"])
    in_place = _epoch.split_in_place(layout.net, batch, False)
    assert in_place == (every_batch_split and hidden == ["relu", "relu"])
    make = lambda: Optimizer("adam", layout.n_params, np.float64, learning_rate_init=0.01)
    for idx_dtype in (np.int32, np.uint16, None):
        one = epoch_twice(layout, theta, X, Y, sw, batch, make, 1, idx_dtype=idx_dtype)
        two = epoch_twice(layout, theta, X, Y, sw, batch, make, 2, idx_dtype=idx_dtype)
        assert np.array_equal(one[0], two[0]) and one[2:] == two[2:]


@pytest.mark.parametrize("wait", [0.0, 1e-9, 5.0])
def test_waiting_for_the_team_at_the_start_keeps_the_bits(wait):
    # Thread 0 waits up to `wait` for the other thread before the first
    # batch, else starts alone and the other joins at a later batch: the
    # same bits either way, and with a long wait every batch runs split.
    layout, theta, X, Y, sw = split_problem(np.float64, [12, 24, 10, 4],
                                            ["relu", "tanh", "softmax"])
    make = lambda: Optimizer("adam", layout.n_params, np.float64, learning_rate_init=0.01)
    old_work = _epoch.split_min_work(0)
    old_wait = _epoch.join_wait_seconds(wait, wait)
    try:
        one = epoch_twice(layout, theta, X, Y, sw, 10, make, 1)
        runner = EpochRunner(layout, np.float64, 10)
        opt = make()
        th = theta.copy()
        rows = np.arange(X.shape[0], dtype=np.int64)
        state = np.array([5], dtype=np.uint64)
        timing = np.zeros(3)
        for _ in range(3):
            timing[:] = 0
            backing_off = runner.split_state[0] > 0  # one thread this epoch
            runner.run(th, kernel_input(X), Y, sw, rows, state, True, opt, LOSS_LOG, 1e-3,
                       0.0, 2, timing=timing)
            # (unless thread 0 went on alone: a busy machine)
            if wait == 5.0 and not backing_off and runner.split_state[1] == 0:
                assert timing[2] == 15  # every batch ran split, the first too
    finally:
        _epoch.split_min_work(old_work)
        _epoch.join_wait_seconds(*old_wait)
    assert np.array_equal(th, one[0]) and np.array_equal(opt.state, one[1])


def test_the_gradient_stage_gives_the_same_bits_wherever_it_is_cut(dtype, every_batch_split):
    # Two threads' gradient stage is cut where their measured times match,
    # wherever the machine's speed puts it: a cut one parameter from either
    # end, inside a weight row, among the biases, or whole update chunks,
    # gives the one-thread bits, and the cut is carried to the next epoch.
    layout, theta, X, Y, sw = split_problem(dtype, [7, 30, 17, 11, 3],
                                            ["relu", "tanh", "relu", "identity"])
    n = layout.n_params
    make = lambda: Optimizer("adam", layout.n_params, dtype, learning_rate_init=0.01)

    def epochs(n_threads, cut=None):
        runner = EpochRunner(layout, dtype, 20)
        if cut is not None:
            runner.split_state[2] = cut
        opt = make()
        th = theta.copy()
        rows = np.arange(X.shape[0])
        state = np.array([5], dtype=np.uint64)
        timing = np.zeros(3)
        losses, split = [], 0
        for _ in range(3):
            losses.append(runner.run(th, kernel_input(X), Y, sw, rows, state, True, opt,
                                     LOSS_SQUARED, 1e-3, 1e-4, n_threads, timing=timing)[0])
            split += timing[2]
        return th, opt.state.copy(), losses, runner.split_state[2], split

    one = epochs(1)
    row_inside = layout.coef_slice(1).start + 30 * 17 // 2 + 5
    least = n // 8  # a quarter of an even share
    for cut in (1, row_inside, layout.intercept_slice(1).start + 3, n - 1):
        two = epochs(2, cut)
        assert np.array_equal(two[0], one[0]) and np.array_equal(two[1], one[1])
        assert two[2] == one[2]
        if two[4] == 3 * 8:  # every batch ran split (none alone on a busy machine):
            # the cut was moved, every 4 batches, and carried between epochs
            assert least <= two[3] <= n - least
    old = _epoch.grad_cuts_enabled(False)
    try:
        chunks = epochs(2)
    finally:
        _epoch.grad_cuts_enabled(old)
    assert np.array_equal(chunks[0], one[0]) and chunks[2] == one[2]
    assert chunks[3] == 0


def test_the_gradient_cuts_move_halfway_to_equal_times():
    # thread 0 took 3 s for 512 parameters, thread 1 1 s for 512: equal
    # times at 256; halfway there, on a multiple of 16
    assert _epoch.rebalanced_cuts([0, 512, 1024], [3.0, 1.0]) == [0, 384, 1024]
    assert _epoch.rebalanced_cuts([0, 512, 1024], [1.0, 1.0]) == [0, 512, 1024]
    # each range keeps a quarter of an even share, to be measured again
    assert _epoch.rebalanced_cuts([0, 160, 1024], [1000.0, 1.0]) == [0, 128, 1024]
    # three threads; nothing measured for one: the cuts stay
    assert _epoch.rebalanced_cuts([0, 320, 640, 960], [1.0, 2.0, 1.0]) == [0, 352, 608, 960]
    assert _epoch.rebalanced_cuts([0, 320, 640, 960], [1.0, 0.0, 1.0]) == [0, 320, 640, 960]


def test_products_beyond_the_small_kernels_split_over_blas(dtype, every_batch_split, request,
                                                         child_env, tmp_path):
    # 200 x 580 x 580 multiply-adds exceed the kernels' range: each thread
    # calls BLAS on its own rows and gradient columns. Results agree with
    # one thread's to rounding (BLAS may sum a block's products in another
    # order than the whole product's).
    if _kernels.max_work() == sys.maxsize:
        # The kernels take every product where OpenBLAS runs older kernels
        # than they do (AVX2 on an AVX-512 CPU): run this test where it runs
        # its AVX-512 ones and the kernels' range ends.
        assert os.environ.get("OPENBLAS_CORETYPE") != "SkylakeX"
        res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                              f"{request.node.path}::{request.node.name}"], cwd=tmp_path,
                             env=dict(child_env, OPENBLAS_CORETYPE="SkylakeX"),
                             capture_output=True, text=True)
        assert res.returncode == 0 and "1 passed" in res.stdout, res.stdout + res.stderr
        return
    layout, theta, X, Y, sw = split_problem(dtype, [580, 580, 3], ["relu", "softmax"], n=600)
    assert 200 * 580 * 580 > _kernels.max_work()
    assert _epoch.split_applies(layout.net, 200)
    make = lambda: Optimizer("adam", layout.n_params, dtype, learning_rate_init=0.01)
    one = epoch_twice(layout, theta, X, Y, sw, 200, make, 1, epochs=2)
    two = epoch_twice(layout, theta, X, Y, sw, 200, make, 2, epochs=2)
    assert not np.array_equal(two[0], theta)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(two[0], one[0], rtol=tol, atol=tol)
    np.testing.assert_allclose(two[3], one[3], rtol=tol)
    assert one[2] == two[2] == 6


def test_the_split_barrier_passes_with_the_threads_openmp_gives():
    seconds, team = _epoch.barrier_seconds(2, 1000)
    assert team in (1, 2) and seconds > 0
    assert _epoch.barrier_seconds(1, 10)[1] == 1


def test_split_thresholds_and_the_cores_exchange():
    # Below SPLIT_MIN_WORK forward multiply-adds a batch never splits; from
    # SPLIT_ALWAYS_WORK it always does; in between where two threads pass
    # the barrier fast enough: within fast_exchange's first time below
    # SPLIT_MID_WORK (digits 64-100-10 on 32 rows), its slow time from it
    # (40-100-100-10 on 100 rows).
    small = Layout([32, 40, 10], ["relu", "softmax"]).net
    mid = Layout([64, 100, 10], ["relu", "softmax"]).net
    upper = Layout([40, 100, 100, 10], ["relu", "relu", "softmax"]).net
    big = Layout([40, 400, 400, 10], ["relu", "relu", "softmax"]).net
    assert not _epoch.split_applies(small, 32) and not _epoch.split_runs(small, 32, 2)
    assert all(_epoch.split_applies(*c) for c in ((mid, 32), (upper, 100), (big, 100)))
    assert not any(_epoch.split_runs(n, b, 1) for n, b in ((mid, 32), (upper, 100), (big, 100)))
    old = _epoch.fast_exchange(0.0, slow=0.0)
    try:
        assert not _epoch.split_runs(mid, 32, 2) and not _epoch.split_runs(upper, 100, 2)
        assert _epoch.split_runs(big, 100, 2)
        _epoch.fast_exchange(0.0, slow=1.0)
        seconds = _epoch.exchange_pass_seconds()
        assert 0 < seconds <= 1.0
        two = seconds < 1.0  # 1.0: OpenMP gave one thread
        assert not _epoch.split_runs(mid, 32, 2) and _epoch.split_runs(upper, 100, 2) == two
        _epoch.fast_exchange(1.0, slow=0.0)
        assert _epoch.split_runs(mid, 32, 2) == two and not _epoch.split_runs(upper, 100, 2)
        _epoch.fast_exchange(0.0, slow=0.0)
        old_work = _epoch.split_min_work(0)
        try:
            assert _epoch.split_runs(small, 32, 2) and _epoch.split_runs(upper, 100, 2)
        finally:
            _epoch.split_min_work(old_work)
        assert not _epoch.split_runs(mid, 32, 2) and not _epoch.split_runs(upper, 100, 2)
    finally:
        _epoch.fast_exchange(*old)


@pytest.mark.parametrize("n_threads", [1, 2])
def test_a_fit_leaves_the_callers_subnormals_alone(n_threads):
    # Epochs flush subnormals to zero (src/fm_fpenv.h) and must restore the
    # calling thread's setting: numpy still sees a subnormal afterwards.
    from sklearn.datasets import make_classification

    from fastmlp import MLPClassifier

    X, y = make_classification(200, 10, random_state=0)
    MLPClassifier(hidden_layer_sizes=(50, 50), batch_size=100, max_iter=3, n_threads=n_threads,
                  random_state=0).fit(X, y)
    tiny = np.float64(1e-310)
    assert tiny * np.float64(1.0) == tiny and tiny * 0.5 > 0


@pytest.mark.parametrize("units,acts,batch,dropout,expected", [
    ([64, 100, 10], ["relu", "softmax"], 32, False, False),  # W2
    ([784, 256, 128, 10], ["relu", "relu", "softmax"], 200, False, False),  # W1
    ([64, 100, 10], ["tanh", "softmax"], 32, False, True),
    ([64, 100, 10], ["relu", "softmax"], 32, True, True),
    ([64, 100, 200, 10], ["relu", "relu", "softmax"], 32, False, True),  # 200 > one panel
    ([64, 1000, 1000, 10], ["relu", "relu", "softmax"], 100, False, True),  # beyond the kernels
])
def test_backward_needs_tmp_only_where_a_delta_is_not_written_in_place(units, acts, batch,
                                                                        dropout, expected):
    assert _epoch.needs_tmp(Layout(units, acts).net, batch, dropout) is expected


@pytest.mark.parametrize("acts", [["relu", "relu", "softmax"], ["relu", "tanh", "softmax"]])
def test_a_relu_epoch_leaves_tmp_alone_and_others_check_its_size(acts, dtype):
    layout, theta, X, Y, sw = split_problem(dtype, [12, 24, 10, 4], acts)
    make = lambda: Optimizer("adam", layout.n_params, dtype, learning_rate_init=0.01)
    runner = EpochRunner(layout, dtype, 16)
    if "tanh" in acts:
        assert runner.tmp.shape[0] == 16 * 24
        runner.tmp = runner.tmp[:1]
        with pytest.raises(ValueError, match="tmp is too small"):
            runner.run(theta.copy(), kernel_input(X), Y, sw, np.arange(150),
                       np.array([5], dtype=np.uint64), True, make(), LOSS_LOG, 1e-3, 0.0, 1)
        return
    assert runner.tmp.shape[0] == 1
    ref = epoch_twice(layout, theta, X, Y, sw, 16, make, 1)
    # a full-size tmp full of NaN: untouched, and the same results
    runner.tmp = np.full(16 * 24, np.nan, dtype)
    th, opt = theta.copy(), make()
    rows, state = np.arange(150), np.array([5], dtype=np.uint64)
    for _ in range(3):
        runner.run(th, kernel_input(X), Y, sw, rows, state, True, opt, LOSS_LOG, 1e-3, 0.0, 1)
    assert np.isnan(runner.tmp).all()
    assert not np.array_equal(th, theta)
    assert np.array_equal(th, ref[0]) and np.array_equal(opt.state, ref[1])


def test_run_epoch_names_the_array_it_cannot_use():
    # The arrays' data are read without memoryviews (_args.array_data): each
    # is still checked for type, layout, length and writability.
    layout, theta, X, Y, sw = problem(np.float64, n=20)
    opt = Optimizer("adam", layout.n_params, np.float64, learning_rate_init=0.01)
    runner = EpochRunner(layout, np.float64, 8)
    args = dict(grad=runner.grad, opt_state=opt.state, acts=runner.acts, tmp=runner.tmp,
                xbuf=runner.xbuf, row_loss=runner.row_loss, part=runner.part,
                step_count=opt.step, rng_state=np.ones(1, np.uint64))

    args.update(X=kernel_input(X), Y=Y, idx=np.arange(20))

    def call(**change):
        a = {**args, **change}
        _epoch.run_epoch(theta.copy(), a["grad"], a["opt_state"], a["X"], a["Y"], sw,
                         a["idx"], a["rng_state"], True, 8, layout.net, LOSS_LOG,
                         opt.rule(), runner.pieces, a["acts"], a["tmp"], a["xbuf"],
                         a["row_loss"], a["part"], a["step_count"], 0.0, 0.0, 1)

    call()
    readonly = runner.grad.copy()
    readonly.flags.writeable = False
    for change, message in [
            (dict(grad=runner.grad.astype(np.float32)), "grad must be a writable"),
            (dict(grad=readonly), "grad must be a writable"),
            (dict(grad=runner.grad[:-1]), "grad must be .* at least"),
            (dict(opt_state=opt.state.T.copy()), "opt_state must be 2 x"),
            (dict(acts=np.zeros(2 * runner.acts.size)[::2]), "acts must be"),
            (dict(row_loss=np.zeros(3)), "row_loss must be .* 8 entries"),
            (dict(step_count=np.zeros(1, np.int32)), "step_count must be"),
            (dict(rng_state=np.ones(1, np.int64)), "rng_state must be"),
            (dict(part=[0.0] * 10), "part must be"),
            (dict(X=X.astype(np.float32)), "X must be a 2-D float64"),
            (dict(X=X[:, :, None]), "X must be a 2-D"),
            (dict(X=(np.zeros(3), np.zeros(3, np.int64), np.zeros(21, np.int32))),
             "indices must be"),
            (dict(Y=Y.astype(np.float32)), "Y must be"),
            (dict(Y=np.zeros(20, np.float64)), "class indices must be"),
            (dict(Y=Y[:, :, None].copy()), "Y must be class indices .1-D. or targets"),
            (dict(idx=np.arange(20.0)), "idx must be uint16, int32 or int64"),
            (dict(idx=np.arange(20)[::-1]), "idx must be a writable C-contiguous")]:
        with pytest.raises(ValueError, match=message):
            call(**change)
    net = list(layout.net)
    net[0] = net[0].astype(np.int64)
    with pytest.raises(ValueError, match="units must be"):
        _epoch.split_applies(tuple(net), 8)


# ------------------------------ Adam fused into the first layer's A^T delta
@pytest.fixture
def fused_off_after():
    yield
    _epoch.w0_fused_enabled(True)
    _epoch.w0_bound_enabled(True)


FUSED_LAYOUTS = [([12, 40, 24, 3], ["relu", "relu", "softmax"]),
                 ([12, 40, 3], ["tanh", "softmax"]),
                 ([12, 3], ["softmax"])]


@pytest.mark.parametrize("units,acts", FUSED_LAYOUTS, ids=lambda v: str(v))
@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("alpha", [0.0, 1e-3])
@pytest.mark.parametrize("bound", [True, False])
def test_fused_first_layer_step_gives_the_separate_steps_bits(units, acts, order, alpha, bound,
                                                              dtype, fused_off_after):
    # float32: the first layer's weights take Adam's step inside their
    # gradient's product, rows read in place (C) or gathered (F), with the
    # gradient's bound or (bound off) computed and scanned first: the
    # parameters, moments and steps of the separate update, on 1 and 2
    # threads. float64 keeps the separate update.
    layout, theta, X, Y, sw = split_problem(dtype, units, acts, n=150)
    X = input_of(X, order)
    assert _epoch.w0_fused(layout.net, 32, dtype) == (dtype == np.float32)
    assert not _epoch.w0_fused(layout.net, 32, dtype, rule="sgd")
    assert not _epoch.w0_fused(layout.net, 32, dtype, l1=1e-4)
    make = lambda: Optimizer("adam", layout.n_params, dtype, learning_rate_init=0.01)
    _epoch.w0_bound_enabled(bound)
    for n_threads in (1, 2):
        _epoch.w0_fused_enabled(True)
        got = epoch_twice(layout, theta, X, Y, sw, 32, make, n_threads, alpha=alpha)
        _epoch.w0_fused_enabled(False)
        want = epoch_twice(layout, theta, X, Y, sw, 32, make, n_threads, alpha=alpha)
        assert not np.array_equal(got[0], theta)
        assert got[2] == want[2]
        if order == "C":  # both products in the kernels: the same chains
            assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
        else:  # the separate step's gathered batch may take BLAS's A^T delta
            np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(got[1], want[1], rtol=1e-4, atol=1e-9)
        # the loss's sum of squared weights is added in another order
        np.testing.assert_allclose(got[3], want[3], rtol=1e-6 if order == "F" else 1e-13)


@pytest.mark.parametrize("bound", [True, False])
def test_fused_first_layer_step_stops_before_a_non_finite_gradient(bound, fused_off_after):
    # A feature near float32's largest value, whose first-layer weights are
    # zero: the forward pass and the deltas stay finite, its weights'
    # gradient overflows. The fused epoch stops at the same batch as the
    # separate one, theta and the moments untouched by that step.
    layout, theta, X, Y, sw = split_problem(np.float32, [12, 40, 3], ["tanh", "softmax"], n=150)
    W0 = theta[layout.coef_slice(0)].reshape(12, 40)
    W0[5] = 0
    theta[layout.coef_slice(1)] *= 1000  # deltas of the hidden layer up to ~100
    X[:, 5] = np.float32(3e38)
    X[:64, 5] = 0  # two finite steps first
    _epoch.w0_bound_enabled(bound)
    results = []
    for fused in (True, False):
        _epoch.w0_fused_enabled(fused)
        opt = Optimizer("adam", layout.n_params, np.float32, learning_rate_init=0.01)
        th = theta.copy()
        runner = EpochRunner(layout, np.float32, 32)
        loss, finite = runner.run(th, kernel_input(X), Y, sw, np.arange(150, dtype=np.int64),
                                  np.array([5], dtype=np.uint64), False, opt, LOSS_LOG, 1e-3,
                                  0.0, 1)
        results.append((th, opt.state.copy(), int(opt.step[0]), finite))
    assert results[0][3] is False and results[1][3] is False
    assert results[0][2] == results[1][2] == 2
    assert np.array_equal(results[0][0], results[1][0])
    assert np.array_equal(results[0][1], results[1][1])
    assert np.isfinite(results[0][0]).all()
