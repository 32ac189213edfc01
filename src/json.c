/* json.c - a strict, bounded JSON reader (see json.h). A recursive-descent
 * parser over the whole text: values go into chunks of nodes, decoded
 * strings into one buffer as large as the input (a decoded string plus its
 * NUL is never longer than its quoted source), so the tree costs at most
 * a small multiple of the input and is freed in one call. */
#include "sluice/json.h"
#include "sluice/parse.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NODES_PER_CHUNK 256

struct node_chunk {
    struct node_chunk *next;
    size_t used;
    struct json_value v[NODES_PER_CHUNK];
};

struct json_doc {
    struct json_value *root;
    struct node_chunk *chunks;
    size_t nodes;
    char *strings; /* decoded strings, each NUL-terminated */
    size_t strings_used;
};

struct parser {
    const char *p, *start, *end;
    struct json_doc *doc;
    char *err;
    size_t errlen;
    bool failed;
};

__attribute__((format(printf, 2, 3))) static void fail(struct parser *ps, const char *fmt, ...)
{
    if (ps->failed)
        return;
    ps->failed = true;
    if (ps->err == NULL || ps->errlen == 0)
        return;
    int n = snprintf(ps->err, ps->errlen, "offset %zu: ", (size_t)(ps->p - ps->start));
    if (n < 0 || (size_t)n >= ps->errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ps->err + n, ps->errlen - (size_t)n, fmt, ap);
    va_end(ap);
}

static struct json_value *node_new(struct parser *ps, enum json_type t)
{
    struct json_doc *d = ps->doc;
    if (d->nodes >= JSON_MAX_NODES) {
        fail(ps, "more than %u values", JSON_MAX_NODES);
        return NULL;
    }
    if (d->chunks == NULL || d->chunks->used == NODES_PER_CHUNK) {
        struct node_chunk *c = malloc(sizeof(*c));
        if (c == NULL) {
            fail(ps, "out of memory");
            return NULL;
        }
        c->used = 0;
        c->next = d->chunks;
        d->chunks = c;
    }
    struct json_value *v = &d->chunks->v[d->chunks->used++];
    d->nodes++;
    memset(v, 0, sizeof(*v));
    v->type = t;
    return v;
}

static void skip_ws(struct parser *ps)
{
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

static bool literal(struct parser *ps, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0) {
        fail(ps, "invalid literal");
        return false;
    }
    ps->p += n;
    return true;
}

static bool hex4(struct parser *ps, unsigned *out)
{
    if (ps->end - ps->p < 4) {
        fail(ps, "short \\u escape");
        return false;
    }
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = parse_hexdigit(ps->p[i]);
        if (h < 0) {
            fail(ps, "bad hex digit in \\u escape");
            return false;
        }
        v = v << 4 | (unsigned)h;
    }
    ps->p += 4;
    *out = v;
    return true;
}

static void put_utf8(char **o, unsigned cp)
{
    char *q = *o;
    if (cp < 0x80) {
        *q++ = (char)cp;
    } else if (cp < 0x800) {
        *q++ = (char)(0xC0 | cp >> 6);
        *q++ = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *q++ = (char)(0xE0 | cp >> 12);
        *q++ = (char)(0x80 | (cp >> 6 & 0x3F));
        *q++ = (char)(0x80 | (cp & 0x3F));
    } else {
        *q++ = (char)(0xF0 | cp >> 18);
        *q++ = (char)(0x80 | (cp >> 12 & 0x3F));
        *q++ = (char)(0x80 | (cp >> 6 & 0x3F));
        *q++ = (char)(0x80 | (cp & 0x3F));
    }
    *o = q;
}

