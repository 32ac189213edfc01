/* test_histogram.c - the latency histogram of histogram.h: bucket bounds,
 * the relative error over the whole range, quantiles against a sorted
 * reference, merging, clamping, and a reader merging while a thread
 * records (for TSan). */
#include "unit.h"

#include "sluice/histogram.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>

static struct histogram *hist_new(void)
{
    struct histogram *h = calloc(1, sizeof(*h));
    return h;
}

static void test_bucket_bounds(void)
{
    /* Exact below 128 us, then 64 buckets per power of two. */
    for (uint64_t v = 0; v < 128; v++) {
        CHECK_EQ_INT(hist_index(v), (long long)v);
        CHECK_EQ_INT(hist_bucket_low((int)v), (long long)v);
        CHECK_EQ_INT(hist_bucket_width((int)v), 1);
    }
    CHECK_EQ_INT(hist_index(128), 128);
    CHECK_EQ_INT(hist_index(129), 128);
    CHECK_EQ_INT(hist_index(130), 129);
    CHECK_EQ_INT(hist_bucket_low(128), 128);
    CHECK_EQ_INT(hist_bucket_width(128), 2);
    CHECK_EQ_INT(hist_index(255), 191);
    CHECK_EQ_INT(hist_index(256), 192);
    CHECK_EQ_INT(hist_index((uint64_t)HIST_MAX_US), HIST_BUCKETS - 1);
    /* Buckets tile the range: each starts where the previous ends, and
     * every value maps into the bucket whose bounds hold it. */
    for (int i = 1; i < HIST_BUCKETS; i++) {
        uint64_t lo = hist_bucket_low(i), prev = hist_bucket_low(i - 1) + hist_bucket_width(i - 1);
        if (!CHECK_MSG(lo == prev, "bucket %d starts at %llu, previous ends at %llu", i,
                       (unsigned long long)lo, (unsigned long long)prev))
            break;
        CHECK_EQ_INT(hist_index(lo), i);
        CHECK_EQ_INT(hist_index(lo + hist_bucket_width(i) - 1), i);
    }
}

