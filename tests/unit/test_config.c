/* test_config.c - config.h: every key with its default and a set value,
 * value syntax as the loader sees it, every error with its exact
 * `NAME:LINE: key:` prefix, and runtime state shared through the registry. */
#include "unit.h"

#include "sluice/addr.h"
#include "sluice/config.h"
#include "sluice/log.h"
#include "sluice/privilege.h"
#include "sluice/registry.h"
#include "sluice/uring.h"

#include <unistd.h>

/* A valid listener + pool, appended after the lines under test so their
 * line numbers count from 1 and the file is otherwise correct. */
#define TAIL "[listener zz]\nbind = 127.0.0.9:1\npool = zz\n[pool zz]\nserver = z 127.0.0.1:1\n"

static struct config *load(const char *text, struct config_errors *errs)
{
    return config_load_buffer(text, strlen(text), "t.ini", errs);
}

/* Load text that must be valid; print the errors if it is not. */
static struct config *load_ok_at(int line, const char *text)
{
    struct config_errors errs = {0};
    struct config *cfg = load(text, &errs);
    for (int i = 0; i < errs.n; i++)
        printf("#   %s\n", errs.msgs[i]);
    unit_checkf(cfg != NULL && errs.n == 0, __FILE__, line, "load_ok(text)", "%d errors", errs.n);
    config_errors_free(&errs);
    return cfg;
}
#define load_ok(text) load_ok_at(__LINE__, text)

struct exp {
    int line;
    const char *key;
    const char *reason; /* a substring of the reason, or NULL */
};

/* The file must fail to load with exactly these errors (any order), each
 * starting "t.ini:LINE: KEY: ". */
static void expect_errors(int at, const char *text, size_t len, const struct exp *e, size_t n)
{
    struct config_errors errs = {0};
    struct config *cfg = config_load_buffer(text, len, "t.ini", &errs);
    bool ok = unit_checkf(cfg == NULL, __FILE__, at, "cfg == NULL", "a bad file loaded");
    config_unref(cfg);
    ok &= unit_checkf((size_t)errs.n == n, __FILE__, at, "errs.n == n", "%d errors, want %zu",
                      errs.n, n);
    bool used[64] = {false};
    for (size_t i = 0; i < n; i++) {
        char prefix[256];
        snprintf(prefix, sizeof(prefix), "t.ini:%d: %s: ", e[i].line, e[i].key);
        bool found = false;
        for (int j = 0; j < errs.n && j < 64 && !found; j++) {
            const char *m = errs.msgs[j];
            if (used[j] || strncmp(m, prefix, strlen(prefix)) != 0)
                continue;
            if (e[i].reason != NULL && strstr(m + strlen(prefix), e[i].reason) == NULL)
                continue;
            used[j] = found = true;
        }
        ok &= unit_checkf(found, __FILE__, at, "error reported", "no error \"%s...%s\"", prefix,
                          e[i].reason ? e[i].reason : "");
    }
    if (!ok)
        for (int j = 0; j < errs.n; j++)
            printf("#   got: %s\n", errs.msgs[j]);
    config_errors_free(&errs);
}

/* The file must fail to load with (at least) this error among others. */
static void expect_has_error(int at, const char *text, int line, const char *key,
                             const char *reason)
{
    struct config_errors errs = {0};
    struct config *cfg = load(text, &errs);
    unit_checkf(cfg == NULL, __FILE__, at, "cfg == NULL", "a bad file loaded");
    config_unref(cfg);
    char prefix[256];
    snprintf(prefix, sizeof(prefix), "t.ini:%d: %s: ", line, key);
    bool found = false;
    for (int j = 0; j < errs.n && !found; j++)
        found = strncmp(errs.msgs[j], prefix, strlen(prefix)) == 0 &&
                (reason == NULL || strstr(errs.msgs[j], reason) != NULL);
    if (!unit_checkf(found, __FILE__, at, "error reported", "no error \"%s...%s\"", prefix,
                     reason ? reason : ""))
        for (int j = 0; j < errs.n; j++)
            printf("#   got: %s\n", errs.msgs[j]);
    config_errors_free(&errs);
}
#define EXPECT_HAS_ERROR(text, line, key, reason)                                                  \
    expect_has_error(__LINE__, text, line, key, reason)

#define EXPECT_ERRORS(text, ...)                                                                   \
    expect_errors(__LINE__, text, strlen(text), (const struct exp[]){__VA_ARGS__},                 \
                  sizeof((const struct exp[]){__VA_ARGS__}) / sizeof(struct exp))

static int online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > SLUICE_MAX_WORKERS ? SLUICE_MAX_WORKERS : (int)n;
}

/* ---- values and defaults ---- */

static void test_defaults(void)
{
    struct config *cfg = load_ok("[listener web]\n"
                                 "bind = 127.0.0.1:8080\n"
                                 "pool = p\n"
                                 "[pool p]\n"
                                 "server = a 127.0.0.1:9001\n");
    REQUIRE(cfg != NULL);
    CHECK_EQ_INT(atomic_load(&cfg->refs), 1);
    CHECK_STR(cfg->path, "t.ini");
    CHECK(!cfg->runtime_attached);
    /* [global] */
    CHECK_EQ_INT(cfg->workers, online_cpus());
    CHECK_EQ_INT(cfg->log_level, LOG_INFO);
    CHECK_STR(cfg->access_log, "off");
    CHECK_EQ_INT(cfg->max_conns, 100000);
    CHECK_EQ_INT(cfg->shutdown_timeout_ms, 30000);
    CHECK_EQ_INT(cfg->buffer_size, 16384);
    CHECK_EQ_INT(cfg->max_buffer, 262144);
    /* [listener] */
    REQUIRE_EQ_INT(cfg->nlisteners, 1);
    struct listener_conf *l = &cfg->listeners[0];
    CHECK_STR(l->name, "web");
    CHECK_EQ_INT(l->line, 1);
    REQUIRE_EQ_INT(l->nbinds, 1);
    char buf[ADDR_STRLEN];
    addr_format(&l->binds[0].u.sa, l->binds[0].len, buf, sizeof(buf));
    CHECK_STR(buf, "127.0.0.1:8080");
    CHECK_STR(l->pool_name, "p");
    CHECK_EQ_INT(l->pool_line, 3);
    CHECK(l->pool == &cfg->pools[0]);
    CHECK_EQ_INT(l->max_conns, 10000);
    CHECK_EQ_INT(l->backlog, 4096);
    CHECK(l->st == NULL);
    /* [pool] */
    REQUIRE_EQ_INT(cfg->npools, 1);
    struct pool_conf *p = &cfg->pools[0];
    CHECK(config_find_pool(cfg, "p") == p);
    CHECK(config_find_pool(cfg, "nope") == NULL);
    CHECK_STR(p->name, "p");
    CHECK_EQ_INT(p->line, 4);
    CHECK_EQ_INT(p->balance, BALANCE_ROUNDROBIN);
    CHECK_EQ_INT(p->connect_timeout_ms, 3000);
    CHECK_EQ_INT(p->idle_timeout_ms, 300000);
    CHECK_EQ_INT(p->fail_timeout_ms, 10000);
    CHECK_EQ_INT(p->retries, 2);
    CHECK_EQ_INT(p->fall, 3);
    CHECK_EQ_INT(p->max_queue, 0);
    CHECK_EQ_INT(p->queue_timeout_ms, 3000);
    REQUIRE_EQ_INT(p->nservers, 1);
    struct server_conf *s = &p->servers[0];
    CHECK_STR(s->name, "a");
    CHECK_STR(s->addr_str, "127.0.0.1:9001");
    CHECK_EQ_INT(s->addr.u.sa.sa_family, AF_INET);
    CHECK_EQ_INT(s->weight, 1);
    CHECK_EQ_INT(s->max_conns, 0);
    CHECK(!s->backup);
    CHECK_EQ_INT(s->line, 5);
    CHECK(s->pool == p);
    CHECK(s->be == NULL);
    for (int w = 0; w < SLUICE_MAX_WORKERS; w++)
        CHECK(p->wstate[w] == NULL);
    config_unref(cfg);
}

static void test_every_key_set(void)
{
    struct config *cfg =
        load_ok("; every key, none at its default\n"                           /* 1 */
                "[global]\n"                                                   /* 2 */
                "workers = 3\n"                                                /* 3 */
                "log_level = debug\n"                                          /* 4 */
                "access_log = /var/log/sluice.log\n"                           /* 5 */
                "max_conns = 500\n"                                            /* 6 */
                "shutdown_timeout = 1500ms\n"                                  /* 7 */
                "buffer_size = 4k\n"                                           /* 8 */
                "max_buffer = 1m\n"                                            /* 9 */
                "\n"                                                           /* 10 */
                "[listener web]\n"                                             /* 11 */
                "bind = 127.0.0.1:8080\n"                                      /* 12 */
                "bind = [::1]:8080\n"                                          /* 13 */
                "bind = *:8081\n"                                              /* 14 */
                "pool = web\n"                                                 /* 15 */
                "max_conns = 77\n"                                             /* 16 */
                "backlog = 128\n"                                              /* 17 */
                "\n"                                                           /* 18 */
                "[listener other]\n"                                           /* 19 */
                "bind = 127.0.0.1:8090\n"                                      /* 20 */
                "pool = spare\n"                                               /* 21 */
                "\n"                                                           /* 22 */
                "[pool web]\n"                                                 /* 23 */
                "balance = leastconn\n"                                        /* 24 */
                "server = app1 127.0.0.1:9001 weight=3\n"                      /* 25 */
                "server = app2 [::1]:9002 max_conns=500\n"                     /* 26 */
                "server = local unix:/run/app.sock\n"                          /* 27 */
                "server = spare 127.0.0.1:9003 backup\n"                       /* 28 */
                "server = all\t127.0.0.1:9004  weight=0 backup  max_conns=7\n" /* 29 */
                "connect_timeout = 250ms\n"                                    /* 30 */
                "idle_timeout = 2m\n"                                          /* 31 */
                "retries = 0\n"                                                /* 32 */
                "fall = 1\n"                                                   /* 33 */
                "fail_timeout = 1h\n"                                          /* 34 */
                "[pool spare]\n"                                               /* 35 */
                "balance = first\n"                                            /* 36 */
                "server = x 10.0.0.1:1 weight=256\n");                         /* 37 */
    REQUIRE(cfg != NULL);
    CHECK_EQ_INT(cfg->workers, 3);
    CHECK_EQ_INT(cfg->log_level, LOG_DEBUG);
    CHECK_STR(cfg->access_log, "/var/log/sluice.log");
    CHECK_EQ_INT(cfg->max_conns, 500);
    CHECK_EQ_INT(cfg->shutdown_timeout_ms, 1500);
    CHECK_EQ_INT(cfg->buffer_size, 4096);
    CHECK_EQ_INT(cfg->max_buffer, 1048576);

    REQUIRE_EQ_INT(cfg->nlisteners, 2);
    struct listener_conf *l = &cfg->listeners[0];
    CHECK_STR(l->name, "web");
    CHECK_EQ_INT(l->line, 11);
    REQUIRE_EQ_INT(l->nbinds, 3);
    char buf[ADDR_STRLEN];
    static const char *const binds[] = {"127.0.0.1:8080", "[::1]:8080", "0.0.0.0:8081"};
    for (int i = 0; i < 3; i++) {
        addr_format(&l->binds[i].u.sa, l->binds[i].len, buf, sizeof(buf));
        CHECK_STR(buf, binds[i]);
    }
    CHECK_EQ_INT(l->max_conns, 77);
    CHECK_EQ_INT(l->backlog, 128);
    REQUIRE_EQ_INT(cfg->npools, 2);
    CHECK(l->pool == &cfg->pools[0]);
    CHECK_STR(cfg->listeners[1].name, "other");
    CHECK(cfg->listeners[1].pool == &cfg->pools[1]);
    CHECK_EQ_INT(cfg->listeners[1].pool_line, 21);

    struct pool_conf *p = &cfg->pools[0];
    CHECK_STR(p->name, "web");
    CHECK_EQ_INT(p->line, 23);
    CHECK_EQ_INT(p->balance, BALANCE_LEASTCONN);
    CHECK_EQ_INT(p->connect_timeout_ms, 250);
    CHECK_EQ_INT(p->idle_timeout_ms, 120000);
    CHECK_EQ_INT(p->retries, 0);
    CHECK_EQ_INT(p->fall, 1);
    CHECK_EQ_INT(p->fail_timeout_ms, 3600000);
    REQUIRE_EQ_INT(p->nservers, 5);
    static const struct {
        const char *name, *addr;
        int weight, max_conns;
        bool backup;
        int line;
    } want[] = {
        {"app1", "127.0.0.1:9001", 3, 0, false, 25},
        {"app2", "[::1]:9002", 1, 500, false, 26},
        {"local", "unix:/run/app.sock", 1, 0, false, 27},
        {"spare", "127.0.0.1:9003", 1, 0, true, 28},
        {"all", "127.0.0.1:9004", 0, 7, true, 29},
    };
    for (int i = 0; i < 5; i++) {
        struct server_conf *s = &p->servers[i];
        CHECK_STR(s->name, want[i].name);
        CHECK_STR(s->addr_str, want[i].addr);
        CHECK_EQ_INT(s->weight, want[i].weight);
        CHECK_EQ_INT(s->max_conns, want[i].max_conns);
        CHECK_EQ_INT(s->backup, want[i].backup);
        CHECK_EQ_INT(s->line, want[i].line);
        CHECK(s->pool == p);
    }
    CHECK_EQ_INT(p->servers[2].addr.u.sa.sa_family, AF_UNIX);
    CHECK_EQ_INT(cfg->pools[1].balance, BALANCE_FIRST);
    CHECK_EQ_INT(cfg->pools[1].servers[0].weight, 256);
    CHECK(cfg->pools[1].servers[0].pool == &cfg->pools[1]);
    config_unref(cfg);
}

