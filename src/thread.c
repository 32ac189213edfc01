/* thread.c - starting sluice's threads with signals blocked; a helper
 * thread's mailbox. */
#include "sluice/thread.h"

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

int thread_mailbox_init(struct thread_mailbox *m,
                        void (*wake_cb)(struct ev_loop *, ev_async *, int))
{
    m->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOENV);
    if (m->loop == NULL)
        return -1;
    pthread_mutex_init(&m->lock, NULL);
    ev_async_init(&m->w_wake, wake_cb);
    ev_async_start(m->loop, &m->w_wake);
    return 0;
}

static void *mailbox_main(void *arg)
{
    struct thread_mailbox *m = arg;
    ev_run(m->loop, 0);
    return NULL;
}

int thread_mailbox_run(struct thread_mailbox *m)
{
    return thread_start(&m->thread, mailbox_main, m);
}

void *thread_mailbox_post(struct thread_mailbox *m, void *item)
{
    pthread_mutex_lock(&m->lock);
    void *old = m->pending;
    m->pending = item;
    pthread_mutex_unlock(&m->lock);
    ev_async_send(m->loop, &m->w_wake);
    return old;
}

void *thread_mailbox_take(struct thread_mailbox *m, bool *stop)
{
    pthread_mutex_lock(&m->lock);
    void *item = m->pending;
    m->pending = NULL;
    *stop = m->stop;
    pthread_mutex_unlock(&m->lock);
    return item;
}

void *thread_mailbox_stop(struct thread_mailbox *m)
{
    pthread_mutex_lock(&m->lock);
    m->stop = true;
    pthread_mutex_unlock(&m->lock);
    ev_async_send(m->loop, &m->w_wake);
    pthread_join(m->thread, NULL);
    void *left = m->pending;
    m->pending = NULL;
    return left;
}

void thread_mailbox_destroy(struct thread_mailbox *m)
{
    ev_loop_destroy(m->loop);
    pthread_mutex_destroy(&m->lock);
}
