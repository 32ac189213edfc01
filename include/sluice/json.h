/* json.h - a small, strict, bounded JSON reader (RFC 8259) for the stats
 * clients: sluicectl top and the admin_http stats page read /stats.json
 * with it. The whole text is parsed into a tree; lookups are linear (the
 * stats document is small). Limits: nesting depth JSON_MAX_DEPTH, input
 * JSON_MAX_INPUT bytes, JSON_MAX_NODES values. Strict: no trailing commas,
 * no leading zeros, no comments, no control characters or invalid UTF-8 in
 * strings, no lone surrogates in \u escapes, nothing but white space after
 * the value. Strings may not contain NUL (\u0000 is refused) so they can be
 * used as C strings. */
#ifndef SLUICE_JSON_H
#define SLUICE_JSON_H

#include <stdbool.h>
#include <stddef.h>

#define JSON_MAX_DEPTH 64
#define JSON_MAX_INPUT (16u << 20)
#define JSON_MAX_NODES (1u << 20)

enum json_type {
    JSON_NULL,
    JSON_FALSE,
    JSON_TRUE,
    JSON_NUMBER,
    JSON_STRING,
    JSON_ARRAY,
    JSON_OBJECT,
};

struct json_value {
    enum json_type type;
    double num;               /* JSON_NUMBER */
    const char *str;          /* JSON_STRING: NUL-terminated, UTF-8 */
    size_t len;               /* JSON_STRING: bytes; ARRAY/OBJECT: members */
    const char *key;          /* member of an object: its name */
    struct json_value *child; /* ARRAY/OBJECT: first member */
    struct json_value *next;  /* next member of the parent */
};

struct json_doc;

/* Parse len bytes of text. NULL on error, with "offset N: what" in err. */
struct json_doc *json_parse(const char *text, size_t len, char *err, size_t errlen);
void json_free(struct json_doc *doc);
const struct json_value *json_root(const struct json_doc *doc);

const char *json_type_str(enum json_type t);
/* The member of an object named key (the first if repeated), or NULL (also
 * when obj is NULL or not an object). */
const struct json_value *json_get(const struct json_value *obj, const char *key);
/* Follow dotted names through nested objects: "latency_us.connect.p99". */
const struct json_value *json_path(const struct json_value *obj, const char *path);
/* The number, or dflt when v is NULL or not a number. */
double json_num(const struct json_value *v, double dflt);
/* The number as a whole number clamped to lo..hi (any double, however
 * large, converts safely), or dflt when v is NULL or not a number. */
long json_int(const struct json_value *v, long lo, long hi, long dflt);
/* The string, or dflt when v is NULL or not a string. */
const char *json_str(const struct json_value *v, const char *dflt);

#endif
