/* thread.h - starting sluice's threads (workers, health checks) and the
 * mailbox of a helper thread that runs its own loop. */
#ifndef SLUICE_THREAD_H
#define SLUICE_THREAD_H

#include "sluice/thread-t.h"

#include <pthread.h>

/* Start fn(arg) in a new thread with every signal blocked: signals belong
 * to the main thread (its ev_signal watchers). Returns 0 or an errno. */
int thread_start(pthread_t *thread, void *(*fn)(void *), void *arg);

/* Set up m and a new loop (m->loop) for a thread: wake_cb runs on that
 * loop after each post and at stop (it calls thread_mailbox_take()).
 * Returns 0, or -1 if there is no loop (m is then not set up). */
int thread_mailbox_init(struct thread_mailbox *m,
                        void (*wake_cb)(struct ev_loop *, ev_async *, int));

/* Start the thread, which runs m's loop until it is broken (thread_start()
 * semantics). Returns 0 or an errno. */
int thread_mailbox_run(struct thread_mailbox *m);

/* Main thread: post item (ownership passes to the mailbox) and wake the
 * thread. Returns the item posted before that the thread has not taken,
 * for the caller to release; NULL if none. */
void *thread_mailbox_post(struct thread_mailbox *m, void *item);

/* The thread (wake_cb): the item posted, now owned by the caller (NULL if
 * none), and in *stop whether the thread is to stop. */
void *thread_mailbox_take(struct thread_mailbox *m, bool *stop);

/* Main thread: tell the thread to stop and wait for it to end. Returns
 * the item posted it has not taken, for the caller to release. */
void *thread_mailbox_stop(struct thread_mailbox *m);

/* After the thread has ended, or if it never started: frees the loop. */
void thread_mailbox_destroy(struct thread_mailbox *m);

#endif
