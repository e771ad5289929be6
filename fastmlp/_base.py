"""The estimator machinery shared by MLPClassifier and MLPRegressor.

Parameters, defaults and fitted attributes follow scikit-learn's MLP; the
work is done by the compiled kernels (see src/) through the solver drivers
in fastmlp.solvers.
"""

import os
import time
import warnings
from abc import ABC, abstractmethod
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils._param_validation import (Interval, InvalidParameterError, Options,
                                            StrOptions, make_constraint)
from sklearn.utils.validation import _check_sample_weight, check_is_fitted

from . import _aligned, _epoch, _forward, _persist
from ._checkpoint import fingerprint, resume_rows
from ._init import init_theta
from ._memory import PREDICT_CHUNK, check_memory, fit_bytes
from ._network import HIDDEN_ACTIVATIONS, Layout
from ._seeding import seeded_random_state
from ._state import OPTIMIZER_STATE, check_fitted_state
from ._threads import SMALL_PREDICT, blas_threads, effective_n_threads, predict_blas_threads
from ._validation import as_float_input, check_finite_output, check_X_predict
from ._full_batch import FULL_BATCH_SOLVERS, fit_full_batch
from .exceptions import DivergenceWarning
from .solvers.first_order import (FIRST_ORDER_SOLVERS, SCHEDULES, EpochRunner, Optimizer,
                                  epoch_threads)
from .solvers.objective import CHUNK_ROWS, CURVATURES, Objective, kernel_input
from .solvers.quasi_newton import check_bfgs_size

SOLVERS = FULL_BATCH_SOLVERS + FIRST_ORDER_SOLVERS
# More OpenMP threads than this is a typo, and asking the runtime for a
# million of them aborts the process.
MAX_THREADS = 1024
# Parameter values that cannot change once made: one found valid stays so.
_IMMUTABLE = frozenset({int, float, str, bool, type(None)})
_UNSET = object()


def row_index_dtype(n):
    """The dtype of the row order the epochs shuffle for n rows: a sample's
    share of a fit's memory, so the narrowest that holds range(n)."""
    if n <= 65536:
        return np.uint16
    return np.int32 if n < 2**31 else np.int64


