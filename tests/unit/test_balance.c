/* test_balance.c - balance_pick() for the five algorithms, on pools built
 * from real config text, with runtime state (health, admin, active counts,
 * passive hold-down) set by hand.
 *
 * Runtime state is shared by "pool/server" key across configs, so every
 * test uses pool names of its own and unrefs every config it loads. */
#include "unit.h"

#include "sluice/backend.h"
#include "sluice/balance.h"
#include "sluice/config.h"
#include "sluice/log.h"
#include "sluice/registry.h"

#include <arpa/inet.h>
#include <math.h>

#define NOW 1000000 /* a fixed "monotonic" clock: no hold-down is active */

static const char *const algos[] = {"roundrobin", "leastconn", "random", "source", "first"};

/* Load one pool called `pool` (plus a listener for it) from `body`, the
 * lines after the [pool] header, and attach its runtime state. */
static struct config *load_pool(const char *pool, const char *balance, const char *body)
{
    char text[16384];
    snprintf(text, sizeof(text),
             "[listener l-%s]\nbind = 127.0.0.1:1\npool = %s\n\n[pool %s]\nbalance = %s\n%s", pool,
             pool, pool, balance, body);
    struct config_errors errs = {0};
    struct config *cfg = config_load_buffer(text, strlen(text), "balance.ini", &errs);
    if (cfg == NULL) {
        config_errors_print(&errs, stdout);
        CHECK_MSG(cfg != NULL, "config for pool %s did not load", pool);
    }
    config_errors_free(&errs);
    if (cfg != NULL && config_attach_runtime(cfg) != 0) {
        CHECK_MSG(false, "config_attach_runtime failed");
        config_unref(cfg);
        return NULL;
    }
    return cfg;
}

static struct pool_conf *pool_of(struct config *cfg, const char *name)
{
    struct pool_conf *p = cfg ? config_find_pool(cfg, name) : NULL;
    CHECK_MSG(p != NULL, "no pool %s", name);
    return p;
}

static struct sockaddr_in ip4(uint32_t ip, uint16_t port)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(ip);
    a.sin_port = htons(port);
    return a;
}

static uint64_t rnd_state = 0x853c49e6748fea9bULL;
static uint32_t rnd32(void)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 7;
    rnd_state ^= rnd_state << 17;
    return (uint32_t)(rnd_state >> 16);
}

/* The exclusion mask bit of server i (i < 64). */
static uint64_t exbit(int i)
{
    return 1ULL << i;
}

/* Index of a pick, or -1 for NULL. */
static int pick_idx(struct pool_conf *p, const struct sockaddr *client, uint64_t exclude,
                    int64_t now)
{
    /* Tests name exclusions as a mask of the first 64 servers. */
    struct balance_exclude ex = {.bits = exclude};
    struct server_conf *s = balance_pick(p, 0, client, &ex, now);
    if (s == NULL)
        return -1;
    CHECK(s >= p->servers && s < p->servers + p->nservers);
    return (int)(s - p->servers);
}

/* One pick with a fresh random IPv4 client (matters for `source`). */
static int pick_any(struct pool_conf *p, uint64_t exclude, int64_t now)
{
    struct sockaddr_in c = ip4(rnd32(), 40000);
    return pick_idx(p, (struct sockaddr *)&c, exclude, now);
}

/* count[i] within rel (a fraction) of n * w[i] / sum(w). */
static void check_shares(const char *what, const int *count, const int *w, int nserv, int n,
                         double rel)
{
    int sum = 0;
    for (int i = 0; i < nserv; i++)
        sum += w[i];
    for (int i = 0; i < nserv; i++) {
        double want = (double)n * w[i] / sum;
        CHECK_MSG(fabs(count[i] - want) <= rel * want + 0.5,
                  "%s: server %d got %d, want %.0f +- %.0f%%", what, i, count[i], want, rel * 100);
    }
}

static void reset_runtime(struct pool_conf *p)
{
    for (int i = 0; i < p->nservers; i++) {
        struct backend *be = p->servers[i].be;
        atomic_store(&be->active, 0);
        atomic_store(&be->health, HEALTH_UP);
        atomic_store(&be->admin, ADMIN_ENABLED);
        atomic_store(&be->fails, 0);
        atomic_store(&be->down_until_ms, 0);
    }
}

/* ---- roundrobin ---- */

static void test_rr_weights(void)
{
    struct config *cfg = load_pool("rr321", "roundrobin",
                                   "server = a 127.0.0.1:9001 weight=3\n"
                                   "server = b 127.0.0.1:9002 weight=2\n"
                                   "server = c 127.0.0.1:9003 weight=1\n");
    struct pool_conf *p = pool_of(cfg, "rr321");
    REQUIRE(p != NULL);
    enum { N = 10000, CYCLE = 6 };
    static int seq[N];
    int count[3] = {0};
    const int w[3] = {3, 2, 1};
    for (int i = 0; i < N; i++) {
        seq[i] = pick_any(p, 0, NOW);
        REQUIRE(seq[i] >= 0);
        count[seq[i]]++;
    }
    check_shares("roundrobin 3:2:1", count, w, 3, N, 0.02);
    /* Smooth WRR is exact: every window of one cycle holds each server
     * exactly its weight, wherever the window starts. */
    int bad = 0;
    for (int start = 0; start + CYCLE <= N; start++) {
        int c[3] = {0};
        for (int k = 0; k < CYCLE; k++)
            c[seq[start + k]]++;
        for (int s = 0; s < 3; s++)
            bad += c[s] > w[s];
    }
    CHECK_EQ_INT(bad, 0);
    /* And a server is never picked twice in a row when it is not the
     * heaviest... */
    for (int i = 1; i < N; i++)
        if (seq[i] == seq[i - 1] && seq[i] != 0)
            bad++;
    CHECK_EQ_INT(bad, 0);
    config_unref(cfg);
}

