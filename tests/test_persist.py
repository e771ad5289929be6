"""fastmlp.save / fastmlp.load: exact round trips, and files that lie."""

import builtins
import copy
import importlib
import os
import pathlib
import pickle
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import skops.io
from hypothesis import given
from hypothesis import strategies as st
from sklearn.datasets import make_classification, make_regression

import fastmlp
from fastmlp import MLPClassifier, MLPRegressor, ModelFileError

import filecraft

X, Y3 = make_classification(120, 6, n_informative=4, n_classes=3, random_state=0)
XR, YR = make_regression(120, 6, n_targets=2, random_state=0)
SKOPS_TRUSTED = {MLPClassifier: ["fastmlp._classifier.MLPClassifier"],
                 MLPRegressor: ["fastmlp._regressor.MLPRegressor"]}


def quiet(f, *a, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return f(*a, **kw)


def models():
    """(name, estimator, X, y): every kind of fitted state there is."""
    rng = np.random.RandomState(0)
    kw = dict(hidden_layer_sizes=(7, 5), max_iter=4, random_state=0)
    multilabel = (rng.rand(120, 3) > 0.5).astype(int)
    strings = np.array(["cat", "dog", "emu"])[Y3]
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(6)])
    yield "multiclass", MLPClassifier(**kw), X, Y3
    yield "binary", MLPClassifier(**kw), X, Y3 > 0
    yield "multilabel", MLPClassifier(**kw), X, multilabel
    yield "string labels", MLPClassifier(**kw), X, strings
    yield "object labels", MLPClassifier(**kw), X, strings.astype(object)
    yield "feature names", MLPClassifier(**kw), frame, Y3
    yield "early stopping", MLPClassifier(early_stopping=True, **kw), X, strings
    yield "float32", MLPClassifier(**kw), X.astype(np.float32), Y3
    yield "sgd invscaling", MLPClassifier(solver="sgd", learning_rate="invscaling", **kw), X, Y3
    yield "hinge", MLPClassifier(loss="hinge", solver="rmsprop", **kw), X, Y3
    yield "lbfgs", MLPClassifier(solver="lbfgs", **kw), X, Y3
    yield "no hidden layer", MLPClassifier(hidden_layer_sizes=(), max_iter=3, random_state=0), X, Y3
    yield "random state object", MLPClassifier(
        hidden_layer_sizes=(4,), max_iter=3, random_state=np.random.RandomState(3),
        checkpoint=None), X, Y3
    yield "dropout, per-layer activations, cosine", MLPClassifier(
        dropout=(0.2, 0.1), activation=("tanh", "relu"), learning_rate="cosine",
        **kw), X, Y3
    yield "class weights", MLPClassifier(class_weight={0: 2.0, 2: 0.5}, **kw), X, Y3
    yield "multilabel class weights", MLPClassifier(
        class_weight=[{0: 1, 1: 3}] * 3, **kw), X, multilabel
    yield "regressor", MLPRegressor(**kw), XR, YR
    yield "poisson", MLPRegressor(loss="poisson", **kw), XR, np.abs(YR[:, 0])
    yield "sparse X", MLPRegressor(solver="adagrad", **kw), sp.csr_matrix(XR * (XR > 0)), YR


def assert_same(a, b, where="state"):
    """Equal values of equal types, arrays bit for bit (NaN == NaN)."""
    assert type(a) is type(b), (where, type(a), type(b))
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        if a.dtype.kind in "fc":
            assert np.array_equal(a.view(np.uint8), b.view(np.uint8)), where
        else:
            assert np.array_equal(a, b), where
    elif sp.issparse(a):
        assert a.format == b.format and a.shape == b.shape, where
        for part in ("data", "indices", "indptr"):
            assert_same(getattr(a, part), getattr(b, part), f"{where}.{part}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, np.random.RandomState):
        assert_same(list(a.get_state()), list(b.get_state()), where)
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b), where
    else:
        assert a == b, where


