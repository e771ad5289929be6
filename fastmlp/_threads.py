"""How many threads the kernels use, resolved once per call from Python."""

import os
import threading
from contextlib import contextmanager, nullcontext

# Predictions on fewer input values than this run on one thread: a parallel
# region (and resolving the thread count) costs more than the pass.
SMALL_PREDICT = 32768
# Capping BLAS (threadpoolctl) costs tens of microseconds; below this many
# rows a predict does not pay for it.
BLAS_LIMIT_MIN_ROWS = 2048


def cpu_count():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def effective_n_threads(n_threads=None):
    """Threads for OpenMP loops and BLAS.

    None: ``OMP_NUM_THREADS`` if set, else the usable cores. A negative
    value counts back from the cores (-1: all, -2: all but one), as joblib
    does.
    """
    if n_threads is None:
        env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
        if env.isdigit() and int(env) > 0:
            return int(env)
        return cpu_count()
    n_threads = int(n_threads)
    if n_threads == 0:
        raise ValueError("n_threads must not be 0")
    if n_threads < 0:
        return max(1, cpu_count() + 1 + n_threads)
    return n_threads


class _BlasLimit:
    """The process-wide BLAS thread limit, shared by concurrent fits.

    BLAS libraries have one thread setting per process, and OpenBLAS's
    results depend on it (a gemm splits its sums differently). So that a
    fit's result depends only on its own ``n_threads``, the limit is held
    like a lock: callers asking for the same count share it; a caller asking
    for another count waits until they are done (``wait=True``, fits), or
    runs under the current count (``wait=False``, predict: results then
    agree within rounding). The original setting is restored when the last
    holder leaves, whatever order they leave in.
    """

    def __init__(self):
        self._cond = threading.Condition()
        self._controller = None
        self._original = None
        self._active = None
        self._holders = 0
        self._mine = threading.local()

    def _libs(self):
        if self._controller is None:
            from threadpoolctl import ThreadpoolController

            self._controller = ThreadpoolController().select(user_api="blas")
        return self._controller.lib_controllers

    @staticmethod
    def _set_lib(lib, n):
        if lib.num_threads == n:
            return
        # threadpoolctl >= 3.8 lets only one "controlling" Python thread set
        # OpenBLAS's (pthreads) limit and silently ignores the others; this
        # class serialises fastmlp's changes itself, so it takes control.
        clear = getattr(type(lib), "clear_controlling_thread", None)
        if clear is not None:
            clear(force=True)
        lib.set_num_threads(n)

    def _set(self, n):
        for lib in self._libs():
            self._set_lib(lib, n)

    def acquire(self, n, wait):
        depth = getattr(self._mine, "depth", 0)
        with self._cond:
            # A thread already holding the limit never waits (no self-deadlock).
            while wait and depth == 0 and self._holders and self._active != n:
                self._cond.wait()
            if self._holders == 0:
                self._original = [(lib, lib.num_threads) for lib in self._libs()]
                self._set(n)
                self._active = n
            self._holders += 1
        self._mine.depth = depth + 1

    def release(self):
        self._mine.depth -= 1
        with self._cond:
            self._holders -= 1
            if self._holders == 0:
                for lib, n in self._original:
                    self._set_lib(lib, n)
                self._original = self._active = None
                self._cond.notify_all()


_limit = _BlasLimit()


@contextmanager
def blas_threads(n_threads, wait=True):
    """Context manager running BLAS on n_threads while the kernels run.

    The BLAS calls made by the kernels and their own OpenMP loops take turns
    on the same cores; capping BLAS at the same count keeps them from
    oversubscribing the machine. Thread-safe: see _BlasLimit.
    """
    _limit.acquire(n_threads, wait)
    try:
        yield
    finally:
        _limit.release()


def predict_blas_threads(n_rows, n_threads, split_rows=False):
    """blas_threads(n_threads, wait=False) for a predict of n_rows, when it
    pays.

    Small predictions, and ones that may use every core anyway, leave BLAS
    as it is. With split_rows (each thread takes whole chunks of rows, every
    product on that thread) BLAS is held at one thread: its own threads
    would take the cores from the caller's.
    """
    if split_rows:
        return blas_threads(1, wait=False)
    if n_rows < BLAS_LIMIT_MIN_ROWS or n_threads >= cpu_count():
        return nullcontext()
    return blas_threads(n_threads, wait=False)