/* Length of the valid UTF-8 sequence at p (1..4), 0 if invalid (overlong
 * forms, surrogates and code points above U+10FFFF are invalid). */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0];
    size_t n;
    unsigned cp, min;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        cp = c & 0x1F;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        cp = c & 0x0F;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        cp = c & 0x07;
        min = 0x10000;
    } else {
        return 0;
    }
    if ((size_t)(end - p) < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

/* At the opening quote: decode into the string buffer. */
static const char *parse_string(struct parser *ps, size_t *lenp)
{
    ps->p++; /* the quote */
    char *out0 = ps->doc->strings + ps->doc->strings_used, *o = out0;
    for (;;) {
        if (ps->p >= ps->end) {
            fail(ps, "unterminated string");
            return NULL;
        }
        unsigned char c = (unsigned char)*ps->p;
        if (c == '"') {
            ps->p++;
            break;
        }
        if (c < 0x20) {
            fail(ps, "control character in string");
            return NULL;
        }
        if (c != '\\') {
            size_t n = utf8_len((const unsigned char *)ps->p, (const unsigned char *)ps->end);
            if (n == 0) {
                fail(ps, "invalid UTF-8 in string");
                return NULL;
            }
            memcpy(o, ps->p, n);
            o += n;
            ps->p += n;
            continue;
        }
        ps->p++;
        if (ps->p >= ps->end) {
            fail(ps, "unterminated escape");
            return NULL;
        }
        char e = *ps->p++;
        switch (e) {
        case '"':
            *o++ = '"';
            break;
        case '\\':
            *o++ = '\\';
            break;
        case '/':
            *o++ = '/';
            break;
        case 'b':
            *o++ = '\b';
            break;
        case 'f':
            *o++ = '\f';
            break;
        case 'n':
            *o++ = '\n';
            break;
        case 'r':
            *o++ = '\r';
            break;
        case 't':
            *o++ = '\t';
            break;
        case 'u': {
            unsigned cp;
            if (!hex4(ps, &cp))
                return NULL;
            if (cp >= 0xDC00 && cp <= 0xDFFF) {
                fail(ps, "lone low surrogate");
                return NULL;
            }
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                unsigned lo;
                if (ps->end - ps->p < 2 || ps->p[0] != '\\' || ps->p[1] != 'u') {
                    fail(ps, "high surrogate without a low one");
                    return NULL;
                }
                ps->p += 2;
                if (!hex4(ps, &lo))
                    return NULL;
                if (lo < 0xDC00 || lo > 0xDFFF) {
                    fail(ps, "high surrogate without a low one");
                    return NULL;
                }
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            if (cp == 0) {
                fail(ps, "\\u0000 in string");
                return NULL;
            }
            put_utf8(&o, cp);
            break;
        }
        default:
            ps->p--;
            fail(ps, "bad escape");
            return NULL;
        }
    }
    *o++ = '\0';
    *lenp = (size_t)(o - out0) - 1;
    ps->doc->strings_used += (size_t)(o - out0);
    return out0;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* The digits of a fraction or an exponent at *q, at least one (else the
 * error is "no digit " what, at *q); *q moves past them. */
static bool need_digits(struct parser *ps, const char **q, const char *what)
{
    if (*q >= ps->end || !is_digit(**q)) {
        ps->p = *q;
        fail(ps, "no digit %s", what);
        return false;
    }
    while (*q < ps->end && is_digit(**q))
        (*q)++;
    return true;
}

static bool parse_number(struct parser *ps, double *out)
{
    const char *s = ps->p;
    const char *q = s;
    if (q < ps->end && *q == '-')
        q++;
    if (q >= ps->end || !is_digit(*q)) {
        fail(ps, "invalid number");
        return false;
    }
    if (*q == '0') {
        q++;
        if (q < ps->end && is_digit(*q)) {
            fail(ps, "leading zero in number");
            return false;
        }
    } else {
        while (q < ps->end && is_digit(*q))
            q++;
    }
    if (q < ps->end && *q == '.') {
        q++;
        if (!need_digits(ps, &q, "after the decimal point"))
            return false;
    }
    if (q < ps->end && (*q == 'e' || *q == 'E')) {
        q++;
        if (q < ps->end && (*q == '+' || *q == '-'))
            q++;
        if (!need_digits(ps, &q, "in the exponent"))
            return false;
    }
    /* strtod needs a terminated copy; numbers are short or refused. */
    char tmp[64];
    size_t n = (size_t)(q - s);
    if (n >= sizeof(tmp)) {
        fail(ps, "number longer than %zu characters", sizeof(tmp) - 1);
        return false;
    }
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    errno = 0;
    double d = strtod(tmp, NULL);
    if (!isfinite(d)) {
        fail(ps, "number out of range");
        return false;
    }
    *out = d;
    ps->p = q;
    return true;
}

static struct json_value *parse_value(struct parser *ps, int depth);

static struct json_value *parse_container(struct parser *ps, int depth, bool object)
{
    struct json_value *v = node_new(ps, object ? JSON_OBJECT : JSON_ARRAY);
    if (v == NULL)
        return NULL;
    if (depth >= JSON_MAX_DEPTH) {
        fail(ps, "nested deeper than %d", JSON_MAX_DEPTH);
        return NULL;
    }
    ps->p++; /* [ or { */
    skip_ws(ps);
    char close = object ? '}' : ']';
    if (ps->p < ps->end && *ps->p == close) {
        ps->p++;
        return v;
    }
    struct json_value **tail = &v->child;
    for (;;) {
        const char *key = NULL;
        if (object) {
            skip_ws(ps);
            if (ps->p >= ps->end || *ps->p != '"') {
                fail(ps, "expected a member name");
                return NULL;
            }
            size_t klen;
            key = parse_string(ps, &klen);
            if (key == NULL)
                return NULL;
            skip_ws(ps);
            if (ps->p >= ps->end || *ps->p != ':') {
                fail(ps, "expected ':'");
                return NULL;
            }
            ps->p++;
        }
        struct json_value *m = parse_value(ps, depth + 1);
        if (m == NULL)
            return NULL;
        m->key = key;
        *tail = m;
        tail = &m->next;
        v->len++;
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == close) {
            ps->p++;
            return v;
        }
        fail(ps, object ? "expected ',' or '}'" : "expected ',' or ']'");
        return NULL;
    }
}

static struct json_value *parse_value(struct parser *ps, int depth)
{
    skip_ws(ps);
    if (ps->p >= ps->end) {
        fail(ps, "unexpected end of input");
        return NULL;
    }
    struct json_value *v;
    switch (*ps->p) {
    case '{':
        return parse_container(ps, depth, true);
    case '[':
        return parse_container(ps, depth, false);
    case '"': {
        v = node_new(ps, JSON_STRING);
        if (v == NULL)
            return NULL;
        v->str = parse_string(ps, &v->len);
        return v->str ? v : NULL;
    }
    case 't':
        return literal(ps, "true") ? node_new(ps, JSON_TRUE) : NULL;
    case 'f':
        return literal(ps, "false") ? node_new(ps, JSON_FALSE) : NULL;
    case 'n':
        return literal(ps, "null") ? node_new(ps, JSON_NULL) : NULL;
    default:
        v = node_new(ps, JSON_NUMBER);
        if (v == NULL)
            return NULL;
        return parse_number(ps, &v->num) ? v : NULL;
    }
}

struct json_doc *json_parse(const char *text, size_t len, char *err, size_t errlen)
{
    struct parser ps = {.p = text, .start = text, .end = text + len, .err = err, .errlen = errlen};
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (len > JSON_MAX_INPUT) {
        fail(&ps, "input longer than %u bytes", JSON_MAX_INPUT);
        return NULL;
    }
    struct json_doc *doc = calloc(1, sizeof(*doc));
    if (doc == NULL || (doc->strings = malloc(len + 1)) == NULL) {
        free(doc);
        fail(&ps, "out of memory");
        return NULL;
    }
    ps.doc = doc;
    doc->root = parse_value(&ps, 0);
    if (doc->root != NULL) {
        skip_ws(&ps);
        if (ps.p != ps.end)
            fail(&ps, "trailing characters after the value");
    }
    if (ps.failed) {
        json_free(doc);
        return NULL;
    }
    return doc;
}

void json_free(struct json_doc *doc)
{
    if (doc == NULL)
        return;
    for (struct node_chunk *c = doc->chunks, *n; c != NULL; c = n) {
        n = c->next;
        free(c);
    }
    free(doc->strings);
    free(doc);
}

const struct json_value *json_root(const struct json_doc *doc)
{
    return doc ? doc->root : NULL;
}

const char *json_type_str(enum json_type t)
{
    static const char *const names[] = {
        [JSON_NULL] = "null",     [JSON_FALSE] = "false",   [JSON_TRUE] = "true",
        [JSON_NUMBER] = "number", [JSON_STRING] = "string", [JSON_ARRAY] = "array",
        [JSON_OBJECT] = "object",
    };
    return (unsigned)t < sizeof(names) / sizeof(names[0]) ? names[t] : "?";
}

const struct json_value *json_get(const struct json_value *obj, const char *key)
{
    if (obj == NULL || obj->type != JSON_OBJECT)
        return NULL;
    for (const struct json_value *m = obj->child; m != NULL; m = m->next)
        if (strcmp(m->key, key) == 0)
            return m;
    return NULL;
}

const struct json_value *json_path(const struct json_value *obj, const char *path)
{
    char name[128];
    const char *p = path;
    while (obj != NULL && *p != '\0') {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        if (n >= sizeof(name))
            return NULL;
        memcpy(name, p, n);
        name[n] = '\0';
        obj = json_get(obj, name);
        p += n + (dot != NULL);
    }
    return obj;
}

double json_num(const struct json_value *v, double dflt)
{
    return v != NULL && v->type == JSON_NUMBER ? v->num : dflt;
}

long json_int(const struct json_value *v, long lo, long hi, long dflt)
{
    if (v == NULL || v->type != JSON_NUMBER || v->num != v->num)
        return dflt;
    /* Compare as doubles before converting: a number outside long's range
     * (1e300, or inf from an overflowing literal) must not reach the cast. */
    if (v->num <= (double)lo)
        return lo;
    if (v->num >= (double)hi)
        return hi;
    return (long)v->num;
}

const char *json_str(const struct json_value *v, const char *dflt)
{
    return v != NULL && v->type == JSON_STRING ? v->str : dflt;
}
