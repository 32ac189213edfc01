/* worker.h - a worker thread: own libev loop, own listening sockets, own
 * sessions, buffer pool and counters. Commands arrive through an inbox
 * woken by ev_async. */
#ifndef SLUICE_WORKER_H
#define SLUICE_WORKER_H

#include "sluice/worker-t.h"

/* Main thread: the worker's thread was started and has not exited yet
 * (retiring workers included). Read `exited` once per decision: a worker
 * can exit between two calls. */
static inline bool worker_is_live(struct worker *w)
{
    return w->started && !atomic_load(&w->exited);
}

/* Set up a worker (loop, inbox) owning `cfg` (takes a reference). */
int worker_init(struct worker *w, const struct worker_host *host, int id, struct config *cfg);
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

#endif
