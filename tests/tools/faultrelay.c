/* faultrelay.c - a fault-injecting TCP relay for the integration tests.
 *
 * Listens on -l; for every accepted client it opens a new connection to -c
 * and relays both directions byte-exactly, optionally delaying, stalling and
 * chopping the traffic (see usage()). One thread, level-triggered epoll and
 * plain libc: the tool must not share code (or bugs) with what it tests.
 *
 * Per connection there are two directions, up (client -> server) and down
 * (server -> client). Each direction owns a FIFO of timestamped chunks:
 * a chunk may be written once its due time (read time + --delay) has come,
 * so delayed traffic stays pipelined. The FIFO is capped (QUEUE_CAP): a full
 * FIFO stops reading its source, which is the whole backpressure story.
 */
#include "toolkit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* Bytes (payload + chunk headers) queued per direction before reading stops. */
#define QUEUE_CAP ((size_t)4 << 20)
/* Smallest chunk allocation: tiny reads that arrive close together share one. */
#define CHUNK_MIN ((size_t)2048)
/* Reads that arrive within this window share a chunk (and its due time). */
#define COALESCE_NS MS_NS
#define READ_BUF_SIZE ((size_t)256 << 10)
/* Per direction and wakeup: read at most this much and make at most this
 * many send calls, so one busy connection cannot starve the others (the
 * level-triggered epoll comes back for the rest). Many sends, because
 * --chop 1-7 needs millions of them; 1024 tiny ones take about 2 ms. */
#define READ_BUDGET ((size_t)1 << 20)
#define SEND_BUDGET 1024
#define MAX_IOV 16
#define MAX_EVENTS 256
#define ACCEPT_BATCH 64
#define ACCEPT_PAUSE_NS (100 * MS_NS)
#define CHOP_LIMIT 65536

enum dir_id { DIR_UP, DIR_DOWN }; /* up: client -> server */

/* Side i is the source of direction i: side 0 is the client, side 1 the
 * server, so direction d reads side d and writes side 1 - d. */
enum side_id { SIDE_CLIENT, SIDE_SERVER };

static const char *const dir_names[] = {"up", "down"};

/* What to do to one direction. A zero field means "no such fault". */
struct faults {
    int64_t delay_ns;
    size_t chop_min, chop_max;
    uint64_t stall_after;
    int64_t stall_ns;
};

struct chunk {
    struct chunk *next;
    int64_t due;  /* monotonic ns from which it may be written */
    int64_t born; /* due time of its first byte: bounds coalescing */
    size_t off, len, cap;
    char data[];
};

enum handle_kind { H_LISTEN, H_SIGNAL, H_SIDE };

/* epoll's data.ptr points at one of these (first member of its owner). */
struct handle {
    enum handle_kind kind;
    int fd;
};

struct conn;

struct side {
    struct handle h;
    struct conn *conn;
    uint32_t events; /* what epoll watches now; 0: not registered */
};

struct dir {
    const struct faults *f;
    struct chunk *head, *tail;
    size_t queued; /* payload capacity + headers, against QUEUE_CAP */
    uint64_t forwarded;
    int64_t eof_at;      /* when EOF was read; valid if eof */
    int64_t stall_until; /* valid if stalling */
    bool eof, shut, stalling, stalled_once;
};

struct conn {
    struct conn *prev, *next;
    struct side side[2];
    struct dir dir[2];
    int64_t deadline; /* earliest timer of either direction; INT64_MAX: none */
    bool connecting, dead;
};

static struct {
    struct faults faults[2];
    struct sockaddr_storage upstream;
    socklen_t upstream_len;
    uint64_t rng;
    int epfd;
    struct handle listener, sig;
    uint32_t listen_events;
    int64_t accept_resume; /* accepting paused until then (EMFILE); 0: not */
    int64_t exit_at;
    struct conn *live; /* doubly linked */
    struct conn *dead; /* closed this batch, freed after it (singly linked) */
    bool stop;
    uint64_t connections, connect_failed, resets, bytes[2], sends[2];
} g;

static char rbuf[READ_BUF_SIZE];

const char tool_name[] = "faultrelay";
const char tool_usage_hint[] = " (see --help)";

/* xorshift64*: plenty for picking segment sizes, reproducible from --seed. */
static uint64_t rng_next(void)
{
    g.rng ^= g.rng >> 12;
    g.rng ^= g.rng << 25;
    g.rng ^= g.rng >> 27;
    return g.rng * UINT64_C(2685821657736338717);
}

