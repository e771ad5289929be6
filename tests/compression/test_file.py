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
from fastmlp.compression import _file, _header, compress, load, save
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
    assert contents.meta == {"format": 2}
    assert set(contents.arrays) == {"model"} and not contents.sparse
    parts = unpack(path)
    assert parts["doc"]["class"] == "MLPClassifier"
    assert len(parts["entries"]) == 3 and parts["n_features"] == 64


def test_loaded_state_matches_the_compressed_estimator(saved):
    """Built directly, the loaded estimator holds what __setstate__ would
    have made of the compressed estimator's state (the training curves and
    training-time state aside)."""
    model, path = saved
    got, want = load(path).__getstate__(), model.estimator.__getstate__()
    skip = _file.DROPPED | set(_file.CURVES)
    assert set(got) - skip == set(want) - skip
    for key in set(got) - skip:
        a, b = got[key], want[key]
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b)
            assert a.dtype == b.dtype
        else:
            assert type(a) is type(b) and a == b, key
    for W, W0 in zip(got["coefs_"], want["coefs_"]):
        assert (W != W0).nnz == 0 and W.dtype == W0.dtype


def test_metadata_is_compact(tmp_path):
    """Everything but the coded weights (container, state, layer table) stays
    within a few hundred bytes; it was 1.6 KB as JSON."""
    est = fitted(hidden_layer_sizes=(300, 100), max_iter=20)
    prune_magnitude(est, 0.92, scope="global")
    model = compress(est, bits=5)
    model.save(tmp_path / "m.fmz")
    payload = sum(s["stored"] for s in model.layer_sizes())
    assert os.path.getsize(tmp_path / "m.fmz") - payload < 400


