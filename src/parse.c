/* parse.c - pure value parsers shared by the config loader and admin. */
#include "sluice/parse.h"
#include "sluice/common.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_DURATION_MS (30LL * 24 * 3600 * 1000)

/* A unit suffix and what it multiplies by ("" for none). */
struct unit {
    const char *suffix;
    uint64_t mult;
};

static bool unit_multiplier(const char *suffix, const struct unit *units, size_t n, bool nocase,
                            uint64_t *mult)
{
    for (size_t i = 0; i < n; i++) {
        if ((nocase ? strcasecmp(suffix, units[i].suffix) : strcmp(suffix, units[i].suffix)) == 0) {
            *mult = units[i].mult;
            return true;
        }
    }
    return false;
}

bool parse_duration_ms(const char *s, int64_t *ms)
{
    /* Plain decimal only: digits, an optional fraction, a unit. strtod
     * alone would also take "1e3", "0x10" or "inf". */
    if (s == NULL || !isdigit((unsigned char)s[0]))
        return false;
    size_t i = 0;
    while (isdigit((unsigned char)s[i]))
        i++;
    if (s[i] == '.') {
        i++;
        if (!isdigit((unsigned char)s[i]))
            return false;
        while (isdigit((unsigned char)s[i]))
            i++;
    }
    if (i > 20)
        return false;
    char num[24];
    memcpy(num, s, i);
    num[i] = '\0';
    static const struct unit units[] = {{"", 1000}, {"s", 1000}, {"ms", 1}, {"m", 60 * 1000},
                                        {"h", 3600 * 1000}};
    uint64_t mult;
    if (!unit_multiplier(s + i, units, ARRAY_SIZE(units), false, &mult))
        return false;
    double r = strtod(num, NULL) * (double)mult;
    if (!isfinite(r) || r > (double)MAX_DURATION_MS)
        return false;
    *ms = (int64_t)(r + 0.5);
    return true;
}

bool parse_size(const char *s, uint64_t *bytes)
{
    if (s == NULL || !isdigit((unsigned char)s[0]))
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s)
        return false;
    static const struct unit units[] = {{"", 1}, {"k", 1024}, {"m", 1024 * 1024},
                                        {"g", 1024ULL * 1024 * 1024}};
    uint64_t mult;
    if (!unit_multiplier(end, units, ARRAY_SIZE(units), true, &mult))
        return false;
    if (v > UINT64_MAX / mult)
        return false;
    *bytes = (uint64_t)v * mult;
    return true;
}

bool parse_int_range(const char *s, long min, long max, long *out)
{
    if (s == NULL || !(isdigit((unsigned char)s[0]) ||
                       (s[0] == '-' && isdigit((unsigned char)s[1]))))
        return false;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

bool parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"on", "yes", "true", "1"};
    static const char *const no[] = {"off", "no", "false", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

int parse_hexdigit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

const char *parse_escapes(const char *s, char **out, size_t *outlen)
{
    size_t n = strlen(s);
    char *buf = malloc(n + 1);
    if (buf == NULL)
        return "out of memory";
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\') {
            buf[o++] = s[i];
            continue;
        }
        char e = s[++i];
        /* \r \n \t \\: a letter's place in `letters` is its byte's in `bytes`. */
        static const char letters[] = "rnt\\", bytes[] = "\r\n\t\\";
        const char *simple = e != '\0' ? strchr(letters, e) : NULL;
        if (simple != NULL) {
            buf[o++] = bytes[simple - letters];
            continue;
        }
        switch (e) {
        case 'x': {
            int hi = i + 1 < n ? parse_hexdigit(s[i + 1]) : -1;
            int lo = i + 2 < n ? parse_hexdigit(s[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                free(buf);
                return "\\x needs two hex digits";
            }
            buf[o++] = (char)(hi * 16 + lo);
            i += 2;
            break;
        }
        default:
            free(buf);
            return "unknown escape (use \\r \\n \\t \\\\ \\xHH)";
        }
    }
    buf[o] = '\0';
    *out = buf;
    *outlen = o;
    return NULL;
}

bool parse_mode(const char *s, int *mode)
{
    if (s == NULL || *s == '\0' || strlen(s) > 4)
        return false;
    int v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '7')
            return false;
        v = v * 8 + (*p - '0');
    }
    if (v > 0777)
        return false;
    *mode = v;
    return true;
}