static void rng_seed(uint64_t seed)
{
    /* splitmix64 step: any seed, including 0, gives a non-zero state. */
    uint64_t z = seed + UINT64_C(0x9e3779b97f4a7c15);
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    g.rng = (z ^ (z >> 31)) | 1;
}

/* ------------------------------------------------------------------------ */
/* addresses */

/* Parse "HOST:PORT" or "[V6]:PORT" into ss. Returns false (with a message
 * in err) if the text is malformed or the host does not resolve. */
static bool addr_parse(const char *text, bool passive, struct sockaddr_storage *ss, socklen_t *len,
                       char *err, size_t errlen)
{
    char host[256];
    const char *port;
    if (text[0] == '[') {
        const char *end = strchr(text, ']');
        if (end == NULL || end[1] != ':') {
            snprintf(err, errlen, "'%s': expected [IPV6]:PORT", text);
            return false;
        }
        size_t n = (size_t)(end - text - 1);
        if (n == 0 || n >= sizeof(host)) {
            snprintf(err, errlen, "'%s': bad IPv6 address", text);
            return false;
        }
        memcpy(host, text + 1, n);
        host[n] = '\0';
        port = end + 2;
    } else {
        const char *colon = strrchr(text, ':');
        size_t n = colon ? (size_t)(colon - text) : 0;
        if (colon == NULL || n == 0 || n >= sizeof(host) || memchr(text, ':', n) != NULL) {
            snprintf(err, errlen, "'%s': expected HOST:PORT (IPv6 as [ADDR]:PORT)", text);
            return false;
        }
        memcpy(host, text, n);
        host[n] = '\0';
        port = colon + 1;
    }
    char *end;
    errno = 0;
    unsigned long p = strtoul(port, &end, 10);
    if (*port == '\0' || *end != '\0' || errno != 0 || p > 65535 || (!passive && p == 0)) {
        snprintf(err, errlen, "'%s': bad port '%s'", text, port);
        return false;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0)};
    struct addrinfo *res;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "'%s': %s", text, gai_strerror(rc));
        return false;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return true;
}

/* "1.2.3.4:80" or "[::1]:80". */
static void addr_format(const struct sockaddr_storage *ss, char *out, size_t outlen)
{
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
        port = ntohs(a->sin6_port);
        snprintf(out, outlen, "[%s]:%u", host, port);
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
        port = ntohs(a->sin_port);
        snprintf(out, outlen, "%s:%u", host, port);
    }
}

/* ------------------------------------------------------------------------ */
/* sockets */

