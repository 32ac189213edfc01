/* fuzz_parse.c - libFuzzer target for the pure value parsers (parse.h) and
 * the address parser/formatter (addr.h).
 *
 * The first input byte selects the function, the rest (NUL-terminated) is
 * its argument. Besides "does not crash", each parser is held to its
 * contract: results in range, outputs untouched on failure, and every
 * address that parses formats back to a string that parses to the same
 * address. */
#include "sluice/addr.h"
#include "sluice/parse.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_DURATION_MS (30LL * 24 * 3600 * 1000)

enum op {
    OP_DURATION,
    OP_SIZE,
    OP_INT_PORT,   /* parse_int_range(1, 65535): ports */
    OP_INT_WEIGHT, /* parse_int_range(0, 256): weights */
    OP_INT_SIGNED, /* parse_int_range(-1000, 1000) */
    OP_INT_LONG,   /* parse_int_range(LONG_MIN, LONG_MAX) */
    OP_BOOL,
    OP_ESCAPES,
    OP_MODE,
    OP_ADDR_PLAIN,    /* addr_parse, flags 0 */
    OP_ADDR_UNIX,     /* ADDR_ALLOW_UNIX */
    OP_ADDR_WILDCARD, /* ADDR_ALLOW_WILDCARD */
    OP_ADDR_ALL,      /* both */
    OP_ADDR_FORMAT,   /* addr_format/addr_hash_ip on raw sockaddr bytes */
    OP_COUNT
};

static void check(bool ok, const char *what, const char *s)
{
    if (!ok) {
        fprintf(stderr, "fuzz_parse: %s (input '%s')\n", what, s);
        abort();
    }
}

static void fuzz_int(const char *s, long min, long max)
{
    long v = 12345;
    if (parse_int_range(s, min, max, &v)) {
        check(v >= min && v <= max, "parse_int_range: out of range", s);
        char again[32];
        long w;
        snprintf(again, sizeof(again), "%ld", v);
        check(parse_int_range(again, min, max, &w) && w == v, "parse_int_range: no round trip", s);
    } else {
        check(v == 12345, "parse_int_range: wrote *out on failure", s);
    }
}

static void fuzz_duration(const char *s)
{
    int64_t ms = -7;
    if (parse_duration_ms(s, &ms)) {
        check(ms >= 0 && ms <= MAX_DURATION_MS, "parse_duration_ms: out of range", s);
        /* "N" means seconds and "Nms" milliseconds: N ms must parse too. */
        char again[40];
        int64_t ms2;
        snprintf(again, sizeof(again), "%lldms", (long long)ms);
        check(parse_duration_ms(again, &ms2) && ms2 == ms, "parse_duration_ms: no round trip", s);
    } else {
        check(ms == -7, "parse_duration_ms: wrote *ms on failure", s);
    }
}

static void fuzz_size(const char *s)
{
    uint64_t n = 7;
    if (parse_size(s, &n)) {
        char again[32];
        uint64_t n2;
        snprintf(again, sizeof(again), "%llu", (unsigned long long)n);
        check(parse_size(again, &n2) && n2 == n, "parse_size: no round trip", s);
    } else {
        check(n == 7, "parse_size: wrote *bytes on failure", s);
    }
}

static void fuzz_escapes(const char *s)
{
    char *out = (char *)&out; /* a sentinel: must stay as is on failure */
    size_t n = 99999;
    const char *why = parse_escapes(s, &out, &n);
    if (why == NULL) {
        check(n <= strlen(s), "parse_escapes: output longer than input", s);
        check(out[n] == '\0', "parse_escapes: output not NUL-terminated", s);
        /* Without a backslash the output is the input. */
        if (strchr(s, '\\') == NULL)
            check(n == strlen(s) && memcmp(out, s, n) == 0, "parse_escapes: changed plain text", s);
        free(out);
    } else {
        check(out == (char *)&out && n == 99999, "parse_escapes: wrote outputs on failure", s);
        check(why[0] != '\0', "parse_escapes: empty reason", s);
    }
}

