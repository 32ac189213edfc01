/* config_dump.c - the effective configuration as an INI file (sluice -T):
 * every key of every section with its value or default, in a form that
 * config_load_file() reads back to the same configuration. */
#include "sluice/config.h"
#include "sluice/addr.h"
#include <string.h>
#include "sluice/log.h"

#include <grp.h>
#include <inttypes.h>
#include <stdio.h>

static void put_duration(FILE *out, const char *key, int64_t ms)
{
    if (ms != 0 && ms % 3600000 == 0)
        fprintf(out, "%s = %" PRId64 "h\n", key, ms / 3600000);
    else if (ms != 0 && ms % 60000 == 0)
        fprintf(out, "%s = %" PRId64 "m\n", key, ms / 60000);
    else if (ms % 1000 == 0)
        fprintf(out, "%s = %" PRId64 "s\n", key, ms / 1000);
    else
        fprintf(out, "%s = %" PRId64 "ms\n", key, ms);
}

static void put_size(FILE *out, const char *key, uint32_t bytes)
{
    if (bytes != 0 && bytes % (1024 * 1024) == 0)
        fprintf(out, "%s = %um\n", key, bytes / (1024 * 1024));
    else if (bytes != 0 && bytes % 1024 == 0)
        fprintf(out, "%s = %uk\n", key, bytes / 1024);
    else
        fprintf(out, "%s = %u\n", key, bytes);
}

/* A check string with the escapes parse_escapes() reads; '#', ';' and
 * blanks are escaped too so no comment or trim can change it. */
static void put_escaped(FILE *out, const char *key, const char *s, size_t n)
{
    fprintf(out, "%s = ", key);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '\r')
            fputs("\\r", out);
        else if (ch == '\n')
            fputs("\\n", out);
        else if (ch == '\t')
            fputs("\\t", out);
        else if (ch == '\\')
            fputs("\\\\", out);
        else if (ch <= ' ' || ch >= 0x7f || ch == '#' || ch == ';')
            fprintf(out, "\\x%02x", ch);
        else
            fputc(ch, out);
    }
    fputc('\n', out);
}

