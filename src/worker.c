/* worker.c - worker thread lifecycle and its command inbox. */
#include "sluice/worker.h"
#include "sluice/config.h"
#include "sluice/fault.h"
#include "sluice/listener.h"
#include "sluice/log.h"
#include "sluice/relay.h"
#include "sluice/reuseport.h"
#include "sluice/session.h"
#include "sluice/splice.h"
#include "sluice/thread.h"
#include "sluice/uring.h"

#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Buffer blocks each worker keeps for reuse (4 MiB at 16 KiB). */
#define BUF_CACHE_BLOCKS 256
/* Empty pipes each worker keeps for splice sessions. */
#define PIPE_CACHE 64

static void close_listen(struct worker *w, struct worker_listen *wl);

static void worker_close_listens(struct worker *w)
{
    while (w->listens) {
        struct worker_listen *wl = w->listens;
        w->listens = wl->next;
        close_listen(w, wl);
    }
    ev_timer_stop(w->loop, &w->w_resume);
    ev_timer_stop(w->loop, &w->w_retire);
}

static void worker_maybe_exit(struct worker *w)
{
    /* A retiring worker may still be draining a socket's queue. */
    if (w->stopping && w->nsessions == 0 && w->listens == NULL)
        ev_break(w->loop, EVBREAK_ALL);
}

/* A session has ended (w->session_gone, called by session.c). */
static void worker_session_gone(struct worker *w)
{
    /* A slot freed up: a listener paused at max_conns may accept again. */
    if (ev_is_active(&w->w_resume))
        listener_resume_paused(w);
    worker_maybe_exit(w);
}

/* Any thread: append item to one of w's inbox lists (head/tail, linked
 * through item->next) under inbox_lock, and wake w. Messages and woken
 * sessions are two lists only because they are two types. */
#define INBOX_APPEND(w, head, tail, item, next)                                                    \
    do {                                                                                           \
        (item)->next = NULL;                                                                       \
        pthread_mutex_lock(&(w)->inbox_lock);                                                      \
        if ((w)->tail)                                                                             \
            (w)->tail->next = (item);                                                              \
        else                                                                                       \
            (w)->head = (item);                                                                    \
        (w)->tail = (item);                                                                        \
        pthread_mutex_unlock(&(w)->inbox_lock);                                                    \
        ev_async_send((w)->loop, &(w)->w_inbox);                                                   \
    } while (0)

/* w->wake: any thread, under the pool queue's lock. */
static void worker_wake(struct worker *w, struct session *s)
{
    INBOX_APPEND(w, woken_head, woken_tail, s, wnext);
}

/* Hand every woken session of the list to the session module. */
static void run_woken(struct session *s)
{
    while (s) {
        struct session *next = s->wnext;
        s->wnext = NULL;
        session_queue_woken(s);
        s = next;
    }
}

static void resume_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct worker *w = container_of(t, struct worker, w_resume);
    if (listener_resume_paused(w)) {
        ev_tstamp wait = w->emfile.until > ev_now(loop) ? w->emfile.until - ev_now(loop) : 0.02;
        ev_timer_set(t, wait, 0.);
        ev_timer_start(loop, t);
    }
}

static void kill_all(struct worker *w)
{
    while (w->sessions)
        session_finish(w->sessions, END_shutdown);
}

static struct listener_conf *find_bind(struct config *cfg, const struct sockaddr_any *a)
{
    for (int i = 0; i < cfg->nlisteners; i++)
        for (int b = 0; b < cfg->listeners[i].nbinds; b++)
            if (addr_equal(&cfg->listeners[i].binds[b], a))
                return &cfg->listeners[i];
    return NULL;
}

