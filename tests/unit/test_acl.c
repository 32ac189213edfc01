/* test_acl.c - acl.h: CIDR parsing, first-match-wins ordering, v4-mapped
 * clients, list files, and 100,000 random networks cross-checked against
 * a linear scan of the same rules. */
#include "unit.h"

#include "sluice/acl.h"
#include "sluice/common.h"

#include <arpa/inet.h>
#include <netinet/in.h>

static struct sockaddr_in6 sa6(const char *s)
{
    struct sockaddr_in6 a = {.sin6_family = AF_INET6};
    if (inet_pton(AF_INET6, s, &a.sin6_addr) != 1)
        abort();
    return a;
}

static struct sockaddr_in sa4(const char *s)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    if (inet_pton(AF_INET, s, &a.sin_addr) != 1)
        abort();
    return a;
}

static bool allows(const struct acl *a, const char *addr)
{
    if (strchr(addr, ':') != NULL) {
        struct sockaddr_in6 s = sa6(addr);
        return acl_allows(a, (struct sockaddr *)&s);
    }
    struct sockaddr_in s = sa4(addr);
    return acl_allows(a, (struct sockaddr *)&s);
}

static const char *parse(const char *s, struct acl_cidr *c)
{
    static char why[200];
    return acl_cidr_parse(s, strlen(s), c, why, sizeof(why));
}

