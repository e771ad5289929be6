"""The `fastmlp compress` command, run as a user runs it."""

import re

import numpy as np
import pytest

from fastmlp.cli import main
from fastmlp.compression import load


@pytest.fixture(scope="module")
def pruned_path(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    model, pruned = folder / "model.pkl", folder / "pruned.pkl"
    assert main(["train", "--hidden", "60,30", "--epochs", "40", "--quiet", "--threads", "1",
                 "-o", str(model)]) == 0
    assert main(["prune", str(model), "--sparsity", "0.7", "--schedule", "2", "--scope",
                 "global", "--retrain-epochs", "15", "--threads", "1", "-o", str(pruned)]) == 0
    return pruned


def test_compress_and_report(pruned_path, tmp_path, capsys):
    capsys.readouterr()
    out_path = tmp_path / "model.fmz"
    assert main(["compress", str(pruned_path), "--bits", "5", "--fine-tune-epochs", "2",
                 "--threads", "1", "-o", str(out_path)]) == 0
    out = capsys.readouterr().out
    assert "5-bit weight sharing" in out and "2 fine-tuning epochs" in out
    assert "fine-tuning: training loss" in out
    for line in ("0      64x60", "1      60x30", "2      30x10"):
        assert line in out
    assert re.search(r"^layers\s+\d+ B\s+\d+ B\s+[\d.]+x", out, re.M)
    m = re.search(r"^file\s+(\d+) B\s+(\d+) B\s+([\d.]+)x", out, re.M)
    assert int(m.group(1)) == 4 * (64 * 60 + 60 + 60 * 30 + 30 + 30 * 10 + 10)
    assert int(m.group(2)) == out_path.stat().st_size
    assert float(m.group(3)) > 5  # a small model: metadata weighs
    before, after = (float(v) for v in out.split("test accuracy")[-1].split()[:2])
    assert before > 0.9 and after >= before - 0.02
    assert f"saved: {out_path}" in out
    est = load(out_path)
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    _, Xte, _, yte = train_test_split(X / 16, y, test_size=0.25, random_state=0, stratify=y)
    assert est.score(Xte, yte) == pytest.approx(after, abs=5e-5)


def test_linear_method_without_output(pruned_path, capsys):
    capsys.readouterr()
    assert main(["compress", str(pruned_path), "--method", "linear", "--bits", "8",
                 "--bias-bits", "none", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "8-bit linear quantisation, biases float32" in out
    assert "saved:" not in out


@pytest.mark.parametrize("args,match", [
    (["--bits", "0"], "bits must be an integer in"),
    (["--bits", "9"], "bits must be an integer in"),
    (["--fine-tune-epochs", "-1"], "--fine-tune-epochs must be >= 0"),
    (["--bias-bits", "many"], "--bias-bits takes"),
    (["--method", "linear", "--fine-tune-epochs", "1"], "method='shared'"),
])
def test_bad_options(pruned_path, args, match, capsys):
    assert main(["compress", str(pruned_path), *args]) == 2
    assert re.search(match, capsys.readouterr().err)


def test_missing_model(tmp_path, capsys):
    assert main(["compress", str(tmp_path / "nope.pkl")]) == 2
    assert "not found" in capsys.readouterr().err


def test_wrong_data_width(pruned_path, tmp_path, capsys):
    npz = tmp_path / "d.npz"
    np.savez(npz, X=np.zeros((20, 5)), y=np.arange(20) % 2)
    assert main(["compress", str(pruned_path), "--data", str(npz)]) == 2
    assert "takes 64 features" in capsys.readouterr().err
