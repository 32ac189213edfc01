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
#include <arpa/nameser.h>
#include <ev.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct rsock {
    ev_io w_io;
    struct resolver *r;
    struct rsock *next;
};

struct rquery;

/* resolve=srv: the address lookup of one SRV target. */
struct srv_sub {
    struct rquery *q;
    int port, weight, prio;
};

struct rquery {
    struct resolver *r;
    struct server_conf *srv;
    ev_timer w_timer; /* thread: the next resolution */
    bool running;
    /* The answer (first: addr; all/srv: set, at load time). */
    enum dns_result res;
    struct sockaddr_any addr;
    int ttl;
    struct dns_set *set;
    /* all/srv: addresses gathered so far; srv: target lookups running. */
    struct dns_target *acc;
    int nacc, cap;
    struct srv_sub *subs;
    int subs_pending;
    bool destroyed;
    enum dns_result sub_res; /* srv: the last target lookup's failure */
};

struct resolver {
    struct ev_loop *loop;
    ares_channel ch;
    bool ch_open;
    ev_timer w_ares; /* c-ares' own retransmits and timeouts */
    struct rsock *socks;
    struct config *cfg; /* the generation followed (the thread: ct.cfg) */
    struct rquery *queries;
    int nqueries;
    int pending;   /* load time: queries without an answer yet */
    bool threaded; /* answers go to struct backend and are re-scheduled */
    /* The thread. */
    void (*notify)(void *); /* a resolve=all/srv answer arrived */
    void *notify_arg;
    struct config_thread ct; /* the thread and the generation it follows */
};

static struct resolver *R;

/* family= as getaddrinfo() hints. */
static const int families[] = {[FAMILY_ANY] = AF_UNSPEC, [FAMILY_IPV4] = AF_INET,
                               [FAMILY_IPV6] = AF_INET6};

/* Guards every backend's dns_set (resolver thread vs main thread). */
static pthread_mutex_t set_lock = PTHREAD_MUTEX_INITIALIZER;

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

/* Thread: count q's answer in its backend and take the backend's cell
 * lock. False, with the lock released, when a newer generation follows
 * another name: the caller drops the answer. */
static bool answer_begin(struct rquery *q)
{
    struct backend *b = q->srv->be;
    atomic_fetch_add_explicit(&b->dns_resolutions, 1, memory_order_relaxed);
    if (q->res != DNS_OK)
        atomic_fetch_add_explicit(&b->dns_failures, 1, memory_order_relaxed);
    cell_lock(b);
    if (atomic_load(&b->dns_key) != server_key(q->srv)) {
        cell_unlock(b); /* a newer generation follows another name */
        return false;
    }
    return true;
}

/* Thread: after answer_begin() returned true: note when q's next query
 * runs, release the cell lock and schedule it. */
static void answer_end(struct resolver *r, struct rquery *q, int64_t now)
{
    struct backend *b = q->srv->be;
    int64_t next = next_after(r->cfg, q->srv, q->res, q->ttl);
    atomic_store(&b->dns_next_ms, now + next);
    cell_unlock(b);
    query_schedule(r, q, next);
}

/* Thread: publish q's answer in its backend and schedule the next one. */
static void answer_apply(struct resolver *r, struct rquery *q)
{
    struct server_conf *s = q->srv;
    struct backend *b = s->be;
    int64_t now = time_mono_ms();
    char a[ADDR_STRLEN];
    if (!answer_begin(q))
        return;
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
    answer_end(r, q, now);
}

static void set_free_acc(struct rquery *q)
{
    free(q->acc);
    q->acc = NULL;
    q->nacc = q->cap = 0;
}

/* Add one address of an answer (port in host order); duplicates keep the
 * first. -1 on allocation failure. */
static int acc_add(struct rquery *q, const struct sockaddr *sa, size_t len, int port, int weight,
                   int prio)
{
    struct dns_target t = {.weight = weight, .prio = prio};
    if ((sa->sa_family != AF_INET && sa->sa_family != AF_INET6) || len > sizeof(t.addr.u.in6))
        return 0;
    memcpy(&t.addr.u, sa, len);
    t.addr.len = (socklen_t)len;
    if (sa->sa_family == AF_INET)
        t.addr.u.in4.sin_port = htons((uint16_t)port);
    else
        t.addr.u.in6.sin6_port = htons((uint16_t)port);
    for (int i = 0; i < q->nacc; i++)
        if (addr_equal(&q->acc[i].addr, &t.addr))
            return 0;
    if (q->nacc == q->cap) {
        int cap = q->cap ? q->cap * 2 : 8;
        struct dns_target *a = realloc(q->acc, sizeof(*a) * (size_t)cap);
        if (a == NULL)
            return -1;
        q->acc = a;
        q->cap = cap;
    }
    q->acc[q->nacc++] = t;
    return 0;
}

