/* srclimit-t.h - types of the per-source limits embedded by configs and
 * listener state: a rate "N/DURATION" and the opaque shared table. */
#ifndef SLUICE_SRCLIMIT_T_H
#define SLUICE_SRCLIMIT_T_H

#include <stdint.h>

/* A token bucket of n tokens refilled at n per per_ms; n == 0 is off. */
struct rate_conf {
    int n;
    int64_t per_ms;
};

/* One listener's table of sources (srclimit.c), shared by its workers. */
struct src_table;
/* One source's entry in it; a session holds one while it is counted. */
struct src_entry;

#endif