static void sock_nodelay(int fd)
{
    int one = 1;
    /* Best effort: without it --chop pieces may merge, nothing breaks. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* Close so that the peer sees a reset, not a FIN. */
static void sock_close_rst(int fd)
{
    sock_set_rst(fd);
    close(fd);
}

/* Make epoll watch exactly `want` on h's fd. A socket with nothing to watch
 * is taken out of epoll altogether: epoll reports EPOLLHUP even when no
 * event was asked for, which would spin a paused half-closed socket. */
static void watch(struct handle *h, uint32_t *cur, uint32_t want)
{
    if (want == *cur)
        return;
    struct epoll_event ev = {.events = want, .data.ptr = h};
    int op = want == 0 ? EPOLL_CTL_DEL : *cur == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
    if (epoll_ctl(g.epfd, op, h->fd, &ev) < 0)
        die("epoll_ctl(%d): %s", h->fd, strerror(errno));
    *cur = want;
}

/* ------------------------------------------------------------------------ */
/* one direction */

static void dir_free_chunks(struct dir *d)
{
    while (d->head) {
        struct chunk *c = d->head;
        d->head = c->next;
        free(c);
    }
    d->tail = NULL;
    d->queued = 0;
}

/* Can the FIFO take another read? Same test for the read and for epoll. */
static bool dir_has_room(const struct dir *d)
{
    return d->queued + sizeof(struct chunk) + CHUNK_MIN <= QUEUE_CAP;
}

static bool dir_wants_read(const struct dir *d)
{
    return !d->shut && !d->eof && !d->stalling && dir_has_room(d);
}

static bool dir_wants_write(const struct dir *d, int64_t now)
{
    return !d->shut && !d->stalling && d->head != NULL && d->head->due <= now;
}

/* Queue n bytes read at `now`. Returns false if out of memory. */
static bool dir_append(struct dir *d, const char *buf, size_t n, int64_t now)
{
    int64_t due = now + d->f->delay_ns;
    struct chunk *t = d->tail;
    if (t != NULL && t->cap - t->len >= n && (d->f->delay_ns == 0 || due - t->born < COALESCE_NS)) {
        memcpy(t->data + t->len, buf, n);
        t->len += n;
        /* Later bytes are never released early: hold the chunk longer. */
        if (due > t->due)
            t->due = due;
        return true;
    }
    size_t cap = n > CHUNK_MIN ? n : CHUNK_MIN;
    t = malloc(sizeof(*t) + cap);
    if (t == NULL)
        return false;
    t->next = NULL;
    t->due = t->born = due;
    t->off = 0;
    t->len = n;
    t->cap = cap;
    memcpy(t->data, buf, n);
    if (d->tail)
        d->tail->next = t;
    else
        d->head = t;
    d->tail = t;
    d->queued += sizeof(*t) + cap;
    return true;
}

/* Drop n written bytes from the front of the FIFO. */
static void dir_consume(struct dir *d, size_t n)
{
    while (n > 0) {
        struct chunk *c = d->head;
        size_t take = c->len - c->off < n ? c->len - c->off : n;
        c->off += take;
        n -= take;
        if (c->off == c->len) {
            d->head = c->next;
            if (d->head == NULL)
                d->tail = NULL;
            d->queued -= sizeof(*c) + c->cap;
            free(c);
        }
    }
}

static void dir_maybe_stall(struct dir *d, int64_t now)
{
    if (d->f->stall_ns > 0 && !d->stalled_once && d->forwarded >= d->f->stall_after) {
        d->stalling = true;
        d->stalled_once = true;
        d->stall_until = now + d->f->stall_ns;
    }
}

/* Read from fd into the FIFO until EAGAIN, EOF, a full FIFO or *budget
 * bytes (decremented). Returns bytes read, or -1 on a socket error (errno)
 * or out of memory. */
static ssize_t dir_read(struct dir *d, int fd, int64_t now, size_t *budget)
{
    size_t total = 0;
    while (dir_wants_read(d) && *budget > 0) {
        size_t want = QUEUE_CAP - d->queued - sizeof(struct chunk);
        if (want > sizeof(rbuf))
            want = sizeof(rbuf);
        if (want > *budget)
            want = *budget;
        ssize_t n = recv(fd, rbuf, want, 0);
        if (n > 0) {
            if (!dir_append(d, rbuf, (size_t)n, now)) {
                errno = ENOMEM;
                return -1;
            }
            total += (size_t)n;
            *budget -= (size_t)n;
            if ((size_t)n < want)
                break; /* drained; epoll says when there is more */
        } else if (n == 0) {
            d->eof = true;
            d->eof_at = now;
        } else if (errno == EINTR) {
            continue;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            break;
        } else {
            return -1;
        }
    }
    return (ssize_t)total;
}

/* Write due bytes to fd: with --chop one sendmsg per random-sized piece,
 * else as much as the socket takes, in at most *budget calls (decremented).
 * Never writes past the stall point. Returns bytes written, or -1 on a
 * socket error (errno). */
static ssize_t dir_write(struct dir *d, int fd, enum dir_id id, int64_t now, int *budget)
{
    const struct faults *f = d->f;
    size_t total = 0;
    while (*budget > 0 && dir_wants_write(d, now)) {
        size_t limit = SIZE_MAX;
        if (f->chop_max > 0)
            limit = f->chop_min + (size_t)(rng_next() % (f->chop_max - f->chop_min + 1));
        if (f->stall_ns > 0 && !d->stalled_once && f->stall_after - d->forwarded < limit)
            limit = (size_t)(f->stall_after - d->forwarded);

        /* A piece may span chunks: gather it with an iovec, no copy. */
        struct iovec iov[MAX_IOV];
        int niov = 0;
        size_t want = 0;
        for (struct chunk *c = d->head;
             c != NULL && c->due <= now && niov < MAX_IOV && want < limit; c = c->next) {
            size_t take = c->len - c->off;
            if (take > limit - want)
                take = limit - want;
            iov[niov].iov_base = c->data + c->off;
            iov[niov].iov_len = take;
            niov++;
            want += take;
        }
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)niov};
        ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL);
        (*budget)--;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            return -1;
        }
        dir_consume(d, (size_t)n);
        d->forwarded += (uint64_t)n;
        g.bytes[id] += (uint64_t)n;
        g.sends[id]++;
        total += (size_t)n;
        dir_maybe_stall(d, now);
        if ((size_t)n < want)
            break; /* socket buffer full */
    }
    return (ssize_t)total;
}

