/* config_dump.c - the effective configuration as an INI file (sluice -T):
 * every key of every section with its value or default, in a form that
 * config_load_file() reads back to the same configuration. The sections'
 * keys are emitted through a config_sink (config_dump.h), so the reload
 * diff shows values exactly as this file writes them. */
#include "sluice/config_dump.h"
#include "sluice/addr.h"
#include "sluice/config.h"
#include "sluice/log.h"
#include "sluice/strbuf.h"

#include <grp.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

/* Room for any one value but the check strings (which use a strbuf). */
#define VAL_MAX 512

static void kv(struct config_sink *sink, const char *key, const char *value)
{
    sink->kv(sink, key, value);
}

static void kvf(struct config_sink *sink, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void kvf(struct config_sink *sink, const char *key, const char *fmt, ...)
{
    char v[VAL_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v, sizeof(v), fmt, ap);
    va_end(ap);
    sink->kv(sink, key, v);
}

static void comment(struct config_sink *sink, const char *text)
{
    if (sink->comment)
        sink->comment(sink, text);
}

static void put_duration(struct config_sink *sink, const char *key, int64_t ms)
{
    if (ms != 0 && ms % 3600000 == 0)
        kvf(sink, key, "%" PRId64 "h", ms / 3600000);
    else if (ms != 0 && ms % 60000 == 0)
        kvf(sink, key, "%" PRId64 "m", ms / 60000);
    else if (ms % 1000 == 0)
        kvf(sink, key, "%" PRId64 "s", ms / 1000);
    else
        kvf(sink, key, "%" PRId64 "ms", ms);
}

static void put_rate(struct config_sink *sink, const char *key, const struct rate_conf *r)
{
    if (r->n == 0) {
        kv(sink, key, "off");
        return;
    }
    int64_t ms = r->per_ms;
    if (ms % 3600000 == 0)
        kvf(sink, key, "%d/%" PRId64 "h", r->n, ms / 3600000);
    else if (ms % 60000 == 0)
        kvf(sink, key, "%d/%" PRId64 "m", r->n, ms / 60000);
    else if (ms % 1000 == 0)
        kvf(sink, key, "%d/%" PRId64 "s", r->n, ms / 1000);
    else
        kvf(sink, key, "%d/%" PRId64 "ms", r->n, ms);
}

static void put_size(struct config_sink *sink, const char *key, uint32_t bytes)
{
    if (bytes != 0 && bytes % (1024 * 1024) == 0)
        kvf(sink, key, "%um", bytes / (1024 * 1024));
    else if (bytes != 0 && bytes % 1024 == 0)
        kvf(sink, key, "%uk", bytes / 1024);
    else
        kvf(sink, key, "%u", bytes);
}

/* A check string with the escapes parse_escapes() reads; '#', ';' and
 * blanks are escaped too so no comment or trim can change it. */
static void put_escaped(struct config_sink *sink, const char *key, const char *s, size_t n)
{
    struct strbuf b;
    strbuf_init(&b);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '\r')
            strbuf_puts(&b, "\\r");
        else if (ch == '\n')
            strbuf_puts(&b, "\\n");
        else if (ch == '\t')
            strbuf_puts(&b, "\\t");
        else if (ch == '\\')
            strbuf_puts(&b, "\\\\");
        else if (ch <= ' ' || ch >= 0x7f || ch == '#' || ch == ';')
            strbuf_printf(&b, "\\x%02x", ch);
        else
            strbuf_append(&b, (const char *)&ch, 1);
    }
    kv(sink, key, b.data ? b.data : "");
    strbuf_free(&b);
}

static void put_addr(struct config_sink *sink, const char *key, const struct sockaddr_any *a)
{
    char buf[ADDR_STRLEN];
    addr_format(&a->u.sa, a->len, buf, sizeof(buf));
    kv(sink, key, buf);
}

static const char *onoff(bool b)
{
    return b ? "on" : "off";
}

static const char *proxy_str(int v)
{
    return v == 1 ? "v1" : v == 2 ? "v2" : "off";
}