static int target_cmp(const void *a, const void *b)
{
    const struct dns_target *x = a, *y = b;
    if (x->addr.len != y->addr.len)
        return x->addr.len < y->addr.len ? -1 : 1;
    return memcmp(&x->addr.u, &y->addr.u, x->addr.len);
}

/* The gathered addresses as a set (sorted; srv: the lowest priority
 * present is primary, higher ones backup). NULL on allocation failure. */
static struct dns_set *acc_to_set(struct rquery *q)
{
    struct dns_set *set = malloc(sizeof(*set) + sizeof(set->t[0]) * (size_t)q->nacc);
    if (set == NULL)
        return NULL;
    set->n = q->nacc;
    int minprio = 0;
    for (int i = 0; i < q->nacc; i++)
        if (i == 0 || q->acc[i].prio < minprio)
            minprio = q->acc[i].prio;
    for (int i = 0; i < q->nacc; i++) {
        set->t[i] = q->acc[i];
        set->t[i].backup = q->acc[i].prio > minprio;
    }
    qsort(set->t, (size_t)set->n, sizeof(set->t[0]), target_cmp);
    return set;
}

static struct dns_set *set_copy(const struct dns_set *s)
{
    int n = s ? s->n : 0;
    struct dns_set *c = malloc(sizeof(*c) + sizeof(c->t[0]) * (size_t)n);
    if (c != NULL) {
        c->n = n;
        if (n > 0)
            memcpy(c->t, s->t, sizeof(c->t[0]) * (size_t)n);
    }
    return c;
}

static bool set_equal(const struct dns_set *a, const struct dns_set *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    if (a->n != b->n)
        return false;
    for (int i = 0; i < a->n; i++)
        if (!addr_equal(&a->t[i].addr, &b->t[i].addr) || a->t[i].weight != b->t[i].weight ||
            a->t[i].backup != b->t[i].backup)
            return false;
    return true;
}

/* Thread: publish a resolve=all/srv answer (set, owned) in the template's
 * backend, schedule the next one and tell the main thread, which builds
 * a generation with the new server list if it differs. */
static void set_apply(struct resolver *r, struct rquery *q, struct dns_set *set)
{
    struct server_conf *s = q->srv;
    struct backend *b = s->be;
    int64_t now = time_mono_ms();
    if (!answer_begin(q)) {
        free(set);
        return;
    }
    enum dns_result prev = (enum dns_result)atomic_load(&b->dns_result);
    atomic_store(&b->dns_result, q->res);
    struct dns_set *old = NULL;
    if (q->res == DNS_OK && set != NULL) {
        pthread_mutex_lock(&set_lock);
        if (!set_equal(b->dns_set, set)) {
            old = b->dns_set;
            b->dns_set = set;
            set = NULL;
            atomic_fetch_add_explicit(&b->dns_changes, 1, memory_order_relaxed);
            log_info("%s: dns: %s now has %d address%s", b->obj.key, s->addr_str, b->dns_set->n,
                     b->dns_set->n == 1 ? "" : "es");
        }
        pthread_mutex_unlock(&set_lock);
        atomic_store(&b->dns_ok_ms, now);
    } else if (now - atomic_load(&b->dns_ok_ms) >= s->resolve_hold_ms) {
        pthread_mutex_lock(&set_lock);
        if (b->dns_set != NULL && b->dns_set->n > 0) { /* NULL: never had one */
            struct dns_set *none = set_copy(NULL);
            if (none != NULL) {
                old = b->dns_set;
                b->dns_set = none;
                atomic_fetch_add_explicit(&b->dns_changes, 1, memory_order_relaxed);
                log_warn("%s: dns: %s for %s, and the last good answer is older than "
                         "resolve_hold: its servers leave the pool",
                         b->obj.key, dns_result_str(q->res), s->addr_str);
            }
        }
        pthread_mutex_unlock(&set_lock);
    } else if (prev == DNS_OK) {
        log_warn("%s: dns: %s for %s: keeping the last good answer for up to resolve_hold",
                 b->obj.key, dns_result_str(q->res), s->addr_str);
    }
    free(old);
    free(set);
    answer_end(r, q, now);
    if (r->notify)
        r->notify(r->notify_arg);
}

