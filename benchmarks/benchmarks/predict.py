"""Prediction: latency of one row and throughput of 10,000 rows."""

import numpy as np

from fastmlp import MLPClassifier

from .common import PREDICT_ROWS, Suite, estimator_params, fit_quietly


class Predict(Suite):
    params = Suite.params + ([1, PREDICT_ROWS],)
    param_names = Suite.param_names + ["rows"]

    def setup(self, paths, workload, dtype, rows):
        X, y, X_test, _ = self.load(paths, workload, dtype)
        self.est = fit_quietly(MLPClassifier(**estimator_params(workload, 1)), X, y)
        # Test rows, repeated up to the batch length: a C-contiguous array of
        # the model's dtype, as a user would pass.
        self.X = np.ascontiguousarray(X_test[np.arange(rows) % len(X_test)])

    def time_predict(self, paths, workload, dtype, rows):
        """The full predict call, input validation included."""
        self.est.predict(self.X)
