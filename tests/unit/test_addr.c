/* test_addr.c - addr.h (parse, format, compare, hash) and parse.h (durations,
 * sizes, integers, booleans): pure functions, table driven. */
#include "unit.h"

#include <net/if.h>

#include "sluice/addr.h"
#include "sluice/parse.h"

#include <arpa/inet.h>
#include <limits.h>

/* ---- addr_parse ---- */

static void test_addr_ipv4(void)
{
    struct sockaddr_any a;
    CHECK(addr_parse("127.0.0.1:8080", 0, &a) == NULL);
    CHECK_EQ_INT(a.u.sa.sa_family, AF_INET);
    CHECK_EQ_INT(a.len, sizeof(struct sockaddr_in));
    CHECK_EQ_INT(ntohs(a.u.in4.sin_port), 8080);
    CHECK_EQ_INT(ntohl(a.u.in4.sin_addr.s_addr), 0x7f000001);

    CHECK(addr_parse("0.0.0.0:1", 0, &a) == NULL);
    CHECK_EQ_INT(ntohs(a.u.in4.sin_port), 1);
    CHECK(addr_parse("255.255.255.255:65535", 0, &a) == NULL);
    CHECK_EQ_INT(ntohs(a.u.in4.sin_port), 65535);
    CHECK_EQ_INT(a.u.in4.sin_addr.s_addr, 0xffffffffu);

    /* Literal addresses only: no host names, no short forms. */
    CHECK(addr_parse("localhost:80", 0, &a) != NULL);
    CHECK(addr_parse("1.2.3:80", 0, &a) != NULL);
    CHECK(addr_parse("1.2.3.256:80", 0, &a) != NULL);
    CHECK(addr_parse("1.2.3.4.5:80", 0, &a) != NULL);
    CHECK(addr_parse(" 1.2.3.4:80", 0, &a) != NULL);
    CHECK(addr_parse("", 0, &a) != NULL);
    CHECK(addr_parse(NULL, 0, &a) != NULL);
}

static void test_addr_bad_ports(void)
{
    struct sockaddr_any a;
    static const char *const bad[] = {
        "127.0.0.1:0",   "127.0.0.1:65536", "127.0.0.1:99999999999999999999",
        "127.0.0.1:-1",  "127.0.0.1:+80",   "127.0.0.1:80x",
        "127.0.0.1:x80", "127.0.0.1: 80",   "127.0.0.1:80 ",
        "127.0.0.1:",    "[::1]:0",         "[::1]:65536",
        "[::1]:http",    "[::1]:",
    };
    for (size_t i = 0; i < UNIT_LEN(bad); i++)
        CHECK_MSG(addr_parse(bad[i], ADDR_ALLOW_WILDCARD, &a) != NULL, "'%s' accepted", bad[i]);
}

static void test_addr_missing_port(void)
{
    struct sockaddr_any a;
    CHECK(addr_parse("127.0.0.1", 0, &a) != NULL);
    CHECK(addr_parse("[::1]", 0, &a) != NULL);
    CHECK(addr_parse("[::1]80", 0, &a) != NULL);
    CHECK(addr_parse("[::1", 0, &a) != NULL);
    CHECK(addr_parse("*", ADDR_ALLOW_WILDCARD, &a) != NULL);
}

static void test_addr_ipv6(void)
{
    struct sockaddr_any a;
    CHECK(addr_parse("[::1]:443", 0, &a) == NULL);
    CHECK_EQ_INT(a.u.sa.sa_family, AF_INET6);
    CHECK_EQ_INT(a.len, sizeof(struct sockaddr_in6));
    CHECK_EQ_INT(ntohs(a.u.in6.sin6_port), 443);
    CHECK(IN6_IS_ADDR_LOOPBACK(&a.u.in6.sin6_addr));

    CHECK(addr_parse("[2001:db8::1:2]:9002", 0, &a) == NULL);
    CHECK(addr_parse("[::ffff:10.0.0.1]:80", 0, &a) == NULL);
    CHECK(addr_parse("[::]:80", 0, &a) == NULL);

    /* Unbracketed IPv6 is ambiguous about the port: rejected. */
    CHECK(addr_parse("::1:80", 0, &a) != NULL);
    CHECK(addr_parse("2001:db8::1:80", 0, &a) != NULL);
    CHECK(addr_parse("::1", ADDR_ALLOW_WILDCARD, &a) != NULL);
    /* Brackets hold IPv6 only; no empty brackets. */
    CHECK(addr_parse("[1.2.3.4]:80", 0, &a) != NULL);
    CHECK(addr_parse("[]:80", 0, &a) != NULL);
    CHECK(addr_parse("[:::1]:80", 0, &a) != NULL);
    CHECK(addr_parse("[::1]:80:81", 0, &a) != NULL);
}

