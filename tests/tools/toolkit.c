/* toolkit.c - what the test tools share (toolkit.h). */
#include "toolkit.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

/* "NAME: MESSAGE" + tail on stderr. */
__attribute__((format(printf, 2, 0))) static void vsay(const char *tail, const char *fmt,
                                                       va_list ap)
{
    fprintf(stderr, "%s: ", tool_name);
    vfprintf(stderr, fmt, ap);
    fputs(tail, stderr);
}

void note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsay("\n", fmt, ap);
    va_end(ap);
}

void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsay("\n", fmt, ap);
    va_end(ap);
    exit(1);
}

void usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsay(tool_usage_hint, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(2);
}

int tool_getopt(int argc, char **argv, const char *shortopts, const struct option *longopts,
                void (*usage)(FILE *out))
{
    int opt = getopt_long(argc, argv, shortopts, longopts, NULL);
    if (opt == 'h') {
        usage(stdout);
        exit(0);
    }
    if (opt == '?' || opt == ':') {
        usage(stderr);
        exit(2);
    }
    if (opt == -1 && optind < argc)
        usage_error("unexpected argument '%s'", argv[optind]);
    return opt;
}

uint64_t parse_u64(const char *opt, const char *s, uint64_t min, uint64_t max)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*s < '0' || *s > '9' || *end != '\0' || errno != 0 || v < min || v > max)
        usage_error("%s: expected an integer in [%" PRIu64 ", %" PRIu64 "], got '%s'", opt, min,
                    max, s);
    return (uint64_t)v;
}

double parse_num(const char *opt, const char *s, double min, double max)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= min && v <= max))
        usage_error("%s: expected a number in [%g, %g], got '%s'", opt, min, max, s);
    return v;
}

int tool_epoll_wait(int ep, struct epoll_event *evs, int max, int timeout_ms)
{
    int n = epoll_wait(ep, evs, max, timeout_ms);
    if (n < 0 && errno != EINTR)
        die("epoll_wait: %s", strerror(errno));
    return n < 0 ? 0 : n;
}

int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * S_NS + ts.tv_nsec;
}

void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int sock_error(int fd)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return errno;
    return err;
}

void sock_set_rst(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}
