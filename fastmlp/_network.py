"""Network layout: layer sizes, activations and one flat parameter vector.

All parameters of a fitted network live in one contiguous vector ``theta``
(the dtype of the fit). For layer ``l`` it holds ``W_l`` (row-major,
``units[l] x units[l+1]``) followed by ``b_l``. ``coefs_`` and
``intercepts_`` are views into it, so an optimiser updates one vector with
one fused loop, and second-order solvers see a plain vector.
"""

import numpy as np

# Codes shared with src/_activations.pxd.
ACTIVATIONS = {
    "identity": 0,
    "logistic": 1,
    "tanh": 2,
    "relu": 3,
    "leaky_relu": 4,
    "softmax": 5,
    "exp": 6,
}
HIDDEN_ACTIVATIONS = ("identity", "logistic", "tanh", "relu", "leaky_relu")

# Codes shared with src/_losses.pxd.
LOSS_SQUARED, LOSS_LOG, LOSS_HINGE, LOSS_HINGE_BINARY, LOSS_POISSON = range(5)

# Chunk length of the fused update loop (src/_updates.pxd CHUNK).
UPDATE_CHUNK = 4096


class Layout:
    """Shapes and offsets of a dense network's parameters.

    Parameters
    ----------
    units : sequence of int
        ``[n_features, hidden..., n_outputs]``.
    activations : sequence of str
        One per weight layer; the last is the output activation.
    negative_slope : float
        Slope of 'leaky_relu' for negative inputs.
    """

    def __init__(self, units, activations, negative_slope=0.01):
        self.units = np.asarray(units, dtype=np.int32)
        if len(activations) != len(self.units) - 1:
            raise ValueError("one activation per layer is needed")
        self.activations = tuple(activations)
        sizes = [int(a) * int(b) + int(b) for a, b in zip(units[:-1], units[1:])]
        self.w_off = np.zeros(len(sizes), dtype=np.int64)
        self.w_off[1:] = np.cumsum(sizes)[:-1]
        self.n_params = int(sum(sizes))
        self.act = np.array([ACTIVATIONS[a] for a in activations], dtype=np.int32)
        self.negative_slope = float(negative_slope)
        # The tuple every kernel takes (see src/_args.pxd).
        self.net = (self.units, self.w_off, self.act, self.negative_slope)

    @property
    def n_layers(self):
        return len(self.units) - 1

    def coef_slice(self, l):
        start = int(self.w_off[l])
        return slice(start, start + int(self.units[l]) * int(self.units[l + 1]))

    def intercept_slice(self, l):
        stop = self.coef_slice(l).stop
        return slice(stop, stop + int(self.units[l + 1]))

    def views(self, theta):
        """(coefs, intercepts): lists of views into theta."""
        coefs = [
            theta[self.coef_slice(l)].reshape(self.units[l], self.units[l + 1])
            for l in range(self.n_layers)
        ]
        intercepts = [theta[self.intercept_slice(l)] for l in range(self.n_layers)]
        return coefs, intercepts

    def pack(self, coefs, intercepts, dtype):
        """A new theta holding the given per-layer arrays."""
        theta = np.empty(self.n_params, dtype=dtype)
        for l, (W, b) in enumerate(zip(coefs, intercepts)):
            shape = (int(self.units[l]), int(self.units[l + 1]))
            W = np.asarray(W)
            b = np.asarray(b)
            if W.shape != shape or b.shape != (shape[1],):
                raise ValueError(
                    f"coefs_[{l}] has shape {W.shape} and intercepts_[{l}] "
                    f"{b.shape}; the network needs {shape} and ({shape[1]},)"
                )
            theta[self.coef_slice(l)] = W.ravel()
            theta[self.intercept_slice(l)] = b
        return theta

    def weight_mask(self):
        """Boolean mask of theta's entries that are weights (not biases)."""
        mask = np.zeros(self.n_params, dtype=bool)
        for l in range(self.n_layers):
            mask[self.coef_slice(l)] = True
        return mask

    def pieces(self):
        """Cut theta into update chunks of wholly-weight or wholly-bias pieces.

        Returns the (lo, hi, is_weight, chunk_ptr) arrays of _updates.Pieces.
        """
        cuts = {0, self.n_params}
        cuts.update(range(0, self.n_params, UPDATE_CHUNK))
        for l in range(self.n_layers):
            cuts.add(self.coef_slice(l).stop)
            cuts.add(self.intercept_slice(l).stop)
        bounds = np.array(sorted(cuts), dtype=np.int64)
        lo, hi = bounds[:-1], bounds[1:]
        is_weight = self.weight_mask()[lo].astype(np.int8)
        chunk_of = lo // UPDATE_CHUNK
        n_chunks = int(chunk_of[-1]) + 1 if len(lo) else 0
        chunk_ptr = np.searchsorted(chunk_of, np.arange(n_chunks + 1)).astype(np.int64)
        return lo, hi, is_weight, chunk_ptr
