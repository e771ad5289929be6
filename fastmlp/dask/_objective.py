"""The full-batch objective over data held by dask workers (client side).

One evaluation is one round trip: each worker holding data keeps its parts
in an actor (fastmlp.dask._worker.GroupEvaluator) for the whole fit; the
client calls every actor at once, sending the parameter vector straight to
its worker (no scheduler, no task graph), and the partial sums come
straight back and are added in group order, so the result does not depend
on timing or on which worker holds which group.
"""

import asyncio
import time
import uuid

import numpy as np
import scipy.sparse as sp
from distributed.protocol import to_serialize

from .._threads import blas_threads, effective_n_threads
from .._validation import _csr_int32
from ..solvers.objective import CURVATURES, Objective, curvature_net

from ._placement import POLL_SECONDS, WorkersLost, wait_alive
from ._worker import GroupEvaluator, RoundSpec

CURVATURE_ON = ("auto", "client", "workers")
# Largest curvature batch (bytes of its X, Y and weights) that 'auto' gathers
# to the client: beyond it, one round per product beats moving the rows.
GATHER_BYTES = 64 << 20

# Seconds to wait, after a connection to a worker failed, for the scheduler
# to confirm that the worker left before treating it as a plain error.
COMM_GRACE_SECONDS = 10.0


async def _check_alive(client, hosts):
    alive = await client.nthreads(asynchronous=True)
    lost = set(hosts) - set(alive)
    if lost:
        raise WorkersLost(lost)


async def _confirm_lost(client, hosts):
    """After a connection to a worker failed: wait (a little) for the
    scheduler to notice that the worker has gone, raising WorkersLost."""
    deadline = time.monotonic() + COMM_GRACE_SECONDS
    while time.monotonic() < deadline:
        await _check_alive(client, hosts)
        await asyncio.sleep(0.05)


async def _guard(client, awaitable, hosts):
    """Await awaitable, checking every POLL_SECONDS that hosts are alive.

    Raises WorkersLost as soon as one of them has left the cluster (a
    result held or computed there would otherwise be waited for forever),
    and also when the awaitable fails because of that.
    """
    task = asyncio.ensure_future(awaitable)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=POLL_SECONDS)
            if done:
                try:
                    return task.result()
                except OSError:  # includes distributed's CommClosedError
                    await _confirm_lost(client, hosts)
                    raise
                except Exception:
                    await _check_alive(client, hosts)
                    raise
            await _check_alive(client, hosts)
    finally:
        if not task.done():
            task.cancel()


