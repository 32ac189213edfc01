/* test_proxy.c - proxy_proto.h: the PROXY protocol v1/v2 parser and
 * builder. Pure functions, table driven: valid headers (addresses, ports,
 * consumed length, the payload after them untouched), every strict prefix
 * of a valid header asks for more, malformed headers are invalid with a
 * reason, and what proxy_build writes parses back to the same addresses. */
#include "unit.h"

#include "sluice/proxy_proto.h"

#include <arpa/inet.h>
#include <sys/un.h>

static const uint8_t SIG[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* ---- helpers ---- */

static struct sockaddr_in sin4(const char *ip, unsigned port)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, ip, &a.sin_addr) != 1)
        abort();
    return a;
}

static struct sockaddr_in6 sin6(const char *ip, unsigned port)
{
    struct sockaddr_in6 a;
    memset(&a, 0, sizeof(a));
    a.sin6_family = AF_INET6;
    a.sin6_port = htons((uint16_t)port);
    if (inet_pton(AF_INET6, ip, &a.sin6_addr) != 1)
        abort();
    return a;
}

/* "ip:port" or "[ip6]:port" of a parsed address, "family N" otherwise. */
static const char *fmt(const struct sockaddr_ip *a, char *buf, size_t size)
{
    char ip[INET6_ADDRSTRLEN];
    if (a->u.sa.sa_family == AF_INET) {
        inet_ntop(AF_INET, &a->u.in4.sin_addr, ip, sizeof(ip));
        snprintf(buf, size, "%s:%u", ip, ntohs(a->u.in4.sin_port));
    } else if (a->u.sa.sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &a->u.in6.sin6_addr, ip, sizeof(ip));
        snprintf(buf, size, "[%s]:%u", ip, ntohs(a->u.in6.sin6_port));
    } else {
        snprintf(buf, size, "family %d", a->u.sa.sa_family);
    }
    return buf;
}

