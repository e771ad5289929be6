"""What a worker runs for one evaluation: one call over all its local parts.

Every quantity the full-batch solvers need is a sum over rows, so a worker
adds up its parts with the compiled kernels (part after part, in row
order) and returns one partial sum per group. The parts are held by a
``GroupEvaluator`` (a dask actor) on their worker for the whole fit, which
the client calls directly for each evaluation.

An operation is an entry of ``OPS``: a function (vectors, items, spec,
n_threads) -> (value, vector or None) summed over ``items``, a list of
(part, rows, cache): the part, the rows of it to use (positions in the part)
and a dict the actor keeps for that part between calls.
"""

import time

import numpy as np

from .. import _curvature, _objective
from .._threads import blas_threads, effective_n_threads
from ..solvers.objective import CACHE_BYTES, CHUNK_ROWS, kernel_input


class RoundSpec:
    """What every worker needs to know for one operation (small, pickled).

    rows : dict {part index: int64 array} or None
        For an operation on a batch: the rows of each part in it (positions
        in the part); parts not in the dict have none. None: all rows.
    kind : str or None
        Operation-specific detail (the curvature: 'gauss-newton', 'hessian').
    """

    __slots__ = ("op", "net", "loss", "scale", "n_threads", "rows", "kind", "width")

    def __init__(self, op, net, loss, scale, n_threads, rows=None, kind=None, width=0):
        self.op = op
        self.net = net
        self.loss = int(loss)
        self.scale = float(scale)
        self.n_threads = n_threads
        self.rows = rows
        self.kind = kind
        self.width = int(width)  # sum of the layer widths (units[1:])

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
            spec.net, spec.loss, spec.scale, grad, True, CHUNK_ROWS, n_threads)
    return total, grad


def _loss(vectors, items, spec, n_threads):
    theta = vectors[0]
    total = 0.0
    for part, rows, _ in items:
        total += _objective.loss_grad(
            theta, kernel_input(part.X), part.Y, part.sample_weight, rows,
            spec.net, spec.loss, spec.scale, None, False, CHUNK_ROWS, n_threads)
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
    """Loss, and [gradient, sum of the rows' squared gradient terms] stacked."""
    theta = vectors[0]
    n = theta.shape[0]
    out = np.zeros(2 * n, dtype=theta.dtype)
    total = 0.0
    for part, rows, cache in items:
        total += _curvature.loss_grad_fisher(
            theta, kernel_input(part.X), _squared_input(part, cache), part.Y,
            part.sample_weight, rows, spec.net, spec.loss, spec.scale, out[:n], out[n:],
            True, CHUNK_ROWS, n_threads)
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
            n_threads, buffer, fill)
    return 0.0, out


OPS = {"loss_grad": _loss_grad, "loss": _loss, "weight": _weight, "rows": _rows,
       "loss_grad_fisher": _loss_grad_fisher, "curvature": _curvature_product}


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


def _items(spec, parts, part_ids, caches):
    """(part, rows, cache) for the parts this spec uses, in part order."""
    items = []
    for part, pid, cache in zip(parts, part_ids, caches):
        if spec.rows is None:
            items.append((part, part.rows, cache))
        elif pid in spec.rows:
            items.append((part, spec.rows[pid], cache))
    return items


def run_groups(vectors, spec, sizes, parts, part_ids=None, caches=None):
    """Evaluate spec.op over consecutive groups of parts (``sizes`` long).

    vectors : (k, n_params) array, row 0 being theta.
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
    with blas_threads(n_threads):
        for size in sizes:
            t0 = time.perf_counter()
            stop = start + size
            items = _items(spec, parts[start:stop], part_ids[start:stop], caches[start:stop])
            value, vector = op(vectors, items, spec, n_threads)
            out.append((value, vector, time.perf_counter() - t0))
            start = stop
    return out


class GroupEvaluator:
    """The parts one worker holds for a fit, evaluated on request.

    Created as a dask actor on the parts' worker (the parts are its task's
    dependencies, so they are handed over in place); the client then calls
    ``run`` straight on the worker, with no task graph and no scheduler in
    the way, once per evaluation.

    Parameters
    ----------
    sizes : list of int
        Number of parts in each of this worker's groups, in group order.
    part_ids : list of int
        The parts' indices in the whole data.
    *parts : Part
        The groups' parts, group after group, in row order.
    """

    def __init__(self, sizes, part_ids, *parts):
        self.sizes = list(sizes)
        self.part_ids = list(part_ids)
        self.parts = parts
        # Per part, what successive calls can share (e.g. a forward pass).
        self.caches = [{} for _ in parts]

    def run(self, vectors, spec):
        """[(value, vector or None, seconds)] per group; see run_groups."""
        return run_groups(vectors, spec, self.sizes, self.parts, self.part_ids, self.caches)
