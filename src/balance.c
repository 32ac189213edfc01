/* balance.c - the five balance algorithms.
 *
 * roundrobin: smooth weighted round robin (nginx's): each pick adds every
 *   usable server's weight to its current weight, takes the largest and
 *   subtracts the total from it. Spreads heavy servers evenly, no bursts.
 * leastconn:  fewest live sessions (over all workers) per unit of weight.
 * random:     two weighted random candidates, the less loaded one wins.
 * source:     weighted rendezvous hash of the client IP: a server that goes
 *   away only moves its own clients; others keep theirs. Unix clients
 *   (no IP) fall back to roundrobin.
 * first:      the first usable server in file order (max_conns fills it). */
#include "sluice/balance.h"
#include "sluice/addr.h"
#include "sluice/backend.h"
#include "sluice/hash.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct balance_state {
    uint64_t rng;
    int64_t cw[]; /* smooth round robin current weights, one per server */
};

static struct balance_state *state_of(struct pool_conf *p, int worker_id)
{
    struct balance_state *st = p->wstate[worker_id];
    if (st == NULL) {
        /* Written on every pick: whole cache lines of its own, whatever
         * the allocator puts beside it (another worker's state or
         * counters would share a line otherwise). */
        size_t bytes = sizeof(*st) + sizeof(int64_t) * (size_t)p->nservers;
        bytes = (bytes + SLUICE_CACHELINE - 1) & ~(size_t)(SLUICE_CACHELINE - 1);
        st = aligned_alloc(SLUICE_CACHELINE, bytes);
        if (st == NULL)
            return NULL;
        memset(st, 0, bytes);
        st->rng = 0x9E3779B97F4A7C15ULL ^ ((uint64_t)(uintptr_t)st << 1) ^ (uint64_t)(worker_id + 1);
        p->wstate[worker_id] = st;
    }
    return st;
}

static int weight_of(const struct server_conf *s)
{
    return atomic_load_explicit(&s->be->weight, memory_order_relaxed);
}

static int active_of(const struct server_conf *s)
{
    return atomic_load_explicit(&s->be->active, memory_order_relaxed);
}

/* Every algorithm takes the same arguments (some use only a few), so
 * balance_pick() dispatches through one table. */
#define PICK_ARGS                                                                                 \
    struct pool_conf *p, struct balance_state *st, bool backup,                                   \
        const struct balance_exclude *exclude, int64_t now_ms, const struct sockaddr *client

/* Is a's load (active/weight) below b's? Cross-multiplied: no division. */
static bool less_loaded(const struct server_conf *a, const struct server_conf *b)
{
    return (int64_t)active_of(a) * weight_of(b) < (int64_t)active_of(b) * weight_of(a);
}

static bool candidate(struct pool_conf *p, int i, bool backup, const struct balance_exclude *exclude,
                      int64_t now_ms)
{
    const struct server_conf *s = &p->servers[i];
    if (s->backup != backup || balance_excluded(exclude, p, s))
        return false;
    return backend_usable(s, now_ms);
}

bool balance_exclude_add(struct balance_exclude *e, const struct pool_conf *p,
                         const struct server_conf *s)
{
    unsigned i = (unsigned)(s - p->servers);
    if (i < 64) {
        e->bits |= 1ULL << i;
        return true;
    }
    if (e->more == NULL && (e->more = calloc((size_t)(p->nservers - 64 + 63) / 64, 8)) == NULL)
        return false;
    i -= 64;
    e->more[i / 64] |= 1ULL << (i % 64);
    return true;
}

void balance_exclude_free(struct balance_exclude *e)
{
    free(e->more);
    e->more = NULL;
    e->bits = 0;
}

static struct server_conf *pick_roundrobin(PICK_ARGS)
{
    int best = -1;
    int64_t total = 0;
    for (int i = 0; i < p->nservers; i++) {
        if (!candidate(p, i, backup, exclude, now_ms))
            continue;
        int w = weight_of(&p->servers[i]);
        st->cw[i] += w;
        total += w;
        if (best < 0 || st->cw[i] > st->cw[best])
            best = i;
    }
    if (best < 0)
        return NULL;
    st->cw[best] -= total;
    return &p->servers[best];
}

