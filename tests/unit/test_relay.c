/* test_relay.c - the relay buffer (relay.h): block pool and buffer chain,
 * over real non-blocking AF_UNIX socketpairs, and a several-MiB transfer
 * driven by a real ev_loop with the same interest rules a session uses. */
#include "unit.h"

#include "sluice/common.h"
#include "sluice/relay.h"

#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- helpers ---- */

static bool pair_open(int sv[2])
{
    return socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0;
}

static void pair_close(int sv[2])
{
    if (sv[0] >= 0)
        close(sv[0]);
    if (sv[1] >= 0)
        close(sv[1]);
    sv[0] = sv[1] = -1;
}

/* Deterministic test bytes: byte i of stream `seed`. */
static unsigned char pat(uint32_t seed, size_t i)
{
    uint64_t x = (uint64_t)i * 0x9E3779B97F4A7C15ULL + seed;
    x ^= x >> 29;
    x *= 0xBF58476D1CE4E5B9ULL;
    return (unsigned char)(x >> 56);
}

static void pat_fill(char *buf, size_t n, uint32_t seed, size_t off)
{
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)pat(seed, off + i);
}

/* Write n pattern bytes (starting at stream offset off) into a socket that
 * has room for them. */
static bool put(int fd, size_t n, uint32_t seed, size_t off)
{
    char *buf = malloc(n ? n : 1);
    if (buf == NULL)
        return false;
    pat_fill(buf, n, seed, off);
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(fd, buf + done, n - done);
        if (w <= 0)
            break;
        done += (size_t)w;
    }
    free(buf);
    return done == n;
}

/* Read everything the socket has now (non-blocking) into out. */
static size_t take(int fd, char *out, size_t max)
{
    size_t got = 0;
    while (got < max) {
        ssize_t r = read(fd, out + got, max - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    return got;
}

static size_t chain_blocks(const struct bufchain *c)
{
    size_t n = 0;
    for (const struct buf_block *b = c->head; b != NULL; b = b->next)
        n++;
    return n;
}

/* The chain's bytes, in order; also checks its own bookkeeping. */
static size_t chain_copy(const struct bufchain *c, char *out, size_t max)
{
    size_t n = 0;
    const struct buf_block *last = NULL;
    for (const struct buf_block *b = c->head; b != NULL; b = b->next) {
        CHECK(b->start < b->end); /* no empty blocks in a chain */
        CHECK(b->end <= b->cap);
        size_t len = b->end - b->start;
        if (n + len <= max)
            memcpy(out + n, b->data + b->start, len);
        n += len;
        last = b;
    }
    CHECK(c->tail == last);
    CHECK_EQ_INT(n, c->len);
    return n;
}

static bool chain_matches(const struct bufchain *c, uint32_t seed, size_t off)
{
    char *buf = malloc(c->len + 1);
    if (buf == NULL)
        return false;
    size_t n = chain_copy(c, buf, c->len);
    bool ok = n == c->len;
    for (size_t i = 0; ok && i < n; i++)
        ok = (unsigned char)buf[i] == pat(seed, off + i);
    free(buf);
    return ok;
}

static bool bytes_match(const char *buf, size_t n, uint32_t seed, size_t off)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)buf[i] != pat(seed, off + i))
            return false;
    return true;
}

static size_t free_list_len(const struct buf_pool *p)
{
    size_t n = 0;
    for (const struct buf_block *b = p->free; b != NULL; b = b->next)
        n++;
    return n;
}

/* ---- pool ---- */

static void test_pool_get_put(void)
{
    struct buf_pool p;
    buf_pool_init(&p, 1024, 8);
    CHECK_EQ_INT(p.live, 0);
    CHECK_EQ_INT(p.nfree, 0);
    struct buf_block *a = buf_pool_get(&p);
    struct buf_block *b = buf_pool_get(&p);
    REQUIRE(a != NULL && b != NULL);
    CHECK(a != b);
    CHECK_EQ_INT(a->cap, 1024);
    CHECK_EQ_INT(a->start, 0);
    CHECK_EQ_INT(a->end, 0);
    CHECK(a->next == NULL);
    CHECK_EQ_INT(p.live, 2);
    memset(a->data, 'a', a->cap); /* the whole data[] is ours */
    a->start = 3, a->end = 9;
    buf_pool_put(&p, a);
    CHECK_EQ_INT(p.live, 1);
    CHECK_EQ_INT(p.nfree, 1);
    /* Reuse: the same block comes back, reset. */
    struct buf_block *c = buf_pool_get(&p);
    CHECK(c == a);
    CHECK_EQ_INT(c->start, 0);
    CHECK_EQ_INT(c->end, 0);
    CHECK(c->next == NULL);
    CHECK_EQ_INT(p.nfree, 0);
    buf_pool_put(&p, b);
    buf_pool_put(&p, c);
    CHECK_EQ_INT(p.live, 0);
    CHECK_EQ_INT(p.nfree, 2);
    buf_pool_destroy(&p);
    CHECK(p.free == NULL);
    CHECK_EQ_INT(p.nfree, 0);
}

