"""What both estimators share: bad input, faults, persistence, determinism."""

import os
import pickle
import signal
import threading
import time
import warnings

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits, make_classification
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fastmlp import DivergenceWarning, MLPClassifier, MLPRegressor

X_SMALL, Y_SMALL = make_classification(60, 5, n_informative=3, random_state=0)


def fit_quiet(est, X, y, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X, y, **kw)


# --------------------------------------------------------------- bad input
@pytest.mark.parametrize("bad,match", [(np.nan, "NaN"), (np.inf, "infinity"), (-np.inf, "infinity")])
@pytest.mark.parametrize("Est", [MLPClassifier, MLPRegressor])
def test_non_finite_X_is_refused(Est, bad, match):
    X = X_SMALL.copy()
    X[3, 2] = bad
    with pytest.raises(ValueError, match=match):
        Est(max_iter=2).fit(X, Y_SMALL)
    est = fit_quiet(Est(max_iter=2), X_SMALL, Y_SMALL)
    with pytest.raises(ValueError, match=match):
        est.predict(X)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_y_and_weights_are_refused(bad):
    y = Y_SMALL.astype(float)
    y[0] = bad
    with pytest.raises(ValueError, match="NaN|infinity"):
        MLPRegressor(max_iter=2).fit(X_SMALL, y)
    sw = np.ones(len(X_SMALL))
    sw[1] = bad
    with pytest.raises(ValueError, match="NaN|infinity"):
        MLPClassifier(max_iter=2).fit(X_SMALL, Y_SMALL, sample_weight=sw)


def test_wrong_number_of_features_at_predict():
    est = fit_quiet(MLPClassifier(max_iter=2), X_SMALL, Y_SMALL)
    with pytest.raises(ValueError, match="5 features"):
        est.predict(X_SMALL[:, :4])
    with pytest.raises(ValueError, match="5 features"):
        est.partial_fit(X_SMALL[:, :4], Y_SMALL)


def test_empty_and_misshapen_data():
    with pytest.raises(ValueError, match="0 sample"):
        MLPClassifier().fit(np.empty((0, 3)), [])
    with pytest.raises(ValueError, match="0 feature"):
        MLPClassifier().fit(np.empty((4, 0)), [0, 1, 0, 1])
    with pytest.raises(ValueError, match="2D array"):
        MLPClassifier().fit(np.arange(4.0), [0, 1, 0, 1])
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        MLPClassifier().fit(X_SMALL, Y_SMALL[:-1])
    with pytest.raises(ValueError, match="requires y"):
        MLPClassifier().fit(X_SMALL, None)


def test_single_class_is_refused():
    with pytest.raises(ValueError, match="only one class"):
        MLPClassifier().fit(X_SMALL, np.zeros(len(X_SMALL)))


def test_continuous_labels_are_refused():
    with pytest.raises(ValueError, match="continuous"):
        MLPClassifier().fit(X_SMALL, np.linspace(0, 1, len(X_SMALL)))


@pytest.mark.parametrize("param,value,match", [
    ("solver", "newton", "solver"),
    ("activation", "gelu", "activation"),
    ("loss", "cross", "loss"),
    ("learning_rate", "fast", "learning_rate"),
    ("alpha", -1.0, "alpha"),
    ("batch_size", 0, "batch_size"),
    ("max_iter", 0, "max_iter"),
    ("init", "zeros", "init"),
    ("momentum", 1.5, "momentum"),
    ("n_threads", 0, "n_threads"),
])
def test_unknown_or_invalid_options(param, value, match):
    with pytest.raises(ValueError, match=match):
        MLPClassifier(**{param: value}).fit(X_SMALL, Y_SMALL)


@pytest.mark.parametrize("sizes", [(0,), (-3,), (10, 0), (2.5,), ("a",)])
def test_bad_layer_sizes(sizes):
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        MLPClassifier(hidden_layer_sizes=sizes).fit(X_SMALL, Y_SMALL)


def test_not_fitted():
    with pytest.raises(NotFittedError):
        MLPClassifier().predict(X_SMALL)


# ------------------------------------------------------------------ faults
def test_divergence_keeps_last_finite_parameters():
    X, y = load_digits(return_X_y=True)
    est = MLPRegressor(hidden_layer_sizes=(50,), solver="sgd", learning_rate_init=1e6, max_iter=20,
                       random_state=0)
    with pytest.warns(DivergenceWarning, match=r"diverged at epoch \d+"):
        est.fit(X, y.astype(float))
    assert all(np.isfinite(c).all() for c in est.coefs_ + est.intercepts_)
    assert np.isfinite(est.predict(X)).all()
    assert est.n_iter_ < 20 and all(np.isfinite(est.loss_curve_))