static void test_rr_smooth(void)
{
    struct config *cfg = load_pool("rr511", "roundrobin",
                                   "server = a 127.0.0.1:9001 weight=5\n"
                                   "server = b 127.0.0.1:9002 weight=1\n"
                                   "server = c 127.0.0.1:9003 weight=1\n");
    struct pool_conf *p = pool_of(cfg, "rr511");
    REQUIRE(p != NULL);
    enum { N = 7000 };
    static int seq[N];
    int run = 0, max_run = 0;
    for (int i = 0; i < N; i++) {
        seq[i] = pick_any(p, 0, NOW);
        REQUIRE(seq[i] >= 0);
        run = i > 0 && seq[i] == seq[i - 1] ? run + 1 : 1;
        if (run > max_run)
            max_run = run;
    }
    /* Plain WRR would send a a a a a b c: smooth WRR interleaves. */
    CHECK_MSG(max_run < 5, "%d picks of one server in a row", max_run);
    int bad = 0;
    for (int cyc = 0; cyc < N / 7; cyc++) {
        int c[3] = {0};
        for (int k = 0; k < 7; k++)
            c[seq[cyc * 7 + k]]++;
        bad += c[0] != 5 || c[1] != 1 || c[2] != 1;
    }
    CHECK_EQ_INT(bad, 0);
    config_unref(cfg);
}

/* Each worker has its own balancer state: interleaving two workers does not
 * disturb either one's sequence. */
static void test_rr_per_worker(void)
{
    struct config *cfg = load_pool("rrw", "roundrobin",
                                   "server = a 127.0.0.1:9001 weight=2\n"
                                   "server = b 127.0.0.1:9002 weight=1\n");
    struct pool_conf *p = pool_of(cfg, "rrw");
    REQUIRE(p != NULL);
    int c0[2] = {0}, c1[2] = {0};
    for (int i = 0; i < 300; i++) {
        struct server_conf *s0 = balance_pick(p, 0, NULL, 0, NOW);
        struct server_conf *s1 = balance_pick(p, 1, NULL, 0, NOW);
        struct server_conf *s1b = balance_pick(p, 1, NULL, 0, NOW);
        REQUIRE(s0 && s1 && s1b);
        c0[s0 - p->servers]++;
        c1[s1 - p->servers]++;
        c1[s1b - p->servers]++;
    }
    CHECK_EQ_INT(c0[0], 200);
    CHECK_EQ_INT(c0[1], 100);
    CHECK_EQ_INT(c1[0], 400);
    CHECK_EQ_INT(c1[1], 200);
    CHECK(p->wstate[0] != NULL);
    CHECK(p->wstate[1] != NULL);
    CHECK(p->wstate[2] == NULL);
    config_unref(cfg);
}

/* Excluding a server: the others keep their relative weights. */
static void test_rr_exclude_keeps_ratio(void)
{
    struct config *cfg = load_pool("rrx", "roundrobin",
                                   "server = a 127.0.0.1:9001 weight=3\n"
                                   "server = b 127.0.0.1:9002 weight=2\n"
                                   "server = c 127.0.0.1:9003 weight=1\n");
    struct pool_conf *p = pool_of(cfg, "rrx");
    REQUIRE(p != NULL);
    uint64_t ex = exbit(0);
    CHECK_EQ_INT(ex, 1);
    int count[3] = {0};
    for (int i = 0; i < 3000; i++) {
        int k = pick_any(p, ex, NOW);
        REQUIRE(k >= 0);
        count[k]++;
    }
    CHECK_EQ_INT(count[0], 0);
    CHECK_EQ_INT(count[1], 2000);
    CHECK_EQ_INT(count[2], 1000);
    config_unref(cfg);
}

/* ---- leastconn ---- */

static void test_leastconn(void)
{
    struct config *cfg = load_pool("lc", "leastconn",
                                   "server = a 127.0.0.1:9001\n"
                                   "server = b 127.0.0.1:9002\n"
                                   "server = c 127.0.0.1:9003\n");
    struct pool_conf *p = pool_of(cfg, "lc");
    REQUIRE(p != NULL);
    atomic_store(&p->servers[0].be->active, 5);
    atomic_store(&p->servers[1].be->active, 2);
    atomic_store(&p->servers[2].be->active, 7);
    for (int i = 0; i < 100; i++)
        CHECK_EQ_INT(pick_any(p, 0, NOW), 1);
    /* The least loaded one excluded: the next least loaded. */
    for (int i = 0; i < 100; i++)
        CHECK_EQ_INT(pick_any(p, exbit(1), NOW), 0);

    /* Ties are spread, not all sent to the first server. */
    reset_runtime(p);
    int count[3] = {0};
    for (int i = 0; i < 3000; i++) {
        int k = pick_any(p, 0, NOW);
        REQUIRE(k >= 0);
        count[k]++;
    }
    for (int i = 0; i < 3; i++)
        CHECK_MSG(count[i] > 500, "ties: server %d got %d of 3000", i, count[i]);
    reset_runtime(p);
    config_unref(cfg);
}