@pytest.mark.parametrize("name,est,Xf,y", list(models()), ids=[m[0] for m in models()])
def test_round_trip_is_bit_identical(tmp_path, name, est, Xf, y):
    quiet(est.fit, Xf, y)
    path = tmp_path / "model.fmlp"
    fastmlp.save(est, path)
    assert os.listdir(tmp_path) == ["model.fmlp"]
    loaded = fastmlp.load(path)
    assert type(loaded) is type(est)
    assert_same(est.__getstate__(), loaded.__getstate__())
    method = est.predict_proba if hasattr(est, "predict_proba") else est.predict
    assert_same(method(Xf), getattr(loaded, method.__name__)(Xf))
    assert all(c.base is loaded._theta for c in loaded.coefs_)
    # The optimiser's and the shuffling's state came back: training goes on identically.
    if est.solver != "lbfgs" and not est.early_stopping:
        quiet(est.partial_fit, Xf, y)
        quiet(loaded.partial_fit, Xf, y)
        assert_same(est.__getstate__(), loaded.__getstate__())
    for model in (est, loaded):
        quiet(model.set_params(warm_start=True, max_iter=2).fit, Xf, y)
    assert_same(est.__getstate__(), loaded.__getstate__())


@pytest.mark.parametrize("Est", [MLPClassifier, MLPRegressor])
def test_unfitted_estimator_round_trips(tmp_path, Est):
    est = Est(hidden_layer_sizes=[3, 2], alpha=float("inf"), tol=0.0, checkpoint=tmp_path / "c")
    fastmlp.save(est, tmp_path / "m")
    loaded = fastmlp.load(tmp_path / "m")
    assert_same(est.get_params(), loaded.get_params())


# ------------------------------------------------------------ pruned models
def pruned_models():
    """(name, fitted and pruned estimator, X, y): every kind of pruned layer."""
    from fastmlp.pruning import prune_magnitude, prune_units, retrain

    kw = dict(hidden_layer_sizes=(12, 8), max_iter=6, random_state=0)
    yield "magnitude per layer", lambda: prune_magnitude(
        MLPClassifier(**kw).fit(X, Y3), 0.8), X, Y3
    yield "global, output dense", lambda: prune_magnitude(
        MLPClassifier(**kw).fit(X, Y3), 0.9, scope="global", keep_output_dense=True), X, Y3
    yield "units then weights, retrained", lambda: retrain(prune_magnitude(prune_units(
        MLPClassifier(**kw).fit(X, Y3), 0.5), 0.6), X, Y3, epochs=2), X, Y3
    yield "float32 early stopping", lambda: prune_magnitude(MLPClassifier(
        early_stopping=True, **kw).fit(X.astype(np.float32), Y3), 0.7), X.astype(np.float32), Y3
    yield "dense-ish layer (gemm fallback)", lambda: prune_magnitude(
        MLPClassifier(**kw).fit(X, Y3), 0.2), X, Y3
    yield "regressor, dropout", lambda: prune_magnitude(MLPRegressor(
        dropout=0.1, **kw).fit(XR, YR), 0.85), XR, YR


def assert_same_pruned(est, loaded, Xf):
    from fastmlp.pruning import kernel_choice

    assert_same(est.__getstate__(), loaded.__getstate__())
    for W, V in zip(est.coefs_, loaded.coefs_):
        assert sp.issparse(W) == sp.issparse(V)
        if sp.issparse(W):
            # The pattern (which weights survive) and every stored value, explicit
            # zeros included, as the kernels will index them.
            assert V.format == "csc" and V.nnz == W.nnz
            assert_same(W.indptr, V.indptr)
            assert_same(W.indices, V.indices)
            assert_same(W.data, V.data)
            assert V.data.base is loaded._theta
    assert_same(est.sparsity_, loaded.sparsity_)
    assert kernel_choice(est) == kernel_choice(loaded)
    method = est.predict_proba if hasattr(est, "predict_proba") else est.predict
    assert_same(method(Xf), getattr(loaded, method.__name__)(Xf))


@pytest.mark.parametrize("name,make,Xf,y", list(pruned_models()),
                         ids=[m[0] for m in pruned_models()])