static void test_pool_max_free(void)
{
    struct buf_pool p;
    struct buf_block *b[10];
    buf_pool_init(&p, 512, 3);
    for (int i = 0; i < 10; i++)
        REQUIRE((b[i] = buf_pool_get(&p)) != NULL);
    CHECK_EQ_INT(p.live, 10);
    for (int i = 0; i < 10; i++) {
        buf_pool_put(&p, b[i]);
        CHECK(p.nfree <= 3);
    }
    /* Only max_free blocks are cached; the rest went back to malloc (ASan
     * would report them as leaks otherwise). */
    CHECK_EQ_INT(p.live, 0);
    CHECK_EQ_INT(p.nfree, 3);
    CHECK_EQ_INT(free_list_len(&p), 3);
    buf_pool_destroy(&p);

    /* max_free 0: nothing is cached at all. */
    buf_pool_init(&p, 512, 0);
    for (int i = 0; i < 4; i++)
        REQUIRE((b[i] = buf_pool_get(&p)) != NULL);
    for (int i = 0; i < 4; i++)
        buf_pool_put(&p, b[i]);
    CHECK_EQ_INT(p.nfree, 0);
    CHECK(p.free == NULL);
    CHECK_EQ_INT(p.live, 0);
    buf_pool_destroy(&p);
}

static void test_pool_resize(void)
{
    struct buf_pool p;
    struct buf_block *b[4];
    buf_pool_init(&p, 1024, 16);
    for (int i = 0; i < 4; i++)
        REQUIRE((b[i] = buf_pool_get(&p)) != NULL);
    buf_pool_put(&p, b[0]);
    CHECK_EQ_INT(p.nfree, 1);

    /* Same size: nothing changes, the cache stays. */
    buf_pool_resize(&p, 1024);
    CHECK_EQ_INT(p.nfree, 1);
    CHECK_EQ_INT(p.block_size, 1024);

    /* New size: cached old blocks are freed at once ... */
    buf_pool_resize(&p, 4096);
    CHECK_EQ_INT(p.block_size, 4096);
    CHECK_EQ_INT(p.nfree, 0);
    CHECK(p.free == NULL);
    CHECK_EQ_INT(p.live, 3);
    /* ... old blocks still in use go back to malloc when returned ... */
    for (int i = 1; i < 4; i++)
        buf_pool_put(&p, b[i]);
    CHECK_EQ_INT(p.live, 0);
    CHECK_EQ_INT(p.nfree, 0);
    CHECK(p.free == NULL);
    /* ... and new blocks have the new size and are cached again. */
    struct buf_block *n = buf_pool_get(&p);
    REQUIRE(n != NULL);
    CHECK_EQ_INT(n->cap, 4096);
    memset(n->data, 'n', 4096);
    buf_pool_put(&p, n);
    CHECK_EQ_INT(p.nfree, 1);
    CHECK_EQ_INT(p.free->cap, 4096);

    /* Shrinking works the same way. */
    b[0] = buf_pool_get(&p);
    REQUIRE(b[0] != NULL);
    CHECK_EQ_INT(b[0]->cap, 4096);
    buf_pool_resize(&p, 2048);
    buf_pool_put(&p, b[0]);
    CHECK_EQ_INT(p.nfree, 0);
    b[0] = buf_pool_get(&p);
    REQUIRE(b[0] != NULL);
    CHECK_EQ_INT(b[0]->cap, 2048);
    buf_pool_put(&p, b[0]);
    for (const struct buf_block *f = p.free; f != NULL; f = f->next)
        CHECK_EQ_INT(f->cap, 2048);
    buf_pool_destroy(&p);
}

/* A chain that holds a block of the old size keeps working across a resize:
 * its tail is still filled up to its own capacity. */
static void test_chain_across_resize(void)
{
    int sv[2];
    REQUIRE(pair_open(sv));
    struct buf_pool p;
    struct bufchain c = {0};
    bool drained;
    buf_pool_init(&p, 1024, 16);
    CHECK(put(sv[0], 100, 7, 0));
    CHECK_EQ_INT(bufchain_readv(&c, &p, sv[1], 1 << 20, &drained), 100);
    buf_pool_resize(&p, 2048);
    CHECK(put(sv[0], 3000, 7, 100));
    CHECK_EQ_INT(bufchain_readv(&c, &p, sv[1], 1 << 20, &drained), 3000);
    CHECK(drained);
    CHECK_EQ_INT(chain_blocks(&c), 3);
    CHECK_EQ_INT(c.head->cap, 1024);
    CHECK_EQ_INT(c.head->end, 1024);
    CHECK_EQ_INT(c.head->next->cap, 2048);
    CHECK_EQ_INT(c.head->next->end, 2048);
    CHECK_EQ_INT(c.tail->end, 3100 - 1024 - 2048);
    CHECK(chain_matches(&c, 7, 0));
    bufchain_clear(&c, &p);
    CHECK_EQ_INT(p.live, 0);
    /* The old-size block was not cached. */
    for (const struct buf_block *f = p.free; f != NULL; f = f->next)
        CHECK_EQ_INT(f->cap, 2048);
    buf_pool_destroy(&p);
    pair_close(sv);
}