class DistributedObjective:
    """Loss, gradient and curvature products of the data of a Placement.

    Same protocol as :class:`fastmlp.solvers.objective.Objective`, so the
    local solver drivers run on it unchanged: ``objective(theta) -> (loss,
    grad)``, ``objective.loss(theta)``, ``penalty``, ``n_evals``, and for
    Hessian-free ``n_samples``, ``loss_grad_fisher(theta)`` and
    ``curvature(theta, v, rows, kind)``. The objective is the local one,
    (sum_i sw_i loss_i + penalty) / sum_i sw_i.

    Curvature products are estimated on a batch of rows (positions in
    range(n_samples)). Either the batch's rows are gathered to the client
    once (one round) and every product of CG is computed there, or each
    product is one round on the workers (Kingsbury et al. 2012), the
    batch's forward pass being kept by each worker between the products.

    Parameters
    ----------
    client : distributed.Client
    placement : Placement
    layout : Layout
    loss_code : int
    alpha, l1 : float
    n_threads : int or None
        Threads per worker task; None: each worker's own thread count.
    total_weight : float
        Sum of the sample weights (number of rows when unweighted).
    curvature_on : {'auto', 'client', 'workers'}
        Where curvature products are computed: 'client' gathers the batch,
        'workers' runs one round per product, 'auto' gathers batches of at
        most GATHER_BYTES.
    train_rows : sequence of int or None
        Training rows in each part, when the parts keep some for validation
        (``Part.rows``); None: all of ``placement.part_rows``.
    """

    # The penalty is computed on the client, exactly as locally.
    penalty = Objective.penalty

    def __init__(self, client, placement, layout, loss_code, alpha, l1, n_threads,
                 total_weight, curvature_on="auto", train_rows=None):
        self.client = client
        self.placement = placement
        self.train_rows = np.asarray(placement.part_rows if train_rows is None else train_rows,
                                     dtype=np.int64)
        self.layout = layout
        self.loss_code = loss_code
        self.alpha = float(alpha)
        self.l1 = float(l1)
        self.n_threads = n_threads
        self.scale = 1.0 / float(total_weight)
        self.n_evals = 0
        self._actors = {}  # host: (part keys, actor future)
        if curvature_on not in CURVATURE_ON:
            raise ValueError(f"curvature_on must be one of {CURVATURE_ON}, got {curvature_on!r}")
        self.curvature_on = curvature_on
        self._batch = None  # the last curvature batch (see _curvature_batch)
        self._cnet = None
        # A RoundTime per round trip: where its time went.
        self.round_times = []

    @classmethod
    def from_dask(cls, client, X, Y, layout, loss_code, sample_weight=None, alpha=0.0,
                  l1=0.0, n_threads=None, hosts=None, curvature_on="auto"):
        """Place dask arrays X, Y (encoded targets), sample_weight on the
        workers and return their objective (``.placement`` holds the data).

        X's row chunks are the parts; Y and sample_weight must have the same.
        """
        from ._data import MatrixTargets, part_builder
        from ._placement import Placement

        placement = Placement(
            client, part_builder(X, Y, sample_weight, MatrixTargets(), X.dtype),
            X.chunks[0], hosts=hosts)
        total = sum(s[1] for s in placement.part_stats())
        return cls(client, placement, layout, loss_code, alpha, l1, n_threads, total,
                   curvature_on)

    def __call__(self, theta):
        """(loss, gradient) at theta."""
        self.n_evals += 1
        value, grad = self.round("loss_grad", theta[None, :])
        return value + self.penalty(theta, grad), grad

    def loss(self, theta):
        """The objective's value alone (no backward pass)."""
        value, _ = self.round("loss", theta[None, :])
        return value + self.penalty(theta)

    # ------------------------------------------------------- Hessian-free
    @property
    def n_samples(self):
        """Number of rows; curvature batches are positions in range(n_samples)."""
        return int(self.train_rows.sum())

    @property
    def _weights(self):
        return self.layout.weight_mask()

    def loss_grad_fisher(self, theta):
        """(loss, gradient, squares) at theta, in one round (see
        fastmlp.solvers.objective.Objective.loss_grad_fisher)."""
        self.n_evals += 1
        n = theta.shape[0]
        value, both = self.round("loss_grad_fisher", theta[None, :],
                                 net=self._curvature_net())
        grad, diag = both[:n].copy(), both[n:].copy()
        if self.alpha:
            diag[self._weights] += self.alpha * self.scale
        return value + self.penalty(theta, grad), grad, diag

    def curvature(self, theta, v, rows=None, kind="gauss-newton"):
        """(C_batch + P) v, as fastmlp.solvers.objective.Objective.curvature:
        the data term's curvature averaged over the batch ``rows`` (all rows
        when None) with the sample weights, plus the L2 penalty's."""
        if kind not in CURVATURES:
            raise ValueError(f"kind must be one of {CURVATURES}, got {kind!r}")
        theta = np.ascontiguousarray(theta)
        v = np.ascontiguousarray(v, dtype=theta.dtype)
        batch = self._curvature_batch(rows, theta.dtype)
        if batch.local is not None:
            threads = effective_n_threads(self.n_threads)
            batch.local.n_threads = threads
            with blas_threads(threads):
                out = batch.local.curvature(theta, v, None, kind)
        else:
            _, out = self.round("curvature", np.stack([theta, v]), rows=batch.part_rows,
                                scale=batch.scale, kind=kind, net=self._curvature_net())
        if self.alpha:
            w = self._weights
            out[w] += (self.alpha * self.scale) * v[w]
        return out

    def _curvature_net(self):
        """The layout's kernel tuple for the curvature kernels (pruned layers
        all on the sparse kernels)."""
        if self._cnet is None:
            self._cnet = curvature_net(self.layout)
        return self._cnet

    def _curvature_batch(self, rows, dtype):
        """The batch of these rows (positions in range(n_samples)): gathered
        to the client, or located on the workers with its weight; kept while
        the driver asks for the same rows (one outer iteration)."""
        if rows is not None:
            rows = np.asarray(rows, dtype=np.int64)
        held = self._batch
        if held is not None and (held.rows is None if rows is None
                                 else held.rows is not None and np.array_equal(held.rows, rows)):
            return held
        batch = CurvatureBatch(rows)
        n_rows = self.n_samples if rows is None else len(rows)
        width = self.layout.units[0] + self.layout.units[-1] + 1
        nbytes = n_rows * width * np.dtype(dtype).itemsize
        where = self.curvature_on
        if where == "auto":
            where = "client" if nbytes <= GATHER_BYTES else "workers"
        if rows is None:
            batch.part_rows, batch.scale = None, self.scale
        else:
            starts = np.concatenate([[0], np.cumsum(self.train_rows)])
            part = np.searchsorted(starts, rows, side="right") - 1
            batch.part_rows = {int(i): np.ascontiguousarray(rows[part == i] - starts[i])
                               for i in np.unique(part)}
            if where == "workers":
                total, _ = self.round("weight", np.zeros((1, 1)), rows=batch.part_rows)
                batch.scale = 1.0 / total if total > 0 else 0.0
        if where == "client":
            batch.local = self._gather(batch.part_rows)
        self._batch = batch
        return batch

    def _gather(self, part_rows):
        """A local Objective (no penalty) over the batch's rows, fetched from
        the workers in one round, in row order."""
        spec = self._spec("rows", rows=part_rows)
        pieces = [piece for value, _, _ in self._results(spec, np.zeros((1, 1)))
                  for piece in value]
        Xs, Ys, sws = zip(*pieces)
        if sp.issparse(Xs[0]):
            X = _csr_int32(sp.vstack(Xs, format="csr"))
        else:
            X = np.concatenate(Xs)
        sw = None if sws[0] is None else np.concatenate(sws)
        return Objective(self.layout, X, np.concatenate(Ys), sw, self.loss_code, 0.0, 0.0,
                         effective_n_threads(self.n_threads))

    # --------------------------------------------------------- validation
    def validation_sums(self, theta, stat):
        """Sums of stat(output, Y, sample weights) over the parts'
        validation rows (fastmlp.dask._validation), in one round."""
        _, sums = self.round("output_sums", np.ascontiguousarray(theta)[None, :], kind=stat,
                             validation=True)
        return sums

    def validation_loss(self, theta, validation_weight):
        """The data term on the validation rows (no penalty), averaged with
        their sample weights (summing to validation_weight)."""
        value, _ = self.round("loss", np.ascontiguousarray(theta)[None, :],
                              scale=1.0 / validation_weight, validation=True)
        return value

    # ---------------------------------------------------------------- rounds
    def _spec(self, op, rows=None, scale=None, kind=None, net=None, validation=False):
        return RoundSpec(op, self.layout.net if net is None else net, self.loss_code,
                         self.scale if scale is None else scale, self.n_threads, rows, kind,
                         int(np.sum(self.layout.units[1:])), validation)

    def _results(self, spec, vectors):
        """[(value, vector, seconds)] per group of one round of spec.

        A worker lost during the round has its data re-created on the others
        and the round is run again (see Placement.recover).
        """
        vectors = np.ascontiguousarray(vectors)
        while True:
            try:
                return self._try_round(spec, vectors)
            except WorkersLost as lost:
                self.placement.recover(lost.workers)

    def round(self, op, vectors, **spec):
        """Sum over all rows (or spec's rows) of operation op; vectors[0] is
        theta. Partial sums are added in group order: deterministic."""
        value = 0.0
        total = None
        results = self._results(self._spec(op, **spec), vectors)
        start = time.time()
        for v, vec, _ in results:
            value += v
            if vec is not None:
                if total is None:
                    total = np.array(vec)
                else:
                    total += vec
        self.round_times[-1].add_sum(time.time() - start)
        return value, total

    def _evaluators(self, plan):
        """{host: actor key} for plan, (re)creating the actors whose parts
        changed (at the start, and after a lost worker's data was rebuilt)."""
        client = self.client
        created = {}
        for host, groups in plan:
            parts = [f for g in groups for f in self.placement.group_parts(g)]
            signature = tuple(f.key for f in parts)
            current = self._actors.get(host)
            if current is not None and current[0] == signature:
                continue
            sizes = [len(self.placement.group_parts(g)) for g in groups]
            ids = [i for g in groups
                   for i in range(self.placement.bounds[g], self.placement.bounds[g + 1])]
            # On its parts' worker, given their keys (plain strings, not
            # futures): taking the parts as arguments would load every one
            # into memory at once and keep it there, out of Dask's reach.
            created[host] = (signature, client.submit(
                GroupEvaluator, sizes, ids, list(signature), actor=True, workers=[host],
                allow_other_workers=False, pure=False,
                key=f"fastmlp-evaluator-{uuid.uuid4().hex[:12]}"))
        if created:
            futures = [f for _, f in created.values()]
            wait_alive(client, futures, set(created))
            for f in futures:
                if f.status == "error":
                    raise f.exception()
            stale = [self._actors[h][1] for h in created if h in self._actors]
            stale += [f for h, (_, f) in self._actors.items() if h not in dict(plan)]
            self._actors = {h: a for h, a in self._actors.items() if h in dict(plan)}
            self._actors.update(created)
            if stale:
                client.cancel(stale, force=True)
        return {host: self._actors[host][1].key for host, _ in plan}

    async def _call(self, spec, vectors, evaluators):
        """Run spec on every worker's actor at once; their results, in order."""
        client = self.client
        hosts = list(evaluators)
        args = [to_serialize(vectors), to_serialize(spec)]

        async def call(host):
            # What distributed.Actor does when the client talks to workers
            # directly; called here whatever the client's direct_to_workers,
            # so that theta never goes through the scheduler.
            sent = time.time()
            reply = await client.rpc(host).actor_execute(
                actor=evaluators[host], function="run", args=args, kwargs={})
            if reply["status"] != "OK":
                raise reply["exception"]
            result, (started, finished) = reply["result"]
            return result, (sent, started, finished, time.time())

        return await _guard(client, asyncio.gather(*(call(h) for h in hosts)), hosts)

    def release(self):
        """Free the workers' actors and the parts they hold."""
        actors = [f for _, f in self._actors.values()]
        self._actors = {}
        if actors:
            try:
                self.client.cancel(actors, force=True)
            except Exception:  # a closed client has nothing left to free
                pass
        self.placement.release()

    def _try_round(self, spec, vectors):
        plan = self.placement.plan()
        evaluators = self._evaluators(plan)
        start = time.time()
        replies = self.client.sync(self._call, spec, vectors, evaluators)
        by_group = [None] * self.placement.n_groups
        for (_, groups), (result, _) in zip(plan, replies):
            for g, r in zip(groups, result):
                by_group[g] = r
        self.round_times.append(RoundTime.of(start, replies, time.time()))
        return by_group