/* Same family, address and port (sin_zero / flowinfo / scope not compared). */
static bool same_addr(const struct sockaddr_ip *got, const struct sockaddr *want)
{
    if (got->u.sa.sa_family != want->sa_family)
        return false;
    if (want->sa_family == AF_INET) {
        const struct sockaddr_in *w = (const void *)want;
        return got->u.in4.sin_port == w->sin_port &&
               got->u.in4.sin_addr.s_addr == w->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *w = (const void *)want;
    return got->u.in6.sin6_port == w->sin6_port &&
           memcmp(&got->u.in6.sin6_addr, &w->sin6_addr, 16) == 0;
}

static enum proxy_parse_result parse(const void *buf, size_t len, struct proxy_hdr *h,
                                     size_t *consumed, const char **why)
{
    memset(h, 0xA5, sizeof(*h));
    *consumed = (size_t)-1;
    *why = NULL;
    return proxy_parse(buf, len, h, consumed, why);
}

static const char *rname(enum proxy_parse_result r)
{
    return r == PROXY_NEED_MORE ? "NEED_MORE" : r == PROXY_DONE ? "DONE" : r == PROXY_INVALID ? "INVALID" : "?";
}

/* A v2 header: signature, ver_cmd, family, then body (len bytes). */
static size_t v2(uint8_t *out, uint8_t ver_cmd, uint8_t fam, const void *body, size_t len)
{
    memcpy(out, SIG, 12);
    out[12] = ver_cmd;
    out[13] = fam;
    out[14] = (uint8_t)(len >> 8);
    out[15] = (uint8_t)len;
    if (len)
        memcpy(out + 16, body, len);
    return 16 + len;
}

/* Parse `hdr` followed by `payload` in one buffer: DONE, consumed is the
 * header's length, and the buffer (payload included) is not modified. */
static bool parse_with_payload(const void *hdr, size_t hlen, const void *payload, size_t plen,
                               struct proxy_hdr *h)
{
    uint8_t buf[2048], copy[2048];
    if (hlen + plen > sizeof(buf))
        abort();
    memcpy(buf, hdr, hlen);
    if (plen)
        memcpy(buf + hlen, payload, plen);
    memcpy(copy, buf, hlen + plen);
    size_t used;
    const char *why;
    enum proxy_parse_result r = parse(buf, hlen + plen, h, &used, &why);
    bool ok = CHECK_MSG(r == PROXY_DONE, "%s: %s", rname(r), why ? why : "-");
    ok = CHECK_EQ_INT(used, hlen) && ok;
    ok = CHECK(memcmp(buf, copy, hlen + plen) == 0) && ok;
    ok = CHECK(plen == 0 || memcmp(buf + used, payload, plen) == 0) && ok;
    return ok;
}

#define PAYLOAD "GET / HTTP/1.1\r\nHost: x\r\n\r\n\0\r\n\x0D\x0A binary"

/* ---- v1 ---- */

static void test_v1_tcp4(void)
{
    static const char hdr[] = "PROXY TCP4 192.168.0.1 10.0.0.2 56324 443\r\n";
    struct proxy_hdr h;
    char b[64];
    REQUIRE(parse_with_payload(hdr, strlen(hdr), PAYLOAD, sizeof(PAYLOAD) - 1, &h));
    CHECK_EQ_INT(h.version, 1);
    CHECK(!h.local);
    struct sockaddr_in s = sin4("192.168.0.1", 56324), d = sin4("10.0.0.2", 443);
    CHECK_MSG(same_addr(&h.src, (struct sockaddr *)&s), "src %s", fmt(&h.src, b, sizeof(b)));
    CHECK_MSG(same_addr(&h.dst, (struct sockaddr *)&d), "dst %s", fmt(&h.dst, b, sizeof(b)));

    /* No payload at all: the header alone. */
    REQUIRE(parse_with_payload(hdr, strlen(hdr), NULL, 0, &h));

    /* Extremes of ports and addresses. */
    static const char edge[] = "PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n";
    REQUIRE(parse_with_payload(edge, strlen(edge), "x", 1, &h));
    s = sin4("0.0.0.0", 0);
    d = sin4("255.255.255.255", 65535);
    CHECK(same_addr(&h.src, (struct sockaddr *)&s));
    CHECK(same_addr(&h.dst, (struct sockaddr *)&d));
}

static void test_v1_tcp6(void)
{
    static const char hdr[] = "PROXY TCP6 2001:db8::1 ::1 1 65535\r\n";
    struct proxy_hdr h;
    char b[80];
    REQUIRE(parse_with_payload(hdr, strlen(hdr), PAYLOAD, sizeof(PAYLOAD) - 1, &h));
    CHECK_EQ_INT(h.version, 1);
    CHECK(!h.local);
    struct sockaddr_in6 s = sin6("2001:db8::1", 1), d = sin6("::1", 65535);
    CHECK_MSG(same_addr(&h.src, (struct sockaddr *)&s), "src %s", fmt(&h.src, b, sizeof(b)));
    CHECK_MSG(same_addr(&h.dst, (struct sockaddr *)&d), "dst %s", fmt(&h.dst, b, sizeof(b)));

    /* IPv4-mapped addresses are IPv6 addresses. */
    static const char mapped[] = "PROXY TCP6 ::ffff:10.1.2.3 ::ffff:10.3.2.1 80 8080\r\n";
    REQUIRE(parse_with_payload(mapped, strlen(mapped), "z", 1, &h));
    s = sin6("::ffff:10.1.2.3", 80);
    CHECK(same_addr(&h.src, (struct sockaddr *)&s));

    /* The longest TCP6 line (104 bytes). */
    static const char longest[] = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                                  "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    CHECK_EQ_INT(strlen(longest), 104);
    REQUIRE(parse_with_payload(longest, strlen(longest), PAYLOAD, sizeof(PAYLOAD) - 1, &h));
    d = sin6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
    CHECK(same_addr(&h.dst, (struct sockaddr *)&d));
}

static void test_v1_unknown(void)
{
    struct proxy_hdr h;
    static const char bare[] = "PROXY UNKNOWN\r\n";
    REQUIRE(parse_with_payload(bare, strlen(bare), PAYLOAD, sizeof(PAYLOAD) - 1, &h));
    CHECK_EQ_INT(h.version, 1);
    CHECK(h.local);

    /* Whatever follows UNKNOWN is ignored, up to the 107-byte maximum. */
    static const char addrs[] = "PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n";
    REQUIRE(parse_with_payload(addrs, strlen(addrs), "p", 1, &h));
    CHECK(h.local);
    static const char longest[] = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                                  "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    CHECK_EQ_INT(strlen(longest), PROXY_V1_MAX);
    REQUIRE(parse_with_payload(longest, strlen(longest), PAYLOAD, sizeof(PAYLOAD) - 1, &h));
    CHECK(h.local);
}

/* ---- v2 ---- */

static void test_v2_ipv4(void)
{
    static const uint8_t body[12] = {192, 0, 2, 1, 198, 51, 100, 7, 0xD2, 0x04, 0x01, 0xBB};
    uint8_t hdr[64];
    size_t n = v2(hdr, 0x21, 0x11, body, sizeof(body));
    struct proxy_hdr h;
    char b[64];
    REQUIRE(parse_with_payload(hdr, n, PAYLOAD, sizeof(PAYLOAD) - 1, &h));
    CHECK_EQ_INT(n, 28);
    CHECK_EQ_INT(h.version, 2);
    CHECK(!h.local);
    struct sockaddr_in s = sin4("192.0.2.1", 0xD204), d = sin4("198.51.100.7", 443);
    CHECK_MSG(same_addr(&h.src, (struct sockaddr *)&s), "src %s", fmt(&h.src, b, sizeof(b)));
    CHECK_MSG(same_addr(&h.dst, (struct sockaddr *)&d), "dst %s", fmt(&h.dst, b, sizeof(b)));
    /* Payload that looks like another header is still payload. */
    REQUIRE(parse_with_payload(hdr, n, hdr, n, &h));
}

static void test_v2_ipv6(void)
{
    uint8_t body[36];
    struct sockaddr_in6 s = sin6("2001:db8::dead:beef", 40000), d = sin6("fe80::1", 22);
    memcpy(body, &s.sin6_addr, 16);
    memcpy(body + 16, &d.sin6_addr, 16);
    memcpy(body + 32, &s.sin6_port, 2);
    memcpy(body + 34, &d.sin6_port, 2);
    uint8_t hdr[64];
    size_t n = v2(hdr, 0x21, 0x21, body, sizeof(body));
    struct proxy_hdr h;
    char b[80];
    REQUIRE(parse_with_payload(hdr, n, PAYLOAD, sizeof(PAYLOAD) - 1, &h));
    CHECK_EQ_INT(n, 52);
    CHECK_EQ_INT(h.version, 2);
    CHECK(!h.local);
    CHECK_MSG(same_addr(&h.src, (struct sockaddr *)&s), "src %s", fmt(&h.src, b, sizeof(b)));
    CHECK_MSG(same_addr(&h.dst, (struct sockaddr *)&d), "dst %s", fmt(&h.dst, b, sizeof(b)));
}

static void test_v2_local(void)
{
    uint8_t hdr[64];
    struct proxy_hdr h;
    /* LOCAL without addresses: a balancer's health check. */
    size_t n = v2(hdr, 0x20, 0x00, NULL, 0);
    REQUIRE(parse_with_payload(hdr, n, PAYLOAD, sizeof(PAYLOAD) - 1, &h));
    CHECK_EQ_INT(h.version, 2);
    CHECK(h.local);
    /* LOCAL with an address block: the addresses are skipped, not used. */
    static const uint8_t body[12] = {1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2};
    n = v2(hdr, 0x20, 0x11, body, sizeof(body));
    REQUIRE(parse_with_payload(hdr, n, "q", 1, &h));
    CHECK(h.local);
}

static void test_v2_unspec(void)
{
    uint8_t hdr[64];
    struct proxy_hdr h;
    size_t n = v2(hdr, 0x21, 0x00, NULL, 0);
    REQUIRE(parse_with_payload(hdr, n, PAYLOAD, sizeof(PAYLOAD) - 1, &h));
    CHECK_EQ_INT(h.version, 2);
    CHECK(h.local);
    /* UNSPEC with bytes after it: all skipped. */
    n = v2(hdr, 0x21, 0x00, "abcdefgh", 8);
    REQUIRE(parse_with_payload(hdr, n, "r", 1, &h));
    CHECK_EQ_INT(n, 24);
    CHECK(h.local);
}

static void test_v2_tlvs_skipped(void)
{
    /* IPv4 addresses, then TLVs: ALPN "h2", AUTHORITY "example.com", NOOP. */
    uint8_t body[128];
    size_t len = 0;
    static const uint8_t addrs[12] = {10, 0, 0, 1, 10, 0, 0, 2, 0x30, 0x39, 0x00, 0x50};
    memcpy(body, addrs, 12);
    len = 12;
    static const uint8_t tlvs[] = {0x01, 0x00, 0x02, 'h', '2', 0x02, 0x00, 0x0B, 'e',  'x', 'a',
                                   'm',  'p',  'l',  'e', '.', 'c', 'o',  'm',  0x04, 0x00, 0x03,
                                   0x00, 0x00, 0x00};
    memcpy(body + len, tlvs, sizeof(tlvs));
    len += sizeof(tlvs);
    uint8_t hdr[256];
    size_t n = v2(hdr, 0x21, 0x11, body, len);
    struct proxy_hdr h;
    REQUIRE(parse_with_payload(hdr, n, PAYLOAD, sizeof(PAYLOAD) - 1, &h));
    CHECK_EQ_INT(n, 16 + len);
    CHECK(!h.local);
    struct sockaddr_in s = sin4("10.0.0.1", 12345), d = sin4("10.0.0.2", 80);
    CHECK(same_addr(&h.src, (struct sockaddr *)&s));
    CHECK(same_addr(&h.dst, (struct sockaddr *)&d));

    /* IPv6 with TLVs too. */
    uint8_t body6[64] = {0};
    body6[15] = 1;  /* ::1 */
    body6[31] = 2;  /* ::2 */
    body6[33] = 7;  /* port 7 */
    body6[35] = 9;  /* port 9 */
    body6[36] = 0x04; /* NOOP TLV, 5 bytes of value */
    body6[38] = 5;
    n = v2(hdr, 0x21, 0x21, body6, 44);
    REQUIRE(parse_with_payload(hdr, n, "s", 1, &h));
    struct sockaddr_in6 s6 = sin6("::1", 7);
    CHECK(same_addr(&h.src, (struct sockaddr *)&s6));

    /* The largest body allowed: 1024 - 16 bytes (mostly TLVs). */
    static uint8_t big[PROXY_HDR_MAX - 16];
    memset(big, 0, sizeof(big));
    memcpy(big, addrs, 12);
    static uint8_t bighdr[PROXY_HDR_MAX];
    n = v2(bighdr, 0x21, 0x11, big, sizeof(big));
    CHECK_EQ_INT(n, PROXY_HDR_MAX);
    REQUIRE(parse_with_payload(bighdr, n, "t", 1, &h));
    CHECK(same_addr(&h.src, (struct sockaddr *)&s));
}

/* ---- prefixes ---- */

static void check_prefixes(const char *name, const uint8_t *hdr, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        struct proxy_hdr h;
        size_t used;
        const char *why;
        enum proxy_parse_result r = parse(hdr, k, &h, &used, &why);
        CHECK_MSG(r == PROXY_NEED_MORE, "%s: prefix of %zu/%zu bytes gave %s (%s)", name, k, n,
                  rname(r), why ? why : "-");
    }
    struct proxy_hdr h;
    size_t used;
    const char *why;
    enum proxy_parse_result r = parse(hdr, n, &h, &used, &why);
    CHECK_MSG(r == PROXY_DONE && used == n, "%s: whole header gave %s, consumed %zu", name,
              rname(r), used);
}

