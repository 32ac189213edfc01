/* admin.c - the admin socket: a Unix stream socket with a line protocol
 * (one command per line, each reply ends with an empty line), and the
 * optional HTTP listener serving /, /metrics and /stats.json. Everything runs
 * on the main loop with non-blocking I/O, bounded input and a timeout per
 * client, so a bad client never blocks the others or the workers. */
#include "sluice/admin.h"
#include "sluice/backend.h"
#include "sluice/config.h"
#include "sluice/listener.h"
#include "sluice/log.h"
#include "sluice/parse.h"
#include "sluice/session.h"
#include "sluice/statspage.h"
#include "sluice/srclimit.h"
#include "sluice/strbuf.h"
#include "sluice/worker-t.h"

#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ADMIN_LINE_MAX 4096
#define ADMIN_MAX_CLIENTS 256
/* Deadlines per client, absolute: bytes trickling in do not extend them.
 * A request must be complete within its timeout of the moment the server
 * started waiting for it (the connect, or on the admin socket the previous
 * reply sent); a reply must be read in full within REPLY_TIMEOUT of the
 * moment it was ready (or, for show sessions, asked of the workers). */
#define ADMIN_REQUEST_TIMEOUT 30.0 /* one command line; generous for a human with socat */
#define HTTP_REQUEST_TIMEOUT 10.0  /* the request head */
#define REPLY_TIMEOUT 30.0
#define SESSIONS_DEFAULT 100
#define SESSIONS_MAX 100000

enum conn_kind { CONN_ADMIN, CONN_HTTP };

/* What a client is being waited for; each phase has its own deadline. */
enum conn_phase {
    PHASE_REQUEST, /* us for its next request: idle, may be evicted */
    PHASE_REPLY,   /* it for our reply (or us for the workers') */
};

static const char *conn_phase_str(enum conn_phase p)
{
    return p == PHASE_REQUEST ? "request" : "reply";
}

/* One client of either server. */
struct conn {
    struct conn *next, *prev;
    struct server *srv; /* NULL once its server stopped (orphan) */
    enum conn_kind kind;
    ev_io w_io;
    ev_timer w_timer; /* the deadline of the current phase */
    enum conn_phase phase;
    ev_tstamp phase_since;
    char in[ADMIN_LINE_MAX];
    size_t inlen;
    struct strbuf out;
    bool waiting; /* a reply is being assembled by the workers */
    bool closing; /* close once `out` is flushed */
    bool expired; /* deadline passed while waiting: freed when the reply arrives */
};

/* A listening socket and its clients (both the admin socket and HTTP). */
struct server {
    const struct admin_ops *ops;
    enum conn_kind kind;
    ev_io w_accept;
    ev_timer w_resume; /* restarts w_accept after an EMFILE pause */
    struct accept_pause emfile;
    struct conn *conns;
    int nconns;
    char *path; /* admin socket file, removed on stop */
    struct sockaddr_any addr;
};

struct admin {
    struct server s;
};

struct admin_http {
    struct server s;
};

static void conn_process(struct conn *c);

static void conn_free(struct conn *c)
{
    struct ev_loop *loop = EV_DEFAULT;
    ev_io_stop(loop, &c->w_io);
    ev_timer_stop(loop, &c->w_timer);
    close(c->w_io.fd);
    if (c->srv) {
        if (c->prev)
            c->prev->next = c->next;
        else
            c->srv->conns = c->next;
        if (c->next)
            c->next->prev = c->prev;
        c->srv->nconns--;
    }
    strbuf_free(&c->out);
    free(c);
}

/* Enter a phase and start its deadline, counted from now. */
static void conn_set_phase(struct conn *c, enum conn_phase phase)
{
    struct ev_loop *loop = EV_DEFAULT;
    ev_tstamp timeout = REPLY_TIMEOUT;
    if (phase == PHASE_REQUEST)
        timeout = c->kind == CONN_ADMIN ? ADMIN_REQUEST_TIMEOUT : HTTP_REQUEST_TIMEOUT;
    c->phase = phase;
    c->phase_since = ev_now(loop);
    ev_timer_stop(loop, &c->w_timer);
    ev_timer_set(&c->w_timer, timeout, 0.);
    ev_timer_start(loop, &c->w_timer);
}

/* Close a client now, telling it why in one best-effort line (NULL: say
 * nothing). A client whose reply the workers are still building is only
 * marked; async_done frees it. */
