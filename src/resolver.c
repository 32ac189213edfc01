/* resolver.c - resolving servers given by host name with c-ares, driven by
 * libev: ares' sockets are ev_io watchers (ARES_OPT_SOCK_STATE_CB), its
 * timeouts one ev_timer (ares_timeout()). The same engine runs blocking on
 * a private loop at load time (resolver_resolve_config()) and on the
 * resolver thread while running, where each server has a timer for its
 * next resolution and every answer is published in its struct backend. */
#include "sluice/resolver.h"
#include "sluice/addr.h"
#include "sluice/backend.h"
#include "sluice/hash.h"
#include "sluice/log.h"
#include "sluice/thread.h"

#include <ares.h>
#include <ev.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct rsock {
    ev_io w_io;
    struct resolver *r;
    struct rsock *next;
};

struct rquery {
    struct resolver *r;
    struct server_conf *srv;
    ev_timer w_timer; /* thread: the next resolution */
    bool running;
    /* The answer (load time). */
    enum dns_result res;
    struct sockaddr_any addr;
    int ttl;
};

struct resolver {
    struct ev_loop *loop;
    ares_channel ch;
    bool ch_open;
    ev_timer w_ares; /* c-ares' own retransmits and timeouts */
    struct rsock *socks;
    struct config *cfg;
    struct rquery *queries;
    int nqueries;
    int pending;   /* load time: queries without an answer yet */
    bool threaded; /* answers go to struct backend and are re-scheduled */
    /* The thread. */
    pthread_t thread;
    ev_async w_wake;
    pthread_mutex_t lock;
    struct config *next; /* under lock */
    bool stop;           /* under lock */
};

static struct resolver *R;

static void ares_rearm(struct resolver *r)
{
    struct timeval tv;
    ev_timer_stop(r->loop, &r->w_ares);
    if (r->ch_open && ares_timeout(r->ch, NULL, &tv) != NULL) {
        ev_timer_set(&r->w_ares, (ev_tstamp)tv.tv_sec + (ev_tstamp)tv.tv_usec / 1e6 + 0.001, 0.);
        ev_timer_start(r->loop, &r->w_ares);
    }
}

static void ares_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct resolver *r = container_of(t, struct resolver, w_ares);
    ares_process_fd(r->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    ares_rearm(r);
}

static void rsock_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct rsock *rs = container_of(w, struct rsock, w_io);
    struct resolver *r = rs->r;
    int fd = w->fd;
    /* rs may be freed in here (sock_state_cb): not touched after. */
    ares_process_fd(r->ch, (revents & EV_READ) ? fd : ARES_SOCKET_BAD,
                    (revents & EV_WRITE) ? fd : ARES_SOCKET_BAD);
    ares_rearm(r);
}

/* c-ares opens, changes interest in and closes its sockets through this. */
static void sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
    struct resolver *r = data;
    struct rsock **pp = &r->socks;
    while (*pp != NULL && (*pp)->w_io.fd != fd)
        pp = &(*pp)->next;
    struct rsock *rs = *pp;
    int events = (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0);
    if (rs != NULL) {
        ev_io_stop(r->loop, &rs->w_io);
        if (events == 0) {
            *pp = rs->next;
            free(rs);
            return;
        }
        ev_io_set(&rs->w_io, fd, events);
        ev_io_start(r->loop, &rs->w_io);
        return;
    }
    if (events == 0)
        return;
    if ((rs = calloc(1, sizeof(*rs))) == NULL) {
        /* Its queries time out and are retried at the next resolution. */
        log_error("resolver: out of memory for a socket watcher");
        return;
    }
    rs->r = r;
    ev_io_init(&rs->w_io, rsock_cb, fd, events);
    ev_io_start(r->loop, &rs->w_io);
    rs->next = r->socks;
    r->socks = rs;
}

/* A channel for cfg's resolvers (NULL: /etc/resolv.conf). Names are
 * looked up as written: no search domains. NULL or a reason. */