/* ---- readv ---- */

static void test_readv_fills_tail_then_fresh(void)
{
    int sv[2];
    REQUIRE(pair_open(sv));
    struct buf_pool p;
    struct bufchain c = {0};
    bool drained = false;
    buf_pool_init(&p, 1024, 4);

    CHECK(bufchain_empty(&c));
    CHECK(put(sv[0], 100, 1, 0));
    CHECK_EQ_INT(bufchain_readv(&c, &p, sv[1], 1 << 20, &drained), 100);
    CHECK(drained);
    CHECK(!bufchain_empty(&c));
    CHECK_EQ_INT(c.len, 100);
    CHECK_EQ_INT(chain_blocks(&c), 1);
    CHECK_EQ_INT(p.live, 1); /* spare blocks offered to readv went back */
    CHECK(p.nfree <= p.max_free);
    struct buf_block *first = c.head;
    REQUIRE(first != NULL);
    CHECK_EQ_INT(first->start, 0);
    CHECK_EQ_INT(first->end, 100);

    /* 2000 more: 924 top up the tail, then 1024 + 52 in fresh blocks. */
    CHECK(put(sv[0], 2000, 1, 100));
    CHECK_EQ_INT(bufchain_readv(&c, &p, sv[1], 1 << 20, &drained), 2000);
    CHECK(drained);
    CHECK_EQ_INT(c.len, 2100);
    CHECK_EQ_INT(chain_blocks(&c), 3);
    CHECK(c.head == first);
    CHECK_EQ_INT(first->end, 1024);
    REQUIRE(first->next != NULL);
    CHECK_EQ_INT(first->next->start, 0);
    CHECK_EQ_INT(first->next->end, 1024);
    CHECK(c.tail == first->next->next);
    CHECK_EQ_INT(c.tail->end, 52);
    CHECK(c.tail->next == NULL);
    CHECK_EQ_INT(p.live, 3);
    CHECK(chain_matches(&c, 1, 0));

    /* A read that exactly fills the tail takes no new block. */
    CHECK(put(sv[0], 1024 - 52, 1, 2100));
    CHECK_EQ_INT(bufchain_readv(&c, &p, sv[1], 1 << 20, &drained), 1024 - 52);
    CHECK_EQ_INT(chain_blocks(&c), 3);
    CHECK_EQ_INT(c.tail->end, 1024);
    CHECK_EQ_INT(p.live, 3);
    CHECK(chain_matches(&c, 1, 0));

    bufchain_clear(&c, &p);
    CHECK(c.head == NULL && c.tail == NULL);
    CHECK_EQ_INT(c.len, 0);
    CHECK_EQ_INT(p.live, 0);
    buf_pool_destroy(&p);
    pair_close(sv);
}

static void test_readv_room_cap(void)
{
    int sv[2];
    REQUIRE(pair_open(sv));
    struct buf_pool p;
    struct bufchain c = {0};
    bool drained = true;
    buf_pool_init(&p, 1000, 64);
    CHECK(put(sv[0], 20000, 2, 0));

    /* A cap inside the tail's free space: no new block at all. */
    CHECK_EQ_INT(bufchain_readv(&c, &p, sv[1], 10, &drained), 10);
    CHECK(!drained);
    CHECK_EQ_INT(p.live, 1);
    CHECK_EQ_INT(bufchain_readv(&c, &p, sv[1], 7, &drained), 7);
    CHECK(!drained);
    CHECK_EQ_INT(p.live, 1);
    CHECK_EQ_INT(c.len, 17);
    CHECK_EQ_INT(chain_blocks(&c), 1);

    /* Across blocks: exactly `room`, not rounded up to a block. */
    CHECK_EQ_INT(bufchain_readv(&c, &p, sv[1], 1500, &drained), 1500);
    CHECK(!drained);
    CHECK_EQ_INT(c.len, 1517);
    CHECK_EQ_INT(chain_blocks(&c), 2);
    CHECK_EQ_INT(c.tail->end, 517);

    /* What a session does: room = cap - len until the cap is reached. */
    const size_t cap = 4321;
    int calls = 0;
    while (c.len < cap && calls++ < 100) {
        size_t room = cap - c.len;
        ssize_t n = bufchain_readv(&c, &p, sv[1], room < 700 ? room : 700, &drained);
        if (!CHECK(n > 0))
            break;
        CHECK(c.len <= cap);
    }
    CHECK_EQ_INT(c.len, cap);
    CHECK(chain_matches(&c, 2, 0));

    /* No room: nothing read, nothing allocated, the data stays queued. */
    size_t live = p.live;
    errno = 0;
    CHECK_EQ_INT(bufchain_readv(&c, &p, sv[1], 0, &drained), -1);
    CHECK(errno != EAGAIN && errno != 0);
    CHECK(!drained);
    CHECK_EQ_INT(c.len, cap);
    CHECK_EQ_INT(p.live, live);

    /* Everything left comes out afterwards, in order. */
    size_t total = cap;
    while (total < 20000) {
        ssize_t n = bufchain_readv(&c, &p, sv[1], 1 << 20, &drained);
        if (!CHECK(n > 0))
            break;
        total += (size_t)n;
    }
    CHECK_EQ_INT(c.len, 20000);
    CHECK(chain_matches(&c, 2, 0));
    bufchain_clear(&c, &p);
    CHECK_EQ_INT(p.live, 0);
    buf_pool_destroy(&p);
    pair_close(sv);
}