static void fuzz_addr(const char *s, int flags)
{
    struct sockaddr_any a, b;
    const char *why = addr_parse(s, flags, &a);
    if (why != NULL) {
        check(why[0] != '\0', "addr_parse: empty reason", s);
        return;
    }
    switch (a.u.sa.sa_family) {
    case AF_INET:
        check(a.len == sizeof(struct sockaddr_in) && a.u.in4.sin_port != 0,
              "addr_parse: bad AF_INET", s);
        break;
    case AF_INET6:
        check(a.len == sizeof(struct sockaddr_in6) && a.u.in6.sin6_port != 0,
              "addr_parse: bad AF_INET6", s);
        break;
    case AF_UNIX:
        check(flags & ADDR_ALLOW_UNIX, "addr_parse: unix address without ADDR_ALLOW_UNIX", s);
        check(a.len > offsetof(struct sockaddr_un, sun_path) + 1 &&
                  a.len <= sizeof(struct sockaddr_un),
              "addr_parse: bad AF_UNIX length", s);
        break;
    default:
        check(false, "addr_parse: unknown family", s);
    }
    char text[ADDR_STRLEN];
    addr_format(&a.u.sa, a.len, text, sizeof(text));
    check(strlen(text) < sizeof(text) - 1, "addr_format: output truncated", s);
    why = addr_parse(text, flags, &b);
    if (why != NULL) {
        fprintf(stderr, "formatted as '%s', which does not parse: %s\n", text, why);
        check(false, "addr_format: no round trip", s);
    }
    if (!addr_equal(&a, &b)) {
        fprintf(stderr, "formatted as '%s', which parses to another address\n", text);
        check(false, "addr_format: no round trip", s);
    }
    check(addr_equal(&b, &a), "addr_equal: not symmetric", s);
    (void)addr_hash_ip(&a.u.sa);
}

/* Raw bytes as a sockaddr: the formatter must cope with any family, any
 * path bytes (no NUL) and any length up to the size of the union. */
static void fuzz_format(const uint8_t *data, size_t size)
{
    struct sockaddr_any a;
    memset(&a, 0, sizeof(a));
    size_t n = size < sizeof(a.u) ? size : sizeof(a.u);
    memcpy(&a.u, data, n);
    a.len = (socklen_t)n;
    static const sa_family_t families[] = {AF_INET, AF_INET6, AF_UNIX, AF_UNSPEC};
    if (n > 0)
        a.u.sa.sa_family = families[data[0] % 4];
    char text[ADDR_STRLEN];
    for (size_t cap = 0; cap <= sizeof(text); cap += sizeof(text) / 4) {
        memset(text, 'X', sizeof(text));
        addr_format(&a.u.sa, a.len, text, cap);
        if (cap > 0)
            check(memchr(text, '\0', cap) != NULL, "addr_format: not NUL-terminated", "(raw)");
    }
    (void)addr_hash_ip(&a.u.sa);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    enum op op = (enum op)(data[0] % OP_COUNT);
    if (op == OP_ADDR_FORMAT) {
        fuzz_format(data + 1, size - 1);
        return 0;
    }
    char *s = malloc(size);
    if (s == NULL)
        return 0;
    memcpy(s, data + 1, size - 1);
    s[size - 1] = '\0';

    switch (op) {
    case OP_DURATION:
        fuzz_duration(s);
        break;
    case OP_SIZE:
        fuzz_size(s);
        break;
    case OP_INT_PORT:
        fuzz_int(s, 1, 65535);
        break;
    case OP_INT_WEIGHT:
        fuzz_int(s, 0, 256);
        break;
    case OP_INT_SIGNED:
        fuzz_int(s, -1000, 1000);
        break;
    case OP_INT_LONG:
        fuzz_int(s, LONG_MIN, LONG_MAX);
        break;
    case OP_BOOL: {
        bool b = false;
        (void)parse_bool(s, &b);
        break;
    }
    case OP_ESCAPES:
        fuzz_escapes(s);
        break;
    case OP_MODE: {
        int mode = -1;
        if (parse_mode(s, &mode))
            check(mode >= 0 && mode <= 0777, "parse_mode: out of range", s);
        else
            check(mode == -1, "parse_mode: wrote *mode on failure", s);
        break;
    }
    case OP_ADDR_PLAIN:
        fuzz_addr(s, 0);
        break;
    case OP_ADDR_UNIX:
        fuzz_addr(s, ADDR_ALLOW_UNIX);
        break;
    case OP_ADDR_WILDCARD:
        fuzz_addr(s, ADDR_ALLOW_WILDCARD);
        break;
    case OP_ADDR_ALL:
        fuzz_addr(s, ADDR_ALLOW_UNIX | ADDR_ALLOW_WILDCARD);
        break;
    case OP_ADDR_FORMAT:
    case OP_COUNT:
        break;
    }
    free(s);
    return 0;
}
