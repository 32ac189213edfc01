/* health.h - the health-check thread: one libev loop running active checks
 * for every server of every pool that has `check` set. It is the single
 * writer of check results; workers read health with acquire loads. */
#ifndef SLUICE_HEALTH_H
#define SLUICE_HEALTH_H

#include "sluice/config-t.h"

/* Start the thread checking the servers of cfg (takes a reference). */
int health_start(struct config *cfg);
/* Hand the thread a new generation (takes a reference); it re-plans its
 * checks, keeping each server's state, which lives in struct backend. */
void health_update(struct config *cfg);
/* Stop and join the thread, release its generation. */
void health_stop(void);

#endif
