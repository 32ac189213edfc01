/* control.c - the main thread: open listening sockets, start workers,
 * signals, in-process reload, fan-out calls to workers, graceful stop. */
#include "sluice/control.h"
#include "sluice/addr.h"
#include "sluice/admin.h"
#include "sluice/config.h"
#include "sluice/config_diff.h"
#include "sluice/fault.h"
#include "sluice/health.h"
#include "sluice/resolver.h"
#include "sluice/listener.h"
#include "sluice/log.h"
#include "sluice/notify.h"
#include "sluice/pidfile.h"
#include "sluice/privilege.h"
#include "sluice/reuseport.h"
#include "sluice/stats.h"
#include "sluice/strbuf.h"
#include "sluice/worker.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct fanout {
    struct fanout *next;
    struct control *ctl;
    _Atomic int pending;
    void (*fn)(struct worker *, void *);
    void (*done)(void *);
    void *arg;
};

static int workers_alive(struct control *ctl)
{
    int n = 0;
    for (int i = 0; i < ctl->nslots; i++)
        n += worker_is_live(ctl->workers[i]);
    return n;
}

/* Join workers that exited (retired by a reload, or all of them at stop). */
static void reap_workers(struct control *ctl)
{
    for (int i = 0; i < ctl->nslots; i++) {
        struct worker *w = ctl->workers[i];
        if (w->started && atomic_load(&w->exited) && !atomic_load(&w->joined)) {
            worker_join(w);
            worker_destroy(w);
            atomic_store(&w->joined, true);
            log_info("worker %d: exited", i);
        }
    }
}

static void worker_exit_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    struct control *ctl = container_of(a, struct control, w_worker_exit);
    reap_workers(ctl);
    if (ctl->stopping && workers_alive(ctl) == 0)
        ev_break(loop, EVBREAK_ALL);
}

static void fanout_run(struct worker *w, void *arg)
{
    struct fanout *f = arg;
    f->fn(w, f->arg);
    if (atomic_fetch_sub(&f->pending, 1) == 1) {
        struct control *ctl = f->ctl;
        pthread_mutex_lock(&ctl->fanout_lock);
        f->next = ctl->fanout_done;
        ctl->fanout_done = f;
        pthread_mutex_unlock(&ctl->fanout_lock);
        ev_async_send(ctl->loop, &ctl->w_fanout_done);
    }
}

/* SLUICE_FAULT_FANOUT_WAIT_EXIT (test builds): hold the main thread until
 * one of the retiring workers running now has exited (at most 10 s), so a
 * test can make a worker exit in the middle of control_fanout(). */
static void fanout_fault_wait(struct control *ctl)
{
    /* Only retiring workers (slots past nworkers) are about to exit. */
    bool live[SLUICE_MAX_WORKERS] = {0}, any = false;
    for (int i = ctl->nworkers; i < ctl->nslots; i++) {
        live[i] = worker_is_live(ctl->workers[i]);
        any |= live[i];
    }
    if (!any)
        return;
    log_warn("fault: fan-out waits for a worker to exit (SLUICE_FAULT_FANOUT_WAIT_EXIT)");
    for (int tick = 0; tick < 10000; tick++) {
        for (int i = 0; i < ctl->nslots; i++) {
            if (live[i] && atomic_load(&ctl->workers[i]->exited)) {
                log_warn("fault: worker %d exited during the fan-out", i);
                return;
            }
        }
        nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
    }
    log_warn("fault: no worker exited within 10 s");
}

static void fanout_done_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    struct control *ctl = container_of(a, struct control, w_fanout_done);
    pthread_mutex_lock(&ctl->fanout_lock);
    struct fanout *f = ctl->fanout_done;
    ctl->fanout_done = NULL;
    pthread_mutex_unlock(&ctl->fanout_lock);
    while (f) {
        struct fanout *next = f->next;
        f->done(f->arg);
        free(f);
        f = next;
    }
}

int control_fanout(struct control *ctl, void (*fn)(struct worker *, void *), void (*done)(void *),
                   void *arg)
{
    struct fanout *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    f->ctl = ctl;
    f->fn = fn;
    f->done = done;
    f->arg = arg;
    /* Decide once which workers are called, retiring ones included (they
     * still hold sessions), and count and post to exactly those. One that
     * exits after this still runs the call: worker_destroy() runs a call
     * left in its inbox. */
    struct worker *to[SLUICE_MAX_WORKERS];
    int n = 0;
    for (int i = 0; i < ctl->nslots; i++)
        if (worker_is_live(ctl->workers[i]))
            to[n++] = ctl->workers[i];
    if (fault_fanout_wait_exit())
        fanout_fault_wait(ctl);
    if (n == 0) {
        done(arg);
        free(f);
        return 0;
    }
    struct worker_msg *msgs[SLUICE_MAX_WORKERS];
    for (int k = 0; k < n; k++) {
        if ((msgs[k] = calloc(1, sizeof(struct worker_msg))) == NULL) {
            while (k--)
                free(msgs[k]);
            free(f);
            return -1;
        }
        msgs[k]->type = WMSG_CALL;
        msgs[k]->fn = fanout_run;
        msgs[k]->arg = f;
    }
    atomic_init(&f->pending, n);
    for (int k = 0; k < n; k++)
        worker_post(to[k], msgs[k]);
    return 0;
}

static void unix_binds_free(struct unix_bind *list, bool remove);

static void shutdown_timeout_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct control *ctl = container_of(t, struct control, w_shutdown);
    log_warn("shutdown_timeout reached: closing %d remaining sessions", atomic_load(&ctl->limits.active));
    for (int i = 0; i < ctl->nslots; i++)
        if (worker_is_live(ctl->workers[i]))
            worker_send(ctl->workers[i], WMSG_KILL_ALL);
}

static void stop_cb(struct ev_loop *loop, ev_signal *sig, int revents)
{
    struct control *ctl = sig->data;
    if (ctl->stopping) {
        log_info("second %s: closing all sessions now", strsignal(sig->signum));
        shutdown_timeout_cb(loop, &ctl->w_shutdown, 0);
        return;
    }
    ctl->stopping = true;
    notify_send("STOPPING=1");
    /* The socket files go first, so nobody queues on a closing socket. */
    unix_binds_free(ctl->unix_binds, true);
    ctl->unix_binds = NULL;
    log_info("stopping (%s): no new connections, %d sessions draining for up to %.1fs",
             strsignal(sig->signum), atomic_load(&ctl->limits.active),
             (double)ctl->cfg->shutdown_timeout_ms / 1000.0);
    for (int i = 0; i < ctl->nslots; i++)
        if (worker_is_live(ctl->workers[i]))
            worker_send(ctl->workers[i], WMSG_STOP_ACCEPT);
    if (ctl->admin) {
        admin_stop(ctl->admin);
        ctl->admin = NULL;
    }
    if (ctl->http) {
        admin_http_stop(ctl->http);
        ctl->http = NULL;
    }
    ev_timer_set(&ctl->w_shutdown, (double)ctl->cfg->shutdown_timeout_ms / 1000.0, 0.);
    ev_timer_start(loop, &ctl->w_shutdown);
    if (workers_alive(ctl) == 0)
        ev_break(loop, EVBREAK_ALL);
}