/* Scoped (link-local) addresses: the zone names an interface that exists;
 * formatting gives the name back. "lo" exists everywhere. */
static void test_addr_ipv6_zone(void)
{
    struct sockaddr_any a;
    unsigned int lo = if_nametoindex("lo");
    REQUIRE(lo != 0);
    CHECK(addr_parse("[fe80::1%lo]:80", 0, &a) == NULL);
    CHECK_EQ_INT(a.u.in6.sin6_scope_id, lo);
    char buf[ADDR_STRLEN];
    addr_format(&a.u.sa, a.len, buf, sizeof(buf));
    CHECK_STR(buf, "[fe80::1%lo]:80");
    char numeric[32];
    snprintf(numeric, sizeof(numeric), "[fe80::2%%%u]:81", lo);
    CHECK(addr_parse(numeric, 0, &a) == NULL && a.u.in6.sin6_scope_id == lo);
    const char *why = addr_parse("[fe80::1%nosuchif0]:80", 0, &a);
    CHECK(why != NULL && strstr(why, "no such network interface") != NULL);
    CHECK(addr_parse("[fe80::1%]:80", 0, &a) != NULL);
    CHECK(addr_parse("[fe80::1%999999]:80", 0, &a) != NULL);
    CHECK(addr_parse("[fe80::1%averyveryverylongname]:80", 0, &a) != NULL);
    /* Two scopes are two addresses. */
    struct sockaddr_any b;
    CHECK(addr_parse("[fe80::1]:80", 0, &b) == NULL);
    CHECK(addr_parse("[fe80::1%lo]:80", 0, &a) == NULL && !addr_equal(&a, &b));
}

static void test_addr_unix(void)
{
    struct sockaddr_any a;
    CHECK(addr_parse("unix:/run/app.sock", ADDR_ALLOW_UNIX, &a) == NULL);
    CHECK_EQ_INT(a.u.sa.sa_family, AF_UNIX);
    CHECK_STR(a.u.un.sun_path, "/run/app.sock");
    CHECK_EQ_INT(a.len, offsetof(struct sockaddr_un, sun_path) + strlen("/run/app.sock") + 1);

    /* Only where allowed (listeners take IP addresses only). */
    CHECK(addr_parse("unix:/run/app.sock", 0, &a) != NULL);
    CHECK(addr_parse("unix:/run/app.sock", ADDR_ALLOW_WILDCARD, &a) != NULL);
    CHECK(addr_parse("unix:", ADDR_ALLOW_UNIX, &a) != NULL);
    CHECK(addr_parse("unix:relative.sock", ADDR_ALLOW_UNIX, &a) != NULL);

    /* sun_path is 108 bytes with its NUL: 107 characters fit, 108 do not. */
    char path[256];
    size_t max = sizeof(a.u.un.sun_path) - 1;
    strcpy(path, "unix:/");
    memset(path + 6, 'x', max - 1);
    path[6 + max - 1] = '\0';
    CHECK_EQ_INT(strlen(path + 5), max);
    CHECK(addr_parse(path, ADDR_ALLOW_UNIX, &a) == NULL);
    CHECK_EQ_INT(strlen(a.u.un.sun_path), max);
    strcat(path, "x");
    CHECK(addr_parse(path, ADDR_ALLOW_UNIX, &a) != NULL);
    memset(path + 6, 'y', 200);
    path[206] = '\0';
    CHECK(addr_parse(path, ADDR_ALLOW_UNIX, &a) != NULL);
}

static void test_addr_wildcard(void)
{
    struct sockaddr_any a;
    CHECK(addr_parse("*:80", 0, &a) != NULL);
    CHECK(addr_parse(":80", 0, &a) != NULL);
    CHECK(addr_parse("*:80", ADDR_ALLOW_UNIX, &a) != NULL);

    CHECK(addr_parse("*:80", ADDR_ALLOW_WILDCARD, &a) == NULL);
    CHECK_EQ_INT(a.u.sa.sa_family, AF_INET);
    CHECK_EQ_INT(a.u.in4.sin_addr.s_addr, htonl(INADDR_ANY));
    CHECK_EQ_INT(ntohs(a.u.in4.sin_port), 80);

    CHECK(addr_parse(":8080", ADDR_ALLOW_WILDCARD, &a) == NULL);
    CHECK_EQ_INT(a.u.in4.sin_addr.s_addr, htonl(INADDR_ANY));
    CHECK_EQ_INT(ntohs(a.u.in4.sin_port), 8080);
    CHECK(addr_parse("*:0", ADDR_ALLOW_WILDCARD, &a) != NULL);
    CHECK(addr_parse("**:80", ADDR_ALLOW_WILDCARD, &a) != NULL);
}