/* Move what can be moved in one direction, and forward its EOF once the
 * FIFO is empty. Returns false on a socket error (the connection must be
 * reset). */
static bool dir_pump(struct conn *c, enum dir_id id, int64_t now)
{
    struct dir *d = &c->dir[id];
    int src = c->side[id].h.fd, dst = c->side[1 - id].h.fd;
    if (d->shut)
        return true;
    if (d->stalling && now >= d->stall_until)
        d->stalling = false;
    dir_maybe_stall(d, now); /* --stall-after 0 stalls before the first byte */

    /* Alternate reading and writing until neither moves (or the budgets
     * are spent): with no delay a full FIFO drains and refills in one go. */
    size_t read_budget = READ_BUDGET;
    int send_budget = SEND_BUDGET;
    while (!d->stalling) {
        ssize_t r = dir_read(d, src, now, &read_budget);
        if (r < 0)
            return false;
        ssize_t w = dir_write(d, dst, id, now, &send_budget);
        if (w < 0)
            return false;
        if (r == 0 && w == 0)
            break;
    }

    if (d->eof && d->head == NULL && !d->stalling && now >= d->eof_at + d->f->delay_ns) {
        if (shutdown(dst, SHUT_WR) < 0)
            return false;
        d->shut = true;
    }
    return true;
}

/* Earliest time this direction needs a pump without any socket event. */
static int64_t dir_deadline(const struct dir *d, int64_t now)
{
    if (d->shut)
        return INT64_MAX;
    if (d->stalling)
        return d->stall_until;
    if (d->head != NULL && d->head->due > now)
        return d->head->due;
    if (d->eof && d->head == NULL)
        return d->eof_at + d->f->delay_ns;
    return INT64_MAX;
}

/* ------------------------------------------------------------------------ */
/* connections */

/* Close both sockets (with a reset if rst) and queue c for freeing: events
 * of this epoll batch may still point at it. */
static void conn_close(struct conn *c, bool rst)
{
    for (int i = 0; i < 2; i++) {
        int fd = c->side[i].h.fd;
        if (fd < 0)
            continue;
        /* close() drops the epoll registration (we never dup these fds). */
        if (rst)
            sock_close_rst(fd);
        else
            close(fd);
        c->side[i].h.fd = -1;
    }
    dir_free_chunks(&c->dir[DIR_UP]);
    dir_free_chunks(&c->dir[DIR_DOWN]);
    c->dead = true;
    if (c->prev)
        c->prev->next = c->next;
    else
        g.live = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->next = g.dead;
    g.dead = c;
}

static void conn_reset(struct conn *c)
{
    g.resets++;
    conn_close(c, true);
}

/* Recompute epoll interest and the timer after c has been pumped. */
static void conn_update(struct conn *c, int64_t now)
{
    for (int s = 0; s < 2; s++) {
        /* Side s is read by direction s and written by direction 1 - s. */
        uint32_t want = 0;
        if (dir_wants_read(&c->dir[s]))
            want |= EPOLLIN;
        if (dir_wants_write(&c->dir[1 - s], now))
            want |= EPOLLOUT;
        watch(&c->side[s].h, &c->side[s].events, want);
    }
    int64_t a = dir_deadline(&c->dir[DIR_UP], now), b = dir_deadline(&c->dir[DIR_DOWN], now);
    c->deadline = a < b ? a : b;
}

static void conn_pump(struct conn *c)
{
    int64_t now = now_ns();
    for (int id = DIR_UP; id <= DIR_DOWN; id++) {
        if (!dir_pump(c, (enum dir_id)id, now)) {
            conn_reset(c);
            return;
        }
    }
    if (c->dir[DIR_UP].shut && c->dir[DIR_DOWN].shut) {
        conn_close(c, false);
        return;
    }
    conn_update(c, now);
}

