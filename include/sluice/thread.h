/* thread.h - starting sluice's threads (workers, health checks). */
#ifndef SLUICE_THREAD_H
#define SLUICE_THREAD_H

#include <pthread.h>

/* Start fn(arg) in a new thread with every signal blocked: signals belong
 * to the main thread (its ev_signal watchers). Returns 0 or an errno. */
int thread_start(pthread_t *thread, void *(*fn)(void *), void *arg);

#endif