static void test_readv_drained(void)
{
    int sv[2];
    REQUIRE(pair_open(sv));
    struct buf_pool p;
    struct bufchain c = {0};
    bool drained = true;
    buf_pool_init(&p, 1024, 64);

    /* Exactly as much as asked for: not short, so not known drained. */
    CHECK(put(sv[0], 3000, 3, 0));
    CHECK_EQ_INT(bufchain_readv(&c, &p, sv[1], 3000, &drained), 3000);
    CHECK(!drained);

    /* Now the socket is empty: EAGAIN, and the chain is untouched. */
    size_t live = p.live;
    drained = true;
    errno = 0;
    CHECK_EQ_INT(bufchain_readv(&c, &p, sv[1], 3000, &drained), -1);
    CHECK(errno == EAGAIN || errno == EWOULDBLOCK);
    CHECK(!drained);
    CHECK_EQ_INT(c.len, 3000);
    CHECK_EQ_INT(p.live, live);
    CHECK_EQ_INT(chain_blocks(&c), 3);

    /* Short read: drained. */
    CHECK(put(sv[0], 10, 3, 3000));
    CHECK_EQ_INT(bufchain_readv(&c, &p, sv[1], 3000, &drained), 10);
    CHECK(drained);
    CHECK_EQ_INT(c.len, 3010);
    CHECK(chain_matches(&c, 3, 0));

    /* A real error keeps errno and leaks no blocks. */
    live = p.live;
    errno = 0;
    CHECK_EQ_INT(bufchain_readv(&c, &p, -1, 4096, &drained), -1);
    CHECK_EQ_INT(errno, EBADF);
    CHECK_EQ_INT(p.live, live);
    CHECK_EQ_INT(c.len, 3010);

    bufchain_clear(&c, &p);
    CHECK_EQ_INT(p.live, 0);
    buf_pool_destroy(&p);
    pair_close(sv);
}

static void test_readv_eof(void)
{
    int sv[2];
    REQUIRE(pair_open(sv));
    struct buf_pool p;
    struct bufchain c = {0};
    bool drained;
    buf_pool_init(&p, 1024, 64);

    /* EOF on an empty chain: 0, and no block is kept. */
    CHECK_EQ_INT(shutdown(sv[0], SHUT_WR), 0);
    CHECK_EQ_INT(bufchain_readv(&c, &p, sv[1], 4096, &drained), 0);
    CHECK(c.head == NULL && c.tail == NULL);
    CHECK_EQ_INT(c.len, 0);
    CHECK_EQ_INT(p.live, 0);
    /* EOF stays EOF. */
    CHECK_EQ_INT(bufchain_readv(&c, &p, sv[1], 4096, &drained), 0);
    pair_close(sv);

    /* Data then FIN: the data first, then 0 with the chain unchanged. */
    REQUIRE(pair_open(sv));
    CHECK(put(sv[0], 1500, 4, 0));
    close(sv[0]);
    sv[0] = -1;
    CHECK_EQ_INT(bufchain_readv(&c, &p, sv[1], 4096, &drained), 1500);
    CHECK(drained);
    CHECK_EQ_INT(p.live, 2);
    CHECK_EQ_INT(bufchain_readv(&c, &p, sv[1], 4096, &drained), 0);
    CHECK_EQ_INT(c.len, 1500);
    CHECK_EQ_INT(chain_blocks(&c), 2);
    CHECK_EQ_INT(p.live, 2);
    CHECK(chain_matches(&c, 4, 0));
    bufchain_clear(&c, &p);
    CHECK_EQ_INT(p.live, 0);
    buf_pool_destroy(&p);
    pair_close(sv);
}

/* ---- writev ---- */

