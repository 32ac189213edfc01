/* session.c - a session's life: pick and connect a backend (with retries),
 * relay both directions through buffer chains, half-close, timeouts, and
 * one end reason, counted and access-logged. */
#include "sluice/session.h"
#include "sluice/access_log.h"
#include "sluice/addr.h"
#include "sluice/backend.h"
#include "sluice/balance.h"
#include "sluice/config.h"
#include "sluice/fault.h"
#include "sluice/histogram.h"
#include "sluice/keepalive.h"
#include "sluice/listener.h"
#include "sluice/log.h"
#include "sluice/proxy_proto.h"
#include "sluice/limits.h"
#include "sluice/listener.h"
#include "sluice/srclimit.h"
#include "sluice/queue.h"
#include "sluice/relay.h"
#include "sluice/splice.h"
#include "sluice/tls_hello.h"
#include "sluice/uring.h"
#include "sluice/worker-t.h"

#include <errno.h>
#include <math.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Sessions kept for reuse per worker; beyond that they go back to malloc. */
#define SESSION_CACHE_MAX 1024
/* Read/write rounds per direction per event, so one fast session cannot
 * starve the others on its worker. The bytes read per event are bounded
 * too (max_buffer, see pump()). */
#define PUMP_ROUNDS 8

static const char *const state_names[] = {"proxy_header", "tls_hello",   "connecting", "relaying",
                                          "half_closed",  "closing",     "queued"};
static const char *const reason_names[] = {
#define X(name) #name,
    END_REASONS(X)
#undef X
};

const char *session_state_str(enum session_state s)
{
    return (unsigned)s < ARRAY_SIZE(state_names) ? state_names[s] : "?";
}

const char *end_reason_str(enum end_reason r)
{
    return (unsigned)r < ARRAY_SIZE(reason_names) ? reason_names[r] : "none";
}

/* The only place the state changes: asserts the transition is legal. */
static void session_set_state(struct session *s, enum session_state to)
{
    enum session_state from = s->state;
    bool ok = (from == SS_PROXY_HEADER &&
               (to == SS_TLS_HELLO || to == SS_CONNECTING || to == SS_CLOSING)) ||
              (from == SS_TLS_HELLO && (to == SS_CONNECTING || to == SS_CLOSING)) ||
              (from == SS_CONNECTING && (to == SS_RELAYING || to == SS_QUEUED ||
                                         to == SS_CLOSING)) ||
              (from == SS_QUEUED && (to == SS_CONNECTING || to == SS_CLOSING)) ||
              (from == SS_RELAYING && (to == SS_HALF_CLOSED || to == SS_CLOSING)) ||
              (from == SS_HALF_CLOSED && to == SS_CLOSING);
    SLUICE_ASSERT(ok);
    (void)ok;
    s->state = (uint8_t)to;
}

static int client_fd(const struct session *s)
{
    return s->w_client.fd;
}

static int backend_fd(const struct session *s)
{
    return s->w_backend.fd;
}

/* Start or change an io watcher's event mask; no-op (no epoll_ctl) when
 * the mask is unchanged. */
static void io_want(struct ev_loop *loop, ev_io *io, int events)
{
    if ((io->events & (EV_READ | EV_WRITE)) == events && ev_is_active(io) == (events != 0))
        return;
    ev_io_stop(loop, io);
    ev_io_set(io, io->fd, events);
    if (events)
        ev_io_start(loop, io);
}

/* term_side: who ended the session. Reasons not listed here (decisions
 * sluice takes: timeouts, limits, no server, shutdown) are the proxy's. */
static const char *term_side(const struct session *s)
{
    switch ((enum end_reason)s->reason) {
    case END_client_close:
    case END_proxy_header:
    case END_tls_hello:
        return "client";
    case END_backend_close:
    case END_connect_failed:
        return "server";
    case END_reset:
    case END_keepalive_timeout:
        return s->fail_side == FAIL_SERVER   ? "server"
               : s->fail_side == FAIL_CLIENT ? "client"
                                             : "proxy";
    default:
        return "proxy";
    }
}

/* term_phase: how far the session had got when it ended. */
static const char *term_phase(const struct session *s)
{
    if (s->reason == END_queue_full || s->reason == END_queue_timeout)
        return "queue";
    switch ((enum session_state)s->end_state) {
    case SS_PROXY_HEADER:
    case SS_TLS_HELLO:
        return "header";
    case SS_QUEUED:
        return "queue";
    case SS_CONNECTING:
        return "connect";
    case SS_RELAYING:
        return "relay";
    case SS_HALF_CLOSED:
        return "close";
    default:
        return "close";
    }
}

static void access_log(struct session *s)
{
    /* The format of the worker's current generation: a reload that
     * changes access_log_format applies to every line written after it. */
    const struct access_format *fmt = &s->w->cfg->access_fmt;
    char line[ACCESS_LINE_MAX], ts[ACCESS_TIME_LEN], start[ACCESS_TIME_LEN], client[ADDR_STRLEN];
    access_time_format(ev_time(), ts);
    addr_format(&s->client.u.sa, sizeof(s->client), client, sizeof(client));
    double ms = (ev_now(s->w->loop) - s->started) * 1000.0;
    struct access_rec r = {
        .id = s->id,
        .time = ts,
        .worker = s->w->id,
        .listener = s->lc->name,
        .client = client,
        .pool = s->srv    ? s->srv->pool->name
                : s->pool ? s->pool->name
                          : NULL,
        .backend = s->srv ? s->srv->name : NULL,
        .addr = s->srv ? s->srv->addr_str : NULL,
        .up = s->up.bytes,
        .down = s->down.bytes,
        .duration_ms = ms < 0 ? 0 : ms,
        .queued_ms = s->queued_ms,
        .connect_ms =
            s->connected_at > 0 ? fmax(0, (s->connected_at - s->connect_started) * 1000.0) : -1,
        .reason = end_reason_str((enum end_reason)s->reason),
        .sni = s->sni,
        .term_side = term_side(s),
        .term_phase = term_phase(s),
    };
    access_time_format(s->started, start);
    r.start = start;
    size_t n = access_format_line(fmt, &r, line);
    log_access_line(line, n);
}

/* One sample (us) into this worker's histogram `which` of s's server. */
static void record_server(struct session *s, enum backend_hist which, int64_t us)
{
    struct histogram *h = hist_slot(&backend_ws(s->srv->be, s->w->id)->hists, BACKEND_HISTS);
    if (h != NULL)
        hist_record(&h[which], us);
    else
        counter_add(&s->w->stats.alloc_failures, 1);
}

static void session_free(struct session *s)
{
    struct worker *w = s->w;
    balance_exclude_free(&s->exclude);
    free(s->sni);
    config_unref(s->cfg);
    if (w->nfree_sessions < SESSION_CACHE_MAX) {
        s->next = w->free_sessions;
        w->free_sessions = s;
        w->nfree_sessions++;
    } else {
        free(s);
    }
}

/* Bytes read from src and not yet written to dst. */
static size_t dir_pending(const struct relay_dir *d)
{
    return d->splice ? d->pipe.len : d->chain.len + d->ur.q.len;
}

static void ur_end(struct session *s);

/* The end reason for a failed read or write (errno err) on fd. ETIMEDOUT
 * on a side with tcp_keepalive on: the kernel gave up on a peer that went
 * silent (its keepalive probes, or retransmissions of bytes in flight, got
 * no answer): keepalive_timeout. Everything else is a reset, as is
 * ETIMEDOUT without keepalive (only a retransmission timeout gives it). */