static void test_leastconn_weighted(void)
{
    struct config *cfg = load_pool("lcw", "leastconn",
                                   "server = a 127.0.0.1:9001 weight=3\n"
                                   "server = b 127.0.0.1:9002 weight=2\n"
                                   "server = c 127.0.0.1:9003 weight=1\n");
    struct pool_conf *p = pool_of(cfg, "lcw");
    REQUIRE(p != NULL);
    /* Load is active/weight: 6/3 = 2 > 3/2 = 1.5 > 1/1 = 1 -> c. */
    atomic_store(&p->servers[0].be->active, 6);
    atomic_store(&p->servers[1].be->active, 3);
    atomic_store(&p->servers[2].be->active, 1);
    CHECK_EQ_INT(pick_any(p, 0, NOW), 2);
    /* 6/3 = 2 > 1/1 ... now c at 3/1 = 3: b (1.5) wins. */
    atomic_store(&p->servers[2].be->active, 3);
    CHECK_EQ_INT(pick_any(p, 0, NOW), 1);

    /* Sessions that never end: each pick adds one to its server; the
     * actives then follow the weights. */
    reset_runtime(p);
    for (int i = 0; i < 600; i++) {
        int k = pick_any(p, 0, NOW);
        REQUIRE(k >= 0);
        atomic_fetch_add(&p->servers[k].be->active, 1);
    }
    int a = atomic_load(&p->servers[0].be->active);
    int b = atomic_load(&p->servers[1].be->active);
    int c = atomic_load(&p->servers[2].be->active);
    CHECK_MSG(abs(a - 300) <= 1 && abs(b - 200) <= 1 && abs(c - 100) <= 1,
              "actives %d/%d/%d, want 300/200/100", a, b, c);
    reset_runtime(p);
    config_unref(cfg);
}

/* ---- random (power of two choices) ---- */

static void test_random(void)
{
    struct config *cfg = load_pool("rnd", "random",
                                   "server = a 127.0.0.1:9001 weight=3\n"
                                   "server = b 127.0.0.1:9002 weight=2\n"
                                   "server = c 127.0.0.1:9003 weight=1\n");
    struct pool_conf *p = pool_of(cfg, "rnd");
    REQUIRE(p != NULL);
    enum { N = 100000 };
    const int w[3] = {3, 2, 1};
    int count[3] = {0};
    for (int i = 0; i < N; i++) {
        int k = pick_any(p, 0, NOW);
        REQUIRE(k >= 0);
        count[k]++;
    }
    check_shares("random 3:2:1, equal loads", count, w, 3, N, 0.05);
    config_unref(cfg);
}

static void test_random_prefers_less_loaded(void)
{
    struct config *cfg = load_pool("rndl", "random",
                                   "server = a 127.0.0.1:9001\n"
                                   "server = b 127.0.0.1:9002\n");
    struct pool_conf *p = pool_of(cfg, "rndl");
    REQUIRE(p != NULL);
    /* a is busy: it only wins when both draws are a (1 in 4). */
    atomic_store(&p->servers[0].be->active, 10);
    enum { N = 100000 };
    int count[2] = {0};
    for (int i = 0; i < N; i++) {
        int k = pick_any(p, 0, NOW);
        REQUIRE(k >= 0);
        count[k]++;
    }
    CHECK_MSG(count[0] > N * 0.22 && count[0] < N * 0.28, "busy server got %d of %d", count[0], N);
    CHECK(count[1] > count[0] * 2);
    reset_runtime(p);
    config_unref(cfg);
}

/* More than 64 servers: the candidate set no longer fits the small array,
 * and exclusions past the 64th server go to the session's own bitmap;
 * no server aliases another (a mask indexed mod 64 excluded 0 and 64
 * together). */
static void test_random_many_servers(void)
{
    char body[8192];
    size_t off = 0;
    for (int i = 0; i < 70; i++)
        off += (size_t)snprintf(body + off, sizeof(body) - off, "server = s%d 127.0.0.1:%d\n", i,
                                10000 + i);
    struct config *cfg = load_pool("rnd70", "random", body);
    struct pool_conf *p = pool_of(cfg, "rnd70");
    REQUIRE(p != NULL);
    REQUIRE_EQ_INT(p->nservers, 70);
    struct balance_exclude ex = {0};
    CHECK(balance_exclude_add(&ex, p, &p->servers[0]));
    CHECK(balance_exclude_add(&ex, p, &p->servers[65]));
    CHECK(balance_excluded(&ex, p, &p->servers[0]) && balance_excluded(&ex, p, &p->servers[65]));
    CHECK(!balance_excluded(&ex, p, &p->servers[64]) && !balance_excluded(&ex, p, &p->servers[1]));
    int seen[70] = {0};
    struct sockaddr_in c = ip4(1, 40000);
    for (int i = 0; i < 20000; i++) {
        struct server_conf *s = balance_pick(p, 0, (struct sockaddr *)&c, &ex, NOW);
        REQUIRE(s != NULL);
        seen[s - p->servers]++;
    }
    CHECK_EQ_INT(seen[0], 0);
    CHECK_EQ_INT(seen[65], 0);
    int unseen = 0;
    for (int i = 0; i < 70; i++)
        unseen += i != 0 && i != 65 && seen[i] == 0;
    CHECK_EQ_INT(unseen, 0);
    /* Every server excluded, one by one: then nothing is left. */
    for (int i = 0; i < 70; i++)
        CHECK(balance_exclude_add(&ex, p, &p->servers[i]));
    CHECK(balance_pick(p, 0, (struct sockaddr *)&c, &ex, NOW) == NULL);
    balance_exclude_free(&ex);
    CHECK(ex.more == NULL && ex.bits == 0);
    config_unref(cfg);
}

/* ---- source (weighted rendezvous hash) ---- */