/* ---- addr_format ---- */

static void round_trip(const char *s, int flags)
{
    struct sockaddr_any a, b;
    char buf[ADDR_STRLEN];
    if (!CHECK_MSG(addr_parse(s, flags, &a) == NULL, "'%s' rejected", s))
        return;
    addr_format(&a.u.sa, a.len, buf, sizeof(buf));
    CHECK_STR(buf, s);
    CHECK_MSG(addr_parse(buf, flags, &b) == NULL, "'%s' rejected", buf);
    CHECK_MSG(addr_equal(&a, &b), "'%s' changed in a round trip", s);
}

static void test_addr_format(void)
{
    round_trip("127.0.0.1:8080", 0);
    round_trip("10.1.2.3:1", 0);
    round_trip("[::1]:9002", 0);
    round_trip("[2001:db8::1]:443", 0);
    round_trip("[::ffff:10.0.0.1]:80", 0);
    round_trip("unix:/run/app.sock", ADDR_ALLOW_UNIX);

    /* Canonical form: zeros compressed, lower case. */
    struct sockaddr_any a;
    char buf[ADDR_STRLEN];
    CHECK(addr_parse("[2001:DB8:0:0:0:0:0:1]:80", 0, &a) == NULL);
    addr_format(&a.u.sa, a.len, buf, sizeof(buf));
    CHECK_STR(buf, "[2001:db8::1]:80");
    CHECK(addr_parse("*:80", ADDR_ALLOW_WILDCARD, &a) == NULL);
    addr_format(&a.u.sa, a.len, buf, sizeof(buf));
    CHECK_STR(buf, "0.0.0.0:80");

    /* Truncates but always terminates; size 0 writes nothing. */
    CHECK(addr_parse("192.168.100.200:65535", 0, &a) == NULL);
    memset(buf, '#', sizeof(buf));
    addr_format(&a.u.sa, a.len, buf, 8);
    CHECK_EQ_INT(strlen(buf), 7);
    CHECK(memcmp(buf, "192.168", 7) == 0);
    memset(buf, '#', sizeof(buf));
    addr_format(&a.u.sa, a.len, buf, 0);
    CHECK_EQ_INT(buf[0], '#');

    /* Unknown family and unnamed unix sockets still give something. */
    struct sockaddr_any u;
    memset(&u, 0, sizeof(u));
    u.u.sa.sa_family = AF_UNSPEC;
    addr_format(&u.u.sa, sizeof(u.u), buf, sizeof(buf));
    CHECK_STR(buf, "-");
    u.u.sa.sa_family = AF_UNIX;
    addr_format(&u.u.sa, sizeof(sa_family_t), buf, sizeof(buf));
    CHECK_STR(buf, "unix:-");
}

/* ---- addr_equal and addr_hash_ip ---- */

static void test_addr_equal(void)
{
    struct sockaddr_any a, b;
    CHECK(addr_parse("127.0.0.1:80", 0, &a) == NULL);
    CHECK(addr_parse("127.0.0.1:80", 0, &b) == NULL);
    CHECK(addr_equal(&a, &b));
    CHECK(addr_parse("127.0.0.1:81", 0, &b) == NULL);
    CHECK(!addr_equal(&a, &b));
    CHECK(addr_parse("127.0.0.2:80", 0, &b) == NULL);
    CHECK(!addr_equal(&a, &b));
    CHECK(addr_parse("[::ffff:127.0.0.1]:80", 0, &b) == NULL);
    CHECK(!addr_equal(&a, &b));
    /* The wildcard spellings are one address (duplicate-bind detection). */
    CHECK(addr_parse("*:80", ADDR_ALLOW_WILDCARD, &a) == NULL);
    CHECK(addr_parse(":80", ADDR_ALLOW_WILDCARD, &b) == NULL);
    CHECK(addr_equal(&a, &b));
    CHECK(addr_parse("0.0.0.0:80", ADDR_ALLOW_WILDCARD, &b) == NULL);
    CHECK(addr_equal(&a, &b));
    CHECK(addr_parse("[::1]:80", 0, &a) == NULL);
    CHECK(addr_parse("[0:0::1]:80", 0, &b) == NULL);
    CHECK(addr_equal(&a, &b));
    CHECK(addr_parse("unix:/a", ADDR_ALLOW_UNIX, &a) == NULL);
    CHECK(addr_parse("unix:/a", ADDR_ALLOW_UNIX, &b) == NULL);
    CHECK(addr_equal(&a, &b));
    CHECK(addr_parse("unix:/b", ADDR_ALLOW_UNIX, &b) == NULL);
    CHECK(!addr_equal(&a, &b));
}

