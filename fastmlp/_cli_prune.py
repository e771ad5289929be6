"""``fastmlp prune``: prune a saved model, retrain it, report the change."""

import os
import time
import warnings

import numpy as np

from .cli import CLIError, load_data, save_model


def load_model(path):
    """A fitted fastmlp estimator from a model file (fastmlp format or pickle)."""
    from .cli import load_model as read_model

    est = read_model(path)
    if not hasattr(est, "coefs_"):
        raise CLIError(f"{path} holds an unfitted {type(est).__name__}: fit it first")
    return est


def model_bytes(est, like):
    """Size of est's file in the format of the path ``like``."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model" + os.path.splitext(like)[1])
        save_model(est, path)
        return os.path.getsize(path)


def parse_schedule(text, sparsity):
    """--schedule: a number of steps, or explicit comma-separated sparsities."""
    from .pruning import sparsity_schedule

    text = text.strip()
    try:
        if "," not in text and "." not in text:
            return sparsity_schedule(sparsity, int(text))
        values = [float(v) for v in text.split(",")]
    except ValueError as exc:
        raise CLIError(f"--schedule takes a number of steps or sparsities like "
                       f"0.5,0.8,0.9: {exc}") from None
    if abs(values[-1] - sparsity) > 1e-12:
        raise CLIError(f"--schedule must end at --sparsity {sparsity}, got {text}")
    return values


def best_time(fn, min_total=0.2, max_reps=2000):
    """Fastest of repeated calls (seconds): the least disturbed run."""
    best = np.inf
    total = 0.0
    reps = 0
    while (total < min_total or reps < 3) and reps < max_reps:
        start = time.perf_counter()
        fn()
        t = time.perf_counter() - start
        best = min(best, t)
        total += t
        reps += 1
    return best


def human_bytes(n):
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def human_seconds(t):
    return f"{t * 1e6:.0f} us" if t < 1e-3 else f"{t * 1e3:.2f} ms"


def split_data(args, est):
    """(Xtr, Xte, ytr, yte, source) from --data (default: the built-in digits),
    split as ``fastmlp train`` splits it (--test-size, --seed)."""
    from sklearn.base import is_classifier
    from sklearn.model_selection import train_test_split

    if args.data is None:
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        X = X / 16.0
        source = "digits (built in)"
    else:
        X, y = load_data(args.data)
        source = args.data
    X = np.asarray(X, dtype=est._theta.dtype)
    if X.ndim != 2 or X.shape[1] != est.n_features_in_:
        raise CLIError(f"the model takes {est.n_features_in_} features; {source} has "
                       f"{X.shape[1] if X.ndim == 2 else X.shape}")
    classify = is_classifier(est)
    try:
        Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=args.test_size,
                                              random_state=args.seed,
                                              stratify=y if classify else None)
    except ValueError as exc:
        raise CLIError(f"cannot split the data: {exc}") from None
    return Xtr, Xte, ytr, yte, source


def cmd_prune(args):
    from sklearn.base import is_classifier

    from .pruning import kernel_choice, prune_retrain, prune_units

    if not 0 <= args.sparsity < 1:
        raise CLIError(f"--sparsity must be in [0, 1), got {args.sparsity}")
    if not 0 <= args.units < 1:
        raise CLIError(f"--units must be in [0, 1), got {args.units}")
    if args.retrain_epochs < 0:
        raise CLIError(f"--retrain-epochs must be >= 0, got {args.retrain_epochs}")
    schedule = parse_schedule(args.schedule, args.sparsity)
    est = load_model(args.model)
    if args.threads is not None:
        est.set_params(n_threads=args.threads)
    Xtr, Xte, ytr, yte, source = split_data(args, est)
    classify = is_classifier(est)
    score_name = "test accuracy" if classify else "test R^2"
    units = "-".join(str(int(u)) for u in est._layout.units)
    print(f"model: {args.model} ({type(est).__name__}, layers {units}, "
          f"{est._theta.dtype.name}, solver {est.solver})")
    print(f"data: {source}, {Xtr.shape[0]} training and {Xte.shape[0]} test samples")

    before = measure(est, Xte, yte)
    before["size"] = os.path.getsize(args.model)

    if args.units:
        prune_units(est, args.units)
        print(f"structured: kept hidden layers {est.hidden_layer_sizes}")
    print(f"pruning: {len(schedule)} step(s) to sparsity {args.sparsity} ({args.scope}"
          f"{', output layer dense' if args.keep_output_dense else ''}), "
          f"{args.retrain_epochs} retraining epochs each")

    def report(step, target, model):
        print(f"  step {step}: sparsity {float(target):.3f}, {score_name} "
              f"{model.score(Xte, yte):.4f}")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        prune_retrain(est, Xtr, ytr, args.sparsity, schedule=schedule,
                      retrain_epochs=args.retrain_epochs, scope=args.scope,
                      keep_output_dense=args.keep_output_dense,
                      learning_rate_init=args.retrain_lr, callback=report)

    print_layers(est, kernel_choice(est))
    after = measure(est, Xte, yte)
    if args.output:
        save_model(est, args.output)
        after["size"] = os.path.getsize(args.output)
    else:
        after["size"] = model_bytes(est, args.model)
    n = Xte.shape[0]
    rows = [
        (score_name, f"{before['score']:.4f}", f"{after['score']:.4f}", ""),
        ("file size", human_bytes(before["size"]), human_bytes(after["size"]),
         f"{before['size'] / after['size']:.1f}x smaller"),
        (f"predict {n} rows", human_seconds(before["batch"]), human_seconds(after["batch"]),
         f"{before['batch'] / after['batch']:.2f}x faster"),
        ("predict 1 row", human_seconds(before["one"]), human_seconds(after["one"]),
         f"{before['one'] / after['one']:.2f}x faster"),
    ]
    print(f"{'':<20}{'before':>12}{'after':>12}")
    for name, b, a, note in rows:
        print(f"{name:<20}{b:>12}{a:>12}  {note}")
    if args.output:
        print(f"saved: {args.output}")
    return 0


def measure(est, X, y):
    """Test score and predict times (whole test set; one row), with BLAS
    held to the model's thread count as the sparse kernels are."""
    from ._threads import blas_threads, effective_n_threads

    est.predict(X[:1])  # warm up
    with blas_threads(effective_n_threads(est.n_threads)):
        return {
            "score": est.score(X, y),
            "batch": best_time(lambda: est.predict(X)),
            "one": best_time(lambda: est.predict(X[:1])),
        }


def print_layers(est, kernels):
    layout = est._layout
    print(f"{'layer':<7}{'shape':<12}{'weights kept':>20}{'sparsity':>10}  kernel")
    kept_total = size_total = 0
    for l in range(layout.n_layers):
        n_in, n_out = layout.shape(l)
        kept = int(layout.w_size[l])
        kept_total += kept
        size_total += n_in * n_out
        print(f"{l:<7}{f'{n_in}x{n_out}':<12}{f'{kept}/{n_in * n_out}':>20}"
              f"{est.sparsity_[l]:>10.3f}  {kernels[l]}")
    print(f"{'all':<19}{f'{kept_total}/{size_total}':>20}"
          f"{1 - kept_total / size_total:>10.3f}")
