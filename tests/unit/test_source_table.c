/* test_source_table.c - the per-source table and token buckets (srclimit.c):
 * exact live limit under threads, bucket within one token, eviction order
 * at capacity, prefix masking, v4-mapped addresses. */
#include "sluice/srclimit.h"
#include "unit.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <sys/un.h>

static struct sockaddr_in6 sa6(const char *s)
{
    struct sockaddr_in6 a = {.sin6_family = AF_INET6};
    inet_pton(AF_INET6, s, &a.sin6_addr);
    return a;
}

static struct sockaddr_in sa4(const char *s)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, s, &a.sin_addr);
    return a;
}

static const struct rate_conf no_rate = {0, 0};

static enum src_verdict admit4(struct src_table *t, const char *ip, int max,
                               const struct rate_conf *r, int64_t now, struct src_entry **e)
{
    struct sockaddr_in a = sa4(ip);
    return srclimit_admit(t, (struct sockaddr *)&a, max, r, now, e);
}

static void test_key_masking(void)
{
    uint8_t k1[16], k2[16];
    struct sockaddr_in a = sa4("10.1.2.3"), b = sa4("10.1.2.200");
    CHECK(srclimit_key((struct sockaddr *)&a, 24, 64, k1));
    CHECK(srclimit_key((struct sockaddr *)&b, 24, 64, k2));
    CHECK(memcmp(k1, k2, 16) == 0);
    CHECK(srclimit_key((struct sockaddr *)&b, 32, 64, k2));
    CHECK(memcmp(k1, k2, 16) != 0);
    /* /23 keeps 10.1.2.x and 10.1.3.x together, not 10.1.4.x */
    struct sockaddr_in c = sa4("10.1.3.9"), d = sa4("10.1.4.9");
    srclimit_key((struct sockaddr *)&a, 23, 64, k1);
    srclimit_key((struct sockaddr *)&c, 23, 64, k2);
    CHECK(memcmp(k1, k2, 16) == 0);
    srclimit_key((struct sockaddr *)&d, 23, 64, k2);
    CHECK(memcmp(k1, k2, 16) != 0);

    struct sockaddr_in6 x = sa6("2001:db8:1:2::1"), y = sa6("2001:db8:1:2:ffff::9"),
                        z = sa6("2001:db8:1:3::1");
    srclimit_key((struct sockaddr *)&x, 32, 64, k1);
    srclimit_key((struct sockaddr *)&y, 32, 64, k2);
    CHECK(memcmp(k1, k2, 16) == 0);
    srclimit_key((struct sockaddr *)&z, 32, 64, k2);
    CHECK(memcmp(k1, k2, 16) != 0);
    srclimit_key((struct sockaddr *)&x, 32, 128, k1);
    srclimit_key((struct sockaddr *)&y, 32, 128, k2);
    CHECK(memcmp(k1, k2, 16) != 0);

    struct sockaddr_un u = {.sun_family = AF_UNIX};
    CHECK(!srclimit_key((struct sockaddr *)&u, 32, 64, k1));
}

static void test_v4_mapped(void)
{
    uint8_t k1[16], k2[16];
    struct sockaddr_in a = sa4("192.0.2.7");
    struct sockaddr_in6 m = sa6("::ffff:192.0.2.7");
    CHECK(srclimit_key((struct sockaddr *)&a, 32, 64, k1));
    CHECK(srclimit_key((struct sockaddr *)&m, 32, 64, k2));
    CHECK(memcmp(k1, k2, 16) == 0);
    /* the v4 prefix applies to the mapped address, not the v6 one */
    struct sockaddr_in6 m2 = sa6("::ffff:192.0.2.99");
    srclimit_key((struct sockaddr *)&m2, 24, 128, k2);
    srclimit_key((struct sockaddr *)&a, 24, 128, k1);
    CHECK(memcmp(k1, k2, 16) == 0);

    struct src_table *t = srclimit_table_new(16, 32, 64);
    REQUIRE(t != NULL);
    struct src_entry *e1, *e2;
    CHECK_EQ_INT(srclimit_admit(t, (struct sockaddr *)&a, 1, &no_rate, 1, &e1), SRC_OK);
    CHECK_EQ_INT(srclimit_admit(t, (struct sockaddr *)&m, 1, &no_rate, 2, &e2), SRC_CONN_LIMIT);
    srclimit_release(e1);
    CHECK_EQ_INT(srclimit_admit(t, (struct sockaddr *)&m, 1, &no_rate, 3, &e2), SRC_OK);
    CHECK(e1 == e2);
    srclimit_release(e2);
    srclimit_table_put(t);
}