static const char *channel_open(struct resolver *r, const struct config *cfg)
{
    struct ares_options o = {0};
    o.sock_state_cb = sock_state_cb;
    o.sock_state_cb_data = r;
    o.timeout = 1000; /* ms per try */
    o.tries = 2;
    o.ndomains = 0;
    int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_DOMAINS;
    int rc = ares_init_options(&r->ch, &o, mask);
    if (rc != ARES_SUCCESS)
        return ares_strerror(rc);
    r->ch_open = true;
    if (cfg->resolvers != NULL && (rc = ares_set_servers_ports_csv(r->ch, cfg->resolvers)) != ARES_SUCCESS)
        return ares_strerror(rc);
    return NULL;
}

/* Cancels what runs (callbacks see ARES_EDESTRUCTION) and closes sockets. */
static void channel_close(struct resolver *r)
{
    if (r->ch_open) {
        r->ch_open = false;
        ares_destroy(r->ch);
    }
    ev_timer_stop(r->loop, &r->w_ares);
    while (r->socks != NULL) {
        struct rsock *rs = r->socks;
        r->socks = rs->next;
        ev_io_stop(r->loop, &rs->w_io);
        free(rs);
    }
}

static enum dns_result map_status(int status)
{
    switch (status) {
    case ARES_SUCCESS:
        return DNS_OK;
    case ARES_ENOTFOUND:
        return DNS_NXDOMAIN;
    case ARES_ENODATA:
        return DNS_NODATA;
    case ARES_ETIMEOUT:
    case ARES_ECANCELLED: /* the load-time bound ran out */
        return DNS_TIMEOUT;
    case ARES_EREFUSED:
        return DNS_REFUSED;
    case ARES_ESERVFAIL:
        return DNS_SERVFAIL;
    case ARES_ECONNREFUSED:
        return DNS_UNREACHABLE;
    default:
        return DNS_ERROR;
    }
}

/* Which name (and port and family) an address in struct backend is for. */
static uint64_t server_key(const struct server_conf *s)
{
    uint64_t k = hash_mix64(hash_str(s->host) ^ ((uint64_t)s->port << 8 | (uint64_t)s->family));
    return k != 0 ? k : 1;
}

/* The next resolution after an answer (ok: by TTL unless resolve_interval
 * is set; failed: resolve_interval_min). */
static int64_t next_after(const struct config *cfg, const struct server_conf *s, enum dns_result res,
                          int ttl)
{
    if (res != DNS_OK)
        return cfg->resolve_interval_min_ms;
    if (s->resolve_interval_ms >= 0)
        return s->resolve_interval_ms;
    int64_t ms = (int64_t)ttl * 1000;
    if (ms < cfg->resolve_interval_min_ms)
        ms = cfg->resolve_interval_min_ms;
    if (ms > cfg->resolve_interval_max_ms)
        ms = cfg->resolve_interval_max_ms;
    return ms;
}

static void cell_lock(struct backend *b)
{
    while (atomic_flag_test_and_set(&b->addr.wlock))
        ;
}

static void cell_unlock(struct backend *b)
{
    atomic_flag_clear(&b->addr.wlock);
}

static void query_schedule(struct resolver *r, struct rquery *q, int64_t delay_ms);