static void put_addr(FILE *out, const char *key, const struct sockaddr_any *a)
{
    char buf[ADDR_STRLEN];
    addr_format(&a->u.sa, a->len, buf, sizeof(buf));
    fprintf(out, "%s = %s\n", key, buf);
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

static void put_keepalive(FILE *out, const struct keepalive_conf *ka)
{
    fprintf(out, "tcp_keepalive = %s\n", onoff(ka->on));
    put_duration(out, "keepalive_idle", (int64_t)ka->idle_s * 1000);
    put_duration(out, "keepalive_interval", (int64_t)ka->interval_s * 1000);
    fprintf(out, "keepalive_count = %d\n", ka->count);
}

static void put_interval(FILE *out, const char *key, int64_t ms)
{
    if (ms < 0)
        fprintf(out, "%s = ttl\n", key);
    else
        put_duration(out, key, ms);
}

static void dump_global(const struct config *cfg, FILE *out)
{
    fprintf(out, "[global]\n");
    fprintf(out, "workers = %d\n", cfg->workers);
    fprintf(out, "log_level = %s\n", log_level_str((enum log_level)cfg->log_level));
    fprintf(out, "access_log = %s\n", cfg->access_log);
    if (cfg->access_fmt.kind == ACCESS_FMT_TEMPLATE)
        fprintf(out, "access_log_format = \"%s\"\n", cfg->access_log_format);
    else
        fprintf(out, "access_log_format = %s\n", cfg->access_log_format);
    fprintf(out, "syslog_facility = %s\n", log_syslog_facility_str(cfg->syslog_facility));
    fprintf(out, "syslog_tag = %s\n", cfg->syslog_tag);
    fprintf(out, "max_conns = %d\n", cfg->max_conns);
    put_duration(out, "shutdown_timeout", cfg->shutdown_timeout_ms);
    put_size(out, "buffer_size", cfg->buffer_size);
    put_size(out, "max_buffer", cfg->max_buffer);
    fprintf(out, "admin_socket = %s\n", cfg->admin_socket ? cfg->admin_socket : "off");
    fprintf(out, "admin_mode = %04o\n", (unsigned)cfg->admin_mode);
    if (cfg->has_admin_http)
        put_addr(out, "admin_http", &cfg->admin_http);
    else
        fprintf(out, "admin_http = off\n");
    fprintf(out, "pid_file = %s\n", cfg->pid_file ? cfg->pid_file : "off");
    if (cfg->resolvers != NULL) {
        fprintf(out, "resolvers =");
        for (const char *p = cfg->resolvers; *p != '\0';) {
            size_t n = strcspn(p, ",");
            fprintf(out, " %.*s", (int)n, p);
            p += n + (p[n] == ',');
        }
        fprintf(out, "\n");
    } else {
        fprintf(out, "; resolvers = (none: the nameservers of /etc/resolv.conf)\n");
    }
    put_interval(out, "resolve_interval", cfg->resolve_interval_ms);
    put_duration(out, "resolve_interval_min", cfg->resolve_interval_min_ms);
    put_duration(out, "resolve_interval_max", cfg->resolve_interval_max_ms);
    put_duration(out, "resolve_hold", cfg->resolve_hold_ms);
    if (cfg->user != NULL) {
        if (cfg->user_default)
            fprintf(out, "; no user in the file: a root start drops to this default one\n");
        fprintf(out, "user = %s\n", cfg->user);
        char buf[16384];
        struct group gr, *res = NULL;
        if (getgrgid_r(cfg->gid, &gr, buf, sizeof(buf), &res) == 0 && res != NULL)
            fprintf(out, "group = %s\n", res->gr_name);
        else
            fprintf(out, "group = %u\n", (unsigned)cfg->gid);
    } else {
        fprintf(out, "; user = (none: sluice keeps the identity it starts with)\n");
    }
    fprintf(out, "allow_root = %s\n", cfg->allow_root ? "yes" : "no");
}

static void dump_listener(const struct listener_conf *l, FILE *out)
{
    fprintf(out, "\n[listener %s]\n", l->name);
    for (int b = 0; b < l->nbinds; b++)
        put_addr(out, "bind", &l->binds[b]);
    fprintf(out, "route = %s\n", l->route_sni ? "sni" : "pool");
    if (!l->route_sni)
        fprintf(out, "pool = %s\n", l->pool_name);
    for (int i = 0; i < l->nsni_rules; i++)
        fprintf(out, "sni = %s%s %s\n", l->sni_rules[i].wildcard ? "*." : "", l->sni_rules[i].host,
                l->sni_rules[i].pool_name);
    if (l->sni_default_name != NULL)
        fprintf(out, "sni_default = %s\n", l->sni_default_name);
    fprintf(out, "max_conns = %d\n", l->max_conns);
    fprintf(out, "backlog = %d\n", l->backlog);
    fprintf(out, "relay = %s\n", l->splice ? "splice" : "copy");
    fprintf(out, "accept_proxy = %s\n", onoff(l->accept_proxy));
    put_duration(out, "proxy_timeout", l->proxy_timeout_ms);
    fprintf(out, "bind_mode = %04o\n", (unsigned)l->bind_mode);
    if (l->bind_owner != NULL)
        fprintf(out, "bind_owner = %s\n", l->bind_owner);
    else
        fprintf(out, "; bind_owner = (none: the user sluice runs as)\n");
    put_keepalive(out, &l->keepalive);
    put_duration(out, "sni_timeout", l->sni_timeout_ms);
}

static void dump_pool(const struct pool_conf *p, FILE *out)
{
    fprintf(out, "\n[pool %s]\n", p->name);
    fprintf(out, "balance = %s\n", balance_algo_str(p->balance));
    put_duration(out, "connect_timeout", p->connect_timeout_ms);
    put_duration(out, "idle_timeout", p->idle_timeout_ms);
    fprintf(out, "retries = %d\n", p->retries);
    fprintf(out, "fall = %d\n", p->fall);
    fprintf(out, "rise = %d\n", p->rise);
    put_duration(out, "fail_timeout", p->fail_timeout_ms);
    fprintf(out, "max_queue = %d\n", p->max_queue);
    put_duration(out, "queue_timeout", p->queue_timeout_ms);
    fprintf(out, "send_proxy = %s\n", proxy_str(p->send_proxy));
    put_keepalive(out, &p->keepalive);
    fprintf(out, "check = %s\n", check_str(p->check));
    put_duration(out, "check_interval", p->check_interval_ms);
    put_duration(out, "check_timeout", p->check_timeout_ms);
    put_interval(out, "resolve_interval", p->resolve_interval_ms);
    put_duration(out, "resolve_hold", p->resolve_hold_ms);
    if (p->check_send != NULL)
        put_escaped(out, "check_send", p->check_send, p->check_send_len);
    if (p->check_expect != NULL)
        put_escaped(out, "check_expect", p->check_expect, p->check_expect_len);
    /* The server lines: servers made from a resolve=all/srv answer are
     * not lines, their template is (after the others). */
    for (int i = 0; i < p->nservers + p->nnamed; i++) {
        const struct server_conf *s = i < p->nservers ? &p->servers[i] : &p->named[i - p->nservers];
        if (s->tmpl != NULL)
            continue;
        fprintf(out, "server = %s %s", s->name, s->addr_str);
        if (s->resolve != RESOLVE_SRV)
            fprintf(out, " weight=%d", s->weight);
        fprintf(out, " max_conns=%d", s->max_conns);
        if (s->send_proxy >= 0)
            fprintf(out, " send_proxy=%s", proxy_str(s->send_proxy));
        if (s->host != NULL) {
            static const char *const fam[] = {"any", "ipv4", "ipv6"};
            static const char *const mode[] = {"first", "all", "srv"};
            fprintf(out, " resolve=%s family=%s%s", mode[s->resolve], fam[s->family],
                    s->init_addr_none ? " init_addr=none" : "");
        }
        fprintf(out, "%s\n", s->backup ? " backup" : "");
    }
}

void config_dump(const struct config *cfg, FILE *out)
{
    fprintf(out, "; the effective configuration of %s (sluice -T): every key with its\n"
                 "; value or default\n",
            cfg->path);
    dump_global(cfg, out);
    for (int i = 0; i < cfg->nlisteners; i++)
        dump_listener(&cfg->listeners[i], out);
    for (int i = 0; i < cfg->npools; i++)
        dump_pool(&cfg->pools[i], out);
}