static enum end_reason error_reason(struct session *s, int fd, int err)
{
    bool client = fd == client_fd(s);
    s->fail_side = client ? FAIL_CLIENT : FAIL_SERVER;
    if (err != ETIMEDOUT)
        return END_reset;
    const struct keepalive_conf *ka = client ? &s->lc->keepalive : &s->srv->pool->keepalive;
    if (!ka->on)
        return END_reset;
    log_debug("worker %d: %s side timed out (keepalive)", s->w->id, client ? "client" : "backend");
    return END_keepalive_timeout;
}

/* Make close(fd) send RST instead of FIN. */
static void set_abortive_close(int fd)
{
    static const struct linger abort_now = {.l_onoff = 1, .l_linger = 0};
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &abort_now, sizeof(abort_now));
}

/* Leave the backend: its live count drops; fd closed. */
static void backend_release(struct session *s)
{
    if (backend_fd(s) >= 0) {
        ev_io_stop(s->w->loop, &s->w_backend);
        close(backend_fd(s));
        ev_io_set(&s->w_backend, -1, 0);
    }
    if (s->holds_backend) {
        atomic_fetch_sub_explicit(&s->srv->be->active, 1, memory_order_relaxed);
        s->holds_backend = false;
        /* Only a server with max_conns ever makes anyone wait. */
        if (s->srv->max_conns > 0)
            queue_kick(s->srv->pool->q);
    }
}

/* Stop waiting in the pool's queue (s->queued): account the time. Returns
 * false when s's wake is on its way to this worker (it must stay alive
 * until session_queue_woken() sees it). */
static bool queue_quit(struct session *s)
{
    s->queued = false;
    double ms = (ev_now(s->w->loop) - s->queued_at) * 1000.0;
    s->queued_ms = ms > 0 ? ms : 0;
    return queue_leave(s->pool->q, s, (uint64_t)(s->queued_ms * 1000.0)) != QS_WOKEN;
}

void session_finish(struct session *s, enum end_reason reason)
{
    if (s->state == SS_CLOSING)
        return;
    struct worker *w = s->w;
    bool pinned = s->queued && !queue_quit(s);
    s->end_state = s->state;
    session_set_state(s, SS_CLOSING);
    s->reason = (uint8_t)reason;
    if (pinned)
        s->busy++; /* its wake is on its way: freed by session_queue_woken() */
    ev_timer_stop(w->loop, &s->w_timer);
    ev_io_stop(w->loop, &s->w_client);
    /* A FIN says "that was everything". When one side aborted, or bytes
     * meant for a side are being thrown away (idle timeout on a stalled
     * reader, shutdown, a local error), that side gets an RST instead, so
     * it cannot mistake a cut stream for a complete one. */
    bool aborted = reason == END_reset || reason == END_keepalive_timeout ||
                   reason == END_denied || reason == END_source_conn_limit ||
                   reason == END_source_rate_limit;
    if (aborted || dir_pending(&s->down) > 0)
        set_abortive_close(client_fd(s));
    if (aborted || dir_pending(&s->up) > 0)
        set_abortive_close(backend_fd(s));
    /* Counted before the client's socket closes: a client that saw the
     * end and then reads the stats finds it there. */
    counter_add(&w->stats.ends[reason], 1);
    ur_end(s);
    close(client_fd(s));
    backend_release(s);
    bufchain_clear(&s->up.chain, &w->bufs);
    bufchain_clear(&s->down.chain, &w->bufs);
    pipebuf_release(&s->up.pipe, &w->pipes);
    pipebuf_release(&s->down.pipe, &w->pipes);

    int wid = w->id;
    if (s->connected_us != 0)
        record_server(s, BACKEND_HIST_DURATION, hist_now_us() - s->connected_us);
    if (reason == END_no_backend)
        counter_add(&listener_ws(s->lc->st, wid)->no_backend, 1);
    /* Denied clients are left out of the access log: a flood of them
     * would fill the disk; listener_admit() logs them, rate-limited. */
    if (log_access_enabled() && reason != END_denied)
        access_log(s);
    log_debug("worker %d: session end %s after %llu/%llu bytes", wid,
              end_reason_str(reason), (unsigned long long)s->up.bytes,
              (unsigned long long)s->down.bytes);

    if (s->src != NULL) {
        srclimit_release(s->src);
        s->src = NULL;
    }
    atomic_fetch_sub_explicit(&s->lc->st->active, 1, memory_order_relaxed);
    slot_put(&w->host->limits->active);
    DLIST_UNLINK(w->sessions, s, prev, next);
    w->nsessions--;
    if (s->busy == 0)
        session_free(s);
    w->session_gone(w);
}

/* Session callbacks bracket their work with these so a session finished
 * deep inside is freed only on the way out. */
static void session_enter(struct session *s)
{
    s->busy++;
}

static void session_leave(struct session *s)
{
    if (--s->busy == 0 && s->state == SS_CLOSING)
        session_free(s);
}

/* How much a direction may buffer before reading stops (backpressure). */
static size_t dir_cap(const struct session *s, const struct relay_dir *d)
{
    size_t cap = s->cfg->max_buffer;
    if (d->splice && d->pipe.rfd >= 0) {
        /* A pipe out of slots holds no more, whatever its byte count. */
        size_t pipe_cap = d->pipe.len + pipebuf_room(&d->pipe);
        if (pipe_cap < cap)
            cap = pipe_cap;
    }
    return cap;
}

/* One read into the direction's buffer: a block chain (copy) or a pipe
 * (splice). A direction that cannot get a pipe falls back to copy. */
static ssize_t dir_fill(struct session *s, struct relay_dir *d, int src, size_t room,
                        bool *drained)
{
    struct worker *w = s->w;
    if (d->splice) {
        ssize_t n = pipebuf_fill(&d->pipe, &w->pipes, src, room, drained);
        if (n >= 0 || errno == EAGAIN || errno == EINTR || d->pipe.rfd >= 0)
            return n;
        if (errno != EMFILE && errno != ENFILE && errno != ENOMEM)
            return n;
        log_debug("worker %d: no pipe for splice (%s): copying instead", w->id, strerror(errno));
        d->splice = false;
    }
    return bufchain_readv(&d->chain, &w->bufs, src, room, drained);
}

static ssize_t dir_flush(struct session *s, struct relay_dir *d, int dst)
{
    if (d->splice)
        return pipebuf_drain(&d->pipe, &s->w->pipes, dst);
    return bufchain_writev(&d->chain, &s->w->bufs, dst);
}

/* Bytes handed to the destination's socket: the access log's up/down and
 * the live byte counters (one writer: this worker) count what was
 * delivered, so bytes read but thrown away when a session is reset or
 * times out are not in them. */
static void count_delivered(struct session *s, struct relay_dir *d, uint64_t n)
{
    struct listener_wstats *ls = listener_ws(s->lc->st, s->w->id);
    struct backend_wstats *bs = backend_ws(s->srv->be, s->w->id);
    d->bytes += n;
    if (d == &s->up) {
        counter_add(&ls->bytes_in, n);
        counter_add(&bs->bytes_out, n);
    } else {
        counter_add(&bs->bytes_in, n);
        counter_add(&ls->bytes_out, n);
    }
}

/* Move bytes for one direction. Writes what is pending (unless the last
 * write hit EAGAIN), then reads while there is room, writing after each
 * read. Reading stops for this event once max_buffer bytes came in (the
 * socket stays readable, so the loop comes back after the other ready
 * sessions): eight rounds of 256 KiB would let one bulk session hold the
 * worker for 2 MiB of copying, and a sender whose data sits unread (so
 * unacknowledged) that long on another session fires tail loss probes,
 * each a retransmit. Returns false if the session ended. */