static void test_relative_error(void)
{
    /* Every value from 1 us to 60 s, stepping by ~0.1 %: the bucket's
     * value is within 1/128 of it. */
    double worst = 0;
    for (uint64_t v = 1; v <= (uint64_t)HIST_MAX_US; v += 1 + v / 1000) {
        uint64_t r = hist_bucket_value(hist_index(v));
        double err = ((double)r - (double)v) / (double)v;
        if (err < 0)
            err = -err;
        if (err > worst)
            worst = err;
        if (!CHECK_MSG(err <= 1.0 / 128, "value %llu stands as %llu (%.3f%%)",
                       (unsigned long long)v, (unsigned long long)r, err * 100))
            break;
    }
    CHECK(worst > 0.005); /* the bound is tight, not vacuous */
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* xorshift64: a fixed sequence, so a failure reproduces. */
static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void test_quantiles_vs_sorted(void)
{
    enum { N = 20000 };
    static uint64_t ref[N];
    static const double qs[] = {0.5, 0.9, 0.99, 0.999, 1.0};
    uint64_t seed = 0x9e3779b97f4a7c15ULL;
    for (int round = 0; round < 4; round++) {
        struct histogram *h = hist_new();
        REQUIRE(h != NULL);
        uint64_t sum = 0;
        for (int i = 0; i < N; i++) {
            /* Log-uniform over 1 us .. 60 s: every decade gets samples. */
            double e = (double)(rnd(&seed) % 1000000) / 1000000.0 * 7.778;
            uint64_t v = (uint64_t)exp(e * 2.302585);
            if (round == 1)
                v = 40000 + rnd(&seed) % 20000; /* a narrow band, 40-60 ms */
            if (v > (uint64_t)HIST_MAX_US)
                v = (uint64_t)HIST_MAX_US;
            ref[i] = v;
            sum += v;
            hist_record(h, (int64_t)v);
        }
        qsort(ref, N, sizeof(ref[0]), cmp_u64);
        struct hist_snap s;
        hist_snap_clear(&s);
        hist_merge(&s, h);
        CHECK_EQ_INT(s.count, N);
        CHECK_EQ_INT(s.sum_us, sum);
        for (size_t k = 0; k < ARRAY_SIZE(qs); k++) {
            size_t rank = (size_t)(qs[k] * N + 0.999999);
            uint64_t want = ref[rank - 1];
            uint64_t got = hist_quantile(&s, qs[k], NULL);
            double err = ((double)got - (double)want) / (double)(want ? want : 1);
            CHECK_MSG(err <= 1.0 / 128 && err >= -1.0 / 128,
                      "round %d q=%g: histogram %llu, sorted %llu", round, qs[k],
                      (unsigned long long)got, (unsigned long long)want);
        }
        free(h);
    }
}

static void test_merge(void)
{
    struct histogram *a = hist_new(), *b = hist_new();
    REQUIRE(a != NULL && b != NULL);
    for (int i = 0; i < 90; i++)
        hist_record(a, 1000); /* 1 ms */
    for (int i = 0; i < 10; i++)
        hist_record(b, 100000); /* 100 ms */
    struct hist_snap s, t;
    hist_snap_clear(&s);
    hist_merge(&s, a);
    hist_merge(&s, b);
    CHECK_EQ_INT(s.count, 100);
    CHECK_EQ_INT(s.sum_us, 90 * 1000 + 10 * 100000);
    CHECK_EQ_INT(hist_quantile(&s, 0.5, NULL), hist_bucket_value(hist_index(1000)));
    CHECK_EQ_INT(hist_quantile(&s, 0.9, NULL), hist_bucket_value(hist_index(1000)));
    CHECK_EQ_INT(hist_quantile(&s, 0.91, NULL), hist_bucket_value(hist_index(100000)));
    CHECK_EQ_INT(hist_count_le(&s, 990), 0);
    CHECK_EQ_INT(hist_count_le(&s, 1010), 90);
    CHECK_EQ_INT(hist_count_le(&s, 99000), 90);
    CHECK_EQ_INT(hist_count_le(&s, 101000), 100);
    hist_snap_clear(&t);
    hist_snap_add(&t, &s);
    hist_snap_add(&t, &s);
    CHECK_EQ_INT(t.count, 200);
    CHECK_EQ_INT(t.sum_us, 2 * s.sum_us);
    CHECK_EQ_INT(hist_quantile(&t, 0.95, NULL), hist_bucket_value(hist_index(100000)));
    /* Empty: 0 everywhere. */
    hist_snap_clear(&t);
    CHECK_EQ_INT(hist_quantile(&t, 0.99, NULL), 0);
    CHECK_EQ_INT(hist_count_le(&t, 60000000), 0);
    free(a);
    free(b);
}

static void test_clamping(void)
{
    struct histogram *h = hist_new();
    REQUIRE(h != NULL);
    hist_record(h, -5); /* a clock step back: 0 */
    hist_record(h, 0);
    hist_record(h, HIST_MAX_US);      /* the last bucket */
    hist_record(h, HIST_MAX_US + 1);  /* overflow */
    hist_record(h, 3600LL * 1000000); /* an hour: overflow */
    struct hist_snap s;
    hist_snap_clear(&s);
    hist_merge(&s, h);
    CHECK_EQ_INT(s.count, 5);
    CHECK_EQ_INT(s.b[0], 2);
    CHECK_EQ_INT(s.b[HIST_BUCKETS - 1], 1);
    CHECK_EQ_INT(s.b[HIST_OVERFLOW], 2);
    CHECK_EQ_INT(s.sum_us, HIST_MAX_US * 2 + 1 + 3600LL * 1000000);
    bool over = true;
    CHECK_EQ_INT(hist_quantile(&s, 0.2, &over), 0);
    CHECK(!over);
    CHECK_EQ_INT(hist_quantile(&s, 0.6, &over), HIST_MAX_US);
    CHECK(!over);
    CHECK_EQ_INT(hist_quantile(&s, 0.99, &over), HIST_MAX_US);
    CHECK(over);
    /* Overflow samples are above every finite bound. */
    CHECK_EQ_INT(hist_count_le(&s, (uint64_t)HIST_MAX_US), 3);
    CHECK_EQ_INT(hist_count_le(&s, UINT64_MAX), 3);
    free(h);
}

static void test_format(void)
{
    char b[32];
    hist_format_us(850, b, sizeof(b));
    CHECK_STR(b, "850us");
    hist_format_us(12345, b, sizeof(b));
    CHECK_STR(b, "12.3ms");
    hist_format_us(999900, b, sizeof(b));
    CHECK_STR(b, "1s");
    hist_format_us(1500000, b, sizeof(b));
    CHECK_STR(b, "1.5s");
    hist_format_us(60000000, b, sizeof(b));
    CHECK_STR(b, "60s");
}

static void test_slot_allocates_once(void)
{
    struct histogram *_Atomic slot = NULL;
    struct histogram *h = hist_slot(&slot, 3);
    REQUIRE(h != NULL);
    CHECK(atomic_load(&slot) == h);
    CHECK(hist_slot(&slot, 3) == h);
    hist_record(&h[2], 42);
    struct hist_snap s;
    hist_snap_clear(&s);
    hist_merge(&s, &h[0]);
    hist_merge(&s, &h[1]);
    CHECK_EQ_INT(s.count, 0); /* zeroed */
    hist_merge(&s, &h[2]);
    CHECK_EQ_INT(s.count, 1);
    free(h);
}

/* One thread records while this one merges, as a worker and the admin
 * side do: every snapshot is consistent (count = sum of buckets) and
 * never goes backwards; TSan sees only atomics. */
#define RECORDS 200000
static struct histogram *race_h;
static _Atomic bool race_done;

static void *recorder(void *arg)
{
    (void)arg;
    for (int i = 0; i < RECORDS; i++)
        hist_record(race_h, i % 5000);
    atomic_store(&race_done, true);
    return NULL;
}

static void test_concurrent_merge(void)
{
    race_h = hist_new();
    REQUIRE(race_h != NULL);
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, recorder, NULL) == 0);
    static struct hist_snap s;
    uint64_t last = 0;
    bool done;
    do {
        done = atomic_load(&race_done);
        hist_snap_clear(&s);
        hist_merge(&s, race_h);
        CHECK(s.count >= last);
        last = s.count;
    } while (!done);
    pthread_join(t, NULL);
    CHECK_EQ_INT(s.count, RECORDS);
    free(race_h);
}

UNIT_MAIN(TEST(test_bucket_bounds), TEST(test_relative_error), TEST(test_quantiles_vs_sorted),
          TEST(test_merge), TEST(test_clamping), TEST(test_format), TEST(test_slot_allocates_once),
          TEST(test_concurrent_merge))
