/* log-t.h - logging types embedded by others (see log.h). */
#ifndef SLUICE_LOG_T_H
#define SLUICE_LOG_T_H

/* A log line repeated by a flood (per worker, or per listener) is written
 * at most once per interval; the calls in between are counted so the next
 * line can say how many were suppressed. Not thread-safe: one owner. */
struct log_limit {
    double last;              /* when a line was last let through */
    unsigned long suppressed; /* lines dropped since */
};

#endif
