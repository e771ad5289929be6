"""Memory guard: refuse a fit or a load that cannot fit in memory, at once.

Without it, a network too large for the machine (``hidden_layer_sizes=
(100000, 100000)`` needs 80 GB of float64 weights) would page the machine
to death long before numpy failed.
"""

import os

# Bytes a fit needs per parameter, in units of the parameter's itemsize:
# theta, gradient, two rows of optimiser state.
_FIRST_ORDER_COPIES = 4
# L-BFGS keeps float64 copies: scipy's x, gradient and work vectors, 10
# (s, y) correction pairs and the wrappers' copies (measured with
# tracemalloc: tests/test_memory.py); plus the tracker's best point and the
# kernel's gradient in the fit's dtype.
_LBFGS_FLOAT64_COPIES = 40
# Hessian-free's float64 vectors, counted (not measured): ~10 for the
# iteration and CG, up to 20 CG iterates kept at ceil(1.3^j) <= 250.
_HF_FLOAT64_COPIES = 32
# Rows per chunk of a forward pass (prediction, validation score).
PREDICT_CHUNK = 1024


def _read_int(path):
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _cgroup_room():
    """Bytes left under this process's cgroup memory limit, or None."""
    limit = _read_int("/sys/fs/cgroup/memory.max")  # cgroup v2
    if limit is not None:
        used = _read_int("/sys/fs/cgroup/memory.current") or 0
        return max(limit - used, 0)
    limit = _read_int("/sys/fs/cgroup/memory/memory.limit_in_bytes")  # v1
    if limit is not None and limit < 1 << 60:  # v1 spells "no limit" as ~2**63
        used = _read_int("/sys/fs/cgroup/memory/memory.usage_in_bytes") or 0
        return max(limit - used, 0)
    return None


def available_bytes():
    """Memory this process can still allocate without swapping, or None.

    Linux: ``MemAvailable`` from /proc/meminfo, capped by the cgroup limit
    (containers). Elsewhere: the free physical pages, if the OS says.
    """
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        avail = None
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            avail = None
    room = _cgroup_room()
    if room is not None:
        avail = room if avail is None else min(avail, room)
    return avail


def format_bytes(n):
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024


def check_memory(needed, what):
    """Raise MemoryError if ``needed`` bytes exceed what is available.

    Parameters
    ----------
    needed : int
        Bytes the operation is about to allocate.
    what : str
        What needs them, for the message ("fitting this network").
    """
    avail = available_bytes()
    if avail is not None and needed > avail:
        raise MemoryError(
            f"{what} needs about {needed:,} bytes ({format_bytes(needed)}) but only "
            f"{avail:,} bytes ({format_bytes(avail)}) of memory are available."
        )


def fit_bytes(units, itemsize, n_samples, batch_size, solver, early_stopping, chunk_rows,
              n_threads=1, curvature_rows=1000):
    """Bytes a fit allocates, computed from the network's shape alone.

    Parameters
    ----------
    units : sequence of int
        ``[n_features, hidden..., n_outputs]``.
    itemsize : int
        Bytes per value of the fit's dtype.
    n_samples : int
    batch_size : int
        Rows per mini-batch (first-order solvers).
    solver : str
    early_stopping : bool
    chunk_rows : int
        Rows per chunk of the full-batch objective ('lbfgs', 'bfgs', 'hf').
    n_threads : int
        The full-batch solvers' passes give each thread its own chunk
        workspace and gradient (src/_objective.pyx, src/_curvature.pyx).
    curvature_rows : int
        'hf': rows of a curvature batch, whose forward pass is kept between
        the products of an iteration (up to 256 MiB).
    """
    units = [int(u) for u in units]
    n_params = sum(a * b + b for a, b in zip(units[:-1], units[1:]))
    widest = max(a * b for a, b in zip(units[:-1], units[1:]))
    # init_theta draws each layer's weights as float64 before the cast.
    need = 8 * widest + n_params  # + the update pieces' weight mask (bool)
    rows = min(batch_size, n_samples)
    if solver in ("lbfgs", "bfgs"):
        need += 8 * _LBFGS_FLOAT64_COPIES * n_params + 2 * itemsize * n_params
        if solver == "bfgs":  # the dense inverse-Hessian approximation
            need += 8 * n_params * n_params
        rows = min(chunk_rows, n_samples)
    elif solver == "hf":
        # float64 vectors of the driver (gradient, squares, preconditioner,
        # CG's x, r, y, d, A d, previous solution, iterates kept for
        # backtracking) and the curvature kernels' second activation buffer.
        need += 8 * _HF_FLOAT64_COPIES * n_params + 3 * itemsize * n_params
        rows = min(chunk_rows, n_samples)
        need += rows * itemsize * (sum(units[1:]) + max(units[1:]))
        # the Fisher diagonal's squared layer inputs and deltas
        need += rows * itemsize * 2 * max(units)
        cache = min(int(curvature_rows), n_samples) * itemsize * sum(units[1:])
        if cache <= 256 << 20:
            need += cache
    else:
        copies = _FIRST_ORDER_COPIES + (1 if early_stopping else 0)
        need += copies * itemsize * n_params
    # Workspace: activations of every layer, a delta buffer and the gathered
    # input rows, for one batch (or chunk).
    need += rows * itemsize * (sum(units[1:]) + max(units[1:]) + units[0])
    if n_threads > 1 and solver in ("lbfgs", "bfgs", "hf"):
        # each further thread: a gradient (HF: and a Fisher diagonal) and a
        # chunk's workspace (HF: the curvature kernels' too)
        extra = min(n_threads, max(1, n_samples // 128)) - 1
        vectors = 2 if solver == "hf" else 1
        per_row = sum(units[1:]) + max(units[1:]) + units[0]
        if solver == "hf":
            per_row += sum(units[1:]) + 2 * max(units)
        need += extra * itemsize * (vectors * n_params + rows * per_row)
    if early_stopping:  # the validation pass's forward workspace, alongside
        need += min(PREDICT_CHUNK, n_samples) * itemsize * (sum(units[1:]) + units[0])
    return need
