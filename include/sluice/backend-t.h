/* backend-t.h - runtime state of a server and of a listener: the part that
 * survives reloads (health, admin state, live counts, per-worker counters). */
#ifndef SLUICE_BACKEND_T_H
#define SLUICE_BACKEND_T_H

#include "sluice/common.h"
#include "sluice/log-t.h"
#include "sluice/histogram-t.h"
#include "sluice/registry-t.h"
#include "sluice/resolver-t.h"

#include <stdbool.h>
#include <stdint.h>

enum backend_health { HEALTH_UP = 0, HEALTH_DOWN = 1 };
enum backend_admin { ADMIN_ENABLED = 0, ADMIN_DRAINING = 1, ADMIN_DISABLED = 2 };

/* Why a server is down (shown by `show backends`). */
enum down_cause { DOWN_NONE = 0, DOWN_CHECK = 1, DOWN_PASSIVE = 2 };

/* Outcome of the last active check. */
enum check_result {
    CHECK_RESULT_NONE = 0, /* no check ran yet (or checks are off) */
    CHECK_RESULT_OK,
    CHECK_RESULT_REFUSED,   /* connect refused or failed */
    CHECK_RESULT_TIMEOUT,   /* no connect or reply within check_timeout */
    CHECK_RESULT_BAD_REPLY, /* reply did not start with check_expect */
    CHECK_RESULT_CLOSED,    /* closed before a full reply */
    CHECK_RESULT_ERROR,     /* local error (socket, memory) */
};

/* Per-worker server counters: one writer (the worker), summed on read. */
#define BACKEND_COUNTERS(X)                                                    \
    X(sessions)         /* sessions connected to this server */               \
    X(connect_attempts) /* connect() calls */                                  \
    X(connect_failures) /* refused, unreachable or timed out */                \
    X(retries)          /* failures that went on to another server */          \
    X(local_errors)     /* connects that failed on our side (no port, fds) */  \
    X(bytes_in)         /* bytes received from the server */                   \
    X(bytes_out)        /* bytes sent to the server */

/* A server's latency histograms (histogram.h, us), per worker. */
enum backend_hist {
    BACKEND_HIST_CONNECT,    /* connect() to connected, attempts that connected */
    BACKEND_HIST_FIRST_BYTE, /* connected to the first byte from the server */
    BACKEND_HIST_DURATION,   /* connected to the end of the session */
    BACKEND_HISTS,
};

/* The counters come first (stats.c sums them as an array of counter_t).
 * hists: struct histogram[BACKEND_HISTS], 31 KiB, so allocated by the
 * worker at its first sample for this server (hist_slot()), not for every
 * server and worker slot; freed with the object. */
struct backend_wstats {
#define X(name) counter_t name;
    BACKEND_COUNTERS(X)
#undef X
    struct histogram *_Atomic hists;
} __attribute__((aligned(SLUICE_CACHELINE)));

