# Output layer for training: bias, output activation, loss and the output
# delta dL/dz in one pass over each row, in numerically stable forms
# (log-sum-exp for softmax, softplus for the logistic, no log(0)).
#
# Each row's loss is written to its own slot and summed afterwards in a fixed
# order, so the result does not depend on how OpenMP schedules the rows.
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport log
from _activations cimport (ACT_IDENTITY, ACT_LOGISTIC, ACT_SOFTMAX, ACT_EXP, PAR_MIN,
                           bias_row_max)
from _mathf cimport fexp, flog, logistic, softplus
from _cache cimport prefetch
from _vexp cimport fm_softmax_lanes, fm_softmax_lanes_f, fm_softmax_lanes_take

# Class-index targets as the epoch reads them: 1, 2, 4 or 8 bytes an index
# (uint8 up to 256 classes, uint16 up to 65536, int32, or a user's int64
# labels read in place), so that the per-sample array is as small as the
# class count allows. p is NULL when the targets are a matrix Y instead.
cdef struct Classes:
    const void* p
    int size


cdef inline Classes no_classes() noexcept nogil:
    """Targets given as a matrix."""
    cdef Classes c
    c.p = NULL
    c.size = 0
    return c


cdef inline Py_ssize_t class_at(Classes c, Py_ssize_t i) noexcept nogil:
    if c.size == 1:
        return (<const unsigned char*>c.p)[i]
    if c.size == 2:
        return (<const unsigned short*>c.p)[i]
    if c.size == 4:
        return (<const int*>c.p)[i]
    return <Py_ssize_t>(<const long long*>c.p)[i]


cdef enum:
    LOSS_SQUARED = 0
    LOSS_LOG = 1           # cross-entropy (softmax) or binary log-loss (logistic)
    LOSS_HINGE = 2         # multiclass Crammer-Singer on one-hot targets
    LOSS_HINGE_BINARY = 3  # per-output binary hinge (binary and multilabel)
    LOSS_POISSON = 4       # half Poisson deviance with a log link


cdef inline double loss_delta_row(floating* z, const floating* b,
                                  const floating* y, Py_ssize_t k, int loss,
                                  int out_act, floating w) noexcept nogil:
    """Turn the pre-bias outputs z into w * dL/dz in place; return w * L."""
    cdef Py_ssize_t j, t, jm
    cdef floating m, s, lse, ysum, yz, g, gp, p
    cdef double ell = 0
    if out_act == ACT_SOFTMAX:
        m = bias_row_max(z, b, k)
        s = 0
        if loss == LOSS_LOG:
            # One exp per output, not two (expf was a tenth of a W2 epoch):
            # z keeps exp(z - m), and sum_j y_j (lse - z_j) is taken as
            # ysum lse - sum_j y_j z_j (the same operations for one-hot y).
            ysum = 0
            yz = 0
            for j in range(k):
                ysum = ysum + y[j]
                yz = yz + y[j] * z[j]
                z[j] = fexp(z[j] - m)
                s = s + z[j]
            lse = m + flog(s)
            ell = ysum * lse - yz
            s = ysum / s
            for j in range(k):
                z[j] = w * (s * z[j] - y[j])
            return w * ell
        # squared error on the probabilities, through the softmax Jacobian
        for j in range(k):
            s = s + fexp(z[j] - m)
        lse = m + flog(s)
        gp = 0
        for j in range(k):
            p = fexp(z[j] - lse)
            g = p - y[j]
            ell += 0.5 * g * g
            gp = gp + g * p
            z[j] = p
        for j in range(k):
            z[j] = w * z[j] * ((z[j] - y[j]) - gp)
    elif out_act == ACT_LOGISTIC:
        for j in range(k):
            z[j] = z[j] + b[j]
            if loss == LOSS_LOG:
                ell += softplus(z[j]) - y[j] * z[j]
                z[j] = w * (logistic(z[j]) - y[j])
            else:
                p = logistic(z[j])
                g = p - y[j]
                ell += 0.5 * g * g
                z[j] = w * g * p * (1 - p)
    elif out_act == ACT_EXP:  # Poisson, log link
        for j in range(k):
            z[j] = z[j] + b[j]
            p = fexp(z[j])
            if y[j] > 0:
                ell += y[j] * log(y[j]) - y[j]
            ell += p - y[j] * z[j]
            z[j] = w * (p - y[j])
    else:  # identity output
        if loss == LOSS_SQUARED:
            for j in range(k):
                g = z[j] + b[j] - y[j]
                ell += 0.5 * g * g
                z[j] = w * g
        elif loss == LOSS_HINGE_BINARY:
            for j in range(k):
                g = 2 * y[j] - 1  # target sign
                m = 1 - g * (z[j] + b[j])
                if m > 0:
                    ell += m
                    z[j] = -w * g
                else:
                    z[j] = 0
        else:  # Crammer-Singer: 1 + max_{j != t} z_j - z_t
            t = 0
            for j in range(k):
                z[j] = z[j] + b[j]
                if y[j] > y[t]:
                    t = j
            jm = 0 if t != 0 else 1
            for j in range(k):
                if j != t and z[j] > z[jm]:
                    jm = j
            m = 1 + z[jm] - z[t]
            for j in range(k):
                z[j] = 0
            if m > 0:
                ell = m
                z[jm] = w
                z[t] = -w
    return w * ell


