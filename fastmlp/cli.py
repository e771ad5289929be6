"""The ``fastmlp`` command.

``fastmlp train`` trains a network on the built-in digits data (or on
``--data FILE``), shows per-epoch progress and reports test accuracy (R² for
``--task regression``) and fit time. ``fastmlp prune`` prunes a saved model
and retrains it, reporting what that changed.
"""

import argparse
import pickle
import sys
import time

import numpy as np


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


def load_data(path):
    """(X, y) from an .npz with arrays X and y, or a .csv whose last column is y."""
    import os

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
                return f["X"], f["y"]
        except (OSError, ValueError) as exc:
            raise CLIError(f"cannot read {path}: {exc}") from None
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
    """Pickle the fitted estimator (loadable with pickle.load or joblib.load)."""
    import os
    import tempfile

    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".fastmlp-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            pickle.dump(est, f, protocol=pickle.HIGHEST_PROTOCOL)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


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
    prune.add_argument("model", metavar="MODEL", help="a pickled fastmlp estimator")
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
    prune.add_argument("--data", metavar="FILE",
                       help="as for fastmlp train (default: scikit-learn's digits, scaled)")
    prune.add_argument("--test-size", type=float, default=0.25,
                       help="fraction held out for the test score (default 0.25)")
    prune.add_argument("--seed", type=int, default=0, help="seed of the train/test split")
    prune.add_argument("--threads", type=int, default=None, help="n_threads")
    prune.add_argument("-o", "--output", metavar="OUT",
                       help="save the pruned estimator here (a pickle)")


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
                       choices=["adam", "sgd", "lbfgs", "adagrad", "adadelta", "rmsprop"])
    train.add_argument("--epochs", type=int, default=200,
                       help="max_iter: epochs (iterations for lbfgs); default 200")
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
                       help="save the fitted estimator here (a pickle; load it with "
                       "pickle.load or joblib.load)")
    add_prune_parser(sub)
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
    classify = args.task == "classification"
    Est = MLPClassifier if classify else MLPRegressor
    callbacks = None
    if args.plot:
        from .callbacks import History

        callbacks = [History()]  # records the validation loss curve
    est = Est(
        hidden_layer_sizes=args.hidden, activation=args.activation, solver=args.solver,
        dropout=args.dropout, callbacks=callbacks,
        max_iter=args.epochs, batch_size="auto" if args.batch_size is None else args.batch_size,
        learning_rate_init=args.lr, alpha=args.alpha, early_stopping=args.early_stopping,
        random_state=args.seed, n_threads=args.threads, verbose=not args.quiet,
    )
    stratify = y if classify else None
    try:
        Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=args.test_size,
                                              random_state=args.seed, stratify=stratify)
    except ValueError as exc:
        raise CLIError(f"cannot split the data: {exc}") from None
    print(f"data: {source}, {Xtr.shape[0]} training and {Xte.shape[0]} test samples, "
          f"{X.shape[1]} features; network {[X.shape[1], *args.hidden]} -> output; "
          f"solver {args.solver}")
    start = time.perf_counter()
    est.fit(Xtr, ytr)
    seconds = time.perf_counter() - start
    score = est.score(Xte, yte)
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
    except CLIError as exc:
        print(f"fastmlp: error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # the estimators' own input errors
        print(f"fastmlp: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