/* Thread: publish q's answer in its backend and schedule the next one. */
static void answer_apply(struct resolver *r, struct rquery *q)
{
    struct server_conf *s = q->srv;
    struct backend *b = s->be;
    int64_t now = time_mono_ms();
    char a[ADDR_STRLEN];
    atomic_fetch_add_explicit(&b->dns_resolutions, 1, memory_order_relaxed);
    if (q->res != DNS_OK)
        atomic_fetch_add_explicit(&b->dns_failures, 1, memory_order_relaxed);
    cell_lock(b);
    if (atomic_load(&b->dns_key) != server_key(s)) {
        cell_unlock(b); /* a newer generation follows another name */
        return;
    }
    bool valid = atomic_load(&b->addr_valid);
    enum dns_result prev = (enum dns_result)atomic_load(&b->dns_result);
    atomic_store(&b->dns_result, q->res);
    if (q->res == DNS_OK) {
        struct sockaddr_any cur;
        addr_cell_load(&b->addr, &cur);
        addr_format(&q->addr.u.sa, q->addr.len, a, sizeof(a));
        if (!valid || !addr_equal(&cur, &q->addr)) {
            addr_cell_store(&b->addr, &q->addr);
            if (valid) {
                char was[ADDR_STRLEN];
                addr_format(&cur.u.sa, cur.len, was, sizeof(was));
                atomic_fetch_add_explicit(&b->dns_changes, 1, memory_order_relaxed);
                log_info("%s: %s is now %s (was %s)", b->obj.key, s->addr_str, a, was);
            } else {
                log_warn("%s UP (dns: %s is %s)", b->obj.key, s->addr_str, a);
            }
        }
        atomic_store(&b->dns_ok_ms, now);
        atomic_store_explicit(&b->addr_valid, true, memory_order_release);
    } else if (valid && now - atomic_load(&b->dns_ok_ms) >= s->resolve_hold_ms) {
        atomic_store_explicit(&b->addr_valid, false, memory_order_release);
        log_warn("%s DOWN (dns: %s for %s, and the last good answer is older than resolve_hold)",
                 b->obj.key, dns_result_str(q->res), s->addr_str);
    } else if (valid && prev == DNS_OK) {
        log_warn("%s: dns: %s for %s: keeping the last good answer for up to resolve_hold",
                 b->obj.key, dns_result_str(q->res), s->addr_str);
    }
    int64_t next = next_after(r->cfg, s, q->res, q->ttl);
    atomic_store(&b->dns_next_ms, now + next);
    cell_unlock(b);
    query_schedule(r, q, next);
}

static void gai_cb(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    struct rquery *q = arg;
    struct resolver *r = q->r;
    q->running = false;
    if (status == ARES_EDESTRUCTION) {
        ares_freeaddrinfo(res);
        return; /* the channel is being closed: re-planned or stopping */
    }
    q->res = map_status(status);
    q->ttl = 0;
    if (q->res == DNS_OK) {
        q->res = DNS_NODATA;
        for (struct ares_addrinfo_node *n = res ? res->nodes : NULL; n != NULL; n = n->ai_next) {
            if ((n->ai_family != AF_INET && n->ai_family != AF_INET6) ||
                (size_t)n->ai_addrlen > sizeof(q->addr.u.in6))
                continue;
            if (q->res != DNS_OK) {
                memset(&q->addr, 0, sizeof(q->addr));
                memcpy(&q->addr.u, n->ai_addr, n->ai_addrlen);
                q->addr.len = n->ai_addrlen;
                if (n->ai_family == AF_INET)
                    q->addr.u.in4.sin_port = htons((uint16_t)q->srv->port);
                else
                    q->addr.u.in6.sin6_port = htons((uint16_t)q->srv->port);
                q->res = DNS_OK;
                q->ttl = n->ai_ttl;
            } else if (n->ai_ttl < q->ttl) {
                q->ttl = n->ai_ttl;
            }
        }
    }
    ares_freeaddrinfo(res);
    if (r->threaded)
        answer_apply(r, q);
    else if (--r->pending == 0)
        ev_break(r->loop, EVBREAK_ONE);
}

static void query_start(struct resolver *r, struct rquery *q)
{
    static const int families[] = {[FAMILY_ANY] = AF_UNSPEC, [FAMILY_IPV4] = AF_INET,
                                   [FAMILY_IPV6] = AF_INET6};
    struct ares_addrinfo_hints hints = {.ai_family = families[q->srv->family]};
    q->running = true;
    ares_getaddrinfo(r->ch, q->srv->host, NULL, &hints, gai_cb, q);
    ares_rearm(r);
}

static void query_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct rquery *q = container_of(t, struct rquery, w_timer);
    if (!q->running)
        query_start(q->r, q);
}

static void query_schedule(struct resolver *r, struct rquery *q, int64_t delay_ms)
{
    ev_timer_stop(r->loop, &q->w_timer);
    ev_timer_set(&q->w_timer, delay_ms > 0 ? (ev_tstamp)delay_ms / 1000.0 : 0., 0.);
    ev_timer_start(r->loop, &q->w_timer);
}

static int count_named(const struct config *cfg)
{
    int n = 0;
    for (int i = 0; i < cfg->npools; i++)
        for (int j = 0; j < cfg->pools[i].nservers; j++)
            n += cfg->pools[i].servers[j].host != NULL;
    return n;
}

