/* histogram.c - the read side of the latency histograms: bucket bounds,
 * merging per-worker histograms, quantiles and cumulative counts. The
 * write side (hist_record) is inline in histogram.h. */
#include "sluice/histogram.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(HIST_BUCKETS == 20 * HIST_SUB + 51, "HIST_BUCKETS is hist_index(HIST_MAX_US) + 1");

uint64_t hist_bucket_low(int i)
{
    if (i < HIST_SUB)
        return (uint64_t)i;
    int shift = (i >> HIST_SUB_BITS) - 1;
    return (uint64_t)((i & (HIST_SUB - 1)) + HIST_SUB) << shift;
}

uint64_t hist_bucket_width(int i)
{
    if (i < HIST_SUB)
        return 1;
    return (uint64_t)1 << ((i >> HIST_SUB_BITS) - 1);
}

uint64_t hist_bucket_value(int i)
{
    if (i >= HIST_BUCKETS)
        return HIST_MAX_US;
    uint64_t v = hist_bucket_low(i) + hist_bucket_width(i) / 2;
    return v < (uint64_t)HIST_MAX_US ? v : (uint64_t)HIST_MAX_US;
}

struct histogram *hist_slot_alloc(struct histogram *_Atomic *slot, size_t n)
{
    /* Written by one worker per sample: whole cache lines of its own,
     * so no other thread's data shares the first or the last one. */
    size_t bytes =
        (n * sizeof(struct histogram) + SLUICE_CACHELINE - 1) & ~(size_t)(SLUICE_CACHELINE - 1);
    struct histogram *h = aligned_alloc(SLUICE_CACHELINE, bytes);
    if (h == NULL)
        return NULL;
    memset(h, 0, bytes);
    atomic_store_explicit(slot, h, memory_order_release);
    return h;
}

void hist_snap_clear(struct hist_snap *s)
{
    memset(s, 0, sizeof(*s));
}

void hist_merge(struct hist_snap *s, struct histogram *h)
{
    uint64_t n = 0;
    for (int i = 0; i <= HIST_BUCKETS; i++) {
        uint64_t c = counter_get(&h->b[i]);
        s->b[i] += c;
        n += c;
    }
    s->count += n;
    s->sum_us += counter_get(&h->sum_us);
}

void hist_snap_add(struct hist_snap *s, const struct hist_snap *a)
{
    for (int i = 0; i <= HIST_BUCKETS; i++)
        s->b[i] += a->b[i];
    s->count += a->count;
    s->sum_us += a->sum_us;
}

uint64_t hist_quantile(const struct hist_snap *s, double q, bool *overflow)
{
    if (overflow != NULL)
        *overflow = false;
    if (s->count == 0)
        return 0;
    double r = q * (double)s->count;
    uint64_t rank = (uint64_t)r;
    if ((double)rank < r)
        rank++;
    if (rank < 1)
        rank = 1;
    if (rank > s->count)
        rank = s->count;
    uint64_t seen = 0;
    for (int i = 0; i <= HIST_BUCKETS; i++) {
        seen += s->b[i];
        if (seen >= rank) {
            if (overflow != NULL)
                *overflow = i == HIST_OVERFLOW;
            return hist_bucket_value(i);
        }
    }
    return HIST_MAX_US; /* count and buckets disagree: not from hist_merge */
}

uint64_t hist_count_le(const struct hist_snap *s, uint64_t le_us)
{
    uint64_t n = 0;
    for (int i = 0; i < HIST_BUCKETS && hist_bucket_value(i) <= le_us; i++)
        n += s->b[i];
    return n;
}

void hist_format_us(uint64_t us, char *buf, size_t n)
{
    if (us < 1000)
        snprintf(buf, n, "%lluus", (unsigned long long)us);
    else if (us < 999500) /* "%.3g" would print 1e+03ms */
        snprintf(buf, n, "%.3gms", (double)us / 1e3);
    else
        snprintf(buf, n, "%.3gs", (double)us / 1e6);
}
