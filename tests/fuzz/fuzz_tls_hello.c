/* fuzz_tls_hello.c - libFuzzer target for the ClientHello parser
 * (tls_hello_parse), any bytes as the start of a client's stream.
 *
 * Besides "never reads past len" (libFuzzer's input is a heap copy of
 * exactly `size` bytes, so ASan reports any such read), the parser is held
 * to its contract:
 *   - INVALID has a reason and no name; NEED_MORE has len < need <=
 *     TLS_HELLO_MAX; DONE has consumed in (0, min(size, TLS_HELLO_MAX)].
 *   - DONE's name is a host name: 0..253 bytes of [a-z0-9._-], no empty
 *     label, NUL-terminated at sni_len; for a hello in one record, those
 *     bytes (case aside) are in the input before `consumed`.
 *   - Answers are final (monotone in the input): if a prefix is DONE or
 *     INVALID, the whole input gives the same answer (same name and
 *     consumed, same reason); so every strict prefix of a DONE input up to
 *     `consumed` is NEED_MORE, with a need no larger than `consumed`.
 *   - Record framing does not matter: a DONE input's handshake bytes cut
 *     into records of another size (when that still fits in 16 KiB) give
 *     the same name. */
#include "sluice/tls_hello.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_tls_hello: contract broken: %s\n", what);
        abort();
    }
}

static bool hostname_ok(const struct tls_hello *h)
{
    if (h->sni_len > TLS_SNI_MAX || h->sni[h->sni_len] != '\0' || strlen(h->sni) != h->sni_len)
        return false;
    size_t label = 0;
    for (size_t i = 0; i < h->sni_len; i++) {
        char c = h->sni[i];
        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_') {
            label++;
        } else {
            return false;
        }
    }
    return h->sni_len == 0 || label > 0;
}

/* The parse of the first n bytes, on a heap copy of exactly n bytes. */
static enum tls_hello_result parse_prefix(const uint8_t *data, size_t n, struct tls_hello *h)
{
    uint8_t *copy = malloc(n ? n : 1);
    check(copy != NULL, "malloc");
    memcpy(copy, data, n);
    enum tls_hello_result r = tls_hello_parse(copy, n, h);
    free(copy);
    return r;
}

static void check_shape(enum tls_hello_result r, const struct tls_hello *h, size_t size)
{
    switch (r) {
    case TLS_HELLO_INVALID:
        check(h->why != NULL && h->why[0] != '\0', "invalid without a reason");
        check(h->sni_len == 0 && h->sni[0] == '\0', "invalid with a name");
        break;
    case TLS_HELLO_NEED_MORE:
        check(h->need > size && h->need <= TLS_HELLO_MAX, "need out of range");
        break;
    case TLS_HELLO_DONE:
        check(h->consumed > 0 && h->consumed <= size && h->consumed <= TLS_HELLO_MAX,
              "consumed out of range");
        check(hostname_ok(h), "the name is no host name");
        break;
    default:
        check(false, "unknown result");
    }
}

/* The handshake bytes of the records in data[0..consumed), re-cut into
 * records of k bytes. Returns the new length, 0 if it would not fit. */
static size_t reframe(const uint8_t *data, size_t consumed, size_t k, uint8_t *out, size_t cap)
{
    static uint8_t hs[TLS_HELLO_MAX];
    size_t n = 0;
    for (size_t pos = 0; pos + 5 <= consumed;) {
        size_t rl = (size_t)data[pos + 3] << 8 | data[pos + 4];
        size_t take = pos + 5 + rl <= consumed ? rl : consumed - pos - 5;
        memcpy(hs + n, data + pos + 5, take);
        n += take;
        pos += 5 + rl;
    }
    size_t o = 0;
    for (size_t i = 0; i < n; i += k) {
        size_t c = n - i < k ? n - i : k;
        if (o + 5 + c > cap)
            return 0;
        out[o] = 0x16;
        out[o + 1] = 0x03;
        out[o + 2] = 0x03;
        out[o + 3] = (uint8_t)(c >> 8);
        out[o + 4] = (uint8_t)c;
        memcpy(out + o + 5, hs + i, c);
        o += 5 + c;
    }
    return o;
}

/* A DONE name is in the input: when the hello sits in one record, as
 * consecutive bytes (case aside, a trailing dot aside) before consumed. */
static bool name_in_input(const uint8_t *data, const struct tls_hello *h)
{
    size_t rec = (size_t)data[3] << 8 | data[4];
    if (h->consumed > 5 + rec)
        return true; /* spread over records: checked by the reframing below */
    for (size_t i = 0; i + h->sni_len <= h->consumed; i++) {
        size_t k = 0;
        while (k < h->sni_len &&
               (data[i + k] | (data[i + k] >= 'A' && data[i + k] <= 'Z' ? 0x20 : 0)) ==
                   (uint8_t)h->sni[k])
            k++;
        if (k == h->sni_len)
            return true;
    }
    return false;
}

/* The first n bytes against the whole input's answer r, h. */
static void check_prefix(const uint8_t *data, size_t n, enum tls_hello_result r,
                         const struct tls_hello *h)
{
    struct tls_hello p;
    enum tls_hello_result pr = parse_prefix(data, n, &p);
    check_shape(pr, &p, n);
    if (pr == TLS_HELLO_DONE) {
        check(r == TLS_HELLO_DONE && p.consumed == h->consumed && strcmp(p.sni, h->sni) == 0,
              "a DONE prefix changed its answer when extended");
    } else if (pr == TLS_HELLO_INVALID) {
        check(r == TLS_HELLO_INVALID && strcmp(p.why, h->why) == 0,
              "an INVALID prefix changed its answer when extended");
    } else if (r == TLS_HELLO_DONE) {
        check(n < h->consumed, "NEED_MORE at or past the end of a complete hello");
        check(p.need <= h->consumed, "need overshoots the complete hello");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct tls_hello h;
    enum tls_hello_result r = tls_hello_parse(data, size, &h);
    check_shape(r, &h, size < TLS_HELLO_MAX ? size : TLS_HELLO_MAX);

    /* Prefixes: every one of a short input; of a longer one about 32
     * spread over it, the last 8, and the one a byte short of a complete
     * hello, so a run stays fast. */
    size_t step = size <= 64 ? 1 : size / 32;
    for (size_t n = 0; n < size; n += (size - n <= 8 ? 1 : step))
        check_prefix(data, n, r, &h);
    if (r == TLS_HELLO_DONE)
        check_prefix(data, h.consumed - 1, r, &h);

    if (r == TLS_HELLO_DONE && h.sni_len > 0)
        check(name_in_input(data, &h), "the name is not in the input");

    if (r == TLS_HELLO_DONE && size > 0) {
        static uint8_t buf[TLS_HELLO_MAX];
        size_t k = 1 + data[size - 1] % 64;
        size_t n = reframe(data, h.consumed, k, buf, sizeof(buf));
        if (n > 0) {
            struct tls_hello f;
            enum tls_hello_result fr = parse_prefix(buf, n, &f);
            check(fr == TLS_HELLO_DONE && strcmp(f.sni, h.sni) == 0 && f.consumed == n,
                  "the same hello in other records gave another answer");
        }
    }
    return 0;
}
