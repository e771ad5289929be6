"""scikit-learn's own estimator checks.

Two kinds are skipped by scikit-learn itself, for reasons that hold here:
the array-API checks (they run only with SCIPY_ARRAY_API=1 and an array
library; fastmlp's kernels compute on numpy arrays only) and the
decision_function checks (the estimators, like scikit-learn's MLPs, have no
decision_function).
"""

import warnings

from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.estimator_checks import parametrize_with_checks

from fastmlp import MLPClassifier, MLPRegressor

# Weighted and repeated rows give sums that differ in the last bits; HF's
# conjugate gradient carries that to ~5e-7 (relative) in predict_proba, above
# these checks' rtol=1e-7.
_WHY = "equal up to rounding that conjugate gradient amplifies to ~5e-7"
ROUNDING = {
    "check_sample_weight_equivalence_on_dense_data": _WHY,
    "check_sample_weight_equivalence_on_sparse_data": _WHY,
}


@parametrize_with_checks(
    [
        MLPClassifier(max_iter=100, random_state=0),
        MLPRegressor(max_iter=100, random_state=0),
        MLPClassifier(solver="lbfgs", max_iter=50, random_state=0),
        MLPRegressor(solver="sgd", max_iter=100, random_state=0, n_threads=1),
        MLPRegressor(solver="bfgs", hidden_layer_sizes=(20,), max_iter=50, random_state=0),
        MLPClassifier(solver="hf", max_iter=10, random_state=0),
    ],
    expected_failed_checks=lambda est: ROUNDING if est.solver == "hf" else {},
)
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)