struct backend {
    struct registry_obj obj; /* key "pool/server" */
    _Atomic int health;      /* enum backend_health; health thread writes */
    _Atomic int admin;       /* enum backend_admin; admin commands write */
    _Atomic int weight;      /* effective weight 0..256 */
    _Atomic int fails;       /* consecutive passive connect failures */
    _Atomic int64_t down_until_ms; /* passive hold-down, CLOCK_MONOTONIC ms */
    _Atomic int down_cause;  /* enum down_cause while health is DOWN */
    /* Written by the health thread only. */
    _Atomic int check_result;   /* enum check_result */
    _Atomic int64_t check_us;   /* duration of the last check */
    _Atomic int64_t checks_total;
    _Atomic int64_t checks_failed;
    _Atomic int64_t transitions; /* up<->down changes */
    int rise_count, fall_count; /* health thread's private streaks */
    bool seen_up;               /* health thread: state at its last check */
    bool weight_set;            /* control thread: initial weight applied */
    /* A server given by host name (server_conf.host): its resolved address
     * and the last resolution. The resolver thread writes them; the main
     * thread too when a generation with a new name is started or
     * committed (resolver_adopt(), under addr.wlock). addr_valid is false
     * only for a name without a usable answer: the server is then down
     * (backend_usable()); it is true for address literals. */
    struct addr_cell addr;
    _Atomic bool addr_valid;
    _Atomic uint64_t dns_key;      /* hash of host, port and family the address is for; 0: literal */
    _Atomic int dns_result;        /* enum dns_result of the last resolution */
    _Atomic int64_t dns_ok_ms;     /* last good answer, CLOCK_MONOTONIC ms */
    _Atomic int64_t dns_next_ms;   /* next resolution due, CLOCK_MONOTONIC ms */
    _Atomic int64_t dns_resolutions; /* resolutions done (at load and while running) */
    _Atomic int64_t dns_failures;    /* ... that failed */
    _Atomic int64_t dns_changes;     /* times the address (all/srv: the address set) changed */
    /* resolve=all/srv template: the latest answer, replaced whole under
     * the resolver's set lock (resolver thread; main thread at commit). */
    struct dns_set *dns_set;
    /* Counters of workers w*SLUICE_WS_CHUNK .. +SLUICE_WS_CHUNK-1 (NULL
     * until a config with that many workers references this server). The
     * control thread allocates a chunk before any worker of that index
     * runs, and frees them with the object. */
    void *ws[SLUICE_WS_CHUNKS]; /* each: struct backend_wstats[SLUICE_WS_CHUNK] */
    /* Live sessions over all workers: each worker adds one per session
     * it connects here and takes it back when the session leaves, the
     * one field of a server written on every connection. So it has a
     * cache line of its own: beside health, admin, weight and the
     * hold-down, which every pick reads, each connection on any worker
     * would cost every other worker a cache miss on its next pick. */
    _Alignas(SLUICE_CACHELINE) _Atomic int active;
};

/* Worker w's counters of b; w must be below the workers of a config that
 * references b (so its chunk exists). */
static inline struct backend_wstats *backend_ws(const struct backend *b, int w)
{
    return (struct backend_wstats *)b->ws[w / SLUICE_WS_CHUNK] + w % SLUICE_WS_CHUNK;
}

#define LISTENER_COUNTERS(X)                                                   \
    X(accepted)   /* connections accepted */                                   \
    X(no_backend) /* closed at once: no usable server */                       \
    X(denied)     /* refused by the access list (allow/deny) */                \
    X(source_conn_refused) /* closed at once: max_conns_per_source */          \
    X(source_rate_refused) /* closed at once: rate_per_source */               \
    X(source_table_full)   /* admitted untracked: no evictable entry */        \
    X(rate_pauses)         /* accept paused by max_conn_rate */                \
    X(bytes_in)   /* bytes from clients */                                     \
    X(bytes_out)  /* bytes to clients */

struct listener_wstats {
#define X(name) counter_t name;
    LISTENER_COUNTERS(X)
#undef X
    struct histogram *_Atomic hists; /* [1]: accept to backend connected, as in backend */
} __attribute__((aligned(SLUICE_CACHELINE)));

struct src_table; /* srclimit-t.h */

struct listener_state {
    struct registry_obj obj; /* key: listener name */
    _Atomic int active;      /* live sessions over all workers */
    struct log_limit_shared denied_log; /* "denied" lines: one per second, all workers */
    /* The per-source table of the newest generation with a per-source
     * limit (one reference; control thread only), so the next reload
     * keeps its counts; NULL when none. */
    struct src_table *srct;
    _Atomic int64_t conn_rate_tat; /* max_conn_rate's token bucket (srclimit.h) */
    struct log_limit_shared src_log; /* refusal log lines, across workers */
    void *ws[SLUICE_WS_CHUNKS]; /* each: struct listener_wstats[SLUICE_WS_CHUNK], as in backend */
};

static inline struct listener_wstats *listener_ws(const struct listener_state *l, int w)
{
    return (struct listener_wstats *)l->ws[w / SLUICE_WS_CHUNK] + w % SLUICE_WS_CHUNK;
}

#endif
