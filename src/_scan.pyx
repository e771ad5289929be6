"""The fit's one pass over X before training: finite, and within a scale.

It replaced a numpy dot product (X's sum of squares). That one runs on
OpenBLAS's own threads above 10,000 float64 values, and they then spin for
tens of milliseconds after the call on the core that the two-core epoch's
second thread needs: W3 float64 fits on two threads ran 0.90x as fast as on
one. This pass runs on OpenMP's threads (the fit's own, which sleep when
idle) for large X, else on the calling thread.
"""
from cython cimport floating
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcpy
from cython.parallel cimport prange


cdef inline int span_beyond(const floating* x, Py_ssize_t n,
                            floating limit) noexcept nogil:
    """1 if some x[i] is NaN, infinite or beyond +-limit (limit >= 0).

    |x| ordered as a float is ordered as its bits without the sign, NaN and
    infinity above every finite value; adding (top bit - 1 - bits(limit))
    to them carries into the top bit exactly for the values beyond limit.
    Integer AND, ADD and OR reductions vectorise with baseline SSE2 (a
    floating comparison per element did not: 3.5x slower than numpy's dot).
    """
    cdef Py_ssize_t i
    cdef const uint32_t* u32 = <const uint32_t*>x
    cdef const uint64_t* u64 = <const uint64_t*>x
    cdef uint32_t b32, c32, a32 = 0
    cdef uint64_t b64, c64, a64 = 0
    if floating is float:
        memcpy(&b32, &limit, 4)
        c32 = 0x7fffffffu - b32
        for i in range(n):
            a32 = a32 | ((u32[i] & 0x7fffffffu) + c32)
        return <int>(a32 >> 31)
    else:
        memcpy(&b64, &limit, 8)
        c64 = 0x7fffffffffffffffu - b64
        for i in range(n):
            a64 = a64 | ((u64[i] & 0x7fffffffffffffffu) + c64)
        return <int>(a64 >> 63)


cdef enum:
    # Values from which the pass is split over threads (memory bandwidth
    # grows with the cores reading), in blocks of PAR_BLOCK.
    PAR_MIN = 1 << 20
    PAR_BLOCK = 1 << 16


def finite_within(const floating[::1] x, double limit, int n_threads=1):
    """True if every x[i] is finite and no |x[i]| exceeds limit (>= 0)."""
    cdef Py_ssize_t n = x.shape[0], c, lo
    cdef int bad = 0
    if not limit >= 0:
        raise ValueError("limit must be >= 0")
    if n >= PAR_MIN and n_threads > 1:
        with nogil:
            for c in prange((n + PAR_BLOCK - 1) // PAR_BLOCK, schedule='static',
                            num_threads=n_threads):
                lo = c * PAR_BLOCK
                bad += span_beyond(&x[lo], min(<Py_ssize_t>PAR_BLOCK, n - lo),
                                   <floating>limit)
    elif n:
        with nogil:
            bad = span_beyond(&x[0], n, <floating>limit)
    return not bad