static struct server_conf *pick_leastconn(PICK_ARGS)
{
    /* Start at a random offset so ties do not all land on server 0. */
    int n = p->nservers;
    int off = (int)(rng_next(&st->rng) % (uint64_t)n);
    struct server_conf *best = NULL;
    for (int k = 0; k < n; k++) {
        int i = (off + k) % n;
        if (!candidate(p, i, backup, exclude, now_ms))
            continue;
        if (best == NULL || less_loaded(&p->servers[i], best))
            best = &p->servers[i];
    }
    return best;
}

static struct server_conf *pick_weighted_random(struct pool_conf *p, struct balance_state *st,
                                                const bool *ok, int64_t total)
{
    int64_t r = (int64_t)(rng_next(&st->rng) % (uint64_t)total);
    for (int i = 0; i < p->nservers; i++) {
        if (!ok[i])
            continue;
        r -= weight_of(&p->servers[i]);
        if (r < 0)
            return &p->servers[i];
    }
    return NULL; /* weights changed under us: caller falls back */
}

static struct server_conf *pick_random(PICK_ARGS)
{
    bool ok_small[64];
    bool *ok = p->nservers <= 64 ? ok_small : malloc((size_t)p->nservers);
    if (ok == NULL)
        return NULL;
    int64_t total = 0;
    struct server_conf *any = NULL;
    for (int i = 0; i < p->nservers; i++) {
        ok[i] = candidate(p, i, backup, exclude, now_ms);
        if (ok[i]) {
            total += weight_of(&p->servers[i]);
            any = &p->servers[i];
        }
    }
    struct server_conf *pick = NULL;
    if (total > 0) {
        struct server_conf *a = pick_weighted_random(p, st, ok, total);
        struct server_conf *b = pick_weighted_random(p, st, ok, total);
        if (a == NULL || b == NULL)
            pick = a ? a : (b ? b : any);
        else
            pick = less_loaded(b, a) ? b : a;
    }
    if (ok != ok_small)
        free(ok);
    return pick;
}

static struct server_conf *pick_source(PICK_ARGS)
{
    /* A Unix client has no address to hash: hashing them all alike would
     * send every one to the same server, so they are spread by round
     * robin instead (as HAProxy does for a non-IP source). */
    if (client != NULL && client->sa_family != AF_INET && client->sa_family != AF_INET6)
        return pick_roundrobin(p, st, backup, exclude, now_ms, client);
    uint64_t key = client ? addr_hash_ip(client) : 0;
    struct server_conf *best = NULL;
    double best_score = 0;
    for (int i = 0; i < p->nservers; i++) {
        if (!candidate(p, i, backup, exclude, now_ms))
            continue;
        struct server_conf *s = &p->servers[i];
        uint64_t h = hash_mix64(key ^ hash_str(s->name));
        /* u in (0,1); score = -w / ln(u): weighted rendezvous hashing. */
        double u = hash_unit(h) + 0.5 / 9007199254740992.0;
        double score = -(double)weight_of(s) / log(u);
        if (best == NULL || score > best_score) {
            best = s;
            best_score = score;
        }
    }
    return best;
}

static struct server_conf *pick_first(PICK_ARGS)
{
    for (int i = 0; i < p->nservers; i++)
        if (candidate(p, i, backup, exclude, now_ms))
            return &p->servers[i];
    return NULL;
}

static struct server_conf *(*const pickers[])(PICK_ARGS) = {
    [BALANCE_ROUNDROBIN] = pick_roundrobin, [BALANCE_LEASTCONN] = pick_leastconn,
    [BALANCE_RANDOM] = pick_random,         [BALANCE_SOURCE] = pick_source,
    [BALANCE_FIRST] = pick_first,
};

struct server_conf *balance_pick(struct pool_conf *p, int worker_id, const struct sockaddr *client,
                                 const struct balance_exclude *exclude, int64_t now_ms)
{
    struct balance_state *st = state_of(p, worker_id);
    if (st == NULL)
        return NULL;
    for (int pass = 0; pass < 2; pass++) {
        bool backup = pass == 1;
        struct server_conf *s = pickers[p->balance](p, st, backup, exclude, now_ms, client);
        if (s != NULL)
            return s;
    }
    return NULL;
}
