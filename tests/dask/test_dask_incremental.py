"""First-order solvers on dask data: the local estimators' partial_fit under
dask_ml.wrappers.Incremental (one partial_fit call per block, in order)."""

import dask.array as da
import numpy as np
import pytest
from dask_ml.wrappers import Incremental
from sklearn.base import clone

import fastmlp

from dask_helpers import make_data


@pytest.mark.parametrize("Estimator", [fastmlp.MLPClassifier, fastmlp.MLPRegressor])
def test_incremental_calls_partial_fit_block_by_block(client, Estimator):
    task = "classification" if Estimator is fastmlp.MLPClassifier else "regression"
    X, y, _ = make_data(n=800, task=task)
    Xd, yd = da.from_array(X, chunks=200), da.from_array(y, chunks=200)
    est = Estimator(solver="adam", hidden_layer_sizes=(16,), random_state=0,
                    learning_rate_init=0.01, n_threads=1)
    extra = {"classes": np.unique(y)} if task == "classification" else {}
    wrapped = Incremental(est, shuffle_blocks=False)
    with client.as_current():
        for _ in range(3):  # three passes over the blocks
            wrapped.partial_fit(Xd, yd, **extra)
        pred = wrapped.predict(Xd)
        assert isinstance(pred, da.Array)
        pred = pred.compute()

    # The same as calling partial_fit on each block in order, locally.
    manual = clone(est)
    for _ in range(3):
        for lo in range(0, 800, 200):
            manual.partial_fit(X[lo:lo + 200], y[lo:lo + 200], **extra)
    fitted = wrapped.estimator_
    assert fitted.t_ == manual.t_ == 3 * 800  # samples seen
    for a, b in zip(fitted.coefs_ + fitted.intercepts_, manual.coefs_ + manual.intercepts_):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(pred, manual.predict(X))
    assert manual.loss_curve_[-1] < manual.loss_curve_[0]