static bool pump(struct session *s, struct relay_dir *d, int src, int dst)
{
    struct worker *w = s->w;
    bool drained = false;
    size_t got = 0; /* read during this event */
    for (int round = 0;; round++) {
        size_t cap = dir_cap(s, d);
        if (dir_pending(d) > 0 && !d->dst_blocked) {
            ssize_t n = dir_flush(s, d, dst);
            if (n < 0 && errno != EAGAIN && errno != EINTR) {
                session_finish(s, error_reason(s, dst, errno));
                return false;
            }
            if (n > 0) {
                s->last_activity = ev_now(w->loop);
                count_delivered(s, d, (uint64_t)n);
            }
            /* A short write means the socket buffer is full. */
            d->dst_blocked = dir_pending(d) > 0;
        }
        if (d->src_eof || drained || dir_pending(d) >= cap || round >= PUMP_ROUNDS ||
            got >= s->cfg->max_buffer)
            break;
        /* Ask for what recent reads suggest, not the whole room: a small
         * request/response then touches one block and one iovec; a bulk
         * stream grows to the full room within two reads. */
        size_t want = cap - dir_pending(d);
        size_t block = s->cfg->buffer_size;
        if (d->read_hint < block)
            d->read_hint = (uint32_t)block;
        if (want > d->read_hint)
            want = d->read_hint;
        ssize_t n = dir_fill(s, d, src, want, &drained);
        if (n > 0 && (size_t)n == want && d->read_hint < cap)
            d->read_hint = (uint32_t)(d->read_hint * 4 < cap ? d->read_hint * 4 : cap);
        else if (n > 0 && (size_t)n < d->read_hint / 4)
            d->read_hint /= 2;
        if (n > 0) {
            got += (size_t)n;
            s->last_activity = ev_now(w->loop);
            if (unlikely(d == &s->down && !s->first_byte)) {
                s->first_byte = true;
                record_server(s, BACKEND_HIST_FIRST_BYTE, hist_now_us() - s->connected_us);
            }
        } else if (n == 0) {
            d->src_eof = true;
            if (src == client_fd(s) && !s->down.src_eof)
                s->client_eof_first = true;
        } else if (errno == EAGAIN || errno == EINTR) {
            break;
        } else if (errno == ENOMEM || errno == EMFILE || errno == ENFILE) {
            counter_add(&w->stats.alloc_failures, 1);
            session_finish(s, END_local_error);
            return false;
        } else {
            session_finish(s, error_reason(s, src, errno));
            return false;
        }
    }
    if (d->src_eof && dir_pending(d) == 0 && !d->shut_sent) {
        /* Everything before the FIN is delivered: forward the FIN. When the
         * other direction is already finished the session ends right now
         * and close() sends that FIN (dst's receive side saw EOF, so
         * nothing unread is left to turn it into a RST): skip a syscall. */
        struct relay_dir *other = d == &s->up ? &s->down : &s->up;
        if (!other->shut_sent)
            shutdown(dst, SHUT_WR);
        d->shut_sent = true;
    }
    return true;
}

/* --- relay = uring ---------------------------------------------------------
 * A RELAYING session of a listener with relay = uring moves its bytes
 * through the worker's io_uring (uring.h) instead of the readiness pump.
 * Each side has a multishot receive armed while its direction holds less
 * than max_buffer. A received ring buffer is sent to the peer straight
 * from the ring (MSG_DONTWAIT: it completes at once and the buffer goes
 * back); when the peer pushes back (a short send, EAGAIN), what is left
 * is copied into the direction's block chain, later arrivals follow it
 * there, and the chain is sent with sends that wait for room. So a slow
 * reader holds its own blocks (at most about max_buffer, as in copy
 * mode), never the worker's ring buffers. One send per direction is in
 * flight at a time, which keeps the bytes in order. States, end reasons,
 * counters and the idle timer are the copy mode's. Every operation in
 * flight holds the session (s->ur.inflight pins s->busy): a session that
 * ends cancels them and is freed by its last completion. */

enum ur_tag { UR_RECV_UP, UR_RECV_DOWN, UR_SEND_UP, UR_SEND_DOWN, UR_CANCEL };

static int ur_src(const struct session *s, const struct relay_dir *d)
{
    return d == &s->up ? client_fd(s) : backend_fd(s);
}

static int ur_dst(const struct session *s, const struct relay_dir *d)
{
    return d == &s->up ? backend_fd(s) : client_fd(s);
}

static unsigned ur_recv_tag(const struct session *s, const struct relay_dir *d)
{
    return d == &s->up ? UR_RECV_UP : UR_RECV_DOWN;
}

static unsigned ur_send_tag(const struct session *s, const struct relay_dir *d)
{
    return d == &s->up ? UR_SEND_UP : UR_SEND_DOWN;
}

/* One more operation in flight: the first pins the session. */
static void ur_pin(struct session *s)
{
    if (s->ur.inflight++ == 0)
        s->busy++;
}

/* Called inside session_enter()/session_leave(), which frees. */
static void ur_unpin(struct session *s)
{
    SLUICE_ASSERT(s->ur.inflight > 0);
    if (--s->ur.inflight == 0)
        s->busy--;
}

/* Out of memory (a block) or the ring took no more: this session ends. */
static void ur_fail(struct session *s)
{
    counter_add(&s->w->stats.alloc_failures, 1);
    session_finish(s, END_local_error);
}

/* Arm d's receive unless it is armed, ended, at its cap or waiting for
 * ring buffers. */
static bool ur_arm(struct session *s, struct relay_dir *d)
{
    if (d->ur.recv_armed || d->ur.starved || d->src_eof || dir_pending(d) >= s->cfg->max_buffer)
        return true;
    if (!uring_recv(s->w->uring, ur_src(s, d), s, ur_recv_tag(s, d))) {
        ur_fail(s);
        return false;
    }
    ur_pin(s);
    d->ur.recv_armed = true;
    d->ur.recv_cancel = false;
    return true;
}

/* Send what d holds first, unless a send is in flight: the head ring
 * buffer (without waiting for room), else the head block of the chain. */
static bool ur_send(struct session *s, struct relay_dir *d)
{
    if (d->ur.send_busy)
        return true;
    const void *p;
    size_t n = uring_q_peek(s->w->uring, &d->ur.q, &p);
    int flags = MSG_DONTWAIT;
    d->ur.send_blk = NULL;
    if (n == 0) {
        struct buf_block *b = d->chain.head;
        if (b == NULL)
            return true;
        p = b->data + b->start;
        n = b->end - b->start;
        flags = 0;
        d->ur.send_blk = b;
    }
    if (!uring_send(s->w->uring, ur_dst(s, d), p, n, flags, s, ur_send_tag(s, d))) {
        d->ur.send_blk = NULL;
        ur_fail(s);
        return false;
    }
    ur_pin(s);
    d->ur.send_busy = true;
    d->ur.send_len = (uint32_t)n;
    return true;
}

/* The destination pushed back: copy what the ring buffers of d still
 * hold to the front of its chain and give them back. */
static bool ur_spill(struct session *s, struct relay_dir *d)
{
    struct uring *u = s->w->uring;
    struct bufchain front = {0};
    const void *p;
    size_t n;
    bool ok = true;
    while (ok && (n = uring_q_peek(u, &d->ur.q, &p)) > 0) {
        ok = bufchain_append(&front, &s->w->bufs, p, n);
        uring_q_consume(u, &d->ur.q, n);
    }
    if (front.head != NULL) {
        front.tail->next = d->chain.head;
        if (d->chain.tail == NULL)
            d->chain.tail = front.tail;
        d->chain.head = front.head;
        d->chain.len += front.len;
    }
    return ok;
}

/* After any completion: forward a FIN once everything before it is
 * delivered, end the session when both directions are done, else keep
 * sends and receives going. */
