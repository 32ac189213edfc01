/* relay-t.h - relay buffer types embedded by sessions and workers (see
 * relay.h). */
#ifndef SLUICE_RELAY_T_H
#define SLUICE_RELAY_T_H

#include <stddef.h>
#include <stdint.h>

struct buf_block {
    struct buf_block *next;
    uint32_t start; /* first unsent byte */
    uint32_t end;   /* one past the last received byte */
    uint32_t cap;   /* size of data[] */
    char data[];
};

/* Free list of blocks of one size; owned by one worker, no locking. */
struct buf_pool {
    struct buf_block *free;
    uint32_t block_size;
    size_t nfree;
    size_t max_free; /* blocks kept for reuse; more are returned to malloc */
    size_t live;     /* blocks handed out and not yet returned */
};

struct bufchain {
    struct buf_block *head, *tail;
    size_t len; /* bytes buffered */
};

#endif
