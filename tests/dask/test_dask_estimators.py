"""fastmlp.dask.MLPClassifier / MLPRegressor against the local estimators."""

import inspect
import pickle
import subprocess
import sys
import warnings

import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from distributed import Client, default_client
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning

import fastmlp
import fastmlp.dask
from fastmlp.dask import MLPClassifier, MLPRegressor

from dask_helpers import make_data

CHUNKS = (150, 37, 213, 200)  # 600 rows, uneven
PARAMS = dict(hidden_layer_sizes=(12,), max_iter=20, random_state=0, tol=0.0, alpha=1e-3)
QUICK = dict(PARAMS, max_iter=6)  # where 20 iterations prove nothing more

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def chunked(*arrays, chunks=CHUNKS):
    return [da.from_array(a, chunks=(chunks,) + a.shape[1:]) for a in arrays]


@pytest.mark.parametrize("Dask, Local", [(MLPClassifier, fastmlp.MLPClassifier),
                                         (MLPRegressor, fastmlp.MLPRegressor)])
def test_parameters_are_the_local_ones_plus_client(Dask, Local):
    local = Local().get_params()
    params = Dask().get_params()
    assert set(params) == set(local) | {"client", "curvature_on"}
    assert params["solver"] == "lbfgs" and params["client"] is None
    assert params["curvature_on"] == "auto"
    assert {k: v for k, v in params.items()
            if k not in ("client", "solver", "curvature_on")} == {
        k: v for k, v in local.items() if k != "solver"}
    assert {"client", "curvature_on"} <= set(inspect.signature(Dask).parameters)
    est = Dask(alpha=0.5, client=None)
    assert clone(est).get_params() == est.get_params()
    assert not hasattr(est, "partial_fit")


@pytest.mark.parametrize("weighted", [False, True])
def test_classifier_follows_local_loss_curve(client, weighted):
    X, y, sw = make_data()
    sw = sw if weighted else None
    local = fastmlp.MLPClassifier(solver="lbfgs", **PARAMS).fit(X, y, sample_weight=sw)
    Xd, yd = chunked(X, y)
    dist = MLPClassifier(client=client, **PARAMS).fit(Xd, yd, sample_weight=sw)
    assert len(dist.loss_curve_) == len(local.loss_curve_) == 20
    np.testing.assert_allclose(dist.loss_curve_, local.loss_curve_, rtol=1e-10)
    assert dist.n_iter_ == local.n_iter_
    for a, b in zip(dist.coefs_, local.coefs_):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)
    np.testing.assert_array_equal(dist.classes_, local.classes_)
    assert dist.n_features_in_ == 8 and dist.out_activation_ == "softmax"


@pytest.mark.parametrize("class_weight, target", [
    ({0: 2.0, 2: 0.5}, "multiclass"), ("balanced", "multiclass"), ("balanced", "binary"),
    ("balanced", "multilabel"), ([{0: 1.0, 1: 3.0}, {1: 0.5}, {0: 2.0}], "multilabel")])
def test_class_weight_follows_local_fit(client, class_weight, target):
    X, y, sw = make_data()
    if target == "binary":
        y = (y == 1).astype(int)
    elif target == "multilabel":
        y = np.stack([y == 0, y != 1, X[:, 0] > 1.0], axis=1).astype(int)
    params = dict(QUICK, class_weight=class_weight)
    local = fastmlp.MLPClassifier(solver="lbfgs", **params).fit(X, y, sample_weight=sw)
    Xd, yd, swd = chunked(X, y, sw)
    dist = MLPClassifier(client=client, **params).fit(Xd, yd, sample_weight=swd)
    np.testing.assert_allclose(dist.loss_curve_, local.loss_curve_, rtol=1e-10)
    # Weights matter: an unweighted fit follows another curve.
    plain = MLPClassifier(client=client, **QUICK).fit(Xd, yd, sample_weight=swd)
    assert abs(plain.loss_curve_[-1] - dist.loss_curve_[-1]) > 1e-6


