/* health.c - active health checks (tcp, send-expect) on their own thread.
 *
 * One ev_timer per server, first fired at a random point of the interval
 * and then every interval +-10%, so checks never fire all at once. A check
 * is bounded by check_timeout. Results go to the server's struct backend
 * (atomics); `rise` successes bring a server up, `fall` failures take it
 * down, and each change is logged once. */
#include "sluice/health.h"
#include "sluice/backend.h"
#include "sluice/config.h"
#include "sluice/hash.h"
#include "sluice/log.h"
#include "sluice/thread.h"

#include <errno.h>
#include <ev.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define EXPECT_MAX 512

struct check {
    struct server_conf *srv;
    ev_timer w_timer; /* next run, then the running check's deadline */
    ev_io w_io;
    int fd;
    bool running;
    ev_tstamp started;
    size_t sent;
    size_t got;
    int err; /* errno of a local error (CHECK_RESULT_ERROR) */
    char reply[EXPECT_MAX];
};

struct health {
    struct ev_loop *loop;
    struct config_thread ct; /* the thread; ct.cfg: the generation being checked */
    struct check *checks;
    int nchecks;
    uint64_t rng;
    struct log_limit local_error_log;
};

static struct health *H;

static double jitter(struct health *h)
{
    return hash_unit(rng_next(&h->rng)); /* [0,1) */
}

static void check_schedule(struct health *h, struct check *c, bool first)
{
    double interval = (double)c->srv->pool->check_interval_ms / 1000.0;
    double at = first ? interval * jitter(h) : interval * (0.9 + 0.2 * jitter(h));
    ev_timer_stop(h->loop, &c->w_timer);
    ev_timer_set(&c->w_timer, at, 0.);
    ev_timer_start(h->loop, &c->w_timer);
}

static void check_done(struct health *h, struct check *c, enum check_result r)
{
    struct server_conf *s = c->srv;
    struct backend *b = s->be;
    if (c->fd >= 0) {
        /* Close with a reset, as HAProxy's checks do: a check every few
         * seconds per server would otherwise leave a TIME_WAIT socket each
         * time, holding an ephemeral port towards that server for 60s. */
        struct linger reset = {.l_onoff = 1, .l_linger = 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
        ev_io_stop(h->loop, &c->w_io);
        close(c->fd);
        c->fd = -1;
    }
    c->running = false;
    int64_t us = (int64_t)((ev_time() - c->started) * 1e6);
    atomic_store_explicit(&b->check_result, r, memory_order_relaxed);
    atomic_store_explicit(&b->check_us, us, memory_order_relaxed);
    atomic_fetch_add_explicit(&b->checks_total, 1, memory_order_relaxed);
    bool up = atomic_load_explicit(&b->health, memory_order_acquire) == HEALTH_UP;
    if (!up && b->seen_up)
        b->rise_count = 0; /* marked down passively since our last check */
    b->seen_up = up;
    if (r == CHECK_RESULT_ERROR) {
        /* No socket, no ephemeral port, no memory: our shortage says
         * nothing about the server, so neither streak moves. */
        unsigned long dropped;
        if (log_enabled(LOG_WARN) && log_limit_due(&h->local_error_log, ev_now(h->loop), 1.0, &dropped))
            log_write(LOG_WARN, "%s: check not run: %s (a shortage on sluice's side, not counted "
                      "against the server; %lu more such lines suppressed)",
                      b->obj.key, strerror(c->err), dropped);
    } else if (r == CHECK_RESULT_OK) {
        b->fall_count = 0;
        b->rise_count++;
        if (!up && b->rise_count >= s->pool->rise) {
            atomic_store_explicit(&b->fails, 0, memory_order_relaxed);
            atomic_store_explicit(&b->down_cause, DOWN_NONE, memory_order_relaxed);
            atomic_store_explicit(&b->health, HEALTH_UP, memory_order_release);
            atomic_fetch_add_explicit(&b->transitions, 1, memory_order_relaxed);
            b->seen_up = true;
            log_warn("%s UP (after %d successful checks)", b->obj.key, b->rise_count);
        }
    } else {
        atomic_fetch_add_explicit(&b->checks_failed, 1, memory_order_relaxed);
        b->rise_count = 0;
        b->fall_count++;
        if (up && b->fall_count >= s->pool->fall) {
            atomic_store_explicit(&b->down_cause, DOWN_CHECK, memory_order_relaxed);
            atomic_store_explicit(&b->health, HEALTH_DOWN, memory_order_release);
            atomic_fetch_add_explicit(&b->transitions, 1, memory_order_relaxed);
            b->seen_up = false;
            log_warn("%s DOWN (%s, after %d failed checks)", b->obj.key, check_result_str(r),
                     b->fall_count);
        }
    }
    check_schedule(h, c, false);
}

static void check_io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct check *c = container_of(io, struct check, w_io);
    struct pool_conf *p = c->srv->pool;
    if (revents & EV_WRITE) {
        if (c->sent == 0) {
            int err = 0;
            socklen_t len = sizeof(err);
            if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err != 0) {
                check_done(H, c, CHECK_RESULT_REFUSED);
                return;
            }
            if (p->check == CHECK_TCP) {
                check_done(H, c, CHECK_RESULT_OK);
                return;
            }
        }
        ssize_t n = send(c->fd, p->check_send + c->sent, p->check_send_len - c->sent, MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN) {
            check_done(H, c, CHECK_RESULT_CLOSED);
            return;
        }
        if (n > 0)
            c->sent += (size_t)n;
        if (c->sent < p->check_send_len && p->check_send_len > 0)
            return;
        c->sent = c->sent ? c->sent : 1; /* connected, nothing (more) to send */
        ev_io_stop(loop, io);
        ev_io_set(io, c->fd, EV_READ);
        ev_io_start(loop, io);
        return;
    }
    size_t want = p->check_expect_len < EXPECT_MAX ? p->check_expect_len : EXPECT_MAX;
    ssize_t n = recv(c->fd, c->reply + c->got, want - c->got, 0);
    if (n < 0) {
        if (errno != EAGAIN)
            check_done(H, c, CHECK_RESULT_CLOSED);
        return;
    }
    if (n == 0) {
        check_done(H, c, CHECK_RESULT_CLOSED);
        return;
    }
    c->got += (size_t)n;
    if (memcmp(c->reply, p->check_expect, c->got) != 0)
        check_done(H, c, CHECK_RESULT_BAD_REPLY);
    else if (c->got >= want)
        check_done(H, c, CHECK_RESULT_OK);
}