def test_pruned_model_round_trips_bit_identically(tmp_path, name, make, Xf, y):
    est = quiet(make)
    assert any(sp.issparse(W) for W in est.coefs_)
    fastmlp.save(est, tmp_path / "pruned.fmlp")
    loaded = fastmlp.load(tmp_path / "pruned.fmlp")
    assert_same_pruned(est, loaded, Xf)
    # Pickle, joblib-style and skops carry the same state, and leave the live
    # model as it was (its parameter vector and the sparse views of it).
    theta, W0 = est._theta, est.coefs_[0]
    assert_same_pruned(est, pickle.loads(pickle.dumps(est)), Xf)
    assert est._theta is theta and est.coefs_[0] is W0
    trusted = SKOPS_TRUSTED[type(est)] + ["scipy.sparse._csc.csc_matrix"]
    assert_same_pruned(est, skops.io.loads(skops.io.dumps(est), trusted=trusted), Xf)
    # Training goes on identically, with the pattern fixed.
    if not est.early_stopping:
        quiet(est.partial_fit, Xf, y)
        quiet(loaded.partial_fit, Xf, y)
        assert_same_pruned(est, loaded, Xf)


def test_pruned_layer_keeps_explicit_zeros(tmp_path):
    """A stored zero is a surviving weight (it may grow back in retraining)."""
    from fastmlp.pruning import prune_magnitude

    est = prune_magnitude(quiet(MLPClassifier((6,), max_iter=3, random_state=0).fit, X, Y3), 0.5)
    est.coefs_[0].data[:3] = 0.0
    fastmlp.save(est, tmp_path / "z.fmlp")
    loaded = fastmlp.load(tmp_path / "z.fmlp")
    assert loaded.coefs_[0].nnz == est.coefs_[0].nnz
    assert_same_pruned(est, loaded, X)


def test_user_assigned_sparse_layers_are_stored_canonically(tmp_path):
    """A layer given as CSR (or a CSC array) is packed like the pruning functions'."""
    est = quiet(MLPClassifier((30, 20), max_iter=5, random_state=0).fit, X, Y3)
    for i, make in enumerate([sp.csr_matrix, sp.csc_array]):
        W = est.coefs_[i].copy()
        W[np.abs(W) < np.quantile(np.abs(W), 0.8)] = 0
        est.coefs_[i] = make(W)
    want = est.predict_proba(X)
    fastmlp.save(est, tmp_path / "pruned.fmlp")
    loaded = fastmlp.load(tmp_path / "pruned.fmlp")
    assert [type(W) for W in loaded.coefs_[:2]] == [sp.csc_matrix, sp.csc_matrix]
    assert_same_pruned(est, loaded, X)
    assert_same(want, loaded.predict_proba(X))


def pruned_file(tmp_path):
    from fastmlp.pruning import prune_magnitude

    est = prune_magnitude(quiet(MLPClassifier((6, 5), max_iter=3, random_state=0).fit, X, Y3),
                          0.6)
    fastmlp.save(est, tmp_path / "p.fmlp")
    return tmp_path / "p.fmlp", est


def layer0(part):
    return lambda h: h["sparse"]["state.coefs_.0"][part]


@pytest.mark.parametrize("part,edit,match", [
    ("indices", lambda a: a.__setitem__(0, 6), r"indices must lie in \[0, 6\)"),
    ("indices", lambda a: a.__setitem__(-1, -1), r"indices must lie in \[0, 6\)"),
    ("indices", lambda a: a.__setitem__(-1, 2**31 - 1), r"indices must lie in"),
    ("indptr", lambda a: a.__setitem__(1, a[2] + 1), "indptr is not non-decreasing"),
    ("indptr", lambda a: a.__setitem__(-1, a[-1] - 1), "end at nnz"),
    ("indptr", lambda a: a.__setitem__(0, 1), "start at 0"),
    # Structurally valid CSC, but not the canonical form the kernels index.
    ("indices", lambda a: a.__setitem__(slice(0, 2), a[1::-1]), "unsorted or duplicate"),
    ("indices", lambda a: a.__setitem__(1, a[0]), "unsorted or duplicate"),
])
def test_forged_sparse_structures_are_refused(tmp_path, part, edit, match):
    path, _ = pruned_file(tmp_path)
    header, _, _ = filecraft.split(path.read_bytes())
    entry = layer0(part)(header)
    blob = path.read_bytes()
    start = filecraft.align(32 + filecraft.PREAMBLE.unpack(blob[:32])[3]) + entry["offset"]
    values = np.frombuffer(blob[start:start + entry["nbytes"]], dtype=entry["dtype"]).copy()
    edit(values)
    path.write_bytes(filecraft.patch_section(blob, layer0(part), values))
    with pytest.raises(ModelFileError, match=match):
        fastmlp.load(path)