static void ur_update(struct session *s)
{
    struct relay_dir *dirs[2] = {&s->up, &s->down};
    for (int i = 0; i < 2; i++) {
        struct relay_dir *d = dirs[i], *other = dirs[1 - i];
        if (d->src_eof && dir_pending(d) == 0 && !d->ur.send_busy && !d->shut_sent) {
            /* As in pump(): when the other direction is finished too, the
             * close() that ends the session sends this FIN. */
            if (!other->shut_sent)
                shutdown(ur_dst(s, d), SHUT_WR);
            d->shut_sent = true;
        }
    }
    if (s->up.shut_sent && s->down.shut_sent) {
        session_finish(s, s->client_eof_first ? END_client_close : END_backend_close);
        return;
    }
    if (s->state == SS_RELAYING && (s->up.src_eof || s->down.src_eof))
        session_set_state(s, SS_HALF_CLOSED);
    for (int i = 0; i < 2; i++)
        if (!ur_send(s, dirs[i]) || !ur_arm(s, dirs[i]))
            return;
}

/* Received bytes in ring buffer bid: queued as they are while nothing
 * waits in the chain, else copied behind it (the buffer goes back). */
static bool ur_take(struct session *s, struct relay_dir *d, int bid, uint32_t n)
{
    struct uring *u = s->w->uring;
    if (bufchain_empty(&d->chain)) {
        uring_q_push(u, &d->ur.q, bid, n);
        return true;
    }
    bool ok = bufchain_append(&d->chain, &s->w->bufs, uring_buf_data(u, bid), n);
    uring_buf_put(u, bid);
    return ok;
}

static void ur_recv_done(struct session *s, struct relay_dir *d, const struct uring_done *c)
{
    struct uring *u = s->w->uring;
    if (!c->more)
        d->ur.recv_armed = false;
    if (s->state == SS_CLOSING) {
        if (c->bid >= 0)
            uring_buf_put(u, c->bid);
        return;
    }
    if (c->res > 0 && c->bid >= 0) {
        if (!ur_take(s, d, c->bid, (uint32_t)c->res)) {
            ur_fail(s);
            return;
        }
        s->last_activity = ev_now(s->w->loop);
        if (unlikely(d == &s->down && !s->first_byte)) {
            s->first_byte = true;
            record_server(s, BACKEND_HIST_FIRST_BYTE, hist_now_us() - s->connected_us);
        }
        /* Backpressure: stop receiving until the direction drains
         * (completions already posted still arrive: the overshoot is at
         * most what the socket held). */
        if (dir_pending(d) >= s->cfg->max_buffer && d->ur.recv_armed && !d->ur.recv_cancel) {
            if (!uring_cancel(u, s, ur_recv_tag(s, d), UR_CANCEL)) {
                ur_fail(s);
                return;
            }
            ur_pin(s);
            d->ur.recv_cancel = true;
        }
    } else {
        if (c->bid >= 0)
            uring_buf_put(u, c->bid);
        if (c->res == 0) {
            d->src_eof = true;
            if (d == &s->up && !s->down.src_eof)
                s->client_eof_first = true;
        } else if (c->res == -ENOBUFS) {
            /* Every ring buffer is in use: receive again when some are
             * back (the next loop iteration at the earliest). */
            log_debug("worker %d: relay = uring: every ring buffer in use, a receive waits",
                      s->w->id);
            d->ur.starved = true;
            uring_wait_bufs(u, &s->ur.wait);
        } else if (c->res < 0 && c->res != -ECANCELED && c->res != -EAGAIN && c->res != -EINTR) {
            session_finish(s, error_reason(s, ur_src(s, d), -c->res));
            return;
        }
    }
    ur_update(s);
}

static void ur_send_done(struct session *s, struct relay_dir *d, const struct uring_done *c)
{
    struct uring *u = s->w->uring;
    struct buf_block *blk = d->ur.send_blk;
    d->ur.send_busy = false;
    d->ur.send_blk = NULL;
    if (s->state == SS_CLOSING) {
        if (d->ur.blk_detached) {
            buf_pool_put(&s->w->bufs, blk);
            d->ur.blk_detached = false;
        }
        uring_q_clear(u, &d->ur.q);
        return;
    }
    if (c->res > 0) {
        if (blk != NULL)
            bufchain_drop(&d->chain, &s->w->bufs, (size_t)c->res);
        else
            uring_q_consume(u, &d->ur.q, (size_t)c->res);
        s->last_activity = ev_now(s->w->loop);
        count_delivered(s, d, (uint64_t)c->res);
    } else if (c->res < 0 && c->res != -EAGAIN && c->res != -EINTR) {
        session_finish(s, error_reason(s, ur_dst(s, d), -c->res));
        return;
    }
    /* A ring buffer the destination did not take whole: its rest moves
     * to the chain, sent by waiting sends from now on. */
    if (blk == NULL && (c->res < 0 || (uint32_t)c->res < d->ur.send_len) && !ur_spill(s, d)) {
        ur_fail(s);
        return;
    }
    ur_update(s);
}

/* uring_open()'s done callback: one completion for session c->obj. */
static void ur_done_cb(struct uring *u, const struct uring_done *c)
{
    struct session *s = c->obj;
    session_enter(s);
    if (!c->more)
        ur_unpin(s);
    switch ((enum ur_tag)c->tag) {
    case UR_RECV_UP:
        ur_recv_done(s, &s->up, c);
        break;
    case UR_RECV_DOWN:
        ur_recv_done(s, &s->down, c);
        break;
    case UR_SEND_UP:
        ur_send_done(s, &s->up, c);
        break;
    case UR_SEND_DOWN:
        ur_send_done(s, &s->down, c);
        break;
    case UR_CANCEL:
        break;
    }
    session_leave(s);
}

/* uring_open()'s wake callback: ring buffers came back after ENOBUFS. */
static void ur_wake_cb(struct uring *u, struct uring_waiter *wt)
{
    struct session *s = container_of(wt, struct session, ur.wait);
    session_enter(s);
    s->up.ur.starved = s->down.ur.starved = false;
    if (s->state != SS_CLOSING)
        ur_update(s);
    session_leave(s);
}

/* Ring buffers per worker: about 2 MiB of buffer_size blocks, a power of
 * two between 16 and 1024. They are only in transit (see above), so this
 * bounds a burst, not the number of sessions. */
static unsigned ur_nbufs(uint32_t buffer_size)
{
    unsigned n = 16;
    while (n < 1024 && (size_t)n * 2 * buffer_size <= (2u << 20))
        n *= 2;
    return n;
}

/* The worker's ring, opened on first use; NULL when the kernel refuses
 * (said once per process in the log: those sessions copy). */
static struct uring *ur_ring(struct worker *w)
{
    if (w->uring != NULL || w->uring_failed)
        return w->uring;
    static atomic_bool told;
    char why[160];
    uint32_t size = w->cfg->buffer_size;
    unsigned n = ur_nbufs(size);
    if (fault_uring_refuse()) {
        snprintf(why, sizeof(why), "io_uring_setup: refused (SLUICE_FAULT_URING_REFUSE)");
        w->uring = NULL;
    } else {
        w->uring = uring_open(w->loop, n, size, ur_done_cb, ur_wake_cb, why, sizeof(why));
    }
    if (w->uring == NULL) {
        w->uring_failed = true;
        if (!atomic_exchange(&told, true))
            log_warn("relay = uring: io_uring is not available (%s): those listeners copy "
                     "instead",
                     why);
        return NULL;
    }
    log_info("worker %d: relay = uring: io_uring ready (%u buffers of %u bytes)", w->id, n,
             (unsigned)size);
    return w->uring;
}

void session_uring_prepare(struct worker *w)
{
    for (int i = 0; i < w->cfg->nlisteners; i++)
        if (w->cfg->listeners[i].uring) {
            ur_ring(w);
            return;
        }
}

/* Move a RELAYING session onto the ring, once nothing is buffered in its
 * chains and no side has ended (such a session stays on the pump).
 * Returns true if it did. */