/* The upstream connect finished (or failed). */
static void conn_connected(struct conn *c)
{
    int err = sock_error(c->side[SIDE_SERVER].h.fd);
    if (err != 0) {
        g.connect_failed++;
        conn_reset(c);
        return;
    }
    c->connecting = false;
    conn_pump(c);
}

static void conn_start(int cfd)
{
    g.connections++;
    struct conn *c = calloc(1, sizeof(*c));
    int sfd = socket(g.upstream.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c == NULL || sfd < 0) {
        note("cannot start a connection: %s", strerror(c == NULL ? ENOMEM : errno));
        g.connect_failed++;
        g.resets++;
        free(c);
        sock_close_rst(cfd);
        if (sfd >= 0)
            close(sfd);
        return;
    }
    sock_nodelay(cfd);
    sock_nodelay(sfd);
    for (int i = 0; i < 2; i++) {
        c->side[i].h.kind = H_SIDE;
        c->side[i].conn = c;
        c->dir[i].f = &g.faults[i];
    }
    c->side[SIDE_CLIENT].h.fd = cfd;
    c->side[SIDE_SERVER].h.fd = sfd;
    c->deadline = INT64_MAX;
    c->next = g.live;
    if (g.live)
        g.live->prev = c;
    g.live = c;

    int rc = connect(sfd, (struct sockaddr *)&g.upstream, g.upstream_len);
    if (rc == 0) {
        conn_pump(c);
    } else if (errno == EINPROGRESS || errno == EINTR) {
        /* The client is not read until the upstream is there. */
        c->connecting = true;
        watch(&c->side[SIDE_SERVER].h, &c->side[SIDE_SERVER].events, EPOLLOUT);
    } else {
        g.connect_failed++;
        conn_reset(c);
    }
}

static void side_event(struct side *s, uint32_t events)
{
    struct conn *c = s->conn;
    if (c->dead)
        return; /* closed earlier in this batch */
    if (c->connecting) {
        if (s == &c->side[SIDE_SERVER])
            conn_connected(c);
        return;
    }
    if ((events & EPOLLERR) && sock_error(s->h.fd) != 0) {
        conn_reset(c);
        return;
    }
    conn_pump(c);
}

/* ------------------------------------------------------------------------ */
/* listener, signals, main loop */

static void listener_watch(bool on)
{
    watch(&g.listener, &g.listen_events, on ? EPOLLIN : 0);
}

static void listener_accept(void)
{
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int fd = accept4(g.listener.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            conn_start(fd);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return;
        /* EMFILE and friends: the pending client stays queued, and a
         * level-triggered listener would spin, so pause accepting. */
        note("accept: %s (pausing accepts for %d ms)", strerror(errno),
             (int)(ACCEPT_PAUSE_NS / MS_NS));
        listener_watch(false);
        g.accept_resume = now_ns() + ACCEPT_PAUSE_NS;
        return;
    }
}

static void signal_read(void)
{
    struct signalfd_siginfo si;
    while (read(g.sig.fd, &si, sizeof(si)) == (ssize_t)sizeof(si))
        g.stop = true;
}

static int listen_on(const struct sockaddr_storage *ss, socklen_t len)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket: %s", strerror(errno));
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)ss, len) < 0) {
        char a[INET6_ADDRSTRLEN + 16];
        addr_format(ss, a, sizeof(a));
        die("bind %s: %s", a, strerror(errno));
    }
    if (listen(fd, SOMAXCONN) < 0)
        die("listen: %s", strerror(errno));
    return fd;
}

static int64_t next_deadline(void)
{
    int64_t t = g.exit_at;
    if (g.accept_resume != 0 && g.accept_resume < t)
        t = g.accept_resume;
    for (struct conn *c = g.live; c != NULL; c = c->next)
        if (c->deadline < t)
            t = c->deadline;
    return t;
}

/* Pump every connection whose timer (delay, stall, delayed EOF) is due. */
static void run_timers(int64_t now)
{
    struct conn *next;
    for (struct conn *c = g.live; c != NULL; c = next) {
        next = c->next; /* c may move to the dead list */
        if (c->deadline <= now)
            conn_pump(c);
    }
    if (g.accept_resume != 0 && now >= g.accept_resume) {
        g.accept_resume = 0;
        listener_watch(true);
    }
}

static void reap(void)
{
    while (g.dead) {
        struct conn *c = g.dead;
        g.dead = c->next;
        free(c);
    }
}

