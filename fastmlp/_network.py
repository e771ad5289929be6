"""Network layout: layer sizes, activations and one flat parameter vector.

All parameters of a fitted network live in one contiguous vector ``theta``
(the dtype of the fit). For layer ``l`` it holds ``W_l`` (row-major,
``units[l] x units[l+1]``) followed by ``b_l``. ``coefs_`` and
``intercepts_`` are views into it, so an optimiser updates one vector with
one fused loop, and second-order solvers see a plain vector.

A pruned layer stores only its surviving weights: theta holds the ``data``
of a CSC matrix (column = output unit, canonical order) and ``coefs_[l]``
is a ``scipy.sparse.csc_matrix`` whose ``data`` is that view, so updates,
penalties and optimiser state cover the surviving weights only.
"""

import numpy as np
import scipy.sparse as sp

from . import _aligned

# Codes shared with src/_activations.pxd.
ACTIVATIONS = {
    "identity": 0,
    "logistic": 1,
    "tanh": 2,
    "relu": 3,
    "leaky_relu": 4,
    "softmax": 5,
    "exp": 6,
}
HIDDEN_ACTIVATIONS = ("identity", "logistic", "tanh", "relu", "leaky_relu")

# Codes shared with src/_losses.pxd.
LOSS_SQUARED, LOSS_LOG, LOSS_HINGE, LOSS_HINGE_BINARY, LOSS_POISSON = range(5)

# Chunk length of the fused update loop (src/_updates.pxd CHUNK).
UPDATE_CHUNK = 4096

# How a layer's product is computed (src/_sparse_layers.pxd SP_*): dense W
# and gemm; sparse W and the sparse kernels; sparse W scattered into a dense
# buffer and gemm (when the layer is too dense for the sparse kernels to win).
SP_DENSE, SP_KERNEL, SP_GEMM = 0, 1, 2
# Most batch rows per packed tile of the sparse kernels (src/_sparse_layers.pxd
# TILE_MAX).
SP_TILE = 32
# A sparse layer denser than this runs on gemm, a little below the measured
# crossover of the sparse kernels against BLAS (`benchmarks/pruning.py
# crossover`, README: about 0.5 for a float64 training step).
SPARSE_KERNEL_MAX_DENSITY = 0.4


