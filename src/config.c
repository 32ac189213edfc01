/* config.c - INI file -> validated config generation (inih does the lexing).
 *
 * inih gives no line numbers to the handler in its default build, so the
 * reader we hand it counts lines and also spots section headers itself
 * (inih does not report empty sections). Every error is collected; a config
 * with any error is freed and never seen by anyone. */
#include "sluice/config.h"
#include "sluice/acl.h"
#include "sluice/queue.h"
#include "sluice/registry.h"
#include "sluice/access_log.h"
#include "sluice/addr.h"
#include "sluice/log.h"
#include "sluice/parse.h"
#include "sluice/privilege.h"
#include "sluice/srclimit.h"
#include "sluice/tls_hello.h"
#include "sluice/uring.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void backend_fini(struct registry_obj *o);
static void listener_fini(struct registry_obj *o);
struct registry backend_registry = {.fini = backend_fini};
struct registry listener_registry = {.fini = listener_fini};

/* inih's default line buffer; longer lines are rejected by our reader. */
#define LINE_MAX_CHARS (INI_MAX_LINE - 3)
#define NAME_MAX_CHARS 64
#define MAX_CONFIG_BYTES (16 * 1024 * 1024)

enum section_kind { SEC_NONE, SEC_GLOBAL, SEC_LISTENER, SEC_POOL, SEC_UNKNOWN };

/* Scalar keys seen in the current section (duplicate detection). */
#define SEEN_MAX 32

struct parse_ctx {
    const char *name; /* file name for messages */
    const char *data;
    size_t len, pos;
    int lineno;
    struct config *cfg;
    struct config_errors *errs;
    enum section_kind kind;
    int cur; /* index of the current listener/pool */
    const char *seen[SEEN_MAX];
    int nseen;
    bool global_seen;
    int global_line;
    /* [global] values kept raw until the whole file is read */
    bool workers_auto;
    bool oom;
    int admin_http_line;
    int identity_line;      /* last user or group line */
    int user_line;
    int resolve_line; /* last resolve_interval_min/max line */
    gid_t user_primary_gid; /* the group used when only user is set */
};

static void add_error(struct parse_ctx *c, int line, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void add_error(struct parse_ctx *c, int line, const char *key, const char *fmt, ...)
{
    char reason[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    char *msg = NULL;
    if (asprintf(&msg, "%s:%d: %s: %s", c->name, line, key, reason) < 0)
        msg = NULL;
    size_t n = (size_t)c->errs->n + 1;
    char **msgs = msg ? realloc(c->errs->msgs, sizeof(char *) * n) : NULL;
    if (msgs != NULL)
        c->errs->msgs = msgs;
    int *lines = msgs ? realloc(c->errs->lines, sizeof(int) * n) : NULL;
    if (lines == NULL) {
        free(msg);
        c->oom = true;
        return;
    }
    c->errs->lines = lines;
    c->errs->msgs[c->errs->n] = msg;
    c->errs->lines[c->errs->n++] = line;
}

void config_errors_add(struct config_errors *errs, const char *file, int line, const char *key,
                       const char *fmt, ...)
{
    struct parse_ctx c = {.name = file, .errs = errs};
    char reason[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    add_error(&c, line, key, "%s", reason);
}

/* Errors come from the line pass and from the checks after it: put them in
 * line order (stable, so one line's errors keep their order). */
static void errors_sort(struct config_errors *errs)
{
    for (int i = 1; i < errs->n; i++) {
        char *m = errs->msgs[i];
        int l = errs->lines[i], j = i;
        for (; j > 0 && errs->lines[j - 1] > l; j--) {
            errs->msgs[j] = errs->msgs[j - 1];
            errs->lines[j] = errs->lines[j - 1];
        }
        errs->msgs[j] = m;
        errs->lines[j] = l;
    }
}

void config_errors_print(const struct config_errors *errs, FILE *out)
{
    for (int i = 0; i < errs->n; i++)
        fprintf(out, "%s\n", errs->msgs[i]);
}

struct config *config_load_reporting(const char *path, const char *prog)
{
    struct config_errors errs = {0};
    struct config *cfg = config_load_file(path, &errs);
    if (cfg == NULL) {
        config_errors_print(&errs, stderr);
        fprintf(stderr, "%s: %d error%s in %s\n", prog, errs.n, errs.n == 1 ? "" : "s", path);
        config_errors_free(&errs);
    }
    return cfg;
}

void config_errors_free(struct config_errors *errs)
{
    for (int i = 0; i < errs->n; i++)
        free(errs->msgs[i]);
    free(errs->msgs);
    free(errs->lines);
    errs->msgs = NULL;
    errs->lines = NULL;
    errs->n = 0;
}

const char *balance_algo_str(enum balance_algo algo)
{
    static const char *const names[] = {"roundrobin", "leastconn", "random", "source", "first"};
    return (unsigned)algo < ARRAY_SIZE(names) ? names[algo] : "?";
}

static bool balance_parse(const char *s, enum balance_algo *out)
{
    for (int i = BALANCE_ROUNDROBIN; i <= BALANCE_FIRST; i++) {
        if (strcmp(s, balance_algo_str((enum balance_algo)i)) == 0) {
            *out = (enum balance_algo)i;
            return true;
        }
    }
    return false;
}

static bool name_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > NAME_MAX_CHARS)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!isalnum(ch) && ch != '_' && ch != '-' && ch != '.')
            return false;
    }
    return true;
}

/* Grow an array by one zeroed element; returns its index or -1. */
static int grow(void **arr, int *n, size_t elem)
{
    void *p = realloc(*arr, elem * (size_t)(*n + 1));
    if (p == NULL)
        return -1;
    memset((char *)p + elem * (size_t)*n, 0, elem);
    *arr = p;
    return (*n)++;
}

/* The members a listener_conf and a pool_conf both start with. */
struct section_head {
    char *name;
    int line;
};
_Static_assert(offsetof(struct listener_conf, name) == offsetof(struct section_head, name) &&
                   offsetof(struct listener_conf, line) == offsetof(struct section_head, line) &&
                   offsetof(struct pool_conf, name) == offsetof(struct section_head, name) &&
                   offsetof(struct pool_conf, line) == offsetof(struct section_head, line),
               "listener_conf and pool_conf must start with name, line");

/* Add a [KIND NAME] section to an array of elem-sized entries unless one
 * of that name exists (then an error at the header). Returns its index,
 * or -1 (error reported, or out of memory). */
static int section_add(struct parse_ctx *c, void **arr, int *n, size_t elem, const char *kind,
                       const char *name, const char *header, int line)
{
    for (int i = 0; i < *n; i++) {
        const struct section_head *h = (const void *)((const char *)*arr + elem * (size_t)i);
        if (strcmp(h->name, name) == 0) {
            add_error(c, line, header, "duplicate %s '%s' (first at line %d)", kind, name, h->line);
            return -1;
        }
    }
    int i = grow(arr, n, elem);
    struct section_head *h = i < 0 ? NULL : (void *)((char *)*arr + elem * (size_t)i);
    if (h == NULL || (h->name = strdup(name)) == NULL) {
        c->oom = true;
        return -1;
    }
    h->line = line;
    return i;
}

/* tcp_keepalive off; the timing it gets when turned on without it. */
static void keepalive_defaults(struct keepalive_conf *ka)
{
    ka->on = false;
    ka->idle_s = KEEPALIVE_IDLE_DEFAULT;
    ka->interval_s = KEEPALIVE_INTERVAL_DEFAULT;
    ka->count = KEEPALIVE_COUNT_DEFAULT;
}

/* ---- section headers (seen by the reader, before inih) ---- */

static void section_begin(struct parse_ctx *c, const char *header, int line)
{
    c->nseen = 0;
    c->cur = -1;
    c->kind = SEC_UNKNOWN;
    if (strcmp(header, "global") == 0) {
        if (c->global_seen)
            add_error(c, line, "[global]", "duplicate section (first at line %d)", c->global_line);
        c->global_seen = true;
        c->global_line = line;
        c->kind = SEC_GLOBAL;
        return;
    }
    const char *sp = strchr(header, ' ');
    size_t tlen = sp ? (size_t)(sp - header) : strlen(header);
    bool is_listener = tlen == 8 && strncmp(header, "listener", 8) == 0;
    bool is_pool = tlen == 4 && strncmp(header, "pool", 4) == 0;
    if (!is_listener && !is_pool) {
        add_error(c, line, header, "unknown section (expected [global], [listener NAME] or [pool NAME])");
        return;
    }
    const char *name = sp ? sp + 1 : "";
    if (!name_valid(name)) {
        add_error(c, line, header, "section needs one name of letters, digits, '_', '-', '.' (max %d)",
                  NAME_MAX_CHARS);
        return;
    }
    struct config *cfg = c->cfg;
    if (is_listener) {
        int i = section_add(c, (void **)&cfg->listeners, &cfg->nlisteners, sizeof(struct listener_conf),
                            "listener", name, header, line);
        if (i < 0)
            return;
        cfg->listeners[i].max_conns = 10000;
        cfg->listeners[i].backlog = 4096;
        cfg->listeners[i].proxy_timeout_ms = 5000;
        cfg->listeners[i].bind_mode = 0660;
        keepalive_defaults(&cfg->listeners[i].keepalive);
        cfg->listeners[i].sni_timeout_ms = 5000;
        cfg->listeners[i].source_prefix_v4 = 32;
        cfg->listeners[i].source_prefix_v6 = 64;
        cfg->listeners[i].source_table_size = 65536;
        c->kind = SEC_LISTENER;
        c->cur = i;
    } else {
        int i = section_add(c, (void **)&cfg->pools, &cfg->npools, sizeof(struct pool_conf), "pool",
                            name, header, line);
        if (i < 0)
            return;
        struct pool_conf *p = &cfg->pools[i];
        p->balance = BALANCE_ROUNDROBIN;
        p->connect_timeout_ms = 3000;
        p->idle_timeout_ms = 5 * 60 * 1000;
        p->fail_timeout_ms = 10 * 1000;
        p->retries = 2;
        p->fall = 3;
        p->rise = 2;
        p->check = CHECK_NONE;
        p->check_interval_ms = 2000;
        p->check_timeout_ms = 1000;
        keepalive_defaults(&p->keepalive);
        p->queue_timeout_ms = -1; /* connect_timeout, resolved by validate() */
        p->resolve_interval_ms = -2; /* [global]'s, resolved by validate() */
        p->resolve_hold_ms = -2;
        c->kind = SEC_POOL;
        c->cur = i;
    }
}

