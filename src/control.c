/* control.c - the main thread: open listening sockets, start workers,
 * handle signals, graceful stop. */
#include "sluice/control.h"
#include "sluice/config.h"
#include "sluice/listener.h"
#include "sluice/log.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int workers_alive(struct control *ctl)
{
    int n = 0;
    for (int i = 0; i < ctl->nworkers; i++)
        n += !atomic_load(&ctl->workers[i].exited);
    return n;
}

static void worker_exit_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    (void)revents;
    struct control *ctl = container_of(a, struct control, w_worker_exit);
    if (workers_alive(ctl) == 0)
        ev_break(loop, EVBREAK_ALL);
}

static void shutdown_timeout_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct control *ctl = container_of(t, struct control, w_shutdown);
    log_warn("shutdown_timeout reached: closing %d remaining sessions",
             atomic_load(&ctl->active));
    for (int i = 0; i < ctl->nworkers; i++)
        worker_send(&ctl->workers[i], WMSG_KILL_ALL);
}

static void stop_cb(struct ev_loop *loop, ev_signal *sig, int revents)
{
    (void)revents;
    struct control *ctl = sig->data;
    if (ctl->stopping) {
        log_info("second %s: closing all sessions now", strsignal(sig->signum));
        shutdown_timeout_cb(loop, &ctl->w_shutdown, 0);
        return;
    }
    ctl->stopping = true;
    log_info("stopping (%s): no new connections, %d sessions draining for up to %.1fs",
             strsignal(sig->signum), atomic_load(&ctl->active),
             (double)ctl->cfg->shutdown_timeout_ms / 1000.0);
    for (int i = 0; i < ctl->nworkers; i++)
        worker_send(&ctl->workers[i], WMSG_STOP_ACCEPT);
    ev_timer_set(&ctl->w_shutdown, (double)ctl->cfg->shutdown_timeout_ms / 1000.0, 0.);
    ev_timer_start(loop, &ctl->w_shutdown);
}

static void hup_cb(struct ev_loop *loop, ev_signal *sig, int revents)
{
    (void)loop;
    (void)sig;
    (void)revents;
    log_warn("SIGHUP: configuration reload is not supported yet; keeping the running config");
}

static void usr1_cb(struct ev_loop *loop, ev_signal *sig, int revents)
{
    (void)loop;
    (void)revents;
    struct control *ctl = sig->data;
    if (log_access_open(ctl->cfg->access_log) < 0)
        log_error("SIGUSR1: reopen access log %s: %s", ctl->cfg->access_log, strerror(errno));
    else
        log_info("SIGUSR1: access log reopened");
}

/* Every worker gets its own SO_REUSEPORT socket for every bind address. */
static int open_listeners(struct control *ctl)
{
    struct config *cfg = ctl->cfg;
    char err[256];
    for (int i = 0; i < cfg->nlisteners; i++) {
        struct listener_conf *lc = &cfg->listeners[i];
        for (int b = 0; b < lc->nbinds; b++) {
            for (int wi = 0; wi < ctl->nworkers; wi++) {
                int fd = listener_open(&lc->binds[b], lc->backlog, err, sizeof(err));
                if (fd < 0) {
                    log_error("listener %s: %s", lc->name, err);
                    return -1;
                }
                if (worker_add_listen(&ctl->workers[wi], lc, &lc->binds[b], fd) < 0) {
                    close(fd);
                    log_error("listener %s: out of memory", lc->name);
                    return -1;
                }
            }
        }
    }
    return 0;
}

int control_run(struct config *cfg, const char *config_path)
{
    struct control ctl_storage;
    struct control *ctl = &ctl_storage;
    memset(ctl, 0, sizeof(*ctl));
    ctl->loop = ev_default_loop(EVFLAG_AUTO | EVFLAG_NOENV);
    if (ctl->loop == NULL) {
        log_error("cannot create the event loop");
        return 1;
    }
    ctl->cfg = cfg;
    ctl->config_path = config_path;
    ctl->started = ev_time();
    atomic_store(&ctl->max_conns, cfg->max_conns);
    log_current_level = cfg->log_level;
    signal(SIGPIPE, SIG_IGN);

    if (config_attach_runtime(cfg) < 0) {
        log_error("out of memory");
        return 1;
    }
    if (log_access_open(cfg->access_log) < 0) {
        log_error("access_log %s: %s", cfg->access_log, strerror(errno));
        return 1;
    }
    ctl->nworkers = cfg->workers;
    ctl->workers = calloc((size_t)ctl->nworkers, sizeof(struct worker));
    if (ctl->workers == NULL)
        return 1;
    int rc = 1, started = 0;
    for (int i = 0; i < ctl->nworkers; i++) {
        if (worker_init(&ctl->workers[i], ctl, i, cfg) < 0) {
            log_error("worker %d: cannot create its event loop", i);
            ctl->nworkers = i;
            goto out;
        }
    }
    if (open_listeners(ctl) < 0)
        goto out;

    ev_async_init(&ctl->w_worker_exit, worker_exit_cb);
    ev_async_start(ctl->loop, &ctl->w_worker_exit);
    ev_init(&ctl->w_shutdown, shutdown_timeout_cb);
    ev_signal_init(&ctl->w_sigterm, stop_cb, SIGTERM);
    ev_signal_init(&ctl->w_sigint, stop_cb, SIGINT);
    ev_signal_init(&ctl->w_sighup, hup_cb, SIGHUP);
    ev_signal_init(&ctl->w_sigusr1, usr1_cb, SIGUSR1);
    ev_signal *sigs[] = {&ctl->w_sigterm, &ctl->w_sigint, &ctl->w_sighup, &ctl->w_sigusr1};
    for (size_t i = 0; i < ARRAY_SIZE(sigs); i++) {
        sigs[i]->data = ctl;
        ev_signal_start(ctl->loop, sigs[i]);
    }

    for (; started < ctl->nworkers; started++) {
        if (worker_start(&ctl->workers[started]) < 0) {
            log_error("worker %d: cannot start thread: %s", started, strerror(errno));
            for (int i = 0; i < started; i++)
                worker_send(&ctl->workers[i], WMSG_STOP_ACCEPT);
            for (int i = 0; i < started; i++)
                worker_join(&ctl->workers[i]);
            goto out;
        }
    }
    log_info("ready: %d workers, %d listeners, pid %d", ctl->nworkers, cfg->nlisteners,
             (int)getpid());
    ev_run(ctl->loop, 0);
    for (int i = 0; i < ctl->nworkers; i++)
        worker_join(&ctl->workers[i]);
    log_info("exit: all sessions closed");
    rc = 0;
out:
    for (int i = 0; i < ctl->nworkers; i++)
        worker_destroy(&ctl->workers[i]);
    free(ctl->workers);
    log_access_close();
    return rc;
}
