/* fp_clock — the one clock every timestamp uses (Python's time.monotonic_ns reads the same). */
#ifndef FP_CLOCK_H
#define FP_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Python's time.monotonic_ns() clock: CLOCK_MONOTONIC on Linux (vDSO: no syscall); on macOS
 * CPython reads mach_absolute_time(), which is CLOCK_UPTIME_RAW (clock_gettime(3): "identical
 * to the result of mach_absolute_time()"), not CLOCK_MONOTONIC (that one counts sleep too). */
#if defined(__APPLE__) && defined(CLOCK_UPTIME_RAW)
#define FP_CLOCK CLOCK_UPTIME_RAW
#else
#define FP_CLOCK CLOCK_MONOTONIC
#endif

/* Nanoseconds on FP_CLOCK. */
static inline int64_t fp_now_ns(void)
{
    struct timespec ts;
    clock_gettime(FP_CLOCK, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

#endif /* FP_CLOCK_H */
