"""Threads: the process-wide BLAS limit, concurrent predicts and fits."""

import inspect
import threading
import time
import warnings
from contextlib import nullcontext

import numpy as np
import pytest
from sklearn.datasets import make_classification
from threadpoolctl import ThreadpoolController, threadpool_info, threadpool_limits

from fastmlp import MLPClassifier
from fastmlp._threads import blas_threads, cpu_count, effective_n_threads, predict_blas_threads
from fastmlp.solvers import first_order

X, Y = make_classification(3000, 30, n_informative=10, n_classes=4, random_state=0)


def blas_setting():
    return {lib.num_threads for lib in ThreadpoolController().select(user_api="blas")
            .lib_controllers}


@pytest.fixture
def original_three():
    """A known original BLAS setting, distinct from the counts the tests ask for."""
    with threadpool_limits(limits=3, user_api="blas"):
        yield


def test_limit_is_restored_whatever_order_holders_leave_in(original_three):
    entered, release_a = threading.Event(), threading.Event()

    def a():
        with blas_threads(1):
            entered.set()
            release_a.wait()

    t = threading.Thread(target=a)
    t.start()
    entered.wait()
    cm = blas_threads(1)
    cm.__enter__()  # shares A's limit
    assert blas_setting() == {1}
    release_a.set()
    t.join()  # A leaves first: B still runs under its limit
    assert blas_setting() == {1}
    cm.__exit__(None, None, None)
    assert blas_setting() == {3}


def test_a_different_count_waits_for_the_current_holders(original_three):
    order = []
    entered, release = threading.Event(), threading.Event()

    def holder():
        with blas_threads(1):
            order.append("A in")
            entered.set()
            release.wait()
            order.append("A out")

    def other():
        with blas_threads(2):
            order.append(("B in", blas_setting()))

    ta = threading.Thread(target=holder)
    ta.start()
    entered.wait()
    tb = threading.Thread(target=other)
    tb.start()
    time.sleep(0.2)
    assert order == ["A in"]  # B is waiting
    release.set()
    ta.join()
    tb.join()
    assert order == ["A in", "A out", ("B in", {2})]
    assert blas_setting() == {3}


def test_no_wait_runs_under_the_current_count_and_nesting_never_deadlocks(original_three):
    with blas_threads(1):
        with blas_threads(2, wait=False):
            assert blas_setting() == {1}
        with blas_threads(2):  # same thread: joins rather than waits for itself
            assert blas_setting() == {1}
    assert blas_setting() == {3}


def test_effective_n_threads():
    assert effective_n_threads(3) == 3
    assert effective_n_threads(-1) >= 1
    with pytest.raises(ValueError, match="n_threads must not be 0"):
        effective_n_threads(0)


