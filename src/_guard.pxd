# The divergence guard of the first-order epoch: a step is applied only if
# its gradient is finite, so a fit that diverges stops with the parameters of
# its last finite step without keeping a copy of them (a parameter vector of
# memory). A NaN or infinite gradient would otherwise reach every parameter
# (and optimiser moment) it touches before any check after the step saw it.
from cython cimport floating
from cython.parallel cimport prange
from libc.stdint cimport uint32_t, uint64_t

cdef enum:
    GUARD_SPAN = 8192          # elements per (parallel) span of the scan
    PAR_MIN_GUARD = 65536


cdef inline int span_bad(const floating* g, Py_ssize_t n) noexcept nogil:
    """1 if g[0:n] holds a NaN or an infinity."""
    cdef Py_ssize_t i
    cdef const uint32_t* u32 = <const uint32_t*>g
    cdef const uint64_t* u64 = <const uint64_t*>g
    cdef uint32_t m32 = 0x7f800000u, a32 = 0
    cdef uint64_t m64 = 0x7ff0000000000000u, a64 = 0
    # NaN and infinity are the values whose exponent bits are all ones; adding
    # one to the exponent field then carries into the sign bit. Integer AND,
    # ADD and OR reductions vectorise (a floating comparison per element
    # compiled to scalar ucomisd: 6% of a W2 float64 epoch).
    if floating is float:
        for i in range(n):
            a32 = a32 | ((u32[i] & m32) + (<uint32_t>1 << 23))
        return <int>(a32 >> 31)
    else:
        for i in range(n):
            a64 = a64 | ((u64[i] & m64) + (<uint64_t>1 << 52))
        return <int>(a64 >> 63)


cdef inline bint all_finite(const floating* g, Py_ssize_t n,
                            int n_threads) noexcept nogil:
    """True if every g[i] is finite."""
    cdef Py_ssize_t c, lo, n_spans = (n + GUARD_SPAN - 1) // GUARD_SPAN
    cdef int bad = 0
    if n_threads > 1 and n >= PAR_MIN_GUARD:
        for c in prange(n_spans, schedule='static', num_threads=n_threads):
            lo = c * GUARD_SPAN
            bad += span_bad(g + lo, min(<Py_ssize_t>GUARD_SPAN, n - lo))
    else:
        bad = span_bad(g, n)
    return bad == 0