static void hup_cb(struct ev_loop *loop, ev_signal *sig, int revents)
{
    struct control *ctl = sig->data;
    if (ctl->stopping)
        return;
    struct strbuf report;
    strbuf_init(&report);
    control_reload(ctl, &report);
    strbuf_free(&report);
}

/* Open (or reopen) the access log, handing a file to the user sluice runs
 * as so that a SIGUSR1 reopen still works after privileges are dropped. */
static int access_log_open(struct control *ctl, const char *path)
{
    return log_access_open(path, ctl->owner_uid, ctl->owner_gid);
}

int control_reopen_access_log(struct control *ctl, const char *who, struct strbuf *reply)
{
    const char *path = ctl->cfg->access_log;
    if (access_log_open(ctl, path) < 0) {
        int err = errno;
        log_error("%s: reopen access log %s: %s", who, path, strerror(err));
        if (reply)
            strbuf_printf(reply, "error: reopen access log %s: %s\n", path, strerror(err));
        return -1;
    }
    log_info("%s: access log reopened", who);
    if (reply)
        strbuf_puts(reply, "access log reopened\n");
    return 0;
}

static void usr1_cb(struct ev_loop *loop, ev_signal *sig, int revents)
{
    control_reopen_access_log(sig->data, "SIGUSR1", NULL);
}

static bool cfg_has_bind(struct config *cfg, const struct sockaddr_any *a)
{
    if (cfg == NULL)
        return false;
    for (int i = 0; i < cfg->nlisteners; i++)
        for (int b = 0; b < cfg->listeners[i].nbinds; b++)
            if (addr_equal(&cfg->listeners[i].binds[b], a))
                return true;
    return false;
}

static void free_new_listens(struct worker_new_listen *nl)
{
    while (nl) {
        struct worker_new_listen *next = nl->next;
        reuseport_close(nl->fd);
        free(nl);
        nl = next;
    }
}

static struct unix_bind *unix_find(struct unix_bind *list, const struct sockaddr_any *a)
{
    for (; list; list = list->next)
        if (addr_equal(&list->addr, a))
            return list;
    return NULL;
}

/* Who a listener's socket files belong to: bind_owner, else the user
 * sluice runs as (-1: as created). */
static void unix_owner(const struct control *ctl, const struct listener_conf *lc, uid_t *uid,
                       gid_t *gid)
{
    *uid = lc->bind_owner ? lc->owner_uid : ctl->owner_uid;
    *gid = lc->bind_owner ? lc->owner_gid : ctl->owner_gid;
}

/* Close the main thread's descriptor of u and free it; with `remove`,
 * also remove its file (if it is still the one we made). The workers'
 * dup()s keep the socket itself until they close them. */
static void unix_bind_free(struct unix_bind *u, bool remove)
{
    const char *path = u->addr.u.un.sun_path;
    if (remove && listener_unlink_unix(path, &u->file) < 0)
        log_warn("cannot remove unix:%s: %s (a later start replaces a stale socket file)", path,
                 errno == EEXIST ? "another file is there now" : strerror(errno));
    close(u->fd);
    free(u);
}

static void unix_binds_free(struct unix_bind *list, bool remove)
{
    while (list) {
        struct unix_bind *next = list->next;
        unix_bind_free(list, remove);
        list = next;
    }
}

/* Create the socket of every unix: bind of cfg found in neither `have`
 * nor *fresh, onto *fresh. Main thread, with the privileges it has now:
 * as root at start (so bind_owner can be any user), as the user on a
 * reload. Returns -1 with err set (what it made stays on *fresh). */
static int open_unix_binds(struct control *ctl, struct config *cfg, struct unix_bind *have,
                           struct unix_bind **fresh, char *err, size_t errlen)
{
    for (int i = 0; i < cfg->nlisteners; i++) {
        struct listener_conf *lc = &cfg->listeners[i];
        for (int b = 0; b < lc->nbinds; b++) {
            const struct sockaddr_any *a = &lc->binds[b];
            if (a->u.sa.sa_family != AF_UNIX || unix_find(have, a) || unix_find(*fresh, a))
                continue;
            struct unix_bind *u = calloc(1, sizeof(*u));
            if (u == NULL) {
                snprintf(err, errlen, "listener %s: out of memory", lc->name);
                return -1;
            }
            char why[256];
            u->addr = *a;
            u->mode = lc->bind_mode;
            unix_owner(ctl, lc, &u->uid, &u->gid);
            u->fd = listener_open_unix(a, lc->backlog, u->mode, u->uid, u->gid, &u->file, why,
                                       sizeof(why));
            if (u->fd < 0) {
                snprintf(err, errlen, "listener %s: unix:%s", lc->name, why);
                free(u);
                return -1;
            }
            u->next = *fresh;
            *fresh = u;
            log_info("listener %s: unix:%s (mode %04o)", lc->name, a->u.un.sun_path,
                     (unsigned)u->mode);
        }
    }
    return 0;
}

/* A kept path whose bind_mode or bind_owner changed: apply them to the
 * file (never through a symlink: only while it is still our socket). */
static void unix_bind_update(struct control *ctl, struct unix_bind *u,
                             const struct listener_conf *lc)
{
    uid_t uid;
    gid_t gid;
    unix_owner(ctl, lc, &uid, &gid);
    if (u->mode == lc->bind_mode && u->uid == uid && u->gid == gid)
        return;
    const char *path = u->addr.u.un.sun_path;
    struct stat st;
    if (lstat(path, &st) < 0 || st.st_dev != u->file.dev || st.st_ino != u->file.ino ||
        fchmodat(AT_FDCWD, path, (mode_t)lc->bind_mode, AT_SYMLINK_NOFOLLOW) < 0 ||
        ((uid != (uid_t)-1 || gid != (gid_t)-1) && lchown(path, uid, gid) < 0)) {
        log_warn("listener %s: unix:%s: cannot apply bind_mode/bind_owner: %s", lc->name, path,
                 strerror(errno));
        return;
    }
    u->mode = lc->bind_mode;
    u->uid = uid;
    u->gid = gid;
}

/* Open a socket per bind address of `cfg` that `old` does not have (all of
 * them when old is NULL), for one worker: a TCP bind gets a socket of its
 * own, a unix: bind a dup() of the main thread's socket for the path (in
 * `fresh`, made by this reload, or ctl->unix_binds). Returns -1 with err
 * set. */
static int open_new_binds(struct control *ctl, struct config *cfg, struct config *old,
                          struct unix_bind *fresh, int worker, struct worker_new_listen **out,
                          char *err, size_t errlen)
{
    *out = NULL;
    for (int i = 0; i < cfg->nlisteners; i++) {
        struct listener_conf *lc = &cfg->listeners[i];
        for (int b = 0; b < lc->nbinds; b++) {
            if (cfg_has_bind(old, &lc->binds[b]))
                continue;
            char why[256];
            int fd;
            if (lc->binds[b].u.sa.sa_family == AF_UNIX) {
                struct unix_bind *u = unix_find(fresh, &lc->binds[b]);
                if (u == NULL)
                    u = unix_find(ctl->unix_binds, &lc->binds[b]);
                SLUICE_ASSERT(u != NULL);
                fd = fcntl(u->fd, F_DUPFD_CLOEXEC, 0);
                if (fd < 0)
                    snprintf(why, sizeof(why), "unix:%s: dup: %s", u->addr.u.un.sun_path,
                             strerror(errno));
            } else {
                fd = reuseport_open(&lc->binds[b], lc->backlog, worker, why, sizeof(why));
            }
            struct worker_new_listen *nl = fd >= 0 ? calloc(1, sizeof(*nl)) : NULL;
            if (nl == NULL) {
                snprintf(err, errlen, "listener %s: %s", lc->name, fd < 0 ? why : "out of memory");
                if (fd >= 0)
                    reuseport_close(fd);
                free_new_listens(*out);
                *out = NULL;
                return -1;
            }
            nl->listener = i;
            nl->addr = lc->binds[b];
            nl->fd = fd;
            nl->next = *out;
            *out = nl;
        }
    }
    return 0;
}

