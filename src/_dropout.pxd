# Inverted dropout on hidden layers, for the training epoch only.
#
# Forward: each hidden activation is kept with probability keep[l] and then
# scaled by 1/keep[l], or set to 0; the 0/1 mask is stored so that backward
# can route the gradient through the same units. Backward: the gradient with
# respect to the masked output is masked and scaled the same way, and the
# stored (masked) activation is scaled back to phi(z), from which the
# activation derivative is read (dropped units have a zero gradient, so
# their derivative does not matter).
#
# Random numbers come from one splitmix64 stream per (batch, layer, row),
# seeded by hashing the batch's key with the layer and row: the masks do not
# depend on the thread count or on how OpenMP schedules the rows.
from cython cimport floating
from cython.parallel cimport prange
from _rng cimport next_u64
from _activations cimport PAR_MIN, deriv_mul_span


cdef struct Dropout:
    const double* keep          # keep probability per hidden layer (1: off)
    const long long* unit_off   # mask of hidden layer l: mask + B * unit_off[l]
    unsigned char* mask         # batch x (sum of hidden units), 1 = kept
    unsigned long long key      # this batch's seed, drawn once per batch


cdef inline unsigned long long row_seed(unsigned long long key, int layer,
                                        Py_ssize_t row) noexcept nogil:
    """A well-mixed seed per (batch key, layer, row): splitmix64's finaliser
    over a combination that differs for every (layer, row) pair."""
    cdef unsigned long long z = key ^ (<unsigned long long>row * <unsigned long long>0xD1B54A32D192ED03
                                       + <unsigned long long>layer * <unsigned long long>0x8CB92BA72F3D8DD7)
    return next_u64(&z)


cdef inline void dropout_row(floating* z, unsigned char* m, Py_ssize_t n,
                             unsigned long long seed,
                             unsigned long long threshold,
                             floating scale) noexcept nogil:
    # Two 32-bit uniform draws per 64-bit output; kept iff u < keep * 2**32.
    cdef Py_ssize_t j
    cdef unsigned long long x
    for j in range(0, n - 1, 2):
        x = next_u64(&seed)
        m[j] = <unsigned int>x < threshold
        m[j + 1] = (x >> 32) < threshold
    if n % 2:
        x = next_u64(&seed)
        m[n - 1] = <unsigned int>x < threshold
    for j in range(n):
        z[j] = z[j] * scale if m[j] else 0


cdef inline void dropout_rows(const Dropout* dp, int layer, floating* Z,
                              Py_ssize_t B, Py_ssize_t r0, Py_ssize_t r1,
                              Py_ssize_t n) noexcept nogil:
    """dropout_forward on rows r0:r1 of Z (B x n, Z at row 0), on the
    calling thread: every row draws from its own stream, so the two-core
    epoch's threads give their rows the masks one thread gives them."""
    cdef double keep = dp.keep[layer]
    if keep >= 1:
        return
    cdef unsigned char* mask = dp.mask + B * dp.unit_off[layer]
    cdef unsigned long long threshold = <unsigned long long>(keep * 4294967296.0)
    cdef floating scale = <floating>(1.0 / keep)
    cdef Py_ssize_t r
    for r in range(r0, r1):
        dropout_row(Z + r * n, mask + r * n, n, row_seed(dp.key, layer, r),
                    threshold, scale)


cdef inline void dropout_forward(const Dropout* dp, int layer, floating* Z,
                                 Py_ssize_t B, Py_ssize_t n,
                                 int n_threads) noexcept nogil:
    """Mask and rescale hidden layer `layer`'s activations Z (B x n)."""
    cdef Py_ssize_t r
    if dp.keep[layer] >= 1:
        return
    if n_threads > 1 and B > 1 and B * n >= PAR_MIN:
        for r in prange(B, schedule='static', num_threads=n_threads):
            dropout_rows(dp, layer, Z, B, r, r + 1, n)
    else:
        dropout_rows(dp, layer, Z, B, 0, B, n)


cdef inline void unmask_span(floating* T, floating* A,
                             const unsigned char* m, Py_ssize_t n,
                             floating scale, floating back) noexcept nogil:
    # Branch-free (selects), so the loop vectorises; dropped units hold 0 in
    # A, which the rescaling leaves at 0.
    cdef Py_ssize_t i
    for i in range(n):
        T[i] = T[i] * scale if m[i] else 0
        A[i] = A[i] * back


cdef inline void dropout_backward(const Dropout* dp, int layer, floating* T,
                                  floating* A, Py_ssize_t B, Py_ssize_t n,
                                  int n_threads) noexcept nogil:
    """Before the activation derivative of hidden layer `layer`: T (the
    gradient w.r.t. the masked output, B x n) gets the forward mask and
    scale; A (the masked output) is scaled back to phi(z)."""
    cdef double keep = dp.keep[layer]
    if keep >= 1:
        return
    cdef const unsigned char* m = dp.mask + B * dp.unit_off[layer]
    cdef floating scale = <floating>(1.0 / keep)
    cdef floating back = <floating>keep
    cdef Py_ssize_t c, lo, total = B * n
    if n_threads > 1 and total >= PAR_MIN:
        for c in prange((total + 4095) // 4096, schedule='static',
                        num_threads=n_threads):
            lo = c * 4096
            unmask_span(T + lo, A + lo, m + lo, min(4096, total - lo), scale,
                        back)
    else:
        unmask_span(T, A, m, total, scale, back)


# backward()'s dropout step and activation derivative for rows r0:r1 of a
# batch, on the calling thread (the two-core epoch, src/_epoch.pyx).


cdef inline void dropout_deriv_rows(const Dropout* dp, int layer, floating* T,
                                    const floating* A, floating* back_row,
                                    Py_ssize_t B, Py_ssize_t r0, Py_ssize_t r1,
                                    Py_ssize_t n, int act,
                                    floating slope) noexcept nogil:
    """dropout_backward then the activation derivative (deriv_set), on rows
    r0:r1 of T and A (B x n, at row 0), leaving A masked: the two-core
    epoch's gradient stage still reads it. A's rescaled row goes to
    back_row (n values) instead, with the same arithmetic."""
    cdef double keep = dp.keep[layer]
    cdef const unsigned char* m = dp.mask + B * dp.unit_off[layer]
    cdef floating scale = <floating>(1.0 / keep)
    cdef floating back = <floating>keep
    cdef Py_ssize_t r, i
    cdef floating* t
    cdef const floating* a
    cdef const unsigned char* mr
    for r in range(r0, r1):
        t = T + r * n
        a = A + r * n
        mr = m + r * n
        for i in range(n):
            t[i] = t[i] * scale if mr[i] else 0
            back_row[i] = a[i] * back
        deriv_mul_span(back_row, t, t, n, act, slope)