def test_class_weight_errors_are_the_local_ones(client):
    X, y, _ = make_data()
    Xd, yd = chunked(X, y)
    with pytest.raises(ValueError, match="not classes"):
        MLPClassifier(client=client, class_weight={7: 2.0}, **QUICK).fit(Xd, yd)
    with pytest.raises(ValueError, match="multilabel"):
        MLPClassifier(client=client, class_weight=[{0: 1.0}], **QUICK).fit(Xd, yd)
    Y = np.stack([y == 0, y == 1], axis=1).astype(int)
    with pytest.raises(ValueError, match="list of one dict per label"):
        MLPClassifier(client=client, class_weight={0: 1.0}, **QUICK).fit(*chunked(X, Y))
    with pytest.raises(ValueError, match="non-negative"):
        MLPClassifier(client=client, class_weight={0: -1.0}, **QUICK).fit(Xd, yd)


def test_regressor_follows_local_loss_curve(client):
    X, y, sw = make_data(task="regression")
    local = fastmlp.MLPRegressor(solver="lbfgs", **PARAMS).fit(X, y, sample_weight=sw)
    Xd, yd, swd = chunked(X, y, sw)
    dist = MLPRegressor(client=client, **PARAMS).fit(Xd, yd, sample_weight=swd)
    np.testing.assert_allclose(dist.loss_curve_, local.loss_curve_, rtol=1e-10)


def test_two_fits_with_the_same_seed_are_identical(client):
    X, y, _ = make_data()
    Xd, yd = chunked(X, y)
    a = MLPClassifier(client=client, **QUICK).fit(Xd, yd)
    b = MLPClassifier(client=client, **QUICK).fit(Xd, yd)
    assert a.loss_curve_ == b.loss_curve_
    for ca, cb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_array_equal(ca, cb)


def test_sample_weight_is_split_with_its_rows(client):
    """Weights given in memory, or as dask arrays chunked unlike X, follow
    their rows: the fit equals the local weighted one."""
    X, y, sw = make_data(task="regression")
    local = fastmlp.MLPRegressor(solver="lbfgs", **QUICK).fit(X, y, sample_weight=sw)
    Xd, yd = chunked(X, y)
    for weights in (sw, da.from_array(sw, chunks=77)):
        dist = MLPRegressor(client=client, **QUICK).fit(Xd, yd, sample_weight=weights)
        np.testing.assert_allclose(dist.loss_curve_, local.loss_curve_, rtol=1e-10)
    # Doubling the weight of the first half is not doubling the last half's.
    sw2 = sw.copy()
    sw2[:300] *= 2
    dist = MLPRegressor(client=client, **QUICK).fit(Xd, yd, sample_weight=sw2)
    ref = fastmlp.MLPRegressor(solver="lbfgs", **QUICK).fit(X, y, sample_weight=sw2)
    np.testing.assert_allclose(dist.loss_curve_, ref.loss_curve_, rtol=1e-10)
    assert abs(dist.loss_curve_[-1] - local.loss_curve_[-1]) > 1e-6


@pytest.mark.parametrize("kind", ["multiclass", "binary", "multilabel"])
def test_predict_equals_local_predict(client, kind):
    X, y, _ = make_data()
    if kind == "binary":
        y = np.where(y == 0, "no", "yes")
    elif kind == "multilabel":
        y = np.stack([y == 0, y == 1, X[:, 0] > 0], axis=1).astype(int)
    Xd, yd = chunked(X, y)
    dist = MLPClassifier(client=client, **QUICK).fit(Xd, yd)
    local = dist._local_estimator()
    pred = dist.predict(Xd)
    assert isinstance(pred, da.Array)
    np.testing.assert_array_equal(pred.compute(), local.predict(X))
    proba = dist.predict_proba(Xd)
    assert isinstance(proba, da.Array) and proba.chunks[0] == CHUNKS
    # Rows computed in other blocks may round differently in BLAS (1 ulp).
    np.testing.assert_allclose(proba.compute(), local.predict_proba(X), rtol=1e-12,
                               atol=1e-15)
    np.testing.assert_allclose(dist.predict_log_proba(Xd).compute(),
                               local.predict_log_proba(X), rtol=1e-12)
    np.testing.assert_array_equal(dist.predict(X), local.predict(X))  # in memory
    assert dist.score(Xd, yd) == pytest.approx(local.score(X, y), abs=1e-12)