static void test_source_sticky(void)
{
    struct config *cfg = load_pool("src", "source",
                                   "server = a 127.0.0.1:9001 weight=3\n"
                                   "server = b 127.0.0.1:9002 weight=2\n"
                                   "server = c 127.0.0.1:9003 weight=1\n");
    struct pool_conf *p = pool_of(cfg, "src");
    REQUIRE(p != NULL);
    int moved = 0;
    for (int i = 0; i < 2000; i++) {
        uint32_t ip = rnd32();
        struct sockaddr_in c = ip4(ip, 1);
        int first = pick_idx(p, (struct sockaddr *)&c, 0, NOW);
        for (int k = 0; k < 5; k++) {
            /* Same IP, another port, another worker: same server. */
            c = ip4(ip, (uint16_t)(1000 + k * 7919));
            moved += pick_idx(p, (struct sockaddr *)&c, 0, NOW) != first;
            moved += balance_pick(p, k + 1, (struct sockaddr *)&c, 0, NOW) != &p->servers[first];
        }
    }
    CHECK_EQ_INT(moved, 0);

    /* IPv6 clients hash too, sticky the same way. */
    struct sockaddr_in6 c6;
    memset(&c6, 0, sizeof(c6));
    c6.sin6_family = AF_INET6;
    inet_pton(AF_INET6, "2001:db8::42", &c6.sin6_addr);
    c6.sin6_port = htons(1);
    int first = pick_idx(p, (struct sockaddr *)&c6, 0, NOW);
    CHECK(first >= 0);
    c6.sin6_port = htons(2);
    CHECK_EQ_INT(pick_idx(p, (struct sockaddr *)&c6, 0, NOW), first);
    config_unref(cfg);
}

static void test_source_distribution(void)
{
    struct config *cfg = load_pool("srcd", "source",
                                   "server = a 127.0.0.1:9001 weight=3\n"
                                   "server = b 127.0.0.1:9002 weight=2\n"
                                   "server = c 127.0.0.1:9003 weight=1\n");
    struct pool_conf *p = pool_of(cfg, "srcd");
    REQUIRE(p != NULL);
    const int w[3] = {3, 2, 1};
    /* Random addresses ... */
    enum { N = 100000 };
    int count[3] = {0};
    for (int i = 0; i < N; i++) {
        int k = pick_any(p, 0, NOW);
        REQUIRE(k >= 0);
        count[k]++;
    }
    check_shares("source 3:2:1, random IPs", count, w, 3, N, 0.05);
    /* ... and consecutive ones (one /16), as real clients often are. */
    memset(count, 0, sizeof(count));
    for (uint32_t i = 0; i < 65536; i++) {
        struct sockaddr_in c = ip4(0x0a0a0000u + i, 5555);
        int k = pick_idx(p, (struct sockaddr *)&c, 0, NOW);
        REQUIRE(k >= 0);
        count[k]++;
    }
    check_shares("source 3:2:1, 10.10.0.0/16", count, w, 3, 65536, 0.05);
    config_unref(cfg);
}

/* Removing a server (a reload without it) moves only its own clients;
 * adding one moves clients only onto the new server. The removed server
 * is in the middle, so the others change index: the hash must follow
 * names, not positions. */
static void test_source_minimal_disruption(void)
{
    const char *three = "server = a 127.0.0.1:9001 weight=3\n"
                        "server = b 127.0.0.1:9002 weight=2\n"
                        "server = c 127.0.0.1:9003 weight=1\n";
    const char *two = "server = a 127.0.0.1:9001 weight=3\n"
                      "server = c 127.0.0.1:9003 weight=1\n";
    struct config *cfg3 = load_pool("srcm", "source", three);
    struct config *cfg2 = load_pool("srcm", "source", two);
    struct pool_conf *p3 = pool_of(cfg3, "srcm");
    struct pool_conf *p2 = pool_of(cfg2, "srcm");
    REQUIRE(p3 != NULL && p2 != NULL);
    /* Same names: the same runtime state. */
    CHECK(p3->servers[0].be == p2->servers[0].be);
    CHECK(p3->servers[2].be == p2->servers[1].be);
    enum { N = 10000 };
    int on_b = 0, moved_wrongly = 0, to_new = 0, new_wrongly = 0;
    for (int i = 0; i < N; i++) {
        struct sockaddr_in c = ip4(rnd32(), 80);
        struct server_conf *s3 = balance_pick(p3, 0, (struct sockaddr *)&c, 0, NOW);
        struct server_conf *s2 = balance_pick(p2, 0, (struct sockaddr *)&c, 0, NOW);
        REQUIRE(s3 && s2);
        if (strcmp(s3->name, "b") == 0)
            on_b++;
        else if (strcmp(s3->name, s2->name) != 0)
            moved_wrongly++;
        /* Read the other way round: going from two servers to three. */
        if (strcmp(s3->name, s2->name) != 0) {
            to_new++;
            new_wrongly += strcmp(s3->name, "b") != 0;
        }
    }
    CHECK_EQ_INT(moved_wrongly, 0);
    CHECK_EQ_INT(new_wrongly, 0);
    CHECK_EQ_INT(to_new, on_b);
    CHECK_MSG(on_b > N / 3 * 0.9 && on_b < N / 3 * 1.1, "%d of %d on b", on_b, N);
    config_unref(cfg2);
    config_unref(cfg3);
}

/* A server that goes down loses only its own clients, and gets them back
 * when it comes up. */
static void test_source_server_down(void)
{
    struct config *cfg = load_pool("srcdown", "source",
                                   "server = a 127.0.0.1:9001\n"
                                   "server = b 127.0.0.1:9002\n"
                                   "server = c 127.0.0.1:9003\n");
    struct pool_conf *p = pool_of(cfg, "srcdown");
    REQUIRE(p != NULL);
    enum { N = 3000 };
    static struct sockaddr_in clients[N];
    static int before[N];
    for (int i = 0; i < N; i++) {
        clients[i] = ip4(rnd32(), 1);
        before[i] = pick_idx(p, (struct sockaddr *)&clients[i], 0, NOW);
    }
    atomic_store(&p->servers[1].be->health, HEALTH_DOWN);
    int wrong = 0, on_b = 0;
    for (int i = 0; i < N; i++) {
        int k = pick_idx(p, (struct sockaddr *)&clients[i], 0, NOW);
        wrong += k == 1 || (before[i] != 1 && k != before[i]);
        on_b += before[i] == 1;
    }
    CHECK_EQ_INT(wrong, 0);
    CHECK(on_b > 0);
    atomic_store(&p->servers[1].be->health, HEALTH_UP);
    for (int i = 0; i < N; i++)
        wrong += pick_idx(p, (struct sockaddr *)&clients[i], 0, NOW) != before[i];
    CHECK_EQ_INT(wrong, 0);
    config_unref(cfg);
}

