/* parse.h - pure parsers for config values: durations, sizes, integers. */
#ifndef SLUICE_PARSE_H
#define SLUICE_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* "250ms", "3s", "5m", "1h", "1.5s"; a bare number means seconds.
 * Stores milliseconds. Returns false (and leaves *ms alone) on anything
 * else, on negative values, or beyond 30 days. */
bool parse_duration_ms(const char *s, int64_t *ms);

/* "4096", "16k", "1m" (binary multiples). Returns false on junk/overflow. */
bool parse_size(const char *s, uint64_t *bytes);

/* A decimal integer in [min, max], whole string, no sign tricks. */
bool parse_int_range(const char *s, long min, long max, long *out);

/* "on|yes|true|1" / "off|no|false|0". */
bool parse_bool(const char *s, bool *out);

/* The value of a hex digit (0-9, a-f, A-F), or -1. */
int parse_hexdigit(char c);

/* Decode C escapes \r \n \t \\ \xHH into a new buffer (may contain NUL).
 * Returns NULL on success or a static reason; *out is malloc'ed. */
const char *parse_escapes(const char *s, char **out, size_t *outlen);

/* An octal permission mode like "0600" or "660" (0..0777). */
bool parse_mode(const char *s, int *mode);

#endif
