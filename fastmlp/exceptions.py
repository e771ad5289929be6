"""Warnings and errors fastmlp raises beyond scikit-learn's own."""

from sklearn.exceptions import ConvergenceWarning


class DivergenceWarning(ConvergenceWarning):
    """A fit stopped because the loss or a parameter became non-finite.

    The model keeps the parameters of the last epoch whose values were all
    finite.
    """