/* Prepare slot i for a new worker thread running cfg; counters survive. */
static int slot_init(struct control *ctl, int i, struct config *cfg)
{
    if (ctl->workers[i] == NULL) {
        size_t sz = (sizeof(struct worker) + SLUICE_CACHELINE - 1) & ~(size_t)(SLUICE_CACHELINE - 1);
        struct worker *w = aligned_alloc(SLUICE_CACHELINE, sz);
        if (w == NULL)
            return -1;
        memset(w, 0, sizeof(*w));
        ctl->workers[i] = w;
        if (i >= ctl->nslots)
            ctl->nslots = i + 1;
    }
    return worker_init(ctl->workers[i], &ctl->worker_host, i, cfg);
}

/* The admin endpoints a generation asks for, opened before it is
 * committed so that a reload which cannot open them changes nothing. */
struct admin_change {
    bool sock_changes, http_changes;
    struct admin *sock;
    struct admin_http *http;
};

static bool same_str(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

static int admin_prepare(struct control *ctl, struct config *cfg, struct config *old,
                         struct admin_change *ch, char *err, size_t errlen)
{
    memset(ch, 0, sizeof(*ch));
    ch->sock_changes = old == NULL || !same_str(old->admin_socket, cfg->admin_socket) ||
                       old->admin_mode != cfg->admin_mode;
    ch->http_changes = old == NULL || old->has_admin_http != cfg->has_admin_http ||
                       (cfg->has_admin_http && !addr_equal(&old->admin_http, &cfg->admin_http));
    bool same_path = old && same_str(old->admin_socket, cfg->admin_socket);
    if (ch->sock_changes && cfg->admin_socket && !same_path) {
        char why[256];
        ch->sock = admin_start(&ctl->admin_ops, cfg->admin_socket, cfg->admin_mode, ctl->owner_uid,
                               ctl->owner_gid, why, sizeof(why));
        if (ch->sock == NULL) {
            snprintf(err, errlen, "admin_socket: %s", why);
            return -1;
        }
    }
    if (ch->http_changes && cfg->has_admin_http) {
        char why[256];
        ch->http = admin_http_start(&ctl->admin_ops, &cfg->admin_http, why, sizeof(why));
        if (ch->http == NULL) {
            snprintf(err, errlen, "admin_http: %s", why);
            if (ch->sock)
                admin_stop(ch->sock);
            ch->sock = NULL;
            return -1;
        }
    }
    return 0;
}

static void admin_abort(struct admin_change *ch)
{
    if (ch->sock)
        admin_stop(ch->sock);
    if (ch->http)
        admin_http_stop(ch->http);
}

static void admin_commit(struct control *ctl, struct config *cfg, struct admin_change *ch)
{
    if (ch->sock_changes) {
        bool same_path = ctl->admin && cfg->admin_socket &&
                         strcmp(admin_path(ctl->admin), cfg->admin_socket) == 0;
        if (same_path) {
            /* Only the mode changed: apply it to the live socket. */
            if (chmod(cfg->admin_socket, (mode_t)cfg->admin_mode) < 0)
                log_warn("admin socket: chmod %s: %s", cfg->admin_socket, strerror(errno));
        } else {
            if (ctl->admin)
                admin_stop(ctl->admin);
            ctl->admin = ch->sock;
        }
    }
    if (ch->http_changes) {
        if (ctl->http)
            admin_http_stop(ctl->http);
        ctl->http = ch->http;
    }
}

static void reload_failed(struct control *ctl, struct strbuf *report, const char *why)
{
    ctl->reloads_failed++;
    ctl->last_reload = ev_time();
    snprintf(ctl->last_reload_result, sizeof(ctl->last_reload_result), "failed: %s", why);
    log_error("reload failed: %s; still running generation %llu", why,
              (unsigned long long)ctl->generation);
    strbuf_printf(report, "reload failed: %s; still running generation %llu\n", why,
                  (unsigned long long)ctl->generation);
}

/* What a reload has made ready before it commits: the new generation, its
 * admin endpoints, every listening socket it opened, one message per
 * worker and the threads of the workers it adds (running, but with no
 * socket yet). Nothing in here is seen by a client until reload_commit();
 * reload_abort() undoes any prefix of reload_prepare(). */
struct reload_plan {
    struct config *cfg, *old;
    int old_n, new_n;
    struct admin_change admin;
    bool admin_open;
    struct unix_bind *unix_fresh; /* unix: sockets of paths new in cfg */
    /* Per worker slot 0..new_n-1: the sockets for binds it lacks. */
    struct worker_new_listen *fresh[SLUICE_MAX_WORKERS];
    /* Per slot 0..max(old_n,new_n)-1: WMSG_CONFIG below new_n, WMSG_RETIRE
     * above. Allocated here so that neither commit nor abort allocates
     * (abort sends the new workers their stop with it). */
    struct worker_msg *msgs[SLUICE_MAX_WORKERS];
    int inited;  /* new slots old_n..inited-1 have a loop (slot_init) */
    int started; /* new slots old_n..started-1 have a thread */
    bool dns;    /* a DNS change: the running text with new answers */
    bool dry_run; /* reload_validate() only: errors go to the report, not the log */
    /* A runtime server change: this text (the running generation's dump,
     * edited) instead of the file. */
    const char *text;
    size_t text_len;
    char err[300];
};

/* reload_prepare() failed with errs: log each and put it in report, sum
 * them up in p->err as "N WHAT[s] TAIL", free them. Returns -1. */
static int prepare_failed(struct reload_plan *p, struct strbuf *report, struct config_errors *errs,
                          const char *what, const char *tail)
{
    for (int i = 0; i < errs->n; i++) {
        if (!p->dry_run)
            log_error("%s", errs->msgs[i]);
        strbuf_printf(report, "%s\n", errs->msgs[i]);
    }
    snprintf(p->err, sizeof(p->err), "%d %s%s %s", errs->n, what, errs->n == 1 ? "" : "s", tail);
    config_errors_free(errs);
    return -1;
}

/* The first half of reload_prepare(), which a dry run does alone: parse
 * and validate the file, attach the runtime state, resolve new host
 * names, expand resolve=all/srv templates, warn about what only a restart
 * applies and refuse a worker slot that is still draining. Opens nothing.
 * Returns -1 with p->err set (and the file's errors in report); the caller
 * then runs reload_abort(). */
static int reload_validate(struct control *ctl, struct reload_plan *p, struct strbuf *report)
{
    struct config_errors errs = {0};
    p->old = ctl->cfg;
    p->old_n = ctl->nworkers;
    /* A DNS change re-parses the running generation's text, not the file
     * (which may have been edited since): only the answers differ. */
    if (p->dns)
        p->cfg = config_load_buffer(p->old->text, p->old->text_len, p->old->path, &errs);
    else if (p->text)
        p->cfg = config_load_buffer(p->text, p->text_len, p->old->path, &errs);
    else
        p->cfg = config_load_file(ctl->config_path, &errs);
    if (p->cfg == NULL)
        return prepare_failed(p, report, &errs, "error", "in the config file");
    struct config *cfg = p->cfg, *old = p->old;
    p->new_n = cfg->workers;
    if (config_attach_runtime(cfg) < 0) {
        snprintf(p->err, sizeof(p->err), "out of memory");
        return -1;
    }
    /* New host names only (a name the running generation follows keeps
     * its answer); bounded, on this thread: workers never wait. */
    if (resolver_resolve_config(cfg, &errs) > 0)
        return prepare_failed(p, report, &errs, "host name", "did not resolve");
    /* resolve=all/srv: one server per address, names kept from old. */
    if (resolver_expand(cfg, old) < 0) {
        snprintf(p->err, sizeof(p->err), "out of memory");
        return -1;
    }
    /* (A runtime change's text names the running identity, resolved.) */
    if (p->text == NULL && (!same_str(old->user, cfg->user) || !same_str(old->group, cfg->group))) {
        /* The process switched identity at start and cannot switch back. */
        if (!p->dry_run)
            log_warn("reload: user/group changes take effect at the next restart");
        strbuf_printf(report, "warning: user/group changes take effect at the next restart\n");
    }
    if (!same_str(old->pid_file, cfg->pid_file)) {
        if (!p->dry_run)
            log_warn("reload: pid_file changes take effect at the next restart");
        strbuf_printf(report, "warning: pid_file changes take effect at the next restart\n");
    }
    for (int i = p->old_n; i < p->new_n; i++) {
        struct worker *w = ctl->workers[i];
        if (w && w->started && !atomic_load(&w->joined)) {
            snprintf(p->err, sizeof(p->err),
                     "worker %d is still draining after an earlier reload", i);
            return -1;
        }
    }
    /* Workers started by reload_prepare() may read it: set before they
     * exist. */
    cfg->generation = ctl->generation + 1;
    return 0;
}

/* Parse, validate and open everything the new file needs, changing
 * nothing a client or worker can see. Returns -1 with p->err set (and the
 * file's errors in report); the caller then runs reload_abort(). */
static int reload_prepare(struct control *ctl, struct reload_plan *p, struct strbuf *report)
{
    if (reload_validate(ctl, p, report) < 0)
        return -1;
    struct config *cfg = p->cfg, *old = p->old;
    if (admin_prepare(ctl, cfg, old, &p->admin, p->err, sizeof(p->err)) < 0)
        return -1;
    p->admin_open = true;
    if (open_unix_binds(ctl, cfg, ctl->unix_binds, &p->unix_fresh, p->err, sizeof(p->err)) < 0)
        return -1;
    for (int i = 0; i < p->new_n; i++)
        if (open_new_binds(ctl, cfg, i < p->old_n ? old : NULL, p->unix_fresh, i, &p->fresh[i],
                           p->err, sizeof(p->err)) < 0)
            return -1;
    int nmsgs = p->old_n > p->new_n ? p->old_n : p->new_n;
    for (int i = 0; i < nmsgs; i++) {
        if ((p->msgs[i] = calloc(1, sizeof(struct worker_msg))) == NULL) {
            snprintf(p->err, sizeof(p->err), "out of memory");
            return -1;
        }
    }
    /* Threads last: they are the only step that leaves something running.
     * A new worker idles without sockets until its WMSG_CONFIG. */
    for (int i = p->old_n; i < p->new_n; i++) {
        if (slot_init(ctl, i, cfg) < 0) {
            snprintf(p->err, sizeof(p->err), "worker %d: cannot create its event loop", i);
            return -1;
        }
        p->inited = i + 1;
        if (worker_start(ctl->workers[i]) < 0) {
            snprintf(p->err, sizeof(p->err), "worker %d: cannot start its thread: %s", i,
                     strerror(errno));
            return -1;
        }
        ctl->workers[i]->started = true;
        p->started = i + 1;
    }
    return 0;
}

/* Undo whatever reload_prepare() got done: stop and join the new worker
 * threads (idle, they exit at once), free their slots, close every socket
 * and admin endpoint the reload opened, drop the new generation. */
static void reload_abort(struct control *ctl, struct reload_plan *p)
{
    for (int i = p->old_n; i < p->inited; i++) {
        struct worker *w = ctl->workers[i];
        if (i < p->started) {
            p->msgs[i]->type = WMSG_STOP_ACCEPT;
            worker_post(w, p->msgs[i]);
            p->msgs[i] = NULL;
            worker_join(w);
            atomic_store(&w->joined, true);
        }
        worker_destroy(w);
    }
    for (int i = 0; i < SLUICE_MAX_WORKERS; i++) {
        if (p->msgs[i])
            worker_msg_free(p->msgs[i]);
        free_new_listens(p->fresh[i]);
    }
    unix_binds_free(p->unix_fresh, true);
    if (p->admin_open)
        admin_abort(&p->admin);
    config_unref(p->cfg);
}

/* The unix: sockets of the new generation: a path it no longer binds
 * loses its file now, before any worker hears of the reload, so that no
 * client can queue on a socket the workers are about to drain and close;
 * a kept path gets any new bind_mode / bind_owner; new paths join. */
static void unix_binds_commit(struct control *ctl, struct reload_plan *p)
{
    struct unix_bind **pp = &ctl->unix_binds;
    while (*pp) {
        struct unix_bind *u = *pp;
        struct listener_conf *lc = NULL;
        for (int i = 0; i < p->cfg->nlisteners && lc == NULL; i++)
            for (int b = 0; b < p->cfg->listeners[i].nbinds; b++)
                if (addr_equal(&p->cfg->listeners[i].binds[b], &u->addr))
                    lc = &p->cfg->listeners[i];
        if (lc == NULL) {
            *pp = u->next;
            log_info("unix:%s: no longer bound, its file is removed", u->addr.u.un.sun_path);
            unix_bind_free(u, true);
            continue;
        }
        unix_bind_update(ctl, u, lc);
        pp = &u->next;
    }
    *pp = p->unix_fresh;
    p->unix_fresh = NULL;
}

/* Switch to the prepared generation. Cannot fail: everything it hands
 * out was made in reload_prepare(). */
static void reload_commit(struct control *ctl, struct reload_plan *p)
{
    struct config *cfg = p->cfg, *old = p->old;
    ctl->generation = cfg->generation;
    /* Before any worker sees cfg: new host names get their answers. */
    resolver_adopt(cfg);
    resolver_log_changes(old, cfg);
    unix_binds_commit(ctl, p);
    for (int i = 0; i < p->new_n; i++) {
        struct worker_msg *m = p->msgs[i];
        m->type = WMSG_CONFIG;
        config_ref(cfg);
        m->cfg = cfg;
        m->listens = p->fresh[i];
        p->fresh[i] = NULL;
        worker_post(ctl->workers[i], m);
        p->msgs[i] = NULL;
    }
    /* Before the retiring workers hear of it: no new connection is sent
     * to their sockets while they drain them. */
    reuseport_retire_workers(p->new_n);
    for (int i = p->new_n; i < p->old_n; i++) {
        p->msgs[i]->type = WMSG_RETIRE;
        worker_post(ctl->workers[i], p->msgs[i]);
        p->msgs[i] = NULL;
    }
    ctl->nworkers = p->new_n;
    ctl->cfg = cfg;
    config_commit_sources(cfg);
    /* A DNS update re-parses the same text: applying its weights would
     * undo `set weight`. Only an SRV weight that changed is applied. A
     * runtime change's text has the running weights already. */
    if (p->dns || p->text)
        resolver_apply_weights(old, cfg);
    else
        config_apply_weights(cfg);
    atomic_store(&ctl->limits.max_conns, cfg->max_conns);
    log_current_level = cfg->log_level;
    if ((old->syslog_facility != cfg->syslog_facility ||
         strcmp(old->syslog_tag, cfg->syslog_tag) != 0) &&
        log_access_syslog_setup(cfg->syslog_facility, cfg->syslog_tag) < 0)
        log_error("reload: syslog_tag %s: out of memory (still the previous one)", cfg->syslog_tag);
    if (strcmp(old->access_log, cfg->access_log) != 0 && access_log_open(ctl, cfg->access_log) < 0)
        log_error("reload: access_log %s: %s (still writing the previous one)", cfg->access_log,
                  strerror(errno));
    health_update(cfg);
    resolver_update(cfg);
    admin_commit(ctl, cfg, &p->admin);
    config_unref(old);
}

/* What a reload from old to cfg changes, one line each (config_diff.h). */
static void diff_lines(const struct config *old, const struct config *cfg, struct strbuf *out)
{
    struct config_diff d;
    if (config_diff(old, cfg, &d) < 0)
        strbuf_puts(out, "the changes cannot be listed: out of memory\n");
    else
        config_diff_format(&d, "", out);
    config_diff_free(&d);
}

/* The runtime changes a reload to cfg undoes, one line each: a server in
 * both generations whose weight `set weight` changed (it differs from the
 * running file's) gets the new file's weight at commit. Main thread,
 * before the commit. */
static void undone_lines(struct config *old, const struct config *cfg, struct strbuf *out)
{
    for (int i = 0; i < cfg->npools; i++) {
        const struct pool_conf *p = &cfg->pools[i];
        const struct pool_conf *op = config_find_pool(old, p->name);
        for (int j = 0; op != NULL && j < p->nservers; j++) {
            const struct server_conf *s = &p->servers[j];
            const struct server_conf *o = NULL;
            for (int k = 0; k < op->nservers && o == NULL; k++)
                if (strcmp(op->servers[k].name, s->name) == 0)
                    o = &op->servers[k];
            int running = o && s->be ? atomic_load(&s->be->weight) : s->weight;
            if (o != NULL && running != o->weight && running != s->weight)
                strbuf_printf(out,
                              "undone: set weight %s/%s: %d -> %d (weights come from the file)\n",
                              p->name, s->name, running, s->weight);
        }
    }
}

/* Each line of text as one info line of the log, after prefix. */
static void log_lines(const char *prefix, const struct strbuf *text)
{
    for (size_t at = 0; at < text->len;) {
        const char *line = text->data + at;
        const char *nl = memchr(line, '\n', text->len - at);
        size_t n = nl ? (size_t)(nl - line) : text->len - at;
        log_info("%s%.*s", prefix, (int)n, line);
        at += n + 1;
    }
}

/* ---- runtime server changes (add/del server, set server addr) ---- */

/* One runtime change, remembered until the file is loaded again. */
struct runtime_change {
    struct runtime_change *next;
    enum config_edit_op op;
    char *pool, *server; /* ADD: server is the new one's name */
    char *addr;          /* ADD, ADDR: the address given */
    char *what;          /* the command, as logged and listed */
};

static void runtime_change_free(struct runtime_change *c)
{
    free(c->pool);
    free(c->server);
    free(c->addr);
    free(c->what);
    free(c);
}

static void runtime_changes_clear(struct control *ctl)
{
    while (ctl->runtime_changes) {
        struct runtime_change *next = ctl->runtime_changes->next;
        runtime_change_free(ctl->runtime_changes);
        ctl->runtime_changes = next;
    }
}

/* A record of change e (NULL when it cannot be allocated: the change is
 * then only missing from `show config`'s list and the reload warning).
 * Made before the commit: e may point into the running generation. */
static struct runtime_change *runtime_change_new(const struct config_edit *e, const char *what)
{
    struct runtime_change *c = calloc(1, sizeof(*c));
    bool add = e->op == CONFIG_EDIT_ADD;
    const char *addr = add ? strchr(e->value, ' ') : e->value;
    if (add && addr != NULL)
        addr++;
    if (c == NULL || (c->pool = strdup(e->pool)) == NULL ||
        (c->server = add ? strndup(e->value, strcspn(e->value, " ")) : strdup(e->server)) == NULL ||
        (c->what = strdup(what)) == NULL ||
        (addr != NULL && (c->addr = strndup(addr, strcspn(addr, " "))) == NULL)) {
        if (c != NULL)
            runtime_change_free(c);
        log_warn("admin: %s: out of memory noting the change (show config will not list it)", what);
        return NULL;
    }
    c->op = e->op;
    return c;
}

/* Add c to the list, folding it into what is there for the same server,
 * so the list says what differs from the file: a deleted server's earlier
 * changes go (with an add, the del goes too: nothing is left), and a new
 * address replaces an earlier one (or the address of its add). */
static void runtime_change_append(struct control *ctl, struct runtime_change *c)
{
    bool added = false;
    struct runtime_change **pp = &ctl->runtime_changes;
    while (*pp) {
        struct runtime_change *o = *pp;
        bool same = strcmp(o->pool, c->pool) == 0 && strcmp(o->server, c->server) == 0;
        if (same && o->op == CONFIG_EDIT_ADD && c->op == CONFIG_EDIT_ADDR) {
            /* "add server P/N OLD opts" -> "add server P/N NEW opts" */
            const char *rest = strstr(o->what, o->addr);
            char *what = NULL;
            if (rest != NULL && asprintf(&what, "%.*s%s%s", (int)(rest - o->what), o->what, c->addr,
                                         rest + strlen(o->addr)) >= 0) {
                free(o->what);
                o->what = what;
                free(o->addr);
                o->addr = c->addr;
                c->addr = NULL;
                runtime_change_free(c);
                return;
            }
        }
        if (same && (c->op == CONFIG_EDIT_DEL || o->op == CONFIG_EDIT_ADDR)) {
            added |= o->op == CONFIG_EDIT_ADD;
            *pp = o->next;
            runtime_change_free(o);
            continue;
        }
        pp = &o->next;
    }
    if (added && c->op == CONFIG_EDIT_DEL) {
        runtime_change_free(c);
        return;
    }
    *pp = c;
}

/* Whether the generation cfg, loaded from the file, has what change c
 * made (the operator wrote it into the file too). */
static bool runtime_change_kept(const struct runtime_change *c, struct config *cfg)
{
    struct pool_conf *p = config_find_pool(cfg, c->pool);
    const struct server_conf *sv = NULL;
    for (int i = 0; p != NULL && i < p->nservers; i++)
        if (strcmp(p->servers[i].name, c->server) == 0)
            sv = &p->servers[i];
    if (c->op == CONFIG_EDIT_DEL)
        return sv == NULL;
    if (sv == NULL)
        return false;
    struct sockaddr_any a = {0};
    return addr_parse(c->addr, ADDR_ALLOW_UNIX, &a) == NULL && sv->host == NULL &&
           addr_equal(&a, &sv->addr);
}

/* A reload is about to commit cfg, read from the file: the runtime
 * changes are gone with it (the file is the configuration, as with
 * HAProxy's dynamic servers). Warn about each the file does not have. */
static void runtime_changes_dropped(struct control *ctl, struct config *cfg, struct strbuf *report)
{
    int n = 0;
    for (struct runtime_change *c = ctl->runtime_changes; c; c = c->next) {
        if (runtime_change_kept(c, cfg))
            continue;
        log_warn("reload: runtime change dropped (not in %s): %s", ctl->config_path, c->what);
        strbuf_printf(report, "warning: runtime change dropped (not in %s): %s\n", ctl->config_path,
                      c->what);
        n++;
    }
    if (n > 0)
        strbuf_printf(report,
                      "warning: %d runtime change%s dropped: `show config` before a reload "
                      "prints a file that keeps them\n",
                      n, n == 1 ? "" : "s");
    runtime_changes_clear(ctl);
}

/* The first error of a runtime change's load without its "FILE:LINE: "
 * (the line is one of the dump, which the operator never saw). */
static void runtime_error(const struct reload_plan *p, const struct strbuf *report,
                          struct strbuf *out)
{
    const char *msg = report->len > 0 ? report->data : p->err;
    size_t plen = strlen(p->old->path);
    if (strncmp(msg, p->old->path, plen) == 0 && msg[plen] == ':') {
        const char *r = msg + plen + 1;
        r += strspn(r, "0123456789");
        if (r[0] == ':' && r[1] == ' ')
            msg = r + 2;
    }
    strbuf_printf(out, "error: %.*s\n", (int)strcspn(msg, "\n"), msg);
}

/* Build a generation from the running one with edit applied and commit it
 * the way a reload does (prepare, then commit or abort): workers adopt it
 * between events, servers that stay keep their runtime state, the health
 * and resolver threads re-plan. Returns 0, or -1 with "error: ..." in out
 * and nothing changed. */
static int runtime_change(struct control *ctl, const struct config_edit *edit, const char *what,
                          struct strbuf *out)
{
    if (ctl->stopping) {
        strbuf_puts(out, "error: stopping\n");
        return -1;
    }
    /* The text keeps the worker count: the same workers adopt it. */
    if (ctl->nworkers != ctl->cfg->workers) {
        strbuf_puts(out, "error: not serving (the workers are not running)\n");
        return -1;
    }
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (f != NULL)
        config_dump_edited(ctl->cfg, f, edit);
    struct reload_plan *p = calloc(1, sizeof(*p));
    if (f == NULL || fclose(f) != 0 || p == NULL) {
        free(text);
        free(p);
        strbuf_puts(out, "error: out of memory\n");
        return -1;
    }
    p->text = text;
    p->text_len = len;
    struct runtime_change *note = runtime_change_new(edit, what);
    struct strbuf report;
    strbuf_init(&report);
    int rc = reload_prepare(ctl, p, &report);
    if (rc < 0) {
        reload_abort(ctl, p);
        runtime_error(p, &report, out);
        log_warn("admin: %s: refused: %s", what, p->err);
        if (note != NULL)
            runtime_change_free(note);
    } else {
        /* edit may point into the generation this replaces: not used
         * after the commit. */
        reload_commit(ctl, p);
        ctl->runtime_changes_total++;
        if (note != NULL)
            runtime_change_append(ctl, note);
        log_info("admin: %s: generation %llu (until the next reload: see show config)", what,
                 (unsigned long long)ctl->generation);
    }
    strbuf_free(&report);
    free(text);
    free(p);
    return rc;
}

/* A reload is prepare, then commit or abort (nginx's ngx_init_cycle keeps
 * the old cycle until the new one is whole): every failure, at any step,
 * leaves the running generation as it was through the same abort. */
static int reload(struct control *ctl, struct strbuf *report)
{
    struct reload_plan *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        reload_failed(ctl, report, "out of memory");
        return -1;
    }
    int rc = reload_prepare(ctl, p, report);
    struct strbuf changes;
    strbuf_init(&changes);
    if (rc < 0) {
        reload_abort(ctl, p);
        reload_failed(ctl, report, p->err);
    } else {
        /* Before the commit lets old go and applies the weights. */
        diff_lines(p->old, p->cfg, &changes);
        undone_lines(p->old, p->cfg, &changes);
        runtime_changes_dropped(ctl, p->cfg, report);
        reload_commit(ctl, p);
        ctl->reloads_ok++;
        ctl->last_reload = ev_time();
        snprintf(ctl->last_reload_result, sizeof(ctl->last_reload_result),
                 "ok: generation %llu, %d workers, %d listeners, %d pools",
                 (unsigned long long)ctl->generation, p->new_n, p->cfg->nlisteners,
                 p->cfg->npools);
        log_info("reload %s", ctl->last_reload_result);
        strbuf_printf(report, "reload %s\n", ctl->last_reload_result);
        log_lines("reload: ", &changes);
        strbuf_append(report, changes.data ? changes.data : "", changes.len);
    }
    strbuf_free(&changes);
    free(p);
    return rc;
}

