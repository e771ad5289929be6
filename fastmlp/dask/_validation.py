"""Early stopping on a cluster: the validation rows of each part, and the
validation score as sums over them.

The local estimators split the rows with ``train_test_split`` (stratified
by y), which needs every label in one place. Here each part draws its own
validation rows (``split_rows``: a fixed fraction of its rows, from a seed
and the part's index), so the split depends only on the data's chunking
and the seed, and no label leaves its worker. The score (accuracy for a
classifier, R² for a regressor, as the local ``score``) is built from sums
over the validation rows, which add across parts like every other round.
"""

import numpy as np


def split_rows(n, fraction, seed, index):
    """(training rows, validation rows) of part ``index`` with n rows.

    round(fraction * n) rows are drawn for validation, from a generator
    seeded with (seed, index); both arrays sorted, int64.
    """
    k = int(round(fraction * n))
    rng = np.random.RandomState([seed, index])
    val = np.zeros(n, dtype=bool)
    val[rng.choice(n, size=k, replace=False)] = True
    rows = np.arange(n, dtype=np.int64)
    return rows[~val], rows[val]


def _weights(sw, n):
    return np.ones(n) if sw is None else np.asarray(sw, dtype=np.float64)


class AccuracySums:
    """A classifier's accuracy: [sum of the weights of the rows predicted
    right, sum of the weights], as the local ``score`` (accuracy_score with
    sample_weight) on the labels its ``predict`` gives.

    Y holds 0/1 (label_binarize): one column per class (multiclass, argmax),
    one column (binary) or one per label (multilabel), each thresholded.
    """

    def __init__(self, y_type, threshold):
        self.y_type = y_type
        self.threshold = float(threshold)

    def prepare(self, sums):
        """Nothing to learn of the validation targets beforehand."""

    def __call__(self, out, Y, sw):
        if self.y_type == "multiclass":
            right = out.argmax(axis=1) == Y.argmax(axis=1)
        else:
            right = ((out > self.threshold) == (Y > 0.5)).all(axis=1)
        w = _weights(sw, len(right))
        return np.array([np.dot(w, right), w.sum()])

    def combine(self, sums):
        return float(sums[0] / sums[1])


class R2Sums:
    """A regressor's R² (uniform average over the outputs), as the local
    ``score`` (r2_score with sample_weight).

    Its denominator, the weighted spread of the validation targets, does
    not change during a fit: ``prepare`` takes it once (two rounds: the
    weighted means, then the squared deviations from them, accurate however
    large the means). Each score is then one round of the weighted squared
    errors, one sum per output.
    """

    def __init__(self):
        self.mean = None
        self.spread = None

    def prepare(self, sums):
        """sums : callable(Stat) -> that Stat summed over the validation rows."""
        first = sums(Stat(self, "mean_sums"))
        self.mean = first[1:] / first[0]
        self.spread = np.asarray(sums(Stat(self, "spread_sums")), dtype=np.float64)

    def __call__(self, out, Y, sw):
        w = _weights(sw, Y.shape[0])
        return w @ (Y - out) ** 2

    def mean_sums(self, out, Y, sw):
        """[sum w, sum w y_j ...]"""
        w = _weights(sw, Y.shape[0])
        return np.concatenate([[w.sum()], w @ Y])

    def spread_sums(self, out, Y, sw):
        """[sum w (y_j - mean_j)^2 ...]"""
        w = _weights(sw, Y.shape[0])
        return w @ (Y - self.mean) ** 2

    def combine(self, sums):
        # As r2_score's force_finite: a constant target scores 1 when
        # predicted exactly, else 0.
        scores = np.where(self.spread > 0, 1.0 - sums / np.where(self.spread > 0,
                                                                 self.spread, 1.0),
                          np.where(sums == 0, 1.0, 0.0))
        return float(np.mean(scores))


class Stat:
    """One of a scorer's sums (``method``: a method name of it) as an
    operation's ``kind``: picklable, with the scorer's state. Only the
    score itself (``__call__``) reads the network's output."""

    def __init__(self, scorer, method="__call__"):
        self.scorer = scorer
        self.method = method
        self.uses_output = method == "__call__"

    def __call__(self, out, Y, sw):
        return getattr(self.scorer, self.method)(out, Y, sw)
