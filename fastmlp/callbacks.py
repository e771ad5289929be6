"""Callbacks: code run between the compiled epochs of a fit.

Pass them as ``callbacks=[...]`` to an estimator. A callback is any object
with a method ``on_epoch_end(estimator, info)``, called once after every
epoch (after every iteration for the full-batch solvers 'lbfgs', 'bfgs' and
'hf'), never per mini-batch.
``info`` is a dict:

=====================  ======================================================
``epoch``              epochs completed since the model was initialised,
                       this one included (``len(estimator.loss_curve_)``; in a
                       fresh fit it equals ``n_iter_``)
``loss``               the epoch's training loss, as ``loss_curve_`` records it
``validation_score``   accuracy or R² on the validation split
                       (``early_stopping=True``), else None
``validation_loss``    the loss on the validation split (``early_stopping=True``):
                       the objective's data term, without penalty or dropout;
                       else None
``learning_rate``      the rate the epoch used (None for 'lbfgs', 'bfgs', 'hf')
``seconds``            wall time of the epoch, validation included
=====================  ======================================================

A true return value stops training after that epoch (for
``early_stopping=True`` the best parameters seen are then restored, as when
early stopping itself stops). Optional methods ``on_train_begin(estimator)``
and ``on_train_end(estimator)`` are called around each call to ``fit`` or
``partial_fit``.

Callbacks are estimator parameters: ``clone`` (and so ``GridSearchCV``)
deep-copies them, and they are pickled with the model.
"""

import sys

__all__ = ["History", "ProgressBar"]


class History:
    """Record every epoch's ``info`` and the validation loss curve.

    After the fit, besides its own lists, the estimator has
    ``validation_loss_curve_`` (one value per epoch with ``early_stopping=True``,
    else None) next to ``loss_curve_`` and ``validation_scores_``.
    A fit that starts from scratch resets the history; ``warm_start`` fits and
    ``partial_fit`` calls append to it, as they append to ``loss_curve_``.

    Attributes
    ----------
    records : list of dict
        The ``info`` dict of every epoch.
    loss_curve_, validation_scores_, validation_loss_curve_, learning_rates_ : list
        The corresponding ``info`` entries, one per epoch (the validation
        lists are None without a validation split).
    """

    def __init__(self):
        self.records = []

    def on_train_begin(self, estimator):
        if not estimator.loss_curve_:  # a fresh model: forget earlier fits
            self.records = []
        self._val_loss = [r["validation_loss"] for r in self.records
                          if r["validation_loss"] is not None]

    def on_epoch_end(self, estimator, info):
        self.records.append(info)
        if info["validation_loss"] is not None:
            if not hasattr(self, "_val_loss"):  # on_train_begin not called: a bare caller
                self._val_loss = []
            self._val_loss.append(info["validation_loss"])
            estimator.validation_loss_curve_ = self._val_loss
        else:
            estimator.validation_loss_curve_ = None
        return False

    def _column(self, key):
        values = [r[key] for r in self.records]
        return None if values and all(v is None for v in values) else values

    @property
    def loss_curve_(self):
        return [r["loss"] for r in self.records]

    @property
    def validation_scores_(self):
        return self._column("validation_score")

    @property
    def validation_loss_curve_(self):
        return self._column("validation_loss")

    @property
    def learning_rates_(self):
        return [r["learning_rate"] for r in self.records]


class ProgressBar:
    """Show training progress: a tqdm bar when tqdm is installed, else one
    plain line per epoch.

    Parameters
    ----------
    file : file object or None, default=None
        Where to write (None: ``sys.stderr``, looked up at each fit).
    use_tqdm : bool or None, default=None
        None: tqdm if it can be imported; False: plain lines; True: tqdm, or
        an ImportError naming how to install it.
    """

    def __init__(self, file=None, use_tqdm=None):
        self.file = file
        self.use_tqdm = use_tqdm

    def _tqdm(self):
        if self.use_tqdm is False:
            return None
        try:
            from tqdm import tqdm
        except ImportError:
            if self.use_tqdm:
                raise ImportError(
                    "ProgressBar(use_tqdm=True) needs tqdm: pip install tqdm "
                    "(or pip install 'fastmlp[progress]')."
                ) from None
            return None
        return tqdm

    def on_train_begin(self, estimator):
        self._start = len(estimator.loss_curve_)
        self._total = estimator.max_iter
        out = self.file if self.file is not None else sys.stderr
        tqdm = self._tqdm()
        self._bar = None
        if tqdm is not None:
            self._bar = tqdm(total=self._total, file=out, unit="epoch", leave=True,
                             desc=type(estimator).__name__)
        self._out = out

    def on_epoch_end(self, estimator, info):
        if not hasattr(self, "_out"):  # on_train_begin not called: a bare caller
            self.on_train_begin(estimator)
        fields = [f"loss {info['loss']:.6g}"]
        if info["validation_score"] is not None:
            fields.append(f"val score {info['validation_score']:.4f}")
        if info["validation_loss"] is not None:
            fields.append(f"val loss {info['validation_loss']:.6g}")
        if info["learning_rate"] is not None:
            fields.append(f"lr {info['learning_rate']:.3g}")
        if self._bar is not None:
            self._bar.set_postfix_str(", ".join(fields), refresh=False)
            self._bar.update(1)
        else:
            done = info["epoch"] - self._start
            print(f"epoch {done}/{self._total}: " + ", ".join(fields)
                  + f", {info['seconds']:.3f} s", file=self._out, flush=True)
        return False

    def on_train_end(self, estimator):
        bar = getattr(self, "_bar", None)
        if bar is not None:
            bar.close()
        # Drop the stream and bar: the callback stays picklable and clonable.
        for name in ("_bar", "_out", "_start", "_total"):
            self.__dict__.pop(name, None)
