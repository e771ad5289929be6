"""What the dask estimators share: the distributed fit, and their signature.

A dask estimator is a subclass of the local one (same fitted attributes,
pickling, in-memory predict) whose ``fit`` trains on the workers.
"""

import inspect

import dask
import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.validation import validate_data

from .._full_batch import FULL_BATCH_SOLVERS, run_full_batch
from ..solvers.quasi_newton import check_bfgs_size
from ._client import fit_client
from ._data import align_rows, as_dask_rows, fit_dtype, part_builder
from ._objective import CURVATURE_ON, DistributedObjective
from ._placement import Placement
from ._validation import Stat

DISTRIBUTED_SOLVERS = FULL_BATCH_SOLVERS
# Parameters of the dask estimators that the local ones do not have.
DASK_PARAMETERS = ("client", "curvature_on")


def with_client(local_cls):
    """Class decorator: take local_cls's parameters, plus ``client`` and
    ``curvature_on``.

    The signature is built from the local estimator's, so parameters added
    there appear here too; ``solver`` defaults to 'lbfgs', a distributed one.
    """
    sig = inspect.signature(local_cls.__init__)
    params = [p.replace(default="lbfgs") if p.name == "solver" else p
              for p in sig.parameters.values()]
    params.append(inspect.Parameter("client", inspect.Parameter.KEYWORD_ONLY, default=None))
    params.append(inspect.Parameter("curvature_on", inspect.Parameter.KEYWORD_ONLY,
                                    default="auto"))
    signature = sig.replace(parameters=params)

    def __init__(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        values = dict(bound.arguments)
        del values["self"]
        client = values.pop("client")
        curvature_on = values.pop("curvature_on")
        local_cls.__init__(self, **values)
        self.client = client
        self.curvature_on = curvature_on

    __init__.__signature__ = signature

    def decorate(cls):
        cls.__init__ = __init__
        cls._local_class = local_cls
        cls._parameter_constraints = {**local_cls._parameter_constraints,
                                      "client": "no_validation",
                                      "curvature_on": [StrOptions(set(CURVATURE_ON))]}
        return cls

    return decorate


class DaskMLPMixin:
    """Distributed fit, dask-aware predict; put before the local class."""

    _local_class = None

    @property
    def partial_fit(self):
        raise AttributeError(
            "fastmlp.dask estimators have no partial_fit; for a first-order solver on "
            "dask data wrap the local estimator: dask_ml.wrappers.Incremental("
            "fastmlp.MLPClassifier(solver='adam')), which calls its partial_fit on "
            "each block."
        )

    def __sklearn_clone__(self):
        # A client is a live connection: the clone shares it (deep-copying
        # it, as clone does with other parameters, is impossible).
        client = self.client
        self.client = None
        try:
            clone = super().__sklearn_clone__()
        finally:
            self.client = client
        clone.client = client
        return clone

    def __getstate__(self):
        state = dict(super().__getstate__())
        state["client"] = None  # a live connection: not part of a saved model
        return state

    def fit(self, X, y, sample_weight=None):
        """Fit on dask data with a full-batch solver across the workers.

        Parameters
        ----------
        X : dask array of shape (n_samples, n_features) or dask DataFrame
            Cut into row chunks; each chunk stays on one worker.
        y : dask array, dask Series/DataFrame, or array-like
            Cut like X's rows.
        sample_weight : dask array or array-like of shape (n_samples,), default=None

        Returns
        -------
        self
        """
        self._validate_params()
        if self.solver not in DISTRIBUTED_SOLVERS:
            raise ValueError(
                f"solver={self.solver!r} is not distributed by fastmlp.dask; use one of "
                f"{DISTRIBUTED_SOLVERS} (full-batch, data kept on the workers). For first-order "
                f"solvers on dask data, wrap the local estimator in "
                f"dask_ml.wrappers.Incremental (it calls partial_fit block by block)."
            )
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None."
            )
        with fit_client(self.client, self.n_threads) as client:
            self._fit_distributed(client, X, y, sample_weight)
        return self

    # ----------------------------------------------------------------- fit
    def _check_features(self, X, meta, reset):
        probe = meta if meta is not None else np.empty((0, X.shape[1]))
        validate_data(self, probe, skip_check_array=True, reset=reset)

    def _fit_distributed(self, client, X, y, sample_weight):
        hidden = self._hidden_sizes()
        self._hidden_activations(len(hidden))
        self._dropout_rates(len(hidden))  # refuses dropout with 'lbfgs', as locally
        # As locally (and in scikit-learn), 'lbfgs' ignores early_stopping.
        early_stopping = self.early_stopping and self.solver != "lbfgs"
        callbacks = self._checked_callbacks()
        if self.checkpoint is not None:
            raise ValueError(
                "checkpoint is not supported by fastmlp.dask (its solvers are full-batch; "
                "checkpoints are for the local first-order solvers)."
            )
        X, meta = as_dask_rows(X)
        first_pass = not hasattr(self, "coefs_") or not self.warm_start
        dtype = fit_dtype(X, None if first_pass else self._theta.dtype)
        self._check_features(X, meta, reset=first_pass)
        y = align_rows(y, X, "y", 2)
        sample_weight = align_rows(sample_weight, X, "sample_weight", 1)
        targets, n_outputs = self._dask_targets(client, y, first_pass)
        units = [X.shape[1]] + hidden + [n_outputs]
        if self.solver == "bfgs":
            check_bfgs_size(sum(a * b + b for a, b in zip(units[:-1], units[1:]))
                            if first_pass else self._layout.n_params)
        random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(np.empty((0, n_outputs), dtype=dtype), units, dtype, random_state)
        elif list(self._layout.units) != units:
            raise ValueError(
                f"The network has layer sizes {list(self._layout.units)} but this "
                f"data and hidden_layer_sizes need {units}; fit a new model "
                "(warm_start=False) to change them."
            )
        # Each part keeps validation_fraction of its rows for validation,
        # drawn from this seed (taken where the local fit draws its split).
        split = ((self.validation_fraction, int(random_state.randint(np.iinfo(np.int32).max)))
                 if early_stopping else None)

        placement = Placement(
            client, part_builder(X, y, sample_weight, targets, dtype, split), X.chunks[0])
        objective = None
        try:
            stats = placement.part_stats()
            total = sum(s[1] for s in stats)
            if not total > 0:
                raise ValueError("The sample weights sum to zero: nothing to fit.")
            objective = DistributedObjective(
                client, placement, self._layout, self._loss_code, self.alpha, self.l1,
                self.n_threads, total, self.curvature_on, train_rows=[s[0] for s in stats])
            validate = None
            if early_stopping:
                validate = self._validation(objective, stats, bool(callbacks))
            for cb in callbacks:
                if hasattr(cb, "on_train_begin"):
                    cb.on_train_begin(self)
            try:
                run_full_batch(self, objective, callbacks, random_state, validate)
            finally:
                for cb in callbacks:
                    if hasattr(cb, "on_train_end"):
                        cb.on_train_end(self)
        finally:
            if objective is not None:
                objective.release()  # its actors, and the parts
            else:
                placement.release()

    def _validation(self, objective, stats, with_loss):
        """validate(theta) -> (validation score, validation loss or None) on
        the parts' validation rows, for run_full_batch's early stopping."""
        n_val = sum(s[2] for s in stats)
        val_weight = sum(s[3] for s in stats)
        if n_val < 2:
            raise ValueError(
                "The validation set is too small. Increase 'validation_fraction' "
                "or the size of your dataset (each row chunk keeps "
                "round(validation_fraction * its rows) for validation)."
            )
        if not val_weight > 0:
            raise ValueError("The sample weights of the validation rows sum to zero.")
        scorer = self._validation_scorer()
        scorer.prepare(lambda stat: objective.validation_sums(self._theta, stat))

        def validate(theta):
            score = scorer.combine(objective.validation_sums(theta, Stat(scorer)))
            loss = objective.validation_loss(theta, val_weight) if with_loss else None
            return score, loss

        return validate

    # ------------------------------------------------------------- predict
    def _local_estimator(self):
        """A local estimator with this one's parameters and fitted state."""
        params = self.get_params(deep=False)
        state = self.__getstate__()
        for name in DASK_PARAMETERS:
            del params[name]
            state.pop(name, None)
        local = self._local_class(**params)
        local.__setstate__(state)
        return local

    def _predict_rows(self, X, lengths=False):
        """dask X -> 2-D dask array with one column chunk; names checked.

        lengths=True makes the row chunk sizes known (to align y with it).
        """
        meta = None
        if hasattr(X, "to_dask_array"):
            meta = X._meta
            X = X.to_dask_array(lengths=True if lengths else None)
        if X.ndim != 2:
            raise ValueError(f"Expected a 2-D dask array for X, got {X.ndim}-D.")
        self._check_features(X, meta, reset=False)
        if lengths and any(np.isnan(c) for c in X.chunks[0]):
            X = X.compute_chunk_sizes()
        if len(X.chunks[1]) > 1:
            X = X.rechunk({1: -1})
        return X

    def _map_rows(self, X, method, out_cols, dtype):
        """method of the local estimator on each row block of the dask array X.

        out_cols None: a 1-D output per block; else that many columns.
        """
        local = self._local_estimator()
        # Names were checked on the dask input; the blocks are plain arrays.
        local.__dict__.pop("feature_names_in_", None)
        model = dask.delayed(local, pure=False)
        if out_cols is None:
            return X.map_blocks(_apply, model, method, drop_axis=1, dtype=dtype,
                                meta=np.empty((0,), dtype=dtype))
        return X.map_blocks(_apply, model, method, chunks=(X.chunks[0], (out_cols,)),
                            dtype=dtype, meta=np.empty((0, 0), dtype=dtype))

    def _compute(self, *exprs):
        if self.client is not None:
            return self.client.compute(list(exprs), sync=True)
        return dask.compute(*exprs)

    def _score_inputs(self, X, y, sample_weight):
        """(X rows, y, sample_weight) as dask arrays with the same row chunks."""
        X = self._predict_rows(X, lengths=True)
        return X, align_rows(y, X, "y", 2), align_rows(sample_weight, X, "sample_weight", 1)


def _apply(block, model, method):
    return getattr(model, method)(block)
