/* control.h - the main thread: starts workers, handles signals, stops. */
#ifndef SLUICE_CONTROL_H
#define SLUICE_CONTROL_H

#include "sluice/config-t.h"
#include "sluice/worker.h"

#include <ev.h>
#include <stdbool.h>

struct control {
    struct ev_loop *loop; /* the default loop */
    struct config *cfg;   /* current generation */
    const char *config_path;
    struct worker *workers;
    int nworkers;
    _Atomic int active;    /* live sessions, all workers */
    _Atomic int max_conns; /* global limit of the current generation */
    ev_tstamp started;

    ev_signal w_sigterm, w_sigint, w_sighup, w_sigusr1;
    ev_async w_worker_exit;
    ev_timer w_shutdown;
    bool stopping;
};

/* Run sluice with a loaded config until stopped; returns the exit code. */
int control_run(struct config *cfg, const char *config_path);

#endif
