/* srclimit.c - the per-source table (bounded, sharded, atomics for the
 * counts) and the GCRA token buckets behind the per-source and
 * listener-wide connection rates. */
#include "sluice/srclimit.h"
#include "sluice/common.h"
#include "sluice/hash.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NIL UINT32_MAX

struct src_entry {
    uint8_t key[16];
    _Atomic int32_t live;  /* live sessions; +1 only under the shard lock */
    uint32_t hnext;        /* hash chain */
    uint32_t lprev, lnext; /* recency list: head = most recently seen */
    _Atomic int64_t tat;   /* token bucket (GCRA): 0 = full */
    int64_t win_start;     /* ns: start of the current one-second window */
    uint32_t win_cur;      /* connections seen in it */
    uint32_t win_prev;     /* ... and in the second before */
    _Atomic uint32_t refused;
    uint32_t used;
};

struct src_shard {
    pthread_mutex_t lock;
    uint32_t cap, used;
    uint32_t bmask;
    uint32_t lru_head, lru_tail;
    uint32_t *buckets;
    struct src_entry *e;
} __attribute__((aligned(SLUICE_CACHELINE)));

struct src_table {
    _Atomic int refs;
    int size, prefix4, prefix6;
    uint32_t nshards;
    _Atomic int used;
    struct src_entry *entries; /* size entries, cut into the shards */
    uint32_t *buckets;
    struct src_shard shards[SRC_SHARDS_MAX];
};

int64_t srclimit_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

size_t srclimit_entry_bytes(void)
{
    /* the entry and its share of hash buckets (at most two per entry) */
    return sizeof(struct src_entry) + 2 * sizeof(uint32_t);
}

static uint32_t pow2_at_least(uint32_t n)
{
    uint32_t p = 1;
    while (p < n)
        p <<= 1;
    return p;
}

struct src_table *srclimit_table_new(int size, int prefix4, int prefix6)
{
    if (size < 1)
        return NULL;
    /* At least 64 entries a shard, so eviction picks among many; a small
     * table is one shard (exact LRU). */
    uint32_t nshards = 1;
    while (nshards < SRC_SHARDS_MAX && (uint32_t)size / (nshards * 2) >= 64)
        nshards *= 2;
    uint32_t cap = ((uint32_t)size + nshards - 1) / nshards;
    uint32_t nb = pow2_at_least(cap);
    struct src_table *t = aligned_alloc(SLUICE_CACHELINE, sizeof(*t));
    if (t == NULL)
        return NULL;
    memset(t, 0, sizeof(*t));
    /* calloc: the kernel commits the pages as entries are first used. */
    t->entries = calloc((size_t)cap * nshards, sizeof(struct src_entry));
    t->buckets = malloc((size_t)nb * nshards * sizeof(uint32_t));
    if (t->entries == NULL || t->buckets == NULL) {
        free(t->entries);
        free(t->buckets);
        free(t);
        return NULL;
    }
    memset(t->buckets, 0xff, (size_t)nb * nshards * sizeof(uint32_t));
    atomic_init(&t->refs, 1);
    t->size = size;
    t->prefix4 = prefix4;
    t->prefix6 = prefix6;
    t->nshards = nshards;
    for (uint32_t i = 0; i < nshards; i++) {
        struct src_shard *s = &t->shards[i];
        pthread_mutex_init(&s->lock, NULL);
        s->cap = cap;
        s->bmask = nb - 1;
        s->lru_head = s->lru_tail = NIL;
        s->buckets = t->buckets + (size_t)nb * i;
        s->e = t->entries + (size_t)cap * i;
    }
    return t;
}

void srclimit_table_ref(struct src_table *t)
{
    atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
}