static void test_prefixes_need_more(void)
{
    static const char *const v1s[] = {
        "PROXY TCP4 192.168.0.1 10.0.0.2 56324 443\r\n",
        "PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n",
        "PROXY TCP6 2001:db8::1 ::1 1 65535\r\n",
        "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
        "65535 65535\r\n",
        "PROXY UNKNOWN\r\n",
        "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
        "65535 65535\r\n",
    };
    for (size_t i = 0; i < UNIT_LEN(v1s); i++)
        check_prefixes(v1s[i], (const uint8_t *)v1s[i], strlen(v1s[i]));

    uint8_t hdr[PROXY_HDR_MAX];
    static const uint8_t a4[12] = {192, 0, 2, 1, 198, 51, 100, 7, 0xD2, 0x04, 0x01, 0xBB};
    uint8_t a6[36];
    memset(a6, 0x42, sizeof(a6));
    uint8_t tl[40];
    memcpy(tl, a4, 12);
    memset(tl + 12, 0, sizeof(tl) - 12);
    tl[12] = 0x04;
    tl[14] = 25; /* NOOP TLV with 25 bytes */
    check_prefixes("v2 PROXY IPv4", hdr, v2(hdr, 0x21, 0x11, a4, sizeof(a4)));
    check_prefixes("v2 PROXY IPv6", hdr, v2(hdr, 0x21, 0x21, a6, sizeof(a6)));
    check_prefixes("v2 LOCAL", hdr, v2(hdr, 0x20, 0x00, NULL, 0));
    check_prefixes("v2 LOCAL IPv4", hdr, v2(hdr, 0x20, 0x11, a4, sizeof(a4)));
    check_prefixes("v2 UNSPEC", hdr, v2(hdr, 0x21, 0x00, NULL, 0));
    check_prefixes("v2 IPv4 + TLV", hdr, v2(hdr, 0x21, 0x11, tl, sizeof(tl)));
    static uint8_t big[PROXY_HDR_MAX - 16];
    memcpy(big, a4, 12);
    check_prefixes("v2 largest", hdr, v2(hdr, 0x21, 0x11, big, sizeof(big)));
}

