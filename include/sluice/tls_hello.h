/* tls_hello.h - find the server name (SNI, RFC 6066) in the TLS ClientHello
 * a client opens with, without terminating TLS: `route = sni` listeners
 * pick their pool by it. Pure functions, no I/O: the caller hands over the
 * bytes read so far and asks again with more. */
#ifndef SLUICE_TLS_HELLO_H
#define SLUICE_TLS_HELLO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The most bytes of TLS records looked at: a ClientHello that is not
 * complete within them is invalid. Real ones are 200 bytes to 2 KiB. */
#define TLS_HELLO_MAX 16384
/* Longest host name (RFC 1035), without a trailing dot. */
#define TLS_SNI_MAX 253

enum tls_hello_result {
    TLS_HELLO_NEED_MORE, /* a valid prefix: read more (at least up to `need`) */
    TLS_HELLO_DONE,      /* a complete, well-formed ClientHello */
    TLS_HELLO_INVALID,   /* not TLS, not a ClientHello, or malformed: see `why` */
};

struct tls_hello {
    /* DONE: the host_name of the server_name extension, lower-cased,
     * without a trailing dot, NUL-terminated; "" when the hello has none. */
    char sni[TLS_SNI_MAX + 1];
    size_t sni_len;
    /* DONE: bytes of the input up to the end of the ClientHello message
     * (the records that carry it; what follows is left alone). */
    size_t consumed;
    /* NEED_MORE: the ClientHello cannot be complete before the input is
     * at least this long (len < need <= TLS_HELLO_MAX), so a caller may
     * wait for that many bytes before asking again (a malformed byte in
     * between is then only noticed at that point). */
    size_t need;
    /* INVALID: what is wrong, a static string. */
    const char *why;
};

/* Parse the start of a client's stream. Never reads buf past len; every
 * length field is checked against what encloses it before it is used.
 * Handles a ClientHello cut anywhere and one spread over several handshake
 * records. Answers are final: once DONE or INVALID for some bytes, the same
 * bytes with anything appended give the same answer. */
enum tls_hello_result tls_hello_parse(const uint8_t *buf, size_t len, struct tls_hello *out);

/* A DNS host name as SNI carries it and `sni` rules name it: labels of
 * 1..63 letters, digits, '-' or '_' joined by dots, at most TLS_SNI_MAX
 * bytes, one trailing dot allowed and dropped. On success writes it
 * lower-cased and NUL-terminated to out (room for TLS_SNI_MAX + 1) and its
 * length to *out_len. */
bool tls_host_name(const char *name, size_t n, char *out, size_t *out_len);

const char *tls_hello_result_str(enum tls_hello_result r);

#endif
