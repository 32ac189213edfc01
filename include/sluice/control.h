/* control.h - the main thread: starts workers, handles signals, reloads,
 * serves the admin side, stops. */
#ifndef SLUICE_CONTROL_H
#define SLUICE_CONTROL_H

#include "sluice/config.h"
#include "sluice/strbuf.h"
#include "sluice/worker.h"

#include <ev.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/types.h>

struct admin;
struct admin_http;
struct fanout;

struct control {
    struct ev_loop *loop; /* the default loop */
    struct config *cfg;   /* current generation */
    const char *config_path;
    /* Worker slots; 0..nworkers-1 run the current generation. Slots up to
     * nslots keep their counters after a worker retires. */
    struct worker *workers[SLUICE_MAX_WORKERS];
    int nworkers;
    int nslots;
    _Atomic int active;    /* live sessions, all workers */
    _Atomic int max_conns; /* global limit of the current generation */
    ev_tstamp started;

    uint64_t generation;
    uint64_t reloads_ok, reloads_failed;
    ev_tstamp last_reload;
    char last_reload_result[512];

    ev_signal w_sigterm, w_sigint, w_sighup, w_sigusr1;
    ev_async w_worker_exit;
    ev_timer w_shutdown;
    bool stopping;

    /* Results of calls fanned out to the workers, handed back here. */
    ev_async w_fanout_done;
    pthread_mutex_t fanout_lock;
    struct fanout *fanout_done;

    struct admin *admin;
    struct admin_http *http;
    struct pidfile *pidfile; /* [global] pid_file, as started (a reload keeps it) */
    /* Owner given to files sluice creates (admin socket, access log) so
     * it can still manage them after dropping privileges; -1 = as is. */
    uid_t owner_uid;
    gid_t owner_gid;
};

/* Run sluice with a loaded config until stopped; returns the exit code. */
int control_run(struct config *cfg, const char *config_path);

/* Re-read the config file and apply it. On error nothing changes and
 * every error is appended to `report` (one per line); on success a
 * one-line summary is. Returns 0 on success. */
int control_reload(struct control *ctl, struct strbuf *report);

/* Reopen the access log by its path (after log rotation): SIGUSR1 and the
 * admin `reopen`. Logs the outcome prefixed with `who`; when reply is not
 * NULL, appends `access log reopened` or `error: reopen access log PATH:
 * REASON`. On failure the previous file stays in use. Returns 0 or -1. */
int control_reopen_access_log(struct control *ctl, const char *who, struct strbuf *reply);

/* Run fn(worker, arg) on every running worker, then done(arg) back on the
 * main thread once all have run (at once if no worker runs). Returns -1
 * on allocation failure (done is then not called). */
int control_fanout(struct control *ctl, void (*fn)(struct worker *, void *),
                   void (*done)(void *), void *arg);

#endif
