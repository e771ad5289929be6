/* A small sense-reversing spin barrier for the threads of one parallel
   region (src/_epoch.pyx's two-core epoch).

   OpenMP's own barrier, under the OMP_WAIT_POLICY=PASSIVE the package sets
   (fastmlp/__init__.py), puts a waiting thread to sleep on a futex: a wake-up
   costs tens of microseconds, as much as a whole W2 mini-batch. Here a
   waiting thread spins on one cache line, with the pause instruction, for a
   bounded count (FM_BARRIER_SPINS pauses, 2-30 us: a pause takes 10-140
   cycles depending on the x86 core) and then calls sched_yield() between
   looks, so that a partner
   thread that lost its core (another process busy on it) gets the core
   back instead of this thread burning it forever.

   The last thread to arrive resets the count and flips the shared sense;
   the others wait for the flip. Arrival is an acquire-release read-modify-
   write and the flip a release store read with acquire loads, so everything
   a thread wrote before the barrier is visible to every thread after it.

   GCC and Clang only (the __atomic builtins); FM_HAVE_SPIN_BARRIER is 0
   elsewhere and callers must not use the barrier then. */
#ifndef FM_BARRIER_H
#define FM_BARRIER_H

#if defined(__GNUC__) || defined(__clang__)
#define FM_HAVE_SPIN_BARRIER 1
#include <sched.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define FM_BARRIER_PAUSE() _mm_pause()
#elif defined(__aarch64__)
#define FM_BARRIER_PAUSE() __asm__ __volatile__("yield")
#else
#define FM_BARRIER_PAUSE() ((void)0)
#endif

#ifndef FM_BARRIER_SPINS
#define FM_BARRIER_SPINS 512
#endif

/* One step of waiting: a pause for the first FM_BARRIER_SPINS steps, then
   a yield of the core. */
static inline void fm_backoff(unsigned* spins) {
    if (*spins < FM_BARRIER_SPINS) {
        FM_BARRIER_PAUSE();
        (*spins)++;
    } else {
        sched_yield();
    }
}

typedef struct {
    /* count and sense on their own cache lines: arrivals do not disturb
       the line the waiters spin on more than once per barrier. */
    int count __attribute__((aligned(64)));
    int sense __attribute__((aligned(64)));
    int n __attribute__((aligned(64)));
} fm_barrier;

/* For n threads (n may also be set later with fm_barrier_set_n, by every
   thread of the team before its first wait: they all store the same value). */
static inline void fm_barrier_init(fm_barrier* b, int n) {
    __atomic_store_n(&b->count, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&b->sense, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&b->n, n, __ATOMIC_RELEASE);
}

static inline void fm_barrier_set_n(fm_barrier* b, int n) {
    __atomic_store_n(&b->n, n, __ATOMIC_RELEASE);
}

/* Arrive at the barrier with sense s: 1 for the last thread, which
   releases the others. */
static inline int fm_barrier_arrive(fm_barrier* b, int s) {
    if (__atomic_add_fetch(&b->count, 1, __ATOMIC_ACQ_REL)
            == __atomic_load_n(&b->n, __ATOMIC_ACQUIRE)) {
        __atomic_store_n(&b->count, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&b->sense, s, __ATOMIC_RELEASE);
        return 1;
    }
    return 0;
}

/* Wait for the release of sense s: spin, then yield. */
static inline void fm_barrier_spin(fm_barrier* b, int s) {
    unsigned spins = 0;
    while (__atomic_load_n(&b->sense, __ATOMIC_ACQUIRE) != s)
        fm_backoff(&spins);
}

/* Wait until all n threads have called it; *local_sense is the calling
   thread's own flag, 0 before its first wait. */
static inline void fm_barrier_wait(fm_barrier* b, int* local_sense) {
    *local_sense = !*local_sense;
    if (!fm_barrier_arrive(b, *local_sense))
        fm_barrier_spin(b, *local_sense);
}

#include <time.h>
static inline double fm_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* fm_barrier_wait, returning the seconds this thread waited (0 for the
   last to arrive, which does not wait). */
static inline double fm_barrier_wait_timed(fm_barrier* b, int* local_sense) {
    struct timespec t0, t1;
    *local_sense = !*local_sense;
    if (fm_barrier_arrive(b, *local_sense))
        return 0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    fm_barrier_spin(b, *local_sense);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
}
#else
#define FM_HAVE_SPIN_BARRIER 0
static inline void fm_backoff(unsigned* spins) { (void)spins; }
typedef struct { int n; } fm_barrier;
static inline void fm_barrier_init(fm_barrier* b, int n) { b->n = n; }
static inline void fm_barrier_set_n(fm_barrier* b, int n) { b->n = n; }
static inline void fm_barrier_wait(fm_barrier* b, int* local_sense) {
    (void)b; (void)local_sense;
}
static inline double fm_barrier_wait_timed(fm_barrier* b, int* local_sense) {
    (void)b; (void)local_sense;
    return 0;
}
#endif

/* The calling thread's number in its OpenMP team, and the team's size
   (0 and 1 in a build without OpenMP, where a region runs one thread). */
#ifdef _OPENMP
#include <omp.h>
static inline int fm_team_id(void) { return omp_get_thread_num(); }
static inline int fm_team_size(void) { return omp_get_num_threads(); }
#else
static inline int fm_team_id(void) { return 0; }
static inline int fm_team_size(void) { return 1; }
#endif

/* Publish a value (release) / read it (acquire): what the writer wrote
   before publishing is visible to a reader that sees the value. */
static inline void fm_publish(int* p, int v) {
#if defined(__GNUC__) || defined(__clang__)
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
#else
    *p = v;
#endif
}

static inline int fm_acquire(const int* p) {
#if defined(__GNUC__) || defined(__clang__)
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
#else
    return *p;
#endif
}

static inline void fm_count_up(int* p) {
#if defined(__GNUC__) || defined(__clang__)
    __atomic_add_fetch(p, 1, __ATOMIC_ACQ_REL);
#else
    *p += 1;
#endif
}

/* Wait until *join >= 0 (returned) or *closed is set (-1 returned):
   spinning, then yielding, as the barrier does. */
static inline int fm_wait_join(const int* join, const int* closed) {
    unsigned spins = 0;
    for (;;) {
        int j = fm_acquire(join);
        if (j >= 0)
            return j;
        if (fm_acquire(closed))
            return -1;
        fm_backoff(&spins);
    }
}

/* Wait until *p == v: spinning, then yielding. */
static inline void fm_wait_value(const int* p, int v) {
    unsigned spins = 0;
    while (fm_acquire(p) != v)
        fm_backoff(&spins);
}

#if FM_HAVE_SPIN_BARRIER
/* Wait until *p == v, for at most `limit` seconds, spinning (no yield: the
   limit is short): 1 if v was seen, else 0; the seconds waited in *waited. */
static inline int fm_wait_value_for(const int* p, int v, double limit, double* waited) {
    double t0 = fm_seconds(), t = t0;
    unsigned spins = 0;
    while (fm_acquire(p) != v) {
        FM_BARRIER_PAUSE();
        if (++spins % 16 == 0) {
            t = fm_seconds();
            if (t - t0 > limit) {
                *waited = t - t0;
                return 0;
            }
        }
    }
    *waited = (spins >= 16 ? fm_seconds() : t) - t0;
    return 1;
}
#else
static inline int fm_wait_value_for(const int* p, int v, double limit, double* waited) {
    (void)p; (void)v; (void)limit;
    *waited = 0;
    return 0;
}
#endif

#endif
