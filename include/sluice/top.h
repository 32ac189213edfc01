/* top.h - sluicectl top: a live view of listeners and servers built from
 * successive `show stats json` samples. The pure part (read a sample,
 * compute rates against the previous one, sort, render a frame of a given
 * size) is here so the unit tests can drive it; top_run() adds the
 * terminal (raw mode, ANSI escapes, keys, SIGWINCH). */
#ifndef SLUICE_TOP_H
#define SLUICE_TOP_H

#include "sluice/strbuf.h"

#include <stdbool.h>
#include <stddef.h>

enum top_sort {
    TOP_SORT_SESSIONS, /* s: active sessions */
    TOP_SORT_NEW,      /* n: new sessions per second */
    TOP_SORT_BYTES,    /* b: bytes per second, in + out */
    TOP_SORT_ERRORS,   /* e: errors per second */
    TOP_SORT_P99,      /* p: p99 connect time */
    TOP_SORT_NAME,     /* a: name, A to Z */
    TOP_SORT_COUNT,
};

const char *top_sort_str(enum top_sort s);
/* The sort key of a key press, or -1. */
int top_sort_key(int ch);

enum top_kind { TOP_LISTENER, TOP_SERVER };

struct top_row {
    enum top_kind kind;
    char name[160];   /* listener name, or POOL/NAME */
    char state[16];   /* servers: up, down, ...; listeners: "-" */
    double active;    /* live sessions */
    double new_total; /* counters: accepted (listener) / sessions (server) */
    double in_total;  /* bytes from clients (listener) / from the server */
    double out_total; /* bytes to clients (listener) / to the server */
    double err_total; /* no_backend (listener); connect_failures + local_errors (server) */
    double queue;     /* the pool's queue length, -1: not in the JSON */
    double p99_us;    /* latency_us.connect.p99, -1: absent or no samples */
    bool rated;       /* the rates below are known (a previous sample had this row) */
    double new_s, in_s, out_s, err_s;
};

struct top_sample {
    double t; /* monotonic seconds when taken */
    char version[32];
    long pid;
    double uptime;
    int workers;
    double sessions_active, sessions_total;
    struct top_row *rows;
    int nrows;
};

/* Fill s from one /stats.json document. False with a message in err. */
bool top_sample_parse(struct top_sample *s, const char *json, size_t len, double t, char *err,
                      size_t errlen);
void top_sample_free(struct top_sample *s);
/* Rates of cur against prev (rows matched by kind and name; counters that
 * went down, as after a restart, count from zero). prev may be NULL. */
void top_rates(struct top_sample *cur, const struct top_sample *prev);
/* Listeners first, then servers, each group ordered by key. */
void top_sort_rows(struct top_sample *s, enum top_sort key);
/* One frame of at most width columns and height lines (0: unlimited),
 * each line ending in "\n"; plain text. note, if not NULL, is shown on the
 * status line (an error reaching sluice). interval in seconds. A frame
 * for the terminal (width > 0) names the keys; a plain one does not. */
void top_render(const struct top_sample *s, enum top_sort key, double interval, const char *note,
                int width, int height, struct strbuf *out);

/* Fetch one stats JSON document into out; false with a message in err. */
typedef bool (*top_fetch_fn)(void *ctx, struct strbuf *out, char *err, size_t errlen);

struct top_opts {
    double interval; /* seconds between samples */
    bool once;       /* print one plain frame (rates over one interval) and exit */
    enum top_sort sort;
    top_fetch_fn fetch;
    void *ctx;
};

/* Run the view on the terminal (or print one frame with once). Returns the
 * exit status: 0, or 1 when sluice cannot be reached (once, or at start). */
int top_run(const struct top_opts *o);

#endif