static void test_live_limit(void)
{
    struct src_table *t = srclimit_table_new(64, 32, 64);
    REQUIRE(t != NULL);
    struct src_entry *e[4];
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(admit4(t, "127.0.0.2", 3, &no_rate, i, &e[i]), SRC_OK);
    CHECK_EQ_INT(admit4(t, "127.0.0.2", 3, &no_rate, 5, &e[3]), SRC_CONN_LIMIT);
    CHECK(e[3] == NULL);
    CHECK_EQ_INT(admit4(t, "127.0.0.3", 3, &no_rate, 5, &e[3]), SRC_OK);
    srclimit_release(e[3]);
    srclimit_release(e[0]);
    CHECK_EQ_INT(admit4(t, "127.0.0.2", 3, &no_rate, 6, &e[0]), SRC_OK);
    for (int i = 0; i < 3; i++)
        srclimit_release(e[i]);
    struct src_top top[4];
    CHECK_EQ_INT(srclimit_top(t, 10, top, 4), 2);
    CHECK_STR(top[0].addr, "127.0.0.2/32");
    CHECK_EQ_INT((int)top[0].refused, 1);
    CHECK_EQ_INT(top[0].live, 0);
    srclimit_table_put(t);
}

#define THREADS 4
#define ROUNDS 20000
#define LIMIT 5

struct race {
    struct src_table *t;
    _Atomic int over; /* times more than LIMIT were held at once */
    _Atomic int held; /* currently admitted, over all threads */
    _Atomic int admitted;
};

static void *race_thread(void *arg)
{
    struct race *r = arg;
    struct src_entry *mine[LIMIT + 1];
    int n = 0;
    for (int i = 0; i < ROUNDS; i++) {
        struct src_entry *e;
        if (admit4(r->t, "10.9.8.7", LIMIT, &no_rate, i, &e) == SRC_OK) {
            if (atomic_fetch_add(&r->held, 1) + 1 > LIMIT)
                atomic_fetch_add(&r->over, 1);
            atomic_fetch_add(&r->admitted, 1);
            mine[n++] = e;
        }
        if (n > 0 && (i % 3 == 0 || n > LIMIT)) {
            atomic_fetch_sub(&r->held, 1);
            srclimit_release(mine[--n]);
        }
    }
    while (n > 0) {
        atomic_fetch_sub(&r->held, 1);
        srclimit_release(mine[--n]);
    }
    return NULL;
}

static void test_live_limit_threads(void)
{
    struct race r = {.t = srclimit_table_new(64, 32, 64)};
    REQUIRE(r.t != NULL);
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        pthread_create(&th[i], NULL, race_thread, &r);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    CHECK_EQ_INT(atomic_load(&r.over), 0);
    CHECK(atomic_load(&r.admitted) > LIMIT);
    struct src_top top[1];
    CHECK_EQ_INT(srclimit_top(r.t, 0, top, 1), 1);
    CHECK_EQ_INT(top[0].live, 0);
    srclimit_table_put(r.t);
}

static void test_rate_bucket(void)
{
    struct src_table *t = srclimit_table_new(64, 32, 64);
    REQUIRE(t != NULL);
    const struct rate_conf r = {10, 1000}; /* 10 per second */
    const int64_t s = 1000000000, start = 50 * s;
    struct src_entry *e;
    int ok = 0;
    for (int i = 0; i < 30; i++)
        if (admit4(t, "10.0.0.1", 0, &r, start, &e) == SRC_OK)
            ok++;
    CHECK_EQ_INT(ok, 10); /* a full bucket, no more */
    /* 0.35 s later: 3 tokens back, not 4 */
    ok = 0;
    for (int i = 0; i < 10; i++)
        if (admit4(t, "10.0.0.1", 0, &r, start + 35 * s / 100, &e) == SRC_OK)
            ok++;
    CHECK_EQ_INT(ok, 3);
    /* then steady tries every 10 ms up to 11 s: over the whole run, the
     * first bucketful plus 10 per second elapsed, within one token */
    int total = 13;
    int64_t now = start + s;
    for (; now < start + 11 * s; now += s / 100)
        if (admit4(t, "10.0.0.1", 0, &r, now, &e) == SRC_OK)
            total++;
    int64_t last = now - s / 100;
    int expect = 10 + (int)((last - start) * 10 / s);
    CHECK_MSG(total <= expect && total >= expect - 1, "admitted %d, expected %d", total, expect);
    /* another source has its own bucket */
    CHECK_EQ_INT(admit4(t, "10.0.0.2", 0, &r, start, &e), SRC_OK);
    srclimit_table_put(t);
}

static void test_listener_rate(void)
{
    _Atomic int64_t tat = 0;
    const struct rate_conf r = {4, 100}; /* 4 per 100 ms */
    const int64_t ms = 1000000, start = 1000 * ms;
    for (int i = 0; i < 4; i++)
        CHECK_EQ_INT((int)ratelimit_take(&tat, &r, start), 0);
    int64_t wait = ratelimit_take(&tat, &r, start);
    CHECK_MSG(wait > 0 && wait <= 25 * ms, "wait %lld", (long long)wait);
    CHECK_EQ_INT((int)ratelimit_take(&tat, &r, start + wait), 0);
    CHECK(ratelimit_take(&tat, &r, start + wait) > 0);
    ratelimit_give(&tat, &r);
    CHECK_EQ_INT((int)ratelimit_take(&tat, &r, start + wait), 0);
}