/* Cut a key line at its inline comment: a ';' or '#' after a blank starts
 * one (a value needing " #" writes it as "\x23" where escapes apply). */
static void strip_inline_comment(char *line)
{
    for (char *q = line + 1; *q != '\0'; q++) {
        if ((*q == ';' || *q == '#') && (q[-1] == ' ' || q[-1] == '\t')) {
            q[0] = '\n';
            q[1] = '\0';
            return;
        }
    }
}

/* ini_reader: hands inih one line at a time from memory, counting lines. */
static char *reader(char *str, int num, void *stream)
{
    struct parse_ctx *c = stream;
    if (c->pos >= c->len)
        return NULL;
    const char *start = c->data + c->pos;
    const char *nl = memchr(start, '\n', c->len - c->pos);
    size_t linelen = nl ? (size_t)(nl - start) : c->len - c->pos;
    c->pos += linelen + (nl ? 1 : 0);
    c->lineno++;
    size_t copy = linelen;
    if (copy > (size_t)num - 2 || copy > LINE_MAX_CHARS) {
        add_error(c, c->lineno, "line", "too long (max %d characters)", LINE_MAX_CHARS);
        copy = 0; /* hand inih an empty line instead */
    }
    memcpy(str, start, copy);
    /* NUL bytes would cut the line short inside inih: refuse them. */
    if (memchr(str, '\0', copy) != NULL) {
        add_error(c, c->lineno, "line", "contains a NUL byte");
        copy = 0;
    }
    str[copy] = '\n';
    str[copy + 1] = '\0';

    char *p = str;
    /* inih skips a UTF-8 byte-order mark on the first line; so do we. */
    if (c->lineno == 1 && (unsigned char)p[0] == 0xEF && (unsigned char)p[1] == 0xBB &&
        (unsigned char)p[2] == 0xBF)
        p += 3;
    /* Indented keys and headers (HAProxy style) are ordinary lines: inih
     * would take an indented line for the continuation of the value above. */
    while (isspace((unsigned char)*p) && *p != '\n')
        p++;
    memmove(str, p, strlen(p) + 1);
    p = str;
    if (*p == '[') {
        /* Section header (inih does the same test: '[' first). */
        char *end = strchr(p, ']');
        if (end == NULL) {
            add_error(c, c->lineno, "line", "syntax error: missing ']' in section header");
            c->kind = SEC_UNKNOWN; /* its keys would only add noise */
            c->cur = -1;
            str[0] = '\n';
            str[1] = '\0';
            return str;
        }
        char header[INI_MAX_LINE];
        size_t n = (size_t)(end - p - 1);
        memcpy(header, p + 1, n);
        header[n] = '\0';
        section_begin(c, header, c->lineno);
        return str;
    }
    if (*p == ';' || *p == '#' || *p == '\n')
        return str;
    strip_inline_comment(p);
    if (strpbrk(p, "=:") == NULL) {
        /* inih reports only its first syntax error: catch them all here. */
        add_error(c, c->lineno, "line", "syntax error (expected [section] or key = value)");
        str[0] = '\n';
        str[1] = '\0';
    }
    return str;
}

static bool seen_key(struct parse_ctx *c, const char *key)
{
    for (int i = 0; i < c->nseen; i++)
        if (strcmp(c->seen[i], key) == 0)
            return true;
    if (c->nseen < SEEN_MAX)
        c->seen[c->nseen++] = key; /* key points at a static string */
    return false;
}

/* Value helpers: each reports its own error and returns false. */

static bool val_duration(struct parse_ctx *c, const char *key, const char *v, int64_t min_ms,
                         int64_t *out)
{
    int64_t ms;
    if (!parse_duration_ms(v, &ms)) {
        add_error(c, c->lineno, key, "bad duration '%s' (use e.g. 500ms, 3s, 5m, 1h)", v);
        return false;
    }
    if (ms < min_ms) {
        add_error(c, c->lineno, key, "'%s' must be at least %lldms", v, (long long)min_ms);
        return false;
    }
    *out = ms;
    return true;
}

static bool val_int(struct parse_ctx *c, const char *key, const char *v, long min, long max, int *out)
{
    long n;
    if (!parse_int_range(v, min, max, &n)) {
        add_error(c, c->lineno, key, "'%s' is not a number in %ld..%ld", v, min, max);
        return false;
    }
    *out = (int)n;
    return true;
}

/* "N/DURATION" (N new connections per DURATION, e.g. 100/1s, 600/1m) or
 * "off". */
static bool val_rate(struct parse_ctx *c, const char *key, const char *v, struct rate_conf *out)
{
    if (strcmp(v, "off") == 0) {
        *out = (struct rate_conf){0, 0};
        return true;
    }
    const char *slash = strchr(v, '/');
    char num[32];
    long n;
    int64_t ms;
    if (slash == NULL || (size_t)(slash - v) >= sizeof(num)) {
        add_error(c, c->lineno, key, "'%s' is not N/DURATION (e.g. 100/1s, 600/1m) or off", v);
        return false;
    }
    memcpy(num, v, (size_t)(slash - v));
    num[slash - v] = '\0';
    if (!parse_int_range(num, 1, 1000000, &n)) {
        add_error(c, c->lineno, key, "'%s': the count must be a number in 1..1000000", v);
        return false;
    }
    if (!parse_duration_ms(slash + 1, &ms) || ms < 1 || ms > 86400000) {
        add_error(c, c->lineno, key,
                  "'%s': the period must be a duration in 1ms..24h (e.g. 1s, 1m)", v);
        return false;
    }
    *out = (struct rate_conf){(int)n, ms};
    return true;
}

static bool val_size(struct parse_ctx *c, const char *key, const char *v, uint64_t min,
                     uint64_t max, uint32_t *out)
{
    uint64_t n;
    if (!parse_size(v, &n)) {
        add_error(c, c->lineno, key, "bad size '%s' (use e.g. 4096, 16k, 1m)", v);
        return false;
    }
    if (n < min || n > max) {
        add_error(c, c->lineno, key, "'%s' must be between %llu and %llu bytes", v,
                  (unsigned long long)min, (unsigned long long)max);
        return false;
    }
    *out = (uint32_t)n;
    return true;
}

/* v's index in words[n], else -1; on -1, list holds the words joined by
 * ", " ("a, b, c") or, with last_or, as "a, b or c". */
static int word_index(const char *v, const char *const *words, size_t n, bool last_or, char *list,
                      size_t size)
{
    list[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (strcmp(v, words[i]) == 0)
            return (int)i;
        size_t len = strlen(list);
        const char *sep = i == 0 ? "" : last_or && i == n - 1 ? " or " : ", ";
        snprintf(list + len, size - len, "%s%s", sep, words[i]);
    }
    return -1;
}

/* One of a list of words: its index in *out, else an error naming them all. */
static bool val_word(struct parse_ctx *c, const char *key, const char *v, const char *const *words,
                     size_t n, int *out)
{
    char list[256];
    if ((*out = word_index(v, words, n, false, list, sizeof(list))) >= 0)
        return true;
    add_error(c, c->lineno, key, "'%s' is not one of %s", v, list);
    return false;
}

/* The word-valued server options, all about resolving a host name. */
enum server_dns_opt { SDNS_RESOLVE, SDNS_FAMILY, SDNS_INIT_ADDR };
static const char *const resolve_words[] = {
    [RESOLVE_FIRST] = "first", [RESOLVE_ALL] = "all", [RESOLVE_SRV] = "srv"};
static const char *const family_words[] = {
    [FAMILY_ANY] = "any", [FAMILY_IPV4] = "ipv4", [FAMILY_IPV6] = "ipv6"};
static const char *const init_addr_words[] = {"none"};
static const struct {
    const char *key;
    const char *const *words;
    size_t n;
} server_dns_opts[] = {
    [SDNS_RESOLVE] = {"resolve", resolve_words, ARRAY_SIZE(resolve_words)},
    [SDNS_FAMILY] = {"family", family_words, ARRAY_SIZE(family_words)},
    [SDNS_INIT_ADDR] = {"init_addr", init_addr_words, ARRAY_SIZE(init_addr_words)},
};

/* One of two words: *out false for the first, true for the second. */
static void val_word2(struct parse_ctx *c, const char *key, const char *v, const char *no,
                      const char *yes, bool *out)
{
    const char *const words[] = {no, yes};
    int k;
    if (val_word(c, key, v, words, ARRAY_SIZE(words), &k))
        *out = k == 1;
}

/* A server option KEY=WORD of server_dns_opts: true if opt is one, with
 * *which set and *k the word's index, or -1 after an error naming the
 * server and the words. False if opt is no such option. */
