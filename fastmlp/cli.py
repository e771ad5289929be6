"""The ``fastmlp`` command.

``fastmlp train`` trains a network on the built-in digits data (or on
``--data FILE``), shows per-epoch progress and reports test accuracy (R² for
``--task regression``) and fit time. ``fastmlp prune`` prunes a saved model
and retrains it, reporting what that changed; ``fastmlp compress`` writes
it as a compact ``.fmz`` file (weight sharing and entropy coding).

Model files: every command reads models with :func:`load_model` and writes
them with :func:`save_model`; paths ending in ``.pkl``/``.joblib`` are
pickles, anything else the fastmlp format (``fastmlp.save``).
"""

import argparse
import os
import pickle
import sys
import time

import numpy as np

PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib")


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


def load_data(path):
    """(X, y) from an .npz with arrays X and y, or a .csv whose last column is y."""
    if not os.path.exists(path):
        raise CLIError(f"data file not found: {path}")
    if path.endswith(".npz"):
        try:
            with np.load(path, allow_pickle=False) as f:
                missing = {"X", "y"} - set(f.files)
                if missing:
                    raise CLIError(
                        f"{path} must hold arrays 'X' and 'y'; it has {sorted(f.files)}"
                    )
                X, y = f["X"], f["y"]
        except (OSError, ValueError) as exc:
            raise CLIError(f"cannot read {path}: {exc}") from None
        if X.ndim != 2 or X.dtype.kind not in "biuf":
            raise CLIError(f"{path}: X must be a 2-D numeric array, it is a {X.ndim}-D "
                           f"{X.dtype} array of shape {X.shape}")
        if y.ndim not in (1, 2) or y.shape[0] != X.shape[0]:
            raise CLIError(f"{path}: y must have one row per sample of X ({X.shape[0]}); it "
                           f"has shape {y.shape}")
        return X, y
    if path.endswith(".csv"):
        try:
            with open(path) as f:
                first = f.readline()
            try:
                [float(v) for v in first.strip().split(",")]
                skip = 0
            except ValueError:
                skip = 1  # a header row
            data = np.loadtxt(path, delimiter=",", skiprows=skip, ndmin=2)
        except (OSError, ValueError) as exc:
            raise CLIError(f"cannot read {path}: {exc}") from None
        if data.shape[1] < 2:
            raise CLIError(f"{path} needs at least one feature column and a target column")
        return data[:, :-1], data[:, -1]
    raise CLIError(f"unsupported data file {path}: use .npz (arrays X, y) or .csv")


def save_model(est, path):
    """Save atomically: a pickle for .pkl/.pickle/.joblib, else fastmlp.save's format."""
    from . import save
    from ._container import atomic_write

    if str(path).endswith(PICKLE_SUFFIXES):
        atomic_write(path, lambda f: pickle.dump(est, f, protocol=pickle.HIGHEST_PROTOCOL))
    else:
        save(est, path)


def load_model(path):
    """A model from a fastmlp model file, or from a pickle (.pkl/.pickle/.joblib).

    A file starting with fastmlp's magic bytes is read with ``fastmlp.load``
    whatever its name. Other files are unpickled only if their name says they
    are pickles: loading a pickle runs code chosen by whoever wrote it, so
    only load your own. fastmlp model files run none.
    """
    from . import MLPClassifier, MLPRegressor, ModelFileError, load
    from ._container import MAGIC

    if not os.path.exists(path):
        raise CLIError(f"model file not found: {path}")
    try:
        with open(path, "rb") as f:
            fastmlp_file = f.read(len(MAGIC)) == MAGIC
    except OSError as exc:
        raise CLIError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not fastmlp_file and str(path).endswith(PICKLE_SUFFIXES):
        import joblib

        try:
            est = joblib.load(path)
        except Exception as exc:  # an unpickler can fail in any way
            raise CLIError(f"cannot read {path}: {type(exc).__name__}: {exc}") from None
    else:
        try:
            est = load(path)
        except ModelFileError as exc:
            hint = ("" if fastmlp_file else
                    " (a pickle is read only from a path ending in .pkl, .pickle or "
                    ".joblib: loading one runs code, so only load your own)")
            raise CLIError(f"{exc}{hint}") from None
    if not isinstance(est, (MLPClassifier, MLPRegressor)):
        raise CLIError(f"{path} holds a {type(est).__name__}, not a fastmlp estimator")
    return est


def add_data_arguments(parser):
    """The data and split options shared by the commands that score a saved model."""
    parser.add_argument("--data", metavar="FILE",
                        help="as for fastmlp train (default: scikit-learn's digits, scaled)")
    parser.add_argument("--test-size", type=float, default=0.25,
                        help="fraction held out for the test score (default 0.25)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/test split")
    parser.add_argument("--threads", type=int, default=None, help="n_threads")


