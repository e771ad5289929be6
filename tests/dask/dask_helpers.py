"""Data and objective builders shared by the dask tests."""

import numpy as np

from fastmlp._network import Layout
from fastmlp.dask import DistributedObjective


def make_data(n=600, n_features=8, n_classes=3, seed=0, task="classification"):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, n_features)
    if task == "classification":
        W = rng.randn(n_features, n_classes)
        y = np.argmax(X @ W + 0.5 * rng.randn(n, n_classes), axis=1)
    else:
        y = np.tanh(X[:, 0]) + 0.5 * X[:, 1] + 0.1 * rng.randn(n)
    sw = rng.uniform(0.2, 3.0, n)
    return X, y, sw


def distributed_objective(client, X, Y, sw, layout, loss_code, alpha=0.0, l1=0.0,
                          hosts=None, n_threads=None, curvature_on="auto"):
    """A DistributedObjective over dask arrays X, Y (already encoded), sw."""
    return DistributedObjective.from_dask(client, X, Y, layout, loss_code, sample_weight=sw,
                                          alpha=alpha, l1=l1, n_threads=n_threads,
                                          hosts=hosts, curvature_on=curvature_on)


def small_layout(n_features, n_out, out="softmax", hidden="tanh"):
    return Layout([n_features, 7, 5, n_out], [hidden, hidden, out], negative_slope=0.1)
