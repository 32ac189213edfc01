/* log-t.h - logging types embedded by others (see log.h). */
#ifndef SLUICE_LOG_T_H
#define SLUICE_LOG_T_H

#include <stdint.h>

/* A log line repeated by a flood (per worker, or per listener) is written
 * at most once per interval; the calls in between are counted so the next
 * line can say how many were suppressed. Not thread-safe: one owner. */
struct log_limit {
    double last;              /* when a line was last let through */
    unsigned long suppressed; /* lines dropped since */
};

/* The same for a line several threads may write (per listener, across its
 * workers): at most one line per interval in total, whichever thread comes
 * first; lock-free. Zero-initialised means nothing logged yet. */
struct log_limit_shared {
    _Atomic int64_t next_ms;          /* CLOCK_MONOTONIC ms from which a line may pass */
    _Atomic unsigned long suppressed; /* lines dropped since the last one let through */
};

#endif
