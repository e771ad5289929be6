"""fastmlp: fast multi-layer perceptrons for the CPU.

Drop-in replacements for scikit-learn's ``MLPClassifier`` and
``MLPRegressor``, trained by Cython + OpenMP kernels.
"""

import os as _os

# OpenMP threads waiting for work sleep instead of spinning, unless the user
# chose otherwise: on a loaded machine a thread spinning at a barrier takes
# the core its partner needs (measured: 2-thread fits ran 3-8x slower than
# 1-thread ones at load 8-12 on 2 cores). The OpenMP runtime reads the
# variable once, when the compiled kernels load it; it is removed again so
# that runtimes loaded later (other libraries') keep their defaults.
_SET_WAIT_POLICY = "OMP_WAIT_POLICY" not in _os.environ
if _SET_WAIT_POLICY:
    _os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
try:
    from . import _epoch  # noqa: F401  (loads the OpenMP runtime)
finally:
    if _SET_WAIT_POLICY:
        del _os.environ["OMP_WAIT_POLICY"]

from . import _persist  # noqa: E402
from ._classifier import MLPClassifier  # noqa: E402
from ._persist import load, save  # noqa: E402
from ._regressor import MLPRegressor  # noqa: E402
from .exceptions import DivergenceWarning, InputScaleWarning, ModelFileError  # noqa: E402

__version__ = "0.1.0"

# The classes a model file may name (looked up by name, never imported).
_persist.ESTIMATORS.update(MLPClassifier=MLPClassifier, MLPRegressor=MLPRegressor)


def _load_compressed(path, contents):
    from .compression._file import from_contents

    return from_contents(path, contents)


# Compressed .fmz models (fastmlp.compression) load through fastmlp.load too.
_persist.LOADERS["fastmlp.compressed"] = _load_compressed

__all__ = ["MLPClassifier", "MLPRegressor", "save", "load", "DivergenceWarning",
           "InputScaleWarning", "ModelFileError", "__version__"]
