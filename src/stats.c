/* stats.c - sums per-worker counters on demand and renders them. Workers
 * only ever store their own slots; nothing here blocks them. */
#include "sluice/stats.h"
#include "sluice/addr.h"
#include "sluice/backend.h"
#include "sluice/config.h"
#include "sluice/control-t.h"
#include "sluice/histogram.h"
#include "sluice/log.h"
#include "sluice/queue-t.h"
#include "sluice/session.h"
#include "sluice/srclimit.h"
#include "sluice/strbuf.h"
#include "sluice/worker-t.h"

#include <string.h>
#include <time.h>
#include <unistd.h>

struct listener_sums {
#define X(name) uint64_t name;
    LISTENER_COUNTERS(X)
#undef X
};

struct backend_sums {
#define X(name) uint64_t name;
    BACKEND_COUNTERS(X)
#undef X
};

struct worker_sums {
#define X(name) uint64_t name;
    WORKER_COUNTERS(X)
#undef X
    uint64_t ends[END_REASON_COUNT];
};

/* Sum n counters over the workers: chunks[] are an object's per-worker
 * counter chunks (struct listener_wstats or backend_wstats, elem bytes
 * each, made of counter_t only), out[] gets the n totals in the same
 * order. Workers past the object's last chunk never counted anything for
 * it (it belongs to no config with that many workers): they add 0. */
static void sum_chunks(void *const *chunks, size_t elem, int nslots, uint64_t *out, size_t n)
{
    memset(out, 0, n * sizeof(*out));
    for (int w = 0; w < nslots && chunks[w / SLUICE_WS_CHUNK] != NULL; w++) {
        counter_t *c = (counter_t *)((char *)chunks[w / SLUICE_WS_CHUNK] +
                                     elem * (size_t)(w % SLUICE_WS_CHUNK));
        for (size_t k = 0; k < n; k++)
            out[k] += counter_get(&c[k]);
    }
}

#define COUNT(name) +1
_Static_assert(sizeof(struct listener_sums) == (0 LISTENER_COUNTERS(COUNT)) * sizeof(uint64_t),
               "listener sums: one uint64_t per counter, in order");
_Static_assert(sizeof(struct backend_sums) == (0 BACKEND_COUNTERS(COUNT)) * sizeof(uint64_t),
               "backend sums: one uint64_t per counter, in order");

static void sum_listener(struct control *ctl, struct listener_state *st, struct listener_sums *o)
{
    sum_chunks(st->ws, sizeof(struct listener_wstats), ctl->nslots, (uint64_t *)o,
               0 LISTENER_COUNTERS(COUNT));
}

static void sum_backend(struct control *ctl, struct backend *b, struct backend_sums *o)
{
    sum_chunks(b->ws, sizeof(struct backend_wstats), ctl->nslots, (uint64_t *)o,
               0 BACKEND_COUNTERS(COUNT));
}
#undef COUNT

/* Merge histogram k of the histograms hung at byte offset off of every
 * worker's element (as in sum_chunks) into out; workers that never
 * recorded one have none. */
static void merge_chunks(void *const *chunks, size_t elem, size_t off, int k, int nslots,
                         struct hist_snap *out)
{
    hist_snap_clear(out);
    for (int w = 0; w < nslots && chunks[w / SLUICE_WS_CHUNK] != NULL; w++) {
        struct histogram *h = atomic_load_explicit(
            (struct histogram * _Atomic *)((char *)chunks[w / SLUICE_WS_CHUNK] +
                                           elem * (size_t)(w % SLUICE_WS_CHUNK) + off),
            memory_order_acquire);
        if (h != NULL)
            hist_merge(out, &h[k]);
    }
}

/* A server's latency histograms (enum backend_hist) as shown. */
static const struct {
    const char *json;   /* key under "latency_us" */
    const char *label;  /* row of show latency */
    const char *family; /* Prometheus histogram */
    const char *help;
} backend_hist[BACKEND_HISTS] = {
    [BACKEND_HIST_CONNECT] = {"connect", "connect", "sluice_server_connect_seconds",
                              "Time from connect() to connected, successful attempts."},
    [BACKEND_HIST_FIRST_BYTE] = {"first_byte", "first byte", "sluice_server_first_byte_seconds",
                                 "Time from connected to the first byte from the server."},
    [BACKEND_HIST_DURATION] = {"duration", "duration", "sluice_server_session_seconds",
                               "Time from connected to the end of the session."},
};

static void merge_backend(struct control *ctl, struct backend *b, int which, struct hist_snap *out)
{
    merge_chunks(b->ws, sizeof(struct backend_wstats), offsetof(struct backend_wstats, hists),
                 which, ctl->nslots, out);
}

static void merge_listener(struct control *ctl, struct listener_state *st, struct hist_snap *out)
{
    merge_chunks(st->ws, sizeof(struct listener_wstats), offsetof(struct listener_wstats, hists), 0,
                 ctl->nslots, out);
}