class BaseMLP(BaseEstimator, ABC):
    """Base class for fastmlp's estimators; use the derived classes."""

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(HIDDEN_ACTIVATIONS)), list, tuple],
        "solver": [StrOptions(set(SOLVERS))],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions(set(SCHEDULES))],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), Options(Real, {np.inf})],
        "max_fun": [Interval(Integral, 1, None, closed="left")],
        "l1": [Interval(Real, 0, None, closed="left")],
        "init": [StrOptions({"glorot", "he", "sparse"})],
        "negative_slope": [Interval(Real, 0, 1, closed="left")],
        "rho": [None, Interval(Real, 0, 1, closed="left")],
        "n_threads": [None, Interval(Integral, None, -1, closed="right"),
                      Interval(Integral, 1, MAX_THREADS, closed="both")],
        "dropout": [Interval(Real, 0, 1, closed="left"), "array-like"],
        "callbacks": [None, list, tuple],
        "lr_step_size": [Interval(Integral, 1, None, closed="left")],
        "lr_decay": [Interval(Real, 0, 1, closed="right")],
        "lr_min": [Interval(Real, 0, None, closed="left")],
        "checkpoint": [None, str, os.PathLike],
        "curvature_batch_size": [Interval(Integral, 1, None, closed="left")],
        "damping": [Interval(Real, 0, None, closed="neither")],
        "max_cg_iter": [Interval(Integral, 1, None, closed="left")],
        "curvature": [StrOptions(set(CURVATURES))],
    }

    @abstractmethod
    def __init__(self, hidden_layer_sizes, activation, *, solver, alpha,
                 batch_size, learning_rate, learning_rate_init, power_t,
                 max_iter, loss, shuffle, random_state, tol, verbose,
                 warm_start, momentum, nesterovs_momentum, early_stopping,
                 validation_fraction, beta_1, beta_2, epsilon,
                 n_iter_no_change, max_fun, l1, init, negative_slope, rho,
                 n_threads, dropout, callbacks, lr_step_size, lr_decay, lr_min,
                 checkpoint, curvature_batch_size, damping, max_cg_iter, curvature):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.loss = loss
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.l1 = l1
        self.init = init
        self.negative_slope = negative_slope
        self.rho = rho
        self.n_threads = n_threads
        self.dropout = dropout
        self.callbacks = callbacks
        self.lr_step_size = lr_step_size
        self.lr_decay = lr_decay
        self.lr_min = lr_min
        self.checkpoint = checkpoint
        self.curvature_batch_size = curvature_batch_size
        self.damping = damping
        self.max_cg_iter = max_cg_iter
        self.curvature = curvature

    # ----------------------------------------------------------- subclasses
    @abstractmethod
    def _validate_targets(self, y, X, incremental, first_pass, class_indices=False):
        """Return (Y, y): the target matrix in X's dtype, and y as given.

        With class_indices, a classifier whose loss the compiled epoch can
        take as class indices returns them instead (int32, (n_samples,)):
        n_samples x n_classes less memory than the indicator matrix.
        """

    def _target_matrix(self, Y):
        """Y as the (n_samples, n_outputs) matrix every kernel reads."""
        return Y

    def _n_target_columns(self, Y):
        """Outputs of the network for targets Y (as _validate_targets gives)."""
        return Y.shape[1]

    @abstractmethod
    def _output_spec(self, Y):
        """Return (output activation name, loss code) for this problem."""

    @abstractmethod
    def _score_outputs(self, out, y, sample_weight):
        """Validation score of network outputs out against targets y."""

    # ----------------------------------------------------------- parameters
    def _hidden_sizes(self):
        sizes = self.hidden_layer_sizes
        if not hasattr(sizes, "__iter__"):
            sizes = [sizes]
        sizes = list(sizes)
        for s in sizes:
            if isinstance(s, (bool, np.bool_)) or not isinstance(s, (Integral, np.integer)) or s <= 0:
                raise ValueError(
                    f"hidden_layer_sizes must be positive integers, got {self.hidden_layer_sizes!r}."
                )
        return [int(s) for s in sizes]

    def _hidden_activations(self, n_hidden):
        """One activation name per hidden layer."""
        if isinstance(self.activation, str):
            return [self.activation] * n_hidden
        acts = list(self.activation)
        if len(acts) != n_hidden:
            raise ValueError(
                f"activation has {len(acts)} entries but the network has {n_hidden} "
                "hidden layer(s): give one activation per hidden layer, or one string."
            )
        for a in acts:
            if a not in HIDDEN_ACTIVATIONS:
                raise ValueError(
                    f"activation {a!r} is not one of {sorted(HIDDEN_ACTIVATIONS)}."
                )
        return acts

    def _layer_activations(self, n_layers):
        return self._hidden_activations(n_layers - 1) + [self.out_activation_]

    def _glorot_activations(self, n_layers):
        """The activation whose Glorot factor each weight layer uses: its own
        for hidden layers; for the output layer, scikit-learn uses the hidden
        activation, so here the last hidden layer's."""
        hidden = self._hidden_activations(n_layers - 1)
        if hidden:
            return hidden + [hidden[-1]]
        return [self.activation if isinstance(self.activation, str) else "relu"]

    def _dropout_rates(self, n_hidden):
        """Dropout rate per hidden layer, or None when there is no dropout."""
        rates = self.dropout
        if np.ndim(rates) == 0:
            rates = [float(rates)] * n_hidden
        else:
            rates = [float(r) for r in np.asarray(rates, dtype=float).ravel()]
            if len(rates) != n_hidden:
                raise ValueError(
                    f"dropout has {len(rates)} rates but the network has {n_hidden} "
                    "hidden layer(s): give one rate per hidden layer, or one number."
                )
        for r in rates:
            if not 0 <= r < 1:
                raise ValueError(f"dropout rates must be in [0, 1), got {self.dropout!r}.")
        if not any(rates):
            return None
        if self.solver not in FIRST_ORDER_SOLVERS:
            raise ValueError(
                f"dropout needs a first-order solver ({', '.join(FIRST_ORDER_SOLVERS)}); "
                f"solver={self.solver!r} minimises a deterministic full-batch objective."
            )
        return rates

    def _checked_callbacks(self):
        callbacks = list(self.callbacks or ())
        for cb in callbacks:
            if not callable(getattr(cb, "on_epoch_end", None)):
                raise InvalidParameterError(
                    f"callbacks must be objects with an on_epoch_end(estimator, info) "
                    f"method; got {cb!r}."
                )
        return callbacks

    def _class_weights(self, y, incremental):
        """Per-sample class weights (classifiers), or None."""
        return None

    @property
    def _theta(self):
        """The flat parameter vector that coefs_ and intercepts_ view.

        If coefs_ or intercepts_ were replaced by other arrays (or a pruned
        layer's sparse matrix by another), they are packed into a new
        vector (and become views of it again); the layout follows coefs_.
        """
        theta = self.__dict__.get("_theta_vec")
        if theta is None or not self._views_of(theta):
            dtype = np.result_type(*[v.dtype for v in self.coefs_ + self.intercepts_])
            self._layout_obj = self._layout.restructured(self.coefs_)
            theta = self._layout.pack(self.coefs_, self.intercepts_, dtype)
            self._set_theta(theta)
            self._drop_stale_buffers(theta.size)
        return theta

    def _drop_stale_buffers(self, n_params):
        """Forget optimiser state and early-stopping snapshot sized for
        another network (the user replaced coefs_ by a differently pruned
        one): the kernels would read them past their end."""
        opt = self.__dict__.get("_opt_state")
        if opt is not None and opt.shape != (2, n_params):
            for name in OPTIMIZER_STATE:
                self.__dict__.pop(name, None)
        best = self.__dict__.get("_best_theta")
        if best is not None and best.shape != (n_params,):
            del self.__dict__["_best_theta"]

    def _views_of(self, theta):
        """True if coefs_ and intercepts_ are still the views of theta that
        the current layout made."""
        # Plain loops and type tests: every predict call runs this, and
        # any()/sp.issparse took longer than a small network's pass.
        layout = self.__dict__.get("_layout_obj")
        if layout is None or len(self.coefs_) != len(layout.structure):
            return False
        for v in self.intercepts_:
            if v.base is not theta:
                return False
        for W, structure in zip(self.coefs_, layout.structure):
            if structure is None:
                if type(W) is not np.ndarray or W.base is not theta:
                    return False
            elif not (sp.issparse(W) and W.format == "csc" and W.data.base is theta
                      and W.indices is structure[1] and W.indptr is structure[0]):
                return False
        return True

    @property
    def sparsity_(self):
        """Fraction of each layer's weights removed by pruning (0 for a
        dense layer): ndarray of shape (n_layers_ - 1,)."""
        check_is_fitted(self, "coefs_")
        self._theta  # re-derives the layout if coefs_ were replaced
        layout = self._layout
        return np.array([1.0 - layout.density(l) for l in range(layout.n_layers)])

    def _set_theta(self, theta):
        self._theta_vec = theta
        self.coefs_, self.intercepts_ = self._layout.views(theta)

    @property
    def _layout(self):
        layout = self.__dict__.get("_layout_obj")
        if layout is None:
            layout = Layout.from_coefs(self.coefs_, self._layer_activations(len(self.coefs_)),
                                       self.negative_slope)
            self._layout_obj = layout
        return layout

    def __getstate__(self):
        if "coefs_" in self.__dict__:
            # Layers the user replaced (a pruned layer given as CSR, say) are
            # packed first, so a state always holds what __setstate__ checks:
            # dense arrays or canonical CSC matrices.
            self._theta
        # A copy: on Python >= 3.11 the base returns the live __dict__.
        state = dict(super().__getstate__())
        # coefs_/intercepts_ carry the parameters; the vector they view and
        # the derived layout are rebuilt on load.
        state.pop("_theta_vec", None)
        state.pop("_layout_obj", None)
        state.pop("_runner", None)
        state.pop("_solver_state", None)  # warm-start curvature: large, rebuilt
        return state

    def __setstate__(self, state):
        """Restore a state (pickle, joblib, skops, fastmlp.load), checked first.

        Fitted states must hold together (see fastmlp/_state.py) and their
        hyperparameters must be valid: ValueError otherwise, naming what is
        wrong. Hyperparameters added since the state was saved take their
        defaults.
        """
        if not isinstance(state, dict):
            raise TypeError(f"{type(self).__name__} state must be a dict, "
                            f"got {type(state).__name__}")
        state = dict(state)
        for name in self._get_param_names():
            if name not in state:
                state[name] = self._default_param(name)
        check_fitted_state(state, is_classifier(self))
        super().__setstate__(state)
        if "coefs_" in state:
            self._validate_params()
            self._theta  # re-pack so coefs_/intercepts_ view one vector

    @classmethod
    def _default_param(cls, name):
        import inspect

        return inspect.signature(cls.__init__).parameters[name].default

    @classmethod
    def _get_param_names(cls):
        # scikit-learn reads them from __init__'s signature (inspect) on
        # every get_params; they are a property of the class.
        names = cls.__dict__.get("_param_names")
        if names is None:
            names = tuple(super()._get_param_names())
            cls._param_names = names
        return list(names)

    def _validate_params(self):
        """scikit-learn's parameter validation, with its constraint objects
        made once per class (scikit-learn makes them on every call), and
        with the last valid value of each parameter remembered when it is
        of an immutable type, so the same object (a default, say) is not
        checked again.

        A value that satisfies none of its constraints is handed to
        scikit-learn's own validation, which raises InvalidParameterError
        with its message.
        """
        cls = type(self)
        cached = cls.__dict__.get("_constraint_objects")
        if cached is None or cached[0] is not cls._parameter_constraints:
            checks = tuple(
                (name, tuple(make_constraint(c) for c in cls._parameter_constraints[name]))
                for name in cls._get_param_names()
                if name in cls._parameter_constraints
                and cls._parameter_constraints[name] != "no_validation")
            cached = (cls._parameter_constraints, checks, {})
            cls._constraint_objects = cached
        last_valid = cached[2]
        for name, constraints in cached[1]:
            value = getattr(self, name)
            if last_valid.get(name, _UNSET) is value:
                continue
            if not any(c.is_satisfied_by(value) for c in constraints):
                super()._validate_params()
            if type(value) in _IMMUTABLE:
                last_valid[name] = value

    # ------------------------------------------------------------------ fit
    def _initialize(self, Y, units, dtype, random_state):
        for stale in ("_best_theta", "_opt_state", "_opt_step", "_opt_lr", "_opt_epochs",
                      "_resume"):
            self.__dict__.pop(stale, None)
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = units[-1]
        self.n_layers_ = len(units)
        self.out_activation_, self._loss_code = self._output_spec(Y)
        self.__dict__.pop("_layout_obj", None)
        self._layout_obj = Layout(units, self._layer_activations(len(units) - 1),
                               self.negative_slope)
        theta = init_theta(self._layout_obj, self.init, self._glorot_activations(len(units) - 1),
                           random_state, dtype)
        self._set_theta(theta)
        self.__dict__.pop("_rng_streams", None)
        self.loss_curve_ = []
        self._no_improvement_count = 0
        if self.early_stopping and self.solver != "lbfgs":
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
            self.best_loss_ = None
        else:
            self.best_loss_ = np.inf
            self.validation_scores_ = None
            self.best_validation_score_ = None

    def _fit(self, X, y, sample_weight=None, incremental=False):
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None."
            )
        if incremental:
            self._check_incremental()
        if self.checkpoint is not None and self.solver not in FIRST_ORDER_SOLVERS:
            raise ValueError(
                f"checkpoint is supported by the first-order solvers {FIRST_ORDER_SOLVERS}, "
                f"not solver={self.solver!r}."
            )
        hidden = self._hidden_sizes()
        self._hidden_activations(len(hidden))
        dropout = self._dropout_rates(len(hidden))
        callbacks = self._checked_callbacks()
        # A model loaded from a checkpoint written mid-fit resumes that fit.
        resume = None if incremental else self.__dict__.get("_resume")
        first_pass = resume is None and (
            not hasattr(self, "coefs_") or (not self.warm_start and not incremental))
        dtype = None if first_pass else self._theta.dtype
        X = as_float_input(self, X, reset=first_pass, dtype=dtype, scale_check=True)
        # The first-order epoch reads class indices; the full-batch kernels
        # read the indicator matrix.
        Y, y = self._validate_targets(y, X, incremental, first_pass,
                                      class_indices=self.solver in FIRST_ORDER_SOLVERS)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=X.dtype,
                                                 ensure_non_negative=True)
        class_weight = self._class_weights(y, incremental)
        if class_weight is not None:
            class_weight = class_weight.astype(X.dtype)
            sample_weight = class_weight if sample_weight is None else sample_weight * class_weight
        units = [X.shape[1]] + hidden + [self._n_target_columns(Y)]
        if self.solver == "bfgs":
            check_bfgs_size(sum(a * b + b for a, b in zip(units[:-1], units[1:]))
                            if first_pass else self._layout.n_params)
        if not first_pass and list(self._layout.units) != units:
            raise ValueError(
                f"The network has layer sizes {list(self._layout.units)} but this "
                f"data and hidden_layer_sizes need {units}; fit a new model "
                "(warm_start=False) to change them."
            )
        batch = 200 if self.batch_size == "auto" else self.batch_size
        check_memory(fit_bytes(units, X.dtype.itemsize, X.shape[0], batch, self.solver,
                               self.early_stopping, CHUNK_ROWS,
                               effective_n_threads(self.n_threads), self.curvature_batch_size),
                     f"fitting a network with layer sizes {units}")
        random_state, release_random_state = seeded_random_state(self.random_state)
        if first_pass:
            self._initialize(Y, units, X.dtype, random_state)
        n_threads = effective_n_threads(self.n_threads)
        for cb in callbacks:
            if hasattr(cb, "on_train_begin"):
                cb.on_train_begin(self)
        if self.solver not in FULL_BATCH_SOLVERS:
            n_threads = epoch_threads(self._layout, min(batch, X.shape[0]), n_threads)
        n_blas = n_threads
        if n_threads > 1 and (
                self.solver in FULL_BATCH_SOLVERS
                or _epoch.split_applies(self._layout.net, min(batch, X.shape[0]))):
            # The two-core epoch's threads, and the full-batch objective's
            # (src/_objective.pyx), each call BLAS on their own block or
            # chunk; BLAS's own threads would compete with them.
            n_blas = 1
        try:
            with blas_threads(n_blas):
                if self.solver in FULL_BATCH_SOLVERS:
                    self.__dict__.pop("_resume", None)
                    fit_full_batch(self, X, Y, y, sample_weight, n_threads, callbacks,
                                   random_state)
                else:
                    rows = self._stochastic_rows(X, Y, y, sample_weight, random_state, resume)
                    streams = self._stochastic_streams(incremental, dropout, random_state,
                                                       resume)
                    # The epochs draw from the streams alone: the generator
                    # (2.5 KB of state) is free for the next fit. (The
                    # full-batch solvers may keep theirs: 'hf' draws its
                    # batches from it, warm starts included.)
                    del random_state
                    release_random_state()
                    self._fit_stochastic(X, Y, y, sample_weight, incremental, n_threads,
                                         dropout, callbacks, rows, streams, resume)
        finally:
            for cb in callbacks:
                if hasattr(cb, "on_train_end"):
                    cb.on_train_end(self)
        return self

    def _check_incremental(self):
        if self.early_stopping:
            raise ValueError(
                "partial_fit does not support early_stopping=True: incremental training "
                "has no held-out validation set. Set early_stopping=False."
            )

    def _notify(self, callbacks, loss, val_score, val_loss, learning_rate, seconds):
        """Call every callback's on_epoch_end; True if one asks to stop."""
        info = {
            "epoch": len(self.loss_curve_),
            "loss": loss,
            "validation_score": val_score,
            "validation_loss": val_loss,
            "learning_rate": learning_rate,
            "seconds": seconds,
        }
        stop = False
        for cb in callbacks:
            stop = bool(cb.on_epoch_end(self, dict(info))) or stop
        return stop

    def _batch_size(self, n_samples):
        if self.batch_size == "auto":
            return min(200, n_samples)
        if self.batch_size > n_samples:
            warnings.warn(
                "Got `batch_size` less than 1 or larger than sample size. It is going to be clipped"
            )
        return int(min(max(self.batch_size, 1), n_samples))

    def _stochastic_rows(self, X, Y, y, sample_weight, random_state, resume):
        """(train_rows, val_rows) of a first-order fit: the rows the epochs
        shuffle and the held-out ones (or None). train_rows is the number
        of samples n where the epochs take all of them (no index array:
        each epoch orders range(n) by a keyed permutation, src/_rng.pxd),
        else an index array (uint16 up to 65536 rows, int32 below 2**31)."""
        n = X.shape[0]
        val_rows = None
        if resume is not None:
            train_rows, val_rows = resume_rows(resume, X, Y, sample_weight, self.early_stopping)
        elif self.early_stopping:
            stratify = y if is_classifier(self) and self.n_outputs_ == 1 else None
            train_rows, val_rows = train_test_split(
                np.arange(n, dtype=np.int64), random_state=random_state,
                test_size=self.validation_fraction, stratify=stratify)
            if val_rows.shape[0] < 2:
                raise ValueError(
                    "The validation set is too small. Increase 'validation_fraction' "
                    "or the size of your dataset."
                )
        else:
            return n, None
        if not isinstance(train_rows, np.ndarray):
            return train_rows, val_rows  # a checkpoint's row count
        # The epoch shuffles the narrowest indices the row count allows (a
        # checkpoint may hold wider ones: same permutation, same epochs).
        return train_rows.astype(row_index_dtype(n), copy=False), val_rows

    def _stochastic_streams(self, incremental, dropout, random_state, resume):
        """The shuffling and dropout streams (splitmix64 states, advanced in
        place by every epoch), uint64 (2,). A fit starts them afresh from
        random_state, as scikit-learn's does; partial_fit, a resumed fit and
        a loaded model continue them."""
        streams = None
        if incremental or resume is not None:
            streams = self.__dict__.get("_rng_streams")
        if streams is None:
            streams = np.zeros(2, dtype=np.uint64)
            streams[0] = random_state.randint(0, 2**63 - 1, dtype=np.int64)
        if dropout is not None and streams[1] == 0:
            streams[1] = random_state.randint(1, 2**63 - 1, dtype=np.int64)
        return streams

    def _fit_stochastic(self, X, Y, y, sample_weight, incremental, n_threads,
                        dropout, callbacks, rows, streams, resume):
        theta = self._theta
        if resume is None and (not incremental or "_opt_state" not in self.__dict__):
            self._opt_state = _aligned.zeros((2, theta.size), theta.dtype)
            self._opt_step = np.zeros(1, dtype=np.int64)
            self._opt_lr = float(self.learning_rate_init)
            self._opt_epochs = 0
        optimizer = Optimizer(
            self.solver, theta.size, theta.dtype,
            learning_rate_init=self.learning_rate_init, momentum=self.momentum,
            nesterovs_momentum=self.nesterovs_momentum, beta_1=self.beta_1,
            beta_2=self.beta_2, epsilon=self.epsilon, rho=self.rho,
            learning_rate=self.learning_rate, power_t=self.power_t,
            n_epochs=self.max_iter, lr_step_size=self.lr_step_size,
            lr_decay=self.lr_decay, lr_min=self.lr_min, state=self._opt_state,
            step=self._opt_step, current_lr=self._opt_lr, epochs=self._opt_epochs)

        train_rows, val_rows = rows
        y_val = sw_val = None
        if self.early_stopping:
            y_val = y[val_rows]
            sw_val = None if sample_weight is None else sample_weight[val_rows]
        self.__dict__.pop("_resume", None)
        n_train = train_rows if isinstance(train_rows, int) else train_rows.shape[0]
        batch_size = self._batch_size(n_train)
        runner = EpochRunner(self._layout, theta.dtype, batch_size, dropout)
        self._rng_streams = streams
        rng_state, drop_state = streams[0:1], streams[1:2]
        val_objective = None
        if self.early_stopping and callbacks:
            # The validation loss for callbacks: the compiled objective's data
            # term on the validation rows (no penalty, no dropout).
            val_objective = Objective(self._layout, X, self._target_matrix(Y), sample_weight,
                                      self._loss_code,
                                      0.0, 0.0, n_threads, rows=val_rows)
        Xk = kernel_input(X)
        if self.early_stopping and "_best_theta" not in self.__dict__:
            self._best_theta = theta.copy()
        # Saved with every mid-fit checkpoint so that fit() can resume.
        record = None
        if self.checkpoint is not None and not incremental:
            record = {"train_rows": train_rows, "val_rows": val_rows,
                      "fingerprint": fingerprint(X, Y, sample_weight)}

        if resume is None:
            self.n_iter_ = 0
        interrupted = False
        try:
            while self.n_iter_ < self.max_iter:
                start = time.perf_counter()
                learning_rate = optimizer.learning_rate
                loss, finite = runner.run(
                    theta, Xk, Y, sample_weight, train_rows, rng_state, self.shuffle,
                    optimizer, self._loss_code, self.alpha, self.l1, n_threads,
                    drop_state)
                if not finite:
                    # No copy of the parameters is kept to go back to: the
                    # compiled epoch stops before a non-finite gradient
                    # reaches them (src/_guard.pxd).
                    warnings.warn(
                        f"Training diverged at epoch {self.n_iter_ + 1}: the loss or a "
                        "gradient became non-finite. The parameters of the last finite "
                        "step are kept. Lower learning_rate_init or scale the inputs.",
                        DivergenceWarning,
                    )
                    break
                self.n_iter_ += 1
                self.loss_ = loss
                self.t_ += n_train
                self.loss_curve_.append(loss)
                val_score = val_loss = None
                if self.early_stopping:
                    val_score = self._validation_score(Xk, val_rows, y_val, sw_val, n_threads)
                    if val_objective is not None:
                        val_loss = val_objective.loss(theta)
                self._update_no_improvement_count(val_score, theta)
                if self.verbose:
                    self._print_progress(loss, val_score, time.perf_counter() - start)
                optimizer.iteration_ends(self.t_)
                self._opt_lr = optimizer.learning_rate
                self._opt_epochs = optimizer.epochs
                if callbacks and self._notify(callbacks, loss, val_score, val_loss,
                                              learning_rate, time.perf_counter() - start):
                    break
                if self._no_improvement_count > self.n_iter_no_change:
                    what = "Validation score" if self.early_stopping else "Training loss"
                    msg = (f"{what} did not improve more than tol={self.tol:f} for "
                           f"{self.n_iter_no_change} consecutive epochs.")
                    if optimizer.trigger_stopping(msg, self.verbose):
                        break
                    self._opt_lr = optimizer.learning_rate
                    self._no_improvement_count = 0
                if incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warnings.warn(
                        "Stochastic Optimizer: Maximum iterations (%d) reached and the "
                        "optimization hasn't converged yet." % self.max_iter,
                        ConvergenceWarning,
                    )
                elif record is not None:
                    self._save_checkpoint(record)
        except KeyboardInterrupt:
            # The model keeps its last step (with the optimiser state of that
            # step); the checkpoint (if any) keeps the last completed epoch,
            # resumable.
            interrupted = True
            warnings.warn("Training interrupted by user.")
        if self.early_stopping:
            theta[:] = self._best_theta
        if self.checkpoint is not None and not interrupted:
            self._save_checkpoint(None)

    def _save_checkpoint(self, record):
        """Save the estimator to self.checkpoint, with the resume record if any."""
        state = self.__getstate__()
        if record is not None:
            state["_resume"] = record
        _persist._save_state(self, self.checkpoint, state)

    def _print_progress(self, loss, val_score, seconds):
        line = "Iteration %d, loss = %.8f" % (self.n_iter_, loss)
        if val_score is not None:
            line += ", validation score = %.6f" % val_score
        print(line + ", time = %.3fs" % seconds)

    def _update_no_improvement_count(self, val_score, theta):
        if val_score is not None:
            self.validation_scores_.append(val_score)
            if val_score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if val_score > self.best_validation_score_:
                self.best_validation_score_ = val_score
                self._best_theta[:] = theta
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]

    def _validation_score(self, Xk, rows, y, sample_weight, n_threads):
        out = self._network_output(Xk, rows, n_threads)
        if not np.isfinite(out).all():
            return np.nan
        return self._score_outputs(out, y, sample_weight)

    # -------------------------------------------------------------- predict
    def _network_output(self, Xk, rows, n_threads):
        theta = self._theta
        layout = self._layout
        # Sized from the layout the kernel reads, not from n_outputs_.
        out = np.empty((rows.shape[0], int(layout.units[-1])), dtype=theta.dtype)
        _forward.predict(theta, Xk, layout.net, out, rows, PREDICT_CHUNK, n_threads)
        return out

    def _forward(self, X):
        """Validated X -> output-layer activations (n_samples, n_outputs)."""
        if "coefs_" not in self.__dict__:
            check_is_fitted(self, "coefs_")  # raises scikit-learn's NotFittedError
        theta = self._theta
        if type(X) is np.ndarray and "feature_names_in_" not in self.__dict__:
            # A well-behaved array (the kernel checks it) skips scikit-learn's
            # validation, which costs more than a small network's pass.
            if X.size < SMALL_PREDICT:
                out = _forward.predict_dense(theta, X, self._layout.net, 1)
            else:
                n_threads = effective_n_threads(self.n_threads)
                net = self._layout.net
                split = _forward.splits_rows(net, X.shape[0], n_threads)
                with predict_blas_threads(X.shape[0], n_threads, split):
                    out = _forward.predict_dense(theta, X, net, n_threads)
            if out is not None:  # finite: predict_dense checked it
                return out
        X = check_X_predict(self, X, theta.dtype)
        if X.shape[1] != self._layout.units[0]:
            raise ValueError(f"X has {X.shape[1]} features, but the network's first layer "
                             f"takes {self._layout.units[0]}.")
        n_threads = effective_n_threads(self.n_threads)
        rows = np.arange(X.shape[0], dtype=np.int64)
        with predict_blas_threads(X.shape[0], n_threads):
            out = self._network_output(kernel_input(X), rows, n_threads)
        check_finite_output(out)
        return out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags
