/* uring.c - relay = uring: a worker's io_uring, its provided-buffer ring
 * and the per-direction queues of received buffers (see uring.h). */
#include "sluice/uring.h"
#include "sluice/common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- the queue of received buffers (pure: no ring needed) ----------------- */

void uring_q_init(struct uring_q *q)
{
    q->head = q->tail = -1;
    q->off = 0;
    q->len = 0;
}

void uring_segs_push(struct uring_segs *t, struct uring_q *q, int bid, uint32_t len)
{
    t->len[bid] = len;
    t->next[bid] = -1;
    if (q->tail >= 0)
        t->next[q->tail] = bid;
    else
        q->head = bid;
    q->tail = bid;
    q->len += len;
}

size_t uring_segs_head(const struct uring_segs *t, const struct uring_q *q, int *bid, uint32_t *off)
{
    if (q->head < 0)
        return 0;
    *bid = q->head;
    *off = q->off;
    return t->len[q->head] - q->off;
}

void uring_segs_consume(struct uring_segs *t, struct uring_q *q, size_t n)
{
    SLUICE_ASSERT(n <= q->len);
    q->len -= n;
    while (n > 0 && q->head >= 0) {
        int bid = q->head;
        size_t have = t->len[bid] - q->off;
        if (n < have) {
            q->off += (uint32_t)n;
            return;
        }
        n -= have;
        q->off = 0;
        q->head = t->next[bid];
        if (q->head < 0)
            q->tail = -1;
        t->put(t->ctx, bid);
    }
}

void uring_segs_clear(struct uring_segs *t, struct uring_q *q)
{
    while (q->head >= 0) {
        int bid = q->head;
        q->head = t->next[bid];
        t->put(t->ctx, bid);
    }
    uring_q_init(q);
}

#ifdef SLUICE_HAVE_URING

#include <liburing.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>

/* Entries in the submission queue; the completion queue gets twice as
 * many, and the kernel keeps overflowing completions (IORING_FEAT_NODROP). */
#define URING_ENTRIES 512
/* The provided-buffer group every receive takes from. */
#define URING_BGID 0
/* prepare_cb(): submit-and-reap rounds per loop iteration. */
#define URING_SUBMIT_ROUNDS 8
/* uring_close(): how long owed completions are waited for. */
#define URING_DRAIN_MS 2000

struct uring {
    struct io_uring ring;
    struct ev_loop *loop;
    ev_io w_event;        /* the ring's eventfd: completions to reap */
    ev_prepare w_prepare; /* once per loop iteration: submit the batch */
    ev_idle w_idle;       /* more to submit: the loop must not block */
    int efd;
    unsigned pending; /* SQEs prepared and not yet submitted */
    unsigned owed;    /* operations submitted (or prepared) and not completed */
    uring_done_fn done;
    uring_wake_fn wake;
    struct io_uring_buf_ring *br;
    size_t br_bytes;
    unsigned nbufs;
    uint32_t buf_size;
    char *bufs;
    struct uring_segs segs;
    uint32_t *seg_len;
    int32_t *seg_next;
    struct uring_waiter *waiters; /* after ENOBUFS, woken when buffers return */
    bool bufs_back;               /* a buffer came back since the last wake */
};

bool uring_compiled(void)
{
    return true;
}

uint32_t uring_buf_size(const struct uring *u)
{
    return u->buf_size;
}

unsigned uring_nbufs(const struct uring *u)
{
    return u->nbufs;
}

static void buf_add(struct uring *u, int bid)
{
    io_uring_buf_ring_add(u->br, u->bufs + (size_t)bid * u->buf_size, u->buf_size,
                          (unsigned short)bid, io_uring_buf_ring_mask(u->nbufs), 0);
    io_uring_buf_ring_advance(u->br, 1);
}

static void wake_waiters(struct uring *u)
{
    struct uring_waiter *wt = u->waiters;
    u->waiters = NULL;
    while (wt != NULL) {
        struct uring_waiter *next = wt->next;
        wt->prev = wt->next = NULL;
        wt->waiting = false;
        u->wake(u, wt);
        wt = next;
    }
}

void uring_buf_put(struct uring *u, int bid)
{
    SLUICE_ASSERT(bid >= 0 && (unsigned)bid < u->nbufs);
    buf_add(u, bid);
    u->bufs_back = true;
}