static bool server_dns_word(struct parse_ctx *c, const char *name, const char *opt,
                            enum server_dns_opt *which, int *k)
{
    for (size_t i = 0; i < ARRAY_SIZE(server_dns_opts); i++) {
        size_t len = strlen(server_dns_opts[i].key);
        if (strncmp(opt, server_dns_opts[i].key, len) != 0 || opt[len] != '=')
            continue;
        char list[256];
        *which = (enum server_dns_opt)i;
        *k = word_index(opt + len + 1, server_dns_opts[i].words, server_dns_opts[i].n, true, list,
                        sizeof(list));
        if (*k < 0)
            add_error(c, c->lineno, "server", "%s: %s must be %s, not '%s'", name,
                      server_dns_opts[i].key, list, opt + len + 1);
        return true;
    }
    return false;
}

/* Match key against a static list so seen[] can keep the static pointer. */
static const char *static_key(const char *name, const char *const *keys, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(name, keys[i]) == 0)
            return keys[i];
    return NULL;
}

static const char *const global_keys[] = {"workers",     "log_level",    "access_log",
                                          "access_log_format", "syslog_facility", "syslog_tag",
                                          "max_conns",   "shutdown_timeout", "buffer_size",
                                          "max_buffer",  "admin_socket", "admin_mode",
                                          "admin_http",  "user",         "group",
                                          "allow_root",  "pid_file",
                                          "resolvers",   "resolve_interval",
                                          "resolve_interval_min", "resolve_interval_max",
                                          "resolve_hold"};
static const char *const listener_keys[] = {
    "bind",          "pool",           "max_conns",     "backlog",
    "relay",         "accept_proxy",   "proxy_timeout", "bind_mode",
    "bind_owner",    "tcp_keepalive",  "keepalive_idle", "keepalive_interval",
    "keepalive_count", "route",        "sni",           "sni_default",
    "sni_timeout",   "allow",          "deny",          "allow_file",
    "deny_file",     "max_conns_per_source", "rate_per_source", "source_prefix_v4",
    "source_prefix_v6", "source_table_size", "max_conn_rate"};
static const char *const pool_keys[] = {
    "balance", "server",         "connect_timeout", "idle_timeout", "retries",   "fall",
    "rise",    "fail_timeout",   "check",           "check_interval", "check_timeout",
    "check_send", "check_expect", "send_proxy", "tcp_keepalive", "keepalive_idle",
    "keepalive_interval", "keepalive_count", "max_queue", "queue_timeout",
    "resolve_interval", "resolve_hold"};

const char *const *config_section_keys(enum config_section sec, size_t *n)
{
    switch (sec) {
    case CONFIG_GLOBAL:
        *n = ARRAY_SIZE(global_keys);
        return global_keys;
    case CONFIG_LISTENER:
        *n = ARRAY_SIZE(listener_keys);
        return listener_keys;
    case CONFIG_POOL:
        *n = ARRAY_SIZE(pool_keys);
        return pool_keys;
    }
    *n = 0;
    return NULL;
}

/* Replace a string setting (a second [global] may set it again); false
 * when out of memory. */
static bool set_string(struct parse_ctx *c, char **field, const char *v)
{
    char *dup = strdup(v);
    if (dup == NULL) {
        c->oom = true;
        return false;
    }
    free(*field);
    *field = dup;
    return true;
}

/* resolve_interval: "ttl" (-1: the answer's TTL) or a duration. */
static void val_resolve_interval(struct parse_ctx *c, const char *key, const char *v, int64_t *out)
{
    if (strcmp(v, "ttl") == 0)
        *out = -1;
    else
        val_duration(c, key, v, 100, out);
}

/* resolvers = IP:PORT ...: kept as c-ares' "IP:PORT,[V6]:PORT" list. */
static void handle_resolvers(struct parse_ctx *c, const char *v)
{
    char buf[INI_MAX_LINE], csv[INI_MAX_LINE] = "";
    snprintf(buf, sizeof(buf), "%s", v);
    char *save = NULL;
    for (char *tok = strtok_r(buf, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save)) {
        struct sockaddr_any a;
        const char *why = addr_parse(tok, 0, &a);
        if (why != NULL) {
            add_error(c, c->lineno, "resolvers", "'%s': %s (expected IP:PORT ...)", tok, why);
            return;
        }
        char one[ADDR_STRLEN];
        addr_format(&a.u.sa, a.len, one, sizeof(one));
        size_t len = strlen(csv);
        snprintf(csv + len, sizeof(csv) - len, "%s%s", len ? "," : "", one);
    }
    set_string(c, &c->cfg->resolvers, csv);
}

/* user / group: resolved now, so a name the system does not know is a
 * config error with its line, not a failure at start. */
static void handle_identity(struct parse_ctx *c, const char *key, const char *v)
{
    struct config *cfg = c->cfg;
    bool is_user = strcmp(key, "user") == 0;
    gid_t primary = 0;
    const char *why = is_user ? privilege_lookup_user(v, &cfg->uid, &primary)
                              : privilege_lookup_group(v, &cfg->gid);
    if (why != NULL) {
        add_error(c, c->lineno, key, "'%s': %s", v, why);
        return;
    }
    if (!set_string(c, is_user ? &cfg->user : &cfg->group, v))
        return;
    if (is_user) {
        c->user_primary_gid = primary;
        c->user_line = c->lineno;
    }
    c->identity_line = c->lineno;
}

static void handle_global(struct parse_ctx *c, const char *key, const char *v)
{
    struct config *cfg = c->cfg;
    if (strcmp(key, "workers") == 0) {
        if (strcmp(v, "auto") == 0)
            c->workers_auto = true;
        else if (val_int(c, key, v, 1, SLUICE_MAX_WORKERS, &cfg->workers))
            c->workers_auto = false;
    } else if (strcmp(key, "log_level") == 0) {
        enum log_level lvl;
        if (log_level_parse(v, &lvl))
            cfg->log_level = (int)lvl;
        else
            add_error(c, c->lineno, key, "'%s' is not one of error, warn, info, debug", v);
    } else if (strcmp(key, "access_log") == 0) {
        if (strncmp(v, "syslog:", 7) == 0) {
            struct sockaddr_storage ss;
            socklen_t len;
            bool is_unix;
            const char *why = log_syslog_parse(v, &ss, &len, &is_unix);
            if (why != NULL) {
                add_error(c, c->lineno, key, "'%s': %s", v, why);
                return;
            }
        } else if (strcmp(v, "off") != 0 && strcmp(v, "stderr") != 0 && v[0] != '/') {
            add_error(c, c->lineno, key,
                      "'%s' must be off, stderr, an absolute path or syslog:ADDRESS", v);
            return;
        }
        set_string(c, &cfg->access_log, v);
    } else if (strcmp(key, "access_log_format") == 0) {
        /* A template may be written in double quotes (it may start or
         * end with spaces, which the INI reader strips otherwise). */
        size_t n = strlen(v);
        char *spec = n >= 2 && v[0] == '"' && v[n - 1] == '"' ? strndup(v + 1, n - 2) : strdup(v);
        if (spec == NULL) {
            c->oom = true;
            return;
        }
        struct access_format f;
        char why[200];
        if (access_format_compile(spec, &f, why, sizeof(why)) < 0) {
            add_error(c, c->lineno, key, "%s", why);
            free(spec);
            return;
        }
        access_format_free(&cfg->access_fmt);
        cfg->access_fmt = f;
        free(cfg->access_log_format);
        cfg->access_log_format = spec;
    } else if (strcmp(key, "syslog_facility") == 0) {
        int code = log_syslog_facility_parse(v);
        if (code < 0)
            add_error(c, c->lineno, key,
                      "'%s' is not a facility (kern, user, mail, daemon, auth, syslog, lpr, news, "
                      "uucp, cron, authpriv, ftp, local0 .. local7)",
                      v);
        else
            cfg->syslog_facility = code;
    } else if (strcmp(key, "syslog_tag") == 0) {
        size_t n = strlen(v);
        bool ok = n >= 1 && n <= 48;
        for (size_t i = 0; ok && i < n; i++)
            ok = v[i] > ' ' && v[i] <= '~';
        if (!ok)
            add_error(c, c->lineno, key,
                      "'%s' must be 1 to 48 printable ASCII characters, no spaces", v);
        else
            set_string(c, &cfg->syslog_tag, v);
    } else if (strcmp(key, "max_conns") == 0) {
        val_int(c, key, v, 1, 1000000, &cfg->max_conns);
    } else if (strcmp(key, "shutdown_timeout") == 0) {
        val_duration(c, key, v, 0, &cfg->shutdown_timeout_ms);
    } else if (strcmp(key, "buffer_size") == 0) {
        val_size(c, key, v, 1024, 1024 * 1024, &cfg->buffer_size);
    } else if (strcmp(key, "max_buffer") == 0) {
        val_size(c, key, v, 1024, 64 * 1024 * 1024, &cfg->max_buffer);
    } else if (strcmp(key, "admin_socket") == 0) {
        if (strcmp(v, "off") == 0)
            return;
        struct sockaddr_any a;
        const char *why = v[0] == '/' ? addr_parse_unix_path(v, &a) : "must be off or an absolute path";
        if (why != NULL) {
            add_error(c, c->lineno, key, "'%s': %s", v, why);
            return;
        }
        set_string(c, &cfg->admin_socket, v);
    } else if (strcmp(key, "pid_file") == 0) {
        if (strcmp(v, "off") == 0)
            return;
        if (v[0] != '/') {
            add_error(c, c->lineno, key, "'%s' must be off or an absolute path", v);
            return;
        }
        set_string(c, &cfg->pid_file, v);
    } else if (strcmp(key, "admin_mode") == 0) {
        if (!parse_mode(v, &cfg->admin_mode))
            add_error(c, c->lineno, key, "'%s' is not an octal mode like 0600", v);
    } else if (strcmp(key, "admin_http") == 0) {
        if (strcmp(v, "off") == 0)
            return;
        const char *why = addr_parse(v, ADDR_ALLOW_WILDCARD, &cfg->admin_http);
        if (why != NULL)
            add_error(c, c->lineno, key, "'%s': %s", v, why);
        else
            cfg->has_admin_http = true;
        c->admin_http_line = c->lineno;
    } else if (strcmp(key, "user") == 0 || strcmp(key, "group") == 0) {
        handle_identity(c, key, v);
    } else if (strcmp(key, "allow_root") == 0) {
        if (!parse_bool(v, &cfg->allow_root))
            add_error(c, c->lineno, key, "'%s' is not yes or no", v);
    } else if (strcmp(key, "resolvers") == 0) {
        handle_resolvers(c, v);
    } else if (strcmp(key, "resolve_interval") == 0) {
        val_resolve_interval(c, key, v, &cfg->resolve_interval_ms);
    } else if (strcmp(key, "resolve_interval_min") == 0) {
        val_duration(c, key, v, 100, &cfg->resolve_interval_min_ms);
        c->resolve_line = c->lineno;
    } else if (strcmp(key, "resolve_interval_max") == 0) {
        val_duration(c, key, v, 100, &cfg->resolve_interval_max_ms);
        c->resolve_line = c->lineno;
    } else if (strcmp(key, "resolve_hold") == 0) {
        val_duration(c, key, v, 0, &cfg->resolve_hold_ms);
    }
}

