/* queue.h - a pool's FIFO of sessions waiting for a server slot.
 *
 * When every usable server of a pool is at its max_conns, a new session
 * joins the pool's queue (up to the pool's max_queue) instead of ending
 * no_backend. A session that frees a slot on one of the pool's servers
 * wakes the oldest waiter: it takes it off the FIFO and hands it to the
 * waiter's own worker (w->wake, the worker's inbox), which picks a server
 * again with the pool's balance algorithm. While wakes are on their way or
 * anyone waits, newcomers queue behind them (queue_busy()), so the order
 * is FIFO across the whole process.
 *
 * Every function may be called from any worker; queue_push(),
 * queue_leave(), queue_woken_done() and queue_requeue() only by the worker
 * that owns the session. */
#ifndef SLUICE_QUEUE_H
#define SLUICE_QUEUE_H

#include "sluice/queue-t.h"

#include <stdbool.h>

/* Registry of pool queues, keyed by pool name. */
extern struct registry queue_registry;

/* Registry init/fini of a struct pool_queue. */
void queue_obj_init(struct registry_obj *o);
void queue_obj_fini(struct registry_obj *o);

/* Anyone waiting or being woken: a newcomer must queue behind them. */
static inline bool queue_busy(struct pool_queue *q)
{
    return atomic_load(&q->length) > 0 || atomic_load(&q->woken) > 0;
}

/* Append s (state QS_NONE) unless max sessions already wait. */
bool queue_push(struct pool_queue *q, struct session *s, int max);

/* s ends or stops waiting: take it off the FIFO. Returns the state it had:
 * QS_WOKEN means its wake is still on its way and the caller must keep s
 * alive until queue_woken_done() ran for it. us: time it waited. */
enum queue_state queue_leave(struct pool_queue *q, struct session *s, uint64_t us);

/* The woken session s got its wake: it leaves for good (it got a slot, or
 * it ended meanwhile). us: time it waited. */
void queue_woken_done(struct pool_queue *q, struct session *s, uint64_t us);

/* The woken session s found no free slot after all (another session took
 * it first): back at the head of the FIFO, keeping its turn. */
void queue_requeue(struct pool_queue *q, struct session *s);

/* A slot of one of the pool's servers may be free: wake the oldest waiter,
 * if any. Cheap (one fence and one load) when nobody waits. */
void queue_kick(struct pool_queue *q);

#endif