def add_prune_parser(sub):
    prune = sub.add_parser(
        "prune",
        help="prune a saved model, retrain it, and report size, speed and score",
        description="Prune the smallest weights of a saved model (fastmlp train -o), "
        "retrain the survivors, and print per-layer sparsity, test score, file size and "
        "predict speed before and after. The data is split as fastmlp train splits it "
        "(same --test-size and --seed): retraining uses the training part, scores the "
        "test part.",
    )
    prune.add_argument("model", metavar="MODEL",
                       help="a fitted model saved by fastmlp train -o (fastmlp's format, or "
                       "a pickle ending in .pkl/.joblib)")
    prune.add_argument("--sparsity", type=float, default=0.9,
                       help="fraction of weights removed, in [0, 1) (default 0.9)")
    prune.add_argument("--schedule", default="1", metavar="STEPS|S1,S2,...",
                       help="prune-retrain rounds: a number of steps (each removes the same "
                       "fraction of the remaining weights) or explicit increasing "
                       "sparsities ending at --sparsity (default 1: one shot)")
    prune.add_argument("--retrain-epochs", type=int, default=10, metavar="N",
                       help="epochs of retraining after each pruning step (default 10; 0: none)")
    prune.add_argument("--retrain-lr", type=float, default=None, metavar="LR",
                       help="learning rate for retraining (default: the model's)")
    prune.add_argument("--scope", choices=["layer", "global"], default="layer",
                       help="'layer': every layer to --sparsity; 'global': one magnitude "
                       "threshold across layers (default layer)")
    prune.add_argument("--keep-output-dense", action="store_true",
                       help="do not prune the output layer")
    prune.add_argument("--units", type=float, default=0.0, metavar="FRACTION",
                       help="first remove this fraction of each hidden layer's units "
                       "(structured pruning; default 0)")
    add_data_arguments(prune)
    prune.add_argument("-o", "--output", metavar="OUT",
                       help="save the pruned estimator here: fastmlp's model format "
                       "(fastmlp.load), or a pickle if OUT ends in .pkl or .joblib")