/* A socket is going away (its bind was removed by a reload, or its worker
 * retires): accept what the kernel already queued on it, so no queued
 * client is reset. Returns true when that is done and the caller may close
 * it. When a limit (max_conns, EMFILE) pauses accepting first, the socket
 * instead turns draining: it stops completing new handshakes (backlog 0:
 * while anything is queued the kernel drops new SYNs, and their clients
 * retry, reaching another worker's socket or a refusal once this one is
 * closed), remembers how many connections are queued, accepts them as
 * slots free up, and is closed by worker_listen_drained() after the last.
 * A graceful stop closes it at once, like every listening socket. */
static bool drain_accept_queue(struct worker *w, struct worker_listen *wl)
{
    enum accept_result r = ACCEPT_MORE;
    for (int i = 0; i < 1000 && r == ACCEPT_MORE; i++)
        r = listener_accept_batch(wl, session_start);
    if (r == ACCEPT_EMPTY)
        return true;
    int fd = wl->w_accept.fd;
    if (wl->addr.u.sa.sa_family == AF_UNIX) {
        /* No TCP_INFO, and no need: the main thread removed the file
         * before telling us, so no client can connect any more and the
         * queue (shared with the other workers' dup()s) only shrinks:
         * accept until it is empty. */
        wl->owed = INT_MAX;
    } else {
        struct tcp_info ti;
        socklen_t len = sizeof(ti);
        wl->owed = getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0
                       ? (int)ti.tcpi_unacked /* a listener's accept queue length */
                       : INT_MAX;             /* unknown: until the queue is empty */
        if (wl->owed <= 0)
            return true;
        listen(fd, 0);
    }
    wl->draining = true;
    config_ref(w->cfg);
    wl->cfg = w->cfg;
    char a[ADDR_STRLEN];
    addr_format(&wl->addr.u.sa, wl->addr.len, a, sizeof(a));
    log_info("worker %d: listener %s: %s is closing; %d queued connections are served as "
             "max_conns allows, then it closes",
             w->id, wl->lc->name, a, wl->owed);
    return false;
}

static void close_listen(struct worker *w, struct worker_listen *wl)
{
    ev_io_stop(w->loop, &wl->w_accept);
    reuseport_close(wl->w_accept.fd);
    config_unref(wl->cfg);
    free(wl);
}

/* A draining socket has accepted what it owed: close and free it. */
static void worker_listen_drained(struct worker *w, struct worker_listen *wl)
{
    struct worker_listen **pp = &w->listens;
    while (*pp != wl)
        pp = &(*pp)->next;
    *pp = wl->next;
    log_info("worker %d: listener %s: queued connections served, socket closed", w->id,
             wl->lc->name);
    close_listen(w, wl);
    worker_maybe_exit(w);
}

/* libev callback of a worker's listening socket. */
static void accept_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct worker_listen *wl = container_of(io, struct worker_listen, w_accept);
    if (listener_accept_batch(wl, session_start) == ACCEPT_EMPTY && wl->draining)
        worker_listen_drained(wl->w, wl);
}

/* Retire every socket of this worker that is not draining already; the
 * ones that cannot be closed yet are left draining. A retiring worker
 * (keep NULL) just closes its dup() of a unix: socket: the queue is
 * shared with the workers that stay, which go on accepting from it (and
 * drain it themselves if its path is gone too). With `grace`, a socket
 * the kernel no longer sends new connections to (reuseport.h) is kept
 * accepting for now: handshakes begun on it before the steering may
 * still complete there; the unix: dup()s are then kept as long too (the
 * worker lives that long anyway, and while it does, its epoll set would
 * keep the closed dup()'s registration: the file stays open). Returns
 * how many were kept so. */
