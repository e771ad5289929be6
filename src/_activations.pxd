# Element-wise activations, fused with the bias add, and their derivatives.
#
# Derivatives are written in terms of the activation's *output* a = phi(z),
# as backprop keeps only outputs: logistic a(1-a), tanh 1-a^2, relu [a>0],
# leaky relu 1 or slope (slope >= 0 keeps the sign of z in a).
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport INFINITY
from _mathf cimport fexp, ftanh, logistic

cdef enum:
    ACT_IDENTITY = 0
    ACT_LOGISTIC = 1
    ACT_TANH = 2
    ACT_RELU = 3
    ACT_LEAKY_RELU = 4
    ACT_SOFTMAX = 5
    ACT_EXP = 6

# Below this many elements an OpenMP region costs more than it saves.
cdef enum:
    PAR_MIN = 32768


cdef inline floating bias_row_max(floating* z, const floating* b,
                                  Py_ssize_t n) noexcept nogil:
    """z += b; return the row's largest value (a softmax's shift)."""
    cdef Py_ssize_t j
    cdef floating m = -INFINITY
    for j in range(n):
        z[j] = z[j] + b[j]
        if z[j] > m:
            m = z[j]
    return m


cdef inline void bias_act_row(floating* z, const floating* b, Py_ssize_t n,
                              int act, floating slope) noexcept nogil:
    """z = act(z + b) for one row (softmax normalises the row)."""
    cdef Py_ssize_t j
    cdef floating v, m, s
    if act == ACT_IDENTITY:
        for j in range(n):
            z[j] = z[j] + b[j]
    elif act == ACT_RELU:
        for j in range(n):
            v = z[j] + b[j]
            z[j] = v if v > 0 else 0
    elif act == ACT_LEAKY_RELU:
        for j in range(n):
            v = z[j] + b[j]
            z[j] = v if v > 0 else slope * v
    elif act == ACT_LOGISTIC:
        for j in range(n):
            z[j] = logistic(z[j] + b[j])
    elif act == ACT_TANH:
        for j in range(n):
            z[j] = ftanh(z[j] + b[j])
    elif act == ACT_EXP:
        for j in range(n):
            z[j] = fexp(z[j] + b[j])
    elif act == ACT_SOFTMAX:
        m = bias_row_max(z, b, n)
        s = 0
        for j in range(n):
            z[j] = fexp(z[j] - m)
            s = s + z[j]
        s = 1 / s
        for j in range(n):
            z[j] = z[j] * s


cdef inline void bias_act(floating* Z, const floating* b, Py_ssize_t rows,
                          Py_ssize_t cols, int act, floating slope,
                          int n_threads) noexcept nogil:
    """Z = act(Z + b) on a row-major rows x cols block, in place."""
    cdef Py_ssize_t r
    if n_threads > 1 and rows > 1 and rows * cols >= PAR_MIN:
        for r in prange(rows, schedule='static', num_threads=n_threads):
            bias_act_row(Z + r * cols, b, cols, act, slope)
    else:
        for r in range(rows):
            bias_act_row(Z + r * cols, b, cols, act, slope)


cdef inline void deriv_mul_span(const floating* A, const floating* T,
                                floating* out, Py_ssize_t n, int act,
                                floating slope) noexcept nogil:
    """out = T * phi'(z), phi' read off A = phi(z); out may be A or T."""
    cdef Py_ssize_t i
    cdef floating t
    if act == ACT_IDENTITY:
        if out != T:
            for i in range(n):
                out[i] = T[i]
    elif act == ACT_RELU:
        # T[i] read unconditionally: the select then compiles to a vector
        # blend instead of a branch that mispredicts on random signs.
        for i in range(n):
            t = T[i]
            out[i] = t if A[i] > 0 else 0
    elif act == ACT_LEAKY_RELU:
        for i in range(n):
            t = T[i]
            out[i] = t if A[i] > 0 else slope * t
    elif act == ACT_LOGISTIC:
        for i in range(n):
            out[i] = T[i] * A[i] * (1 - A[i])
    elif act == ACT_TANH:
        for i in range(n):
            out[i] = T[i] * (1 - A[i] * A[i])
    elif act == ACT_EXP:
        for i in range(n):
            out[i] = T[i] * A[i]


cdef inline void deriv_mul(const floating* A, const floating* T,
                           floating* out, Py_ssize_t n, int act,
                           floating slope, int n_threads) noexcept nogil:
    """out = T * phi'(z) with phi' read off A = phi(z), in parallel chunks
    for large n; out may be A or T."""
    cdef Py_ssize_t c, n_chunks, lo
    if n_threads > 1 and n >= PAR_MIN:
        n_chunks = (n + 4095) // 4096
        for c in prange(n_chunks, schedule='static', num_threads=n_threads):
            lo = c * 4096
            deriv_mul_span(A + lo, T + lo, out + lo, min(4096, n - lo), act,
                           slope)
    else:
        deriv_mul_span(A, T, out, n, act, slope)


cdef inline void deriv_set(const floating* T, floating* A, Py_ssize_t n,
                           int act, floating slope, int n_threads) noexcept nogil:
    """A = T * phi'(z), with phi' read off A = phi(z): the delta overwrites
    the activations it is computed from, which backprop no longer needs."""
    deriv_mul(A, T, A, n, act, slope, n_threads)
