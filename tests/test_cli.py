"""The fastmlp command, run as a user runs it."""

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from fastmlp.cli import main


def test_train_on_builtin_digits(capsys, tmp_path):
    out_path = tmp_path / "model.pkl"
    assert main(["train", "--epochs", "30", "-o", str(out_path)]) == 0
    out = capsys.readouterr().out
    assert "Iteration 30" in out  # per-epoch progress
    acc = float(out.split("test accuracy:")[1].split()[0])
    assert acc > 0.9
    assert "fit time:" in out
    with open(out_path, "rb") as f:
        est = pickle.load(f)
    assert est.n_iter_ == 30


def test_train_on_csv_and_npz(tmp_path, capsys):
    rng = np.random.RandomState(0)
    X = rng.randn(120, 3)
    y = (X[:, 0] > 0).astype(int)
    csv = tmp_path / "d.csv"
    with open(csv, "w") as f:
        f.write("a,b,c,target\n")
        np.savetxt(f, np.column_stack([X, y]), delimiter=",")
    assert main(["train", "--data", str(csv), "--epochs", "50", "--quiet"]) == 0
    npz = tmp_path / "d.npz"
    np.savez(npz, X=X, y=X @ [1.0, 2.0, 0.0])
    assert main(["train", "--data", str(npz), "--task", "regression", "--solver", "lbfgs",
                 "--hidden", "8", "--quiet"]) == 0
    assert "test R^2" in capsys.readouterr().out


@pytest.mark.parametrize("content,match", [
    (None, "not found"),
    ({"A": np.ones((3, 2))}, "must hold arrays 'X' and 'y'"),
])
def test_bad_data_file_fails_cleanly(tmp_path, capsys, content, match):
    path = tmp_path / "bad.npz"
    if content is not None:
        np.savez(path, **content)
    out_path = tmp_path / "never.pkl"
    assert main(["train", "--data", str(path), "-o", str(out_path)]) == 2
    err = capsys.readouterr().err
    assert match in err and str(path) in err
    assert not out_path.exists()


def test_console_script_help(tmp_path):
    script = os.path.join(os.path.dirname(sys.executable), "fastmlp")
    result = subprocess.run([script, "train", "--help"], capture_output=True, text=True,
                            cwd=tmp_path)
    assert result.returncode == 0
    for option in ("--data", "--hidden", "--solver", "--epochs", "-o"):
        assert option in result.stdout


def test_train_plot_dropout_and_per_layer_activations(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="--plot needs matplotlib: pip install 'fastmlp[plot]'")
    png = tmp_path / "curves.png"
    out_path = tmp_path / "model.pkl"
    assert main(["train", "--epochs", "6", "--hidden", "16,8", "--activation", "relu,tanh",
                 "--dropout", "0.1,0.3", "--early-stopping", "--quiet", "--plot", str(png),
                 "-o", str(out_path)]) == 0
    assert f"saved plot: {png}" in capsys.readouterr().out
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with open(out_path, "rb") as f:
        est = pickle.load(f)
    assert est.activation == ("relu", "tanh") and est.dropout == (0.1, 0.3)
    assert len(est.validation_loss_curve_) == est.n_iter_
    with pytest.raises(SystemExit):
        main(["train", "--activation", "relu,gelu"])
    assert "unknown activation 'gelu'" in capsys.readouterr().err
