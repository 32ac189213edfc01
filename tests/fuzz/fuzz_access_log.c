/* fuzz_access_log.c - libFuzzer target for the access_log_format compiler
 * and the line formatter (access_log.h).
 *
 * The input (NUL-terminated) is an access_log_format value. Contract: it
 * compiles or fails with a reason and nothing allocated; a compiled
 * format formats a record (its strings also taken from the input, so
 * hostile bytes reach the json escaper) into at most ACCESS_LINE_MAX
 * bytes ending in exactly one newline; a json line has only printable
 * ASCII, and a template line has no byte the template and the fields did
 * not put there. */
#include "sluice/access_log.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *spec = malloc(size + 1);
    if (spec == NULL)
        return 0;
    memcpy(spec, data, size);
    spec[size] = '\0';

    struct access_format f;
    char err[200];
    err[0] = '\0';
    if (access_format_compile(spec, &f, err, sizeof(err)) < 0) {
        if (err[0] == '\0' || f.ops != NULL || f.text != NULL) {
            fprintf(stderr, "rejected without a reason, or with memory left\n");
            abort();
        }
        free(spec);
        return 0;
    }
    /* The input also serves as every string of the record. */
    struct access_rec r = {
        .time = spec,
        .start = spec,
        .worker = (int)size,
        .listener = spec,
        .client = spec,
        .pool = spec,
        .backend = spec,
        .addr = spec,
        .up = size,
        .down = UINT64_MAX,
        .duration_ms = (double)size,
        .queued_ms = 0.5,
        .connect_ms = size % 2 ? -1 : 2.5,
        .reason = spec,
        .sni = spec,
        .term_side = spec,
        .term_phase = spec,
    };
    static char line[ACCESS_LINE_MAX];
    size_t n = access_format_line(&f, &r, line);
    if (n == 0 || n > ACCESS_LINE_MAX || line[n - 1] != '\n') {
        fprintf(stderr, "bad line length %zu or no final newline\n", n);
        abort();
    }
    if (f.kind == ACCESS_FMT_JSON) {
        if (line[0] != '{' || line[n - 2] != '}') {
            fprintf(stderr, "json line is not one object\n");
            abort();
        }
        for (size_t i = 0; i + 1 < n; i++)
            if ((unsigned char)line[i] < 0x20 || (unsigned char)line[i] >= 0x7f) {
                fprintf(stderr, "json line has byte 0x%02x at %zu\n", (unsigned char)line[i], i);
                abort();
            }
    }
    if (f.kind == ACCESS_FMT_TEMPLATE) {
        for (int i = 0; i < f.nops; i++)
            if (f.ops[i].field != ACCESS_OP_LITERAL && f.ops[i].field >= ACCESS_FIELD_COUNT) {
                fprintf(stderr, "op %d has field %u\n", i, f.ops[i].field);
                abort();
            }
    }
    access_format_free(&f);
    free(spec);
    return 0;
}
