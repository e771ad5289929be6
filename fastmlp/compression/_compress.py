"""``compress``: weight sharing or linear quantisation of a fitted network."""

import copy
from numbers import Integral, Real

import numpy as np

from ..pruning._rebuild import check_fitted_mlp
from ._finetune import fine_tune
from ._layers import LayerCode, encode_layer
from ._quantize import kmeans_1d, linear_levels

METHODS = ("shared", "linear")


class CompressedModel:
    """A network in compressed form, and the estimator it makes.

    Attributes
    ----------
    estimator : MLPClassifier or MLPRegressor
        A fitted estimator whose parameters are exactly the compressed ones
        (shared or quantised weights, quantised biases); pruned layers stay
        scipy.sparse. ``fastmlp.compression.load`` returns an estimator
        that predicts bit-identically.
    layers : list of LayerCode
    fine_tune_loss_ : list of float
        Training loss per fine-tuning epoch (empty without fine-tuning).
    """

    def __init__(self, estimator, layers, fine_tune_loss=()):
        self.estimator = estimator
        self.layers = layers
        self.fine_tune_loss_ = list(fine_tune_loss)
        self._encoded = None

    def encoded(self):
        """[(entry, floats, streams)] per layer (cached)."""
        if self._encoded is None:
            self._encoded = [encode_layer(c) for c in self.layers]
        return self._encoded

    def layer_sizes(self):
        """Per layer, a dict of byte counts: ``dense_float32`` (the layer's
        weights and biases as a dense float32 model stores them) and
        ``stored`` (its codebook, weight, position and bias data in the
        file), with the parts ``table``, ``weights``, ``positions``,
        ``biases``."""
        out = []
        for code, (entry, floats, streams) in zip(self.layers, self.encoded()):
            n_in, n_out = code.shape
            nbytes = [b or 0 for b in entry["nbytes"]]
            parts = {"table": 4 * code.table.size, "weights": nbytes[0],
                     "positions": nbytes[1], "biases": 4 * code.bias_table.size + nbytes[2]}
            out.append({"dense_float32": 4 * (n_in * n_out + n_out),
                        "stored": sum(parts.values()), **parts,
                        "codecs": dict(zip(("weights", "positions", "biases"),
                                           entry["codecs"]))})
        return out

    def save(self, path):
        """Write the compressed model to ``path`` (a ``.fmz`` model file)."""
        from ._file import save

        save(self, path)


def _check_bits(value, name, lo, hi, allow_none=False):
    if value is None and allow_none:
        return None
    if not isinstance(value, Integral) or isinstance(value, bool) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}]"
                         f"{' or None' if allow_none else ''}, got {value!r}")
    return int(value)


def compress(estimator, *, bits=5, method="shared", bias_bits=8, X=None, y=None,
             sample_weight=None, fine_tune_epochs=0, learning_rate=None, batch_size=None,
             random_state=0):
    """Compress a fitted (typically pruned) network.

    Per layer, over its stored weights only (a pruned layer's survivors):

    - ``method='shared'``: weight sharing. 1-D k-means with ``k = 2**bits``
      centroids initialised linearly over [min, max] (Han et al., 2016);
      each weight becomes the index of its centroid. With
      ``fine_tune_epochs``, the centroids (and biases) are then trained on
      ``X, y``, each centroid's gradient being the sum of its weights'.
    - ``method='linear'``: uniform quantisation to ``bits`` bits (8: int8,
      16: int16) over the layer's [min, max].

    Biases are quantised linearly to ``bias_bits`` bits per layer (None:
    kept as float32). Entropy coding happens on saving (see ``save``).

    Parameters
    ----------
    estimator : fitted MLPClassifier or MLPRegressor
        Left unchanged: the result holds a compressed copy.
    bits : int, default=5
        1-8 for 'shared', 1-16 for 'linear'.
    method : {'shared', 'linear'}, default='shared'
    bias_bits : int or None, default=8
    X, y, sample_weight : training data for fine-tuning, as for ``fit``.
    fine_tune_epochs : int, default=0
    learning_rate : float, default=None
        Adam's step for fine-tuning; default: the estimator's
        ``learning_rate_init``.
    batch_size : int, default=None
        Fine-tuning batch size; default: the estimator's (200 for 'auto').
    random_state : int, RandomState or None, default=0
        Shuffling of the fine-tuning batches.

    Returns
    -------
    CompressedModel
    """
    check_fitted_mlp(estimator)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    bits = _check_bits(bits, "bits", 1, 8 if method == "shared" else 16)
    bias_bits = _check_bits(bias_bits, "bias_bits", 1, 16, allow_none=True)
    if (not isinstance(fine_tune_epochs, Integral) or isinstance(fine_tune_epochs, bool)
            or fine_tune_epochs < 0):
        raise ValueError(f"fine_tune_epochs must be an integer >= 0, got {fine_tune_epochs!r}")
    if fine_tune_epochs:
        if method != "shared":
            raise ValueError("fine-tuning trains shared centroids: it needs method='shared'")
        if X is None or y is None:
            raise ValueError("fine_tune_epochs > 0 needs the training data X and y")
    if learning_rate is not None and (not isinstance(learning_rate, Real)
                                      or not learning_rate > 0):
        raise ValueError(f"learning_rate must be a positive number, got {learning_rate!r}")

    est = copy.deepcopy(estimator)
    theta = est._theta
    layout = est._layout
    layers = []
    for l in range(layout.n_layers):
        w = theta[layout.coef_slice(l)]
        csc = layout.structure[l]  # (indptr, indices) of a pruned layer, or None
        if method == "shared":
            centroids, symbols = kmeans_1d(w, 1 << bits)
            table = centroids.astype(np.float32)
        else:
            lo, step, symbols = linear_levels(w, bits)
            table = np.array([lo, step], dtype=np.float32)
        layers.append(LayerCode(layout.shape(l), method, bits, table, symbols, csc,
                                bias_bits, None, None))
        theta[layout.coef_slice(l)] = layers[-1].weights()

    losses = []
    if fine_tune_epochs:
        if batch_size is None:
            batch_size = 200 if est.batch_size == "auto" else est.batch_size
        losses = fine_tune(est, layers, X, y, epochs=fine_tune_epochs,
                           learning_rate=(est.learning_rate_init if learning_rate is None
                                          else float(learning_rate)),
                           batch_size=batch_size, sample_weight=sample_weight,
                           random_state=random_state)

    for l, code in enumerate(layers):
        b = theta[layout.intercept_slice(l)]
        if bias_bits is None:
            code.bias_table = b.astype(np.float32)
        else:
            lo, step, code.bias_symbols = linear_levels(b, bias_bits)
            code.bias_table = np.array([lo, step], dtype=np.float32)
        theta[layout.coef_slice(l)] = code.weights()
        theta[layout.intercept_slice(l)] = code.biases()
    _drop_training_state(est)
    return CompressedModel(est, layers, losses)


def _drop_training_state(est):
    """Optimiser state and snapshots belong to the uncompressed parameters."""
    for name in ("_optimizer", "_best_theta", "_opt_state", "_opt_step", "_opt_lr",
                 "_opt_epochs", "_resume"):
        est.__dict__.pop(name, None)
