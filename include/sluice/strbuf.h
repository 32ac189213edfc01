/* strbuf.h - a growable string for building replies (admin, stats). */
#ifndef SLUICE_STRBUF_H
#define SLUICE_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

struct strbuf {
    char *data;
    size_t len, cap;
    bool oom; /* an append failed: contents are truncated */
};

void strbuf_init(struct strbuf *b);
void strbuf_free(struct strbuf *b);
void strbuf_append(struct strbuf *b, const char *s, size_t n);
void strbuf_puts(struct strbuf *b, const char *s);
void strbuf_printf(struct strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Append s as a JSON string literal, quotes included. */
void strbuf_json_str(struct strbuf *b, const char *s);
/* Drop the first n bytes (what has been sent). */
void strbuf_consume(struct strbuf *b, size_t n);

#endif
