/* backend.c - server usability and passive health marking. */
#include "sluice/backend.h"
#include "sluice/log.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

/* The live count alone in the last cache line of struct backend (the
 * registry allocates it cache-line aligned and rounded up). */
_Static_assert(offsetof(struct backend, active) % SLUICE_CACHELINE == 0 &&
                   sizeof(struct backend) == offsetof(struct backend, active) + SLUICE_CACHELINE,
               "struct backend: active shares its cache line with nothing");

const char *backend_health_str(enum backend_health h)
{
    return h == HEALTH_UP ? "up" : "down";
}

const char *backend_admin_str(enum backend_admin a)
{
    switch (a) {
    case ADMIN_ENABLED:
        return "enabled";
    case ADMIN_DRAINING:
        return "draining";
    case ADMIN_DISABLED:
        return "disabled";
    }
    return "?";
}

const char *check_result_str(enum check_result r)
{
    static const char *const names[] = {"none", "ok", "refused", "timeout", "bad_reply", "closed",
                                        "error"};
    return (unsigned)r < ARRAY_SIZE(names) ? names[r] : "?";
}

const char *down_cause_str(enum down_cause c)
{
    static const char *const names[] = {"-", "health check", "passive (connect failures)"};
    return (unsigned)c < ARRAY_SIZE(names) ? names[c] : "?";
}

const char *backend_state_str(const struct backend *b, int64_t now_ms)
{
    int admin = atomic_load_explicit(&b->admin, memory_order_relaxed);
    if (admin == ADMIN_DISABLED)
        return "disabled";
    if (atomic_load_explicit(&b->health, memory_order_acquire) != HEALTH_UP)
        return "down";
    if (now_ms < atomic_load_explicit(&b->down_until_ms, memory_order_relaxed))
        return "down";
    if (!atomic_load_explicit(&b->addr_valid, memory_order_acquire))
        return "down";
    if (admin == ADMIN_DRAINING)
        return atomic_load_explicit(&b->active, memory_order_relaxed) > 0 ? "draining" : "drained";
    return "up";
}

const char *dns_result_str(enum dns_result r)
{
    static const char *const names[] = {"none", "ok", "NXDOMAIN", "no address", "timeout",
                                        "refused", "servfail", "unreachable", "error"};
    return (unsigned)r < ARRAY_SIZE(names) ? names[r] : "?";
}

/* A seqlock over atomic words: every access is atomic (seq_cst), so the
 * reader's retry loop is all the synchronisation there is. Addresses
 * change seldom; a reader retries only while a store is in progress. */
void addr_cell_load(struct addr_cell *cell, struct sockaddr_any *out)
{
    uint64_t w[4];
    unsigned s1, s2;
    do {
        while ((s1 = atomic_load(&cell->seq)) & 1u)
            ;
        for (int i = 0; i < 4; i++)
            w[i] = atomic_load(&cell->w[i]);
        s2 = atomic_load(&cell->seq);
    } while (s1 != s2);
    memset(out, 0, sizeof(*out));
    memcpy(&out->u.in6, w, sizeof(out->u.in6));
    out->len = out->u.sa.sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                               : sizeof(struct sockaddr_in);
}

void addr_cell_store(struct addr_cell *cell, const struct sockaddr_any *a)
{
    uint64_t w[4] = {0};
    _Static_assert(sizeof(struct sockaddr_in6) <= sizeof(w), "sockaddr_in6 fits the cell");
    memcpy(w, &a->u.in6, a->u.sa.sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                       : sizeof(struct sockaddr_in));
    atomic_fetch_add(&cell->seq, 1);
    for (int i = 0; i < 4; i++)
        atomic_store(&cell->w[i], w[i]);
    atomic_fetch_add(&cell->seq, 1);
}

bool backend_addr(const struct server_conf *s, struct sockaddr_any *out)
{
    if (s->host == NULL) {
        *out = s->addr;
        return true;
    }
    if (!atomic_load_explicit(&s->be->addr_valid, memory_order_acquire))
        return false;
    addr_cell_load(&s->be->addr, out);
    return true;
}

/* Usable but for max_conns. */
static bool usable_ignoring_limit(const struct server_conf *s, int64_t now_ms)
{
    const struct backend *b = s->be;
    if (atomic_load_explicit(&b->admin, memory_order_relaxed) != ADMIN_ENABLED)
        return false;
    if (atomic_load_explicit(&b->weight, memory_order_relaxed) <= 0)
        return false;
    if (atomic_load_explicit(&b->health, memory_order_acquire) != HEALTH_UP)
        return false;
    if (now_ms < atomic_load_explicit(&b->down_until_ms, memory_order_relaxed))
        return false;
    if (!atomic_load_explicit(&b->addr_valid, memory_order_acquire))
        return false;
    return true;
}

static bool full(const struct server_conf *s)
{
    return s->max_conns > 0 &&
           atomic_load_explicit(&s->be->active, memory_order_relaxed) >= s->max_conns;
}

bool backend_usable(const struct server_conf *s, int64_t now_ms)
{
    return usable_ignoring_limit(s, now_ms) && !full(s);
}

bool backend_usable_but_full(const struct server_conf *s, int64_t now_ms)
{
    return usable_ignoring_limit(s, now_ms) && full(s);
}

bool backend_reserve(const struct server_conf *s)
{
    _Atomic int *active = &s->be->active;
    if (s->max_conns <= 0) {
        atomic_fetch_add_explicit(active, 1, memory_order_relaxed);
        return true;
    }
    int cur = atomic_load_explicit(active, memory_order_relaxed);
    do {
        if (cur >= s->max_conns)
            return false;
    } while (!atomic_compare_exchange_weak_explicit(active, &cur, cur + 1, memory_order_relaxed,
                                                    memory_order_relaxed));
    return true;
}

bool backend_errno_is_local(int err)
{
    switch (err) {
    case EADDRNOTAVAIL: /* no free ephemeral port towards this server */
    case EADDRINUSE:
    case ENOBUFS:
    case ENOMEM:
    case EMFILE:
    case ENFILE:
        return true;
    default:
        return false;
    }
}

void backend_connect_failed(const struct server_conf *s, int64_t now_ms, const char *why)
{
    struct backend *b = s->be;
    int fails = atomic_fetch_add_explicit(&b->fails, 1, memory_order_relaxed) + 1;
    if (fails < s->pool->fall)
        return;
    if (s->pool->check != CHECK_NONE) {
        /* Active checks run: mark down until they see it rise again. */
        atomic_store_explicit(&b->down_cause, DOWN_PASSIVE, memory_order_relaxed);
        if (atomic_exchange_explicit(&b->health, HEALTH_DOWN, memory_order_acq_rel) == HEALTH_UP) {
            atomic_fetch_add_explicit(&b->transitions, 1, memory_order_relaxed);
            log_warn("%s DOWN (passive: %d consecutive connect failures, last: %s)", b->obj.key,
                     fails, why);
        }
        return;
    }
    int64_t until = now_ms + s->pool->fail_timeout_ms;
    int64_t prev = atomic_exchange_explicit(&b->down_until_ms, until, memory_order_relaxed);
    if (prev <= now_ms)
        log_warn("%s DOWN (passive: %d consecutive connect failures, last: %s; retry in %lldms)",
                 b->obj.key, fails, why, (long long)s->pool->fail_timeout_ms);
}

void backend_connect_ok(const struct server_conf *s)
{
    struct backend *b = s->be;
    if (atomic_load_explicit(&b->fails, memory_order_relaxed) != 0)
        atomic_store_explicit(&b->fails, 0, memory_order_relaxed);
}
