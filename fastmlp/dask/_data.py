"""Dask input as row chunks, and the parts each worker keeps for a fit.

A *part* is one row chunk of (X, Y, sample_weight) in the form the compiled
kernels read: X a float array (any strides) or CSR with int32 indices, Y the
encoded target matrix, both of the fit's dtype. Parts are built on the
workers (``make_part``) from the user's dask graph and stay there.
"""

import warnings

import numpy as np
import scipy.sparse as sp
from dask.base import is_dask_collection
from dask.sizeof import sizeof
from sklearn.exceptions import DataConversionWarning

from .._validation import _csr_int32

FLOAT_DTYPES = (np.float64, np.float32)


class Part:
    """One row chunk of the training data, as the kernels read it.

    rows : int64 array
        The rows trained on (positions in the chunk): all of them, unless
        some are kept for validation (val_rows, early stopping).
    """

    __slots__ = ("X", "Y", "sample_weight", "rows", "val_rows")

    def __init__(self, X, Y, sample_weight, rows=None, val_rows=None):
        self.X = X
        self.Y = Y
        self.sample_weight = sample_weight
        self.rows = np.arange(Y.shape[0], dtype=np.int64) if rows is None else rows
        self.val_rows = np.empty(0, dtype=np.int64) if val_rows is None else val_rows

    def train_positions(self, positions):
        """The chunk's rows at these positions among the training rows."""
        if len(self.val_rows) == 0:
            return positions
        return np.ascontiguousarray(self.rows[positions])

    def _stats(self, rows):
        if self.sample_weight is None:
            return len(rows), float(len(rows))
        return len(rows), float(np.sum(self.sample_weight[rows], dtype=np.float64))

    def stats(self):
        """(training rows, their sample-weight sum, validation rows, theirs);
        sums in float64."""
        if len(self.val_rows) == 0 and self.sample_weight is not None:
            n = self.Y.shape[0]
            return n, float(np.sum(self.sample_weight, dtype=np.float64)), 0, 0.0
        return self._stats(self.rows) + self._stats(self.val_rows)


@sizeof.register(Part)
def _sizeof_part(part):
    # Dask's memory accounting (spilling, memory_limit) needs the real size.
    X = part.X
    size = X.data.nbytes + X.indices.nbytes + X.indptr.nbytes if sp.issparse(X) else X.nbytes
    size += part.Y.nbytes + part.rows.nbytes + part.val_rows.nbytes
    if part.sample_weight is not None:
        size += part.sample_weight.nbytes
    return int(size)


def _is_frame(obj):
    return hasattr(obj, "to_dask_array")


def as_dask_rows(X):
    """A 2-D dask array of rows with known chunk sizes, and the frame's meta.

    Dask dataframes become arrays (their partition lengths are computed);
    columns are put in one chunk so that a row chunk is a whole block of
    rows. Returns (array, meta) where meta is the empty pandas frame of a
    dask dataframe (for feature names) or None.
    """
    if not is_dask_collection(X):
        raise TypeError(
            "fastmlp.dask estimators train on dask collections (dask.array or "
            f"dask.dataframe); got {type(X).__name__}. For in-memory data use "
            "fastmlp.MLPClassifier / fastmlp.MLPRegressor, or wrap it with "
            "dask.array.from_array(X, chunks=...)."
        )
    meta = None
    if _is_frame(X):
        if X.ndim != 2:
            raise ValueError("X must be 2-D: a dask DataFrame or a 2-D dask array.")
        meta = X._meta
        X = X.to_dask_array(lengths=True)
    if X.ndim != 2:
        raise ValueError(f"Expected a 2-D dask array for X, got {X.ndim}-D.")
    if any(np.isnan(c) for c in X.chunks[0]):
        X = X.compute_chunk_sizes()
    if len(X.chunks[1]) > 1:
        X = X.rechunk({1: -1})
    if X.shape[0] == 0:
        raise ValueError("Found array with 0 sample(s) while a minimum of 1 is required.")
    return X, meta


def fit_dtype(X, dtype=None):
    """The fit's dtype: X's own when float32/float64, else float64."""
    if dtype is not None:
        return np.dtype(dtype)
    if X.dtype in FLOAT_DTYPES:
        return X.dtype
    return np.dtype(np.float64)