const void *uring_buf_data(const struct uring *u, int bid)
{
    return u->bufs + (size_t)bid * u->buf_size;
}

static void seg_put(void *ctx, int bid)
{
    uring_buf_put(ctx, bid);
}

void uring_wait_bufs(struct uring *u, struct uring_waiter *wt)
{
    if (wt->waiting)
        return;
    wt->waiting = true;
    wt->prev = NULL;
    wt->next = u->waiters;
    if (u->waiters != NULL)
        u->waiters->prev = wt;
    u->waiters = wt;
}

void uring_unwait(struct uring *u, struct uring_waiter *wt)
{
    if (!wt->waiting)
        return;
    if (wt->prev != NULL)
        wt->prev->next = wt->next;
    else
        u->waiters = wt->next;
    if (wt->next != NULL)
        wt->next->prev = wt->prev;
    wt->prev = wt->next = NULL;
    wt->waiting = false;
}

void uring_q_push(struct uring *u, struct uring_q *q, int bid, uint32_t len)
{
    uring_segs_push(&u->segs, q, bid, len);
}

size_t uring_q_peek(struct uring *u, const struct uring_q *q, const void **p)
{
    int bid;
    uint32_t off;
    size_t n = uring_segs_head(&u->segs, q, &bid, &off);
    if (n > 0)
        *p = u->bufs + (size_t)bid * u->buf_size + off;
    return n;
}

void uring_q_consume(struct uring *u, struct uring_q *q, size_t n)
{
    uring_segs_consume(&u->segs, q, n);
}

void uring_q_clear(struct uring *u, struct uring_q *q)
{
    uring_segs_clear(&u->segs, q);
}

/* A free SQE; when the queue is full the batch so far goes in now. */
static struct io_uring_sqe *sqe_get(struct uring *u)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
    if (sqe == NULL) {
        io_uring_submit(&u->ring);
        u->pending = 0;
        sqe = io_uring_get_sqe(&u->ring);
    }
    if (sqe != NULL) {
        u->pending++;
        u->owed++;
    }
    return sqe;
}

bool uring_recv(struct uring *u, int fd, void *obj, unsigned tag)
{
    struct io_uring_sqe *sqe = sqe_get(u);
    if (sqe == NULL)
        return false;
    io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = URING_BGID;
    io_uring_sqe_set_data64(sqe, uring_pack(obj, tag));
    return true;
}

bool uring_send(struct uring *u, int fd, const void *p, size_t len, int flags, void *obj,
                unsigned tag)
{
    struct io_uring_sqe *sqe = sqe_get(u);
    if (sqe == NULL)
        return false;
    io_uring_prep_send(sqe, fd, p, len, MSG_NOSIGNAL | flags);
    io_uring_sqe_set_data64(sqe, uring_pack(obj, tag));
    return true;
}

bool uring_cancel(struct uring *u, void *obj, unsigned tag, unsigned ctag)
{
    struct io_uring_sqe *sqe = sqe_get(u);
    if (sqe == NULL)
        return false;
    io_uring_prep_cancel64(sqe, uring_pack(obj, tag), IORING_ASYNC_CANCEL_ALL);
    io_uring_sqe_set_data64(sqe, uring_pack(obj, ctag));
    return true;
}

/* Hand every completion in the queue to `done`. */
static void reap(struct uring *u)
{
    struct io_uring_cqe *cqe;
    while (io_uring_peek_cqe(&u->ring, &cqe) == 0) {
        struct uring_done d;
        d.obj = uring_unpack(cqe->user_data, &d.tag);
        d.res = cqe->res;
        d.bid =
            (cqe->flags & IORING_CQE_F_BUFFER) ? (int)(cqe->flags >> IORING_CQE_BUFFER_SHIFT) : -1;
        d.more = (cqe->flags & IORING_CQE_F_MORE) != 0;
        io_uring_cqe_seen(&u->ring, cqe);
        if (!d.more)
            u->owed--;
        u->done(u, &d);
    }
}

static void event_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct uring *u = container_of(io, struct uring, w_event);
    uint64_t n;
    (void)!read(u->efd, &n, sizeof(n));
    reap(u);
}

static void idle_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
    ev_idle_stop(loop, w); /* only kept the loop from blocking */
}

