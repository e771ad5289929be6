"""Early stopping on a cluster (fastmlp/dask/_validation.py): each part's
validation rows are kept out of training, and the validation score and
loss computed on the workers equal the local ones on the same rows."""

import warnings

import dask.array as da
import numpy as np
import pytest
from sklearn.metrics import accuracy_score, r2_score

from fastmlp._network import LOSS_LOG
from fastmlp.dask import MLPClassifier, MLPRegressor
from fastmlp.dask._data import MatrixTargets, part_builder
from fastmlp.dask._objective import DistributedObjective
from fastmlp.dask._placement import Placement
from fastmlp.dask._validation import AccuracySums, R2Sums, Stat, split_rows
from fastmlp.solvers.objective import Objective

from dask_helpers import make_data, small_layout
from test_dask_estimators import CHUNKS, chunked

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

HF = dict(solver="hf", hidden_layer_sizes=(12,), max_iter=8, random_state=0, tol=0.0,
          alpha=1e-3, curvature_batch_size=150, max_cg_iter=20, early_stopping=True,
          validation_fraction=0.2, n_iter_no_change=50)


def _val_rows(dask_worker):
    """{part index: its validation rows} of the fastmlp parts on this worker."""
    return {int(k.split("-")[3]): v.val_rows for k, v in dask_worker.data.items()
            if isinstance(k, str) and k.startswith("fastmlp-part-")}


def global_val_rows(client, chunks=CHUNKS):
    found = {}
    for rows in client.run(_val_rows).values():
        found.update(rows)
    starts = np.concatenate([[0], np.cumsum(chunks)])
    return np.concatenate([starts[i] + found[i] for i in sorted(found)])


def test_split_rows_is_a_seeded_partition():
    train, val = split_rows(101, 0.2, 5, 3)
    assert len(val) == 20 and len(train) == 81
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(101))
    again = split_rows(101, 0.2, 5, 3)
    np.testing.assert_array_equal(again[1], val)
    assert not np.array_equal(split_rows(101, 0.2, 5, 4)[1], val)  # per part
    assert len(split_rows(3, 0.1, 5, 0)[1]) == 0


def summed(stat, pieces):
    """stat's sums over pieces [(out, Y, sw)], added as the rounds add them."""
    return sum(np.asarray(stat(*piece), dtype=np.float64) for piece in pieces)


def cut(out, Y, sw, at=(0, 7, 30, 50)):
    return [(out[a:b], Y[a:b], None if sw is None else sw[a:b])
            for a, b in zip(at, at[1:])]


@pytest.mark.parametrize("y_type,threshold", [("multiclass", 0.5), ("binary", 0.5),
                                              ("binary", 0.0), ("multilabel", 0.5)])
@pytest.mark.parametrize("weighted", [False, True])
def test_accuracy_sums_give_accuracy_score(y_type, threshold, weighted):
    rng = np.random.RandomState(0)
    k = {"multiclass": 4, "binary": 1, "multilabel": 3}[y_type]
    out = rng.rand(50, k) - (0.5 - threshold)
    if y_type == "multiclass":
        Y = np.eye(k)[rng.randint(0, k, 50)]
        truth, pred = Y.argmax(axis=1), out.argmax(axis=1)
    else:
        Y = (rng.rand(50, k) < 0.5).astype(float)
        truth, pred = Y.astype(int), (out > threshold).astype(int)
    sw = rng.uniform(0.1, 2.0, 50) if weighted else None
    scorer = AccuracySums(y_type, threshold)
    got = scorer.combine(summed(Stat(scorer), cut(out, Y, sw)))
    expected = accuracy_score(truth, pred, sample_weight=sw)
    assert got == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("weighted", [False, True])
def test_r2_sums_give_r2_score(weighted):
    rng = np.random.RandomState(1)
    Y = rng.randn(50, 3) * [1.0, 5.0, 0.0] + [0.0, 1e4, 2.0]  # large mean; constant
    out = Y + 0.3 * rng.randn(50, 3)
    sw = rng.uniform(0.1, 2.0, 50) if weighted else None
    scorer = R2Sums()
    scorer.prepare(lambda stat: summed(stat, cut(out, Y, sw)))
    got = scorer.combine(summed(Stat(scorer), cut(out, Y, sw)))
    assert got == pytest.approx(r2_score(Y, out, sample_weight=sw), rel=1e-12)
    exact = Y.copy()  # the constant column predicted exactly scores 1, as r2_score
    assert scorer.combine(summed(Stat(scorer), cut(exact, Y, sw))) == pytest.approx(
        r2_score(Y, exact, sample_weight=sw), rel=1e-12)