/* bind_owner = USER[:GROUP]: looked up now, like [global] user, so an
 * unknown name is an error with its line; without GROUP, the user's
 * primary group. */
static void handle_bind_owner(struct parse_ctx *c, struct listener_conf *l, const char *key,
                              const char *v)
{
    char user[256];
    const char *colon = strchr(v, ':');
    size_t n = colon ? (size_t)(colon - v) : strlen(v);
    if (n == 0 || n >= sizeof(user) || (colon && colon[1] == '\0')) {
        add_error(c, c->lineno, key, "'%s' is not USER or USER:GROUP", v);
        return;
    }
    memcpy(user, v, n);
    user[n] = '\0';
    gid_t primary = 0;
    const char *why = privilege_lookup_user(user, &l->owner_uid, &primary);
    if (why == NULL && colon != NULL)
        why = privilege_lookup_group(colon + 1, &l->owner_gid);
    else if (why == NULL)
        l->owner_gid = primary;
    if (why != NULL) {
        add_error(c, c->lineno, key, "'%s': %s", v, why);
        return;
    }
    set_string(c, &l->bind_owner, v);
}

/* A duration the kernel takes in whole seconds (TCP_KEEPIDLE/KEEPINTVL). */
static void val_keepalive_secs(struct parse_ctx *c, const char *key, const char *v, int *out)
{
    int64_t ms;
    if (!val_duration(c, key, v, 0, &ms))
        return;
    if (ms % 1000 != 0 || ms < 1000 || ms > KEEPALIVE_TIME_MAX * INT64_C(1000)) {
        add_error(c, c->lineno, key, "'%s' must be whole seconds from 1s to %ds", v,
                  KEEPALIVE_TIME_MAX);
        return;
    }
    *out = (int)(ms / 1000);
}

/* The keepalive keys, alike in [listener] and [pool]; false if key is
 * not one of them. */
static bool handle_keepalive(struct parse_ctx *c, const char *key, const char *v,
                             struct keepalive_conf *ka)
{
    if (strcmp(key, "tcp_keepalive") == 0) {
        if (!parse_bool(v, &ka->on))
            add_error(c, c->lineno, key, "'%s' is not on or off", v);
    } else if (strcmp(key, "keepalive_idle") == 0) {
        val_keepalive_secs(c, key, v, &ka->idle_s);
    } else if (strcmp(key, "keepalive_interval") == 0) {
        val_keepalive_secs(c, key, v, &ka->interval_s);
    } else if (strcmp(key, "keepalive_count") == 0) {
        val_int(c, key, v, 1, KEEPALIVE_COUNT_MAX, &ka->count);
    } else {
        return false;
    }
    return true;
}

/* Copy v into buf (INI_MAX_LINE bytes) and take its first two words; the
 * rest is left to strtok_r(NULL, ..., save). False if it has fewer. */
static bool two_words(const char *v, char *buf, char **save, char **first, char **second)
{
    snprintf(buf, INI_MAX_LINE, "%s", v);
    *save = NULL;
    *first = strtok_r(buf, " \t", save);
    *second = *first ? strtok_r(NULL, " \t", save) : NULL;
    return *second != NULL;
}

/* "HOST POOL" or "*.HOST POOL": one rule of a route = sni listener. */
static void handle_sni_rule(struct parse_ctx *c, struct listener_conf *l, const char *v)
{
    char buf[INI_MAX_LINE], *save, *host, *pool;
    if (!two_words(v, buf, &save, &host, &pool) || strtok_r(NULL, " \t", &save) != NULL) {
        add_error(c, c->lineno, "sni", "'%s': expected HOST POOL (HOST: a name or *.NAME)", v);
        return;
    }
    struct sni_rule r = {.line = c->lineno};
    const char *name = host;
    if (strncmp(host, "*.", 2) == 0) {
        r.wildcard = true;
        name += 2;
    }
    char norm[TLS_SNI_MAX + 1];
    size_t n;
    if (!tls_host_name(name, strlen(name), norm, &n)) {
        add_error(c, c->lineno, "sni", "'%s' is not a host name or *.NAME", host);
        return;
    }
    if (!name_valid(pool)) {
        add_error(c, c->lineno, "sni", "'%s' is not a valid pool name", pool);
        return;
    }
    for (int i = 0; i < l->nsni_rules; i++) {
        const struct sni_rule *o = &l->sni_rules[i];
        if (o->wildcard == r.wildcard && strcmp(o->host, norm) == 0) {
            add_error(c, c->lineno, "sni", "'%s': a second rule for it (first at line %d)", host,
                      o->line);
            return;
        }
    }
    int i = grow((void **)&l->sni_rules, &l->nsni_rules, sizeof(r));
    if (i < 0 || (r.host = strdup(norm)) == NULL || (r.pool_name = strdup(pool)) == NULL) {
        if (i >= 0) {
            free(r.host);
            l->nsni_rules--;
        }
        c->oom = true;
        return;
    }
    l->sni_rules[i] = r;
}

/* allow, deny, allow_file, deny_file -> enum acl_kind; -1 for other keys. */
static int acl_key_kind(const char *key)
{
    static const char *const names[] = {"allow", "deny", "allow_file", "deny_file"};
    for (size_t i = 0; i < ARRAY_SIZE(names); i++)
        if (strcmp(key, names[i]) == 0)
            return (int)i;
    return -1;
}

/* A list file's path: relative ones are relative to the config file's
 * directory (so the config and its lists move together). Malloc'd. */
static char *acl_file_path(const struct parse_ctx *c, const char *v)
{
    const char *slash = strrchr(c->name, '/');
    char *p = NULL;
    if (v[0] == '/' || slash == NULL)
        return strdup(v);
    if (asprintf(&p, "%.*s/%s", (int)(slash - c->name), c->name, v) < 0)
        return NULL;
    return p;
}

/* One allow/deny/allow_file/deny_file line: its position among them is
 * its rule number (first match wins). */
static void handle_acl(struct parse_ctx *c, struct listener_conf *l, const char *key,
                       enum acl_kind kind, const char *v)
{
    if (l->acl == NULL && (l->acl = acl_new()) == NULL) {
        c->oom = true;
        return;
    }
    bool allow = kind == ACL_ALLOW || kind == ACL_ALLOW_FILE;
    uint32_t rule = (uint32_t)l->nacl_lines;
    struct acl_line al = {.kind = (uint8_t)kind, .line = c->lineno};
    char why[512];
    int rc;
    if (kind == ACL_ALLOW || kind == ACL_DENY) {
        rc = acl_add_words(l->acl, v, rule, allow, why, sizeof(why));
        al.text = strdup(v);
    } else if (v[0] == '\0') {
        snprintf(why, sizeof(why), "expected the path of a list file");
        rc = -1;
    } else if ((al.text = acl_file_path(c, v)) == NULL) {
        rc = -2;
    } else {
        size_t n = 0;
        rc = acl_load_file(l->acl, al.text, rule, allow, &n, why, sizeof(why));
    }
    if (rc == -1) {
        add_error(c, c->lineno, key, "%s", why);
    } else if (rc == -2 || al.text == NULL) {
        c->oom = true;
    } else {
        int i = grow((void **)&l->acl_lines, &l->nacl_lines, sizeof(al));
        if (i >= 0) {
            l->acl_lines[i] = al;
            return;
        }
        c->oom = true;
    }
    free(al.text);
}

