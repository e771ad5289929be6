"""Initial weights: Glorot/Xavier (scikit-learn's scheme), He, and Martens'
sparse initialisation."""

import numpy as np

from . import _aligned

# Nonzero incoming weights per unit of the 'sparse' scheme (Martens, 2010).
SPARSE_CONNECTIONS = 15


def sparse_weights(fan_in, fan_out, random_state):
    """A (fan_in, fan_out) matrix in which each unit (column) has
    min(SPARSE_CONNECTIONS, fan_in) nonzero incoming weights, drawn from
    N(0, 1) at distinct random inputs."""
    k = min(SPARSE_CONNECTIONS, fan_in)
    W = np.zeros((fan_in, fan_out))
    # The k smallest of fan_in uniform keys per unit: a uniform draw of k
    # distinct inputs, for every unit at once.
    inputs = np.argpartition(random_state.uniform(size=(fan_out, fan_in)), k - 1, axis=1)[:, :k]
    W[inputs, np.arange(fan_out)[:, None]] = random_state.normal(0.0, 1.0, (fan_out, k))
    return W


def init_theta(layout, scheme, activations, random_state, dtype):
    """Draw a fresh parameter vector.

    Parameters
    ----------
    layout : Layout
    scheme : {'glorot', 'he', 'sparse'}
        'glorot' is scikit-learn's MLP initialisation exactly (same draws for
        the same random_state): W and b uniform in +-sqrt(f / (fan_in +
        fan_out)) with f = 2 for logistic layers and 6 otherwise. 'he' draws
        W from N(0, 2 / fan_in) with zero biases (He et al., 2015), suited to
        relu networks. 'sparse' is Martens' sparse initialisation ("Deep
        learning via Hessian-free optimization", ICML 2010): each unit gets
        15 nonzero incoming weights drawn from N(0, 1) (all of them if it
        has fewer inputs) and a zero bias, so units start with large,
        diverse inputs without saturating all at once whatever the layer's
        width; Martens found it essential for training deep logistic nets
        without pre-training.
    activations : sequence of str
        The activation whose gain sets the Glorot factor, per layer.
    random_state : numpy.random.RandomState
    """
    theta = _aligned.empty(layout.n_params, dtype)
    coefs, intercepts = layout.views(theta)
    for l, (W, b) in enumerate(zip(coefs, intercepts)):
        fan_in, fan_out = W.shape
        if scheme == "he":
            W[...] = random_state.normal(0.0, np.sqrt(2.0 / fan_in), W.shape)
            b[...] = 0
        elif scheme == "sparse":
            W[...] = sparse_weights(fan_in, fan_out, random_state)
            b[...] = 0
        else:
            factor = 2.0 if activations[l] == "logistic" else 6.0
            bound = np.sqrt(factor / (fan_in + fan_out))
            W[...] = random_state.uniform(-bound, bound, W.shape)
            b[...] = random_state.uniform(-bound, bound, fan_out)
    return theta