static const char *check_str(enum check_kind k)
{
    return k == CHECK_TCP ? "tcp" : k == CHECK_SEND_EXPECT ? "send-expect" : "none";
}

static void put_keepalive(struct config_sink *sink, const struct keepalive_conf *ka)
{
    kv(sink, "tcp_keepalive", onoff(ka->on));
    put_duration(sink, "keepalive_idle", (int64_t)ka->idle_s * 1000);
    put_duration(sink, "keepalive_interval", (int64_t)ka->interval_s * 1000);
    kvf(sink, "keepalive_count", "%d", ka->count);
}

static void put_interval(struct config_sink *sink, const char *key, int64_t ms)
{
    if (ms < 0)
        kv(sink, key, "ttl");
    else
        put_duration(sink, key, ms);
}

void config_emit_global(const struct config *cfg, struct config_sink *sink)
{
    kvf(sink, "workers", "%d", cfg->workers);
    kv(sink, "log_level", log_level_str((enum log_level)cfg->log_level));
    kv(sink, "access_log", cfg->access_log);
    if (cfg->access_fmt.kind == ACCESS_FMT_TEMPLATE)
        kvf(sink, "access_log_format", "\"%s\"", cfg->access_log_format);
    else
        kv(sink, "access_log_format", cfg->access_log_format);
    kv(sink, "syslog_facility", log_syslog_facility_str(cfg->syslog_facility));
    kv(sink, "syslog_tag", cfg->syslog_tag);
    kvf(sink, "max_conns", "%d", cfg->max_conns);
    put_duration(sink, "shutdown_timeout", cfg->shutdown_timeout_ms);
    put_size(sink, "buffer_size", cfg->buffer_size);
    put_size(sink, "max_buffer", cfg->max_buffer);
    kv(sink, "admin_socket", cfg->admin_socket ? cfg->admin_socket : "off");
    kvf(sink, "admin_mode", "%04o", (unsigned)cfg->admin_mode);
    if (cfg->has_admin_http)
        put_addr(sink, "admin_http", &cfg->admin_http);
    else
        kv(sink, "admin_http", "off");
    kv(sink, "pid_file", cfg->pid_file ? cfg->pid_file : "off");
    if (cfg->resolvers != NULL) {
        char v[VAL_MAX];
        size_t len = 0;
        v[0] = '\0';
        for (const char *p = cfg->resolvers; *p != '\0' && len < sizeof(v);) {
            size_t n = strcspn(p, ",");
            int w = snprintf(v + len, sizeof(v) - len, "%s%.*s", len ? " " : "", (int)n, p);
            len += w > 0 ? (size_t)w : 0;
            p += n + (p[n] == ',');
        }
        kv(sink, "resolvers", v);
    } else {
        comment(sink, "resolvers = (none: the nameservers of /etc/resolv.conf)");
    }
    put_interval(sink, "resolve_interval", cfg->resolve_interval_ms);
    put_duration(sink, "resolve_interval_min", cfg->resolve_interval_min_ms);
    put_duration(sink, "resolve_interval_max", cfg->resolve_interval_max_ms);
    put_duration(sink, "resolve_hold", cfg->resolve_hold_ms);
    if (cfg->user != NULL) {
        if (cfg->user_default)
            comment(sink, "no user in the file: a root start drops to this default one");
        kv(sink, "user", cfg->user);
        char buf[16384];
        struct group gr, *res = NULL;
        if (getgrgid_r(cfg->gid, &gr, buf, sizeof(buf), &res) == 0 && res != NULL)
            kv(sink, "group", res->gr_name);
        else
            kvf(sink, "group", "%u", (unsigned)cfg->gid);
    } else {
        comment(sink, "user = (none: sluice keeps the identity it starts with)");
    }
    kv(sink, "allow_root", cfg->allow_root ? "yes" : "no");
}