static void test_writev_drains(void)
{
    int a[2], b[2];
    REQUIRE(pair_open(a));
    REQUIRE(pair_open(b));
    struct buf_pool p;
    struct bufchain c = {0};
    bool drained;
    char out[8192];
    buf_pool_init(&p, 1024, 64);

    /* Empty chain: nothing to do. */
    CHECK_EQ_INT(bufchain_writev(&c, &p, b[0]), 0);

    CHECK(put(a[0], 3000, 5, 0));
    CHECK_EQ_INT(bufchain_readv(&c, &p, a[1], 1 << 20, &drained), 3000);
    CHECK_EQ_INT(p.live, 3);
    size_t nfree = p.nfree;
    CHECK_EQ_INT(bufchain_writev(&c, &p, b[0]), 3000);
    CHECK(bufchain_empty(&c));
    CHECK(c.head == NULL);
    CHECK(c.tail == NULL);
    CHECK_EQ_INT(c.len, 0);
    CHECK_EQ_INT(p.live, 0);
    CHECK_EQ_INT(p.nfree, nfree + 3);
    CHECK_EQ_INT(take(b[1], out, sizeof(out)), 3000);
    CHECK(bytes_match(out, 3000, 5, 0));

    /* The chain is reusable after draining: new data, new blocks. */
    CHECK(put(a[0], 10, 5, 3000));
    CHECK_EQ_INT(bufchain_readv(&c, &p, a[1], 1 << 20, &drained), 10);
    CHECK_EQ_INT(chain_blocks(&c), 1);
    CHECK_EQ_INT(bufchain_writev(&c, &p, b[0]), 10);
    CHECK_EQ_INT(take(b[1], out, sizeof(out)), 10);
    CHECK(bytes_match(out, 10, 5, 3000));
    CHECK(c.head == NULL && c.tail == NULL);
    CHECK_EQ_INT(p.live, 0);

    /* An error leaves the chain as it was. */
    CHECK(put(a[0], 2000, 5, 3010));
    CHECK_EQ_INT(bufchain_readv(&c, &p, a[1], 1 << 20, &drained), 2000);
    errno = 0;
    CHECK_EQ_INT(bufchain_writev(&c, &p, -1), -1);
    CHECK_EQ_INT(errno, EBADF);
    CHECK_EQ_INT(c.len, 2000);
    CHECK_EQ_INT(p.live, 2);
    CHECK(chain_matches(&c, 5, 3010));
    bufchain_clear(&c, &p);

    buf_pool_destroy(&p);
    pair_close(a);
    pair_close(b);
}

/* A chain longer than one writev's iovec limit goes out in order over
 * several calls. */
static void test_writev_long_chain(void)
{
    int a[2], b[2];
    REQUIRE(pair_open(a));
    REQUIRE(pair_open(b));
    struct buf_pool p;
    struct bufchain c = {0};
    bool drained;
    const size_t total = 150 * 512 + 77;
    char *out = malloc(total);
    REQUIRE(out != NULL);
    buf_pool_init(&p, 512, 8);
    CHECK(put(a[0], total, 6, 0));
    while (c.len < total) {
        if (!CHECK(bufchain_readv(&c, &p, a[1], 1 << 20, &drained) > 0))
            break;
    }
    CHECK_EQ_INT(chain_blocks(&c), 151);
    size_t got = 0;
    int calls = 0;
    while (!bufchain_empty(&c) && calls++ < 100) {
        if (!CHECK(bufchain_writev(&c, &p, b[0]) > 0))
            break;
        got += take(b[1], out + got, total - got);
    }
    got += take(b[1], out + got, total - got);
    CHECK(calls > 1);
    CHECK_EQ_INT(got, total);
    CHECK(bytes_match(out, got, 6, 0));
    CHECK_EQ_INT(p.live, 0);
    CHECK(p.nfree <= 8);
    free(out);
    buf_pool_destroy(&p);
    pair_close(a);
    pair_close(b);
}

static void test_writev_partial(void)
{
    int a[2], b[2];
    REQUIRE(pair_open(a));
    REQUIRE(pair_open(b));
    /* A small send buffer on the destination makes writev come back short,
     * part way through a block. */
    int sndbuf = 4096;
    CHECK_EQ_INT(setsockopt(b[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)), 0);
    struct buf_pool p;
    struct bufchain c = {0};
    bool drained;
    const size_t total = 60000;
    char *out = malloc(total);
    REQUIRE(out != NULL);
    buf_pool_init(&p, 1000, 64);
    CHECK(put(a[0], total, 8, 0));
    while (c.len < total) {
        if (!CHECK(bufchain_readv(&c, &p, a[1], total - c.len, &drained) > 0))
            break;
    }
    REQUIRE_EQ_INT(c.len, total);

    size_t sent = 0, got = 0;
    int short_writes = 0, mid_block = 0, rounds = 0;
    while (!bufchain_empty(&c) && rounds++ < 10000) {
        size_t before = c.len;
        ssize_t n = bufchain_writev(&c, &p, b[0]);
        if (n < 0) {
            CHECK_MSG(errno == EAGAIN || errno == EWOULDBLOCK, "errno %d", errno);
            /* EAGAIN: the chain is untouched. */
            CHECK_EQ_INT(c.len, before);
        } else {
            sent += (size_t)n;
            if ((size_t)n < before) {
                short_writes++;
                /* The remainder is exactly the unsent tail of the input. */
                CHECK_EQ_INT(c.len, total - sent);
                CHECK_EQ_INT((unsigned char)c.head->data[c.head->start], pat(8, sent));
                mid_block += c.head->start != 0;
            }
        }
        /* The blocks in use are the ones still holding data. */
        CHECK_EQ_INT(p.live, chain_blocks(&c));
        got += take(b[1], out + got, total - got);
    }
    got += take(b[1], out + got, total - got);
    CHECK_MSG(short_writes > 1, "only %d short writes", short_writes);
    CHECK_MSG(mid_block > 0, "no write stopped inside a block");
    CHECK_EQ_INT(sent, total);
    CHECK_EQ_INT(got, total);
    CHECK(bytes_match(out, got, 8, 0));
    CHECK_EQ_INT(p.live, 0);
    CHECK(c.head == NULL && c.tail == NULL);
    free(out);
    buf_pool_destroy(&p);
    pair_close(a);
    pair_close(b);
}