/* ---- invalid ---- */

static void expect_invalid(const char *name, const void *buf, size_t len)
{
    struct proxy_hdr h;
    size_t used;
    const char *why;
    enum proxy_parse_result r = parse(buf, len, &h, &used, &why);
    if (CHECK_MSG(r == PROXY_INVALID, "%s: gave %s (consumed %zu)", name, rname(r), used))
        CHECK_MSG(why != NULL && why[0] != '\0', "%s: no reason given", name);
}

static void expect_invalid_str(const char *s)
{
    expect_invalid(s, s, strlen(s));
}

static void test_invalid_first_bytes(void)
{
    static const char *const bad[] = {
        "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
        "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXZ TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY\r\n",
        "PROXY\tTCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        " PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        "\r\nPROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        "SSH-2.0-OpenSSH_9.2\r\n",
        "x",
    };
    for (size_t i = 0; i < UNIT_LEN(bad); i++)
        expect_invalid_str(bad[i]);
    /* A TLS ClientHello and a lone NUL. */
    static const uint8_t tls[] = {0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc};
    expect_invalid("TLS", tls, sizeof(tls));
    expect_invalid("NUL", "\0", 1);
    expect_invalid("P NUL", "P\0", 2);
    /* Bad v2 signatures: every byte of it wrong in turn, with a full header after. */
    uint8_t hdr[64];
    static const uint8_t a4[12] = {1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2};
    size_t n = v2(hdr, 0x21, 0x11, a4, sizeof(a4));
    for (size_t i = 0; i < 12; i++) {
        uint8_t copy[64];
        memcpy(copy, hdr, n);
        copy[i] ^= 0x20;
        char name[48];
        snprintf(name, sizeof(name), "v2 signature byte %zu", i);
        expect_invalid(name, copy, n);
        /* ...and already when only the bytes up to the bad one are there
         * (except byte 0, which then looks like nothing we know). */
        expect_invalid(name, copy, i + 1);
    }
}

