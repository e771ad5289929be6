"""What a worker runs for one evaluation: one call over all its local parts.

Every quantity the full-batch solvers need is a sum over rows, so a worker
adds up its parts with the compiled kernels (part after part, in row
order) and returns one partial sum per group. The parts are held by a
``GroupEvaluator`` (a dask actor) on their worker for the whole fit, which
the client calls directly for each evaluation. An operation is an entry of
``OPS``: a function (vectors, parts, spec, n_threads) -> (value, vector).
Curvature products for Hessian-free (G v, H v) are one more entry each,
reading the direction from ``vectors[1]``.
"""

import time

import numpy as np

from .. import _objective
from .._threads import blas_threads, effective_n_threads
from ..solvers.objective import CHUNK_ROWS, kernel_input


class RoundSpec:
    """What every worker needs to know for one operation (small, pickled)."""

    __slots__ = ("op", "net", "loss", "scale", "n_threads")

    def __init__(self, op, net, loss, scale, n_threads):
        self.op = op
        self.net = net
        self.loss = int(loss)
        self.scale = float(scale)
        self.n_threads = n_threads

    def __getstate__(self):
        return {k: getattr(self, k) for k in self.__slots__}

    def __setstate__(self, state):
        for k, v in state.items():
            setattr(self, k, v)


def _loss_grad(vectors, parts, spec, n_threads):
    theta = vectors[0]
    grad = np.zeros_like(theta)
    total = 0.0
    for part in parts:
        total += _objective.loss_grad(
            theta, kernel_input(part.X), part.Y, part.sample_weight, part.rows,
            spec.net, spec.loss, spec.scale, grad, True, CHUNK_ROWS, n_threads)
    return total, grad


def _loss(vectors, parts, spec, n_threads):
    theta = vectors[0]
    total = 0.0
    for part in parts:
        total += _objective.loss_grad(
            theta, kernel_input(part.X), part.Y, part.sample_weight, part.rows,
            spec.net, spec.loss, spec.scale, None, False, CHUNK_ROWS, n_threads)
    return total, None


OPS = {"loss_grad": _loss_grad, "loss": _loss}


def worker_threads(n_threads):
    """The thread count for this worker's kernels.

    Dask sets OMP_NUM_THREADS=1 in its workers (it runs one task per
    thread), but this task is the only one running here during a fit, so it
    uses as many threads as the worker has, unless n_threads says otherwise.
    """
    if n_threads is not None:
        return effective_n_threads(n_threads)
    from distributed import get_worker

    return get_worker().state.nthreads


def run_groups(vectors, spec, sizes, *parts):
    """Evaluate spec.op over consecutive groups of parts (``sizes`` long).

    vectors : (k, n_params) array, row 0 being theta.
    Returns [(value, vector or None, seconds)] per group.
    """
    if not vectors.flags.writeable:  # received buffers can be read-only
        vectors = vectors.copy()
    n_threads = worker_threads(spec.n_threads)
    op = OPS[spec.op]
    out = []
    start = 0
    with blas_threads(n_threads):
        for size in sizes:
            t0 = time.perf_counter()
            value, vector = op(vectors, parts[start:start + size], spec, n_threads)
            out.append((value, vector, time.perf_counter() - t0))
            start += size
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
    *parts : Part
        The groups' parts, group after group, in row order.
    """

    def __init__(self, sizes, *parts):
        self.sizes = list(sizes)
        self.parts = parts

    def run(self, vectors, spec):
        """[(value, vector or None, seconds)] per group; see run_groups."""
        return run_groups(vectors, spec, self.sizes, *self.parts)
