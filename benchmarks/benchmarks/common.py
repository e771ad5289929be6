"""The workloads of the benchmark suite and of ``compare.py``, in one place.

W1 (GEMM-bound)      784-256-128-10, batch 200, 20,000 training rows of
                     ``make_classification(n_features=784, n_informative=100,
                     n_classes=10)``.
W2 (overhead-bound)  scikit-learn's digits (scaled to [0, 1]), 64-100-10,
                     batch 32; 1,347 training rows, 450 held out.
W3 (small net)       40-100-100-10, batch 100, 4,000 training rows of
                     ``make_classification(n_features=40, n_informative=20,
                     n_classes=10)``.

All use relu hidden layers, Adam (learning rate 1e-3, scikit-learn's
defaults), alpha=1e-4 and a reshuffle every epoch. ``size`` scales the row
counts down (``compare.py --quick``, the CI check).
"""

import warnings

import numpy as np

WORKLOADS = {
    "W1": dict(hidden=(256, 128), batch_size=200, n_train=20_000, n_test=5_000),
    "W2": dict(hidden=(100,), batch_size=32, n_train=1_347, n_test=450),
    "W3": dict(hidden=(100, 100), batch_size=100, n_train=4_000, n_test=1_000),
}
DTYPES = ("float32", "float64")
# Rows of the batch-predict benchmark.
PREDICT_ROWS = 10_000


def make_data(workload, size=1.0, random_state=0):
    """(X_train, y_train, X_test, y_test) of a workload, X in float64.

    size < 1 makes that fraction of the rows (at least two batches' worth
    of training rows), for quick checks.
    """
    from sklearn.datasets import load_digits, make_classification
    from sklearn.model_selection import train_test_split

    spec = WORKLOADS[workload]
    n_train = max(2 * spec["batch_size"], int(size * spec["n_train"]))
    n_test = max(10, int(size * spec["n_test"]))
    if workload == "W2":
        X, y = load_digits(return_X_y=True)
        X = X / 16.0
        X_train, X_test, y_train, y_test = train_test_split(
            X, y, test_size=spec["n_test"], stratify=y, random_state=random_state)
        X_train, y_train, X_test, y_test = (
            X_train[:n_train], y_train[:n_train], X_test[:n_test], y_test[:n_test])
    else:
        n_features, n_informative = (784, 100) if workload == "W1" else (40, 20)
        X, y = make_classification(
            n_train + n_test, n_features, n_informative=n_informative,
            n_classes=10, random_state=random_state)
        X_train, X_test, y_train, y_test = X[:n_train], X[n_train:], y[:n_train], y[n_train:]
    return (np.ascontiguousarray(X_train), y_train,
            np.ascontiguousarray(X_test), y_test)


def estimator_params(workload, epochs, random_state=0):
    """Parameters shared by fastmlp's and scikit-learn's MLPClassifier.

    ``tol=0`` and ``n_iter_no_change > epochs`` make every fit run exactly
    ``epochs`` epochs.
    """
    spec = WORKLOADS[workload]
    return dict(
        hidden_layer_sizes=spec["hidden"], activation="relu", solver="adam",
        alpha=1e-4, batch_size=spec["batch_size"], learning_rate_init=1e-3,
        max_iter=epochs, shuffle=True, tol=0.0, n_iter_no_change=epochs + 1,
        random_state=random_state)


def fit_quietly(est, X, y):
    """est.fit(X, y) without the max_iter ConvergenceWarning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X, y)


def n_parameters(units):
    """Weights and biases of a dense network with these layer sizes."""
    return sum(a * b + b for a, b in zip(units[:-1], units[1:]))


def units(workload, n_features):
    """Layer sizes of a workload's network."""
    return [n_features, *WORKLOADS[workload]["hidden"], 10]


class Suite:
    """Base of the asv benchmarks: one case per workload and dtype.

    The data of every workload is made once per ``asv run`` (setup_cache,
    shared by every subclass because it is defined here) and stored as one
    ``.npy`` file per array, so that a benchmark process loads only its own
    workload's arrays and its memory figures are not inflated by the others.
    """

    params = (list(WORKLOADS), list(DTYPES))
    param_names = ["workload", "dtype"]
    timeout = 900

    def setup_cache(self):
        import os

        paths = {}
        for w in WORKLOADS:
            paths[w] = []
            for i, a in enumerate(make_data(w)):
                path = os.path.abspath(f"{w}_{i}.npy")
                np.save(path, a)
                paths[w].append(path)
        return paths

    setup_cache.timeout = 900

    def load(self, paths, workload, dtype):
        """X_train, y_train, X_test, y_test of the workload, X in dtype."""
        X, y, X_test, y_test = (np.load(p) for p in paths[workload])
        return X.astype(dtype, copy=False), y, X_test.astype(dtype, copy=False), y_test
