/* test_config_diff.c - config_diff.h: pairs of configs parsed from text,
 * the changes found (added, removed, changed keys with old -> new values
 * written as sluice -T writes them) and what is counted as unchanged. */
#include "unit.h"

#include "sluice/config.h"
#include "sluice/config_diff.h"
#include "sluice/config_dump.h"
#include "sluice/strbuf.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static struct config *load_at(int line, const char *text)
{
    struct config_errors errs = {0};
    struct config *cfg = config_load_buffer(text, strlen(text), "t.ini", &errs);
    for (int i = 0; i < errs.n; i++)
        printf("#   %s\n", errs.msgs[i]);
    unit_checkf(cfg != NULL, __FILE__, line, "load", "%d errors", errs.n);
    config_errors_free(&errs);
    return cfg;
}

/* The diff of a -> b, formatted, must be exactly `want`. */
static void expect_diff_at(int line, const char *a, const char *b, const char *want)
{
    struct config *ca = load_at(line, a), *cb = load_at(line, b);
    if (ca == NULL || cb == NULL) {
        config_unref(ca);
        config_unref(cb);
        return;
    }
    struct config_diff d;
    int rc = config_diff(ca, cb, &d);
    unit_checkf(rc == 0, __FILE__, line, "config_diff", "returned %d", rc);
    struct strbuf out;
    strbuf_init(&out);
    config_diff_format(&d, "", &out);
    unit_check_str(out.data ? out.data : "", want, __FILE__, line, "diff text");
    strbuf_free(&out);
    config_diff_free(&d);
    config_unref(ca);
    config_unref(cb);
}
#define EXPECT_DIFF(a, b, want) expect_diff_at(__LINE__, a, b, want)

#define BASE                                                                                       \
    "[global]\nworkers = 2\nlog_level = info\nmax_conns = 1000\n"                                  \
    "[listener web]\nbind = 127.0.0.1:9000\npool = app\n"                                          \
    "[listener old]\nbind = 127.0.0.1:9002\npool = legacy\n"                                       \
    "[pool app]\nbalance = roundrobin\nserver = s1 127.0.0.1:8001\nserver = s2 127.0.0.1:8002 "    \
    "weight=3\n"                                                                                   \
    "[pool legacy]\nserver = l1 127.0.0.1:8101\nserver = l2 127.0.0.1:8102\n"

static void test_no_change(void)
{
    EXPECT_DIFF(BASE, BASE, "no changes: 2 listeners, 2 pools, 4 servers as running\n");
    /* Written differently, the same configuration: no change either. */
    EXPECT_DIFF(BASE, "; a comment\n" BASE "[pool spare]\nserver = x 127.0.0.1:7\n",
                "added pool spare: 1 servers\n"
                "unchanged: 2 listeners, 2 pools, 4 servers\n");
    EXPECT_DIFF(BASE,
                "[global]\nworkers = 2\nlog_level = info\nmax_conns = 1000\nbuffer_size = 16k\n"
                "[listener web]\nbind = 127.0.0.1:9000\npool = app\nbacklog = 4096\n"
                "[listener old]\nbind = 127.0.0.1:9002\npool = legacy\n"
                "[pool app]\nserver = s1 127.0.0.1:8001 weight=1\nserver = s2 127.0.0.1:8002 "
                "weight=3\n[pool legacy]\nserver = l1 127.0.0.1:8101\nserver = l2 127.0.0.1:8102\n",
                "no changes: 2 listeners, 2 pools, 4 servers as running\n");
}

static void test_reload_scenario(void)
{
    /* The integration test's reload: a listener added, a pool (and the
     * listener using it) removed, a server's weight and address changed,
     * two global keys changed. */
    const char *b = "[global]\nworkers = 2\nlog_level = debug\nmax_conns = 500\n"
                    "[listener web]\nbind = 127.0.0.1:9000\npool = app\n"
                    "[listener api]\nbind = 127.0.0.1:9001\npool = app\n"
                    "[pool app]\nbalance = roundrobin\nserver = s1 127.0.0.1:8011 weight=5\n"
                    "server = s2 127.0.0.1:8002 weight=3\n";
    EXPECT_DIFF(BASE, b,
                "changed global log_level: info -> debug\n"
                "changed global max_conns: 1000 -> 500\n"
                "added listener api: bind 127.0.0.1:9001, pool app\n"
                "removed listener old\n"
                "changed server app/s1 address: 127.0.0.1:8001 -> 127.0.0.1:8011\n"
                "changed server app/s1 weight: 1 -> 5\n"
                "removed pool legacy: 2 servers\n"
                "unchanged: 1 listeners, 0 pools, 1 servers\n");
    /* And back: the reverse changes. */
    EXPECT_DIFF(b, BASE,
                "changed global log_level: debug -> info\n"
                "changed global max_conns: 500 -> 1000\n"
                "added listener old: bind 127.0.0.1:9002, pool legacy\n"
                "removed listener api\n"
                "changed server app/s1 address: 127.0.0.1:8011 -> 127.0.0.1:8001\n"
                "changed server app/s1 weight: 5 -> 1\n"
                "added pool legacy: 2 servers\n"
                "unchanged: 1 listeners, 0 pools, 1 servers\n");
}

