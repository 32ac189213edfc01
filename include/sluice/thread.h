/* thread.h - starting sluice's threads (workers, health checks) and the
 * config threads: a helper thread with its own loop that follows the
 * config generations the main thread posts it (health, resolver). */
#ifndef SLUICE_THREAD_H
#define SLUICE_THREAD_H

#include "sluice/thread-t.h"

#include <pthread.h>

/* Start fn(arg) in a new thread with every signal blocked: signals belong
 * to the main thread (its ev_signal watchers). Returns 0 or an errno. */
int thread_start(pthread_t *thread, void *(*fn)(void *), void *arg);

/* Set up ct with the owner's ops and a new loop (ct->mbox.loop, for the
 * owner's watchers). Returns 0, or -1 if there is no loop (ct is then not
 * set up). */
int config_thread_init(struct config_thread *ct, const struct config_thread_ops *ops);

/* Take a reference to cfg, plan it (ops->plan, on this thread) and start
 * the thread, which runs the loop until config_thread_stop(). Returns 0;
 * or an errno (thread_start()) with the plan cleared, the reference
 * released, the loop freed and the owner freed (ops->free). */
int config_thread_run(struct config_thread *ct, struct config *cfg);

/* Main thread: hand cfg (a new reference) to the thread, which clears the
 * plan of the generation it follows and plans cfg. A generation posted
 * before that the thread has not taken yet is released. */
void config_thread_post(struct config_thread *ct, struct config *cfg);

/* Main thread: stop the thread (it clears its plan and releases its
 * generation) and wait for it to end; release what was posted and not
 * taken, free the loop and then the owner (ops->free). */
void config_thread_stop(struct config_thread *ct);

#endif
