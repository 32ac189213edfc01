/* addr.h - socket addresses: parse "ip:port", "[v6]:port", "unix:/path";
 * format them; small socket option helpers. */
#ifndef SLUICE_ADDR_H
#define SLUICE_ADDR_H

#include "sluice/addr-t.h"

#include <stdbool.h>
#include <stddef.h>


enum addr_flags {
    ADDR_ALLOW_UNIX = 1, /* accept "unix:/path" */
    ADDR_ALLOW_WILDCARD = 2, /* accept "*:port" and ":port" as 0.0.0.0 */
};

/* Parse into out. Returns NULL on success or a static reason string. */
const char *addr_parse(const char *s, int flags, struct sockaddr_any *out);

/* "NAME:PORT" with NAME a DNS host name (letters, digits, '-', '_', '.',
 * at least one letter, at most 253 characters): NAME (lower case) into
 * host, PORT into *port. false when s is not of that form. */
bool addr_parse_host(const char *s, char *host, size_t size, int *port);

/* A Unix socket path (absolute, fits sun_path) into out: the one parser
 * behind "unix:/path" addresses and admin_socket. NULL or a reason. */
const char *addr_parse_unix_path(const char *path, struct sockaddr_any *out);

/* "1.2.3.4:80", "[::1]:80", "unix:/path". Always NUL-terminates. */
void addr_format(const struct sockaddr *sa, socklen_t len, char *buf, size_t size);

bool addr_equal(const struct sockaddr_any *a, const struct sockaddr_any *b);

/* A loopback IP address: 127.0.0.0/8, ::1 or ::ffff:127.0.0.0/104. */
bool addr_is_loopback(const struct sockaddr *sa);

/* A 64-bit hash of the IP part only (no port): the `source` balance key. */
unsigned long long addr_hash_ip(const struct sockaddr *sa);

#endif
