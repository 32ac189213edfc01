/* test_tls_hello.c - tls_hello.h: the ClientHello parser behind
 * `route = sni`. ClientHellos captured from openssl, gnutls-cli and curl
 * (tls_hellos.h) and hand-built ones: the server name found, every strict
 * prefix asks for more (with a `need` that never overshoots), hellos cut
 * into records of any size, the 16 KiB bound, and malformed lengths and
 * names invalid with a reason, staying invalid whatever follows. */
#include "unit.h"

#include "sluice/tls_hello.h"

#include "tls_hellos.h"

#define BIG (3 * TLS_HELLO_MAX)

static enum tls_hello_result parse(const uint8_t *buf, size_t len, struct tls_hello *h)
{
    memset(h, 0xA5, sizeof(*h));
    return tls_hello_parse(buf, len, h);
}

/* The parse on a heap copy of exactly len bytes, so ASan sees a read past
 * the end. */
static enum tls_hello_result parse_exact(const uint8_t *buf, size_t len, struct tls_hello *h)
{
    uint8_t *copy = malloc(len ? len : 1);
    if (copy == NULL)
        abort();
    memcpy(copy, buf, len);
    enum tls_hello_result r = parse(copy, len, h);
    free(copy);
    return r;
}

/* The handshake bytes of a sequence of records, re-cut into records of at
 * most k bytes (record version 3.1) in out. Returns the new length. */
static size_t reframe(const uint8_t *in, size_t len, size_t k, uint8_t *out, size_t size)
{
    static uint8_t hs[BIG];
    size_t n = 0;
    for (size_t pos = 0; pos + 5 <= len;) {
        size_t rl = (size_t)in[pos + 3] << 8 | in[pos + 4];
        if (pos + 5 + rl > len || n + rl > sizeof(hs))
            abort();
        memcpy(hs + n, in + pos + 5, rl);
        n += rl;
        pos += 5 + rl;
    }
    size_t o = 0;
    for (size_t i = 0; i < n; i += k) {
        size_t c = n - i < k ? n - i : k;
        if (o + 5 + c > size)
            abort();
        out[o++] = 0x16;
        out[o++] = 0x03;
        out[o++] = 0x01;
        out[o++] = (uint8_t)(c >> 8);
        out[o++] = (uint8_t)c;
        memcpy(out + o, hs + i, c);
        o += c;
    }
    return o;
}

/* ---- hand-built hellos ---- */

struct bytes {
    uint8_t b[BIG];
    size_t n;
};

static void put8(struct bytes *b, unsigned v)
{
    b->b[b->n++] = (uint8_t)v;
}

static void put16(struct bytes *b, unsigned v)
{
    put8(b, v >> 8);
    put8(b, v);
}

static void put(struct bytes *b, const void *p, size_t n)
{
    memcpy(b->b + b->n, p, n);
    b->n += n;
}

/* A server_name extension with one entry per name: type 0 (host_name). */
static void ext_sni(struct bytes *e, const char *name)
{
    size_t n = strlen(name);
    put16(e, 0);                 /* server_name */
    put16(e, (unsigned)(n + 5)); /* extension length */
    put16(e, (unsigned)(n + 3)); /* list length */
    put8(e, 0);                  /* host_name */
    put16(e, (unsigned)n);
    put(e, name, n);
}

/* One record holding a ClientHello with the given extensions block (NULL:
 * no extensions at all). Layout: record header 0..4, handshake header
 * 5..8, version 9, random 11, session id length 43, cipher suites length
 * 44, suite 46, compression length 48, method 49, extensions length 50,
 * extensions from 52. */
static void hello(struct bytes *out, const struct bytes *ext)
{
    struct bytes body = {.n = 0};
    put16(&body, 0x0303);
    for (int i = 0; i < 32; i++)
        put8(&body, (unsigned)i);
    put8(&body, 0);  /* no session id */
    put16(&body, 2); /* one cipher suite */
    put16(&body, 0x1301);
    put8(&body, 1); /* one compression method: null */
    put8(&body, 0);
    if (ext != NULL) {
        put16(&body, (unsigned)ext->n);
        put(&body, ext->b, ext->n);
    }
    out->n = 0;
    put8(out, 0x16);
    put16(out, 0x0301);
    put16(out, (unsigned)(body.n + 4));
    put8(out, 1);
    put8(out, (unsigned)(body.n >> 16));
    put16(out, (unsigned)(body.n & 0xffff));
    put(out, body.b, body.n);
}