/* Writes into a destination that is already full come back -1/EAGAIN with
 * the chain untouched; after the peer reads, the rest follows in order. */
static void test_writev_full_peer(void)
{
    int a[2], b[2];
    REQUIRE(pair_open(a));
    REQUIRE(pair_open(b));
    struct buf_pool p;
    struct bufchain c = {0};
    bool drained;
    buf_pool_init(&p, 4096, 64);

    /* Fill b[0] -> b[1] with filler until the kernel refuses more. */
    size_t filler = 0;
    char junk[4096];
    memset(junk, 'j', sizeof(junk));
    for (;;) {
        ssize_t w = write(b[0], junk, sizeof(junk));
        if (w <= 0)
            break;
        filler += (size_t)w;
    }
    CHECK(errno == EAGAIN || errno == EWOULDBLOCK);
    CHECK(put(a[0], 50000, 9, 0));
    while (c.len < 50000)
        if (!CHECK(bufchain_readv(&c, &p, a[1], 1 << 20, &drained) > 0))
            break;
    errno = 0;
    CHECK_EQ_INT(bufchain_writev(&c, &p, b[0]), -1);
    CHECK(errno == EAGAIN || errno == EWOULDBLOCK);
    CHECK_EQ_INT(c.len, 50000);
    CHECK(chain_matches(&c, 9, 0));

    /* Drain the filler, then move everything. */
    char *sink = malloc(filler + 50000);
    REQUIRE(sink != NULL);
    size_t got = 0, sent = 0;
    int rounds = 0;
    while (got < filler + 50000 && rounds++ < 10000) {
        got += take(b[1], sink + got, filler + 50000 - got);
        if (!bufchain_empty(&c)) {
            ssize_t n = bufchain_writev(&c, &p, b[0]);
            if (n > 0)
                sent += (size_t)n;
            else
                CHECK(errno == EAGAIN || errno == EWOULDBLOCK);
            if (n > 0 && !bufchain_empty(&c))
                CHECK_EQ_INT((unsigned char)c.head->data[c.head->start], pat(9, sent));
        }
    }
    CHECK_EQ_INT(sent, 50000);
    CHECK_EQ_INT(got, filler + 50000);
    CHECK(bytes_match(sink + filler, 50000, 9, 0));
    CHECK_EQ_INT(p.live, 0);
    free(sink);
    buf_pool_destroy(&p);
    pair_close(a);
    pair_close(b);
}

/* ---- a real event loop ---- */

/* producer --a--> relay (bufchain) --b--> sink, each end a libev watcher.
 * The relay follows the session rules: read while below the cap, write
 * interest only when data is pending and the last write was cut short. */
struct pump {
    struct ev_loop *loop;
    int a[2], b[2];
    ev_io w_produce; /* a[0] writable */
    ev_io w_read;    /* a[1] readable */
    ev_io w_write;   /* b[0] writable */
    ev_io w_sink;    /* b[1] readable */
    ev_timer w_deadline;

    struct buf_pool pool;
    struct bufchain chain;
    size_t cap;

    char *in, *out;
    size_t total, produced, relayed_in, relayed_out, consumed;
    size_t sink_chunk;
    bool src_eof, dst_blocked, shut_sent, sink_eof, timed_out, failed;
    int reads, writes, short_writes, eagain_writes, cap_hits, drained_reads;
};

static void pump_interest(struct pump *pu)
{
    bool want_read = !pu->src_eof && pu->chain.len < pu->cap;
    bool want_write = pu->chain.len > 0 && pu->dst_blocked;
    if (pu->chain.len >= pu->cap)
        pu->cap_hits++;
    if (want_read && !ev_is_active(&pu->w_read))
        ev_io_start(pu->loop, &pu->w_read);
    else if (!want_read && ev_is_active(&pu->w_read))
        ev_io_stop(pu->loop, &pu->w_read);
    if (want_write && !ev_is_active(&pu->w_write))
        ev_io_start(pu->loop, &pu->w_write);
    else if (!want_write && ev_is_active(&pu->w_write))
        ev_io_stop(pu->loop, &pu->w_write);
}

