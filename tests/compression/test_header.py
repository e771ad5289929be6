"""The .fmz compact header: varints, the layer table and the state document
round-trip, and malformed bytes raise CodeError naming the field."""

import json
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastmlp.compression import _header
from fastmlp.compression._huffman import CodeError


@given(st.lists(st.integers(0, 2**63 - 1), max_size=20))
def test_varints_round_trip(values):
    r = _header.ByteReader(b"".join(_header.varint(v) for v in values))
    assert [r.varint("v") for _ in values] == values
    assert r.left() == 0


def test_small_values_take_one_byte():
    assert _header.varint(127) == b"\x7f" and _header.varint(128) == b"\x80\x01"
    with pytest.raises(ValueError):
        _header.varint(-1)


@pytest.mark.parametrize("data,match", [
    (b"", "truncated: the data ends before x"),
    (b"\x80", "truncated"),
    (b"\x80\x00", "redundant zero byte"),
    (b"\xff" * 10, "longer than 9 bytes"),
])
def test_bad_varints_raise(data, match):
    with pytest.raises(CodeError, match=match):
        _header.ByteReader(data).varint("x")


ENTRIES = [
    {"shape": [64, 40], "method": "shared", "bits": 5, "table": 31, "nnz": 300, "skip": 8,
     "gaps": 350, "bias_bits": 8, "codecs": ["huffman", "huffman", "bits"],
     "nbytes": [200, 180, 40]},
    {"shape": [40, 20], "method": "linear", "bits": 16, "table": 2, "nnz": None,
     "skip": None, "gaps": None, "bias_bits": None, "codecs": ["lzma", None, None],
     "nbytes": [1200, None, None]},
    {"shape": [20, 3], "method": "shared", "bits": 8, "table": 256, "nnz": None,
     "skip": None, "gaps": None, "bias_bits": 16, "codecs": ["zlib", None, "huffman"],
     "nbytes": [50, None, 7]},
]


def test_layer_table_round_trips_compactly():
    data = _header.pack_layers(64, ENTRIES)
    assert len(data) < 40
    n_features, entries = _header.unpack_layers(_header.ByteReader(data))
    assert n_features == 64 and entries == ENTRIES


@pytest.mark.parametrize("edit,match", [
    (lambda d: d[:1] + b"\x00" + d[2:], "layer count"),
    (lambda d: d[:3] + b"\x08" + d[4:], "unknown flag bits"),
    (lambda d: d[:-1], "truncated"),
])
def test_bad_layer_tables_raise(edit, match):
    data = _header.pack_layers(64, ENTRIES)
    with pytest.raises(CodeError, match=match):
        _header.unpack_layers(_header.ByteReader(edit(data)))


def test_codec_of_an_absent_stream_raises():
    e = dict(ENTRIES[1], codecs=["lzma", "zlib", None])  # a dense layer's position codec
    with pytest.raises(CodeError, match="invalid codec byte"):
        _header.unpack_layers(_header.ByteReader(_header.pack_layers(40, [e])))


STATE = {"class": "MLPClassifier", "fastmlp_version": "0.1.0", "dtype": "float64",
         "state": {"$": "dict", "items": {
             "activation": "relu", "loss": "log_loss", "random_state": 0,
             "negative_slope": 0.01, "n_threads": 1,
             "classes_": {"$": "values", "dtype": "<i8", "shape": [10], "items": list(range(10))},
             "_y_type": "multiclass", "n_iter_": 40, "t_": 294993, "loss_curve_": [],
             "_no_improvement_count": 0, "best_loss_": 0.03172786143101704,
             "validation_scores_": None, "best_validation_score_": None,
             "loss_": 0.03172786143101704}}}


def test_document_round_trips_small():
    data = _header.pack_document(STATE)
    # ~480 bytes of JSON; DEFLATE alone makes ~300 of it, the dictionary ~70.
    assert len(data) < 100
    r = _header.ByteReader(data)
    assert _header.unpack_document(r) == STATE and r.left() == 0


def packed(text, declared=None):
    c = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zdict=_header.DOCUMENT_DICTIONARY)
    body = c.compress(text) + c.flush()
    size = len(text) if declared is None else declared
    return _header.varint(size) + _header.varint(len(body)) + body


@pytest.mark.parametrize("data,match", [
    (packed(b'{"a":1}', declared=6), "exactly its 6 bytes"),
    (packed(b'{"a":1}', declared=9), "exactly its 9 bytes"),
    (packed(b'{"a":NaN}'), "not valid JSON"),
    (packed(b'{"a":1e999}'), "not valid JSON"),
    (packed(b'\xff\xfe'), "not valid JSON"),
    (_header.varint(3) + _header.varint(3) + b"\xff\xff\xff", "not valid DEFLATE|exactly"),
    (_header.varint(2**40), "more than"),
])
def test_bad_documents_raise(data, match):
    with pytest.raises(CodeError, match=match):
        _header.unpack_document(_header.ByteReader(data))


def test_document_bomb_is_bounded():
    bomb = packed(json.dumps({"a": "x" * 10**6}).encode(), declared=1000)
    with pytest.raises(CodeError, match="exactly its 1000 bytes"):
        _header.unpack_document(_header.ByteReader(bomb))