static void handle_listener(struct parse_ctx *c, const char *key, const char *v)
{
    struct listener_conf *l = &c->cfg->listeners[c->cur];
    if (handle_keepalive(c, key, v, &l->keepalive))
        return;
    if (strcmp(key, "bind") == 0) {
        struct sockaddr_any a;
        const char *why = addr_parse(v, ADDR_ALLOW_WILDCARD | ADDR_ALLOW_UNIX, &a);
        if (why != NULL) {
            add_error(c, c->lineno, key, "'%s': %s", v, why);
            return;
        }
        for (int i = 0; i < l->nbinds; i++) {
            if (addr_equal(&l->binds[i], &a)) {
                add_error(c, c->lineno, key, "'%s' is listed twice", v);
                return;
            }
        }
        int i = grow((void **)&l->binds, &l->nbinds, sizeof(a));
        if (i < 0) {
            c->oom = true;
            return;
        }
        l->binds[i] = a;
    } else if (strcmp(key, "pool") == 0) {
        if (!name_valid(v)) {
            add_error(c, c->lineno, key, "'%s' is not a valid pool name", v);
            return;
        }
        if ((l->pool_name = strdup(v)) == NULL)
            c->oom = true;
        l->pool_line = c->lineno;
    } else if (strcmp(key, "max_conns") == 0) {
        val_int(c, key, v, 1, 1000000, &l->max_conns);
    } else if (strcmp(key, "backlog") == 0) {
        val_int(c, key, v, 1, 65535, &l->backlog);
    } else if (strcmp(key, "relay") == 0) {
        static const char *const relays[] = {"copy", "splice", "uring"};
        int k;
        if (val_word(c, key, v, relays, ARRAY_SIZE(relays), &k)) {
            l->splice = k == 1;
            l->uring = k == 2;
            if (l->uring && !uring_compiled())
                add_error(c, c->lineno, key,
                          "'uring': this sluice was built without io_uring support (liburing)");
        }
    } else if (strcmp(key, "accept_proxy") == 0) {
        if (!parse_bool(v, &l->accept_proxy))
            add_error(c, c->lineno, key, "'%s' is not on or off", v);
    } else if (strcmp(key, "proxy_timeout") == 0) {
        val_duration(c, key, v, 1, &l->proxy_timeout_ms);
    } else if (strcmp(key, "bind_mode") == 0) {
        if (!parse_mode(v, &l->bind_mode))
            add_error(c, c->lineno, key, "'%s' is not an octal mode like 0660", v);
    } else if (strcmp(key, "bind_owner") == 0) {
        handle_bind_owner(c, l, key, v);
    } else if (strcmp(key, "route") == 0) {
        val_word2(c, key, v, "pool", "sni", &l->route_sni);
    } else if (strcmp(key, "sni") == 0) {
        handle_sni_rule(c, l, v);
    } else if (strcmp(key, "sni_default") == 0) {
        if (!name_valid(v)) {
            add_error(c, c->lineno, key, "'%s' is not a valid pool name", v);
            return;
        }
        set_string(c, &l->sni_default_name, v);
        l->sni_default_line = c->lineno;
    } else if (strcmp(key, "sni_timeout") == 0) {
        val_duration(c, key, v, 1, &l->sni_timeout_ms);
    } else if (acl_key_kind(key) >= 0) {
        handle_acl(c, l, key, (enum acl_kind)acl_key_kind(key), v);
    } else if (strcmp(key, "max_conns_per_source") == 0) {
        val_int(c, key, v, 0, 1000000, &l->max_conns_per_source);
    } else if (strcmp(key, "rate_per_source") == 0) {
        val_rate(c, key, v, &l->rate_per_source);
    } else if (strcmp(key, "max_conn_rate") == 0) {
        val_rate(c, key, v, &l->max_conn_rate);
    } else if (strcmp(key, "source_prefix_v4") == 0) {
        val_int(c, key, v, 1, 32, &l->source_prefix_v4);
    } else if (strcmp(key, "source_prefix_v6") == 0) {
        val_int(c, key, v, 1, 128, &l->source_prefix_v6);
    } else if (strcmp(key, "source_table_size") == 0) {
        val_int(c, key, v, 1, 16777216, &l->source_table_size);
    }
}

/* "NAME ADDR [weight=N] [backup] [max_conns=N]" */
/* "off", "v1" or "v2" -> 0, 1, 2; -1 if none of them. */
static int proxy_version(const char *v)
{
    return strcmp(v, "off") == 0 ? 0 : strcmp(v, "v1") == 0 ? 1 : strcmp(v, "v2") == 0 ? 2 : -1;
}

static void handle_server(struct parse_ctx *c, struct pool_conf *p, const char *v)
{
    char buf[INI_MAX_LINE], *save, *name, *addr;
    if (!two_words(v, buf, &save, &name, &addr)) {
        add_error(c, c->lineno, "server", "expected NAME ADDRESS [weight=N] [backup] [max_conns=N]");
        return;
    }
    if (!name_valid(name)) {
        add_error(c, c->lineno, "server", "'%s' is not a valid server name", name);
        return;
    }
    for (int i = 0; i < p->nservers + p->nnamed; i++) {
        const struct server_conf *o = i < p->nservers ? &p->servers[i] : &p->named[i - p->nservers];
        if (strcmp(o->name, name) == 0) {
            add_error(c, c->lineno, "server", "duplicate server '%s' in pool '%s' (first at line %d)",
                      name, p->name, o->line);
            return;
        }
    }
    struct server_conf s = {.weight = 1, .line = c->lineno, .send_proxy = -1};
    char host[ADDR_STRLEN - 8]; /* room for ":PORT" in addr_str */
    const char *why = addr_parse(addr, ADDR_ALLOW_UNIX, &s.addr);
    if (why != NULL && addr_parse_host(addr, host, sizeof(host), &s.port)) {
        why = NULL;
        snprintf(s.addr_str, sizeof(s.addr_str), "%s:%d", host, s.port & 0xffff);
    } else {
        host[0] = '\0';
        addr_format(&s.addr.u.sa, s.addr.len, s.addr_str, sizeof(s.addr_str));
    }
    bool dns_opt = false, weight_opt = false;
    enum server_dns_opt which;
    int k;
    char *opt;
    while ((opt = strtok_r(NULL, " \t", &save)) != NULL) {
        long n;
        if (strncmp(opt, "weight=", 7) == 0) {
            if (!parse_int_range(opt + 7, 0, 256, &n)) {
                add_error(c, c->lineno, "server", "%s: weight must be 0..256, not '%s'", name, opt + 7);
                return;
            }
            s.weight = (int)n;
            weight_opt = true;
        } else if (strncmp(opt, "max_conns=", 10) == 0) {
            if (!parse_int_range(opt + 10, 0, 1000000, &n)) {
                add_error(c, c->lineno, "server", "%s: max_conns must be 0..1000000, not '%s'", name,
                          opt + 10);
                return;
            }
            s.max_conns = (int)n;
        } else if (strcmp(opt, "backup") == 0) {
            s.backup = true;
        } else if (server_dns_word(c, name, opt, &which, &k)) {
            if (k < 0)
                return;
            dns_opt = true;
            if (which == SDNS_RESOLVE)
                s.resolve = (enum resolve_mode)k;
            else if (which == SDNS_FAMILY)
                s.family = (enum dns_family)k;
            else
                s.init_addr_none = true;
        } else if (strncmp(opt, "send_proxy=", 11) == 0) {
            if ((s.send_proxy = proxy_version(opt + 11)) < 0) {
                add_error(c, c->lineno, "server", "%s: send_proxy must be off, v1 or v2, not '%s'", name,
                          opt + 11);
                return;
            }
        } else {
            add_error(c, c->lineno, "server", "%s: unknown option '%s'", name, opt);
            return;
        }
    }
    if (s.resolve == RESOLVE_SRV) {
        /* The SRV records give the ports: the name stands alone. */
        char tmp[ADDR_STRLEN + 4];
        if (host[0] != '\0' || strlen(addr) >= sizeof(tmp) - 2) {
            add_error(c, c->lineno, "server",
                      "%s: resolve=srv takes a name without a port (the SRV records give them), not '%s'",
                      name, addr);
            return;
        }
        snprintf(tmp, sizeof(tmp), "%s:1", addr);
        if (!addr_parse_host(tmp, host, sizeof(host), &s.port)) {
            add_error(c, c->lineno, "server", "%s: '%s' is not a host name", name, addr);
            return;
        }
        s.port = 0;
        why = NULL;
        snprintf(s.addr_str, sizeof(s.addr_str), "%s", host);
        if (weight_opt) {
            add_error(c, c->lineno, "server", "%s: resolve=srv takes each weight from its SRV record",
                      name);
            return;
        }
    }
    if (why != NULL) {
        add_error(c, c->lineno, "server", "'%s': %s", addr, why);
        return;
    }
    if (dns_opt && host[0] == '\0') {
        add_error(c, c->lineno, "server", "%s: resolve, family and init_addr need a host name, not '%s'",
                  name, addr);
        return;
    }
    /* resolve=all/srv: a template; its servers come from the answers. */
    struct server_conf **arr = s.resolve != RESOLVE_FIRST ? &p->named : &p->servers;
    int *n = s.resolve != RESOLVE_FIRST ? &p->nnamed : &p->nservers;
    int i = grow((void **)arr, n, sizeof(s));
    if (i < 0 || (s.name = strdup(name)) == NULL || (host[0] && (s.host = strdup(host)) == NULL)) {
        if (i >= 0) {
            free(s.name);
            (*n)--;
        }
        c->oom = true;
        return;
    }
    (*arr)[i] = s;
}