def test_inline_arrays_round_trip_exactly(tmp_path):
    """Classes of every kind travel in the state document, exactly."""
    for y in (Y.astype(np.float32) - 0.0, Y + 2**40, np.array(["a", "b"])[Y % 2],
              (Y % 2).astype(bool)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = MLPClassifier((8,), max_iter=5, random_state=0).fit(X, y)
        model = compress(est, bits=3)
        model.save(tmp_path / "m.fmz")
        back = load(tmp_path / "m.fmz")
        np.testing.assert_array_equal(back.classes_, est.classes_)
        assert back.classes_.dtype == est.classes_.dtype
        np.testing.assert_array_equal(back.predict(X), model.estimator.predict(X))


def test_format_1_files_are_refused_by_name(tmp_path):
    _container.write(tmp_path / "old.fmz", "fastmlp.compressed",
                     {"class": "MLPClassifier", "layers": [], "state": {}})
    with pytest.raises(ModelFileError, match="format 1.*compress the model again"):
        load(tmp_path / "old.fmz")


def test_file_is_small(tmp_path):
    est = fitted(hidden_layer_sizes=(300, 100), max_iter=20)
    prune_magnitude(est, 0.92, scope="global")
    compress(est, bits=5).save(tmp_path / "m.fmz")
    dense_float32 = 4 * sum(W.shape[0] * W.shape[1] + W.shape[1] for W in est.coefs_)
    assert os.path.getsize(tmp_path / "m.fmz") < dense_float32 / 20


def test_training_state_is_left_out(saved):
    _, path = saved
    text = json.dumps(unpack(path)["doc"]["state"])
    for name in ("_opt_state", "_best_theta", "_random_state", "coefs_", "intercepts_"):
        assert name not in text
    assert "activation" in text and "tanh" in text  # non-default: kept
    assert "beta_1" not in text  # at its default: left to the loader
    for name in _file.DERIVED:  # the layers say it
        assert name not in text


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


def unpack(path):
    """The parts of a .fmz file: container header, data region, the state
    document, the layer table and the bytes after it."""
    header, data, _ = split(path.read_bytes())
    e = header["arrays"]["model"]
    blob = data[e["offset"]:e["offset"] + e["nbytes"]]
    r = _header.ByteReader(blob)
    doc = _header.unpack_document(r)
    n_features, entries = _header.unpack_layers(r)
    return {"header": header, "doc": doc, "n_features": n_features, "entries": entries,
            "rest": blob[r.pos:]}


def forge(path, tmp_path, mutate, blob=None):
    """A re-signed copy of the file with its parts changed by mutate(parts),
    or with its section replaced by ``blob``."""
    parts = unpack(path)
    mutate(parts)
    if blob is None:
        blob = (_header.pack_document(parts["doc"])
                + _header.pack_layers(parts["n_features"], parts["entries"]) + parts["rest"])
    header = parts["header"]
    e = header["arrays"]["model"]
    e.update(shape=[len(blob)], nbytes=len(blob), crc32=zlib.crc32(blob) & 0xFFFFFFFF)
    out = tmp_path / "forged.fmz"
    out.write_bytes(assemble(header, blob))
    return out


def layer(p, i=0):
    return p["entries"][i]


def state(p):
    return p["doc"]["state"]["items"]


@pytest.mark.parametrize("mutate,match", [
    (lambda p: layer(p).update(shape=[64, 41]), "layer"),
    (lambda p: layer(p).update(nnz=layer(p)["nnz"] + 1), "layer 0"),
    (lambda p: layer(p).update(nnz=10**12), "nnz must be"),
    (lambda p: layer(p).update(method="linear"), "layer 0"),
    (lambda p: layer(p).update(bits=9), "bits must be"),
    (lambda p: layer(p).update(table=10**9), "table must be"),
    (lambda p: layer(p).update(skip=0), "skip must be"),
    (lambda p: layer(p).update(gaps=10**15), "gaps must be"),
    (lambda p: layer(p)["codecs"].__setitem__(0, "lzma"), "layer 0 weights"),
    (lambda p: layer(p)["nbytes"].__setitem__(0, layer(p)["nbytes"][0] + 1), "layer 0"),
    (lambda p: layer(p).update(bias_bits=None), "layer"),
    (lambda p: layer(p, 2).update(shape=[20, 10**6]), "layer 2"),
    (lambda p: p["entries"].pop(), "after the last layer"),
    (lambda p: p["entries"].clear(), "layer count"),
    (lambda p: p.update(n_features=0), "invalid shape"),
    (lambda p: p.update(rest=p["rest"] + b"\0"), "1 bytes after the last layer"),
    (lambda p: p.update(rest=p["rest"][:-1]), "truncated"),
    (lambda p: p["doc"].update(dtype="float16"), "dtype must be"),
    (lambda p: p["doc"].update(**{"class": "os.system"}), "unknown estimator class"),
    (lambda p: p["doc"].pop("state"), "state document must hold"),
    (lambda p: state(p).update(n_features_in_=63), "inconsistent.*n_features_in_"),
    (lambda p: state(p).update(n_outputs_=3), "inconsistent.*n_outputs_"),
    (lambda p: state(p).update(activation="softsign"), "inconsistent.*activation"),
    (lambda p: state(p).update(hidden_layer_sizes=[40, 21]), "inconsistent.*hidden_layer"),
    (lambda p: state(p).update(alpha=-1.0), "inconsistent.*alpha"),
    (lambda p: state(p).update(_y_type="continuous"), "inconsistent.*_y_type"),
    (lambda p: state(p).update(classes_={"$": "values", "dtype": "<i8", "shape": [3],
                                         "items": [0, 1, 2]}), "inconsistent.*classes_"),
    (lambda p: state(p).update(classes_={"$": "values", "dtype": "<i1", "shape": [1],
                                         "items": [300]}), "classes_"),
    (lambda p: state(p).update(classes_={"$": "array", "name": "x"}), "does not hold"),
    (lambda p: state(p).update(_opt_state=None), "without parameters"),
    (lambda p: p["header"].update(kind="fastmlp.estimator"), "expected 'fastmlp.compressed'"),
    (lambda p: p["header"]["meta"].update(format=3), "must be {'format': 2}"),
])
def test_forged_files_raise(saved, tmp_path, mutate, match):
    _, path = saved
    with pytest.raises(ModelFileError, match=match):
        load(forge(path, tmp_path, mutate))


@pytest.mark.parametrize("edit,match", [
    (lambda doc, table, rest: doc[:-1] + table + rest, "state|varint|layer"),
    (lambda doc, table, rest: doc + table[:3] + bytes([0x80]) + table[4:] + rest,
     "unknown flag bits"),
    (lambda doc, table, rest: doc + b"\xff" * 12 + table + rest, "varint longer"),
    (lambda doc, table, rest: b"\x05\x03abc" + table + rest, "not valid DEFLATE|inflate"),
    (lambda doc, table, rest: _header.varint(1 << 40) + doc[1:], "more than"),
    (lambda doc, table, rest: b"", "truncated"),
])
def test_forged_headers_raise(saved, tmp_path, edit, match):
    _, path = saved
    parts = unpack(path)
    doc = _header.pack_document(parts["doc"])
    table = _header.pack_layers(parts["n_features"], parts["entries"])
    assert table[:3] == bytes([64, 3, 40])  # inputs, layers, first layer's outputs
    blob = edit(doc, table, parts["rest"])
    with pytest.raises(ModelFileError, match=match):
        load(forge(path, tmp_path, lambda p: None, blob=blob))


def test_forged_payload_raises(saved, tmp_path):
    _, path = saved

    def garble(p):
        p["rest"] = p["rest"][:200] + bytes(35 * [0xFF]) + p["rest"][235:]

    with pytest.raises(ModelFileError, match="layer 0"):
        load(forge(path, tmp_path, garble))


@settings(max_examples=30)
@given(st.integers(0, 10**6), st.integers(0, 255))
def test_any_payload_byte_is_checked(saved, tmp_path_factory, where, value):
    model, path = saved
    tmp = tmp_path_factory.mktemp("hyp")

    def poke(p):
        blob = bytearray(_header.pack_document(p["doc"])
                         + _header.pack_layers(p["n_features"], p["entries"]) + p["rest"])
        blob[where % len(blob)] = value
        p["blob"] = bytes(blob)

    parts = {}
    forge(path, tmp, lambda p: (poke(p), parts.update(p)))
    try:
        est = load(forge(path, tmp, lambda p: None, blob=parts["blob"]))
    except ModelFileError:
        return
    # Accepted: a valid model whose weights follow from the bytes (the same
    # if the byte was unchanged), never a crash or another exception.
    assert est.predict(X[:5]).shape == (5,)


def test_huge_declared_layers_fail_at_once(saved, tmp_path, monkeypatch):
    """A forged dense layer of 2**30 x 2**30 weights (a few header bytes):
    MemoryError before anything is allocated."""
    def grow(p):
        layer(p, 2).update(shape=[20, 2**30], nnz=None, skip=None, gaps=None,
                           codecs=["zlib", None, "bits"],
                           nbytes=[layer(p, 2)["nbytes"][0], None, layer(p, 2)["nbytes"][2]])

    path = saved[1]
    with pytest.raises(MemoryError, match="loading"):
        load(forge(path, tmp_path, grow))
    # Where the memory is there, the entry is still refused for what it is.
    monkeypatch.setattr("fastmlp.compression._file.check_memory", lambda *a: None)
    with pytest.raises(ModelFileError, match="layer 2"):
        load(forge(path, tmp_path, grow))