static void hello_sni(struct bytes *out, const char *name)
{
    static struct bytes e;
    e.n = 0;
    ext_sni(&e, name);
    hello(out, &e);
}

/* Expect DONE with this name on the whole input, and NEED_MORE with a
 * `need` in (prefix, whole] on every strict prefix. */
static void check_done_and_prefixes(int at, const uint8_t *buf, size_t len, const char *sni)
{
    struct tls_hello h;
    enum tls_hello_result r = parse_exact(buf, len, &h);
    if (!unit_checkf(r == TLS_HELLO_DONE, __FILE__, at, "done", "%s: %s", tls_hello_result_str(r),
                     r == TLS_HELLO_INVALID ? h.why : ""))
        return;
    unit_checkf(strcmp(h.sni, sni) == 0 && h.sni_len == strlen(sni), __FILE__, at, "sni",
                "'%s' (%zu) != '%s'", h.sni, h.sni_len, sni);
    unit_checkf(h.consumed == len, __FILE__, at, "consumed", "%zu != %zu", h.consumed, len);
    int bad = 0;
    for (size_t n = 0; n < len && bad < 3; n++) {
        r = parse_exact(buf, n, &h);
        if (!unit_checkf(r == TLS_HELLO_NEED_MORE && h.need > n && h.need <= len, __FILE__, at,
                         "prefix", "prefix %zu of %zu: %s need %zu", n, len,
                         tls_hello_result_str(r), h.need))
            bad++;
    }
}

/* ---- captured hellos ---- */

static void test_captured(void)
{
    check_done_and_prefixes(__LINE__, hello_openssl, sizeof(hello_openssl), "api.example.com");
    check_done_and_prefixes(__LINE__, hello_openssl_nosni, sizeof(hello_openssl_nosni), "");
    check_done_and_prefixes(__LINE__, hello_openssl_tls12, sizeof(hello_openssl_tls12),
                            "www.example.org");
    check_done_and_prefixes(__LINE__, hello_gnutls, sizeof(hello_gnutls), "api.example.com");
    /* curl was given X.Example.COM and sends it lower-cased itself (the
     * parser's case folding is tested with hand-built hellos). */
    check_done_and_prefixes(__LINE__, hello_curl_mixed_case, sizeof(hello_curl_mixed_case),
                            "x.example.com");
}

/* Bytes after the hello (the client's next records) are not the parser's. */
static void test_bytes_after_the_hello(void)
{
    static uint8_t buf[sizeof(hello_openssl) + 64];
    memcpy(buf, hello_openssl, sizeof(hello_openssl));
    memset(buf + sizeof(hello_openssl), 0x17, 64);
    struct tls_hello h;
    CHECK_EQ_INT(parse_exact(buf, sizeof(buf), &h), TLS_HELLO_DONE);
    CHECK_EQ_INT(h.consumed, sizeof(hello_openssl));
    CHECK_STR(h.sni, "api.example.com");
}

/* The handshake message spread over records of every size from 1 byte up:
 * the same answer, and every strict prefix still asks for more. */
static void test_fragmented_over_records(void)
{
    static uint8_t buf[BIG];
    const struct {
        const uint8_t *b;
        size_t n;
        const char *sni;
    } in[] = {
        {hello_openssl, sizeof(hello_openssl), "api.example.com"},
        {hello_gnutls, sizeof(hello_gnutls), "api.example.com"},
        {hello_openssl_nosni, sizeof(hello_openssl_nosni), ""},
    };
    for (size_t i = 0; i < UNIT_LEN(in); i++) {
        for (size_t k = 1; k <= in[i].n; k += k < 16 ? 1 : 37) {
            size_t n = reframe(in[i].b, in[i].n, k, buf, sizeof(buf));
            struct tls_hello h;
            enum tls_hello_result r = parse_exact(buf, n, &h);
            CHECK_MSG(r == TLS_HELLO_DONE && strcmp(h.sni, in[i].sni) == 0 && h.consumed == n,
                      "input %zu, records of %zu: %s '%s' %s", i, k, tls_hello_result_str(r),
                      r == TLS_HELLO_DONE ? h.sni : "", r == TLS_HELLO_INVALID ? h.why : "");
        }
    }
    size_t n = reframe(hello_openssl, sizeof(hello_openssl), 1, buf, sizeof(buf));
    check_done_and_prefixes(__LINE__, buf, n, "api.example.com");
    n = reframe(hello_gnutls, sizeof(hello_gnutls), 7, buf, sizeof(buf));
    check_done_and_prefixes(__LINE__, buf, n, "api.example.com");
}

