/* keepalive.c - TCP keepalive on client and backend sockets, so a peer that
 * vanished without a FIN or RST (a crashed host, a NAT that forgot the
 * flow) ends its session instead of holding it until idle_timeout. */
#include "sluice/keepalive.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

int keepalive_apply(int fd, const struct keepalive_conf *ka)
{
    int one = 1;
    /* The timing first: the keepalive timer starts with SO_KEEPALIVE, at
     * the idle time set by then. */
    if (setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &ka->idle_s, sizeof(ka->idle_s)) < 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &ka->interval_s, sizeof(ka->interval_s)) < 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &ka->count, sizeof(ka->count)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)) < 0)
        return -1;
    return 0;
}