void srclimit_table_put(struct src_table *t)
{
    if (t == NULL || atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (uint32_t i = 0; i < t->nshards; i++)
        pthread_mutex_destroy(&t->shards[i].lock);
    free(t->entries);
    free(t->buckets);
    free(t);
}

bool srclimit_table_fits(const struct src_table *t, int size, int prefix4, int prefix6)
{
    return t->size == size && t->prefix4 == prefix4 && t->prefix6 == prefix6;
}

int srclimit_table_used(const struct src_table *t)
{
    return atomic_load_explicit(&t->used, memory_order_relaxed);
}

int srclimit_table_size(const struct src_table *t)
{
    return t->size;
}

static void mask_bits(uint8_t *a, int from, int bits)
{
    for (int i = 0; i < 16; i++) {
        int lo = (i - from) * 8; /* bit index of this byte within the masked part */
        if (i < from)
            continue;
        if (lo >= bits)
            a[i] = 0;
        else if (lo + 8 > bits)
            a[i] &= (uint8_t)(0xff << (8 - (bits - lo)));
    }
}

bool srclimit_key(const struct sockaddr *sa, int prefix4, int prefix6, uint8_t key[16])
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (sa->sa_family == AF_INET) {
        memcpy(key, mapped, 12);
        memcpy(key + 12, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
        mask_bits(key, 12, prefix4);
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        memcpy(key, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
        if (memcmp(key, mapped, 12) == 0)
            mask_bits(key, 12, prefix4);
        else
            mask_bits(key, 0, prefix6);
        return true;
    }
    return false;
}

static uint64_t key_hash(const uint8_t key[16])
{
    uint64_t a, b;
    memcpy(&a, key, 8);
    memcpy(&b, key + 8, 8);
    return hash_mix64(a ^ hash_mix64(b));
}

static void lru_unlink(struct src_shard *s, uint32_t i)
{
    struct src_entry *e = &s->e[i];
    if (e->lprev != NIL)
        s->e[e->lprev].lnext = e->lnext;
    else
        s->lru_head = e->lnext;
    if (e->lnext != NIL)
        s->e[e->lnext].lprev = e->lprev;
    else
        s->lru_tail = e->lprev;
}

static void lru_push_head(struct src_shard *s, uint32_t i)
{
    struct src_entry *e = &s->e[i];
    e->lprev = NIL;
    e->lnext = s->lru_head;
    if (s->lru_head != NIL)
        s->e[s->lru_head].lprev = i;
    else
        s->lru_tail = i;
    s->lru_head = i;
}

static void hash_unlink(struct src_shard *s, uint32_t i)
{
    uint32_t b = (uint32_t)(key_hash(s->e[i].key) >> 32) & s->bmask;
    for (uint32_t *p = &s->buckets[b]; *p != NIL; p = &s->e[*p].hnext) {
        if (*p == i) {
            *p = s->e[i].hnext;
            return;
        }
    }
}

/* An entry to reuse in a full shard: the least recently seen one without
 * live sessions. Entries with live sessions met on the way move to the
 * head (they cannot go; only their recency when idle matters), so the
 * tail stays evictable and the walk is short on average. NIL if every
 * entry has live sessions. Under the shard lock. */
static uint32_t evict(struct src_table *t, struct src_shard *s)
{
    for (uint32_t n = 0; n < s->used && s->lru_tail != NIL; n++) {
        uint32_t i = s->lru_tail;
        lru_unlink(s, i);
        if (atomic_load_explicit(&s->e[i].live, memory_order_relaxed) == 0) {
            hash_unlink(s, i);
            s->e[i].used = 0;
            s->used--;
            atomic_fetch_sub_explicit(&t->used, 1, memory_order_relaxed);
            return i;
        }
        lru_push_head(s, i);
    }
    return NIL;
}

static uint32_t lookup(struct src_table *t, struct src_shard *s, const uint8_t key[16], uint64_t h)
{
    uint32_t b = (uint32_t)(h >> 32) & s->bmask;
    for (uint32_t i = s->buckets[b]; i != NIL; i = s->e[i].hnext) {
        if (memcmp(s->e[i].key, key, 16) == 0) {
            lru_unlink(s, i);
            lru_push_head(s, i);
            return i;
        }
    }
    /* Slots are only ever freed by evict(), which hands the slot straight
     * back: until the shard is full, slots 0..used-1 are the used ones. */
    uint32_t i = s->used < s->cap ? s->used : evict(t, s);
    if (i == NIL)
        return NIL;
    struct src_entry *e = &s->e[i];
    memcpy(e->key, key, 16);
    atomic_store_explicit(&e->live, 0, memory_order_relaxed);
    atomic_store_explicit(&e->tat, 0, memory_order_relaxed);
    atomic_store_explicit(&e->refused, 0, memory_order_relaxed);
    e->win_start = 0;
    e->win_cur = e->win_prev = 0;
    e->used = 1;
    e->hnext = s->buckets[b];
    s->buckets[b] = i;
    lru_push_head(s, i);
    s->used++;
    atomic_fetch_add_explicit(&t->used, 1, memory_order_relaxed);
    return i;
}

/* Increment-if-below: exact under any number of threads. */
static bool live_take(_Atomic int32_t *live, int max)
{
    int32_t cur = atomic_load_explicit(live, memory_order_relaxed);
    do {
        if (max > 0 && cur >= max)
            return false;
    } while (!atomic_compare_exchange_weak_explicit(live, &cur, cur + 1, memory_order_relaxed,
                                                    memory_order_relaxed));
    return true;
}

static void window_count(struct src_entry *e, int64_t now)
{
    int64_t since = now - e->win_start;
    if (since >= 1000000000) {
        e->win_prev = since < 2000000000 ? e->win_cur : 0;
        e->win_cur = 0;
        e->win_start = now - since % 1000000000;
    }
    e->win_cur++;
}

static double window_rate(const struct src_entry *e, int64_t now)
{
    int64_t since = now - e->win_start;
    if (e->win_start == 0 || since >= 2000000000)
        return 0;
    if (since >= 1000000000)
        return e->win_cur * (1.0 - (double)(since - 1000000000) / 1e9);
    return e->win_prev * (1.0 - (double)since / 1e9) + e->win_cur;
}

/* GCRA in ns: tokens come back one per interval T = per/n, and at most n
 * fit (a new connection is admitted while the "theoretical arrival time"
 * after it stays within one period of now). */
static int64_t gcra_take(_Atomic int64_t *tat, const struct rate_conf *rate, int64_t now, bool cas)
{
    int64_t period = rate->per_ms * 1000000;
    int64_t interval = period / rate->n;
    int64_t cur = atomic_load_explicit(tat, memory_order_relaxed);
    for (;;) {
        int64_t next = (cur > now ? cur : now) + interval;
        if (next - now > period)
            return next - now - period;
        if (!cas) {
            atomic_store_explicit(tat, next, memory_order_relaxed);
            return 0;
        }
        if (atomic_compare_exchange_weak_explicit(tat, &cur, next, memory_order_relaxed,
                                                  memory_order_relaxed))
            return 0;
    }
}

int64_t ratelimit_take(_Atomic int64_t *tat, const struct rate_conf *rate, int64_t now_ns)
{
    return gcra_take(tat, rate, now_ns, true);
}

void ratelimit_give(_Atomic int64_t *tat, const struct rate_conf *rate)
{
    atomic_fetch_sub_explicit(tat, rate->per_ms * 1000000 / rate->n, memory_order_relaxed);
}

enum src_verdict srclimit_admit(struct src_table *t, const struct sockaddr *sa, int max_live,
                                const struct rate_conf *rate, int64_t now_ns,
                                struct src_entry **out)
{
    *out = NULL;
    uint8_t key[16];
    if (!srclimit_key(sa, t->prefix4, t->prefix6, key))
        return SRC_NOT_LIMITED;
    uint64_t h = key_hash(key);
    struct src_shard *s = &t->shards[h & (t->nshards - 1)];
    enum src_verdict v = SRC_OK;
    pthread_mutex_lock(&s->lock);
    uint32_t i = lookup(t, s, key, h);
    if (i == NIL) {
        v = SRC_UNTRACKED;
    } else {
        struct src_entry *e = &s->e[i];
        window_count(e, now_ns);
        if (!live_take(&e->live, max_live)) {
            v = SRC_CONN_LIMIT;
        } else if (rate->n > 0 && gcra_take(&e->tat, rate, now_ns, false) != 0) {
            atomic_fetch_sub_explicit(&e->live, 1, memory_order_relaxed);
            v = SRC_RATE_LIMIT;
        } else {
            *out = e;
        }
        if (v != SRC_OK)
            atomic_fetch_add_explicit(&e->refused, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&s->lock);
    return v;
}

void srclimit_release(struct src_entry *e)
{
    atomic_fetch_sub_explicit(&e->live, 1, memory_order_relaxed);
}

static void format_key(const uint8_t key[16], int prefix4, int prefix6, char *buf, size_t size)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    char a[INET6_ADDRSTRLEN];
    if (memcmp(key, mapped, 12) == 0) {
        inet_ntop(AF_INET, key + 12, a, sizeof(a));
        snprintf(buf, size, "%s/%d", a, prefix4);
    } else {
        inet_ntop(AF_INET6, key, a, sizeof(a));
        snprintf(buf, size, "%s/%d", a, prefix6);
    }
}

static bool busier(const struct src_top *a, const struct src_top *b)
{
    if (a->live != b->live)
        return a->live > b->live;
    if (a->rate != b->rate)
        return a->rate > b->rate;
    return a->refused > b->refused;
}

int srclimit_top(struct src_table *t, int64_t now_ns, struct src_top *out, int n)
{
    int have = 0;
    if (n <= 0)
        return 0;
    for (uint32_t si = 0; si < t->nshards; si++) {
        struct src_shard *s = &t->shards[si];
        pthread_mutex_lock(&s->lock);
        for (uint32_t i = 0; i < s->cap; i++) {
            struct src_entry *e = &s->e[i];
            if (!e->used)
                continue;
            struct src_top c = {
                .live = atomic_load_explicit(&e->live, memory_order_relaxed),
                .rate = window_rate(e, now_ns),
                .refused = atomic_load_explicit(&e->refused, memory_order_relaxed),
            };
            if (have == n && !busier(&c, &out[n - 1]))
                continue;
            format_key(e->key, t->prefix4, t->prefix6, c.addr, sizeof(c.addr));
            int j = have < n ? have++ : n - 1;
            while (j > 0 && busier(&c, &out[j - 1])) {
                out[j] = out[j - 1];
                j--;
            }
            out[j] = c;
        }
        pthread_mutex_unlock(&s->lock);
    }
    return have;
}
