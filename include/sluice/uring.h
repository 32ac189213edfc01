/* uring.h - relay = uring: one io_uring per worker, driven from its libev
 * loop. Receives are multishot into a ring of provided buffers (so an idle
 * connection pins none); received buffers wait in a per-direction queue
 * until a send has delivered them, then go back to the ring.
 *
 * The ring knows nothing about sessions: every operation carries an
 * object pointer and a small tag, and each completion is handed to the
 * `done` callback given to uring_open(). Submissions are batched: one
 * io_uring_submit() per loop iteration (an ev_prepare watcher), and the
 * completions are reaped when the ring's eventfd (an ev_io) is readable.
 *
 * Without liburing at build time (meson -During=disabled, or not found)
 * uring_compiled() is false and uring_open() always fails; the queue
 * functions below are pure and always built. */
#ifndef SLUICE_URING_H
#define SLUICE_URING_H

#include "sluice/uring-t.h"

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct uring;

/* Tags fit in the low bits of an 8-byte aligned object pointer. */
#define URING_TAG_BITS 3
#define URING_TAG_MASK ((1u << URING_TAG_BITS) - 1)

static inline uint64_t uring_pack(void *obj, unsigned tag)
{
    return (uint64_t)(uintptr_t)obj | (tag & URING_TAG_MASK);
}

static inline void *uring_unpack(uint64_t ud, unsigned *tag)
{
    *tag = (unsigned)(ud & URING_TAG_MASK);
    return (void *)(uintptr_t)(ud & ~(uint64_t)URING_TAG_MASK);
}

/* One completion, as given to the `done` callback. */
struct uring_done {
    void *obj;
    unsigned tag;
    int res;   /* bytes, 0 (EOF), or -errno */
    int bid;   /* receive: the buffer the bytes are in; -1: none */
    bool more; /* a multishot receive stays armed */
};

typedef void (*uring_done_fn)(struct uring *u, const struct uring_done *d);
/* wt (queued by uring_wait_bufs()) may now receive again: buffers came
 * back to the ring. It is off the waiting list when this is called. */
typedef void (*uring_wake_fn)(struct uring *u, struct uring_waiter *wt);

/* Built with liburing? */
bool uring_compiled(void);

/* A ring for one worker's loop, with a ring of nbufs (a power of two)
 * provided buffers of buf_size bytes. NULL on failure with why (a short
 * sentence) filled: not built in, kernel too old, io_uring disabled
 * (sysctl kernel.io_uring_disabled), out of memory. */
struct uring *uring_open(struct ev_loop *loop, unsigned nbufs, uint32_t buf_size,
                         uring_done_fn done, uring_wake_fn wake, char *why, size_t whylen);

/* Submit what is pending, reap every completion still owed (handing
 * them to `done`, within a bounded wait), stop the watchers, free all.
 * NULL is fine. */
void uring_close(struct uring *u);

uint32_t uring_buf_size(const struct uring *u);
unsigned uring_nbufs(const struct uring *u);

/* Queue operations (submitted with the loop's next iteration). Each
 * returns false only when the ring cannot take it (ENOMEM-like). */
bool uring_recv(struct uring *u, int fd, void *obj, unsigned tag);
/* flags: added to MSG_NOSIGNAL (MSG_DONTWAIT: complete at once with
 * -EAGAIN or a short count rather than wait for room). */
bool uring_send(struct uring *u, int fd, const void *p, size_t len, int flags, void *obj,
                unsigned tag);
/* Cancel the operations carrying (obj, tag); the cancel itself completes
 * with (obj, ctag). */
bool uring_cancel(struct uring *u, void *obj, unsigned tag, unsigned ctag);

/* The bytes of buffer bid. */
const void *uring_buf_data(const struct uring *u, int bid);

/* A buffer from a completion that is not queued: back to the ring. */
void uring_buf_put(struct uring *u, int bid);

/* The direction's queue of received buffers. */
void uring_q_init(struct uring_q *q);
void uring_q_push(struct uring *u, struct uring_q *q, int bid, uint32_t len);
/* The first unsent bytes: their address in *p, their length returned (0:
 * empty). */
size_t uring_q_peek(struct uring *u, const struct uring_q *q, const void **p);
/* n bytes were sent (n <= the length uring_q_peek() gave): emptied
 * buffers go back to the ring. */
void uring_q_consume(struct uring *u, struct uring_q *q, size_t n);
/* Every queued buffer back to the ring. */
void uring_q_clear(struct uring *u, struct uring_q *q);

/* Wait for buffers (after ENOBUFS); unwait when the session ends. */
void uring_wait_bufs(struct uring *u, struct uring_waiter *wt);
void uring_unwait(struct uring *u, struct uring_waiter *wt);

/* The queue over a plain segment table, for the unit tests: len[bid] and
 * next[bid] per buffer; put(ctx, bid) is called for every buffer that
 * leaves the queue. uring_q_* above use the ring's own table. */
struct uring_segs {
    uint32_t *len;
    int32_t *next;
    void (*put)(void *ctx, int bid);
    void *ctx;
};
void uring_segs_push(struct uring_segs *t, struct uring_q *q, int bid, uint32_t len);
size_t uring_segs_head(const struct uring_segs *t, const struct uring_q *q, int *bid,
                       uint32_t *off);
void uring_segs_consume(struct uring_segs *t, struct uring_q *q, size_t n);
void uring_segs_clear(struct uring_segs *t, struct uring_q *q);

#endif
