"""class_weight: None, 'balanced' or a dict, as scikit-learn's linear models
(compute_sample_weight) define it, multiplied into sample_weight."""

import warnings

import numpy as np
import pytest
from sklearn.datasets import make_classification, make_multilabel_classification
from sklearn.metrics import recall_score
from sklearn.model_selection import train_test_split
from sklearn.utils.class_weight import compute_sample_weight

from fastmlp import MLPClassifier


def fit(est, X, y, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X, y, **kw)


def assert_same_model(a, b):
    for ca, cb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_array_equal(ca, cb)


def test_balanced_raises_minority_recall():
    X, y = make_classification(3000, 10, n_informative=4, weights=[0.95], flip_y=0.02,
                               class_sep=0.6, random_state=0)
    Xtr, Xte, ytr, yte = train_test_split(X, y, stratify=y, random_state=0)
    kw = dict(hidden_layer_sizes=(16,), max_iter=100, random_state=0)
    plain = fit(MLPClassifier(**kw), Xtr, ytr)
    balanced = fit(MLPClassifier(class_weight="balanced", **kw), Xtr, ytr)
    r_plain = recall_score(yte, plain.predict(Xte))
    r_bal = recall_score(yte, balanced.predict(Xte))
    assert r_bal > r_plain + 0.15, (r_plain, r_bal)


X, Y = make_classification(200, 6, n_informative=4, n_classes=3, random_state=1)
KW = dict(hidden_layer_sizes=(8,), max_iter=10, random_state=0)


@pytest.mark.parametrize("class_weight", ["balanced", {0: 1.0, 1: 3.0, 2: 0.5}, {1: 4.0}])
def test_same_as_compute_sample_weight(class_weight):
    ours = fit(MLPClassifier(class_weight=class_weight, **KW), X, Y)
    ref = fit(MLPClassifier(**KW), X, Y, sample_weight=compute_sample_weight(class_weight, Y))
    assert_same_model(ours, ref)


def test_multiplies_sample_weight():
    sw = np.random.RandomState(0).uniform(0.2, 3.0, len(Y))
    cw = {0: 2.0, 1: 1.0, 2: 0.25}
    ours = fit(MLPClassifier(class_weight=cw, **KW), X, Y, sample_weight=sw)
    ref = fit(MLPClassifier(**KW), X, Y, sample_weight=sw * compute_sample_weight(cw, Y))
    assert_same_model(ours, ref)


def test_string_labels():
    labels = np.array(["cat", "dog", "eel"])[Y]
    ours = fit(MLPClassifier(class_weight={"cat": 5.0, "eel": 0.5}, **KW), X, labels)
    ref = fit(MLPClassifier(**KW), X, labels,
              sample_weight=compute_sample_weight({"cat": 5.0, "eel": 0.5}, labels))
    assert_same_model(ours, ref)


def test_partial_fit_takes_a_dict_and_refuses_balanced():
    cw = {0: 1.0, 1: 2.0, 2: 3.0}
    ours = MLPClassifier(class_weight=cw, **KW)
    ref = MLPClassifier(**KW)
    for part in (slice(0, 100), slice(100, 200)):
        ours.partial_fit(X[part], Y[part], classes=[0, 1, 2])
        ref.partial_fit(X[part], Y[part], classes=[0, 1, 2],
                        sample_weight=np.array([cw[c] for c in Y[part]]))
    assert_same_model(ours, ref)
    # A batch need not hold every class.
    ours.partial_fit(X[Y == 0], Y[Y == 0])
    with pytest.raises(ValueError, match="'balanced' is not supported by partial_fit"):
        MLPClassifier(class_weight="balanced").partial_fit(X, Y, classes=[0, 1, 2])


def test_multilabel_is_a_product_over_labels():
    Xm, Ym = make_multilabel_classification(150, 6, n_classes=3, random_state=0)
    cw = [{0: 1.0, 1: 2.0}, {0: 1.0, 1: 0.5}, {0: 3.0, 1: 1.0}]
    ours = fit(MLPClassifier(class_weight=cw, **KW), Xm, Ym)
    expected = np.prod([[cw[k][v] for k, v in enumerate(row)] for row in Ym], axis=1)
    np.testing.assert_allclose(compute_sample_weight(cw, Ym), expected)
    ref = fit(MLPClassifier(**KW), Xm, Ym, sample_weight=expected)
    assert_same_model(ours, ref)
    bal = fit(MLPClassifier(class_weight="balanced", **KW), Xm, Ym)
    ref = fit(MLPClassifier(**KW), Xm, Ym, sample_weight=compute_sample_weight("balanced", Ym))
    assert_same_model(bal, ref)
    with pytest.raises(ValueError, match="multilabel y, class_weight must be 'balanced' or a list"):
        MLPClassifier(class_weight={0: 1.0, 1: 2.0}).fit(Xm, Ym)
    with pytest.raises(ValueError, match="class_weight has 2 dicts but y has 3 labels"):
        MLPClassifier(class_weight=cw[:2]).fit(Xm, Ym)


def test_bad_class_weights():
    with pytest.raises(ValueError, match=r"keys \[7\] that are not classes"):
        MLPClassifier(class_weight={0: 1.0, 7: 2.0}).fit(X, Y)
    with pytest.raises(ValueError, match="non-negative"):
        MLPClassifier(class_weight={0: -1.0}).fit(X, Y)
    with pytest.raises(ValueError, match="list of dicts as class_weight is for multilabel"):
        MLPClassifier(class_weight=[{0: 1.0}]).fit(X, Y)
    with pytest.raises(ValueError, match="class_weight"):
        MLPClassifier(class_weight="uniform").fit(X, Y)
