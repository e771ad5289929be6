"""Warnings and errors fastmlp raises beyond scikit-learn's own."""

from sklearn.exceptions import ConvergenceWarning


class DivergenceWarning(ConvergenceWarning):
    """A fit stopped because the loss or a parameter became non-finite.

    The model keeps the parameters of the last epoch whose values were all
    finite.
    """


class InputScaleWarning(UserWarning):
    """X holds values so large that training or prediction may overflow.

    An MLP trains reliably only on roughly unit-scaled features; scale them
    (e.g. with :class:`sklearn.preprocessing.StandardScaler`).
    """


class ModelFileError(ValueError):
    """A model file is not a valid fastmlp model file.

    Raised by :func:`fastmlp.load` (and the container reader) for anything
    wrong with a file: not a fastmlp file, unsupported version, truncation,
    checksum mismatch, inconsistent metadata, or a stored model whose state
    does not hold together. The message names what is wrong.
    """