/* An all/srv query has its whole answer in q->acc. */
static void set_done(struct resolver *r, struct rquery *q)
{
    q->running = false;
    struct dns_set *set = NULL;
    if (q->res == DNS_OK && (set = acc_to_set(q)) == NULL)
        q->res = DNS_ERROR; /* out of memory: retried like a failure */
    set_free_acc(q);
    if (r->threaded) {
        set_apply(r, q, set);
    } else {
        free(q->set);
        q->set = set;
        if (--r->pending == 0)
            ev_break(r->loop, EVBREAK_ONE);
    }
}

static void ttl_min(struct rquery *q, int ttl)
{
    if (q->nacc <= 1 || ttl < q->ttl)
        q->ttl = ttl;
}

/* resolve=all: every address of the name. */
static void gai_all_cb(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    struct rquery *q = arg;
    if (status == ARES_EDESTRUCTION) {
        q->running = false;
        set_free_acc(q);
        ares_freeaddrinfo(res);
        return;
    }
    q->res = map_status(status);
    q->ttl = 0;
    for (struct ares_addrinfo_node *n = res ? res->nodes : NULL; n != NULL; n = n->ai_next) {
        if (acc_add(q, n->ai_addr, n->ai_addrlen, q->srv->port, q->srv->weight, 0) < 0)
            q->res = DNS_ERROR;
        ttl_min(q, n->ai_ttl);
    }
    if (q->res == DNS_OK && q->nacc == 0)
        q->res = DNS_NODATA;
    ares_freeaddrinfo(res);
    set_done(q->r, q);
}

/* resolve=srv: the addresses of one target. */
static void srv_sub_cb(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    struct srv_sub *sub = arg;
    struct rquery *q = sub->q;
    if (status == ARES_EDESTRUCTION)
        q->destroyed = true;
    else if (status != ARES_SUCCESS)
        q->sub_res = map_status(status);
    for (struct ares_addrinfo_node *n = res ? res->nodes : NULL; n != NULL; n = n->ai_next) {
        if (acc_add(q, n->ai_addr, n->ai_addrlen, sub->port, sub->weight, sub->prio) < 0)
            q->sub_res = DNS_ERROR;
        ttl_min(q, n->ai_ttl);
    }
    ares_freeaddrinfo(res);
    if (--q->subs_pending > 0)
        return;
    free(q->subs);
    q->subs = NULL;
    if (q->destroyed) {
        q->running = false;
        set_free_acc(q);
        return;
    }
    q->res = q->nacc > 0 ? DNS_OK : q->sub_res != DNS_NONE ? q->sub_res : DNS_NODATA;
    set_done(q->r, q);
}

static void srv_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    struct rquery *q = arg;
    if (status == ARES_EDESTRUCTION) {
        q->running = false;
        return;
    }
    struct ares_srv_reply *reply = NULL;
    q->res = map_status(status);
    q->ttl = 0;
    q->sub_res = DNS_NONE;
    q->destroyed = false;
    if (q->res == DNS_OK && ares_parse_srv_reply(abuf, alen, &reply) != ARES_SUCCESS)
        q->res = DNS_ERROR;
    int n = 0;
    for (struct ares_srv_reply *x = reply; x != NULL; x = x->next)
        n++;
    if (q->res == DNS_OK && n == 0)
        q->res = DNS_NODATA;
    if (q->res == DNS_OK && (q->subs = calloc((size_t)n, sizeof(*q->subs))) == NULL)
        q->res = DNS_ERROR;
    if (q->res != DNS_OK) {
        if (reply)
            ares_free_data(reply);
        set_done(q->r, q);
        return;
    }
    /* Every lookup is counted before the first starts: one may answer at
     * once (from the hosts file). */
    q->subs_pending = n;
    struct ares_addrinfo_hints hints = {.ai_family = families[q->srv->family]};
    struct srv_sub *subs = q->subs;
    int i = 0;
    for (struct ares_srv_reply *x = reply; x != NULL; x = x->next, i++) {
        /* RFC 2782: weight 0 is a small share, not none; sluice's are 0..256. */
        int weight = x->weight < 1 ? 1 : x->weight > 256 ? 256 : x->weight;
        subs[i] = (struct srv_sub){.q = q, .port = x->port, .prio = x->priority, .weight = weight};
        ares_getaddrinfo(q->r->ch, x->host, NULL, &hints, srv_sub_cb, &subs[i]);
    }
    ares_free_data(reply);
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
    struct ares_addrinfo_hints hints = {.ai_family = families[q->srv->family]};
    q->running = true;
    switch (q->srv->resolve) {
    case RESOLVE_FIRST:
        ares_getaddrinfo(r->ch, q->srv->host, NULL, &hints, gai_cb, q);
        break;
    case RESOLVE_ALL:
        ares_getaddrinfo(r->ch, q->srv->host, NULL, &hints, gai_all_cb, q);
        break;
    case RESOLVE_SRV:
        ares_query(r->ch, q->srv->host, ns_c_in, ns_t_srv, srv_cb, q);
        break;
    }
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