#define ONE_POOL(servers, extra)                                                                   \
    "[listener web]\nbind = 127.0.0.1:9000\npool = p\n[pool p]\n" extra servers

static void test_servers(void)
{
    /* Added (its line as sluice -T writes it), removed, a flag set. */
    EXPECT_DIFF(ONE_POOL("server = a 127.0.0.1:1\nserver = b 127.0.0.1:2\n", ""),
                ONE_POOL("server = a 127.0.0.1:1 backup\nserver = c [::1]:3 weight=0 max_conns=7 "
                         "send_proxy=v2\n",
                         ""),
                "changed server p/a backup: no -> yes\n"
                "added server p/c: [::1]:3 weight=0 max_conns=7 send_proxy=v2\n"
                "removed server p/b\n"
                "unchanged: 1 listeners, 0 pools, 0 servers\n");
    /* A key set on one side only reads "(none)" on the other. */
    EXPECT_DIFF(ONE_POOL("server = a 127.0.0.1:1 send_proxy=v1\n", ""),
                ONE_POOL("server = a 127.0.0.1:1\n", ""),
                "changed server p/a send_proxy: v1 -> (none)\n"
                "unchanged: 1 listeners, 0 pools, 0 servers\n");
    /* Order matters to balance = first and roundrobin: it is a change. */
    EXPECT_DIFF(ONE_POOL("server = a 127.0.0.1:1\nserver = b 127.0.0.1:2\nserver = c 127.0.0.1:3\n",
                         "balance = first\n"),
                ONE_POOL("server = c 127.0.0.1:3\nserver = a 127.0.0.1:1\nserver = d 127.0.0.1:4\n",
                         "balance = first\n"),
                "changed pool p server order: a c -> c a\n"
                "added server p/d: 127.0.0.1:4 weight=1 max_conns=0\n"
                "removed server p/b\n"
                "unchanged: 1 listeners, 0 pools, 2 servers\n");
}

static void test_pool_and_listener_keys(void)
{
    /* Durations, sizes and escaped strings as sluice -T writes them. */
    EXPECT_DIFF(ONE_POOL("server = a 127.0.0.1:1\n", "connect_timeout = 1500ms\n"),
                ONE_POOL("server = a 127.0.0.1:1\n",
                         "connect_timeout = 2s\ncheck = send-expect\ncheck_send = PING\\r\\n\n"
                         "check_expect = +PONG\nbalance = leastconn\n"),
                "changed pool p balance: roundrobin -> leastconn\n"
                "changed pool p connect_timeout: 1500ms -> 2s\n"
                "changed pool p queue_timeout: 1500ms -> 2s\n"
                "changed pool p check: none -> send-expect\n"
                "changed pool p check_send: (none) -> PING\\r\\n\n"
                "changed pool p check_expect: (none) -> +PONG\n"
                "unchanged: 1 listeners, 0 pools, 1 servers\n");
    /* A key given several times is one value; its change shows both. */
    EXPECT_DIFF("[global]\nbuffer_size = 16k\n" ONE_POOL("server = a 127.0.0.1:1\n", ""),
                "[global]\nbuffer_size = 32768\n[listener web]\nbind = 127.0.0.1:9000\n"
                "bind = [::1]:9000\npool = p\nmax_conns = 10\n[pool p]\nserver = a 127.0.0.1:1\n",
                "changed global buffer_size: 16k -> 32k\n"
                "changed listener web bind: 127.0.0.1:9000 -> 127.0.0.1:9000, [::1]:9000\n"
                "changed listener web max_conns: 10000 -> 10\n"
                "unchanged: 0 listeners, 1 pools, 1 servers\n");
    /* route = sni: rules are one value, the summary names the route. */
#define TLS                                                                                        \
    "[listener tls]\nbind = 127.0.0.1:9443\nroute = sni\nsni = a.example p\nsni = *.b.example p\n"
    EXPECT_DIFF(ONE_POOL("server = a 127.0.0.1:1\n", ""),
                ONE_POOL("server = a 127.0.0.1:1\n", "") TLS,
                "added listener tls: bind 127.0.0.1:9443, route sni (2 rules)\n"
                "unchanged: 1 listeners, 1 pools, 1 servers\n");
#undef TLS
    /* A key without a value (a comment in sluice -T) is "(none)". */
    EXPECT_DIFF(ONE_POOL("server = a 127.0.0.1:1\n", ""),
                "[global]\nresolvers = 127.0.0.1:53 127.0.0.2:53\n" ONE_POOL(
                    "server = a 127.0.0.1:1\n", ""),
                "changed global resolvers: (none) -> 127.0.0.1:53 127.0.0.2:53\n"
                "unchanged: 1 listeners, 1 pools, 1 servers\n");
}