static void prepare_cb(struct ev_loop *loop, ev_prepare *p, int revents)
{
    struct uring *u = container_of(p, struct uring, w_prepare);
    /* Submit; completions the submission posted at once (a send that fit,
     * a receive with bytes already there) are reaped right here, and what
     * they queue goes in the next round. The eventfd is off meanwhile, so
     * these completions do not wake the loop once more for nothing.
     * Sessions waiting for ring buffers are woken here, at the top of the
     * loop, never from inside the completion that gave buffers back. */
    for (int round = 0; round < URING_SUBMIT_ROUNDS; round++) {
        if (u->bufs_back && u->waiters != NULL) {
            u->bufs_back = false;
            wake_waiters(u);
        }
        u->bufs_back = false;
        if (u->pending == 0)
            break;
        u->pending = 0;
        io_uring_cq_eventfd_toggle(&u->ring, false);
        io_uring_submit(&u->ring);
        io_uring_cq_eventfd_toggle(&u->ring, true);
        if (io_uring_cq_ready(&u->ring) > 0)
            reap(u);
    }
    /* Still more queued, or buffers back for a waiter: go on next
     * iteration, without blocking. */
    if (u->pending > 0 || (u->bufs_back && u->waiters != NULL))
        ev_idle_start(loop, &u->w_idle);
}

/* Kernels before 6.0 lack multishot receive (buffer rings: 5.19). */
static bool kernel_ok(char *why, size_t whylen)
{
    struct utsname un;
    int major = 0, minor = 0;
    if (uname(&un) == 0 && sscanf(un.release, "%d.%d", &major, &minor) == 2 &&
        (major > 6 || (major == 6 && minor >= 0)))
        return true;
    snprintf(why, whylen, "kernel %s is older than 6.0 (no multishot receive)", un.release);
    return false;
}

static void uring_free(struct uring *u)
{
    if (u->br != NULL)
        munmap(u->br, u->br_bytes);
    free(u->bufs);
    free(u->seg_len);
    free(u->seg_next);
    free(u);
}

