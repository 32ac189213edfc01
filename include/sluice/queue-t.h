/* queue-t.h - a pool's queue of sessions waiting for a server slot: the
 * runtime state that every generation naming the pool shares (see queue.h). */
#ifndef SLUICE_QUEUE_T_H
#define SLUICE_QUEUE_T_H

#include "sluice/common.h"
#include "sluice/registry-t.h"

#include <pthread.h>
#include <stdint.h>

struct session;

/* Where a session stands towards its pool's queue. */
enum queue_state {
    QS_NONE = 0, /* not queued */
    QS_WAITING,  /* in the pool's FIFO */
    QS_WOKEN,    /* taken off the FIFO, a wake is on its way to its worker */
};

/* One per pool name, in the queue registry, shared by every generation
 * that has the pool, so a reload keeps the waiters' order. The FIFO links
 * sessions of every worker (through session->qprev/qnext). The lock is
 * taken only on the "every server is full" path (joining, leaving and
 * waking), never while relaying: a mutex is fine there. */
struct pool_queue {
    struct registry_obj obj; /* key: the pool's name */
    pthread_mutex_t lock;    /* guards head, tail, the links and qstate of queued sessions */
    struct session *head, *tail;
    /* Written under the lock, read without it (fast checks, stats). */
    _Atomic int length;          /* sessions in the FIFO */
    _Atomic int woken;           /* wakes on their way to a worker */
    _Atomic uint64_t queued;     /* sessions that ever joined */
    _Atomic uint64_t wait_us;    /* time spent queued by sessions that left */
};

#endif