static void test_words(void)
{
    static const struct {
        const char *word;
        enum balance_algo algo;
    } algos[] = {{"roundrobin", BALANCE_ROUNDROBIN},
                 {"leastconn", BALANCE_LEASTCONN},
                 {"random", BALANCE_RANDOM},
                 {"source", BALANCE_SOURCE},
                 {"first", BALANCE_FIRST}};
    char text[512];
    for (size_t i = 0; i < UNIT_LEN(algos); i++) {
        snprintf(text, sizeof(text), "[pool b]\nbalance = %s\nserver = a 1.2.3.4:5\n" TAIL,
                 algos[i].word);
        struct config *cfg = load_ok(text);
        if (cfg != NULL)
            CHECK_EQ_INT(cfg->pools[0].balance, algos[i].algo);
        config_unref(cfg);
        CHECK_STR(balance_algo_str(algos[i].algo), algos[i].word);
    }
    CHECK_STR(balance_algo_str((enum balance_algo)99), "?");

    static const struct {
        const char *word;
        enum log_level level;
    } levels[] = {
        {"error", LOG_ERROR}, {"warn", LOG_WARN}, {"info", LOG_INFO}, {"debug", LOG_DEBUG}};
    for (size_t i = 0; i < UNIT_LEN(levels); i++) {
        snprintf(text, sizeof(text), "[global]\nlog_level = %s\n" TAIL, levels[i].word);
        struct config *cfg = load_ok(text);
        if (cfg != NULL)
            CHECK_EQ_INT(cfg->log_level, levels[i].level);
        config_unref(cfg);
    }

    static const char *const logs[] = {"off", "stderr", "/tmp/access.log", "/tmp/a#b.log"};
    for (size_t i = 0; i < UNIT_LEN(logs); i++) {
        snprintf(text, sizeof(text), "[global]\naccess_log = %s\n" TAIL, logs[i]);
        struct config *cfg = load_ok(text);
        if (cfg != NULL)
            CHECK_STR(cfg->access_log, logs[i]);
        config_unref(cfg);
    }

    EXPECT_ERRORS("[pool b]\nbalance = fastest\nserver = a 1.2.3.4:5\n" TAIL,
                  {2, "balance", "'fastest' is not one of"});
    EXPECT_ERRORS("[pool b]\nbalance = RoundRobin\nserver = a 1.2.3.4:5\n" TAIL,
                  {2, "balance", NULL});
    EXPECT_ERRORS("[global]\nlog_level = loud\n" TAIL, {2, "log_level", "'loud'"});
    EXPECT_ERRORS("[global]\naccess_log = relative.log\n" TAIL, {2, "access_log", "absolute"});
    EXPECT_ERRORS("[global]\naccess_log = syslog\n" TAIL, {2, "access_log", NULL});
}

static void test_workers(void)
{
    struct config *cfg = load_ok("[global]\nworkers = auto\n" TAIL);
    if (cfg != NULL)
        CHECK_EQ_INT(cfg->workers, online_cpus());
    config_unref(cfg);
    cfg = load_ok("[global]\nworkers = 1\n" TAIL);
    if (cfg != NULL)
        CHECK_EQ_INT(cfg->workers, 1);
    config_unref(cfg);
    cfg = load_ok("[global]\nworkers = 256\n" TAIL);
    if (cfg != NULL)
        CHECK_EQ_INT(cfg->workers, 256);
    config_unref(cfg);
    EXPECT_ERRORS("[global]\nworkers = 0\n" TAIL, {2, "workers", "1..256"});
    EXPECT_ERRORS("[global]\nworkers = 257\n" TAIL, {2, "workers", "1..256"});
    EXPECT_ERRORS("[global]\nworkers = many\n" TAIL, {2, "workers", NULL});
    EXPECT_ERRORS("[global]\nworkers = Auto\n" TAIL, {2, "workers", NULL});
    EXPECT_ERRORS("[global]\nworkers = -1\n" TAIL, {2, "workers", NULL});
}

static void test_numbers(void)
{
    static const struct {
        const char *section, *key, *value;
        bool ok;
    } cases[] = {
        {"[global]", "max_conns", "1", true},
        {"[global]", "max_conns", "1000000", true},
        {"[global]", "max_conns", "0", false},
        {"[global]", "max_conns", "1000001", false},
        {"[global]", "max_conns", "1e6", false},
        {"[global]", "max_conns", "10k", false},
        {"[listener n]\nbind = 127.0.0.2:1\npool = zz", "max_conns", "1", true},
        {"[listener n]\nbind = 127.0.0.2:1\npool = zz", "max_conns", "0", false},
        {"[listener n]\nbind = 127.0.0.2:1\npool = zz", "backlog", "65535", true},
        {"[listener n]\nbind = 127.0.0.2:1\npool = zz", "backlog", "65536", false},
        {"[listener n]\nbind = 127.0.0.2:1\npool = zz", "backlog", "0", false},
        {"[pool n]\nserver = a 1.2.3.4:5", "retries", "16", true},
        {"[pool n]\nserver = a 1.2.3.4:5", "retries", "17", false},
        {"[pool n]\nserver = a 1.2.3.4:5", "retries", "-1", false},
        {"[pool n]\nserver = a 1.2.3.4:5", "fall", "1000", true},
        {"[pool n]\nserver = a 1.2.3.4:5", "fall", "1001", false},
        {"[pool n]\nserver = a 1.2.3.4:5", "fall", "0", false},
    };
    for (size_t i = 0; i < UNIT_LEN(cases); i++) {
        char text[512];
        snprintf(text, sizeof(text), "%s\n%s = %s\n" TAIL, cases[i].section, cases[i].key,
                 cases[i].value);
        int line = 1;
        for (const char *c = cases[i].section; *c; c++)
            line += *c == '\n';
        struct config_errors errs = {0};
        struct config *cfg = load(text, &errs);
        if (cases[i].ok) {
            CHECK_MSG(cfg != NULL, "%s = %s rejected: %s", cases[i].key, cases[i].value,
                      errs.n ? errs.msgs[0] : "");
        } else {
            char prefix[128];
            snprintf(prefix, sizeof(prefix), "t.ini:%d: %s: ", line + 1, cases[i].key);
            CHECK_MSG(cfg == NULL && errs.n == 1 &&
                          strncmp(errs.msgs[0], prefix, strlen(prefix)) == 0,
                      "%s = %s: want one error \"%s...\", got %d: %s", cases[i].key, cases[i].value,
                      prefix, errs.n, errs.n ? errs.msgs[0] : "");
        }
        config_unref(cfg);
        config_errors_free(&errs);
    }
}

static void test_durations(void)
{
    static const struct {
        const char *v;
        int64_t ms;
    } good[] = {
        {"250ms", 250}, {"3s", 3000}, {"2m", 120000},  {"1h", 3600000}, {"5", 5000},
        {"1.5s", 1500}, {"0.5", 500}, {"1.5m", 90000}, {"1ms", 1},      {"720h", 2592000000LL},
    };
    char text[512];
    for (size_t i = 0; i < UNIT_LEN(good); i++) {
        snprintf(text, sizeof(text),
                 "[pool d]\nserver = a 1.2.3.4:5\nconnect_timeout = %s\nidle_timeout = %s\n"
                 "fail_timeout = %s\n[global]\nshutdown_timeout = %s\n" TAIL,
                 good[i].v, good[i].v, good[i].v, good[i].v);
        struct config *cfg = load_ok(text);
        if (cfg == NULL)
            continue;
        CHECK_EQ_INT(cfg->pools[0].connect_timeout_ms, good[i].ms);
        CHECK_EQ_INT(cfg->pools[0].idle_timeout_ms, good[i].ms);
        CHECK_EQ_INT(cfg->pools[0].fail_timeout_ms, good[i].ms);
        CHECK_EQ_INT(cfg->shutdown_timeout_ms, good[i].ms);
        config_unref(cfg);
    }
    static const char *const bad[] = {"5x",   "-1",           "-1s",   "1 s",  "1d",    "s",
                                      "721h", "99999999999h", "1e999", "3sec", "1h30m", ".5s"};
    for (size_t i = 0; i < UNIT_LEN(bad); i++) {
        snprintf(text, sizeof(text), "[pool d]\nserver = a 1.2.3.4:5\nconnect_timeout = %s\n" TAIL,
                 bad[i]);
        EXPECT_ERRORS(text, {3, "connect_timeout", "bad duration"});
    }
    /* Zero: fine for the shutdown grace and the hold-down, not for timers
     * that must fire. */
    struct config *cfg = load_ok("[global]\nshutdown_timeout = 0\n"
                                 "[pool d]\nserver = a 1.2.3.4:5\nfail_timeout = 0s\n" TAIL);
    if (cfg != NULL) {
        CHECK_EQ_INT(cfg->shutdown_timeout_ms, 0);
        CHECK_EQ_INT(cfg->pools[0].fail_timeout_ms, 0);
    }
    config_unref(cfg);
    EXPECT_ERRORS("[pool d]\nserver = a 1.2.3.4:5\nconnect_timeout = 0\nidle_timeout = 0ms\n" TAIL,
                  {3, "connect_timeout", "at least 1ms"}, {4, "idle_timeout", "at least 1ms"});
}

/* max_queue and queue_timeout: queue_timeout follows connect_timeout
 * unless set, wherever connect_timeout is in the section. */
static void test_queue_keys(void)
{
    struct config *cfg = load_ok("[pool d]\nserver = a 1.2.3.4:5 max_conns=2\nmax_queue = 500\n"
                                 "connect_timeout = 700ms\n"
                                 "[pool e]\nserver = a 1.2.3.4:5\nqueue_timeout = 2s\n"
                                 "connect_timeout = 1s\n" TAIL);
    if (cfg != NULL) {
        CHECK_EQ_INT(cfg->pools[0].max_queue, 500);
        CHECK_EQ_INT(cfg->pools[0].queue_timeout_ms, 700);
        CHECK_EQ_INT(cfg->pools[1].max_queue, 0);
        CHECK_EQ_INT(cfg->pools[1].queue_timeout_ms, 2000);
    }
    config_unref(cfg);
    EXPECT_ERRORS("[pool d]\nserver = a 1.2.3.4:5\nmax_queue = -1\nqueue_timeout = 0\n" TAIL,
                  {3, "max_queue", "not a number"}, {4, "queue_timeout", "at least 1ms"});
    EXPECT_ERRORS("[pool d]\nserver = a 1.2.3.4:5\nmax_queue = 1000001\n" TAIL,
                  {3, "max_queue", "not a number"});
}

static void test_sizes(void)
{
    static const struct {
        const char *v;
        uint32_t n;
    } good[] = {{"4k", 4096},   {"1m", 1048576}, {"2048", 2048}, {"16K", 16384},
                {"1024", 1024}, {"1M", 1048576}, {"1k", 1024}};
    char text[512];
    for (size_t i = 0; i < UNIT_LEN(good); i++) {
        snprintf(text, sizeof(text), "[global]\nbuffer_size = %s\nmax_buffer = %s\n" TAIL,
                 good[i].v, good[i].v);
        struct config *cfg = load_ok(text);
        if (cfg == NULL)
            continue;
        CHECK_EQ_INT(cfg->buffer_size, good[i].n);
        CHECK_EQ_INT(cfg->max_buffer, good[i].n);
        config_unref(cfg);
    }
    struct config *cfg = load_ok("[global]\nmax_buffer = 64m\n" TAIL);
    if (cfg != NULL)
        CHECK_EQ_INT(cfg->max_buffer, 64u << 20);
    config_unref(cfg);

    static const char *const junk[] = {"16kb", "abc", "-1", "1.5k", "16 k", "0x400", "k", "1g0"};
    for (size_t i = 0; i < UNIT_LEN(junk); i++) {
        snprintf(text, sizeof(text), "[global]\nbuffer_size = %s\n" TAIL, junk[i]);
        EXPECT_ERRORS(text, {2, "buffer_size", "bad size"});
    }
    EXPECT_ERRORS("[global]\nbuffer_size = 1023\n" TAIL, {2, "buffer_size", "between 1024 and"});
    EXPECT_ERRORS("[global]\nbuffer_size = 2m\n" TAIL, {2, "buffer_size", "between"});
    EXPECT_ERRORS("[global]\nbuffer_size = 99999999999999999999\n" TAIL, {2, "buffer_size", NULL});
    EXPECT_ERRORS("[global]\nmax_buffer = 65m\n" TAIL, {2, "max_buffer", "between"});
    EXPECT_ERRORS("[global]\nmax_buffer = 1g\n" TAIL, {2, "max_buffer", NULL});
    EXPECT_ERRORS("[global]\nbuffer_size = 17179869184g\n" TAIL, {2, "buffer_size", NULL});
}