int control_reload(struct control *ctl, struct strbuf *report)
{
    /* systemd shows "reloading" until READY=1 comes back, ok or not. */
    notify_send("RELOADING=1");
    int rc = reload(ctl, report);
    notify_send(rc == 0 ? "READY=1\nSTATUS=reloaded" : "READY=1\nSTATUS=reload failed, old config kept");
    return rc;
}

/* A dry run's check of what reload_prepare() would open: every TCP bind
 * address the running generation lacks, and a changed admin_http, are
 * bound and closed again at once (never listening: no client can reach
 * them). Unix socket paths are not created. -1 with p->err set. */
static int dry_run_probe(struct reload_plan *p)
{
    struct config *cfg = p->cfg, *old = p->old;
    char why[256];
    for (int i = 0; i < cfg->nlisteners; i++) {
        struct listener_conf *lc = &cfg->listeners[i];
        for (int b = 0; b < lc->nbinds; b++) {
            if (lc->binds[b].u.sa.sa_family == AF_UNIX || cfg_has_bind(old, &lc->binds[b]))
                continue;
            if (listener_probe(&lc->binds[b], why, sizeof(why)) < 0) {
                snprintf(p->err, sizeof(p->err), "listener %s: %s", lc->name, why);
                return -1;
            }
        }
    }
    if (cfg->has_admin_http &&
        (!old->has_admin_http || !addr_equal(&old->admin_http, &cfg->admin_http)) &&
        listener_probe(&cfg->admin_http, why, sizeof(why)) < 0) {
        snprintf(p->err, sizeof(p->err), "admin_http: %s", why);
        return -1;
    }
    return 0;
}