/* ---- first ---- */

static void test_first(void)
{
    struct config *cfg = load_pool("fst", "first",
                                   "server = a 127.0.0.1:9001 max_conns=2\n"
                                   "server = b 127.0.0.1:9002 weight=100 max_conns=1\n"
                                   "server = c 127.0.0.1:9003\n");
    struct pool_conf *p = pool_of(cfg, "fst");
    REQUIRE(p != NULL);
    /* File order, whatever the weights. */
    for (int i = 0; i < 10; i++)
        CHECK_EQ_INT(pick_any(p, 0, NOW), 0);
    atomic_store(&p->servers[0].be->active, 1);
    CHECK_EQ_INT(pick_any(p, 0, NOW), 0);
    atomic_store(&p->servers[0].be->active, 2); /* a at its max_conns */
    CHECK_EQ_INT(pick_any(p, 0, NOW), 1);
    atomic_store(&p->servers[1].be->active, 1);
    CHECK_EQ_INT(pick_any(p, 0, NOW), 2);
    atomic_store(&p->servers[2].be->active, 1000); /* no cap on c */
    CHECK_EQ_INT(pick_any(p, 0, NOW), 2);
    atomic_store(&p->servers[0].be->active, 1); /* a has room again */
    CHECK_EQ_INT(pick_any(p, 0, NOW), 0);

    /* Filling from empty, one pick per session. */
    reset_runtime(p);
    int seq[6];
    for (int i = 0; i < 6; i++) {
        seq[i] = pick_any(p, 0, NOW);
        REQUIRE(seq[i] >= 0);
        atomic_fetch_add(&p->servers[seq[i]].be->active, 1);
    }
    CHECK(seq[0] == 0 && seq[1] == 0 && seq[2] == 1 && seq[3] == 2 && seq[4] == 2 && seq[5] == 2);
    reset_runtime(p);
    config_unref(cfg);
}

/* max_conns caps a server under every algorithm. */
static void test_max_conns_all_algos(void)
{
    for (size_t a = 0; a < UNIT_LEN(algos); a++) {
        char name[64];
        snprintf(name, sizeof(name), "mc-%s", algos[a]);
        struct config *cfg = load_pool(name, algos[a],
                                       "server = a 127.0.0.1:9001 weight=10 max_conns=3\n"
                                       "server = b 127.0.0.1:9002\n");
        struct pool_conf *p = pool_of(cfg, name);
        if (p == NULL) {
            config_unref(cfg);
            continue;
        }
        atomic_store(&p->servers[0].be->active, 3);
        int hits = 0;
        for (int i = 0; i < 500; i++)
            hits += pick_any(p, 0, NOW) == 0;
        CHECK_MSG(hits == 0, "%s: full server picked %d times", algos[a], hits);
        reset_runtime(p);
        config_unref(cfg);
    }
}

/* ---- rules shared by every algorithm ---- */

static void test_weight_zero_never_picked(void)
{
    for (size_t a = 0; a < UNIT_LEN(algos); a++) {
        char name[64];
        snprintf(name, sizeof(name), "w0-%s", algos[a]);
        struct config *cfg = load_pool(name, algos[a],
                                       "server = z 127.0.0.1:9000 weight=0\n"
                                       "server = a 127.0.0.1:9001 weight=1\n"
                                       "server = y 127.0.0.1:9002 weight=0\n"
                                       "server = b 127.0.0.1:9003 weight=2\n");
        struct pool_conf *p = pool_of(cfg, name);
        if (p == NULL) {
            config_unref(cfg);
            continue;
        }
        int zero = 0, none = 0;
        for (int i = 0; i < 3000; i++) {
            int k = pick_any(p, 0, NOW);
            none += k < 0;
            zero += k == 0 || k == 2;
        }
        CHECK_MSG(zero == 0 && none == 0, "%s: weight 0 picked %d times, NULL %d times", algos[a],
                  zero, none);
        /* Only weight-0 servers left: nothing to pick. */
        uint64_t ex =
            exbit(1) | exbit(3);
        CHECK_MSG(pick_any(p, ex, NOW) == -1, "%s: picked a weight-0 server", algos[a]);
        config_unref(cfg);
    }
}

/* Disabled, draining, health-down and passively held-down servers are
 * skipped by every algorithm. */
