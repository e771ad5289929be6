"""fastmlp: fast multi-layer perceptrons for the CPU.

Drop-in replacements for scikit-learn's ``MLPClassifier`` and
``MLPRegressor``, trained by Cython + OpenMP kernels.
"""

from . import _persist
from ._classifier import MLPClassifier
from ._persist import load, save
from ._regressor import MLPRegressor
from .exceptions import DivergenceWarning, InputScaleWarning, ModelFileError

__version__ = "0.1.0"

# The classes a model file may name (looked up by name, never imported).
_persist.ESTIMATORS.update(MLPClassifier=MLPClassifier, MLPRegressor=MLPRegressor)

__all__ = ["MLPClassifier", "MLPRegressor", "save", "load", "DivergenceWarning",
           "InputScaleWarning", "ModelFileError", "__version__"]
