/* thread-t.h - a thread's mailbox: what the main thread hands a helper
 * thread (health, resolver) with its own loop (see thread.h). */
#ifndef SLUICE_THREAD_T_H
#define SLUICE_THREAD_T_H

#include <ev.h>
#include <pthread.h>
#include <stdbool.h>

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

#endif