def fit(dtype=np.float64, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return MLPClassifier((64, 32), max_iter=5, random_state=0, **kw).fit(X.astype(dtype), Y)


@pytest.mark.parametrize("n_threads", [None, 1])
@pytest.mark.parametrize("pruned", [False, True])
def test_eight_threads_predicting_on_one_model_get_the_serial_results(n_threads, pruned):
    est = fit(n_threads=n_threads)
    if pruned:  # the sparse kernels: their workspace is per call too
        from fastmlp.pruning import kernel_choice, prune_magnitude

        prune_magnitude(est, 0.85)
        assert "sparse" in kernel_choice(est)
    chunks = [X[i::8] for i in range(8)] + [X]
    serial = [(est.predict_proba(c), est.predict(c)) for c in chunks]
    results = [None] * len(chunks) * 3
    start = threading.Barrier(8)

    def work(k):
        start.wait()
        for r in range(3):
            i = (k + r) % len(chunks)
            results[k * 3 + r] = (i, est.predict_proba(chunks[i]), est.predict(chunks[i]))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, proba, labels in filter(None, results):
        assert np.array_equal(proba, serial[i][0]) and np.array_equal(labels, serial[i][1])


@pytest.mark.parametrize("threads", [(1, 1), (2, 2), (1, 2)])
def test_two_fits_in_two_threads_match_their_serial_runs(threads):
    # float32: there OpenBLAS's sums depend on its thread count (float64's
    # happen not to at these sizes), so a fit run under the other fit's
    # BLAS limit would differ from its serial run.
    kw = dict(batch_size=256, dtype=np.float32)
    serial = [fit(n_threads=n, **kw).coefs_ for n in threads]
    out = [None, None]
    start = threading.Barrier(2)

    def work(i):
        start.wait()
        out[i] = fit(n_threads=threads[i], **kw).coefs_

    ts = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for got, want in zip(out, serial):
        assert all(np.array_equal(a, b) for a, b in zip(got, want))


@pytest.mark.parametrize("env,expected", [("3", 3), ("2,1", 2), (" 5 ", 5)])
def test_omp_num_threads_sets_the_default(monkeypatch, env, expected):
    monkeypatch.setenv("OMP_NUM_THREADS", env)
    assert effective_n_threads(None) == expected
    assert effective_n_threads(1) == 1  # an explicit count wins


@pytest.mark.parametrize("env", [None, "", "0", "abc", "-2"])
def test_all_cores_without_a_usable_omp_num_threads(monkeypatch, env):
    if env is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", env)
    assert effective_n_threads(None) == cpu_count()


def test_negative_counts_back_from_the_cores():
    assert effective_n_threads(-1) == cpu_count()
    assert effective_n_threads(-2) == max(1, cpu_count() - 1)
    assert effective_n_threads(-1000) == 1
    with pytest.raises(ValueError, match="n_threads"):
        effective_n_threads(0)


def blas_counts():
    return {i["filepath"]: i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}


def test_predict_caps_blas_only_when_it_pays():
    assert isinstance(predict_blas_threads(10, 1), nullcontext)
    assert isinstance(predict_blas_threads(10**6, cpu_count()), nullcontext)
    if cpu_count() > 1:
        assert not isinstance(predict_blas_threads(10**6, 1), nullcontext)


@pytest.mark.parametrize("n_threads,env,expected", [(None, "1", 1), (1, None, 1), (2, "1", 2)])
def test_fit_uses_the_resolved_count(monkeypatch, n_threads, env, expected):
    if env is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", env)
    seen = []
    run = first_order.EpochRunner.run

    def spy(self, *args, **kwargs):
        bound = inspect.signature(run).bind(self, *args, **kwargs)
        seen.append((bound.arguments["n_threads"], set(blas_counts().values())))
        return run(self, *args, **kwargs)

    monkeypatch.setattr(first_order.EpochRunner, "run", spy)
    X = np.random.RandomState(0).randn(50, 4)
    MLPClassifier((5,), max_iter=2, n_threads=n_threads).fit(X, X[:, 0] > 0)
    # The kernels get the count, and BLAS is capped at it while they run.
    assert seen and all(s == (expected, {expected}) for s in seen)


@pytest.mark.parametrize("env,expected", [(None, "PASSIVE"), ("active", "ACTIVE")])
def test_openmp_waits_passively_unless_told_otherwise(env, expected, tmp_path):
    # libgomp prints its settings at load with OMP_DISPLAY_ENV; the variable
    # set for it is gone again afterwards.
    import os
    import subprocess
    import sys

    import fastmlp

    root = os.path.dirname(os.path.dirname(os.path.abspath(fastmlp.__file__)))
    environ = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    environ["OMP_DISPLAY_ENV"] = "TRUE"
    if env is not None:
        environ["OMP_WAIT_POLICY"] = env
    code = ("import sys, os; sys.path.insert(0, sys.argv[1]); import fastmlp; "
            "print(os.environ.get('OMP_WAIT_POLICY'))")
    res = subprocess.run([sys.executable, "-c", code, root], env=environ, cwd=tmp_path,
                         capture_output=True, text=True, check=True)
    if "OMP_WAIT_POLICY" not in res.stderr:
        pytest.skip("the OpenMP runtime does not report its settings (not libgomp)")
    assert f"OMP_WAIT_POLICY = '{expected}'" in res.stderr
    assert res.stdout.strip() == str(env)


# The two-core epoch (src/_epoch.pyx): a stochastic fit on two threads is
# the one-thread fit, bit for bit, wherever every product of the network
# runs in the small kernels (fastmlp._epoch.split_applies).
X_SPLIT, Y_SPLIT = make_classification(600, 20, n_informative=8, n_classes=3, random_state=1)
SW_SPLIT = np.random.RandomState(2).uniform(0.5, 2, 600)


def fitted_state(est):
    return [a.copy() for a in est.coefs_ + est.intercepts_], list(est.loss_curve_)


def assert_same_fit(make, fit_one):
    one = fitted_state(fit_one(make(1)))
    two = fitted_state(fit_one(make(2)))
    assert all(np.array_equal(a, b) for a, b in zip(one[0], two[0]))
    assert one[1] == two[1]


@pytest.mark.parametrize("solver,extra", [
    ("adam", {}), ("sgd", {"momentum": 0.0}), ("sgd", {"nesterovs_momentum": False}),
    ("sgd", {"nesterovs_momentum": True}), ("adagrad", {}), ("adadelta", {}), ("rmsprop", {}),
])
@pytest.mark.parametrize("estimator", ["classifier", "regressor"])
def test_two_threads_fit_the_one_thread_bits(solver, extra, estimator, dtype, every_batch_split):
    from fastmlp import MLPRegressor

    X = X_SPLIT.astype(dtype)
    y = Y_SPLIT if estimator == "classifier" else (X_SPLIT[:, :2] @ [1.0, -2.0]).astype(dtype)
    cls = MLPClassifier if estimator == "classifier" else MLPRegressor
    lr = 0.5 if solver == "adadelta" else 0.01
    make = lambda n: cls(hidden_layer_sizes=(32, 16), solver=solver, batch_size=40, max_iter=4, random_state=3,
                         learning_rate_init=lr, n_threads=n, **extra)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert_same_fit(make, lambda est: est.fit(X, y))


@pytest.mark.parametrize("kind", ["sample_weight", "early_stopping", "partial_fit"])
def test_two_threads_fit_the_one_thread_bits_with_weights_validation_and_increments(
        kind, dtype, every_batch_split):
    X = X_SPLIT.astype(dtype)
    kw = dict(hidden_layer_sizes=(24,), batch_size=50, max_iter=5, random_state=4)
    if kind == "early_stopping":
        kw.update(early_stopping=True, validation_fraction=0.2, n_iter_no_change=2)
    make = lambda n: MLPClassifier(n_threads=n, **kw)

    def fit_one(est):
        if kind == "sample_weight":
            return est.fit(X, Y_SPLIT, sample_weight=SW_SPLIT.astype(dtype))
        if kind == "partial_fit":
            for start in range(0, 600, 200):
                est.partial_fit(X[start:start + 200], Y_SPLIT[start:start + 200],
                                classes=[0, 1, 2])
            return est
        return est.fit(X, Y_SPLIT)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert_same_fit(make, fit_one)


BUSY_LOOP = "import time\nend = time.time() + 120\nwhile time.time() < end:\n    pass\n"


def test_a_two_thread_fit_beside_a_busy_core_finishes_with_the_one_thread_result():
    # A process spinning on one of the cores: the two-core epoch's threads
    # share the other (or are descheduled in turn). The barrier's bounded
    # spin, then yield, and thread 0 going on alone when waiting costs more
    # than working must keep the fit finishing; its result is the
    # one-thread fit's all the same. (No timing asserted: the suite's own
    # timeout catches a hang.)
    import subprocess
    import sys

    X = X_SPLIT.astype(np.float64)
    make = lambda n: MLPClassifier((48,), batch_size=32, max_iter=10, random_state=5,
                                   n_threads=n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one = fitted_state(make(1).fit(X, Y_SPLIT))
        busy = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
        try:
            time.sleep(0.2)
            two = fitted_state(make(2).fit(X, Y_SPLIT))
        finally:
            busy.kill()
            busy.wait()
    assert all(np.array_equal(a, b) for a, b in zip(one[0], two[0])) and one[1] == two[1]


def test_two_threads_fit_the_one_thread_bits_below_the_split_size(dtype):
    # 64-40-10 on batches of 32 is below _epoch.SPLIT_MIN_WORK: the one-thread
    # path runs on both counts, and must still give the same bits.
    from sklearn.datasets import load_digits

    from fastmlp import _epoch
    from fastmlp._network import Layout

    X, y = load_digits(return_X_y=True)
    assert not _epoch.split_applies(Layout([64, 40, 10], ["relu", "softmax"]).net, 32)
    make = lambda n: MLPClassifier(hidden_layer_sizes=(40,), batch_size=32, max_iter=3,
                                   random_state=0, n_threads=n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert_same_fit(make, lambda est: est.fit((X / 16).astype(dtype), y))


@pytest.mark.parametrize("split", [False, True])
def test_whether_a_mid_sized_network_splits_changes_no_bits(dtype, split):
    # 64-100-10 on batches of 32 splits over two threads only where the
    # cores exchange fast (_epoch.fast_exchange): the same bits either way,
    # and on one thread.
    from sklearn.datasets import load_digits

    from fastmlp import _epoch
    from fastmlp._network import Layout

    X, y = load_digits(return_X_y=True)
    net = Layout([64, 100, 10], ["relu", "softmax"]).net
    old = _epoch.fast_exchange(1.0 if split else 0.0)
    old_join = _epoch.join_at_start(True)
    try:
        assert _epoch.split_runs(net, 32, 2) == (split and _epoch.exchange_pass_seconds() < 1)
        make = lambda n: MLPClassifier(hidden_layer_sizes=(100,), batch_size=32, max_iter=3,
                                       random_state=0, n_threads=n)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert_same_fit(make, lambda est: est.fit((X / 16).astype(dtype), y))
    finally:
        _epoch.fast_exchange(*old)
        _epoch.join_at_start(old_join)


@pytest.mark.parametrize("n_threads,kind,expected", [
    (2, "dense", 1), (1, "dense", 1), (2, "sparse", 1), (2, "dropout", 1), (2, "lbfgs", 1),
    (2, "hf", 1),
])
def test_split_fits_cap_blas_at_one_thread(n_threads, kind, expected, monkeypatch,
                                           every_batch_split):
    # The two-core epoch's threads each call BLAS on their own block, and
    # the full-batch solvers' passes on their own rows; BLAS's own threads
    # would take turns with them on the same cores.
    import scipy.sparse as sp

    import fastmlp._base as base

    asked = []
    real = base.blas_threads

    def recording(n, wait=True):
        asked.append(n)
        return real(n, wait)

    monkeypatch.setattr(base, "blas_threads", recording)
    X = sp.csr_matrix(X_SPLIT) if kind == "sparse" else X_SPLIT
    kw = {"dropout": 0.2} if kind == "dropout" else {}
    kw.update(solver=kind if kind in ("lbfgs", "hf") else "adam")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        MLPClassifier((32,), batch_size=40, max_iter=2, n_threads=n_threads, **kw).fit(X, Y_SPLIT)
    assert asked == [expected]


@pytest.mark.parametrize("activation", ["relu", "tanh", "logistic", "leaky_relu"])
def test_two_threads_fit_the_one_thread_bits_with_dropout(activation, dtype, every_batch_split):
    # Dropout masks come from a stream per (batch, layer, row), so the two-core
    # epoch's threads draw each row's mask as one thread does; the derivative
    # is read off the rescaled activations without overwriting them.
    from fastmlp import _epoch
    from fastmlp._network import Layout

    X = X_SPLIT.astype(dtype)
    assert _epoch.split_applies(Layout([20, 32, 16, 3], [activation] * 2 + ["softmax"]).net, 40)
    make = lambda n: MLPClassifier(hidden_layer_sizes=(32, 16), activation=activation,
                                   dropout=[0.3, 0.1], batch_size=40, max_iter=4,
                                   random_state=3, n_threads=n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one = fitted_state(make(1).fit(X, Y_SPLIT))
        two = make(2).fit(X, Y_SPLIT)
    assert all(np.array_equal(a, b) for a, b in zip(one[0], fitted_state(two)[0]))
    assert one[1] == list(two.loss_curve_)
    # and a warm-started fit draws on from the same place in the stream
    warm = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for n in (1, 2):
            est = make(n).set_params(warm_start=True, max_iter=2)
            est.fit(X, Y_SPLIT)
            warm.append(fitted_state(est.fit(X, Y_SPLIT)))
    assert all(np.array_equal(a, b) for a, b in zip(warm[0][0], warm[1][0]))
    assert warm[0][1] == warm[1][1]


@pytest.mark.parametrize("dropout", [0.0, 0.25])
def test_two_threads_fit_the_one_thread_bits_on_sparse_input(dropout, dtype, every_batch_split):
    # CSR X: each thread multiplies its own rows of the matrix, and the
    # gradient stage sums the first layer's entries of its range in
    # csr_grad's order.
    import scipy.sparse as sp

    rng = np.random.RandomState(7)
    X = sp.random(600, 50, density=0.2, format="csr", random_state=rng, dtype=dtype)
    X.data = (X.data * 4 - 2).astype(dtype)
    y = (np.asarray(X.sum(axis=1)).ravel() > 0).astype(int) + (np.asarray(X[:, :5].sum(axis=1)).ravel() > 0)
    make = lambda n: MLPClassifier(hidden_layer_sizes=(40, 20), batch_size=40, max_iter=3,
                                   dropout=dropout, random_state=2, n_threads=n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert_same_fit(make, lambda est: est.fit(X, y))
        dense = fitted_state(make(2).fit(X.toarray(), y))
        sparse = fitted_state(make(2).fit(X, y))
    # the sparse epoch is the dense one's arithmetic too, to rounding
    for a, b in zip(sparse[0], dense[0]):
        np.testing.assert_allclose(a, b, rtol=1e-4 if dtype == np.float32 else 1e-10, atol=1e-6)


def test_small_pruned_networks_train_on_one_thread():
    # Below PRUNED_PAR_MIN_WORK stored multiply-adds a batch, the sparse
    # kernels' per-operation parallel regions cost more than they save
    # (two threads ran 0.53-0.66x as fast as one): the epoch runs on one
    # thread, so n_threads=2 gives the one-thread bits.
    import copy

    from sklearn.datasets import load_digits

    from fastmlp.pruning import prune_magnitude, retrain
    from fastmlp.solvers.first_order import PRUNED_PAR_MIN_WORK, epoch_threads

    X, y = load_digits(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base = MLPClassifier((64,), batch_size=50, max_iter=2, random_state=0,
                             n_threads=1).fit(X / 16, y)
        dense_layout = base._layout
        prune_magnitude(base, 0.8)
        assert epoch_threads(base._layout, 50, 2) == 1
        assert epoch_threads(dense_layout, 50, 2) == 2  # dense: the two-core epoch's call
        big = PRUNED_PAR_MIN_WORK // base._layout.n_params + 1
        assert epoch_threads(base._layout, big, 2) == 2
        fits = []
        for n in (1, 2):
            est = copy.deepcopy(base)
            est.n_threads = n
            fits.append(retrain(est, X / 16, y, epochs=2))
    for a, b in zip(fits[0].coefs_ + fits[0].intercepts_, fits[1].coefs_ + fits[1].intercepts_):
        a = a.toarray() if hasattr(a, "toarray") else a
        b = b.toarray() if hasattr(b, "toarray") else b
        np.testing.assert_array_equal(a, b)
