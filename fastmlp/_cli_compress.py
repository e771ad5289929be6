"""``fastmlp compress``: a saved model into a compact ``.fmz`` file, with a report."""

import os
import tempfile
import warnings

from ._cli_prune import human_bytes, load_model, split_data
from .cli import CLIError, add_data_arguments


def add_compress_parser(sub):
    p = sub.add_parser(
        "compress",
        help="weight-share (or quantise) and entropy-code a saved model into a .fmz file",
        description="Compress a saved model (typically pruned by fastmlp prune): per layer, "
        "k-means weight sharing with 2**BITS centroids over the stored weights (or linear "
        "int8/int16 quantisation), optional fine-tuning of the centroids on the training "
        "part of the data, then Huffman (or zlib/LZMA, where smaller) coding of the "
        "codebook indices and the sparse positions. Prints per-layer and total bytes "
        "before and after, the ratio, and the test score before and after. The data is "
        "split as fastmlp train and fastmlp prune split it.",
    )
    p.add_argument("model", metavar="MODEL", help="a fitted model saved by fastmlp train -o "
                   "or fastmlp prune -o")
    p.add_argument("--bits", type=int, default=5,
                   help="bits per weight: 2**BITS shared values (1-8; default 5), or the "
                   "integer width with --method linear (1-16)")
    p.add_argument("--method", choices=["shared", "linear"], default="shared",
                   help="'shared': k-means weight sharing (default); 'linear': uniform "
                   "quantisation over each layer's range")
    p.add_argument("--bias-bits", default="8", metavar="BITS|none",
                   help="linear quantisation of the biases (default 8; 'none': float32)")
    p.add_argument("--fine-tune-epochs", type=int, default=0, metavar="N",
                   help="epochs of centroid fine-tuning on the training part (default 0)")
    p.add_argument("--fine-tune-lr", type=float, default=None, metavar="LR",
                   help="Adam step for fine-tuning (default: the model's learning_rate_init)")
    add_data_arguments(p)
    p.add_argument("-o", "--output", metavar="OUT.fmz",
                   help="write the compressed model here (load it with "
                   "fastmlp.compression.load)")


def _bias_bits(text):
    if text.strip().lower() == "none":
        return None
    try:
        return int(text)
    except ValueError:
        raise CLIError(f"--bias-bits takes a number of bits or 'none', got {text!r}") from None


def cmd_compress(args):
    from sklearn.base import is_classifier

    from . import compression

    if args.fine_tune_epochs < 0:
        raise CLIError(f"--fine-tune-epochs must be >= 0, got {args.fine_tune_epochs}")
    est = load_model(args.model)
    if args.threads is not None:
        est.set_params(n_threads=args.threads)
    Xtr, Xte, ytr, yte, source = split_data(args, est)
    score_name = "test accuracy" if is_classifier(est) else "test R^2"
    layout = est._layout
    units = "-".join(str(int(u)) for u in layout.units)
    kept = int(layout.w_size.sum())
    total = int(sum(layout.shape(l)[0] * layout.shape(l)[1] for l in range(layout.n_layers)))
    print(f"model: {args.model} ({type(est).__name__}, layers {units}, "
          f"{est._theta.dtype.name}, {kept}/{total} weights stored)")
    print(f"data: {source}, {Xtr.shape[0]} training and {Xte.shape[0]} test samples")
    bias_bits = _bias_bits(args.bias_bits)
    what = (f"{args.bits}-bit weight sharing (k-means, linear initialisation)"
            if args.method == "shared" else f"{args.bits}-bit linear quantisation")
    print(f"compression: {what}, biases "
          f"{'float32' if bias_bits is None else f'{bias_bits}-bit'}"
          + (f", {args.fine_tune_epochs} fine-tuning epochs" if args.fine_tune_epochs else ""))
    before = est.score(Xte, yte)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            model = compression.compress(
                est, bits=args.bits, method=args.method, bias_bits=bias_bits, X=Xtr, y=ytr,
                fine_tune_epochs=args.fine_tune_epochs, learning_rate=args.fine_tune_lr)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    if model.fine_tune_loss_:
        print(f"fine-tuning: training loss {model.fine_tune_loss_[0]:.4f} -> "
              f"{model.fine_tune_loss_[-1]:.4f}")

    if args.output:
        model.save(args.output)
        size = os.path.getsize(args.output)
        loaded = compression.load(args.output)
    else:
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "model.fmz")
            model.save(path)
            size = os.path.getsize(path)
            loaded = compression.load(path)
    after = loaded.score(Xte, yte)

    sizes = model.layer_sizes()
    print(f"{'layer':<7}{'shape':<11}{'weights':>9}{'float32 dense':>15}{'stored':>10}"
          f"{'ratio':>8}  codecs (weights, positions, biases)")
    for l, (code, s) in enumerate(zip(model.layers, sizes)):
        n_in, n_out = code.shape
        codecs = ", ".join(c or "-" for c in s["codecs"].values())
        print(f"{l:<7}{f'{n_in}x{n_out}':<11}{code.n_weights:>9}{s['dense_float32']:>13} B"
              f"{s['stored']:>8} B{s['dense_float32'] / s['stored']:>7.1f}x  {codecs}")
    dense = sum(s["dense_float32"] for s in sizes)
    stored = sum(s["stored"] for s in sizes)
    print(f"{'layers':<27}{dense:>13} B{stored:>8} B{dense / stored:>7.1f}x")
    print(f"{'file':<27}{dense:>13} B{size:>8} B{dense / size:>7.1f}x  "
          f"(metadata and container: {size - stored} B)")
    model_size = os.path.getsize(args.model)
    print(f"MODEL file {human_bytes(model_size)} -> {human_bytes(size)} "
          f"({model_size / size:.1f}x smaller)")
    print(f"{'':<20}{'before':>10}{'after':>10}")
    print(f"{score_name:<20}{before:>10.4f}{after:>10.4f}  ({100 * (after - before):+.2f} points)")
    if args.output:
        print(f"saved: {args.output}")
    return 0
