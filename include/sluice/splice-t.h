/* splice-t.h - pipe types embedded by sessions and workers (see splice.h). */
#ifndef SLUICE_SPLICE_T_H
#define SLUICE_SPLICE_T_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pipebuf {
    int rfd, wfd;  /* -1 when no pipe is held */
    uint32_t len;  /* bytes sitting in the pipe */
    uint32_t cap;  /* what the pipe can hold (the kernel may refuse a resize) */
    /* The kernel fills a pipe by page slots, not bytes: small segments (a
     * 1500-byte MTU) use up every slot long before len reaches cap. Set
     * when a splice into a non-empty pipe found no room; cleared when the
     * pipe drains. While set the pipe counts as full, so the source is not
     * polled (it would stay readable and spin the worker). */
    bool full;
};

struct pipe_pool {
    struct pipebuf *cache;
    int n, max;
    size_t pipe_size; /* F_SETPIPE_SZ target (max_buffer) */
    size_t live;      /* pipes handed out */
};

#endif