static void test_addr_hash_ip(void)
{
    struct sockaddr_any a, b;
    CHECK(addr_parse("10.0.0.1:1000", 0, &a) == NULL);
    CHECK(addr_parse("10.0.0.1:2000", 0, &b) == NULL);
    CHECK(addr_hash_ip(&a.u.sa) == addr_hash_ip(&b.u.sa));
    CHECK(addr_parse("10.0.0.2:1000", 0, &b) == NULL);
    CHECK(addr_hash_ip(&a.u.sa) != addr_hash_ip(&b.u.sa));

    CHECK(addr_parse("[2001:db8::1]:1", 0, &a) == NULL);
    CHECK(addr_parse("[2001:db8::1]:65535", 0, &b) == NULL);
    CHECK(addr_hash_ip(&a.u.sa) == addr_hash_ip(&b.u.sa));
    CHECK(addr_parse("[2001:db8::2]:1", 0, &b) == NULL);
    CHECK(addr_hash_ip(&a.u.sa) != addr_hash_ip(&b.u.sa));
    /* Both halves of the IPv6 address count. */
    CHECK(addr_parse("[2001:db9::1]:1", 0, &b) == NULL);
    CHECK(addr_hash_ip(&a.u.sa) != addr_hash_ip(&b.u.sa));

    /* Neighbouring addresses spread over the whole 64 bits: the top bit and
     * the low bit are each set about half the time over 4096 addresses. */
    int top = 0, low = 0;
    for (unsigned i = 0; i < 4096; i++) {
        struct sockaddr_in in = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x0a000000u + i)};
        unsigned long long h = addr_hash_ip((struct sockaddr *)&in);
        top += (int)(h >> 63);
        low += (int)(h & 1);
    }
    CHECK_MSG(top > 1848 && top < 2248, "top bit set %d/4096", top);
    CHECK_MSG(low > 1848 && low < 2248, "low bit set %d/4096", low);
}

