"""Checkpoints: saved after every epoch; a crashed fit resumes bit-identically."""

import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import make_classification, make_regression

import fastmlp
from fastmlp import MLPClassifier, MLPRegressor
from fastmlp._base import BaseMLP
from fastmlp.solvers.first_order import EpochRunner

X, Y = make_classification(300, 10, n_informative=6, n_classes=3, random_state=0)
XR, YR = make_regression(300, 10, n_targets=2, random_state=0)
TRAINING_STATE = ("coefs_", "intercepts_", "loss_curve_", "n_iter_", "t_", "loss_",
                  "best_loss_", "validation_scores_", "best_validation_score_",
                  "_no_improvement_count", "_opt_state", "_opt_step", "_opt_lr",
                  "_opt_epochs", "_rng_streams", "_best_theta", "validation_loss_curve_")


class Crash(BaseException):
    """Stands for the process dying: nothing in fit handles it."""


def quiet(f, *a, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return f(*a, **kw)


def assert_same_training(a, b):
    for attr in TRAINING_STATE:
        va, vb = getattr(a, attr, None), getattr(b, attr, None)
        if isinstance(va, list) and va and (isinstance(va[0], np.ndarray) or sp.issparse(va[0])):
            assert len(va) == len(vb), attr
            for x, y in zip(va, vb):
                assert sp.issparse(x) == sp.issparse(y), attr
                if sp.issparse(x):  # a pruned layer: its pattern and values
                    x, y = (np.concatenate([m.data.view(np.uint8), m.indices.view(np.uint8),
                                            m.indptr.view(np.uint8)]) for m in (x, y))
                assert np.array_equal(x, y), attr
        elif isinstance(va, np.ndarray):
            assert va.dtype == vb.dtype and np.array_equal(va, vb), attr
        else:
            assert va == vb or (va != va and vb != vb), (attr, va, vb)


def crash_after(monkeypatch, n_saves):
    """Make the n-th checkpoint save the last thing the 'process' does."""
    real = BaseMLP._save_checkpoint
    count = {"n": 0}

    def save_then_die(self, record):
        real(self, record)
        count["n"] += 1
        if count["n"] == n_saves:
            raise Crash

    monkeypatch.setattr(BaseMLP, "_save_checkpoint", save_then_die)


CASES = {
    "adam": (MLPClassifier, dict(), X, Y, None),
    "sgd invscaling nesterov": (MLPClassifier, dict(solver="sgd", learning_rate="invscaling",
                                                    learning_rate_init=0.05), X, Y, None),
    "sgd adaptive": (MLPClassifier, dict(solver="sgd", learning_rate="adaptive", tol=10.0,
                                         n_iter_no_change=1), X, Y, None),
    "early stopping, string labels": (MLPClassifier, dict(early_stopping=True, tol=0.0),
                                      X, np.array(["a", "b", "c"])[Y], None),
    "sample weights": (MLPClassifier, dict(solver="rmsprop"), X, Y,
                       np.random.RandomState(0).rand(300)),
    "float32": (MLPClassifier, dict(solver="adadelta", learning_rate_init=1.0),
                X.astype(np.float32), Y, None),
    "sparse X": (MLPRegressor, dict(solver="adagrad"), sp.csr_matrix(XR * (XR > 0.5)), YR, None),
    "regressor, no shuffle": (MLPRegressor, dict(shuffle=False), XR, YR, None),
    "dropout, step schedule": (MLPClassifier, dict(dropout=0.3, learning_rate="step",
                                                   lr_step_size=2, lr_decay=0.5), X, Y, None),
    "cosine, class weights": (MLPClassifier, dict(learning_rate="cosine",
                                                  class_weight="balanced"), X, Y, None),
}


@pytest.mark.parametrize("case", list(CASES))
def test_resume_after_a_crash_is_bit_identical(tmp_path, monkeypatch, case):
    Est, kw, Xc, yc, sw = CASES[case]
    kw = dict(hidden_layer_sizes=(16, 8), max_iter=9, random_state=3, n_threads=1,
              batch_size=64, **kw)
    reference = quiet(Est(**kw).fit, Xc, yc, sample_weight=sw)
    path = tmp_path / "ckpt.fmlp"
    with monkeypatch.context() as m:
        crash_after(m, 4)
        with pytest.raises(Crash):
            quiet(Est(checkpoint=str(path), **kw).fit, Xc, yc, sample_weight=sw)
    resumed = fastmlp.load(path)
    assert resumed.n_iter_ == 4 and "_resume" in resumed.__dict__
    quiet(resumed.fit, Xc, yc, sample_weight=sw)
    assert_same_training(reference, resumed)
    assert resumed.n_iter_ == reference.n_iter_
    # The finished model is in the checkpoint too, with nothing left to resume.
    final = fastmlp.load(path)
    assert "_resume" not in final.__dict__
    assert_same_training(reference, final)
    assert os.listdir(tmp_path) == ["ckpt.fmlp"]


def test_a_checkpoint_of_an_index_array_resumes_bit_identically(tmp_path, monkeypatch):
    # Checkpoints written before fits ordered all rows by a keyed
    # permutation (a row count in the record) hold the shuffled index array,
    # int32 before fits kept narrow indices, and a checksum of int32 class
    # indices: they resume with that array, to the bits of an uninterrupted
    # fit that shuffled one.
    kw = dict(hidden_layer_sizes=(16, 8), max_iter=9, random_state=3, n_threads=1,
              batch_size=64)
    yc = Y + 1  # not their own indices: the fit encodes them (uint8)
    path = tmp_path / "ckpt.fmlp"
    real_rows = BaseMLP._stochastic_rows

    def rows_as_before(self, *a):
        train, val = real_rows(self, *a)
        assert train == len(yc)  # the row count: no index array
        return np.arange(train, dtype=np.int32), val

    with monkeypatch.context() as m:
        m.setattr(BaseMLP, "_stochastic_rows", rows_as_before)
        reference = quiet(MLPClassifier(**kw).fit, X, yc)
        crash_after(m, 4)
        with pytest.raises(Crash):
            quiet(MLPClassifier(checkpoint=str(path), **kw).fit, X, yc)
    resumed = fastmlp.load(path)
    assert resumed.__dict__["_resume"]["train_rows"].dtype == np.int32
    quiet(resumed.fit, X, yc)
    assert_same_training(reference, resumed)
    # Fits now record the row count instead (and order the rows otherwise).
    with monkeypatch.context() as m:
        crash_after(m, 4)
        with pytest.raises(Crash):
            quiet(MLPClassifier(checkpoint=str(path), **kw).fit, X, yc)
    assert fastmlp.load(path).__dict__["_resume"]["train_rows"] == len(yc)
    fresh = quiet(MLPClassifier(**kw).fit, X, yc)
    assert not np.array_equal(fresh.coefs_[0], reference.coefs_[0])


def test_the_fingerprint_checksums_class_indices_as_int32():
    import zlib

    from fastmlp._checkpoint import FINGERPRINT_CHUNK, FINGERPRINT_ROWS, fingerprint

    n = 2 * FINGERPRINT_CHUNK + 5  # several chunks, the last one short
    idx = (np.arange(n) % 7).astype(np.uint8)
    Xf = np.random.RandomState(0).rand(n, 2)
    # The checksum as checkpoints had it: int32 indices, then the sampled rows.
    rows = np.unique(np.linspace(0, n - 1, FINGERPRINT_ROWS).astype(np.int64))
    old = zlib.crc32(Xf[rows].view(np.uint8), zlib.crc32(idx.astype(np.int32).view(np.uint8)))
    for dtype in (np.uint8, np.uint16, np.int32, np.int64):
        assert fingerprint(Xf, idx.astype(dtype), None)["crc32"] == old


def test_a_checkpoint_is_saved_after_every_epoch(tmp_path, monkeypatch):
    epochs = []
    real = fastmlp._persist._save_state

    def spy(est, path, state):
        epochs.append((state["n_iter_"], "_resume" in state))
        real(est, path, state)

    monkeypatch.setattr(fastmlp._persist, "_save_state", spy)
    quiet(MLPClassifier((8,), max_iter=5, random_state=0, checkpoint=tmp_path / "c").fit, X, Y)
    assert epochs == [(1, True), (2, True), (3, True), (4, True), (5, False)]


def test_ctrl_c_inside_an_epoch_keeps_the_last_checkpoint_resumable(tmp_path, monkeypatch):
    kw = dict(hidden_layer_sizes=(16,), max_iter=8, random_state=1, n_threads=1)
    reference = quiet(MLPClassifier(**kw).fit, X, Y)
    real_run = EpochRunner.run
    calls = {"n": 0}

    def run(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 6:  # as the compiled epoch does on SIGINT
            raise KeyboardInterrupt
        return real_run(self, *a, **k)

    path = tmp_path / "c.fmlp"
    est = MLPClassifier(checkpoint=path, **kw)
    with monkeypatch.context() as m:
        m.setattr(EpochRunner, "run", run)
        with pytest.warns(UserWarning, match="interrupted"):
            est.fit(X, Y)
    assert est.n_iter_ == 5
    resumed = fastmlp.load(path)
    assert resumed.n_iter_ == 5
    quiet(resumed.fit, X, Y)
    assert_same_training(reference, resumed)


def test_resume_refuses_other_data(tmp_path, monkeypatch):
    path = tmp_path / "c.fmlp"
    with monkeypatch.context() as m:
        crash_after(m, 2)
        with pytest.raises(Crash):
            quiet(MLPClassifier((8,), max_iter=5, checkpoint=path).fit, X, Y)
    est = fastmlp.load(path)
    X2 = X.copy()
    X2[0, 0] += 1
    for Xb, yb in ((X2, Y), (X[:-1], Y[:-1]), (X, np.roll(Y, 1))):
        with pytest.raises(ValueError, match="checkpoint was written while fitting other data"):
            quiet(est.fit, Xb, yb)
    with pytest.raises(ValueError, match="other data"):
        quiet(est.fit, X, Y, sample_weight=np.ones(300))
    assert "_resume" in est.__dict__  # still resumable with the right data
    quiet(est.fit, X, Y)
    assert est.n_iter_ == 5


def test_checkpoint_with_lbfgs_is_refused(tmp_path):
    with pytest.raises(ValueError, match="checkpoint is supported by the first-order solvers"):
        MLPClassifier(solver="lbfgs", checkpoint=tmp_path / "c").fit(X, Y)
    assert not (tmp_path / "c").exists()


def test_partial_fit_saves_its_epoch(tmp_path):
    path = tmp_path / "c.fmlp"
    est = MLPClassifier((8,), random_state=0, checkpoint=path)
    est.partial_fit(X, Y, classes=[0, 1, 2])
    est.partial_fit(X, Y)
    loaded = fastmlp.load(path)
    assert "_resume" not in loaded.__dict__
    assert_same_training(est, loaded)


def test_checkpoint_parameter_is_a_path():
    with pytest.raises(ValueError, match="checkpoint"):
        MLPClassifier(checkpoint=3).fit(X, Y)


KILL_SCRIPT = textwrap.dedent("""
    import sys, warnings
    warnings.simplefilter("ignore")
    import numpy as np
    from sklearn.datasets import make_classification
    from fastmlp import MLPClassifier
    X, Y = make_classification(3000, 40, n_informative=10, n_classes=4, random_state=0)
    MLPClassifier((128, 64), max_iter=40, random_state=5, n_threads=1, batch_size=32,
                  checkpoint=sys.argv[1]).fit(X, Y)
""")


@pytest.mark.slow
def test_resume_after_kill_9(tmp_path, child_env):
    path = tmp_path / "c.fmlp"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(path)], env=child_env,
                            cwd=tmp_path)
    try:
        deadline = time.time() + 300
        epochs = 0
        while epochs < 3 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
            if path.exists():
                epochs = fastmlp.load(path).n_iter_
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    resumed = fastmlp.load(path)
    assert 3 <= resumed.n_iter_ < 40 and "_resume" in resumed.__dict__
    X3, Y3 = make_classification(3000, 40, n_informative=10, n_classes=4, random_state=0)
    quiet(resumed.fit, X3, Y3)
    reference = quiet(MLPClassifier((128, 64), max_iter=40, random_state=5, n_threads=1,
                                    batch_size=32).fit, X3, Y3)
    assert_same_training(reference, resumed)
    assert os.listdir(tmp_path) == ["c.fmlp"]


def test_retraining_a_pruned_model_resumes_bit_identically(tmp_path, monkeypatch):
    """A pruned model's retraining (warm start, pattern fixed) checkpoints and
    resumes like any fit: the sparse layers, their optimiser state and the
    generators come back from the file."""
    from fastmlp.pruning import prune_magnitude

    def pruned():
        est = quiet(MLPClassifier((16, 8), max_iter=4, random_state=3, n_threads=1,
                                  batch_size=64).fit, X, Y)
        return prune_magnitude(est, 0.7).set_params(warm_start=True, max_iter=7)

    reference = quiet(pruned().fit, X, Y)
    path = tmp_path / "ckpt.fmlp"
    with monkeypatch.context() as m:
        crash_after(m, 3)
        with pytest.raises(Crash):
            quiet(pruned().set_params(checkpoint=str(path)).fit, X, Y)
    resumed = fastmlp.load(path)
    assert sp.issparse(resumed.coefs_[0]) and "_resume" in resumed.__dict__
    quiet(resumed.fit, X, Y)
    assert_same_training(reference, resumed)
    for a, b in zip(reference.coefs_, resumed.coefs_):
        assert np.array_equal(a.indices, b.indices) and np.array_equal(a.indptr, b.indptr)
