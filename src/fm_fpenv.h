/* Subnormal numbers flushed to zero while an epoch runs.

   Late in a long fit, small gradients, Adam moments and activations drift
   into the subnormal range, where every x86 multiply-add that meets one
   takes a microcode assist (about a hundred cycles): W2 float64 epochs ran
   1.1 ms early in a fit and 1.6 ms after 350 epochs. With FTZ (results
   that would be subnormal become zero) and DAZ (subnormal inputs read as
   zero) set in MXCSR the epoch keeps its speed; the values lost are below
   1e-38 (float32) and 1e-308 (float64). MXCSR is per thread: each thread
   that computes sets it and restores the caller's setting afterwards.
   On aarch64 the FZ bit of FPCR does the same; elsewhere nothing changes. */
#ifndef FM_FPENV_H
#define FM_FPENV_H

#if defined(__x86_64__) || (defined(__i386__) && defined(__SSE2__))
#include <xmmintrin.h>
static inline unsigned long fm_ftz_enter(void) {
    unsigned int old = _mm_getcsr();
    _mm_setcsr(old | 0x8040u);  /* FTZ (bit 15) | DAZ (bit 6) */
    return old;
}
static inline void fm_ftz_leave(unsigned long old) { _mm_setcsr((unsigned int)old); }
#elif defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))
static inline unsigned long fm_ftz_enter(void) {
    unsigned long old;
    __asm__ __volatile__("mrs %0, fpcr" : "=r"(old));
    __asm__ __volatile__("msr fpcr, %0" : : "r"(old | (1UL << 24)));
    return old;
}
static inline void fm_ftz_leave(unsigned long old) {
    __asm__ __volatile__("msr fpcr, %0" : : "r"(old));
}
#else
static inline unsigned long fm_ftz_enter(void) { return 0; }
static inline void fm_ftz_leave(unsigned long old) { (void)old; }
#endif

#endif
