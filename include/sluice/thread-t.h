/* thread-t.h - a config thread: a helper thread (health, resolver) with its
 * own loop that follows the config generations the main thread hands it
 * (see thread.h). */
#ifndef SLUICE_THREAD_T_H
#define SLUICE_THREAD_T_H

#include <ev.h>
#include <pthread.h>
#include <stdbool.h>

struct config;
struct config_thread;

/* The latest item posted (a config generation) and a stop flag, under a
 * mutex, and an ev_async that wakes the receiving thread's loop. */
struct thread_mailbox {
    struct ev_loop *loop; /* the receiving thread's */
    pthread_t thread;     /* the receiving thread, once started */
    ev_async w_wake;      /* on loop: something was posted */
    pthread_mutex_t lock;
    void *pending; /* under lock: posted, not yet taken */
    bool stop;     /* under lock */
};

/* What the owner of a config thread does with a generation. Both run on
 * the thread, or on the main thread before it starts or after it ended. */
struct config_thread_ops {
    /* Follow ct->cfg (just set; the previous plan was cleared). */
    void (*plan)(struct config_thread *ct);
    /* Drop the plan of ct->cfg: stop its watchers and free what plan()
     * set up (the reference to ct->cfg is released by the caller). Runs
     * with no plan as well. */
    void (*clear)(struct config_thread *ct);
    /* Free the owner (and so ct): the thread has ended, or never started. */
    void (*free)(struct config_thread *ct);
};

struct config_thread {
    struct thread_mailbox mbox; /* a new generation, stop */
    struct config *cfg;         /* the generation followed (a reference) */
    const struct config_thread_ops *ops;
};

#endif
