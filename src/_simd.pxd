# Which vector instruction set the hand-written kernels use, decided once
# per process at run time: the build targets the baseline x86-64 ISA (SSE2),
# so AVX2/FMA and AVX-512 code is compiled per function with
# __attribute__((target(...))) and only called when the CPU has it.
#
# Levels: FM_ISA_BASE (no hand-written kernel: callers use BLAS or their
# plain loops), FM_ISA_AVX2 (AVX2 + FMA), FM_ISA_AVX512 (AVX-512 F, VL, DQ,
# BW). FASTMLP_NO_AVX512=1 in the environment caps the level at AVX2 and
# FASTMLP_NO_AVX2=1 at the baseline (the same switch as the sparse kernels,
# src/_sparse_layers.pxd); fm_set_isa caps it from code (tests).
cdef extern from *:
    """
    #ifndef FM_SIMD_DEFINED
    #define FM_SIMD_DEFINED
    #include <stdlib.h>
    #define FM_ISA_BASE 0
    #define FM_ISA_AVX2 1
    #define FM_ISA_AVX512 2
    #if defined(__GNUC__) && !defined(FASTMLP_PLAIN_C) && defined(__x86_64__)
    #define FM_HAVE_X86_KERNELS 1
    #include <immintrin.h>
    #define FM_TARGET_AVX2 __attribute__((target("avx2,fma")))
    #define FM_TARGET_AVX512 __attribute__((target("avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")))
    #endif

    static int fm_isa_cpu = -1;   /* racing first calls write the same value */
    static int fm_isa_cap = FM_ISA_AVX512;

    static int fm_env_on(const char* name) {
        const char* v = getenv(name);
        return v && v[0] && v[0] != '0';
    }

    static int fm_isa(void) {
        if (fm_isa_cpu < 0) {
            int level = FM_ISA_BASE;
    #ifdef FM_HAVE_X86_KERNELS
            __builtin_cpu_init();
            if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")
                    && !fm_env_on("FASTMLP_NO_AVX2")) {
                level = FM_ISA_AVX2;
                if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")
                        && __builtin_cpu_supports("avx512dq")
                        && __builtin_cpu_supports("avx512bw")
                        && !fm_env_on("FASTMLP_NO_AVX512"))
                    level = FM_ISA_AVX512;
            }
    #endif
            fm_isa_cpu = level;
        }
        return fm_isa_cpu < fm_isa_cap ? fm_isa_cpu : fm_isa_cap;
    }

    /* Cap the level (FM_ISA_AVX512 lifts the cap); returns the previous cap. */
    static __attribute__((unused)) int fm_set_isa(int cap) {
        int old = fm_isa_cap;
        fm_isa_cap = cap;
        return old;
    }
    #endif
    """
    int FM_ISA_BASE
    int FM_ISA_AVX2
    int FM_ISA_AVX512
    int fm_isa() noexcept nogil
    int fm_set_isa(int cap) noexcept nogil
