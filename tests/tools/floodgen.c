/* floodgen.c - connection-flood and keep-alive load generator, and the echo
 * backend they talk to, for the flood benchmark (scripts/bench --workloads
 * flood) and its self-test.
 *
 * Three roles, one per process:
 *
 *   echo     an echo server (the backend behind the proxy under test)
 *   flood    N new TCP connections per second from ONE source address (or,
 *            with --source-count K, from K addresses in turn): each
 *            is a non-blocking connect, optionally a small request whose
 *            echo is awaited, then a close with RST (SO_LINGER 0) so that
 *            the client side piles up no TIME_WAIT
 *   clients  COUNT well-behaved sources, each bound to its own address
 *            (SOURCE, SOURCE+1, ...), each with one keep-alive connection
 *            doing request/response in a closed loop; latency histogram
 *
 * Every role is bounded: flood and clients stop after --seconds, echo after
 * --max-seconds (or SIGTERM/SIGINT). flood and clients print one JSON line
 * on stdout at the end; echo prints one when it stops. One thread,
 * level-triggered epoll and plain libc: the tool must not share code (or
 * bugs) with what it measures.
 */
#include "toolkit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define MAX_EVENTS 512
#define ECHO_BUF 4096
#define MAX_REQUEST 4096
/* Flood: connects started per loop turn at most (a late loop catches up in
 * bursts of this size, not all at once). */
#define FLOOD_BURST 256
/* Latency histogram: values below 2^SUB_BITS+1 ns exactly, above that
 * 2^SUB_BITS buckets per power of two (relative error below 1/64). */
#define SUB_BITS 6
#define SUB (1 << SUB_BITS)
#define HIST_BUCKETS (2 * SUB + (64 - SUB_BITS - 1) * SUB)

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
    stop_signal = sig;
}

const char tool_name[] = "floodgen";
const char tool_usage_hint[] = " (try floodgen --help)";

static void usage(FILE *out)
{
    fputs("usage: floodgen echo -l HOST:PORT [--max-seconds N]\n"
          "       floodgen flood -c HOST:PORT --source ADDR --rate N --seconds S [options]\n"
          "       floodgen clients -c HOST:PORT --source ADDR --count N --seconds S [options]\n"
          "\n"
          "  -l HOST:PORT          echo: listen here (port 0: any; the port is printed)\n"
          "  -c HOST:PORT          flood, clients: connect here\n"
          "  --source ADDR         local address to bind (clients: the first of --count)\n"
          "  --source-count K      flood: use K addresses from --source upwards, in turn\n"
          "                        (default 1: one source)\n"
          "  --rate N              flood: new connections per second (default 20000)\n"
          "  --request BYTES       flood: send BYTES after connect and wait for their echo\n"
          "                        before closing (default 0: close at once)\n"
          "  --inflight N          flood: connections in progress at most (default 4096)\n"
          "  --timeout-ms N        flood: give up a connection after N ms (default 1000)\n"
          "  --count N             clients: number of sources/connections (default 50)\n"
          "  --size BYTES          clients: request (= response) size (default 64)\n"
          "  --warmup S            clients: seconds not measured at the start (default 0)\n"
          "  --seconds S           flood, clients: run time, decimals allowed\n"
          "  --max-seconds N       hard bound on the run time (default: seconds + 30;\n"
          "                        echo: 600)\n"
          "\n"
          "flood and clients print one JSON line on stdout when they finish.\n",
          out);
}

/* ------------------------------------------------------------ addresses */

struct addr {
    struct sockaddr_storage ss;
    socklen_t len;
};

