/* thread.c - starting sluice's threads with signals blocked; the config
 * threads (a loop, a mailbox and the generation followed). */
#include "sluice/thread.h"
#include "sluice/common.h"
#include "sluice/config.h"

#include <signal.h>

int thread_start(pthread_t *thread, void *(*fn)(void *), void *arg)
{
    /* The new thread inherits the mask in force at pthread_create(). */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(thread, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

/* Drop the plan of the generation followed and the reference to it. */
static void config_thread_clear(struct config_thread *ct)
{
    ct->ops->clear(ct);
    config_unref(ct->cfg);
    ct->cfg = NULL;
}

static void config_thread_follow(struct config_thread *ct, struct config *cfg)
{
    config_thread_clear(ct);
    ct->cfg = cfg;
    ct->ops->plan(ct);
}

/* The thread: take what was posted (the mailbox's item is now ours). */
static void wake_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    struct config_thread *ct = container_of(a, struct config_thread, mbox.w_wake);
    struct thread_mailbox *m = &ct->mbox;
    pthread_mutex_lock(&m->lock);
    struct config *next = m->pending;
    m->pending = NULL;
    bool stop = m->stop;
    pthread_mutex_unlock(&m->lock);
    if (next)
        config_thread_follow(ct, next);
    if (stop) {
        config_thread_clear(ct);
        ev_break(loop, EVBREAK_ALL);
    }
}

static void *config_thread_main(void *arg)
{
    struct config_thread *ct = arg;
    ev_run(ct->mbox.loop, 0);
    return NULL;
}

int config_thread_init(struct config_thread *ct, const struct config_thread_ops *ops)
{
    struct thread_mailbox *m = &ct->mbox;
    m->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOENV);
    if (m->loop == NULL)
        return -1;
    pthread_mutex_init(&m->lock, NULL);
    ev_async_init(&m->w_wake, wake_cb);
    ev_async_start(m->loop, &m->w_wake);
    ct->ops = ops;
    ct->cfg = NULL;
    return 0;
}

/* After the thread has ended, or if it never started: frees ct's owner. */
static void config_thread_destroy(struct config_thread *ct)
{
    config_thread_clear(ct);
    config_unref(ct->mbox.pending);
    ct->mbox.pending = NULL;
    ev_loop_destroy(ct->mbox.loop);
    pthread_mutex_destroy(&ct->mbox.lock);
    ct->ops->free(ct);
}

int config_thread_run(struct config_thread *ct, struct config *cfg)
{
    config_ref(cfg);
    config_thread_follow(ct, cfg);
    int rc = thread_start(&ct->mbox.thread, config_thread_main, ct);
    if (rc != 0)
        config_thread_destroy(ct);
    return rc;
}

void config_thread_post(struct config_thread *ct, struct config *cfg)
{
    struct thread_mailbox *m = &ct->mbox;
    config_ref(cfg);
    pthread_mutex_lock(&m->lock);
    struct config *old = m->pending;
    m->pending = cfg;
    pthread_mutex_unlock(&m->lock);
    ev_async_send(m->loop, &m->w_wake);
    config_unref(old);
}

void config_thread_stop(struct config_thread *ct)
{
    struct thread_mailbox *m = &ct->mbox;
    pthread_mutex_lock(&m->lock);
    m->stop = true;
    pthread_mutex_unlock(&m->lock);
    ev_async_send(m->loop, &m->w_wake);
    pthread_join(m->thread, NULL);
    config_thread_destroy(ct);
}
