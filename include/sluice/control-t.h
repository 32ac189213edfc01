/* control-t.h - the main thread's state, read by the stats renderers
 * (see control.h for its functions). */
#ifndef SLUICE_CONTROL_T_H
#define SLUICE_CONTROL_T_H

#include "sluice/addr-t.h"
#include "sluice/admin-t.h"
#include "sluice/common.h"
#include "sluice/limits-t.h"
#include "sluice/listener-t.h"
#include "sluice/worker-t.h"

#include <ev.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/types.h>

struct admin;
struct admin_http;
struct config;
struct fanout;
struct runtime_change;
struct strbuf;

/* A `bind = unix:PATH` socket. Unix sockets have no SO_REUSEPORT: the main
 * thread binds one socket per path and every worker accepts from its own
 * dup() of it (so each can close its descriptor on its own schedule, and
 * the socket lives until the last one goes). Kept while some generation
 * binds the path; its file is removed when the path goes, and at stop. */
struct unix_bind {
    struct unix_bind *next;
    struct sockaddr_any addr;
    int fd;                /* the main thread's descriptor */
    struct unix_file file; /* the file bind() created */
    int mode;              /* as applied to the file */
    uid_t uid;
    gid_t gid;
};

struct control {
    struct ev_loop *loop; /* the default loop */
    struct config *cfg;   /* current generation */
    const char *config_path;
    /* Worker slots; 0..nworkers-1 run the current generation. Slots up to
     * nslots keep their counters after a worker retires. */
    struct worker *workers[SLUICE_MAX_WORKERS];
    int nworkers;
    int nslots;
    struct session_limits limits; /* live sessions, all workers, and [global] max_conns */
    struct worker_host worker_host; /* what every worker gets: see worker-t.h */
    ev_tstamp started;

    uint64_t generation;
    uint64_t reloads_ok, reloads_failed;
    /* Generations built because a resolve=all/srv answer changed (not
     * counted as reloads). */
    uint64_t dns_updates, dns_updates_failed;
    ev_async w_dns; /* the resolver thread: an answer arrived */
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
    struct admin_ops admin_ops; /* what they may do: see control_admin_ops() */
    struct pidfile *pidfile; /* [global] pid_file, as started (a reload keeps it) */
    /* Owner given to files sluice creates (admin socket, access log) so
     * it can still manage them after dropping privileges; -1 = as is. */
    uid_t owner_uid;
    gid_t owner_gid;
    struct unix_bind *unix_binds; /* of the current generation */
    /* Runtime server changes (add/del server, set server addr) since the
     * file was last loaded, oldest first: `show config` lists them and a
     * reload warns about those the file does not have. */
    struct runtime_change *runtime_changes;
    uint64_t runtime_changes_total; /* applied since start */
};

#endif