/* "HOST:PORT" or "[V6]:PORT"; numeric only. NULL on success. */
static const char *addr_parse(const char *s, bool want_port, struct addr *a)
{
    char host[INET6_ADDRSTRLEN + 2];
    const char *port = NULL;
    size_t hl;
    memset(a, 0, sizeof(*a));
    if (s[0] == '[') {
        const char *e = strchr(s, ']');
        if (!e)
            return "missing ']'";
        hl = (size_t)(e - s - 1);
        if (hl >= sizeof(host))
            return "address too long";
        memcpy(host, s + 1, hl);
        host[hl] = '\0';
        if (e[1] == ':')
            port = e + 2;
        else if (e[1] != '\0')
            return "junk after ']'";
    } else {
        const char *c = strrchr(s, ':');
        if (c && strchr(s, ':') == c) { /* one colon: v4:port */
            hl = (size_t)(c - s);
            port = c + 1;
        } else {
            hl = strlen(s); /* no colon (v4) or several (bare v6) */
        }
        if (hl >= sizeof(host))
            return "address too long";
        memcpy(host, s, hl);
        host[hl] = '\0';
    }
    unsigned long p = 0;
    if (want_port) {
        char *end;
        if (!port || !*port)
            return "expected HOST:PORT";
        errno = 0;
        p = strtoul(port, &end, 10);
        if (errno || *end || p > 65535)
            return "bad port";
    } else if (port) {
        return "expected an address without a port";
    }
    struct sockaddr_in *v4 = (struct sockaddr_in *)&a->ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&a->ss;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)p);
        a->len = sizeof(*v4);
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)p);
        a->len = sizeof(*v6);
    } else {
        return "not a numeric IPv4 or IPv6 address";
    }
    return NULL;
}

/* a + k: the address k after a (the low 32 bits; no port). */
static struct addr addr_add(const struct addr *a, uint32_t k)
{
    struct addr r = *a;
    uint32_t x;
    if (r.ss.ss_family == AF_INET) {
        struct sockaddr_in *v4 = (struct sockaddr_in *)&r.ss;
        x = ntohl(v4->sin_addr.s_addr) + k;
        v4->sin_addr.s_addr = htonl(x);
    } else {
        struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&r.ss;
        memcpy(&x, &v6->sin6_addr.s6_addr[12], 4);
        x = htonl(ntohl(x) + k);
        memcpy(&v6->sin6_addr.s6_addr[12], &x, 4);
    }
    return r;
}

static const char *addr_str(const struct addr *a, char *buf, size_t n)
{
    const void *p = a->ss.ss_family == AF_INET
                        ? (const void *)&((const struct sockaddr_in *)&a->ss)->sin_addr
                        : (const void *)&((const struct sockaddr_in6 *)&a->ss)->sin6_addr;
    if (!inet_ntop(a->ss.ss_family, p, buf, (socklen_t)n))
        snprintf(buf, n, "?");
    return buf;
}

static int addr_port(const struct addr *a)
{
    return ntohs(a->ss.ss_family == AF_INET ? ((const struct sockaddr_in *)&a->ss)->sin_port
                                            : ((const struct sockaddr_in6 *)&a->ss)->sin6_port);
}

/* ---------------------------------------------------------------- misc */

/* A non-blocking socket bound to src (port chosen at connect time), connect
 * started. Returns the fd (connect in progress or done) or -errno. */
static int start_connect(const struct addr *src, const struct addr *dst, bool rst)
{
    int fd = socket(dst->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    if (src) {
        /* The port is picked by connect() for the 4-tuple, not by bind()
         * for the address alone: the whole ephemeral range per target. */
        if (src->ss.ss_family == AF_INET)
            setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        if (bind(fd, (const struct sockaddr *)&src->ss, src->len) < 0) {
            int e = errno;
            close(fd);
            return -e;
        }
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (rst)
        sock_set_rst(fd);
    if (connect(fd, (const struct sockaddr *)&dst->ss, dst->len) < 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

static int epoll_new(void)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1: %s", strerror(errno));
    return ep;
}

static void ep_ctl(int ep, int op, int fd, uint32_t events, void *ptr)
{
    struct epoll_event ev = {.events = events, .data.ptr = ptr};
    if (epoll_ctl(ep, op, fd, &ev) < 0 && op != EPOLL_CTL_DEL)
        die("epoll_ctl: %s", strerror(errno));
}

static void fill_pattern(char *buf, size_t n, uint64_t seq)
{
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)('a' + (seq + i) % 26);
}

/* ---------------------------------------------------------- histogram */

static unsigned hist_index(uint64_t v)
{
    if (v < 2 * SUB)
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v); /* >= SUB_BITS + 1 */
    unsigned shift = e - SUB_BITS;
    return 2 * SUB + (e - SUB_BITS - 1) * SUB + (unsigned)((v >> shift) - SUB);
}

/* The middle of bucket i's value range. */
static uint64_t hist_value(unsigned i)
{
    if (i < 2 * SUB)
        return i;
    unsigned k = i - 2 * SUB;
    unsigned shift = k / SUB + 1;
    uint64_t lo = ((uint64_t)(k % SUB) + SUB) << shift;
    return lo + ((UINT64_C(1) << shift) >> 1);
}

static uint64_t hist_percentile(const uint64_t *h, uint64_t total, double pct)
{
    if (!total)
        return 0;
    uint64_t want = (uint64_t)((double)total * pct / 100.0 + 0.999999);
    if (want < 1)
        want = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h[i];
        if (seen >= want)
            return hist_value(i);
    }
    return hist_value(HIST_BUCKETS - 1);
}