static bool ur_begin(struct session *s)
{
    if (s->ur.on || !bufchain_empty(&s->up.chain) || !bufchain_empty(&s->down.chain) ||
        s->up.src_eof || s->down.src_eof || ur_ring(s->w) == NULL)
        return false;
    io_want(s->w->loop, &s->w_client, 0);
    io_want(s->w->loop, &s->w_backend, 0);
    s->ur.on = true;
    ur_update(s);
    return true;
}

/* The session is finishing: cancel what it has in flight (the cancels go
 * out with the loop's next submission; user_data, not the fd, names the
 * operations, so closing the fds right after is safe). Memory under a
 * send in flight (its ring buffer, or its chain block, taken off the
 * chain here) is given back by that send's completion, never before:
 * the kernel may still read it. */
static void ur_end(struct session *s)
{
    if (!s->ur.on)
        return;
    struct uring *u = s->w->uring;
    uring_unwait(u, &s->ur.wait);
    struct relay_dir *dirs[2] = {&s->up, &s->down};
    for (int i = 0; i < 2; i++) {
        struct relay_dir *d = dirs[i];
        if (d->ur.recv_armed && !d->ur.recv_cancel &&
            uring_cancel(u, s, ur_recv_tag(s, d), UR_CANCEL)) {
            ur_pin(s);
            d->ur.recv_cancel = true;
        }
        if (!d->ur.send_busy) {
            uring_q_clear(u, &d->ur.q);
            continue;
        }
        if (uring_cancel(u, s, ur_send_tag(s, d), UR_CANCEL))
            ur_pin(s);
        struct buf_block *b = d->ur.send_blk;
        if (b != NULL) {
            SLUICE_ASSERT(d->chain.head == b);
            d->chain.head = b->next;
            if (d->chain.head == NULL)
                d->chain.tail = NULL;
            d->chain.len -= b->end - b->start;
            b->next = NULL;
            d->ur.blk_detached = true;
        }
    }
}

/* After any event: end the session if both directions are done, else
 * recompute what each fd waits for. */
static void session_update(struct session *s)
{
    struct relay_dir *up = &s->up, *down = &s->down;
    if (up->shut_sent && down->shut_sent) {
        session_finish(s, s->client_eof_first ? END_client_close : END_backend_close);
        return;
    }
    if (s->state == SS_RELAYING && (up->src_eof || down->src_eof))
        session_set_state(s, SS_HALF_CLOSED);
    /* relay = uring: once what came before (a PROXY header's payload, a
     * ClientHello, bytes read while queued) is delivered. */
    if (s->lc->uring && s->state == SS_RELAYING && ur_begin(s))
        return;
    int cev = 0, bev = 0;
    if (!up->src_eof && dir_pending(up) < dir_cap(s, up))
        cev |= EV_READ;
    if (dir_pending(down) > 0)
        cev |= EV_WRITE;
    if (!down->src_eof && dir_pending(down) < dir_cap(s, down))
        bev |= EV_READ;
    if (dir_pending(up) > 0)
        bev |= EV_WRITE;
    io_want(s->w->loop, &s->w_client, cev);
    io_want(s->w->loop, &s->w_backend, bev);
}

/* An event on one side's fd: READ feeds the direction that side sends,
 * WRITE drains the direction it receives. */
static void side_event(struct session *s, struct relay_dir *sends, struct relay_dir *receives,
                       int fd, int peer_fd, int revents)
{
    session_enter(s);
    if (revents & EV_WRITE)
        receives->dst_blocked = false;
    bool alive = true;
    if (revents & EV_READ)
        alive = pump(s, sends, fd, peer_fd);
    if (alive && (revents & EV_WRITE))
        alive = pump(s, receives, peer_fd, fd);
    if (alive)
        session_update(s);
    session_leave(s);
}

static void client_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct session *s = container_of(io, struct session, w_client);
    side_event(s, &s->up, &s->down, client_fd(s), backend_fd(s), revents);
}

static void relay_backend_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct session *s = container_of(io, struct session, w_backend);
    side_event(s, &s->down, &s->up, backend_fd(s), client_fd(s), revents);
}

static void idle_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct session *s = container_of(t, struct session, w_timer);
    /* Lazy re-arm: activity only moves last_activity; the timer checks. */
    ev_tstamp idle = (ev_tstamp)s->srv->pool->idle_timeout_ms / 1000.0;
    ev_tstamp left = s->last_activity + idle - ev_now(loop);
    if (left <= 0.001) {
        session_enter(s);
        session_finish(s, END_idle_timeout);
        session_leave(s);
        return;
    }
    t->repeat = left;
    ev_timer_again(loop, t);
}

/* send_proxy: the header goes out first, straight from here (a new
 * connection's send buffer is empty, so it is never cut short). */
static bool send_proxy_header(struct session *s)
{
    int version = s->srv->send_proxy >= 0 ? s->srv->send_proxy : s->srv->pool->send_proxy;
    if (version == 0)
        return true;
    if (!s->has_local) {
        socklen_t len = sizeof(s->local);
        if (getsockname(client_fd(s), &s->local.u.sa, &len) < 0)
            memset(&s->local, 0, sizeof(s->local));
    }
    uint8_t hdr[128];
    size_t n = proxy_build(version, &s->client.u.sa, &s->local.u.sa, hdr, sizeof(hdr));
    ssize_t sent = send(backend_fd(s), hdr, n, MSG_NOSIGNAL);
    if (sent != (ssize_t)n) {
        s->fail_side = FAIL_SERVER;
        session_finish(s, sent < 0 && errno != EAGAIN ? END_reset : END_local_error);
        return false;
    }
    return true;
}

static void session_connected(struct session *s)
{
    struct worker *w = s->w;
    backend_connect_ok(s->srv);
    s->connected_at = ev_now(w->loop);
    struct backend_wstats *bs = backend_ws(s->srv->be, w->id);
    counter_add(&bs->sessions, 1);
    /* A fresh clock, not ev_now(): a connect on a LAN or loopback takes
     * tens of us, less than the slack of the loop iteration's stamp. */
    s->connected_us = hist_now_us();
    record_server(s, BACKEND_HIST_CONNECT, s->connected_us - s->connect_us);
    struct histogram *lh = hist_slot(&listener_ws(s->lc->st, w->id)->hists, 1);
    if (lh != NULL)
        hist_record(lh, s->connected_us - s->accepted_us);
    else
        counter_add(&w->stats.alloc_failures, 1);
    session_set_state(s, SS_RELAYING);
    ev_set_cb(&s->w_backend, relay_backend_cb);
    ev_timer_stop(w->loop, &s->w_timer);
    ev_set_cb(&s->w_timer, idle_timer_cb);
    s->last_activity = ev_now(w->loop);
    s->w_timer.repeat = (ev_tstamp)s->srv->pool->idle_timeout_ms / 1000.0;
    ev_timer_again(w->loop, &s->w_timer);
    if (!send_proxy_header(s))
        return;
    if (s->lc->uring && ur_begin(s))
        return;
    /* Clients usually send right after connecting: read them now instead
     * of waiting for the next poll. A server that greets first is left to
     * its READ event; an eager read there would mostly be a wasted EAGAIN. */
    if (!pump(s, &s->up, client_fd(s), backend_fd(s)))
        return;
    session_update(s);
}

static void session_connect(struct session *s);

static void connect_failed(struct session *s, int err)
{
    struct worker *w = s->w;
    struct server_conf *srv = s->srv;
    counter_add(&backend_ws(srv->be, w->id)->connect_failures, 1);
    backend_connect_failed(srv, time_mono_ms(), err ? strerror(err) : "connect timeout");
    log_debug("worker %d: connect to %s (%s) failed: %s", w->id, srv->be->obj.key, srv->addr_str,
              err ? strerror(err) : "timeout");
    ev_timer_stop(w->loop, &s->w_timer);
    backend_release(s);
    if (s->attempts > srv->pool->retries) {
        session_finish(s, END_connect_failed); /* srv kept for the access log */
        return;
    }
    /* s->srv stays as the last server tried (for the access log) until
     * the next pick replaces it; it no longer holds a slot there. */
    counter_add(&backend_ws(srv->be, w->id)->retries, 1);
    session_connect(s);
}

