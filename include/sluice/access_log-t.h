/* access_log-t.h - a compiled access_log_format, embedded in struct config
 * (see access_log.h for the formatter). */
#ifndef SLUICE_ACCESS_LOG_T_H
#define SLUICE_ACCESS_LOG_T_H

#include <stdint.h>

enum access_format_kind {
    ACCESS_FMT_KV,       /* key=value, today's line; the default */
    ACCESS_FMT_JSON,     /* one JSON object per line */
    ACCESS_FMT_TEMPLATE, /* "text %{field} text" */
};

/* One step of a compiled template: copy literal text, or one field. */
struct access_op {
    uint16_t field; /* ACCESS_OP_LITERAL or an enum access_field */
    uint16_t len;   /* literal: its length */
    uint32_t off;   /* literal: offset in access_format.text */
};

#define ACCESS_OP_LITERAL 0xffff

struct access_format {
    int kind;              /* enum access_format_kind */
    struct access_op *ops; /* template: compiled at config load */
    int nops;
    char *text; /* template: the literal pieces, back to back */
};

#endif