static void handle_pool(struct parse_ctx *c, const char *key, const char *v)
{
    struct pool_conf *p = &c->cfg->pools[c->cur];
    if (handle_keepalive(c, key, v, &p->keepalive))
        return;
    if (strcmp(key, "server") == 0) {
        handle_server(c, p, v);
    } else if (strcmp(key, "balance") == 0) {
        if (!balance_parse(v, &p->balance))
            add_error(c, c->lineno, key,
                      "'%s' is not one of roundrobin, leastconn, random, source, first", v);
    } else if (strcmp(key, "connect_timeout") == 0) {
        val_duration(c, key, v, 1, &p->connect_timeout_ms);
    } else if (strcmp(key, "idle_timeout") == 0) {
        val_duration(c, key, v, 1, &p->idle_timeout_ms);
    } else if (strcmp(key, "fail_timeout") == 0) {
        val_duration(c, key, v, 0, &p->fail_timeout_ms);
    } else if (strcmp(key, "retries") == 0) {
        val_int(c, key, v, 0, 16, &p->retries);
    } else if (strcmp(key, "fall") == 0) {
        val_int(c, key, v, 1, 1000, &p->fall);
    } else if (strcmp(key, "max_queue") == 0) {
        val_int(c, key, v, 0, 1000000, &p->max_queue);
    } else if (strcmp(key, "queue_timeout") == 0) {
        val_duration(c, key, v, 1, &p->queue_timeout_ms);
    } else if (strcmp(key, "resolve_interval") == 0) {
        val_resolve_interval(c, key, v, &p->resolve_interval_ms);
    } else if (strcmp(key, "resolve_hold") == 0) {
        val_duration(c, key, v, 0, &p->resolve_hold_ms);
    } else if (strcmp(key, "send_proxy") == 0) {
        if ((p->send_proxy = proxy_version(v)) < 0) {
            p->send_proxy = 0;
            add_error(c, c->lineno, key, "'%s' is not one of off, v1, v2", v);
        }
    } else if (strcmp(key, "rise") == 0) {
        val_int(c, key, v, 1, 1000, &p->rise);
    } else if (strcmp(key, "check") == 0) {
        static const char *const checks[] = {[CHECK_NONE] = "none", [CHECK_TCP] = "tcp",
                                             [CHECK_SEND_EXPECT] = "send-expect"};
        int k;
        if (val_word(c, key, v, checks, ARRAY_SIZE(checks), &k))
            p->check = (enum check_kind)k;
    } else if (strcmp(key, "check_interval") == 0) {
        val_duration(c, key, v, 10, &p->check_interval_ms);
    } else if (strcmp(key, "check_timeout") == 0) {
        val_duration(c, key, v, 1, &p->check_timeout_ms);
    } else if (strcmp(key, "check_send") == 0 || strcmp(key, "check_expect") == 0) {
        char *out;
        size_t n;
        const char *why = parse_escapes(v, &out, &n);
        if (why != NULL) {
            add_error(c, c->lineno, key, "'%s': %s", v, why);
            return;
        }
        if (key[6] == 's') {
            p->check_send = out;
            p->check_send_len = n;
        } else {
            p->check_expect = out;
            p->check_expect_len = n;
        }
    }
}

/* Edit distance between two short keys (insert, delete, substitute, and
 * swap of neighbours), capped: keys are at most a few dozen bytes. */
static int key_distance(const char *a, const char *b)
{
    enum { KMAX = 40 };
    size_t la = strlen(a), lb = strlen(b);
    if (la >= KMAX || lb >= KMAX)
        return KMAX;
    int d[KMAX][KMAX];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            int cost = tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]);
            int best = d[i - 1][j - 1] + cost;
            if (d[i - 1][j] + 1 < best)
                best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best)
                best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    }
    return d[la][lb];
}

/* The closest of keys to name, if close enough to be a typo. */
static const char *key_suggest(const char *name, const char *const *keys, size_t n)
{
    const char *best = NULL;
    int best_d = (int)strlen(name) / 3 + 1;
    if (best_d > 3)
        best_d = 3;
    for (size_t i = 0; i < n; i++) {
        int d = key_distance(name, keys[i]);
        if (d <= best_d && (best == NULL || d < key_distance(name, best)))
            best = keys[i];
    }
    return best;
}

/* "unknown key", with the likely meant key or the section it belongs in. */
static void unknown_key(struct parse_ctx *c, const char *name, const char *section,
                        const char *const *keys, size_t nkeys)
{
    static const struct {
        const char *const *keys;
        size_t n;
        const char *where;
    } others[] = {
        {global_keys, ARRAY_SIZE(global_keys), "[global]"},
        {listener_keys, ARRAY_SIZE(listener_keys), "[listener NAME]"},
        {pool_keys, ARRAY_SIZE(pool_keys), "[pool NAME]"},
    };
    const char *blank = strpbrk(name, " \t");
    if (blank != NULL) {
        /* "bind 127.0.0.1:80": inih split at the ':' of the address. */
        add_error(c, c->lineno, name, "not a key: missing '=' after '%.*s'?", (int)(blank - name),
                  name);
        return;
    }
    const char *hint = key_suggest(name, keys, nkeys);
    if (hint != NULL) {
        add_error(c, c->lineno, name, "unknown key in [%s] (did you mean '%s'?)", section, hint);
        return;
    }
    for (size_t i = 0; i < ARRAY_SIZE(others); i++) {
        if (others[i].keys != keys && static_key(name, others[i].keys, others[i].n) != NULL) {
            add_error(c, c->lineno, name, "unknown key in [%s] ('%s' belongs in %s)", section,
                      name, others[i].where);
            return;
        }
    }
    add_error(c, c->lineno, name, "unknown key in [%s]", section);
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
    (void)section; /* the reader tracks sections itself */
    struct parse_ctx *c = user;
    const char *const *keys;
    size_t nkeys;
    switch (c->kind) {
    case SEC_NONE:
        add_error(c, c->lineno, name, "key outside of any section");
        return 1;
    case SEC_UNKNOWN:
        return 1; /* the section header already got its error */
    case SEC_GLOBAL:
        keys = global_keys, nkeys = ARRAY_SIZE(global_keys);
        break;
    case SEC_LISTENER:
        keys = listener_keys, nkeys = ARRAY_SIZE(listener_keys);
        break;
    case SEC_POOL:
        keys = pool_keys, nkeys = ARRAY_SIZE(pool_keys);
        break;
    default:
        return 1;
    }
    const char *key = static_key(name, keys, nkeys);
    if (key == NULL) {
        unknown_key(c, name, section, keys, nkeys);
        return 1;
    }
    bool repeatable = strcmp(key, "server") == 0 || strcmp(key, "bind") == 0 ||
                      (strcmp(key, "sni") == 0 && c->kind == SEC_LISTENER) ||
                      (c->kind == SEC_LISTENER && acl_key_kind(key) >= 0);
    if (!repeatable && seen_key(c, key)) {
        add_error(c, c->lineno, key, "'%s': set twice in this section", value);
        return 1;
    }
    if (value[0] == '\0') {
        add_error(c, c->lineno, key, "empty value");
        return 1;
    }
    if (c->cur < 0 && c->kind != SEC_GLOBAL)
        return 1; /* section header was invalid */
    if (c->kind == SEC_GLOBAL)
        handle_global(c, key, value);
    else if (c->kind == SEC_LISTENER)
        handle_listener(c, key, value);
    else
        handle_pool(c, key, value);
    return 1;
}

struct pool_conf *config_find_pool(struct config *cfg, const char *name)
{
    for (int i = 0; i < cfg->npools; i++)
        if (strcmp(cfg->pools[i].name, name) == 0)
            return &cfg->pools[i];
    return NULL;
}

/* route = sni: the pools come from the rules and sni_default, each of
 * which must exist; the listener's own `pool` has no meaning then. */
static void validate_sni(struct parse_ctx *c, struct listener_conf *l)
{
    struct config *cfg = c->cfg;
    if (l->pool_name != NULL)
        add_error(c, l->pool_line, "pool",
                  "listener '%s' has route = sni: it picks pools by sni rules and sni_default, "
                  "not by pool", l->name);
    if (l->nsni_rules == 0 && l->sni_default_name == NULL)
        add_error(c, l->line, "sni", "listener '%s' has route = sni but no sni rule or sni_default",
                  l->name);
    for (int i = 0; i < l->nsni_rules; i++) {
        struct sni_rule *r = &l->sni_rules[i];
        if ((r->pool = config_find_pool(cfg, r->pool_name)) == NULL)
            add_error(c, r->line, "sni", "no [pool %s] section", r->pool_name);
    }
    if (l->sni_default_name != NULL &&
        (l->sni_default = config_find_pool(cfg, l->sni_default_name)) == NULL)
        add_error(c, l->sni_default_line, "sni_default", "no [pool %s] section",
                  l->sni_default_name);
}

struct pool_conf *config_route_sni(const struct listener_conf *l, const char *host)
{
    /* Exact rules win over wildcards, whatever their order in the file. */
    for (int i = 0; host[0] != '\0' && i < l->nsni_rules; i++)
        if (!l->sni_rules[i].wildcard && strcmp(l->sni_rules[i].host, host) == 0)
            return l->sni_rules[i].pool;
    const char *dot = strchr(host, '.');
    for (int i = 0; dot != NULL && dot != host && i < l->nsni_rules; i++)
        if (l->sni_rules[i].wildcard && strcmp(l->sni_rules[i].host, dot + 1) == 0)
            return l->sni_rules[i].pool;
    return l->sni_default;
}

/* Cross-section checks once the whole file is read. */
/* Unix-socket clients have no address: access lists on a listener with
 * only unix: binds could never apply, unless a PROXY header brings one. */
static void validate_acl(struct parse_ctx *c, const struct listener_conf *l)
{
    if (l->nacl_lines == 0 || l->accept_proxy)
        return;
    for (int b = 0; b < l->nbinds; b++)
        if (l->binds[b].u.sa.sa_family != AF_UNIX)
            return;
    static const char *const keys[] = {"allow", "deny", "allow_file", "deny_file"};
    add_error(c, l->acl_lines[0].line, keys[l->acl_lines[0].kind],
              "listener '%s' has only unix: binds, whose clients have no address "
              "(access lists there need accept_proxy = on)",
              l->name);
}

