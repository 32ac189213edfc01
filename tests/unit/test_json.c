/* test_json.c - the strict JSON reader (json.h): what it accepts, what it
 * refuses, and its limits. */
#include "sluice/json.h"

#include "unit.h"

static struct json_doc *parse(const char *s)
{
    char err[128];
    return json_parse(s, strlen(s), err, sizeof(err));
}

static void test_accepts_a_document(void)
{
    const char *s =
        " {\"a\": [1, -2.5e3, 0, true, false, null], \"b\": {\"c\": \"x\\ty\"},"
        " \"u\": \"\\u00e9\\ud83d\\ude00\", \"raw\": \"\xc3\xa9\", \"e\": {}, \"z\": []}\n";
    struct json_doc *d = parse(s);
    REQUIRE(d != NULL);
    const struct json_value *r = json_root(d);
    CHECK(r->type == JSON_OBJECT);
    CHECK_EQ_INT((int)r->len, 6);
    const struct json_value *a = json_get(r, "a");
    REQUIRE(a != NULL && a->type == JSON_ARRAY);
    CHECK_EQ_INT((int)a->len, 6);
    CHECK(a->child->num == 1);
    CHECK(a->child->next->num == -2500);
    CHECK(a->child->next->next->next->type == JSON_TRUE);
    CHECK_STR(json_str(json_path(r, "b.c"), NULL), "x\ty");
    CHECK_STR(json_str(json_get(r, "u"), NULL), "\xc3\xa9\xf0\x9f\x98\x80");
    CHECK_STR(json_str(json_get(r, "raw"), NULL), "\xc3\xa9");
    CHECK(json_get(r, "e")->len == 0 && json_get(r, "z")->type == JSON_ARRAY);
    CHECK(json_get(r, "missing") == NULL);
    CHECK(json_path(r, "a.b") == NULL);
    CHECK(json_num(json_get(r, "b"), 7) == 7);
    CHECK_STR(json_str(NULL, "dflt"), "dflt");
    json_free(d);
}

static void test_scalars_at_top(void)
{
    struct json_doc *d = parse("42");
    REQUIRE(d != NULL);
    CHECK(json_num(json_root(d), 0) == 42);
    json_free(d);
    d = parse("\"s\"");
    REQUIRE(d != NULL);
    CHECK_STR(json_str(json_root(d), NULL), "s");
    json_free(d);
}

static void test_refuses(void)
{
    static const char *const bad[] = {
        "",
        " ",
        "[1,]",
        "{\"a\":1,}",
        "[01]",
        "[1.]",
        "[.5]",
        "[1e]",
        "[-]",
        "[+1]",
        "{a:1}",
        "{\"a\" 1}",
        "[1 2]",
        "[\"\\x\"]",
        "[\"\\u12\"]",
        "[\"\\ud800\"]",
        "[\"\\udc00\"]",
        "[\"\\u0000\"]",
        "[\"a\nb\"]",
        "[\"\xff\"]",
        "[\"\xc0\xaf\"]",
        "[\"\xed\xa0\x80\"]",
        "[tru]",
        "[nul]",
        "1 2",
        "[1e999]",
        "[NaN]",
        "[Infinity]",
        "{\"a\":1",
        "[\"abc",
        "// c\n1",
        "'s'",
        "[1]x",
    };
    for (size_t i = 0; i < UNIT_LEN(bad); i++) {
        char err[128] = "";
        struct json_doc *d = json_parse(bad[i], strlen(bad[i]), err, sizeof(err));
        CHECK_MSG(d == NULL, "accepted %s", bad[i]);
        CHECK_MSG(d != NULL || strncmp(err, "offset ", 7) == 0, "no located error for %s: %s",
                  bad[i], err);
        json_free(d);
    }
}

static void test_embedded_nul_refused(void)
{
    struct json_doc *d = json_parse("[\"a\0b\"]", 7, NULL, 0);
    CHECK(d == NULL);
}

static void test_depth_limit(void)
{
    char buf[2 * (JSON_MAX_DEPTH + 2) + 1];
    for (int depth = JSON_MAX_DEPTH; depth <= JSON_MAX_DEPTH + 1; depth++) {
        int n = 0;
        for (int i = 0; i < depth; i++)
            buf[n++] = '[';
        for (int i = 0; i < depth; i++)
            buf[n++] = ']';
        buf[n] = '\0';
        char err[128] = "";
        struct json_doc *d = json_parse(buf, (size_t)n, err, sizeof(err));
        if (depth <= JSON_MAX_DEPTH)
            CHECK_MSG(d != NULL, "depth %d refused: %s", depth, err);
        else
            CHECK_MSG(d == NULL && strstr(err, "nested deeper") != NULL, "depth %d: %s", depth,
                      err);
        json_free(d);
    }
}

static void test_many_values(void)
{
    /* More values than one node chunk, all reachable. */
    size_t count = 5000, n = 0;
    char *buf = malloc(count * 2 + 2);
    REQUIRE(buf != NULL);
    buf[n++] = '[';
    for (size_t i = 0; i < count; i++) {
        buf[n++] = '7';
        buf[n++] = i + 1 < count ? ',' : ']';
    }
    struct json_doc *d = json_parse(buf, n, NULL, 0);
    REQUIRE(d != NULL);
    size_t seen = 0;
    for (const struct json_value *v = json_root(d)->child; v; v = v->next)
        seen += v->num == 7;
    CHECK_EQ_INT((int)seen, (int)count);
    json_free(d);
    free(buf);
}

static void test_error_offset(void)
{
    char err[128];
    CHECK(json_parse("[1, x]", 6, err, sizeof(err)) == NULL);
    CHECK_STR(err, "offset 4: invalid number");
}

/* json_int: any number converts without undefined behaviour (a fuzzed
 * "pid": 1e300 once reached a plain cast in sluicectl top). */
static void test_int_clamps(void)
{
    static const struct {
        const char *doc;
        long want;
    } cases[] = {
        {"42", 42},   {"-7", -5},          {"1e300", 1000}, {"-1e300", -5},
        {"3.9", 3},   {"1e999", 1000},     {"\"12\"", 99}, {"null", 99},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char err[128];
        struct json_doc *d = json_parse(cases[i].doc, strlen(cases[i].doc), err, sizeof(err));
        if (d == NULL) {
            CHECK_MSG(strcmp(cases[i].doc, "1e999") == 0, "%s: %s", cases[i].doc, err);
            continue;
        }
        CHECK_MSG(json_int(json_root(d), -5, 1000, 99) == cases[i].want, "%s", cases[i].doc);
        json_free(d);
    }
    CHECK(json_int(NULL, 0, 1, 7) == 7);
}

UNIT_MAIN(TEST(test_int_clamps), TEST(test_accepts_a_document), TEST(test_scalars_at_top), TEST(test_refuses),
          TEST(test_embedded_nul_refused), TEST(test_depth_limit), TEST(test_many_values),
          TEST(test_error_offset))
