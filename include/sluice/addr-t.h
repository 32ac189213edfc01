/* addr-t.h - socket address types embedded by configs and sessions. */
#ifndef SLUICE_ADDR_T_H
#define SLUICE_ADDR_T_H

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

struct sockaddr_any {
    union {
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
        struct sockaddr_un un;
    } u;
    socklen_t len;
};

/* Compact storage for a peer address (client side of a session): IPv4 or
 * IPv6 only, 28 bytes instead of sockaddr_storage's 128. */
struct sockaddr_ip {
    union {
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
    } u;
};

#define ADDR_STRLEN 128

#endif