static void test_unusable_skipped(void)
{
    atomic_store(&log_current_level, LOG_ERROR); /* the passive DOWN warning */
    for (size_t a = 0; a < UNIT_LEN(algos); a++) {
        char name[64];
        snprintf(name, sizeof(name), "unus-%s", algos[a]);
        struct config *cfg = load_pool(name, algos[a],
                                       "fall = 2\nfail_timeout = 5s\n"
                                       "server = dis 127.0.0.1:9001 weight=5\n"
                                       "server = down 127.0.0.1:9002 weight=5\n"
                                       "server = held 127.0.0.1:9003 weight=5\n"
                                       "server = drain 127.0.0.1:9004 weight=5\n"
                                       "server = ok 127.0.0.1:9005\n");
        struct pool_conf *p = pool_of(cfg, name);
        if (p == NULL) {
            config_unref(cfg);
            continue;
        }
        atomic_store(&p->servers[0].be->admin, ADMIN_DISABLED);
        atomic_store(&p->servers[1].be->health, HEALTH_DOWN);
        backend_connect_failed(&p->servers[2], NOW, "test");
        backend_connect_failed(&p->servers[2], NOW, "test");
        atomic_store(&p->servers[3].be->admin, ADMIN_DRAINING);
        int other = 0;
        for (int i = 0; i < 1000; i++)
            other += pick_any(p, 0, NOW) != 4;
        CHECK_MSG(other == 0, "%s: an unusable server was picked %d times", algos[a], other);
        /* The hold-down ends fail_timeout after the failure. */
        CHECK_EQ_INT(atomic_load(&p->servers[2].be->down_until_ms), NOW + 5000);
        bool held_seen = false;
        for (int i = 0; i < 1000 && !held_seen; i++)
            held_seen = pick_any(p, 0, NOW + 5000) == 2;
        CHECK_MSG(held_seen, "%s: server not back after its hold-down", algos[a]);
        reset_runtime(p);
        config_unref(cfg);
    }
    atomic_store(&log_current_level, LOG_INFO);
}

static void test_passive_holddown(void)
{
    atomic_store(&log_current_level, LOG_ERROR);
    struct config *cfg = load_pool("hold", "first",
                                   "fall = 3\nfail_timeout = 10s\n"
                                   "server = a 127.0.0.1:9001\n"
                                   "server = b 127.0.0.1:9002\n");
    struct pool_conf *p = pool_of(cfg, "hold");
    REQUIRE(p != NULL);
    struct server_conf *a = &p->servers[0];
    int64_t t = NOW;

    /* fall - 1 failures: still up. */
    backend_connect_failed(a, t, "refused");
    backend_connect_failed(a, t, "refused");
    CHECK(backend_usable(a, t));
    CHECK_EQ_INT(pick_any(p, 0, t), 0);
    /* A success ends the streak: two more failures are not enough. */
    backend_connect_ok(a);
    CHECK_EQ_INT(atomic_load(&a->be->fails), 0);
    backend_connect_failed(a, t, "refused");
    backend_connect_failed(a, t, "refused");
    CHECK(backend_usable(a, t));
    /* The third in a row holds it down for fail_timeout. */
    backend_connect_failed(a, t + 100, "refused");
    CHECK_EQ_INT(atomic_load(&a->be->down_until_ms), t + 100 + 10000);
    CHECK(!backend_usable(a, t + 100));
    CHECK_EQ_INT(pick_any(p, 0, t + 100), 1);
    CHECK_EQ_INT(pick_any(p, 0, t + 100 + 9999), 1);
    CHECK(backend_usable(a, t + 100 + 10000));
    CHECK_EQ_INT(pick_any(p, 0, t + 100 + 10000), 0);
    /* Still failing after the hold-down: one failure re-arms it at once. */
    backend_connect_failed(a, t + 20000, "timeout");
    CHECK(!backend_usable(a, t + 20000));
    CHECK_EQ_INT(atomic_load(&a->be->down_until_ms), t + 30000);
    /* Recovered: a success and the hold-down's end make it usable. */
    backend_connect_ok(a);
    CHECK(!backend_usable(a, t + 29999));
    CHECK(backend_usable(a, t + 30000));
    backend_connect_failed(a, t + 30000, "refused");
    CHECK(backend_usable(a, t + 30000));

    /* The name tables. */
    CHECK_STR(backend_health_str(HEALTH_UP), "up");
    CHECK_STR(backend_health_str(HEALTH_DOWN), "down");
    CHECK_STR(backend_admin_str(ADMIN_ENABLED), "enabled");
    CHECK_STR(backend_admin_str(ADMIN_DRAINING), "draining");
    CHECK_STR(backend_admin_str(ADMIN_DISABLED), "disabled");
    reset_runtime(p);
    config_unref(cfg);
    atomic_store(&log_current_level, LOG_INFO);
}

/* With active checks on, passive failures mark the server down (the
 * checks bring it back) instead of a timed hold-down. */
static void test_passive_with_checks(void)
{
    atomic_store(&log_current_level, LOG_ERROR);
    struct config *cfg = load_pool("holdchk", "roundrobin",
                                   "fall = 2\ncheck = tcp\n"
                                   "server = a 127.0.0.1:9001\n"
                                   "server = b 127.0.0.1:9002\n");
    struct pool_conf *p = pool_of(cfg, "holdchk");
    REQUIRE(p != NULL);
    struct server_conf *a = &p->servers[0];
    backend_connect_failed(a, NOW, "refused");
    CHECK(backend_usable(a, NOW));
    backend_connect_failed(a, NOW, "refused");
    CHECK(!backend_usable(a, NOW));
    CHECK(!backend_usable(a, NOW + 1000000)); /* no time limit */
    CHECK_EQ_INT(atomic_load(&a->be->health), HEALTH_DOWN);
    CHECK_EQ_INT(atomic_load(&a->be->down_cause), DOWN_PASSIVE);
    CHECK_EQ_INT(atomic_load(&a->be->down_until_ms), 0);
    CHECK_EQ_INT(atomic_load(&a->be->transitions), 1);
    backend_connect_failed(a, NOW, "refused");
    CHECK_EQ_INT(atomic_load(&a->be->transitions), 1);
    for (int i = 0; i < 20; i++)
        CHECK_EQ_INT(pick_any(p, 0, NOW), 1);
    /* The health thread's rise puts it back. */
    atomic_store(&a->be->health, HEALTH_UP);
    CHECK(backend_usable(a, NOW));
    reset_runtime(p);
    config_unref(cfg);
    atomic_store(&log_current_level, LOG_INFO);
}

