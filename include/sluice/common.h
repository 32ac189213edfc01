/* common.h - the base layer every header may include: container_of, list unlink,
 * assertions, cache-line alignment, single-writer counters. Macros, types
 * and trivial inline functions only: no declarations of functions. */
#ifndef SLUICE_COMMON_H
#define SLUICE_COMMON_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define SLUICE_CACHELINE 64
#define SLUICE_MAX_WORKERS 256
/* Per-worker counters of servers and listeners come in chunks of this many
 * workers, allocated for the workers a config has (not for 256). */
#define SLUICE_WS_CHUNK 8
#define SLUICE_WS_CHUNKS (SLUICE_MAX_WORKERS / SLUICE_WS_CHUNK)

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#define container_of(ptr, type, member) \
    ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* Unlink node from an intrusive doubly linked list whose first element
 * is head, through node's prev and next members (a list that keeps a
 * tail fixes it itself first). node's own links are left as they were. */
#define DLIST_UNLINK(head, node, prev, next)                                                       \
    do {                                                                                           \
        if ((node)->prev)                                                                          \
            (node)->prev->next = (node)->next;                                                     \
        else                                                                                       \
            (head) = (node)->next;                                                                 \
        if ((node)->next)                                                                          \
            (node)->next->prev = (node)->prev;                                                     \
    } while (0)

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#ifdef SLUICE_ASSERTIONS
#define SLUICE_ASSERT(cond)                                                    \
    do {                                                                       \
        if (unlikely(!(cond))) {                                               \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__,         \
                    __LINE__, #cond);                                          \
            abort();                                                           \
        }                                                                      \
    } while (0)
#else
#define SLUICE_ASSERT(cond) ((void)0)
#endif

/* A counter with exactly one writing thread and any number of readers.
 * Relaxed load + store is a plain add on x86 (no lock prefix) but is still
 * a well-defined atomic access for the threads that sum it. */
typedef _Atomic uint64_t counter_t;

static inline void counter_add(counter_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static inline uint64_t counter_get(counter_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

#endif