def align_rows(v, X, name, ndim_max):
    """v (a dask or in-memory array-like) cut into X's row chunks."""
    import dask.array as da

    if v is None:
        return None
    if is_dask_collection(v):
        if _is_frame(v):
            v = v.to_dask_array(lengths=True)
        elif any(np.isnan(c) for c in v.chunks[0]):
            v = v.compute_chunk_sizes()
    else:
        v = np.asarray(v)
    if v.ndim == 0 or v.ndim > ndim_max:
        raise ValueError(f"{name} must be {'1-D' if ndim_max == 1 else '1-D or 2-D'}, "
                         f"got an array of shape {v.shape}.")
    if v.shape[0] != X.shape[0]:
        raise ValueError(
            "Found input variables with inconsistent numbers of samples: "
            f"[{X.shape[0]}, {v.shape[0]}] (X and {name})."
        )
    if v.ndim == 2 and v.shape[1] == 1 and name == "y":
        warnings.warn(
            "A column-vector y was passed when a 1d array was expected. Please change "
            "the shape of y to (n_samples, ), for example using ravel().",
            DataConversionWarning, stacklevel=4,
        )
        v = v[:, 0]
    chunks = (X.chunks[0],) + tuple((s,) for s in v.shape[1:])
    if isinstance(v, np.ndarray):
        return da.from_array(v, chunks=chunks)
    if v.chunks != chunks:
        v = v.rechunk(chunks)
    return v


def _kernel_X(x, dtype, index):
    if sp.issparse(x):
        x = _csr_int32(sp.csr_matrix(x, dtype=dtype))
        values = x.data
    else:
        x = np.asarray(x)
        if x.dtype != dtype:
            try:
                x = x.astype(dtype)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"X has non-numeric values in row chunk {index}: {exc}") from None
        values = x
    if not np.isfinite(values).all():
        raise ValueError(f"Input X contains NaN or infinity (in row chunk {index}).")
    return x


def _sample_weight(sw, dtype, index):
    if sw is None:
        return None
    sw = np.ascontiguousarray(sw, dtype=dtype)
    if not np.isfinite(sw).all():
        raise ValueError(f"sample_weight contains NaN or infinity (in row chunk {index}).")
    if (sw < 0).any():
        raise ValueError("Negative values in data passed to sample_weight")
    return sw


class MatrixTargets:
    """Targets already encoded as the kernels' target matrix (or a vector)."""

    def encode(self, y, index):
        return y.reshape(y.shape[0], -1)

    def class_weights(self, y):
        """Per-row weights from the targets: none here."""
        return None


def make_part(x, y, sw, index, targets, dtype, split=None):
    """Build one Part on a worker; ``targets.encode`` turns y into Y.

    split : (fraction, seed) or None
        Keep that fraction of the rows for validation (see
        fastmlp.dask._validation.split_rows).
    """
    X = _kernel_X(x, dtype, index)
    y = np.asarray(y)
    Y = np.ascontiguousarray(targets.encode(y, index), dtype=dtype)
    if not np.isfinite(Y).all():
        raise ValueError(f"Input y contains NaN or infinity (in row chunk {index}).")
    sw = _sample_weight(sw, dtype, index)
    class_weight = targets.class_weights(y)
    if class_weight is not None:  # as the local estimators combine them
        class_weight = class_weight.astype(dtype)
        sw = class_weight if sw is None else sw * class_weight
    if split is None:
        return Part(X, Y, sw)
    from ._validation import split_rows

    return Part(X, Y, sw, *split_rows(Y.shape[0], split[0], split[1], index))


def part_builder(X, y, sample_weight, targets, dtype, split=None):
    """A callable (index, key) -> the delayed Part of row chunk index.

    X, y and sample_weight are dask arrays with the same row chunks; split:
    see make_part.
    """
    import dask

    xs = X.to_delayed().ravel()
    ys = y.to_delayed().ravel()
    sws = [None] * len(xs) if sample_weight is None else sample_weight.to_delayed().ravel()

    def build_part(i, key):
        return dask.delayed(make_part)(xs[i], ys[i], sws[i], i, targets, dtype, split,
                                       dask_key_name=key)

    return build_part
