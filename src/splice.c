/* splice.c - socket -> pipe -> socket relay and the per-worker pipe cache. */
#include "sluice/splice.h"
#include "sluice/common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

void pipe_pool_init(struct pipe_pool *p, int max_cached, size_t pipe_size)
{
    p->cache = NULL;
    p->n = 0;
    p->max = max_cached;
    p->pipe_size = pipe_size;
    p->live = 0;
}

void pipe_pool_destroy(struct pipe_pool *p)
{
    for (int i = 0; i < p->n; i++) {
        close(p->cache[i].rfd);
        close(p->cache[i].wfd);
    }
    free(p->cache);
    p->cache = NULL;
    p->n = 0;
}

static int pipe_take(struct pipebuf *b, struct pipe_pool *p)
{
    if (p->n > 0) {
        *b = p->cache[--p->n];
    } else {
        int fds[2];
        if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0)
            return -1;
        /* A bigger pipe moves more per splice; the default (64 KiB) is
         * kept if the system limit refuses it. */
        if (p->pipe_size > 65536)
            (void)fcntl(fds[1], F_SETPIPE_SZ, (int)p->pipe_size);
        int cap = fcntl(fds[1], F_GETPIPE_SZ);
        b->rfd = fds[0];
        b->wfd = fds[1];
        b->len = 0;
        b->full = false;
        b->cap = cap > 0 ? (uint32_t)cap : 4096;
    }
    p->live++;
    return 0;
}

void pipebuf_release(struct pipebuf *b, struct pipe_pool *p)
{
    if (b->rfd < 0)
        return;
    p->live--;
    if (b->len == 0 && p->n < p->max) {
        if (p->cache == NULL && (p->cache = calloc((size_t)p->max, sizeof(*p->cache))) == NULL)
            goto close_it;
        p->cache[p->n++] = *b;
        pipebuf_init(b);
        return;
    }
close_it:
    close(b->rfd);
    close(b->wfd);
    pipebuf_init(b);
}

ssize_t pipebuf_fill(struct pipebuf *b, struct pipe_pool *p, int src, size_t room, bool *drained)
{
    *drained = false;
    if (b->rfd < 0 && pipe_take(b, p) < 0)
        return -1;
    if (room > pipebuf_room(b))
        room = pipebuf_room(b);
    if (room == 0)
        return (errno = EAGAIN), -1; /* full: a 0-byte splice would look like EOF */
    ssize_t n = splice(src, NULL, b->wfd, NULL, room, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n > 0) {
        b->len += (uint32_t)n;
        *drained = (size_t)n < room;
    } else if (n < 0 && errno == EAGAIN && b->len > 0) {
        /* Either src has nothing (then reading waits for the drain, which
         * is under way) or every slot is taken: count the pipe as full
         * (HAProxy reads this EAGAIN the same way). */
        b->full = true;
    } else if (n < 0 && errno == EAGAIN && b->len == 0) {
        /* Nothing came: give the pipe back rather than hold it idle. */
        int saved = errno;
        pipebuf_release(b, p);
        errno = saved;
    }
    return n;
}

ssize_t pipebuf_drain(struct pipebuf *b, struct pipe_pool *p, int dst)
{
    if (b->len == 0)
        return 0;
    ssize_t n = splice(b->rfd, NULL, dst, NULL, b->len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n > 0) {
        b->len -= (uint32_t)n;
        b->full = false; /* slots were freed */
        if (b->len == 0)
            pipebuf_release(b, p);
    }
    return n;
}
