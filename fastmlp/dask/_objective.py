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
from distributed.protocol import to_serialize

from ..solvers.objective import Objective

from ._placement import POLL_SECONDS, WorkersLost, wait_alive
from ._worker import GroupEvaluator, RoundSpec

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
    """Loss and gradient of the data of a Placement, as one callable.

    Same protocol as :class:`fastmlp.solvers.objective.Objective`, so the
    local solver drivers run on it unchanged: ``objective(theta) -> (loss,
    grad)``, ``objective.loss(theta)``, ``penalty``, ``n_evals``. The
    objective is the local one, (sum_i sw_i loss_i + penalty) / sum_i sw_i.

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
    """

    # The penalty is computed on the client, exactly as locally.
    penalty = Objective.penalty

    def __init__(self, client, placement, layout, loss_code, alpha, l1, n_threads,
                 total_weight):
        self.client = client
        self.placement = placement
        self.layout = layout
        self.loss_code = loss_code
        self.alpha = float(alpha)
        self.l1 = float(l1)
        self.n_threads = n_threads
        self.scale = 1.0 / float(total_weight)
        self.n_evals = 0
        self._actors = {}  # host: (part keys, actor future)
        # (wall seconds, slowest worker's compute seconds) per round.
        self.round_times = []

    @classmethod
    def from_dask(cls, client, X, Y, layout, loss_code, sample_weight=None, alpha=0.0,
                  l1=0.0, n_threads=None, hosts=None):
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
        return cls(client, placement, layout, loss_code, alpha, l1, n_threads, total)

    def __call__(self, theta):
        """(loss, gradient) at theta."""
        self.n_evals += 1
        value, grad = self.round("loss_grad", theta[None, :])
        return value + self.penalty(theta, grad), grad

    def loss(self, theta):
        """The objective's value alone (no backward pass)."""
        value, _ = self.round("loss", theta[None, :])
        return value + self.penalty(theta)

    def round(self, op, vectors):
        """Sum of operation op over all rows; vectors[0] is theta.

        A worker lost during the round has its data re-created on the others
        and the round is run again (see Placement.recover).
        """
        spec = RoundSpec(op, self.layout.net, self.loss_code, self.scale, self.n_threads)
        while True:
            try:
                return self._try_round(spec, np.ascontiguousarray(vectors))
            except WorkersLost as lost:
                self.placement.recover(lost.workers)

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
            # Pinned with its parts: they are handed to it in place.
            created[host] = (signature, client.submit(
                GroupEvaluator, sizes, ids, *parts, actor=True, workers=[host],
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
            reply = await client.rpc(host).actor_execute(
                actor=evaluators[host], function="run", args=args, kwargs={})
            if reply["status"] != "OK":
                raise reply["exception"]
            return reply["result"]

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
        start = time.perf_counter()
        evaluators = self._evaluators(plan)
        results = self.client.sync(self._call, spec, vectors, evaluators)
        by_group = [None] * self.placement.n_groups
        compute = 0.0
        for (_, groups), result in zip(plan, results):
            for g, r in zip(groups, result):
                by_group[g] = r
            compute = max(compute, sum(r[2] for r in result))
        value = 0.0
        total = None
        for v, vec, _ in by_group:  # fixed order: deterministic sums
            value += v
            if vec is not None:
                if total is None:
                    total = np.array(vec)
                else:
                    total += vec
        self.round_times.append((time.perf_counter() - start, compute))
        return value, total