/* "name":{"count":N,"p50":..,"p90":..,"p99":..,"p999":..} in us; the
 * quantiles are null while count is 0. */
static void json_latency(struct strbuf *out, const char *name, const struct hist_snap *h)
{
    static const struct {
        const char *key;
        double q;
    } qs[] = {{"p50", 0.5}, {"p90", 0.9}, {"p99", 0.99}, {"p999", 0.999}};
    strbuf_printf(out, "\"%s\":{\"count\":%llu", name, (unsigned long long)h->count);
    for (size_t i = 0; i < ARRAY_SIZE(qs); i++) {
        if (h->count == 0)
            strbuf_printf(out, ",\"%s\":null", qs[i].key);
        else
            strbuf_printf(out, ",\"%s\":%llu", qs[i].key,
                          (unsigned long long)hist_quantile(h, qs[i].q, NULL));
    }
    strbuf_puts(out, "}");
}

static void sum_workers(struct control *ctl, struct worker_sums *o)
{
    memset(o, 0, sizeof(*o));
    for (int i = 0; i < ctl->nslots; i++) {
        struct worker_stats *s = &ctl->workers[i]->stats;
#define X(name) o->name += counter_get(&s->name);
        WORKER_COUNTERS(X)
#undef X
        for (int r = 0; r < END_REASON_COUNT; r++)
            o->ends[r] += counter_get(&s->ends[r]);
    }
}