/* ---------------------------------------------------------------- echo */

enum kind { K_LISTEN, K_CONN };

struct echo_conn {
    enum kind kind;
    int fd;
    struct echo_conn *prev, *next; /* all open connections, freed at exit */
    size_t off, len;               /* pending bytes buf[off, off + len) not yet written */
    char buf[ECHO_BUF];
};

static int run_echo(const struct addr *listen_at, int64_t max_ns)
{
    int lfd = socket(listen_at->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (lfd < 0)
        die("socket: %s", strerror(errno));
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(lfd, (const struct sockaddr *)&listen_at->ss, listen_at->len) < 0)
        die("bind: %s", strerror(errno));
    if (listen(lfd, 4096) < 0)
        die("listen: %s", strerror(errno));
    struct addr bound = {.len = sizeof(bound.ss)};
    getsockname(lfd, (struct sockaddr *)&bound.ss, &bound.len);
    char hs[INET6_ADDRSTRLEN];
    printf("{\"role\":\"echo\",\"listening\":\"%s\",\"port\":%d}\n",
           addr_str(&bound, hs, sizeof(hs)), addr_port(&bound));
    fflush(stdout);

    int ep = epoll_new();
    static const enum kind listen_tag = K_LISTEN;
    ep_ctl(ep, EPOLL_CTL_ADD, lfd, EPOLLIN, (void *)&listen_tag);
    uint64_t accepted = 0, bytes = 0, accept_fail = 0;
    int64_t t0 = now_ns(), accept_paused_until = 0;
    struct echo_conn *conns = NULL;
    struct epoll_event evs[MAX_EVENTS];
    while (!stop_signal) {
        int64_t t = now_ns();
        if (t - t0 >= max_ns) {
            fprintf(stderr, "floodgen: echo: --max-seconds reached, exiting\n");
            break;
        }
        if (accept_paused_until && t >= accept_paused_until) {
            accept_paused_until = 0;
            ep_ctl(ep, EPOLL_CTL_ADD, lfd, EPOLLIN, (void *)&listen_tag);
        }
        int n = tool_epoll_wait(ep, evs, MAX_EVENTS, 100);
        for (int i = 0; i < n; i++) {
            if (*(enum kind *)evs[i].data.ptr == K_LISTEN) {
                for (int k = 0; k < 256; k++) {
                    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (fd < 0) {
                        if (errno == EMFILE || errno == ENFILE || errno == ENOMEM ||
                            errno == ENOBUFS) {
                            accept_fail++;
                            epoll_ctl(ep, EPOLL_CTL_DEL, lfd, NULL);
                            accept_paused_until = now_ns() + 10 * MS_NS;
                        }
                        break;
                    }
                    struct echo_conn *c = malloc(sizeof(*c));
                    if (!c) {
                        close(fd);
                        accept_fail++;
                        continue;
                    }
                    c->kind = K_CONN;
                    c->fd = fd;
                    c->off = c->len = 0;
                    c->prev = NULL;
                    c->next = conns;
                    if (conns)
                        conns->prev = c;
                    conns = c;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                    ep_ctl(ep, EPOLL_CTL_ADD, fd, EPOLLIN, c);
                    accepted++;
                }
                continue;
            }
            struct echo_conn *c = evs[i].data.ptr;
            bool dead = false;
            if (c->len == 0) {
                ssize_t r = read(c->fd, c->buf, sizeof(c->buf));
                if (r > 0) {
                    c->off = 0;
                    c->len = (size_t)r;
                    bytes += (uint64_t)r;
                } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
                    dead = true;
                }
            }
            if (!dead && c->len) {
                ssize_t w = write(c->fd, c->buf + c->off, c->len);
                if (w > 0) {
                    c->off += (size_t)w;
                    c->len -= (size_t)w;
                } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
                    dead = true;
                }
                if (!dead)
                    ep_ctl(ep, EPOLL_CTL_MOD, c->fd, c->len ? EPOLLOUT : EPOLLIN, c);
            }
            if (dead) {
                close(c->fd); /* also removes it from the epoll set */
                if (c->prev)
                    c->prev->next = c->next;
                else
                    conns = c->next;
                if (c->next)
                    c->next->prev = c->prev;
                free(c);
            }
        }
    }
    while (conns) {
        struct echo_conn *next = conns->next;
        close(conns->fd);
        free(conns);
        conns = next;
    }
    close(ep);
    close(lfd);
    printf("{\"role\":\"echo\",\"accepted\":%" PRIu64 ",\"bytes\":%" PRIu64
           ",\"accept_failures\":%" PRIu64 ",\"seconds\":%.3f}\n",
           accepted, bytes, accept_fail, (double)(now_ns() - t0) / 1e9);
    return 0;
}