/* ---- hand-built hellos ---- */

static void test_hand_built(void)
{
    static struct bytes b, e;
    hello_sni(&b, "api.example.com");
    check_done_and_prefixes(__LINE__, b.b, b.n, "api.example.com");

    hello(&b, NULL); /* no extensions block at all */
    check_done_and_prefixes(__LINE__, b.b, b.n, "");
    e.n = 0;
    hello(&b, &e); /* an empty one */
    check_done_and_prefixes(__LINE__, b.b, b.n, "");

    /* A trailing dot is dropped; case is folded; '_' and digits are fine. */
    hello_sni(&b, "API.Example.COM.");
    check_done_and_prefixes(__LINE__, b.b, b.n, "api.example.com");
    hello_sni(&b, "_srv-1.x9.example");
    check_done_and_prefixes(__LINE__, b.b, b.n, "_srv-1.x9.example");

    /* Longest name: 253 bytes in labels of 63. */
    char name[300];
    memset(name, 'a', 253);
    name[63] = name[127] = name[191] = '.';
    name[253] = '\0';
    hello_sni(&b, name);
    check_done_and_prefixes(__LINE__, b.b, b.n, name);

    /* Other extensions around it; a name type other than host_name is
     * stepped over, before or after the host name. */
    e.n = 0;
    put16(&e, 0x002b); /* supported_versions */
    put16(&e, 3);
    put8(&e, 2);
    put16(&e, 0x0304);
    put16(&e, 0); /* server_name */
    put16(&e, 2 + 3 + 4 + 3 + 5);
    put16(&e, 3 + 4 + 3 + 5);
    put8(&e, 7); /* some future name type */
    put16(&e, 4);
    put(&e, "abcd", 4);
    put8(&e, 0);
    put16(&e, 5);
    put(&e, "a.b.c", 5);
    put16(&e, 0xff01); /* renegotiation_info, empty */
    put16(&e, 0);
    hello(&b, &e);
    check_done_and_prefixes(__LINE__, b.b, b.n, "a.b.c");

    e.n = 0;
    put16(&e, 0);
    put16(&e, 2 + 3 + 2);
    put16(&e, 3 + 2);
    put8(&e, 9);
    put16(&e, 2);
    put(&e, "zz", 2);
    hello(&b, &e);
    check_done_and_prefixes(__LINE__, b.b, b.n, ""); /* no host_name among them */
}

/* ---- the 16 KiB bound ---- */

/* A hello whose padding extension makes the record total bytes. */
static void padded(struct bytes *b, size_t total)
{
    static struct bytes e;
    e.n = 0;
    ext_sni(&e, "api.example.com");
    size_t base = 52 + e.n + 4; /* up to the padding's data */
    put16(&e, 0x0015);          /* padding */
    put16(&e, (unsigned)(total - base));
    memset(e.b + e.n, 0, total - base);
    e.n += total - base;
    hello(b, &e);
}

static void test_bound(void)
{
    static struct bytes b;
    struct tls_hello h;
    padded(&b, TLS_HELLO_MAX);
    REQUIRE_EQ_INT(b.n, TLS_HELLO_MAX);
    check_done_and_prefixes(__LINE__, b.b, b.n, "api.example.com");

    /* One byte more: the handshake length alone says it cannot fit, so it
     * is invalid as soon as that length is read. */
    padded(&b, TLS_HELLO_MAX + 1);
    CHECK_EQ_INT(parse_exact(b.b, 9, &h), TLS_HELLO_INVALID);
    CHECK_STR(h.why, "ClientHello longer than 16 KiB");
    CHECK_EQ_INT(parse_exact(b.b, b.n, &h), TLS_HELLO_INVALID);

    /* A small hello cut into 1-byte records takes 6 bytes per byte: past
     * 16 KiB of records it is invalid, whatever comes next. */
    padded(&b, 4000);
    static uint8_t buf[BIG];
    size_t n = reframe(b.b, b.n, 1, buf, sizeof(buf));
    REQUIRE(n > TLS_HELLO_MAX);
    enum tls_hello_result r = parse_exact(buf, TLS_HELLO_MAX - 6, &h);
    CHECK_MSG(r == TLS_HELLO_INVALID, "%s", tls_hello_result_str(r));
    CHECK_STR(h.why, "no complete ClientHello in the first 16 KiB");
    CHECK_EQ_INT(parse_exact(buf, n, &h), TLS_HELLO_INVALID);
    /* The earliest it can tell: `need` of a NEED_MORE prefix stays within
     * the bound. */
    r = parse_exact(buf, 900, &h);
    CHECK_MSG(r == TLS_HELLO_NEED_MORE && h.need <= TLS_HELLO_MAX, "%s need %zu",
              tls_hello_result_str(r), h.need);
}