static void test_invalid_v1_no_crlf(void)
{
    /* No CRLF within 107 bytes. */
    char buf[300];
    memset(buf, 'A', sizeof(buf));
    memcpy(buf, "PROXY UNKNOWN ", 14);
    expect_invalid("107 bytes, no CRLF", buf, PROXY_V1_MAX);
    expect_invalid("300 bytes, no CRLF", buf, sizeof(buf));
    /* 106 bytes without a CRLF may still become a 107-byte header. */
    struct proxy_hdr h;
    size_t used;
    const char *why;
    CHECK_EQ_INT(parse(buf, PROXY_V1_MAX - 1, &h, &used, &why), PROXY_NEED_MORE);
    /* A 108-byte line (CRLF at 106..107) is one byte too long. */
    memcpy(buf + 106, "\r\n", 2);
    expect_invalid("108-byte v1 line", buf, 108);
    expect_invalid("108-byte v1 line + payload", buf, sizeof(buf));
    /* ...while the same with CRLF at 105..106 is the 107-byte maximum. */
    memset(buf, 'A', sizeof(buf));
    memcpy(buf, "PROXY UNKNOWN ", 14);
    memcpy(buf + 105, "\r\n", 2);
    CHECK_EQ_INT(parse(buf, sizeof(buf), &h, &used, &why), PROXY_DONE);
    CHECK_EQ_INT(used, PROXY_V1_MAX);
    /* A TCP4 line padded past 107 bytes with a valid-looking tail. */
    char longl[200];
    snprintf(longl, sizeof(longl), "PROXY TCP4 1.2.3.4 5.6.7.8 %0100d 2\r\n", 1);
    expect_invalid("long TCP4", longl, strlen(longl));
    /* CR without LF, LF without CR, NUL inside the line. */
    expect_invalid_str("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX");
    expect_invalid_str("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n");
    expect_invalid_str("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\nXX");
    expect_invalid_str("PROXY TCP4 1.2.3.4\n5.6.7.8 1 2\r\n");
    static const char nul[] = "PROXY TCP4 1.2.3.4\0 5.6.7.8 1 2\r\n";
    expect_invalid("NUL in v1", nul, sizeof(nul) - 1);
}

static void test_invalid_v1_fields(void)
{
    static const char *const bad[] = {
        /* double spaces, leading and trailing spaces */
        "PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8  1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1  2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",
        "PROXY TCP6 ::1  ::2 1 2\r\n",
        "PROXY TCP4\t1.2.3.4 5.6.7.8 1 2\r\n",
        /* bad IPv4 addresses */
        "PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n",
        "PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.x 1 2\r\n",
        "PROXY TCP4 localhost 5.6.7.8 1 2\r\n",
        "PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4 ::1 1 2\r\n",
        "PROXY TCP4 -1.2.3.4 5.6.7.8 1 2\r\n",
        /* bad IPv6 addresses */
        "PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
        "PROXY TCP6 ::1 5.6.7.8 1 2\r\n",
        "PROXY TCP6 ::g ::1 1 2\r\n",
        "PROXY TCP6 1::2::3 ::1 1 2\r\n",
        "PROXY TCP6 [::1] ::1 1 2\r\n",
        "PROXY TCP6 fe80::1%lo ::1 1 2\r\n",
        "PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n",
        /* bad ports: leading zeros, out of range, signs, letters */
        "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 02\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 00 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 080 443\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 99999 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 123456 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 4294967297 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1a 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 0x10 2\r\n",
        "PROXY TCP6 ::1 ::2 1 065535\r\n",
        /* too many / too few fields */
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3 4 5\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8\r\n",
        "PROXY TCP4 1.2.3.4\r\n",
        "PROXY TCP4\r\n",
        "PROXY TCP6 ::1 ::2 1\r\n",
        "PROXY \r\n",
        "PROXY  \r\n",
        /* unknown protocols */
        "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY TCP 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY UNIX /a /b 1 2\r\n",
        "PROXY unknown\r\n",
        "PROXY UNKNOWNX\r\n",
    };
    for (size_t i = 0; i < UNIT_LEN(bad); i++)
        expect_invalid_str(bad[i]);
}