static void test_parse(void)
{
    struct acl_cidr c;
    CHECK(parse("10.0.0.0/8", &c) == NULL);
    CHECK_EQ_INT(c.family, AF_INET);
    CHECK_EQ_INT(c.len, 8);
    CHECK_EQ_INT(c.addr[0], 10);
    CHECK(parse("1.2.3.4", &c) == NULL);
    CHECK_EQ_INT(c.len, 32);
    CHECK(parse("0.0.0.0/0", &c) == NULL);
    CHECK_EQ_INT(c.len, 0);
    CHECK(parse("255.255.255.254/31", &c) == NULL);
    CHECK(parse("128.0.0.0/1", &c) == NULL);
    CHECK(parse("::/0", &c) == NULL);
    CHECK_EQ_INT(c.family, AF_INET6);
    CHECK(parse("::1", &c) == NULL);
    CHECK_EQ_INT(c.len, 128);
    CHECK(parse("2001:db8::/32", &c) == NULL);
    CHECK(parse("2001:db8::fffe/127", &c) == NULL);
    CHECK(parse("8000::/1", &c) == NULL);
    /* v4-mapped networks become IPv4 ones */
    CHECK(parse("::ffff:10.0.0.0/104", &c) == NULL);
    CHECK_EQ_INT(c.family, AF_INET);
    CHECK_EQ_INT(c.len, 8);
    CHECK_EQ_INT(c.addr[0], 10);
    CHECK(parse("::ffff:1.2.3.4", &c) == NULL);
    CHECK_EQ_INT(c.family, AF_INET);
    CHECK_EQ_INT(c.len, 32);
    CHECK(parse("::/80", &c) == NULL);
    CHECK_EQ_INT(c.family, AF_INET6);

    /* errors */
    const char *bad[] = {"",
                         "10.0.0.0/33",
                         "::/129",
                         "10.0.0.1/8",
                         "10.0.0.0/",
                         "10.0.0.0/-1",
                         "10.0.0.0/+8",
                         "10.0.0.0/8/8",
                         "10.0.0",
                         "10.0.0.256",
                         "host",
                         "1.2.3.4/0x8",
                         "2001:db8::1/32",
                         "::1/127",
                         "128.0.0.0/0",
                         "1.2.3.4 ",
                         "[::1]",
                         "10.0.0.0/0008",
                         ":::"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
        CHECK_MSG(parse(bad[i], &c) != NULL, "'%s' accepted", bad[i]);
    char why[200];
    CHECK(acl_cidr_parse("10.0.0.1/8", 10, &c, why, sizeof(why)) != NULL);
    CHECK_MSG(strstr(why, "10.0.0.0/8") != NULL, "%s", why);
    /* n bytes, not the NUL */
    CHECK(acl_cidr_parse("10.0.0.0/8junk", 10, &c, why, sizeof(why)) == NULL);
}

static void test_empty_allows(void)
{
    struct acl *a = acl_new();
    REQUIRE(a != NULL);
    CHECK(allows(a, "1.2.3.4"));
    CHECK(allows(a, "::1"));
    CHECK(allows(NULL, "1.2.3.4"));
    struct sockaddr un = {.sa_family = AF_UNIX};
    CHECK(acl_allows(a, &un));
    CHECK_EQ_INT(acl_entries(a), 0);
    acl_free(a);
}

static struct acl *build(const char *const *lines, size_t n)
{
    struct acl *a = acl_new();
    char why[200];
    for (size_t i = 0; i < n; i++) {
        bool allow = strncmp(lines[i], "allow ", 6) == 0;
        if (acl_add_words(a, lines[i] + (allow ? 6 : 5), (uint32_t)i, allow, why, sizeof(why)) !=
            0) {
            fprintf(stderr, "# %s: %s\n", lines[i], why);
            abort();
        }
    }
    return a;
}

static void test_first_match_wins(void)
{
    /* nginx's example shape */
    const char *rules[] = {"deny 192.168.1.1", "allow 192.168.1.0/24 10.1.0.0/16",
                           "allow 2001:db8::/32", "deny all"};
    struct acl *a = build(rules, ARRAY_SIZE(rules));
    CHECK(!allows(a, "192.168.1.1"));
    CHECK(allows(a, "192.168.1.2"));
    CHECK(allows(a, "192.168.1.255"));
    CHECK(!allows(a, "192.168.2.1"));
    CHECK(allows(a, "10.1.200.3"));
    CHECK(!allows(a, "10.2.0.1"));
    CHECK(allows(a, "2001:db8::1"));
    CHECK(allows(a, "2001:db8:ffff::1"));
    CHECK(!allows(a, "2001:db9::1"));
    CHECK(!allows(a, "::1"));
    acl_free(a);

    /* a wider rule first shadows a narrower one after it */
    const char *rules2[] = {"allow 10.0.0.0/8", "deny 10.1.2.3", "deny 10.0.0.0/8"};
    a = build(rules2, ARRAY_SIZE(rules2));
    CHECK(allows(a, "10.1.2.3"));
    CHECK(allows(a, "11.0.0.0")); /* default allow */
    acl_free(a);

    const char *rules3[] = {"deny 10.1.2.3", "allow 10.0.0.0/8", "deny 10.0.0.0/8"};
    a = build(rules3, ARRAY_SIZE(rules3));
    CHECK(!allows(a, "10.1.2.3"));
    CHECK(allows(a, "10.1.2.4"));
    acl_free(a);
}

static void test_edges(void)
{
    const char *r1[] = {"deny 0.0.0.0/1"};
    struct acl *a = build(r1, 1);
    CHECK(!allows(a, "0.0.0.0"));
    CHECK(!allows(a, "127.255.255.255"));
    CHECK(allows(a, "128.0.0.0"));
    CHECK(allows(a, "::"));
    acl_free(a);

    const char *r2[] = {"allow 10.0.0.2/31", "deny all"};
    a = build(r2, 2);
    CHECK(!allows(a, "10.0.0.1"));
    CHECK(allows(a, "10.0.0.2"));
    CHECK(allows(a, "10.0.0.3"));
    CHECK(!allows(a, "10.0.0.4"));
    acl_free(a);

    const char *r3[] = {"allow 255.255.255.255 0.0.0.0", "deny 0.0.0.0/0"};
    a = build(r3, 2);
    CHECK(allows(a, "255.255.255.255"));
    CHECK(allows(a, "0.0.0.0"));
    CHECK(!allows(a, "255.255.255.254"));
    CHECK(allows(a, "::1")); /* 0.0.0.0/0 is IPv4 only */
    acl_free(a);

    const char *r4[] = {"allow 2001:db8::/127", "allow ::1", "deny ::/0"};
    a = build(r4, 3);
    CHECK(allows(a, "2001:db8::"));
    CHECK(allows(a, "2001:db8::1"));
    CHECK(!allows(a, "2001:db8::2"));
    CHECK(allows(a, "::1"));
    CHECK(!allows(a, "::2"));
    CHECK(!allows(a, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
    CHECK(allows(a, "1.2.3.4"));
    acl_free(a);

    const char *r5[] = {"deny 8000::/1 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"};
    a = build(r5, 1);
    CHECK(allows(a, "7fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
    CHECK(!allows(a, "8000::"));
    CHECK(!allows(a, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
    acl_free(a);

    /* prefix lengths across the 64-bit halves */
    const char *r6[] = {"deny 2001:db8:0:1::/64", "deny 2001:db8:0:2:8000::/65"};
    a = build(r6, 2);
    CHECK(!allows(a, "2001:db8:0:1:ffff::1"));
    CHECK(allows(a, "2001:db8:0:2:7fff::1"));
    CHECK(!allows(a, "2001:db8:0:2:8000::1"));
    acl_free(a);
}

static void test_v4_mapped(void)
{
    const char *rules[] = {"allow 10.0.0.0/8", "allow ::ffff:192.168.0.0/112", "deny all"};
    struct acl *a = build(rules, ARRAY_SIZE(rules));
    CHECK(allows(a, "::ffff:10.1.2.3"));
    CHECK(allows(a, "10.1.2.3"));
    CHECK(allows(a, "192.168.3.4"));
    CHECK(allows(a, "::ffff:192.168.3.4"));
    CHECK(!allows(a, "::ffff:11.1.2.3"));
    CHECK(!allows(a, "::10.1.2.3")); /* v4-compatible, not mapped */
    acl_free(a);
}

static void test_words(void)
{
    struct acl *a = acl_new();
    char why[200];
    CHECK_EQ_INT(acl_add_words(a, "", 0, true, why, sizeof(why)), -1);
    CHECK_EQ_INT(acl_add_words(a, "  \t ", 0, true, why, sizeof(why)), -1);
    CHECK_EQ_INT(acl_add_words(a, "10.0.0.0/8 bogus", 0, true, why, sizeof(why)), -1);
    CHECK_MSG(strstr(why, "'bogus'") != NULL, "%s", why);
    CHECK_EQ_INT(acl_add_words(a, " all\t1.2.3.4 ", 0, true, why, sizeof(why)), 0);
    CHECK_EQ_INT(acl_add_words(a, "ALL", 1, true, why, sizeof(why)), -1);
    acl_free(a);
}

static void test_file(void)
{
    struct acl *a = acl_new();
    char err[300];
    size_t n = 0;
    const char text[] = "# block list\n\n10.0.0.0/8\n  192.168.1.1  # one host\r\n2001:db8::/32\n"
                        "\t\n1.2.3.4"; /* no final newline */
    CHECK_EQ_INT(acl_load_buffer(a, text, sizeof(text) - 1, "list", 3, false, &n, err, sizeof(err)),
                 0);
    CHECK_EQ_INT(n, 4);
    CHECK(!allows(a, "10.9.9.9"));
    CHECK(!allows(a, "192.168.1.1"));
    CHECK(!allows(a, "1.2.3.4"));
    CHECK(allows(a, "192.168.1.2"));
    CHECK(!allows(a, "2001:db8::5"));

    const char bad[] = "10.0.0.0/8\n\n# x\n10.0.0.1/8\n";
    CHECK_EQ_INT(acl_load_buffer(a, bad, sizeof(bad) - 1, "f.txt", 4, false, &n, err, sizeof(err)),
                 -1);
    CHECK_MSG(strstr(err, "f.txt:4: '10.0.0.1/8': host bits") == err, "%s", err);
    const char two[] = "1.1.1.1 2.2.2.2\n";
    CHECK_EQ_INT(acl_load_buffer(a, two, sizeof(two) - 1, "f", 4, false, &n, err, sizeof(err)), -1);
    CHECK_MSG(strstr(err, "f:1: ") == err && strstr(err, "one network per line"), "%s", err);
    const char nul[] = "1.1.1.1\0\n";
    CHECK_EQ_INT(acl_load_buffer(a, nul, sizeof(nul) - 1, "f", 4, false, &n, err, sizeof(err)), -1);

    CHECK_EQ_INT(acl_load_file(a, "/nonexistent/list", 5, true, &n, err, sizeof(err)), -1);
    CHECK_MSG(strstr(err, "/nonexistent/list: cannot open") == err, "%s", err);
    CHECK_EQ_INT(acl_load_file(a, "/", 5, true, &n, err, sizeof(err)), -1);
    CHECK_MSG(strstr(err, "not a regular file") != NULL, "%s", err);
    acl_free(a);
}

/* ---- 100,000 random networks against a linear first-match scan ---- */

struct ref_rule {
    struct acl_cidr c;
    bool allow;
};

static uint64_t rng = 0x243F6A8885A308D3ull;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static bool in_net(const struct acl_cidr *c, const uint8_t *addr, int fam)
{
    if (c->family != fam)
        return false;
    for (int bit = 0; bit < c->len; bit++) {
        int byte = bit / 8, m = 0x80 >> (bit % 8);
        if ((c->addr[byte] & m) != (addr[byte] & m))
            return false;
    }
    return true;
}

static bool ref_allows(const struct ref_rule *r, size_t n, const uint8_t *addr, int fam)
{
    for (size_t i = 0; i < n; i++)
        if (in_net(&r[i].c, addr, fam))
            return r[i].allow;
    return true;
}

/* Addresses cluster in a few /8s (v4) and one /32 (v6) so that rules
 * overlap and nest. */
static void random_addr(uint8_t *a, int fam)
{
    uint64_t x = next_rand(), y = next_rand();
    memset(a, 0, 16);
    if (fam == AF_INET) {
        uint32_t v = (uint32_t)x;
        v = (v & 0x03ffffffu) | ((uint32_t)(y % 4) << 26); /* 0..15.x.x.x */
        a[0] = (uint8_t)(v >> 24), a[1] = (uint8_t)(v >> 16), a[2] = (uint8_t)(v >> 8),
        a[3] = (uint8_t)v;
    } else {
        a[0] = 0x20, a[1] = 0x01, a[2] = 0x0d, a[3] = 0xb8;
        for (int i = 4; i < 16; i++)
            a[i] = (uint8_t)(i < 8 ? (x >> (i * 8)) & 0x03 : y >> ((i - 8) * 8));
    }
}

static void random_rule(struct ref_rule *r)
{
    int fam = next_rand() % 3 == 0 ? AF_INET6 : AF_INET;
    int max = fam == AF_INET ? 32 : 128;
    uint64_t pick = next_rand() % 100;
    /* mostly hosts, some short prefixes, a few very short */
    int len = pick < 70   ? max
              : pick < 97 ? (int)(max / 2 + next_rand() % (max / 2))
                          : (int)(next_rand() % (max / 4 + 1));
    random_addr(r->c.addr, fam);
    r->c.family = (uint8_t)fam;
    r->c.len = (uint8_t)len;
    for (int bit = len; bit < max; bit++)
        r->c.addr[bit / 8] &= (uint8_t) ~(0x80 >> (bit % 8));
    r->allow = next_rand() & 1;
}

#define NRULES 100000
#define NPROBES 20000

static void test_random_vs_linear(void)
{
    struct ref_rule *r = calloc(NRULES, sizeof(*r));
    REQUIRE(r != NULL);
    struct acl *a = acl_new();
    REQUIRE(a != NULL);
    for (uint32_t i = 0; i < NRULES; i++) {
        random_rule(&r[i]);
        REQUIRE(acl_add(a, &r[i].c, i, r[i].allow) == 0);
    }
    CHECK(acl_entries(a) > NRULES / 2);
    fprintf(stderr, "# %zu entries, %zu bytes (%.1f per entry)\n", acl_entries(a), acl_bytes(a),
            (double)acl_bytes(a) / (double)acl_entries(a));
    int mism = 0, denied = 0;
    for (int i = 0; i < NPROBES; i++) {
        int fam = i % 2 ? AF_INET6 : AF_INET;
        uint8_t addr[16];
        /* half of the probes hit a rule's own network */
        if (i % 4 < 2) {
            const struct ref_rule *x = &r[next_rand() % NRULES];
            fam = x->c.family;
            memcpy(addr, x->c.addr, 16);
        } else {
            random_addr(addr, fam);
        }
        bool want = ref_allows(r, NRULES, addr, fam);
        bool got;
        if (fam == AF_INET) {
            struct sockaddr_in s = {.sin_family = AF_INET};
            memcpy(&s.sin_addr, addr, 4);
            got = acl_allows(a, (struct sockaddr *)&s);
            /* and the same client as a v4-mapped IPv6 address */
            struct sockaddr_in6 m = {.sin6_family = AF_INET6};
            m.sin6_addr.s6_addr[10] = m.sin6_addr.s6_addr[11] = 0xff;
            memcpy(&m.sin6_addr.s6_addr[12], addr, 4);
            if (acl_allows(a, (struct sockaddr *)&m) != got)
                mism++;
        } else {
            struct sockaddr_in6 s = {.sin6_family = AF_INET6};
            memcpy(&s.sin6_addr, addr, 16);
            got = acl_allows(a, (struct sockaddr *)&s);
        }
        denied += !want;
        if (got != want && ++mism <= 5)
            fprintf(stderr, "# mismatch on probe %d\n", i);
    }
    CHECK_EQ_INT(mism, 0);
    CHECK(denied > NPROBES / 10); /* the probes exercised both answers */
    CHECK(denied < NPROBES * 9 / 10);
    acl_free(a);
    free(r);
}

UNIT_MAIN(TEST(test_parse), TEST(test_empty_allows), TEST(test_first_match_wins), TEST(test_edges),
          TEST(test_v4_mapped), TEST(test_words), TEST(test_file), TEST(test_random_vs_linear))
