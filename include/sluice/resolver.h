/* resolver.h - servers given by host name: resolved with c-ares at load
 * time (blocking, bounded) and re-resolved while running on a resolver
 * thread of its own, which publishes each answer in the server's struct
 * backend (backend_addr()); workers never wait for DNS. */
#ifndef SLUICE_RESOLVER_H
#define SLUICE_RESOLVER_H

#include "sluice/config.h"

/* How long resolver_resolve_config() waits for all its answers at most. */
#define RESOLVER_LOAD_BOUND_MS 5000

/* Resolve every named server of cfg now, blocking for at most
 * RESOLVER_LOAD_BOUND_MS: at start, in `sluice -t` and in a reload's
 * prepare. The answer goes to the server's addr / dns_init / dns_ttl.
 * When cfg is attached to its runtime state (a reload), a server whose
 * backend already follows the same name is skipped: the running answer is
 * newer. A name without an answer adds "FILE:LINE: server: ..." to errs,
 * or with init_addr=none logs a warning (the server then starts down).
 * Returns the number of errors added. */
int resolver_resolve_config(struct config *cfg, struct config_errors *errs);

/* Main thread, before any worker sees cfg (start, reload commit): a named
 * server whose backend does not follow that name yet takes its load-time
 * answer; an address literal clears what a name left behind. */
void resolver_adopt(struct config *cfg);

/* Start the resolver thread for the named servers of cfg (takes a
 * reference); -1 when it cannot. */
int resolver_start(struct config *cfg);
/* Hand the thread a new generation (takes a reference): it re-plans,
 * keeping each server's answer and its next due time (struct backend). */
void resolver_update(struct config *cfg);
/* Stop and join the thread. */
void resolver_stop(void);

#endif