static int retire_listens(struct worker *w, struct config *keep, bool grace)
{
    bool steered = false;
    for (struct worker_listen *wl = w->listens; wl && grace && !steered; wl = wl->next)
        steered = !wl->draining && wl->addr.u.sa.sa_family != AF_UNIX &&
                  reuseport_steered_away(wl->w_accept.fd);
    int kept = 0;
    /* The unix: dup()s last, for the same reason. */
    for (int pass = 0; pass < 2; pass++) {
        struct worker_listen **pp = &w->listens;
        while (*pp) {
            struct worker_listen *wl = *pp;
            bool go = !wl->draining && (keep == NULL || find_bind(keep, &wl->addr) == NULL);
            bool shared = keep == NULL && wl->addr.u.sa.sa_family == AF_UNIX;
            if (shared != (pass == 1)) {
                pp = &wl->next;
            } else if (go && steered && (shared || reuseport_steered_away(wl->w_accept.fd))) {
                kept++;
                pp = &wl->next;
            } else if (go && (shared || drain_accept_queue(w, wl))) {
                if (!shared)
                    fault_retire_close_delay();
                *pp = wl->next;
                close_listen(w, wl);
            } else {
                pp = &wl->next;
            }
        }
    }
    return kept;
}

/* The grace of a retiring worker's steered sockets is over: drain and
 * close them. */
static void retire_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct worker *w = container_of(t, struct worker, w_retire);
    retire_listens(w, NULL, false);
    worker_maybe_exit(w);
}

/* Switch to a new generation between events. Sockets whose address is in
 * both generations are kept (nothing queued is lost); removed ones are
 * drained and closed; new ones were opened for us by the main thread.
 * Live sessions keep the generation (and backend) they started with. */
static void worker_adopt(struct worker *w, struct config *cfg, struct worker_new_listen *nl)
{
    retire_listens(w, cfg, false);
    struct config *old = w->cfg;
    w->cfg = cfg;
    for (struct worker_listen *wl = w->listens; wl; wl = wl->next) {
        if (wl->draining)
            continue;
        struct listener_conf *lc = find_bind(cfg, &wl->addr);
        if (lc->backlog != wl->lc->backlog)
            listen(wl->w_accept.fd, lc->backlog); /* Linux re-sizes in place */
        wl->lc = lc;
    }
    while (nl) {
        struct worker_new_listen *next = nl->next;
        if (w->stopping || worker_add_listen(w, &cfg->listeners[nl->listener], &nl->addr, nl->fd) < 0)
            reuseport_close(nl->fd);
        free(nl);
        nl = next;
    }
    config_unref(old);
    buf_pool_resize(&w->bufs, cfg->buffer_size);
    w->pipes.pipe_size = cfg->max_buffer;
    session_uring_prepare(w);
    if (ev_is_active(&w->w_resume))
        listener_resume_paused(w);
}

static void inbox_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    struct worker *w = container_of(a, struct worker, w_inbox);
    pthread_mutex_lock(&w->inbox_lock);
    struct worker_msg *m = w->inbox_head;
    w->inbox_head = w->inbox_tail = NULL;
    struct session *woken = w->woken_head;
    w->woken_head = w->woken_tail = NULL;
    pthread_mutex_unlock(&w->inbox_lock);
    run_woken(woken);
    while (m) {
        struct worker_msg *next = m->next;
        switch (m->type) {
        case WMSG_STOP_ACCEPT:
            w->stopping = true;
            worker_close_listens(w);
            break;
        case WMSG_RETIRE:
            w->stopping = true;
            if (retire_listens(w, NULL, true) > 0 && !ev_is_active(&w->w_retire)) {
                ev_timer_set(&w->w_retire, REUSEPORT_RETIRE_GRACE, 0.);
                ev_timer_start(w->loop, &w->w_retire);
            }
            break;
        case WMSG_KILL_ALL:
            kill_all(w);
            break;
        case WMSG_CONFIG:
            worker_adopt(w, m->cfg, m->listens);
            m->cfg = NULL;
            m->listens = NULL;
            break;
        case WMSG_CALL:
            m->fn(w, m->arg);
            break;
        }
        worker_msg_free(m);
        m = next;
    }
    worker_maybe_exit(w);
}