static void bound_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    ev_break(loop, EVBREAK_ONE);
}

int resolver_resolve_config(struct config *cfg, struct config_errors *errs)
{
    int n = count_named(cfg), nerr = 0;
    if (n == 0)
        return 0;
    struct resolver r = {.cfg = cfg};
    r.queries = calloc((size_t)n, sizeof(*r.queries));
    r.loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOENV);
    if (r.queries == NULL || r.loop == NULL) {
        config_errors_add(errs, cfg->path, 1, "server", "cannot resolve host names: out of memory");
        free(r.queries);
        if (r.loop)
            ev_loop_destroy(r.loop);
        return 1;
    }
    ev_init(&r.w_ares, ares_timer_cb);
    const char *why = channel_open(&r, cfg);
    if (why != NULL) {
        config_errors_add(errs, cfg->path, 1, "resolvers", "cannot set up DNS resolution: %s", why);
        nerr++;
        goto out;
    }
    for (int i = 0; i < cfg->npools; i++) {
        for (int j = 0; j < cfg->pools[i].nservers; j++) {
            struct server_conf *s = &cfg->pools[i].servers[j];
            if (s->host == NULL)
                continue;
            if (s->be != NULL && atomic_load(&s->be->dns_key) == server_key(s)) {
                s->dns_init = DNS_NONE; /* the running answer stays */
                continue;
            }
            struct rquery *q = &r.queries[r.nqueries++];
            q->r = &r;
            q->srv = s;
            q->res = DNS_TIMEOUT;
            r.pending++;
            query_start(&r, q);
        }
    }
    if (r.pending > 0) {
        ev_timer bound;
        ev_timer_init(&bound, bound_cb, RESOLVER_LOAD_BOUND_MS / 1000.0, 0.);
        ev_timer_start(r.loop, &bound);
        ev_run(r.loop, 0);
        ev_timer_stop(r.loop, &bound);
        if (r.pending > 0)
            ares_cancel(r.ch); /* what is left ends as a timeout */
    }
    for (int i = 0; i < r.nqueries; i++) {
        struct rquery *q = &r.queries[i];
        struct server_conf *s = q->srv;
        s->dns_init = q->res;
        s->dns_ttl = q->ttl;
        if (q->res == DNS_OK) {
            s->addr = q->addr;
        } else if (s->init_addr_none) {
            log_warn("%s:%d: server: %s: %s: dns: %s (init_addr=none: starts down)", cfg->path,
                     s->line, s->name, s->addr_str, dns_result_str(q->res));
        } else {
            config_errors_add(errs, cfg->path, s->line, "server",
                              "%s: cannot resolve %s: dns: %s (init_addr=none would start it down)",
                              s->name, s->addr_str, dns_result_str(q->res));
            nerr++;
        }
    }
out:
    channel_close(&r);
    ev_loop_destroy(r.loop);
    free(r.queries);
    return nerr;
}

void resolver_adopt(struct config *cfg)
{
    int64_t now = time_mono_ms();
    for (int i = 0; i < cfg->npools; i++) {
        for (int j = 0; j < cfg->pools[i].nservers; j++) {
            struct server_conf *s = &cfg->pools[i].servers[j];
            struct backend *b = s->be;
            uint64_t key = s->host ? server_key(s) : 0;
            if (atomic_load(&b->dns_key) == key)
                continue; /* the same name (or a literal still): the running state stays */
            cell_lock(b);
            atomic_store(&b->dns_key, key);
            if (s->host == NULL) {
                atomic_store_explicit(&b->addr_valid, true, memory_order_release);
                atomic_store(&b->dns_result, DNS_NONE);
                cell_unlock(b);
                continue;
            }
            atomic_store(&b->dns_result, s->dns_init);
            atomic_fetch_add_explicit(&b->dns_resolutions, 1, memory_order_relaxed);
            if (s->dns_init == DNS_OK) {
                addr_cell_store(&b->addr, &s->addr);
                atomic_store(&b->dns_ok_ms, now);
            } else {
                atomic_fetch_add_explicit(&b->dns_failures, 1, memory_order_relaxed);
            }
            atomic_store_explicit(&b->addr_valid, s->dns_init == DNS_OK, memory_order_release);
            atomic_store(&b->dns_next_ms, now + next_after(cfg, s, s->dns_init, s->dns_ttl));
            cell_unlock(b);
        }
    }
}

