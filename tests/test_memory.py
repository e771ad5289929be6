"""The memory guard: a fit or a load that cannot fit in memory fails at once."""

import time
import tracemalloc
import warnings

import numpy as np
import pytest
from sklearn.datasets import make_classification

import fastmlp
from fastmlp import MLPClassifier, MLPRegressor, _memory
from fastmlp.solvers.objective import CHUNK_ROWS

X, Y = make_classification(200, 64, n_informative=10, random_state=0)


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_a_network_too_large_for_the_machine_fails_at_once(solver):
    est = MLPClassifier(hidden_layer_sizes=(100000, 100000), solver=solver)
    start = time.perf_counter()
    with pytest.raises(MemoryError, match=r"needs about [\d,]+ bytes \([\d.]+ [GT]iB\) but only "
                                          r"[\d,]+ bytes"):
        est.fit(X, Y)
    assert time.perf_counter() - start < 1.0
    assert not hasattr(est, "coefs_")


def test_the_message_names_the_network(monkeypatch):
    monkeypatch.setattr(_memory, "available_bytes", lambda: 1000)
    with pytest.raises(MemoryError, match=r"layer sizes \[64, 10, 1\] needs about"):
        MLPRegressor(hidden_layer_sizes=(10,)).fit(X, Y)


def test_unknown_available_memory_does_not_block(monkeypatch):
    monkeypatch.setattr(_memory, "available_bytes", lambda: None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        MLPRegressor(hidden_layer_sizes=(10,), max_iter=2).fit(X, Y)


def test_available_bytes_is_plausible():
    avail = _memory.available_bytes()
    assert avail is None or 0 < avail < 1 << 50


@pytest.mark.parametrize("solver,early_stopping", [("adam", False), ("sgd", True),
                                                   ("lbfgs", False), ("hf", False)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_the_estimate_covers_what_a_fit_allocates(solver, early_stopping, dtype, n_threads):
    """Within a factor of 3 above the traced peak: safe, and not absurdly cautious
    (full-batch passes on two threads: a workspace and gradient per thread)."""
    Xd = np.random.RandomState(0).rand(1000, 100).astype(dtype)
    y = (Xd[:, 0] > 0.5).astype(int)
    units = [100, 400, 300, 1]
    est = MLPClassifier(hidden_layer_sizes=units[1:-1], solver=solver, max_iter=2,
                        early_stopping=early_stopping, random_state=0, n_threads=n_threads)
    tracemalloc.start()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(Xd, y)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    estimate = _memory.fit_bytes(units, np.dtype(dtype).itemsize, len(Xd), 200, solver,
                                 early_stopping, CHUNK_ROWS, n_threads)
    assert peak <= estimate <= 3 * peak, (peak, estimate)


def test_load_checks_memory_before_reading(tmp_path, monkeypatch):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = MLPClassifier((50,), max_iter=2).fit(X, Y)
    fastmlp.save(est, tmp_path / "m")
    monkeypatch.setattr(_memory, "available_bytes", lambda: 4096)
    with pytest.raises(MemoryError, match=r"loading .*m needs about [\d,]+ bytes"):
        fastmlp.load(tmp_path / "m")


def test_format_bytes():
    assert _memory.format_bytes(512) == "512 bytes"
    assert _memory.format_bytes(3 * 2**30) == "3.0 GiB"


# The fit measured in a fresh process: threads left running by earlier tests
# (a Dask cluster's) would allocate into the trace meanwhile.
PER_SAMPLE_FIT = """
import sys, tracemalloc, warnings
import numpy as np
from fastmlp import MLPClassifier
dtype, shift, n = np.dtype(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
units, batch = [20, 16, 3], 50
Xd = np.random.RandomState(0).rand(n, units[0]).astype(dtype)
y = (Xd[:, 0] * 3).astype(np.int64) + shift
kw = dict(hidden_layer_sizes=units[1:-1], batch_size=batch, max_iter=1, random_state=0)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    MLPClassifier(**kw).fit(Xd[:100], y[:100])  # one-time costs of the first fit
    tracemalloc.start()
    MLPClassifier(**kw).fit(Xd, y)
    print(tracemalloc.get_traced_memory()[1])
"""


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shift,per_sample", [(0, 0), (1, 1)])
def test_a_first_order_fit_holds_no_per_sample_copies(dtype, shift, per_sample, child_env,
                                                       tmp_path):
    """Beyond the terms of compare.py's bound (the gathered input batch, two
    batches of layer outputs, parameters x (2 + Adam's 2 moments)), a fit
    keeps nothing per sample when the labels are 0..k-1 (read in place; the
    epochs order the rows by a keyed permutation, no index array), 1 byte
    when they are not (their class indices), and a few KiB of bookkeeping:
    no copy of X, of y, of a row index or of an indicator matrix: the peak
    grows by per_sample bytes a sample from 20,000 to 60,000 samples. (The
    labels' encoding holds a chunk of 8 bytes a label, _LABEL_CHUNK, before
    the fit's buffers exist: for this small network, the peak.)"""
    import subprocess
    import sys

    from fastmlp._classifier import _LABEL_CHUNK

    peaks = {}
    for n in (20000, 60000):
        run = subprocess.run([sys.executable, "-c", PER_SAMPLE_FIT, np.dtype(dtype).name,
                              str(shift), str(n)],
                             capture_output=True, text=True, env=child_env, cwd=tmp_path)
        assert run.returncode == 0, run.stderr
        peaks[n] = int(run.stdout.strip().splitlines()[-1])
    assert peaks[60000] - peaks[20000] <= per_sample * 40000 + 2048, peaks
    units, batch = [20, 16, 3], 50
    n, peak = 60000, peaks[60000]
    n_params = sum(a * b + b for a, b in zip(units[:-1], units[1:]))
    itemsize = np.dtype(dtype).itemsize
    bound = itemsize * (batch * units[0] + 2 * batch * sum(units[1:]) + 4 * n_params)
    assert peak <= bound + per_sample * n + 8 * _LABEL_CHUNK + 32 * 1024, (peak, bound)
