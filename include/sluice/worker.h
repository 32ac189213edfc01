/* worker.h - a worker thread: own libev loop, own listening sockets, own
 * sessions, buffer pool and counters. Commands arrive through an inbox
 * woken by ev_async. */
#ifndef SLUICE_WORKER_H
#define SLUICE_WORKER_H

#include "sluice/config-t.h"
#include "sluice/listener-t.h"
#include "sluice/log.h"
#include "sluice/relay.h"
#include "sluice/session.h"
#include "sluice/splice.h"

#include <ev.h>
#include <pthread.h>
#include <stdbool.h>

struct control;

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
struct worker_listen {
    struct worker_listen *next;
    struct worker *w;
    struct listener_conf *lc; /* in the worker's current generation */
    struct sockaddr_any addr;
    ev_io w_accept;
    bool paused; /* stopped at a limit or after EMFILE */
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
    struct control *ctl;
    pthread_t thread;
    struct ev_loop *loop;
    struct config *cfg; /* current generation, one reference held */

    ev_async w_inbox;
    pthread_mutex_t inbox_lock;
    struct worker_msg *inbox_head, *inbox_tail;

    ev_timer w_resume; /* re-check paused listeners */
    struct accept_pause emfile; /* after EMFILE: all listens paused until .until */
    struct log_limit local_error_log; /* backend socket()/connect() shortages */

    struct worker_listen *listens;
    struct session *sessions;
    int nsessions;
    struct session *free_sessions;
    int nfree_sessions;
    struct buf_pool bufs;
    struct pipe_pool pipes;
    bool stopping;
    bool started;
    _Atomic bool exited;
    _Atomic bool joined;

    struct worker_stats stats;
};

/* Main thread: the worker's thread was started and has not exited yet
 * (retiring workers included). Read `exited` once per decision: a worker
 * can exit between two calls. */
static inline bool worker_is_live(struct worker *w)
{
    return w->started && !atomic_load(&w->exited);
}

/* Set up a worker (loop, inbox) owning `cfg` (takes a reference). */
int worker_init(struct worker *w, struct control *ctl, int id, struct config *cfg);
/* Give the worker a listening socket before it starts. */
int worker_add_listen(struct worker *w, struct listener_conf *lc, const struct sockaddr_any *addr,
                      int fd);
int worker_start(struct worker *w);
void worker_join(struct worker *w);
void worker_destroy(struct worker *w);
/* Any thread: queue a command. Returns -1 on allocation failure. */
int worker_send(struct worker *w, enum worker_msg_type type);
/* Any thread: queue a prepared message (the worker frees it). */
void worker_post(struct worker *w, struct worker_msg *m);
/* Free a message that was never posted, with what it carries. */
void worker_msg_free(struct worker_msg *m);

/* Worker thread only: a session has ended (frees slots, may resume accept). */
void worker_session_gone(struct worker *w);
/* Worker thread only, from the socket's own accept callback: a draining
 * socket has accepted what it owed; close and free it. */
void worker_listen_drained(struct worker *w, struct worker_listen *wl);

#endif