def test_rounds_use_only_the_training_rows(client):
    X, y, sw = make_data()
    Y = np.eye(3)[y]
    layout = small_layout(X.shape[1], 3)
    Xd, Yd, swd = chunked(X, Y, sw)
    split = (0.25, 11)
    placement = Placement(client, part_builder(Xd, Yd, swd, MatrixTargets(), X.dtype, split),
                          Xd.chunks[0])
    stats = placement.part_stats()
    obj = DistributedObjective(client, placement, layout, LOSS_LOG, 1e-3, 0.0, None,
                               sum(s[1] for s in stats), "workers",
                               train_rows=[s[0] for s in stats])
    try:
        val = global_val_rows(client)
        train = np.setdiff1d(np.arange(len(y)), val)
        assert len(val) == sum(s[2] for s in stats) and obj.n_samples == len(train)
        local = Objective(layout, X, Y, sw, LOSS_LOG, 1e-3, 0.0, 1, rows=train)
        theta = np.random.RandomState(0).randn(layout.n_params) * 0.3
        v = np.random.RandomState(1).randn(layout.n_params)
        loss, grad = obj(theta)
        loss0, grad0 = local(theta)
        np.testing.assert_allclose(loss, loss0, rtol=1e-12)
        np.testing.assert_allclose(grad, grad0, rtol=1e-11, atol=1e-14)
        # Curvature batches are positions among the training rows.
        batch = np.sort(np.random.RandomState(2).choice(len(train), 90, replace=False))
        np.testing.assert_allclose(obj.curvature(theta, v, batch),
                                   local.curvature(theta, v, batch), rtol=1e-10, atol=1e-13)
        val_weight = sum(s[3] for s in stats)
        np.testing.assert_allclose(val_weight, sw[val].sum(), rtol=1e-12)
        held = Objective(layout, X, Y, sw, LOSS_LOG, 0.0, 0.0, 1, rows=val)
        np.testing.assert_allclose(obj.validation_loss(theta, val_weight), held.loss(theta),
                                   rtol=1e-12)
    finally:
        obj.release()


class Scores:
    """Records, at each iteration, the validation score the fit reports and
    the local score of the estimator on the validation rows."""

    def __init__(self, client, X, y, sw):
        self.client, self.X, self.y, self.sw = client, X, y, sw
        self.reported, self.local, self.losses = [], [], []

    def on_epoch_end(self, est, info):
        val = global_val_rows(self.client)
        self.reported.append(info["validation_score"])
        self.losses.append(info["validation_loss"])
        self.local.append(est.score(self.X[val], self.y[val], sample_weight=self.sw[val]))


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_validation_score_is_the_local_score_of_the_held_out_rows(client, task):
    X, y, sw = make_data(task=task)
    Est = MLPClassifier if task == "classification" else MLPRegressor
    Xd, yd, swd = chunked(X, y, sw)
    scores = Scores(client, X, y, sw)
    est = Est(client=client, callbacks=[scores], **HF).fit(Xd, yd, sample_weight=swd)
    assert len(scores.reported) == est.n_iter_ == 8
    np.testing.assert_allclose(scores.reported, scores.local, rtol=1e-12)
    assert est.validation_scores_ == scores.reported
    assert all(np.isfinite(v) and v > 0 for v in scores.losses)
    assert est.best_validation_score_ == max(scores.reported)


def test_early_stopping_stops_keeps_the_best_and_is_deterministic(client):
    X, y, _ = make_data(n=900)
    Xd, yd = chunked(X, y, chunks=(300, 300, 300))
    params = dict(HF, max_iter=60, n_iter_no_change=2, hidden_layer_sizes=(40,), alpha=0.0,
                  tol=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = MLPClassifier(client=client, **params).fit(Xd, yd)
        b = MLPClassifier(client=client, **params).fit(Xd, yd)
    assert a.n_iter_ < 60
    assert a.validation_scores_ == b.validation_scores_ and a.loss_curve_ == b.loss_curve_
    for ca, cb in zip(a.coefs_, b.coefs_):
        np.testing.assert_array_equal(ca, cb)
    assert a.best_validation_score_ == max(a.validation_scores_)


def test_too_small_a_validation_set_is_refused(client):
    X, y, _ = make_data()
    Xd, yd = chunked(X, y)
    with pytest.raises(ValueError, match="The validation set is too small"):
        MLPClassifier(client=client, **dict(HF, validation_fraction=0.001)).fit(Xd, yd)


def test_lbfgs_ignores_early_stopping_as_locally(client):
    X, y, _ = make_data()
    Xd, yd = chunked(X, y)
    params = dict(hidden_layer_sizes=(12,), max_iter=5, random_state=0, tol=0.0)
    a = MLPClassifier(client=client, early_stopping=True, **params).fit(Xd, yd)
    b = MLPClassifier(client=client, **params).fit(Xd, yd)
    assert a.loss_curve_ == b.loss_curve_