/* --------------------------------------------------------------- flood */

struct flood_conn {
    int fd;
    bool connected;
    size_t got; /* request mode: echo bytes received */
    int64_t deadline;
    struct flood_conn *next_free;
};

struct flood_stats {
    uint64_t attempted, connected, answered, refused, reset, closed, timeouts, no_port,
        other_errors, socket_errors;
};

static int run_flood(const struct addr *dst, const struct addr *src, unsigned src_count,
                     double rate, int64_t run_ns, int64_t max_ns, size_t request,
                     unsigned inflight_max, int64_t timeout_ns)
{
    struct flood_conn *slots = calloc(inflight_max, sizeof(*slots));
    if (!slots)
        die("out of memory");
    struct flood_conn *free_list = NULL;
    for (unsigned i = inflight_max; i-- > 0;) {
        slots[i].fd = -1;
        slots[i].next_free = free_list;
        free_list = &slots[i];
    }
    char req[MAX_REQUEST], rbuf[MAX_REQUEST];
    fill_pattern(req, request, 0);
    int ep = epoll_new();
    struct flood_stats s = {0};
    unsigned inflight = 0, inflight_peak = 0;
    uint64_t capped_turns = 0;
    int64_t t0 = now_ns(), t_end = t0 + run_ns, last_sweep = t0, port_wait_until = 0;
    struct epoll_event evs[MAX_EVENTS];

    for (;;) {
        int64_t t = now_ns();
        if (stop_signal || t - t0 >= max_ns)
            break;
        bool sending = t < t_end;
        if (!sending && inflight == 0)
            break;
        /* Start what is due (rate × elapsed), bounded per turn. */
        if (sending && t >= port_wait_until) {
            uint64_t due = (uint64_t)(rate * (double)(t - t0) / 1e9);
            unsigned burst = 0;
            while (s.attempted < due && burst < FLOOD_BURST) {
                if (!free_list) {
                    capped_turns++;
                    break;
                }
                struct addr sa = *src;
                if (src_count > 1)
                    sa = addr_add(src, (uint32_t)(s.attempted % src_count));
                int fd = start_connect(&sa, dst, true);
                if (fd == -EADDRNOTAVAIL || fd == -EADDRINUSE) {
                    s.no_port++; /* no local port free: wait 1 ms, do not count */
                    port_wait_until = t + MS_NS;
                    break;
                }
                s.attempted++;
                burst++;
                if (fd == -ECONNREFUSED) {
                    s.refused++;
                    continue;
                }
                if (fd < 0) {
                    if (fd == -EMFILE || fd == -ENFILE || fd == -ENOBUFS || fd == -ENOMEM)
                        s.socket_errors++;
                    else
                        s.other_errors++;
                    continue;
                }
                struct flood_conn *c = free_list;
                free_list = c->next_free;
                c->fd = fd;
                c->connected = false;
                c->got = 0;
                c->deadline = t + timeout_ns;
                ep_ctl(ep, EPOLL_CTL_ADD, fd, EPOLLOUT, c);
                if (++inflight > inflight_peak)
                    inflight_peak = inflight;
            }
        }
        int n = tool_epoll_wait(ep, evs, MAX_EVENTS, 1);
        for (int i = 0; i < n; i++) {
            struct flood_conn *c = evs[i].data.ptr;
            bool done = false;
            if (!c->connected) {
                int err = sock_error(c->fd);
                if (err == EINPROGRESS || err == EALREADY)
                    continue;
                if (err) {
                    if (err == ECONNREFUSED)
                        s.refused++;
                    else if (err == ECONNRESET)
                        s.reset++;
                    else if (err == ETIMEDOUT)
                        s.timeouts++;
                    else
                        s.other_errors++;
                    done = true;
                } else {
                    s.connected++;
                    c->connected = true;
                    if (request == 0) {
                        done = true;
                    } else {
                        ssize_t w = send(c->fd, req, request, MSG_NOSIGNAL);
                        if (w != (ssize_t)request) { /* a small first write: all or an error */
                            s.reset++;
                            done = true;
                        } else {
                            ep_ctl(ep, EPOLL_CTL_MOD, c->fd, EPOLLIN, c);
                        }
                    }
                }
            } else {
                ssize_t r = recv(c->fd, rbuf, sizeof(rbuf), 0);
                if (r > 0) {
                    c->got += (size_t)r;
                    if (c->got >= request) {
                        s.answered++;
                        done = true;
                    }
                } else if (r == 0) {
                    s.closed++; /* accepted, then closed without an answer */
                    done = true;
                } else if (errno != EAGAIN && errno != EINTR) {
                    if (errno == ECONNRESET)
                        s.reset++;
                    else
                        s.other_errors++;
                    done = true;
                }
            }
            if (done) {
                close(c->fd); /* RST: SO_LINGER 0 */
                c->fd = -1;
                c->next_free = free_list;
                free_list = c;
                inflight--;
            }
        }
        /* Time out stuck connections (every 10 ms: a scan of the slots). */
        t = now_ns();
        if (t - last_sweep >= 10 * MS_NS) {
            last_sweep = t;
            for (unsigned i = 0; i < inflight_max; i++) {
                struct flood_conn *c = &slots[i];
                if (c->fd >= 0 && t >= c->deadline) {
                    close(c->fd);
                    c->fd = -1;
                    c->next_free = free_list;
                    free_list = c;
                    inflight--;
                    s.timeouts++;
                }
            }
        }
    }
    /* Anything left (a signal or --max-seconds): counted as timed out. */
    for (unsigned i = 0; i < inflight_max; i++) {
        if (slots[i].fd >= 0) {
            close(slots[i].fd);
            s.timeouts++;
        }
    }
    double secs = (double)(now_ns() - t0) / 1e9;
    double send_secs = (double)(run_ns < now_ns() - t0 ? run_ns : now_ns() - t0) / 1e9;
    char ss[INET6_ADDRSTRLEN], ds[INET6_ADDRSTRLEN];
    printf("{\"role\":\"flood\",\"source\":\"%s\",\"source_count\":%u,\"target\":\"%s:%d\",\"rate_"
           "target\":%.0f,"
           "\"request_bytes\":%zu,\"seconds\":%.3f,\"send_seconds\":%.3f,"
           "\"attempted\":%" PRIu64 ",\"connected\":%" PRIu64 ",\"answered\":%" PRIu64
           ",\"refused\":%" PRIu64 ",\"reset\":%" PRIu64 ",\"closed\":%" PRIu64
           ",\"timeouts\":%" PRIu64 ",\"no_port\":%" PRIu64 ",\"socket_errors\":%" PRIu64
           ",\"other_errors\":%" PRIu64 ",\"attempt_rate\":%.1f,\"connect_rate\":%.1f,"
           "\"inflight_peak\":%u,\"inflight_capped\":%" PRIu64 ",\"signal\":%d}\n",
           addr_str(src, ss, sizeof(ss)), src_count, addr_str(dst, ds, sizeof(ds)), addr_port(dst),
           rate, request, secs, send_secs, s.attempted, s.connected, s.answered, s.refused, s.reset,
           s.closed, s.timeouts, s.no_port, s.socket_errors, s.other_errors,
           send_secs > 0 ? (double)s.attempted / send_secs : 0.0,
           send_secs > 0 ? (double)s.connected / send_secs : 0.0, inflight_peak, capped_turns,
           (int)stop_signal);
    free(slots);
    close(ep);
    return 0;
}

