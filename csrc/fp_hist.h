/*
 * fp_hist — latency histogram with fixed memory and ~1.6% relative precision.
 *
 * Log-linear buckets: values below 64 are exact; above, each power of two is split into 64
 * equal sub-buckets (the idea of HdrHistogram, in one flat array). Recording is an index
 * computation and an increment, cheap enough for every request. fastpool/_engine/_pure/_hist.py
 * implements the same bucketing so both engines report identical percentiles.
 */
#ifndef FP_HIST_H
#define FP_HIST_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FP_HIST_SUB_BITS 6
#define FP_HIST_BUCKETS ((63 - FP_HIST_SUB_BITS + 1) << FP_HIST_SUB_BITS)

typedef struct fp_hist {
    uint64_t count;
    uint64_t min, max;
    double sum;
    uint64_t buckets[FP_HIST_BUCKETS];
} fp_hist;

/* Empties h. */
void fp_hist_reset(fp_hist *h);

/* The bucket a value falls in. */
int fp_hist_index(uint64_t value);

/* The smallest value of a bucket. */
uint64_t fp_hist_lower(int index);

/* Counts one value (negative values count as 0). */
void fp_hist_record(fp_hist *h, int64_t value);

/* The value at quantile q (0..1): the upper edge of the bucket holding it, clamped to the
 * recorded min and max so p0 and p100 are exact. 0 when empty. */
uint64_t fp_hist_quantile(const fp_hist *h, double q);

/* Adds src's counts into dst. */
void fp_hist_merge(fp_hist *dst, const fp_hist *src);

#ifdef __cplusplus
}
#endif
#endif /* FP_HIST_H */
