# Arrays on 64-byte (cache-line) boundaries, owning their memory.
#
# numpy's allocator gives 16-byte alignment: large blocks come from mmap at
# a page boundary plus malloc's 16-byte header, so a fit's parameter vector
# and workspaces usually start 16 bytes into a cache line and every vector
# load of a row that starts there straddles two lines. On the small networks
# of W2 and W3 in float64 that made the epoch 6% slower than with aligned
# buffers (benchmarks/compare.py workloads, same data and seed).
#
# numpy (1.22+) lets a context install its own data allocator
# (PyDataMem_SetHandler, NEP 49): the arrays below are made under one that
# aligns, and are ordinary arrays owning their data (views keep .base, pickle
# and copies behave as usual; a copy is aligned only by chance).
cimport numpy as cnp
from cpython.pycapsule cimport PyCapsule_New

import numpy as np

cnp.import_array()

cdef extern from *:
    """
    #include <stdlib.h>
    #include <string.h>
    #include <stdint.h>
    /* Each block is over-allocated by 64 bytes; the two words before the
       aligned pointer hold malloc's pointer and the requested size (realloc
       needs it to copy). */
    #define FM_ALIGN 64
    static void* fm_al_wrap(void* raw, size_t size) {
        uintptr_t p;
        if (raw == NULL) return NULL;
        p = ((uintptr_t)raw + 2 * sizeof(void*) + FM_ALIGN - 1) & ~(uintptr_t)(FM_ALIGN - 1);
        ((void**)p)[-1] = raw;
        ((size_t*)p)[-2] = size;
        return (void*)p;
    }
    static void* fm_al_malloc(void* ctx, size_t size) {
        (void)ctx;
        return fm_al_wrap(malloc(size + FM_ALIGN + 2 * sizeof(void*)), size);
    }
    static void* fm_al_calloc(void* ctx, size_t nelem, size_t elsize) {
        size_t size;
        (void)ctx;
        if (elsize && nelem > (SIZE_MAX - FM_ALIGN - 2 * sizeof(void*)) / elsize) return NULL;
        size = nelem * elsize;
        return fm_al_wrap(calloc(size + FM_ALIGN + 2 * sizeof(void*), 1), size);
    }
    static void fm_al_free(void* ctx, void* ptr, size_t size) {
        (void)ctx; (void)size;
        if (ptr != NULL) free(((void**)ptr)[-1]);
    }
    static void* fm_al_realloc(void* ctx, void* ptr, size_t new_size) {
        void* q;
        size_t old;
        if (ptr == NULL) return fm_al_malloc(ctx, new_size);
        q = fm_al_malloc(ctx, new_size);
        if (q == NULL) return NULL;
        old = ((size_t*)ptr)[-2];
        memcpy(q, ptr, old < new_size ? old : new_size);
        fm_al_free(ctx, ptr, old);
        return q;
    }
    static PyDataMem_Handler fm_aligned_handler = {
        "fastmlp_aligned_64", 1,
        {NULL, fm_al_malloc, fm_al_calloc, fm_al_realloc, fm_al_free}};
    """
    ctypedef struct PyDataMem_Handler:
        pass
    PyDataMem_Handler fm_aligned_handler
    object PyDataMem_SetHandler(object handler)

cdef object _HANDLER = PyCapsule_New(<void*>&fm_aligned_handler, "mem_handler", NULL)

ALIGNMENT = 64


def _under_handler(make, shape, dtype):
    old = PyDataMem_SetHandler(_HANDLER)
    try:
        return make(shape, dtype=dtype)
    finally:
        PyDataMem_SetHandler(old)


def empty(shape, dtype):
    """np.empty(shape, dtype), its data on a 64-byte boundary."""
    return _under_handler(np.empty, shape, dtype)


def zeros(shape, dtype):
    """np.zeros(shape, dtype), its data on a 64-byte boundary."""
    return _under_handler(np.zeros, shape, dtype)