/* ------------------------------------------------------------- clients */

enum cstate { C_IDLE, C_CONNECTING, C_WAITING };

struct client {
    int fd;
    enum cstate state;
    struct addr src;
    uint64_t seq;
    size_t got;
    int64_t sent_at, retry_at;
    uint64_t requests;
};

static int run_clients(const struct addr *dst, const struct addr *src0, unsigned count,
                       int64_t run_ns, int64_t warm_ns, int64_t max_ns, size_t size)
{
    struct client *cl = calloc(count, sizeof(*cl));
    uint64_t *hist = calloc(HIST_BUCKETS, sizeof(*hist));
    if (!cl || !hist)
        die("out of memory");
    char req[MAX_REQUEST], rbuf[MAX_REQUEST];
    int ep = epoll_new();
    uint64_t requests = 0, connects = 0, conn_errors = 0, mismatches = 0, total_requests = 0;
    uint64_t max_lat = 0, sum_lat = 0;
    int64_t t0 = now_ns(), t_warm = t0 + warm_ns, t_end = t0 + warm_ns + run_ns;
    for (unsigned i = 0; i < count; i++) {
        cl[i].fd = -1;
        cl[i].state = C_IDLE;
        cl[i].src = addr_add(src0, i);
    }
    struct epoll_event evs[MAX_EVENTS];
    for (;;) {
        int64_t t = now_ns();
        if (stop_signal || t >= t_end || t - t0 >= max_ns)
            break;
        for (unsigned i = 0; i < count; i++) {
            struct client *c = &cl[i];
            if (c->state != C_IDLE || t < c->retry_at)
                continue;
            int fd = start_connect(&c->src, dst, false);
            if (fd < 0) {
                conn_errors++;
                c->retry_at = t + 10 * MS_NS;
                continue;
            }
            c->fd = fd;
            c->state = C_CONNECTING;
            ep_ctl(ep, EPOLL_CTL_ADD, fd, EPOLLOUT, c);
        }
        int n = tool_epoll_wait(ep, evs, MAX_EVENTS, 5);
        t = now_ns();
        for (int i = 0; i < n; i++) {
            struct client *c = evs[i].data.ptr;
            bool fail = false;
            if (c->state == C_CONNECTING) {
                int err = sock_error(c->fd);
                if (err == EINPROGRESS || err == EALREADY)
                    continue;
                if (err) {
                    fail = true;
                } else {
                    connects++;
                    c->got = 0;
                    fill_pattern(req, size, c->seq);
                    c->sent_at = t;
                    if (send(c->fd, req, size, MSG_NOSIGNAL) != (ssize_t)size) {
                        fail = true;
                    } else {
                        c->state = C_WAITING;
                        ep_ctl(ep, EPOLL_CTL_MOD, c->fd, EPOLLIN, c);
                    }
                }
            } else if (c->state == C_WAITING) {
                ssize_t r = recv(c->fd, rbuf, size - c->got, 0);
                if (r > 0) {
                    char want[MAX_REQUEST];
                    fill_pattern(want, size, c->seq);
                    if (memcmp(rbuf, want + c->got, (size_t)r) != 0)
                        mismatches++;
                    c->got += (size_t)r;
                    if (c->got == size) {
                        uint64_t lat = (uint64_t)(t - c->sent_at);
                        total_requests++;
                        c->requests++;
                        if (c->sent_at >= t_warm) {
                            requests++;
                            hist[hist_index(lat)]++;
                            sum_lat += lat;
                            if (lat > max_lat)
                                max_lat = lat;
                        }
                        c->seq++;
                        c->got = 0;
                        fill_pattern(req, size, c->seq);
                        c->sent_at = now_ns();
                        if (send(c->fd, req, size, MSG_NOSIGNAL) != (ssize_t)size)
                            fail = true;
                    }
                } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
                    fail = true;
                }
            }
            if (fail) {
                conn_errors++;
                close(c->fd);
                c->fd = -1;
                c->state = C_IDLE;
                c->retry_at = t + 10 * MS_NS;
            }
        }
    }
    int64_t t_stop = now_ns();
    unsigned min_src = 0;
    uint64_t min_req = UINT64_MAX;
    for (unsigned i = 0; i < count; i++) {
        if (cl[i].fd >= 0)
            close(cl[i].fd);
        if (cl[i].requests < min_req) {
            min_req = cl[i].requests;
            min_src = i;
        }
    }
    double msecs = (double)(t_stop - (t_warm < t_stop ? t_warm : t_stop)) / 1e9;
    char ss[INET6_ADDRSTRLEN], ds[INET6_ADDRSTRLEN];
    printf("{\"role\":\"clients\",\"source_first\":\"%s\",\"count\":%u,\"target\":\"%s:%d\","
           "\"size\":%zu,\"warmup_seconds\":%.3f,\"seconds\":%.3f,\"requests\":%" PRIu64
           ",\"requests_total\":%" PRIu64 ",\"rps\":%.1f,\"connects\":%" PRIu64
           ",\"conn_errors\":%" PRIu64 ",\"mismatches\":%" PRIu64
           ",\"min_source_requests\":%" PRIu64
           ",\"min_source\":%u,\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,"
           "\"mean_us\":%.1f,\"max_us\":%.1f,\"signal\":%d}\n",
           addr_str(src0, ss, sizeof(ss)), count, addr_str(dst, ds, sizeof(ds)), addr_port(dst),
           size, (double)warm_ns / 1e9, msecs, requests, total_requests,
           msecs > 0 ? (double)requests / msecs : 0.0, connects, conn_errors, mismatches,
           count ? min_req : 0, min_src, hist_percentile(hist, requests, 50) / 1e3,
           hist_percentile(hist, requests, 90) / 1e3, hist_percentile(hist, requests, 99) / 1e3,
           hist_percentile(hist, requests, 99.9) / 1e3,
           requests ? (double)sum_lat / (double)requests / 1e3 : 0.0, (double)max_lat / 1e3,
           (int)stop_signal);
    free(cl);
    free(hist);
    close(ep);
    return 0;
}