class CurvatureBatch:
    """A curvature batch: its rows, and either a local Objective over them
    (gathered) or where they are on the workers (part_rows) and the
    inverse of their weight (scale)."""

    def __init__(self, rows):
        self.rows = rows
        self.local = None
        self.part_rows = None
        self.scale = None


class RoundTime:
    """Where the time of one round went, in seconds.

    wall : from the client's call to the summed result.
    compute : the slowest worker's operation (inside its actor).
    overhead : wall - compute, the cost of distributing the round.
    The critical path (the worker whose reply came last) splits the wall
    time into: ``dispatch`` (the solver's thread to the client's event
    loop), ``to_worker`` (serialising the vectors, sending them, the
    worker's handing them to its actor thread), ``in_worker`` (its call
    beyond the operation: reading its parts, thread limits), its
    ``operation``, ``from_worker`` (the reply back to the client's event
    loop), ``collect`` (back to the solver's thread, and the sum). The
    worker-side times are wall clocks of another process: exact on one
    machine, skewed by the clocks' offset across machines.
    """

    __slots__ = ("wall", "compute", "dispatch", "to_worker", "in_worker", "operation",
                 "from_worker", "collect")

    @classmethod
    def of(cls, start, replies, end):
        """From the round's start and end (time.time()) and its replies,
        [(results per group, (sent, started, finished, received))]."""
        self = cls()
        ops = [sum(r[2] for r in result) for result, _ in replies]
        last = max(range(len(replies)), key=lambda i: replies[i][1][3])
        sent, started, finished, received = replies[last][1]
        self.compute = max(ops)
        self.operation = ops[last]
        self.dispatch = sent - start
        self.to_worker = started - sent
        self.in_worker = finished - started - ops[last]
        self.from_worker = received - finished
        self.collect = end - received
        self.wall = end - start
        return self

    @property
    def overhead(self):
        return self.wall - self.compute

    def add_sum(self, seconds):
        """Count the client's sum of the partial results in the round."""
        self.collect += seconds
        self.wall += seconds