class Layout:
    """Shapes and offsets of a dense network's parameters.

    Parameters
    ----------
    units : sequence of int
        ``[n_features, hidden..., n_outputs]``.
    activations : sequence of str
        One per weight layer; the last is the output activation.
    negative_slope : float
        Slope of 'leaky_relu' for negative inputs.
    structure : sequence of (None or (indptr, indices)), optional
        Per layer: None for a dense ``W_l``, or the CSC structure of a pruned
        one (int32 ``indptr`` of length ``units[l+1] + 1``, sorted row
        ``indices`` of each column). Default: all dense.
    max_sparse_density : float, optional
        Sparse layers at most this dense use the sparse kernels, denser ones
        gemm on a dense copy (default: SPARSE_KERNEL_MAX_DENSITY).
    """

    def __init__(self, units, activations, negative_slope=0.01, structure=None,
                 max_sparse_density=None):
        self.units = np.asarray(units, dtype=np.int32)
        if len(activations) != len(self.units) - 1:
            raise ValueError("one activation per layer is needed")
        self.activations = tuple(activations)
        L = len(self.units) - 1
        if structure is None:
            structure = [None] * L
        if len(structure) != L:
            raise ValueError("one structure entry per layer is needed")
        self.structure = [
            None if s is None else _check_structure(s, self.shape(l), l)
            for l, s in enumerate(structure)
        ]
        w_sizes = [
            self.shape(l)[0] * self.shape(l)[1] if s is None else int(s[0][-1])
            for l, s in enumerate(self.structure)
        ]
        sizes = [w + int(b) for w, b in zip(w_sizes, self.units[1:])]
        self.w_size = np.array(w_sizes, dtype=np.int64)
        self.w_off = np.zeros(len(sizes), dtype=np.int64)
        self.w_off[1:] = np.cumsum(sizes)[:-1]
        self.b_off = self.w_off + self.w_size
        self.n_params = int(sum(sizes))
        self.act = np.array([ACTIVATIONS[a] for a in activations], dtype=np.int32)
        self.negative_slope = float(negative_slope)
        self.max_sparse_density = (SPARSE_KERNEL_MAX_DENSITY if max_sparse_density is None
                                   else float(max_sparse_density))
        self._sparse_tables()
        # The tuple every kernel takes (see src/_args.pxd).
        self.net = (self.units, self.w_off, self.act, self.negative_slope,
                    self.b_off, self.sp_mode, self.sp_off, self.sp_pool,
                    self.work_sizes)

    @classmethod
    def from_coefs(cls, coefs, activations, negative_slope=0.01, max_sparse_density=None):
        """The layout of a network with these weight matrices (dense
        ndarrays, or scipy.sparse matrices for pruned layers)."""
        units = [coefs[0].shape[0]] + [c.shape[1] for c in coefs]
        return cls(units, activations, negative_slope,
                   max_sparse_density=max_sparse_density).restructured(coefs)

    def restructured(self, coefs):
        """This layout with each layer dense or sparse as in coefs (the
        layer sizes stay; pack() then checks the shapes)."""
        structure = []
        for l, W in enumerate(coefs):
            if sp.issparse(W):
                if W.shape != self.shape(l):
                    raise ValueError(f"coefs_[{l}] has shape {W.shape}; the network "
                                     f"needs {self.shape(l)}")
                W = canonical_csc(W)
                structure.append((W.indptr, W.indices))
            else:
                structure.append(None)
        return Layout(self.units, self.activations, self.negative_slope, structure,
                      self.max_sparse_density)

    def _sparse_tables(self):
        """Per-layer kernel choice, index tables and workspace sizes.

        sp_pool holds, per sparse layer, the CSC column pointers and row
        indices, then the CSR row pointers, column indices and, for each CSR
        position, the matching position in theta (CSC order): the forward
        pass walks columns, the backward pass rows.
        """
        L = self.n_layers
        self.sp_mode = np.zeros(L, dtype=np.int32)
        self.sp_off = np.zeros((L, 2), dtype=np.int64)
        pool = []
        pool_len = dense_len = per_row = 0
        for l, s in enumerate(self.structure):
            if s is None:
                continue
            n_in, n_out = self.shape(l)
            indptr, indices = s
            self.sp_off[l, 1] = dense_len
            if self.density(l) <= self.max_sparse_density:
                self.sp_mode[l] = SP_KERNEL
                # packed inputs, deltas in rows, deltas in tiles
                per_row = max(per_row, n_in + 2 * n_out)
                dense_len += int(indptr[-1])  # the weights in CSR order
            else:
                self.sp_mode[l] = SP_GEMM
                dense_len += 2 * n_in * n_out  # dense weights and gradient
            cols = np.repeat(np.arange(n_out, dtype=np.int32), np.diff(indptr))
            perm = np.lexsort((cols, indices)).astype(np.int32)
            row_ptr = np.zeros(n_in + 1, dtype=np.int32)
            np.cumsum(np.bincount(indices, minlength=n_in), out=row_ptr[1:])
            block = [indptr, indices, row_ptr, cols[perm], perm]
            self.sp_off[l, 0] = pool_len
            pool.extend(block)
            pool_len += sum(len(b) for b in block)
        self.sp_pool = (np.concatenate(pool).astype(np.int32) if pool
                        else np.zeros(1, dtype=np.int32))
        self.sp_off = np.ascontiguousarray(self.sp_off.ravel())
        self.work_sizes = (int(dense_len), int(per_row))

    def work_len(self, batch_size):
        """Length of the sparse layers' workspace for batches of batch_size
        rows (src/_sparse_layers.pxd; 0 for a dense network)."""
        dense_len, per_row = self.work_sizes
        # Spare elements align the packed tiles to 64 bytes (ALIGN_SLACK).
        return dense_len + (int(batch_size) + SP_TILE) * per_row + (16 if per_row else 1)

    @property
    def n_layers(self):
        return len(self.units) - 1

    def shape(self, l):
        """(n_in, n_out) of W_l."""
        return int(self.units[l]), int(self.units[l + 1])

    def is_sparse(self, l):
        return self.structure[l] is not None

    def density(self, l):
        """Fraction of W_l's entries that are stored (1 for a dense layer)."""
        n_in, n_out = self.shape(l)
        return int(self.w_size[l]) / max(1, n_in * n_out)

    def coef_slice(self, l):
        start = int(self.w_off[l])
        return slice(start, start + int(self.w_size[l]))

    def intercept_slice(self, l):
        start = int(self.b_off[l])
        return slice(start, start + int(self.units[l + 1]))

    def views(self, theta):
        """(coefs, intercepts): lists of views into theta (a pruned layer's
        weights as a csc_matrix whose data is the view)."""
        coefs = []
        for l in range(self.n_layers):
            w = theta[self.coef_slice(l)]
            if self.structure[l] is None:
                coefs.append(w.reshape(self.shape(l)))
                continue
            indptr, indices = self.structure[l]
            W = sp.csc_matrix(self.shape(l), dtype=theta.dtype)
            # Assigned after construction: the constructor would copy.
            W.data, W.indices, W.indptr = w, indices, indptr
            W.has_sorted_indices = True
            coefs.append(W)
        intercepts = [theta[self.intercept_slice(l)] for l in range(self.n_layers)]
        return coefs, intercepts

    def pack(self, coefs, intercepts, dtype):
        """A new theta holding the given per-layer arrays."""
        theta = _aligned.empty(self.n_params, dtype)
        for l, (W, b) in enumerate(zip(coefs, intercepts)):
            shape = self.shape(l)
            b = np.asarray(b)
            if W.shape != shape or b.shape != (shape[1],):
                raise ValueError(
                    f"coefs_[{l}] has shape {W.shape} and intercepts_[{l}] "
                    f"{b.shape}; the network needs {shape} and ({shape[1]},)"
                )
            if self.structure[l] is None:
                theta[self.coef_slice(l)] = np.asarray(W).ravel()
            else:
                if not sp.issparse(W):
                    raise ValueError(f"coefs_[{l}] must be a sparse matrix (a pruned layer)")
                W = canonical_csc(W)
                indptr, indices = self.structure[l]
                if not (np.array_equal(W.indptr, indptr) and np.array_equal(W.indices, indices)):
                    raise ValueError(f"coefs_[{l}] does not have the layer's sparsity pattern")
                theta[self.coef_slice(l)] = W.data
            theta[self.intercept_slice(l)] = b
        return theta

    def weight_mask(self):
        """Boolean mask of theta's entries that are weights (not biases)."""
        mask = np.zeros(self.n_params, dtype=bool)
        for l in range(self.n_layers):
            mask[self.coef_slice(l)] = True
        return mask

    def pieces(self):
        """Cut theta into update chunks of wholly-weight or wholly-bias pieces.

        Returns the (lo, hi, is_weight, chunk_ptr) arrays of _updates.Pieces.
        """
        cuts = {0, self.n_params}
        cuts.update(range(0, self.n_params, UPDATE_CHUNK))
        for l in range(self.n_layers):
            cuts.add(self.coef_slice(l).stop)
            cuts.add(self.intercept_slice(l).stop)
        bounds = np.array(sorted(cuts), dtype=np.int64)
        lo, hi = bounds[:-1], bounds[1:]
        # From the layers' weight ranges, not weight_mask(): that is
        # n_params bytes, allocated while the fit's buffers are all live.
        is_weight = np.zeros(len(lo), dtype=np.int8)
        for l in range(self.n_layers):
            w = self.coef_slice(l)
            is_weight[(lo >= w.start) & (lo < w.stop)] = 1
        chunk_of = lo // UPDATE_CHUNK
        n_chunks = int(chunk_of[-1]) + 1 if len(lo) else 0
        chunk_ptr = np.searchsorted(chunk_of, np.arange(n_chunks + 1)).astype(np.int64)
        return lo, hi, is_weight, chunk_ptr