/* The j-th server of p that has a host name to follow: the resolve=first
 * servers, then the resolve=all/srv templates. NULL past the end. */
static struct server_conf *named_at(struct pool_conf *p, int j)
{
    if (j < p->nservers)
        return p->servers[j].host != NULL ? &p->servers[j] : NULL;
    return j - p->nservers < p->nnamed ? &p->named[j - p->nservers] : NULL;
}

#define FOR_NAMED(cfg, s)                                                                   \
    for (int i_ = 0; i_ < (cfg)->npools; i_++)                                              \
        for (int j_ = 0; j_ < (cfg)->pools[i_].nservers + (cfg)->pools[i_].nnamed; j_++)    \
            if (((s) = named_at(&(cfg)->pools[i_], j_)) != NULL)

static int count_named(struct config *cfg)
{
    int n = 0;
    struct server_conf *s;
    FOR_NAMED(cfg, s)
        n++;
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
    struct server_conf *ns;
    FOR_NAMED(cfg, ns) {
        if (ns->be != NULL && atomic_load(&ns->be->dns_key) == server_key(ns)) {
            ns->dns_init = DNS_NONE; /* the running answer stays */
            continue;
        }
        struct rquery *q = &r.queries[r.nqueries++];
        q->r = &r;
        q->srv = ns;
        q->res = DNS_TIMEOUT;
        r.pending++;
        query_start(&r, q);
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
        if (s->resolve != RESOLVE_FIRST) {
            free(s->dns_init_set);
            s->dns_init_set = q->set;
            q->set = NULL;
        }
        if (q->res == DNS_OK) {
            if (s->resolve == RESOLVE_FIRST)
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
    for (int i = 0; i < r.nqueries; i++) {
        free(r.queries[i].set);
        free(r.queries[i].acc);
        free(r.queries[i].subs);
    }
    ev_loop_destroy(r.loop);
    free(r.queries);
    return nerr;
}

void resolver_adopt(struct config *cfg)
{
    int64_t now = time_mono_ms();
    for (int i = 0; i < cfg->npools; i++) {
        for (int j = 0; j < cfg->pools[i].nservers + cfg->pools[i].nnamed; j++) {
            struct pool_conf *p = &cfg->pools[i];
            struct server_conf *s = j < p->nservers ? &p->servers[j] : &p->named[j - p->nservers];
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
            if (s->resolve != RESOLVE_FIRST) {
                /* The load-time answer moves to the backend (NULL: none). */
                pthread_mutex_lock(&set_lock);
                free(b->dns_set);
                b->dns_set = s->dns_init_set;
                s->dns_init_set = NULL;
                pthread_mutex_unlock(&set_lock);
            }
            if (s->dns_init == DNS_OK) {
                if (s->resolve == RESOLVE_FIRST)
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

/* Thread: stop following names: close the channel (cancelling the
 * queries) and drop the queries. */
static void plan_clear(struct config_thread *ct)
{
    struct resolver *r = container_of(ct, struct resolver, ct);
    channel_close(r);
    for (int i = 0; i < r->nqueries; i++) {
        ev_timer_stop(r->loop, &r->queries[i].w_timer);
        free(r->queries[i].acc);
        free(r->queries[i].subs);
    }
    free(r->queries);
    r->queries = NULL;
    r->nqueries = 0;
    r->cfg = NULL;
}

/* Thread: follow the named servers of ct->cfg, each at the due time kept
 * in its backend. */
static void plan(struct config_thread *ct)
{
    struct resolver *r = container_of(ct, struct resolver, ct);
    struct config *cfg = r->cfg = ct->cfg;
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
    struct server_conf *s;
    FOR_NAMED(cfg, s) {
        struct rquery *q = &r->queries[r->nqueries++];
        q->r = r;
        q->srv = s;
        ev_init(&q->w_timer, query_timer_cb);
        query_schedule(r, q, atomic_load(&s->be->dns_next_ms) - now);
    }
    log_debug("resolver: following %d host names", r->nqueries);
}

static void resolver_free(struct config_thread *ct)
{
    free(container_of(ct, struct resolver, ct));
    R = NULL;
}

static const struct config_thread_ops resolver_ops = {
    .plan = plan, .clear = plan_clear, .free = resolver_free};

int resolver_start(struct config *cfg, void (*notify)(void *), void *arg)
{
    struct resolver *r = calloc(1, sizeof(*r));
    if (r == NULL || config_thread_init(&r->ct, &resolver_ops) != 0) {
        free(r);
        return -1;
    }
    r->loop = r->ct.mbox.loop;
    r->threaded = true;
    r->notify = notify;
    r->notify_arg = arg;
    ev_init(&r->w_ares, ares_timer_cb);
    R = r;
    return config_thread_run(&r->ct, cfg) == 0 ? 0 : -1;
}

void resolver_update(struct config *cfg)
{
    if (R != NULL)
        config_thread_post(&R->ct, cfg);
}

void resolver_stop(void)
{
    if (R != NULL)
        config_thread_stop(&R->ct);
}

/* The answer template t stands for in cfg: the running one in its backend
 * when that follows t's name, else the load-time one. A copy (NULL: no
 * answer yet, or out of memory with *oom set). */
static struct dns_set *template_set(const struct server_conf *t, bool *oom)
{
    struct dns_set *set = NULL;
    if (atomic_load(&t->be->dns_key) == server_key(t)) {
        pthread_mutex_lock(&set_lock);
        if (t->be->dns_set != NULL)
            set = set_copy(t->be->dns_set);
        *oom = t->be->dns_set != NULL && set == NULL;
        pthread_mutex_unlock(&set_lock);
    } else if (t->dns_init_set != NULL) {
        *oom = (set = set_copy(t->dns_init_set)) == NULL;
    }
    return set;
}

static const struct pool_conf *pool_find(const struct config *cfg, const char *name)
{
    for (int i = 0; cfg != NULL && i < cfg->npools; i++)
        if (strcmp(cfg->pools[i].name, name) == 0)
            return &cfg->pools[i];
    return NULL;
}

/* What the server for address a of template t gets in t's generation:
 * resolve=all takes weight and backup from the line (which a reload may
 * have changed since the answer), resolve=srv from the records. */
static struct dns_target target_of(const struct server_conf *t, const struct dns_target *a)
{
    struct dns_target x = *a;
    if (t->resolve == RESOLVE_ALL)
        x.weight = t->weight;
    x.backup = t->backup || (t->resolve == RESOLVE_SRV && a->backup);
    return x;
}

/* The number of a server made from template t ("T#N"). */
static int server_num(const struct server_conf *s)
{
    const char *h = strrchr(s->name, '#');
    return h ? atoi(h + 1) : 0;
}

static bool from_template(const struct server_conf *s, const struct server_conf *t)
{
    return s->tmpl != NULL && strcmp(s->tmpl->name, t->name) == 0;
}

int resolver_expand(struct config *cfg, const struct config *old)
{
    for (int i = 0; i < cfg->npools; i++) {
        struct pool_conf *p = &cfg->pools[i];
        const struct pool_conf *op = pool_find(old, p->name);
        for (int k = 0; k < p->nnamed; k++) {
            const struct server_conf *t = &p->named[k];
            bool oom = false;
            struct dns_set *set = template_set(t, &oom);
            if (oom)
                return -1;
            if (set == NULL)
                continue;
            int *num = calloc((size_t)set->n + 1, sizeof(int));
            if (num == NULL) {
                free(set);
                return -1;
            }
            /* An address that stays keeps its name (and so its runtime
             * state and sessions). */
            for (int a = 0; a < set->n; a++)
                for (int j = 0; op != NULL && j < op->nservers && num[a] == 0; j++)
                    if (from_template(&op->servers[j], t) &&
                        addr_equal(&op->servers[j].addr, &set->t[a].addr))
                        num[a] = server_num(&op->servers[j]);
            /* A new one takes the lowest number no generation still uses:
             * a removed server's state is never handed to another address
             * while its sessions finish. */
            for (int a = 0; a < set->n; a++) {
                if (num[a] != 0)
                    continue;
                for (int n = 1; num[a] == 0; n++) {
                    bool taken = false;
                    for (int b = 0; b < set->n && !taken; b++)
                        taken = num[b] == n;
                    char name[128]; /* names are at most 64 characters */
                    snprintf(name, sizeof(name), "%s#%d", t->name, n);
                    if (!taken && !config_server_known(p, name))
                        num[a] = n;
                }
            }
            for (int a = 0; a < set->n; a++) {
                struct dns_target x = target_of(t, &set->t[a]);
                if (config_add_server(cfg, p, t, num[a], &x) == NULL) {
                    free(num);
                    free(set);
                    return -1;
                }
            }
            free(num);
            free(set);
        }
    }
    return 0;
}

bool resolver_stale(const struct config *cfg)
{
    for (int i = 0; i < cfg->npools; i++) {
        const struct pool_conf *p = &cfg->pools[i];
        for (int k = 0; k < p->nnamed; k++) {
            const struct server_conf *t = &p->named[k];
            if (atomic_load(&t->be->dns_key) != server_key(t))
                continue;
            bool stale = false;
            pthread_mutex_lock(&set_lock);
            const struct dns_set *set = t->be->dns_set;
            int have = 0;
            for (int j = 0; j < p->nservers; j++) {
                const struct server_conf *s = &p->servers[j];
                if (s->tmpl != t)
                    continue;
                have++;
                bool found = false;
                for (int a = 0; set != NULL && a < set->n && !found; a++) {
                    struct dns_target x = target_of(t, &set->t[a]);
                    found = addr_equal(&s->addr, &x.addr) && s->weight == x.weight &&
                            s->backup == x.backup;
                }
                stale |= !found;
            }
            stale |= have != (set ? set->n : 0);
            pthread_mutex_unlock(&set_lock);
            if (stale)
                return true;
        }
    }
    return false;
}

void resolver_log_changes(const struct config *old, const struct config *cfg)
{
    for (int i = 0; i < cfg->npools; i++) {
        const struct pool_conf *p = &cfg->pools[i];
        const struct pool_conf *op = pool_find(old, p->name);
        for (int j = 0; j < p->nservers; j++) {
            const struct server_conf *s = &p->servers[j];
            bool known = false;
            for (int k = 0; s->tmpl != NULL && op != NULL && k < op->nservers && !known; k++)
                known = strcmp(op->servers[k].name, s->name) == 0;
            if (s->tmpl != NULL && !known)
                log_info("%s: added (dns: %s is %s)", s->be->obj.key, s->tmpl->addr_str,
                         s->addr_str);
        }
        for (int k = 0; op != NULL && k < op->nservers; k++) {
            const struct server_conf *s = &op->servers[k];
            bool kept = false;
            for (int j = 0; s->tmpl != NULL && j < p->nservers && !kept; j++)
                kept = strcmp(p->servers[j].name, s->name) == 0;
            if (s->tmpl != NULL && !kept)
                log_info("%s: removed (dns: %s no longer has %s); %d sessions finish on it",
                         s->be->obj.key, s->tmpl->addr_str, s->addr_str,
                         atomic_load(&s->be->active));
        }
    }
}

void resolver_apply_weights(const struct config *old, struct config *cfg)
{
    for (int i = 0; i < cfg->npools; i++) {
        const struct pool_conf *p = &cfg->pools[i];
        const struct pool_conf *op = pool_find(old, p->name);
        for (int j = 0; op != NULL && j < p->nservers; j++) {
            const struct server_conf *s = &p->servers[j];
            for (int k = 0; s->tmpl != NULL && k < op->nservers; k++)
                if (strcmp(op->servers[k].name, s->name) == 0 && op->servers[k].weight != s->weight)
                    atomic_store(&s->be->weight, s->weight);
        }
    }
}
