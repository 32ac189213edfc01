/* limits.h - taking and giving back slots of a shared count with a cap
 * (the process-wide sessions, a listener's sessions). */
#ifndef SLUICE_LIMITS_H
#define SLUICE_LIMITS_H

#include "sluice/limits-t.h"

#include <stdatomic.h>
#include <stdbool.h>

/* Reserve one slot in a count limited to max; false (and nothing taken)
 * when it is full. */
static inline bool slot_take(_Atomic int *count, int max)
{
    if (atomic_fetch_add_explicit(count, 1, memory_order_relaxed) < max)
        return true;
    atomic_fetch_sub_explicit(count, 1, memory_order_relaxed);
    return false;
}

static inline void slot_put(_Atomic int *count)
{
    atomic_fetch_sub_explicit(count, 1, memory_order_relaxed);
}

/* A process-wide session slot, within the current cap. */
static inline bool limits_take(struct session_limits *l)
{
    return slot_take(&l->active, atomic_load_explicit(&l->max_conns, memory_order_relaxed));
}

static inline bool limits_full(struct session_limits *l)
{
    return atomic_load_explicit(&l->active, memory_order_relaxed) >=
           atomic_load_explicit(&l->max_conns, memory_order_relaxed);
}

#endif
