"""A small LocalCluster shared by the dask tests (in-process workers: quick
to start; the fault tests start their own worker processes), and a time
limit on every one of them: a cluster test that waits forever fails
instead of holding up CI."""

import os

import pytest
from distributed import Client, LocalCluster

# Seconds a dask test may take, set-up (the cluster) included, unless it
# sets its own (pytest-timeout).
TIMEOUT = 300
HERE = os.path.dirname(os.path.abspath(__file__))


def pytest_collection_modifyitems(items):
    for item in items:
        if (str(item.path).startswith(HERE + os.sep)
                and item.get_closest_marker("timeout") is None):
            item.add_marker(pytest.mark.timeout(TIMEOUT))


@pytest.fixture(scope="session")
def client():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=":0") as cluster, \
            Client(cluster, set_as_default=False) as c:
        yield c
