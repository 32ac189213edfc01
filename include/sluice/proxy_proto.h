/* proxy_proto.h - the PROXY protocol (HAProxy's, versions 1 and 2): parse
 * the header a load balancer in front of us sends, and build the header we
 * send to backends so they see the real client address. Pure functions. */
#ifndef SLUICE_PROXY_PROTO_H
#define SLUICE_PROXY_PROTO_H

#include "sluice/addr.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest header we accept: v1 is at most 107 bytes; v2 allows 16 + 65535
 * but nobody sends TLVs that big to a TCP proxy. */
#define PROXY_HDR_MAX 1024
#define PROXY_V1_MAX 107

enum proxy_parse_result {
    PROXY_NEED_MORE, /* a valid prefix: read more */
    PROXY_DONE,      /* *consumed bytes form a complete, valid header */
    PROXY_INVALID,   /* not a PROXY header, or a malformed one */
};

struct proxy_hdr {
    int version;              /* 1 or 2 */
    bool local;               /* v2 LOCAL or v1 UNKNOWN: keep the real peer */
    struct sockaddr_ip src;   /* the original client */
    struct sockaddr_ip dst;   /* the address it connected to */
};

/* Parse the start of a stream. Never reads past len; on PROXY_DONE the
 * header is exactly *consumed bytes (payload after it is untouched). On
 * PROXY_INVALID, *why names the problem. */
enum proxy_parse_result proxy_parse(const uint8_t *buf, size_t len, struct proxy_hdr *out,
                                    size_t *consumed, const char **why);

/* Build a header announcing src -> dst. Returns its length (at most
 * PROXY_V1_MAX for v1, 16 + 36 for v2) written to buf (size >= 108). */
size_t proxy_build(int version, const struct sockaddr *src, const struct sockaddr *dst,
                   uint8_t *buf, size_t size);

#endif