static void test_state_words(void)
{
    struct config *cfg = load_pool("words", "first", "server = a 127.0.0.1:9001\n");
    struct pool_conf *p = pool_of(cfg, "words");
    REQUIRE(p != NULL);
    struct backend *b = p->servers[0].be;
    CHECK_STR(backend_state_str(b, NOW), "up");
    atomic_store(&b->admin, ADMIN_DRAINING);
    CHECK_STR(backend_state_str(b, NOW), "drained"); /* nothing left to finish */
    atomic_store(&b->active, 1);
    CHECK_STR(backend_state_str(b, NOW), "draining");
    atomic_store(&b->active, 0);
    atomic_store(&b->health, HEALTH_DOWN);
    CHECK_STR(backend_state_str(b, NOW), "down");
    atomic_store(&b->admin, ADMIN_DISABLED);
    CHECK_STR(backend_state_str(b, NOW), "disabled");
    reset_runtime(p);
    /* A passive hold-down is "down" (backend.h: "up, down (health check,
     * passive marking or a passive hold-down), draining or disabled"); the
     * WHY column of `show backends` says it is passive. */
    atomic_store(&b->down_until_ms, NOW + 10);
    CHECK_STR(backend_state_str(b, NOW), "down");
    CHECK_STR(backend_state_str(b, NOW + 10), "up");
    reset_runtime(p);

    CHECK_STR(check_result_str(CHECK_RESULT_NONE), "none");
    CHECK_STR(check_result_str(CHECK_RESULT_OK), "ok");
    CHECK_STR(check_result_str(CHECK_RESULT_TIMEOUT), "timeout");
    CHECK_STR(check_result_str(CHECK_RESULT_ERROR), "error");
    CHECK_STR(check_result_str((enum check_result)42), "?");
    CHECK_STR(down_cause_str(DOWN_NONE), "-");
    CHECK_STR(down_cause_str((enum down_cause)42), "?");
    CHECK(strstr(down_cause_str(DOWN_PASSIVE), "passive") != NULL);
    config_unref(cfg);
}

static void test_backups(void)
{
    for (size_t a = 0; a < UNIT_LEN(algos); a++) {
        char name[64];
        snprintf(name, sizeof(name), "bk-%s", algos[a]);
        struct config *cfg = load_pool(name, algos[a],
                                       "server = bk1 127.0.0.1:9000 backup weight=50\n"
                                       "server = a 127.0.0.1:9001\n"
                                       "server = b 127.0.0.1:9002\n"
                                       "server = bk2 127.0.0.1:9003 backup\n");
        struct pool_conf *p = pool_of(cfg, name);
        if (p == NULL) {
            config_unref(cfg);
            continue;
        }
        int bk = 0, prim[2] = {0};
        for (int i = 0; i < 1000; i++) {
            int k = pick_any(p, 0, NOW);
            bk += k == 0 || k == 3;
            prim[0] += k == 1;
            prim[1] += k == 2;
        }
        CHECK_MSG(bk == 0, "%s: backup picked %d times with primaries up", algos[a], bk);
        /* One primary left: still no backup. */
        atomic_store(&p->servers[1].be->health, HEALTH_DOWN);
        bk = 0;
        for (int i = 0; i < 1000; i++)
            bk += pick_any(p, 0, NOW) != 2;
        CHECK_MSG(bk == 0, "%s: %d picks not on the last primary", algos[a], bk);
        /* No primary usable: the backups, and only them. */
        atomic_store(&p->servers[2].be->admin, ADMIN_DISABLED);
        int got[4] = {0}, none = 0;
        for (int i = 0; i < 2000; i++) {
            int k = pick_any(p, 0, NOW);
            if (k < 0)
                none++;
            else
                got[k]++;
        }
        CHECK_MSG(none == 0 && got[1] == 0 && got[2] == 0 && got[0] + got[3] == 2000,
                  "%s: with primaries down got bk1 %d, a %d, b %d, bk2 %d, none %d", algos[a],
                  got[0], got[1], got[2], got[3], none);
        /* Primaries excluded (already tried) count as unusable too. */
        reset_runtime(p);
        uint64_t ex =
            exbit(1) | exbit(2);
        /* Which backup: `first` takes the first usable one in file order,
         * always bk1. The others choose between the two backups as they
         * would between primaries (the round robin's position, a random
         * client's hash, two random candidates, leastconn's random start
         * among idle servers), so either backup is a correct single answer;
         * what must hold is that only backups are picked and, for those
         * four, both of them over 1000 picks (bk2 has weight 1 of 51: the
         * chance that a correct random or source pick never takes it is
         * (50/51)^1000, about 3e-9). */
        int bks[4] = {0};
        for (int i = 0; i < 1000; i++) {
            int k = pick_any(p, ex, NOW);
            bks[k < 0 ? 1 : k]++; /* -1 or a primary: counted as wrong */
        }
        CHECK_MSG(bks[1] == 0 && bks[2] == 0, "%s: %d picks not on a backup with primaries excluded",
                  algos[a], bks[1] + bks[2]);
        if (strcmp(algos[a], "first") == 0)
            CHECK_MSG(bks[0] == 1000, "first: bk1 %d, bk2 %d with primaries excluded", bks[0], bks[3]);
        else
            CHECK_MSG(bks[0] > 0 && bks[3] > 0, "%s: bk1 %d, bk2 %d with primaries excluded",
                      algos[a], bks[0], bks[3]);
        /* Backups excluded too: nothing. */
        ex |= exbit(0) | exbit(3);
        CHECK_EQ_INT(pick_any(p, ex, NOW), -1);
        /* A primary back: the backups are left alone again. */
        bk = 0;
        for (int i = 0; i < 100; i++) {
            int j = pick_any(p, 0, NOW);
            bk += j == 0 || j == 3;
        }
        CHECK_MSG(bk == 0, "%s: backup picked %d times after recovery", algos[a], bk);
        config_unref(cfg);
    }
}

