""".fmz files: round trips that predict bit-identically, and files that are
truncated, corrupt or forged failing with ModelFileError."""

import json
import os
import warnings
import zlib

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_digits, make_regression

import fastmlp
from fastmlp import MLPClassifier, MLPRegressor, ModelFileError, _container
from fastmlp.compression import compress, load, save
from fastmlp.pruning import prune_magnitude
from filecraft import assemble, section_bounds, split

X, Y = load_digits(return_X_y=True)
X, Y = X[:500] / 16, Y[:500]
XR, YR = make_regression(200, 12, n_targets=2, random_state=0)
YR = YR / 100


def fitted(Est=MLPClassifier, dtype=np.float64, **kw):
    params = dict(hidden_layer_sizes=(40, 20), max_iter=40, random_state=0, n_threads=1)
    params.update(kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if Est is MLPClassifier:
            return Est(**params).fit(X.astype(dtype), Y)
        return Est(**params).fit(XR.astype(dtype), YR)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    est = fitted(alpha=1e-3, activation="tanh")
    prune_magnitude(est, 0.8)
    model = compress(est, bits=5, X=X, y=Y, fine_tune_epochs=1)
    path = tmp_path_factory.mktemp("fmz") / "model.fmz"
    model.save(path)
    return model, path


def test_round_trip_is_bit_identical(saved):
    model, path = saved
    est = load(path)
    assert type(est) is MLPClassifier
    np.testing.assert_array_equal(est.predict_proba(X), model.estimator.predict_proba(X))
    np.testing.assert_array_equal(est.classes_, model.estimator.classes_)
    assert est.get_params() == model.estimator.get_params()
    for W, W0 in zip(est.coefs_, model.estimator.coefs_):
        assert sp.isspmatrix_csc(W)
        np.testing.assert_array_equal(W.toarray(), W0.toarray())
    np.testing.assert_array_equal(est.sparsity_, model.estimator.sparsity_)


@pytest.mark.parametrize("Est", [MLPClassifier, MLPRegressor])
@pytest.mark.parametrize("prune", [0.0, 0.9])
@pytest.mark.parametrize("method,bits,bias_bits", [("shared", 4, 8), ("shared", 8, None),
                                                   ("linear", 8, 8), ("linear", 16, 16)])
def test_round_trips(Est, dtype, prune, method, bits, bias_bits, tmp_path):
    est = fitted(Est, dtype)
    if prune:
        prune_magnitude(est, prune, scope="global")
    model = compress(est, bits=bits, method=method, bias_bits=bias_bits)
    save(model, tmp_path / "m.fmz")
    back = load(tmp_path / "m.fmz")
    Xd = (X if Est is MLPClassifier else XR).astype(dtype)
    assert back._theta.dtype == dtype
    np.testing.assert_array_equal(back.predict(Xd), model.estimator.predict(Xd))
    np.testing.assert_array_equal(back._theta, model.estimator._theta)


def test_file_is_a_fastmlp_container(saved):
    model, path = saved
    contents = _container.read(path)
    assert contents.kind == "fastmlp.compressed"
    assert contents.meta["class"] == "MLPClassifier"
    assert set(contents.arrays) >= {"tables", "payload"}
    assert len(contents.meta["layers"]) == 3


def test_file_is_small(tmp_path):
    est = fitted(hidden_layer_sizes=(300, 100), max_iter=20)
    prune_magnitude(est, 0.92, scope="global")
    compress(est, bits=5).save(tmp_path / "m.fmz")
    dense_float32 = 4 * sum(W.shape[0] * W.shape[1] + W.shape[1] for W in est.coefs_)
    assert os.path.getsize(tmp_path / "m.fmz") < dense_float32 / 20


def test_training_state_is_left_out(saved):
    _, path = saved
    meta = _container.read(path).meta
    text = json.dumps(meta["state"])
    for name in ("_opt_state", "_best_theta", "_random_state", "coefs_", "intercepts_"):
        assert name not in text
    assert "activation" in text and "tanh" in text  # non-default: kept
    assert "beta_1" not in text  # at its default: left to the loader


def test_fastmlp_load_reads_compressed_files(saved):
    model, path = saved
    est = fastmlp.load(path)
    np.testing.assert_array_equal(est.predict(X), model.estimator.predict(X))


def test_compression_load_refuses_plain_model_files(tmp_path):
    fastmlp.save(fitted(), tmp_path / "plain.fmd")
    with pytest.raises(ModelFileError, match="fastmlp.compressed"):
        load(tmp_path / "plain.fmd")


def test_save_refuses_other_objects(tmp_path):
    with pytest.raises(TypeError, match="CompressedModel"):
        save(fitted(), tmp_path / "x.fmz")


# ------------------------------------------------------------ damaged files
def test_truncated_files_raise(saved, tmp_path):
    _, path = saved
    blob = path.read_bytes()
    cuts = set(section_bounds(blob)) | {1, 31, 33, len(blob) // 2, len(blob) - 1}
    for cut in sorted(c for c in cuts if c < len(blob)):
        bad = tmp_path / "cut.fmz"
        bad.write_bytes(blob[:cut])
        with pytest.raises(ModelFileError):
            load(bad)


def test_flipped_bits_raise(saved, tmp_path):
    _, path = saved
    blob = bytearray(path.read_bytes())
    rng = np.random.default_rng(0)
    for pos in rng.choice(len(blob), 40, replace=False):
        bad = bytearray(blob)
        bad[pos] ^= 1 << int(rng.integers(8))
        p = tmp_path / "flip.fmz"
        p.write_bytes(bytes(bad))
        try:
            est = load(p)
        except ModelFileError:
            continue
        # A flip in padding or in insignificant JSON whitespace cannot
        # change the model; anything else must have been caught.
        np.testing.assert_array_equal(est.predict(X), saved[0].estimator.predict(X))


def forge(path, tmp_path, mutate, payload=None):
    """A re-signed copy of the file with its metadata (and payload) changed."""
    blob = path.read_bytes()
    header, data, _ = split(blob)
    if payload is not None:
        e = header["arrays"]["payload"]
        start = e["offset"]
        old = bytearray(data[start:start + e["nbytes"]])
        new = bytes(payload(old))
        assert len(new) == len(old)
        data = data[:start] + new + data[start + len(new):]
        e["crc32"] = zlib.crc32(new) & 0xFFFFFFFF
    out = tmp_path / "forged.fmz"
    mutate(header)
    out.write_bytes(assemble(header, data))
    return out


def layer(h, i=0):
    return h["meta"]["layers"][i]


@pytest.mark.parametrize("mutate,match", [
    (lambda h: layer(h).update(shape=[64, 41]), "inputs|float32|bytes|units"),
    (lambda h: layer(h, 1).update(shape=[41, 20]), "takes 41 inputs"),
    (lambda h: layer(h).update(nnz=layer(h)["nnz"] + 1), "layer 0"),
    (lambda h: layer(h).update(nnz=10**12), "nnz must be"),
    (lambda h: layer(h).update(method="kmeans"), "unknown method"),
    (lambda h: layer(h).update(bits=9), "bits must be"),
    (lambda h: layer(h).update(table=10**9), "table must be"),
    (lambda h: layer(h).update(skip=0), "skip must be"),
    (lambda h: layer(h).update(gaps=10**15), "gaps must be"),
    (lambda h: layer(h)["codecs"].__setitem__(0, "gzip"), "unknown codec"),
    (lambda h: layer(h)["nbytes"].__setitem__(0, layer(h)["nbytes"][0] + 1), "layer 0"),
    (lambda h: layer(h)["nbytes"].__setitem__(0, -1), "invalid byte count"),
    (lambda h: layer(h).update(bias_bits=None), "layer 0"),
    (lambda h: layer(h).update(extra=1), "expected an object with keys"),
    (lambda h: h["meta"]["layers"].pop(), "left unread|outputs|units"),
    (lambda h: h["meta"].update(layers=[]), "non-empty list"),
    (lambda h: h["meta"].update(dtype="float16"), "dtype must be"),
    (lambda h: h["meta"].update(**{"class": "os.system"}), "unknown estimator class"),
    (lambda h: h["meta"].pop("state"), "metadata must hold"),
    (lambda h: h["meta"]["state"]["items"].update(n_features_in_=63), "inconsistent"),
    (lambda h: h["meta"]["state"]["items"].update(activation="softsign"), "inconsistent"),
    (lambda h: h.update(kind="fastmlp.estimator"), "expected 'fastmlp.compressed'"),
])
def test_forged_metadata_raises(saved, tmp_path, mutate, match):
    _, path = saved
    with pytest.raises(ModelFileError, match=match):
        load(forge(path, tmp_path, mutate))


def test_forged_payload_raises(saved, tmp_path):
    _, path = saved

    def garble(b):
        b[5:40] = bytes(35 * [0xFF])
        return b

    with pytest.raises(ModelFileError, match="layer 0"):
        load(forge(path, tmp_path, lambda h: None, payload=garble))


@settings(max_examples=30)
@given(st.integers(0, 10**6), st.integers(0, 255))
def test_any_payload_byte_is_checked(saved, tmp_path_factory, where, value):
    model, path = saved
    tmp = tmp_path_factory.mktemp("hyp")

    def poke(b):
        b[where % len(b)] = value
        return b

    try:
        est = load(forge(path, tmp, lambda h: None, payload=poke))
    except ModelFileError:
        return
    # Accepted: a valid model whose weights follow from the bytes (the same
    # if the byte was unchanged), never a crash or another exception.
    assert est.predict(X[:5]).shape == (5,)
