"""Weight sharing by 1-D k-means and linear quantisation."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fastmlp.compression._quantize import dequantize, kmeans_1d, linear_levels


def brute_assign(w, c):
    return np.abs(w[:, None] - c[None, :]).argmin(axis=1)


@given(arrays(np.float64, st.integers(1, 300), elements=st.floats(-5, 5)),
       st.sampled_from([1, 2, 4, 16, 32]))
def test_kmeans_is_a_fixed_point(w, k):
    c, labels = kmeans_1d(w, k)
    assert 1 <= c.size <= k and np.all(np.diff(c) > 0)
    assert np.all(np.bincount(labels, minlength=c.size) > 0)  # no empty cluster kept
    # Each weight goes to its nearest centroid (ties either way) and each
    # centroid is the mean of its weights: Lloyd's fixed point.
    d = np.abs(w - c[labels])
    assert np.all(d <= np.abs(w[:, None] - c[None, :]).min(axis=1) + 1e-12)
    means = np.bincount(labels, w) / np.bincount(labels)
    np.testing.assert_allclose(c, means, rtol=1e-12, atol=1e-12)


def test_kmeans_linear_initialisation_keeps_the_extremes():
    rng = np.random.default_rng(0)
    w = np.concatenate([rng.normal(0, 0.01, 2000), [-1.0, 1.0]])
    c, labels = kmeans_1d(w, 16)
    # A density-based start would merge the two outliers into the bulk;
    # linear initialisation gives each its own centroid (Han et al.).
    assert c[0] == -1.0 and c[-1] == 1.0
    assert np.abs(w - c[labels]).max() < 0.05  # the bulk still gets centroids


def test_kmeans_sharing_error_shrinks_with_bits():
    w = np.random.default_rng(1).standard_normal(5000)
    errs = []
    for bits in (2, 3, 4, 5):
        c, labels = kmeans_1d(w, 1 << bits)
        errs.append(np.mean((w - c[labels]) ** 2))
    assert all(b < a / 2.5 for a, b in zip(errs, errs[1:]))


@given(arrays(np.float64, st.integers(1, 200), elements=st.floats(-100, 100)),
       st.sampled_from([1, 4, 8, 16]))
def test_linear_levels_error_at_most_half_a_step(w, bits):
    lo, step, q = linear_levels(w, bits)
    assert lo.dtype == np.float32 and step.dtype == np.float32
    assert q.min() >= 0 and q.max() < 1 << bits
    v = dequantize("linear", np.array([lo, step]), q)
    assert v.dtype == np.float32
    span = w.max() - w.min()
    tol = 0.5 * float(step) + 1e-6 * max(1.0, np.abs(w).max()) + (0 if span else 1e-6)
    assert np.abs(v - w).max() <= tol + 1e-9


def test_dequantize_shared_is_a_lookup():
    table = np.array([-0.5, 0.25, 2.0], dtype=np.float32)
    np.testing.assert_array_equal(dequantize("shared", table, np.array([2, 0, 0, 1])),
                                  np.float32([2.0, -0.5, -0.5, 0.25]))