@pytest.mark.parametrize("mutate,match", [
    (lambda h: h["sparse"]["state.coefs_.0"].update(format="csr"),
     r"coefs_\[0\] must be a CSC matrix"),
    (lambda h: h["sparse"]["state.coefs_.0"].update(shape=[6, 9]), "indptr has"),
    (lambda h: h["sparse"]["state.coefs_.0"].update(shape=[-6, 5]), "negative dimension"),
    (lambda h: h["sparse"]["state.coefs_.0"]["indices"].update(shape=[2**40], nbytes=2**42),
     "truncated"),
    (lambda h: h["sparse"]["state.coefs_.0"]["indices"].update(dtype="<f4"), "int32 or int64"),
])
def test_forged_sparse_headers_are_refused(tmp_path, mutate, match):
    path, _ = pruned_file(tmp_path)
    forge(path, mutate)
    with pytest.raises(ModelFileError, match=match):
        fastmlp.load(path)


def test_pruned_file_truncated_anywhere_or_with_any_flipped_byte_is_refused(tmp_path):
    """Every section boundary, and a flipped byte anywhere in a pruned model's
    file (every byte of the preamble, every 7th after it; tests/test_container.py
    flips every byte of a smaller file)."""
    path, _ = pruned_file(tmp_path)
    blob = path.read_bytes()
    bounds = filecraft.section_bounds(blob)
    bad = tmp_path / "bad.fmlp"
    for cut in bounds[:-1]:
        bad.write_bytes(blob[:cut])
        with pytest.raises(ModelFileError, match="truncated|not a fastmlp model file"):
            fastmlp.load(bad)
    flipped = bytearray(blob)
    for i in [*range(32), *range(32, len(blob), 7)]:
        flipped[i] ^= 0x04
        bad.write_bytes(bytes(flipped))
        flipped[i] ^= 0x04
        with pytest.raises(ModelFileError):
            fastmlp.load(bad)
    assert len(bounds) > 20 and len(blob) > 3000


def bad_pruned_states():
    def edit(fn):
        def apply(state):
            W = state["coefs_"][0].copy()
            fn(W)
            state["coefs_"] = [W] + state["coefs_"][1:]
        return apply

    yield "out of range", edit(lambda W: W.indices.__setitem__(0, 99)), "must lie in"
    yield "negative index", edit(lambda W: W.indices.__setitem__(0, -1)), "must lie in"
    yield "decreasing indptr", edit(lambda W: W.indptr.__setitem__(1, W.indptr[2] + 1)), \
        "not non-decreasing"
    yield "indptr past nnz", edit(lambda W: W.indptr.__setitem__(-1, W.nnz + 1)), "nnz="
    yield "duplicate index", edit(lambda W: W.indices.__setitem__(1, W.indices[0])), \
        "unsorted or duplicate"
    yield "csr layer", lambda s: s.update(coefs_=[s["coefs_"][0].tocsr()] + s["coefs_"][1:]), \
        "must be a CSC matrix"
    yield "optimiser sized for the dense net", lambda s: s.update(
        _opt_state=np.zeros((2, 6 * 6 + 6 + 6 * 5 + 5 + 5 * 3 + 3))), "_opt_state must be"


@pytest.mark.parametrize("name,mutate,match", list(bad_pruned_states()),
                         ids=[b[0] for b in bad_pruned_states()])
def test_setstate_validates_pruned_pickles(tmp_path, name, mutate, match):
    _, est = pruned_file(tmp_path)
    state = pickle.loads(pickle.dumps(est)).__getstate__()
    mutate(state)
    with pytest.raises(ValueError, match=match):
        pickle.loads(pickle.dumps(est)).__setstate__(state)
    # The same state, smuggled into a pickle, is refused on unpickling.
    class Forged:
        def __reduce__(self):
            return (MLPClassifier.__new__, (MLPClassifier,), state)

    with pytest.raises(ValueError, match=match):
        pickle.loads(pickle.dumps(Forged()))


def test_skops_round_trip_with_the_documented_trusted_list():
    for name, est, Xf, y in models():
        quiet(est.fit, Xf, y)
        if isinstance(est.random_state, np.random.RandomState):
            continue
        data = skops.io.dumps(est)
        assert skops.io.get_untrusted_types(data=data) == SKOPS_TRUSTED[type(est)], name
        loaded = skops.io.loads(data, trusted=SKOPS_TRUSTED[type(est)])
        assert_same(est.__getstate__(), loaded.__getstate__())


