"""Callbacks between compiled epochs: info, stopping, History, ProgressBar."""

import io
import pickle
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, log_loss

import fastmlp._base
from fastmlp import MLPClassifier, MLPRegressor
from fastmlp.callbacks import History, ProgressBar

X, Y = make_classification(400, 10, n_informative=6, n_classes=3, random_state=0)
KEYS = {"epoch", "loss", "validation_score", "validation_loss", "learning_rate", "seconds"}


class Recorder:
    def __init__(self, stop_at=None):
        self.stop_at = stop_at
        self.infos = []

    def on_epoch_end(self, estimator, info):
        self.infos.append(info)
        return info["epoch"] == self.stop_at


def fit(est, X=X, y=Y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X, y)


@pytest.mark.parametrize("solver", ["adam", "sgd", "rmsprop"])
def test_a_callback_stops_training_and_sees_every_epoch_once(solver):
    rec = Recorder(stop_at=4)
    est = MLPClassifier((8,), solver=solver, max_iter=50, random_state=0, callbacks=[rec])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est.fit(X, Y)
    assert est.n_iter_ == 4 and len(est.loss_curve_) == 4
    assert [i["epoch"] for i in rec.infos] == [1, 2, 3, 4]
    assert all(set(i) == KEYS for i in rec.infos)
    assert [i["loss"] for i in rec.infos] == est.loss_curve_
    assert all(i["validation_score"] is None and i["validation_loss"] is None for i in rec.infos)
    assert all(i["learning_rate"] == est.learning_rate_init for i in rec.infos)
    assert all(i["seconds"] > 0 for i in rec.infos)


def test_every_callback_is_called_and_any_can_stop():
    first, second = Recorder(stop_at=2), Recorder()
    est = fit(MLPRegressor(hidden_layer_sizes=(5,), max_iter=30, random_state=0,
                           callbacks=(first, second)), y=Y.astype(float))
    assert est.n_iter_ == 2 and len(second.infos) == 2


def test_callbacks_do_not_change_training():
    kw = dict(hidden_layer_sizes=(16,), max_iter=8, random_state=0, early_stopping=True,
              n_iter_no_change=100)
    plain = fit(MLPClassifier(**kw))
    watched = fit(MLPClassifier(callbacks=[History(), Recorder()], **kw))
    for a, b in zip(plain.coefs_, watched.coefs_):
        np.testing.assert_array_equal(a, b)
    assert plain.validation_scores_ == watched.validation_scores_


def test_validation_score_and_loss_are_those_of_the_validation_split(monkeypatch):
    split = {}
    real_split = fastmlp._base.train_test_split

    def spy(rows, **kw):
        train, val = real_split(rows, **kw)
        split["val"] = val
        return train, val

    monkeypatch.setattr(fastmlp._base, "train_test_split", spy)

    class Check:
        def on_epoch_end(self, est, info):
            val = split["val"]
            proba = est.predict_proba(X[val])
            np.testing.assert_allclose(info["validation_loss"], log_loss(Y[val], proba,
                                       labels=est.classes_), rtol=1e-9)
            assert info["validation_score"] == accuracy_score(Y[val], est.predict(X[val]))
            self.n = getattr(self, "n", 0) + 1

    check = Check()
    est = fit(MLPClassifier((16,), max_iter=6, random_state=0, early_stopping=True,
                            alpha=1.0, dropout=0.3, callbacks=[check]))
    # Neither the penalty (alpha) nor dropout enters the validation loss.
    assert check.n == est.n_iter_ == 6


def test_lbfgs_calls_back_every_iteration_and_can_stop():
    rec = Recorder(stop_at=3)
    est = MLPClassifier((8,), solver="lbfgs", max_iter=100, random_state=0, callbacks=[rec])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est.fit(X, Y)
    assert est.n_iter_ == 3 and len(est.loss_curve_) == 3
    assert [i["epoch"] for i in rec.infos] == [1, 2, 3]
    assert [i["loss"] for i in rec.infos] == est.loss_curve_
    assert all(i["learning_rate"] is None and i["validation_loss"] is None for i in rec.infos)
    np.testing.assert_allclose(est.loss_, est.loss_curve_[-1])


def test_history_records_the_validation_loss_curve():
    hist = History()
    est = fit(MLPClassifier((16,), max_iter=12, random_state=0, early_stopping=True,
                            n_iter_no_change=100, callbacks=[hist]))
    assert len(est.validation_loss_curve_) == est.n_iter_ == 12
    assert est.validation_loss_curve_ == hist.validation_loss_curve_
    assert hist.loss_curve_ == est.loss_curve_
    assert hist.validation_scores_ == est.validation_scores_
    assert hist.learning_rates_ == [est.learning_rate_init] * 12
    assert all(np.isfinite(est.validation_loss_curve_))
    # The fitted copy inside the estimator's params is the same object.
    assert est.callbacks[0] is hist


def test_history_without_validation_and_across_warm_starts():
    hist = History()
    est = MLPClassifier((8,), max_iter=3, random_state=0, warm_start=True, callbacks=[hist])
    fit(est)
    assert est.validation_loss_curve_ is None and hist.validation_scores_ is None
    fit(est)
    assert len(hist.records) == len(est.loss_curve_) == 6
    assert [r["epoch"] for r in hist.records] == [1, 2, 3, 4, 5, 6]
    fit(est.set_params(warm_start=False))  # a fresh fit starts a fresh history
    assert [r["epoch"] for r in hist.records] == [1, 2, 3]


def test_progress_bar_plain_lines():
    out = io.StringIO()
    fit(MLPClassifier((8,), max_iter=5, random_state=0, early_stopping=True,
                      callbacks=[ProgressBar(file=out, use_tqdm=False)]))
    lines = out.getvalue().splitlines()
    assert len(lines) == 5
    assert lines[0].startswith("epoch 1/5: loss ") and "val score" in lines[0]
    assert "val loss" in lines[0] and lines[-1].startswith("epoch 5/5")


def test_progress_bar_tqdm():
    pytest.importorskip("tqdm")
    out = io.StringIO()
    bar = ProgressBar(file=out, use_tqdm=True)
    est = fit(MLPClassifier((8,), max_iter=7, random_state=0, callbacks=[bar]))
    text = out.getvalue()
    assert "7/7" in text and "epoch" in text and "loss" in text
    # The finished bar is dropped: the model pickles and clones.
    again = pickle.loads(pickle.dumps(est))
    assert isinstance(again.callbacks[0], ProgressBar)
    clone(est)


def test_bad_callbacks_are_refused():
    with pytest.raises(ValueError, match="on_epoch_end"):
        MLPClassifier(callbacks=[object()]).fit(X, Y)
    with pytest.raises(ValueError, match="callbacks"):
        MLPClassifier(callbacks=Recorder()).fit(X, Y)


def test_clone_copies_callbacks():
    est = MLPClassifier(callbacks=[History()])
    copy = clone(est)
    assert isinstance(copy.callbacks[0], History) and copy.callbacks[0] is not est.callbacks[0]