static void test_eviction_order(void)
{
    struct src_table *t = srclimit_table_new(4, 32, 64);
    REQUIRE(t != NULL);
    struct src_entry *e, *held;
    CHECK_EQ_INT(admit4(t, "10.0.0.1", 1, &no_rate, 1, &held), SRC_OK); /* stays live */
    CHECK_EQ_INT(admit4(t, "10.0.0.2", 1, &no_rate, 2, &e), SRC_OK);
    srclimit_release(e);
    CHECK_EQ_INT(admit4(t, "10.0.0.3", 1, &no_rate, 3, &e), SRC_OK);
    srclimit_release(e);
    CHECK_EQ_INT(admit4(t, "10.0.0.4", 1, &no_rate, 4, &e), SRC_OK);
    srclimit_release(e);
    CHECK_EQ_INT(srclimit_table_used(t), 4);
    /* .2 seen again: now .3 is the least recently seen idle entry */
    CHECK_EQ_INT(admit4(t, "10.0.0.2", 1, &no_rate, 5, &e), SRC_OK);
    srclimit_release(e);
    CHECK_EQ_INT(admit4(t, "10.0.0.5", 1, &no_rate, 6, &e), SRC_OK);
    srclimit_release(e);
    CHECK_EQ_INT(srclimit_table_used(t), 4);
    struct src_top top[8];
    int n = srclimit_top(t, 10, top, 8);
    CHECK_EQ_INT(n, 4);
    bool has3 = false, has1 = false;
    for (int i = 0; i < n; i++) {
        has3 |= strcmp(top[i].addr, "10.0.0.3/32") == 0;
        has1 |= strcmp(top[i].addr, "10.0.0.1/32") == 0;
    }
    CHECK(!has3);
    CHECK(has1); /* the oldest, but live: never evicted */
    CHECK_STR(top[0].addr, "10.0.0.1/32");
    /* .1 is still at its limit: it kept its count */
    CHECK_EQ_INT(admit4(t, "10.0.0.1", 1, &no_rate, 7, &e), SRC_CONN_LIMIT);

    /* every entry live: no entry to evict, admitted untracked */
    struct src_entry *live[3];
    CHECK_EQ_INT(admit4(t, "10.0.0.2", 1, &no_rate, 8, &live[0]), SRC_OK);
    CHECK_EQ_INT(admit4(t, "10.0.0.4", 1, &no_rate, 8, &live[1]), SRC_OK);
    CHECK_EQ_INT(admit4(t, "10.0.0.5", 1, &no_rate, 8, &live[2]), SRC_OK);
    CHECK_EQ_INT(admit4(t, "10.0.0.6", 1, &no_rate, 9, &e), SRC_UNTRACKED);
    CHECK(e == NULL);
    srclimit_release(live[0]);
    CHECK_EQ_INT(admit4(t, "10.0.0.6", 1, &no_rate, 10, &e), SRC_OK);
    srclimit_release(e);
    srclimit_release(live[1]);
    srclimit_release(live[2]);
    srclimit_release(held);
    srclimit_table_put(t);
}

static void test_bounded_flood(void)
{
    struct src_table *t = srclimit_table_new(1000, 32, 64);
    REQUIRE(t != NULL);
    struct src_entry *e;
    const struct rate_conf r = {2, 1000};
    /* one abusive source keeps being seen; 100,000 unique ones pass by */
    int refused = 0;
    for (int i = 0; i < 100000; i++) {
        char ip[32];
        snprintf(ip, sizeof(ip), "10.%d.%d.%d", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        if (CHECK(admit4(t, ip, 0, &r, 1000, &e) == SRC_OK))
            srclimit_release(e);
        if (admit4(t, "192.0.2.1", 0, &r, 1000, &e) == SRC_RATE_LIMIT)
            refused++;
        else
            srclimit_release(e);
    }
    CHECK_EQ_INT(refused, 100000 - 2);
    CHECK(srclimit_table_used(t) <= 1000);
    srclimit_table_put(t);
}

/* docs/operations.md states at most 72 bytes per entry. */
static void test_entry_bytes(void)
{
    CHECK_MSG(srclimit_entry_bytes() <= 72, "%zu bytes", srclimit_entry_bytes());
}

UNIT_MAIN(TEST(test_entry_bytes), TEST(test_key_masking), TEST(test_v4_mapped),
          TEST(test_live_limit), TEST(test_live_limit_threads), TEST(test_rate_bucket),
          TEST(test_listener_rate), TEST(test_eviction_order), TEST(test_bounded_flood))