int control_reload_dry_run(struct control *ctl, struct strbuf *report)
{
    struct reload_plan *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        strbuf_printf(report,
                      "reload dry-run failed: out of memory; nothing applied, still "
                      "running generation %llu\n",
                      (unsigned long long)ctl->generation);
        return -1;
    }
    p->dry_run = true;
    int rc = reload_validate(ctl, p, report);
    if (rc == 0)
        rc = dry_run_probe(p);
    if (rc < 0) {
        log_info("reload dry-run failed: %s; nothing applied", p->err);
        strbuf_printf(report,
                      "reload dry-run failed: %s; nothing applied, still running "
                      "generation %llu\n",
                      p->err, (unsigned long long)ctl->generation);
    } else {
        struct strbuf changes;
        strbuf_init(&changes);
        diff_lines(p->old, p->cfg, &changes);
        undone_lines(p->old, p->cfg, &changes);
        log_info("reload dry-run ok: nothing applied, still running generation %llu",
                 (unsigned long long)ctl->generation);
        strbuf_printf(report,
                      "reload dry-run ok: generation %llu would have %d workers, %d listeners, %d "
                      "pools; nothing applied\n",
                      (unsigned long long)p->cfg->generation, p->cfg->workers, p->cfg->nlisteners,
                      p->cfg->npools);
        strbuf_append(report, changes.data ? changes.data : "", changes.len);
        strbuf_free(&changes);
    }
    /* Undoes what reload_validate() did: nothing else was opened. */
    reload_abort(ctl, p);
    free(p);
    return rc;
}

