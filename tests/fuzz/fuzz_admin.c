/* fuzz_admin.c - libFuzzer target: any bytes as admin command lines.
 *
 * The input is split on '\n' and each line goes through admin_execute()
 * against one control block set up once: a config with two listeners and
 * two pools of two servers each, runtime attached, no workers (nworkers =
 * nslots = 0), the default loop. Commands that need workers (show
 * sessions) must fail cleanly; `reload` is skipped because it would rebind
 * sockets. Server state (disable, drain, weight) persists across inputs,
 * as it would on a live admin socket.
 *
 * Checked for every line: admin_execute completes synchronously (no done
 * callback was given), the reply is non-empty and ends with '\n', an
 * unknown command is answered with "error: ...", and `help` with the list. */
#include "sluice/admin.h"
#include "sluice/config.h"
#include "sluice/control.h"
#include "sluice/log.h"
#include "sluice/strbuf.h"

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* admin_execute copies a line into a buffer of this size (ADMIN_LINE_MAX). */
#define LINE_MAX_BYTES 4096

static const char fixed_ini[] = "[global]\n"
                                "workers = 2\n"
                                "max_conns = 1000\n"
                                "[listener web]\n"
                                "bind = 127.0.0.1:18080\n"
                                "pool = web\n"
                                "[listener db]\n"
                                "bind = [::1]:15432\n"
                                "bind = *:15433\n"
                                "pool = db\n"
                                "relay = splice\n"
                                "accept_proxy = on\n"
                                "[pool web]\n"
                                "balance = roundrobin\n"
                                "send_proxy = v2\n"
                                "server = app1 127.0.0.1:9001 weight=3\n"
                                "server = app2 127.0.0.1:9002 backup\n"
                                "[pool db]\n"
                                "balance = leastconn\n"
                                "server = primary unix:/tmp/sluice-fuzz-db.sock max_conns=10\n"
                                "server = replica [::1]:5433 weight=0\n"
                                "check = send-expect\n"
                                "check_send = PING\\r\\n\n"
                                "check_expect = +PONG\n";

static struct control ctl;
static struct admin_ops ops; /* the control module's, on ctl */
static char config_path[] = "/tmp/sluice-fuzz-admin-XXXXXX";

static void remove_config(void)
{
    unlink(config_path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    log_current_level = LOG_ERROR; /* admin commands log at info: keep stderr for reports */

    int fd = mkstemp(config_path);
    if (fd < 0 || write(fd, fixed_ini, sizeof(fixed_ini) - 1) != (ssize_t)(sizeof(fixed_ini) - 1)) {
        perror("fuzz_admin: temp config");
        abort();
    }
    close(fd);
    atexit(remove_config);

    struct config_errors errs = {0};
    struct config *cfg = config_load_buffer(fixed_ini, sizeof(fixed_ini) - 1, config_path, &errs);
    if (cfg == NULL || config_attach_runtime(cfg) != 0) {
        config_errors_print(&errs, stderr);
        fprintf(stderr, "fuzz_admin: the fixed config does not load\n");
        abort();
    }
    config_errors_free(&errs);

    ctl.loop = ev_default_loop(0);
    ctl.cfg = cfg;
    ctl.config_path = config_path;
    ctl.nworkers = 0;
    ctl.nslots = 0;
    ctl.started = ev_time();
    ctl.generation = 1;
    atomic_init(&ctl.limits.max_conns, cfg->max_conns);
    pthread_mutex_init(&ctl.fanout_lock, NULL);
    control_admin_ops(&ctl, &ops);
    return 0;
}

/* The first word of line as admin_execute sees it (it truncates the line
 * to LINE_MAX_BYTES - 1 and splits on " \t\r"); "" if there is none. */
static void first_word(const char *line, char *word, size_t size)
{
    size_t n = strnlen(line, LINE_MAX_BYTES - 1);
    size_t i = 0;
    while (i < n && strchr(" \t\r", line[i]) != NULL)
        i++;
    size_t w = 0;
    while (i < n && strchr(" \t\r", line[i]) == NULL && w + 1 < size)
        word[w++] = line[i++];
    word[w] = '\0';
}

static void fail(const char *line, const struct strbuf *reply, const char *why)
{
    fprintf(stderr, "fuzz_admin: %s\nline: '%s'\nreply (%zu bytes): '%.*s'\n", why, line,
            reply->len, (int)reply->len, reply->data ? reply->data : "");
    abort();
}

static void run_line(const char *line, struct strbuf *reply)
{
    char word[LINE_MAX_BYTES];
    first_word(line, word, sizeof(word));
    if (strcmp(word, "reload") == 0)
        return; /* would re-read config_path and rebind listening sockets */

    strbuf_free(reply);
    strbuf_init(reply);
    int complete = admin_execute(&ops, line, reply, NULL, NULL);
    if (complete != 1)
        fail(line, reply, "admin_execute deferred a reply without a done callback");
    if (reply->oom)
        return; /* truncated by a failed allocation: nothing more to check */
    if (reply->len == 0 || reply->data == NULL)
        fail(line, reply, "empty reply");
    if (reply->data[reply->len - 1] != '\n')
        fail(line, reply, "reply does not end with a newline");
    if (memchr(reply->data, '\0', reply->len) != NULL)
        fail(line, reply, "reply holds a NUL byte");

    static const char *const known[] = {"help", "show", "disable", "drain", "enable", "set",
                                        "reopen"};
    bool is_known = false;
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        is_known |= strcmp(word, known[i]) == 0;
    if (!is_known && strncmp(reply->data, "error:", 6) != 0)
        fail(line, reply, "unknown command not answered with error:");
    if (strcmp(word, "help") == 0 && strncmp(reply->data, "commands:", 9) != 0 &&
        strncmp(reply->data, "error:", 6) != 0)
        fail(line, reply, "help answered with neither the list nor an error");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';

    struct strbuf reply;
    strbuf_init(&reply);
    /* strtok_r would merge empty lines; walk them by hand so "" runs too. */
    for (char *line = text; line != NULL;) {
        char *nl = memchr(line, '\n', size - (size_t)(line - text));
        if (nl != NULL)
            *nl = '\0';
        run_line(line, &reply);
        line = nl ? nl + 1 : NULL;
    }
    strbuf_free(&reply);
    free(text);
    return 0;
}