static void test_exclude(void)
{
    for (size_t a = 0; a < UNIT_LEN(algos); a++) {
        char name[64];
        snprintf(name, sizeof(name), "ex-%s", algos[a]);
        struct config *cfg = load_pool(name, algos[a],
                                       "server = a 127.0.0.1:9001\n"
                                       "server = b 127.0.0.1:9002\n"
                                       "server = c 127.0.0.1:9003\n");
        struct pool_conf *p = pool_of(cfg, name);
        if (p == NULL) {
            config_unref(cfg);
            continue;
        }
        /* The retry path: pick, exclude, pick again: each server once. */
        for (int round = 0; round < 50; round++) {
            struct balance_exclude ex = {0};
            int seen = 0;
            struct sockaddr_in c = ip4(rnd32(), 1);
            for (int t = 0; t < 3; t++) {
                struct server_conf *s = balance_pick(p, 0, (struct sockaddr *)&c, &ex, NOW);
                if (!CHECK_MSG(s != NULL, "%s: nothing left after %d tries", algos[a], t))
                    break;
                CHECK_MSG(!balance_excluded(&ex, p, s), "%s: picked an excluded server", algos[a]);
                CHECK(balance_exclude_add(&ex, p, s));
                seen++;
            }
            CHECK_EQ_INT(seen, 3);
            CHECK_EQ_INT(ex.bits, 7);
            CHECK(balance_pick(p, 0, (struct sockaddr *)&c, &ex, NOW) == NULL);
        }
        config_unref(cfg);
    }
}

static void test_nothing_usable(void)
{
    for (size_t a = 0; a < UNIT_LEN(algos); a++) {
        char name[64];
        snprintf(name, sizeof(name), "none-%s", algos[a]);
        struct config *cfg = load_pool(name, algos[a],
                                       "server = a 127.0.0.1:9001\n"
                                       "server = b 127.0.0.1:9002 backup\n");
        struct pool_conf *p = pool_of(cfg, name);
        if (p == NULL) {
            config_unref(cfg);
            continue;
        }
        atomic_store(&p->servers[0].be->health, HEALTH_DOWN);
        atomic_store(&p->servers[1].be->admin, ADMIN_DISABLED);
        CHECK_MSG(pick_any(p, 0, NOW) == -1, "%s", algos[a]);
        /* No client address (source falls back to a fixed key). */
        atomic_store(&p->servers[1].be->admin, ADMIN_ENABLED);
        CHECK_MSG(balance_pick(p, 0, NULL, 0, NOW) == &p->servers[1], "%s", algos[a]);
        reset_runtime(p);
        config_unref(cfg);
    }
}

/* Runtime weights (what a reload or an admin command changes) are what the
 * balancers use, not the file's numbers. */
static void test_runtime_weight(void)
{
    struct config *cfg = load_pool("rw", "roundrobin",
                                   "server = a 127.0.0.1:9001 weight=1\n"
                                   "server = b 127.0.0.1:9002 weight=1\n");
    struct pool_conf *p = pool_of(cfg, "rw");
    REQUIRE(p != NULL);
    atomic_store(&p->servers[0].be->weight, 3);
    int count[2] = {0};
    for (int i = 0; i < 400; i++) {
        int k = pick_any(p, 0, NOW);
        REQUIRE(k >= 0);
        count[k]++;
    }
    CHECK_EQ_INT(count[0], 300);
    CHECK_EQ_INT(count[1], 100);
    atomic_store(&p->servers[0].be->weight, 0);
    for (int i = 0; i < 100; i++)
        CHECK_EQ_INT(pick_any(p, 0, NOW), 1);
    /* Loading the next generation changes nothing yet (it might still
     * fail); committing it re-applies the file's weight. */
    struct config *cfg2 = load_pool("rw", "roundrobin",
                                    "server = a 127.0.0.1:9001 weight=2\n"
                                    "server = b 127.0.0.1:9002 weight=1\n");
    REQUIRE(cfg2 != NULL);
    CHECK_EQ_INT(atomic_load(&p->servers[0].be->weight), 0);
    config_apply_weights(cfg2);
    CHECK_EQ_INT(atomic_load(&p->servers[0].be->weight), 2);
    config_unref(cfg2);
    config_unref(cfg);
}

/* Runs last: every config above was unreffed, so no runtime state is left. */
static void test_no_runtime_left(void)
{
    CHECK_EQ_INT(registry_count(&backend_registry), 0);
    CHECK_EQ_INT(registry_count(&listener_registry), 0);
}

UNIT_MAIN(TEST(test_rr_weights), TEST(test_rr_smooth), TEST(test_rr_per_worker),
          TEST(test_rr_exclude_keeps_ratio), TEST(test_leastconn), TEST(test_leastconn_weighted),
          TEST(test_random), TEST(test_random_prefers_less_loaded), TEST(test_random_many_servers),
          TEST(test_source_sticky), TEST(test_source_distribution),
          TEST(test_source_minimal_disruption), TEST(test_source_server_down), TEST(test_first),
          TEST(test_max_conns_all_algos), TEST(test_weight_zero_never_picked),
          TEST(test_unusable_skipped), TEST(test_passive_holddown), TEST(test_passive_with_checks),
          TEST(test_state_words), TEST(test_backups), TEST(test_exclude), TEST(test_nothing_usable),
          TEST(test_runtime_weight), TEST(test_no_runtime_left))