static void conn_drop(struct conn *c, const char *admin_msg, const char *http_msg)
{
    const char *msg = c->kind == CONN_ADMIN ? admin_msg : http_msg;
    if (msg != NULL && c->out.len == 0 &&
        send(c->w_io.fd, msg, strlen(msg), MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
        (void)0;
    if (c->waiting) {
        c->expired = true;
        ev_io_stop(EV_DEFAULT, &c->w_io);
        ev_timer_stop(EV_DEFAULT, &c->w_timer);
        return;
    }
    conn_free(c);
}

/* Write what we can; when done and closing, free. Returns false if c was
 * freed. Moves c to the reply phase while output is pending or the workers
 * are building a reply, and back to the request phase once it is sent. */
static bool conn_flush(struct conn *c)
{
    struct ev_loop *loop = EV_DEFAULT;
    while (c->out.len > 0) {
        ssize_t n = send(c->w_io.fd, c->out.data, c->out.len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                break;
            conn_free(c);
            return false;
        }
        strbuf_consume(&c->out, (size_t)n);
    }
    if (c->out.len == 0 && c->closing && !c->waiting) {
        conn_free(c);
        return false;
    }
    bool busy = c->out.len > 0 || c->waiting;
    if (busy != (c->phase == PHASE_REPLY))
        conn_set_phase(c, busy ? PHASE_REPLY : PHASE_REQUEST);
    int ev = c->out.len > 0 ? EV_WRITE : (c->closing || c->waiting ? 0 : EV_READ);
    if (ev != (c->w_io.events & (EV_READ | EV_WRITE)) || !ev_is_active(&c->w_io)) {
        ev_io_stop(loop, &c->w_io);
        ev_io_set(&c->w_io, c->w_io.fd, ev);
        if (ev)
            ev_io_start(loop, &c->w_io);
    }
    return true;
}

/* ---- commands ---- */

static const char help_text[] =
    "commands:\n"
    "  help                              this list\n"
    "  show info                         version, pid, uptime, generation, reloads, sessions\n"
    "  show stats [json]                 listeners and servers with their counters\n"
    "  show backends                     state of every server and why\n"
    "  show sessions [N]                 up to N live sessions (default 100)\n"
    "  show latency [POOL/NAME]          latency percentiles: of one server, or a line each\n"
    "  show sources [LISTENER] [N]       the N busiest client sources (default 20)\n"
    "  disable server POOL/NAME          out of service: no new sessions (live ones stay)\n"
    "  drain server POOL/NAME            no new sessions; state 'drained' once live ones end\n"
    "  enable server POOL/NAME           take new sessions again\n"
    "  set weight POOL/NAME N            weight 0..256 (0: no new sessions)\n"
    "  add server POOL/NAME ADDRESS [weight=N] [backup] [max_conns=N]\n"
    "                                    a new server, taking new sessions at once\n"
    "  del server POOL/NAME [force]      remove a server without live sessions (force: end them)\n"
    "  set server POOL/NAME addr ADDRESS new sessions go to ADDRESS (live ones stay)\n"
    "  shutdown session ID               end one session (ID from show sessions)\n"
    "  shutdown sessions server POOL/NAME  end every session on that server\n"
    "  show config                       the running configuration as a file (sluice -t reads it)\n"
    "  reload                            re-read the config file (like SIGHUP)\n"
    "  reload dry-run                    what a reload would change, applying nothing\n"
    "  reopen                            reopen the access log (like SIGUSR1)\n"
    "  quit                              close this connection\n";

static struct server_conf *find_server(const struct admin_ops *ops, const char *ref,
                                      struct strbuf *out)
{
    const char *slash = ref ? strchr(ref, '/') : NULL;
    if (slash == NULL) {
        strbuf_puts(out, "error: expected POOL/NAME\n");
        return NULL;
    }
    struct config *cfg = ops->config(ops->ctx);
    for (int i = 0; i < cfg->npools; i++) {
        struct pool_conf *p = &cfg->pools[i];
        if (strncmp(p->name, ref, (size_t)(slash - ref)) != 0 || p->name[slash - ref] != '\0')
            continue;
        for (int j = 0; j < p->nservers; j++)
            if (strcmp(p->servers[j].name, slash + 1) == 0)
                return &p->servers[j];
    }
    strbuf_printf(out, "error: no server '%.128s'\n", ref);
    return NULL;
}

#define SOURCES_DEFAULT 20
#define SOURCES_MAX 10000

struct source_row {
    const char *listener;
    struct src_top top;
};

static int source_row_cmp(const void *a, const void *b)
{
    const struct src_top *x = &((const struct source_row *)a)->top;
    const struct src_top *y = &((const struct source_row *)b)->top;
    if (x->live != y->live)
        return x->live > y->live ? -1 : 1;
    if (x->rate != y->rate)
        return x->rate > y->rate ? -1 : 1;
    return x->refused > y->refused ? -1 : x->refused < y->refused;
}

/* show sources [LISTENER] [N]: the N busiest sources of every listener
 * with a per-source table (or of LISTENER's), busiest first. */
static void show_sources(const struct admin_ops *ops, int argc, char **argv, struct strbuf *out)
{
    struct config *cfg = ops->config(ops->ctx);
    const char *only = NULL;
    long n = SOURCES_DEFAULT;
    const char *count = NULL;
    if (argc == 3 && parse_int_range(argv[2], 1, SOURCES_MAX, &n))
        ; /* show sources N */
    else if (argc >= 3)
        only = argv[2];
    if (argc == 4)
        count = argv[3];
    if (count != NULL && !parse_int_range(count, 1, SOURCES_MAX, &n)) {
        strbuf_printf(out, "error: N must be 1..%d\n", SOURCES_MAX);
        return;
    }
    int nl = 0;
    for (int l = 0; l < cfg->nlisteners; l++)
        if (only == NULL || strcmp(cfg->listeners[l].name, only) == 0)
            nl++;
    if (only != NULL && nl == 0) {
        strbuf_printf(out, "error: no listener '%.128s'\n", only);
        return;
    }
    struct source_row *rows = calloc((size_t)n * (size_t)(nl ? nl : 1), sizeof(*rows));
    struct src_top *tops = calloc((size_t)n, sizeof(*tops));
    if (rows == NULL || tops == NULL) {
        free(rows);
        free(tops);
        strbuf_puts(out, "error: out of memory\n");
        return;
    }
    int have = 0;
    int64_t now = srclimit_now_ns();
    for (int l = 0; l < cfg->nlisteners; l++) {
        struct listener_conf *lc = &cfg->listeners[l];
        if ((only != NULL && strcmp(lc->name, only) != 0) || lc->srct == NULL)
            continue;
        int got = srclimit_top(lc->srct, now, tops, (int)n);
        for (int k = 0; k < got; k++)
            rows[have++] = (struct source_row){lc->name, tops[k]};
    }
    qsort(rows, (size_t)have, sizeof(*rows), source_row_cmp);
    strbuf_printf(out, "%-20s %-44s %6s %9s %10s\n", "LISTENER", "SOURCE", "LIVE", "CONN/S",
                  "REFUSED");
    for (int k = 0; k < have && k < n; k++)
        strbuf_printf(out, "%-20s %-44s %6d %9.1f %10llu\n", rows[k].listener, rows[k].top.addr,
                      rows[k].top.live, rows[k].top.rate, (unsigned long long)rows[k].top.refused);
    free(rows);
    free(tops);
}

struct sessions_call {
    void (*done)(void *ctx, struct strbuf *reply);
    void *ctx;
    int limit;
    int nslots;
    struct strbuf per_worker[SLUICE_MAX_WORKERS];
    int count[SLUICE_MAX_WORKERS];
};

/* Runs on each worker thread: lists its own sessions. */
static void sessions_collect(struct worker *w, void *arg)
{
    struct sessions_call *sc = arg;
    struct strbuf *b = &sc->per_worker[w->id];
    ev_tstamp now = ev_time();
    int n = 0;
    for (struct session *s = w->sessions; s; s = s->next, n++) {
        if (n >= sc->limit)
            continue;
        char client[ADDR_STRLEN];
        addr_format(&s->client.u.sa, sizeof(s->client), client, sizeof(client));
        strbuf_printf(b, "%-10llu %-6d %-12s %-24s %-28s %-11s %9.1f %12llu %12llu\n",
                      (unsigned long long)s->id, w->id, s->lc->name, client,
                      s->srv ? s->srv->be->obj.key : "-",
                      session_state_str((enum session_state)s->state), now - s->started,
                      (unsigned long long)s->up.bytes, (unsigned long long)s->down.bytes);
    }
    sc->count[w->id] = n;
}

static void sessions_done(void *arg)
{
    struct sessions_call *sc = arg;
    struct strbuf out;
    strbuf_init(&out);
    strbuf_printf(&out, "%-10s %-6s %-12s %-24s %-28s %-11s %9s %12s %12s\n", "ID", "WORKER",
                  "LISTENER", "CLIENT", "BACKEND", "STATE", "AGE_S", "BYTES_UP", "BYTES_DOWN");
    int total = 0, shown = 0;
    for (int i = 0; i < sc->nslots; i++) {
        strbuf_append(&out, sc->per_worker[i].data ? sc->per_worker[i].data : "",
                      sc->per_worker[i].len);
        total += sc->count[i];
        shown += sc->count[i] < sc->limit ? sc->count[i] : sc->limit;
        strbuf_free(&sc->per_worker[i]);
    }
    strbuf_printf(&out, "%d sessions", total);
    if (shown < total)
        strbuf_printf(&out, " (%d shown; at most %d per worker)", shown, sc->limit);
    strbuf_puts(&out, "\n");
    sc->done(sc->ctx, &out);
    strbuf_free(&out);
    free(sc);
}

static int show_sessions(const struct admin_ops *ops, const char *arg, struct strbuf *out,
                         void (*done)(void *, struct strbuf *), void *ctx)
{
    long limit = SESSIONS_DEFAULT;
    if (arg && !parse_int_range(arg, 1, SESSIONS_MAX, &limit)) {
        strbuf_printf(out, "error: N must be 1..%d\n", SESSIONS_MAX);
        return 1;
    }
    if (done == NULL) {
        strbuf_puts(out, "error: show sessions needs a connection\n");
        return 1;
    }
    struct sessions_call *sc = calloc(1, sizeof(*sc));
    if (sc == NULL) {
        strbuf_puts(out, "error: out of memory\n");
        return 1;
    }
    sc->done = done;
    sc->ctx = ctx;
    sc->limit = (int)limit;
    sc->nslots = ops->worker_slots(ops->ctx);
    if (ops->fanout(ops->ctx, sessions_collect, sessions_done, sc) < 0) {
        free(sc);
        strbuf_puts(out, "error: out of memory\n");
        return 1;
    }
    return 0;
}

static void set_admin_state(struct server_conf *sv, enum backend_admin st, const char *verb,
                            struct strbuf *out)
{
    int prev = atomic_exchange(&sv->be->admin, st);
    log_info("admin: %s %s (was %s)", verb, sv->be->obj.key,
             backend_admin_str((enum backend_admin)prev));
    strbuf_printf(out, "%s %s (was %s, %d live sessions)\n", verb, sv->be->obj.key,
                  backend_admin_str((enum backend_admin)prev), atomic_load(&sv->be->active));
}

/* ---- runtime servers and shutting sessions ---- */

/* Ending sessions on every worker: by id, or every one on a server. */
struct kill_call {
    void (*done)(void *ctx, struct strbuf *reply);
    void *ctx;
    struct config *hold;      /* one reference: keeps `be` alive until done */
    const struct backend *be; /* NULL: the session `id` */
    uint64_t id;
    char head[320]; /* the reply, before the count */
    int count[SLUICE_MAX_WORKERS];
};

/* Runs on each worker thread: ends its own matching sessions. */
static void kill_collect(struct worker *w, void *arg)
{
    struct kill_call *k = arg;
    int n = 0;
    /* session_finish() frees only s; sessions it lets start (a slot freed
     * up, a paused listener accepts) go to the head of the list, behind
     * this walk. */
    for (struct session *s = w->sessions, *next; s; s = next) {
        next = s->next;
        bool match = k->be != NULL ? s->srv != NULL && s->srv->be == k->be && s->state != SS_QUEUED
                                   : s->id == k->id;
        if (match) {
            session_finish(s, END_admin);
            n++;
        }
    }
    k->count[w->id] = n;
}

static void kill_done(void *arg)
{
    struct kill_call *k = arg;
    int total = 0;
    for (int i = 0; i < SLUICE_MAX_WORKERS; i++)
        total += k->count[i];
    struct strbuf out;
    strbuf_init(&out);
    if (k->be == NULL && total == 0)
        strbuf_printf(&out, "error: no session %llu\n", (unsigned long long)k->id);
    else
        strbuf_printf(&out, "%s%d session%s shut (reason admin)\n", k->head, total,
                      total == 1 ? "" : "s");
    if (total > 0)
        log_info("admin: %s%d sessions shut", k->head, total);
    k->done(k->ctx, &out);
    strbuf_free(&out);
    config_unref(k->hold);
    free(k);
}

/* Ask every worker to end the sessions of be (or session id); the reply
 * is head and the count. hold is a reference to a generation that has be,
 * taken over. Returns 0 (the reply comes through done) or 1 with an
 * error in out. */
static int kill_sessions(const struct admin_ops *ops, struct config *hold, const struct backend *be,
                         uint64_t id, const char *head, struct strbuf *out,
                         void (*done)(void *, struct strbuf *), void *ctx)
{
    struct kill_call *k = calloc(1, sizeof(*k));
    if (k == NULL) {
        config_unref(hold);
        strbuf_printf(out, "error: %sout of memory\n", head);
        return 1;
    }
    k->done = done;
    k->ctx = ctx;
    k->hold = hold;
    k->be = be;
    k->id = id;
    snprintf(k->head, sizeof(k->head), "%s", head);
    if (ops->fanout(ops->ctx, kill_collect, kill_done, k) < 0) {
        config_unref(hold);
        free(k);
        strbuf_printf(out, "error: %sout of memory\n", head);
        return 1;
    }
    return 0;
}

/* `shutdown session ID` and `shutdown sessions server POOL/NAME`. */
static int shutdown_sessions(const struct admin_ops *ops, int argc, char **argv, struct strbuf *out,
                             void (*done)(void *, struct strbuf *), void *ctx)
{
    if (done == NULL) {
        strbuf_puts(out, "error: shutdown needs a connection\n");
        return 1;
    }
    struct config *cfg = ops->config(ops->ctx);
    if (argc == 3) {
        char *end;
        errno = 0;
        unsigned long long id = strtoull(argv[2], &end, 10);
        if (errno != 0 || *end != '\0' || end == argv[2] || argv[2][0] == '-' || id == 0) {
            strbuf_printf(out, "error: '%.64s' is not a session id (see show sessions)\n", argv[2]);
            return 1;
        }
        config_ref(cfg);
        return kill_sessions(ops, cfg, NULL, id, "", out, done, ctx);
    }
    struct server_conf *sv = find_server(ops, argv[3], out);
    if (sv == NULL)
        return 1;
    char head[320];
    snprintf(head, sizeof(head), "%s: ", sv->be->obj.key);
    config_ref(cfg);
    return kill_sessions(ops, cfg, sv->be, 0, head, out, done, ctx);
}

static struct pool_conf *find_pool(const struct admin_ops *ops, const char *ref, const char **name,
                                   struct strbuf *out)
{
    const char *slash = ref ? strchr(ref, '/') : NULL;
    if (slash == NULL || slash[1] == '\0') {
        strbuf_puts(out, "error: expected POOL/NAME\n");
        return NULL;
    }
    struct config *cfg = ops->config(ops->ctx);
    for (int i = 0; i < cfg->npools; i++) {
        struct pool_conf *p = &cfg->pools[i];
        if (strncmp(p->name, ref, (size_t)(slash - ref)) == 0 && p->name[slash - ref] == '\0') {
            *name = slash + 1;
            return p;
        }
    }
    strbuf_printf(out, "error: no pool '%.*s'\n",
                  (int)(slash - ref) > 128 ? 128 : (int)(slash - ref), ref);
    return NULL;
}

/* A literal server address (IP:PORT, [IPv6]:PORT or unix:PATH), checked
 * as the file's server lines are; host names are for the file only. */
static bool runtime_addr(const char *addr, struct sockaddr_any *a, struct strbuf *out)
{
    const char *why = addr_parse(addr, ADDR_ALLOW_UNIX, a);
    if (why == NULL)
        return true;
    char host[ADDR_STRLEN];
    int port;
    if (addr_parse_host(addr, host, sizeof(host), &port))
        strbuf_printf(out,
                      "error: '%.128s': host names are not taken at runtime (give an "
                      "address, or put the name in the config file)\n",
                      addr);
    else
        strbuf_printf(out, "error: '%.128s': %s\n", addr, why);
    return false;
}

/* add server POOL/NAME ADDRESS [weight=N] [backup] [max_conns=N] */
static void add_server(const struct admin_ops *ops, int argc, char **argv, struct strbuf *out)
{
    const char *name;
    struct pool_conf *p = find_pool(ops, argv[2], &name, out);
    struct sockaddr_any a = {0};
    if (p == NULL || !runtime_addr(argv[3], &a, out))
        return;
    for (int i = 0; i < p->nservers + p->nnamed; i++) {
        const char *o = i < p->nservers ? p->servers[i].name : p->named[i - p->nservers].name;
        if (strcmp(o, name) == 0) {
            strbuf_printf(out, "error: pool %s already has a server '%.128s'\n", p->name, name);
            return;
        }
    }
    long weight = 1, max_conns = 0;
    bool backup = false;
    for (int i = 4; i < argc; i++) {
        if (strncmp(argv[i], "weight=", 7) == 0) {
            if (!parse_int_range(argv[i] + 7, 0, 256, &weight)) {
                strbuf_puts(out, "error: weight must be 0..256\n");
                return;
            }
        } else if (strncmp(argv[i], "max_conns=", 10) == 0) {
            if (!parse_int_range(argv[i] + 10, 0, 1000000, &max_conns)) {
                strbuf_puts(out, "error: max_conns must be 0..1000000\n");
                return;
            }
        } else if (strcmp(argv[i], "backup") == 0) {
            backup = true;
        } else {
            strbuf_printf(out, "error: unknown option '%.64s' (weight=N, backup, max_conns=N)\n",
                          argv[i]);
            return;
        }
    }
    char addr[ADDR_STRLEN], value[ADMIN_LINE_MAX], key[ADMIN_LINE_MAX];
    char what[2 * ADMIN_LINE_MAX + 16];
    addr_format(&a.u.sa, a.len, addr, sizeof(addr));
    snprintf(value, sizeof(value), "%s %s weight=%ld max_conns=%ld%s", name, addr, weight,
             max_conns, backup ? " backup" : "");
    snprintf(key, sizeof(key), "%s/%s", p->name, name);
    snprintf(what, sizeof(what), "add server %s %s", key, value + strlen(name) + 1);
    bool checks = p->check != CHECK_NONE;
    struct config_edit e = {.op = CONFIG_EDIT_ADD, .pool = p->name, .value = value};
    if (ops->server_change(ops->ctx, &e, what, out) < 0)
        return;
    p = NULL; /* the replaced generation's */
    /* The new generation has it; a server of that name deleted a moment
     * ago and still finishing sessions left its state behind: reset the
     * part an operator set (the counters carry on, as on a reload). */
    struct server_conf *sv = find_server(ops, key, out);
    if (sv == NULL)
        return;
    atomic_store(&sv->be->admin, ADMIN_ENABLED);
    atomic_store(&sv->be->weight, (int)weight);
    strbuf_printf(out,
                  "added server %s %s (weight %ld%s%s): takes new sessions (a reload drops it "
                  "unless the config file has it)\n",
                  key, addr, weight, backup ? ", backup" : "", checks ? ", health checks on" : "");
}

/* del server POOL/NAME [force] */
static int del_server(const struct admin_ops *ops, int argc, char **argv, struct strbuf *out,
                      void (*done)(void *, struct strbuf *), void *ctx)
{
    bool force = argc == 4;
    if (force && strcmp(argv[3], "force") != 0) {
        strbuf_printf(out, "error: unknown option '%.64s' (only force)\n", argv[3]);
        return 1;
    }
    if (force && done == NULL) {
        strbuf_puts(out, "error: del server force needs a connection\n");
        return 1;
    }
    struct server_conf *sv = find_server(ops, argv[2], out);
    if (sv == NULL)
        return 1;
    const struct pool_conf *p = sv->pool;
    if (sv->tmpl != NULL) {
        strbuf_printf(out,
                      "error: %s comes from the DNS answer of '%s' (resolve=all/srv): it "
                      "follows the records, not admin commands\n",
                      sv->be->obj.key, sv->tmpl->addr_str);
        return 1;
    }
    int lines = p->nnamed;
    for (int i = 0; i < p->nservers; i++)
        lines += p->servers[i].tmpl == NULL;
    if (lines <= 1) {
        strbuf_printf(out, "error: %s is the last server of pool %s (a pool needs one)\n",
                      sv->be->obj.key, p->name);
        return 1;
    }
    struct backend *be = sv->be;
    char key[320], what[400];
    snprintf(key, sizeof(key), "%s", be->obj.key);
    snprintf(what, sizeof(what), "del server %s%s", key, force ? " force" : "");
    /* Drain first: from now on no worker picks it. */
    int prev = atomic_exchange(&be->admin, ADMIN_DRAINING);
    int active = atomic_load(&be->active);
    if (active > 0 && !force) {
        if (prev != ADMIN_DRAINING)
            log_info("admin: %s: draining (was %s), %d live sessions", what,
                     backend_admin_str((enum backend_admin)prev), active);
        strbuf_printf(out,
                      "error: %s has %d live session%s: now draining (no new sessions); "
                      "del again once they ended, or del server %s force\n",
                      key, active, active == 1 ? "" : "s", key);
        return 1;
    }
    struct config *hold = ops->config(ops->ctx);
    config_ref(hold); /* keeps be for the sessions still on it */
    struct config_edit e = {.op = CONFIG_EDIT_DEL, .pool = p->name, .server = sv->name};
    if (ops->server_change(ops->ctx, &e, what, out) < 0) {
        atomic_store(&be->admin, prev);
        config_unref(hold);
        return 1;
    }
    if (!force) {
        config_unref(hold);
        strbuf_printf(
            out, "deleted server %s (a reload brings it back if the config file has it)\n", key);
        return 1;
    }
    char head[400];
    snprintf(head, sizeof(head), "deleted server %s: ", key);
    return kill_sessions(ops, hold, be, 0, head, out, done, ctx);
}

/* set server POOL/NAME addr ADDRESS */
static void set_server_addr(const struct admin_ops *ops, char **argv, struct strbuf *out)
{
    struct server_conf *sv = find_server(ops, argv[2], out);
    struct sockaddr_any a = {0};
    if (sv == NULL || !runtime_addr(argv[4], &a, out))
        return;
    if (sv->tmpl != NULL) {
        strbuf_printf(out,
                      "error: %s comes from the DNS answer of '%s' (resolve=all/srv): it "
                      "follows the records, not admin commands\n",
                      sv->be->obj.key, sv->tmpl->addr_str);
        return;
    }
    struct backend *be = sv->be; /* the new generation keeps it */
    char addr[ADDR_STRLEN], old[ADDR_STRLEN], what[400];
    addr_format(&a.u.sa, a.len, addr, sizeof(addr));
    snprintf(old, sizeof(old), "%s", sv->addr_str);
    if (sv->host == NULL && addr_equal(&a, &sv->addr)) {
        strbuf_printf(out, "address of %s is already %s\n", be->obj.key, addr);
        return;
    }
    snprintf(what, sizeof(what), "set server %s addr %s", be->obj.key, addr);
    struct config_edit e = {
        .op = CONFIG_EDIT_ADDR, .pool = sv->pool->name, .server = sv->name, .value = addr};
    if (ops->server_change(ops->ctx, &e, what, out) < 0)
        return;
    /* Passive failures were the old address's. */
    atomic_store(&be->fails, 0);
    atomic_store(&be->down_until_ms, 0);
    strbuf_printf(out, "address of %s: %s -> %s (new sessions; %d live sessions stay on %s)\n",
                  be->obj.key, old, addr, atomic_load(&be->active), old);
}

int admin_execute(const struct admin_ops *ops, const char *line, struct strbuf *out,
                  void (*done)(void *ctx, struct strbuf *reply), void *ctx)
{
    char buf[ADMIN_LINE_MAX];
    snprintf(buf, sizeof(buf), "%s", line);
    char *argv[8];
    int argc = 0;
    char *save = NULL;
    for (char *t = strtok_r(buf, " \t\r", &save); t; t = strtok_r(NULL, " \t\r", &save)) {
        if (argc == 8) {
            strbuf_puts(out, "error: too many arguments\n");
            return 1;
        }
        argv[argc++] = t;
    }
#define IS(i, word) (argc > (i) && strcmp(argv[i], word) == 0)
    if (argc == 1 && IS(0, "help")) {
        strbuf_puts(out, help_text);
    } else if (argc == 2 && IS(0, "show") && IS(1, "info")) {
        ops->info(ops->ctx, out);
    } else if (IS(0, "show") && IS(1, "stats") && (argc == 2 || (argc == 3 && IS(2, "json")))) {
        if (argc == 3)
            ops->json(ops->ctx, out);
        else
            ops->table(ops->ctx, out);
    } else if (argc == 2 && IS(0, "show") && IS(1, "backends")) {
        ops->backends(ops->ctx, out);
    } else if (IS(0, "show") && IS(1, "latency") && argc <= 3) {
        struct server_conf *sv = NULL;
        if (argc == 3 && (sv = find_server(ops, argv[2], out)) == NULL)
            return 1;
        ops->latency(ops->ctx, sv, out);
    } else if (IS(0, "show") && IS(1, "sources") && argc <= 4) {
        show_sources(ops, argc, argv, out);
    } else if (IS(0, "show") && IS(1, "sessions") && argc <= 3) {
        return show_sessions(ops, argc == 3 ? argv[2] : NULL, out, done, ctx);
    } else if (argc == 3 && IS(1, "server") &&
               (IS(0, "disable") || IS(0, "enable") || IS(0, "drain"))) {
        struct server_conf *sv = find_server(ops, argv[2], out);
        if (sv == NULL)
            return 1;
        enum backend_admin st = IS(0, "disable") ? ADMIN_DISABLED
                                : IS(0, "drain") ? ADMIN_DRAINING
                                                 : ADMIN_ENABLED;
        set_admin_state(sv, st, IS(0, "disable") ? "disabled" : IS(0, "drain") ? "draining" : "enabled",
                        out);
    } else if (argc == 4 && IS(0, "set") && IS(1, "weight")) {
        struct server_conf *sv = find_server(ops, argv[2], out);
        long w;
        if (sv == NULL)
            return 1;
        if (!parse_int_range(argv[3], 0, 256, &w)) {
            strbuf_puts(out, "error: weight must be 0..256\n");
            return 1;
        }
        int prev = atomic_exchange(&sv->be->weight, (int)w);
        log_info("admin: weight of %s %d -> %ld", sv->be->obj.key, prev, w);
        strbuf_printf(out, "weight of %s: %d -> %ld\n", sv->be->obj.key, prev, w);
    } else if (argc >= 4 && argc <= 7 && IS(0, "add") && IS(1, "server")) {
        add_server(ops, argc, argv, out);
    } else if ((argc == 3 || argc == 4) && IS(0, "del") && IS(1, "server")) {
        return del_server(ops, argc, argv, out, done, ctx);
    } else if (argc == 5 && IS(0, "set") && IS(1, "server") && IS(3, "addr")) {
        set_server_addr(ops, argv, out);
    } else if ((argc == 3 && IS(0, "shutdown") && IS(1, "session")) ||
               (argc == 4 && IS(0, "shutdown") && IS(1, "sessions") && IS(2, "server"))) {
        return shutdown_sessions(ops, argc, argv, out, done, ctx);
    } else if (argc == 2 && IS(0, "show") && IS(1, "config")) {
        ops->show_config(ops->ctx, out);
    } else if (argc == 1 && IS(0, "reload")) {
        ops->reload(ops->ctx, out);
    } else if (argc == 2 && IS(0, "reload") && IS(1, "dry-run")) {
        ops->reload_dry_run(ops->ctx, out);
    } else if (argc == 1 && IS(0, "reopen")) {
        ops->reopen(ops->ctx, out);
    } else if (argc == 0) {
        strbuf_puts(out, "error: empty command (try help)\n");
    } else {
        strbuf_printf(out, "error: unknown or malformed command '%.64s' (try help)\n", argv[0]);
    }
#undef IS
    return 1;
}

/* ---- the line protocol ---- */

/* Every reply ends with an empty line, so a reply must not contain one:
 * squeeze any out of the part appended since `from`. */
static void reply_end(struct conn *c, size_t from)
{
    struct strbuf *b = &c->out;
    size_t w = from;
    for (size_t r = from; r < b->len; r++) {
        if (b->data[r] == '\n' && w > from && b->data[w - 1] == '\n')
            continue;
        b->data[w++] = b->data[r];
    }
    b->len = w;
    if (b->len > from && b->data[b->len - 1] != '\n')
        strbuf_puts(b, "\n");
    strbuf_puts(b, "\n");
}

static void async_done(void *ctx, struct strbuf *reply)
{
    struct conn *c = ctx;
    c->waiting = false;
    if (c->srv == NULL || c->expired) { /* the server went away, or the deadline passed */
        conn_free(c);
        return;
    }
    size_t from = c->out.len;
    strbuf_append(&c->out, reply->data ? reply->data : "", reply->len);
    reply_end(c, from);
    if (conn_flush(c))
        conn_process(c);
}

/* Run the next command line(s) in c->in, but only while no output is
 * pending: a client that pipelines many commands and reads slowly gets one
 * reply at a time, never a buffer holding hundreds of them. The caller
 * flushes and calls again once `out` has drained. Returns false if c was
 * freed (its server went away during a command: a reload that moved or
 * removed the admin socket). */
static bool admin_lines(struct conn *c)
{
    while (!c->waiting && !c->closing && c->out.len == 0) {
        char *nl = memchr(c->in, '\n', c->inlen);
        if (nl == NULL) {
            if (c->inlen == sizeof(c->in)) {
                strbuf_printf(&c->out, "error: line too long (max %d bytes)\n\n", ADMIN_LINE_MAX - 1);
                c->closing = true;
            }
            return true;
        }
        *nl = '\0';
        size_t used = (size_t)(nl - c->in) + 1;
        char line[ADMIN_LINE_MAX];
        memcpy(line, c->in, used);
        memmove(c->in, c->in + used, c->inlen - used);
        c->inlen -= used;
        /* Look for a NUL before trimming: trimming shortens the line, so a
         * length check afterwards would take `show info\r` for one. */
        size_t n = used - 1;
        if (memchr(line, '\0', n) != NULL) {
            conn_set_phase(c, PHASE_REPLY);
            strbuf_puts(&c->out, "error: NUL byte in command\n\n");
            continue;
        }
        while (n > 0 && (line[n - 1] == '\r' || line[n - 1] == ' '))
            line[--n] = '\0';
        if (strcmp(line, "quit") == 0 || strcmp(line, "exit") == 0) {
            c->closing = true;
            return true;
        }
        if (line[0] == '\0')
            continue; /* no reply, and no new deadline */
        /* The next request's deadline counts from the end of this reply. */
        conn_set_phase(c, PHASE_REPLY);
        c->waiting = true;
        size_t from = c->out.len;
        int complete = admin_execute(c->srv->ops, line, &c->out, async_done, c);
        if (complete) {
            c->waiting = false;
            reply_end(c, from);
        }
        if (c->srv == NULL) {
            /* Orphaned by this very command: answer what we can, then go. */
            if (send(c->w_io.fd, c->out.data, c->out.len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
                (void)0;
            if (!c->waiting)
                conn_free(c);
            return false;
        }
    }
    return true;
}

/* ---- HTTP: GET /, /metrics and /stats.json, then close ---- */

static void http_request(struct conn *c)
{
    if (memchr(c->in, '\0', c->inlen) != NULL) {
        strbuf_puts(&c->out, "HTTP/1.1 400 Bad Request\r\nConnection: close\r\n"
                             "Content-Length: 0\r\n\r\n");
        c->closing = true;
        return;
    }
    char *end = strstr(c->in, "\r\n\r\n");
    if (end == NULL)
        end = strstr(c->in, "\n\n");
    if (end == NULL) {
        if (c->inlen == sizeof(c->in) - 1) {
            strbuf_puts(&c->out, "HTTP/1.1 431 Request Header Fields Too Large\r\n"
                                 "Connection: close\r\nContent-Length: 0\r\n\r\n");
            c->closing = true;
        }
        return;
    }
    char method[16] = "", target[256] = "";
    sscanf(c->in, "%15s %255s", method, target);
    struct strbuf body;
    strbuf_init(&body);
    const char *status = "200 OK", *type = "text/plain; version=0.0.4; charset=utf-8";
    char *q = strchr(target, '?');
    if (q)
        *q = '\0';
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        status = "405 Method Not Allowed";
        type = "text/plain";
        strbuf_puts(&body, "only GET\n");
    } else if (strcmp(target, "/metrics") == 0) {
        c->srv->ops->prometheus(c->srv->ops->ctx, &body);
    } else if (strcmp(target, "/stats.json") == 0) {
        type = "application/json";
        c->srv->ops->json(c->srv->ops->ctx, &body);
    } else if (strcmp(target, "/") == 0 || strcmp(target, "/index.html") == 0) {
        /* The stats page, rendered from the same JSON. */
        struct strbuf js;
        strbuf_init(&js);
        c->srv->ops->json(c->srv->ops->ctx, &js);
        type = "text/html; charset=utf-8";
        statspage_render(js.data ? js.data : "", js.len, &body);
        strbuf_free(&js);
    } else {
        status = "404 Not Found";
        type = "text/plain";
        strbuf_puts(&body, "try /, /metrics or /stats.json\n");
    }
    strbuf_printf(&c->out,
                  "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                  "Connection: close\r\n\r\n",
                  status, type, body.len);
    if (strcmp(method, "HEAD") != 0)
        strbuf_append(&c->out, body.data ? body.data : "", body.len);
    strbuf_free(&body);
    c->closing = true;
}

/* Handle what the client sent, flush, and go on with further pipelined
 * commands as long as each reply drains at once. */
static void conn_process(struct conn *c)
{
    if (c->kind == CONN_HTTP) {
        http_request(c);
        conn_flush(c);
        return;
    }
    for (;;) {
        if (!admin_lines(c) || !conn_flush(c))
            return;
        if (c->out.len > 0 || c->waiting || c->closing || memchr(c->in, '\n', c->inlen) == NULL)
            return;
    }
}

static void conn_io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct conn *c = container_of(io, struct conn, w_io);
    if (revents & EV_WRITE) {
        if (!conn_flush(c))
            return;
        if (c->out.len == 0)
            conn_process(c); /* lines that waited for the reply to drain */
        return;
    }
    /* HTTP keeps a NUL terminator after the request bytes. */
    size_t room = sizeof(c->in) - c->inlen - (c->kind == CONN_HTTP ? 1 : 0);
    ssize_t n = recv(io->fd, c->in + c->inlen, room, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        if (c->waiting) {
            c->closing = true; /* freed when the reply arrives */
            ev_io_stop(loop, io);
        } else {
            conn_free(c);
        }
        return;
    }
    if (n < 0)
        return;
    c->inlen += (size_t)n;
    if (c->kind == CONN_HTTP)
        c->in[c->inlen] = '\0';
    conn_process(c);
}

static const char *server_name(const struct server *s)
{
    return s->kind == CONN_ADMIN ? "admin socket" : "admin http";
}

/* The phase's deadline passed: close, whatever is still unsent. */
static void conn_timeout_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct conn *c = container_of(t, struct conn, w_timer);
    log_debug("%s: client closed: no %s within %.0fs", c->kind == CONN_ADMIN ? "admin" : "http",
              conn_phase_str(c->phase), ev_now(loop) - c->phase_since);
    if (c->phase == PHASE_REQUEST)
        conn_drop(c, "error: idle timeout\n\n",
                  "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    else
        conn_drop(c, NULL, NULL);
}

/* The client that has waited longest for a request of its own (idle: no
 * reply pending or being built), or NULL. */
static struct conn *oldest_idle(struct server *s)
{
    struct conn *best = NULL;
    for (struct conn *c = s->conns; c; c = c->next) /* newest first */
        if (c->phase == PHASE_REQUEST && !c->waiting && !c->closing && c->out.len == 0 &&
            (best == NULL || c->phase_since <= best->phase_since))
            best = c;
    return best;
}

/* Make room for a new client when the table is full: evict the oldest idle
 * client. Returns false when every client has a reply in progress. */
static bool make_room(struct server *s)
{
    if (s->nconns < ADMIN_MAX_CLIENTS)
        return true;
    struct conn *victim = oldest_idle(s);
    if (victim == NULL)
        return false;
    log_debug("%s: %d clients: closing the one idle longest to make room", server_name(s),
              s->nconns);
    conn_drop(victim, "error: too many admin clients; closing this idle one\n\n",
              "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
              "Content-Length: 0\r\n\r\n");
    return true;
}

/* Out of descriptors: the listening socket stays readable, so stop
 * watching it for a moment (as the workers do) instead of spinning. */
static void accept_exhausted(struct ev_loop *loop, struct server *s, int err)
{
    if (listener_pause_exhausted(&s->emfile, ev_now(loop)))
        log_warn("%s: accept: %s (too many open files or no memory): pausing accept for %.0fms",
                 server_name(s), strerror(err), LISTENER_EXHAUSTED_PAUSE * 1000);
    ev_io_stop(loop, &s->w_accept);
    ev_timer_set(&s->w_resume, LISTENER_EXHAUSTED_PAUSE, 0.);
    ev_timer_start(loop, &s->w_resume);
}

static void resume_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct server *s = container_of(t, struct server, w_resume);
    ev_io_start(loop, &s->w_accept);
}

static void accept_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct server *s = container_of(io, struct server, w_accept);
    for (int i = 0; i < 16; i++) {
        int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int err = errno;
            if (listener_exhausted_errno(err))
                accept_exhausted(loop, s, err);
            else if (err != EAGAIN && err != EINTR && err != ECONNABORTED)
                log_warn("%s: accept: %s", server_name(s), strerror(err));
            return;
        }
        struct conn *c = make_room(s) ? calloc(1, sizeof(*c)) : NULL;
        if (c == NULL) {
            static const char busy[] = "error: too many admin clients\n\n";
            if (send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
                (void)0;
            close(fd);
            continue;
        }
        c->srv = s;
        c->kind = s->kind;
        strbuf_init(&c->out);
        ev_io_init(&c->w_io, conn_io_cb, fd, EV_READ);
        ev_io_start(loop, &c->w_io);
        ev_init(&c->w_timer, conn_timeout_cb);
        conn_set_phase(c, PHASE_REQUEST);
        c->next = s->conns;
        if (s->conns)
            s->conns->prev = c;
        s->conns = c;
        s->nconns++;
    }
}

