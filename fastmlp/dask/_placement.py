"""Where the training data lives on the cluster, and what happens when a
worker holding some of it is lost.

The row chunks ("parts") are cut into as many contiguous *groups* as there
are workers, balanced by rows. Each group lives on one worker (its home)
for the whole fit. The partition depends only on the chunking and the
number of workers, and every sum over a group runs in part order, so the
result of an evaluation does not depend on which worker is home to which
group: after a worker is lost, its groups are re-created on the others (from
the dask graph) and evaluations give bit-identical results.
"""

import time
import uuid

import dask
import numpy as np
from distributed import wait

# Seconds between checks that the workers an operation waits on are alive.
POLL_SECONDS = 1.0
# Seconds allowed to rebuild a lost worker's parts before WorkerLostError.
REBUILD_TIMEOUT = 120.0


class WorkerLostError(RuntimeError):
    """A worker left the cluster mid-fit and its data could not be re-created."""


class WorkersLost(Exception):
    """Internal signal: these workers left while an operation waited on them."""

    def __init__(self, workers):
        super().__init__(", ".join(sorted(workers)))
        self.workers = set(workers)


def alive_workers(client):
    """Addresses of the workers the scheduler knows, sorted."""
    return sorted(client.nthreads())


def wait_alive(client, futures, hosts, timeout=None):
    """Wait for futures; raise WorkersLost if one of hosts leaves meanwhile.

    A task restricted to a worker that died would otherwise wait forever.
    With a timeout (seconds), raise TimeoutError after it.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"the data was not rebuilt within {timeout:.0f} s")
        try:
            with client.as_current():
                wait(futures, timeout=POLL_SECONDS)
            return
        except TimeoutError:
            failure = None
        except Exception as exc:  # futures cancelled by the scheduler
            failure = exc
        lost = set(hosts) - set(alive_workers(client))
        if lost:
            raise WorkersLost(lost) from failure
        if failure is not None:
            raise failure


def split_contiguous(sizes, n_groups):
    """Cut len(sizes) items into n_groups contiguous, non-empty groups with
    sums as equal as possible; returns the n_groups + 1 boundaries."""
    cum = np.concatenate([[0], np.cumsum(sizes, dtype=np.float64)])
    n = len(sizes)
    bounds = [0]
    for g in range(1, n_groups):
        i = int(np.argmin(np.abs(cum - cum[-1] * g / n_groups)))
        bounds.append(min(max(i, bounds[-1] + 1), n - (n_groups - g)))
    bounds.append(n)
    return bounds


class Placement:
    """The parts of one fit, pinned to workers in contiguous groups.

    Parameters
    ----------
    client : distributed.Client
    build_part : callable (index, key) -> dask.delayed.Delayed
        The graph that builds part ``index`` under the task key ``key``.
    part_rows : sequence of int
        Rows in each part.
    hosts : list of str or None
        Workers to place the groups on, group g on hosts[g]; None: all the
        workers, sorted by address.
    max_recoveries : int
        Worker losses survived before the fit stops with WorkerLostError.
    """

    def __init__(self, client, build_part, part_rows, hosts=None, max_recoveries=3):
        self.client = client
        self.build_part = build_part
        self.part_rows = np.asarray(part_rows, dtype=np.int64)
        self.max_recoveries = max_recoveries
        self.recoveries = []
        self._token = uuid.uuid4().hex[:12]
        self._generation = 0
        if hosts is None:
            hosts = alive_workers(client)
        if not hosts:
            raise RuntimeError("The dask cluster has no workers.")
        self.bounds = split_contiguous(self.part_rows, min(len(hosts), len(self.part_rows)))
        self.homes = [None] * self.n_groups
        self.futures = [None] * len(self.part_rows)
        try:
            self._place(range(self.n_groups), hosts[:self.n_groups])
        except WorkersLost as lost:
            self.recover(lost.workers)

    @property
    def n_groups(self):
        return len(self.bounds) - 1

    def group_parts(self, g):
        """Futures of group g's parts, in row order."""
        return self.futures[self.bounds[g]:self.bounds[g + 1]]

    def plan(self):
        """[(host, [groups...])]: each home worker with its groups, in group order."""
        by_host = {}
        for g, host in enumerate(self.homes):
            by_host.setdefault(host, []).append(g)
        return list(by_host.items())

    def _place(self, groups, hosts, rebuild=False):
        """Build the parts of each group on its host (pinned), wait, check.

        rebuild=True (after a loss) bounds the wait by REBUILD_TIMEOUT.
        """
        self._generation += 1
        pending = {}
        for g, host in zip(groups, hosts):
            lo, hi = self.bounds[g], self.bounds[g + 1]
            # The parts are pinned to their host: were it busy or paused, a
            # part must not be built elsewhere. The user's chunks only
            # prefer it (so they load where their part lives): their keys
            # are the user's, and a task the scheduler already knows keeps
            # the restrictions it was first given. Another placement of
            # the same graph (an earlier fit not yet garbage-collected, a
            # concurrent one, or this one before a loss) may have pinned
            # them to a worker that is gone; strictly, they would then wait
            # for it forever and hold up the rebuild.
            with dask.annotate(workers=[host], allow_other_workers=False):
                graphs = [self.build_part(i, f"fastmlp-part-{self._token}-{i}-{self._generation}")
                          for i in range(lo, hi)]
            futures = self.client.compute(graphs, workers=[host], allow_other_workers=True)
            self.futures[lo:hi] = futures
            self.homes[g] = host
            pending[g] = futures
        everything = [f for fs in pending.values() for f in fs]
        wait_alive(self.client, everything, set(hosts),
                   timeout=REBUILD_TIMEOUT if rebuild else None)
        for f in everything:
            if f.status == "error":
                raise f.exception()
            if f.status != "finished":
                raise RuntimeError(f"A part of the training data was {f.status} while loading.")
        who_has = self.client.who_has(everything)
        for g, fs in pending.items():
            if any(self.homes[g] not in who_has.get(f.key, ()) for f in fs):
                lost = set(hosts) - set(alive_workers(self.client))
                if lost:
                    raise WorkersLost(lost)
                raise RuntimeError(f"A part of rows {self._row_range(g)} is not on its "
                                   f"worker {self.homes[g]}.")

    def part_stats(self):
        """[(rows, sample-weight sum)] per part, computed where parts live."""
        from ._data import Part

        while True:
            futures = [self.client.submit(Part.stats, f, workers=[self.homes[g]], pure=False)
                       for g in range(self.n_groups) for f in self.group_parts(g)]
            try:
                wait_alive(self.client, futures, set(self.homes))
                return self.client.gather(futures)
            except WorkersLost as lost:
                self.recover(lost.workers)

    def recover(self, lost):
        """Re-create on the surviving workers every group whose home is in lost.

        Raises WorkerLostError when that is impossible (no workers left, too
        many losses, or data that cannot be rebuilt from its graph).
        """
        while True:
            names = ", ".join(sorted(lost))
            self.recoveries.append(names)
            if len(self.recoveries) > self.max_recoveries:
                raise WorkerLostError(
                    f"Worker(s) {names} left the cluster during the fit, after "
                    f"{self.max_recoveries} earlier losses ({'; '.join(self.recoveries[:-1])}); "
                    "stopping rather than retrying again."
                )
            alive = alive_workers(self.client)
            if not alive:
                raise WorkerLostError(
                    f"Worker(s) {names} left the cluster during the fit and no worker is left."
                )
            affected = [g for g, h in enumerate(self.homes) if h in lost or h not in alive]
            load = {h: 0 for h in alive}
            for g, h in enumerate(self.homes):
                if g not in affected:
                    load[h] += 1
            hosts = []
            for g in affected:
                host = min(alive, key=lambda h: (load[h], h))
                load[host] += 1
                hosts.append(host)
            old = [self.futures[i] for g in affected
                   for i in range(self.bounds[g], self.bounds[g + 1])
                   if self.futures[i] is not None]
            for g in affected:
                for i in range(self.bounds[g], self.bounds[g + 1]):
                    self.futures[i] = None
            # Cancel (synchronously) before rebuilding: the lost parts are
            # pinned to the lost worker, and the scheduler would otherwise
            # keep them, and the chunks they need, waiting for it.
            if old:
                self.client.cancel(old, force=True)
            try:
                self._place(affected, hosts, rebuild=True)
                return
            except WorkersLost as again:
                lost = again.workers
            except Exception as exc:
                rows = ", ".join(f"rows {self._row_range(g)}" for g in affected)
                raise WorkerLostError(
                    f"Worker(s) {names} left the cluster during the fit and the data they "
                    f"held ({rows}) could not be re-created from its dask graph: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc

    def _row_range(self, g):
        start = int(self.part_rows[:self.bounds[g]].sum())
        return f"{start}-{start + int(self.part_rows[self.bounds[g]:self.bounds[g + 1]].sum()) - 1}"

    def release(self):
        """Drop the parts: the workers free them.

        Cancelled explicitly rather than left to the futures' garbage
        collection, which references from tracebacks can delay.
        """
        live = [f for f in self.futures if f is not None]
        self.futures = [None] * len(self.futures)
        if live:
            try:
                self.client.cancel(live, force=True)
            except Exception:  # a closed client has nothing left to free
                pass
