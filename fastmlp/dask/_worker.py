"""What a worker runs for one evaluation: one call over all its local parts.

Every quantity the full-batch solvers need is a sum over rows, so a worker
adds up its parts with the compiled kernels (part after part, in row
order) and returns one partial sum per group. A ``GroupEvaluator`` (a dask
actor on the parts' worker, called directly by the client for each
evaluation) knows the parts' keys and reads each part from the worker's
data store when it needs it, so the parts stay under Dask's memory
management: a worker holding more than its memory limit allows spills some
to disk, and an evaluation reads them back one at a time.

An operation is an entry of ``OPS``: a function (vectors, items, spec,
n_threads) -> (value, vector or None) summed over ``items``, an iterable
(to be gone through once: the parts are read as it goes) of (part, rows,
cache): the part, the rows of it to use (positions in the part) and a dict
the actor keeps for that part between calls.
"""

import time

import numpy as np

from .. import _curvature, _forward, _objective
from .._memory import PREDICT_CHUNK
from .._threads import blas_threads, effective_n_threads
from ..solvers.objective import CACHE_BYTES, CHUNK_ROWS, kernel_input


class RoundSpec:
    """What every worker needs to know for one operation (small, pickled).

    rows : dict {part index: int64 array} or None
        For an operation on a batch: the rows of each part in it (positions
        among the part's training rows, ``Part.rows``); parts not in the
        dict have none. None: all training rows.
    kind : str, callable or None
        Operation-specific detail (the curvature: 'gauss-newton', 'hessian';
        the sums of a validation score: a fastmlp.dask._validation.Stat).
    validation : bool
        Run on the parts' validation rows instead (early stopping).
    """

    __slots__ = ("op", "net", "loss", "scale", "n_threads", "rows", "kind", "width",
                 "validation")

    def __init__(self, op, net, loss, scale, n_threads, rows=None, kind=None, width=0,
                 validation=False):
        self.op = op
        self.net = net
        self.loss = int(loss)
        self.scale = float(scale)
        self.n_threads = n_threads
        self.rows = rows
        self.kind = kind
        self.width = int(width)  # sum of the layer widths (units[1:])
        self.validation = bool(validation)

    def __getstate__(self):
        return {k: getattr(self, k) for k in self.__slots__}

    def __setstate__(self, state):
        for k in self.__slots__:
            setattr(self, k, state.get(k))


def _loss_grad(vectors, items, spec, n_threads):
    theta = vectors[0]
    grad = np.zeros_like(theta)
    total = 0.0
    for part, rows, _ in items:
        total += _objective.loss_grad(
            theta, kernel_input(part.X), part.Y, part.sample_weight, rows,
            spec.net, spec.loss, spec.scale, grad, True, CHUNK_ROWS, n_threads,
            None, True)
    return total, grad


def _loss(vectors, items, spec, n_threads):
    theta = vectors[0]
    total = 0.0
    for part, rows, _ in items:
        total += _objective.loss_grad(
            theta, kernel_input(part.X), part.Y, part.sample_weight, rows,
            spec.net, spec.loss, spec.scale, None, False, CHUNK_ROWS, n_threads,
            None, True)
    return total, None


def _weight(vectors, items, spec, n_threads):
    """Sum of the sample weights of the rows (their number if unweighted)."""
    total = 0.0
    for part, rows, _ in items:
        if part.sample_weight is None:
            total += len(rows)
        else:
            total += float(np.sum(part.sample_weight[rows], dtype=np.float64))
    return total, None


def _rows(vectors, items, spec, n_threads):
    """The rows themselves: [(X rows, Y rows, sample_weight rows)] per part."""
    out = []
    for part, rows, _ in items:
        sw = None if part.sample_weight is None else part.sample_weight[rows]
        out.append((part.X[rows], part.Y[rows], sw))
    return out, None


def _squared_input(part, cache):
    """(data**2, indices, indptr) of a CSR part, computed once per part."""
    X = kernel_input(part.X)
    if not isinstance(X, tuple):
        return None
    if "Xsq" not in cache:
        cache["Xsq"] = (np.square(X[0]), X[1], X[2])
    return cache["Xsq"]