void config_emit_listener(const struct listener_conf *l, struct config_sink *sink)
{
    for (int b = 0; b < l->nbinds; b++)
        put_addr(sink, "bind", &l->binds[b]);
    kv(sink, "route", l->route_sni ? "sni" : "pool");
    if (!l->route_sni)
        kv(sink, "pool", l->pool_name);
    for (int i = 0; i < l->nsni_rules; i++)
        kvf(sink, "sni", "%s%s %s", l->sni_rules[i].wildcard ? "*." : "", l->sni_rules[i].host,
            l->sni_rules[i].pool_name);
    if (l->sni_default_name != NULL)
        kv(sink, "sni_default", l->sni_default_name);
    kvf(sink, "max_conns", "%d", l->max_conns);
    kvf(sink, "backlog", "%d", l->backlog);
    kv(sink, "relay", l->uring ? "uring" : l->splice ? "splice" : "copy");
    kv(sink, "accept_proxy", onoff(l->accept_proxy));
    put_duration(sink, "proxy_timeout", l->proxy_timeout_ms);
    kvf(sink, "bind_mode", "%04o", (unsigned)l->bind_mode);
    if (l->bind_owner != NULL)
        kv(sink, "bind_owner", l->bind_owner);
    else
        comment(sink, "bind_owner = (none: the user sluice runs as)");
    put_keepalive(sink, &l->keepalive);
    put_duration(sink, "sni_timeout", l->sni_timeout_ms);
    static const char *const acl_keys[] = {"allow", "deny", "allow_file", "deny_file"};
    for (int i = 0; i < l->nacl_lines; i++)
        kv(sink, acl_keys[l->acl_lines[i].kind], l->acl_lines[i].text);
    kvf(sink, "max_conns_per_source", "%d", l->max_conns_per_source);
    put_rate(sink, "rate_per_source", &l->rate_per_source);
    kvf(sink, "source_prefix_v4", "%d", l->source_prefix_v4);
    kvf(sink, "source_prefix_v6", "%d", l->source_prefix_v6);
    kvf(sink, "source_table_size", "%d", l->source_table_size);
    put_rate(sink, "max_conn_rate", &l->max_conn_rate);
}

void config_emit_pool(const struct pool_conf *p, struct config_sink *sink)
{
    kv(sink, "balance", balance_algo_str(p->balance));
    put_duration(sink, "connect_timeout", p->connect_timeout_ms);
    put_duration(sink, "idle_timeout", p->idle_timeout_ms);
    kvf(sink, "retries", "%d", p->retries);
    kvf(sink, "fall", "%d", p->fall);
    kvf(sink, "rise", "%d", p->rise);
    put_duration(sink, "fail_timeout", p->fail_timeout_ms);
    kvf(sink, "max_queue", "%d", p->max_queue);
    put_duration(sink, "queue_timeout", p->queue_timeout_ms);
    kv(sink, "send_proxy", proxy_str(p->send_proxy));
    put_keepalive(sink, &p->keepalive);
    kv(sink, "check", check_str(p->check));
    put_duration(sink, "check_interval", p->check_interval_ms);
    put_duration(sink, "check_timeout", p->check_timeout_ms);
    put_interval(sink, "resolve_interval", p->resolve_interval_ms);
    put_duration(sink, "resolve_hold", p->resolve_hold_ms);
    if (p->check_send != NULL)
        put_escaped(sink, "check_send", p->check_send, p->check_send_len);
    if (p->check_expect != NULL)
        put_escaped(sink, "check_expect", p->check_expect, p->check_expect_len);
}

bool config_server_is_line(const struct server_conf *s)
{
    return s->tmpl == NULL;
}

void config_emit_server(const struct server_conf *s, struct config_sink *sink)
{
    kv(sink, "address", s->addr_str);
    if (s->resolve != RESOLVE_SRV)
        kvf(sink, "weight", "%d", s->weight);
    kvf(sink, "max_conns", "%d", s->max_conns);
    if (s->send_proxy >= 0)
        kv(sink, "send_proxy", proxy_str(s->send_proxy));
    if (s->host != NULL) {
        static const char *const fam[] = {"any", "ipv4", "ipv6"};
        static const char *const mode[] = {"first", "all", "srv"};
        kv(sink, "resolve", mode[s->resolve]);
        kv(sink, "family", fam[s->family]);
        if (s->init_addr_none)
            kv(sink, "init_addr", "none");
    }
    kv(sink, "backup", s->backup ? "yes" : "no");
}

