"""Which dask client a fit uses."""

from contextlib import contextmanager

from distributed import Client, LocalCluster, default_client

from .._threads import effective_n_threads


@contextmanager
def fit_client(client, n_threads):
    """The given client; else the active one; else a LocalCluster for the fit.

    The LocalCluster started here is one in-process worker with all the
    cores: the kernels release the GIL and use every thread of the task, and
    nothing is copied between processes. It is closed when the fit ends.
    """
    if client is None:
        try:
            client = default_client()
        except ValueError:
            client = None
    if client is not None:
        yield client
        return
    with LocalCluster(n_workers=1, processes=False,
                      threads_per_worker=effective_n_threads(n_threads),
                      dashboard_address=":0") as cluster, \
            Client(cluster, set_as_default=False) as local:
        yield local