static void test_addr_is_loopback(void)
{
    static const struct {
        const char *addr;
        bool loopback;
    } cases[] = {
        {"127.0.0.1:80", true},
        {"127.255.255.254:80", true},
        {"127.1.2.3:1", true},
        {"126.255.255.255:80", false},
        {"128.0.0.1:80", false},
        {"10.0.0.1:80", false},
        {"0.0.0.0:80", false},
        {"[::1]:80", true},
        {"[::]:80", false},
        {"[::2]:80", false},
        {"[::ffff:127.0.0.1]:80", true},
        {"[::ffff:10.0.0.1]:80", false},
        {"[fe80::1]:80", false},
        {"[2001:db8::1]:80", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sockaddr_any a;
        if (!CHECK_MSG(addr_parse(cases[i].addr, 0, &a) == NULL, "parse %s", cases[i].addr))
            continue;
        CHECK_MSG(addr_is_loopback(&a.u.sa) == cases[i].loopback, "%s: expected %s", cases[i].addr,
                  cases[i].loopback ? "loopback" : "not loopback");
    }
    struct sockaddr_any u;
    CHECK(addr_parse("unix:/run/x.sock", ADDR_ALLOW_UNIX, &u) == NULL);
    CHECK(!addr_is_loopback(&u.u.sa));
}

/* ---- parse.h ---- */

static void test_parse_duration(void)
{
    static const struct {
        const char *s;
        int64_t ms;
    } good[] = {
        {"250ms", 250},
        {"0ms", 0},
        {"0", 0},
        {"3s", 3000},
        {"3", 3000},
        {"1.5s", 1500},
        {"1.5", 1500},
        {"0.25s", 250},
        {"5m", 300000},
        {"1.5m", 90000},
        {"1h", 3600000},
        {"24h", 86400000},
        {"720h", 2592000000LL},
        {"2592000", 2592000000LL},
        {"30m", 1800000},
        {"43200m", 2592000000LL},
    };
    for (size_t i = 0; i < UNIT_LEN(good); i++) {
        int64_t ms = -7;
        bool ok = parse_duration_ms(good[i].s, &ms);
        CHECK_MSG(ok, "'%s' rejected", good[i].s);
        CHECK_MSG(ms == good[i].ms, "'%s' -> %lld, want %lld", good[i].s, (long long)ms,
                  (long long)good[i].ms);
    }
    static const char *const bad[] = {
        "",        "ms",     "s",
        "-1",      "-1s",    "+1s",
        " 1s",     "1s ",    "1 s",
        "1S",      "1sec",   "1d",
        "1w",      "5x",     "1ms5",
        "1.5.5s",  ".5s",    "1e3",
        "0x10",    "0x10s",  "1e400",
        "inf",     "nan",    "721h",
        "2592001", "43201m", "99999999999999999999999999h",
        "1h1m",    "1.",     "1.s",
        "1..5s",   "0x1p3s", "Infinity",
        "1,5s",
    };
    for (size_t i = 0; i < UNIT_LEN(bad); i++) {
        int64_t ms = -7;
        bool ok = parse_duration_ms(bad[i], &ms);
        CHECK_MSG(!ok, "'%s' accepted as %lld ms", bad[i], (long long)ms);
        if (!ok)
            CHECK_MSG(ms == -7, "'%s' clobbered the output", bad[i]);
    }
    int64_t ms = -7;
    CHECK(!parse_duration_ms(NULL, &ms));
}

static void test_parse_size(void)
{
    static const struct {
        const char *s;
        uint64_t n;
    } good[] = {
        {"0", 0},          {"4096", 4096},  {"16k", 16384},
        {"16K", 16384},    {"1m", 1048576}, {"1M", 1048576},
        {"64m", 67108864}, {"1k", 1024},    {"18446744073709551615", UINT64_MAX},
    };
    for (size_t i = 0; i < UNIT_LEN(good); i++) {
        uint64_t n = 7;
        bool ok = parse_size(good[i].s, &n);
        CHECK_MSG(ok, "'%s' rejected", good[i].s);
        CHECK_MSG(n == good[i].n, "'%s' -> %llu", good[i].s, (unsigned long long)n);
    }
    static const char *const bad[] = {
        "",
        "k",
        "-1",
        "+1",
        " 1",
        "1 ",
        "1 k",
        "16kb",
        "16KiB",
        "1.5k",
        "0x10",
        "abc",
        "16kk",
        "1t",
        "1e3",
        "18446744073709551616",
        "18014398509481984k",
        "17592186044416m",
    };
    for (size_t i = 0; i < UNIT_LEN(bad); i++) {
        uint64_t n = 7;
        bool ok = parse_size(bad[i], &n);
        CHECK_MSG(!ok, "'%s' accepted as %llu", bad[i], (unsigned long long)n);
        if (!ok)
            CHECK_MSG(n == 7, "'%s' clobbered the output", bad[i]);
    }
    uint64_t n;
    CHECK(!parse_size(NULL, &n));
    /* The largest sizes that still fit. */
    CHECK(parse_size("18014398509481983k", &n));
    CHECK(n == 18014398509481983ULL * 1024);
}

static void test_parse_int_range(void)
{
    long v = 7;
    CHECK(parse_int_range("0", 0, 10, &v) && v == 0);
    CHECK(parse_int_range("10", 0, 10, &v) && v == 10);
    CHECK(parse_int_range("007", 0, 10, &v) && v == 7);
    CHECK(parse_int_range("-5", -10, 10, &v) && v == -5);
    CHECK(parse_int_range("9223372036854775807", 0, LONG_MAX, &v) && v == LONG_MAX);
    CHECK(parse_int_range("-9223372036854775808", LONG_MIN, 0, &v) && v == LONG_MIN);
    v = 7;
    static const char *const bad[] = {
        "11",
        "-1",
        "",
        "+5",
        " 5",
        "5 ",
        "5x",
        "x5",
        "0x5",
        "5.0",
        "--5",
        "-",
        "1e1",
        "9223372036854775808",
        "99999999999999999999999",
    };
    for (size_t i = 0; i < UNIT_LEN(bad); i++)
        CHECK_MSG(!parse_int_range(bad[i], 0, 10, &v), "'%s' accepted", bad[i]);
    CHECK(!parse_int_range("-11", -10, 10, &v));
    CHECK(!parse_int_range(NULL, 0, 10, &v));
    CHECK_EQ_INT(v, 7);
}

static void test_parse_bool(void)
{
    static const char *const yes[] = {"on", "yes", "true", "1", "ON", "Yes", "TRUE"};
    static const char *const no[] = {"off", "no", "false", "0", "OFF", "No", "False"};
    static const char *const bad[] = {"", "2", "y", "n", "enabled", "on ", " off", "truee", "00"};
    for (size_t i = 0; i < UNIT_LEN(yes); i++) {
        bool b = false;
        CHECK_MSG(parse_bool(yes[i], &b) && b, "'%s'", yes[i]);
    }
    for (size_t i = 0; i < UNIT_LEN(no); i++) {
        bool b = true;
        CHECK_MSG(parse_bool(no[i], &b) && !b, "'%s'", no[i]);
    }
    for (size_t i = 0; i < UNIT_LEN(bad); i++) {
        bool b = true;
        CHECK_MSG(!parse_bool(bad[i], &b) && b, "'%s' accepted", bad[i]);
    }
}

static void test_parse_escapes(void)
{
    static const struct {
        const char *in;
        const char *out;
        size_t len;
    } good[] = {
        {"", "", 0},
        {"PING", "PING", 4},
        {"GET / HTTP/1.0\\r\\n\\r\\n", "GET / HTTP/1.0\r\n\r\n", 18},
        {"a\\tb", "a\tb", 3},
        {"back\\\\slash", "back\\slash", 10},
        {"\\x41\\x6a\\x4F", "AjO", 3},
        {"nul\\x00byte", "nul\0byte", 8},
        {"\\xff", "\xff", 1},
    };
    for (size_t i = 0; i < UNIT_LEN(good); i++) {
        char *out = NULL;
        size_t len = 99;
        const char *why = parse_escapes(good[i].in, &out, &len);
        if (!CHECK_MSG(why == NULL, "'%s': %s", good[i].in, why ? why : ""))
            continue;
        CHECK_MSG(len == good[i].len && memcmp(out, good[i].out, len) == 0, "'%s' decoded wrongly",
                  good[i].in);
        CHECK_EQ_INT(out[len], '\0');
        free(out);
    }
    static const char *const bad[] = {"\\",   "abc\\", "\\q",   "\\0",   "\\x",
                                      "\\x4", "\\x4g", "\\xg4", "ok\\x1"};
    for (size_t i = 0; i < UNIT_LEN(bad); i++) {
        char *out = (char *)"untouched";
        size_t len = 99;
        CHECK_MSG(parse_escapes(bad[i], &out, &len) != NULL, "'%s' accepted", bad[i]);
        CHECK_STR(out, "untouched");
    }
}

static void test_parse_mode(void)
{
    static const struct {
        const char *s;
        int mode;
    } good[] = {{"0600", 0600}, {"600", 0600}, {"0660", 0660},
                {"777", 0777},  {"0", 0},      {"0777", 0777}};
    for (size_t i = 0; i < UNIT_LEN(good); i++) {
        int m = -1;
        bool ok = parse_mode(good[i].s, &m);
        CHECK_MSG(ok && m == good[i].mode, "'%s' -> %o", good[i].s, (unsigned)m);
    }
    static const char *const bad[] = {"",     "0800",  "8",    "1777", "7777",      "00600",
                                      "-600", "0x1ff", "600 ", " 600", "rw-------", "06o0"};
    for (size_t i = 0; i < UNIT_LEN(bad); i++) {
        int m = -1;
        CHECK_MSG(!parse_mode(bad[i], &m) && m == -1, "'%s' accepted", bad[i]);
    }
    int m = -1;
    CHECK(!parse_mode(NULL, &m));
}

UNIT_MAIN(TEST(test_addr_ipv4), TEST(test_addr_bad_ports), TEST(test_addr_missing_port),
          TEST(test_addr_ipv6), TEST(test_addr_ipv6_zone), TEST(test_addr_unix), TEST(test_addr_wildcard),
          TEST(test_addr_format), TEST(test_addr_equal), TEST(test_addr_hash_ip),
          TEST(test_addr_is_loopback),
          TEST(test_parse_duration), TEST(test_parse_size), TEST(test_parse_int_range),
          TEST(test_parse_bool), TEST(test_parse_escapes), TEST(test_parse_mode))
