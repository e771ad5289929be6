# First-order update rules, fused with the L2/L1 penalty gradient, over the
# flat parameter vector.
#
# theta is cut into fixed chunks (CHUNK elements) and each chunk into pieces
# that are wholly weights or wholly biases (penalties apply to weights only).
# One parallel loop runs over the chunks; each chunk also returns the sums
# that the batch loss needs (sum w^2, sum |w| before the step) and a count
# of parameters the step made non-finite. Partial
# sums are per chunk and added in chunk order: the result does not depend on
# the thread count.
from cython cimport floating
from cython.parallel cimport prange
from libc.float cimport FLT_MAX, DBL_MAX
from _mathf cimport fsqrt, fabs_
from _adam_simd cimport adam_span

cdef enum:
    RULE_SGD = 0
    RULE_ADAM = 1
    RULE_ADAGRAD = 2
    RULE_ADADELTA = 3
    RULE_RMSPROP = 4

cdef enum:
    CHUNK = 4096
    PAR_MIN_UPDATE = 32768


cdef struct Rule:
    int kind
    double lr            # this step's learning rate (Adam: bias-corrected)
    double momentum
    bint nesterov
    double beta1
    double beta2
    double eps
    double rho


cdef struct Pieces:
    const long long* lo         # piece p covers theta[lo[p]:hi[p]]
    const long long* hi
    const signed char* is_weight
    const long long* chunk_ptr  # chunk c owns pieces chunk_ptr[c]:chunk_ptr[c+1]
    Py_ssize_t n_chunks


cdef inline void step_span(floating* th, floating* g, floating* s1,
                           floating* s2, Py_ssize_t n, const Rule* rule,
                           floating l2, floating l1,
                           double* out) noexcept nogil:
    """Apply the rule to n parameters; out += [sum th^2, sum |th|, n bad]
    (Adam's kernels leave sum |th| at 0 without an L1 term, which is all the
    loss uses it for).

    g is consumed: the penalty gradient may be added to it in place. One loop
    per rule keeps each loop free of branches, so it vectorises.
    """
    cdef Py_ssize_t i
    cdef floating t, d, v
    cdef int kind = rule.kind
    cdef bint nesterov = rule.nesterov
    cdef floating lr = <floating>rule.lr
    cdef floating mu = <floating>rule.momentum
    cdef floating b1 = <floating>rule.beta1
    cdef floating b2 = <floating>rule.beta2
    cdef floating eps = <floating>rule.eps
    cdef floating rho = <floating>rule.rho
    cdef floating big = FLT_MAX if floating is float else DBL_MAX
    cdef double sq = 0, ab = 0
    cdef int bad = 0
    cdef floating gi, m, w
    if kind == RULE_ADAM:
        if adam_span(th, g, s1, s2, n, lr, b1, b2, eps, l2, l1, out):
            return  # AVX2 / AVX-512 (src/_adam_simd.pxd)
        # Adam in one pass (penalty, moments, step): separate passes cost
        # more in memory traffic than in arithmetic. Biases (no penalty)
        # take the loop without the sums.
        if l2 != 0 or l1 != 0:
            for i in range(n):
                t = th[i]
                sq += t * t
                ab += fabs_(t)
                gi = g[i] + l2 * t + (l1 if t > 0 else (-l1 if t < 0 else 0))
                m = b1 * s1[i] + (1 - b1) * gi
                w = b2 * s2[i] + (1 - b2) * gi * gi
                s1[i] = m
                s2[i] = w
                th[i] = t - lr * m / (fsqrt(w) + eps)
        else:
            for i in range(n):
                gi = g[i]
                m = b1 * s1[i] + (1 - b1) * gi
                w = b2 * s2[i] + (1 - b2) * gi * gi
                s1[i] = m
                s2[i] = w
                th[i] = th[i] - lr * m / (fsqrt(w) + eps)
        for i in range(n):
            bad = bad | (not (fabs_(th[i]) <= big))  # NaN fails the comparison
        out[0] += sq
        out[1] += ab
        out[2] += bad
        return
    if l2 != 0 or l1 != 0:
        for i in range(n):
            t = th[i]
            sq += t * t
            ab += fabs_(t)
            g[i] = g[i] + l2 * t + (l1 if t > 0 else (-l1 if t < 0 else 0))
    if kind == RULE_SGD and mu == 0:
        for i in range(n):
            th[i] = th[i] - lr * g[i]
    elif kind == RULE_SGD and nesterov:
        for i in range(n):
            v = mu * s1[i] - lr * g[i]
            s1[i] = v
            th[i] = th[i] + mu * v - lr * g[i]
    elif kind == RULE_SGD:
        for i in range(n):
            v = mu * s1[i] - lr * g[i]
            s1[i] = v
            th[i] = th[i] + v
    elif kind == RULE_ADAGRAD:
        for i in range(n):
            s1[i] = s1[i] + g[i] * g[i]
            th[i] = th[i] - lr * g[i] / (fsqrt(s1[i]) + eps)
    elif kind == RULE_RMSPROP:
        for i in range(n):
            s1[i] = rho * s1[i] + (1 - rho) * g[i] * g[i]
            th[i] = th[i] - lr * g[i] / (fsqrt(s1[i]) + eps)
    else:  # RULE_ADADELTA
        for i in range(n):
            s1[i] = rho * s1[i] + (1 - rho) * g[i] * g[i]
            d = fsqrt(s2[i] + eps) / fsqrt(s1[i] + eps) * g[i]
            s2[i] = rho * s2[i] + (1 - rho) * d * d
            th[i] = th[i] - lr * d
    for i in range(n):
        bad = bad | (not (fabs_(th[i]) <= big))  # NaN fails the comparison
    out[0] += sq
    out[1] += ab
    out[2] += bad


