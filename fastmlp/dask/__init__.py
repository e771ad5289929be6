"""Training on a Dask cluster: the data stays on the workers.

``fastmlp.dask.MLPClassifier`` and ``fastmlp.dask.MLPRegressor`` take the
local estimators' parameters plus ``client`` and ``curvature_on`` and fit
row-chunked dask arrays or dataframes with a full-batch solver (L-BFGS,
BFGS or Hessian-free): the client runs the solver, each evaluation sends
the parameters to the workers and gets one partial sum back from each. Needs the ``dask`` extra
(``pip install "fastmlp[dask]"``).
"""

try:
    import dask  # noqa: F401
    import dask.array  # noqa: F401
    import distributed  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "fastmlp.dask needs Dask and distributed, which are not installed "
        f"({exc}). Install them with: pip install \"fastmlp[dask]\""
    ) from exc

from ._classifier import MLPClassifier
from ._objective import DistributedObjective
from ._placement import Placement, WorkerLostError
from ._regressor import MLPRegressor

__all__ = ["MLPClassifier", "MLPRegressor", "DistributedObjective", "Placement",
           "WorkerLostError"]
