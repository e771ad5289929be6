"""Training: time per epoch, peak memory, test accuracy."""

import tracemalloc

import numpy as np

from fastmlp import MLPClassifier

from .common import Suite, estimator_params, fit_quietly

# Epochs of the accuracy benchmark, per workload.
ACCURACY_EPOCHS = {"W1": 5, "W2": 50, "W3": 30}


class FitEpoch(Suite):
    # One and two threads: the two-core epoch (src/_epoch.pyx) for W1 and W3.
    params = Suite.params + ([1, 2],)
    param_names = Suite.param_names + ["threads"]

    def setup(self, paths, workload, dtype, threads):
        self.X, self.y, _, _ = self.load(paths, workload, dtype)
        # One epoch per partial_fit; the first call (initialisation) is here.
        self.est = MLPClassifier(**estimator_params(workload, 1), n_threads=threads)
        self.est.partial_fit(self.X, self.y, classes=np.unique(self.y))

    def time_fit_epoch(self, paths, workload, dtype, threads):
        """One epoch (partial_fit): shuffle, batches, forward, backward, Adam."""
        self.est.partial_fit(self.X, self.y)


class Fit(Suite):
    def setup(self, paths, workload, dtype):
        self.X, self.y, self.X_test, self.y_test = self.load(paths, workload, dtype)

    def peakmem_fit(self, paths, workload, dtype):
        """Peak resident memory of a one-epoch fit (X included)."""
        fit_quietly(MLPClassifier(**estimator_params(workload, 1)), self.X, self.y)

    def track_fit_memory_beyond_X(self, paths, workload, dtype):
        """Peak bytes a one-epoch fit allocates beyond X (tracemalloc)."""
        tracemalloc.start()
        try:
            fit_quietly(MLPClassifier(**estimator_params(workload, 1)), self.X, self.y)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    track_fit_memory_beyond_X.unit = "bytes"

    def track_test_accuracy(self, paths, workload, dtype):
        """Held-out accuracy after a fixed number of epochs (random_state=0)."""
        est = MLPClassifier(**estimator_params(workload, ACCURACY_EPOCHS[workload]))
        return fit_quietly(est, self.X, self.y).score(self.X_test, self.y_test)

    track_test_accuracy.unit = "accuracy"
