/* sluicectl.c - command-line client for the admin socket: sends one
 * command, prints the reply, exits 1 if the reply is an error. The socket
 * is given with -s, or found in a config file with -c. `sluicectl top`
 * is a live view built from `show stats json` samples (top.c). */
#include "sluice/config.h"
#include "sluice/strbuf.h"
#include "sluice/top.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define DEFAULT_SOCKET "/run/sluice/admin.sock"
#define REPLY_TIMEOUT_MS 30000

static void usage(FILE *out)
{
    fprintf(out, "usage: sluicectl [-s SOCKET | -c FILE] COMMAND [ARG...]\n"
                 "       sluicectl [-s SOCKET | -c FILE] top [-d SECONDS] [--once] [--sort KEY]\n"
                 "  -s, --socket SOCKET  admin socket (default " DEFAULT_SOCKET ")\n"
                 "  -c, --config FILE    use the admin_socket of this sluice config file\n"
                 "  -V, --version        print the version and exit\n"
                 "  -h, --help           print this help and exit\n"
                 "  top: live view of listeners and servers; -d/--interval SECONDS between\n"
                 "       samples (default 1), --once prints one plain frame (rates over one\n"
                 "       interval), --sort sessions|new|bytes|errors|p99|name\n"
                 "  try: sluicectl help\n"
                 "  sluicectl reload --dry-run: what a reload would change, applying nothing\n"
                 "exit status: 0 ok, 1 the command failed or sluice is unreachable,\n"
                 "2 usage error\n");
}

/* The admin socket named by a config file (the unit's ExecReload and the
 * logrotate snippet find sluice this way). Exits with 1 on a broken file
 * or one without an admin socket. */
static char *socket_from_config(const char *file)
{
    struct config *cfg = config_load_reporting(file, "sluicectl");
    if (cfg == NULL)
        exit(1);
    if (cfg->admin_socket == NULL) {
        fprintf(stderr,
                "sluicectl: %s has no admin socket ([global] admin_socket is off): set one to "
                "use sluicectl, or signal sluice (HUP reload, USR1 reopen)\n",
                file);
        config_unref(cfg);
        exit(1);
    }
    char *path = strdup(cfg->admin_socket);
    config_unref(cfg);
    if (path == NULL)
        exit(1);
    return path;
}

/* The word sent for argument i: `reload --dry-run` (or -n) is the admin
 * command `reload dry-run`; everything else goes as typed. */
static const char *command_word(char **argv, int first, int i)
{
    if (i == first + 1 && strcmp(argv[first], "reload") == 0 &&
        (strcmp(argv[i], "--dry-run") == 0 || strcmp(argv[i], "-n") == 0))
        return "dry-run";
    return argv[i];
}

/* Whether the reply says the command failed. */
static bool reply_failed(const char *buf, size_t got)
{
    static const char *const verdicts[] = {"reload failed", "reload dry-run failed"};
    if (got >= 6 && strncmp(buf, "error:", 6) == 0)
        return true;
    for (size_t i = 0; i < sizeof(verdicts) / sizeof(verdicts[0]); i++) {
        char line[64];
        snprintf(line, sizeof(line), "\n%s", verdicts[i]);
        if (strncmp(buf, verdicts[i], strlen(verdicts[i])) == 0 || strstr(buf, line) != NULL)
            return true;
    }
    return false;
}

/* Send cmd (ending in "\n") and read the reply until its closing empty
 * line ("\n\n") or EOF, into *bufp (NUL-terminated, *gotp bytes, the
 * protocol's empty line dropped). 0 ok; 1 with a message in err
 * (unreachable, no reply); 2 the socket path is too long. */
