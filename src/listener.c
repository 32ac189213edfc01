/* listener.c - open listening sockets; accept in bounded batches, pause on
 * limits and descriptor exhaustion instead of spinning. */
#include "sluice/listener.h"
#include "sluice/acl.h"
#include "sluice/keepalive.h"
#include "sluice/limits.h"
#include "sluice/log.h"
#include "sluice/srclimit.h"
#include "sluice/worker-t.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Connections accepted per readiness event before yielding to the loop. */
#define ACCEPT_BATCH 64
/* A burst of EMFILE failures ends after this long without one. */
#define EXHAUSTED_BURST_GAP 1.0
/* How often a listener paused at max_conns re-checks (besides on every
 * session end of its own worker). */
#define LIMIT_RECHECK 0.02

/* A socket bound to addr with the options every listening socket has;
 * -1 with err set. */
static int open_bound(const struct sockaddr_any *addr, char *err, size_t errlen)
{
    char a[ADDR_STRLEN];
    addr_format(&addr->u.sa, addr->len, a, sizeof(a));
    int fd = socket(addr->u.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "%s: socket: %s", a, strerror(errno));
        return -1;
    }
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) {
        snprintf(err, errlen, "%s: setsockopt: %s", a, strerror(errno));
        close(fd);
        return -1;
    }
    if (addr->u.sa.sa_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    /* Accepted sockets inherit TCP_NODELAY: one syscall less per client. */
    if (addr->u.sa.sa_family != AF_UNIX)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (bind(fd, &addr->u.sa, addr->len) < 0) {
        snprintf(err, errlen, "%s: bind: %s", a, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

int listener_probe(const struct sockaddr_any *addr, char *err, size_t errlen)
{
    int fd = open_bound(addr, err, errlen);
    if (fd < 0)
        return -1;
    close(fd);
    return 0;
}

int listener_open(const struct sockaddr_any *addr, int backlog, char *err, size_t errlen)
{
    int fd = open_bound(addr, err, errlen);
    if (fd < 0)
        return -1;
    if (listen(fd, backlog) < 0) {
        char a[ADDR_STRLEN];
        addr_format(&addr->u.sa, addr->len, a, sizeof(a));
        snprintf(err, errlen, "%s: listen: %s", a, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* A directory made for a socket stays root's (so the user sluice drops to
 * cannot swap names in it under a later start as root); only its group
 * becomes gid, so that user (and the socket's clients) can reach the
 * socket. lchown here and below: never follow a symlink. */
static int make_dir(const char *d, mode_t mode, gid_t gid)
{
    if (mkdir(d, mode) == 0)
        return gid == (gid_t)-1 ? 0 : lchown(d, (uid_t)-1, gid);
    return errno == EEXIST ? 0 : -1;
}

/* mkdir -p for the socket's parent directory. */
static int make_parent(const char *path, mode_t mode, gid_t gid)
{
    char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
    snprintf(dir, sizeof(dir), "%s", path);
    char *d = dirname(dir);
    for (char *p = d + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (make_dir(d, mode, gid) < 0)
            return -1;
        *p = '/';
    }
    return make_dir(d, mode, gid);
}

/* What is at path now: nothing, a socket file left by a dead process
 * (removed here), or something we must not touch (-1 with err). */
static int clear_stale(const struct sockaddr_any *addr, char *err, size_t errlen)
{
    const char *path = addr->u.un.sun_path;
    struct stat st;
    if (lstat(path, &st) < 0)
        return 0;
    if (!S_ISSOCK(st.st_mode)) {
        snprintf(err, errlen, "%s exists and is not a socket", path);
        return -1;
    }
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool live = probe >= 0 && connect(probe, &addr->u.sa, addr->len) == 0;
    if (probe >= 0)
        close(probe);
    if (live) {
        snprintf(err, errlen, "%s is in use by another process", path);
        return -1;
    }
    unlink(path);
    return 0;
}

int listener_open_unix(const struct sockaddr_any *addr, int backlog, int mode, uid_t uid, gid_t gid,
                       struct unix_file *made, char *err, size_t errlen)
{
    const char *path = addr->u.un.sun_path;
    mode_t dir_mode = 0750 | ((mode & 0007) ? 0001 : 0);
    if (make_parent(path, dir_mode, gid) < 0) {
        snprintf(err, errlen, "%s: cannot create its directory: %s", path, strerror(errno));
        return -1;
    }
    if (clear_stale(addr, err, errlen) < 0)
        return -1;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "%s: socket: %s", path, strerror(errno));
        return -1;
    }
    /* Create it with the final mode: no window where it is wider. */
    mode_t old = umask((mode_t)(~mode & 0777));
    int rc = bind(fd, &addr->u.sa, addr->len);
    umask(old);
    struct stat st;
    /* No chmod afterwards: it would follow a symlink swapped in for the
     * socket; the umask above already gave it the mode. */
    if (rc < 0 || ((uid != (uid_t)-1 || gid != (gid_t)-1) && lchown(path, uid, gid) < 0) ||
        lstat(path, &st) < 0 || listen(fd, backlog) < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        if (rc == 0)
            unlink(path); /* ours: bind made it */
        close(fd);
        return -1;
    }
    if (made != NULL)
        *made = (struct unix_file){.dev = st.st_dev, .ino = st.st_ino};
    return fd;
}

int listener_unlink_unix(const char *path, const struct unix_file *made)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -1;
    if (!S_ISSOCK(st.st_mode) || st.st_dev != made->dev || st.st_ino != made->ino) {
        errno = EEXIST; /* someone else's file now */
        return -1;
    }
    return unlink(path);
}

static void listen_pause(struct worker *w, struct worker_listen *wl, ev_tstamp recheck)
{
    if (!wl->paused) {
        ev_io_stop(w->loop, &wl->w_accept);
        wl->paused = true;
    }
    if (!ev_is_active(&w->w_resume) || recheck < ev_timer_remaining(w->loop, &w->w_resume)) {
        ev_timer_stop(w->loop, &w->w_resume);
        ev_timer_set(&w->w_resume, recheck, 0.);
        ev_timer_start(w->loop, &w->w_resume);
    }
}

bool listener_exhausted_errno(int err)
{
    return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
}

bool listener_pause_exhausted(struct accept_pause *p, ev_tstamp now)
{
    bool new_burst = now - p->last > EXHAUSTED_BURST_GAP;
    p->last = now;
    p->until = now + LISTENER_EXHAUSTED_PAUSE;
    return new_burst;
}

/* Accept failed for lack of descriptors or memory: stop every listening
 * socket of this worker briefly, keep serving live sessions. */
static void accept_exhausted(struct worker *w, int err)
{
    counter_add(&w->stats.accept_emfile, 1);
    if (listener_pause_exhausted(&w->emfile, ev_now(w->loop)))
        log_warn("worker %d: accept: %s (too many open files or no memory): pausing accept "
                 "for %.0fms, %d sessions stay up",
                 w->id, strerror(err), LISTENER_EXHAUSTED_PAUSE * 1000, w->nsessions);
    for (struct worker_listen *wl = w->listens; wl; wl = wl->next)
        listen_pause(w, wl, LISTENER_EXHAUSTED_PAUSE);
}

bool listener_admit(struct worker *w, struct listener_conf *lc, const struct sockaddr_ip *client)
{
    if (likely(acl_allows(lc->acl, &client->u.sa)))
        return true;
    counter_add(&listener_ws(lc->st, w->id)->denied, 1);
    unsigned long dropped = 0;
    if (log_limit_shared_due(&lc->st->denied_log, time_mono_ms(), 1000, &dropped)) {
        char a[ADDR_STRLEN];
        addr_format(&client->u.sa, sizeof(*client), a, sizeof(a));
        log_info("listener %s: client %s denied by the access list (%lu more denied in the last "
                 "second, not logged)",
                 lc->name, a, dropped);
    }
    return false;
}

void listener_abortive_close(int fd)
{
    static const struct linger abort_now = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &abort_now, sizeof(abort_now));
    close(fd);
}

/* A client refused before it got a session (access list, per-source
 * limit): RST, so a flood of them leaves no TIME_WAIT here, and counted
 * like a session that ended for that reason. */
static void accept_refused(struct worker *w, struct listener_conf *lc, int fd,
                           enum end_reason reason)
{
    /* Counted before the RST goes out: a client that saw its reset and
     * then reads the stats must find its refusal there. */
    counter_add(&listener_ws(lc->st, w->id)->accepted, 1);
    counter_add(&w->stats.ends[reason], 1);
    listener_abortive_close(fd);
    slot_put(&lc->st->active);
    slot_put(&w->host->limits->active);
}

enum end_reason listener_source_admit(struct worker *w, struct listener_conf *lc,
                                      const struct sockaddr *sa, struct src_entry **src)
{
    *src = NULL;
    if (lc->srct == NULL)
        return END_NONE;
    struct listener_state *st = lc->st;
    enum src_verdict v = srclimit_admit(lc->srct, sa, lc->max_conns_per_source,
                                        &lc->rate_per_source, srclimit_now_ns(), src);
    const char *why;
    enum end_reason r = END_NONE;
    switch (v) {
    case SRC_OK:
    case SRC_NOT_LIMITED:
        return END_NONE;
    case SRC_UNTRACKED:
        counter_add(&listener_ws(st, w->id)->source_table_full, 1);
        why = "admitted without per-source accounting: source_table_size full of sources "
              "with live sessions";
        break;
    case SRC_CONN_LIMIT:
        counter_add(&listener_ws(st, w->id)->source_conn_refused, 1);
        why = "refused: source_conn_limit (max_conns_per_source)";
        r = END_source_conn_limit;
        break;
    default:
        counter_add(&listener_ws(st, w->id)->source_rate_refused, 1);
        why = "refused: source_rate_limit (rate_per_source)";
        r = END_source_rate_limit;
        break;
    }
    unsigned long dropped;
    if (log_enabled(LOG_WARN) &&
        log_limit_shared_due(&st->src_log, time_mono_ms(), 1000, &dropped)) {
        char a[ADDR_STRLEN];
        addr_format(
            sa, sa->sa_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6),
            a, sizeof(a));
        if (dropped > 0)
            log_warn("listener %s: client %s %s (%lu similar lines suppressed)", lc->name, a, why,
                     dropped);
        else
            log_warn("listener %s: client %s %s", lc->name, a, why);
    }
    return r;
}

/* max_conn_rate: a token for one more accept, or pause the socket until
 * one is back (the connections wait in the kernel's queue). */
static bool conn_rate_take(struct worker *w, struct worker_listen *wl, struct listener_conf *lc)
{
    int64_t wait = ratelimit_take(&lc->st->conn_rate_tat, &lc->max_conn_rate, srclimit_now_ns());
    if (wait == 0)
        return true;
    counter_add(&listener_ws(lc->st, w->id)->rate_pauses, 1);
    ev_tstamp secs = (ev_tstamp)wait / 1e9;
    wl->rate_until = ev_now(w->loop) + secs;
    listen_pause(w, wl, secs);
    return false;
}

enum accept_result listener_accept_batch(struct worker_listen *wl, listener_accepted_fn *accepted)
{
    struct worker *w = wl->w;
    struct listener_conf *lc = wl->lc;
    struct config *cfg = wl->draining ? wl->cfg : w->cfg;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        struct session_limits *limits = w->host->limits;
        if (!limits_take(limits)) {
            counter_add(&w->stats.limit_pauses, 1);
            listen_pause(w, wl, LIMIT_RECHECK);
            return ACCEPT_PAUSED;
        }
        if (!slot_take(&lc->st->active, lc->max_conns)) {
            slot_put(&limits->active);
            counter_add(&w->stats.limit_pauses, 1);
            listen_pause(w, wl, LIMIT_RECHECK);
            return ACCEPT_PAUSED;
        }
        bool rated = lc->max_conn_rate.n > 0;
        if (rated && !conn_rate_take(w, wl, lc)) {
            slot_put(&lc->st->active);
            slot_put(&limits->active);
            return ACCEPT_PAUSED;
        }
        struct sockaddr_ip peer;
        socklen_t len = sizeof(peer);
        int fd = accept4(wl->w_accept.fd, &peer.u.sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int err = errno;
            slot_put(&lc->st->active);
            slot_put(&limits->active);
            if (rated)
                ratelimit_give(&lc->st->conn_rate_tat, &lc->max_conn_rate);
            if (err == EINTR || err == ECONNABORTED || err == EPROTO)
                continue;
            if (err == EAGAIN)
                return ACCEPT_EMPTY;
            if (listener_exhausted_errno(err)) {
                accept_exhausted(w, err);
                return ACCEPT_PAUSED;
            }
            counter_add(&w->stats.accept_errors, 1);
            log_warn("worker %d: accept on listener %s: %s", w->id, lc->name, strerror(err));
            return ACCEPT_FAILED;
        }
        /* A Unix client has no address worth keeping (usually unnamed, and
         * a name would not fit): every one is just "unix". */
        if (peer.u.sa.sa_family == AF_UNIX) {
            memset(&peer, 0, sizeof(peer));
            peer.u.sa.sa_family = AF_UNIX;
        }
        counter_add(&w->stats.accepted, 1);
        /* The access list, then the per-source limits, before a session
         * exists (cheap under a flood); with accept_proxy the header's
         * address decides (session.c). */
        struct src_entry *src = NULL;
        enum end_reason refused = END_NONE;
        if (!lc->accept_proxy && !listener_admit(w, lc, &peer))
            refused = END_denied;
        else if (lc->srct != NULL && !lc->accept_proxy)
            refused = listener_source_admit(w, lc, &peer.u.sa, &src);
        if (refused != END_NONE) {
            accept_refused(w, lc, fd, refused);
            if (wl->draining && --wl->owed <= 0)
                return ACCEPT_EMPTY;
            continue;
        }
        /* Set on each accepted socket, not inherited from the listening
         * one: that socket outlives a reload, and a reload's values apply
         * from the next accept. A Unix-socket client has no TCP to set. */
        if (lc->keepalive.on && peer.u.sa.sa_family != AF_UNIX &&
            keepalive_apply(fd, &lc->keepalive) < 0)
            log_debug("worker %d: keepalive on a client of listener %s: %s", w->id, lc->name,
                      strerror(errno));
        accepted(w, cfg, lc, fd, &peer, src);
        if (wl->draining && --wl->owed <= 0)
            return ACCEPT_EMPTY;
    }
    return ACCEPT_MORE;
}

int listener_resume_paused(struct worker *w)
{
    if (w->listens == NULL)
        return 0;
    ev_tstamp now = ev_now(w->loop);
    if (now < w->emfile.until)
        return 1;
    int still = 0;
    bool global_full = limits_full(w->host->limits);
    for (struct worker_listen *wl = w->listens; wl; wl = wl->next) {
        if (!wl->paused)
            continue;
        if (now < wl->rate_until) { /* max_conn_rate: no token yet */
            still = 1;
            continue;
        }
        bool full = global_full || atomic_load_explicit(&wl->lc->st->active,
                                                        memory_order_relaxed) >= wl->lc->max_conns;
        if (full) {
            still = 1;
            continue;
        }
        wl->paused = false;
        ev_io_start(w->loop, &wl->w_accept);
        /* Its queue may have emptied meanwhile (clients gave up): a
         * listening socket with nothing queued never becomes readable. */
        if (wl->draining)
            ev_feed_event(w->loop, &wl->w_accept, EV_READ);
    }
    return still;
}
