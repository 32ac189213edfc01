/* keepalive.h - turning TCP keepalive on for one socket. */
#ifndef SLUICE_KEEPALIVE_H
#define SLUICE_KEEPALIVE_H

#include "sluice/keepalive-t.h"

/* Set SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL and TCP_KEEPCNT on a TCP
 * socket from ka (which must be on, with values in the kernel's ranges:
 * config.c checks them). Returns 0, or -1 with errno from the first
 * setsockopt() that failed; the socket is usable either way. */
int keepalive_apply(int fd, const struct keepalive_conf *ka);

#endif
