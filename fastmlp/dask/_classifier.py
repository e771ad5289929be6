"""fastmlp.dask.MLPClassifier: the classifier, trained across a Dask cluster."""

import dask.array as da
import numpy as np
from dask.base import is_dask_collection
from sklearn.preprocessing import label_binarize
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets

from .._classifier import MLPClassifier as LocalMLPClassifier
from ._base import DaskMLPMixin, with_client
from ._validation import AccuracySums


class ClassTargets:
    """Encodes a chunk of labels as the kernels' target matrix, and gives
    its rows' class weights (on workers).

    weight_tables : list of (values, weights) or None
        One per column of y (one for 1-D y): the weight of each value.
    """

    def __init__(self, classes, weight_tables=None):
        self.classes = classes
        self.weight_tables = weight_tables

    def encode(self, y, index):
        return label_binarize(y, classes=self.classes)

    def class_weights(self, y):
        """Per-row class weights (float64), as sklearn's compute_sample_weight."""
        if self.weight_tables is None:
            return None
        columns = y.reshape(y.shape[0], -1)
        per_column = [weights[np.searchsorted(values, columns[:, k])]
                      for k, (values, weights) in enumerate(self.weight_tables)]
        return np.prod(per_column, axis=0, dtype=np.float64)


@with_client(LocalMLPClassifier)
class MLPClassifier(DaskMLPMixin, LocalMLPClassifier):
    """Multi-layer perceptron classifier trained on a Dask cluster.

    The parameters, defaults and fitted attributes of
    :class:`fastmlp.MLPClassifier`, except that ``solver`` defaults to
    'lbfgs', plus ``client`` and ``curvature_on``. ``fit`` takes row-chunked
    dask arrays or dataframes; each row chunk is loaded once on one worker
    and stays there while a full-batch solver ('lbfgs', 'bfgs' or 'hf') runs
    on the client, each evaluation sending the parameters out and getting
    one partial sum back per worker.

    Parameters
    ----------
    client : distributed.Client or None, default=None
        The cluster to train on. None: the active client, else a
        LocalCluster started for the fit (one in-process worker with
        ``n_threads`` cores) and closed after it.
    curvature_on : {'auto', 'client', 'workers'}, default='auto'
        Where 'hf' computes its curvature products: 'client' gathers each
        iteration's curvature batch to the client once and runs every CG
        product there; 'workers' runs each product on the workers (one round
        trip each); 'auto' gathers batches of at most 64 MiB.
    n_threads : int or None, default=None
        Threads each worker's task uses. None: each worker's thread count
        (``nthreads``); Dask's OMP_NUM_THREADS=1 on workers is not used.
    **params
        As for :class:`fastmlp.MLPClassifier`. ``fit`` accepts the
        full-batch solvers 'lbfgs', 'bfgs' and 'hf'; ``batch_size``, the
        learning-rate and momentum parameters are unused, as they are by the
        local full-batch solvers. With ``early_stopping=True`` ('bfgs',
        'hf') each row chunk keeps ``validation_fraction`` of its rows, drawn
        at random on its worker, for validation (not the local, stratified
        split: the labels stay on the workers).

    Notes
    -----
    ``predict``, ``predict_proba`` and ``predict_log_proba`` return dask
    arrays (computed block by block with ``map_blocks``) for dask input and
    numpy arrays for in-memory input. ``score`` accepts either.
    The same data, chunking, number of workers and threads per worker give
    bit-identical fits.
    """

    def _validation_scorer(self):
        """Early stopping's score on the workers: accuracy, as ``score``
        (the labels thresholded as ``predict`` does)."""
        return AccuracySums(self._y_type, 0.0 if self.out_activation_ == "identity" else 0.5)

    def _dask_targets(self, client, y, first_pass):
        balanced = isinstance(self.class_weight, str)
        if y.ndim == 1:
            if balanced:
                classes, counts = client.compute(da.unique(y, return_counts=True), sync=True)
            else:
                classes = client.compute(da.unique(y), sync=True)
            check_classification_targets(classes)
            lb_input = classes
        else:
            values = client.compute(da.unique(y), sync=True)
            if not np.isin(values, [0, 1]).all():
                raise ValueError(
                    "A 2-D y must be a label indicator matrix (values 0 and 1), "
                    f"got values {values[:10]}."
                )
            lb_input = np.eye(y.shape[1], dtype=int)
        if first_pass:
            self._fit_labels(lb_input)
            if self._y_type != "multilabel-indicator" and len(self.classes_) < 2:
                raise ValueError(
                    "The classifier needs samples of at least 2 classes in the data, "
                    f"but the data contains only one class: {self.classes_[0]!r}."
                )
        elif y.ndim == 1 and set(classes) != set(self.classes_):
            raise ValueError(
                "warm_start can only be used where `y` has the same classes as in the "
                f"previous call to fit. Previously got {self.classes_}, `y` has {classes}"
            )
        n_outputs = 1 if self._y_type == "binary" else len(self.classes_)
        if self.class_weight is None:
            tables = None
        elif y.ndim == 1:
            tables = [self._class_weight_table(counts if balanced else None, y.shape[0])]
        else:
            ones = client.compute(y.sum(axis=0), sync=True) if balanced else None
            tables = self._multilabel_weight_tables(ones, y.shape[0], y.shape[1])
        return ClassTargets(self.classes_, tables), n_outputs

    def _class_weight_table(self, counts, n):
        """(classes_, weight of each) for 1-D y; counts: of each class, if
        class_weight='balanced'. The local estimator's checks and formulas."""
        if counts is None:  # a dict: weights do not depend on y
            weights = LocalMLPClassifier._class_weights(self, self.classes_, False)
        else:  # sklearn's compute_class_weight('balanced'): n / (k * count)
            weights = n / (len(self.classes_) * np.asarray(counts).astype(np.float64))
        return self.classes_, self._checked_weights(weights)

    def _multilabel_weight_tables(self, ones, n, n_labels):
        """[(values, weights)] per label column; ones: count of 1s per column
        if class_weight='balanced' (each column's classes are those present,
        as compute_sample_weight has them)."""
        values = np.array([0, 1])
        if ones is None:  # a list of dicts {0: w0, 1: w1}, one per label
            # The local estimator's checks, on a y with both values in each column.
            LocalMLPClassifier._class_weights(self, np.array([[0] * n_labels, [1] * n_labels]),
                                              False)
            return [(values, self._checked_weights(
                [self.class_weight[k].get(v, 1.0) for v in values]))
                for k in range(n_labels)]
        tables = []
        for k in range(n_labels):
            counts = np.array([n - ones[k], ones[k]], dtype=np.int64)
            present = counts > 0
            weights = n / (present.sum() * counts[present].astype(np.float64))
            tables.append((values[present], self._checked_weights(weights)))
        return tables

    @staticmethod
    def _checked_weights(weights):
        weights = np.asarray(weights, dtype=np.float64)
        if not np.all(np.isfinite(weights)) or np.any(weights < 0):
            raise ValueError("class_weight must give finite, non-negative weights.")
        return weights

    def predict(self, X):
        """Class labels; a dask array for dask X (see fastmlp.MLPClassifier.predict)."""
        if not is_dask_collection(X):
            return super().predict(X)
        rows = self._predict_rows(X)
        if self._y_type == "multilabel-indicator":
            return self._map_rows(rows, "predict", len(self.classes_), np.int64)
        return self._map_rows(rows, "predict", None, self.classes_.dtype)

    def _has_proba(self):
        return LocalMLPClassifier._has_proba(self)

    @available_if(_has_proba)
    def predict_proba(self, X):
        """Probabilities, columns ordered as classes_; a dask array for dask X."""
        if not is_dask_collection(X):
            return super().predict_proba(X)
        width = 2 if self.n_outputs_ == 1 else self.n_outputs_
        return self._map_rows(self._predict_rows(X), "predict_proba", width,
                              self._theta.dtype)

    @available_if(_has_proba)
    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`."""
        if not is_dask_collection(X):
            return super().predict_log_proba(X)
        return da.log(self.predict_proba(X))

    def score(self, X, y, sample_weight=None):
        """Mean accuracy (exact match per row for multilabel); a float.

        Dask input is scored on the workers, in-memory input locally.
        """
        if not is_dask_collection(X):
            return super().score(X, y, sample_weight=sample_weight)
        X, y, sample_weight = self._score_inputs(X, y, sample_weight)
        multilabel = self._y_type == "multilabel-indicator"
        pred = self._map_rows(X, "predict", len(self.classes_) if multilabel else None,
                              np.int64 if multilabel else self.classes_.dtype)
        correct = (pred == y)
        if multilabel:
            correct = correct.all(axis=1)
        correct = correct.astype(np.float64)
        if sample_weight is None:
            return float(self._compute(correct.mean())[0])
        hits, total = self._compute((correct * sample_weight).sum(), sample_weight.sum())
        return float(hits / total)