/* A resolve=all/srv answer changed a pool's server set: the same path as
 * a reload (prepare from the running generation's text, commit or
 * abort), so workers adopt the new server list between events and
 * servers that stay keep their runtime state. Not a reload for `show
 * info` (dns_updates) nor for systemd. On failure the running generation
 * stays and the next answer tries again. */
static void dns_update(struct control *ctl)
{
    struct reload_plan *p = calloc(1, sizeof(*p));
    struct strbuf report;
    strbuf_init(&report);
    if (p == NULL) {
        ctl->dns_updates_failed++;
        log_error("dns: cannot build a generation: out of memory");
        return;
    }
    p->dns = true;
    if (reload_prepare(ctl, p, &report) < 0) {
        reload_abort(ctl, p);
        ctl->dns_updates_failed++;
        log_error("dns: cannot build a generation for the new answers: %s; still running "
                  "generation %llu", p->err, (unsigned long long)ctl->generation);
    } else {
        reload_commit(ctl, p);
        ctl->dns_updates++;
        log_info("dns: generation %llu with the new answers", (unsigned long long)ctl->generation);
    }
    strbuf_free(&report);
    free(p);
}

/* Resolver thread: an answer arrived. */
static void dns_notify(void *arg)
{
    struct control *ctl = arg;
    ev_async_send(ctl->loop, &ctl->w_dns);
}