static void check_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct check *c = container_of(t, struct check, w_timer);
    if (c->running) {
        check_done(H, c, CHECK_RESULT_TIMEOUT);
        return;
    }
    struct server_conf *s = c->srv;
    c->running = true;
    c->started = ev_time();
    c->sent = c->got = 0;
    struct sockaddr_any to;
    if (!backend_addr(s, &to)) {
        /* A name without an answer: down already (backend_usable()). */
        check_done(H, c, CHECK_RESULT_ERROR);
        return;
    }
    c->fd = socket(to.u.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        c->err = errno;
        check_done(H, c, CHECK_RESULT_ERROR);
        return;
    }
    if (connect(c->fd, &to.u.sa, to.len) < 0 && errno != EINPROGRESS) {
        c->err = errno;
        check_done(H, c, backend_errno_is_local(errno) ? CHECK_RESULT_ERROR : CHECK_RESULT_REFUSED);
        return;
    }
    ev_io_set(&c->w_io, c->fd, EV_WRITE);
    ev_io_start(loop, &c->w_io);
    ev_timer_set(t, (double)s->pool->check_timeout_ms / 1000.0, 0.);
    ev_timer_start(loop, t);
}

static void checks_clear(struct config_thread *ct)
{
    struct health *h = container_of(ct, struct health, ct);
    for (int i = 0; i < h->nchecks; i++) {
        struct check *c = &h->checks[i];
        ev_timer_stop(h->loop, &c->w_timer);
        if (c->fd >= 0) {
            ev_io_stop(h->loop, &c->w_io);
            close(c->fd);
        }
    }
    free(h->checks);
    h->checks = NULL;
    h->nchecks = 0;
}

static void checks_plan(struct config_thread *ct)
{
    struct health *h = container_of(ct, struct health, ct);
    struct config *cfg = ct->cfg;
    int n = 0;
    for (int i = 0; i < cfg->npools; i++)
        if (cfg->pools[i].check != CHECK_NONE)
            n += cfg->pools[i].nservers;
    h->checks = n ? calloc((size_t)n, sizeof(struct check)) : NULL;
    if (n && h->checks == NULL) {
        log_error("health: out of memory, active checks are off");
        return;
    }
    for (int i = 0; i < cfg->npools; i++) {
        struct pool_conf *p = &cfg->pools[i];
        if (p->check == CHECK_NONE) {
            /* Nothing would ever bring these back up: checks were turned
             * off, so the last check's verdict no longer stands. */
            for (int j = 0; j < p->nservers; j++) {
                struct backend *b = p->servers[j].be;
                if (atomic_load(&b->health) != HEALTH_UP) {
                    atomic_store_explicit(&b->down_cause, DOWN_NONE, memory_order_relaxed);
                    atomic_store_explicit(&b->health, HEALTH_UP, memory_order_release);
                    atomic_store_explicit(&b->check_result, CHECK_RESULT_NONE, memory_order_relaxed);
                    log_warn("%s UP (active checks turned off)", b->obj.key);
                }
            }
            continue;
        }
        for (int j = 0; j < p->nservers; j++) {
            struct check *c = &h->checks[h->nchecks++];
            c->srv = &p->servers[j];
            c->srv->be->seen_up = atomic_load(&c->srv->be->health) == HEALTH_UP;
            c->fd = -1;
            ev_init(&c->w_timer, check_timer_cb);
            ev_init(&c->w_io, check_io_cb);
            check_schedule(h, c, true);
        }
    }
    log_debug("health: %d servers under active checks", h->nchecks);
}

static void health_free(struct config_thread *ct)
{
    free(container_of(ct, struct health, ct));
    H = NULL;
}

static const struct config_thread_ops health_ops = {
    .plan = checks_plan, .clear = checks_clear, .free = health_free};

int health_start(struct config *cfg)
{
    struct health *h = calloc(1, sizeof(*h));
    if (h == NULL || config_thread_init(&h->ct, &health_ops) != 0) {
        free(h);
        return -1;
    }
    h->loop = h->ct.mbox.loop;
    h->rng = 0x2545F4914F6CDD1DULL ^ (uint64_t)getpid() ^ (uint64_t)(ev_time() * 1e6);
    H = h;
    return config_thread_run(&h->ct, cfg) == 0 ? 0 : -1;
}

void health_update(struct config *cfg)
{
    if (H != NULL)
        config_thread_post(&H->ct, cfg);
}

void health_stop(void)
{
    if (H != NULL)
        config_thread_stop(&H->ct);
}
