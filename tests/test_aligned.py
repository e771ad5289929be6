import pickle

import numpy as np
import pytest

from fastmlp import MLPClassifier, _aligned
from fastmlp._network import Layout
from fastmlp.solvers.first_order import EpochRunner, Optimizer

try:
    from numpy._core.multiarray import get_handler_name
except ImportError:  # numpy < 2
    from numpy.core.multiarray import get_handler_name


def _on_line(a):
    return a.ctypes.data % _aligned.ALIGNMENT == 0


@pytest.mark.parametrize("make", [_aligned.empty, _aligned.zeros])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.uint8])
def test_arrays_start_on_a_cache_line_and_own_their_data(make, dtype):
    for n in (0, 1, 3, 17, 100, 7510, 300_000):
        a = make(n, dtype)
        assert a.shape == (n,) and a.dtype == dtype
        assert _on_line(a) and a.flags.owndata and a.flags.c_contiguous
        if make is _aligned.zeros:
            assert not a.any()
    a = make((2, 5), dtype)
    assert a.shape == (2, 5) and _on_line(a)


def test_the_default_allocator_is_back_after_each_call():
    before = get_handler_name(np.empty(3))
    a = _aligned.empty(10, np.float64)
    assert get_handler_name(a) == "fastmlp_aligned_64"
    assert get_handler_name(np.empty(3)) == before


def test_views_pickles_and_resizes_behave_as_for_any_array():
    a = _aligned.zeros(10, np.float64)
    a[:] = np.arange(10)
    v = a[2:5].reshape(3, 1)
    assert v.base is a
    b = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(a, b)
    a.resize(100_000, refcheck=False)  # numpy's realloc through the handler
    assert _on_line(a)
    np.testing.assert_array_equal(a[:10], np.arange(10))
    assert not a[10:].any()
    a.resize(4, refcheck=False)
    np.testing.assert_array_equal(a, np.arange(4))
    del a, v  # freed through the handler


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_a_fit_trains_on_aligned_parameters_and_buffers():
    X = np.random.RandomState(0).rand(200, 7)
    y = (X[:, 0] > 0.5).astype(int)
    est = MLPClassifier((13,), max_iter=2, random_state=0).fit(X, y)
    assert _on_line(est._theta) and _on_line(est._opt_state)
    layout = Layout([7, 13, 1], ["relu", "logistic"])
    runner = EpochRunner(layout, np.float64, 32)
    for name in ("grad", "acts", "tmp", "xbuf", "sp_work"):
        assert _on_line(getattr(runner, name)), name
    assert _on_line(Optimizer("adam", 50, np.float32, learning_rate_init=1e-3).state)
    # a model whose coefs_ were set by hand is re-packed into an aligned vector
    est2 = MLPClassifier((13,), max_iter=2, random_state=0).fit(X, y)
    est2.coefs_ = [np.asarray(W).copy() for W in est2.coefs_]
    assert _on_line(est2._theta)