def test_regressor_predict_and_score(client):
    X, y, sw = make_data(task="regression")
    Xd, yd, swd = chunked(X, y, sw)
    dist = MLPRegressor(client=client, **QUICK).fit(Xd, yd)
    local = dist._local_estimator()
    pred = dist.predict(Xd)
    assert isinstance(pred, da.Array) and pred.ndim == 1
    np.testing.assert_allclose(pred.compute(), local.predict(X), rtol=1e-12, atol=1e-15)
    assert dist.score(Xd, yd) == pytest.approx(local.score(X, y), rel=1e-12)
    assert dist.score(Xd, yd, sample_weight=swd) == pytest.approx(
        local.score(X, y, sample_weight=sw), rel=1e-12)
    Y2 = np.column_stack([y, -2 * y])
    dist2 = MLPRegressor(client=client, **QUICK).fit(Xd, chunked(Y2)[0])
    assert dist2.predict(Xd).shape == (600, 2)
    assert dist2.score(Xd, Y2) == pytest.approx(dist2._local_estimator().score(X, Y2), rel=1e-12)


def test_dask_dataframe_input(client):
    X, y, _ = make_data()
    names = [f"f{i}" for i in range(X.shape[1])]
    frame = pd.DataFrame(X, columns=names)
    frame["target"] = y
    ddf = dd.from_pandas(frame, npartitions=4)
    dist = MLPClassifier(client=client, **QUICK).fit(ddf[names], ddf["target"])
    np.testing.assert_array_equal(dist.feature_names_in_, names)
    local = fastmlp.MLPClassifier(solver="lbfgs", **QUICK).fit(frame[names], y)
    np.testing.assert_allclose(dist.loss_curve_, local.loss_curve_, rtol=1e-10)
    pred = dist.predict(ddf[names])
    assert isinstance(pred, da.Array)
    np.testing.assert_array_equal(pred.compute(), local.predict(frame[names]))
    assert dist.score(ddf[names], ddf["target"]) == pytest.approx(local.score(frame[names], y))
    with pytest.raises(ValueError, match="feature names"):
        dist.predict(ddf[names[::-1]])


def test_clone_shares_the_client(client):
    est = MLPClassifier(client=client, alpha=0.3)
    copy = clone(est)
    assert copy.client is client and copy.alpha == 0.3 and est.client is client


def test_pickle_and_warm_start(client):
    X, y, _ = make_data()
    Xd, yd = chunked(X, y)
    dist = MLPClassifier(client=client, **PARAMS).fit(Xd, yd)
    loaded = pickle.loads(pickle.dumps(dist))
    assert loaded.client is None and dist.client is client
    np.testing.assert_array_equal(loaded.predict(X), dist.predict(X))
    # warm_start continues where the last fit stopped.
    dist.set_params(warm_start=True, max_iter=5)
    start = dist.coefs_[0].copy()
    dist.fit(Xd, yd)
    assert len(dist.loss_curve_) == 25  # continued, as locally
    assert dist.loss_curve_[20] < loaded.loss_curve_[-1]
    assert not np.array_equal(start, dist.coefs_[0])


def test_first_order_solvers_are_refused_clearly(client):
    X, y, _ = make_data()
    Xd, yd = chunked(X, y)
    with pytest.raises(ValueError, match="Incremental"):
        MLPClassifier(solver="adam", client=client).fit(Xd, yd)


