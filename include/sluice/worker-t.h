/* worker-t.h - a worker thread's state: own loop, own listening sockets,
 * own sessions, buffer pool and counters (see worker.h for its functions). */
#ifndef SLUICE_WORKER_T_H
#define SLUICE_WORKER_T_H

#include "sluice/common.h"
#include "sluice/config-t.h"
#include "sluice/limits-t.h"
#include "sluice/listener-t.h"
#include "sluice/log-t.h"
#include "sluice/relay-t.h"
#include "sluice/session-t.h"
#include "sluice/splice-t.h"

#include <ev.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

/* What the control thread gives every worker: where to say it exited, and
 * the process-wide session limits. Workers never see struct control. */
struct worker_host {
    struct ev_loop *loop; /* the control thread's loop */
    ev_async *exited;     /* sent when a worker's thread ends */
    struct session_limits *limits;
};

/* Per-worker counters: the worker writes, the admin side sums. */
#define WORKER_COUNTERS(X)                                                     \
    X(accepted)       /* connections accepted */                               \
    X(accept_emfile)  /* accept paused: out of descriptors or memory */        \
    X(accept_errors)  /* other accept failures */                              \
    X(limit_pauses)   /* accept paused at max_conns */                         \
    X(alloc_failures) /* session or buffer allocation failed */

struct worker_stats {
#define X(name) counter_t name;
    WORKER_COUNTERS(X)
#undef X
    counter_t ends[END_REASON_COUNT];
} __attribute__((aligned(SLUICE_CACHELINE)));

/* One listening socket of this worker (one per bind address). */
struct uring; /* uring.h */

struct worker_listen {
    struct worker_listen *next;
    struct worker *w;
    struct listener_conf *lc; /* in the worker's current generation */
    struct sockaddr_any addr;
    ev_io w_accept;
    bool paused; /* stopped at a limit or after EMFILE */
    ev_tstamp rate_until; /* max_conn_rate: paused until a token is back */
    /* Going away (its bind was removed, or its worker retires) with
     * connections still queued that a limit kept it from accepting: it
     * accepts `owed` more, then the worker closes it. `cfg` is the
     * generation `lc` belongs to (one reference); NULL while not
     * draining, when that is the worker's own w->cfg. */
    bool draining;
    int owed;
    struct config *cfg;
};

enum worker_msg_type {
    WMSG_STOP_ACCEPT, /* close listening sockets; exit when idle */
    WMSG_RETIRE,      /* accept what is queued, close listening sockets,
                         let sessions finish, then exit */
    WMSG_KILL_ALL,    /* finish every session with reason shutdown */
    WMSG_CONFIG,      /* adopt a new generation (a reload) */
    WMSG_CALL,        /* run fn(worker, arg) on the worker thread */
};

/* A listening socket opened by the main thread for a bind address that is
 * new in a generation. */
struct worker_new_listen {
    struct worker_new_listen *next;
    int listener;             /* index in the new generation */
    struct sockaddr_any addr;
    int fd;
};

struct worker_msg {
    struct worker_msg *next;
    enum worker_msg_type type;
    struct config *cfg;                /* WMSG_CONFIG: a reference, passed on */
    struct worker_new_listen *listens; /* WMSG_CONFIG: owned, passed on */
    void (*fn)(struct worker *w, void *arg); /* WMSG_CALL */
    void *arg;
};

struct worker {
    int id;
    const struct worker_host *host;
    /* Called by session.c when a session is freed (a slot freed up, the
     * worker may exit): set by worker_init, so the session module does not
     * call into the worker module. */
    void (*session_gone)(struct worker *w);
    /* Called from any thread by queue.c (under the pool queue's lock): s,
     * a session of this worker, was taken off its pool's queue and may
     * take a free slot. Set by worker_init. */
    void (*wake)(struct worker *w, struct session *s);
    pthread_t thread;
    struct ev_loop *loop;
    struct config *cfg; /* current generation, one reference held */

    ev_async w_inbox;
    pthread_mutex_t inbox_lock;
    struct worker_msg *inbox_head, *inbox_tail;
    struct session *woken_head, *woken_tail; /* under inbox_lock, see wake */

    ev_timer w_resume; /* re-check paused listeners */
    ev_timer w_retire; /* retiring: the steered sockets' grace is over */
    struct accept_pause emfile; /* after EMFILE: all listens paused until .until */
    struct log_limit local_error_log; /* backend socket()/connect() shortages */

    struct worker_listen *listens;
    struct session *sessions;
    int nsessions;
    struct session *free_sessions;
    int nfree_sessions;
    struct buf_pool bufs;
    struct pipe_pool pipes;
    /* relay = uring: the worker's ring, opened by the first session that
     * asks for it (NULL: none yet, or uring_failed: the kernel refused,
     * those sessions copy). */
    struct uring *uring;
    bool uring_failed;
    bool stopping;
    bool started;
    _Atomic bool exited;
    _Atomic bool joined;

    struct worker_stats stats;
    /* Sessions this slot has started (kept, like stats, when the slot is
     * reused): the sequence part of session ids. */
    uint64_t session_seq;
};

#endif
