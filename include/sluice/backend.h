/* backend.h - is a server usable, and passive health from the data path. */
#ifndef SLUICE_BACKEND_H
#define SLUICE_BACKEND_H

#include "sluice/config-t.h"

#include <stdbool.h>
#include <stdint.h>

const char *backend_health_str(enum backend_health h);
const char *backend_admin_str(enum backend_admin a);
const char *check_result_str(enum check_result r);
const char *down_cause_str(enum down_cause c);

/* One word for stats: up, down (health check, passive marking or a
 * passive hold-down), draining or disabled. */
const char *backend_state_str(const struct backend *b, int64_t now_ms);

/* Up (health check and passive hold-down), enabled by admin, weight > 0
 * and below its max_conns. Safe from any thread. */
bool backend_usable(const struct server_conf *s, int64_t now_ms);
/* Would be usable, but is at its max_conns (a slot may free up). */
bool backend_usable_but_full(const struct server_conf *s, int64_t now_ms);

/* The address to connect to s now: its literal, or for a server given by
 * host name the last resolved one (lock-free, any thread). false when a
 * named server has no address (then it is not usable either). */
bool backend_addr(const struct server_conf *s, struct sockaddr_any *out);
/* Read / publish a resolved address (AF_INET or AF_INET6). Store only
 * while holding cell->wlock (resolver_adopt() and the resolver thread). */
void addr_cell_load(struct addr_cell *cell, struct sockaddr_any *out);
void addr_cell_store(struct addr_cell *cell, const struct sockaddr_any *a);
const char *dns_result_str(enum dns_result r);

/* Take one of s's session slots: false when s is at its max_conns. The
 * check and the increment are one atomic step, so workers racing for the
 * last slot never overshoot the limit. */
bool backend_reserve(const struct server_conf *s);

/* Whether a connect()/socket() errno is a shortage on sluice's side (no
 * ephemeral port, no memory, no descriptors) rather than the server's
 * fault: such errors never count against the server's health. */
bool backend_errno_is_local(int err);

/* A connect to s failed (refused, unreachable, timed out). After `fall`
 * consecutive failures the server is held down for fail_timeout; each
 * further failure after that re-arms the hold-down at once. */
void backend_connect_failed(const struct server_conf *s, int64_t now_ms, const char *why);
/* A connect to s succeeded: the failure streak ends. */
void backend_connect_ok(const struct server_conf *s);

#endif