def test_callbacks_and_unsupported_parameters(client):
    X, y, _ = make_data()
    Xd, yd = chunked(X, y)
    seen = []

    class Stop:
        def on_epoch_end(self, est, info):
            seen.append(info["loss"])
            return len(seen) == 3

    est = MLPClassifier(client=client, callbacks=[Stop()], **PARAMS).fit(Xd, yd)
    assert len(seen) == 3 and est.loss_curve_ == seen
    with pytest.raises(ValueError, match="dropout"):
        MLPClassifier(client=client, dropout=0.5, **QUICK).fit(Xd, yd)
    with pytest.raises(ValueError, match="checkpoint is not supported"):
        MLPClassifier(client=client, checkpoint="ckpt.fastmlp", **QUICK).fit(Xd, yd)


def test_bad_input(client):
    X, y, _ = make_data()
    Xd, yd = chunked(X, y)
    with pytest.raises(TypeError, match="dask"):
        MLPClassifier(client=client).fit(X, y)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        MLPClassifier(client=client).fit(Xd, y[:-1])
    Xbad = X.copy()
    Xbad[400, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity"):
        MLPClassifier(client=client, **QUICK).fit(chunked(Xbad)[0], yd)
    with pytest.raises(ValueError, match="negative"):
        MLPRegressor(loss="poisson", client=client, **QUICK).fit(Xd, -np.abs(y) - 1.0)
    with pytest.raises(ValueError, match="at least 2 classes"):
        MLPClassifier(client=client, **QUICK).fit(Xd, np.zeros(600))


def test_local_estimators_refuse_dask_collections():
    X, y, _ = make_data()
    Xd, yd = chunked(X, y)
    with pytest.raises(TypeError, match="fastmlp.dask"):
        fastmlp.MLPClassifier().fit(Xd, y)


def test_no_client_starts_and_closes_a_local_cluster(monkeypatch):
    import fastmlp.dask._client as client_module

    with pytest.raises(ValueError):
        default_client()  # no active client: the fit must make its own
    started = []
    real = client_module.LocalCluster

    def spy(*args, **kwargs):
        cluster = real(*args, **kwargs)
        started.append(cluster)
        return cluster

    monkeypatch.setattr(client_module, "LocalCluster", spy)
    X, y, _ = make_data()
    Xd, yd = chunked(X, y)
    dist = MLPClassifier(n_threads=1, **QUICK).fit(Xd, yd)
    assert len(started) == 1 and started[0].status.name == "closed"
    local = fastmlp.MLPClassifier(solver="lbfgs", **QUICK).fit(X, y)
    np.testing.assert_allclose(dist.loss_curve_, local.loss_curve_, rtol=1e-10)


def test_active_client_is_used(client, monkeypatch):
    import fastmlp.dask._client as client_module

    def refuse(*args, **kwargs):
        raise AssertionError("started a LocalCluster although a client is active")

    monkeypatch.setattr(client_module, "LocalCluster", refuse)
    X, y, _ = make_data()
    Xd, yd = chunked(X, y)
    with Client(client.scheduler.address, set_as_default=True):
        MLPClassifier(**QUICK).fit(Xd, yd)


def test_import_without_dask_says_how_to_install():
    code = ("import sys; sys.modules['distributed'] = None\n"
            "try:\n    import fastmlp.dask\n"
            "except ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=str(__import__("pathlib").Path(fastmlp.__file__).parents[1]))
    assert 'pip install "fastmlp[dask]"' in out.stdout, out.stderr


def test_convergence_warning_like_local(client):
    X, y, _ = make_data()
    Xd, yd = chunked(X, y)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        MLPClassifier(client=client, **QUICK).fit(Xd, yd)
    assert any(issubclass(w.category, ConvergenceWarning) for w in caught)