/* Keys for features in progress (docs/config.md "Keys in progress"): the
 * admin socket / HTTP endpoint and active health checks. */
static void test_keys_in_progress(void)
{
    struct config *cfg = load_ok("[pool p]\nserver = a 1.2.3.4:5\n" TAIL);
    REQUIRE(cfg != NULL);
    CHECK(cfg->admin_socket == NULL);
    CHECK_EQ_INT(cfg->admin_mode, 0600);
    CHECK(!cfg->has_admin_http);
    struct pool_conf *p = &cfg->pools[0];
    CHECK_EQ_INT(p->rise, 2);
    CHECK_EQ_INT(p->check, CHECK_NONE);
    CHECK_EQ_INT(p->check_interval_ms, 2000);
    CHECK_EQ_INT(p->check_timeout_ms, 1000);
    CHECK(p->check_send == NULL && p->check_send_len == 0);
    CHECK(p->check_expect == NULL && p->check_expect_len == 0);
    config_unref(cfg);

    cfg = load_ok("[global]\n"
                  "admin_socket = /run/sluice/admin.sock\n"
                  "admin_mode = 0660\n"
                  "admin_http = 127.0.0.1:9100\n"
                  "[pool p]\n"
                  "server = a 1.2.3.4:5\n"
                  "check = send-expect\n"
                  "check_interval = 500ms\n"
                  "check_timeout = 250ms\n"
                  "rise = 5\n"
                  "check_send = PING\\r\\n\n"
                  "check_expect = +PONG\\x00\n"
                  "[pool q]\nserver = b 1.2.3.4:6\ncheck = tcp\n" TAIL);
    REQUIRE(cfg != NULL);
    CHECK_STR(cfg->admin_socket, "/run/sluice/admin.sock");
    CHECK_EQ_INT(cfg->admin_mode, 0660);
    CHECK(cfg->has_admin_http);
    char buf[ADDR_STRLEN];
    addr_format(&cfg->admin_http.u.sa, cfg->admin_http.len, buf, sizeof(buf));
    CHECK_STR(buf, "127.0.0.1:9100");
    p = &cfg->pools[0];
    CHECK_EQ_INT(p->check, CHECK_SEND_EXPECT);
    CHECK_EQ_INT(p->check_interval_ms, 500);
    CHECK_EQ_INT(p->check_timeout_ms, 250);
    CHECK_EQ_INT(p->rise, 5);
    CHECK(p->check_send_len == 6 && memcmp(p->check_send, "PING\r\n", 6) == 0);
    CHECK(p->check_expect_len == 6 && memcmp(p->check_expect, "+PONG\0", 6) == 0);
    CHECK_EQ_INT(cfg->pools[1].check, CHECK_TCP);
    config_unref(cfg);

    cfg = load_ok("[global]\nadmin_socket = off\nadmin_http = off\n[pool p]\nserver = a 1.2.3.4:5\n"
                  "check = none\n" TAIL);
    if (cfg != NULL) {
        CHECK(cfg->admin_socket == NULL);
        CHECK(!cfg->has_admin_http);
        CHECK_EQ_INT(cfg->pools[0].check, CHECK_NONE);
    }
    config_unref(cfg);

    EXPECT_ERRORS("[global]\nadmin_socket = run/admin.sock\n" TAIL,
                  {2, "admin_socket", "absolute"});
    char text[512], path[160];
    memset(path, 'p', sizeof(path));
    path[0] = '/';
    path[120] = '\0';
    snprintf(text, sizeof(text), "[global]\nadmin_socket = %s\n" TAIL, path);
    EXPECT_ERRORS(text, {2, "admin_socket", "too long"});
    EXPECT_ERRORS("[global]\nadmin_mode = 0800\n" TAIL, {2, "admin_mode", "octal"});
    EXPECT_ERRORS("[global]\nadmin_mode = rw\n" TAIL, {2, "admin_mode", NULL});
    EXPECT_ERRORS("[global]\nadmin_http = localhost:9100\n" TAIL, {2, "admin_http", NULL});
    EXPECT_ERRORS("[global]\nadmin_http = 127.0.0.1\n" TAIL, {2, "admin_http", NULL});
    EXPECT_ERRORS("[pool p]\nserver = a 1.2.3.4:5\ncheck = http\n" TAIL, {3, "check", "none, tcp"});
    EXPECT_ERRORS("[pool p]\nserver = a 1.2.3.4:5\ncheck_interval = 5ms\n" TAIL,
                  {3, "check_interval", "at least 10ms"});
    EXPECT_ERRORS("[pool p]\nserver = a 1.2.3.4:5\ncheck_timeout = 0\n" TAIL,
                  {3, "check_timeout", "at least"});
    EXPECT_ERRORS("[pool p]\nserver = a 1.2.3.4:5\nrise = 0\n" TAIL, {3, "rise", NULL});
    EXPECT_ERRORS("[pool p]\nserver = a 1.2.3.4:5\ncheck = send-expect\ncheck_expect = \\q\n" TAIL,
                  {4, "check_expect", "escape"}, {1, "check_expect", "needs check_expect"});
    EXPECT_ERRORS("[pool p]\nserver = a 1.2.3.4:5\ncheck = send-expect\ncheck_send = x\\x4\n"
                  "check_expect = ok\n" TAIL,
                  {4, "check_send", "hex"});
    /* Cross-key rules, reported at the pool header. */
    EXPECT_ERRORS("[pool p]\nserver = a 1.2.3.4:5\ncheck = send-expect\ncheck_send = PING\n" TAIL,
                  {1, "check_expect", "needs check_expect"});
    EXPECT_ERRORS("[pool p]\nserver = a 1.2.3.4:5\ncheck = tcp\ncheck_send = PING\n" TAIL,
                  {1, "check_send", "need check = send-expect"});
    EXPECT_ERRORS("[pool p]\nserver = a 1.2.3.4:5\ncheck_expect = PONG\n" TAIL,
                  {1, "check_send", "need check = send-expect"});
    /* Set twice. */
    EXPECT_ERRORS("[pool p]\nserver = a 1.2.3.4:5\ncheck = tcp\ncheck = tcp\n" TAIL,
                  {4, "check", "set twice"});
    EXPECT_ERRORS("[global]\nadmin_http = 127.0.0.1:9100\nadmin_http = 127.0.0.1:9101\n" TAIL,
                  {3, "admin_http", "set twice"});
}

/* admin_http is opened like a listener (SO_REUSEPORT), so the same address
 * as a listener's bind would make the kernel spread client connections
 * over the proxy and the stats endpoint: it must be refused like a bind
 * shared by two listeners. */
static void test_admin_http_vs_bind(void)
{
    struct config_errors errs = {0};
    struct config *cfg = load("[global]\nadmin_http = 127.0.0.9:1\n" TAIL, &errs);
    CHECK_MSG(cfg == NULL && errs.n >= 1,
              "admin_http on a listener's bind address accepted (%d errors)", errs.n);
    config_errors_free(&errs);
    config_unref(cfg);
}

/* ---- errors: each with its line and key ---- */

static void test_error_sections(void)
{
    EXPECT_ERRORS("[global]\nworkers = 2\n[frontend x]\nbind = 1.2.3.4:5\nnonsense = 1\n" TAIL,
                  {3, "frontend x", "unknown section"});
    EXPECT_ERRORS("[globals]\n" TAIL, {1, "globals", "unknown section"});
    EXPECT_ERRORS("[listener]\nbind = 1.2.3.4:5\n" TAIL, {1, "listener", "name"});
    EXPECT_ERRORS("[pool a b]\nserver = a 1.2.3.4:5\n" TAIL, {1, "pool a b", "name"});
    EXPECT_ERRORS("[pool a/b]\nserver = a 1.2.3.4:5\n" TAIL, {1, "pool a/b", "name"});
    /* Duplicates: reported at the second header; its keys are ignored. */
    EXPECT_ERRORS("[global]\nworkers = 2\n[global]\nworkers = 3\n" TAIL,
                  {3, "[global]", "duplicate section (first at line 1)"});
    EXPECT_ERRORS("[listener zz]\nbind = 127.0.0.1:7\npool = zz\n" TAIL,
                  {4, "listener zz", "duplicate listener 'zz' (first at line 1)"});
    EXPECT_ERRORS("[pool zz]\nserver = y 1.2.3.4:5\n" TAIL,
                  {6, "pool zz", "duplicate pool 'zz' (first at line 1)"});
    /* Names: up to 64 of letters, digits, '_', '-', '.'. */
    char text[512], name[80];
    memset(name, 'n', 64);
    name[64] = '\0';
    snprintf(text, sizeof(text), "[pool %s]\nserver = a_1-b.c 1.2.3.4:5\n" TAIL, name);
    struct config *ok64 = load_ok(text);
    config_unref(ok64);
    snprintf(text, sizeof(text), "[pool %sn]\nserver = a 1.2.3.4:5\n" TAIL, name);
    EXPECT_ERRORS(
        text,
        {1, "pool nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn", "max 64"});
    snprintf(text, sizeof(text), "[pool p]\nserver = %sn 1.2.3.4:5\n" TAIL, name);
    EXPECT_ERRORS(text, {2, "server", "not a valid server name"}, {1, "server", "has no servers"});
    /* A listener and a pool may share a name. */
    struct config *cfg = load_ok("[listener zz]\nbind = 127.0.0.1:7\npool = zz\n"
                                 "[pool zz]\nserver = y 1.2.3.4:5\n");
    config_unref(cfg);
}

static void test_error_keys(void)
{
    EXPECT_ERRORS("workers = 2\n[global]\n" TAIL, {1, "workers", "outside"});
    EXPECT_ERRORS("; comment\n\nbind = 1.2.3.4:5\n" TAIL, {3, "bind", "outside"});
    EXPECT_ERRORS("[global]\ncolour = red\n" TAIL, {2, "colour", "unknown key in [global]"});
    EXPECT_ERRORS("[global]\nWorkers = 2\n" TAIL, {2, "Workers", "unknown key"});
    EXPECT_ERRORS("[global]\nbind = 1.2.3.4:5\n" TAIL, {2, "bind", "unknown key"});
    EXPECT_ERRORS("[listener l]\nbind = 127.0.0.1:7\npool = zz\nweight = 3\n" TAIL,
                  {4, "weight", "unknown key in [listener l]"});
    EXPECT_ERRORS("[pool p]\nserver = a 1.2.3.4:5\nbind = 1.2.3.4:5\n" TAIL,
                  {3, "bind", "unknown key in [pool p]"});
    /* Scalars once per section; the second line is the one reported. */
    EXPECT_ERRORS("[global]\nworkers = 2\nlog_level = info\nworkers = 2\n" TAIL,
                  {4, "workers", "set twice"});
    EXPECT_ERRORS("[listener l]\nbind = 127.0.0.1:7\npool = zz\npool = zz\n" TAIL,
                  {4, "pool", "set twice"});
    EXPECT_ERRORS("[pool p]\nbalance = first\nserver = a 1.2.3.4:5\nbalance = first\n" TAIL,
                  {4, "balance", "set twice"});
    EXPECT_ERRORS(
        "[pool p]\nserver = a 1.2.3.4:5\nretries = 1\nfall = 2\nretries = 1\nfall = 2\n" TAIL,
        {5, "retries", "set twice"}, {6, "fall", "set twice"});
    /* ... but the same key in another section is fine. */
    struct config *cfg = load_ok("[global]\nmax_conns = 10\n[listener l]\nbind = 127.0.0.1:7\n"
                                 "pool = zz\nmax_conns = 5\n" TAIL);
    config_unref(cfg);
    /* Empty values. */
    EXPECT_ERRORS("[global]\nworkers =\n" TAIL, {2, "workers", "empty value"});
    EXPECT_ERRORS("[listener l]\nbind = 127.0.0.1:7\npool =   \n" TAIL, {3, "pool", "empty value"},
                  {1, "pool", "names no pool"});
    /* Indented keys are ordinary keys (HAProxy-style files), not continuations. */
    struct config *ind = load_ok("  [global]\n\tworkers = 2\n  log_level = debug\n"
                                 "[listener zz]\n  bind = 127.0.0.9:1\n  pool = zz\n"
                                 "[pool zz]\n    server = z 127.0.0.1:1\n");
    CHECK(ind != NULL && ind->workers == 2 && ind->log_level == LOG_DEBUG &&
          ind->nlisteners == 1 && ind->pools[0].nservers == 1);
    config_unref(ind);
}

