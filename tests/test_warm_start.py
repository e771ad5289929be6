"""warm_start, max_iter and n_iter_ as scikit-learn has them, and
multilabel partial_fit that keeps learning (scikit-learn #12505)."""

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits, make_multilabel_classification
from sklearn.neural_network import MLPClassifier as SkClassifier
from sklearn.neural_network import MLPRegressor as SkRegressor

from fastmlp import MLPClassifier, MLPRegressor


def fit(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X, y)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:600] / 16, y[:600]


@pytest.mark.parametrize("tol,max_iters", [(0.0, (5, 3)), (2e-2, (40, 40))])
@pytest.mark.parametrize("Ours,Ref", [(MLPClassifier, SkClassifier),
                                      (MLPRegressor, SkRegressor)])
def test_warm_start_counts_as_scikit_learn(digits, Ours, Ref, tol, max_iters):
    """Same initial weights, plain SGD without shuffling: the two libraries
    run the same epochs, so n_iter_, loss_curve_, t_ and the stopping point
    (tol reached in the first or the second fit) agree call by call."""
    X, y = digits
    y = y if Ours is MLPClassifier else y.astype(float)
    kw = dict(hidden_layer_sizes=(20,), solver="sgd", momentum=0.0, shuffle=False,
              learning_rate_init=0.05 if Ours is MLPClassifier else 0.002, tol=tol,
              n_iter_no_change=2, warm_start=True, random_state=0)
    ours, ref = Ours(**kw), Ref(**kw)
    for max_iter in max_iters:
        fit(ours.set_params(max_iter=max_iter), X, y)
        fit(ref.set_params(max_iter=max_iter), X, y)
        assert ours.n_iter_ == ref.n_iter_ <= max_iter
        assert len(ours.loss_curve_) == len(ref.loss_curve_)
        assert ours.t_ == ref.t_
        np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=1e-6)
    if tol:  # the second fit stopped early too
        assert ours.n_iter_ < max_iters[1]


def test_lbfgs_warm_start_counts_per_call(digits):
    X, y = digits
    est = MLPClassifier((10,), solver="lbfgs", max_iter=7, warm_start=True, random_state=0)
    fit(est, X, y)
    assert est.n_iter_ == 7 and len(est.loss_curve_) == 7
    first = est.loss_
    fit(est.set_params(max_iter=4), X, y)
    assert est.n_iter_ == 4 and len(est.loss_curve_) == 11
    assert est.loss_ < first  # continued from the first fit's solution


# ------------------------------------------------------------- #12505
@pytest.fixture(scope="module")
def multilabel():
    # scikit-learn's reproducer, at 600 samples instead of 1000 (the
    # generator is slow).
    X, Y = make_multilabel_classification(n_samples=600, n_features=10, n_classes=5,
                                          n_labels=2, allow_unlabeled=False, random_state=1)
    return X[:300], Y[:300], X[300:], Y[300:]


def test_multilabel_partial_fit_is_multilabel(multilabel):
    """scikit-learn's reproducer passes classes=range(n_labels): the model must
    still be a multilabel one (logistic outputs), not a 5-class softmax."""
    X, Y, _, _ = multilabel
    est = MLPClassifier((50,), random_state=1)
    est.partial_fit(X, Y, classes=list(range(Y.shape[1])))
    assert est.out_activation_ == "logistic" and est.n_outputs_ == 5
    assert est.predict(X).shape == Y.shape
    est.partial_fit(X[:3], Y[:3])  # later calls need no classes, any batch size


def test_multilabel_partial_fit_keeps_learning(multilabel):
    """N calls are N epochs of one fit: the optimiser state carries over,
    so without shuffling they give exactly fit(max_iter=N)."""
    X, Y, Xte, Yte = multilabel
    kw = dict(hidden_layer_sizes=(50,), random_state=1, shuffle=False, n_iter_no_change=1000)
    whole = fit(MLPClassifier(max_iter=30, **kw), X, Y)
    parts = MLPClassifier(**kw)
    for i in range(30):
        parts.partial_fit(X, Y, classes=np.arange(5) if i == 0 else None)
    assert parts.n_iter_ == 1 and len(parts.loss_curve_) == 30
    for a, b in zip(whole.coefs_, parts.coefs_):
        np.testing.assert_array_equal(a, b)
    assert parts.score(Xte, Yte) == whole.score(Xte, Yte)


def test_multilabel_partial_fit_with_shuffling_reaches_fit_quality(multilabel):
    X, Y, Xte, Yte = multilabel
    whole = fit(MLPClassifier((64,), max_iter=40, random_state=1), X, Y)
    parts = MLPClassifier((64,), random_state=1)
    one = None
    for i in range(40):
        parts.partial_fit(X, Y, classes=np.arange(5) if i == 0 else None)
        if i == 0:
            one = parts.score(Xte, Yte)
    assert np.all(np.diff(parts.loss_curve_[:20]) < 0)
    assert parts.score(Xte, Yte) > one + 0.1
    assert parts.score(Xte, Yte) >= whole.score(Xte, Yte) - 0.03


def test_partial_fit_learns_after_the_no_improvement_limit(multilabel):
    """A tol that no epoch beats marks every call as 'no improvement'; the
    calls must go on updating the weights all the same."""
    X, Y, _, _ = multilabel
    est = MLPClassifier((20,), random_state=0, tol=1e9, n_iter_no_change=2)
    est.partial_fit(X, Y, classes=np.arange(5))
    for _ in range(5):
        before = est.coefs_[0].copy()
        est.partial_fit(X, Y)
        assert not np.array_equal(before, est.coefs_[0])
    assert est.loss_curve_[-1] < est.loss_curve_[0]
