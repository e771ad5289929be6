"""Plain-numpy reference implementations the compiled kernels are tested
against: written for clarity, independently of the kernels."""

import numpy as np
from scipy.special import expit, logsumexp, softmax, xlogy


def activation(name, Z, slope=0.01):
    if name == "identity":
        return Z
    if name == "logistic":
        return expit(Z)
    if name == "tanh":
        return np.tanh(Z)
    if name == "relu":
        return np.maximum(Z, 0)
    if name == "leaky_relu":
        return np.where(Z > 0, Z, slope * Z)
    if name == "softmax":
        return softmax(Z, axis=1)
    if name == "exp":
        return np.exp(Z)
    raise ValueError(name)


def forward(layout, theta, X, pre_output=False):
    """Outputs of the network (or the output layer's pre-activation)."""
    coefs, intercepts = layout.views(theta)
    A = X
    for l, (W, b) in enumerate(zip(coefs, intercepts)):
        Z = A @ W + b
        if l == layout.n_layers - 1 and pre_output:
            return Z
        A = activation(layout.activations[l], Z, layout.negative_slope)
    return A


def row_losses(loss, out_act, Z, Y):
    """Per-row loss from the output layer's pre-activation Z."""
    if out_act == "softmax" and loss == "log":
        return (Y * (logsumexp(Z, axis=1, keepdims=True) - Z)).sum(1)
    if out_act == "logistic" and loss == "log":
        return (np.logaddexp(0, Z) - Y * Z).sum(1)
    if loss == "squared":
        return 0.5 * ((activation(out_act, Z) - Y) ** 2).sum(1)
    if loss == "poisson":
        return (xlogy(Y, Y) - Y - Y * Z + np.exp(Z)).sum(1)
    if loss == "hinge_binary":
        s = 2 * Y - 1
        return np.maximum(0, 1 - s * Z).sum(1)
    if loss == "hinge":
        t = Y.argmax(1)
        rows = np.arange(len(Z))
        other = Z.copy()
        other[rows, t] = -np.inf
        return np.maximum(0, 1 + other.max(1) - Z[rows, t])
    raise ValueError(loss)


def objective(layout, theta, X, Y, loss, sample_weight=None, alpha=0.0, l1=0.0):
    """scikit-learn's MLP objective (plus L1), as fastmlp defines it."""
    Z = forward(layout, theta, X, pre_output=True)
    ell = row_losses(loss, layout.activations[-1], Z, Y)
    sw = np.ones(len(X)) if sample_weight is None else sample_weight
    coefs, _ = layout.views(theta)
    pen = sum(0.5 * alpha * (W**2).sum() + l1 * np.abs(W).sum() for W in coefs)
    return (np.dot(sw, ell) + pen) / sw.sum()