/* resolve=all/srv lines are templates: kept apart from the servers, the
 * file's text kept for DNS updates; a pool of templates only is valid. */
static void test_resolve_templates(void)
{
    struct config *cfg = load_ok("[pool p]\nserver = a api.test:80 resolve=all weight=3 backup\n"
                                 "server = b _x._tcp.api.test resolve=srv\n" TAIL);
    if (cfg == NULL)
        return;
    struct pool_conf *p = &cfg->pools[0];
    CHECK_EQ_INT(p->nservers, 0);
    CHECK_EQ_INT(p->nnamed, 2);
    CHECK_EQ_INT(p->named[0].resolve, RESOLVE_ALL);
    CHECK_EQ_INT(p->named[0].weight, 3);
    CHECK(p->named[0].backup);
    CHECK_STR(p->named[0].addr_str, "api.test:80");
    CHECK_EQ_INT(p->named[1].resolve, RESOLVE_SRV);
    CHECK_STR(p->named[1].host, "_x._tcp.api.test");
    CHECK(cfg->text != NULL && cfg->text_len > 0);
    config_unref(cfg);
    /* Without templates the text is not kept. */
    cfg = load_ok(TAIL);
    if (cfg != NULL)
        CHECK(cfg->text == NULL);
    config_unref(cfg);
}

static void test_error_servers(void)
{
    EXPECT_ERRORS(
        "[pool p]\nserver = a 127.0.0.1:1\nserver = b 127.0.0.1:2\nserver = a 127.0.0.1:3\n" TAIL,
        {4, "server", "duplicate server 'a' in pool 'p' (first at line 2)"});
    /* The same server name in two pools is fine. */
    struct config *cfg = load_ok("[pool p]\nserver = z 127.0.0.1:1\n" TAIL);
    config_unref(cfg);

    static const struct {
        const char *line, *reason;
    } bad[] = {
        {"a 127.0.0.1:1 colour=red", "unknown option 'colour=red'"},
        {"a 127.0.0.1:1 weight=257", "weight must be 0..256"},
        {"a 127.0.0.1:1 weight=-1", "weight must be 0..256"},
        {"a 127.0.0.1:1 weight=x", "weight must be 0..256"},
        {"a 127.0.0.1:1 weight=", "weight must be 0..256"},
        {"a 127.0.0.1:1 weight=1.5", "weight must be 0..256"},
        {"a 127.0.0.1:1 max_conns=-1", "max_conns must be"},
        {"a 127.0.0.1:1 max_conns=1000001", "max_conns must be"},
        {"a 127.0.0.1:1 Backup", "unknown option"},
        {"a 127.0.0.1:1 weight", "unknown option"},
        {"a", "expected NAME ADDRESS"},
        {"a/b 127.0.0.1:1", "not a valid server name"},
        {"a localhost:0", "bad IPv4 address"},
        {"a -x.test:80", "bad IPv4 address"},
        {"a api.test:80 resolve=any", "resolve must be first, all or srv"},
        {"a 127.0.0.1:80 resolve=all", "need a host name"},
        {"a _x._tcp.api.test:80 resolve=srv", "resolve=srv takes a name without a port"},
        {"a _x._tcp.api.test resolve=srv weight=2", "each weight from its SRV record"},
        {"a 127.0.0.1 resolve=srv", "is not a host name"},
        {"ok api.test:80 resolve=all", "duplicate server"},
        {"a#1 api.test:80", "not a valid server name"},
        {"a api.test:80 family=v4", "family must be any, ipv4 or ipv6"},
        {"a api.test:80 init_addr=last", "init_addr must be none"},
        {"a 127.0.0.1:1 family=ipv4", "need a host name"},
        {"a 127.0.0.1:0", "port"},
        {"a 127.0.0.1", NULL},
        {"a ::1:80", "[addr]:port"},
        {"a unix:tmp/x.sock", "absolute"},
        {"a *:80", "wildcard"},
    };
    char text[512];
    for (size_t i = 0; i < UNIT_LEN(bad); i++) {
        snprintf(text, sizeof(text), "[pool p]\nserver = ok 127.0.0.1:1\nserver = %s\n" TAIL,
                 bad[i].line);
        EXPECT_ERRORS(text, {3, "server", bad[i].reason});
    }
    /* A pool whose only server line is bad has no servers either. */
    EXPECT_ERRORS("[pool p]\nserver = a 127.0.0.1:1 weight=300\n" TAIL, {2, "server", "weight"},
                  {1, "server", "has no servers"});
}

static void test_error_listeners(void)
{
    EXPECT_ERRORS("[listener l]\n"        /* 1 */
                  "pool = zz\n"           /* 2 */
                  "[listener m]\n"        /* 3 */
                  "bind = 127.0.0.1:2\n"  /* 4 */
                  "max_conns = 5\n" TAIL, /* 5 */
                  {1, "bind", "listener 'l' has no bind address"},
                  {3, "pool", "listener 'm' names no pool"});
    EXPECT_ERRORS("[listener l]\nbind = 127.0.0.1:2\npool = nope\n" TAIL,
                  {3, "pool", "no [pool nope] section"});
    EXPECT_ERRORS("[listener l]\nbind = 127.0.0.1:2\npool = bad/name\n" TAIL,
                  {3, "pool", "not a valid pool name"}, {1, "pool", "names no pool"});
    /* Bad listen addresses. */
    static const struct {
        const char *addr, *reason;
    } bad[] = {
        {"localhost:80", "host names are not resolved"},
        {"unix:x.sock", "unix socket path must be absolute"},
        {"127.0.0.1:0", "port"},
        {"127.0.0.1:65536", "port"},
        {"::1:80", "[addr]:port"},
        {"127.0.0.1", NULL},
        {"[::1]", NULL},
    };
    char text[512];
    for (size_t i = 0; i < UNIT_LEN(bad); i++) {
        snprintf(text, sizeof(text),
                 "[listener l]\nbind = 127.0.0.1:2\nbind = %s\npool = zz\n" TAIL, bad[i].addr);
        EXPECT_ERRORS(text, {3, "bind", bad[i].reason});
    }
    /* The same address twice in one listener. */
    EXPECT_ERRORS("[listener l]\nbind = 127.0.0.1:2\nbind = 127.0.0.1:2\npool = zz\n" TAIL,
                  {3, "bind", "listed twice"});
    EXPECT_ERRORS("[listener l]\nbind = *:80\nbind = 0.0.0.0:80\npool = zz\n" TAIL,
                  {3, "bind", "listed twice"});
}

/* The same address in two listeners. docs/config.md's row "bind address
 * listed twice: that line, or the second listener's header" has two cases:
 * listed twice in one listener, the second bind line (test above); in two
 * listeners, found when the listeners are checked against each other after
 * the whole file is read, the second listener's header. */
static void test_error_bind_in_two_listeners(void)
{
    const char *text = "[listener a]\n"          /* 1 */
                       "bind = 127.0.0.1:8080\n" /* 2 */
                       "pool = zz\n"             /* 3 */
                       "[listener b]\n"          /* 4 */
                       "bind = 127.0.0.1:8081\n" /* 5 */
                       "bind = 127.0.0.1:8080\n" /* 6 */
                       "pool = zz\n" TAIL;       /* 7 */
    struct config_errors errs = {0};
    struct config *cfg = load(text, &errs);
    CHECK(cfg == NULL);
    CHECK_EQ_INT(errs.n, 1);
    if (errs.n == 1) {
        const char *m = errs.msgs[0] ? errs.msgs[0] : "";
        CHECK_MSG(strncmp(m, "t.ini:4: bind: ", 15) == 0, "got \"%s\"", m);
        CHECK_MSG(strstr(m, "127.0.0.1:8080") && strstr(m, "listener 'a'"), "got \"%s\"", m);
    }
    config_errors_free(&errs);
    config_unref(cfg);
    /* Wildcard spellings are the same address. */
    cfg = load(
        "[listener a]\nbind = *:80\npool = zz\n[listener b]\nbind = 0.0.0.0:80\npool = zz\n" TAIL,
        &errs);
    CHECK(cfg == NULL);
    CHECK_EQ_INT(errs.n, 1);
    config_errors_free(&errs);
    config_unref(cfg);
    /* Same port, other address: fine. */
    cfg = load_ok("[listener a]\nbind = 127.0.0.1:80\npool = zz\n[listener b]\nbind = [::1]:80\n"
                  "pool = zz\n" TAIL);
    config_unref(cfg);
}

static void test_error_pools(void)
{
    EXPECT_ERRORS("[global]\n"          /* 1 */
                  "workers = 1\n"       /* 2 */
                  "\n"                  /* 3 */
                  "[pool empty]\n"      /* 4 */
                  "balance = first\n"   /* 5 */
                  "retries = 1\n" TAIL, /* 6 */
                  {4, "server", "pool 'empty' has no servers"});
    /* A pool nobody uses is still checked. */
    EXPECT_ERRORS(TAIL "[pool unused]\n", {6, "server", "has no servers"});
}

static void test_error_max_buffer(void)
{
    EXPECT_ERRORS("; buffers\n[global]\nbuffer_size = 64k\nmax_buffer = 32k\n" TAIL,
                  {2, "max_buffer", "at least buffer_size (65536)"});
    EXPECT_ERRORS("[global]\nbuffer_size = 512k\n" TAIL, {1, "max_buffer", "at least buffer_size"});
    struct config *cfg = load_ok("[global]\nbuffer_size = 64k\nmax_buffer = 64k\n" TAIL);
    config_unref(cfg);
}

static void test_error_no_listener(void)
{
    EXPECT_ERRORS("[pool p]\nserver = a 1.2.3.4:5\n",
                  {2, "listener", "no [listener NAME] section"});
    EXPECT_ERRORS("", {1, "listener", NULL});
    EXPECT_ERRORS("; nothing but comments\n# here\n\n", {3, "listener", NULL});
}

static void test_error_long_lines(void)
{
    /* 197 characters are allowed, 198 are not; later lines keep their
     * numbers. */
    char text[2048], line[256];
    memset(line, 'x', sizeof(line));
    memcpy(line, "; ", 2);
    line[197] = '\0';
    snprintf(text, sizeof(text), "%s\n" TAIL, line);
    struct config *cfg = load_ok(text);
    config_unref(cfg);
    line[197] = 'x';
    line[198] = '\0';
    snprintf(text, sizeof(text), "[global]\nworkers = 2\n%s\ncolour = 1\n" TAIL, line);
    EXPECT_ERRORS(text, {3, "line", "too long (max 197 characters)"}, {4, "colour", "unknown key"});
    /* A long value line: its key is not applied, the error names the line. */
    snprintf(text, sizeof(text), "[global]\naccess_log = /%0200d\nworkers = 0\n" TAIL, 0);
    EXPECT_ERRORS(text, {2, "line", "too long"}, {3, "workers", NULL});
    /* Very long (over inih's buffer). */
    char big[5000];
    memset(big, 'y', sizeof(big));
    memcpy(big, "[global]\nworkers = ", 19);
    snprintf(big + 4000, sizeof(big) - 4000, "\nlog_level = x\n" TAIL);
    EXPECT_ERRORS(big, {2, "line", "too long"}, {3, "log_level", NULL});
}

static void test_error_syntax(void)
{
    EXPECT_ERRORS("[global]\nworkers\n" TAIL,
                  {2, "line", "syntax error (expected [section] or key = value)"});
    /* An unclosed header; what follows may add errors of its own. */
    EXPECT_HAS_ERROR("[global]\nworkers = 2\n[pool p\nserver = a 1.2.3.4:5\n" TAIL, 3, "line",
                     "syntax");
    /* A line with no '=' but a ':' still fails, as some error on that line. */
    struct config_errors errs = {0};
    struct config *cfg = load("[listener l]\nbind 127.0.0.1:80\npool = zz\n" TAIL, &errs);
    CHECK(cfg == NULL);
    bool line2 = false;
    for (int i = 0; i < errs.n; i++)
        line2 |= strstr(errs.msgs[i], "t.ini:2: bind 127.0.0.1: not a key: missing '=' after 'bind'") ==
                 errs.msgs[i];
    CHECK_MSG(line2, "no error for line 2 (%d errors)", errs.n);
    config_errors_free(&errs);
    config_unref(cfg);
    /* NUL bytes are refused, not silently cut. */
    static const char nul[] = "[global]\nworkers = 2\0junk\n" TAIL;
    expect_errors(__LINE__, nul, sizeof(nul) - 1, (const struct exp[]){{2, "line", "NUL"}}, 1);
}

