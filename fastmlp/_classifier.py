"""MLPClassifier: scikit-learn's MLP classifier API on fastmlp's kernels."""

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.metrics import accuracy_score
from sklearn.preprocessing import LabelBinarizer, label_binarize
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.class_weight import compute_class_weight, compute_sample_weight
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
from sklearn.utils.validation import check_array, check_consistent_length, column_or_1d

from ._base import BaseMLP
from ._network import LOSS_HINGE, LOSS_HINGE_BINARY, LOSS_LOG, LOSS_SQUARED
from .solvers.first_order import FIRST_ORDER_SOLVERS


class MLPClassifier(ClassifierMixin, BaseMLP):
    """Multi-layer perceptron classifier.

    A drop-in replacement for :class:`sklearn.neural_network.MLPClassifier`:
    the same parameters, defaults and fitted attributes, trained by compiled
    (Cython, OpenMP, BLAS) kernels. The parameters below after ``max_fun``
    are fastmlp's additions; their defaults change nothing.

    Parameters
    ----------
    hidden_layer_sizes : array-like of shape (n_layers - 2,), default=(100,)
        The ith element is the number of neurons in the ith hidden layer.
    activation : str or sequence of str, default='relu'
        Activation of the hidden layers, one of 'identity', 'logistic',
        'tanh', 'relu', 'leaky_relu'; or one name per hidden layer, such as
        ``('relu', 'tanh')``. The 'glorot' initialisation uses each hidden
        layer's own activation for its factor, and the last hidden layer's
        for the output layer (scikit-learn's rule when all are the same).
    solver : {'adam', 'sgd', 'lbfgs', 'bfgs', 'hf', 'adagrad', 'adadelta', 'rmsprop'}, \
default='adam'
        'sgd' uses ``learning_rate``, ``momentum`` and ``nesterovs_momentum``;
        'adam' uses ``beta_1``, ``beta_2``, ``epsilon``; 'rmsprop' and
        'adadelta' use ``rho`` and ``epsilon``; 'adagrad' uses ``epsilon``.
        'adadelta' scales its step by ``learning_rate_init``, as PyTorch and
        Keras do: set ``learning_rate_init=1.0`` for Zeiler's original rule.
        The full-batch solvers: 'lbfgs' (limited-memory BFGS, 30 pairs) and
        'bfgs' (a dense inverse-Hessian approximation; networks of at most
        10,000 parameters) use ``max_fun``; 'hf' (Hessian-free, Martens
        2010) uses ``curvature_batch_size``, ``damping``, ``max_cg_iter``
        and ``curvature``.
    alpha : float, default=0.0001
        Strength of the L2 penalty, divided by the batch's sample weight sum.
    batch_size : int or 'auto', default='auto'
        ``min(200, n_samples)`` when 'auto'. Not used by the full-batch
        solvers 'lbfgs', 'bfgs' and 'hf'.
    learning_rate : {'constant', 'invscaling', 'adaptive', 'cosine', 'step'}, default='constant'
        Learning-rate schedule. scikit-learn's three apply to 'sgd' only, as
        in scikit-learn. 'cosine' and 'step' apply to every first-order
        solver: 'cosine' anneals from ``learning_rate_init`` to ``lr_min``
        over ``max_iter`` epochs (then stays there); 'step' multiplies the
        rate by ``lr_decay`` every ``lr_step_size`` epochs. The schedule
        restarts with each ``fit`` (a warm restart under ``warm_start``) and
        continues across ``partial_fit`` calls.
    learning_rate_init : float, default=0.001
    power_t : float, default=0.5
    max_iter : int, default=200
        Epochs for the first-order solvers, iterations for 'lbfgs', 'bfgs'
        and 'hf'.
    shuffle : bool, default=True
    random_state : int, RandomState instance or None, default=None
        Seeds the initial weights, the validation split and the shuffling.
        Same seed, data and thread count: bit-identical results.
    tol : float, default=1e-4
        The first-order solvers and 'hf' stop when the loss (or validation
        score) does not improve by ``tol`` for ``n_iter_no_change``
        iterations; 'lbfgs', 'bfgs' and 'hf' stop when max_i |grad_i| <= tol
        ('lbfgs' and 'bfgs' also on a relative loss change below 2.2e-9, as
        scipy's L-BFGS-B).
    verbose : bool, default=False
        Print loss, validation score and time per epoch or iteration ('hf'
        adds its damping, CG iterations and reduction ratio).
    warm_start : bool, default=False
        Start from the previous fit's parameters. 'lbfgs', 'bfgs' and 'hf'
        also keep their curvature estimate (L-BFGS pairs, BFGS matrix, HF
        damping, last CG solution and batch stream), so that fit(k) then
        fit(k) is one fit(2k); it is not pickled.
    momentum : float, default=0.9
    nesterovs_momentum : bool, default=True
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data and stop when its score
        does not improve; the best iterate is kept. Honoured by every solver
        but 'lbfgs', which ignores it as scikit-learn's does.
    validation_fraction : float, default=0.1
    beta_1 : float, default=0.9
    beta_2 : float, default=0.999
    epsilon : float, default=1e-8
    n_iter_no_change : int, default=10
    max_fun : int, default=15000
        'lbfgs' and 'bfgs': stop after the iteration that makes the number
        of loss evaluations exceed it.
    loss : {'log_loss', 'hinge', 'squared_error'}, default='log_loss'
        'log_loss': cross-entropy with a softmax output (multiclass) or
        binary log-loss with logistic outputs (binary, multilabel).
        'hinge': Crammer-Singer multiclass hinge (per-label hinge for binary
        and multilabel) on identity outputs; no ``predict_proba``.
        'squared_error': half squared error between the softmax/logistic
        outputs and the one-hot targets.
    l1 : float, default=0.0
        Strength of an L1 penalty on the weights, scaled like ``alpha``.
    init : {'glorot', 'he', 'sparse'}, default='glorot'
        'glorot' is scikit-learn's initialisation; 'he' draws N(0, 2/fan_in);
        'sparse' is Martens' (2010) sparse initialisation: 15 nonzero
        incoming weights per unit from N(0, 1), zero biases (suited to deep
        logistic nets, in particular with solver='hf').
    negative_slope : float, default=0.01
        Slope of 'leaky_relu' for negative inputs.
    rho : float or None, default=None
        Decay of 'rmsprop' and 'adadelta' (None: 0.9 and 0.95).
    n_threads : int or None, default=None
        Cores used by fit and predict (OpenMP loops and BLAS). None:
        ``OMP_NUM_THREADS`` if set, else all usable cores; -1: all cores.
    dropout : float or sequence of float, default=0.0
        Inverted dropout on the hidden layers during training with a
        first-order solver: each hidden unit is zeroed with this probability
        (one rate, or one per hidden layer) and the survivors are scaled by
        ``1 / (1 - rate)``. Predictions, the validation score and the
        validation loss use the whole network. Masks come from random
        streams seeded by ``random_state``: fits are reproducible, and do not
        depend on the thread count. ``loss_curve_`` then records the loss
        of the thinned networks. Not available with the full-batch solvers
        'lbfgs', 'bfgs' and 'hf' (a ValueError).
    callbacks : list of objects or None, default=None
        Objects with a method ``on_epoch_end(estimator, info)`` called after
        every epoch (every iteration for 'lbfgs', 'bfgs' and 'hf'), whose
        true return value stops training. See :mod:`fastmlp.callbacks` for ``info`` and for
        the built-in :class:`~fastmlp.callbacks.History` and
        :class:`~fastmlp.callbacks.ProgressBar`. With ``early_stopping`` the
        validation loss is computed only when there are callbacks.
    lr_step_size : int, default=30
        Epochs between two decays of ``learning_rate='step'``.
    lr_decay : float in (0, 1], default=0.1
        Factor of each decay of ``learning_rate='step'``.
    lr_min : float, default=0.0
        Final rate of ``learning_rate='cosine'``.
    class_weight : dict, list of dict, 'balanced' or None, default=None
        Weights of the classes, multiplied into ``sample_weight``, as
        scikit-learn's linear models define them
        (:func:`sklearn.utils.class_weight.compute_sample_weight`): a dict
        ``{class_label: weight}`` (missing classes weigh 1), or 'balanced'
        for ``n_samples / (n_classes * np.bincount(y))`` (counted in samples,
        not in sample weights). Multilabel y: 'balanced' or a list of one
        dict ``{0: w_absent, 1: w_present}`` per label, and a sample's weight
        is the product over its labels (scikit-learn's multi-output rule).
        ``partial_fit`` accepts dicts only: one batch does not show the
        class frequencies.
    checkpoint : str, os.PathLike or None, default=None
        First-order solvers only: after every epoch, save the estimator here
        (``fastmlp.save``'s format, written atomically) with what resuming
        needs. After a crash, ``fastmlp.load(checkpoint).fit(X, y)`` runs the
        epochs that remained and ends bit-identical to an uninterrupted run
        (same data, seed and thread count). The finished model is saved here
        too.
    curvature_batch_size : int, default=1000
        'hf': rows of the random batch on which the curvature-vector
        products of an iteration are computed (the gradient always uses the
        whole training set); clipped to the training set.
    damping : float, default=1.0
        'hf': initial Levenberg-Marquardt damping lambda of the quadratic
        model ``g.p + p.(C + lambda I)p / 2``; adapted every iteration
        (x 3/2 or x 2/3 from the reduction ratio).
    max_cg_iter : int, default=250
        'hf': cap on conjugate-gradient iterations per iteration.
    curvature : {'gauss-newton', 'hessian'}, default='gauss-newton'
        'hf': the curvature matrix C. 'gauss-newton' (positive
        semi-definite for every output/loss pair) or the exact Hessian
        (conjugate gradient stops at a direction of negative curvature).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    loss_ : float
    best_loss_ : float or None
    loss_curve_ : list of float
    validation_scores_ : list of float or None
    validation_loss_curve_ : list of float or None
        Only with a :class:`~fastmlp.callbacks.History` callback: the
        validation loss per epoch (``early_stopping=True``), else None.
    best_validation_score_ : float or None
    t_ : int
    coefs_ : list of ndarray or scipy.sparse.csc_matrix
        Weight matrices, views into one flat parameter vector. A layer pruned
        by :mod:`fastmlp.pruning` is a ``csc_matrix`` of its surviving
        weights, whose ``data`` is the view.
    intercepts_ : list of ndarray
    sparsity_ : ndarray of shape (n_layers_ - 1,)
        Fraction of each layer's weights removed by pruning (0 if dense).
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
    n_iter_ : int
    n_layers_ : int
    n_outputs_ : int
    out_activation_ : str
    """

    _parameter_constraints: dict = {
        **BaseMLP._parameter_constraints,
        "loss": [StrOptions({"log_loss", "hinge", "squared_error"})],
        "class_weight": [None, dict, list, StrOptions({"balanced"})],
    }

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto",
                 learning_rate="constant", learning_rate_init=0.001,
                 power_t=0.5, max_iter=200, shuffle=True, random_state=None,
                 tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False,
                 validation_fraction=0.1, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 loss="log_loss", l1=0.0, init="glorot", negative_slope=0.01,
                 rho=None, n_threads=None, dropout=0.0, callbacks=None,
                 lr_step_size=30, lr_decay=0.1, lr_min=0.0, class_weight=None,
                 checkpoint=None, curvature_batch_size=1000, damping=1.0, max_cg_iter=250,
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
        self.class_weight = class_weight

    # ------------------------------------------------------------- targets
    def _validate_targets(self, y, X, incremental, first_pass, class_indices=False):
        index = None
        labels = _integer_labels(y, X.shape[0]) if first_pass and not incremental else None
        if labels is not None:
            # What scikit-learn's checks below conclude for this y, found in
            # one pass: they took most of a small fit's fixed cost.
            self.classes_, index = labels
            self._y_type = "multiclass" if len(self.classes_) > 2 else "binary"
        else:
            y = self._validate_labels(y, X, incremental, first_pass)
        if y.ndim == 1 and self._y_type != "multilabel-indicator" and index is None:
            # Every label is in classes_ (checked above).
            index = np.searchsorted(self.classes_, y).astype(_index_dtype(len(self.classes_)))
        if class_indices and self._takes_class_indices():
            # Column j of the indicator matrix is classes_[j] (binary: the one
            # column is classes_[1]), so the index is the position in classes_.
            return _class_indices(index, len(self.classes_)), y
        return self._one_hot(y, X.dtype, index), y

    def _validate_labels(self, y, X, incremental, first_pass):
        """scikit-learn's checks of y, which is returned as they leave it (an
        ndarray, 1-D unless multilabel); a first fit also sets classes_ and
        _y_type."""
        _refuse_mixed_label_types(y)
        y = check_array(y, ensure_2d=False, dtype=None, input_name="y")
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        check_consistent_length(X, y)
        check_classification_targets(y)
        if first_pass and not incremental:
            self._fit_labels(y)
            if self._y_type != "multilabel-indicator" and len(self.classes_) < 2:
                raise ValueError(
                    "The classifier needs samples of at least 2 classes in the data, "
                    f"but the data contains only one class: {self.classes_[0]!r}."
                )
        else:
            classes = unique_labels(y)
            if self.warm_start and not incremental:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same classes as "
                        f"in the previous call to fit. Previously got {self.classes_}, "
                        f"`y` has {classes}"
                    )
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(
                    f"`y` has classes not in `self.classes_`. `self.classes_` has "
                    f"{self.classes_}. 'y' has {classes}."
                )
        # (A first fit has just taken _y_type from this y.)
        if (not first_pass or incremental) and type_of_target(y).startswith(
                "multilabel") and self._y_type != "multilabel-indicator":
            raise ValueError("The model was not fitted with multilabel input.")
        return y

    def _one_hot(self, y, dtype, index=None):
        """The targets as label_binarize(y, classes=self.classes_) gives them,
        in dtype. Binary and multiclass y (every label in classes_, checked
        by the caller), given as their positions index in classes_, are
        indexed directly: label_binarize's own validation took half of a
        fit's fixed cost (0.7 of 1.8 ms on the digits)."""
        if index is not None and len(self.classes_) > 1:
            return self._indicator(index, dtype)
        return np.ascontiguousarray(label_binarize(y, classes=self.classes_), dtype=dtype)

    def _indicator(self, index, dtype):
        """The indicator matrix of class indices (binary: the one column of
        classes_[1])."""
        if len(self.classes_) == 2:
            return (index == 1).astype(dtype).reshape(-1, 1)
        Y = np.zeros((index.shape[0], len(self.classes_)), dtype=dtype)
        Y[np.arange(index.shape[0]), index] = 1
        return Y

    def _takes_class_indices(self):
        """Whether the compiled loss can read class indices for this model:
        the log loss of one softmax (multiclass) or logistic (binary) output."""
        return self.loss == "log_loss" and self._y_type in ("binary", "multiclass")

    def _n_target_columns(self, Y):
        if Y.ndim == 1:
            return 1 if len(self.classes_) == 2 else len(self.classes_)
        return Y.shape[1]

    def _target_matrix(self, Y):
        return Y if Y.ndim == 2 else self._indicator(Y, self._theta.dtype)

    def _class_weights(self, y, incremental):
        """Per-sample weights from class_weight, as scikit-learn computes them
        (sklearn.utils.class_weight.compute_sample_weight), or None."""
        cw = self.class_weight
        if cw is None:
            return None
        if incremental and isinstance(cw, str):
            raise ValueError(
                "class_weight='balanced' is not supported by partial_fit: the class "
                "frequencies of one batch are not those of the data. Compute them once "
                "with sklearn.utils.class_weight.compute_class_weight('balanced', "
                "classes=classes, y=y_all) and pass the result as a dict."
            )
        if self._y_type == "multilabel-indicator":
            if isinstance(cw, dict):
                raise ValueError(
                    "For multilabel y, class_weight must be 'balanced' or a list of one "
                    "dict per label, such as [{0: 1, 1: 5}, ...] (weights of the label's "
                    "absence and presence); a sample's weight is the product over labels."
                )
            if isinstance(cw, list) and len(cw) != y.shape[1]:
                raise ValueError(
                    f"class_weight has {len(cw)} dicts but y has {y.shape[1]} labels."
                )
            weights = compute_sample_weight(cw, y)
        else:
            if isinstance(cw, list):
                raise ValueError(
                    "A list of dicts as class_weight is for multilabel y; for binary or "
                    "multiclass y give one dict {class_label: weight} or 'balanced'."
                )
            if isinstance(cw, dict):
                known = set()
                for c in self.classes_:
                    try:
                        known.add(int(c))
                    except (TypeError, ValueError):
                        known.add(str(c))
                unknown = [k for k in cw if k not in known]
                if unknown:
                    raise ValueError(
                        f"class_weight has keys {unknown} that are not classes; the "
                        f"classes are {self.classes_.tolist()}."
                    )
            per_class = compute_class_weight(cw, classes=self.classes_, y=y)
            weights = per_class[np.searchsorted(self.classes_, y)]
        weights = np.asarray(weights, dtype=np.float64)
        if not np.all(np.isfinite(weights)) or np.any(weights < 0):
            raise ValueError("class_weight must give finite, non-negative weights.")
        return weights

    def _fit_labels(self, y):
        # Only the classes and the target type are kept (plain values, so
        # the fitted state holds no scikit-learn objects: see _state.py).
        lb = LabelBinarizer().fit(y)
        self.classes_ = lb.classes_
        self._y_type = lb.y_type_

    def _output_spec(self, Y):
        multiclass = self._y_type == "multiclass"
        if self.loss == "hinge":
            return "identity", (LOSS_HINGE if multiclass else LOSS_HINGE_BINARY)
        code = LOSS_LOG if self.loss == "log_loss" else LOSS_SQUARED
        return ("softmax" if multiclass else "logistic"), code

    # ------------------------------------------------------------- predict
    def _labels(self, out):
        threshold = 0.0 if self.out_activation_ == "identity" else 0.5
        if self._y_type == "multiclass":
            # The method, not np.argmax: its wrapper costs more than a
            # one-sample predict's whole pass.
            return self.classes_[out.argmax(axis=1)]
        if self._y_type == "binary":
            return self.classes_[(out[:, 0] > threshold).astype(np.intp)]
        return (out > threshold).astype(np.int64)

    def _score_outputs(self, out, y, sample_weight):
        return accuracy_score(y, self._labels(out), sample_weight=sample_weight)

    def predict(self, X):
        """Predict class labels (or the label indicator matrix, multilabel).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_classes)
        """
        return self._labels(self._forward(X))

    def _has_proba(self):
        if self.loss == "hinge":
            raise AttributeError("predict_proba is not available when loss='hinge'")
        return True

    @available_if(_has_proba)
    def predict_proba(self, X):
        """Probability estimates, columns ordered as ``classes_``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        y_prob : ndarray of shape (n_samples, n_classes)
        """
        out = self._forward(X)
        if self.n_outputs_ == 1:
            p = out[:, 0]
            return np.column_stack([1 - p, p])
        return out

    @available_if(_has_proba)
    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`."""
        proba = self.predict_proba(X)
        with np.errstate(divide="ignore"):
            return np.log(proba, out=proba)

    # ------------------------------------------------------------------ fit
    def fit(self, X, y, sample_weight=None):
        """Fit the model to X and y.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Class labels, or a label indicator matrix (multilabel).
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self
        """
        self._validate_params()
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    def _check_solver(self):
        if self.solver not in FIRST_ORDER_SOLVERS:
            raise AttributeError(
                f"partial_fit is only available for stochastic optimizers. "
                f"{self.solver} is not stochastic."
            )
        return True

    @available_if(_check_solver)
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """Update the model with one epoch over the given data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), default=None
        classes : array of shape (n_classes,), default=None
            All classes, required on the first call.

        Returns
        -------
        self
        """
        self._validate_params()
        self._check_incremental()
        first_call = not hasattr(self, "classes_")
        if first_call:
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit.")
            multilabel = type_of_target(y).startswith("multilabel")
            if not multilabel and len(np.unique(classes)) < 2:
                raise ValueError(
                    f"partial_fit needs at least 2 classes in `classes`, got {classes!r}."
                )
            self._fit_labels(y if multilabel else classes)
        elif classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(
                f"`classes={classes!r}` is not the same as on the last call to "
                f"partial_fit, was: {self.classes_!r}"
            )
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


def _integer_labels(y, n_samples):
    """(classes, index) of labels that need none of scikit-learn's checks,
    or None.

    y qualifies when it is a non-empty 1-D integer ndarray of n_samples
    labels, with at least 2 classes and, above 20 samples, at most half as
    many classes as samples. For it, check_array, check_consistent_length,
    check_classification_targets, LabelBinarizer and type_of_target (three
    calls, two full np.unique) find nothing to object to and give classes_
    = np.unique(y) ('binary' for 2 classes, 'multiclass' for more), so
    they are skipped; anything else (and the errors and warnings) goes
    through them. index holds each label's position in classes: y itself
    when its labels are 0..k-1, all present (so no copy is made), else the
    narrowest of uint8, uint16 and int32 for the class count.
    """
    if (type(y) is not np.ndarray or y.ndim != 1 or y.dtype.kind not in "iu"
            or y.shape[0] != n_samples or n_samples == 0):
        return None
    lo, hi = int(y.min()), int(y.max())
    if lo < _INT64.min or hi > _INT64.max or hi - lo >= max(n_samples, 1024):
        classes, index = np.unique(y, return_inverse=True)
        index = index.astype(_index_dtype(classes.size))
    else:
        # Labels in a narrow range (the usual 0..k-1): a lookup table, in
        # linear time where np.unique sorts, and a chunk at a time, so that
        # nothing of n_samples x 8 bytes is made.
        span = hi - lo + 1
        part = np.empty(min(n_samples, _LABEL_CHUNK), dtype=np.intp)
        counts = np.zeros(span, dtype=np.intp)
        for start, chunk in _label_chunks(y, lo, part):
            counts += np.bincount(chunk, minlength=span)
        present = np.flatnonzero(counts)
        classes = (present + lo).astype(y.dtype)
        if lo == 0 and present.size == span:
            index = y  # every label of 0..k-1 present: y is its own index
        else:
            table = np.empty(span, dtype=_index_dtype(present.size))
            table[present] = np.arange(present.size)
            index = np.empty(n_samples, dtype=table.dtype)
            for start, chunk in _label_chunks(y, lo, part):
                # (mode="clip": every chunk entry is in the table, and "raise"
                # would buffer out.)
                np.take(table, chunk, out=index[start:start + chunk.shape[0]], mode="clip")
    if classes.size < 2 or (n_samples > 20 and classes.size > round(0.5 * n_samples)):
        return None  # scikit-learn's checks say what is wrong or suspicious
    return classes, index


_INT64 = np.iinfo(np.int64)
# Labels encoded per chunk of this many (the chunk's transients: 8 bytes a label).
_LABEL_CHUNK = 8192


def _label_chunks(y, lo, part):
    """(start, y[start:start + len(part)] - lo) over y, in part (intp)."""
    for start in range(0, y.shape[0], part.shape[0]):
        chunk = part[:min(part.shape[0], y.shape[0] - start)]
        np.subtract(y[start:start + chunk.shape[0]], lo, out=chunk, dtype=np.int64,
                    casting="unsafe")
        yield start, chunk


def _index_dtype(n_classes):
    """The narrowest class-index dtype the compiled epoch reads for
    n_classes: the index is the one array of a fit with a byte or more a
    sample besides X and the row order."""
    if n_classes <= 256:
        return np.uint8
    return np.uint16 if n_classes <= 65536 else np.int32


# The class-index dtypes src/_epoch.pyx reads (any of them, in place).
_KERNEL_INDEX_DTYPES = (np.uint8, np.uint16, np.int32, np.int64)


def _class_indices(index, n_classes):
    """Class indices as the compiled epoch reads them: index itself (y's own
    labels included) when the kernel reads its dtype in place, else a copy
    in the narrowest dtype for n_classes."""
    if index.dtype in _KERNEL_INDEX_DTYPES and index.flags.c_contiguous:
        return index
    return index.astype(_index_dtype(n_classes))


def _refuse_mixed_label_types(y):
    """Refuse labels mixing strings and numbers.

    numpy would turn [1, 'a'] into the strings ['1', 'a'] without a word, and
    the model would then predict '1' where the user's data said 1.
    """
    if isinstance(y, np.ndarray) and y.dtype != object or hasattr(y, "format"):
        return
    try:
        arr = np.asarray(y)
    except (ValueError, TypeError):
        return  # ragged: check_array says what is wrong
    if arr.dtype.kind not in "OU":
        return
    items = np.asarray(y, dtype=object).ravel()
    n_str = sum(isinstance(v, str) for v in items)
    if 0 < n_str < items.size:
        other = next(v for v in items if not isinstance(v, str))
        first = next(v for v in items if isinstance(v, str))
        raise ValueError(
            "Mix of label input types (string and number) in y: e.g. "
            f"{first!r} and {other!r}. Use labels of one type."
        )