def test_fitted_state_holds_only_arrays_sparse_and_plain_values():
    def plain(v):
        if isinstance(v, (list, tuple)):
            return all(plain(x) for x in v)
        if isinstance(v, dict):
            return all(isinstance(k, (str, int, float)) and plain(x) for k, x in v.items())
        return (v is None or isinstance(v, (bool, int, float, str, np.ndarray, np.generic))
                or sp.issparse(v))

    for name, est, Xf, y in models():
        quiet(est.fit, Xf, y)
        state = est.__getstate__()
        state.pop("random_state")  # a hyperparameter the user may set to a RandomState
        bad = {k: type(v).__name__ for k, v in state.items() if not plain(v)}
        assert not bad, (name, bad)


def test_save_refuses_what_it_cannot_store(tmp_path):
    with pytest.raises(TypeError, match="fastmlp.save stores fastmlp estimators"):
        fastmlp.save(object(), tmp_path / "x")
    est = MLPClassifier()
    est.extra_ = lambda: 0
    with pytest.raises(TypeError, match=r"state\.extra_ is a builtins.function"):
        fastmlp.save(est, tmp_path / "x")
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------- hostile files
class Payload:
    """Unpickling this creates a file: the classic pickle attack."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def saved(tmp_path, name="m.fmlp"):
    est = quiet(MLPClassifier((5,), max_iter=3, random_state=0).fit, X, Y3)
    fastmlp.save(est, tmp_path / name)
    return tmp_path / name


def forge(path, mutate):
    path.write_bytes(filecraft.rewrite(path.read_bytes(), mutate))


def state_items(header):
    return header["meta"]["state"]["items"]


def test_pickle_payloads_are_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(Payload(marker))
    # The payload is live: unpickling it does create the file.
    pickle.loads(payload).close()
    assert marker.exists()
    marker.unlink()

    attempts = []
    raw = tmp_path / "raw.fmlp"
    raw.write_bytes(payload)
    attempts.append(raw)
    for mutate in [
        lambda h: state_items(h).update(evil={"$": "pickle", "v": payload.hex()}),
        lambda h: h["meta"].update({"class": "builtins.open"}),
        lambda h: state_items(h).update(evil={"$": "__reduce__", "items": [payload.hex()]}),
        lambda h: state_items(h).update(evil={"$": "dict", "items": {"__class__": payload.hex()}},
                                        coefs_=payload.hex()),
    ]:
        path = saved(tmp_path, f"f{len(attempts)}.fmlp")
        forge(path, mutate)
        attempts.append(path)
    # The payload inside an array section, declared as raw bytes.
    path = saved(tmp_path, "arr.fmlp")
    blob = path.read_bytes()
    header, data, _ = filecraft.split(blob)
    start = filecraft.align(len(data))
    header["arrays"]["evil"] = {"dtype": "|u1", "shape": [len(payload)], "offset": start,
                                "nbytes": len(payload), "crc32": filecraft.crc(payload)}
    path.write_bytes(filecraft.assemble(header, data + b"\0" * (start - len(data)) + payload))
    attempts.append(path)
    for path in attempts:
        with pytest.raises(ModelFileError):
            fastmlp.load(path)
        assert not marker.exists()


def test_load_imports_calls_and_unpickles_nothing(tmp_path, monkeypatch):
    path = saved(tmp_path)
    fastmlp.load(path)  # warm: anything lazily imported by numpy/scipy is now loaded

    def forbidden(*a, **kw):
        raise AssertionError("load must not import or unpickle")

    real_import = builtins.__import__

    def guarded_import(name, *a, **kw):
        if name not in sys.modules:
            forbidden()
        return real_import(name, *a, **kw)

    for module, name in ((pickle, "loads"), (pickle, "load"), (pickle, "Unpickler"),
                         (np, "load"), (importlib, "import_module")):
        monkeypatch.setattr(module, name, forbidden)
    monkeypatch.setattr(builtins, "__import__", guarded_import)
    est = fastmlp.load(path)
    monkeypatch.undo()
    assert est.predict(X).shape == (120,)


def nested(depth):
    value = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("mutate,match", [
    (lambda h: h["meta"].update({"class": "os.system"}), "unknown estimator class 'os.system'"),
    (lambda h: h["meta"].update({"class": ["MLPClassifier"]}), "unknown estimator class"),
    (lambda h: h["meta"].pop("state"), "must hold 'class', 'fastmlp_version' and 'state'"),
    (lambda h: state_items(h).update(n_outputs_=7), "n_outputs_ is 7 but the layers say 3"),
    (lambda h: state_items(h).update(n_features_in_=99), "n_features_in_ is 99"),
    (lambda h: state_items(h).update(n_layers_=5), "n_layers_"),
    (lambda h: state_items(h).update(out_activation_="relu"), "out_activation_ must be one of"),
    (lambda h: state_items(h).update(_loss_code=99), "_loss_code"),
    (lambda h: state_items(h).update(_y_type="binary"), "binary model"),
    (lambda h: state_items(h).update(activation="gelu"), "'activation' parameter"),
    (lambda h: state_items(h).update(n_threads=10**6), "'n_threads' parameter"),
    (lambda h: state_items(h).update(classes_={"$": "objects", "shape": [2], "items": [0, 1]}),
     "classes_ has 2 classes but the network has 3 outputs"),
    (lambda h: state_items(h)["coefs_"].reverse(), r"intercepts_\[0\] must be a float64 array"),
    (lambda h: state_items(h)["intercepts_"].reverse(), r"intercepts_\[0\]"),
    (lambda h: state_items(h).update(coefs_=[]), "coefs_ must be a non-empty list"),
    (lambda h: state_items(h).update(_opt_state={"$": "float", "v": "nan"}),
     "_opt_state must be a float64 array of shape"),
    (lambda h: state_items(h).update(_rng_streams=state_items(h)["_opt_step"]),
     "refers to section 'state._opt_step' a second time"),
    (lambda h: state_items(h).update(_rng_streams={"$": "tuple", "items": [1, 2]}),
     "_rng_streams must be a uint64 array of shape"),
    (lambda h: state_items(h).pop("_opt_lr"), "must be present together"),
    (lambda h: state_items(h).update(loss_curve_=["a"]), "loss_curve_ must be a list of numbers"),
    (lambda h: state_items(h).update(n_iter_=-1), "n_iter_ must be an integer >= 0"),
    (lambda h: state_items(h).update(x={"$": "pickle", "v": ""}), "unknown value tag 'pickle'"),
    (lambda h: state_items(h).update(x={"$": "_tag_array"}), "unknown value tag"),
    (lambda h: state_items(h).update(x={"no": "tag"}), "without a '\\$' tag"),
    (lambda h: state_items(h).update(x={"$": "array", "name": "nope"}), "does not hold"),
    (lambda h: state_items(h).update(x={"$": "scalar", "dtype": "|i1", "v": 300}), "out of range"),
    (lambda h: state_items(h).update(x={"$": "scalar", "dtype": "|O", "v": 3}), "not allowed"),
    (lambda h: state_items(h).update(x={"$": "strings", "dtype": "<U2", "shape": [1],
                                        "items": ["long"]}), "longer than its dtype"),
    (lambda h: state_items(h).update(x={"$": "strings", "dtype": "<U99999999", "shape": [1],
                                        "items": ["a"]}), "not allowed"),
    (lambda h: state_items(h).update(x={"$": "objects", "shape": [3], "items": [1]}),
     "does not match"),
    (lambda h: state_items(h).update(x={"$": "objects", "shape": [-1], "items": []}),
     "invalid shape"),
    (lambda h: state_items(h).update(x={"$": "RandomState", "keys": [1], "pos": 0,
                                        "has_gauss": 0, "cached_gaussian": 0}), "624 integers"),
    (lambda h: state_items(h).update(x=nested(80)),
     "nested deeper"),
    (lambda h: h["meta"].update(state=[]), "state is not a dict"),
    (lambda h: h.update(kind="fastmlp.other"), "holds a 'fastmlp.other'"),
])
def test_inconsistent_models_are_refused(tmp_path, mutate, match):
    path = saved(tmp_path)
    forge(path, mutate)
    with pytest.raises(ModelFileError, match=match):
        fastmlp.load(path)


def test_unused_sections_are_refused(tmp_path):
    path = saved(tmp_path)
    forge(path, lambda h: [state_items(h).pop(k) for k in ("_opt_state", "_opt_step", "_opt_lr",
                                                           "_opt_epochs")])
    with pytest.raises(ModelFileError, match=r"sections \['state._opt_state', "
                                             r"'state._opt_step'\] are not part of the state"):
        fastmlp.load(path)


@pytest.mark.parametrize("attr,value,match", [
    ("n_outputs_", 9, "n_outputs_ is 9"),
    ("coefs_", "x", "coefs_ must be a non-empty list"),
    ("_opt_state", np.zeros(3), "_opt_state must be"),
    ("classes_", np.arange(7), "classes_ has 7 classes"),
])
def test_setstate_validates_pickles_too(attr, value, match):
    est = quiet(MLPClassifier((5,), max_iter=3, random_state=0).fit, X, Y3)
    state = est.__getstate__()
    state[attr] = value
    with pytest.raises(ValueError, match=match):
        MLPClassifier.__new__(MLPClassifier).__setstate__(state)


def test_predict_never_reads_past_the_layers(tmp_path):
    """Even a state that passed validation is used through the layout's shapes."""
    est = quiet(MLPClassifier((5,), max_iter=3, random_state=0).fit, X, Y3)
    est.n_features_in_ = 4  # as a user might do by hand
    with pytest.raises(ValueError, match="first layer takes 6"):
        est.predict(X[:, :4])


# --------------------------------------------------------- fuzzing the state
def paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from paths(v, prefix + (i,))


BASE = None


def base_file():
    global BASE
    if BASE is None:
        import tempfile

        folder = pathlib.Path(tempfile.mkdtemp())
        est = quiet(MLPClassifier((5, 4), max_iter=3, early_stopping=True,
                                  random_state=0).fit, X, Y3)
        fastmlp.save(est, folder / "m")
        BASE = (folder / "m").read_bytes()
    return BASE


replacement_values = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 10), st.integers(-2**64, 2**64),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=5),
    st.sampled_from([{"$": "float", "v": "nan"}, {"$": "float", "v": "inf"}, [], {}, [0],
                     {"$": "tuple", "items": []}, {"$": "dict", "items": {}},
                     {"$": "objects", "shape": [0], "items": []}, "softmax", "identity",
                     "multiclass", "binary", "lbfgs"]),
)


@given(st.data())
def test_mutated_states_load_only_if_sound(tmp_path_factory, data):
    """Any change to a valid file's metadata: refused, or a model that works."""
    header, blob_data, _ = filecraft.split(base_file())
    for _ in range(data.draw(st.integers(1, 3))):
        spot = data.draw(st.sampled_from(list(paths(header["meta"]))[1:]))
        parent = header["meta"]
        for key in spot[:-1]:
            parent = parent[key]
        # A copy: sampled_from hands out the same list or dict every time.
        parent[spot[-1]] = copy.deepcopy(data.draw(replacement_values))
    path = tmp_path_factory.mktemp("fuzz") / "m"
    path.write_bytes(filecraft.assemble(header, blob_data))
    try:
        est = quiet(fastmlp.load, path)
    except ModelFileError:
        return
    try:
        proba = est.predict_proba(X)
    except (ValueError, AttributeError, TypeError):
        return
    assert np.isfinite(proba).all()


