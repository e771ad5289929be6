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


@parametrize_with_checks(
    [
        MLPClassifier(max_iter=100, random_state=0),
        MLPRegressor(max_iter=100, random_state=0),
        MLPClassifier(solver="lbfgs", max_iter=50, random_state=0),
        MLPRegressor(solver="sgd", max_iter=100, random_state=0, n_threads=1),
    ]
)
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)
