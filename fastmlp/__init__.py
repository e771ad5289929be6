"""fastmlp: fast multi-layer perceptrons for the CPU.

Drop-in replacements for scikit-learn's ``MLPClassifier`` and
``MLPRegressor``, trained by Cython + OpenMP kernels.
"""

from ._classifier import MLPClassifier
from ._regressor import MLPRegressor
from .exceptions import DivergenceWarning

__version__ = "0.1.0"

__all__ = ["MLPClassifier", "MLPRegressor", "DivergenceWarning", "__version__"]
