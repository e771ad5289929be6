# A small, fast, seedable generator (splitmix64) whose whole state is one
# uint64: it is stored with the model, so a resumed fit shuffles exactly as
# an uninterrupted one would.

cdef inline unsigned long long next_u64(unsigned long long* s) noexcept nogil:
    cdef unsigned long long z
    s[0] += <unsigned long long>0x9E3779B97F4A7C15
    z = s[0]
    z = (z ^ (z >> 30)) * <unsigned long long>0xBF58476D1CE4E5B9
    z = (z ^ (z >> 27)) * <unsigned long long>0x94D049BB133111EB
    return z ^ (z >> 31)


# Row indices: 2 bytes up to 65536 rows, 4 below 2**31, 8 otherwise. The
# draws do not depend on the width: all shuffle alike.
ctypedef fused index_t:
    unsigned short
    int
    long long


cdef inline void shuffle(index_t* a, Py_ssize_t n,
                         unsigned long long* s) noexcept nogil:
    """Fisher-Yates; the modulo bias is below n / 2**64."""
    cdef Py_ssize_t i, j
    cdef index_t t
    for i in range(n - 1, 0, -1):
        j = <Py_ssize_t>(next_u64(s) % <unsigned long long>(i + 1))
        t = a[i]
        a[i] = a[j]
        a[j] = t
