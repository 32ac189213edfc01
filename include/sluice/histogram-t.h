/* histogram-t.h - a log-linear latency histogram (HDR-style) in microseconds,
 * hung on the per-worker counters of servers and listeners (see
 * histogram.h for its functions). */
#ifndef SLUICE_HISTOGRAM_T_H
#define SLUICE_HISTOGRAM_T_H

#include "sluice/common.h"

#include <stdint.h>

/* Values 0..63 us get a bucket each; from 64 us on, every power of two is
 * split into HIST_SUB equal buckets, so a bucket is at most 1/64 of its
 * lower bound wide and its middle is within 1/128 (0.8 %) of any value in
 * it. HIST_MAX_US (60 s) falls in bucket HIST_BUCKETS - 1; larger values
 * go to one overflow slot after it (quantiles report them as HIST_MAX_US,
 * Prometheus only under +Inf). */
#define HIST_SUB_BITS 6
#define HIST_SUB (1 << HIST_SUB_BITS)
#define HIST_MAX_US 60000000LL
#define HIST_BUCKETS 1331 /* hist_index(HIST_MAX_US) + 1 */
#define HIST_OVERFLOW HIST_BUCKETS

/* One writer (a worker), read by any thread: counter_t, relaxed. */
struct histogram {
    counter_t count;
    counter_t sum_us;              /* of the values as recorded (not clamped) */
    counter_t b[HIST_BUCKETS + 1]; /* + the overflow slot */
};

/* A reader's plain copy: one histogram or the merge of many. */
struct hist_snap {
    uint64_t count;
    uint64_t sum_us;
    uint64_t b[HIST_BUCKETS + 1];
};

#endif