static void pump_flush(struct pump *pu)
{
    while (!bufchain_empty(&pu->chain)) {
        size_t before = pu->chain.len;
        ssize_t n = bufchain_writev(&pu->chain, &pu->pool, pu->b[0]);
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                CHECK_MSG(false, "writev: %s", strerror(errno));
                pu->failed = true;
                ev_break(pu->loop, EVBREAK_ALL);
                return;
            }
            pu->eagain_writes++;
            pu->dst_blocked = true;
            return;
        }
        pu->writes++;
        pu->relayed_out += (size_t)n;
        if ((size_t)n < before) {
            pu->short_writes++;
            pu->dst_blocked = true;
            return;
        }
    }
    pu->dst_blocked = false;
    if (pu->src_eof && !pu->shut_sent) {
        CHECK_EQ_INT(pu->pool.live, 0); /* empty chain holds no blocks */
        shutdown(pu->b[0], SHUT_WR);
        pu->shut_sent = true;
    }
}

static void pump_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct pump *pu = container_of(w, struct pump, w_read);
    bool drained = false;
    /* Read until the socket is known empty or the cap is reached. */
    while (!pu->src_eof && pu->chain.len < pu->cap && !drained) {
        ssize_t n =
            bufchain_readv(&pu->chain, &pu->pool, pu->a[1], pu->cap - pu->chain.len, &drained);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            CHECK_MSG(false, "readv: %s", strerror(errno));
            pu->failed = true;
            ev_break(loop, EVBREAK_ALL);
            return;
        }
        if (n == 0) {
            pu->src_eof = true;
            break;
        }
        pu->reads++;
        pu->drained_reads += drained;
        pu->relayed_in += (size_t)n;
        if (!CHECK(pu->chain.len <= pu->cap))
            pu->failed = true;
    }
    if (!pu->dst_blocked)
        pump_flush(pu);
    pump_interest(pu);
}

static void pump_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct pump *pu = container_of(w, struct pump, w_write);
    pump_flush(pu);
    pump_interest(pu);
}

static void pump_produce_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct pump *pu = container_of(w, struct pump, w_produce);
    size_t n = pu->total - pu->produced;
    if (n > 100000)
        n = 100000;
    ssize_t r = write(pu->a[0], pu->in + pu->produced, n);
    if (r > 0)
        pu->produced += (size_t)r;
    if (pu->produced == pu->total) {
        shutdown(pu->a[0], SHUT_WR);
        ev_io_stop(loop, w);
    }
}

static void pump_sink_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct pump *pu = container_of(w, struct pump, w_sink);
    /* A slow-ish reader: a bounded chunk per wakeup, so the relay sees
     * backpressure. */
    char buf[65536];
    size_t want = pu->sink_chunk < sizeof(buf) ? pu->sink_chunk : sizeof(buf);
    ssize_t r = read(pu->b[1], buf, want);
    if (r > 0) {
        if (pu->consumed + (size_t)r > pu->total) {
            CHECK_MSG(false, "sink got more than was sent");
            pu->failed = true;
            ev_break(loop, EVBREAK_ALL);
            return;
        }
        memcpy(pu->out + pu->consumed, buf, (size_t)r);
        pu->consumed += (size_t)r;
    } else if (r == 0) {
        pu->sink_eof = true;
        ev_io_stop(loop, w);
        ev_break(loop, EVBREAK_ALL);
    } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
        CHECK_MSG(false, "sink read: %s", strerror(errno));
        pu->failed = true;
        ev_break(loop, EVBREAK_ALL);
    }
}

static void pump_deadline_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct pump *pu = container_of(w, struct pump, w_deadline);
    pu->timed_out = true;
    ev_break(loop, EVBREAK_ALL);
}