static void fmt_time(ev_tstamp t, char *buf, size_t n)
{
    time_t s = (time_t)t;
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int ival(_Atomic int *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

static unsigned long long uval(_Atomic uint64_t *v)
{
    return (unsigned long long)atomic_load_explicit(v, memory_order_relaxed);
}

/* The one walk over every server of a config, in file order, that all the
 * renderers use: for (struct server_iter it = {.cfg = cfg}; server_next(&it);)
 * visits it.pool / it.sv. */
struct server_iter {
    struct config *cfg;
    int p, j; /* next: pool index, server index in it */
    struct pool_conf *pool;
    struct server_conf *sv;
};

static bool server_next(struct server_iter *it)
{
    while (it->p < it->cfg->npools) {
        struct pool_conf *pool = &it->cfg->pools[it->p];
        if (it->j < pool->nservers) {
            it->pool = pool;
            it->sv = &pool->servers[it->j++];
            return true;
        }
        it->p++;
        it->j = 0;
    }
    return false;
}

void stats_info(struct control *ctl, struct strbuf *out)
{
    struct worker_sums ws;
    sum_workers(ctl, &ws);
    char last[64] = "never";
    if (ctl->last_reload > 0)
        fmt_time(ctl->last_reload, last, sizeof(last));
    strbuf_printf(out,
                  "version: %s\npid: %d\nuptime_seconds: %.0f\nworkers: %d\nconfig: %s\n"
                  "generation: %llu\nreloads_ok: %llu\nreloads_failed: %llu\n"
                  "last_reload: %s\nlast_reload_result: %s\ndns_updates: %llu\n"
                  "dns_updates_failed: %llu\nsessions_active: %d\n"
                  "sessions_total: %llu\nmax_conns: %d\n",
                  SLUICE_VERSION, (int)getpid(), ev_time() - ctl->started, ctl->nworkers,
                  ctl->config_path, (unsigned long long)ctl->generation,
                  (unsigned long long)ctl->reloads_ok, (unsigned long long)ctl->reloads_failed,
                  last, ctl->last_reload_result[0] ? ctl->last_reload_result : "-",
                  (unsigned long long)ctl->dns_updates, (unsigned long long)ctl->dns_updates_failed,
                  ival(&ctl->limits.active), (unsigned long long)ws.accepted, ival(&ctl->limits.max_conns));
    strbuf_printf(out, "runtime_changes: %llu\n", (unsigned long long)ctl->runtime_changes_total);
    strbuf_printf(out, "access_log_dropped: %llu\n", log_access_dropped());
}

static void stats_source_table(struct control *ctl, struct strbuf *out);

void stats_table(struct control *ctl, struct strbuf *out)
{
    struct config *cfg = ctl->cfg;
    int64_t now = time_mono_ms();
    strbuf_printf(out, "%-20s %7s %10s %9s %14s %14s %9s\n", "LISTENER", "ACTIVE", "TOTAL",
                  "REJECTED", "BYTES_IN", "BYTES_OUT", "DENIED");
    for (int i = 0; i < cfg->nlisteners; i++) {
        struct listener_conf *l = &cfg->listeners[i];
        struct listener_sums s;
        sum_listener(ctl, l->st, &s);
        strbuf_printf(out, "%-20s %7d %10llu %9llu %14llu %14llu %9llu\n", l->name,
                      ival(&l->st->active), (unsigned long long)s.accepted,
                      (unsigned long long)s.no_backend, (unsigned long long)s.bytes_in,
                      (unsigned long long)s.bytes_out, (unsigned long long)s.denied);
    }
    strbuf_printf(out, "%-24s %-22s %-8s %6s %6s %10s %9s %7s %14s %14s %-9s %8s\n", "SERVER",
                  "ADDRESS", "STATE", "WEIGHT", "ACTIVE", "TOTAL", "CONN_FAIL", "RETRIES",
                  "BYTES_IN", "BYTES_OUT", "CHECK", "CHECK_MS");
    for (struct server_iter it = {.cfg = cfg}; server_next(&it);) {
        struct server_conf *sv = it.sv;
        struct backend *b = sv->be;
        struct backend_sums s;
        sum_backend(ctl, b, &s);
        strbuf_printf(out, "%-24s %-22s %-8s %6d %6d %10llu %9llu %7llu %14llu %14llu %-9s %8.1f\n",
                      b->obj.key, sv->addr_str, backend_state_str(b, now), ival(&b->weight),
                      ival(&b->active), (unsigned long long)s.sessions,
                      (unsigned long long)s.connect_failures, (unsigned long long)s.retries,
                      (unsigned long long)s.bytes_in, (unsigned long long)s.bytes_out,
                      check_result_str((enum check_result)ival(&b->check_result)),
                      (double)atomic_load(&b->check_us) / 1000.0);
    }
    strbuf_printf(out, "%-20s %7s %9s %10s %14s\n", "POOL", "QUEUE", "MAX_QUEUE", "QUEUED",
                  "QUEUE_WAIT_MS");
    for (int i = 0; i < cfg->npools; i++) {
        struct pool_conf *p = &cfg->pools[i];
        strbuf_printf(out, "%-20s %7d %9d %10llu %14llu\n", p->name, ival(&p->q->length),
                      p->max_queue, uval(&p->q->queued), uval(&p->q->wait_us) / 1000);
    }
    stats_source_table(ctl, out);
}

/* Listeners with per-source limits or max_conn_rate: their table and
 * refusals (nothing when no listener has any). */
static void stats_source_table(struct control *ctl, struct strbuf *out)
{
    struct config *cfg = ctl->cfg;
    bool header = false;
    for (int i = 0; i < cfg->nlisteners; i++) {
        struct listener_conf *l = &cfg->listeners[i];
        if (l->srct == NULL && l->max_conn_rate.n == 0)
            continue;
        if (!header) {
            strbuf_printf(out, "%-20s %11s %10s %13s %13s %10s %11s\n", "LISTENER", "SRC_ENTRIES",
                          "SRC_TABLE", "CONN_REFUSED", "RATE_REFUSED", "TABLE_FULL", "RATE_PAUSES");
            header = true;
        }
        struct listener_sums s;
        sum_listener(ctl, l->st, &s);
        strbuf_printf(
            out, "%-20s %11d %10d %13llu %13llu %10llu %11llu\n", l->name,
            l->srct ? srclimit_table_used(l->srct) : 0, l->srct ? srclimit_table_size(l->srct) : 0,
            (unsigned long long)s.source_conn_refused, (unsigned long long)s.source_rate_refused,
            (unsigned long long)s.source_table_full, (unsigned long long)s.rate_pauses);
    }
}

/* The address sv connects to now: its literal, the resolved one, or "-"
 * for a name without an answer. */
static void current_addr(const struct server_conf *sv, char *buf, size_t size)
{
    struct sockaddr_any a;
    if (sv->host == NULL)
        snprintf(buf, size, "%s", sv->addr_str);
    else if (backend_addr(sv, &a))
        addr_format(&a.u.sa, a.len, buf, size);
    else
        snprintf(buf, size, "-");
}

void stats_json(struct control *ctl, struct strbuf *out)
{
    struct config *cfg = ctl->cfg;
    struct worker_sums ws;
    sum_workers(ctl, &ws);
    int64_t now = time_mono_ms();
    strbuf_printf(out,
                  "{\"info\":{\"version\":\"%s\",\"pid\":%d,\"uptime_seconds\":%.3f,\"workers\":%d,"
                  "\"config\":",
                  SLUICE_VERSION, (int)getpid(), ev_time() - ctl->started, ctl->nworkers);
    strbuf_json_str(out, ctl->config_path);
    strbuf_printf(out,
                  ",\"generation\":%llu,\"reloads_ok\":%llu,\"reloads_failed\":%llu,"
                  "\"last_reload\":%.3f,\"last_reload_result\":",
                  (unsigned long long)ctl->generation, (unsigned long long)ctl->reloads_ok,
                  (unsigned long long)ctl->reloads_failed, ctl->last_reload);
    strbuf_json_str(out, ctl->last_reload_result);
    strbuf_printf(out, ",\"dns_updates\":%llu,\"dns_updates_failed\":%llu",
                  (unsigned long long)ctl->dns_updates, (unsigned long long)ctl->dns_updates_failed);
    strbuf_printf(out, ",\"access_log_dropped\":%llu", log_access_dropped());
    strbuf_printf(out, ",\"sessions_active\":%d,\"sessions_total\":%llu,\"max_conns\":%d},",
                  ival(&ctl->limits.active), (unsigned long long)ws.accepted, ival(&ctl->limits.max_conns));
    strbuf_puts(out, "\"process\":{");
#define X(name) strbuf_printf(out, "\"%s\":%llu,", #name, (unsigned long long)ws.name);
    WORKER_COUNTERS(X)
#undef X
    strbuf_puts(out, "\"end_reasons\":{");
    for (int r = 0; r < END_REASON_COUNT; r++)
        strbuf_printf(out, "%s\"%s\":%llu", r ? "," : "", end_reason_str((enum end_reason)r),
                      (unsigned long long)ws.ends[r]);
    strbuf_puts(out, "}},\"listeners\":[");
    for (int i = 0; i < cfg->nlisteners; i++) {
        struct listener_conf *l = &cfg->listeners[i];
        struct listener_sums s;
        sum_listener(ctl, l->st, &s);
        strbuf_printf(out, "%s{\"name\":", i ? "," : "");
        strbuf_json_str(out, l->name);
        strbuf_puts(out, ",\"binds\":[");
        for (int b = 0; b < l->nbinds; b++) {
            char a[ADDR_STRLEN];
            addr_format(&l->binds[b].u.sa, l->binds[b].len, a, sizeof(a));
            if (b)
                strbuf_puts(out, ",");
            strbuf_json_str(out, a);
        }
        strbuf_printf(out, "],\"pool\":");
        if (l->pool != NULL)
            strbuf_json_str(out, l->pool->name);
        else
            strbuf_puts(out, "null"); /* route = sni: pools by rule */
        strbuf_printf(out, ",\"active\":%d,\"max_conns\":%d", ival(&l->st->active), l->max_conns);
        strbuf_printf(out, ",\"source_entries\":%d,\"source_table_size\":%d",
                      l->srct ? srclimit_table_used(l->srct) : 0,
                      l->srct ? srclimit_table_size(l->srct) : 0);
#define X(name) strbuf_printf(out, ",\"%s\":%llu", #name, (unsigned long long)s.name);
        LISTENER_COUNTERS(X)
#undef X
        struct hist_snap h;
        merge_listener(ctl, l->st, &h);
        strbuf_puts(out, ",\"latency_us\":{");
        json_latency(out, "connect", &h);
        strbuf_puts(out, "}}");
    }
    strbuf_puts(out, "],\"servers\":[");
    bool first = true;
    for (struct server_iter it = {.cfg = cfg}; server_next(&it);) {
        struct server_conf *sv = it.sv;
        struct backend *b = sv->be;
        struct backend_sums s;
        sum_backend(ctl, b, &s);
        strbuf_printf(out, "%s{\"pool\":", first ? "" : ",");
        first = false;
        strbuf_json_str(out, it.pool->name);
        strbuf_puts(out, ",\"name\":");
        strbuf_json_str(out, sv->name);
        char cur[ADDR_STRLEN];
        current_addr(sv, cur, sizeof(cur));
        strbuf_puts(out, ",\"address\":");
        strbuf_json_str(out, cur);
        if (sv->host != NULL) {
            strbuf_puts(out, ",\"host\":");
            strbuf_json_str(out, sv->addr_str);
            strbuf_printf(out, ",\"dns\":\"%s\",\"dns_resolutions\":%lld,\"dns_failures\":%lld,"
                          "\"dns_changes\":%lld",
                          dns_result_str((enum dns_result)ival(&b->dns_result)),
                          (long long)atomic_load(&b->dns_resolutions),
                          (long long)atomic_load(&b->dns_failures),
                          (long long)atomic_load(&b->dns_changes));
        }
        if (sv->tmpl != NULL) {
            /* A server of a resolve=all/srv name: the name's resolution. */
            struct backend *tb = sv->tmpl->be;
            strbuf_puts(out, ",\"from\":");
            strbuf_json_str(out, sv->tmpl->name);
            strbuf_puts(out, ",\"host\":");
            strbuf_json_str(out, sv->tmpl->addr_str);
            strbuf_printf(out, ",\"resolve\":\"%s\",\"dns\":\"%s\"",
                          sv->tmpl->resolve == RESOLVE_SRV ? "srv" : "all",
                          dns_result_str((enum dns_result)ival(&tb->dns_result)));
        }
        strbuf_printf(out,
                      ",\"state\":\"%s\",\"admin\":\"%s\",\"backup\":%s,\"weight\":%d,"
                      "\"active\":%d,\"check\":\"%s\",\"check_ms\":%.3f,\"checks_total\":%lld,"
                      "\"checks_failed\":%lld,\"transitions\":%lld",
                      backend_state_str(b, now),
                      backend_admin_str((enum backend_admin)ival(&b->admin)),
                      sv->backup ? "true" : "false", ival(&b->weight), ival(&b->active),
                      check_result_str((enum check_result)ival(&b->check_result)),
                      (double)atomic_load(&b->check_us) / 1000.0,
                      (long long)atomic_load(&b->checks_total),
                      (long long)atomic_load(&b->checks_failed),
                      (long long)atomic_load(&b->transitions));
#define X(name) strbuf_printf(out, ",\"%s\":%llu", #name, (unsigned long long)s.name);
        BACKEND_COUNTERS(X)
#undef X
        strbuf_puts(out, ",\"latency_us\":{");
        for (int k = 0; k < BACKEND_HISTS; k++) {
            struct hist_snap h;
            merge_backend(ctl, b, k, &h);
            if (k)
                strbuf_puts(out, ",");
            json_latency(out, backend_hist[k].json, &h);
        }
        strbuf_puts(out, "}}");
    }
    strbuf_puts(out, "],\"pools\":[");
    for (int i = 0; i < cfg->npools; i++) {
        struct pool_conf *p = &cfg->pools[i];
        strbuf_printf(out, "%s{\"name\":", i ? "," : "");
        strbuf_json_str(out, p->name);
        strbuf_printf(out,
                      ",\"queue\":%d,\"max_queue\":%d,\"queue_timeout_ms\":%lld,\"queued\":%llu,"
                      "\"queue_wait_ms\":%.3f}",
                      ival(&p->q->length), p->max_queue, (long long)p->queue_timeout_ms,
                      uval(&p->q->queued), (double)uval(&p->q->wait_us) / 1000.0);
    }
    strbuf_puts(out, "]}\n");
}

void stats_backends(struct control *ctl, struct strbuf *out)
{
    struct config *cfg = ctl->cfg;
    int64_t now = time_mono_ms();
    strbuf_printf(out, "%-24s %-22s %-8s %-9s %s\n", "SERVER", "ADDRESS", "STATE", "ADMIN", "WHY");
    for (struct server_iter it = {.cfg = cfg}; server_next(&it);) {
        struct server_conf *sv = it.sv;
        struct backend *b = sv->be;
        const char *state = backend_state_str(b, now);
        int admin = ival(&b->admin);
        char why[128] = "-";
        if (admin == ADMIN_DISABLED)
            snprintf(why, sizeof(why), "admin: disabled");
        else if (atomic_load(&b->health) != HEALTH_UP)
            snprintf(why, sizeof(why), "%s (last check: %s)",
                     down_cause_str((enum down_cause)ival(&b->down_cause)),
                     check_result_str((enum check_result)ival(&b->check_result)));
        else if (now < atomic_load(&b->down_until_ms))
            snprintf(why, sizeof(why), "passive (connect failures), retry in %lldms",
                     (long long)(atomic_load(&b->down_until_ms) - now));
        else if (!atomic_load(&b->addr_valid))
            snprintf(why, sizeof(why), "dns: %s",
                     dns_result_str((enum dns_result)ival(&b->dns_result)));
        else if (admin == ADMIN_DRAINING)
            snprintf(why, sizeof(why), "admin: draining, %d sessions left", ival(&b->active));
        else if (ival(&b->weight) == 0)
            snprintf(why, sizeof(why), "weight 0: no new sessions");
        char cur[ADDR_STRLEN], dns[ADDR_STRLEN + 64] = "";
        current_addr(sv, cur, sizeof(cur));
        if (sv->host != NULL)
            snprintf(dns, sizeof(dns), " [dns %s: %s]", sv->addr_str,
                     dns_result_str((enum dns_result)ival(&b->dns_result)));
        else if (sv->tmpl != NULL)
            snprintf(dns, sizeof(dns), " [dns %s resolve=%s: %s]", sv->tmpl->addr_str,
                     sv->tmpl->resolve == RESOLVE_SRV ? "srv" : "all",
                     dns_result_str((enum dns_result)ival(&sv->tmpl->be->dns_result)));
        strbuf_printf(out, "%-24s %-22s %-8s %-9s %s%s%s\n", b->obj.key, cur, state,
                      backend_admin_str((enum backend_admin)admin), why,
                      sv->backup ? " [backup]" : "", dns);
    }
    /* A resolve=all/srv name whose answer has no address has no server to
     * show above: one line for it, so the name and its last result stay
     * visible while its pool is without it. */
    for (int i = 0; i < cfg->npools; i++) {
        const struct pool_conf *p = &cfg->pools[i];
        for (int k = 0; k < p->nnamed; k++) {
            const struct server_conf *t = &p->named[k];
            bool built = false;
            for (int j = 0; j < p->nservers && !built; j++)
                built = p->servers[j].tmpl == t;
            if (built)
                continue;
            const char *res = dns_result_str((enum dns_result)ival(&t->be->dns_result));
            strbuf_printf(out, "%-24s %-22s %-8s %-9s dns: %s, no address [dns %s resolve=%s: %s]\n",
                          t->be->obj.key, "-", "down", "-", res, t->addr_str,
                          t->resolve == RESOLVE_SRV ? "srv" : "all", res);
        }
    }
}

static void prom_header(struct strbuf *out, const char *name, const char *type, const char *help)
{
    strbuf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* The fixed `le` bounds (seconds) of every latency histogram on /metrics:
 * a bounded set cut from the fine histogram, 100us to 60s. */
static const double prom_le[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                 0.1,    0.25,    0.5,    1,     2.5,    5,     10,   30,    60};

/* The samples of one histogram: family_bucket{labels,le=..} (cumulative,
 * then +Inf), family_sum (seconds) and family_count. */
static void prom_hist(struct strbuf *out, const char *family, const char *labels,
                      const struct hist_snap *h)
{
    for (size_t i = 0; i < ARRAY_SIZE(prom_le); i++)
        strbuf_printf(out, "%s_bucket{%s,le=\"%g\"} %llu\n", family, labels, prom_le[i],
                      (unsigned long long)hist_count_le(h, (uint64_t)(prom_le[i] * 1e6 + 0.5)));
    strbuf_printf(out, "%s_bucket{%s,le=\"+Inf\"} %llu\n%s_sum{%s} %.6f\n%s_count{%s} %llu\n",
                  family, labels, (unsigned long long)h->count, family, labels,
                  (double)h->sum_us / 1e6, family, labels, (unsigned long long)h->count);
}

void stats_prometheus(struct control *ctl, struct strbuf *out)
{
    struct config *cfg = ctl->cfg;
    struct worker_sums ws;
    sum_workers(ctl, &ws);
    int64_t now = time_mono_ms();
    prom_header(out, "sluice_info", "gauge", "Version of the running sluice.");
    strbuf_printf(out, "sluice_info{version=\"%s\"} 1\n", SLUICE_VERSION);
    prom_header(out, "sluice_uptime_seconds", "gauge", "Seconds since start.");
    strbuf_printf(out, "sluice_uptime_seconds %.3f\n", ev_time() - ctl->started);
    prom_header(out, "sluice_workers", "gauge", "Worker threads running.");
    strbuf_printf(out, "sluice_workers %d\n", ctl->nworkers);
    prom_header(out, "sluice_config_generation", "gauge", "Generation of the running config.");
    strbuf_printf(out, "sluice_config_generation %llu\n", (unsigned long long)ctl->generation);
    prom_header(out, "sluice_reloads_total", "counter", "Reloads by result.");
    strbuf_printf(out, "sluice_reloads_total{result=\"ok\"} %llu\n",
                  (unsigned long long)ctl->reloads_ok);
    strbuf_printf(out, "sluice_reloads_total{result=\"failed\"} %llu\n",
                  (unsigned long long)ctl->reloads_failed);
    prom_header(out, "sluice_dns_updates_total", "counter",
                "Generations built because a resolve=all/srv answer changed a pool, by result.");
    strbuf_printf(out, "sluice_dns_updates_total{result=\"ok\"} %llu\n",
                  (unsigned long long)ctl->dns_updates);
    strbuf_printf(out, "sluice_dns_updates_total{result=\"failed\"} %llu\n",
                  (unsigned long long)ctl->dns_updates_failed);
    prom_header(out, "sluice_sessions_active", "gauge", "Live sessions.");
    strbuf_printf(out, "sluice_sessions_active %d\n", ival(&ctl->limits.active));
    prom_header(out, "sluice_sessions_total", "counter", "Connections accepted.");
    strbuf_printf(out, "sluice_sessions_total %llu\n", (unsigned long long)ws.accepted);
    prom_header(out, "sluice_session_ends_total", "counter", "Sessions ended, by reason.");
    for (int r = 0; r < END_REASON_COUNT; r++)
        strbuf_printf(out, "sluice_session_ends_total{reason=\"%s\"} %llu\n",
                      end_reason_str((enum end_reason)r), (unsigned long long)ws.ends[r]);
    prom_header(out, "sluice_accept_pauses_total", "counter",
                "Times accepting paused, by cause (emfile: out of descriptors; limit: max_conns).");
    strbuf_printf(out, "sluice_accept_pauses_total{cause=\"emfile\"} %llu\n",
                  (unsigned long long)ws.accept_emfile);
    strbuf_printf(out, "sluice_accept_pauses_total{cause=\"limit\"} %llu\n",
                  (unsigned long long)ws.limit_pauses);
    prom_header(out, "sluice_accept_errors_total", "counter", "Other accept failures.");
    strbuf_printf(out, "sluice_accept_errors_total %llu\n", (unsigned long long)ws.accept_errors);
    prom_header(out, "sluice_access_log_dropped_total", "counter",
                "Access log lines dropped: syslog socket full or absent, or a write error.");
    strbuf_printf(out, "sluice_access_log_dropped_total %llu\n", log_access_dropped());
    prom_header(out, "sluice_alloc_failures_total", "counter", "Failed session/buffer allocations.");
    strbuf_printf(out, "sluice_alloc_failures_total %llu\n", (unsigned long long)ws.alloc_failures);

    prom_header(out, "sluice_listener_sessions_active", "gauge", "Live sessions per listener.");
    for (int i = 0; i < cfg->nlisteners; i++)
        strbuf_printf(out, "sluice_listener_sessions_active{listener=\"%s\"} %d\n",
                      cfg->listeners[i].name, ival(&cfg->listeners[i].st->active));
#define X(ctr)                                                                                    \
    prom_header(out, "sluice_listener_" #ctr "_total", "counter", "Per listener: " #ctr ".");   \
    for (int i = 0; i < cfg->nlisteners; i++) {                                                    \
        struct listener_sums s;                                                                    \
        sum_listener(ctl, cfg->listeners[i].st, &s);                                               \
        strbuf_printf(out, "sluice_listener_" #ctr "_total{listener=\"%s\"} %llu\n",             \
                      cfg->listeners[i].name, (unsigned long long)s.ctr);                         \
    }
    LISTENER_COUNTERS(X)
#undef X
    prom_header(out, "sluice_listener_connect_seconds", "histogram",
                "Time from accept to the backend connected (PROXY header, ClientHello, queue "
                "and retries included).");
    for (int i = 0; i < cfg->nlisteners; i++) {
        struct hist_snap h;
        char labels[160]; /* names: at most 64 chars */
        merge_listener(ctl, cfg->listeners[i].st, &h);
        snprintf(labels, sizeof(labels), "listener=\"%s\"", cfg->listeners[i].name);
        prom_hist(out, "sluice_listener_connect_seconds", labels, &h);
    }
    prom_header(out, "sluice_listener_source_entries", "gauge",
                "Entries in use in the listener's per-source table (0: no per-source limit).");
    for (int i = 0; i < cfg->nlisteners; i++)
        strbuf_printf(out, "sluice_listener_source_entries{listener=\"%s\"} %d\n",
                      cfg->listeners[i].name,
                      cfg->listeners[i].srct ? srclimit_table_used(cfg->listeners[i].srct) : 0);

    prom_header(out, "sluice_pool_queue_length", "gauge",
                "Sessions waiting in the pool's queue for a server slot.");
    for (int i = 0; i < cfg->npools; i++)
        strbuf_printf(out, "sluice_pool_queue_length{pool=\"%s\"} %d\n", cfg->pools[i].name,
                      ival(&cfg->pools[i].q->length));
    prom_header(out, "sluice_pool_queued_total", "counter",
                "Sessions that waited in the pool's queue.");
    for (int i = 0; i < cfg->npools; i++)
        strbuf_printf(out, "sluice_pool_queued_total{pool=\"%s\"} %llu\n", cfg->pools[i].name,
                      uval(&cfg->pools[i].q->queued));
    prom_header(out, "sluice_pool_queue_wait_seconds_total", "counter",
                "Time spent in the pool's queue by sessions that left it.");
    for (int i = 0; i < cfg->npools; i++)
        strbuf_printf(out, "sluice_pool_queue_wait_seconds_total{pool=\"%s\"} %.6f\n",
                      cfg->pools[i].name, (double)uval(&cfg->pools[i].q->wait_us) / 1e6);

    /* Server families: one sample per server each, so the counters are
     * summed once per server up front, then printed family by family. */
    int nservers = 0;
    for (struct server_iter it = {.cfg = cfg}; server_next(&it);)
        nservers++;
    struct backend_sums *sums = calloc((size_t)nservers, sizeof(*sums));
    if (sums == NULL) {
        strbuf_puts(out, "# out of memory: per-server metrics left out\n");
        return;
    }
    int k = 0;
    for (struct server_iter it = {.cfg = cfg}; server_next(&it);)
        sum_backend(ctl, it.sv->be, &sums[k++]);
#define SERVER_FAMILY(family, type, help, fmt, value)                                             \
    prom_header(out, family, type, help);                                                         \
    k = 0;                                                                                        \
    for (struct server_iter it = {.cfg = cfg}; server_next(&it); k++)                             \
        strbuf_printf(out, family "{pool=\"%s\",server=\"%s\"} " fmt "\n", it.pool->name,       \
                      it.sv->name, value);
    SERVER_FAMILY("sluice_server_up", "gauge", "1 if the server takes new sessions.", "%d",
                  backend_usable(it.sv, now) ? 1 : 0)
    SERVER_FAMILY("sluice_server_weight", "gauge", "Effective weight.", "%d", ival(&it.sv->be->weight))
    SERVER_FAMILY("sluice_server_sessions_active", "gauge", "Live sessions per server.", "%d",
                  ival(&it.sv->be->active))
    SERVER_FAMILY("sluice_server_check_duration_seconds", "gauge", "Duration of the last check.",
                  "%.6f", (double)atomic_load(&it.sv->be->check_us) / 1e6)
    SERVER_FAMILY("sluice_server_dns_resolutions_total", "counter",
                  "Resolutions of the server's host name (0 for an address literal).", "%lld",
                  (long long)atomic_load(&it.sv->be->dns_resolutions))
    SERVER_FAMILY("sluice_server_dns_failures_total", "counter",
                  "Resolutions of the server's host name that failed.", "%lld",
                  (long long)atomic_load(&it.sv->be->dns_failures))
    SERVER_FAMILY("sluice_server_dns_changes_total", "counter",
                  "Times a resolution changed the server's address.", "%lld",
                  (long long)atomic_load(&it.sv->be->dns_changes))
#define X(ctr)                                                                                    \
    SERVER_FAMILY("sluice_server_" #ctr "_total", "counter", "Per server: " #ctr ".", "%llu",     \
                  (unsigned long long)sums[k].ctr)
    BACKEND_COUNTERS(X)
#undef X
#undef SERVER_FAMILY
    free(sums);
    for (int f = 0; f < BACKEND_HISTS; f++) {
        prom_header(out, backend_hist[f].family, "histogram", backend_hist[f].help);
        for (struct server_iter it = {.cfg = cfg}; server_next(&it);) {
            struct hist_snap h;
            char labels[256];
            merge_backend(ctl, it.sv->be, f, &h);
            snprintf(labels, sizeof(labels), "pool=\"%s\",server=\"%s\"", it.pool->name,
                     it.sv->name);
            prom_hist(out, backend_hist[f].family, labels, &h);
        }
    }
}

/* A quantile of h for people: "-" when empty, ">60s" above the range. */
static void fmt_quantile(const struct hist_snap *h, double q, char *buf, size_t n)
{
    bool over = false;
    if (h->count == 0) {
        snprintf(buf, n, "-");
        return;
    }
    uint64_t v = hist_quantile(h, q, &over);
    buf[0] = '>';
    hist_format_us(v, buf + over, n - over);
}

/* One row of show latency: count, quantiles and the highest value seen. */
static void latency_row(struct strbuf *out, const char *label, const struct hist_snap *h)
{
    static const double qs[] = {0.5, 0.9, 0.99, 0.999, 1.0};
    strbuf_printf(out, "%-12s %10llu", label, (unsigned long long)h->count);
    for (size_t i = 0; i < ARRAY_SIZE(qs); i++) {
        char v[32];
        fmt_quantile(h, qs[i], v, sizeof(v));
        strbuf_printf(out, " %9s", v);
    }
    strbuf_puts(out, "\n");
}

void stats_latency(struct control *ctl, struct server_conf *sv, struct strbuf *out)
{
    struct hist_snap h;
    if (sv != NULL) {
        strbuf_printf(out, "%s (%s)\n%-12s %10s %9s %9s %9s %9s %9s\n", sv->be->obj.key,
                      sv->addr_str, "", "COUNT", "P50", "P90", "P99", "P99.9", "MAX");
        for (int k = 0; k < BACKEND_HISTS; k++) {
            merge_backend(ctl, sv->be, k, &h);
            latency_row(out, backend_hist[k].label, &h);
        }
        return;
    }
    struct config *cfg = ctl->cfg;
    strbuf_printf(out, "%-24s %10s %9s %9s %9s %9s %9s\n", "SERVER", "CONNECTS", "CONN_P50",
                  "CONN_P99", "TTFB_P99", "DUR_P50", "DUR_P99");
    for (struct server_iter it = {.cfg = cfg}; server_next(&it);) {
        char c50[32], c99[32], t99[32], d50[32], d99[32];
        merge_backend(ctl, it.sv->be, BACKEND_HIST_CONNECT, &h);
        uint64_t n = h.count;
        fmt_quantile(&h, 0.5, c50, sizeof(c50));
        fmt_quantile(&h, 0.99, c99, sizeof(c99));
        merge_backend(ctl, it.sv->be, BACKEND_HIST_FIRST_BYTE, &h);
        fmt_quantile(&h, 0.99, t99, sizeof(t99));
        merge_backend(ctl, it.sv->be, BACKEND_HIST_DURATION, &h);
        fmt_quantile(&h, 0.5, d50, sizeof(d50));
        fmt_quantile(&h, 0.99, d99, sizeof(d99));
        strbuf_printf(out, "%-24s %10llu %9s %9s %9s %9s %9s\n", it.sv->be->obj.key,
                      (unsigned long long)n, c50, c99, t99, d50, d99);
    }
    strbuf_printf(out, "%-24s %10s %9s %9s\n", "LISTENER", "CONNECTS", "CONN_P50", "CONN_P99");
    for (int i = 0; i < cfg->nlisteners; i++) {
        char c50[32], c99[32];
        merge_listener(ctl, cfg->listeners[i].st, &h);
        fmt_quantile(&h, 0.5, c50, sizeof(c50));
        fmt_quantile(&h, 0.99, c99, sizeof(c99));
        strbuf_printf(out, "%-24s %10llu %9s %9s\n", cfg->listeners[i].name,
                      (unsigned long long)h.count, c50, c99);
    }
}