def canonical_csc(W):
    """W as a CSC matrix with sorted, unique int32 indices (explicit zeros
    are kept: a stored zero is a surviving weight)."""
    W = sp.csc_matrix(W)
    if not W.has_canonical_format:
        W = W.copy()
        W.sum_duplicates()
    if W.nnz >= 2**31:
        raise ValueError("a layer with 2**31 or more stored weights is not supported")
    if W.indices.dtype != np.int32 or W.indptr.dtype != np.int32:
        W = sp.csc_matrix((W.data, W.indices.astype(np.int32), W.indptr.astype(np.int32)),
                          shape=W.shape)
    return W


def _check_structure(structure, shape, l):
    indptr, indices = structure
    indptr = np.asarray(indptr)
    indices = np.asarray(indices)
    n_in, n_out = shape
    ok = (indptr.ndim == 1 and indices.ndim == 1 and indptr.shape[0] == n_out + 1
          and indptr[0] == 0 and indptr[-1] == indices.shape[0]
          and np.all(np.diff(indptr) >= 0)
          and (indices.size == 0 or (indices.min() >= 0 and indices.max() < n_in)))
    if ok and indices.size:
        cols = np.repeat(np.arange(n_out), np.diff(indptr))
        key = cols.astype(np.int64) * n_in + indices
        ok = bool(np.all(np.diff(key) > 0))
    if not ok:
        raise ValueError(f"layer {l}: not a canonical CSC structure for a {shape} matrix")
    indptr = np.array(indptr, dtype=np.int32)
    indices = np.array(indices, dtype=np.int32)
    indptr.flags.writeable = False
    indices.flags.writeable = False
    return indptr, indices
