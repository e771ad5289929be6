# A cache hint: prefetch(p) asks for the line holding p ahead of its use
# (GCC/Clang's builtin; no effect on results).

cdef extern from *:
    """
    #define FASTMLP_PREFETCH(p) __builtin_prefetch(p)
    """
    void prefetch "FASTMLP_PREFETCH"(const void* p) noexcept nogil
