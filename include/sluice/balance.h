/* balance.h - pick a server from a pool for a new session. */
#ifndef SLUICE_BALANCE_H
#define SLUICE_BALANCE_H

#include "sluice/config-t.h"

#include <stdint.h>
#include <sys/socket.h>

/* Servers whose index (mod 64) has its bit set in `exclude` are skipped
 * (the ones a session already failed to reach). Primaries are tried first;
 * backups only when no primary is usable. Called by worker `worker_id` only
 * (its balancer state is private to it). Returns NULL when nothing is usable
 * or on allocation failure of the worker's balancer state. */
struct server_conf *balance_pick(struct pool_conf *p, int worker_id, const struct sockaddr *client,
                                 uint64_t exclude, int64_t now_ms);

static inline uint64_t balance_exclude_bit(const struct pool_conf *p, const struct server_conf *s)
{
    return 1ULL << ((unsigned)(s - p->servers) % 64);
}

#endif
