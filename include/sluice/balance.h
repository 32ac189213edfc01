/* balance.h - pick a server from a pool for a new session. */
#ifndef SLUICE_BALANCE_H
#define SLUICE_BALANCE_H

#include "sluice/balance-t.h"
#include "sluice/config-t.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

static inline bool balance_excluded(const struct balance_exclude *e, const struct pool_conf *p,
                                    const struct server_conf *s)
{
    unsigned i = (unsigned)(s - p->servers);
    if (e == NULL)
        return false;
    if (i < 64)
        return (e->bits >> i) & 1;
    i -= 64;
    return e->more != NULL && ((e->more[i / 64] >> (i % 64)) & 1);
}

/* Add s to the set; false when the bitmap for a large pool cannot be
 * allocated (the caller ends the session as a local error). */
bool balance_exclude_add(struct balance_exclude *e, const struct pool_conf *p,
                         const struct server_conf *s);
void balance_exclude_free(struct balance_exclude *e);

/* Servers in `exclude` (may be NULL: none) are skipped (the ones a
 * session already failed to reach). Primaries are tried first; backups only when no primary is
 * usable. Called by worker `worker_id` only (its balancer state is private
 * to it). Returns NULL when nothing is usable or on allocation failure of
 * the worker's balancer state. */
struct server_conf *balance_pick(struct pool_conf *p, int worker_id, const struct sockaddr *client,
                                 const struct balance_exclude *exclude, int64_t now_ms);

#endif