/* Every problem is reported, not only the first. */
static void test_error_all_reported(void)
{
    EXPECT_ERRORS("workers = 2\n"                       /* 1 outside */
                  "[global]\n"                          /* 2 */
                  "workers = 0\n"                       /* 3 range */
                  "colour = red\n"                      /* 4 unknown key */
                  "log_level = loud\n"                  /* 5 bad word */
                  "[frontend x]\n"                      /* 6 unknown section */
                  "[listener l]\n"                      /* 7 no bind */
                  "pool = nope\n"                       /* 8 missing pool */
                  "[pool p]\n"                          /* 9 */
                  "server = a 127.0.0.1:1 weight=999\n" /* 10 */
                  "server = b 127.0.0.1:2\n"            /* 11 */
                  "server = b 127.0.0.1:3\n"            /* 12 duplicate */
                  "retries = 99\n"                      /* 13 */
                  "idle_timeout = 5 m\n"                /* 14 */
                  "[pool q]\n",                         /* 15 no servers */
                  {1, "workers", "outside"}, {3, "workers", NULL}, {4, "colour", NULL},
                  {5, "log_level", NULL}, {6, "frontend x", NULL}, {7, "bind", NULL},
                  {8, "pool", "no [pool nope]"}, {10, "server", "weight"},
                  {12, "server", "duplicate"}, {13, "retries", NULL}, {14, "idle_timeout", NULL},
                  {15, "server", "has no servers"});
}

/* Two syntax errors: both must be reported (inih itself only returns the
 * line of the first). */
static void test_error_two_syntax_errors(void)
{
    EXPECT_ERRORS("[global]\nworkers\nlog_level = info\nmax_conns\n" TAIL, {2, "line", "syntax"},
                  {4, "line", "syntax"});
    EXPECT_HAS_ERROR("[global\nworkers = 2\n[pool x\n" TAIL, 1, "line", "syntax");
    EXPECT_HAS_ERROR("[global\nworkers = 2\n[pool x\n" TAIL, 3, "line", "syntax");
}

/* ---- file syntax ---- */

static void test_file_syntax(void)
{
    /* Comments of both kinds, inline comments after " ;", CRLF endings,
     * blanks around '=' and at both ends, a '#' inside a value. */
    struct config *cfg = load_ok("; comment\r\n"
                                 "# comment\r\n"
                                 "[global]   \r\n"
                                 "  \r\n"
                                 "workers=2\r\n"
                                 "log_level   =   warn   ; loud enough\r\n"
                                 "access_log = /tmp/x#1.log\r\n"
                                 "[listener l] ; the only one\r\n"
                                 "bind = 127.0.0.1:80\r\n"
                                 "pool = p\r\n"
                                 "[pool p]\r\n"
                                 "server = a 127.0.0.1:1 weight=2 ; two\r\n"
                                 "server = b 127.0.0.1:2"); /* no final newline */
    if (cfg != NULL) {
        CHECK_EQ_INT(cfg->workers, 2);
        CHECK_EQ_INT(cfg->log_level, LOG_WARN);
        CHECK_STR(cfg->access_log, "/tmp/x#1.log");
        CHECK_EQ_INT(cfg->pools[0].nservers, 2);
        CHECK_EQ_INT(cfg->pools[0].servers[0].weight, 2);
        CHECK_EQ_INT(cfg->pools[0].servers[1].line, 13);
    }
    config_unref(cfg);
}

/* A UTF-8 byte order mark (editors on some systems write one) is skipped,
 * as inih itself does. */
static void test_file_bom(void)
{
    struct config *cfg = load_ok("\xEF\xBB\xBF[global]\nworkers = 2\n" TAIL);
    if (cfg != NULL)
        CHECK_EQ_INT(cfg->workers, 2);
    config_unref(cfg);
}

static void test_load_file(void)
{
    char path[] = "/tmp/sluice-unit-XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    const char *good = "[global]\nworkers = 2\n" TAIL;
    CHECK_EQ_INT(write(fd, good, strlen(good)), (ssize_t)strlen(good));
    struct config_errors errs = {0};
    struct config *cfg = config_load_file(path, &errs);
    CHECK(cfg != NULL);
    CHECK_EQ_INT(errs.n, 0);
    if (cfg != NULL) {
        CHECK_STR(cfg->path, path);
        CHECK_EQ_INT(cfg->workers, 2);
    }
    config_unref(cfg);

    /* Errors name the file. */
    CHECK_EQ_INT(ftruncate(fd, 0), 0);
    CHECK_EQ_INT(pwrite(fd, "[global]\nworkers = x\n", 21, 0), 21);
    cfg = config_load_file(path, &errs);
    CHECK(cfg == NULL);
    char prefix[128];
    snprintf(prefix, sizeof(prefix), "%s:2: workers: ", path);
    CHECK(errs.n >= 1 && strncmp(errs.msgs[0], prefix, strlen(prefix)) == 0);

    /* config_errors_print: one line each. */
    char *out = NULL;
    size_t outlen = 0;
    FILE *mem = open_memstream(&out, &outlen);
    REQUIRE(mem != NULL);
    config_errors_print(&errs, mem);
    fclose(mem);
    int lines = 0;
    for (size_t i = 0; i < outlen; i++)
        lines += out[i] == '\n';
    CHECK_EQ_INT(lines, errs.n);
    CHECK(outlen > 0 && strncmp(out, prefix, strlen(prefix)) == 0);
    free(out);
    config_errors_free(&errs);
    CHECK_EQ_INT(errs.n, 0);
    CHECK(errs.msgs == NULL);
    close(fd);
    unlink(path);

    /* A missing file: line 0, key "file". */
    cfg = config_load_file("/nonexistent/sluice.ini", &errs);
    CHECK(cfg == NULL);
    CHECK_EQ_INT(errs.n, 1);
    if (errs.n == 1)
        CHECK_STR(errs.msgs[0],
                  "/nonexistent/sluice.ini:0: file: cannot open: No such file or directory");
    config_errors_free(&errs);
}

/* ---- runtime state and reference counts ---- */

static void test_registry_counts(void)
{
    size_t be0 = registry_count(&backend_registry);
    size_t li0 = registry_count(&listener_registry);
    const char *v1 = "[listener reg1]\nbind = 127.0.0.1:1\npool = regp\n"
                     "[listener reg2]\nbind = 127.0.0.1:2\npool = regp\n"
                     "[pool regp]\nserver = a 127.0.0.1:9001 weight=3\nserver = b 127.0.0.1:9002\n";
    const char *v2 = "[listener reg1]\nbind = 127.0.0.1:1\npool = regp\n"
                     "[pool regp]\nserver = a 127.0.0.1:9001 weight=5\nserver = c 127.0.0.1:9003\n"
                     "[pool regq]\nserver = a 127.0.0.1:9001\n";
    struct config *c1 = load_ok(v1);
    struct config *c2 = load_ok(v2);
    REQUIRE(c1 != NULL && c2 != NULL);
    /* Loading alone creates no runtime state. */
    CHECK_EQ_INT(registry_count(&backend_registry), be0);
    CHECK_EQ_INT(registry_count(&listener_registry), li0);

    CHECK_EQ_INT(config_attach_runtime(c1), 0);
    CHECK(c1->runtime_attached);
    CHECK_EQ_INT(registry_count(&backend_registry), be0 + 2);
    CHECK_EQ_INT(registry_count(&listener_registry), li0 + 2);
    struct backend *a1 = c1->pools[0].servers[0].be;
    REQUIRE(a1 != NULL);
    CHECK_STR(a1->obj.key, "regp/a");
    CHECK_EQ_INT(atomic_load(&a1->weight), 3);
    CHECK_EQ_INT(atomic_load(&a1->health), HEALTH_UP);
    CHECK_EQ_INT(atomic_load(&a1->admin), ADMIN_ENABLED);
    CHECK_EQ_INT(atomic_load(&a1->active), 0);
    CHECK(c1->listeners[0].st != NULL && c1->listeners[1].st != NULL);
    CHECK(c1->listeners[0].st != c1->listeners[1].st);
    /* Runtime objects are cache-line aligned (per-worker counters). */
    CHECK_EQ_INT((uintptr_t)a1 % SLUICE_CACHELINE, 0);

    /* The next generation shares state by name: regp/a is the same object
     * (with the new weight once committed), regp/c and regq/a are new, regp/b stays
     * while c1 lives. */
    atomic_store(&a1->active, 4);
    CHECK_EQ_INT(config_attach_runtime(c2), 0);
    CHECK(c2->pools[0].servers[0].be == a1);
    CHECK_EQ_INT(atomic_load(&a1->active), 4);
    CHECK_EQ_INT(atomic_load(&a1->weight), 3); /* not before the commit */
    config_apply_weights(c2);
    CHECK_EQ_INT(atomic_load(&a1->weight), 5);
    CHECK(c2->pools[1].servers[0].be != a1);
    CHECK(c2->listeners[0].st == c1->listeners[0].st);
    CHECK_EQ_INT(registry_count(&backend_registry), be0 + 4);
    CHECK_EQ_INT(registry_count(&listener_registry), li0 + 2);

    /* A reference keeps a generation alive. */
    config_ref(c1);
    config_unref(c1);
    CHECK_EQ_INT(registry_count(&backend_registry), be0 + 4);
    config_unref(c1); /* regp/b and reg2 go */
    CHECK_EQ_INT(registry_count(&backend_registry), be0 + 3);
    CHECK_EQ_INT(registry_count(&listener_registry), li0 + 1);
    CHECK_EQ_INT(atomic_load(&c2->pools[0].servers[0].be->active), 4);
    atomic_store(&c2->pools[0].servers[0].be->active, 0);
    config_unref(c2);
    CHECK_EQ_INT(registry_count(&backend_registry), be0);
    CHECK_EQ_INT(registry_count(&listener_registry), li0);

    /* Fresh state after the last reference is gone. */
    struct config *c3 = load_ok(v1);
    REQUIRE(c3 != NULL);
    CHECK_EQ_INT(config_attach_runtime(c3), 0);
    CHECK_EQ_INT(atomic_load(&c3->pools[0].servers[0].be->active), 0);
    config_unref(c3);
    CHECK_EQ_INT(registry_count(&backend_registry), be0);

    /* A file with errors leaves nothing behind either. */
    struct config_errors errs = {0};
    CHECK(load("[listener reg1]\nbind = 127.0.0.1:1\npool = regp\n[pool regp]\n", &errs) == NULL);
    config_errors_free(&errs);
    CHECK_EQ_INT(registry_count(&backend_registry), be0);
    CHECK_EQ_INT(registry_count(&listener_registry), li0);
    config_unref(NULL); /* allowed, like free(NULL) */
}

static void test_registry_direct(void)
{
    struct registry reg = {0};
    struct registry_obj *a = registry_get(&reg, "a", sizeof(struct registry_obj) + 100, NULL);
    struct registry_obj *b = registry_get(&reg, "b", sizeof(struct registry_obj), NULL);
    struct registry_obj *a2 = registry_get(&reg, "a", sizeof(struct registry_obj) + 100, NULL);
    REQUIRE(a != NULL && b != NULL);
    CHECK(a == a2);
    CHECK(a != b);
    CHECK_STR(a->key, "a");
    CHECK_EQ_INT(a->refs, 2);
    CHECK_EQ_INT(registry_count(&reg), 2);
    registry_put(&reg, a);
    CHECK_EQ_INT(registry_count(&reg), 2);
    registry_put(&reg, b);
    CHECK_EQ_INT(registry_count(&reg), 1);
    registry_put(&reg, a2);
    CHECK_EQ_INT(registry_count(&reg), 0);
    CHECK(reg.head == NULL);
    registry_put(&reg, NULL);
}

/* user / group / allow_root: resolved at load time against the system's
 * user database (root and nobody exist everywhere Debian runs). */
