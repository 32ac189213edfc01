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

/* While preparing cfg (after config_attach_runtime() and
 * resolver_resolve_config()): add a server "NAME#N" to its pool for every
 * address of every resolve=all/srv template, from the running answer
 * (the template's backend follows the name) or the load-time one. An
 * address that old (the running generation, or NULL) has as a server of
 * the same template keeps that server's name, and with it the runtime
 * state; a new address takes the lowest N that no generation holds.
 * -1 on allocation failure. */
int resolver_expand(struct config *cfg, const struct config *old);
/* Main thread: whether some template's running answer differs from the
 * servers cfg made of it (a DNS-driven generation is then due). */
bool resolver_stale(const struct config *cfg);
/* Main thread, at commit: log the servers from templates that cfg adds
 * to or removes from old. */
void resolver_log_changes(const struct config *old, const struct config *cfg);

/* Main thread, at the commit of a DNS update (instead of
 * config_apply_weights(), which would undo `set weight`): a server from
 * a template whose weight differs from old's (an SRV weight changed)
 * gets it. */
void resolver_apply_weights(const struct config *old, struct config *cfg);

/* Start the resolver thread for the named servers of cfg (takes a
 * reference); -1 when it cannot. notify(arg) is called on the resolver
 * thread after each resolve=all/srv answer (resolver_stale() says
 * whether it changed anything). */
int resolver_start(struct config *cfg, void (*notify)(void *), void *arg);
/* Hand the thread a new generation (takes a reference): it re-plans,
 * keeping each server's answer and its next due time (struct backend). */
void resolver_update(struct config *cfg);
/* Stop and join the thread. */
void resolver_stop(void);

#endif