/* ---- malformed ---- */

/* Invalid with this reason, also once 300 more bytes follow. */
static void check_invalid(int at, const uint8_t *buf, size_t len, const char *why)
{
    static uint8_t more[BIG];
    struct tls_hello h;
    enum tls_hello_result r = parse_exact(buf, len, &h);
    if (!unit_checkf(r == TLS_HELLO_INVALID, __FILE__, at, "invalid", "%s",
                     tls_hello_result_str(r)))
        return;
    unit_checkf(h.why != NULL && strcmp(h.why, why) == 0, __FILE__, at, "why", "'%s' != '%s'",
                h.why ? h.why : "(null)", why);
    unit_checkf(h.sni[0] == '\0', __FILE__, at, "no sni", "'%s'", h.sni);
    memcpy(more, buf, len);
    memset(more + len, 0x16, 300);
    r = parse_exact(more, len + 300, &h);
    unit_checkf(r == TLS_HELLO_INVALID && strcmp(h.why, why) == 0, __FILE__, at, "stays invalid",
                "%s", tls_hello_result_str(r));
}

static void test_not_tls(void)
{
    static const char http[] = "GET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n";
    /* One byte is enough to know. */
    check_invalid(__LINE__, (const uint8_t *)http, 1, "not a TLS handshake record");
    check_invalid(__LINE__, (const uint8_t *)http, strlen(http), "not a TLS handshake record");
    static const uint8_t appdata[] = {0x17, 0x03, 0x03, 0x00, 0x01, 0x00};
    check_invalid(__LINE__, appdata, sizeof(appdata), "not a TLS handshake record");
    /* SSL 2.0 compatible hello (high bit set length). */
    static const uint8_t sslv2[] = {0x80, 0x2e, 0x01, 0x03, 0x01};
    check_invalid(__LINE__, sslv2, sizeof(sslv2), "not a TLS handshake record");
    static const uint8_t badver[] = {0x16, 0x02};
    check_invalid(__LINE__, badver, sizeof(badver), "bad record version");
    static const uint8_t empty[] = {0x16, 0x03, 0x01, 0x00, 0x00, 0x01};
    check_invalid(__LINE__, empty, sizeof(empty), "empty handshake record");
    static const uint8_t huge[] = {0x16, 0x03, 0x01, 0x40, 0x01};
    check_invalid(__LINE__, huge, sizeof(huge), "record longer than 16 KiB");
    /* A ServerHello (type 2), or any other message first. */
    static const uint8_t server[] = {0x16, 0x03, 0x03, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00};
    check_invalid(__LINE__, server, sizeof(server), "first handshake message is not a ClientHello");
    struct tls_hello h;
    CHECK_EQ_INT(parse_exact((const uint8_t *)"", 0, &h), TLS_HELLO_NEED_MORE);
    CHECK_EQ_INT(h.need, 9);
}

