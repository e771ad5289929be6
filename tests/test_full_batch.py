"""The full-batch solvers ('lbfgs', 'bfgs', 'hf') through the estimators:
progress, stopping, early stopping, warm starts, faults, persistence."""

import os
import pickle
import re
import signal
import threading
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import load_digits, make_classification, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

from fastmlp import DivergenceWarning, MLPClassifier, MLPRegressor

SOLVERS = ["lbfgs", "bfgs", "hf"]


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X / 16.0, y, test_size=0.25, random_state=0)


def quiet(fn):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn()


@pytest.mark.parametrize("solver", SOLVERS)
def test_fits_digits_and_reports_every_iteration(solver, digits, capsys):
    Xtr, Xte, ytr, yte = digits
    clf = MLPClassifier((30,), solver=solver, max_iter=25, random_state=0, verbose=True,
                        damping=0.1, curvature_batch_size=200, n_threads=1, tol=0)
    with pytest.warns(ConvergenceWarning, match=f"{solver} failed to converge after 25"):
        clf.fit(Xtr, ytr)
    assert clf.n_iter_ == 25 == len(clf.loss_curve_)
    assert clf.loss_ == clf.loss_curve_[-1] < 0.2 * clf.loss_curve_[0]
    assert clf.score(Xte, yte) > 0.9
    lines = capsys.readouterr().out.strip().splitlines()
    assert [int(re.match(r"Iteration (\d+), loss = ", line).group(1)) for line in lines] \
        == list(range(1, 26))
    assert all(("damping = " in line) == (solver == "hf") for line in lines)


@pytest.mark.parametrize("solver", ["bfgs", "hf"])
def test_regressor_float32_and_sparse(solver):
    X, y = make_regression(150, 8, noise=1.0, random_state=0)
    y = y / y.std()
    kw = dict(hidden_layer_sizes=(16,), solver=solver, max_iter=30, random_state=0, tol=0,
              damping=0.1, curvature_batch_size=200, n_threads=1)
    reg = quiet(lambda: MLPRegressor(**kw).fit(X, y))
    assert reg.score(X, y) > 0.9
    reg32 = quiet(lambda: MLPRegressor(**kw).fit(X.astype(np.float32), y))
    assert reg32.coefs_[0].dtype == np.float32 and reg32.score(X, y) > 0.9
    Xs = X.copy()
    Xs[np.abs(Xs) < 0.5] = 0
    dense = quiet(lambda: MLPRegressor(**kw).fit(Xs, y))
    csr = quiet(lambda: MLPRegressor(**kw).fit(sp.csr_matrix(Xs), y))
    # The same run up to rounding, which the iterations amplify (and which can
    # flip HF's choice between two CG iterates of near-equal loss).
    np.testing.assert_allclose(csr.loss_curve_[:5], dense.loss_curve_[:5], rtol=1e-4)


def test_hf_hessian_curvature(digits):
    Xtr, Xte, ytr, yte = digits
    clf = quiet(lambda: MLPClassifier((30,), solver="hf", curvature="hessian", max_iter=15,
                                      random_state=0, damping=0.1, curvature_batch_size=200, n_threads=1).fit(Xtr, ytr))
    assert clf.loss_curve_[-1] < 0.2 * clf.loss_curve_[0]


def test_hf_stops_when_the_loss_stops_improving(digits):
    Xtr, _, ytr, _ = digits
    clf = MLPClassifier((10,), solver="hf", max_iter=500, random_state=0, tol=1e-2,
                        n_iter_no_change=2, damping=0.1, curvature_batch_size=200, n_threads=1).fit(Xtr, ytr)
    assert clf.n_iter_ < 500
    curve = clf.loss_curve_
    # n_iter_no_change + 1 iterations in a row, none beating the best by tol.
    assert all(curve[k] > min(curve[:k]) - 1e-2 for k in range(len(curve) - 3, len(curve)))


def test_bfgs_refuses_a_large_network(digits):
    Xtr, _, ytr, _ = digits
    clf = MLPClassifier((200,), solver="bfgs")
    with pytest.raises(ValueError, match=r"15,010 parameters.*'lbfgs'.*'hf'"):
        clf.fit(Xtr, ytr)
    assert not hasattr(clf, "coefs_")


@pytest.mark.parametrize("param,value", [("curvature", "newton"), ("damping", 0.0),
                                         ("max_cg_iter", 0), ("curvature_batch_size", 0)])
def test_invalid_options(param, value, digits):
    Xtr, _, ytr, _ = digits
    with pytest.raises(ValueError, match=param):
        MLPClassifier(solver="hf", **{param: value}).fit(Xtr[:50], ytr[:50])