static int ctl_request(const char *path, const char *cmd, size_t len, char **bufp, size_t *gotp,
                       char *err, size_t errlen)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path)) {
        snprintf(err, errlen, "socket path too long");
        return 2;
    }
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return 1;
    }
    if (write(fd, cmd, len) != (ssize_t)len) {
        snprintf(err, errlen, "write: %s", strerror(errno));
        close(fd);
        return 1;
    }
    size_t cap = 65536, got = 0;
    char *buf = malloc(cap);
    if (buf == NULL) {
        snprintf(err, errlen, "out of memory");
        close(fd);
        return 1;
    }
    for (;;) {
        if (got >= 2 && buf[got - 1] == '\n' && buf[got - 2] == '\n')
            break;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int pr = poll(&p, 1, REPLY_TIMEOUT_MS);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr == 0) {
            snprintf(err, errlen, "no reply within %ds", REPLY_TIMEOUT_MS / 1000);
            free(buf);
            close(fd);
            return 1;
        }
        if (got + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (nb == NULL) {
                snprintf(err, errlen, "out of memory");
                free(buf);
                close(fd);
                return 1;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t n = read(fd, buf + got, cap - got - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    if (got >= 1 && buf[got - 1] == '\n')
        got--; /* drop the protocol's empty line, keep the reply's own \n */
    buf[got] = '\0';
    *bufp = buf;
    *gotp = got;
    return 0;
}

/* top's fetch: one `show stats json` on a fresh connection. */
static bool top_fetch(void *ctx, struct strbuf *out, char *err, size_t errlen)
{
    static const char cmd[] = "show stats json\n";
    char *buf;
    size_t got;
    if (ctl_request(ctx, cmd, sizeof(cmd) - 1, &buf, &got, err, errlen) != 0)
        return false;
    if (strncmp(buf, "error:", 6) == 0) {
        snprintf(err, errlen, "%.*s", (int)strcspn(buf, "\n"), buf);
        free(buf);
        return false;
    }
    strbuf_append(out, buf, got);
    free(buf);
    return true;
}

static int sort_by_name(const char *s)
{
    for (int k = 0; k < TOP_SORT_COUNT; k++) {
        const char *n = top_sort_str((enum top_sort)k);
        if (strcmp(s, n) == 0 || (strncmp(s, n, strlen(s)) == 0 && s[0] != '\0'))
            return k;
    }
    return -1;
}

/* sluicectl top [-d SECONDS] [--once] [--sort KEY] */
static int cmd_top(const char *path, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"interval", required_argument, NULL, 'd'},
        {"once", no_argument, NULL, 'o'},
        {"sort", required_argument, NULL, 'S'},
        {NULL, 0, NULL, 0},
    };
    struct top_opts o = {
        .interval = 1.0, .sort = TOP_SORT_SESSIONS, .fetch = top_fetch, .ctx = (void *)path};
    optind = 1;
    int opt;
    while ((opt = getopt_long(argc, argv, "d:", longopts, NULL)) != -1) {
        switch (opt) {
        case 'd': {
            char *end;
            errno = 0;
            double d = strtod(optarg, &end);
            if (errno != 0 || end == optarg || *end != '\0' || !isfinite(d) || d < 0.1 ||
                d > 3600) {
                fprintf(stderr, "sluicectl: top: -d wants seconds, 0.1..3600, not '%s'\n", optarg);
                return 2;
            }
            o.interval = d;
            break;
        }
        case 'o':
            o.once = true;
            break;
        case 'S': {
            int k = sort_by_name(optarg);
            if (k < 0) {
                fprintf(stderr,
                        "sluicectl: top: --sort wants sessions, new, bytes, errors, p99 "
                        "or name, not '%s'\n",
                        optarg);
                return 2;
            }
            o.sort = (enum top_sort)k;
            break;
        }
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "sluicectl: top: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    return top_run(&o);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"socket", required_argument, NULL, 's'}, {"config", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},         {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    const char *path = DEFAULT_SOCKET;
    const char *config = NULL;
    bool socket_given = false;
    int opt;
    while ((opt = getopt_long(argc, argv, "+s:c:hV", longopts, NULL)) != -1) {
        switch (opt) {
        case 's':
            path = optarg;
            socket_given = true;
            break;
        case 'c':
            config = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("sluicectl %s\n", SLUICE_VERSION);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (socket_given && config != NULL) {
        fprintf(stderr, "sluicectl: -s and -c both name the socket: give one\n");
        return 2;
    }
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    char *from_config = config ? socket_from_config(config) : NULL;
    if (from_config != NULL)
        path = from_config;
    if (strcmp(argv[optind], "top") == 0) {
        int rc = cmd_top(path, argc - optind, argv + optind);
        free(from_config);
        return rc;
    }
    char cmd[4096];
    size_t len = 0;
    for (int i = optind; i < argc; i++) {
        int n = snprintf(cmd + len, sizeof(cmd) - len, "%s%s", i > optind ? " " : "",
                         command_word(argv, optind, i));
        if (n < 0 || (size_t)n >= sizeof(cmd) - len - 1) {
            fprintf(stderr, "sluicectl: command too long\n");
            return 2;
        }
        len += (size_t)n;
    }
    cmd[len++] = '\n';

    char *buf, err[512];
    size_t got;
    int rc = ctl_request(path, cmd, len, &buf, &got, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "sluicectl: %s\n", err);
        free(from_config);
        return rc;
    }
    fwrite(buf, 1, got, stdout);
    int failed = reply_failed(buf, got);
    free(buf);
    free(from_config);
    return failed ? 1 : 0;
}