static void server_init(struct server *s, const struct admin_ops *ops, enum conn_kind kind, int fd)
{
    s->ops = ops;
    s->kind = kind;
    ev_io_init(&s->w_accept, accept_cb, fd, EV_READ);
    ev_io_start(EV_DEFAULT, &s->w_accept);
    ev_init(&s->w_resume, resume_cb);
}

static void server_stop(struct server *s)
{
    ev_io_stop(EV_DEFAULT, &s->w_accept);
    ev_timer_stop(EV_DEFAULT, &s->w_resume);
    close(s->w_accept.fd);
    while (s->conns) {
        struct conn *c = s->conns;
        s->conns = c->next;
        c->prev = c->next = NULL;
        if (c->waiting) {
            c->srv = NULL; /* orphan: freed by its pending reply */
            ev_io_stop(EV_DEFAULT, &c->w_io);
            ev_timer_stop(EV_DEFAULT, &c->w_timer);
        } else {
            c->srv = NULL;
            conn_free(c);
        }
    }
}

struct admin *admin_start(const struct admin_ops *ops, const char *path, int mode, uid_t uid, gid_t gid,
                          char *err, size_t errlen)
{
    struct sockaddr_any a;
    const char *why = addr_parse_unix_path(path, &a);
    if (why != NULL) {
        snprintf(err, errlen, "%s: %s", path, why);
        return NULL;
    }
    int fd = listener_open_unix(&a, 64, mode, uid, gid, NULL, err, errlen);
    if (fd < 0)
        return NULL;
    struct admin *ad = calloc(1, sizeof(*ad));
    if (ad == NULL || (ad->s.path = strdup(path)) == NULL) {
        free(ad);
        close(fd);
        unlink(path);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    server_init(&ad->s, ops, CONN_ADMIN, fd);
    log_info("admin socket on %s (mode %04o)", path, (unsigned)mode);
    return ad;
}

void admin_stop(struct admin *a)
{
    server_stop(&a->s);
    unlink(a->s.path);
    free(a->s.path);
    free(a);
}

const char *admin_path(const struct admin *a)
{
    return a->s.path;
}

struct admin_http *admin_http_start(const struct admin_ops *ops, const struct sockaddr_any *addr, char *err,
                                    size_t errlen)
{
    int fd = listener_open(addr, 64, err, errlen);
    if (fd < 0)
        return NULL;
    struct admin_http *h = calloc(1, sizeof(*h));
    if (h == NULL) {
        close(fd);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    h->s.addr = *addr;
    server_init(&h->s, ops, CONN_HTTP, fd);
    char a[ADDR_STRLEN];
    addr_format(&addr->u.sa, addr->len, a, sizeof(a));
    log_info("admin http on %s (/, /metrics, /stats.json)", a);
    return h;
}

void admin_http_stop(struct admin_http *h)
{
    server_stop(&h->s);
    free(h);
}

const struct sockaddr_any *admin_http_addr(const struct admin_http *h)
{
    return &h->s.addr;
}