def test_ctrl_c_leaves_a_usable_model():
    X, y = make_classification(20000, 100, n_informative=20, n_classes=5, random_state=0)
    est = MLPClassifier((256, 256), max_iter=10_000, random_state=0, batch_size=64)
    timer = threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.warns(UserWarning, match="interrupted"):
            est.fit(X, y)
    finally:
        timer.cancel()
    assert 0 <= est.n_iter_ < 10_000
    assert all(np.isfinite(c).all() for c in est.coefs_)
    assert est.predict(X[:10]).shape == (10,)


@pytest.mark.slow
def test_ctrl_c_is_honoured_within_a_second_inside_a_long_epoch():
    rng = np.random.RandomState(0)
    X = rng.rand(100_000, 64)
    y = (X[:, 0] > 0.5).astype(int)
    # An epoch of 12,500 mini-batches through two 1024-unit layers: many seconds.
    est = MLPClassifier((1024, 1024), batch_size=8, max_iter=1, warm_start=True,
                        random_state=0)
    fit_quiet(est, X[:100], y[:100])  # one completed epoch
    completed = [c.copy() for c in est.coefs_ + est.intercepts_]
    sent = {}

    def interrupt():
        sent["at"] = time.perf_counter()
        os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Timer(1.0, interrupt)
    timer.start()
    try:
        with pytest.warns(UserWarning, match="interrupted"):
            est.set_params(max_iter=3).fit(X, y)
    finally:
        timer.cancel()
    latency = time.perf_counter() - sent["at"]
    assert latency < 1.0
    assert est.n_iter_ == 0  # it was inside the first epoch
    # No parameter copy is kept to go back to the epoch's start: the model
    # keeps its last step, which its optimiser state (step count, moments)
    # matches.
    assert int(est._opt_step[0]) > 0
    assert not all(np.array_equal(a, b)
                   for a, b in zip(completed, est.coefs_ + est.intercepts_))
    assert all(np.isfinite(c).all() for c in est.coefs_ + est.intercepts_)
    assert est.predict(X[:5]).shape == (5,)


# ------------------------------------------------- persistence, determinism
@pytest.mark.parametrize("Est", [MLPClassifier, MLPRegressor])
def test_pickle_and_joblib_round_trip(Est, tmp_path):
    est = fit_quiet(Est(hidden_layer_sizes=(8,), max_iter=20, random_state=0), X_SMALL, Y_SMALL)
    theta = est._theta
    clone_ = pickle.loads(pickle.dumps(est))
    assert est._theta is theta  # pickling leaves the live model untouched
    np.testing.assert_array_equal(clone_.predict(X_SMALL), est.predict(X_SMALL))
    joblib.dump(est, tmp_path / "m.joblib")
    again = joblib.load(tmp_path / "m.joblib")
    np.testing.assert_array_equal(again.predict(X_SMALL), est.predict(X_SMALL))
    # The loaded model's views share one parameter vector again, and it trains on.
    assert all(c.base is again._theta for c in again.coefs_)
    fit_quiet(again.set_params(warm_start=True, max_iter=2), X_SMALL, Y_SMALL)


def test_same_seed_same_result_and_threads_agree():
    X, y = make_classification(800, 30, n_informative=10, n_classes=4, random_state=0)
    kw = dict(hidden_layer_sizes=(64, 32), max_iter=5, random_state=7)
    a = fit_quiet(MLPClassifier(n_threads=2, **kw), X, y)
    b = fit_quiet(MLPClassifier(n_threads=2, **kw), X, y)
    c = fit_quiet(MLPClassifier(n_threads=1, **kw), X, y)
    for ca, cb, cc in zip(a.coefs_, b.coefs_, c.coefs_):
        np.testing.assert_array_equal(ca, cb)
        np.testing.assert_allclose(ca, cc, rtol=1e-9, atol=1e-12)
    d = fit_quiet(MLPClassifier(n_threads=2, **{**kw, "random_state": 8}), X, y)
    assert not np.array_equal(a.coefs_[0], d.coefs_[0])


def test_user_assigned_coefs_are_used():
    est = fit_quiet(MLPRegressor(hidden_layer_sizes=(4,), max_iter=5, random_state=0), X_SMALL, Y_SMALL)
    est.coefs_[0] = np.zeros_like(est.coefs_[0])
    est.intercepts_[0][:] = 1.0
    # Every hidden unit now outputs relu(0 + 1) = 1.
    expected = np.full(len(X_SMALL), est.coefs_[1][:, 0].sum() + est.intercepts_[1][0])
    np.testing.assert_allclose(est.predict(X_SMALL), expected)