static void test_structured(void)
{
    struct config *a = load_at(__LINE__, BASE);
    struct config *b =
        load_at(__LINE__, "[global]\nworkers = 1\n" ONE_POOL("server = s9 127.0.0.1:9\n", ""));
    REQUIRE(a != NULL && b != NULL);
    struct config_diff d;
    REQUIRE(config_diff(a, b, &d) == 0);
    int added = 0, removed = 0, changed = 0;
    for (int i = 0; i < d.n; i++) {
        const struct config_change *c = &d.changes[i];
        added += c->kind == DIFF_ADDED;
        removed += c->kind == DIFF_REMOVED;
        changed += c->kind == DIFF_CHANGED;
        if (c->kind == DIFF_CHANGED)
            CHECK(c->key != NULL && c->old_value != NULL && c->new_value != NULL);
        if (c->what == DIFF_GLOBAL)
            CHECK(c->name == NULL);
        else
            CHECK(c->name != NULL);
    }
    /* global workers and max_conns (log_level: info either way); listener
     * web's pool; listeners old removed; pools p added, app and legacy
     * removed. */
    CHECK_EQ_INT(changed, 3);
    CHECK_EQ_INT(added, 1);
    CHECK_EQ_INT(removed, 3);
    CHECK_EQ_INT(d.listeners_kept + d.pools_kept + d.servers_kept, 0);
    config_diff_free(&d);
    CHECK_EQ_INT(d.n, 0);
    config_unref(a);
    config_unref(b);
}

/* The keys a sink saw, and comments naming a key ("KEY = (none: ...)"). */
struct seen {
    struct config_sink sink;
    char keys[96][32];
    int n;
};

static void seen_add(struct seen *s, const char *key, size_t len)
{
    if (s->n < 96 && len < sizeof(s->keys[0])) {
        memcpy(s->keys[s->n], key, len);
        s->keys[s->n++][len] = '\0';
    }
}

static void seen_kv(struct config_sink *sink, const char *key, const char *value)
{
    (void)value;
    seen_add((struct seen *)sink, key, strlen(key));
}

static void seen_comment(struct config_sink *sink, const char *text)
{
    const char *eq = strstr(text, " = ");
    if (eq)
        seen_add((struct seen *)sink, text, (size_t)(eq - text));
}

static bool was_seen(const struct seen *s, const char *key)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->keys[i], key) == 0)
            return true;
    return false;
}

/* Every key the parser accepts reaches the sink (so a reload changing it
 * is listed): a key added to the parser but not to config_dump.c fails
 * here. Lines of their own ("server") are compared by config_emit_server. */
static void test_every_key_is_compared(void)
{
    /* An access list file (keys only written when the listener has one). */
    char list[] = "/tmp/sluice-test-acl-XXXXXX";
    int fd = mkstemp(list);
    REQUIRE(fd >= 0);
    REQUIRE(write(fd, "10.0.0.0/8\n", 11) == 11);
    close(fd);
    char text[1024];
    snprintf(text, sizeof(text),
             "[global]\nuser = nobody\n"
             "[listener l]\nbind = 127.0.0.1:1\npool = p\nallow = 127.0.0.1\n"
             "allow_file = %s\ndeny_file = %s\ndeny = all\n"
             "[listener t]\nbind = 127.0.0.1:2\nroute = sni\n"
             "sni = a.example p\nsni_default = p\n"
             "[pool p]\ncheck = send-expect\ncheck_send = a\n"
             "check_expect = b\nserver = a 127.0.0.1:3\n",
             list, list);
    struct config *cfg = load_at(__LINE__, text);
    unlink(list);
    REQUIRE(cfg != NULL);
    struct seen g = {.sink = {seen_kv, seen_comment}, .n = 0}, l = g, p = g;
    config_emit_global(cfg, &g.sink);
    config_emit_listener(&cfg->listeners[0], &l.sink);
    config_emit_listener(&cfg->listeners[1], &l.sink);
    config_emit_pool(&cfg->pools[0], &p.sink);
    const struct {
        enum config_section sec;
        struct seen *s;
    } secs[] = {{CONFIG_GLOBAL, &g}, {CONFIG_LISTENER, &l}, {CONFIG_POOL, &p}};
    for (size_t i = 0; i < UNIT_LEN(secs); i++) {
        size_t n;
        const char *const *keys = config_section_keys(secs[i].sec, &n);
        for (size_t k = 0; k < n; k++)
            if (strcmp(keys[k], "server") != 0)
                CHECK_MSG(was_seen(secs[i].s, keys[k]), "key %s (section %d) is not emitted",
                          keys[k], (int)secs[i].sec);
    }
    config_unref(cfg);
}

UNIT_MAIN(TEST(test_no_change), TEST(test_reload_scenario), TEST(test_servers),
          TEST(test_pool_and_listener_keys), TEST(test_structured),
          TEST(test_every_key_is_compared))
