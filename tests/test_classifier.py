"""MLPClassifier as a user meets it: learning, problem types, predict."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import load_digits, make_classification, make_multilabel_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as SkMLP

from fastmlp import MLPClassifier

SOLVERS = ["adam", "sgd", "lbfgs", "bfgs", "hf", "adagrad", "adadelta", "rmsprop"]


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X / 16.0, y, test_size=0.25, random_state=0)


def test_digits_default_accuracy(digits):
    Xtr, Xte, ytr, yte = digits
    clf = MLPClassifier(hidden_layer_sizes=(100,), random_state=0)
    with pytest.warns(Warning):  # 200 epochs end before tol is met, as with scikit-learn
        clf.fit(Xtr, ytr)
    assert clf.score(Xte, yte) >= 0.97


@pytest.mark.parametrize("batch_size", [1, 37, 10_000])
def test_single_sample_minibatch_and_full_batch(batch_size, digits):
    Xtr, Xte, ytr, yte = digits
    clf = MLPClassifier((32,), batch_size=batch_size, max_iter=3 if batch_size == 1 else 30,
                        learning_rate_init=0.001 if batch_size == 1 else 0.01, random_state=0)
    with pytest.warns(Warning):
        clf.fit(Xtr, ytr)
    assert clf.t_ == clf.n_iter_ * len(Xtr)
    assert clf.score(Xte, yte) > 0.9


def test_he_initialisation(digits):
    Xtr, _, ytr, _ = digits
    clf0 = MLPClassifier((500,), init="he", max_iter=1, random_state=0, learning_rate_init=1e-12)
    with pytest.warns(Warning):
        clf0.fit(Xtr, ytr)
    W = clf0.coefs_[0]
    np.testing.assert_allclose(W.std(), np.sqrt(2.0 / 64), rtol=0.05)
    assert abs(clf0.intercepts_[0]).max() < 1e-9


@pytest.mark.parametrize("solver", SOLVERS)
def test_each_solver_reduces_the_loss(solver, digits):
    Xtr, Xte, ytr, yte = digits
    lr = {"adadelta": 1.0, "adagrad": 0.05, "sgd": 0.1}.get(solver)
    kw = {} if lr is None else {"learning_rate_init": lr}
    if solver == "adadelta":
        kw["epsilon"] = 1e-6  # Zeiler's value; sqrt(1e-8) makes its first steps tiny
    clf = MLPClassifier((50,), solver=solver, max_iter=15, random_state=0, tol=0, **kw)
    with pytest.warns(Warning):
        clf.fit(Xtr, ytr)
    assert clf.loss_curve_[-1] < 0.5 * clf.loss_curve_[0]
    assert clf.score(Xte, yte) > 0.85


def test_same_initial_weights_as_scikit_learn(digits):
    Xtr, _, ytr, _ = digits
    ours = MLPClassifier((20,), max_iter=1, random_state=3, solver="sgd",
                         learning_rate_init=1e-12, momentum=0)
    ref = SkMLP((20,), max_iter=1, random_state=3, solver="sgd",
                learning_rate_init=1e-12, momentum=0)
    with pytest.warns(Warning):
        ours.fit(Xtr, ytr)
    with pytest.warns(Warning):
        ref.fit(Xtr, ytr)
    for a, b in zip(ours.coefs_ + ours.intercepts_, ref.coefs_ + ref.intercepts_):
        np.testing.assert_allclose(a, b, atol=1e-9)
    # Same objective, same data: the same loss value as scikit-learn reports.
    np.testing.assert_allclose(ours.loss_, ref.loss_, rtol=1e-6)


def test_lbfgs_reaches_scikit_learns_loss(digits):
    """Same network (64-100-10), start and max_iter: fastmlp's L-BFGS ends at
    least as low as scikit-learn's (scipy's L-BFGS-B) from every start. It
    keeps 30 curvature pairs to L-BFGS-B's 10 (with 10 the two runs coincide
    until the line searches pick different steps, and either may end lower);
    benchmarks/second_order.py lbfgs compares more starts and max_iter."""
    Xtr, _, ytr, _ = digits
    for seed in range(3):
        kw = dict(hidden_layer_sizes=(100,), solver="lbfgs", max_iter=30, random_state=seed,
                  tol=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            ours = MLPClassifier(**kw).fit(Xtr, ytr).loss_
            ref = SkMLP(**kw).fit(Xtr, ytr).loss_
        assert ours <= ref


def logic_data(fn):
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
    y = np.array([fn(a, b) for a, b in X.astype(int)])
    return X, y


@pytest.mark.parametrize("name,fn", [("and", lambda a, b: a & b), ("or", lambda a, b: a | b)])
def test_no_hidden_layer_learns_and_or(name, fn):
    X, y = logic_data(fn)
    clf = MLPClassifier(hidden_layer_sizes=(), solver="lbfgs", alpha=0, random_state=0).fit(X, y)
    assert (clf.predict(X) == y).all()


def test_no_hidden_layer_cannot_learn_xor():
    X, y = logic_data(lambda a, b: a ^ b)
    for seed in range(5):
        clf = MLPClassifier(hidden_layer_sizes=(), solver="lbfgs", alpha=0, random_state=seed)
        clf.fit(X, y)
        assert (clf.predict(X) == y).mean() <= 0.75  # a linear boundary gets 3 of 4 at best


@pytest.mark.parametrize("solver", ["lbfgs", "bfgs", "hf"])
def test_two_hidden_units_learn_xor(solver):
    # Whether a start reaches XOR or a saddle depends on the path taken; two
    # tanh units can represent it, and some of a few starts find it.
    X, y = logic_data(lambda a, b: a ^ b)
    learnt = [
        (MLPClassifier(hidden_layer_sizes=(2,), activation="tanh", solver=solver, alpha=0,
                       random_state=seed, damping=0.01).fit(X, y).predict(X) == y).all()
        for seed in range(6)
    ]
    assert any(learnt)


def test_binary_string_labels_and_proba():
    X, y = make_classification(200, 8, random_state=0)
    labels = np.array(["neg", "pos"])[y]
    clf = MLPClassifier((16,), max_iter=300, random_state=0).fit(X, labels)
    assert list(clf.classes_) == ["neg", "pos"]
    assert clf.out_activation_ == "logistic" and clf.n_outputs_ == 1
    proba = clf.predict_proba(X)
    assert proba.shape == (200, 2)
    np.testing.assert_allclose(proba.sum(1), 1)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(1)], clf.predict(X))
    np.testing.assert_allclose(np.exp(clf.predict_log_proba(X)), proba)
    assert clf.score(X, labels) > 0.9


def test_multilabel():
    X, Y = make_multilabel_classification(300, 10, n_classes=4, random_state=0)
    clf = MLPClassifier((32,), max_iter=400, random_state=0).fit(X, Y)
    assert clf.predict(X).shape == (300, 4)
    assert clf.predict_proba(X).shape == (300, 4)
    assert clf.score(X, Y) > 0.5
    assert clf.out_activation_ == "logistic"


@pytest.mark.parametrize("loss", ["hinge", "squared_error"])
def test_other_losses_learn(loss, digits):
    Xtr, Xte, ytr, yte = digits
    clf = MLPClassifier((64,), loss=loss, max_iter=60, random_state=0)
    with pytest.warns(Warning):
        clf.fit(Xtr, ytr)
    assert clf.score(Xte, yte) > 0.93
    if loss == "hinge":
        assert clf.out_activation_ == "identity"
        assert not hasattr(clf, "predict_proba")
    else:
        np.testing.assert_allclose(clf.predict_proba(Xte).sum(1), 1, rtol=1e-6)


def test_binary_hinge():
    X, y = make_classification(200, 6, random_state=1)
    clf = MLPClassifier((16,), loss="hinge", max_iter=300, random_state=0).fit(X, y)
    assert clf.score(X, y) > 0.9


def test_sparse_input_matches_dense(digits):
    Xtr, Xte, ytr, _ = digits
    dense = MLPClassifier((20,), max_iter=5, random_state=0)
    sparse = MLPClassifier((20,), max_iter=5, random_state=0)
    with pytest.warns(Warning):
        dense.fit(Xtr, ytr)
    with pytest.warns(Warning):
        sparse.fit(sp.csr_matrix(Xtr), ytr)
    np.testing.assert_allclose(sparse.coefs_[0], dense.coefs_[0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sparse.predict_proba(sp.csc_matrix(Xte)),
                               dense.predict_proba(Xte), rtol=1e-10)


def test_float32_trains_and_predicts_in_float32(digits):
    Xtr, Xte, ytr, yte = digits
    clf = MLPClassifier((50,), max_iter=50, random_state=0)
    with pytest.warns(Warning):
        clf.fit(Xtr.astype(np.float32), ytr)
    assert all(c.dtype == np.float32 for c in clf.coefs_ + clf.intercepts_)
    assert clf.predict_proba(Xte.astype(np.float32)).dtype == np.float32
    assert clf.score(Xte.astype(np.float32), yte) > 0.95


def test_partial_fit_matches_one_epoch_of_fit(digits):
    Xtr, _, ytr, _ = digits
    a = MLPClassifier((20,), random_state=0, max_iter=1, shuffle=False)
    with pytest.warns(Warning):
        a.fit(Xtr, ytr)
    b = MLPClassifier((20,), random_state=0, shuffle=False)
    b.partial_fit(Xtr, ytr, classes=np.unique(ytr))
    np.testing.assert_allclose(a.coefs_[0], b.coefs_[0])
    b.partial_fit(Xtr[:100], ytr[:100])
    assert b.loss_curve_[-1] != a.loss_curve_[-1]
    with pytest.raises(ValueError, match="classes not in"):
        b.partial_fit(Xtr[:5], np.array([10, 11, 12, 13, 14]))


def test_partial_fit_needs_classes_first():
    with pytest.raises(ValueError, match="classes must be passed"):
        MLPClassifier().partial_fit(np.zeros((3, 2)), [0, 1, 0])
    assert not hasattr(MLPClassifier(solver="lbfgs"), "partial_fit")


def test_early_stopping_with_string_labels():
    X, y = make_classification(400, 10, n_informative=5, n_classes=3, random_state=0)
    labels = np.array(["a", "b", "c"])[y]
    clf = MLPClassifier((30,), early_stopping=True, max_iter=200, random_state=0).fit(X, labels)
    assert clf.best_loss_ is None
    assert len(clf.validation_scores_) == clf.n_iter_
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    assert clf.n_iter_ < 200


@pytest.mark.parametrize("n_classes", [2, 5])
@pytest.mark.parametrize("early_stopping", [False, True])
def test_class_index_targets_train_as_the_indicator_matrix(n_classes, early_stopping,
                                                           monkeypatch):
    # First-order fits hand the compiled loss class indices instead of the
    # one-hot matrix; forcing the matrix must give the same model. Labels are
    # strings, unsorted, to check that the index is the position in classes_.
    X, y = make_classification(300, 8, n_informative=5, n_classes=n_classes,
                               random_state=0)
    labels = np.array(["k%d" % (9 - c) for c in y])
    kw = dict(hidden_layer_sizes=(12,), max_iter=8, random_state=0, n_threads=1,
              early_stopping=early_stopping)
    seen = [_Record(), _Record()]  # with early stopping: the validation loss too
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        indices = MLPClassifier(callbacks=[seen[0]], **kw).fit(X, labels)
        monkeypatch.setattr(MLPClassifier, "_takes_class_indices", lambda self: False)
        matrix = MLPClassifier(callbacks=[seen[1]], **kw).fit(X, labels)
    if early_stopping:
        assert len(seen[0].losses) == indices.n_iter_ and seen[0].losses[0] is not None
        np.testing.assert_allclose(seen[0].losses, seen[1].losses, rtol=1e-10)
    assert indices.n_outputs_ == matrix.n_outputs_ == (1 if n_classes == 2 else n_classes)
    for a, b in zip(indices.coefs_ + indices.intercepts_, matrix.coefs_ + matrix.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(indices.loss_curve_, matrix.loss_curve_, rtol=1e-10)
    np.testing.assert_array_equal(indices.predict(X), matrix.predict(X))


class _Record:
    """A callback keeping the validation losses it is given."""

    def __init__(self):
        self.losses = []

    def on_epoch_end(self, est, info):
        self.losses.append(info["validation_loss"])


@pytest.mark.parametrize("labels", [
    np.arange(300) % 7,                                   # 0..k-1, int64
    (np.arange(300) % 3 - 1).astype(np.int8),             # negative, narrow dtype
    (np.arange(300) % 2 * 200).astype(np.uint8),          # binary, a gap
    np.where(np.arange(300) % 2, 10**12, -10**12),        # too wide for a table
    (np.arange(300) % 4).astype(np.int32),                # the epoch's own dtype
])
def test_integer_labels_skip_the_checks_but_not_their_result(labels):
    # An integer ndarray y takes a path that skips scikit-learn's target
    # checks; y as a list goes through them. Same classes_ (values and
    # dtype), same target type, same model.
    from sklearn.preprocessing import LabelBinarizer

    X = np.random.RandomState(0).rand(labels.size, 5)
    kw = dict(hidden_layer_sizes=(6,), max_iter=3, random_state=0, n_threads=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fast = MLPClassifier(**kw).fit(X, labels)
        checked = MLPClassifier(**kw).fit(X, labels.tolist())
        full_batch = MLPClassifier(solver="lbfgs", **kw).fit(X, labels)
    lb = LabelBinarizer().fit(labels)
    for est in (fast, full_batch):
        assert est.classes_.dtype == lb.classes_.dtype
        np.testing.assert_array_equal(est.classes_, lb.classes_)
        assert est._y_type == lb.y_type_
    np.testing.assert_array_equal(checked.classes_, lb.classes_)
    for a, b in zip(fast.coefs_ + fast.intercepts_, checked.coefs_ + checked.intercepts_):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(fast.predict(X), checked.predict(X))
    assert fast.predict(X).dtype == labels.dtype


def test_integer_labels_keep_the_checks_messages_and_warnings():
    X = np.random.RandomState(0).rand(40, 3)
    with pytest.raises(ValueError, match="only one class"):
        MLPClassifier(max_iter=1).fit(X, np.zeros(40, dtype=int))
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        MLPClassifier(max_iter=1).fit(X, np.arange(39) % 2)
    with pytest.warns(UserWarning, match="number of unique classes is greater than 50%"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            MLPClassifier(max_iter=1).fit(X, np.arange(40) % 30)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.uint16])
def test_class_indices_are_not_copied(dtype):
    # Labels 0..k-1 (every one present) in a dtype the epoch reads are their
    # own class indices: the epoch reads y.
    from fastmlp._classifier import _class_indices, _integer_labels

    y = (np.arange(100) % 5).astype(dtype)
    classes, index = _integer_labels(y, 100)
    assert _class_indices(index, classes.size) is y


@pytest.mark.parametrize("k,dtype", [(5, np.uint8), (256, np.uint8), (257, np.uint16),
                                     (65536, np.uint16), (65537, np.int32)])
def test_other_labels_are_encoded_in_the_narrowest_index(k, dtype):
    # Labels that are not their own index (shifted, gapped, of a dtype the
    # epoch does not read) take the narrowest index dtype for k classes.
    from fastmlp._classifier import _class_indices, _integer_labels

    n = 3 * k
    for y in ((np.arange(n) % k + 1), (np.arange(n) % k).astype(np.int16 if k < 2**15 else
                                                               np.uint32)):
        classes, index = _integer_labels(y, n)
        got = _class_indices(index, classes.size)
        assert got.dtype == dtype and got is not y
        np.testing.assert_array_equal(classes[got], y)