def parse_sizes(text):
    if text.strip() in ("", "none"):
        return ()
    try:
        sizes = tuple(int(s) for s in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 100 or 128,64; got {text!r}")
    return sizes


HIDDEN_ACTIVATIONS = ("identity", "logistic", "tanh", "relu", "leaky_relu")


def parse_activation(text):
    """'relu', or one activation per hidden layer: 'relu,tanh'."""
    names = [t.strip() for t in text.split(",")]
    bad = [n for n in names if n not in HIDDEN_ACTIVATIONS]
    if bad:
        raise argparse.ArgumentTypeError(
            f"unknown activation {bad[0]!r}; choose from {', '.join(HIDDEN_ACTIVATIONS)}, "
            "or give one per hidden layer, comma-separated")
    return names[0] if len(names) == 1 else tuple(names)


def parse_rates(text):
    """0.2, or one dropout rate per hidden layer: 0.2,0.5."""
    try:
        rates = [float(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a rate like 0.2 or 0.2,0.5; got {text!r}")
    return rates[0] if len(rates) == 1 else tuple(rates)


def save_plot(est, path):
    """Save the training curves (fastmlp.plot.loss_curve) to an image file."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise CLIError("--plot needs matplotlib: pip install 'fastmlp[plot]' "
                       "(or pip install matplotlib)") from None
    from . import plot

    fig = Figure(figsize=(6.4, 4.2))
    plot.loss_curve(est, ax=fig.subplots())
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=100)
    except (OSError, ValueError) as exc:
        raise CLIError(f"cannot save the plot to {path}: {exc}") from None


def build_parser():
    parser = argparse.ArgumentParser(prog="fastmlp", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser(
        "train",
        help="train a network and report its test score",
        description="Train an MLP. With no arguments: the built-in digits data "
        "(64 features, 10 classes), one hidden layer of 100 relu units, Adam.",
    )
    train.add_argument("--data", metavar="FILE",
                       help="an .npz with arrays X and y, or a .csv whose last column is "
                       "the target (default: scikit-learn's digits, scaled to [0, 1])")
    train.add_argument("--task", choices=["classification", "regression"],
                       default="classification")
    train.add_argument("--hidden", type=parse_sizes, default=(100,), metavar="SIZES",
                       help="hidden layer sizes, comma-separated (default: 100)")
    train.add_argument("--activation", default="relu", type=parse_activation,
                       metavar="NAME[,NAME...]",
                       help="hidden activation: identity, logistic, tanh, relu or "
                       "leaky_relu; or one per hidden layer, e.g. relu,tanh (default relu)")
    train.add_argument("--solver", default="adam",
                       choices=["adam", "sgd", "lbfgs", "bfgs", "hf", "adagrad", "adadelta",
                                "rmsprop"])
    train.add_argument("--epochs", type=int, default=200,
                       help="max_iter: epochs (iterations for lbfgs, bfgs, hf); default 200")
    train.add_argument("--batch-size", type=int, default=None,
                       help="minibatch size (default: min(200, n_samples))")
    train.add_argument("--lr", type=float, default=0.001, help="learning_rate_init")
    train.add_argument("--alpha", type=float, default=1e-4, help="L2 penalty")
    train.add_argument("--early-stopping", action="store_true")
    train.add_argument("--dropout", type=parse_rates, default=0.0, metavar="RATE[,RATE...]",
                       help="dropout rate of the hidden layers, or one per hidden layer "
                       "(default 0: none)")
    train.add_argument("--float32", action="store_true", help="train in float32")
    train.add_argument("--test-size", type=float, default=0.25,
                       help="fraction held out for the test score (default 0.25)")
    train.add_argument("--seed", type=int, default=0, help="random_state")
    train.add_argument("--threads", type=int, default=None, help="n_threads")
    train.add_argument("--quiet", action="store_true", help="no per-epoch progress")
    train.add_argument("--plot", metavar="FILE.png",
                       help="save the training curves (loss; with --early-stopping also "
                       "validation loss and score) to this image; needs matplotlib")
    train.add_argument("-o", "--output", metavar="PATH",
                       help="save the fitted estimator here: fastmlp's model format "
                       "(fastmlp.load), or a pickle if PATH ends in .pkl or .joblib")
    train.add_argument("--checkpoint", metavar="PATH",
                       help="save a resumable checkpoint here after every epoch "
                       "(first-order solvers)")
    train.add_argument("--resume", metavar="PATH",
                       help="continue the interrupted fit saved in this checkpoint; the "
                       "model and its settings come from it, pass the same --data, "
                       "--seed and --test-size as the original run")
    add_prune_parser(sub)
    from ._cli_compress import add_compress_parser

    add_compress_parser(sub)
    return parser


def cmd_train(args):
    from sklearn.model_selection import train_test_split

    from . import MLPClassifier, MLPRegressor

    if args.data is None:
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        X = X / 16.0
        source = "digits (built in)"
    else:
        X, y = load_data(args.data)
        source = args.data
    if args.float32:
        X = np.asarray(X, dtype=np.float32)
    callbacks = None
    if args.plot:
        from .callbacks import History

        callbacks = [History()]  # records the validation loss curve
    if args.resume is not None:
        est = load_model(args.resume)
        if "_resume" not in est.__dict__:
            raise CLIError(f"{args.resume} holds a finished fit, not an interrupted one: "
                           "there is nothing to resume")
        est.set_params(verbose=not args.quiet, callbacks=callbacks)
        if args.checkpoint is not None:
            est.set_params(checkpoint=args.checkpoint)
        if args.threads is not None:
            est.set_params(n_threads=args.threads)
        classify = isinstance(est, MLPClassifier)
        print(f"resuming {args.resume} after epoch {est.n_iter_} of {est.max_iter}")
    else:
        classify = args.task == "classification"
        Est = MLPClassifier if classify else MLPRegressor
        est = Est(
            hidden_layer_sizes=args.hidden, activation=args.activation, solver=args.solver,
            dropout=args.dropout, callbacks=callbacks, max_iter=args.epochs,
            batch_size="auto" if args.batch_size is None else args.batch_size,
            learning_rate_init=args.lr, alpha=args.alpha, early_stopping=args.early_stopping,
            random_state=args.seed, n_threads=args.threads, verbose=not args.quiet,
            checkpoint=args.checkpoint,
        )
    stratify = y if classify else None
    try:
        Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=args.test_size,
                                              random_state=args.seed, stratify=stratify)
    except ValueError as exc:
        raise CLIError(f"{source}: cannot split the data: {exc}") from None
    hidden = list(est.hidden_layer_sizes) if np.iterable(est.hidden_layer_sizes) else [
        est.hidden_layer_sizes]
    print(f"data: {source}, {Xtr.shape[0]} training and {Xte.shape[0]} test samples, "
          f"{X.shape[1]} features; network {[X.shape[1], *hidden]} -> output; "
          f"solver {est.solver}")
    start = time.perf_counter()
    try:
        est.fit(Xtr, ytr)
        seconds = time.perf_counter() - start
        score = est.score(Xte, yte)
    except (ValueError, TypeError, MemoryError) as exc:  # the estimators' input errors
        raise CLIError(f"{source}: {exc}") from None
    name = "test accuracy" if classify else "test R^2"
    print(f"{name}: {score:.4f}")
    print(f"fit time: {seconds:.3f} s ({est.n_iter_} epochs, "
          f"{1e3 * seconds / max(est.n_iter_, 1):.2f} ms per epoch)")
    if args.plot:
        save_plot(est, args.plot)
        print(f"saved plot: {args.plot}")
    if args.output:
        save_model(est, args.output)
        print(f"saved: {args.output}")
    return 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            return cmd_train(args)
        if args.command == "prune":
            from ._cli_prune import cmd_prune

            return cmd_prune(args)
        if args.command == "compress":
            from ._cli_compress import cmd_compress

            return cmd_compress(args)
    except CLIError as exc:
        print(f"fastmlp: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, MemoryError) as exc:  # the estimators' own input errors
        print(f"fastmlp: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    # `python -m fastmlp.cli` runs this file as __main__; the subcommands
    # raise fastmlp.cli.CLIError, which only the package's own main catches.
    from fastmlp.cli import main as package_main

    sys.exit(package_main())