/* Each malformed length of a hand-built hello, one at a time. */
static void test_malformed_lengths(void)
{
    static struct bytes b;
    /* Offsets: see hello(). With one SNI "api.example.com" (15 bytes):
     * ext type 52, ext length 54, list length 56, name type 58, name
     * length 59, name 61..75. */
#define MUTATE(off, val, why)                                                                      \
    do {                                                                                           \
        hello_sni(&b, "api.example.com");                                                          \
        b.b[off] = (uint8_t)(val);                                                                 \
        check_invalid(__LINE__, b.b, b.n, why);                                                    \
    } while (0)
    MUTATE(43, 33, "session id longer than 32 bytes");
    MUTATE(43, 200, "session id longer than 32 bytes");
    MUTATE(45, 3, "bad cipher_suites length");
    MUTATE(45, 0, "bad cipher_suites length");
    MUTATE(44, 0xff, "a field overruns the ClientHello");
    MUTATE(48, 0, "no compression methods");
    MUTATE(48, 0xff, "a field overruns the ClientHello");
    MUTATE(51, 19, "extensions length does not match the ClientHello length");
    MUTATE(51, 21, "extensions length does not match the ClientHello length");
    MUTATE(55, 21, "an extension overruns the extensions");
    MUTATE(57, 19, "server_name list length does not match its extension");
    MUTATE(57, 17, "server_name list length does not match its extension");
    MUTATE(60, 16, "server_name list overruns its extension");
    MUTATE(60, 0, "empty server name");
    MUTATE(64, ' ', "server_name is not a valid host name");
    MUTATE(64, 0, "server_name is not a valid host name");
    MUTATE(64, 0xc3, "server_name is not a valid host name");
    MUTATE(61, '.', "server_name is not a valid host name");
    MUTATE(65, '.', "server_name is not a valid host name"); /* "api..xample" */
    /* The handshake length says the body ends a byte before the extensions. */
    MUTATE(8, (b.b[8] - 1), "extensions length does not match the ClientHello length");
#undef MUTATE

    /* A handshake length shorter than the fixed fields. */
    hello_sni(&b, "api.example.com");
    b.b[6] = 0;
    b.b[7] = 0;
    b.b[8] = 20;
    check_invalid(__LINE__, b.b, b.n, "a field overruns the ClientHello");

    /* Names that are no host names. */
    static const char *const bad[] = {"a b",   ".",   "..",    "a..b",         ".a",
                                      "a.b..", "a/b", "a:443", "*.example.com"};
    for (size_t i = 0; i < UNIT_LEN(bad); i++) {
        hello_sni(&b, bad[i]);
        check_invalid(__LINE__, b.b, b.n, "server_name is not a valid host name");
    }
    char name[300];
    memset(name, 'a', 64); /* a label of 64 */
    name[64] = '\0';
    hello_sni(&b, name);
    check_invalid(__LINE__, b.b, b.n, "server_name is not a valid host name");
    memset(name, 'a', 255);
    name[63] = name[127] = name[191] = '.';
    name[255] = '\0';
    hello_sni(&b, name);
    check_invalid(__LINE__, b.b, b.n, "host name longer than 253 bytes");
    name[254] = '\0'; /* 254 bytes, no trailing dot: too long as well */
    hello_sni(&b, name);
    check_invalid(__LINE__, b.b, b.n, "server_name is not a valid host name");

    /* Two host names; two server_name extensions; an empty list. */
    static struct bytes e;
    e.n = 0;
    put16(&e, 0);
    put16(&e, 2 + 4 + 4);
    put16(&e, 4 + 4);
    put8(&e, 0);
    put16(&e, 1);
    put8(&e, 'a');
    put8(&e, 0);
    put16(&e, 1);
    put8(&e, 'b');
    hello(&b, &e);
    check_invalid(__LINE__, b.b, b.n, "two host names in server_name");
    e.n = 0;
    ext_sni(&e, "a.example");
    ext_sni(&e, "b.example");
    hello(&b, &e);
    check_invalid(__LINE__, b.b, b.n, "two server_name extensions");
    e.n = 0;
    put16(&e, 0);
    put16(&e, 2);
    put16(&e, 0);
    hello(&b, &e);
    check_invalid(__LINE__, b.b, b.n, "empty server_name list");
    e.n = 0;
    put16(&e, 0);
    put16(&e, 1);
    put8(&e, 0);
    hello(&b, &e);
    check_invalid(__LINE__, b.b, b.n, "server_name list overruns its extension");
}

/* A record of another type between the pieces of a fragmented hello. */
static void test_interleaved_record(void)
{
    static uint8_t buf[BIG];
    size_t n = reframe(hello_openssl, sizeof(hello_openssl), 100, buf, sizeof(buf));
    REQUIRE(n > 210);
    buf[105] = 0x17; /* the second record's type */
    check_invalid(__LINE__, buf, n, "another record type inside the ClientHello");
    check_invalid(__LINE__, buf, 106, "another record type inside the ClientHello");
}

UNIT_MAIN(TEST(test_captured), TEST(test_bytes_after_the_hello), TEST(test_fragmented_over_records),
          TEST(test_hand_built), TEST(test_bound), TEST(test_not_tls), TEST(test_malformed_lengths),
          TEST(test_interleaved_record))
