"""Compressing fitted networks: weight sharing, quantisation, entropy coding.

Deep Compression (Han et al., 2016) in three steps after pruning
(:mod:`fastmlp.pruning`): per layer, the surviving weights share a small
codebook found by k-means (or are quantised linearly to int8/int16); the
codebook can be fine-tuned on the training data; the codebook indices and
the sparsity pattern (relative indices) are entropy coded — Huffman, or
zlib/LZMA where smaller — into a ``.fmz`` model file.

:func:`compress` returns a :class:`CompressedModel` whose ``estimator``
holds exactly the compressed parameters; :func:`save` writes it and
:func:`load` rebuilds an estimator that predicts bit-identically.
"""

from ._compress import CompressedModel, compress
from ._file import load, save

__all__ = ["compress", "CompressedModel", "save", "load"]
