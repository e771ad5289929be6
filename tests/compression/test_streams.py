"""Entropy-coded streams: every codec round-trips, the smallest is chosen,
sparse positions survive the gap coding, bad bytes are refused."""

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st

from fastmlp.compression import _streams
from fastmlp.compression._huffman import CodeError


@pytest.mark.parametrize("codec,alphabet", [
    (c, a) for c in _streams.CODECS for a in (1, 2, 32, 256, 257, 4096, 65536)
    if not (c == "huffman" and a > _streams.MAX_HUFFMAN_ALPHABET)])
def test_every_codec_round_trips(codec, alphabet):
    rng = np.random.default_rng(alphabet)
    symbols = rng.integers(0, alphabet, 777).astype(np.int32)
    data = _streams._ENCODERS[codec](symbols, alphabet)
    np.testing.assert_array_equal(_streams.decode(codec, data, 777, alphabet), symbols)


def test_encode_picks_the_smallest():
    rng = np.random.default_rng(0)
    skewed = np.minimum(rng.geometric(0.3, 5000) - 1, 31)
    sizes = _streams.sizes(skewed, 32)
    codec, data = _streams.encode(skewed, 32)
    assert len(data) == min(sizes.values()) and sizes[codec] == len(data)
    periodic = np.tile(np.arange(32), 300)  # LZ-friendly, Huffman-flat
    assert _streams.encode(periodic, 32)[0] in ("zlib", "lzma")
    assert _streams.encode(periodic, 32, codecs=("bits", "huffman"))[0] in ("bits", "huffman")


@given(st.sets(st.integers(0, 5000), max_size=400), st.sampled_from([1, 4, 16, 256]),
       st.sampled_from([1, 7, 5001]))
def test_gap_symbols_round_trip(positions, skip, n_in):
    positions = np.array(sorted(positions), dtype=np.int64)
    symbols = _streams.gap_symbols(positions, skip)
    assert symbols.min(initial=0) >= 0 and symbols.max(initial=0) <= skip
    n_out = -(-5001 // n_in)
    indptr, indices = _streams.csc_from_gaps(symbols, skip, n_in, n_out, positions.size)
    expected = sp.csc_matrix((np.ones(positions.size), (positions % n_in, positions // n_in)),
                             shape=(n_in, n_out))
    np.testing.assert_array_equal(indptr, expected.indptr)
    np.testing.assert_array_equal(indices, expected.indices)
    assert indptr.dtype == indices.dtype == np.int32


def test_gap_symbols_example():
    # positions 0, 2, 13 with skip 4: gaps 1, 2, 11 = 4 + 4 + 3
    np.testing.assert_array_equal(_streams.gap_symbols([0, 2, 13], 4), [1, 2, 0, 0, 3])


def test_positions_checks():
    with pytest.raises(CodeError, match="ends with a skip"):
        _streams.csc_from_gaps([1, 0], 4, 10, 10, 1)
    with pytest.raises(CodeError, match="beyond"):
        _streams.csc_from_gaps([4, 4, 4], 4, 5, 2, 3)
    with pytest.raises(CodeError, match="declared number"):
        _streams.csc_from_gaps([1, 1], 4, 10, 10, 3)
    with pytest.raises(CodeError, match="declared number"):
        _streams.csc_from_gaps([1, 1, 1], 4, 10, 10, 2)
    with pytest.raises(CodeError, match="outside the alphabet"):
        _streams.csc_from_gaps([1, 5], 4, 10, 10, 2)


@pytest.mark.parametrize("codec", ["zlib", "lzma", "bits"])
def test_bad_bytes_raise(codec):
    symbols = np.arange(500) % 9
    data = _streams._ENCODERS[codec](symbols, 9)
    for bad in (data[:-1], data + b"\1", b"\xff" * len(data)):
        with pytest.raises(CodeError):
            _streams.decode(codec, bad, 500, 9)


def test_symbols_outside_the_alphabet_raise():
    data = _streams._encode_zlib(np.array([0, 5, 9]), 10)
    with pytest.raises(CodeError, match="outside the alphabet"):
        _streams.decode("zlib", data, 3, 9)
    with pytest.raises(CodeError, match="unknown codec"):
        _streams.decode("gzip", data, 3, 9)
