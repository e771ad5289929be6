"""A small LocalCluster shared by the dask tests (in-process workers: quick
to start; the fault tests start their own worker processes)."""

import numpy as np
import pytest
from distributed import Client, LocalCluster


@pytest.fixture(scope="session")
def client():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=":0") as cluster, \
            Client(cluster, set_as_default=False) as c:
        yield c