cdef inline double class_loss_delta_row(floating* z, const floating* b,
                                        int t, Py_ssize_t k, int out_act,
                                        floating w) noexcept nogil:
    """loss_delta_row for LOSS_LOG with the target given as a class index t:
    softmax cross-entropy (k >= 2 outputs) or the binary logistic log-loss
    (k == 1, t in {0, 1}). Same values as the one-hot row, without reading
    (or storing) the n_samples x k indicator matrix; the softmax takes k
    exponentials instead of 2 k."""
    cdef Py_ssize_t j
    cdef floating m, s, zt, inv
    if out_act == ACT_SOFTMAX:
        m = bias_row_max(z, b, k)
        zt = z[t]
        s = 0
        for j in range(k):
            z[j] = fexp(z[j] - m)
            s = s + z[j]
        inv = w / s
        for j in range(k):
            z[j] = z[j] * inv
        z[t] = z[t] - w
        return w * ((m + flog(s)) - zt)
    zt = z[0] + b[0]  # logistic, one output
    z[0] = w * (logistic(zt) - t)
    return w * (softplus(zt) - t * zt)


cdef inline double row_loss_delta(floating* z, const floating* b,
                                  const floating* Y, Classes cls,
                                  Py_ssize_t i, Py_ssize_t k, int loss,
                                  int out_act, floating w) noexcept nogil:
    """The row of sample i against Y[i] or, when cls.p is not NULL, class
    index i of cls."""
    if cls.p != NULL:
        return class_loss_delta_row(z, b, <int>class_at(cls, i), k, out_act, w)
    return loss_delta_row(z, b, Y + i * k, k, loss, out_act, w)


cdef inline void softmax_lanes(floating* Z, const floating* b, Classes cls,
                               const floating* sw, const long long* rows,
                               double inv_norm, Py_ssize_t n, Py_ssize_t k,
                               double* loss) noexcept nogil:
    if floating is double:
        fm_softmax_lanes(Z, b, cls.p, cls.size, sw, rows, inv_norm, n, k, loss)
    else:
        fm_softmax_lanes_f(Z, b, cls.p, cls.size, sw, rows, inv_norm, n, k, loss)


cdef inline double output_loss_delta(
        floating* Z, const floating* b, const floating* Y, Classes cls,
        Py_ssize_t k, const floating* sw, const long long* rows,
        Py_ssize_t n_rows, double inv_norm, int loss, int out_act,
        double* row_loss, int n_threads) noexcept nogil:
    """Rows r of Z hold outputs of samples rows[r] (targets Y[rows[r]], or
    with cls.p not NULL the class indices cls[rows[r]]: LOSS_LOG only, Y
    unused).

    Z becomes the output delta scaled by sw[rows[r]] * inv_norm; returns the
    scaled loss summed over the rows.
    """
    cdef Py_ssize_t r, i, c
    cdef floating w
    cdef double total = 0
    # The rows' targets and weights are scattered over arrays the batch's
    # input rows have just pushed out of cache: ask for them all at once
    # instead of waiting on one miss per row.
    for r in range(n_rows):
        if cls.p != NULL:
            prefetch(<const char*>cls.p + rows[r] * cls.size)
        else:
            prefetch(Y + rows[r] * k)
        if sw != NULL:
            prefetch(sw + rows[r])
    if cls.p != NULL and out_act == ACT_SOFTMAX and fm_softmax_lanes_take(k):
        # a row to a vector lane (src/_vexp.pxd); blocks of eight rows on
        # the threads
        if n_threads > 1 and n_rows > 8 and n_rows * k >= PAR_MIN // 4:
            for c in prange((n_rows + 7) // 8, schedule='static',
                            num_threads=n_threads):
                softmax_lanes(Z + 8 * c * k, b, cls, sw, rows + 8 * c, inv_norm,
                              min(8, n_rows - 8 * c), k, row_loss + 8 * c)
        else:
            softmax_lanes(Z, b, cls, sw, rows, inv_norm, n_rows, k, row_loss)
    elif n_threads > 1 and n_rows > 1 and n_rows * k >= PAR_MIN // 4:
        for r in prange(n_rows, schedule='static', num_threads=n_threads):
            i = rows[r]
            row_loss[r] = row_loss_delta(
                Z + r * k, b, Y, cls, i, k, loss, out_act,
                <floating>(inv_norm * (sw[i] if sw != NULL else 1)))
    else:
        for r in range(n_rows):
            i = rows[r]
            row_loss[r] = row_loss_delta(
                Z + r * k, b, Y, cls, i, k, loss, out_act,
                <floating>(inv_norm * (sw[i] if sw != NULL else 1)))
    for r in range(n_rows):
        total += row_loss[r]
    return total