/* Thread: drop the running plan (cancelling its queries) and follow the
 * named servers of cfg, each at the due time kept in its backend. */
static void plan(struct resolver *r, struct config *cfg)
{
    channel_close(r);
    for (int i = 0; i < r->nqueries; i++)
        ev_timer_stop(r->loop, &r->queries[i].w_timer);
    free(r->queries);
    r->queries = NULL;
    r->nqueries = 0;
    config_unref(r->cfg);
    r->cfg = cfg;
    int n = count_named(cfg);
    if (n == 0)
        return;
    const char *why = channel_open(r, cfg);
    if (why != NULL || (r->queries = calloc((size_t)n, sizeof(*r->queries))) == NULL) {
        log_error("resolver: cannot set up DNS resolution: %s: host names are not re-resolved",
                  why ? why : "out of memory");
        return;
    }
    int64_t now = time_mono_ms();
    for (int i = 0; i < cfg->npools; i++) {
        for (int j = 0; j < cfg->pools[i].nservers; j++) {
            struct server_conf *s = &cfg->pools[i].servers[j];
            if (s->host == NULL)
                continue;
            struct rquery *q = &r->queries[r->nqueries++];
            q->r = r;
            q->srv = s;
            ev_init(&q->w_timer, query_timer_cb);
            query_schedule(r, q, atomic_load(&s->be->dns_next_ms) - now);
        }
    }
    log_debug("resolver: following %d host names", r->nqueries);
}

static void wake_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    struct resolver *r = container_of(a, struct resolver, w_wake);
    pthread_mutex_lock(&r->lock);
    struct config *next = r->next;
    r->next = NULL;
    bool stop = r->stop;
    pthread_mutex_unlock(&r->lock);
    if (next)
        plan(r, next);
    if (stop) {
        channel_close(r);
        for (int i = 0; i < r->nqueries; i++)
            ev_timer_stop(r->loop, &r->queries[i].w_timer);
        ev_break(loop, EVBREAK_ALL);
    }
}

static void *resolver_main(void *arg)
{
    struct resolver *r = arg;
    ev_run(r->loop, 0);
    return NULL;
}

int resolver_start(struct config *cfg)
{
    struct resolver *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return -1;
    r->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOENV);
    if (r->loop == NULL) {
        free(r);
        return -1;
    }
    r->threaded = true;
    pthread_mutex_init(&r->lock, NULL);
    ev_init(&r->w_ares, ares_timer_cb);
    ev_async_init(&r->w_wake, wake_cb);
    ev_async_start(r->loop, &r->w_wake);
    config_ref(cfg);
    plan(r, cfg);
    R = r;
    if (thread_start(&r->thread, resolver_main, r) != 0) {
        channel_close(r);
        config_unref(r->cfg);
        free(r->queries);
        ev_loop_destroy(r->loop);
        pthread_mutex_destroy(&r->lock);
        free(r);
        R = NULL;
        return -1;
    }
    return 0;
}

void resolver_update(struct config *cfg)
{
    struct resolver *r = R;
    if (r == NULL)
        return;
    config_ref(cfg);
    pthread_mutex_lock(&r->lock);
    struct config *old = r->next;
    r->next = cfg;
    pthread_mutex_unlock(&r->lock);
    config_unref(old);
    ev_async_send(r->loop, &r->w_wake);
}

void resolver_stop(void)
{
    struct resolver *r = R;
    if (r == NULL)
        return;
    pthread_mutex_lock(&r->lock);
    r->stop = true;
    pthread_mutex_unlock(&r->lock);
    ev_async_send(r->loop, &r->w_wake);
    pthread_join(r->thread, NULL);
    config_unref(r->next);
    config_unref(r->cfg);
    free(r->queries);
    ev_loop_destroy(r->loop);
    pthread_mutex_destroy(&r->lock);
    free(r);
    R = NULL;
}
