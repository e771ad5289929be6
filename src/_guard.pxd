# The divergence guard of the first-order epoch: a step is applied only if
# its gradient is finite, so a fit that diverges stops with the parameters of
# its last finite step without keeping a copy of them (a parameter vector of
# memory). A NaN or infinite gradient would otherwise reach every parameter
# (and optimiser moment) it touches before any check after the step saw it.
from cython cimport floating
from cython.parallel cimport prange
from libc.float cimport FLT_MAX, DBL_MAX
from _mathf cimport fabs_

cdef enum:
    GUARD_SPAN = 8192          # elements per (parallel) span of the scan
    PAR_MIN_GUARD = 65536


cdef inline int span_bad(const floating* g, Py_ssize_t n) noexcept nogil:
    """1 if g[0:n] holds a NaN or an infinity."""
    cdef Py_ssize_t i
    cdef floating big = FLT_MAX if floating is float else DBL_MAX
    cdef int bad = 0
    # A comparison that NaN fails, OR-reduced without a branch: vectorises.
    for i in range(n):
        bad = bad | (not (fabs_(g[i]) <= big))
    return bad


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
