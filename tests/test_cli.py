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


# ------------------------------------------------------------- model files
def test_output_format_follows_the_suffix(tmp_path, capsys):
    import joblib

    import fastmlp

    base = ["train", "--epochs", "3", "--quiet", "--hidden", "8"]
    for name in ("m.fmlp", "m.pkl", "m.joblib"):
        assert main(base + ["-o", str(tmp_path / name)]) == 0
    assert (tmp_path / "m.fmlp").read_bytes().startswith(b"\x89FASTMLP")
    a = fastmlp.load(tmp_path / "m.fmlp")
    with open(tmp_path / "m.pkl", "rb") as f:
        b = pickle.load(f)
    c = joblib.load(tmp_path / "m.joblib")
    for other in (b, c):
        assert all(np.array_equal(x, y) for x, y in zip(a.coefs_, other.coefs_))
    assert sorted(os.listdir(tmp_path)) == ["m.fmlp", "m.joblib", "m.pkl"]


def test_load_model_reads_both_formats_and_names_bad_files(tmp_path):
    from fastmlp.cli import CLIError, load_model, save_model

    est = main_model(tmp_path)
    for name in ("a.fmlp", "a.pkl", "a.joblib"):
        save_model(est, str(tmp_path / name))
        assert np.array_equal(load_model(str(tmp_path / name)).coefs_[0], est.coefs_[0])
    bad = [("junk.fmlp", b"not a model", "not a fastmlp model file"),
           ("junk.pkl", b"not a pickle", "cannot read"),
           ("list.pkl", pickle.dumps([1, 2]), "holds a list, not a fastmlp estimator"),
           # A pickle under another name is not unpickled (that would run its code).
           ("model.bin", pickle.dumps(est), "a pickle is read only from a path ending in")]
    for name, content, match in bad:
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(CLIError, match=match) as info:
            load_model(str(path))
        assert str(path) in str(info.value)
    with pytest.raises(CLIError, match="model file not found: .*missing.fmlp"):
        load_model(str(tmp_path / "missing.fmlp"))
    # A fastmlp file is recognised by its magic bytes, whatever its name.
    fastmlp_file = tmp_path / "renamed.pkl"
    fastmlp_file.write_bytes((tmp_path / "a.fmlp").read_bytes())
    assert np.array_equal(load_model(str(fastmlp_file)).coefs_[0], est.coefs_[0])


def main_model(tmp_path):
    import fastmlp

    assert main(["train", "--epochs", "2", "--quiet", "--hidden", "4",
                 "-o", str(tmp_path / "base.fmlp")]) == 0
    return fastmlp.load(tmp_path / "base.fmlp")


def test_checkpoint_then_resume_matches_an_uninterrupted_run(tmp_path, monkeypatch, capsys):
    import fastmlp
    from fastmlp._base import BaseMLP

    args = ["train", "--epochs", "7", "--hidden", "16", "--seed", "4", "--threads", "1",
            "--quiet"]
    assert main(args + ["-o", str(tmp_path / "ref.fmlp")]) == 0

    class Crash(BaseException):
        pass

    real = BaseMLP._save_checkpoint
    saves = []

    def save_then_die(self, record):
        real(self, record)
        saves.append(1)
        if len(saves) == 3:
            raise Crash

    ckpt = str(tmp_path / "ckpt.fmlp")
    with monkeypatch.context() as m:
        m.setattr(BaseMLP, "_save_checkpoint", save_then_die)
        with pytest.raises(Crash):
            main(args + ["--checkpoint", ckpt, "-o", str(tmp_path / "never.fmlp")])
    assert not (tmp_path / "never.fmlp").exists()
    capsys.readouterr()
    assert main(["train", "--seed", "4", "--resume", ckpt, "-o", str(tmp_path / "out.fmlp")]) == 0
    out = capsys.readouterr().out
    assert f"resuming {ckpt} after epoch 3 of 7" in out and "Iteration 7" in out
    ref, got = fastmlp.load(tmp_path / "ref.fmlp"), fastmlp.load(tmp_path / "out.fmlp")
    assert all(np.array_equal(a, b) for a, b in zip(ref.coefs_, got.coefs_))
    assert ref.loss_curve_ == got.loss_curve_
    # The checkpoint now holds the finished fit: nothing left to resume.
    assert main(["train", "--resume", ckpt]) == 2
    assert "holds a finished fit" in capsys.readouterr().err


@pytest.mark.parametrize("arrays,extra,match", [
    ({"X": np.ones(5), "y": np.ones(5)}, [], "X must be a 2-D numeric array"),
    ({"X": np.array([["a", "b"]] * 5), "y": np.ones(5)}, [], "X must be a 2-D numeric array"),
    ({"X": np.ones((5, 2)), "y": np.ones(4)}, [], "y must have one row per sample of X"),
    ({"X": np.ones((6, 2)), "y": np.arange(6.0) / 7}, [], "cannot split the data"),
    ({"X": np.ones((20, 2)), "y": np.r_[np.ones(19), np.nan]}, ["--task", "regression"],
     "Input contains NaN"),
    ({"X": np.ones((20, 2)), "y": np.arange(20) % 2}, ["--hidden", "100000,100000"],
     "needs about"),
])
def test_wrong_arrays_fail_cleanly(tmp_path, capsys, arrays, extra, match):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    out_path = tmp_path / "never.fmlp"
    assert main(["train", "--data", str(path), "--quiet", "-o", str(out_path)] + extra) == 2
    err = capsys.readouterr().err
    assert match in err and str(path) in err
    assert not out_path.exists()


def test_bad_resume_file_fails_cleanly(tmp_path, capsys):
    path = tmp_path / "ckpt.fmlp"
    path.write_bytes(b"\x89FASTMLP\r\n\x1a\n garbage")
    assert main(["train", "--resume", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "truncated" in err
