/* splice.h - zero-copy relay: bytes move socket -> pipe -> socket with
 * splice(2) and never enter user space. Pipes come from a per-worker cache
 * and go back to it as soon as they are empty, so an idle session holds
 * none. */
#ifndef SLUICE_SPLICE_H
#define SLUICE_SPLICE_H

#include "sluice/splice-t.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

void pipe_pool_init(struct pipe_pool *p, int max_cached, size_t pipe_size);
void pipe_pool_destroy(struct pipe_pool *p);

static inline void pipebuf_init(struct pipebuf *b)
{
    b->rfd = b->wfd = -1;
    b->len = b->cap = 0;
    b->full = false;
}

/* Bytes the pipe can still take, as far as sluice can tell. */
static inline uint32_t pipebuf_room(const struct pipebuf *b)
{
    return b->full || b->len >= b->cap ? 0 : b->cap - b->len;
}

/* Splice up to `room` bytes from src into the pipe (taking one from the
 * pool first if needed). Returns bytes moved, 0 on EOF, -1 with errno
 * (EAGAIN: nothing to read now, or no free slot in a non-empty pipe, which
 * then counts as full; ENOMEM/EMFILE: no pipe could be had). */
ssize_t pipebuf_fill(struct pipebuf *b, struct pipe_pool *p, int src, size_t room, bool *drained);

/* Splice what the pipe holds to dst. Returns bytes moved or -1 with
 * errno. An emptied pipe goes back to the pool. */
ssize_t pipebuf_drain(struct pipebuf *b, struct pipe_pool *p, int dst);

/* Release the pipe: back to the pool if empty, closed otherwise. */
void pipebuf_release(struct pipebuf *b, struct pipe_pool *p);

#endif
