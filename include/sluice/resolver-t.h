/* resolver-t.h - types of DNS resolution of servers given by host name:
 * the result names and the cell through which a resolved address reaches
 * the workers. */
#ifndef SLUICE_RESOLVER_T_H
#define SLUICE_RESOLVER_T_H

#include "sluice/common.h"

#include <stdatomic.h>
#include <stdint.h>

/* The outcome of one resolution (shown as "dns: NAME"). */
enum dns_result {
    DNS_NONE = 0, /* not resolved yet */
    DNS_OK,
    DNS_NXDOMAIN,    /* the name does not exist */
    DNS_NODATA,      /* the name exists, but has no address of the family */
    DNS_TIMEOUT,     /* no answer from any resolver in time */
    DNS_REFUSED,     /* the resolver refused the query */
    DNS_SERVFAIL,    /* the resolver failed */
    DNS_UNREACHABLE, /* no resolver could be reached (connection refused) */
    DNS_ERROR,       /* anything else (bad reply, local error) */
};

/* server option family= */
enum dns_family { FAMILY_ANY = 0, FAMILY_IPV4, FAMILY_IPV6 };

/* A resolved IPv4 or IPv6 socket address (a sockaddr_in6 is 28 bytes),
 * published by one writer at a time (wlock) and read lock-free by any
 * thread: a seqlock whose payload is atomic words, so readers never see
 * a torn address and no access is a data race. */
struct addr_cell {
    _Atomic unsigned seq; /* odd while a writer is storing */
    atomic_flag wlock;    /* writers: the resolver thread, the main thread at commit */
    _Atomic uint64_t w[4];
};

#endif
