/* tls_hello.c - the ClientHello parser behind `route = sni`: walks the
 * handshake records a client opens with and returns the server_name's
 * host_name. Strict: every length is checked against the one enclosing it
 * before anything is read; anything malformed is invalid and the caller
 * closes the connection. Nothing here touches I/O or allocates. */
#include "sluice/tls_hello.h"

#include <stdbool.h>
#include <string.h>

#define REC_HEADER 5          /* type, version (2), length (2) */
#define REC_HANDSHAKE 22      /* ContentType handshake */
#define REC_PAYLOAD_MAX 16384 /* 2^14: a plaintext record's limit (RFC 8446 5.1) */
#define HS_HEADER 4           /* msg_type, length (3) */
#define HS_CLIENT_HELLO 1
#define EXT_SERVER_NAME 0
#define NAME_HOST 0 /* NameType host_name */

/* Reads the handshake stream out of the record layer: the bytes of the
 * records' payloads, one after the other, record headers stepped over. */
struct reader {
    const uint8_t *buf;
    size_t len;                 /* usable input: at most TLS_HELLO_MAX */
    size_t pos;                 /* next input byte */
    size_t rec_left;            /* payload bytes of the current record not read yet */
    unsigned records;           /* record headers read */
    size_t hs_total;            /* handshake bytes the hello needs, as far as known */
    size_t hs_read;             /* handshake bytes read */
    enum tls_hello_result fail; /* why the last read failed */
    const char *why;
};

static bool invalid(struct reader *r, const char *why)
{
    r->fail = TLS_HELLO_INVALID;
    r->why = why;
    return false;
}

/* Step over the next record header at pos. Checks the bytes of it that are
 * there even when it is incomplete, so a plain-text client is turned away
 * after its first byte. */
static bool next_record(struct reader *r)
{
    size_t have = r->len - r->pos;
    const uint8_t *h = r->buf + r->pos;
    if (have >= 1 && h[0] != REC_HANDSHAKE)
        return invalid(r, r->records == 0 ? "not a TLS handshake record"
                                          : "another record type inside the ClientHello");
    if (have >= 2 && h[1] != 3)
        return invalid(r, "bad record version");
    if (have < REC_HEADER) {
        r->fail = TLS_HELLO_NEED_MORE;
        return false;
    }
    size_t n = (size_t)h[3] << 8 | h[4];
    if (n == 0)
        return invalid(r, "empty handshake record");
    if (n > REC_PAYLOAD_MAX)
        return invalid(r, "record longer than 16 KiB");
    r->pos += REC_HEADER;
    r->rec_left = n;
    r->records++;
    return true;
}

/* Take the next n handshake bytes (into dst unless NULL). */
static bool hs_read(struct reader *r, uint8_t *dst, size_t n)
{
    while (n > 0) {
        if (r->rec_left == 0 && !next_record(r))
            return false;
        size_t k = r->len - r->pos;
        if (k == 0) {
            r->fail = TLS_HELLO_NEED_MORE;
            return false;
        }
        if (k > r->rec_left)
            k = r->rec_left;
        if (k > n)
            k = n;
        if (dst != NULL) {
            memcpy(dst, r->buf + r->pos, k);
            dst += k;
        }
        r->pos += k;
        r->rec_left -= k;
        r->hs_read += k;
        n -= k;
    }
    return true;
}

/* A field of n bytes inside an enclosing one with *left bytes remaining:
 * checked against *left before a byte of it is read. */
static bool field(struct reader *r, size_t *left, uint8_t *dst, size_t n, const char *overrun)
{
    if (n > *left)
        return invalid(r, overrun);
    *left -= n;
    return hs_read(r, dst, n);
}

static bool field_uint(struct reader *r, size_t *left, size_t width, size_t *out,
                       const char *overrun)
{
    uint8_t b[3];
    if (!field(r, left, b, width, overrun))
        return false;
    size_t v = 0;
    for (size_t i = 0; i < width; i++)
        v = v << 8 | b[i];
    *out = v;
    return true;
}

bool tls_host_name(const char *name, size_t n, char *out, size_t *out_len)
{
    if (n > 0 && name[n - 1] == '.')
        n--; /* RFC 6066 says no trailing dot; some clients send one */
    if (n == 0 || n > TLS_SNI_MAX)
        return false;
    size_t label = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        if (ch == '.') {
            if (label == 0)
                return false;
            label = 0;
        } else if ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '_') {
            label++;
        } else if (ch >= 'A' && ch <= 'Z') {
            ch = (char)(ch - 'A' + 'a');
            label++;
        } else {
            return false;
        }
        if (label > 63)
            return false;
        out[i] = ch;
    }
    if (label == 0)
        return false;
    out[n] = '\0';
    *out_len = n;
    return true;
}

/* The server_name extension's data (RFC 6066 3): a non-empty list of
 * (name_type, opaque name<1..2^16-1>); one host_name at most. Other name
 * types are stepped over. */
