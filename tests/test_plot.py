"""fastmlp.plot renders without a display (Agg) and draws the model's data."""

import copy
import sys
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import make_classification
from sklearn.exceptions import NotFittedError

matplotlib = pytest.importorskip(
    "matplotlib", reason="fastmlp.plot needs matplotlib: pip install 'fastmlp[plot]'")
matplotlib.use("Agg")
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from fastmlp import MLPClassifier, MLPRegressor, plot  # noqa: E402
from fastmlp.callbacks import History  # noqa: E402

X, Y = make_classification(300, 10, n_informative=6, n_classes=3, random_state=0)


def fit(est, y=Y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X, y)


@pytest.fixture(scope="module")
def model():
    return fit(MLPClassifier((24, 12), early_stopping=True, max_iter=15, random_state=0,
                             n_iter_no_change=100, callbacks=[History()]))


def save(ax, tmp_path):
    path = tmp_path / "figure.png"
    ax.figure.savefig(path)
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    return path


def test_loss_curve(model, tmp_path):
    ax = plot.loss_curve(model)
    assert isinstance(ax, Axes)
    labels = [l.get_label() for l in ax.get_legend().get_lines()]
    assert labels == ["training loss", "validation loss", "validation score"]
    train, val = ax.get_lines()
    np.testing.assert_array_equal(train.get_ydata(), model.loss_curve_)
    np.testing.assert_array_equal(val.get_ydata(), model.validation_loss_curve_)
    np.testing.assert_array_equal(train.get_xdata(), np.arange(1, 16))
    save(ax, tmp_path)


def test_loss_curve_without_validation_and_for_lbfgs(tmp_path):
    est = fit(MLPRegressor(hidden_layer_sizes=(8,), solver="lbfgs", max_iter=10,
                           random_state=0), Y * 1.0)
    fig = Figure()
    ax = plot.loss_curve(est, ax=fig.subplots())
    assert ax.figure is fig and len(ax.get_lines()) == 1
    assert ax.get_xlabel() == "iteration"
    save(ax, tmp_path)


def test_weight_histogram_before_and_after(model, tmp_path):
    ax = plot.weight_histogram(model)
    total = sum(W.size for W in model.coefs_)
    assert ax.get_legend().get_texts()[0].get_text() == f"weights: {total:,} nonzero of {total:,}"
    save(ax, tmp_path)
    pruned = copy.deepcopy(model)
    kept = 0
    for l, W in enumerate(pruned.coefs_):
        W[np.abs(W) < np.quantile(np.abs(W), 0.75)] = 0
        kept += np.count_nonzero(W)
    pruned.coefs_[0] = sp.csr_matrix(pruned.coefs_[0])  # a sparse pruned layer
    ax = plot.weight_histogram(model, pruned)
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts == [f"before: {total:,} nonzero of {total:,}",
                     f"after: {kept:,} nonzero of {total:,}"]
    assert ax.get_xscale() == "log"
    save(ax, tmp_path)


def test_sparsity_dense_zeros_and_sparse_layers(model, tmp_path):
    pruned = copy.deepcopy(model)
    masks = []
    for W in pruned.coefs_:
        W[np.abs(W) < np.quantile(np.abs(W), 0.6)] = 0
        masks.append(W != 0)
    ax = plot.sparsity(pruned)
    images = ax.get_images()
    assert len(images) == 3
    for image, mask in zip(images, masks):
        np.testing.assert_array_equal(np.asarray(image.get_array()), mask)
    save(ax, tmp_path)
    # A scipy.sparse layer: its stored entries are the pattern, even an
    # explicit zero (a surviving weight that happens to be 0).
    S = sp.csr_matrix(pruned.coefs_[1])
    S.data[0] = 0.0
    pruned.coefs_[1] = S
    ax = plot.sparsity(pruned, ax=Figure().subplots())
    np.testing.assert_array_equal(np.asarray(ax.get_images()[1].get_array()), masks[1])
    assert f"{masks[1].mean():.1%} nonzero" in ax.texts[1].get_text()
    save(ax, tmp_path)


def test_errors():
    with pytest.raises(NotFittedError):
        plot.loss_curve(MLPClassifier())
    with pytest.raises(NotFittedError):
        plot.sparsity(MLPClassifier())


def test_missing_matplotlib_says_how_to_install(model, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"pip install 'fastmlp\[plot\]'"):
        plot.weight_histogram(model)