static void run(void)
{
    struct epoll_event evs[MAX_EVENTS];
    while (!g.stop) {
        int64_t now = now_ns();
        if (now >= g.exit_at) {
            note("--max-seconds reached, exiting");
            return;
        }
        /* Round up: waking a little late is fine, spinning until due is not. */
        int64_t wait_ms = (next_deadline() - now + MS_NS - 1) / MS_NS;
        int timeout = wait_ms < 0 ? 0 : wait_ms > 60000 ? 60000 : (int)wait_ms;
        int n = tool_epoll_wait(g.epfd, evs, MAX_EVENTS, timeout);
        for (int i = 0; i < n; i++) {
            struct handle *h = evs[i].data.ptr;
            if (h->kind == H_LISTEN)
                listener_accept();
            else if (h->kind == H_SIGNAL)
                signal_read();
            else
                side_event((struct side *)h, evs[i].events);
        }
        run_timers(now_ns());
        reap();
    }
}

static void cleanup(void)
{
    while (g.live)
        conn_close(g.live, false);
    reap();
    close(g.listener.fd);
    close(g.sig.fd);
    close(g.epfd);
}

/* ------------------------------------------------------------------------ */
/* command line */

static void usage(FILE *out)
{
    fputs("usage: faultrelay -l HOST:PORT -c HOST:PORT [options]\n"
          "\n"
          "Relays every connection accepted on -l to a new connection to -c, both\n"
          "directions, injecting faults. Prints 'listening HOST:PORT' on stdout once\n"
          "listening (PORT may be 0), and counts on stderr at exit.\n"
          "\n"
          "  -l, --listen HOST:PORT    address to listen on ([IPV6]:PORT for IPv6)\n"
          "  -c, --connect HOST:PORT   upstream address\n"
          "      --delay MS            hold every chunk read MS ms before writing it\n"
          "      --chop MIN-MAX        write in random pieces of MIN..MAX bytes, one\n"
          "                            send() each, on TCP_NODELAY sockets\n"
          "      --stall-after BYTES   once BYTES have been forwarded in a direction,\n"
          "      --stall-ms MS         stop reading and writing it for MS ms (once)\n"
          "      --only up|down        apply the faults to one direction only\n"
          "                            (up: client to server; default both)\n"
          "      --seed N              seed for --chop (default time-based, printed)\n"
          "      --max-seconds N       exit after N seconds (default 600)\n"
          "  -h, --help                this text\n",
          out);
}

