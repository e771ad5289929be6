"""Initial weights: Glorot/Xavier (scikit-learn's scheme) and He."""

import numpy as np


def init_theta(layout, scheme, activations, random_state, dtype):
    """Draw a fresh parameter vector.

    Parameters
    ----------
    layout : Layout
    scheme : {'glorot', 'he'}
        'glorot' is scikit-learn's MLP initialisation exactly (same draws for
        the same random_state): W and b uniform in +-sqrt(f / (fan_in +
        fan_out)) with f = 2 for logistic layers and 6 otherwise. 'he' draws
        W from N(0, 2 / fan_in) with zero biases (He et al., 2015), suited to
        relu networks.
    activations : sequence of str
        The activation whose gain sets the Glorot factor, per layer.
    random_state : numpy.random.RandomState
    """
    theta = np.empty(layout.n_params, dtype=dtype)
    coefs, intercepts = layout.views(theta)
    for l, (W, b) in enumerate(zip(coefs, intercepts)):
        fan_in, fan_out = W.shape
        if scheme == "he":
            W[...] = random_state.normal(0.0, np.sqrt(2.0 / fan_in), W.shape)
            b[...] = 0
        else:
            factor = 2.0 if activations[l] == "logistic" else 6.0
            bound = np.sqrt(factor / (fan_in + fan_out))
            W[...] = random_state.uniform(-bound, bound, W.shape)
            b[...] = random_state.uniform(-bound, bound, fan_out)
    return theta
