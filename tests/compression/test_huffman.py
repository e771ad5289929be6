"""Canonical Huffman codes: optimal lengths, round trips, refusal of bad streams."""

import heapq

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastmlp.compression import _huffman
from fastmlp.compression._huffman import CodeError


def optimal_bits(freqs):
    """Total bits of an optimal prefix code (sum of the merge costs)."""
    heap = [int(f) for f in freqs if f]
    if len(heap) == 1:
        return heap[0]
    heapq.heapify(heap)
    total = 0
    while len(heap) > 1:
        a, b = heapq.heappop(heap), heapq.heappop(heap)
        total += a + b
        heapq.heappush(heap, a + b)
    return total



def assert_prefix_code(lengths):
    """The lengths make a prefix code: none above MAX_LEN and Kraft's sum <= 1."""
    lengths = np.asarray(lengths, dtype=np.int64)
    assert lengths.max(initial=0) <= _huffman.MAX_LEN
    used = lengths[lengths > 0]
    assert int(np.sum(1 << (_huffman.MAX_LEN - used))) <= 1 << _huffman.MAX_LEN


@given(st.lists(st.integers(0, 1000), min_size=1, max_size=300))
def test_lengths_are_optimal_prefix_codes(freqs):
    freqs = np.array(freqs)
    lengths = _huffman.code_lengths(freqs)
    assert np.all((lengths > 0) == (freqs > 0))
    assert_prefix_code(lengths)
    if freqs.any():
        assert _huffman.encoded_bits(freqs, lengths) == optimal_bits(freqs)


def test_lengths_limited_to_15_bits():
    freqs = np.array([int(1.7 ** i) for i in range(40)])  # Fibonacci-like: depth ~39
    lengths = _huffman.code_lengths(freqs)
    assert lengths.max() == 15
    assert_prefix_code(lengths)
    assert _huffman.encoded_bits(freqs, lengths) < 1.01 * optimal_bits(freqs) + freqs.sum() * 0.05


def test_canonical_codes_are_prefix_free():
    lengths = _huffman.code_lengths([5, 5, 5, 5, 5, 9, 2, 2, 0, 1, 1])
    codes = _huffman.codes(lengths)
    words = [format(int(c), f"0{L}b") for c, L in zip(codes, lengths) if L]
    for a in words:
        for b in words:
            assert a == b or not b.startswith(a)


@given(st.lists(st.integers(0, 40), min_size=0, max_size=2000), st.integers(41, 300))
def test_round_trip(symbols, alphabet):
    symbols = np.array(symbols, dtype=np.int32)
    data = _huffman.encode(symbols, alphabet)
    assert len(data) == _huffman.size(symbols, alphabet)
    np.testing.assert_array_equal(_huffman.decode(data, symbols.size, alphabet), symbols)


def test_long_codes_round_trip():
    # Counts spanning 2**14: codes of up to 15 bits, past the decoder's
    # 10-bit look-up table.
    freqs = [2 ** i for i in range(15, 0, -1)] + [1]
    symbols = np.repeat(np.arange(len(freqs)), freqs).astype(np.int32)
    np.random.default_rng(0).shuffle(symbols)
    assert _huffman.code_lengths(np.bincount(symbols)).max() == 15
    data = _huffman.encode(symbols, 20)
    np.testing.assert_array_equal(_huffman.decode(data, symbols.size, 20), symbols)
    for cut in (1, 2, 3):
        with pytest.raises(CodeError, match="truncated|bytes after|padding"):
            _huffman.decode(data[:-cut], symbols.size, 20)


def test_single_symbol_takes_one_bit():
    data = _huffman.encode(np.full(80, 3), 8)
    assert len(data) == 4 + 10
    np.testing.assert_array_equal(_huffman.decode(data, 80, 8), 3)


def test_skewed_stream_beats_fixed_width():
    rng = np.random.default_rng(0)
    symbols = rng.geometric(0.5, 10_000) - 1
    symbols = np.minimum(symbols, 31)
    assert len(_huffman.encode(symbols, 32)) < 0.45 * 10_000 * 5 / 8


@pytest.mark.parametrize("mutate,match", [
    (lambda d: d[:-1], "truncated"),
    (lambda d: d + b"\0", "after the last symbol"),
    (lambda d: d[:2], "fewer bytes than its code table"),
    (lambda d: d[:3] + bytes([d[3] | 0xF0]) + d[4:], "padding after the code lengths"),
    (lambda d: bytes([0x11, 0x11]) + d[2:], "prefix code"),
])
def test_bad_streams_raise(mutate, match):
    symbols = np.arange(1000) % 7
    data = _huffman.encode(symbols, 7)
    with pytest.raises(CodeError, match=match):
        _huffman.decode(mutate(data), 1000, 7)


def test_incomplete_code_rejects_unused_patterns():
    # Only symbol 0 with length 2 ("00"): the bits 11 are no code.
    data = _huffman.pack_lengths(np.array([2, 0], dtype=np.uint8)).tobytes() + b"\xff\xff"
    with pytest.raises(CodeError, match="no code"):
        _huffman.decode(data, 1, 2)


def test_nonzero_padding_raises():
    data = bytearray(_huffman.encode(np.array([0, 1, 0]), 2))
    data[-1] |= 1
    with pytest.raises(CodeError, match="padding"):
        _huffman.decode(bytes(data), 3, 2)


@given(st.binary(max_size=64), st.integers(0, 50), st.integers(1, 40))
def test_random_bytes_never_crash(data, n, alphabet):
    try:
        out = _huffman.decode(data, n, alphabet)
    except CodeError:
        return
    assert out.shape == (n,) and (out.size == 0 or (0 <= out.min() and out.max() < alphabet))