/* ---- sluice -T ---- */

struct file_sink {
    struct config_sink sink;
    FILE *out;
};

static void file_kv(struct config_sink *sink, const char *key, const char *value)
{
    fprintf(((struct file_sink *)sink)->out, "%s = %s\n", key, value);
}

static void file_comment(struct config_sink *sink, const char *text)
{
    fprintf(((struct file_sink *)sink)->out, "; %s\n", text);
}

/* A server line: "server = NAME ADDRESS OPT=VALUE ... [backup]", with the
 * weight the server runs with (`set weight` included) and, for an edit of
 * its address, the new literal address without the DNS options. */
struct line_sink {
    struct config_sink sink;
    FILE *out;
    const char *new_addr; /* NULL: as configured */
    int weight;           /* -1: as configured */
};

static void line_kv(struct config_sink *sink, const char *key, const char *value)
{
    struct line_sink *ls = (struct line_sink *)sink;
    bool dns_key = strcmp(key, "resolve") == 0 || strcmp(key, "family") == 0 ||
                   strcmp(key, "init_addr") == 0;
    if (strcmp(key, "address") == 0)
        fprintf(ls->out, " %s", ls->new_addr ? ls->new_addr : value);
    else if (ls->new_addr != NULL && dns_key)
        return;
    else if (strcmp(key, "weight") == 0 && ls->weight >= 0)
        fprintf(ls->out, " weight=%d", ls->weight);
    else if (strcmp(key, "backup") == 0)
        fputs(strcmp(value, "yes") == 0 ? " backup" : "", ls->out);
    else
        fprintf(ls->out, " %s=%s", key, value);
}

static void dump_pool(const struct pool_conf *p, FILE *out, const struct config_edit *edit)
{
    struct file_sink fs = {{file_kv, file_comment}, out};
    fprintf(out, "\n[pool %s]\n", p->name);
    config_emit_pool(p, &fs.sink);
    /* The server lines: servers made from a resolve=all/srv answer are
     * not lines, their template is (after the others). */
    for (int i = 0; i < p->nservers + p->nnamed; i++) {
        const struct server_conf *s = i < p->nservers ? &p->servers[i] : &p->named[i - p->nservers];
        if (!config_server_is_line(s))
            continue;
        bool edited = edit != NULL && edit->op != CONFIG_EDIT_ADD &&
                      strcmp(edit->pool, p->name) == 0 && strcmp(edit->server, s->name) == 0;
        if (edited && edit->op == CONFIG_EDIT_DEL)
            continue;
        struct line_sink line = {{line_kv, NULL}, out, NULL, -1};
        if (edited && edit->op == CONFIG_EDIT_ADDR)
            line.new_addr = edit->value;
        if (s->be != NULL)
            line.weight = atomic_load(&s->be->weight);
        fprintf(out, "server = %s", s->name);
        config_emit_server(s, &line.sink);
        fputc('\n', out);
    }
    if (edit != NULL && edit->op == CONFIG_EDIT_ADD && strcmp(edit->pool, p->name) == 0)
        fprintf(out, "server = %s\n", edit->value);
}

static void dump(const struct config *cfg, FILE *out, const struct config_edit *edit)
{
    struct file_sink fs = {{file_kv, file_comment}, out};
    fprintf(out, "[global]\n");
    config_emit_global(cfg, &fs.sink);
    for (int i = 0; i < cfg->nlisteners; i++) {
        fprintf(out, "\n[listener %s]\n", cfg->listeners[i].name);
        config_emit_listener(&cfg->listeners[i], &fs.sink);
    }
    for (int i = 0; i < cfg->npools; i++)
        dump_pool(&cfg->pools[i], out, edit);
}

void config_dump(const struct config *cfg, FILE *out)
{
    fprintf(out, "; the effective configuration of %s (sluice -T): every key with its\n"
                 "; value or default\n",
            cfg->path);
    dump(cfg, out, NULL);
}

void config_dump_edited(const struct config *cfg, FILE *out, const struct config_edit *edit)
{
    dump(cfg, out, edit);
}