def test_sklearn_tools_work():
    X, y = X_SMALL, Y_SMALL
    pipe = make_pipeline(StandardScaler(), MLPClassifier((8,), max_iter=30, random_state=0))
    grid = GridSearchCV(pipe, {"mlpclassifier__alpha": [1e-4, 1e-2]}, cv=3)
    fit_quiet(grid, X, y)
    assert grid.best_estimator_.predict(X).shape == (60,)
    c = clone(MLPClassifier(l1=0.1, init="he"))
    assert c.get_params()["l1"] == 0.1 and not hasattr(c, "coefs_")


def test_warm_start_continues_and_rejects_new_classes():
    est = MLPClassifier((8,), max_iter=5, warm_start=True, random_state=0)
    fit_quiet(est, X_SMALL, Y_SMALL)
    first = est.coefs_[0].copy()
    fit_quiet(est, X_SMALL, Y_SMALL)
    assert len(est.loss_curve_) == 10 and not np.array_equal(first, est.coefs_[0])
    with pytest.raises(ValueError, match="warm_start can only be used"):
        est.fit(X_SMALL, Y_SMALL + 5)


def test_verbose_reports_each_epoch(capsys):
    fit_quiet(MLPClassifier((4,), max_iter=3, verbose=True, early_stopping=True,
                            random_state=0), X_SMALL, Y_SMALL)
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 3
    assert all("loss =" in l and "validation score =" in l and "time =" in l for l in out)


def test_read_only_memmap_and_fortran_input(tmp_path):
    path = tmp_path / "X.npy"
    np.save(path, np.asfortranarray(X_SMALL))
    X = np.load(path, mmap_mode="r")
    assert not X.flags.writeable and X.flags.f_contiguous
    est = fit_quiet(MLPClassifier((8,), max_iter=5, random_state=0), X, Y_SMALL)
    ref = fit_quiet(MLPClassifier((8,), max_iter=5, random_state=0), X_SMALL, Y_SMALL)
    np.testing.assert_allclose(est.predict_proba(X), ref.predict_proba(X_SMALL))


@pytest.mark.parametrize("Est", [MLPClassifier, MLPRegressor])
def test_fast_and_validated_predict_paths_agree(Est, dtype):
    # A C-contiguous array of the model's dtype skips scikit-learn's checks;
    # lists and other layouts go through them: same answers.
    X = X_SMALL.astype(dtype)
    est = fit_quiet(Est(hidden_layer_sizes=(8,), max_iter=5, random_state=0), X, Y_SMALL)
    fast = est.predict(X)
    for other in (X.tolist(), np.asfortranarray(X), np.repeat(X, 2, axis=0)[::2]):
        np.testing.assert_allclose(est.predict(other), fast, rtol=1e-5)
    # One row (gemv, not gemm) agrees with the same row in a batch.
    np.testing.assert_allclose(est.predict(X[3:4]), fast[3:4], rtol=1e-5)


def test_parameter_checks_see_every_change_between_fits():
    # The constraint objects are made once per class; the values are read
    # on every fit, including a list changed in place.
    from sklearn.utils._param_validation import InvalidParameterError

    X, y = make_classification(60, 4, random_state=0)
    est = MLPClassifier((5,), max_iter=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y)
    est.set_params(alpha=-1.0)
    for _ in range(2):  # an invalid value is not remembered as checked
        with pytest.raises(InvalidParameterError,
                           match=r"The 'alpha' parameter of MLPClassifier must be a float in "
                                 r"the range \[0.0, inf\). Got -1.0 instead."):
            est.fit(X, y)
    est.set_params(alpha=0.0, hidden_layer_sizes=[5])
    est.hidden_layer_sizes.append(0)
    with pytest.raises(ValueError, match="hidden_layer_sizes must be positive integers"):
        est.fit(X, y)
    assert MLPClassifier._get_param_names() == sorted(MLPClassifier().get_params())


def test_fit_on_a_plain_array_after_a_data_frame_forgets_the_names():
    pd = pytest.importorskip("pandas")
    X, y = make_classification(60, 4, random_state=0)
    est = MLPClassifier((5,), max_iter=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(pd.DataFrame(X, columns=list("abcd")), y)
        assert list(est.feature_names_in_) == list("abcd")
        est.fit(np.asfortranarray(X[:, :3]), y)
    assert not hasattr(est, "feature_names_in_") and est.n_features_in_ == 3
    est.set_params(warm_start=True)
    with pytest.raises(ValueError, match="X has 4 features, but MLPClassifier is expecting 3"):
        est.fit(X, y)