static void connect_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct session *s = container_of(io, struct session, w_backend);
    session_enter(s);
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(backend_fd(s), SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err == 0)
        session_connected(s);
    else
        connect_failed(s, err);
    session_leave(s);
}

static void connect_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct session *s = container_of(t, struct session, w_timer);
    session_enter(s);
    connect_failed(s, 0);
    session_leave(s);
}

/* A socket() or connect() towards srv failed for lack of something on our
 * side: counted on the server as local_errors, never against its health.
 * Another server may still work (EADDRNOTAVAIL is per destination), so
 * retries go on as for a failed connect; the session ends local_error. */
static void local_connect_error(struct session *s, const char *call, int err)
{
    struct worker *w = s->w;
    struct server_conf *srv = s->srv;
    counter_add(&backend_ws(srv->be, w->id)->local_errors, 1);
    unsigned long dropped;
    if (log_enabled(LOG_WARN) && log_limit_due(&w->local_error_log, ev_now(w->loop), 1.0, &dropped))
        log_write(LOG_WARN, "worker %d: %s for %s: %s (a shortage on sluice's side, not counted "
                  "against the server; %lu more such lines suppressed)",
                  w->id, call, srv->be->obj.key, strerror(err), dropped);
    backend_release(s);
    if (s->attempts > srv->pool->retries) {
        session_finish(s, END_local_error);
        return;
    }
    counter_add(&backend_ws(srv->be, w->id)->retries, 1);
    session_connect(s);
}

enum pick_result { PICK_OK, PICK_NONE, PICK_OOM };

/* Pick a server not tried yet and reserve a slot on it (*out). */
static enum pick_result session_pick(struct session *s, struct server_conf **out)
{
    struct pool_conf *pool = s->pool;
    for (;;) {
        struct server_conf *srv =
            balance_pick(pool, s->w->id, &s->client.u.sa, &s->exclude, time_mono_ms());
        if (srv == NULL)
            return PICK_NONE;
        if (!balance_exclude_add(&s->exclude, pool, srv)) {
            counter_add(&s->w->stats.alloc_failures, 1);
            return PICK_OOM;
        }
        /* Another worker may have taken the last slot since the pick. */
        fault_pick_delay();
        if (backend_reserve(srv)) {
            *out = srv;
            return PICK_OK;
        }
    }
}

/* Could waiting help: is a server with max_conns usable but for being
 * full? (All down, disabled or draining: nothing to wait for.) */
static bool pool_may_wait(const struct pool_conf *pool, int64_t now_ms)
{
    for (int i = 0; i < pool->nservers; i++)
        if (pool->servers[i].max_conns > 0 && backend_usable_but_full(&pool->servers[i], now_ms))
            return true;
    return false;
}

/* Is a server of the pool usable right now (a slot is free)? */
static bool pool_has_free_slot(const struct pool_conf *pool, int64_t now_ms)
{
    for (int i = 0; i < pool->nservers; i++)
        if (backend_usable(&pool->servers[i], now_ms))
            return true;
    return false;
}

/* s just joined or rejoined the queue: a slot that freed up before, when
 * the queue looked empty to the session that freed it, woke nobody, so
 * look once more (after a full fence, see queue_kick()). */
static void queue_recheck(struct pool_conf *pool)
{
    atomic_thread_fence(memory_order_seq_cst);
    if (pool_has_free_slot(pool, time_mono_ms()))
        queue_kick(pool->q);
}

static void queue_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct session *s = container_of(t, struct session, w_timer);
    session_enter(s);
    session_finish(s, END_queue_timeout);
    session_leave(s);
}

/* While queued the client is read into the up chain (its bytes are kept
 * for the server, up to max_buffer), which is how a client that gives up
 * is noticed: an RST ends it (reset), and so does an EOF before it sent
 * anything (client_close). An EOF after some bytes is a half-close: the
 * request is complete, the session keeps its place and forwards the FIN
 * once connected. */
static void queued_client_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct session *s = container_of(io, struct session, w_client);
    struct worker *w = s->w;
    struct relay_dir *d = &s->up;
    session_enter(s);
    size_t cap = s->cfg->max_buffer;
    bool drained;
    ssize_t n = d->chain.len < cap
                    ? bufchain_readv(&d->chain, &w->bufs, client_fd(s), cap - d->chain.len, &drained)
                    : -1;
    if (n > 0) {
        d->splice = false; /* what is in the chain goes first */
    } else if (n == 0) {
        if (d->chain.len == 0) {
            session_finish(s, END_client_close);
            session_leave(s);
            return;
        }
        d->src_eof = true;
        s->client_eof_first = true;
    } else if (d->chain.len < cap && errno != EAGAIN && errno != EINTR) {
        bool local = errno == ENOMEM || errno == EMFILE || errno == ENFILE;
        if (local)
            counter_add(&w->stats.alloc_failures, 1);
        s->fail_side = FAIL_CLIENT;
        session_finish(s, local ? END_local_error : END_reset);
        session_leave(s);
        return;
    }
    io_want(loop, io, !d->src_eof && d->chain.len < cap ? EV_READ : 0);
    session_leave(s);
}

/* Every usable server is full: wait in the pool's queue for a slot, for
 * at most queue_timeout, or end queue_full when max_queue already wait. */
static void session_enqueue(struct session *s)
{
    struct worker *w = s->w;
    struct pool_conf *pool = s->pool;
    if (!queue_push(pool->q, s, pool->max_queue)) {
        session_finish(s, END_queue_full);
        return;
    }
    s->queued = true;
    s->queued_at = ev_now(w->loop);
    s->connect_started = 0; /* connect time starts after the queue */
    session_set_state(s, SS_QUEUED);
    ev_set_cb(&s->w_timer, queue_timer_cb);
    ev_timer_set(&s->w_timer, (ev_tstamp)pool->queue_timeout_ms / 1000.0, 0.);
    ev_timer_start(w->loop, &s->w_timer);
    ev_set_cb(&s->w_client, queued_client_cb);
    io_want(w->loop, &s->w_client,
            !s->up.src_eof && s->up.chain.len < s->cfg->max_buffer ? EV_READ : 0);
    queue_recheck(pool);
}

static void session_connect_to(struct session *s, struct server_conf *srv);

/* Connect to a server chosen by the pool's balance algorithm. The first
 * attempt of a session may instead wait in the pool's queue: when every
 * usable server is full, and always when others already wait (they are
 * served first: FIFO over all workers). */
static void session_connect(struct session *s)
{
    struct pool_conf *pool = s->pool;
    bool may_queue = s->attempts == 0 && pool->max_queue > 0;
    if (may_queue && queue_busy(pool->q) && pool_may_wait(pool, time_mono_ms())) {
        session_enqueue(s);
        return;
    }
    struct server_conf *srv = NULL;
    switch (session_pick(s, &srv)) {
    case PICK_OK:
        session_connect_to(s, srv);
        return;
    case PICK_OOM:
        session_finish(s, END_local_error);
        return;
    case PICK_NONE:
        break;
    }
    if (may_queue && pool_may_wait(pool, time_mono_ms()))
        session_enqueue(s);
    else
        session_finish(s, s->attempts == 0 ? END_no_backend : END_connect_failed);
}