enum opt_id {
    OPT_DELAY = 256,
    OPT_CHOP,
    OPT_STALL_AFTER,
    OPT_STALL_MS,
    OPT_ONLY,
    OPT_SEED,
    OPT_MAX_SECONDS,
};

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"connect", required_argument, NULL, 'c'},
        {"delay", required_argument, NULL, OPT_DELAY},
        {"chop", required_argument, NULL, OPT_CHOP},
        {"stall-after", required_argument, NULL, OPT_STALL_AFTER},
        {"stall-ms", required_argument, NULL, OPT_STALL_MS},
        {"only", required_argument, NULL, OPT_ONLY},
        {"seed", required_argument, NULL, OPT_SEED},
        {"max-seconds", required_argument, NULL, OPT_MAX_SECONDS},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *listen_text = NULL, *connect_text = NULL, *only = NULL;
    struct faults f = {0};
    bool have_stall_after = false, have_seed = false;
    uint64_t seed = 0, max_seconds = 600;
    int opt;
    while ((opt = tool_getopt(argc, argv, "l:c:h", opts, usage)) != -1) {
        switch (opt) {
        case 'l':
            listen_text = optarg;
            break;
        case 'c':
            connect_text = optarg;
            break;
        case OPT_DELAY:
            f.delay_ns = (int64_t)parse_u64("--delay", optarg, 0, 3600000) * MS_NS;
            break;
        case OPT_CHOP: {
            unsigned lo, hi;
            int used = 0;
            if (sscanf(optarg, "%u-%u%n", &lo, &hi, &used) != 2 || optarg[used] != '\0' || lo < 1 ||
                lo > hi || hi > CHOP_LIMIT)
                usage_error("--chop: expected MIN-MAX with 1 <= MIN <= MAX <= %d, got '%s'",
                            CHOP_LIMIT, optarg);
            f.chop_min = lo;
            f.chop_max = hi;
            break;
        }
        case OPT_STALL_AFTER:
            f.stall_after = parse_u64("--stall-after", optarg, 0, UINT64_C(1) << 50);
            have_stall_after = true;
            break;
        case OPT_STALL_MS:
            f.stall_ns = (int64_t)parse_u64("--stall-ms", optarg, 1, 3600000) * MS_NS;
            break;
        case OPT_ONLY:
            if (strcmp(optarg, "up") != 0 && strcmp(optarg, "down") != 0)
                usage_error("--only: expected 'up' or 'down', got '%s'", optarg);
            only = optarg;
            break;
        case OPT_SEED:
            seed = parse_u64("--seed", optarg, 0, UINT64_MAX);
            have_seed = true;
            break;
        case OPT_MAX_SECONDS:
            max_seconds = parse_u64("--max-seconds", optarg, 1, 365 * 86400);
            break;
        }
    }
    if (listen_text == NULL || connect_text == NULL)
        usage_error("both -l HOST:PORT and -c HOST:PORT are required");
    if (have_stall_after != (f.stall_ns > 0))
        usage_error("--stall-after and --stall-ms go together");

    char err[512];
    struct sockaddr_storage listen_addr;
    socklen_t listen_len;
    if (!addr_parse(listen_text, true, &listen_addr, &listen_len, err, sizeof(err)))
        usage_error("-l %s", err);
    if (!addr_parse(connect_text, false, &g.upstream, &g.upstream_len, err, sizeof(err)))
        usage_error("-c %s", err);

    for (int id = DIR_UP; id <= DIR_DOWN; id++)
        if (only == NULL || strcmp(only, dir_names[id]) == 0)
            g.faults[id] = f;
    if (!have_seed) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        seed = ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) ^ (uint64_t)getpid();
    }
    rng_seed(seed);

    /* Signals arrive through a signalfd, so they are just another event. */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
        die("sigprocmask: %s", strerror(errno));
    /* An inherited SIG_IGN (a non-interactive shell's `&` ignores SIGINT)
     * would discard the signal before the signalfd sees it. */
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGPIPE, SIG_IGN);
    /* Room for a few hundred connections (two fds each) under a 1024 soft
     * limit. */
    raise_nofile();

    g.epfd = epoll_create1(EPOLL_CLOEXEC);
    if (g.epfd < 0)
        die("epoll_create1: %s", strerror(errno));
    g.sig.kind = H_SIGNAL;
    g.sig.fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (g.sig.fd < 0)
        die("signalfd: %s", strerror(errno));
    uint32_t sig_events = 0;
    watch(&g.sig, &sig_events, EPOLLIN);
    g.listener.kind = H_LISTEN;
    g.listener.fd = listen_on(&listen_addr, listen_len);
    listener_watch(true);
    g.exit_at = now_ns() + (int64_t)max_seconds * 1000 * MS_NS;

    struct sockaddr_storage bound;
    socklen_t bound_len = sizeof(bound);
    if (getsockname(g.listener.fd, (struct sockaddr *)&bound, &bound_len) < 0)
        die("getsockname: %s", strerror(errno));
    char la[INET6_ADDRSTRLEN + 16], ua[INET6_ADDRSTRLEN + 16];
    addr_format(&bound, la, sizeof(la));
    addr_format(&g.upstream, ua, sizeof(ua));
    note("%s -> %s: delay=%" PRId64 "ms chop=%zu-%zu stall-after=%" PRIu64 " stall-ms=%" PRId64
         " only=%s seed=%" PRIu64 " max-seconds=%" PRIu64,
         la, ua, f.delay_ns / MS_NS, f.chop_min, f.chop_max, f.stall_after, f.stall_ns / MS_NS,
         only ? only : "both", seed, max_seconds);
    printf("listening %s\n", la);
    fflush(stdout);

    run();
    cleanup();
    note("exit: connections=%" PRIu64 " connect_failed=%" PRIu64 " resets=%" PRIu64
         " up_bytes=%" PRIu64 " down_bytes=%" PRIu64 " up_sends=%" PRIu64 " down_sends=%" PRIu64,
         g.connections, g.connect_failed, g.resets, g.bytes[DIR_UP], g.bytes[DIR_DOWN],
         g.sends[DIR_UP], g.sends[DIR_DOWN]);
    return 0;
}