static void pump_run(size_t total, uint32_t block, size_t cap, size_t max_free, int sndbuf,
                     size_t sink_chunk)
{
    struct pump pu;
    memset(&pu, 0, sizeof(pu));
    pu.loop = ev_loop_new(EVFLAG_AUTO);
    REQUIRE(pu.loop != NULL);
    REQUIRE(pair_open(pu.a));
    REQUIRE(pair_open(pu.b));
    if (sndbuf > 0)
        CHECK_EQ_INT(setsockopt(pu.b[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)), 0);
    buf_pool_init(&pu.pool, block, max_free);
    pu.cap = cap;
    pu.total = total;
    pu.sink_chunk = sink_chunk;
    pu.in = malloc(total);
    pu.out = malloc(total);
    REQUIRE(pu.in != NULL && pu.out != NULL);
    /* Random bytes (xorshift), not a pattern a misordering could mimic. */
    uint64_t x = 0x2545F4914F6CDD1DULL ^ total ^ ((uint64_t)block << 32);
    for (size_t i = 0; i < total; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        pu.in[i] = (char)(x >> 24);
    }

    ev_io_init(&pu.w_produce, pump_produce_cb, pu.a[0], EV_WRITE);
    ev_io_init(&pu.w_read, pump_read_cb, pu.a[1], EV_READ);
    ev_io_init(&pu.w_write, pump_write_cb, pu.b[0], EV_WRITE);
    ev_io_init(&pu.w_sink, pump_sink_cb, pu.b[1], EV_READ);
    /* A bound, not a measurement: scaled like every test bound. */
    ev_timer_init(&pu.w_deadline, pump_deadline_cb, 4.0 * unit_slow(), 0);
    ev_io_start(pu.loop, &pu.w_produce);
    ev_io_start(pu.loop, &pu.w_sink);
    ev_timer_start(pu.loop, &pu.w_deadline);
    pump_interest(&pu);
    ev_run(pu.loop, 0);

    CHECK(!pu.timed_out);
    CHECK(!pu.failed);
    CHECK(pu.sink_eof);
    CHECK(pu.src_eof);
    CHECK(pu.shut_sent);
    CHECK_EQ_INT(pu.produced, total);
    CHECK_EQ_INT(pu.relayed_in, total);
    CHECK_EQ_INT(pu.relayed_out, total);
    CHECK_EQ_INT(pu.consumed, total);
    CHECK_MSG(memcmp(pu.in, pu.out, total) == 0, "payload differs");
    CHECK(bufchain_empty(&pu.chain));
    CHECK(pu.chain.head == NULL && pu.chain.tail == NULL);
    CHECK_EQ_INT(pu.pool.live, 0);
    CHECK(pu.pool.nfree <= max_free);
    /* The transfer really exercised the interesting paths. */
    CHECK_MSG(pu.short_writes + pu.eagain_writes > 0, "the sink never pushed back");
    CHECK_MSG(pu.cap_hits > 0, "the cap never filled: no backpressure");
    CHECK_MSG(pu.drained_reads > 0, "no short reads");
    printf("# %zu bytes, block %u, cap %zu: %d reads (%d short), %d writes (%d short, %d EAGAIN), "
           "cap reached %d times\n",
           total, block, cap, pu.reads, pu.drained_reads, pu.writes, pu.short_writes,
           pu.eagain_writes, pu.cap_hits);

    ev_io_stop(pu.loop, &pu.w_produce);
    ev_io_stop(pu.loop, &pu.w_read);
    ev_io_stop(pu.loop, &pu.w_write);
    ev_io_stop(pu.loop, &pu.w_sink);
    ev_timer_stop(pu.loop, &pu.w_deadline);
    ev_loop_destroy(pu.loop);
    bufchain_clear(&pu.chain, &pu.pool);
    buf_pool_destroy(&pu.pool);
    pair_close(pu.a);
    pair_close(pu.b);
    free(pu.in);
    free(pu.out);
}

static void test_loop_transfer(void)
{
    /* The session's defaults: 16k blocks, 256k cap. */
    pump_run(8u << 20, 16384, 256 * 1024, 32, 32768, 16384);
}

static void test_loop_transfer_small_blocks(void)
{
    /* Odd sizes so block, cap and write boundaries never line up. */
    pump_run(3u << 20, 1000, 7777, 4, 8192, 5000);
}

static void test_loop_transfer_cap_below_block(void)
{
    /* A cap smaller than one block: the tail is never full, every read is
     * cut by the cap. */
    pump_run(1u << 20, 16384, 3000, 2, 4096, 2500);
}

/* bufchain_append(): fills the tail block, then fresh ones; the bytes
 * come out in order (relay = uring copies received buffers this way). */
static void test_append(void)
{
    struct buf_pool p;
    buf_pool_init(&p, 1000, 8);
    struct bufchain c = {0};
    char in[2500], out[2500];
    for (size_t i = 0; i < sizeof(in); i++)
        in[i] = (char)(i * 7);
    REQUIRE(bufchain_append(&c, &p, in, 300));
    REQUIRE(bufchain_append(&c, &p, in + 300, 2200));
    CHECK_EQ_INT(c.len, 2500);
    CHECK_EQ_INT(p.live, 3);
    size_t n = 0;
    for (const struct buf_block *b = c.head; b != NULL; b = b->next) {
        memcpy(out + n, b->data + b->start, b->end - b->start);
        n += b->end - b->start;
    }
    CHECK_EQ_INT(n, 2500);
    CHECK(memcmp(in, out, sizeof(in)) == 0);
    CHECK(c.head->end == 1000 && c.tail->end == 500);
    bufchain_clear(&c, &p);
    CHECK_EQ_INT(p.live, 0);
    buf_pool_destroy(&p);
}

UNIT_MAIN(TEST(test_pool_get_put), TEST(test_pool_max_free), TEST(test_pool_resize),
          TEST(test_chain_across_resize), TEST(test_readv_fills_tail_then_fresh),
          TEST(test_readv_room_cap), TEST(test_readv_drained), TEST(test_readv_eof),
          TEST(test_writev_drains), TEST(test_writev_long_chain), TEST(test_writev_partial),
          TEST(test_writev_full_peer), TEST(test_loop_transfer),
          TEST(test_loop_transfer_small_blocks), TEST(test_loop_transfer_cap_below_block),
          TEST(test_append))