/* s's wake has come (its worker's inbox, see queue.h). */
void session_queue_woken(struct session *s)
{
    struct worker *w = s->w;
    struct pool_conf *pool = s->pool;
    session_enter(s);
    if (s->state == SS_CLOSING) {
        /* It ended while its wake was on the way: the turn goes on. */
        queue_woken_done(pool->q, s, (uint64_t)(s->queued_ms * 1000.0));
        s->busy--; /* the pin taken by session_finish() */
        queue_kick(pool->q);
        session_leave(s);
        return;
    }
    struct server_conf *srv = NULL;
    enum pick_result r = session_pick(s, &srv);
    if (r == PICK_NONE && pool_may_wait(pool, time_mono_ms())) {
        /* Someone else took the slot first: keep the turn. */
        balance_exclude_free(&s->exclude);
        queue_requeue(pool->q, s);
        queue_recheck(pool);
        session_leave(s);
        return;
    }
    s->queued = false;
    double ms = (ev_now(w->loop) - s->queued_at) * 1000.0;
    s->queued_ms = ms > 0 ? ms : 0;
    queue_woken_done(pool->q, s, (uint64_t)(s->queued_ms * 1000.0));
    if (r != PICK_OK) {
        session_finish(s, r == PICK_OOM ? END_local_error : END_no_backend);
        session_leave(s);
        return;
    }
    ev_timer_stop(w->loop, &s->w_timer);
    io_want(w->loop, &s->w_client, 0);
    ev_set_cb(&s->w_client, client_cb);
    session_set_state(s, SS_CONNECTING);
    session_connect_to(s, srv);
    session_leave(s);
}

/* A connect() to a loopback address that said EINPROGRESS has almost
 * always finished already: the kernel ran the whole handshake inside the
 * call. Asking (one getsockopt) saves waiting a loop iteration for the
 * writable event, which under load is the larger part of the time from
 * accept to connected. Other addresses are a round trip away: not asked. */
static bool connect_done_at_once(const struct sockaddr *to, int fd)
{
    if (!addr_is_loopback(to))
        return false;
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    return getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 &&
           ti.tcpi_state == TCP_ESTABLISHED;
}

/* Start a non-blocking connect to srv, on which s holds a reserved slot. */
static void session_connect_to(struct session *s, struct server_conf *srv)
{
    struct worker *w = s->w;
    struct pool_conf *pool = s->pool;
    s->srv = srv;
    s->attempts++;
    s->holds_backend = true;
    if (s->connect_started == 0)
        s->connect_started = ev_now(w->loop);
    counter_add(&backend_ws(srv->be, w->id)->connect_attempts, 1);

    /* A server given by host name: the address last published by the
     * resolver thread (a lock-free copy). */
    struct sockaddr_any to;
    if (!backend_addr(srv, &to)) {
        /* Its answer expired since the pick: as unreachable as it gets. */
        connect_failed(s, EHOSTUNREACH);
        return;
    }
    int family = to.u.sa.sa_family;
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        local_connect_error(s, "socket()", errno);
        return;
    }
    if (family != AF_UNIX) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        /* Before connect(), so the connection has it from its first
         * moment. A failure only costs the detection of a dead server. */
        if (pool->keepalive.on && keepalive_apply(fd, &pool->keepalive) < 0)
            log_debug("worker %d: keepalive on the socket for %s: %s", w->id, srv->be->obj.key,
                      strerror(errno));
    }
    ev_io_set(&s->w_backend, fd, EV_WRITE);
    ev_set_cb(&s->w_backend, connect_cb);
    s->connect_us = hist_now_us();
    if (connect(fd, &to.u.sa, to.len) == 0) {
        session_connected(s);
        return;
    }
    if (errno != EINPROGRESS) {
        if (backend_errno_is_local(errno))
            local_connect_error(s, "connect()", errno);
        else
            connect_failed(s, errno);
        return;
    }
    if (connect_done_at_once(&to.u.sa, fd)) {
        session_connected(s);
        return;
    }
    ev_io_start(w->loop, &s->w_backend);
    ev_set_cb(&s->w_timer, connect_timer_cb);
    ev_timer_set(&s->w_timer, (ev_tstamp)pool->connect_timeout_ms / 1000.0, 0.);
    ev_timer_start(w->loop, &s->w_timer);
}

/* A preface: what a session reads before it connects, a PROXY header
 * (SS_PROXY_HEADER) or a TLS ClientHello (SS_TLS_HELLO), within a
 * timeout; a bad one ends the session with its own reason. */
struct preface {
    const char *name; /* in the log line of a rejection */
    enum end_reason reason;
    const char *closed[2];  /* the client closed: [0] before a byte, [1] in the middle */
    const char *expired[2]; /* the timeout expired: likewise */
};

static const struct preface prefaces[] = {
    {"PROXY header",
     END_proxy_header,
     {"connection closed before a header", "connection closed in the middle of the header"},
     {"no header within proxy_timeout", "incomplete header when proxy_timeout expired"}},
    {"TLS ClientHello",
     END_tls_hello,
     {"connection closed before a ClientHello",
      "connection closed in the middle of the ClientHello"},
     {"no ClientHello within sni_timeout", "incomplete ClientHello when sni_timeout expired"}},
};

static const struct preface *preface_of(const struct session *s)
{
    SLUICE_ASSERT(s->state == SS_PROXY_HEADER || s->state == SS_TLS_HELLO);
    return &prefaces[s->state == SS_TLS_HELLO];
}

static void preface_reject(struct session *s, const char *why)
{
    const struct preface *p = preface_of(s);
    char peer[ADDR_STRLEN];
    addr_format(&s->client.u.sa, sizeof(s->client), peer, sizeof(peer));
    log_info("worker %d: listener %s: bad %s from %s: %s", s->w->id, s->lc->name, p->name, peer,
             why);
    session_finish(s, p->reason);
}

/* Read more of the preface into the up chain, up to max bytes in all.
 * Returns what bufchain_readv() does; on 0 (the client closed before the
 * preface was whole) the session has been rejected. */
static ssize_t preface_read(struct session *s, size_t max)
{
    bool drained;
    ssize_t n = bufchain_readv(&s->up.chain, &s->w->bufs, client_fd(s), max - s->up.chain.len,
                               &drained);
    if (n == 0)
        preface_reject(s, preface_of(s)->closed[s->up.chain.len != 0]);
    return n;
}

static void preface_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct session *s = container_of(t, struct session, w_timer);
    session_enter(s);
    preface_reject(s, preface_of(s)->expired[s->up.chain.len != 0]);
    session_leave(s);
}

/* Read the preface with io_cb, for at most timeout_ms from now. */
static void preface_wait(struct session *s, void (*io_cb)(struct ev_loop *, ev_io *, int),
                         int64_t timeout_ms)
{
    struct worker *w = s->w;
    ev_set_cb(&s->w_client, io_cb);
    ev_io_set(&s->w_client, client_fd(s), EV_READ);
    ev_io_start(w->loop, &s->w_client);
    ev_set_cb(&s->w_timer, preface_timer_cb);
    ev_timer_set(&s->w_timer, (ev_tstamp)timeout_ms / 1000.0, 0.);
    ev_timer_start(w->loop, &s->w_timer);
}

/* The preface is whole: the client's socket goes back to client_cb. */
static void preface_done(struct session *s)
{
    struct worker *w = s->w;
    ev_io_stop(w->loop, &s->w_client);
    ev_io_set(&s->w_client, client_fd(s), 0);
    ev_set_cb(&s->w_client, client_cb);
    ev_timer_stop(w->loop, &s->w_timer);
}

/* route = sni: the client's first bytes (after a PROXY header, if any)
 * must be a TLS ClientHello. They are read into the up chain, at most
 * TLS_HELLO_MAX bytes, parsed by tls_hello_parse() (src/tls_hello.c), and
 * stay there: once the pool is chosen and a server connected, the backend
 * gets every one of them, as a PROXY header's payload. */