/* ---------------------------------------------------------------- main */

enum {
    OPT_SOURCE = 256,
    OPT_SOURCE_COUNT,
    OPT_RATE,
    OPT_REQUEST,
    OPT_INFLIGHT,
    OPT_TIMEOUT_MS,
    OPT_COUNT,
    OPT_SIZE,
    OPT_WARMUP,
    OPT_SECONDS,
    OPT_MAX_SECONDS,
};

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"source", required_argument, NULL, OPT_SOURCE},
        {"source-count", required_argument, NULL, OPT_SOURCE_COUNT},
        {"rate", required_argument, NULL, OPT_RATE},
        {"request", required_argument, NULL, OPT_REQUEST},
        {"inflight", required_argument, NULL, OPT_INFLIGHT},
        {"timeout-ms", required_argument, NULL, OPT_TIMEOUT_MS},
        {"count", required_argument, NULL, OPT_COUNT},
        {"size", required_argument, NULL, OPT_SIZE},
        {"warmup", required_argument, NULL, OPT_WARMUP},
        {"seconds", required_argument, NULL, OPT_SECONDS},
        {"max-seconds", required_argument, NULL, OPT_MAX_SECONDS},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        usage(stdout);
        return 0;
    }
    if (argc < 2)
        usage_error("expected a role: echo, flood or clients");
    const char *role = argv[1];
    bool is_echo = !strcmp(role, "echo"), is_flood = !strcmp(role, "flood"),
         is_clients = !strcmp(role, "clients");
    if (!is_echo && !is_flood && !is_clients)
        usage_error("unknown role '%s' (echo, flood or clients)", role);
    const char *listen_s = NULL, *connect_s = NULL, *source_s = NULL;
    double rate = 20000, seconds = -1, warmup = 0, max_seconds = -1;
    size_t request = 0, size = 64;
    unsigned inflight = 4096, count = 50, source_count = 1;
    int64_t timeout_ns = 1000 * MS_NS;
    int opt;
    optind = 2;
    while ((opt = tool_getopt(argc, argv, "l:c:h", opts, usage)) != -1) {
        switch (opt) {
        case 'l':
            listen_s = optarg;
            break;
        case 'c':
            connect_s = optarg;
            break;
        case OPT_SOURCE:
            source_s = optarg;
            break;
        case OPT_SOURCE_COUNT:
            source_count = (unsigned)parse_num("--source-count", optarg, 1, 1 << 24);
            break;
        case OPT_RATE:
            rate = parse_num("--rate", optarg, 1, 10e6);
            break;
        case OPT_REQUEST:
            request = (size_t)parse_num("--request", optarg, 0, MAX_REQUEST);
            break;
        case OPT_INFLIGHT:
            inflight = (unsigned)parse_num("--inflight", optarg, 1, 1 << 20);
            break;
        case OPT_TIMEOUT_MS:
            timeout_ns = (int64_t)parse_num("--timeout-ms", optarg, 1, 600000) * MS_NS;
            break;
        case OPT_COUNT:
            count = (unsigned)parse_num("--count", optarg, 1, 65536);
            break;
        case OPT_SIZE:
            size = (size_t)parse_num("--size", optarg, 1, MAX_REQUEST);
            break;
        case OPT_WARMUP:
            warmup = parse_num("--warmup", optarg, 0, 3600);
            break;
        case OPT_SECONDS:
            seconds = parse_num("--seconds", optarg, 0.001, 3600);
            break;
        case OPT_MAX_SECONDS:
            max_seconds = parse_num("--max-seconds", optarg, 0.001, 86400);
            break;
        }
    }

    struct addr la, ca, sa;
    const char *err;
    if (is_echo) {
        if (!listen_s)
            usage_error("echo needs -l HOST:PORT");
        if (connect_s || source_s || seconds >= 0)
            usage_error("echo takes -l and --max-seconds only");
        if ((err = addr_parse(listen_s, true, &la)))
            usage_error("-l %s: %s", listen_s, err);
    } else {
        if (!connect_s || !source_s || seconds < 0)
            usage_error("%s needs -c HOST:PORT, --source ADDR and --seconds S", role);
        if (listen_s)
            usage_error("-l is for echo only");
        if ((err = addr_parse(connect_s, true, &ca)))
            usage_error("-c %s: %s", connect_s, err);
        if ((err = addr_parse(source_s, false, &sa)))
            usage_error("--source %s: %s", source_s, err);
        if (sa.ss.ss_family != ca.ss.ss_family)
            usage_error("--source and -c must be the same address family");
    }
    if (max_seconds < 0)
        max_seconds = is_echo ? 600 : seconds + warmup + 30;

    struct sigaction sact = {.sa_handler = on_signal};
    sigemptyset(&sact.sa_mask);
    sigaction(SIGTERM, &sact, NULL);
    sigaction(SIGINT, &sact, NULL);
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();

    int64_t max_ns = (int64_t)(max_seconds * 1e9);
    if (is_echo)
        return run_echo(&la, max_ns);
    if (is_flood)
        return run_flood(&ca, &sa, source_count, rate, (int64_t)(seconds * 1e9), max_ns, request,
                         inflight, timeout_ns);
    return run_clients(&ca, &sa, count, (int64_t)(seconds * 1e9), (int64_t)(warmup * 1e9), max_ns,
                       size);
}
