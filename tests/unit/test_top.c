/* test_top.c - sluicectl top's pure part (top.h): reading a stats sample,
 * rates from two samples, sort orders, frames that fit their size. */
#include "sluice/top.h"

#include "unit.h"

/* A stats document like `show stats json`, with the latency_us fields the
 * histograms add on one server only. */
static const char *doc(int a_sessions, int b_sessions, int a_active)
{
    static char buf[2048];
    snprintf(buf, sizeof(buf),
             "{\"info\":{\"version\":\"0.1.0\",\"pid\":42,\"uptime_seconds\":3723.5,\"workers\":2,"
             "\"sessions_active\":3,\"sessions_total\":9},"
             "\"process\":{},"
             "\"listeners\":[{\"name\":\"web\",\"pool\":\"web\",\"active\":3,\"accepted\":%d,"
             "\"no_backend\":1,\"bytes_in\":1000,\"bytes_out\":2000}],"
             "\"servers\":[{\"pool\":\"web\",\"name\":\"a\",\"state\":\"up\",\"active\":%d,"
             "\"sessions\":%d,\"connect_failures\":0,\"local_errors\":0,\"bytes_in\":10,"
             "\"bytes_out\":20,\"latency_us\":{\"connect\":{\"count\":5,\"p50\":100,\"p90\":200,"
             "\"p99\":350,\"p999\":400}}},"
             "{\"pool\":\"web\",\"name\":\"b\\u0007\",\"state\":\"down\",\"active\":1,"
             "\"sessions\":%d,\"connect_failures\":4,\"local_errors\":1,\"bytes_in\":0,"
             "\"bytes_out\":0}],"
             "\"pools\":[{\"name\":\"web\",\"queue\":2}]}",
             a_sessions + b_sessions, a_active, a_sessions, b_sessions);
    return buf;
}

static bool sample(struct top_sample *s, const char *json, double t)
{
    char err[128];
    bool ok = top_sample_parse(s, json, strlen(json), t, err, sizeof(err));
    CHECK_MSG(ok, "%s", err);
    return ok;
}

static void test_parse_sample(void)
{
    struct top_sample s;
    REQUIRE(sample(&s, doc(4, 2, 2), 10));
    REQUIRE_EQ_INT(s.nrows, 3);
    CHECK_STR(s.rows[0].name, "web");
    CHECK(s.rows[0].kind == TOP_LISTENER && s.rows[0].err_total == 1 && s.rows[0].queue == 2);
    CHECK_STR(s.rows[1].name, "web/a");
    CHECK(s.rows[1].p99_us == 350);
    CHECK_STR(s.rows[2].name, "web/b?"); /* the control character is masked */
    CHECK(s.rows[2].p99_us == -1);       /* no latency_us: unknown */
    CHECK(s.rows[2].err_total == 5);     /* connect failures + local errors */
    CHECK_STR(s.rows[2].state, "down");
    CHECK(s.pid == 42 && s.workers == 2);
    top_sample_free(&s);
}

static void test_rejects_other_json(void)
{
    struct top_sample s;
    char err[128];
    CHECK(!top_sample_parse(&s, "{\"a\":1}", 7, 0, err, sizeof(err)));
    CHECK(strstr(err, "not a sluice stats document") != NULL);
    CHECK(!top_sample_parse(&s, "{", 1, 0, err, sizeof(err)));
}

static void test_rates(void)
{
    struct top_sample a, b;
    REQUIRE(sample(&a, doc(4, 2, 0), 10));
    REQUIRE(sample(&b, doc(14, 4, 0), 12));
    top_rates(&a, NULL);
    CHECK(!a.rows[0].rated);
    top_rates(&b, &a);
    CHECK(b.rows[0].rated && b.rows[0].new_s == 6); /* (18 - 6) / 2 */
    CHECK(b.rows[1].new_s == 5 && b.rows[2].new_s == 1);
    CHECK(b.rows[1].in_s == 0); /* counter unchanged */
    top_sample_free(&a);
    top_sample_free(&b);
}

static void test_sort_orders(void)
{
    struct top_sample a, b;
    REQUIRE(sample(&a, doc(4, 2, 0), 10));
    REQUIRE(sample(&b, doc(14, 40, 0), 11));
    top_rates(&b, &a);
    top_sort_rows(&b, TOP_SORT_NEW);
    CHECK(b.rows[0].kind == TOP_LISTENER);
    CHECK_STR(b.rows[1].name, "web/b?");
    top_sort_rows(&b, TOP_SORT_P99);
    CHECK_STR(b.rows[1].name, "web/a");
    top_sort_rows(&b, TOP_SORT_ERRORS); /* both 0/s: by name */
    CHECK_STR(b.rows[1].name, "web/a");
    top_sort_rows(&b, TOP_SORT_NAME);
    CHECK_STR(b.rows[1].name, "web/a");
    top_sort_rows(&b, TOP_SORT_SESSIONS);
    CHECK_STR(b.rows[1].name, "web/b?"); /* active 1 against 0 */
    CHECK_EQ_INT(top_sort_key('p'), TOP_SORT_P99);
    CHECK_EQ_INT(top_sort_key('x'), -1);
    top_sample_free(&a);
    top_sample_free(&b);
}

static void test_frame_fits(void)
{
    struct top_sample s;
    REQUIRE(sample(&s, doc(4, 2, 2), 10));
    top_rates(&s, NULL);
    for (int w = 1; w <= 120; w += 7) {
        for (int h = 1; h <= 12; h += 3) {
            struct strbuf f;
            strbuf_init(&f);
            top_render(&s, TOP_SORT_SESSIONS, 1, "note", w, h, &f);
            int lines = 0;
            for (const char *p = f.data, *e; p && p < f.data + f.len; p = e + 1) {
                e = memchr(p, '\n', (size_t)(f.data + f.len - p));
                REQUIRE(e != NULL);
                CHECK_MSG(e - p <= w, "line of %d columns in width %d", (int)(e - p), w);
                lines++;
            }
            CHECK_MSG(lines <= h, "%d lines in height %d", lines, h);
            strbuf_free(&f);
        }
    }
    struct strbuf f;
    strbuf_init(&f);
    top_render(&s, TOP_SORT_SESSIONS, 1, NULL, 0, 0, &f);
    CHECK(strstr(f.data, "sort: sessions\n") != NULL); /* plain: no key help */
    CHECK(strstr(f.data, "350us") != NULL);            /* p99 of web/a */
    CHECK(strstr(f.data, "up 1h02m") != NULL);
    strbuf_free(&f);
    top_sample_free(&s);
}

UNIT_MAIN(TEST(test_parse_sample), TEST(test_rejects_other_json), TEST(test_rates),
          TEST(test_sort_orders), TEST(test_frame_fits))