static void test_invalid_v2(void)
{
    uint8_t hdr[PROXY_HDR_MAX + 64];
    static const uint8_t a4[12] = {1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2};
    uint8_t a6[36];
    memset(a6, 1, sizeof(a6));

    /* Version must be 2 (high nibble of byte 12). */
    static const uint8_t versions[] = {0x01, 0x11, 0x31, 0xF1, 0x00, 0x10};
    for (size_t i = 0; i < UNIT_LEN(versions); i++) {
        char name[48];
        snprintf(name, sizeof(name), "v2 ver_cmd 0x%02x", versions[i]);
        expect_invalid(name, hdr, v2(hdr, versions[i], 0x11, a4, sizeof(a4)));
        expect_invalid(name, hdr, 16); /* known from the first 16 bytes */
    }
    /* Command must be LOCAL (0) or PROXY (1). */
    static const uint8_t cmds[] = {0x22, 0x23, 0x2F};
    for (size_t i = 0; i < UNIT_LEN(cmds); i++) {
        char name[48];
        snprintf(name, sizeof(name), "v2 ver_cmd 0x%02x", cmds[i]);
        expect_invalid(name, hdr, v2(hdr, cmds[i], 0x11, a4, sizeof(a4)));
    }
    /* Families other than UNSPEC, TCP over IPv4, TCP over IPv6. */
    static const uint8_t fams[] = {0x12, 0x22, 0x31, 0x32, 0x01, 0x02, 0x10, 0x20, 0x41, 0xFF};
    for (size_t i = 0; i < UNIT_LEN(fams); i++) {
        char name[48];
        snprintf(name, sizeof(name), "v2 family 0x%02x", fams[i]);
        uint8_t body[216];
        memset(body, 0, sizeof(body));
        expect_invalid(name, hdr, v2(hdr, 0x21, fams[i], body, sizeof(body)));
    }
    /* Length beyond 1024 - 16: invalid as soon as the length is known. */
    static const size_t lens[] = {PROXY_HDR_MAX - 15, PROXY_HDR_MAX, 4096, 65535};
    for (size_t i = 0; i < UNIT_LEN(lens); i++) {
        char name[48];
        snprintf(name, sizeof(name), "v2 length %zu", lens[i]);
        v2(hdr, 0x21, 0x11, a4, sizeof(a4));
        hdr[14] = (uint8_t)(lens[i] >> 8);
        hdr[15] = (uint8_t)lens[i];
        expect_invalid(name, hdr, 16);
        expect_invalid(name, hdr, 28);
    }
    {
        /* 1009-byte body: one over, with all its bytes present. */
        static uint8_t big[PROXY_HDR_MAX - 15];
        memcpy(big, a4, 12);
        expect_invalid("v2 body 1009 complete", hdr, v2(hdr, 0x21, 0x11, big, sizeof(big)));
    }
    /* Address block shorter than the family needs. */
    expect_invalid("v2 IPv4 body 0", hdr, v2(hdr, 0x21, 0x11, NULL, 0));
    expect_invalid("v2 IPv4 body 11", hdr, v2(hdr, 0x21, 0x11, a4, 11));
    expect_invalid("v2 IPv6 body 0", hdr, v2(hdr, 0x21, 0x21, NULL, 0));
    expect_invalid("v2 IPv6 body 12", hdr, v2(hdr, 0x21, 0x21, a6, 12));
    expect_invalid("v2 IPv6 body 35", hdr, v2(hdr, 0x21, 0x21, a6, 35));
    /* The same with payload after the short block (it must not be taken
     * for the rest of the addresses). */
    size_t n = v2(hdr, 0x21, 0x11, a4, 8);
    memcpy(hdr + n, "XXXXXXXX", 8);
    expect_invalid("v2 IPv4 body 8 + payload", hdr, n + 8);
}

/* ---- build ---- */

