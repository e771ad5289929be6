"""The `fastmlp prune` command, run as a user runs it."""

import pickle

import numpy as np
import pytest
import scipy.sparse as sp

from fastmlp.cli import main


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "model.pkl"
    assert main(["train", "--hidden", "40,20", "--epochs", "30", "--quiet", "--threads", "1",
                 "-o", str(path)]) == 0
    return path


def test_prune_and_report(model_path, tmp_path, capsys):
    capsys.readouterr()
    out_path = tmp_path / "pruned.pkl"
    assert main(["prune", str(model_path), "--sparsity", "0.8", "--schedule", "2",
                 "--retrain-epochs", "3", "--threads", "1", "-o", str(out_path)]) == 0
    out = capsys.readouterr().out
    assert "2 step(s) to sparsity 0.8" in out
    assert "step 1: sparsity 0.553" in out and "step 2: sparsity 0.800" in out
    for line in ("0      64x40", "1      40x20", "2      20x10"):
        assert line in out
    for kept in ("512/2560", "160/800", "40/200", "712/3560"):
        assert kept in out
    for row in ("test accuracy", "file size", "predict 450 rows", "predict 1 row"):
        assert row in out
    before, after = (float(v) for v in out.split("test accuracy")[-1].split()[:2])
    assert 0 < after <= 1 and 0 < before <= 1
    with open(out_path, "rb") as f:
        est = pickle.load(f)
    assert all(sp.isspmatrix_csc(W) for W in est.coefs_)
    np.testing.assert_allclose(est.sparsity_, 0.8, atol=2e-3)
    assert out_path.stat().st_size < model_path.stat().st_size
    assert f"saved: {out_path}" in out


def test_global_scope_units_and_explicit_schedule(model_path, capsys, tmp_path):
    npz = tmp_path / "d.npz"
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    np.savez(npz, X=X / 16, y=y)
    capsys.readouterr()
    assert main(["prune", str(model_path), "--data", str(npz), "--sparsity", "0.9",
                 "--schedule", "0.5,0.9", "--scope", "global", "--keep-output-dense",
                 "--units", "0.25", "--retrain-epochs", "1", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "kept hidden layers (30, 15)" in out
    assert "global, output layer dense" in out
    assert "saved:" not in out


@pytest.mark.parametrize("args,match", [
    (["--sparsity", "1.5"], r"--sparsity must be in \[0, 1\)"),
    (["--schedule", "0.5,0.7"], "must end at --sparsity"),
    (["--schedule", "many"], "--schedule takes"),
    (["--retrain-epochs", "-2"], "--retrain-epochs"),
])
def test_bad_options(model_path, capsys, args, match):
    import re

    assert main(["prune", str(model_path), *args]) == 2
    assert re.search(match, capsys.readouterr().err)


def test_bad_model_or_data(tmp_path, model_path, capsys):
    assert main(["prune", str(tmp_path / "missing.pkl")]) == 2
    assert "model file not found" in capsys.readouterr().err
    other = tmp_path / "other.pkl"
    with open(other, "wb") as f:
        pickle.dump({"not": "a model"}, f)
    assert main(["prune", str(other)]) == 2
    assert "holds a dict, not a fastmlp estimator" in capsys.readouterr().err
    unfitted = tmp_path / "unfitted.fmlp"
    import fastmlp

    fastmlp.save(fastmlp.MLPClassifier(), unfitted)
    assert main(["prune", str(unfitted)]) == 2
    assert "holds an unfitted MLPClassifier" in capsys.readouterr().err
    npz = tmp_path / "wide.npz"
    np.savez(npz, X=np.ones((20, 5)), y=np.arange(20) % 2)
    assert main(["prune", str(model_path), "--data", str(npz)]) == 2
    assert "takes 64 features" in capsys.readouterr().err


def test_regression_model(tmp_path, capsys):
    rng = np.random.RandomState(0)
    X = rng.randn(300, 6)
    npz = tmp_path / "reg.npz"
    np.savez(npz, X=X, y=X @ [1.0, -2.0, 0.5, 0.0, 0.0, 3.0])
    model = tmp_path / "reg.pkl"
    assert main(["train", "--data", str(npz), "--task", "regression", "--hidden", "16",
                 "--solver", "lbfgs", "--epochs", "100", "--quiet", "-o", str(model)]) == 0
    capsys.readouterr()
    assert main(["prune", str(model), "--data", str(npz), "--sparsity", "0.5",
                 "--retrain-epochs", "20", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "test R^2" in out and "MLPRegressor" in out and "solver lbfgs" in out
    r2_before, r2_after = (float(v) for v in out.split("test R^2")[-1].split()[:2])
    assert r2_after > 0.9


def test_fastmlp_format_in_and_out(model_path, tmp_path, capsys):
    """The safe format: read (by magic bytes) and written for -o paths not
    ending in .pkl/.joblib; the pruned layers come back exactly."""
    import fastmlp
    from fastmlp.cli import load_model

    model = tmp_path / "model.fmlp"
    fastmlp.save(load_model(str(model_path)), model)
    out_path = tmp_path / "pruned.fmlp"
    capsys.readouterr()
    assert main(["prune", str(model), "--sparsity", "0.7", "--retrain-epochs", "2",
                 "--threads", "1", "-o", str(out_path)]) == 0
    out = capsys.readouterr().out
    assert out_path.read_bytes().startswith(b"\x89FASTMLP")
    est = fastmlp.load(out_path)
    assert all(sp.isspmatrix_csc(W) for W in est.coefs_)
    np.testing.assert_allclose(est.sparsity_, 0.7, atol=2e-3)
    # The reported sizes are those of the files, in their format.
    size_line = next(line for line in out.splitlines() if line.startswith("file size"))
    assert f"{out_path.stat().st_size / 1024:.1f} KB" in size_line
    assert f"{model.stat().st_size / 1024:.1f} KB" in size_line
    # A pruned model pruned again from its fastmlp file, reported without -o.
    capsys.readouterr()
    assert main(["prune", str(out_path), "--sparsity", "0.9", "--retrain-epochs", "1",
                 "--threads", "1"]) == 0
    assert "saved:" not in capsys.readouterr().out


def test_errors_are_reported_when_run_as_a_module(tmp_path, child_env):
    """`python -m fastmlp.cli prune` exits 2 with the message, writes nothing."""
    import subprocess
    import sys

    env = child_env
    bad = tmp_path / "bad.fmlp"
    bad.write_bytes(b"\x89FASTMLP\r\n\x1a\n")
    out = tmp_path / "out.fmlp"
    run = subprocess.run([sys.executable, "-m", "fastmlp.cli", "prune", str(bad), "-o", str(out)],
                         capture_output=True, text=True, env=env, cwd=tmp_path)
    assert run.returncode == 2, run.stderr
    assert f"fastmlp: error: {bad}: truncated" in run.stderr and "Traceback" not in run.stderr
    assert not out.exists()