PRUNED_BASE = None


def pruned_base():
    global PRUNED_BASE
    if PRUNED_BASE is None:
        import tempfile

        PRUNED_BASE = pruned_file(pathlib.Path(tempfile.mkdtemp()))[0].read_bytes()
    return PRUNED_BASE


@given(st.data())
def test_forged_pruned_layers_load_only_if_sound(tmp_path_factory, data):
    """Arbitrary values written into a pruned layer's data, row indices or column
    pointers (checksums re-signed): refused with ModelFileError, or a model
    whose predictions are finite or refused — never a crash or a wrong read."""
    blob = pruned_base()
    header, _, _ = filecraft.split(blob)
    name = data.draw(st.sampled_from(sorted(header["sparse"])))
    part = data.draw(st.sampled_from(["indices", "indptr", "data"]))
    entry = header["sparse"][name][part]
    start = filecraft.align(32 + filecraft.PREAMBLE.unpack(blob[:32])[3]) + entry["offset"]
    values = np.frombuffer(blob[start:start + entry["nbytes"]], dtype=entry["dtype"]).copy()
    if part == "data":
        new = st.floats(width=64)
    else:
        new = st.integers(-3, 12) | st.integers(np.iinfo(values.dtype).min,
                                                np.iinfo(values.dtype).max)
    for _ in range(data.draw(st.integers(1, 3))):
        values[data.draw(st.integers(0, len(values) - 1))] = data.draw(new)
    path = tmp_path_factory.mktemp("fuzz") / "m"
    path.write_bytes(filecraft.patch_section(
        blob, lambda h: h["sparse"][name][part], values))
    try:
        est = quiet(fastmlp.load, path)
    except ModelFileError:
        assert part != "data"  # any weight value is a valid model
        return
    for W in est.coefs_:
        if sp.issparse(W):
            assert W.indices.min(initial=0) >= 0 and W.indices.max(initial=0) < W.shape[0]
    try:
        proba = est.predict_proba(X)
    except ValueError as exc:
        assert "not finite" in str(exc) or "NaN" in str(exc) or "infinit" in str(exc), exc
        return
    assert np.isfinite(proba).all()


