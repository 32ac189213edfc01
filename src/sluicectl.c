/* sluicectl.c - command-line client for the admin socket: sends one
 * command, prints the reply, exits 1 if the reply is an error. The socket
 * is given with -s, or found in a config file with -c. */
#include "sluice/config.h"

#include <errno.h>
#include <getopt.h>
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
                 "  -s, --socket SOCKET  admin socket (default " DEFAULT_SOCKET ")\n"
                 "  -c, --config FILE    use the admin_socket of this sluice config file\n"
                 "  -V, --version        print the version and exit\n"
                 "  -h, --help           print this help and exit\n"
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

    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path)) {
        fprintf(stderr, "sluicectl: socket path too long\n");
        return 2;
    }
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        fprintf(stderr, "sluicectl: %s: %s\n", path, strerror(errno));
        return 1;
    }
    if (write(fd, cmd, len) != (ssize_t)len) {
        fprintf(stderr, "sluicectl: write: %s\n", strerror(errno));
        return 1;
    }
    /* Read until the reply's closing empty line ("\n\n") or EOF. */
    size_t cap = 65536, got = 0;
    char *buf = malloc(cap);
    if (buf == NULL)
        return 1;
    for (;;) {
        if (got >= 2 && buf[got - 1] == '\n' && buf[got - 2] == '\n')
            break;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int pr = poll(&p, 1, REPLY_TIMEOUT_MS);
        if (pr == 0) {
            fprintf(stderr, "sluicectl: no reply within %ds\n", REPLY_TIMEOUT_MS / 1000);
            return 1;
        }
        if (got + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (nb == NULL)
                return 1;
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
    fwrite(buf, 1, got, stdout);
    buf[got] = '\0';
    int failed = reply_failed(buf, got);
    free(buf);
    free(from_config);
    return failed ? 1 : 0;
}