int worker_init(struct worker *w, const struct worker_host *host, int id, struct config *cfg)
{
    /* A slot can be reused after its worker retired: counters carry on. */
    struct worker_stats keep = w->stats;
    uint64_t seq = w->session_seq;
    memset(w, 0, sizeof(*w));
    w->stats = keep;
    w->session_seq = seq;
    w->id = id;
    w->host = host;
    w->session_gone = worker_session_gone;
    w->wake = worker_wake;
    w->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOENV);
    if (w->loop == NULL)
        return -1;
    config_ref(cfg);
    w->cfg = cfg;
    pthread_mutex_init(&w->inbox_lock, NULL);
    ev_async_init(&w->w_inbox, inbox_cb);
    ev_async_start(w->loop, &w->w_inbox);
    ev_init(&w->w_resume, resume_cb);
    ev_init(&w->w_retire, retire_cb);
    buf_pool_init(&w->bufs, cfg->buffer_size, BUF_CACHE_BLOCKS);
    pipe_pool_init(&w->pipes, PIPE_CACHE, cfg->max_buffer);
    session_uring_prepare(w);
    return 0;
}

int worker_add_listen(struct worker *w, struct listener_conf *lc, const struct sockaddr_any *addr,
                      int fd)
{
    struct worker_listen *wl = calloc(1, sizeof(*wl));
    if (wl == NULL)
        return -1;
    wl->w = w;
    wl->lc = lc;
    wl->addr = *addr;
    ev_io_init(&wl->w_accept, accept_cb, fd, EV_READ);
    ev_io_start(w->loop, &wl->w_accept);
    wl->next = w->listens;
    w->listens = wl;
    return 0;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    log_debug("worker %d: running", w->id);
    ev_run(w->loop, 0);
    log_debug("worker %d: stopped", w->id);
    atomic_store(&w->exited, true);
    ev_async_send(w->host->loop, w->host->exited);
    return NULL;
}

int worker_start(struct worker *w)
{
    if (fault_worker_start()) {
        errno = EAGAIN;
        return -1;
    }
    int rc = thread_start(&w->thread, worker_main, w);
    if (rc != 0) {
        errno = rc;
        return -1;
    }
    return 0;
}

void worker_join(struct worker *w)
{
    pthread_join(w->thread, NULL);
}

void worker_destroy(struct worker *w)
{
    if (w->loop == NULL)
        return;
    worker_close_listens(w);
    while (w->free_sessions) {
        struct session *s = w->free_sessions;
        w->free_sessions = s->next;
        free(s);
    }
    struct worker_msg *m = w->inbox_head;
    while (m) {
        struct worker_msg *next = m->next;
        /* A call still queued must complete (its caller waits for it). */
        if (m->type == WMSG_CALL)
            m->fn(w, m->arg);
        worker_msg_free(m);
        m = next;
    }
    w->inbox_head = w->inbox_tail = NULL;
    /* Wakes that came after the last session ended: each passes its turn
     * on to the next waiter (and frees its session). */
    struct session *woken = w->woken_head;
    w->woken_head = w->woken_tail = NULL;
    run_woken(woken);
    /* Sessions that ended with ring operations in flight are freed by
     * their last completions. */
    uring_close(w->uring);
    w->uring = NULL;
    while (w->free_sessions) {
        struct session *s = w->free_sessions;
        w->free_sessions = s->next;
        free(s);
    }
    buf_pool_destroy(&w->bufs);
    pipe_pool_destroy(&w->pipes);
    config_unref(w->cfg);
    ev_loop_destroy(w->loop);
    w->loop = NULL;
    pthread_mutex_destroy(&w->inbox_lock);
}

void worker_msg_free(struct worker_msg *m)
{
    if (m->cfg)
        config_unref(m->cfg);
    while (m->listens) {
        struct worker_new_listen *nl = m->listens;
        m->listens = nl->next;
        close(nl->fd);
        free(nl);
    }
    free(m);
}

int worker_send(struct worker *w, enum worker_msg_type type)
{
    struct worker_msg *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return -1;
    m->type = type;
    worker_post(w, m);
    return 0;
}

void worker_post(struct worker *w, struct worker_msg *m)
{
    INBOX_APPEND(w, inbox_head, inbox_tail, m, next);
}