static void test_identity(void)
{
    /* No user: the default one (sluice, else nobody), marked as chosen. */
    struct config *cfg = load_ok(TAIL);
    REQUIRE(cfg != NULL);
    uid_t uid;
    gid_t gid;
    const char *def = privilege_default_user(&uid, &gid);
    CHECK(def != NULL && cfg->user != NULL && strcmp(cfg->user, def) == 0 && cfg->user_default);
    CHECK(cfg->uid == uid && cfg->gid == gid && cfg->group == NULL && !cfg->allow_root);
    config_unref(cfg);
    cfg = load_ok("[global]\nallow_root = yes\n" TAIL);
    REQUIRE(cfg != NULL);
    CHECK(cfg->user == NULL && cfg->allow_root && !cfg->user_default);
    config_unref(cfg);

    cfg = load_ok("[global]\nuser = root\nallow_root = yes\n" TAIL);
    REQUIRE(cfg != NULL);
    CHECK_STR(cfg->user, "root");
    CHECK_EQ_INT(cfg->uid, 0);
    CHECK_EQ_INT(cfg->gid, 0); /* root's primary group */
    CHECK(cfg->allow_root);
    config_unref(cfg);

    cfg = load_ok("[global]\nuser = 0\ngroup = 0\nallow_root = yes\n" TAIL);
    REQUIRE(cfg != NULL);
    CHECK_EQ_INT(cfg->uid, 0);
    CHECK_EQ_INT(cfg->gid, 0);
    config_unref(cfg);
    /* Root by name or number without allow_root is a mistake, with its line. */
    EXPECT_ERRORS("[global]\nuser = root\n" TAIL, {2, "user", "'root' is root"});
    EXPECT_ERRORS("[global]\nuser = 0\ngroup = 0\n" TAIL, {2, "user", "'0' is root"});

    EXPECT_ERRORS("[global]\nuser = no-such-user-zz\n" TAIL, {2, "user", "no such user"});
    EXPECT_ERRORS("[global]\nuser = nobody\ngroup = no-such-group-zz\n" TAIL,
                  {3, "group", "no such group"});
    EXPECT_ERRORS("[global]\ngroup = root\n" TAIL, {2, "group", "needs user"});
    EXPECT_ERRORS("[global]\nallow_root = maybe\n" TAIL, {2, "allow_root", "yes or no"});
    EXPECT_ERRORS("[global]\nuser = 4294967295\n" TAIL, {2, "user", "no such user"});
}

/* ---- a file that forgives what operators type ---- */

static void test_inline_comments(void)
{
    struct config *cfg = load_ok("[global] ; the global section\n"
                                 "log_level = debug # loud\n"
                                 "workers = 2 ; two\n"
                                 "max_conns = 50\t# tab then hash\n"
                                 "# a whole-line comment\n"
                                 "; another\n"
                                 "[listener zz]  # the listener\n"
                                 "bind = 127.0.0.9:1\n"
                                 "pool = zz\n"
                                 "[pool zz]\n"
                                 "server = z 127.0.0.1:1 weight=3 # three\n"
                                 "check = send-expect\n"
                                 "check_send = a#b;c\n"
                                 "check_expect = x\\x23y # a '#' after a blank is written \\x23\n");
    REQUIRE(cfg != NULL);
    CHECK_EQ_INT(cfg->log_level, LOG_DEBUG);
    CHECK_EQ_INT(cfg->workers, 2);
    CHECK_EQ_INT(cfg->max_conns, 50);
    CHECK_EQ_INT(cfg->pools[0].servers[0].weight, 3);
    CHECK(cfg->pools[0].check_send_len == 5 && memcmp(cfg->pools[0].check_send, "a#b;c", 5) == 0);
    CHECK(cfg->pools[0].check_expect_len == 3 && memcmp(cfg->pools[0].check_expect, "x#y", 3) == 0);
    config_unref(cfg);
}

static void test_key_hints(void)
{
    EXPECT_ERRORS("[global]\nlog_levle = info\n" TAIL,
                  {2, "log_levle", "unknown key in [global] (did you mean 'log_level'?)"});
    EXPECT_ERRORS("[global]\nWorkers = 2\n" TAIL, {2, "Workers", "did you mean 'workers'?"});
    EXPECT_ERRORS("[pool p]\nservre = a 1.2.3.4:5\nserver = a 1.2.3.4:5\n" TAIL,
                  {2, "servre", "did you mean 'server'?"});
    EXPECT_ERRORS("[pool p]\nserver = a 1.2.3.4:5\nbind = 1.2.3.4:5\n" TAIL,
                  {3, "bind", "'bind' belongs in [listener NAME]"});
    EXPECT_ERRORS("[listener l]\nbind = 127.0.0.1:7\npool = zz\nworkers = 2\n" TAIL,
                  {4, "workers", "'workers' belongs in [global]"});
    EXPECT_ERRORS("[global]\ncolour = red\n" TAIL, {2, "colour", "unknown key in [global]"});
}

/* Errors from the line pass and from the checks after it, in line order,
 * each showing the value it is about. */
static void test_error_order_and_values(void)
{
    struct config_errors errs = {0};
    struct config *cfg = load("[pool p]\n"                  /* 1: no servers */
                              "connect_timeout = 0ms\n"     /* 2 */
                              "[global]\n"                  /* 3 */
                              "buffer_size = 100\n"         /* 4 */
                              "access_log = relative.log\n" /* 5 */
                              "[listener zz]\nbind = 127.0.0.9:1\npool = zz\n"
                              "[pool zz]\nserver = z 127.0.0.1:1 weight=300 max_conns=x\n",
                              &errs);
    CHECK(cfg == NULL);
    static const char *const want[] = {
        "t.ini:1: server: pool 'p' has no servers",
        "t.ini:2: connect_timeout: '0ms' must be at least 1ms",
        "t.ini:4: buffer_size: '100' must be between 1024 and 1048576 bytes",
        ("t.ini:5: access_log: 'relative.log' must be off, stderr, an absolute path or "
         "syslog:ADDRESS"),
        "t.ini:9: server: pool 'zz' has no servers",
        "t.ini:10: server: z: weight must be 0..256, not '300'",
    };
    CHECK_EQ_INT(errs.n, (int)ARRAY_SIZE(want));
    for (int i = 0; i < errs.n && i < (int)ARRAY_SIZE(want); i++)
        CHECK_STR(errs.msgs[i], want[i]);
    config_errors_free(&errs);
    config_unref(cfg);
}

static void test_unreadable_paths(void)
{
    struct config_errors errs = {0};
    CHECK(config_load_file("/", &errs) == NULL);
    CHECK(errs.n == 1 && strcmp(errs.msgs[0], "/:0: file: cannot read: Is a directory") == 0);
    config_errors_free(&errs);
}

/* bind = unix:PATH with bind_mode and bind_owner (USER[:GROUP], looked
 * up at load time). */
static void test_unix_binds(void)
{
    struct config *cfg = load_ok("[listener l]\n"
                                 "bind = unix:/run/sluice/app.sock\n"
                                 "bind = 127.0.0.1:2\n"
                                 "bind_mode = 0600\n"
                                 "bind_owner = root:0\n"
                                 "pool = zz\n"
                                 "[listener m]\n"
                                 "bind = unix:/run/sluice/m.sock\n"
                                 "pool = zz\n" TAIL);
    REQUIRE(cfg != NULL);
    struct listener_conf *l = &cfg->listeners[0];
    REQUIRE_EQ_INT(l->nbinds, 2);
    char buf[ADDR_STRLEN];
    addr_format(&l->binds[0].u.sa, l->binds[0].len, buf, sizeof(buf));
    CHECK_STR(buf, "unix:/run/sluice/app.sock");
    CHECK_EQ_INT(l->bind_mode, 0600);
    CHECK_STR(l->bind_owner, "root:0");
    CHECK_EQ_INT(l->owner_uid, 0);
    CHECK_EQ_INT(l->owner_gid, 0);
    CHECK_EQ_INT(cfg->listeners[1].bind_mode, 0660); /* the default */
    CHECK(cfg->listeners[1].bind_owner == NULL);
    config_unref(cfg);

    EXPECT_ERRORS("[listener l]\nbind = unix:/a.sock\nbind_owner = no-such-user-x\npool = zz\n" TAIL,
                  {3, "bind_owner", "'no-such-user-x': no such user"});
    EXPECT_ERRORS("[listener l]\nbind = unix:/a.sock\nbind_owner = root:no-such-group-x\n"
                  "pool = zz\n" TAIL,
                  {3, "bind_owner", "'root:no-such-group-x': no such group"});
    EXPECT_ERRORS("[listener l]\nbind = unix:/a.sock\nbind_owner = root:\npool = zz\n" TAIL,
                  {3, "bind_owner", "is not USER or USER:GROUP"});
    EXPECT_ERRORS("[listener l]\nbind = unix:/a.sock\nbind_mode = 1777\npool = zz\n" TAIL,
                  {3, "bind_mode", "not an octal mode like 0660"});
    EXPECT_ERRORS("[listener l]\nbind = unix:/a.sock\nbind = unix:/a.sock\npool = zz\n" TAIL,
                  {3, "bind", "listed twice"});
    EXPECT_ERRORS("[global]\nadmin_socket = /a.sock\n[listener l]\nbind = unix:/a.sock\n"
                  "pool = zz\n" TAIL,
                  {3, "bind", "unix:/a.sock is also the admin_socket"});
}

/* ---- sluice -T: the effective configuration, read back unchanged ---- */

/* tcp_keepalive and its timing, alike in [listener] and [pool]: off by
 * default with 60s/10s/6 ready; seconds as the kernel takes them. */
static void test_keepalive(void)
{
    struct config *cfg = load_ok(TAIL);
    if (cfg != NULL) {
        const struct keepalive_conf *kas[] = {&cfg->listeners[0].keepalive,
                                              &cfg->pools[0].keepalive};
        for (size_t i = 0; i < UNIT_LEN(kas); i++) {
            CHECK(!kas[i]->on);
            CHECK_EQ_INT(kas[i]->idle_s, 60);
            CHECK_EQ_INT(kas[i]->interval_s, 10);
            CHECK_EQ_INT(kas[i]->count, 6);
        }
    }
    config_unref(cfg);
    cfg = load_ok("[listener k]\nbind = 127.0.0.2:1\npool = p\ntcp_keepalive = on\n"
                  "keepalive_idle = 2m\nkeepalive_interval = 1\nkeepalive_count = 127\n"
                  "[pool p]\nserver = a 1.2.3.4:5\ntcp_keepalive = yes\nkeepalive_idle = 32767s\n"
                  "keepalive_interval = 1000ms\nkeepalive_count = 1\n");
    if (cfg != NULL) {
        const struct keepalive_conf *l = &cfg->listeners[0].keepalive, *p = &cfg->pools[0].keepalive;
        CHECK(l->on && p->on);
        CHECK_EQ_INT(l->idle_s, 120);
        CHECK_EQ_INT(l->interval_s, 1);
        CHECK_EQ_INT(l->count, 127);
        CHECK_EQ_INT(p->idle_s, 32767);
        CHECK_EQ_INT(p->interval_s, 1);
        CHECK_EQ_INT(p->count, 1);
    }
    config_unref(cfg);
    EXPECT_ERRORS("[pool p]\nserver = a 1.2.3.4:5\ntcp_keepalive = maybe\nkeepalive_idle = 0\n"
                  "keepalive_interval = 1500ms\nkeepalive_count = 0\n" TAIL,
                  {3, "tcp_keepalive", "not on or off"}, {4, "keepalive_idle", "whole seconds"},
                  {5, "keepalive_interval", "whole seconds"}, {6, "keepalive_count", "1..127"});
    EXPECT_ERRORS("[listener k]\nbind = 127.0.0.2:1\npool = zz\nkeepalive_idle = 32768s\n"
                  "keepalive_interval = 10h\nkeepalive_count = 128\nkeepalive_idle = 1s\n" TAIL,
                  {4, "keepalive_idle", "from 1s to 32767s"},
                  {5, "keepalive_interval", "from 1s to 32767s"}, {6, "keepalive_count", "1..127"},
                  {7, "keepalive_idle", "set twice"});
    EXPECT_ERRORS("[pool p]\nserver = a 1.2.3.4:5\nkeepalive_idle = soon\n" TAIL,
                  {3, "keepalive_idle", "bad duration"});
}

static char *dump_text(const struct config *cfg)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (f == NULL)
        return NULL;
    config_dump(cfg, f);
    fclose(f);
    /* Comments (where the file came from, which values were defaults) may
     * differ between a file and its dump: compare the settings. */
    char *o = text;
    for (const char *line = text; text != NULL && *line != '\0';) {
        const char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) + 1 : strlen(line);
        if (line[0] != ';') {
            memmove(o, line, n);
            o += n;
        }
        line += n;
    }
    if (text != NULL)
        *o = '\0';
    return text;
}

