/* backend-t.h - runtime state of a server and of a listener: the part that
 * survives reloads (health, admin state, live counts, per-worker counters). */
#ifndef SLUICE_BACKEND_T_H
#define SLUICE_BACKEND_T_H

#include "sluice/common.h"
#include "sluice/registry.h"

#include <stdint.h>

enum backend_health { HEALTH_UP = 0, HEALTH_DOWN = 1 };
enum backend_admin { ADMIN_ENABLED = 0, ADMIN_DRAINING = 1, ADMIN_DISABLED = 2 };

/* Per-worker server counters: one writer (the worker), summed on read. */
#define BACKEND_COUNTERS(X)                                                    \
    X(sessions)         /* sessions connected to this server */               \
    X(connect_attempts) /* connect() calls */                                  \
    X(connect_failures) /* refused, unreachable or timed out */                \
    X(retries)          /* failures that went on to another server */          \
    X(bytes_in)         /* bytes received from the server */                   \
    X(bytes_out)        /* bytes sent to the server */

struct backend_wstats {
#define X(name) counter_t name;
    BACKEND_COUNTERS(X)
#undef X
} __attribute__((aligned(SLUICE_CACHELINE)));

struct backend {
    struct registry_obj obj; /* key "pool/server" */
    _Atomic int health;      /* enum backend_health; health thread writes */
    _Atomic int admin;       /* enum backend_admin; admin commands write */
    _Atomic int weight;      /* effective weight 0..256 */
    _Atomic int active;      /* live sessions over all workers */
    _Atomic int fails;       /* consecutive passive connect failures */
    _Atomic int64_t down_until_ms; /* passive hold-down, CLOCK_MONOTONIC ms */
    struct backend_wstats ws[SLUICE_MAX_WORKERS];
};

#define LISTENER_COUNTERS(X)                                                   \
    X(accepted)   /* connections accepted */                                   \
    X(no_backend) /* closed at once: no usable server */                       \
    X(bytes_in)   /* bytes from clients */                                     \
    X(bytes_out)  /* bytes to clients */

struct listener_wstats {
#define X(name) counter_t name;
    LISTENER_COUNTERS(X)
#undef X
} __attribute__((aligned(SLUICE_CACHELINE)));

struct listener_state {
    struct registry_obj obj; /* key: listener name */
    _Atomic int active;      /* live sessions over all workers */
    struct listener_wstats ws[SLUICE_MAX_WORKERS];
};

#endif
