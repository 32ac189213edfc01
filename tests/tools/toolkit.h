/* toolkit.h - what the test tools (faultrelay, floodgen) share: messages,
 * the command line, the clock and a few socket calls. Plain libc, like the
 * tools: no code of sluice's. */
#ifndef TOOLKIT_H
#define TOOLKIT_H

#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/epoll.h>

#define MS_NS INT64_C(1000000)
#define S_NS INT64_C(1000000000)

/* Each tool defines these: its name, which starts every message on stderr
 * ("NAME: ..."), and what follows a usage error's message (" (see --help)"). */
extern const char tool_name[];
extern const char tool_usage_hint[];

/* "NAME: MESSAGE" and a newline on stderr. */
__attribute__((format(printf, 1, 2))) void note(const char *fmt, ...);
/* note(), then exit 1. */
__attribute__((format(printf, 1, 2), noreturn)) void die(const char *fmt, ...);
/* "NAME: MESSAGE" and tool_usage_hint on stderr, then exit 2. */
__attribute__((format(printf, 1, 2), noreturn)) void usage_error(const char *fmt, ...);

/* getopt_long(), with -h/--help (opt 'h': usage(stdout), exit 0) and an
 * unknown option (usage(stderr), exit 2) handled; at the end (-1) a
 * non-option argument left is a usage error. */
int tool_getopt(int argc, char **argv, const char *shortopts, const struct option *longopts,
                void (*usage)(FILE *out));
/* opt's value s: a decimal integer in [min, max], else a usage error. */
uint64_t parse_u64(const char *opt, const char *s, uint64_t min, uint64_t max);
/* opt's value s: a number (decimals allowed) in [min, max], else a usage
 * error. */
double parse_num(const char *opt, const char *s, double min, double max);

/* epoll_wait(): the number of events, 0 when a signal interrupted it;
 * dies on any other failure. */
int tool_epoll_wait(int ep, struct epoll_event *evs, int max, int timeout_ms);
/* CLOCK_MONOTONIC in nanoseconds. */
int64_t now_ns(void);
/* The soft limit on open files up to the hard one (best effort). */
void raise_nofile(void);
/* A socket's pending error (SO_ERROR), or the errno of asking for it. */
int sock_error(int fd);
/* SO_LINGER 0: close() then sends a reset, not a FIN, and leaves no
 * TIME_WAIT (best effort). */
void sock_set_rst(int fd);

#endif
