"""Second-order solvers on a cluster ('hf', 'bfgs'): the distributed fit
follows the local one, and is deterministic (fastmlp/dask/_base.py)."""

import numpy as np
import pytest
from sklearn.utils._param_validation import InvalidParameterError

import fastmlp
from fastmlp.dask import MLPClassifier, MLPRegressor

from dask_helpers import make_data
from test_dask_estimators import chunked

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

HF = dict(solver="hf", hidden_layer_sizes=(12,), max_iter=8, random_state=0, tol=0.0,
          alpha=1e-3, curvature_batch_size=150, max_cg_iter=30)


@pytest.mark.parametrize("curvature_on", ["client", "workers"])
@pytest.mark.parametrize("curvature", ["gauss-newton", "hessian"])
def test_hf_follows_local_fit(client, curvature_on, curvature):
    X, y, sw = make_data()
    params = dict(HF, curvature=curvature)
    local = fastmlp.MLPClassifier(**params).fit(X, y, sample_weight=sw)
    Xd, yd, swd = chunked(X, y, sw)
    dist = MLPClassifier(client=client, curvature_on=curvature_on, **params).fit(
        Xd, yd, sample_weight=swd)
    assert len(dist.loss_curve_) == len(local.loss_curve_) == 8
    # Sums are added in another order; CG (which stops at the first direction
    # of non-positive curvature with 'hessian') carries the 1e-16 differences on.
    np.testing.assert_allclose(dist.loss_curve_, local.loss_curve_, rtol=1e-6)
    assert dist.loss_curve_[-1] < 0.7 * dist.loss_curve_[0]
    for a, b in zip(dist.coefs_, local.coefs_):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_hf_regressor_follows_local_fit(client):
    X, y, sw = make_data(task="regression")
    local = fastmlp.MLPRegressor(**HF).fit(X, y)
    dist = MLPRegressor(client=client, **HF).fit(*chunked(X, y))
    np.testing.assert_allclose(dist.loss_curve_, local.loss_curve_, rtol=1e-6)


def test_hf_fits_with_the_same_seed_are_identical(client):
    X, y, _ = make_data()
    Xd, yd = chunked(X, y)
    for where in ("client", "workers"):
        a = MLPClassifier(client=client, curvature_on=where, **HF).fit(Xd, yd)
        b = MLPClassifier(client=client, curvature_on=where, **HF).fit(Xd, yd)
        assert a.loss_curve_ == b.loss_curve_
        for ca, cb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
            np.testing.assert_array_equal(ca, cb)


def test_bfgs_follows_local_fit(client):
    X, y, _ = make_data()
    params = dict(HF, solver="bfgs", max_iter=15)
    local = fastmlp.MLPClassifier(**params).fit(X, y)
    dist = MLPClassifier(client=client, **params).fit(*chunked(X, y))
    np.testing.assert_allclose(dist.loss_curve_, local.loss_curve_, rtol=1e-9)


def test_warm_start_continues_the_hf_run(client):
    X, y, _ = make_data()
    Xd, yd = chunked(X, y)
    params = dict(HF, max_iter=4, warm_start=True)
    local = fastmlp.MLPClassifier(**params).fit(X, y).fit(X, y)
    dist = MLPClassifier(client=client, **params).fit(Xd, yd).fit(Xd, yd)
    np.testing.assert_allclose(dist.loss_curve_, local.loss_curve_, rtol=1e-6)


def test_unsupported_second_order_settings(client):
    X, y, _ = make_data()
    Xd, yd = chunked(X, y)
    with pytest.raises(InvalidParameterError, match="curvature_on"):
        MLPClassifier(client=client, curvature_on="gpu", **HF).fit(Xd, yd)


@pytest.mark.parametrize("solver", ["hf", "bfgs"])
def test_held_out_score_in_a_callback_stops_the_fit(client, solver):
    # The estimator holds each iterate while the callbacks run, so one can
    # score held-out dask data of one's own.
    X, y, _ = make_data(n=800)
    Xd, yd = chunked(X[:600], y[:600])
    Xv, yv = chunked(X[600:], y[600:], chunks=(120, 80))

    class HeldOut:
        def __init__(self):
            self.scores, self.best = [], None

        def on_epoch_end(self, est, info):
            self.scores.append(est.score(Xv, yv))
            if self.best is None or self.scores[-1] > self.scores[self.best]:
                self.best = len(self.scores) - 1
            return len(self.scores) - 1 - self.best >= 2  # 2 iterations without gain

    held = HeldOut()
    est = MLPClassifier(client=client, callbacks=[held], **dict(HF, solver=solver,
                                                                  max_iter=40)).fit(Xd, yd)
    assert est.n_iter_ == len(held.scores) < 40
    assert held.scores[-1] == est.score(Xv, yv)  # the callback saw the parameters
    assert len(set(held.scores)) > 1
