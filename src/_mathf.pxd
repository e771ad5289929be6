# Scalar math in the precision of the fused type: float kernels call the
# float libm functions so float32 training never round-trips through double.
from cython cimport floating
from libc.math cimport exp, expf, log, logf, log1p, log1pf, tanh, tanhf
from libc.math cimport sqrt, sqrtf, fabs, fabsf


cdef inline floating fexp(floating x) noexcept nogil:
    if floating is float:
        return expf(x)
    else:
        return exp(x)


cdef inline floating flog(floating x) noexcept nogil:
    if floating is float:
        return logf(x)
    else:
        return log(x)


cdef inline floating flog1p(floating x) noexcept nogil:
    if floating is float:
        return log1pf(x)
    else:
        return log1p(x)


cdef inline floating ftanh(floating x) noexcept nogil:
    if floating is float:
        return tanhf(x)
    else:
        return tanh(x)


cdef inline floating fsqrt(floating x) noexcept nogil:
    if floating is float:
        return sqrtf(x)
    else:
        return sqrt(x)


cdef inline floating fabs_(floating x) noexcept nogil:
    if floating is float:
        return fabsf(x)
    else:
        return fabs(x)


cdef inline floating logistic(floating z) noexcept nogil:
    # exp(-z) overflows to inf for very negative z, giving exactly 0: no NaN.
    return 1 / (1 + fexp(-z))


cdef inline floating softplus(floating z) noexcept nogil:
    """log(1 + exp(z)) without overflow."""
    if z > 0:
        return z + flog1p(fexp(-z))
    return flog1p(fexp(z))
