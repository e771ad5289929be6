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


# Row indices: 2 bytes up to 65536 rows, 4 below 2**31, 8 otherwise (and
# Perm's table of bytes). The draws do not depend on the width: all shuffle
# alike.
ctypedef fused index_t:
    unsigned char
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


# A keyed permutation of range(n) that needs no array: what a fit of all its
# rows shuffles, so that its memory beyond X does not grow with n (the
# issue's bound has no per-sample term; an index array was 2 bytes a row).
# A Feistel network on [0, 2**k), 2**k the least power of two >= n, split
# into a low and a high half of k // 2 and k - k // 2 bits: each round xors
# one half with a hash of the other, (a * v + b) >> (64 - bits) with keys a
# (odd) and b, a bijection whatever the hash. Values >= n walk the cycle on
# until one is below n (cycle walking): a bijection of range(n), in fewer
# than two evaluations on average as 2**k < 2n. Six rounds: in simulations
# over 4,000 keys, four left rows 16 apart 13% more often in one batch of
# 32 than chance at n = 300 (6% for rows 1 apart at n = 4000); six and
# eight were within 3%, and each row's position uniform (chi-square).
# Up to PERM_TABLE rows, where halves of a few bits mix poorly in any few
# rounds, a Fisher-Yates table of bytes holds the order instead.
cdef enum:
    PERM_ROUNDS = 6
    PERM_TABLE = 256

cdef struct Perm:
    unsigned long long a[PERM_ROUNDS]
    unsigned long long b[PERM_ROUNDS]
    unsigned long long n, lo_mask
    int lo_bits, lo_shift, hi_shift
    bint identity          # no shuffle: range(n) in order
    bint tabled            # n <= PERM_TABLE: the order is table[:n]
    unsigned char table[PERM_TABLE]


cdef inline void perm_init(Perm* p, Py_ssize_t n, unsigned long long* s,
                           bint shuffled) noexcept nogil:
    """An epoch's order of range(n): drawn from stream s when shuffled (s is
    not touched otherwise; range(n) in order)."""
    cdef int k = 0, r
    cdef Py_ssize_t i
    while k < 62 and (<unsigned long long>1 << k) < <unsigned long long>n:
        k += 1
    p.n = n
    p.lo_bits = k // 2
    p.lo_mask = (<unsigned long long>1 << p.lo_bits) - 1
    p.lo_shift = 64 - p.lo_bits
    p.hi_shift = 64 - (k - p.lo_bits)
    p.identity = not shuffled
    p.tabled = shuffled and n <= PERM_TABLE
    if p.identity:
        return
    if p.tabled:
        for i in range(n):
            p.table[i] = <unsigned char>i
        shuffle(&p.table[0], n, s)
        return
    for r in range(PERM_ROUNDS):
        p.a[r] = next_u64(s) | 1
        p.b[r] = next_u64(s)


cdef inline long long perm_at(const Perm* p, unsigned long long i) noexcept nogil:
    """The i-th row of the epoch's order (i < p.n)."""
    cdef unsigned long long lo, hi, x = i
    cdef int r
    if p.identity:
        return <long long>i
    if p.tabled:
        return p.table[i]
    while True:
        lo = x & p.lo_mask
        hi = x >> p.lo_bits
        for r in range(0, PERM_ROUNDS, 2):
            # n > PERM_TABLE: both halves have 4 bits or more, so neither
            # shift is by 64.
            lo ^= (p.a[r] * hi + p.b[r]) >> p.lo_shift
            hi ^= (p.a[r + 1] * lo + p.b[r + 1]) >> p.hi_shift
        x = (hi << p.lo_bits) | lo
        if x < p.n:
            return <long long>x