static void dns_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    struct control *ctl = container_of(a, struct control, w_dns);
    if (!ctl->stopping && resolver_stale(ctl->cfg))
        dns_update(ctl);
}

/* Every worker's listening sockets at start. They are created with the
 * fsuid of the user sluice will run as: the kernel lets a socket join an
 * SO_REUSEPORT group only with the same owner, and the sockets a reload
 * opens after the drop (new workers, new binds) are the user's. */
static int open_startup_binds(struct control *ctl, struct config *cfg)
{
    char err[300];
    int rc = 0;
    /* Unix sockets first, with every privilege: a changed fsuid would
     * lose CAP_CHOWN, which bind_owner may need. */
    if (open_unix_binds(ctl, cfg, NULL, &ctl->unix_binds, err, sizeof(err)) < 0) {
        log_error("%s", err);
        return -1;
    }
    bool switch_owner = ctl->owner_uid != (uid_t)-1;
    uid_t prev_fsuid = switch_owner ? (uid_t)setfsuid(ctl->owner_uid) : 0;
    for (int i = 0; i < cfg->workers && rc == 0; i++) {
        struct worker_new_listen *nl;
        if (slot_init(ctl, i, cfg) < 0) {
            log_error("worker %d: cannot create its event loop", i);
            rc = -1;
            break;
        }
        ctl->nworkers = i + 1;
        if (open_new_binds(ctl, cfg, NULL, NULL, i, &nl, err, sizeof(err)) < 0) {
            log_error("%s", err);
            rc = -1;
            break;
        }
        while (nl) {
            struct worker_new_listen *next = nl->next;
            if (worker_add_listen(ctl->workers[i], &cfg->listeners[nl->listener], &nl->addr,
                                  nl->fd) < 0)
                reuseport_close(nl->fd);
            free(nl);
            nl = next;
        }
    }
    if (switch_owner)
        setfsuid(prev_fsuid);
    return rc;
}

/* ---- what the admin side may do (struct admin_ops) ---- */

static struct config *op_config(void *ctx)
{
    return ((struct control *)ctx)->cfg;
}

static int op_worker_slots(void *ctx)
{
    return ((struct control *)ctx)->nslots;
}

static int op_fanout(void *ctx, void (*fn)(struct worker *, void *), void (*done)(void *), void *arg)
{
    return control_fanout(ctx, fn, done, arg);
}

static void op_info(void *ctx, struct strbuf *out)
{
    stats_info(ctx, out);
}

static void op_table(void *ctx, struct strbuf *out)
{
    stats_table(ctx, out);
}

static void op_json(void *ctx, struct strbuf *out)
{
    stats_json(ctx, out);
}

static void op_backends(void *ctx, struct strbuf *out)
{
    stats_backends(ctx, out);
}

static void op_prometheus(void *ctx, struct strbuf *out)
{
    stats_prometheus(ctx, out);
}

static void op_latency(void *ctx, struct server_conf *sv, struct strbuf *out)
{
    stats_latency(ctx, sv, out);
}

/* A reload or its dry run, refused while stopping. */
static void reload_unless_stopping(struct control *ctl, struct strbuf *report,
                                   int (*run)(struct control *, struct strbuf *))
{
    if (ctl->stopping)
        strbuf_puts(report, "error: stopping\n");
    else
        run(ctl, report);
}

static void op_reload(void *ctx, struct strbuf *report)
{
    reload_unless_stopping(ctx, report, control_reload);
}

static void op_reload_dry_run(void *ctx, struct strbuf *report)
{
    reload_unless_stopping(ctx, report, control_reload_dry_run);
}

static void op_reopen(void *ctx, struct strbuf *reply)
{
    control_reopen_access_log(ctx, "admin", reply);
}

static int op_server_change(void *ctx, const struct config_edit *edit, const char *what,
                            struct strbuf *out)
{
    return runtime_change(ctx, edit, what, out);
}

/* `show config`: the running generation as a file `sluice -t` accepts. */
static void op_show_config(void *ctx, struct strbuf *out)
{
    struct control *ctl = ctx;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (f == NULL) {
        strbuf_puts(out, "error: out of memory\n");
        return;
    }
    fprintf(f,
            "; the running configuration of sluice (show config): generation %llu, loaded "
            "from %s\n",
            (unsigned long long)ctl->generation, ctl->config_path);
    if (ctl->runtime_changes == NULL)
        fprintf(f, "; no runtime changes since the file was loaded\n");
    else
        fprintf(f,
                "; with these runtime changes, which a reload from %s drops unless it has "
                "them:\n",
                ctl->config_path);
    for (struct runtime_change *c = ctl->runtime_changes; c; c = c->next)
        fprintf(f, ";   %s\n", c->what);
    config_dump_edited(ctl->cfg, f, NULL);
    if (fclose(f) != 0) {
        free(text);
        strbuf_puts(out, "error: out of memory\n");
        return;
    }
    strbuf_append(out, text, len);
    free(text);
}