static void check_round_trip(int at, const char *text)
{
    struct config *a = load_ok(text);
    if (!unit_checkf(a != NULL, __FILE__, at, "load", "the original does not load"))
        return;
    char *d1 = dump_text(a);
    struct config_errors errs = {0};
    struct config *b = d1 ? config_load_buffer(d1, strlen(d1), "t.ini", &errs) : NULL;
    if (!unit_checkf(b != NULL, __FILE__, at, "reload", "the dump does not load: %s\n%s",
                     errs.n ? errs.msgs[0] : "?", d1 ? d1 : "")) {
        config_errors_free(&errs);
        free(d1);
        config_unref(a);
        return;
    }
    char *d2 = dump_text(b);
    unit_checkf(d1 && d2 && strcmp(d1, d2) == 0, __FILE__, at, "dump == dump of dump",
                "\n--- first\n%s\n--- second\n%s", d1 ? d1 : "", d2 ? d2 : "");
    /* Every key of the parser's tables is in the dump (user and group
     * only when there is one). */
    static const enum config_section secs[] = {CONFIG_GLOBAL, CONFIG_LISTENER, CONFIG_POOL};
    for (size_t i = 0; i < ARRAY_SIZE(secs) && d1; i++) {
        size_t n;
        const char *const *keys = config_section_keys(secs[i], &n);
        for (size_t k = 0; k < n; k++) {
            char want[64];
            snprintf(want, sizeof(want), "\n%s = ", keys[k]);
            bool optional = strcmp(keys[k], "check_send") == 0 || strcmp(keys[k], "check_expect") == 0 ||
                            ((strcmp(keys[k], "user") == 0 || strcmp(keys[k], "group") == 0) &&
                             a->user == NULL) ||
                            (strcmp(keys[k], "bind_owner") == 0 && a->listeners[0].bind_owner == NULL) ||
                            (strcmp(keys[k], "resolvers") == 0 && a->resolvers == NULL);
            /* A listener has either pool (route = pool) or sni rules and
             * maybe sni_default (route = sni): each only where it is set. */
            if (strcmp(keys[k], "pool") == 0 || strcmp(keys[k], "sni") == 0 ||
                strcmp(keys[k], "sni_default") == 0) {
                bool set = false;
                for (int l = 0; l < a->nlisteners; l++) {
                    const struct listener_conf *lc = &a->listeners[l];
                    set |= keys[k][0] == 'p' ? !lc->route_sni
                           : keys[k][3] == '\0' ? lc->nsni_rules > 0
                                                : lc->sni_default_name != NULL;
                }
                optional = !set;
            }
            /* Access-list lines: only where a listener has them. */
            if (strcmp(keys[k], "allow") == 0 || strcmp(keys[k], "deny") == 0 ||
                strcmp(keys[k], "allow_file") == 0 || strcmp(keys[k], "deny_file") == 0) {
                static const char *const acl_keys[] = {"allow", "deny", "allow_file",
                                                       "deny_file"};
                bool set = false;
                for (int l = 0; l < a->nlisteners; l++) {
                    const struct listener_conf *lc = &a->listeners[l];
                    for (int r = 0; r < lc->nacl_lines; r++)
                        set |= strcmp(keys[k], acl_keys[lc->acl_lines[r].kind]) == 0;
                }
                optional = !set;
            }
            unit_checkf(optional || strstr(d1, want) != NULL, __FILE__, at, "key in dump",
                        "'%s' missing", keys[k]);
        }
    }
    free(d1);
    free(d2);
    config_unref(a);
    config_unref(b);
}

static void test_dump_round_trip(void)
{
    check_round_trip(__LINE__, TAIL);
    check_round_trip(__LINE__, "[global]\nallow_root = yes\n" TAIL);
    check_round_trip(__LINE__,
                     "[global]\nworkers = 3\nlog_level = debug\naccess_log = /var/log/s.log\n"
                     "max_conns = 500\nshutdown_timeout = 1500ms\nbuffer_size = 4000\n"
                     "max_buffer = 1m\nadmin_socket = /run/s/a.sock\nadmin_mode = 660\n"
                     "admin_http = *:9180\npid_file = /run/s.pid\nuser = nobody\n"
                     "[listener web]\nbind = 127.0.0.1:8080\nbind = [::1]:8080\npool = web\n"
                     "bind = unix:/run/s/web.sock\nbind_mode = 666\nbind_owner = nobody:root\n"
                     "max_conns = 77\nbacklog = 128\nrelay = splice\naccept_proxy = on\n"
                     "proxy_timeout = 90s\ntcp_keepalive = on\nkeepalive_idle = 90s\n"
                     "keepalive_interval = 2m\nkeepalive_count = 3\n"
                     "[pool web]\nbalance = leastconn\nserver = app1 127.0.0.1:9001 weight=3\n"
                     "server = app2 [::1]:9002 max_conns=500 send_proxy=v1\n"
                     "server = local unix:/run/app.sock backup\n"
                     "connect_timeout = 250ms\nidle_timeout = 2h\nretries = 0\nfall = 1\nrise = 9\n"
                     "fail_timeout = 0\nsend_proxy = v2\ncheck = send-expect\ncheck_interval = 1.5s\n"
                     "check_timeout = 100ms\ncheck_send = PING \\x23;1\\r\\n\\t\\\\\\x00\\xff\n"
                     "check_expect = +PONG\ntcp_keepalive = on\nkeepalive_idle = 1s\n"
                     "keepalive_interval = 32767s\nkeepalive_count = 127\n");
    check_round_trip(__LINE__, "[listener tls]\nbind = 127.0.0.1:8443\nroute = sni\n"
                               "sni = API.example.com. zz\nsni = *.Example.com zz\n"
                               "sni_default = zz\nsni_timeout = 250ms\naccept_proxy = on\n" TAIL);
    check_round_trip(__LINE__, "[listener tls]\nbind = 127.0.0.1:8443\nroute = sni\n"
                               "sni = a.example zz\n" TAIL);
    check_round_trip(__LINE__, "[listener acl]\nbind = 127.0.0.1:8443\npool = zz\n"
                               "deny = 10.1.2.3\nallow = 10.0.0.0/8  2001:db8::/32\n"
                               "deny = all\n" TAIL);
    check_round_trip(__LINE__, "[listener l]\nbind = 127.0.0.1:8443\npool = zz\n"
                               "max_conns_per_source = 7\nrate_per_source = 600/1m\n"
                               "source_prefix_v4 = 24\nsource_prefix_v6 = 48\n"
                               "source_table_size = 1000\nmax_conn_rate = 5/250ms\n" TAIL);
    check_round_trip(__LINE__, "[global]\naccess_log = syslog:/dev/log\naccess_log_format = json\n"
                               "syslog_facility = daemon\nsyslog_tag = px\n" TAIL);
    check_round_trip(__LINE__, "[global]\naccess_log = syslog:[::1]:5514\n"
                               "access_log_format = \"%{client} %% %{server}\"\n" TAIL);
}

/* ---- per-source limits ---- */

static void test_source_limits(void)
{
    struct config *cfg = load_ok("[listener l]\nbind = 127.0.0.1:2\npool = zz\n"
                                 "max_conns_per_source = 3\nrate_per_source = 100/1s\n"
                                 "source_prefix_v4 = 24\nsource_prefix_v6 = 56\n"
                                 "source_table_size = 10\nmax_conn_rate = 2000/1m\n" TAIL);
    REQUIRE(cfg != NULL);
    struct listener_conf *l = &cfg->listeners[0];
    CHECK_EQ_INT(l->max_conns_per_source, 3);
    CHECK_EQ_INT(l->rate_per_source.n, 100);
    CHECK_EQ_INT((int)l->rate_per_source.per_ms, 1000);
    CHECK_EQ_INT(l->source_prefix_v4, 24);
    CHECK_EQ_INT(l->source_prefix_v6, 56);
    CHECK_EQ_INT(l->source_table_size, 10);
    CHECK_EQ_INT(l->max_conn_rate.n, 2000);
    CHECK_EQ_INT((int)l->max_conn_rate.per_ms, 60000);
    struct listener_conf *d = &cfg->listeners[1]; /* the defaults */
    CHECK_EQ_INT(d->max_conns_per_source, 0);
    CHECK_EQ_INT(d->rate_per_source.n, 0);
    CHECK_EQ_INT(d->max_conn_rate.n, 0);
    CHECK_EQ_INT(d->source_prefix_v4, 32);
    CHECK_EQ_INT(d->source_prefix_v6, 64);
    CHECK_EQ_INT(d->source_table_size, 65536);
    config_unref(cfg);
}

static void test_error_source_limits(void)
{
    EXPECT_ERRORS("[listener l]\nbind = 127.0.0.1:2\npool = zz\nrate_per_source = 100\n" TAIL,
                  {4, "rate_per_source", "not N/DURATION"});
    EXPECT_ERRORS("[listener l]\nbind = 127.0.0.1:2\npool = zz\nrate_per_source = 0/1s\n" TAIL,
                  {4, "rate_per_source", "count must be a number in 1..1000000"});
    EXPECT_ERRORS("[listener l]\nbind = 127.0.0.1:2\npool = zz\nmax_conn_rate = 5/fast\n" TAIL,
                  {4, "max_conn_rate", "period must be a duration"});
    EXPECT_ERRORS("[listener l]\nbind = 127.0.0.1:2\npool = zz\nmax_conn_rate = 5/0s\n" TAIL,
                  {4, "max_conn_rate", "period must be a duration"});
    EXPECT_ERRORS("[listener l]\nbind = 127.0.0.1:2\npool = zz\nsource_prefix_v4 = 33\n" TAIL,
                  {4, "source_prefix_v4", "1..32"});
    EXPECT_ERRORS("[listener l]\nbind = 127.0.0.1:2\npool = zz\nsource_prefix_v6 = 0\n" TAIL,
                  {4, "source_prefix_v6", "1..128"});
    EXPECT_ERRORS("[listener l]\nbind = 127.0.0.1:2\npool = zz\nsource_table_size = 0\n" TAIL,
                  {4, "source_table_size", "1..16777216"});
    EXPECT_ERRORS("[listener l]\nbind = 127.0.0.1:2\npool = zz\nmax_conns_per_source = -1\n" TAIL,
                  {4, "max_conns_per_source", "0..1000000"});
}

/* ---- route = sni ---- */

static void test_sni_rules(void)
{
    struct config *cfg = load_ok("[listener tls]\n"            /* 1 */
                                 "bind = 127.0.0.1:8443\n"     /* 2 */
                                 "route = sni\n"               /* 3 */
                                 "sni = *.example.com web\n"   /* 4 */
                                 "sni = API.Example.com api\n" /* 5 */
                                 "sni = x.example.com. api\n"  /* 6 */
                                 "sni_default = web\n"         /* 7 */
                                 "[pool api]\nserver = a 127.0.0.1:1\n"
                                 "[pool web]\nserver = w 127.0.0.1:2\n" TAIL);
    REQUIRE(cfg != NULL);
    struct listener_conf *l = &cfg->listeners[0];
    struct pool_conf *api = config_find_pool(cfg, "api"), *web = config_find_pool(cfg, "web");
    CHECK(l->route_sni);
    CHECK(l->pool == NULL && l->pool_name == NULL);
    CHECK_EQ_INT(l->sni_timeout_ms, 5000);
    REQUIRE_EQ_INT(l->nsni_rules, 3);
    CHECK(l->sni_rules[0].wildcard && strcmp(l->sni_rules[0].host, "example.com") == 0);
    CHECK_EQ_INT(l->sni_rules[0].line, 4);
    CHECK(!l->sni_rules[1].wildcard && strcmp(l->sni_rules[1].host, "api.example.com") == 0);
    CHECK_STR(l->sni_rules[2].host, "x.example.com"); /* the trailing dot dropped */
    CHECK(l->sni_rules[1].pool == api && l->sni_default == web);
    /* Exact wins over the wildcard written before it; the wildcard takes
     * one label, no more, no less; no name or no match: the default. */
    CHECK(config_route_sni(l, "api.example.com") == api);
    CHECK(config_route_sni(l, "x.example.com") == api);
    CHECK(config_route_sni(l, "www.example.com") == web);
    CHECK(config_route_sni(l, "example.com") == web);
    CHECK(config_route_sni(l, "a.b.example.com") == web);
    CHECK(config_route_sni(l, "") == web);
    CHECK(config_route_sni(l, "other.org") == web);
    config_unref(cfg);

    /* Without sni_default nothing matches: NULL (the session's no_route). */
    cfg = load_ok("[listener tls]\nbind = 127.0.0.1:8443\nroute = sni\n"
                  "sni = *.example.com zz\nsni_timeout = 2s\n" TAIL);
    REQUIRE(cfg != NULL);
    l = &cfg->listeners[0];
    CHECK_EQ_INT(l->sni_timeout_ms, 2000);
    CHECK(config_route_sni(l, "a.example.com") == config_find_pool(cfg, "zz"));
    CHECK(config_route_sni(l, "example.com") == NULL);
    CHECK(config_route_sni(l, "a.b.example.com") == NULL);
    CHECK(config_route_sni(l, "") == NULL);
    CHECK(config_route_sni(l, "xexample.com") == NULL);
    config_unref(cfg);

    /* route = pool is the default and names the same as before. */
    cfg = load_ok("[listener l]\nbind = 127.0.0.1:2\nroute = pool\npool = zz\n" TAIL);
    REQUIRE(cfg != NULL);
    CHECK(!cfg->listeners[0].route_sni && cfg->listeners[0].pool != NULL);
    config_unref(cfg);
}

