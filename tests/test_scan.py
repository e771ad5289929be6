"""The fit's finiteness-and-scale pass over X (src/_scan.pyx)."""

import numpy as np
import pytest

from fastmlp._scan import finite_within


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 7, 4096, 100_003])
def test_finite_within_agrees_with_numpy(dtype, n):
    rng = np.random.RandomState(n)
    limit = 1e10
    base = (rng.randn(n) * 1e3).astype(dtype)
    above = np.nextafter(dtype(limit), dtype(np.inf))
    specials = [np.nan, -np.nan, np.inf, -np.inf, limit, -limit, above, -above,
                0.0, -0.0, np.finfo(dtype).tiny / 4, np.finfo(dtype).max]
    for pos in {0, n // 2, n - 1}:
        for v in specials:
            x = base.copy()
            x[pos] = v
            expected = bool(np.all(np.isfinite(x)) and np.abs(x).max() <= dtype(limit))
            assert finite_within(x, limit) is expected, (v, pos)


def test_finite_within_limits():
    x = np.array([0.0, -0.0, 1.0], dtype=np.float64)
    assert finite_within(x, 1.0)
    assert not finite_within(x, 0.5)
    assert finite_within(x[:2], 0.0)
    assert finite_within(np.empty(0), 1.0)
    with pytest.raises(ValueError, match="limit"):
        finite_within(x, -1.0)
    with pytest.raises(ValueError, match="limit"):
        finite_within(x, np.nan)


def test_fit_input_check_calls_no_blas(monkeypatch):
    # A BLAS dot product on X woke OpenBLAS's threads, which then spun on the
    # core the two-thread epoch needed; the check must stay BLAS-free.
    import fastmlp._validation as validation
    from fastmlp import MLPRegressor

    def no_blas(*args, **kwargs):
        raise AssertionError("the input check called numpy.dot")

    monkeypatch.setattr(validation.np, "dot", no_blas)
    X = np.random.RandomState(0).randn(50, 3)
    for data in (X, np.asfortranarray(X), X.astype(np.float32)):
        MLPRegressor(hidden_layer_sizes=(4,), max_iter=2).fit(data, data[:, 0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_finite_within_on_threads_finds_every_block(dtype):
    # Above 2**20 values the pass is split over threads in blocks of 2**16:
    # a bad value at either end of any block is found.
    n = (1 << 20) + 12345
    x = np.random.RandomState(0).randn(n).astype(dtype)
    assert finite_within(x, 1e10, 2) and finite_within(x, 1e10, 3)
    for pos in (0, (1 << 16) - 1, 1 << 16, 5 * (1 << 16) + 7, n - 1):
        for v in (np.nan, np.inf, 2e10):
            y = x.copy()
            y[pos] = v
            assert not finite_within(y, 1e10, 2), (pos, v)