/* The hello is complete: pick the pool by its name and connect. */
static void hello_route(struct session *s, const struct tls_hello *h)
{
    struct worker *w = s->w;
    preface_done(s);
    if (h->sni_len > 0 && (s->sni = strdup(h->sni)) == NULL) {
        counter_add(&w->stats.alloc_failures, 1);
        session_finish(s, END_local_error);
        return;
    }
    s->pool = config_route_sni(s->lc, h->sni);
    if (s->pool == NULL) {
        log_debug("worker %d: listener %s: no route for server name '%s'", w->id, s->lc->name,
                  h->sni);
        session_finish(s, END_no_route);
        return;
    }
    /* The hello waits in the chain: this direction copies from now on
     * rather than splice past it. */
    s->up.splice = false;
    session_set_state(s, SS_CONNECTING);
    session_connect(s);
}

/* Parse what the up chain holds, unless it is still shorter than the
 * parser said a complete hello must be. */
static void hello_check(struct session *s)
{
    struct bufchain *c = &s->up.chain;
    if (c->len < s->hello_need || c->head == NULL)
        return;
    uint8_t flat[TLS_HELLO_MAX];
    const uint8_t *p = (const uint8_t *)c->head->data + c->head->start;
    size_t len = c->len < TLS_HELLO_MAX ? c->len : TLS_HELLO_MAX;
    if (c->head->end - c->head->start < len) {
        /* Spread over blocks (a PROXY header's payload came first, or
         * blocks are small): parse a flat copy. */
        size_t n = 0;
        for (const struct buf_block *b = c->head; b != NULL && n < len; b = b->next) {
            size_t k = b->end - b->start;
            if (k > len - n)
                k = len - n;
            memcpy(flat + n, b->data + b->start, k);
            n += k;
        }
        p = flat;
    }
    struct tls_hello h;
    switch (tls_hello_parse(p, len, &h)) {
    case TLS_HELLO_NEED_MORE:
        s->hello_need = (uint32_t)h.need;
        break;
    case TLS_HELLO_INVALID:
        preface_reject(s, h.why);
        break;
    case TLS_HELLO_DONE:
        hello_route(s, &h);
        break;
    }
}

static void hello_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct session *s = container_of(io, struct session, w_client);
    struct worker *w = s->w;
    session_enter(s);
    ssize_t n = preface_read(s, TLS_HELLO_MAX);
    if (n > 0) {
        hello_check(s);
    } else if (n < 0 && errno == ENOMEM) {
        counter_add(&w->stats.alloc_failures, 1);
        session_finish(s, END_local_error);
    } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
        s->fail_side = FAIL_CLIENT;
        session_finish(s, END_reset);
    }
    session_leave(s);
}

/* Wait for the ClientHello, within sni_timeout from now. Bytes that came
 * with a PROXY header may hold some or all of it already. */
static void hello_start(struct session *s)
{
    if (s->state != SS_TLS_HELLO)
        session_set_state(s, SS_TLS_HELLO); /* after a PROXY header */
    s->hello_need = 0;
    preface_wait(s, hello_cb, s->lc->sni_timeout_ms);
    if (s->up.chain.len > 0)
        hello_check(s);
}

/* accept_proxy: the client's first bytes must be a PROXY header. They are
 * read into the up chain (at most PROXY_HDR_MAX bytes, so the header sits
 * in the first block); the header is cut off and whatever payload came
 * with it stays in the chain for the backend. */
static void proxy_header_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct session *s = container_of(io, struct session, w_client);
    struct worker *w = s->w;
    session_enter(s);
    ssize_t n = preface_read(s, PROXY_HDR_MAX);
    if (n <= 0) {
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            session_finish(s, error_reason(s, client_fd(s), errno));
        session_leave(s);
        return;
    }
    struct buf_block *b = s->up.chain.head;
    struct proxy_hdr h;
    size_t used = 0;
    const char *why = NULL;
    enum proxy_parse_result r = proxy_parse((const uint8_t *)b->data + b->start,
                                            b->end - b->start, &h, &used, &why);
    if (r == PROXY_NEED_MORE && s->up.chain.len >= PROXY_HDR_MAX) {
        r = PROXY_INVALID;
        why = "no complete header in the first bytes";
    }
    if (r == PROXY_INVALID) {
        preface_reject(s, why);
    } else if (r == PROXY_DONE) {
        bufchain_drop(&s->up.chain, &w->bufs, used);
        if (!h.local) {
            s->client = h.src;
            s->local = h.dst;
            s->has_local = true;
        }
        /* The access list, then the per-source limits, on the header's
         * address (LOCAL, a health check by the proxy in front: its own
         * address), before a backend. */
        enum end_reason refused = END_NONE;
        if (!listener_admit(w, s->lc, &s->client))
            refused = END_denied;
        else if (s->lc->srct != NULL)
            refused = listener_source_admit(w, s->lc, &s->client.u.sa, &s->src);
        if (refused != END_NONE) {
            session_finish(s, refused);
            session_leave(s);
            return;
        }
        /* Payload that came with the header is in the chain: this
         * direction copies from now on rather than splice past it. */
        if (s->up.chain.len > 0)
            s->up.splice = false;
        preface_done(s);
        if (s->lc->route_sni) {
            hello_start(s);
        } else {
            session_set_state(s, SS_CONNECTING);
            session_connect(s);
        }
    }
    session_leave(s);
}

void session_start(struct worker *w, struct config *cfg, struct listener_conf *lc, int fd,
                   const struct sockaddr_ip *client, struct src_entry *src)
{
    struct session *s = w->free_sessions;
    if (s != NULL) {
        w->free_sessions = s->next;
        w->nfree_sessions--;
    } else if ((s = malloc(sizeof(*s))) == NULL) {
        counter_add(&w->stats.alloc_failures, 1);
        close(fd);
        if (src != NULL)
            srclimit_release(src);
        atomic_fetch_sub_explicit(&lc->st->active, 1, memory_order_relaxed);
        slot_put(&w->host->limits->active);
        w->session_gone(w);
        return;
    }
    memset(s, 0, sizeof(*s));
    s->w = w;
    /* Unique without a shared counter: the slot's own sequence, and the
     * slot in the low digits (show sessions, shutdown session ID). */
    s->id = ++w->session_seq * SLUICE_MAX_WORKERS + (uint64_t)w->id;
    s->cfg = cfg;
    config_ref(s->cfg);
    s->lc = lc;
    s->pool = lc->pool;
    s->client = *client;
    s->src = src;
    s->started = s->last_activity = ev_now(w->loop);
    s->accepted_us = hist_now_us();
    s->reason = END_NONE;
    s->state = SS_CONNECTING;
    pipebuf_init(&s->up.pipe);
    pipebuf_init(&s->down.pipe);
    uring_q_init(&s->up.ur.q);
    uring_q_init(&s->down.ur.q);
    s->up.splice = s->down.splice = lc->splice;
    ev_io_init(&s->w_client, client_cb, fd, 0);
    ev_io_init(&s->w_backend, connect_cb, -1, 0);
    ev_init(&s->w_timer, connect_timer_cb);
    /* TCP_NODELAY is inherited from the listening socket. */
    s->next = w->sessions;
    if (w->sessions)
        w->sessions->prev = s;
    w->sessions = s;
    w->nsessions++;
    counter_add(&listener_ws(lc->st, w->id)->accepted, 1);

    if (lc->accept_proxy) {
        s->state = SS_PROXY_HEADER;
        preface_wait(s, proxy_header_cb, lc->proxy_timeout_ms);
        return;
    }
    if (lc->route_sni) {
        s->state = SS_TLS_HELLO;
        hello_start(s);
        return;
    }
    session_enter(s);
    session_connect(s);
    session_leave(s);
}