static void test_error_sni(void)
{
#define SNI_HEAD "[listener tls]\nbind = 127.0.0.1:8443\nroute = sni\n" /* lines 1-3 */
    EXPECT_ERRORS(SNI_HEAD "pool = zz\nsni = a.example zz\n" TAIL,
                  {4, "pool", "has route = sni"});
    EXPECT_ERRORS(SNI_HEAD "sni = a.example nope\nsni_default = gone\n" TAIL,
                  {4, "sni", "no [pool nope] section"}, {5, "sni_default", "no [pool gone] section"});
    EXPECT_ERRORS(SNI_HEAD "sni_timeout = 1s\n" TAIL,
                  {1, "sni", "route = sni but no sni rule or sni_default"});
    EXPECT_ERRORS(SNI_HEAD "sni = a.example zz\nsni = A.EXAMPLE zz\n" TAIL,
                  {5, "sni", "a second rule for it (first at line 4)"});
    EXPECT_ERRORS(SNI_HEAD "sni = a.example\nsni = a b c\nsni = a_b.c zz\n" TAIL,
                  {4, "sni", "expected HOST POOL"}, {5, "sni", "expected HOST POOL"});
    static const char *const bad_hosts[] = {"*", "*.", "a.*.com", "**.a", "*a.com", "a..b",
                                            ".a", "a/b", "a:443", "[::1]"};
    char text[512];
    for (size_t i = 0; i < UNIT_LEN(bad_hosts); i++) {
        snprintf(text, sizeof(text), SNI_HEAD "sni = %s zz\nsni_default = zz\n" TAIL,
                 bad_hosts[i]);
        EXPECT_ERRORS(text, {4, "sni", "is not a host name or *.NAME"});
    }
    EXPECT_ERRORS(SNI_HEAD "sni = a.example bad/pool\nsni_default = bad/pool\n" TAIL,
                  {4, "sni", "not a valid pool name"}, {5, "sni_default", "not a valid pool name"},
                  {1, "sni", "no sni rule"});
    EXPECT_ERRORS(SNI_HEAD "route = sni\nsni = a.example zz\n" TAIL,
                  {4, "route", "set twice"});
    EXPECT_ERRORS(SNI_HEAD "sni_default = zz\nsni_timeout = 0\n" TAIL,
                  {5, "sni_timeout", "at least 1ms"});
    EXPECT_ERRORS("[listener l]\nbind = 127.0.0.1:8443\nroute = tls\npool = zz\n" TAIL,
                  {3, "route", "not one of pool, sni"});
#undef SNI_HEAD
    /* Rules on a route = pool listener would be silently ignored: an error. */
    EXPECT_ERRORS("[listener l]\nbind = 127.0.0.1:2\npool = zz\nsni = a.example zz\n"
                  "sni_default = zz\n" TAIL,
                  {4, "sni", "sni rules need route = sni"},
                  {5, "sni_default", "sni_default needs route = sni"});
    /* sni belongs to listeners only. */
    EXPECT_ERRORS("[pool p]\nserver = a 127.0.0.1:1\nsni = a.example p\n" TAIL,
                  {3, "sni", "belongs in [listener NAME]"});
}

/* config_dump_edited(cfg, edit) reloaded: cfg with that one server line
 * changed, everything else as it was. */
static struct config *load_edited(const struct config *cfg, const struct config_edit *e)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (f == NULL)
        return NULL;
    config_dump_edited(cfg, f, e);
    fclose(f);
    struct config_errors errs = {0};
    struct config *out = config_load_buffer(text, len, "edited.ini", &errs);
    CHECK_MSG(out != NULL, "the edited dump does not load: %s\n%s", errs.n ? errs.msgs[0] : "?",
              text);
    config_errors_free(&errs);
    free(text);
    return out;
}

static void test_dump_edited(void)
{
    struct config *cfg = load_ok("[listener l]\nbind = 127.0.0.1:2\npool = p\n"
                                 "[pool p]\nserver = a 127.0.0.1:10 weight=3\n"
                                 "server = b 127.0.0.1:11 backup\n"
                                 "server = n name.example:12 init_addr=none\n"
                                 "[pool q]\nserver = a 127.0.0.1:20\n");
    REQUIRE(cfg != NULL);
    struct config_edit add = {
        .op = CONFIG_EDIT_ADD, .pool = "p", .value = "c [::1]:13 weight=7 max_conns=5 backup"};
    struct config *a = load_edited(cfg, &add);
    REQUIRE(a != NULL);
    REQUIRE_EQ_INT(a->pools[0].nservers, 4);
    CHECK_STR(a->pools[0].servers[3].name, "c");
    CHECK_STR(a->pools[0].servers[3].addr_str, "[::1]:13");
    CHECK_EQ_INT(a->pools[0].servers[3].weight, 7);
    CHECK_EQ_INT(a->pools[0].servers[3].max_conns, 5);
    CHECK(a->pools[0].servers[3].backup);
    CHECK_EQ_INT(a->pools[0].servers[0].weight, 3);
    CHECK_EQ_INT(a->pools[1].nservers, 1);
    config_unref(a);

    struct config_edit del = {.op = CONFIG_EDIT_DEL, .pool = "q", .server = "a"};
    struct config_edit del_p = {.op = CONFIG_EDIT_DEL, .pool = "p", .server = "a"};
    struct config *d = load_edited(cfg, &del_p);
    REQUIRE(d != NULL);
    REQUIRE_EQ_INT(d->pools[0].nservers, 2);
    CHECK_STR(d->pools[0].servers[0].name, "b");
    CHECK_EQ_INT(d->pools[1].nservers, 1); /* q/a is another server */
    config_unref(d);

    /* A pool's last server: the dump has none and the parser refuses it. */
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    REQUIRE(f != NULL);
    config_dump_edited(cfg, f, &del);
    fclose(f);
    struct config_errors errs = {0};
    CHECK(config_load_buffer(text, len, "edited.ini", &errs) == NULL);
    CHECK(errs.n == 1 && strstr(errs.msgs[0], "pool 'q' has no servers") != NULL);
    config_errors_free(&errs);
    free(text);

    /* A new address; a host name becomes a literal (its DNS options go). */
    struct config_edit addr = {
        .op = CONFIG_EDIT_ADDR, .pool = "p", .server = "n", .value = "127.0.0.1:14"};
    struct config *m = load_edited(cfg, &addr);
    REQUIRE(m != NULL);
    CHECK(m->pools[0].servers[2].host == NULL);
    CHECK_STR(m->pools[0].servers[2].addr_str, "127.0.0.1:14");
    CHECK_STR(m->pools[0].servers[0].addr_str, "127.0.0.1:10");
    config_unref(m);
    config_unref(cfg);
}

/* ---- access_log_format and syslog ---- */

static void test_access_log_keys(void)
{
    struct config *cfg = load_ok(TAIL);
    REQUIRE(cfg != NULL);
    CHECK_STR(cfg->access_log_format, "kv");
    CHECK_EQ_INT(cfg->access_fmt.kind, ACCESS_FMT_KV);
    CHECK_EQ_INT(cfg->syslog_facility, 16);
    CHECK_STR(cfg->syslog_tag, "sluice");
    config_unref(cfg);

    cfg = load_ok("[global]\naccess_log = syslog:[::1]:514\naccess_log_format = json\n"
                  "syslog_facility = LOCAL5\nsyslog_tag = edge_1\n" TAIL);
    REQUIRE(cfg != NULL);
    CHECK_STR(cfg->access_log, "syslog:[::1]:514");
    CHECK_EQ_INT(cfg->access_fmt.kind, ACCESS_FMT_JSON);
    CHECK_EQ_INT(cfg->syslog_facility, 21);
    CHECK_STR(cfg->syslog_tag, "edge_1");
    config_unref(cfg);

    /* A template, with and without the optional quotes. */
    cfg = load_ok("[global]\naccess_log_format = \" %{client} %{reason} \"\n" TAIL);
    REQUIRE(cfg != NULL);
    CHECK_STR(cfg->access_log_format, " %{client} %{reason} ");
    CHECK_EQ_INT(cfg->access_fmt.kind, ACCESS_FMT_TEMPLATE);
    CHECK_EQ_INT(cfg->access_fmt.nops, 5);
    config_unref(cfg);
    cfg = load_ok("[global]\naccess_log_format = %{up}%%\n" TAIL);
    REQUIRE(cfg != NULL);
    CHECK_STR(cfg->access_log_format, "%{up}%%");
    config_unref(cfg);

    static const char *const logs[] = {"syslog:/dev/log", "syslog:unix:/run/x.sock",
                                       "syslog:127.0.0.1:514"};
    char text[512];
    for (size_t i = 0; i < UNIT_LEN(logs); i++) {
        snprintf(text, sizeof(text), "[global]\naccess_log = %s\n" TAIL, logs[i]);
        cfg = load_ok(text);
        if (cfg != NULL)
            CHECK_STR(cfg->access_log, logs[i]);
        config_unref(cfg);
    }

    EXPECT_ERRORS("[global]\naccess_log_format = %{client} %{nope}\n" TAIL,
                  {2, "access_log_format", "column 11: unknown field 'nope'"});
    EXPECT_ERRORS("[global]\naccess_log_format = JSON\n" TAIL,
                  {2, "access_log_format", "is not kv, json or a template"});
    EXPECT_ERRORS("[global]\naccess_log_format = kv\naccess_log_format = json\n" TAIL,
                  {3, "access_log_format", "set twice"});
    EXPECT_ERRORS("[global]\naccess_log = syslog:example.com:514\n" TAIL,
                  {2, "access_log", "not an IP address"});
    EXPECT_ERRORS("[global]\naccess_log = syslog:\n" TAIL, {2, "access_log", "expected syslog:"});
    EXPECT_ERRORS("[global]\nsyslog_facility = local8\n" TAIL,
                  {2, "syslog_facility", "'local8' is not a facility"});
    EXPECT_ERRORS("[global]\nsyslog_tag = a\x01b\n" TAIL, {2, "syslog_tag", "printable ASCII"});
    EXPECT_ERRORS("[global]\nsyslog_tag = 0123456789012345678901234567890123456789012345678\n" TAIL,
                  {2, "syslog_tag", "1 to 48"});
    EXPECT_ERRORS("[listener l]\nbind = 127.0.0.1:2\npool = zz\naccess_log_format = json\n" TAIL,
                  {4, "access_log_format", NULL});
}

/* relay = copy | splice | uring; uring only where liburing was built in,
 * else a located error saying so. */
static void test_relay_modes(void)
{
    const char *words[] = {"copy", "splice", "uring"};
    for (int k = 0; k < 3; k++) {
        char text[512];
        snprintf(text, sizeof(text),
                 "[listener l]\nbind = 127.0.0.1:1\npool = p\nrelay = %s\n"
                 "[pool p]\nserver = a 127.0.0.1:2\n",
                 words[k]);
        if (k == 2 && !uring_compiled()) {
            EXPECT_ERRORS(text, {4, "relay", "built without io_uring support"});
            continue;
        }
        struct config *cfg = load_ok(text);
        if (cfg == NULL)
            continue;
        CHECK(cfg->listeners[0].splice == (k == 1));
        CHECK(cfg->listeners[0].uring == (k == 2));
        config_unref(cfg);
    }
    EXPECT_ERRORS("[listener l]\nbind = 127.0.0.1:1\npool = p\nrelay = sockets\n"
                  "[pool p]\nserver = a 127.0.0.1:2\n",
                  {4, "relay", "copy, splice"});
}

UNIT_MAIN(TEST(test_defaults), TEST(test_identity), TEST(test_every_key_set), TEST(test_words),
          TEST(test_workers), TEST(test_numbers), TEST(test_durations), TEST(test_queue_keys),
          TEST(test_sizes), TEST(test_keys_in_progress), TEST(test_admin_http_vs_bind),
          TEST(test_error_sections), TEST(test_error_keys), TEST(test_resolve_templates),
          TEST(test_error_servers), TEST(test_error_listeners),
          TEST(test_error_bind_in_two_listeners), TEST(test_error_pools),
          TEST(test_error_max_buffer), TEST(test_error_no_listener), TEST(test_error_long_lines),
          TEST(test_error_syntax), TEST(test_error_all_reported),
          TEST(test_error_two_syntax_errors), TEST(test_file_syntax), TEST(test_file_bom),
          TEST(test_load_file), TEST(test_registry_counts), TEST(test_registry_direct),
          TEST(test_inline_comments), TEST(test_key_hints), TEST(test_error_order_and_values),
          TEST(test_unreadable_paths), TEST(test_unix_binds), TEST(test_keepalive),
          TEST(test_dump_round_trip), TEST(test_source_limits),
          TEST(test_error_source_limits), TEST(test_sni_rules), TEST(test_error_sni),
          TEST(test_dump_edited), TEST(test_access_log_keys), TEST(test_relay_modes))
