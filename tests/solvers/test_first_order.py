"""Learning-rate schedules of the first-order solvers."""

import math
import warnings

import numpy as np
import pytest
from sklearn.datasets import make_classification

from fastmlp import MLPClassifier
from fastmlp.callbacks import History
from fastmlp.solvers.first_order import FIRST_ORDER_SOLVERS, Optimizer


def rates(opt, n):
    out = []
    for _ in range(n):
        out.append(opt.learning_rate)
        opt.iteration_ends(0)
    return out


@pytest.mark.parametrize("solver", FIRST_ORDER_SOLVERS)
def test_cosine_anneals_to_lr_min_over_n_epochs(solver):
    opt = Optimizer(solver, 3, np.float64, learning_rate_init=0.1, learning_rate="cosine",
                    n_epochs=10, lr_min=0.001)
    got = rates(opt, 14)
    expected = [0.001 + 0.5 * 0.099 * (1 + math.cos(math.pi * min(e, 10) / 10))
                for e in range(14)]
    np.testing.assert_allclose(got, expected, rtol=1e-15)
    assert got[0] == 0.1 and got[10:] == [pytest.approx(0.001)] * 4


@pytest.mark.parametrize("solver", FIRST_ORDER_SOLVERS)
def test_step_decays_every_step_size_epochs(solver):
    opt = Optimizer(solver, 3, np.float64, learning_rate_init=0.2, learning_rate="step",
                    lr_step_size=3, lr_decay=0.5)
    np.testing.assert_allclose(rates(opt, 8), [0.2] * 3 + [0.1] * 3 + [0.05] * 2)


@pytest.mark.parametrize("schedule", ["invscaling", "adaptive"])
def test_scikit_learn_schedules_stay_sgd_only(schedule):
    adam = Optimizer("adam", 3, np.float64, learning_rate_init=0.1, learning_rate=schedule)
    assert adam.schedule == "constant" and rates(adam, 3) == [0.1] * 3
    assert adam.trigger_stopping("", False) is True  # adam just stops
    sgd = Optimizer("sgd", 3, np.float64, learning_rate_init=0.1, learning_rate=schedule)
    assert sgd.schedule == schedule


X, Y = make_classification(300, 8, n_informative=5, n_classes=3, random_state=0)


@pytest.mark.parametrize("solver", ["adam", "rmsprop", "sgd"])
def test_estimators_use_the_schedule(solver):
    hist = History()
    kw = dict(hidden_layer_sizes=(8,), solver=solver, max_iter=6, random_state=0,
              learning_rate_init=0.01, n_iter_no_change=100)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cos = MLPClassifier(learning_rate="cosine", lr_min=1e-4, callbacks=[hist],
                            **kw).fit(X, Y)
        const = MLPClassifier(**kw).fit(X, Y)
    expected = [1e-4 + 0.5 * (0.01 - 1e-4) * (1 + math.cos(math.pi * e / 6)) for e in range(6)]
    np.testing.assert_allclose(hist.learning_rates_, expected, rtol=1e-12)
    assert not np.allclose(cos.coefs_[0], const.coefs_[0])
    hist = History()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        MLPClassifier(learning_rate="step", lr_step_size=2, lr_decay=0.3, callbacks=[hist],
                      **kw).fit(X, Y)
    np.testing.assert_allclose(hist.learning_rates_, [0.01, 0.01, 0.003, 0.003, 0.0009, 0.0009])


@pytest.mark.parametrize("param,value", [("lr_step_size", 0), ("lr_decay", 0.0),
                                         ("lr_decay", 1.5), ("lr_min", -1.0),
                                         ("learning_rate", "linear")])
def test_bad_schedule_parameters(param, value):
    with pytest.raises(ValueError, match=param):
        MLPClassifier(**{param: value}).fit(X, Y)
