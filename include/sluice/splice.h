/* splice.h - zero-copy relay: bytes move socket -> pipe -> socket with
 * splice(2) and never enter user space. Pipes come from a per-worker cache
 * and go back to it as soon as they are empty, so an idle session holds
 * none. */
#ifndef SLUICE_SPLICE_H
#define SLUICE_SPLICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct pipebuf {
    int rfd, wfd;  /* -1 when no pipe is held */
    uint32_t len;  /* bytes sitting in the pipe */
    uint32_t cap;  /* what the pipe can hold (the kernel may refuse a resize) */
};

struct pipe_pool {
    struct pipebuf *cache;
    int n, max;
    size_t pipe_size; /* F_SETPIPE_SZ target (max_buffer) */
    size_t live;      /* pipes handed out */
};

void pipe_pool_init(struct pipe_pool *p, int max_cached, size_t pipe_size);
void pipe_pool_destroy(struct pipe_pool *p);

static inline void pipebuf_init(struct pipebuf *b)
{
    b->rfd = b->wfd = -1;
    b->len = b->cap = 0;
}

/* Splice up to `room` bytes from src into the pipe (taking one from the
 * pool first if needed). Returns bytes moved, 0 on EOF, -1 with errno
 * (EAGAIN: nothing to read now; ENOMEM/EMFILE: no pipe could be had). */
ssize_t pipebuf_fill(struct pipebuf *b, struct pipe_pool *p, int src, size_t room, bool *drained);

/* Splice what the pipe holds to dst. Returns bytes moved or -1 with
 * errno. An emptied pipe goes back to the pool. */
ssize_t pipebuf_drain(struct pipebuf *b, struct pipe_pool *p, int dst);

/* Release the pipe: back to the pool if empty, closed otherwise. */
void pipebuf_release(struct pipebuf *b, struct pipe_pool *p);

#endif