void control_admin_ops(struct control *ctl, struct admin_ops *ops)
{
    *ops = (struct admin_ops){
        .ctx = ctl,
        .config = op_config,
        .worker_slots = op_worker_slots,
        .fanout = op_fanout,
        .info = op_info,
        .table = op_table,
        .json = op_json,
        .backends = op_backends,
        .prometheus = op_prometheus,
        .latency = op_latency,
        .reload = op_reload,
        .reload_dry_run = op_reload_dry_run,
        .reopen = op_reopen,
        .server_change = op_server_change,
        .show_config = op_show_config,
    };
}

int control_run(struct config *cfg, const char *config_path)
{
    static struct control ctl_storage;
    struct control *ctl = &ctl_storage;
    memset(ctl, 0, sizeof(*ctl));
    ctl->loop = ev_default_loop(EVFLAG_AUTO | EVFLAG_NOENV);
    if (ctl->loop == NULL) {
        log_error("cannot create the event loop");
        config_unref(cfg);
        return 1;
    }
    ctl->cfg = cfg; /* the caller's reference: gone with the first reload */
    ctl->config_path = config_path;
    ctl->worker_host = (struct worker_host){
        .loop = ctl->loop, .exited = &ctl->w_worker_exit, .limits = &ctl->limits};
    control_admin_ops(ctl, &ctl->admin_ops);
    ctl->started = ev_time();
    ctl->generation = 1;
    cfg->generation = 1;
    atomic_store(&ctl->limits.max_conns, cfg->max_conns);
    log_current_level = cfg->log_level;
    signal(SIGPIPE, SIG_IGN);
    fault_init();
    pthread_mutex_init(&ctl->fanout_lock, NULL);

    int rc = 1;
    char err[300];
    if (config_attach_runtime(cfg) < 0) {
        log_error("out of memory");
        goto out;
    }
    config_commit_sources(cfg);
    /* main.c resolved its host names: one server per address of a
     * resolve=all/srv name, then every answer to its backend. */
    if (resolver_expand(cfg, NULL) < 0) {
        log_error("out of memory");
        goto out;
    }
    resolver_adopt(cfg);
    if (privilege_check(cfg, err, sizeof(err)) < 0) {
        log_error("%s", err);
        goto out;
    }
    privilege_owner(cfg, &ctl->owner_uid, &ctl->owner_gid);
    /* Before the privilege drop: /dev/log is connected as root. */
    if (log_access_syslog_setup(cfg->syslog_facility, cfg->syslog_tag) < 0 ||
        access_log_open(ctl, cfg->access_log) < 0) {
        log_error("access_log %s: %s", cfg->access_log, strerror(errno));
        goto out;
    }
    if (open_startup_binds(ctl, cfg) < 0)
        goto out;
    /* After the binds (a start that cannot bind leaves no pid file), as
     * root (it usually lives in a root-owned /run directory). */
    if (cfg->pid_file != NULL && (ctl->pidfile = pidfile_open(cfg->pid_file, err, sizeof(err))) == NULL) {
        log_error("%s", err);
        goto out;
    }

    ev_async_init(&ctl->w_worker_exit, worker_exit_cb);
    ev_async_start(ctl->loop, &ctl->w_worker_exit);
    ev_async_init(&ctl->w_fanout_done, fanout_done_cb);
    ev_async_start(ctl->loop, &ctl->w_fanout_done);
    ev_async_init(&ctl->w_dns, dns_cb);
    ev_async_start(ctl->loop, &ctl->w_dns);
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
    struct admin_change ach;
    if (admin_prepare(ctl, cfg, NULL, &ach, err, sizeof(err)) < 0) {
        log_error("%s", err);
        goto out;
    }
    admin_commit(ctl, cfg, &ach);
    /* Everything privileged is open: become cfg->user before any thread. */
    if (privilege_drop(cfg, err, sizeof(err)) < 0) {
        log_error("dropping privileges: %s", err);
        goto out;
    }
    if (cfg->user != NULL && ctl->owner_uid != (uid_t)-1) {
        log_info("running as user %s (uid %u, gid %u)%s", cfg->user, (unsigned)cfg->uid,
                 (unsigned)cfg->gid,
                 cfg->user_default ? ": no user in [global], so the default (set user, or "
                                     "allow_root = yes to stay root)"
                                   : "");
        /* Every reload reads the file as the user: say so now, not at the
         * first failed reload. */
        if (access(config_path, R_OK) < 0)
            log_warn("%s is not readable by user %s (%s): reloads will fail", config_path,
                     cfg->user, strerror(errno));
        if (cfg->uid == 65534)
            log_warn("user %s (uid 65534) is shared by other services, which could then join "
                     "sluice's SO_REUSEPORT ports: use a dedicated user", cfg->user);
    }
    else if (cfg->user != NULL && !cfg->user_default)
        log_warn("user %s: not started as root, so running as uid %u unchanged", cfg->user,
                 (unsigned)getuid());
    if (health_start(cfg) < 0) {
        log_error("cannot start the health-check thread");
        goto out;
    }
    if (resolver_start(cfg, dns_notify, ctl) < 0) {
        log_error("cannot start the resolver thread");
        health_stop();
        goto out;
    }
    for (int i = 0; i < ctl->nworkers; i++) {
        if (worker_start(ctl->workers[i]) < 0) {
            log_error("worker %d: cannot start thread: %s", i, strerror(errno));
            ctl->stopping = true;
            for (int k = 0; k < i; k++)
                worker_send(ctl->workers[k], WMSG_STOP_ACCEPT);
            break;
        }
        ctl->workers[i]->started = true;
    }
    if (!ctl->stopping) {
        log_info("ready: %d workers, %d listeners, pid %d", ctl->nworkers, cfg->nlisteners,
                 (int)getpid());
        notify_send("READY=1\nSTATUS=serving");
        ev_run(ctl->loop, 0);
        rc = 0;
    }
    for (int i = 0; i < ctl->nslots; i++) {
        struct worker *w = ctl->workers[i];
        if (w->started && !atomic_load(&w->joined))
            worker_join(w);
        if (!atomic_load(&w->joined))
            worker_destroy(w);
        atomic_store(&w->joined, true);
    }
    resolver_stop();
    health_stop();
    if (rc == 0)
        log_info("exit: all sessions closed");
out:
    unix_binds_free(ctl->unix_binds, true);
    ctl->unix_binds = NULL;
    if (ctl->admin)
        admin_stop(ctl->admin);
    if (ctl->http)
        admin_http_stop(ctl->http);
    for (int i = 0; i < ctl->nslots; i++) {
        if (ctl->workers[i] && !atomic_load(&ctl->workers[i]->joined))
            worker_destroy(ctl->workers[i]);
        free(ctl->workers[i]);
    }
    /* The fan-out results nobody waited for. */
    fanout_done_cb(ctl->loop, &ctl->w_fanout_done, 0);
    pidfile_close(ctl->pidfile);
    runtime_changes_clear(ctl);
    log_access_close();
    config_unref(ctl->cfg);
    pthread_mutex_destroy(&ctl->fanout_lock);
    return rc;
}