# ------------------------------------------------------------ kill -9 during save
KILL_SCRIPT = textwrap.dedent("""
    import sys, warnings
    warnings.simplefilter("ignore")
    import numpy as np, fastmlp
    from fastmlp import MLPRegressor
    rng = np.random.RandomState(0)
    X = rng.randn(50, 300)
    models = [MLPRegressor(hidden_layer_sizes=(500, 500), max_iter=1, random_state=s)
              .fit(X, X[:, 0]) for s in (1, 2)]
    print("ready", flush=True)
    i = 0
    while True:
        fastmlp.save(models[i % 2], sys.argv[1])
        i += 1
""")


@pytest.mark.slow
def test_kill_during_save_leaves_old_or_new_file(tmp_path, child_env):
    path = tmp_path / "m.fmlp"
    rng = np.random.RandomState(0)
    XX = rng.randn(50, 300)
    expected = [quiet(MLPRegressor(hidden_layer_sizes=(500, 500), max_iter=1,
                                   random_state=s).fit, XX, XX[:, 0]).predict(XX)
                for s in (1, 2)]
    env = child_env
    mid_write = 0
    for trial in range(5):
        proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(path)], env=env,
                                stdout=subprocess.PIPE, text=True, cwd=tmp_path)
        assert proc.stdout.readline().strip() == "ready"
        deadline = time.time() + 60
        while not path.exists() and time.time() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.3))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        mid_write += any(n.endswith(".tmp") for n in os.listdir(tmp_path))
        got = fastmlp.load(path).predict(XX)
        assert any(np.array_equal(got, e) for e in expected)
    assert mid_write > 0  # some kills did land in the middle of a write
    fastmlp.save(fastmlp.load(path), path)  # the next save clears the dead writers' files
    assert os.listdir(tmp_path) == ["m.fmlp"]


def test_callbacks_are_not_stored(tmp_path):
    from fastmlp.callbacks import History

    est = quiet(MLPClassifier((4,), max_iter=3, early_stopping=True, random_state=0,
                              callbacks=[History()]).fit, X, Y3)
    fastmlp.save(est, tmp_path / "m")
    loaded = fastmlp.load(tmp_path / "m")
    assert loaded.callbacks is None and len(est.callbacks) == 1
    assert loaded.validation_loss_curve_ == est.validation_loss_curve_


def test_other_kinds_load_through_their_registered_loader(tmp_path, monkeypatch):
    """How a variant (the compressed .fmz) plugs into fastmlp.load."""
    from fastmlp import _container, _persist

    path = tmp_path / "m.fmz"
    _container.write(path, "test.variant", {"codec": "none"},
                     arrays={"codes": np.arange(4, dtype=np.uint8)})
    with pytest.raises(ModelFileError, match="holds a 'test.variant'; expected "
                                             "'fastmlp.estimator'"):
        fastmlp.load(path)
    est = quiet(MLPClassifier((3,), max_iter=2, random_state=0).fit, X, Y3)

    def loader(p, contents):
        assert contents.meta == {"codec": "none"}
        assert_same(contents.arrays["codes"], np.arange(4, dtype=np.uint8))
        return est

    monkeypatch.setitem(_persist.LOADERS, "test.variant", loader)
    assert fastmlp.load(path) is est
