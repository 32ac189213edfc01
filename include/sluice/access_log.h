/* access_log.h - the access-log line formatter: kv, json or a template,
 * over the one field table (ACCESS_FIELDS). Pure: no I/O, no globals. */
#ifndef SLUICE_ACCESS_LOG_H
#define SLUICE_ACCESS_LOG_H

#include "sluice/access_log-t.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Every field a line can carry, in kv/json order. Adding a field is one
 * line here (plus its member in struct access_rec and its row in
 * docs/operations.md). X(name, type, member). `time` is the leading
 * timestamp of a kv line (written without a key). Types: STR (NULL or ""
 * = absent: "-" in kv and templates, null in json), U64, INT, MS (a
 * double of milliseconds printed whole; negative = absent), SERVER
 * (pool "/" backend, absent without a server). */
#define ACCESS_FIELDS(X)                                                                           \
    X(time, STR, time)                                                                             \
    X(worker, INT, worker)                                                                         \
    X(listener, STR, listener)                                                                     \
    X(client, STR, client)                                                                         \
    X(backend, STR, backend)                                                                       \
    X(addr, STR, addr)                                                                             \
    X(up, U64, up)                                                                                 \
    X(down, U64, down)                                                                             \
    X(duration_ms, MS, duration_ms)                                                                \
    X(reason, STR, reason)                                                                         \
    X(sni, STR, sni)                                                                               \
    X(queued_ms, MS, queued_ms)                                                                    \
    X(pool, STR, pool)                                                                             \
    X(server, SERVER, backend)                                                                     \
    X(connect_ms, MS, connect_ms)                                                                  \
    X(start, STR, start)                                                                           \
    X(term_side, STR, term_side)                                                                   \
    X(term_phase, STR, term_phase)                                                                 \
    X(id, U64, id)

enum access_field {
#define X(name, type, member) ACCESS_F_##name,
    ACCESS_FIELDS(X)
#undef X
    ACCESS_FIELD_COUNT
};

/* One finished session, as the formatter sees it. */
struct access_rec {
    uint64_t id;       /* the session's id, as in show sessions / shutdown session */
    const char *time;  /* end, "YYYY-MM-DDTHH:MM:SS.mmmZ" */
    const char *start; /* accept, same form */
    int worker;
    const char *listener;
    const char *client;  /* "1.2.3.4:port", "[v6]:port" */
    const char *pool;    /* NULL: none chosen */
    const char *backend; /* server name, NULL: none */
    const char *addr;    /* server address, NULL: none */
    uint64_t up, down;
    double duration_ms;
    double queued_ms;
    double connect_ms; /* < 0: never connected */
    const char *reason;
    const char *sni;        /* NULL: none */
    const char *term_side;  /* client, server, proxy */
    const char *term_phase; /* header, queue, connect, relay, close */
};

/* A line is at most this long (a longer one is cut, still ending in \n;
 * a json line that would be cut drops its sni instead). */
#define ACCESS_LINE_MAX 4096

/* Field name -> enum access_field, or -1. */
int access_field_lookup(const char *name, size_t len);
const char *access_field_name(enum access_field f);

/* Compile an access_log_format value: "kv", "json" or a template. On
 * error returns -1 and writes why (with the column) into err. The format
 * is zeroed first; free it with access_format_free. */
int access_format_compile(const char *spec, struct access_format *out, char *err, size_t errsize);
void access_format_free(struct access_format *f);

/* Format rec into buf (ACCESS_LINE_MAX bytes), ending in '\n'; returns
 * the length. */
size_t access_format_line(const struct access_format *f, const struct access_rec *rec, char *buf);

/* t (seconds since the epoch) as "YYYY-MM-DDTHH:MM:SS.mmmZ" (24 chars and
 * a NUL: buf holds ACCESS_TIME_LEN), UTC, milliseconds truncated like
 * log_timestamp's. Caches the date per thread: cheap per line. */
#define ACCESS_TIME_LEN 25
void access_time_format(double t, char *buf);

#endif
