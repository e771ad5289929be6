"""Per-layer weight sharing (1-D k-means) and linear quantisation.

Both map a layer's stored weights to small integer symbols plus a few
float32 numbers; :func:`dequantize` turns them back into float32 values.
The same function rebuilds the weights after compression and after loading,
so a loaded model's weights are bit-identical to the compressed ones.
"""

import numpy as np


def kmeans_1d(w, k, max_iter=300):
    """Lloyd's k-means on scalars, initialised linearly over [min, max].

    Han et al. (2016) found linear initialisation best for weight sharing:
    it keeps centroids on the rare large weights, which matter most. In one
    dimension each cluster is a run of the sorted weights, split at the
    midpoints between centroids, so an iteration is one ``searchsorted``.
    Clusters left empty are dropped.

    Returns
    -------
    centroids : float64 ndarray, increasing, at most k values
    labels : int32 ndarray, the centroid of each weight
    """
    w = np.asarray(w, dtype=np.float64)
    if w.size == 0:
        return np.zeros(0), np.zeros(0, dtype=np.int32)
    centroids = np.linspace(w.min(), w.max(), k)
    ws = np.sort(w)
    for _ in range(max_iter):
        labels = np.searchsorted((centroids[1:] + centroids[:-1]) / 2, ws)
        counts = np.bincount(labels, minlength=centroids.size)
        sums = np.bincount(labels, ws, minlength=centroids.size)
        new = np.where(counts > 0, sums / np.maximum(counts, 1), centroids)
        if np.array_equal(new, centroids):
            break
        centroids = new
    labels = np.searchsorted((centroids[1:] + centroids[:-1]) / 2, w)
    used = np.bincount(labels, minlength=centroids.size) > 0
    remap = np.cumsum(used) - 1
    return centroids[used], remap[labels].astype(np.int32)


def linear_levels(w, bits):
    """(lo, step, q): w ~ lo + q * step with q in [0, 2**bits), float32 lo and
    step spanning [min, max] in equal steps."""
    w = np.asarray(w, dtype=np.float64)
    if w.size == 0:
        return np.float32(0), np.float32(0), np.zeros(0, dtype=np.int32)
    lo, hi = float(w.min()), float(w.max())
    levels = (1 << bits) - 1
    lo32 = np.float32(lo)
    step32 = np.float32((hi - lo) / levels) if hi > lo else np.float32(0)
    if step32 == 0:
        return lo32, step32, np.zeros(w.size, dtype=np.int32)
    q = np.rint((w - float(lo32)) / float(step32))
    return lo32, step32, np.clip(q, 0, levels).astype(np.int32)


def dequantize(method, table, symbols):
    """float32 values of ``symbols``.

    ``method`` 'shared': ``table`` is the codebook (float32 centroids);
    'linear': ``table`` is ``[lo, step]`` and a value is ``lo + q * step``,
    computed in float32 (deterministic elementwise numpy arithmetic).
    """
    table = np.asarray(table, dtype=np.float32)
    if method == "shared":
        return table[symbols]
    lo, step = table
    return lo + np.asarray(symbols).astype(np.float32) * step