static void validate(struct parse_ctx *c)
{
    struct config *cfg = c->cfg;
    if (cfg->group != NULL && cfg->user == NULL)
        add_error(c, c->identity_line, "group", "needs user (the group alone is not switched to)");
    else if (cfg->user != NULL && cfg->group == NULL)
        cfg->gid = c->user_primary_gid;
    if (cfg->user != NULL && cfg->uid == 0 && !cfg->allow_root)
        add_error(c, c->user_line, "user",
                  "'%s' is root: sluice would keep every privilege; name an unprivileged user, "
                  "or set allow_root = yes to run as root on purpose", cfg->user);
    if (cfg->user == NULL && cfg->group == NULL && !cfg->allow_root) {
        /* Like nginx: a root start drops to a default user (see privilege.h). */
        const char *name = privilege_default_user(&cfg->uid, &cfg->gid);
        if (name != NULL) {
            set_string(c, &cfg->user, name);
            cfg->user_default = true;
        }
    }
    if (cfg->resolve_interval_max_ms < cfg->resolve_interval_min_ms)
        add_error(c, c->resolve_line, "resolve_interval_max", "%lldms must be at least resolve_interval_min (%lldms)",
                  (long long)cfg->resolve_interval_max_ms, (long long)cfg->resolve_interval_min_ms);
    if (cfg->max_buffer < cfg->buffer_size)
        add_error(c, c->global_line, "max_buffer", "%u must be at least buffer_size (%u)",
                  cfg->max_buffer, cfg->buffer_size);
    if (cfg->nlisteners == 0 && c->errs->n == 0)
        add_error(c, c->lineno > 0 ? c->lineno : 1, "listener", "no [listener NAME] section");
    for (int i = 0; i < cfg->npools; i++) {
        struct pool_conf *p = &cfg->pools[i];
        if (p->nservers == 0 && p->nnamed == 0)
            add_error(c, p->line, "server", "pool '%s' has no servers", p->name);
        if (p->check == CHECK_SEND_EXPECT && p->check_expect == NULL)
            add_error(c, p->line, "check_expect", "pool '%s': check = send-expect needs check_expect",
                      p->name);
        if (p->check != CHECK_SEND_EXPECT && (p->check_send || p->check_expect))
            add_error(c, p->line, "check_send", "pool '%s': check_send/check_expect need check = send-expect",
                      p->name);
        if (p->resolve_interval_ms == -2)
            p->resolve_interval_ms = cfg->resolve_interval_ms;
        if (p->resolve_hold_ms == -2)
            p->resolve_hold_ms = cfg->resolve_hold_ms;
        for (int j = 0; j < p->nservers + p->nnamed; j++) {
            struct server_conf *sv = j < p->nservers ? &p->servers[j] : &p->named[j - p->nservers];
            sv->pool = p;
            sv->resolve_interval_ms = p->resolve_interval_ms;
            sv->resolve_hold_ms = p->resolve_hold_ms;
        }
        if (p->queue_timeout_ms < 0)
            p->queue_timeout_ms = p->connect_timeout_ms;
    }
    for (int i = 0; i < cfg->nlisteners; i++) {
        struct listener_conf *l = &cfg->listeners[i];
        if (l->nbinds == 0)
            add_error(c, l->line, "bind", "listener '%s' has no bind address", l->name);
        if (l->route_sni)
            validate_sni(c, l);
        else if (l->pool_name == NULL)
            add_error(c, l->line, "pool", "listener '%s' names no pool", l->name);
        else if ((l->pool = config_find_pool(cfg, l->pool_name)) == NULL)
            add_error(c, l->pool_line, "pool", "no [pool %s] section", l->pool_name);
        if (!l->route_sni && l->nsni_rules > 0)
            add_error(c, l->sni_rules[0].line, "sni", "listener '%s': sni rules need route = sni",
                      l->name);
        if (!l->route_sni && l->sni_default_name != NULL)
            add_error(c, l->sni_default_line, "sni_default",
                      "listener '%s': sni_default needs route = sni", l->name);
        validate_acl(c, l);
        /* The stats endpoint must not share a port with the proxy: both use
         * SO_REUSEPORT, so the kernel would split clients between them. */
        for (int b = 0; cfg->has_admin_http && b < l->nbinds; b++)
            if (addr_equal(&l->binds[b], &cfg->admin_http))
                add_error(c, c->admin_http_line, "admin_http",
                          "same address as a bind of listener '%s'", l->name);
        /* The admin socket's file cannot also be a listener's. */
        for (int b = 0; cfg->admin_socket && b < l->nbinds; b++)
            if (l->binds[b].u.sa.sa_family == AF_UNIX &&
                strcmp(l->binds[b].u.un.sun_path, cfg->admin_socket) == 0)
                add_error(c, l->line, "bind", "unix:%s is also the admin_socket",
                          cfg->admin_socket);
        /* One address may belong to one listener only. */
        for (int b = 0; b < l->nbinds; b++) {
            for (int k = 0; k < i; k++) {
                struct listener_conf *o = &cfg->listeners[k];
                for (int ob = 0; ob < o->nbinds; ob++) {
                    if (addr_equal(&l->binds[b], &o->binds[ob])) {
                        char a[ADDR_STRLEN];
                        addr_format(&l->binds[b].u.sa, l->binds[b].len, a, sizeof(a));
                        add_error(c, l->line, "bind", "%s is also bound by listener '%s'", a,
                                  o->name);
                    }
                }
            }
        }
    }
}

static int online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        return 1;
    return n > SLUICE_MAX_WORKERS ? SLUICE_MAX_WORKERS : (int)n;
}

static void config_free(struct config *cfg);

struct config *config_load_buffer(const char *data, size_t len, const char *name,
                                  struct config_errors *errs)
{
    struct config *cfg = calloc(1, sizeof(*cfg));
    if (cfg == NULL)
        return NULL;
    atomic_init(&cfg->refs, 1);
    cfg->log_level = LOG_INFO;
    cfg->access_log = strdup("off");
    cfg->access_log_format = strdup("kv");
    cfg->access_fmt.kind = ACCESS_FMT_KV;
    cfg->syslog_facility = 16; /* local0 */
    cfg->syslog_tag = strdup("sluice");
    cfg->max_conns = 100000;
    cfg->shutdown_timeout_ms = 30000;
    cfg->buffer_size = 16 * 1024;
    cfg->max_buffer = 256 * 1024;
    cfg->admin_mode = 0600;
    cfg->resolve_interval_ms = -1;
    cfg->resolve_interval_min_ms = 1000;
    cfg->resolve_interval_max_ms = 300 * 1000;
    cfg->resolve_hold_ms = 10 * 60 * 1000;
    cfg->path = strdup(name);
    struct parse_ctx c = {
        .name = name, .data = data, .len = len, .cfg = cfg, .errs = errs,
        .kind = SEC_NONE, .cur = -1, .workers_auto = true,
    };
    if (cfg->access_log == NULL || cfg->path == NULL || cfg->access_log_format == NULL ||
        cfg->syslog_tag == NULL)
        c.oom = true;
    int rc = ini_parse_stream(reader, &c, handler, &c);
    if (rc > 0) {
        /* inih's own syntax error (no '=' or ']'): it reports the first. */
        add_error(&c, rc, "line", "syntax error (expected [section] or key = value)");
    } else if (rc < 0) {
        c.oom = true;
    }
    if (c.workers_auto)
        cfg->workers = online_cpus();
    validate(&c);
    if (c.oom)
        add_error(&c, c.lineno, "config", "out of memory");
    errors_sort(errs);
    bool named = false;
    for (int i = 0; i < cfg->npools; i++)
        named |= cfg->pools[i].nnamed > 0;
    if (errs->n == 0 && named) {
        if ((cfg->text = malloc(len + 1)) == NULL) {
            add_error(&c, 1, "config", "out of memory");
        } else {
            memcpy(cfg->text, data, len);
            cfg->text[len] = '\0';
            cfg->text_len = len;
        }
    }
    if (errs->n > 0) {
        config_free(cfg);
        return NULL;
    }
    return cfg;
}

struct config *config_load_file(const char *path, struct config_errors *errs)
{
    struct parse_ctx c = {.name = path, .errs = errs};
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        add_error(&c, 0, "file", "cannot open: %s", strerror(errno));
        return NULL;
    }
    /* fopen() opens a directory for reading; say so instead of "cannot read". */
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        add_error(&c, 0, "file", "cannot read: %s", strerror(EISDIR));
        fclose(f);
        return NULL;
    }
    char *data = malloc(MAX_CONFIG_BYTES);
    if (data == NULL) {
        add_error(&c, 0, "file", "cannot read: %s", strerror(ENOMEM));
        fclose(f);
        return NULL;
    }
    size_t n = fread(data, 1, MAX_CONFIG_BYTES, f);
    int read_errno = ferror(f) ? errno : 0;
    bool too_big = read_errno == 0 && n == MAX_CONFIG_BYTES && fgetc(f) != EOF;
    fclose(f);
    if (read_errno != 0 || too_big) {
        if (too_big)
            add_error(&c, 0, "file", "larger than 16 MiB");
        else
            add_error(&c, 0, "file", "cannot read: %s", strerror(read_errno));
        free(data);
        return NULL;
    }
    struct config *cfg = config_load_buffer(data, n, path, errs);
    free(data);
    return cfg;
}

static void backend_init(struct registry_obj *o)
{
    struct backend *b = (struct backend *)o;
    atomic_init(&b->health, HEALTH_UP);
    atomic_init(&b->admin, ADMIN_ENABLED);
    atomic_init(&b->addr_valid, true); /* resolver_adopt() sets it for names */
    atomic_flag_clear(&b->addr.wlock);
}

