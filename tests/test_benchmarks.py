"""The benchmarks stay runnable: CI runs none of the long benchmarks, but
checks the asv suite, runs each of its benchmarks once on tiny data, and runs
``benchmarks/compare.py --quick``."""

import functools
import itertools
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "benchmarks")
sys.path.insert(0, BENCH)

from benchmarks import common, fit, predict  # noqa: E402
import compare  # noqa: E402


def test_asv_check_finds_no_problem():
    import fastmlp

    # The fastmlp under test: installed (CI) or built in place.
    env = dict(os.environ, ASV_PYTHONPATH=os.path.dirname(os.path.dirname(fastmlp.__file__)))
    res = subprocess.run([sys.executable, "-m", "asv", "check", "--python=same"],
                         cwd=BENCH, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "No problems found" in res.stdout


def run_suite_class(cls, paths):
    """Call setup and every benchmark method of cls once per parameter set."""
    methods = [m for m in dir(cls) if m.split("_")[0] in ("time", "peakmem", "track")]
    assert methods
    results = {}
    for combo in itertools.product(*cls.params):
        bench = cls()
        bench.setup(paths, *combo)
        for m in methods:
            results[m, combo] = getattr(bench, m)(paths, *combo)
    return results


def test_every_asv_benchmark_runs_on_tiny_data(monkeypatch, tmp_path):
    monkeypatch.setattr(common, "make_data", functools.partial(common.make_data, size=0.02))
    monkeypatch.chdir(tmp_path)  # setup_cache writes its arrays to the cwd
    monkeypatch.setattr(fit, "ACCURACY_EPOCHS", {"W1": 1, "W2": 2, "W3": 2})
    paths = common.Suite().setup_cache()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = run_suite_class(fit.FitEpoch, paths)
        res.update(run_suite_class(fit.Fit, paths))
        res.update(run_suite_class(predict.Predict, paths))
    for (name, combo), value in res.items():
        if name.startswith("track_test_accuracy"):
            assert 0 <= value <= 1
        elif name.startswith("track_fit_memory"):
            workload, dtype = combo
            X = np.load(paths[workload][0])
            # Well under a copy of X plus the model; the exact bound is
            # compare.py's business (tiny data has different proportions).
            assert 0 < value < 10 * compare.memory_bound(workload, dtype, X.shape[1]) + X.nbytes
        else:
            assert value is None


def parse_table(out, title):
    """Rows (lists of cells) of the markdown table under the heading title."""
    lines = out[out.index(title):].splitlines()[2:]
    rows = []
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def run_compare(*args, env=None):
    res = subprocess.run([sys.executable, os.path.join(BENCH, "compare.py"), "--quick", *args],
                         cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_compare_quick_prints_every_table():
    out = run_compare("--workloads", "W2", "--dtypes", "float64")
    torch = compare.load_torch()
    (train,) = parse_table(out, "#### Training")
    assert train[:2] == ["W2", "float64"]
    fastmlp, sklearn, torch_s, floor = train[2:6]
    for cell in (fastmlp, sklearn, floor) + ((torch_s,) if torch else ()):
        float(cell.split()[0])  # a number (maybe with "ms")
    assert (torch_s == "—") == (torch is None)
    (latency,) = parse_table(out, "#### Predict")
    assert float(latency[0]) > 0 and float(latency[1]) > 0
    (memory,) = parse_table(out, "#### Peak memory")
    assert memory[:2] == ["W2", "float64"] and memory[3].endswith("MiB")
    targets = parse_table(out, "#### Targets")
    assert {r[0] for r in targets} >= {"W2 float64: scikit-learn / fastmlp",
                                         "predict, one sample, digits net"}
    assert all(r[3] in ("yes", "no", "—") for r in targets)


def test_compare_under_the_default_wait_policy_says_so():
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = run_compare("--workloads", "W3", "--dtypes", "float32", "--no-memory",
                      "--omp-default", env=env)
    assert "OMP_WAIT_POLICY=default (unset)" in out
    (train,) = parse_table(out, "#### Training")
    assert train[:2] == ["W3", "float32"] and float(train[2].split()[0]) > 0
    assert "OMP_WAIT_POLICY=PASSIVE" in run_compare("--workloads", "W3", "--dtypes", "float32",
                                                    "--no-memory", "--no-torch", env=env)


def test_compare_without_pytorch_says_so(tmp_path):
    # A torch package that fails to import stands for a missing one.
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text("raise ImportError('no torch here')\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    out = run_compare("--workloads", "W3", "--dtypes", "float32", "--no-memory", env=env)
    assert "PyTorch not installed" in out
    (train,) = parse_table(out, "#### Training")
    assert train[4] == "—" and train[7] == "—"


def test_small_gemm_quick_prints_its_table(capsys):
    import small_gemm

    from fastmlp import _kernels

    assert small_gemm.main(["--quick"]) == 0
    out = capsys.readouterr().out
    if _kernels.isa() == 0:
        assert "nothing to compare" in out
        return
    rows = [r for r in out.splitlines() if r.startswith("| W")]
    assert len(rows) == 2 * 2 * 3  # two shapes, two dtypes, three products
    for r in rows:
        cells = [c.strip() for c in r.strip("|").split("|")]
        assert cells[3] in ("nn", "tn", "nt") and all(float(c) > 0 for c in cells[4:])


def test_gemm_floor_does_the_epochs_products():
    # The floor's products, counted in flops, are those of forward and
    # backward passes over every row (the first layer's input delta excluded).
    units, B, n = [7, 5, 3], 4, 10
    floor = compare.GemmFloor(units, B, np.float64)
    calls = []
    real = np.matmul

    def counting(a, b, out=None):
        calls.append((a.shape, b.shape))
        return real(a, b, out=out)

    np.matmul, saved = counting, np.matmul
    try:
        floor.epoch(np.ones((n, 7)))
    finally:
        np.matmul = saved
    flops = sum(a[0] * a[1] * b[1] for a, b in calls)
    per_row = 2 * (7 * 5 + 5 * 3) + 5 * 3  # forward + dW, and delta of layer 1
    assert flops == n * per_row


def test_pytorch_loop_is_the_estimators_adam():
    # From the same weights, without shuffling, PyTorch's loop and fastmlp's
    # epoch take the same Adam steps (L2 as weight decay alpha/batch on the
    # weights): compare.py times the same work.
    torch = pytest.importorskip("torch")
    from fastmlp import MLPClassifier

    X, y = common.make_data("W3", size=0.06)[:2]
    X, y = X[:300], y[:300]
    # A negligible epsilon: PyTorch adds it after Adam's bias correction,
    # scikit-learn before, which changes the steps of near-zero gradients.
    params = dict(common.estimator_params("W3", 1), shuffle=False, warm_start=True,
                  epsilon=1e-30)
    est = MLPClassifier(**params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y)
        start = [c.copy() for c in est.coefs_], [b.copy() for b in est.intercepts_]
        est.fit(X, y)  # one more epoch, from `start`, with a fresh Adam
    net = compare.TorchMLP(torch, [40, 100, 100, 10], 100, np.float64, shuffle=False,
                           eps=1e-30)
    net.set_weights(*start)
    net.fit(X, y, 1)
    for W, W0, lin in zip(est.coefs_, start[0], net.linear_layers()):
        step, torch_step = W - W0, lin.weight.detach().numpy().T - W0
        diff = np.abs(torch_step - step) / np.abs(step).max()
        # Adam's early steps are close to +-lr whatever the gradient's size,
        # so a rounding difference near a zero gradient moves a few entries.
        assert np.median(diff) <= 1e-5
        assert np.quantile(diff, 0.99) <= 1e-3


def test_gemm_libraries_times_the_same_products(capsys):
    # The script checks that numpy's, scipy's (as src/_blas.pxd calls it) and
    # PyTorch's products agree before timing them: a wrong transpose flag in
    # the scipy calls fails here.
    import gemm_libraries

    assert gemm_libraries.main(["--workloads", "W2,W3", "--repeats", "1"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines()
            if line.startswith("| W")]
    assert [r.split("|")[1:3] for r in rows] == [
        [" W2 ", " float32 "], [" W2 ", " float64 "], [" W3 ", " float32 "],
        [" W3 ", " float64 "]]


def test_profile_fit_times_each_epoch(capsys):
    import profile_fit

    assert profile_fit.main(["W2", "float32", "--epochs", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("W2 float32: epochs ") and out.count(",") == 1
    assert "rest of the fit" in out


def test_profile_fit_overhead_and_cprofile(capsys):
    import profile_fit

    assert profile_fit.main(["W2", "float32", "--overhead", "--epochs", "2"]) == 0
    rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith("| W2 ")]
    assert [r.split("|")[3].strip() for r in rows] == ["fastmlp", "scikit-learn"]
    for r in rows:
        cells = r.split("|")[4:8]
        assert all(c.strip().endswith("ms") for c in cells)
    assert profile_fit.main(["W2", "float32", "--cprofile", "--fits", "2"]) == 0
    assert "function calls" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        profile_fit.main(["W2", "float32", "--overhead", "--epochs", "1"])


def test_profile_fit_runs_the_compiled_epoch_alone(capsys):
    import profile_fit

    from fastmlp import _epoch

    run = _epoch.run_epoch
    assert profile_fit.main(["W2", "float64", "--epoch-only", "--epochs", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("W2 float64: ") and out.rstrip().endswith("ms per compiled epoch")
    assert float(out.split()[2]) > 0
    assert _epoch.run_epoch is run  # the fit's hook is taken out again
    assert profile_fit.main(["W2", "float32", "--call-cost", "--epochs", "3"]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith("ms per call on one row") and float(out.split()[2]) > 0


def test_fit_memory_lists_allocation_sites(child_env, tmp_path):
    # In a fresh process, as fit_memory.main runs it: threads left by earlier
    # tests (a Dask cluster's) free memory between the snapshot and the total.
    import json

    res = subprocess.run([sys.executable, os.path.join(BENCH, "fit_memory.py"), "--child",
                          json.dumps(["W2", "float32", 1])],
                         capture_output=True, text=True, env=child_env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    r = json.loads(res.stdout.strip().splitlines()[-1])
    assert r["peak"] >= r["before_epoch"] > 0 and r["epoch_transient"] >= 0
    sites = dict((s, n) for s, n, _ in r["sites"])
    assert any("_opt_state" in s for s in sites)
    assert sum(sites.values()) <= r["before_epoch"]


def test_thread_split_times_whole_fits(capsys):
    import thread_split

    thread_split.main(["--fits", "1", "--workloads", "W2"])
    rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith("| W2 ")]
    assert [r.split("|")[2].strip() for r in rows] == ["float32", "float64"]
    for r in rows:
        one, two, ratio = (float(c) for c in r.split("|")[4:7])
        # each figure is printed to 0.01 (ms, and the ratio of the unrounded ones)
        slack = 0.005 + one / two * (0.005 / one + 0.005 / two)
        assert one > 0 and two > 0 and ratio == pytest.approx(one / two, abs=slack)


def test_thread_split_fits_with_dropout_beside_a_busy_core(capsys):
    import thread_split

    thread_split.main(["--fits", "1", "--workloads", "W2", "--dropout", "0.2", "--busy"])
    rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith("| W2 ")]
    assert len(rows) == 2 and all(float(r.split("|")[4]) > 0 for r in rows)
    with pytest.raises(SystemExit):
        thread_split.main(["--busy"])


def test_thread_split_pairs_an_index_array_with_the_row_count(capsys):
    import thread_split

    thread_split.main(["--pair-rows", "--epochs", "3", "--workloads", "W2"])
    rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith("| W2 ")]
    assert [(r.split("|")[2].strip(), r.split("|")[3].strip()) for r in rows] == [
        ("float32", "1"), ("float32", "2"), ("float64", "1"), ("float64", "2")]
    for r in rows:
        median_ratio = float(r.split("|")[6].split()[0])
        assert 0.2 < median_ratio < 5
