/* fuzz_json.c - libFuzzer target for the JSON reader (json.h) and the
 * stats readers built on it (top_sample_parse). Besides "does not crash":
 * a document that parses has members that count up to each container's
 * len, and strings whose length is their strlen (no NUL inside). */
#include "sluice/json.h"
#include "sluice/top.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void walk(const struct json_value *v, int depth)
{
    if (depth > JSON_MAX_DEPTH + 1)
        abort();
    if (v->type == JSON_STRING && strlen(v->str) != v->len)
        abort();
    if (v->type == JSON_ARRAY || v->type == JSON_OBJECT) {
        size_t n = 0;
        for (const struct json_value *m = v->child; m != NULL; m = m->next) {
            if ((v->type == JSON_OBJECT) != (m->key != NULL))
                abort();
            walk(m, depth + 1);
            n++;
        }
        if (n != v->len)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[128];
    struct json_doc *d = json_parse((const char *)data, size, err, sizeof(err));
    if (d != NULL) {
        walk(json_root(d), 0);
        json_free(d);
    } else if (strncmp(err, "offset ", 7) != 0) {
        abort();
    }
    struct top_sample s;
    if (top_sample_parse(&s, (const char *)data, size, 1, err, sizeof(err))) {
        struct strbuf f;
        strbuf_init(&f);
        top_rates(&s, NULL);
        top_sort_rows(&s, TOP_SORT_P99);
        top_render(&s, TOP_SORT_P99, 1, NULL, 80, 24, &f);
        strbuf_free(&f);
        top_sample_free(&s);
    }
    return 0;
}
