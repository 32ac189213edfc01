/* relay.c - block pool and buffer chain moved with readv/writev. */
#include "sluice/relay.h"
#include "sluice/common.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

/* One readv/writev touches at most this many blocks (256 KiB at 16 KiB). */
#define RELAY_MAX_IOV 64

void buf_pool_init(struct buf_pool *p, uint32_t block_size, size_t max_free)
{
    p->free = NULL;
    p->block_size = block_size;
    p->nfree = 0;
    p->max_free = max_free;
    p->live = 0;
}

void buf_pool_destroy(struct buf_pool *p)
{
    while (p->free) {
        struct buf_block *b = p->free;
        p->free = b->next;
        free(b);
    }
    p->nfree = 0;
}

void buf_pool_resize(struct buf_pool *p, uint32_t block_size)
{
    if (block_size == p->block_size)
        return;
    buf_pool_destroy(p);
    p->block_size = block_size;
}

struct buf_block *buf_pool_get(struct buf_pool *p)
{
    struct buf_block *b = p->free;
    if (b != NULL) {
        p->free = b->next;
        p->nfree--;
    } else {
        b = malloc(sizeof(*b) + p->block_size);
        if (b == NULL)
            return NULL;
        b->cap = p->block_size;
    }
    b->next = NULL;
    b->start = b->end = 0;
    p->live++;
    return b;
}

void buf_pool_put(struct buf_pool *p, struct buf_block *b)
{
    SLUICE_ASSERT(p->live > 0);
    p->live--;
    /* Blocks of an old size (after a reload) or beyond the cache go back. */
    if (b->cap != p->block_size || p->nfree >= p->max_free) {
        free(b);
        return;
    }
    b->next = p->free;
    p->free = b;
    p->nfree++;
}

ssize_t bufchain_readv(struct bufchain *c, struct buf_pool *p, int fd, size_t room,
                       bool *drained)
{
    struct iovec iov[RELAY_MAX_IOV];
    struct buf_block *fresh[RELAY_MAX_IOV];
    int niov = 0, nfresh = 0;
    size_t want = 0;
    bool use_tail = false;

    *drained = false;
    if (room == 0)
        return (errno = ENOBUFS), -1;
    if (c->tail != NULL && c->tail->end < c->tail->cap) {
        size_t n = c->tail->cap - c->tail->end;
        if (n > room)
            n = room;
        iov[niov].iov_base = c->tail->data + c->tail->end;
        iov[niov++].iov_len = n;
        want += n;
        use_tail = true;
    }
    while (want < room && niov < RELAY_MAX_IOV) {
        struct buf_block *b = buf_pool_get(p);
        if (b == NULL)
            break;
        size_t n = b->cap;
        if (n > room - want)
            n = room - want;
        fresh[nfresh++] = b;
        iov[niov].iov_base = b->data;
        iov[niov++].iov_len = n;
        want += n;
    }
    if (niov == 0)
        return (errno = ENOMEM), -1;

    /* One iovec (the usual request/response case): plain read() skips
     * the kernel's iovec import. */
    ssize_t got = niov == 1 ? read(fd, iov[0].iov_base, iov[0].iov_len) : readv(fd, iov, niov);
    int saved = errno;
    size_t left = got > 0 ? (size_t)got : 0;
    int i = 0;
    if (use_tail) {
        size_t n = left < iov[0].iov_len ? left : iov[0].iov_len;
        c->tail->end += (uint32_t)n;
        left -= n;
        i = 1;
    }
    for (int f = 0; f < nfresh; f++, i++) {
        struct buf_block *b = fresh[f];
        if (left == 0) {
            buf_pool_put(p, b);
            continue;
        }
        size_t n = left < iov[i].iov_len ? left : iov[i].iov_len;
        b->end = (uint32_t)n;
        left -= n;
        if (c->tail)
            c->tail->next = b;
        else
            c->head = b;
        c->tail = b;
    }
    if (got > 0) {
        c->len += (size_t)got;
        *drained = (size_t)got < want;
    }
    errno = saved;
    return got;
}

ssize_t bufchain_writev(struct bufchain *c, struct buf_pool *p, int fd)
{
    struct iovec iov[RELAY_MAX_IOV];
    int niov = 0;
    for (struct buf_block *b = c->head; b != NULL && niov < RELAY_MAX_IOV; b = b->next) {
        if (b->end == b->start)
            continue;
        iov[niov].iov_base = b->data + b->start;
        iov[niov++].iov_len = b->end - b->start;
    }
    if (niov == 0)
        return 0;
    ssize_t n = niov == 1 ? write(fd, iov[0].iov_base, iov[0].iov_len) : writev(fd, iov, niov);
    if (n > 0)
        bufchain_drop(c, p, (size_t)n);
    return n;
}

void bufchain_drop(struct bufchain *c, struct buf_pool *p, size_t n)
{
    SLUICE_ASSERT(n <= c->len);
    c->len -= n;
    while (n > 0 && c->head != NULL) {
        struct buf_block *b = c->head;
        size_t have = b->end - b->start;
        if (n < have) {
            b->start += (uint32_t)n;
            return;
        }
        n -= have;
        c->head = b->next;
        if (c->head == NULL)
            c->tail = NULL;
        buf_pool_put(p, b);
    }
}

bool bufchain_append(struct bufchain *c, struct buf_pool *p, const void *data, size_t n)
{
    const char *src = data;
    while (n > 0) {
        struct buf_block *b = c->tail;
        if (b == NULL || b->end == b->cap) {
            if ((b = buf_pool_get(p)) == NULL)
                return false;
            if (c->tail)
                c->tail->next = b;
            else
                c->head = b;
            c->tail = b;
        }
        size_t k = b->cap - b->end;
        if (k > n)
            k = n;
        memcpy(b->data + b->end, src, k);
        b->end += (uint32_t)k;
        c->len += k;
        src += k;
        n -= k;
    }
    return true;
}

void bufchain_clear(struct bufchain *c, struct buf_pool *p)
{
    while (c->head != NULL) {
        struct buf_block *b = c->head;
        c->head = b->next;
        buf_pool_put(p, b);
    }
    c->tail = NULL;
    c->len = 0;
}