def _loss_grad_fisher(vectors, items, spec, n_threads):
    """Loss, and [gradient, empirical Fisher diagonal] stacked."""
    theta = vectors[0]
    n = theta.shape[0]
    out = np.zeros(2 * n, dtype=theta.dtype)
    total = 0.0
    for part, rows, cache in items:
        total += _curvature.loss_grad_fisher(
            theta, kernel_input(part.X), _squared_input(part, cache), part.Y,
            part.sample_weight, rows, spec.net, spec.loss, spec.scale, out[:n], out[n:],
            True, CHUNK_ROWS, n_threads, None, True)
    return total, out


def _forward_cache(cache, theta, rows, width):
    """(buffer, fill) for the kernels' forward-pass cache of this part: CG
    multiplies many directions at one theta on one batch."""
    size = len(rows) * width
    if size * theta.itemsize > CACHE_BYTES:
        return None, False
    held = cache.get("forward")
    if (held is not None and held[2].dtype == theta.dtype and np.array_equal(held[1], rows)
            and np.array_equal(held[0], theta)):
        return held[2], False
    cache["forward"] = (theta.copy(), rows.copy(), np.empty(size, dtype=theta.dtype))
    return cache["forward"][2], True


def _curvature_product(vectors, items, spec, n_threads):
    """sum over the rows of scale * sw_i * C_i v, C = Gauss-Newton or Hessian
    (spec.kind), v = vectors[1]; no penalty."""
    theta, v = vectors[0], vectors[1]
    out = np.zeros_like(theta)
    for part, rows, cache in items:
        buffer, fill = _forward_cache(cache, theta, rows, spec.width)
        _curvature.curvature_product(
            theta, v, kernel_input(part.X), part.Y, part.sample_weight, rows, spec.net,
            spec.loss, spec.scale, out, spec.kind == "gauss-newton", True, CHUNK_ROWS,
            n_threads, buffer, fill, None, True)
    return 0.0, out


def _output_sums(vectors, items, spec, n_threads):
    """Sums of spec.kind(network output, Y, sample weights) over the rows
    (a validation score's, see fastmlp.dask._validation); NaN if an output
    is not finite, as the local validation score."""
    theta = vectors[0]
    total = None
    for part, rows, _ in items:
        if len(rows) == 0:
            continue
        out = np.empty((len(rows), part.Y.shape[1]), dtype=theta.dtype)
        _forward.predict(theta, kernel_input(part.X), spec.net, out, rows, PREDICT_CHUNK,
                         n_threads)
        sw = None if part.sample_weight is None else part.sample_weight[rows]
        sums = np.asarray(spec.kind(out, part.Y[rows], sw), dtype=np.float64)
        if getattr(spec.kind, "uses_output", True) and not np.isfinite(out).all():
            sums = np.full_like(sums, np.nan)
        total = sums if total is None else total + sums
    return 0.0, total


ROWS_PARALLEL_OPS = ("loss_grad", "loss", "loss_grad_fisher", "curvature")
OPS = {"loss_grad": _loss_grad, "loss": _loss, "weight": _weight, "rows": _rows,
       "loss_grad_fisher": _loss_grad_fisher, "curvature": _curvature_product,
       "output_sums": _output_sums}


def worker_threads(n_threads):
    """The thread count for this worker's kernels.

    Dask sets OMP_NUM_THREADS=1 in its workers (it runs one task per
    thread), but this call is the only one running here during a fit, so it
    uses as many threads as the worker has, unless n_threads says otherwise.
    """
    if n_threads is not None:
        return effective_n_threads(n_threads)
    from distributed import get_worker

    return get_worker().state.nthreads


def _items(spec, parts, indices, part_ids, caches):
    """(part, rows, cache) for the parts at ``indices`` that spec uses, in
    part order; lazily: each part is read from ``parts`` only when the
    operation reaches it and dropped when it moves on (it may be on disk)."""
    for i in indices:
        pid = part_ids[i]
        if spec.validation:
            part = parts[i]
            yield part, part.val_rows, caches[i]
        elif spec.rows is None:
            part = parts[i]
            yield part, part.rows, caches[i]
        elif pid in spec.rows:
            part = parts[i]
            yield part, part.train_positions(spec.rows[pid]), caches[i]