cdef inline void step_chunk(floating* th, floating* g, floating* s1,
                            floating* s2, const Pieces* pc, Py_ssize_t c,
                            const Rule* rule, floating l2, floating l1,
                            double* out, Py_ssize_t first=0) noexcept nogil:
    """Chunk c's pieces, those from theta[first] on (first on a piece's
    start: the others' step was taken elsewhere)."""
    cdef Py_ssize_t p, lo, n
    out[0] = 0
    out[1] = 0
    out[2] = 0
    for p in range(pc.chunk_ptr[c], pc.chunk_ptr[c + 1]):
        lo = pc.lo[p]
        if lo < first:
            continue
        n = pc.hi[p] - lo
        if pc.is_weight[p]:
            step_span(th + lo, g + lo, s1 + lo, s2 + lo, n, rule, l2, l1, out)
        else:
            step_span(th + lo, g + lo, s1 + lo, s2 + lo, n, rule, 0, 0, out)


cdef inline bint apply_step(floating* th, floating* g, floating* s1,
                            floating* s2, const Pieces* pc, const Rule* rule,
                            floating l2, floating l1, double* part,
                            double* sq, double* ab, int n_threads,
                            Py_ssize_t first=0) noexcept nogil:
    """One update of theta[first:] (first on a piece's start). Returns
    False if it went non-finite.

    part: scratch of 3 * n_chunks doubles. sq, ab receive the weights'
    sum of squares and of magnitudes before the step.
    """
    cdef Py_ssize_t c
    if n_threads > 1 and pc.n_chunks > 1 and pc.n_chunks * CHUNK >= PAR_MIN_UPDATE:
        for c in prange(pc.n_chunks, schedule='static', num_threads=n_threads):
            step_chunk(th, g, s1, s2, pc, c, rule, l2, l1, part + 3 * c, first)
    else:
        for c in range(pc.n_chunks):
            step_chunk(th, g, s1, s2, pc, c, rule, l2, l1, part + 3 * c, first)
    return sum_parts(part, pc.n_chunks, sq, ab)


cdef inline void step_chunks(floating* th, floating* g, floating* s1,
                             floating* s2, const Pieces* pc, Py_ssize_t c0,
                             Py_ssize_t c1, const Rule* rule, floating l2,
                             floating l1, double* part) noexcept nogil:
    """Chunks c0:c1 of apply_step, on the calling thread (the two-core epoch
    gives each thread its own range); sums in part, see sum_parts."""
    cdef Py_ssize_t c
    for c in range(c0, c1):
        step_chunk(th, g, s1, s2, pc, c, rule, l2, l1, part + 3 * c)


cdef inline bint sum_parts(const double* part, Py_ssize_t n_chunks,
                           double* sq, double* ab) noexcept nogil:
    """Add the chunks' sums in chunk order (whichever threads ran them):
    sq, ab as apply_step returns them; False if the step went non-finite."""
    cdef Py_ssize_t c
    cdef double bad = 0
    sq[0] = 0
    ab[0] = 0
    for c in range(n_chunks):
        sq[0] += part[3 * c]
        ab[0] += part[3 * c + 1]
        bad += part[3 * c + 2]
    return bad == 0