static void test_build_v1(void)
{
    uint8_t buf[128];
    struct sockaddr_in s4 = sin4("192.0.2.1", 12345), d4 = sin4("198.51.100.2", 80);
    size_t n = proxy_build(1, (struct sockaddr *)&s4, (struct sockaddr *)&d4, buf, sizeof(buf));
    static const char want4[] = "PROXY TCP4 192.0.2.1 198.51.100.2 12345 80\r\n";
    CHECK_EQ_INT(n, strlen(want4));
    CHECK(n == strlen(want4) && memcmp(buf, want4, n) == 0);

    struct sockaddr_in6 s6 = sin6("2001:db8::1", 1), d6 = sin6("2001:db8::2", 65535);
    n = proxy_build(1, (struct sockaddr *)&s6, (struct sockaddr *)&d6, buf, sizeof(buf));
    static const char want6[] = "PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n";
    CHECK_EQ_INT(n, strlen(want6));
    CHECK(n == strlen(want6) && memcmp(buf, want6, n) == 0);

    /* The longest: fits the documented 108-byte buffer. */
    struct sockaddr_in6 f = sin6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
    n = proxy_build(1, (struct sockaddr *)&f, (struct sockaddr *)&f, buf, 108);
    CHECK_EQ_INT(n, 104);
    CHECK(n <= PROXY_V1_MAX);

    /* Mixed families, or anything but IPv4/IPv6: UNKNOWN. */
    static const char unknown[] = "PROXY UNKNOWN\r\n";
    n = proxy_build(1, (struct sockaddr *)&s4, (struct sockaddr *)&d6, buf, sizeof(buf));
    CHECK_EQ_INT(n, strlen(unknown));
    CHECK(n == strlen(unknown) && memcmp(buf, unknown, n) == 0);
    n = proxy_build(1, (struct sockaddr *)&s6, (struct sockaddr *)&d4, buf, sizeof(buf));
    CHECK(n == strlen(unknown) && memcmp(buf, unknown, n) == 0);
    struct sockaddr_un un;
    memset(&un, 0, sizeof(un));
    un.sun_family = AF_UNIX;
    n = proxy_build(1, (struct sockaddr *)&un, (struct sockaddr *)&un, buf, sizeof(buf));
    CHECK(n == strlen(unknown) && memcmp(buf, unknown, n) == 0);

    /* Too small a buffer: 0, never a truncated header. */
    CHECK_EQ_INT(proxy_build(1, (struct sockaddr *)&s4, (struct sockaddr *)&d4, buf, 10), 0);
    CHECK_EQ_INT(proxy_build(1, (struct sockaddr *)&s4, (struct sockaddr *)&d4, buf, strlen(want4)), 0);
    CHECK_EQ_INT(proxy_build(1, (struct sockaddr *)&s4, (struct sockaddr *)&d4, buf, strlen(want4) + 1),
                 strlen(want4));
}

static void test_build_v2(void)
{
    uint8_t buf[128];
    struct sockaddr_in s4 = sin4("192.0.2.1", 0x3039), d4 = sin4("198.51.100.2", 0x0050);
    size_t n = proxy_build(2, (struct sockaddr *)&s4, (struct sockaddr *)&d4, buf, sizeof(buf));
    static const uint8_t want4[] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49,
                                    0x54, 0x0A, 0x21, 0x11, 0x00, 0x0C, 192,  0,    2,    1,
                                    198,  51,   100,  2,    0x30, 0x39, 0x00, 0x50};
    CHECK_EQ_INT(n, sizeof(want4));
    CHECK(n == sizeof(want4) && memcmp(buf, want4, n) == 0);

    struct sockaddr_in6 s6 = sin6("2001:db8::1", 0xABCD), d6 = sin6("::1", 443);
    n = proxy_build(2, (struct sockaddr *)&s6, (struct sockaddr *)&d6, buf, sizeof(buf));
    CHECK_EQ_INT(n, 16 + 36);
    CHECK(memcmp(buf, SIG, 12) == 0);
    CHECK_EQ_INT(buf[12], 0x21);
    CHECK_EQ_INT(buf[13], 0x21);
    CHECK_EQ_INT(buf[14], 0);
    CHECK_EQ_INT(buf[15], 36);
    CHECK(memcmp(buf + 16, &s6.sin6_addr, 16) == 0);
    CHECK(memcmp(buf + 32, &d6.sin6_addr, 16) == 0);
    CHECK(buf[48] == 0xAB && buf[49] == 0xCD && buf[50] == 0x01 && buf[51] == 0xBB);

    /* Mixed families: PROXY command, UNSPEC family, no addresses. */
    static const uint8_t unspec[] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51,
                                     0x55, 0x49, 0x54, 0x0A, 0x21, 0x00, 0x00, 0x00};
    n = proxy_build(2, (struct sockaddr *)&s4, (struct sockaddr *)&d6, buf, sizeof(buf));
    CHECK_EQ_INT(n, 16);
    CHECK(n == 16 && memcmp(buf, unspec, 16) == 0);
    n = proxy_build(2, (struct sockaddr *)&s6, (struct sockaddr *)&d4, buf, sizeof(buf));
    CHECK(n == 16 && memcmp(buf, unspec, 16) == 0);

    /* Too small a buffer: 0. */
    CHECK_EQ_INT(proxy_build(2, (struct sockaddr *)&s4, (struct sockaddr *)&d4, buf, 51), 0);
    CHECK_EQ_INT(proxy_build(2, (struct sockaddr *)&s6, (struct sockaddr *)&d6, buf, 52), 52);
}