static bool server_name_ext(struct reader *r, size_t left, struct tls_hello *out)
{
    const char *overrun = "server_name list overruns its extension";
    size_t list;
    if (!field_uint(r, &left, 2, &list, overrun))
        return false;
    if (list != left)
        return invalid(r, "server_name list length does not match its extension");
    if (list == 0)
        return invalid(r, "empty server_name list");
    bool have_host = false;
    while (left > 0) {
        size_t type, n;
        if (!field_uint(r, &left, 1, &type, overrun) || !field_uint(r, &left, 2, &n, overrun))
            return false;
        if (n == 0)
            return invalid(r, "empty server name");
        if (type != NAME_HOST) {
            if (!field(r, &left, NULL, n, overrun))
                return false;
            continue;
        }
        if (have_host)
            return invalid(r, "two host names in server_name");
        have_host = true;
        if (n > TLS_SNI_MAX + 1)
            return invalid(r, "host name longer than 253 bytes");
        uint8_t name[TLS_SNI_MAX + 1];
        if (!field(r, &left, name, n, overrun))
            return false;
        if (!tls_host_name((const char *)name, n, out->sni, &out->sni_len))
            return invalid(r, "server_name is not a valid host name");
    }
    return true;
}

/* The ClientHello body, `left` bytes (RFC 8446 4.1.2, RFC 5246 7.4.1.2). */
static bool client_hello(struct reader *r, size_t left, struct tls_hello *out)
{
    const char *overrun = "a field overruns the ClientHello";
    size_t n;
    /* legacy_version, random */
    if (!field(r, &left, NULL, 2 + 32, overrun))
        return false;
    if (!field_uint(r, &left, 1, &n, overrun))
        return false;
    if (n > 32)
        return invalid(r, "session id longer than 32 bytes");
    if (!field(r, &left, NULL, n, overrun) || !field_uint(r, &left, 2, &n, overrun))
        return false;
    if (n < 2 || n % 2 != 0)
        return invalid(r, "bad cipher_suites length");
    if (!field(r, &left, NULL, n, overrun) || !field_uint(r, &left, 1, &n, overrun))
        return false;
    if (n < 1)
        return invalid(r, "no compression methods");
    if (!field(r, &left, NULL, n, overrun))
        return false;
    if (left == 0)
        return true; /* no extensions (SSL 3.0 style): no server name */
    if (!field_uint(r, &left, 2, &n, overrun))
        return false;
    if (n != left)
        return invalid(r, "extensions length does not match the ClientHello length");
    bool have_sni = false;
    while (left > 0) {
        const char *ext_overrun = "an extension overruns the extensions";
        size_t type, elen;
        if (!field_uint(r, &left, 2, &type, ext_overrun) ||
            !field_uint(r, &left, 2, &elen, ext_overrun))
            return false;
        if (elen > left)
            return invalid(r, ext_overrun);
        left -= elen;
        if (type != EXT_SERVER_NAME) {
            if (!hs_read(r, NULL, elen))
                return false;
            continue;
        }
        if (have_sni)
            return invalid(r, "two server_name extensions");
        have_sni = true;
        if (!server_name_ext(r, elen, out))
            return false;
    }
    return true;
}

static bool parse(struct reader *r, struct tls_hello *out)
{
    r->hs_total = HS_HEADER;
    uint8_t h[HS_HEADER];
    if (!hs_read(r, h, HS_HEADER))
        return false;
    if (h[0] != HS_CLIENT_HELLO)
        return invalid(r, "first handshake message is not a ClientHello");
    size_t body = (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
    if (body + HS_HEADER + REC_HEADER > TLS_HELLO_MAX)
        return invalid(r, "ClientHello longer than 16 KiB");
    r->hs_total = HS_HEADER + body;
    if (!client_hello(r, body, out))
        return false;
    out->consumed = r->pos;
    return true;
}

enum tls_hello_result tls_hello_parse(const uint8_t *buf, size_t len, struct tls_hello *out)
{
    struct reader r = {.buf = buf, .len = len < TLS_HELLO_MAX ? len : TLS_HELLO_MAX};
    out->sni[0] = '\0';
    out->sni_len = 0;
    out->consumed = 0;
    out->need = 0;
    out->why = NULL;
    if (parse(&r, out))
        return TLS_HELLO_DONE;
    if (r.fail == TLS_HELLO_INVALID) {
        out->sni[0] = '\0';
        out->sni_len = 0;
        out->why = r.why;
        return TLS_HELLO_INVALID;
    }
    /* Out of input at pos: the hello still lacks hs_total - hs_read
     * handshake bytes, and one more record header at least if the current
     * record cannot hold them. */
    size_t missing = r.hs_total - r.hs_read;
    size_t need = r.pos + missing + (missing > r.rec_left ? REC_HEADER : 0);
    if (need > TLS_HELLO_MAX) {
        out->why = "no complete ClientHello in the first 16 KiB";
        return TLS_HELLO_INVALID;
    }
    out->sni[0] = '\0';
    out->sni_len = 0;
    out->need = need;
    return TLS_HELLO_NEED_MORE;
}

const char *tls_hello_result_str(enum tls_hello_result r)
{
    static const char *const names[] = {"need_more", "done", "invalid"};
    return (unsigned)r < sizeof(names) / sizeof(names[0]) ? names[r] : "?";
}
