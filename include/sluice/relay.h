/* relay.h - the relay buffer: a chain of fixed-size blocks from a
 * per-worker pool, filled with readv() and drained with writev().
 *
 * A chain never holds more than the cap its caller passes to
 * bufchain_readv(); an empty chain holds no blocks at all. */
#ifndef SLUICE_RELAY_H
#define SLUICE_RELAY_H

#include "sluice/relay-t.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

void buf_pool_init(struct buf_pool *p, uint32_t block_size, size_t max_free);
/* Frees the free list; blocks still in chains must be returned first. */
void buf_pool_destroy(struct buf_pool *p);
/* Change the size of blocks handed out from now on (a reload). */
void buf_pool_resize(struct buf_pool *p, uint32_t block_size);
struct buf_block *buf_pool_get(struct buf_pool *p);
void buf_pool_put(struct buf_pool *p, struct buf_block *b);

/* Read from fd into the chain, at most `room` bytes, in one readv().
 * Returns bytes read, 0 on EOF, -1 with errno set (EAGAIN included).
 * *drained is set when the read came back short: the socket is empty
 * and another read now would only return EAGAIN. ENOMEM when no block
 * could be allocated. */
ssize_t bufchain_readv(struct bufchain *c, struct buf_pool *p, int fd, size_t room,
                       bool *drained);

/* Write as much of the chain to fd as the kernel takes, in one writev().
 * Returns bytes written or -1 with errno set; sent blocks go back to p. */
ssize_t bufchain_writev(struct bufchain *c, struct buf_pool *p, int fd);

/* Drop the first n bytes (n <= c->len), returning emptied blocks. */
void bufchain_drop(struct bufchain *c, struct buf_pool *p, size_t n);

/* Copy n bytes to the end of the chain (filling the tail block, then
 * fresh ones). False when a block could not be allocated: what was
 * copied stays. */
bool bufchain_append(struct bufchain *c, struct buf_pool *p, const void *data, size_t n);

/* Return every block to the pool. */
void bufchain_clear(struct bufchain *c, struct buf_pool *p);

static inline bool bufchain_empty(const struct bufchain *c)
{
    return c->len == 0;
}

#endif
