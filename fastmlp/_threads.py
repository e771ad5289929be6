"""How many threads the kernels use, resolved once per call from Python."""

import os


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


_controller = None


def blas_threads(n_threads):
    """Context manager limiting BLAS to n_threads while the kernels run.

    The BLAS calls made by the kernels and their own OpenMP loops take turns
    on the same cores; capping BLAS at the same count keeps them from
    oversubscribing the machine.
    """
    global _controller
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    return _controller.limit(limits=n_threads, user_api="blas")