def run_groups(vectors, spec, sizes, parts, part_ids=None, caches=None):
    """Evaluate spec.op over consecutive groups of parts (``sizes`` long).

    vectors : (k, n_params) array, row 0 being theta.
    parts : sequence of Part (indexed; read once per part and operation).
    part_ids : the parts' indices in the whole data (for spec.rows).
    caches : one dict per part, kept by the caller between calls.
    Returns [(value, vector or None, seconds)] per group.
    """
    if not vectors.flags.writeable:  # received buffers can be read-only
        vectors = vectors.copy()
    if part_ids is None:
        part_ids = range(len(parts))
    if caches is None:
        caches = [{} for _ in parts]
    n_threads = worker_threads(spec.n_threads)
    op = OPS[spec.op]
    out = []
    start = 0
    # The loss and curvature passes run their threads on shares of the rows,
    # each calling BLAS on one thread.
    with blas_threads(1 if spec.op in ROWS_PARALLEL_OPS else n_threads):
        for size in sizes:
            t0 = time.perf_counter()
            stop = start + size
            items = _items(spec, parts, range(start, stop), part_ids, caches)
            value, vector = op(vectors, items, spec, n_threads)
            out.append((value, vector, time.perf_counter() - t0))
            start = stop
    return out


class StoredParts:
    """The parts of these keys in this worker's data store, read on access.

    A part Dask has spilled to disk is read from there and not put back in
    memory (which would make Dask spill another, and write it again, at
    every evaluation: the parts are read in turn, the least recently used
    first); dropped once used, it only takes memory while its rows are
    evaluated. So a worker's memory holds what Dask keeps in it, plus one
    part.
    """

    def __init__(self, data, keys):
        self.data = data
        self.keys = keys

    def __len__(self):
        return len(self.keys)

    def __getitem__(self, i):
        key = self.keys[i]
        data = self.data
        fast = getattr(data, "fast", None)  # a SpillBuffer's in-memory mapping
        if fast is not None and key not in fast:
            try:
                # The spill store's own read (it hands back the object
                # itself while a reference to it lives), without moving it.
                return data.slow[key]
            except KeyError:  # brought back to memory meanwhile
                pass
        try:
            return data[key]
        except KeyError:
            raise RuntimeError(
                f"Part {self.keys[i]!r} of the training data is no longer on its worker "
                "(was it released, or moved by a rebalance?)."
            ) from None


class GroupEvaluator:
    """The parts one worker holds for a fit, evaluated on request.

    Created as a dask actor on the parts' worker; the client then calls
    ``run`` straight on the worker, with no task graph and no scheduler in
    the way, once per evaluation. It keeps the parts' keys, not the parts:
    they stay in the worker's data store (held there by the client's
    futures), under Dask's memory management, and each evaluation reads
    them one at a time (see StoredParts).

    Parameters
    ----------
    sizes : list of int
        Number of parts in each of this worker's groups, in group order.
    part_ids : list of int
        The parts' indices in the whole data.
    keys : list of str
        The parts' task keys, in the same order: group after group, in row
        order.
    """

    def __init__(self, sizes, part_ids, keys):
        self.sizes = list(sizes)
        self.part_ids = list(part_ids)
        self.keys = list(keys)
        # Per part, what successive calls can share (e.g. a forward pass).
        self.caches = [{} for _ in self.keys]

    def run(self, vectors, spec):
        """([(value, vector or None, seconds)] per group, (started, finished)).

        See run_groups; started and finished are wall-clock times
        (time.time()) of the call on this worker, for the client's account
        of where a round's time goes.
        """
        from distributed import get_worker

        started = time.time()
        parts = StoredParts(get_worker().data, self.keys)
        out = run_groups(vectors, spec, self.sizes, parts, self.part_ids, self.caches)
        return out, (started, time.time())