# ------------------------------------------------------------ early stopping
@pytest.mark.parametrize("solver", ["bfgs", "hf"])
def test_early_stopping_is_honoured(solver, digits, monkeypatch):
    import fastmlp._full_batch as full_batch

    Xtr, _, ytr, _ = digits
    split = full_batch._validation_split
    held_out = []

    def spy(*args):
        out = split(*args)
        held_out.append(out[1])
        return out

    monkeypatch.setattr(full_batch, "_validation_split", spy)
    clf = MLPClassifier((30,), solver=solver, max_iter=300, random_state=0, early_stopping=True,
                        n_iter_no_change=3, tol=0, damping=0.1, curvature_batch_size=200, n_threads=1)
    quiet(lambda: clf.fit(Xtr, ytr))
    assert clf.n_iter_ < 300
    assert len(clf.validation_scores_) == clf.n_iter_
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    assert clf.validation_scores_[-1] < clf.best_validation_score_
    # The best iterate's parameters are kept, not the last one's.
    val = held_out[0]
    assert clf.score(Xtr[val], ytr[val]) == clf.best_validation_score_


def test_lbfgs_ignores_early_stopping_as_scikit_learn_does(digits):
    Xtr, _, ytr, _ = digits
    kw = dict(hidden_layer_sizes=(20,), solver="lbfgs", max_iter=20, random_state=0)
    a = quiet(lambda: MLPClassifier(early_stopping=True, **kw).fit(Xtr, ytr))
    b = quiet(lambda: MLPClassifier(**kw).fit(Xtr, ytr))
    assert a.validation_scores_ is None
    np.testing.assert_array_equal(a.coefs_[0], b.coefs_[0])


