#include "fp_hist.h"

#include <string.h>

#define SUB (1u << FP_HIST_SUB_BITS)

void fp_hist_reset(fp_hist *h)
{
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

int fp_hist_index(uint64_t v)
{
    int msb, shift;
    if (v < SUB)
        return (int)v;
    msb = 63 - __builtin_clzll(v);
    shift = msb - FP_HIST_SUB_BITS;
    /* top is in [SUB, 2*SUB): shift*SUB + top is continuous with the exact range below. */
    return (int)((uint64_t)shift * SUB + (v >> shift));
}

uint64_t fp_hist_lower(int index)
{
    int shift;
    if (index < (int)(2 * SUB))
        return (uint64_t)index;
    shift = index / (int)SUB - 1;
    return (uint64_t)(index - shift * (int)SUB) << shift;
}

void fp_hist_record(fp_hist *h, int64_t value)
{
    uint64_t v = value < 0 ? 0 : (uint64_t)value;
    h->buckets[fp_hist_index(v)]++;
    h->count++;
    h->sum += (double)v;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
}

uint64_t fp_hist_quantile(const fp_hist *h, double q)
{
    uint64_t rank, seen = 0, value;
    int i;
    if (h->count == 0)
        return 0;
    if (q <= 0)
        return h->min;
    if (q >= 1)
        return h->max;
    /* The rank-th smallest value, 1-based, rank = ceil(q * count) (nearest-rank method). */
    rank = (uint64_t)(q * (double)h->count);
    if ((double)rank < q * (double)h->count)
        rank++;
    if (rank == 0)
        rank = 1;
    for (i = 0; i < FP_HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank)
            break;
    }
    value = i + 1 < FP_HIST_BUCKETS ? fp_hist_lower(i + 1) - 1 : h->max;
    if (value > h->max)
        value = h->max;
    if (value < h->min)
        value = h->min;
    return value;
}

void fp_hist_merge(fp_hist *dst, const fp_hist *src)
{
    int i;
    if (src->count == 0)
        return;
    for (i = 0; i < FP_HIST_BUCKETS; i++)
        dst->buckets[i] += src->buckets[i];
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
}
