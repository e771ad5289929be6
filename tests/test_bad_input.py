"""Bad input, as the reliability issue lists it: each refused with a clear error.

Every test checks the exception type and that the message names the
problem. (The first few kinds — NaN in X, 0 samples, 1-D X, one class, bad
layer sizes — are in test_base.py; CLI data files in test_cli.py; model
files in test_container.py and test_persist.py.)
"""

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.datasets import make_classification
from sklearn.utils._param_validation import make_constraint

from fastmlp import InputScaleWarning, MLPClassifier, MLPRegressor

X, Y = make_classification(60, 5, n_informative=3, random_state=0)
ESTIMATORS = [MLPClassifier, MLPRegressor]


def quiet(f, *a, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return f(*a, **kw)


def fitted(Est=MLPClassifier, **kw):
    return quiet(Est(hidden_layer_sizes=(6,), max_iter=5, random_state=0, **kw).fit, X, Y)


# ------------------------------------------------------------ non-finite data
@pytest.mark.parametrize("Est", ESTIMATORS)
@pytest.mark.parametrize("where", ["X", "y", "sample_weight", "sparse X", "partial_fit X",
                                   "predict sparse X"])
@pytest.mark.parametrize("bad,match", [(np.nan, "NaN"), (np.inf, "infinity"),
                                       (-np.inf, "infinity")])
def test_non_finite_values_anywhere(Est, where, bad, match):
    Xb, yb, sw = X.copy(), Y.astype(float), np.ones(len(X))
    est = Est(max_iter=2)
    call = est.fit
    if where in ("X", "partial_fit X"):
        Xb[4, 1] = bad
    elif where == "y":
        yb[7] = bad
    elif where == "sample_weight":
        sw[2] = bad
    else:
        Xb[4, 1] = bad
        Xb = sp.csr_matrix(Xb)
    if where == "partial_fit X":
        call = est.partial_fit
    if where == "predict sparse X":
        est = fitted(Est)
        call = lambda Xq, yq, **kw: est.predict(Xq)  # noqa: E731
    kwargs = {} if where == "partial_fit X" or where.startswith("predict") else {
        "sample_weight": sw}
    if where == "partial_fit X" and Est is MLPClassifier:
        kwargs["classes"] = [0, 1]
    with pytest.raises(ValueError, match=match):
        call(Xb, yb if Est is MLPRegressor or where != "y" else yb, **kwargs)


def test_negative_and_misshapen_sample_weight():
    with pytest.raises(ValueError, match="Negative values in data passed to `sample_weight`"):
        MLPClassifier().fit(X, Y, sample_weight=-np.ones(60))
    with pytest.raises(ValueError, match=r"sample_weight.shape == \(59,\), expected \(60,\)"):
        MLPClassifier().fit(X, Y, sample_weight=np.ones(59))


# ------------------------------------------------------------------- shapes
@pytest.mark.parametrize("Est", ESTIMATORS)
def test_complex_and_string_X(Est):
    with pytest.raises(ValueError, match="Complex data not supported"):
        Est().fit(X + 1j, Y)
    Xs = X.astype(object)
    Xs[3, 2] = "seven"
    with pytest.raises(ValueError, match="could not convert string to float: 'seven'"):
        Est().fit(Xs, Y)
    est = fitted(Est)
    with pytest.raises(ValueError, match="Complex data not supported"):
        est.predict(X + 1j)


def test_wrong_number_of_outputs_in_partial_fit():
    est = quiet(MLPRegressor(hidden_layer_sizes=(4,), max_iter=2).fit, X, np.c_[Y, Y])
    with pytest.raises(ValueError, match="y has 1 outputs but the model was fitted with 2"):
        est.partial_fit(X, Y)


def test_feature_names_must_match_at_predict():
    frame = pd.DataFrame(X, columns=list("abcde"))
    est = quiet(MLPClassifier((4,), max_iter=2).fit, frame, Y)
    with pytest.raises(ValueError, match="feature names should match"):
        est.predict(frame[list("edcba")])


@pytest.mark.parametrize("Est", ESTIMATORS)
def test_one_sample(Est):
    est = fitted(Est)
    assert est.predict(X[:1]).shape == (1,)
    if Est is MLPClassifier:
        with pytest.raises(ValueError, match="only one class"):
            Est().fit(X[:1], Y[:1])
    else:
        out = quiet(Est(hidden_layer_sizes=(3,), max_iter=3).fit, X[:1], [2.0]).predict(X)
        assert np.isfinite(out).all()
        with pytest.raises(ValueError, match="train set will be empty"):
            Est(early_stopping=True).fit(X[:1], [2.0])


# ------------------------------------------------------------------- labels
@pytest.mark.parametrize("y", [
    [1, "a"] * 30,
    np.array([1, "a"] * 30, dtype=object),
    pd.Series([2.5, "b"] * 30),
])
def test_mixed_string_and_number_labels(y):
    with pytest.raises(ValueError, match=r"Mix of label input types \(string and number\)"):
        MLPClassifier().fit(X, y)


def test_string_labels_with_early_stopping_work():
    labels = np.array(["setosa", "versicolor", "virginica"])[np.arange(60) % 3]
    est = quiet(MLPClassifier((8,), early_stopping=True, max_iter=10, random_state=0).fit,
                X, labels)
    assert set(est.predict(X)) <= set(labels)
    assert len(est.validation_scores_) == est.n_iter_


def test_new_classes_are_refused():
    est = fitted(MLPClassifier, warm_start=True)
    with pytest.raises(ValueError, match="warm_start can only be used where `y` has the same "
                                         "classes"):
        est.fit(X, np.where(Y == 1, 7, Y))
    est = quiet(MLPClassifier((4,)).partial_fit, X, Y, classes=[0, 1])
    with pytest.raises(ValueError, match="`y` has classes not in `self.classes_`"):
        est.partial_fit(X, Y + 1)
    with pytest.raises(ValueError, match="is not the same as on the last call"):
        est.partial_fit(X, Y, classes=[0, 1, 2])


def test_partial_fit_needs_two_classes():
    with pytest.raises(ValueError, match="partial_fit needs at least 2 classes"):
        MLPClassifier().partial_fit(X, np.zeros(60), classes=[0])
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        MLPClassifier().partial_fit(X, Y)


@pytest.mark.parametrize("Est", ESTIMATORS)
def test_partial_fit_with_early_stopping_is_refused_and_changes_nothing(Est):
    est = Est(early_stopping=True)
    kw = {"classes": [0, 1]} if Est is MLPClassifier else {}
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping=True"):
        est.partial_fit(X, Y, **kw)
    assert not hasattr(est, "coefs_") and not hasattr(est, "classes_")


# ------------------------------------------------------------------- values
@pytest.mark.parametrize("Est", ESTIMATORS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_constant_features(Est, dtype):
    Xc = np.ones((60, 4), dtype=dtype)
    est = quiet(Est(hidden_layer_sizes=(5,), max_iter=20, random_state=0).fit, Xc, Y)
    out = est.predict_proba(Xc) if Est is MLPClassifier else est.predict(Xc)
    assert np.isfinite(out).all()
    if Est is MLPClassifier:
        np.testing.assert_allclose(out.sum(axis=1), 1, rtol=1e-6)


@pytest.mark.parametrize("Est", ESTIMATORS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
def test_huge_features_warn_and_never_give_nan(Est, dtype, solver):
    Xh = (X * 1e30).astype(dtype)
    est = Est(hidden_layer_sizes=(6,), solver=solver, max_iter=10, random_state=0)
    with pytest.warns(InputScaleWarning, match=r"values up to \d\.\d+e\+30 in absolute value"):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning, message="(?!X has)")
            est.fit(Xh, Y)
    for Xq in (Xh, X.astype(dtype)):
        try:
            out = est.predict_proba(Xq) if Est is MLPClassifier else est.predict(Xq)
        except ValueError as exc:
            assert "not finite" in str(exc)
        else:
            assert np.isfinite(out).all()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_outputs_that_overflow_are_refused_not_returned(dtype):
    # A Poisson model's exp output overflows far outside the training range.
    est = quiet(MLPRegressor(loss="poisson", hidden_layer_sizes=(8, 8), max_iter=5,
                             random_state=0).fit, X.astype(dtype), Y)
    with pytest.raises(ValueError, match=r"output is not finite for \d+ sample\(s\) \(first: "
                                         r"row \d+\)"):
        est.predict((X * 1e4).astype(dtype))
    # So does a model whose weights were set to infinity by hand.
    clf = fitted(MLPClassifier)
    clf.coefs_[0][0, :] = np.inf
    with pytest.raises(ValueError, match="output is not finite"):
        clf.predict_proba(X)


# ------------------------------------------------------------------ options
def bad_values(Est):
    """(param, value) for every parameter and every kind of wrong value."""
    for param, constraints in Est._parameter_constraints.items():
        for value in ("bogus", -1.5, -1, 2.5, 0, 10**9, None, [3]):
            cs = [make_constraint(c) for c in constraints]
            if not any(c.is_satisfied_by(value) for c in cs):
                yield param, value


@pytest.mark.parametrize("Est", ESTIMATORS)
def test_every_invalid_option_value_names_the_option(Est):
    cases = list(bad_values(Est))
    assert len(cases) > 100
    for param, value in cases:
        with pytest.raises(ValueError, match=f"'{param}' parameter"):
            Est(**{param: value}).fit(X, Y)


@pytest.mark.parametrize("sizes", [(-1,), (0, 3), (3.0,), ("3",), (np.float64(2),), (True,),
                                   [[3]]])
def test_layer_sizes_must_be_positive_integers(sizes):
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        MLPRegressor(hidden_layer_sizes=sizes).fit(X, Y)


# --------------------------------------------------------- memory layouts
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_read_only_memmap_and_fortran_input_everywhere(tmp_path, dtype):
    path = tmp_path / "X.npy"
    np.save(path, np.asfortranarray(X.astype(dtype)))
    Xm = np.load(path, mmap_mode="r")
    assert not Xm.flags.writeable and Xm.flags.f_contiguous
    ref = quiet(MLPClassifier((6,), max_iter=3, random_state=0).fit, X.astype(dtype), Y)
    est = quiet(MLPClassifier((6,), max_iter=3, random_state=0).fit, Xm, Y)
    np.testing.assert_array_equal(est.coefs_[0], ref.coefs_[0])
    np.testing.assert_allclose(est.predict_proba(Xm), ref.predict_proba(X.astype(dtype)),
                               rtol=1e-5)
    quiet(est.partial_fit, Xm, Y)
    assert est.coefs_[0].dtype == dtype


@pytest.mark.parametrize("layout", ["C", "F", "strided", "csr", "csc"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_one_pass_value_checks_in_every_layout(layout, dtype):
    # fit checks finiteness and scale with the same min and max of X: each
    # layout, each bad value, any position.
    def arranged(A):
        if layout == "F":
            return np.asfortranarray(A)
        if layout == "strided":
            return np.repeat(A, 2, axis=1)[:, ::2]
        if layout in ("csr", "csc"):
            return getattr(sp, layout + "_matrix")(A)
        return A

    base = X.astype(dtype)
    for where in [(0, 0), (len(X) - 1, X.shape[1] - 1), (31, 2)]:
        for bad, match in [(np.nan, "NaN"), (np.inf, "infinity"), (-np.inf, "infinity"),
                           (-3e20, "values up to 3e\\+20")]:
            A = base.copy()
            A[where] = bad
            est = MLPClassifier(hidden_layer_sizes=(4,), max_iter=1, random_state=0)
            if np.isfinite(bad):
                with pytest.warns(InputScaleWarning, match=match):
                    with warnings.catch_warnings():
                        warnings.filterwarnings("ignore", message="(?!X has)")
                        est.fit(arranged(A), Y)
            else:
                with pytest.raises(ValueError, match=match):
                    est.fit(arranged(A), Y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputScaleWarning)
        quiet_ok = MLPClassifier(hidden_layer_sizes=(4,), max_iter=1, random_state=0)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="(?!X has)")
            quiet_ok.fit(arranged(base * 1e9), Y)  # within LARGE_FEATURE: no warning


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_one_pass_scale_check_never_hides_a_large_value(dtype):
    # A contiguous X is cleared by its sum of squares alone when that is
    # under LARGE_FEATURE**2 / 2; a value just past LARGE_FEATURE, alone in
    # a small X or among many, still warns, and a sum of squares over the
    # cut made of values within LARGE_FEATURE does not.
    from fastmlp._validation import LARGE_FEATURE

    for fill in (0.0, 1.0):
        A = np.full((60, 5), fill, dtype=dtype)
        A[17, 3] = dtype(1.001 * LARGE_FEATURE)
        with pytest.warns(InputScaleWarning, match="values up to 1e\\+10"):
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="(?!X has)")
                MLPClassifier((3,), max_iter=1).fit(A, Y)
    A = np.full((60, 5), 0.9 * LARGE_FEATURE, dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputScaleWarning)
        warnings.filterwarnings("ignore", message="(?!X has)")
        MLPClassifier((3,), max_iter=1).fit(A, Y)