# --------------------------------------------------------------- warm starts
@pytest.mark.parametrize("solver", SOLVERS)
def test_warm_start_continues_the_run(solver, digits):
    """fit(k) then fit(k) is one fit(2k): the curvature (L-BFGS pairs, BFGS
    matrix, HF damping and batch stream) is kept between fits (#13656)."""
    Xtr, _, ytr, _ = digits
    kw = dict(hidden_layer_sizes=(20,), solver=solver, random_state=0, tol=0, damping=0.1, curvature_batch_size=200, n_threads=1)
    one = quiet(lambda: MLPClassifier(max_iter=20, **kw).fit(Xtr, ytr))
    warm = MLPClassifier(max_iter=10, warm_start=True, **kw)
    quiet(lambda: warm.fit(Xtr, ytr))
    quiet(lambda: warm.fit(Xtr, ytr))
    np.testing.assert_allclose(warm.loss_curve_, one.loss_curve_, rtol=1e-12)
    for a, b in zip(warm.coefs_ + warm.intercepts_, one.coefs_ + one.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    assert warm.n_iter_ == 10  # per call, as scikit-learn's lbfgs counts
    # Pickles leave the (large) solver state out; a warm fit then starts afresh.
    copy = pickle.loads(pickle.dumps(warm))
    assert "_solver_state" not in copy.__dict__
    np.testing.assert_array_equal(copy.predict(Xtr), warm.predict(Xtr))
    quiet(lambda: copy.fit(Xtr, ytr))


def test_lbfgs_warm_start_beats_a_cold_restart(digits):
    """scikit-learn's #13656: restarting L-BFGS without its pairs (what
    scikit-learn's warm start does) loses ground at every restart."""
    Xtr, _, ytr, _ = digits
    kw = dict(hidden_layer_sizes=(20,), solver="lbfgs", random_state=0, tol=0, max_iter=10,
              warm_start=True)
    warm, cold = MLPClassifier(**kw), MLPClassifier(**kw)
    for _ in range(4):
        quiet(lambda: warm.fit(Xtr, ytr))
        cold.__dict__.pop("_solver_state", None)
        quiet(lambda: cold.fit(Xtr, ytr))
    assert warm.loss_ < cold.loss_


# --------------------------------------------------------------------- faults
@pytest.mark.parametrize("solver", SOLVERS)
def test_non_finite_loss_keeps_finite_parameters(solver):
    X, y = make_regression(60, 5, random_state=0)
    y = np.abs(y)
    reg = MLPRegressor(hidden_layer_sizes=(10,), loss="poisson", solver=solver, max_iter=5, random_state=0)
    with pytest.warns(DivergenceWarning, match="non-finite"):
        reg.fit(X * 1e4, y)
    assert all(np.isfinite(c).all() for c in reg.coefs_ + reg.intercepts_)
    assert reg.n_iter_ == 0


@pytest.mark.parametrize("solver", SOLVERS)
def test_ctrl_c_leaves_a_usable_model(solver):
    X, y = make_classification(20000, 20, n_informative=10, n_classes=5, random_state=0)
    est = MLPClassifier((64,), solver=solver, max_iter=10_000, tol=0, random_state=0,
                        damping=0.1)
    timer = threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.warns(UserWarning, match="interrupted"):
            est.fit(X, y)
    finally:
        timer.cancel()
    assert 0 <= est.n_iter_ < 10_000 and len(est.loss_curve_) == est.n_iter_
    assert all(np.isfinite(c).all() for c in est.coefs_)
    assert est.predict(X[:10]).shape == (10,)


# ------------------------------------------- with the estimators' other features
@pytest.mark.parametrize("solver", SOLVERS)
def test_class_weight_is_a_sample_weight(solver, digits):
    """class_weight enters the objective (and HF's curvature and Fisher
    statistics) as sample weights do."""
    Xtr, _, ytr, _ = digits
    kw = dict(hidden_layer_sizes=(12,), solver=solver, max_iter=8, random_state=0, n_threads=1,
              curvature_batch_size=300)
    weights = {c: 1.0 + c / 3 for c in range(10)}
    a = quiet(lambda: MLPClassifier(class_weight=weights, **kw).fit(Xtr, ytr))
    b = quiet(lambda: MLPClassifier(**kw).fit(Xtr, ytr, sample_weight=[weights[c] for c in ytr]))
    np.testing.assert_array_equal(a.loss_curve_, b.loss_curve_)
    for x, y in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("solver", SOLVERS)
def test_per_layer_activations_and_l1(solver, digits):
    Xtr, Xte, ytr, yte = digits
    clf = quiet(lambda: MLPClassifier((24, 16), activation=("tanh", "logistic"), solver=solver,
                                      l1=1e-4, max_iter=40, random_state=0, damping=0.1,
                                      curvature_batch_size=400).fit(Xtr, ytr))
    assert clf.loss_curve_[-1] < 0.3 * clf.loss_curve_[0]
    assert clf.score(Xte, yte) > 0.85


@pytest.mark.parametrize("solver", SOLVERS)
def test_dropout_is_refused(solver, digits):
    Xtr, _, ytr, _ = digits
    with pytest.raises(ValueError, match="dropout needs a first-order solver"):
        MLPClassifier((8,), solver=solver, dropout=0.2).fit(Xtr, ytr)


@pytest.mark.parametrize("solver", SOLVERS)
def test_callbacks_see_each_iterate_as_the_parameters(solver, digits):
    # Without early stopping too: a callback may score a held-out set itself.
    Xtr, Xte, ytr, yte = digits
    seen = []

    class Record:
        def on_epoch_end(self, est, info):
            seen.append((est.coefs_[0].copy(), est.score(Xte, yte)))

    clf = quiet(lambda: MLPClassifier((10,), solver=solver, max_iter=4, random_state=0,
                                      tol=0.0, curvature_batch_size=300,
                                      callbacks=[Record()]).fit(Xtr, ytr))
    assert len(seen) == 4
    assert not np.array_equal(seen[0][0], seen[-1][0])
    np.testing.assert_array_equal(seen[-1][0], clf.coefs_[0])
    assert seen[-1][1] == clf.score(Xte, yte)


@pytest.mark.parametrize("solver", SOLVERS)
def test_callbacks_run_every_iteration_and_can_stop(solver, digits):
    from fastmlp.callbacks import History

    Xtr, _, ytr, _ = digits

    class StopAt:
        def __init__(self):
            self.infos = []

        def on_epoch_end(self, est, info):
            self.infos.append(info)
            return info["epoch"] == 4

    stop, history = StopAt(), History()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # a callback stop is no failure
        clf = MLPClassifier((10,), solver=solver, max_iter=50, random_state=0,
                            early_stopping=solver != "lbfgs", curvature_batch_size=300,
                            callbacks=[stop, history]).fit(Xtr, ytr)
    assert clf.n_iter_ == 4 == len(clf.loss_curve_) == len(stop.infos)
    assert [i["loss"] for i in stop.infos] == clf.loss_curve_
    assert all(i["learning_rate"] is None and i["seconds"] >= 0 for i in stop.infos)
    if solver != "lbfgs":
        assert all(i["validation_loss"] > 0 for i in stop.infos)
        assert len(clf.validation_loss_curve_) == 4


@pytest.mark.parametrize("solver", ["lbfgs", "bfgs"])
def test_quasi_newton_fits_on_two_threads_agree_with_one(solver):
    # Two threads take a share of the rows each in every pass (src/_objective.pyx):
    # the same sums regrouped, so the fits agree to rounding, and repeat exactly.
    X, y = make_classification(1200, 12, n_informative=6, n_classes=3, random_state=0)
    fit = lambda n: MLPClassifier((16,), solver=solver, max_iter=15, random_state=0,
                                  n_threads=n).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        one, two, again = fit(1), fit(2), fit(2)
    for a, b, c in zip(one.coefs_ + one.intercepts_, two.coefs_ + two.intercepts_,
                       again.coefs_ + again.intercepts_):
        np.testing.assert_allclose(b, a, rtol=1e-7, atol=1e-9)
        np.testing.assert_array_equal(b, c)
    assert one.n_iter_ == two.n_iter_
