/* resolver-t.h - types of DNS resolution of servers given by host name:
 * the result names and the cell through which a resolved address reaches
 * the workers. */
#ifndef SLUICE_RESOLVER_T_H
#define SLUICE_RESOLVER_T_H

#include "sluice/addr-t.h"
#include "sluice/common.h"

#include <stdatomic.h>
#include <stdbool.h>
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

/* server option resolve=: one server for the first address, one per
 * address (A/AAAA), or one per address of every SRV target. */
enum resolve_mode { RESOLVE_FIRST = 0, RESOLVE_ALL, RESOLVE_SRV };

/* One address of a resolve=all/srv answer and what its server gets. */
struct dns_target {
    struct sockaddr_any addr;
    int weight;  /* the template's (all) or the SRV weight clamped to 1..256 */
    int prio;    /* SRV priority (0 for all) */
    bool backup; /* srv: a priority above the lowest in the answer */
};

/* A whole answer of a resolve=all/srv name: addresses unique, sorted.
 * Immutable once built; n may be 0 (the name has no address). */
struct dns_set {
    int n;
    struct dns_target t[];
};

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
