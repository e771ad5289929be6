"""Input checks: scikit-learn's validation, plus a fast path for predict."""

import numpy as np
import scipy.sparse as sp
from sklearn.utils.validation import validate_data

FLOAT_DTYPES = (np.float64, np.float32)


def _csr_int32(X):
    """CSR with int32 indices, the form the kernels read."""
    X = X.tocsr()
    if X.indices.dtype != np.int32 or X.indptr.dtype != np.int32:
        if X.nnz >= 2**31:
            raise ValueError("sparse X with 2**31 or more stored values is not supported")
        X = sp.csr_matrix((X.data, X.indices.astype(np.int32), X.indptr.astype(np.int32)),
                          shape=X.shape)
    return X


def _refuse_lazy(X):
    module = type(X).__module__ or ""
    if module.startswith("dask"):
        raise TypeError(
            "fastmlp's estimators take in-memory data; for a dask collection use "
            "fastmlp.dask.MLPClassifier or fastmlp.dask.MLPRegressor, which train "
            "on the workers without loading it all here."
        )


def as_float_input(estimator, X, reset, dtype=None):
    """Validate X for fitting: 2-D, finite, float32/float64 (or dtype).

    Dense X is never copied when it is already a float array of the right
    dtype, whatever its memory order (the kernels read any strides). Sparse
    X becomes CSR.
    """
    _refuse_lazy(X)
    X = validate_data(
        estimator, X, accept_sparse=["csr", "csc", "coo"],
        dtype=FLOAT_DTYPES if dtype is None else dtype, order=None, reset=reset,
    )
    if sp.issparse(X):
        X = _csr_int32(X)
    return X


def check_X_predict(estimator, X, dtype):
    """X for predict, in the model's dtype.

    A C-contiguous float ndarray of the right width takes a fast path that
    checks only what could make the answer wrong; anything else goes
    through scikit-learn's full validation (and its error messages).
    """
    if (
        type(X) is np.ndarray
        and X.ndim == 2
        and X.dtype == dtype
        and X.shape[0] > 0
        and X.shape[1] == estimator.n_features_in_
        and not hasattr(estimator, "feature_names_in_")
        and np.isfinite(X.sum())  # a sum overflowing just takes the slow path
    ):
        return X
    return as_float_input(estimator, X, reset=False, dtype=dtype)
