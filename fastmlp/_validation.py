"""Input checks: scikit-learn's validation, plus a fast path for predict."""

import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.utils.validation import check_array, validate_data

from ._scan import finite_within
from ._threads import effective_n_threads
from .exceptions import InputScaleWarning

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


def as_float_input(estimator, X, reset, dtype=None, scale_check=False):
    """Validate X for fitting: 2-D, finite, float32/float64 (or dtype).

    Dense X is never copied when it is already a float array of the right
    dtype, whatever its memory order (the kernels read any strides). Sparse
    X becomes CSR. With scale_check, also warn_if_badly_scaled: the
    finiteness check and the scale check share their passes over X.
    """
    if scale_check and _plain_float_array(estimator, X, reset, dtype):
        # validate_data would find nothing to change or refuse in it; its
        # bookkeeping is done here, and finiteness is checked below.
        if reset:
            estimator.__dict__.pop("feature_names_in_", None)
            estimator.n_features_in_ = X.shape[1]
    else:
        _refuse_lazy(X)
        X = validate_data(
            estimator, X, accept_sparse=["csr", "csc", "coo"],
            dtype=FLOAT_DTYPES if dtype is None else dtype, order=None, reset=reset,
            ensure_all_finite=not scale_check,
        )
    if sp.issparse(X):
        X = _csr_int32(X)
    data = X.data if sp.issparse(X) else X
    if scale_check and data.size and not _finite_and_scaled(
            data, effective_n_threads(getattr(estimator, "n_threads", 1))):
        # numpy's min and max propagate NaN and show infinities: with them
        # the finiteness check costs no pass over X of its own (scikit-learn
        # sums X for it).
        lo, hi = float(data.min()), float(data.max())
        if not (np.isfinite(lo) and np.isfinite(hi)):
            # scikit-learn's own check, for its error message.
            check_array(X, accept_sparse="csr", dtype=None, input_name="X",
                        estimator=estimator)
        warn_if_badly_scaled(max(hi, -lo))
    return X


def _plain_float_array(estimator, X, reset, dtype):
    """True if X is an ndarray that validate_data (with finiteness not
    checked) would return as it is, with no error or warning: 2-D, at least
    one row and one column, of dtype (float32 or float64 if None), and
    either reset or of the width fitted without feature names."""
    return (
        type(X) is np.ndarray
        and X.ndim == 2
        and X.shape[0] > 0
        and X.shape[1] > 0
        and (X.dtype in FLOAT_DTYPES if dtype is None else X.dtype == dtype)
        and (reset or (getattr(estimator, "n_features_in_", X.shape[1]) == X.shape[1]
                       and not hasattr(estimator, "feature_names_in_")))
    )


def check_X_predict(estimator, X, dtype):
    """X for predict, in the model's dtype.

    A C-contiguous ndarray of the model's dtype never gets here when it is
    valid: ``_forward.predict_dense`` checks it in C. A float ndarray of the
    right dtype and width in another layout takes a fast path that checks
    only what could make the answer wrong; anything else goes through
    scikit-learn's full validation (and its error messages).
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


# Beyond this magnitude features are not "roughly unit-scaled" by any
# stretch: gradients, Adam's squared-gradient averages (float32 overflows
# past 1.8e19 squared) and outputs become unreliable.
LARGE_FEATURE = 1e10


def _finite_and_scaled(data, n_threads=1):
    """True if data (float, C- or F-contiguous) is finite and no magnitude in
    it exceeds LARGE_FEATURE: one compiled pass, without BLAS (whose threads
    would keep spinning on the core a two-thread fit needs next). False
    for other layouts too: the caller then looks (min and max: two passes)."""
    if data.flags.c_contiguous:
        flat = data.reshape(-1)
    elif data.flags.f_contiguous:
        flat = data.T.reshape(-1)
    else:
        return False
    return finite_within(flat, LARGE_FEATURE, n_threads)


def warn_if_badly_scaled(peak):
    """Warn (InputScaleWarning) if X's largest magnitude, peak, is beyond
    LARGE_FEATURE."""
    if peak > LARGE_FEATURE:
        warnings.warn(
            f"X has values up to {peak:.3g} in absolute value. An MLP trains reliably "
            "only on scaled features (e.g. sklearn.preprocessing.StandardScaler); at "
            "this scale the loss, the gradients or the outputs may overflow.",
            InputScaleWarning,
        )


def check_finite_output(out):
    """Refuse to return a network output holding NaN or infinity."""
    if not np.isfinite(out).all():
        rows = np.flatnonzero(~np.isfinite(out).all(axis=1))
        raise ValueError(
            f"The network's output is not finite for {rows.size} sample(s) (first: row "
            f"{rows[0]}): the input values are too large for the model's "
            f"{out.dtype} arithmetic. Scale the features as they were scaled for training."
        )
