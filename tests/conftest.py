import os
import sys

import pytest
from hypothesis import HealthCheck, settings

sys.path.insert(0, os.path.dirname(__file__))

# CI runs a small, derandomised profile; HYPOTHESIS_PROFILE=thorough runs
# 10,000 examples per property (FASTMLP_THOROUGH_EXAMPLES=N changes that
# number, to fit a run into the time at hand).
settings.register_profile(
    "ci", max_examples=60, derandomize=True, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough", max_examples=int(os.environ.get("FASTMLP_THOROUGH_EXAMPLES", 10_000)),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(params=["float64", "float32"])
def dtype(request):
    import numpy as np

    return np.dtype(request.param)


@pytest.fixture
def child_env():
    """Environment for a child Python that imports the fastmlp under test.

    The fastmlp imported here may be the installed one (CI) or the source tree
    built in place; the child gets its folder first on PYTHONPATH. Children
    must also run outside the repository (cwd=tmp_path): a child's cwd comes
    first on sys.path and the unbuilt source tree would shadow the install.
    """
    import fastmlp

    root = os.path.dirname(os.path.dirname(os.path.abspath(fastmlp.__file__)))
    return dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))


@pytest.fixture(params=["deltas kept", "deltas in place"])
def every_batch_split(request):
    """The split epoch's threads all start with the first batch (else the
    few batches here may be over before the second thread wakes); relu
    networks split both ways: their hidden deltas in a buffer of their own,
    and written over the layer outputs (the way of large batches)."""
    from fastmlp import _epoch

    old = _epoch.join_at_start(True)
    old_work = _epoch.split_min_work(0)  # the small nets here split too
    in_place = request.param == "deltas in place"
    old_in_place = _epoch.in_place_min_work(0 if in_place else 2**62)
    yield in_place
    _epoch.join_at_start(old)
    _epoch.split_min_work(old_work)
    _epoch.in_place_min_work(old_in_place)
