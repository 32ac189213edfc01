/* access_log.c - the access-log line formatter (see access_log.h): kv,
 * json and templates compiled at config load into a list of ops, so a
 * line is built by walking that list, with no parsing per line. */
#include "sluice/access_log.h"
#include "sluice/common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum field_type { FT_STR, FT_U64, FT_INT, FT_MS, FT_SERVER };

static const struct {
    const char *name;
    uint8_t name_len;
    uint8_t type;
    uint16_t offset;
} fields[] = {
#define X(name, type, member)                                                                      \
    {#name, sizeof(#name) - 1, FT_##type, offsetof(struct access_rec, member)},
    ACCESS_FIELDS(X)
#undef X
};

int access_field_lookup(const char *name, size_t len)
{
    for (size_t i = 0; i < ARRAY_SIZE(fields); i++)
        if (fields[i].name_len == len && memcmp(fields[i].name, name, len) == 0)
            return (int)i;
    return -1;
}

const char *access_field_name(enum access_field f)
{
    return (unsigned)f < ARRAY_SIZE(fields) ? fields[f].name : "?";
}

void access_format_free(struct access_format *f)
{
    free(f->ops);
    free(f->text);
    memset(f, 0, sizeof(*f));
}

#define TEMPLATE_MAX 2048

int access_format_compile(const char *spec, struct access_format *out, char *err, size_t errsize)
{
    memset(out, 0, sizeof(*out));
    if (strcmp(spec, "kv") == 0) {
        out->kind = ACCESS_FMT_KV;
        return 0;
    }
    if (strcmp(spec, "json") == 0) {
        out->kind = ACCESS_FMT_JSON;
        return 0;
    }
    size_t n = strlen(spec);
    if (strchr(spec, '%') == NULL) {
        snprintf(err, errsize, "'%s' is not kv, json or a template with %%{field}", spec);
        return -1;
    }
    if (n > TEMPLATE_MAX) {
        snprintf(err, errsize, "template longer than %d characters", TEMPLATE_MAX);
        return -1;
    }
    /* At most one op per input character (plus one): never reallocated. */
    out->ops = calloc(n + 1, sizeof(*out->ops));
    out->text = malloc(n + 1);
    if (out->ops == NULL || out->text == NULL) {
        snprintf(err, errsize, "out of memory");
        access_format_free(out);
        return -1;
    }
    out->kind = ACCESS_FMT_TEMPLATE;
    size_t tlen = 0;
    struct access_op *lit = NULL; /* the literal op being extended */
    for (size_t i = 0; i < n;) {
        char ch = spec[i];
        if (ch == '%') {
            if (spec[i + 1] == '%') {
                ch = '%';
                i += 2;
            } else if (spec[i + 1] == '{') {
                const char *name = spec + i + 2;
                const char *end = strchr(name, '}');
                if (end == NULL) {
                    snprintf(err, errsize, "column %zu: '%%{' without a closing '}'", i + 1);
                    goto fail;
                }
                int f = access_field_lookup(name, (size_t)(end - name));
                if (f < 0) {
                    snprintf(err, errsize, "column %zu: unknown field '%.*s'", i + 1,
                             (int)(end - name > 64 ? 64 : end - name), name);
                    goto fail;
                }
                out->ops[out->nops++] = (struct access_op){.field = (uint16_t)f};
                lit = NULL;
                i = (size_t)(end - spec) + 1;
                continue;
            } else {
                snprintf(err, errsize, "column %zu: '%%' must start %%{field} or be doubled (%%%%)",
                         i + 1);
                goto fail;
            }
        } else if ((unsigned char)ch < 0x20 || ch == 0x7f) {
            snprintf(err, errsize, "column %zu: control character in the template", i + 1);
            goto fail;
        } else {
            i++;
        }
        if (lit == NULL) {
            lit = &out->ops[out->nops++];
            *lit = (struct access_op){.field = ACCESS_OP_LITERAL, .off = (uint32_t)tlen};
        }
        out->text[tlen++] = ch;
        lit->len++;
    }
    return 0;
fail:
    access_format_free(out);
    return -1;
}

/* The writer: appends into buf, never past ACCESS_LINE_MAX - 1 (room for
 * the final newline). */
struct out {
    char *buf;
    size_t len;
};

#define OUT_CAP (ACCESS_LINE_MAX - 1)

static void put(struct out *o, const char *s, size_t n)
{
    if (n > OUT_CAP - o->len)
        n = OUT_CAP - o->len;
    memcpy(o->buf + o->len, s, n);
    o->len += n;
}

static void put_str(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

static void put_u64(struct out *o, uint64_t v)
{
    char tmp[24];
    size_t i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    put(o, tmp + i, sizeof(tmp) - i);
}

static void put_i64(struct out *o, int64_t v)
{
    if (v < 0) {
        put(o, "-", 1);
        put_u64(o, (uint64_t)0 - (uint64_t)v);
    } else {
        put_u64(o, (uint64_t)v);
    }
}

/* Whole milliseconds, rounded like printf's %.0f (to nearest, ties to
 * even), which is what the kv line always printed. */
static void put_ms(struct out *o, double ms)
{
    put_i64(o, (int64_t)rint(ms));
}

static void put_json_str(struct out *o, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    put(o, "\"", 1);
    const unsigned char *p = (const unsigned char *)s;
    for (;;) {
        /* Copy the run of bytes that need no escaping in one go. */
        const unsigned char *run = p;
        while (*p >= 0x20 && *p < 0x7f && *p != '"' && *p != '\\')
            p++;
        put(o, (const char *)run, (size_t)(p - run));
        unsigned char c = *p;
        if (c == '\0')
            break;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            put(o, e, 2);
        } else {
            /* Control characters, and every byte outside ASCII (a name
             * from the network is not promised to be UTF-8): \u00XX, so
             * the line is always valid JSON and valid UTF-8. */
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            put(o, e, 6);
        }
        p++;
    }
    put(o, "\"", 1);
}

static const char *rec_str(const struct access_rec *r, int f)
{
    const char *s = *(const char *const *)((const char *)r + fields[f].offset);
    return s != NULL && s[0] != '\0' ? s : NULL;
}

/* A milliseconds field: a negative value is absent (none is printed),
 * but for duration_ms and queued_ms, which print 0. */
static void put_ms_field(struct out *o, int f, double ms, const char *none)
{
    if (ms < 0 && f != ACCESS_F_duration_ms && f != ACCESS_F_queued_ms)
        put_str(o, none);
    else
        put_ms(o, ms < 0 ? 0 : ms);
}

/* "POOL/SERVER" of a session that had a server. */
static void put_server(struct out *o, const struct access_rec *r)
{
    put_str(o, r->pool);
    put(o, "/", 1);
    put_str(o, r->backend);
}

/* One field's value as kv and templates print it ("-" when absent). */
static void put_plain(struct out *o, const struct access_rec *r, int f)
{
    const char *base = (const char *)r + fields[f].offset;
    switch (fields[f].type) {
    case FT_STR: {
        const char *s = rec_str(r, f);
        put_str(o, s ? s : "-");
        break;
    }
    case FT_U64:
        put_u64(o, *(const uint64_t *)base);
        break;
    case FT_INT:
        put_i64(o, *(const int *)base);
        break;
    case FT_MS:
        put_ms_field(o, f, *(const double *)base, "-");
        break;
    case FT_SERVER:
        if (r->pool != NULL && r->backend != NULL)
            put_server(o, r);
        else
            put(o, "-", 1);
        break;
    }
}

static void put_json_value(struct out *o, const struct access_rec *r, int f)
{
    const char *base = (const char *)r + fields[f].offset;
    switch (fields[f].type) {
    case FT_STR: {
        const char *s = rec_str(r, f);
        if (s)
            put_json_str(o, s);
        else
            put(o, "null", 4);
        break;
    }
    case FT_MS:
        put_ms_field(o, f, *(const double *)base, "null");
        break;
    case FT_SERVER:
        if (r->pool != NULL && r->backend != NULL) {
            /* Both are config names: no quoting needed beyond the usual. */
            struct out tmp;
            char buf[512];
            tmp.buf = buf;
            tmp.len = 0;
            put_server(&tmp, r);
            buf[tmp.len < sizeof(buf) ? tmp.len : sizeof(buf) - 1] = '\0';
            put_json_str(o, buf);
        } else {
            put(o, "null", 4);
        }
        break;
    default:
        put_plain(o, r, f);
        break;
    }
}

size_t access_format_line(const struct access_format *fmt, const struct access_rec *r, char *buf)
{
    struct out o = {.buf = buf, .len = 0};
    switch (fmt->kind) {
    case ACCESS_FMT_KV:
        put_plain(&o, r, ACCESS_F_time);
        for (int f = ACCESS_F_time + 1; f < ACCESS_FIELD_COUNT; f++) {
            put(&o, " ", 1);
            put(&o, fields[f].name, fields[f].name_len);
            put(&o, "=", 1);
            put_plain(&o, r, f);
        }
        break;
    case ACCESS_FMT_JSON:
        put(&o, "{", 1);
        for (int f = 0; f < ACCESS_FIELD_COUNT; f++) {
            if (f > 0)
                put(&o, ",", 1);
            put(&o, "\"", 1);
            put(&o, fields[f].name, fields[f].name_len);
            put(&o, "\":", 2);
            put_json_value(&o, r, f);
        }
        put(&o, "}", 1);
        if (o.len == OUT_CAP) {
            /* Cut: only a hostile sni can make it this long; write the
             * line again without it so it stays one valid object. */
            struct access_rec copy = *r;
            copy.sni = "(too long)";
            return access_format_line(fmt, &copy, buf);
        }
        break;
    case ACCESS_FMT_TEMPLATE:
        for (int i = 0; i < fmt->nops; i++) {
            const struct access_op *op = &fmt->ops[i];
            if (op->field == ACCESS_OP_LITERAL)
                put(&o, fmt->text + op->off, op->len);
            else
                put_plain(&o, r, op->field);
        }
        break;
    }
    buf[o.len++] = '\n';
    return o.len;
}

void access_time_format(double t, char *buf)
{
    /* gmtime_r and snprintf once per second and thread, not per line. */
    static _Thread_local time_t cached_sec = (time_t)-1;
    static _Thread_local char cached[20];
    if (t < 0)
        t = 0;
    time_t sec = (time_t)t;
    int ms = (int)((t - (double)sec) * 1000.0);
    if (ms < 0)
        ms = 0;
    if (ms > 999)
        ms = 999;
    if (sec != cached_sec) {
        struct tm tm;
        char tmp[64];
        gmtime_r(&sec, &tm);
        snprintf(tmp, sizeof(tmp), "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        memcpy(cached, tmp, sizeof(cached) - 1);
        cached[sizeof(cached) - 1] = '\0';
        cached_sec = sec;
    }
    memcpy(buf, cached, 19);
    buf[19] = '.';
    buf[20] = (char)('0' + ms / 100);
    buf[21] = (char)('0' + ms / 10 % 10);
    buf[22] = (char)('0' + ms % 10);
    buf[23] = 'Z';
    buf[24] = '\0';
}