struct uring *uring_open(struct ev_loop *loop, unsigned nbufs, uint32_t buf_size,
                         uring_done_fn done, uring_wake_fn wake, char *why, size_t whylen)
{
    SLUICE_ASSERT(nbufs > 0 && (nbufs & (nbufs - 1)) == 0 && nbufs <= 32768);
    if (!kernel_ok(why, whylen))
        return NULL;
    struct uring *u = calloc(1, sizeof(*u));
    if (u == NULL) {
        snprintf(why, whylen, "out of memory");
        return NULL;
    }
    u->loop = loop;
    u->done = done;
    u->wake = wake;
    u->nbufs = nbufs;
    u->buf_size = buf_size;
    u->efd = -1;
    /* COOP_TASKRUN (5.19): completions are run when the worker next
     * enters the kernel rather than by interrupting it; it only sleeps in
     * epoll_wait, which their wakeup still ends. Retried without on a
     * kernel that does not know the flag. */
    struct io_uring_params params = {.flags = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL};
    int rc = io_uring_queue_init_params(URING_ENTRIES, &u->ring, &params);
    if (rc == -EINVAL) {
        params = (struct io_uring_params){0};
        rc = io_uring_queue_init_params(URING_ENTRIES, &u->ring, &params);
    }
    if (rc < 0) {
        snprintf(why, whylen, "io_uring_setup: %s%s", strerror(-rc),
                 rc == -EPERM ? " (see sysctl kernel.io_uring_disabled)" : "");
        uring_free(u);
        return NULL;
    }
    u->br_bytes = nbufs * sizeof(struct io_uring_buf);
    u->br = mmap(NULL, u->br_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (u->br == MAP_FAILED)
        u->br = NULL;
    u->bufs = malloc((size_t)nbufs * buf_size);
    u->seg_len = calloc(nbufs, sizeof(*u->seg_len));
    u->seg_next = calloc(nbufs, sizeof(*u->seg_next));
    if (u->br == NULL || u->bufs == NULL || u->seg_len == NULL || u->seg_next == NULL) {
        snprintf(why, whylen, "out of memory for %u buffers of %u bytes", nbufs, buf_size);
        goto fail;
    }
    /* The kernel fills the buffers in ring order and they go back to its
     * tail, so any steady traffic touches all of them: fault them in now,
     * so the ring is resident (and counted) from the start, not a slow
     * growth later. */
    memset(u->bufs, 0, (size_t)nbufs * buf_size);
    io_uring_buf_ring_init(u->br);
    struct io_uring_buf_reg reg = {
        .ring_addr = (uint64_t)(uintptr_t)u->br, .ring_entries = nbufs, .bgid = URING_BGID};
    rc = io_uring_register_buf_ring(&u->ring, &reg, 0);
    if (rc < 0) {
        snprintf(why, whylen, "registering the buffer ring: %s", strerror(-rc));
        goto fail;
    }
    for (unsigned i = 0; i < nbufs; i++)
        buf_add(u, (int)i);
    u->segs = (struct uring_segs){u->seg_len, u->seg_next, seg_put, u};
    u->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (u->efd < 0 || (rc = io_uring_register_eventfd(&u->ring, u->efd)) < 0) {
        snprintf(why, whylen, "eventfd: %s", strerror(u->efd < 0 ? errno : -rc));
        goto fail;
    }
    ev_io_init(&u->w_event, event_cb, u->efd, EV_READ);
    ev_io_start(loop, &u->w_event);
    ev_idle_init(&u->w_idle, idle_cb);
    ev_prepare_init(&u->w_prepare, prepare_cb);
    ev_prepare_start(loop, &u->w_prepare);
    /* Neither watcher alone should keep the loop running. */
    ev_unref(loop);
    ev_unref(loop);
    return u;
fail:
    if (u->efd >= 0)
        close(u->efd);
    io_uring_queue_exit(&u->ring);
    uring_free(u);
    return NULL;
}

void uring_close(struct uring *u)
{
    if (u == NULL)
        return;
    /* Sessions that ended with operations in flight are freed by their
     * last completion: submit their cancels and reap until none is owed. */
    for (int waited = 0; u->owed > 0 && waited < URING_DRAIN_MS; waited += 10) {
        u->pending = 0;
        io_uring_submit(&u->ring);
        struct io_uring_cqe *cqe;
        struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = 10 * 1000000};
        if (io_uring_wait_cqe_timeout(&u->ring, &cqe, &ts) == 0)
            reap(u);
    }
    ev_ref(u->loop);
    ev_ref(u->loop);
    ev_io_stop(u->loop, &u->w_event);
    ev_prepare_stop(u->loop, &u->w_prepare);
    ev_idle_stop(u->loop, &u->w_idle);
    io_uring_queue_exit(&u->ring);
    close(u->efd);
    uring_free(u);
}

#else /* !SLUICE_HAVE_URING */

bool uring_compiled(void)
{
    return false;
}

struct uring *uring_open(struct ev_loop *loop, unsigned nbufs, uint32_t buf_size,
                         uring_done_fn done, uring_wake_fn wake, char *why, size_t whylen)
{
    snprintf(why, whylen, "this sluice was built without io_uring support (liburing)");
    return NULL;
}

void uring_close(struct uring *u)
{
}

/* Never called: there is no ring to call them with. */
uint32_t uring_buf_size(const struct uring *u)
{
    return 0;
}

unsigned uring_nbufs(const struct uring *u)
{
    return 0;
}

bool uring_recv(struct uring *u, int fd, void *obj, unsigned tag)
{
    return false;
}

bool uring_send(struct uring *u, int fd, const void *p, size_t len, int flags, void *obj,
                unsigned tag)
{
    return false;
}

const void *uring_buf_data(const struct uring *u, int bid)
{
    return NULL;
}

bool uring_cancel(struct uring *u, void *obj, unsigned tag, unsigned ctag)
{
    return false;
}

void uring_buf_put(struct uring *u, int bid)
{
}

void uring_q_push(struct uring *u, struct uring_q *q, int bid, uint32_t len)
{
}

size_t uring_q_peek(struct uring *u, const struct uring_q *q, const void **p)
{
    return 0;
}

void uring_q_consume(struct uring *u, struct uring_q *q, size_t n)
{
}

void uring_q_clear(struct uring *u, struct uring_q *q)
{
}

void uring_wait_bufs(struct uring *u, struct uring_waiter *wt)
{
}

void uring_unwait(struct uring *u, struct uring_waiter *wt)
{
}

#endif
