/* histogram.h - record into a latency histogram (one writer, a few
 * instructions), merge per-worker histograms when read, and take
 * quantiles and Prometheus-style cumulative counts from the merge. */
#ifndef SLUICE_HISTOGRAM_H
#define SLUICE_HISTOGRAM_H

#include "sluice/histogram-t.h"

#include <stdbool.h>
#include <time.h>

/* The bucket of a value in us (0 <= us <= HIST_MAX_US). */
static inline int hist_index(uint64_t us)
{
    if (us < HIST_SUB)
        return (int)us;
    int shift = 63 - __builtin_clzll(us) - HIST_SUB_BITS;
    return ((shift + 1) << HIST_SUB_BITS) + (int)(us >> shift) - HIST_SUB;
}

/* Record one value (us; negative counts as 0). Only the owning thread
 * calls it: relaxed load + store, no read-modify-write. */
static inline void hist_record(struct histogram *h, int64_t us)
{
    uint64_t v = us > 0 ? (uint64_t)us : 0;
    int i = v <= (uint64_t)HIST_MAX_US ? hist_index(v) : HIST_OVERFLOW;
    counter_add(&h->b[i], 1);
    counter_add(&h->count, 1);
    counter_add(&h->sum_us, v);
}

struct histogram *hist_slot_alloc(struct histogram *_Atomic *slot, size_t n);

/* The n histograms hung on *slot, allocated zeroed (and published with
 * release order) on first use; NULL when memory is short (the sample is
 * then lost). Only the slot's one writer calls it; readers load the
 * pointer with acquire order and skip NULL. */
static inline struct histogram *hist_slot(struct histogram *_Atomic *slot, size_t n)
{
    struct histogram *h = atomic_load_explicit(slot, memory_order_relaxed);
    return likely(h != NULL) ? h : hist_slot_alloc(slot, n);
}

/* CLOCK_MONOTONIC in us: the clock every histogram is fed from. */
static inline int64_t hist_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Lowest value of bucket i, and its width (both us). */
uint64_t hist_bucket_low(int i);
uint64_t hist_bucket_width(int i);

/* The value a bucket stands for: its middle (at most HIST_MAX_US). */
uint64_t hist_bucket_value(int i);

void hist_snap_clear(struct hist_snap *s);

/* Add h (live, written by another thread) into s. Each slot is read once;
 * count is recomputed from the buckets read, so the snapshot is always
 * consistent with itself even while h moves. */
void hist_merge(struct hist_snap *s, struct histogram *h);

/* Add snapshot a into s. */
void hist_snap_add(struct hist_snap *s, const struct hist_snap *a);

/* The q-quantile (0 < q <= 1) in us: the value of the bucket holding the
 * ceil(q * count)-th smallest sample; 0 when s is empty. *overflow (if not
 * NULL) tells whether that sample was above HIST_MAX_US (the value is
 * then HIST_MAX_US). */
uint64_t hist_quantile(const struct hist_snap *s, double q, bool *overflow);

/* Samples at or below le_us, to within a bucket: a bucket that straddles
 * le_us counts when its middle is at or below it (so the error is at most
 * half a bucket, under 1 %). Overflow samples never count. */
uint64_t hist_count_le(const struct hist_snap *s, uint64_t le_us);

/* Render us for people: "850us", "12.3ms", "1.20s". */
void hist_format_us(uint64_t us, char *buf, size_t n);

#endif