/* Make sure chunks of per-worker counters exist for workers 0..workers-1
 * (each chunk: SLUICE_WS_CHUNK elements of elem bytes, zeroed). Runs on the
 * control thread before any worker of a new index starts, so no worker
 * ever sees a chunk appear under it. */
static int ws_reserve(void **chunks, size_t elem, int workers)
{
    size_t bytes = elem * SLUICE_WS_CHUNK;
    for (int c = 0; c * SLUICE_WS_CHUNK < workers; c++) {
        if (chunks[c] != NULL)
            continue;
        void *p = aligned_alloc(SLUICE_CACHELINE, bytes);
        if (p == NULL)
            return -1;
        memset(p, 0, bytes);
        chunks[c] = p;
    }
    return 0;
}

static void ws_free(void **chunks)
{
    for (int c = 0; c < SLUICE_WS_CHUNKS; c++)
        free(chunks[c]);
}

/* Free the latency histograms hung on each element of the chunks (a
 * struct histogram *_Atomic at byte offset off of elements elem wide). */
static void ws_free_hists(void **chunks, size_t elem, size_t off)
{
    for (int c = 0; c < SLUICE_WS_CHUNKS; c++)
        for (int i = 0; chunks[c] != NULL && i < SLUICE_WS_CHUNK; i++)
            free(atomic_load(
                (struct histogram * _Atomic *)((char *)chunks[c] + elem * (size_t)i + off)));
}

static void backend_fini(struct registry_obj *o)
{
    ws_free_hists(((struct backend *)o)->ws, sizeof(struct backend_wstats),
                  offsetof(struct backend_wstats, hists));
    ws_free(((struct backend *)o)->ws);
    free(((struct backend *)o)->dns_set);
}

static void listener_fini(struct registry_obj *o)
{
    ws_free_hists(((struct listener_state *)o)->ws, sizeof(struct listener_wstats),
                  offsetof(struct listener_wstats, hists));
    ws_free(((struct listener_state *)o)->ws);
    srclimit_table_put(((struct listener_state *)o)->srct);
}

/* Give l its per-source table: the running generation's (st->srct) when
 * it was made for the same size and prefixes (so a reload keeps every
 * source's live count and bucket), else a new, empty one, which becomes
 * the listener's when this generation is committed
 * (config_commit_sources()). Sessions keep the table of the generation
 * they started on (their config holds a reference), so they always give
 * back their count where they took it. Control thread. */
static int attach_sources(struct listener_conf *l)
{
    struct listener_state *st = l->st;
    if (l->max_conns_per_source == 0 && l->rate_per_source.n == 0)
        return 0;
    if (st->srct != NULL && srclimit_table_fits(st->srct, l->source_table_size, l->source_prefix_v4,
                                                l->source_prefix_v6)) {
        srclimit_table_ref(st->srct);
        l->srct = st->srct;
        return 0;
    }
    l->srct = srclimit_table_new(l->source_table_size, l->source_prefix_v4, l->source_prefix_v6);
    return l->srct == NULL ? -1 : 0;
}

void config_commit_sources(struct config *cfg)
{
    for (int i = 0; i < cfg->nlisteners; i++) {
        struct listener_conf *l = &cfg->listeners[i];
        if (l->st->srct == l->srct)
            continue;
        srclimit_table_put(l->st->srct); /* older generations keep their own */
        if (l->srct != NULL)
            srclimit_table_ref(l->srct);
        l->st->srct = l->srct;
    }
}

/* Link s (of pool p) to its struct backend "POOL/NAME". */
static int attach_server(const struct config *cfg, const struct pool_conf *p, struct server_conf *s)
{
    char key[2 * NAME_MAX_CHARS + 16];
    snprintf(key, sizeof(key), "%s/%s", p->name, s->name);
    s->be = (struct backend *)registry_get(&backend_registry, key, sizeof(struct backend),
                                           backend_init);
    if (s->be == NULL || ws_reserve(s->be->ws, sizeof(struct backend_wstats), cfg->workers) < 0)
        return -1;
    if (!s->be->weight_set) {
        /* A new server starts with its weight from the file; known
         * ones get it in config_apply_weights() at commit. */
        atomic_store(&s->be->weight, s->weight);
        s->be->weight_set = true;
    }
    return 0;
}

int config_attach_runtime(struct config *cfg)
{
    for (int i = 0; i < cfg->npools; i++) {
        struct pool_conf *p = &cfg->pools[i];
        p->q = (struct pool_queue *)registry_get(&queue_registry, p->name,
                                                 sizeof(struct pool_queue), queue_obj_init);
        if (p->q == NULL)
            return -1;
        for (int j = 0; j < p->nservers; j++)
            if (attach_server(cfg, p, &p->servers[j]) < 0)
                return -1;
        /* A template's backend holds its name's resolution, never sessions. */
        for (int j = 0; j < p->nnamed; j++)
            if (attach_server(cfg, p, &p->named[j]) < 0)
                return -1;
    }
    for (int i = 0; i < cfg->nlisteners; i++) {
        struct listener_conf *l = &cfg->listeners[i];
        l->st = (struct listener_state *)registry_get(&listener_registry, l->name,
                                                      sizeof(struct listener_state), NULL);
        if (l->st == NULL ||
            ws_reserve(l->st->ws, sizeof(struct listener_wstats), cfg->workers) < 0 ||
            attach_sources(l) < 0)
            return -1;
    }
    cfg->runtime_attached = true;
    return 0;
}

struct server_conf *config_add_server(struct config *cfg, struct pool_conf *p,
                                      const struct server_conf *tmpl, int num,
                                      const struct dns_target *t)
{
    char name[NAME_MAX_CHARS + 16];
    snprintf(name, sizeof(name), "%s#%d", tmpl->name, num);
    struct server_conf *arr = realloc(p->servers, sizeof(*arr) * (size_t)(p->nservers + 1));
    if (arr == NULL)
        return NULL;
    p->servers = arr;
    struct server_conf *s = &arr[p->nservers];
    *s = (struct server_conf){
        .addr = t->addr, .weight = t->weight, .max_conns = tmpl->max_conns,
        .send_proxy = tmpl->send_proxy, .backup = t->backup, .line = tmpl->line,
        .resolve_interval_ms = tmpl->resolve_interval_ms, .resolve_hold_ms = tmpl->resolve_hold_ms,
        .pool = p, .tmpl = tmpl,
    };
    addr_format(&t->addr.u.sa, t->addr.len, s->addr_str, sizeof(s->addr_str));
    if ((s->name = strdup(name)) == NULL)
        return NULL;
    p->nservers++;
    if (attach_server(cfg, p, s) < 0)
        return NULL; /* config_free() puts what was attached */
    return s;
}

bool config_server_known(const struct pool_conf *p, const char *name)
{
    char key[2 * NAME_MAX_CHARS + 16];
    snprintf(key, sizeof(key), "%s/%s", p->name, name);
    return registry_has(&backend_registry, key);
}

void config_apply_weights(struct config *cfg)
{
    for (int i = 0; i < cfg->npools; i++)
        for (int j = 0; j < cfg->pools[i].nservers; j++)
            atomic_store(&cfg->pools[i].servers[j].be->weight, cfg->pools[i].servers[j].weight);
}

void config_ref(struct config *cfg)
{
    atomic_fetch_add_explicit(&cfg->refs, 1, memory_order_relaxed);
}

void config_unref(struct config *cfg)
{
    if (cfg != NULL && atomic_fetch_sub_explicit(&cfg->refs, 1, memory_order_acq_rel) == 1)
        config_free(cfg);
}

static void config_free(struct config *cfg)
{
    for (int i = 0; i < cfg->npools; i++) {
        struct pool_conf *p = &cfg->pools[i];
        for (int j = 0; j < p->nservers; j++) {
            free(p->servers[j].name);
            free(p->servers[j].host);
            if (p->servers[j].be)
                registry_put(&backend_registry, &p->servers[j].be->obj);
        }
        for (int j = 0; j < p->nnamed; j++) {
            free(p->named[j].name);
            free(p->named[j].host);
            free(p->named[j].dns_init_set);
            if (p->named[j].be)
                registry_put(&backend_registry, &p->named[j].be->obj);
        }
        free(p->named);
        if (p->q)
            registry_put(&queue_registry, &p->q->obj);
        for (int w = 0; w < SLUICE_MAX_WORKERS; w++)
            free(p->wstate[w]);
        free(p->servers);
        free(p->name);
        free(p->check_send);
        free(p->check_expect);
    }
    for (int i = 0; i < cfg->nlisteners; i++) {
        struct listener_conf *l = &cfg->listeners[i];
        srclimit_table_put(l->srct);
        if (l->st)
            registry_put(&listener_registry, &l->st->obj);
        for (int r = 0; r < l->nsni_rules; r++) {
            free(l->sni_rules[r].host);
            free(l->sni_rules[r].pool_name);
        }
        free(l->sni_rules);
        free(l->sni_default_name);
        for (int r = 0; r < l->nacl_lines; r++)
            free(l->acl_lines[r].text);
        free(l->acl_lines);
        acl_free(l->acl);
        free(l->binds);
        free(l->bind_owner);
        free(l->pool_name);
        free(l->name);
    }
    free(cfg->pools);
    free(cfg->listeners);
    free(cfg->access_log);
    free(cfg->access_log_format);
    access_format_free(&cfg->access_fmt);
    free(cfg->syslog_tag);
    free(cfg->admin_socket);
    free(cfg->pid_file);
    free(cfg->resolvers);
    free(cfg->user);
    free(cfg->group);
    free(cfg->path);
    free(cfg->text);
    free(cfg);
}
