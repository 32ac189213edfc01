/* addr.c - address parsing and formatting. Literal addresses only: no DNS
 * lookups at config time, so a reload can never block on a resolver. */
#include "sluice/addr.h"
#include "sluice/hash.h"
#include "sluice/parse.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>

static const char *parse_port(const char *s, in_port_t *port)
{
    long v;
    if (!parse_int_range(s, 1, 65535, &v))
        return "port must be 1..65535";
    *port = htons((in_port_t)v);
    return NULL;
}

/* The zone of a scoped IPv6 address: an interface name or index that
 * exists now (a link-local address is meaningless without one). */
static const char *parse_zone(const char *zone, uint32_t *scope_id)
{
    long idx;
    char name[IF_NAMESIZE];
    if (*zone == '\0')
        return "empty interface after '%' in IPv6 address";
    if (strlen(zone) >= IF_NAMESIZE)
        return "interface name after '%' too long";
    unsigned int i = if_nametoindex(zone);
    if (i == 0 && parse_int_range(zone, 1, 0x7fffffff, &idx) &&
        if_indextoname((unsigned int)idx, name) != NULL)
        i = (unsigned int)idx; /* a numeric zone: an interface index */
    if (i == 0)
        return "no such network interface after '%' (see: ip link)";
    *scope_id = i;
    return NULL;
}

const char *addr_parse_unix_path(const char *path, struct sockaddr_any *out)
{
    memset(out, 0, sizeof(*out));
    size_t n = strlen(path);
    if (n == 0 || path[0] != '/')
        return "unix socket path must be absolute";
    if (n >= sizeof(out->u.un.sun_path))
        return "unix socket path too long";
    out->u.un.sun_family = AF_UNIX;
    memcpy(out->u.un.sun_path, path, n + 1);
    out->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    return NULL;
}

const char *addr_parse(const char *s, int flags, struct sockaddr_any *out)
{
    memset(out, 0, sizeof(*out));
    if (s == NULL || *s == '\0')
        return "empty address";
    if (strncmp(s, "unix:", 5) == 0) {
        if (!(flags & ADDR_ALLOW_UNIX))
            return "unix sockets are not allowed here";
        return addr_parse_unix_path(s + 5, out);
    }
    char host[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
    const char *port;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':')
            return "expected [IPv6]:port";
        size_t n = (size_t)(close - s - 1);
        if (n == 0 || n >= sizeof(host))
            return "bad IPv6 address";
        memcpy(host, s + 1, n);
        host[n] = '\0';
        port = close + 2;
        out->u.in6.sin6_family = AF_INET6;
        /* A scoped address, "fe80::1%eth0": the zone is an interface. */
        char *zone = strchr(host, '%');
        if (zone != NULL) {
            *zone++ = '\0';
            const char *why = parse_zone(zone, &out->u.in6.sin6_scope_id);
            if (why != NULL)
                return why;
        }
        if (inet_pton(AF_INET6, host, &out->u.in6.sin6_addr) != 1)
            return "bad IPv6 address";
        out->len = sizeof(struct sockaddr_in6);
        return parse_port(port, &out->u.in6.sin6_port);
    }
    const char *colon = strrchr(s, ':');
    if (colon == NULL)
        return "expected address:port";
    if (strchr(s, ':') != colon)
        return "IPv6 addresses must be written [addr]:port";
    size_t n = (size_t)(colon - s);
    if (n >= sizeof(host))
        return "bad IPv4 address";
    memcpy(host, s, n);
    host[n] = '\0';
    port = colon + 1;
    out->u.in4.sin_family = AF_INET;
    out->len = sizeof(struct sockaddr_in);
    if (n == 0 || strcmp(host, "*") == 0) {
        if (!(flags & ADDR_ALLOW_WILDCARD))
            return "a wildcard address is not allowed here";
        out->u.in4.sin_addr.s_addr = htonl(INADDR_ANY);
    } else if (inet_pton(AF_INET, host, &out->u.in4.sin_addr) != 1) {
        return "bad IPv4 address (host names are not resolved)";
    }
    return parse_port(port, &out->u.in4.sin_port);
}

void addr_format(const struct sockaddr *sa, socklen_t len, char *buf, size_t size)
{
    char ip[INET6_ADDRSTRLEN];
    if (size == 0)
        return;
    buf[0] = '\0';
    switch (sa->sa_family) {
    case AF_INET: {
        const struct sockaddr_in *in4 = (const struct sockaddr_in *)(const void *)sa;
        inet_ntop(AF_INET, &in4->sin_addr, ip, sizeof(ip));
        snprintf(buf, size, "%s:%u", ip, ntohs(in4->sin_port));
        break;
    }
    case AF_INET6: {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
        char zone[IF_NAMESIZE + 1] = "";
        if (in6->sin6_scope_id != 0) {
            char ifname[IF_NAMESIZE];
            if (if_indextoname(in6->sin6_scope_id, ifname) != NULL)
                snprintf(zone, sizeof(zone), "%%%s", ifname);
            else
                snprintf(zone, sizeof(zone), "%%%u", (unsigned)in6->sin6_scope_id);
        }
        snprintf(buf, size, "[%s%s]:%u", ip, zone, ntohs(in6->sin6_port));
        break;
    }
    case AF_UNIX: {
        const struct sockaddr_un *un = (const struct sockaddr_un *)(const void *)sa;
        if (len > offsetof(struct sockaddr_un, sun_path) && un->sun_path[0])
            snprintf(buf, size, "unix:%.*s",
                     (int)(len - offsetof(struct sockaddr_un, sun_path)), un->sun_path);
        else
            snprintf(buf, size, "unix:-");
        break;
    }
    default:
        snprintf(buf, size, "-");
    }
}

bool addr_equal(const struct sockaddr_any *a, const struct sockaddr_any *b)
{
    return a->len == b->len && memcmp(&a->u, &b->u, a->len) == 0;
}

bool addr_is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in4 = (const struct sockaddr_in *)(const void *)sa;
        return (ntohl(in4->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family != AF_INET6)
        return false;
    const struct in6_addr *a = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
    return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
}

unsigned long long addr_hash_ip(const struct sockaddr *sa)
{
    unsigned long long h = 0x9e3779b97f4a7c15ULL;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in4 = (const struct sockaddr_in *)(const void *)sa;
        h = hash_mix64(h ^ in4->sin_addr.s_addr);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        unsigned long long p[2];
        memcpy(p, &in6->sin6_addr, sizeof(p));
        h = hash_mix64(hash_mix64(h ^ p[0]) ^ p[1]);
    }
    return h;
}

bool addr_parse_host(const char *s, char *host, size_t size, int *port)
{
    const char *colon = strrchr(s, ':');
    if (colon == NULL || colon == s || (size_t)(colon - s) > 253 || (size_t)(colon - s) >= size)
        return false;
    bool letter = false;
    for (const char *p = s; p < colon; p++) {
        unsigned char ch = (unsigned char)*p;
        if (isalpha(ch))
            letter = true;
        else if (!isdigit(ch) && ch != '-' && ch != '_' && ch != '.')
            return false;
    }
    if (!letter || s[0] == '.' || s[0] == '-')
        return false;
    char *end;
    errno = 0;
    long n = strtol(colon + 1, &end, 10);
    if (colon[1] < '0' || colon[1] > '9' || *end != '\0' || errno != 0 || n < 1 || n > 65535)
        return false;
    size_t len = (size_t)(colon - s);
    for (size_t i = 0; i < len; i++)
        host[i] = (char)tolower((unsigned char)s[i]);
    host[len] = '\0';
    *port = (int)n;
    return true;
}
