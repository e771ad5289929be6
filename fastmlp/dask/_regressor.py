"""fastmlp.dask.MLPRegressor: the regressor, trained across a Dask cluster."""

import numpy as np
from dask.base import is_dask_collection

from .._regressor import MLPRegressor as LocalMLPRegressor
from ._base import DaskMLPMixin, with_client
from ._data import MatrixTargets
from ._validation import R2Sums


class RegressionTargets(MatrixTargets):
    """Checks a chunk of regression targets, as a matrix (on workers)."""

    def __init__(self, poisson):
        self.poisson = poisson

    def encode(self, y, index):
        if y.dtype.kind not in "biuf":
            try:
                y = y.astype(np.float64)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"y has non-numeric values in row chunk {index}: {exc}") from None
        if self.poisson and (y < 0).any():
            raise ValueError("loss='poisson' requires y >= 0; y has negative values.")
        return super().encode(y, index)


@with_client(LocalMLPRegressor)
class MLPRegressor(DaskMLPMixin, LocalMLPRegressor):
    """Multi-layer perceptron regressor trained on a Dask cluster.

    The parameters, defaults and fitted attributes of
    :class:`fastmlp.MLPRegressor`, except that ``solver`` defaults to
    'lbfgs' (full-batch solvers only: 'lbfgs', 'bfgs', 'hf'), plus
    ``client``, ``curvature_on`` and the distributed meaning of
    ``n_threads``, all as for :class:`fastmlp.dask.MLPClassifier`. ``predict`` returns a dask array
    for dask input; ``score`` (R²) accepts dask or in-memory input.
    """

    def _validation_scorer(self):
        """Early stopping's score on the workers: R², as ``score``."""
        return R2Sums()

    def _dask_targets(self, client, y, first_pass):
        n_outputs = 1 if y.ndim == 1 else y.shape[1]
        if not first_pass and n_outputs != self.n_outputs_:
            raise ValueError(
                f"y has {n_outputs} outputs but the model was fitted with {self.n_outputs_}."
            )
        return RegressionTargets(self.loss == "poisson"), n_outputs

    def predict(self, X):
        """Predictions; a dask array for dask X (see fastmlp.MLPRegressor.predict)."""
        if not is_dask_collection(X):
            return super().predict(X)
        rows = self._predict_rows(X)
        width = None if self.n_outputs_ == 1 else self.n_outputs_
        return self._map_rows(rows, "predict", width, self._theta.dtype)

    def score(self, X, y, sample_weight=None):
        """R² (averaged uniformly over outputs), as sklearn.metrics.r2_score."""
        if not is_dask_collection(X):
            return super().score(X, y, sample_weight=sample_weight)
        X, y, sample_weight = self._score_inputs(X, y, sample_weight)
        width = None if self.n_outputs_ == 1 else self.n_outputs_
        pred = self._map_rows(X, "predict", width, self._theta.dtype)
        if pred.ndim == 1:
            pred = pred[:, None]
        if y.ndim == 1:
            y = y[:, None]
        w = 1.0 if sample_weight is None else sample_weight[:, None]
        w_sum = X.shape[0] if sample_weight is None else sample_weight.sum()
        mean = (w * y).sum(axis=0) / w_sum
        num, den = self._compute((w * (y - pred) ** 2).sum(axis=0),
                                 (w * (y - mean) ** 2).sum(axis=0))
        num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
        r2 = np.ones_like(num)
        ok = den != 0
        r2[ok] = 1 - num[ok] / den[ok]
        r2[~ok & (num != 0)] = 0.0
        return float(np.mean(r2))