static void roundtrip_one(int version, const struct sockaddr *s, const struct sockaddr *d)
{
    uint8_t buf[256];
    static const char payload[] = "\r\nPROXY TCP4 6.6.6.6 6.6.6.6 6 6\r\n";
    memset(buf, 0xEE, sizeof(buf));
    size_t n = proxy_build(version, s, d, buf, 128);
    char sb[80], db[80], gb[80];
    struct sockaddr_ip si, di;
    memset(&si, 0, sizeof(si));
    memset(&di, 0, sizeof(di));
    memcpy(&si, s, s->sa_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
    memcpy(&di, d, d->sa_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
    fmt(&si, sb, sizeof(sb));
    fmt(&di, db, sizeof(db));
    if (!CHECK_MSG(n > 0, "v%d %s -> %s: build failed", version, sb, db))
        return;
    CHECK_MSG(version == 1 ? n <= PROXY_V1_MAX : n <= 16 + 36, "v%d: %zu bytes", version, n);
    memcpy(buf + n, payload, sizeof(payload) - 1);
    /* Prefixes of what we build are prefixes of a valid header. */
    for (size_t k = 0; k < n; k++) {
        struct proxy_hdr h;
        size_t used;
        const char *why;
        enum proxy_parse_result r = parse(buf, k, &h, &used, &why);
        if (!CHECK_MSG(r == PROXY_NEED_MORE, "v%d %s -> %s: prefix %zu gave %s", version, sb, db, k,
                       rname(r)))
            break;
    }
    struct proxy_hdr h;
    size_t used;
    const char *why;
    enum proxy_parse_result r = parse(buf, n + sizeof(payload) - 1, &h, &used, &why);
    if (!CHECK_MSG(r == PROXY_DONE, "v%d %s -> %s: parse gave %s (%s)", version, sb, db, rname(r),
                   why ? why : "-"))
        return;
    CHECK_EQ_INT(used, n);
    CHECK_EQ_INT(h.version, version);
    bool same = s->sa_family == d->sa_family;
    CHECK_EQ_INT(h.local, !same);
    if (same) {
        CHECK_MSG(same_addr(&h.src, s), "v%d: src %s came back as %s", version, sb,
                  fmt(&h.src, gb, sizeof(gb)));
        CHECK_MSG(same_addr(&h.dst, d), "v%d: dst %s came back as %s", version, db,
                  fmt(&h.dst, gb, sizeof(gb)));
    }
}

static void test_build_parse_roundtrip(void)
{
    struct sockaddr_in a4[] = {
        sin4("127.0.0.1", 54321), sin4("0.0.0.0", 0),     sin4("255.255.255.255", 65535),
        sin4("10.1.2.3", 1),      sin4("192.0.2.200", 443),
    };
    struct sockaddr_in6 a6[] = {
        sin6("::1", 8080),
        sin6("::", 0),
        sin6("2001:db8::1", 65535),
        sin6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535),
        sin6("::ffff:192.0.2.1", 12345),
        sin6("fe80::1:2:3:4", 22),
        sin6("1:0:0:1:0:0:0:1", 7),
    };
    for (int v = 1; v <= 2; v++) {
        for (size_t i = 0; i < UNIT_LEN(a4); i++)
            for (size_t j = 0; j < UNIT_LEN(a4); j++)
                roundtrip_one(v, (struct sockaddr *)&a4[i], (struct sockaddr *)&a4[j]);
        for (size_t i = 0; i < UNIT_LEN(a6); i++)
            for (size_t j = 0; j < UNIT_LEN(a6); j++)
                roundtrip_one(v, (struct sockaddr *)&a6[i], (struct sockaddr *)&a6[j]);
        /* Mixed: UNKNOWN / UNSPEC, parsed as "keep the real peer". */
        for (size_t i = 0; i < UNIT_LEN(a4); i++)
            for (size_t j = 0; j < UNIT_LEN(a6); j++) {
                roundtrip_one(v, (struct sockaddr *)&a4[i], (struct sockaddr *)&a6[j]);
                roundtrip_one(v, (struct sockaddr *)&a6[j], (struct sockaddr *)&a4[i]);
            }
    }
}

UNIT_MAIN(TEST(test_v1_tcp4), TEST(test_v1_tcp6), TEST(test_v1_unknown), TEST(test_v2_ipv4),
          TEST(test_v2_ipv6), TEST(test_v2_local), TEST(test_v2_unspec), TEST(test_v2_tlvs_skipped),
          TEST(test_prefixes_need_more), TEST(test_invalid_first_bytes),
          TEST(test_invalid_v1_no_crlf), TEST(test_invalid_v1_fields), TEST(test_invalid_v2),
          TEST(test_build_v1), TEST(test_build_v2), TEST(test_build_parse_roundtrip))
