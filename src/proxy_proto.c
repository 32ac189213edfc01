/* proxy_proto.c - PROXY protocol v1/v2 parser and builder. Strict: a header
 * is accepted only if every field is well formed; anything else is invalid
 * and the caller closes the connection. */
#include "sluice/proxy_proto.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stddef.h>
#include <string.h>

static const uint8_t v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                   0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* A decimal port 0..65535 without sign or leading zeros. */
static bool v1_port(const char *s, uint16_t *out)
{
    size_t n = strlen(s);
    if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
        return false;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 65535)
        return false;
    *out = (uint16_t)v;
    return true;
}

static bool v1_addr(int family, const char *ip, const char *port, struct sockaddr_ip *out)
{
    uint16_t p;
    if (!v1_port(port, &p))
        return false;
    memset(out, 0, sizeof(*out));
    if (family == AF_INET) {
        out->u.in4.sin_family = AF_INET;
        out->u.in4.sin_port = htons(p);
        return inet_pton(AF_INET, ip, &out->u.in4.sin_addr) == 1;
    }
    out->u.in6.sin6_family = AF_INET6;
    out->u.in6.sin6_port = htons(p);
    return inet_pton(AF_INET6, ip, &out->u.in6.sin6_addr) == 1;
}

static enum proxy_parse_result parse_v1(const uint8_t *buf, size_t len, struct proxy_hdr *out,
                                        size_t *consumed, const char **why)
{
    size_t scan = len < PROXY_V1_MAX ? len : PROXY_V1_MAX;
    const uint8_t *cr = NULL;
    for (size_t i = 0; i + 1 < scan; i++) {
        if (buf[i] == '\r') {
            if (buf[i + 1] != '\n')
                return (*why = "v1: CR without LF"), PROXY_INVALID;
            cr = buf + i;
            break;
        }
        if (buf[i] == '\n' || buf[i] == '\0')
            return (*why = "v1: bad character"), PROXY_INVALID;
    }
    if (cr == NULL)
        return len >= PROXY_V1_MAX ? ((*why = "v1: header longer than 107 bytes"), PROXY_INVALID)
                                   : PROXY_NEED_MORE;
    char line[PROXY_V1_MAX + 1];
    size_t n = (size_t)(cr - buf);
    memcpy(line, buf, n);
    line[n] = '\0';
    char *f[7];
    int nf = 0;
    char *save = NULL;
    for (char *t = strtok_r(line, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
        if (nf == 6)
            return (*why = "v1: too many fields"), PROXY_INVALID;
        f[nf++] = t;
    }
    /* Single spaces only: rebuild and compare would be costly; count. */
    size_t spaces = 0;
    for (size_t i = 0; i < n; i++)
        spaces += buf[i] == ' ';
    if (nf < 2 || strcmp(f[0], "PROXY") != 0)
        return (*why = "v1: expected PROXY"), PROXY_INVALID;
    memset(out, 0, sizeof(*out));
    out->version = 1;
    if (strcmp(f[1], "UNKNOWN") == 0) {
        out->local = true; /* anything may follow UNKNOWN */
    } else {
        int family = strcmp(f[1], "TCP4") == 0 ? AF_INET : strcmp(f[1], "TCP6") == 0 ? AF_INET6 : 0;
        if (family == 0)
            return (*why = "v1: protocol must be TCP4, TCP6 or UNKNOWN"), PROXY_INVALID;
        if (nf != 6 || spaces != 5)
            return (*why = "v1: expected PROXY TCPx SRC DST SPORT DPORT"), PROXY_INVALID;
        if (!v1_addr(family, f[2], f[4], &out->src) || !v1_addr(family, f[3], f[5], &out->dst))
            return (*why = "v1: bad address or port"), PROXY_INVALID;
    }
    *consumed = n + 2;
    return PROXY_DONE;
}

/* Where a family's address and port sit in its sockaddr, and the address
 * length (4 or 16): one description for building and parsing v2 headers. */
static size_t ip_layout(bool v6, size_t *addr_off, size_t *port_off)
{
    *addr_off = v6 ? offsetof(struct sockaddr_in6, sin6_addr) : offsetof(struct sockaddr_in, sin_addr);
    *port_off = v6 ? offsetof(struct sockaddr_in6, sin6_port) : offsetof(struct sockaddr_in, sin_port);
    return v6 ? 16 : 4;
}

/* The source and destination of a v2 header's address block: addresses
 * (4 or 16 bytes each), then ports, all in network order as on the wire. */
static void v2_addresses(struct proxy_hdr *out, const uint8_t *a, bool v6)
{
    size_t ao, po, alen = ip_layout(v6, &ao, &po);
    struct sockaddr_ip *ends[2] = {&out->src, &out->dst};
    for (size_t i = 0; i < 2; i++) {
        ends[i]->u.sa.sa_family = v6 ? AF_INET6 : AF_INET;
        memcpy((char *)ends[i] + ao, a + i * alen, alen);
        memcpy((char *)ends[i] + po, a + 2 * alen + 2 * i, 2);
    }
}

static enum proxy_parse_result parse_v2(const uint8_t *buf, size_t len, struct proxy_hdr *out,
                                        size_t *consumed, const char **why)
{
    if (len < 16)
        return PROXY_NEED_MORE;
    uint8_t ver_cmd = buf[12], fam = buf[13];
    size_t body = (size_t)buf[14] << 8 | buf[15];
    if ((ver_cmd & 0xF0) != 0x20)
        return (*why = "v2: bad version"), PROXY_INVALID;
    uint8_t cmd = ver_cmd & 0x0F;
    if (cmd > 1)
        return (*why = "v2: bad command"), PROXY_INVALID;
    if (16 + body > PROXY_HDR_MAX)
        return (*why = "v2: header too long"), PROXY_INVALID;
    if (len < 16 + body)
        return PROXY_NEED_MORE;
    memset(out, 0, sizeof(*out));
    out->version = 2;
    const uint8_t *a = buf + 16;
    if (cmd == 0) {
        out->local = true; /* LOCAL: health check from the balancer */
    } else if (fam == 0x11 || fam == 0x21) { /* TCP over IPv4 / IPv6 */
        bool v6 = fam == 0x21;
        if (body < (v6 ? 36 : 12))
            return (*why = v6 ? "v2: short IPv6 addresses" : "v2: short IPv4 addresses"),
                   PROXY_INVALID;
        v2_addresses(out, a, v6);
    } else if (fam == 0x00) {
        out->local = true; /* UNSPEC: keep the real peer */
    } else {
        return (*why = "v2: unsupported address family (TCP over IPv4/IPv6 only)"), PROXY_INVALID;
    }
    *consumed = 16 + body; /* TLVs after the addresses are skipped */
    return PROXY_DONE;
}

enum proxy_parse_result proxy_parse(const uint8_t *buf, size_t len, struct proxy_hdr *out,
                                    size_t *consumed, const char **why)
{
    *why = "not a PROXY protocol header";
    if (len == 0)
        return PROXY_NEED_MORE;
    if (buf[0] == 'P') {
        static const char v1[] = "PROXY ";
        size_t n = len < 6 ? len : 6;
        if (memcmp(buf, v1, n) != 0)
            return PROXY_INVALID;
        return n < 6 ? PROXY_NEED_MORE : parse_v1(buf, len, out, consumed, why);
    }
    if (buf[0] == 0x0D) {
        size_t n = len < 12 ? len : 12;
        if (memcmp(buf, v2_sig, n) != 0)
            return PROXY_INVALID;
        return n < 12 ? PROXY_NEED_MORE : parse_v2(buf, len, out, consumed, why);
    }
    return PROXY_INVALID;
}

size_t proxy_build(int version, const struct sockaddr *src, const struct sockaddr *dst,
                   uint8_t *buf, size_t size)
{
    bool same = src->sa_family == dst->sa_family &&
                (src->sa_family == AF_INET || src->sa_family == AF_INET6);
    if (version == 1) {
        int n;
        if (!same) {
            n = snprintf((char *)buf, size, "PROXY UNKNOWN\r\n");
        } else {
            bool v6 = src->sa_family == AF_INET6;
            size_t ao, po;
            ip_layout(v6, &ao, &po);
            char a[INET6_ADDRSTRLEN], b[INET6_ADDRSTRLEN];
            in_port_t sp, dp;
            inet_ntop(src->sa_family, (const char *)src + ao, a, sizeof(a));
            inet_ntop(src->sa_family, (const char *)dst + ao, b, sizeof(b));
            memcpy(&sp, (const char *)src + po, sizeof(sp));
            memcpy(&dp, (const char *)dst + po, sizeof(dp));
            n = snprintf((char *)buf, size, "PROXY TCP%c %s %s %u %u\r\n", v6 ? '6' : '4', a, b,
                         ntohs(sp), ntohs(dp));
        }
        return n > 0 && (size_t)n < size ? (size_t)n : 0;
    }
    if (size < 16 + 36)
        return 0;
    memcpy(buf, v2_sig, 12);
    size_t body;
    if (!same) {
        buf[12] = 0x21; /* PROXY, but the addresses are unknown */
        buf[13] = 0x00;
        body = 0;
    } else {
        bool v6 = src->sa_family == AF_INET6;
        size_t ao, po, alen = ip_layout(v6, &ao, &po);
        const struct sockaddr *ends[2] = {src, dst};
        buf[12] = 0x21;
        buf[13] = v6 ? 0x21 : 0x11; /* TCP over IPv6 / IPv4 */
        for (size_t i = 0; i < 2; i++) {
            memcpy(buf + 16 + i * alen, (const char *)ends[i] + ao, alen);
            memcpy(buf + 16 + 2 * alen + 2 * i, (const char *)ends[i] + po, 2);
        }
        body = 2 * alen + 4;
    }
    buf[14] = (uint8_t)(body >> 8);
    buf[15] = (uint8_t)body;
    return 16 + body;
}
