/* uring-t.h - relay = uring types embedded by sessions (see uring.h). */
#ifndef SLUICE_URING_T_H
#define SLUICE_URING_T_H

#include "sluice/relay-t.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Received buffers of one direction waiting to be sent, in arrival order:
 * a list of buffer ids linked through the ring's segment table (a buffer
 * is in at most one queue, so the table needs one slot per buffer). */
struct uring_q {
    int32_t head, tail; /* buffer ids; -1: empty */
    uint32_t off;       /* bytes of the head buffer already sent */
    size_t len;         /* bytes queued (received, not yet sent) */
};

/* One direction's operations on the ring. Received bytes wait either in
 * ring buffers (q: the fast path, sent straight from where the kernel put
 * them) or, once the destination pushed back, copied into the direction's
 * block chain (as copy mode's), so a slow reader never holds the
 * worker's shared ring buffers; at most one of the two is non-empty. */
struct uring_dir {
    struct uring_q q;
    struct buf_block *send_blk; /* the chain block under the send in flight; NULL: q's head */
    uint32_t send_len;          /* bytes that send asked for */
    bool recv_armed;            /* a multishot receive on src is in flight */
    bool recv_cancel;           /* ... and a cancel for it was asked (backpressure) */
    bool send_busy;             /* a send to dst is in flight (one at a time: order) */
    bool starved;               /* the receive ended ENOBUFS: re-armed when buffers return */
    bool blk_detached; /* the session ended: send_blk is off the chain, freed by its completion */
};

/* A session waiting for buffers to come back to the ring. */
struct uring_waiter {
    struct uring_waiter *prev, *next;
    bool waiting;
};

/* The per-session part: present in every session, used only when the
 * session relays through the ring. */
struct uring_sess {
    bool on;           /* relaying through the worker's ring */
    uint16_t inflight; /* operations submitted and not yet completed */
    struct uring_waiter wait;
};

#endif
