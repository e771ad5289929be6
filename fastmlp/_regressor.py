"""MLPRegressor: scikit-learn's MLP regressor API on fastmlp's kernels."""

import numpy as np
from sklearn.base import RegressorMixin
from sklearn.metrics import r2_score
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_array, check_consistent_length, column_or_1d

from ._base import BaseMLP
from ._classifier import MLPClassifier
from ._network import LOSS_LOG, LOSS_POISSON, LOSS_SQUARED


class MLPRegressor(RegressorMixin, BaseMLP):
    """Multi-layer perceptron regressor.

    A drop-in replacement for :class:`sklearn.neural_network.MLPRegressor`
    (same parameters, defaults and fitted attributes), trained by compiled
    kernels. Single- and multi-output.

    Parameters
    ----------
    loss : {'squared_error', 'poisson', 'binary_cross_entropy'}, \
            default='squared_error'
        Half squared error with identity outputs, half Poisson deviance
        with an exponential output (log link; requires ``y >= 0``), or the
        binary cross-entropy ``-y log p - (1 - y) log(1 - p)`` of logistic
        outputs ``p`` (requires ``0 <= y <= 1``: fractions such as pixel
        intensities, as in the autoencoders of Hinton & Salakhutdinov and of
        Martens' Hessian-free paper; ``predict`` returns ``p``).
        'binary_cross_entropy' is a fastmlp extension: scikit-learn's
        regressor has no such option. With several outputs the loss is
        summed over them (scikit-learn averages the reported squared error
        but not its gradient; fastmlp reports the loss it differentiates).
    hidden_layer_sizes, activation, solver, alpha, batch_size, learning_rate,
    learning_rate_init, power_t, max_iter, shuffle, random_state, tol,
    verbose, warm_start, momentum, nesterovs_momentum, early_stopping,
    validation_fraction, beta_1, beta_2, epsilon, n_iter_no_change, max_fun,
    l1, init, negative_slope, rho, n_threads, dropout, callbacks,
    lr_step_size, lr_decay, lr_min, checkpoint, curvature_batch_size, damping,
    max_cg_iter, curvature :
        As for :class:`fastmlp.MLPClassifier`. The early-stopping score is R².

    Attributes
    ----------
    loss_, best_loss_, loss_curve_, validation_scores_, validation_loss_curve_,
    best_validation_score_, t_, coefs_, intercepts_, sparsity_, n_features_in_,
    feature_names_in_, n_iter_, n_layers_, n_outputs_, out_activation_ :
        As for :class:`fastmlp.MLPClassifier`.
    """

    _parameter_constraints: dict = {
        **BaseMLP._parameter_constraints,
        "loss": [StrOptions({"squared_error", "poisson", "binary_cross_entropy"})],
    }

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,),
                 activation="relu", *, solver="adam", alpha=0.0001,
                 batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200,
                 shuffle=True, random_state=None, tol=1e-4, verbose=False,
                 warm_start=False, momentum=0.9, nesterovs_momentum=True,
                 early_stopping=False, validation_fraction=0.1, beta_1=0.9,
                 beta_2=0.999, epsilon=1e-8, n_iter_no_change=10,
                 max_fun=15000, l1=0.0, init="glorot", negative_slope=0.01,
                 rho=None, n_threads=None, dropout=0.0, callbacks=None,
                 lr_step_size=30, lr_decay=0.1, lr_min=0.0, checkpoint=None,
                 curvature_batch_size=1000, damping=1.0, max_cg_iter=250,
                 curvature="gauss-newton"):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation,
            solver=solver, alpha=alpha, batch_size=batch_size,
            learning_rate=learning_rate, learning_rate_init=learning_rate_init,
            power_t=power_t, max_iter=max_iter, loss=loss, shuffle=shuffle,
            random_state=random_state, tol=tol, verbose=verbose,
            warm_start=warm_start, momentum=momentum,
            nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
            validation_fraction=validation_fraction, beta_1=beta_1,
            beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change,
            max_fun=max_fun, l1=l1, init=init, negative_slope=negative_slope,
            rho=rho, n_threads=n_threads, dropout=dropout, callbacks=callbacks,
            lr_step_size=lr_step_size, lr_decay=lr_decay, lr_min=lr_min,
            checkpoint=checkpoint, curvature_batch_size=curvature_batch_size,
            damping=damping, max_cg_iter=max_cg_iter, curvature=curvature)

    def _validate_targets(self, y, X, incremental, first_pass, class_indices=False):
        y = check_array(y, ensure_2d=False, dtype="numeric", input_name="y")
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        check_consistent_length(X, y)
        if self.loss == "poisson" and np.any(y < 0):
            raise ValueError("loss='poisson' requires y >= 0; y has negative values.")
        if self.loss == "binary_cross_entropy" and not np.all((y >= 0) & (y <= 1)):
            raise ValueError("loss='binary_cross_entropy' requires 0 <= y <= 1 (targets are "
                             "probabilities or fractions); y has values outside [0, 1].")
        Y = np.ascontiguousarray(y.reshape(y.shape[0], -1), dtype=X.dtype)
        if not first_pass and Y.shape[1] != self.n_outputs_:
            raise ValueError(
                f"y has {Y.shape[1]} outputs but the model was fitted with {self.n_outputs_}."
            )
        return Y, y

    def _output_spec(self, Y):
        if self.loss == "poisson":
            return "exp", LOSS_POISSON
        if self.loss == "binary_cross_entropy":
            # The pair whose Gauss-Newton matrix is PSD (src/_rop.pxd).
            return "logistic", LOSS_LOG
        return "identity", LOSS_SQUARED

    def _score_outputs(self, out, y, sample_weight):
        return r2_score(y, out[:, 0] if out.shape[1] == 1 else out,
                        sample_weight=sample_weight)

    def predict(self, X):
        """Predict using the network.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        """
        out = self._forward(X)
        return out[:, 0] if out.shape[1] == 1 else out

    def fit(self, X, y, sample_weight=None):
        """Fit the model to X and y.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self
        """
        self._validate_params()
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    _check_solver = MLPClassifier._check_solver

    @available_if(_check_solver)
    def partial_fit(self, X, y, sample_weight=None):
        """Update the model with one epoch over the given data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self
        """
        self._validate_params()
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)
