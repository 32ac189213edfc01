/* queue.c - a pool's FIFO of sessions waiting for a server slot, shared by
 * the workers (see queue.h). Only the "every server is full" path takes
 * the lock; a session ending on a server with max_conns pays one fence and
 * one atomic load when nobody waits. */
#include "sluice/queue.h"
#include "sluice/session-t.h"
#include "sluice/worker-t.h"

struct registry queue_registry = {.fini = queue_obj_fini};

void queue_obj_init(struct registry_obj *o)
{
    struct pool_queue *q = (struct pool_queue *)o;
    pthread_mutex_init(&q->lock, NULL);
}

void queue_obj_fini(struct registry_obj *o)
{
    struct pool_queue *q = (struct pool_queue *)o;
    SLUICE_ASSERT(q->head == NULL);
    pthread_mutex_destroy(&q->lock);
}

static void unlink_locked(struct pool_queue *q, struct session *s)
{
    if (s->qnext == NULL)
        q->tail = s->qprev;
    DLIST_UNLINK(q->head, s, qprev, qnext);
    s->qprev = s->qnext = NULL;
    atomic_fetch_sub(&q->length, 1);
}

/* Link s in as waiting, at the tail (a new waiter) or at the head (one
 * put back); the seq_cst length increment pairs with the fence in
 * queue_kick() (see there). */
static void link_locked(struct pool_queue *q, struct session *s, bool at_head)
{
    s->qprev = at_head ? NULL : q->tail;
    s->qnext = at_head ? q->head : NULL;
    if (s->qprev)
        s->qprev->qnext = s;
    else
        q->head = s;
    if (s->qnext)
        s->qnext->qprev = s;
    else
        q->tail = s;
    s->qstate = QS_WAITING;
    atomic_fetch_add(&q->length, 1);
}

bool queue_push(struct pool_queue *q, struct session *s, int max)
{
    SLUICE_ASSERT(s->qstate == QS_NONE);
    pthread_mutex_lock(&q->lock);
    if (atomic_load_explicit(&q->length, memory_order_relaxed) >= max) {
        pthread_mutex_unlock(&q->lock);
        return false;
    }
    link_locked(q, s, false);
    atomic_fetch_add_explicit(&q->queued, 1, memory_order_relaxed);
    pthread_mutex_unlock(&q->lock);
    return true;
}

enum queue_state queue_leave(struct pool_queue *q, struct session *s, uint64_t us)
{
    pthread_mutex_lock(&q->lock);
    enum queue_state was = (enum queue_state)s->qstate;
    if (was == QS_WAITING) {
        unlink_locked(q, s);
        s->qstate = QS_NONE;
        atomic_fetch_add_explicit(&q->wait_us, us, memory_order_relaxed);
    }
    pthread_mutex_unlock(&q->lock);
    return was;
}

void queue_woken_done(struct pool_queue *q, struct session *s, uint64_t us)
{
    pthread_mutex_lock(&q->lock);
    SLUICE_ASSERT(s->qstate == QS_WOKEN);
    s->qstate = QS_NONE;
    atomic_fetch_sub(&q->woken, 1);
    atomic_fetch_add_explicit(&q->wait_us, us, memory_order_relaxed);
    pthread_mutex_unlock(&q->lock);
}

void queue_requeue(struct pool_queue *q, struct session *s)
{
    pthread_mutex_lock(&q->lock);
    SLUICE_ASSERT(s->qstate == QS_WOKEN);
    link_locked(q, s, true);
    atomic_fetch_sub(&q->woken, 1);
    pthread_mutex_unlock(&q->lock);
}

void queue_kick(struct pool_queue *q)
{
    /* The releasing side decremented a server's live count, the joining
     * side incremented length; each then reads the other's variable. With
     * a full fence between the write and the read on both sides (here, and
     * the seq_cst RMW plus fence in the joiner), at least one of them sees
     * the other's write: either the waiter is woken here, or it sees the
     * free slot itself after joining. No wake is lost. */
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&q->length, memory_order_relaxed) == 0)
        return;
    pthread_mutex_lock(&q->lock);
    struct session *h = q->head;
    if (h != NULL) {
        unlink_locked(q, h);
        h->qstate = QS_WOKEN;
        atomic_fetch_add(&q->woken, 1);
        /* Under the lock, so h cannot leave the FIFO and end unseen
         * between being taken off it and being handed to its worker. */
        h->w->wake(h->w, h);
    }
    pthread_mutex_unlock(&q->lock);
}
