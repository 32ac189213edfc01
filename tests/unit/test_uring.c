/* test_uring.c - the pure parts of relay = uring: user_data packing and
 * the per-direction queue of received buffers over a segment table. */
#include "sluice/uring.h"
#include "unit.h"

#include <stdlib.h>

struct fake {
    uint32_t len[8];
    int32_t next[8];
    int put[8];
    int nput;
};

static void fake_put(void *ctx, int bid)
{
    struct fake *f = ctx;
    f->put[f->nput++] = bid;
}

static struct uring_segs segs_of(struct fake *f)
{
    return (struct uring_segs){f->len, f->next, fake_put, f};
}

static void test_pack_round_trips_pointer_and_tag(void)
{
    static _Alignas(8) char obj[16];
    for (unsigned tag = 0; tag <= URING_TAG_MASK; tag++) {
        unsigned got;
        void *p = uring_unpack(uring_pack(obj, tag), &got);
        CHECK(p == obj);
        CHECK_EQ_INT(got, tag);
    }
}

static void test_queue_keeps_arrival_order_and_length(void)
{
    struct fake f = {0};
    struct uring_segs t = segs_of(&f);
    struct uring_q q;
    uring_q_init(&q);
    int bid;
    uint32_t off;
    CHECK_EQ_INT(uring_segs_head(&t, &q, &bid, &off), 0);
    uring_segs_push(&t, &q, 5, 100);
    uring_segs_push(&t, &q, 2, 50);
    uring_segs_push(&t, &q, 7, 10);
    CHECK_EQ_INT(q.len, 160);
    CHECK_EQ_INT(uring_segs_head(&t, &q, &bid, &off), 100);
    CHECK_EQ_INT(bid, 5);
    CHECK_EQ_INT(off, 0);
}

static void test_short_send_keeps_the_buffer_and_moves_the_offset(void)
{
    struct fake f = {0};
    struct uring_segs t = segs_of(&f);
    struct uring_q q;
    uring_q_init(&q);
    int bid;
    uint32_t off;
    uring_segs_push(&t, &q, 1, 100);
    uring_segs_push(&t, &q, 3, 40);
    uring_segs_consume(&t, &q, 30);
    CHECK_EQ_INT(f.nput, 0);
    CHECK_EQ_INT(q.len, 110);
    CHECK_EQ_INT(uring_segs_head(&t, &q, &bid, &off), 70);
    CHECK_EQ_INT(bid, 1);
    CHECK_EQ_INT(off, 30);
    uring_segs_consume(&t, &q, 70);
    CHECK_EQ_INT(f.nput, 1);
    CHECK_EQ_INT(f.put[0], 1);
    CHECK_EQ_INT(uring_segs_head(&t, &q, &bid, &off), 40);
    CHECK_EQ_INT(bid, 3);
    CHECK_EQ_INT(off, 0);
    uring_segs_consume(&t, &q, 40);
    CHECK_EQ_INT(f.nput, 2);
    CHECK_EQ_INT(q.len, 0);
    CHECK_EQ_INT(q.head, -1);
    CHECK_EQ_INT(q.tail, -1);
    /* Empty again: a push starts a fresh list. */
    uring_segs_push(&t, &q, 0, 9);
    CHECK_EQ_INT(uring_segs_head(&t, &q, &bid, &off), 9);
    CHECK_EQ_INT(bid, 0);
}

static void test_consume_across_buffers_returns_each_once(void)
{
    struct fake f = {0};
    struct uring_segs t = segs_of(&f);
    struct uring_q q;
    uring_q_init(&q);
    uring_segs_push(&t, &q, 4, 10);
    uring_segs_push(&t, &q, 6, 10);
    uring_segs_push(&t, &q, 0, 10);
    uring_segs_consume(&t, &q, 25);
    CHECK_EQ_INT(f.nput, 2);
    CHECK_EQ_INT(f.put[0], 4);
    CHECK_EQ_INT(f.put[1], 6);
    CHECK_EQ_INT(q.len, 5);
    CHECK_EQ_INT(q.off, 5);
}

static void test_clear_returns_every_buffer(void)
{
    struct fake f = {0};
    struct uring_segs t = segs_of(&f);
    struct uring_q q;
    uring_q_init(&q);
    uring_segs_push(&t, &q, 2, 10);
    uring_segs_push(&t, &q, 3, 10);
    uring_segs_consume(&t, &q, 4);
    uring_segs_clear(&t, &q);
    CHECK_EQ_INT(f.nput, 2);
    CHECK_EQ_INT(q.len, 0);
    CHECK_EQ_INT(q.off, 0);
    CHECK_EQ_INT(q.head, -1);
}

static void test_open_fails_cleanly_or_works(void)
{
    /* Without liburing (or on a kernel that refuses) uring_open() says
     * why; with it, a ring opens and closes without leaks. */
    char why[160] = "";
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct uring *u = uring_open(loop, 16, 4096, NULL, NULL, why, sizeof(why));
    if (u == NULL) {
        CHECK(why[0] != '\0');
    } else {
        CHECK(uring_compiled());
        CHECK_EQ_INT(uring_nbufs(u), 16);
        CHECK_EQ_INT(uring_buf_size(u), 4096);
        uring_close(u);
    }
    ev_loop_destroy(loop);
}

UNIT_MAIN(TEST(test_pack_round_trips_pointer_and_tag),
          TEST(test_queue_keeps_arrival_order_and_length),
          TEST(test_short_send_keeps_the_buffer_and_moves_the_offset),
          TEST(test_consume_across_buffers_returns_each_once),
          TEST(test_clear_returns_every_buffer), TEST(test_open_fails_cleanly_or_works))
