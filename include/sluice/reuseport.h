/* reuseport.h - steer new connections away from the listening sockets of
 * retiring workers, so that a reload lowering `workers` resets nobody.
 *
 * Every TCP bind has one SO_REUSEPORT socket per worker; the kernel keeps
 * them in an array per group (per bind address) and picks one per SYN.
 * The array's order is known: a socket is appended at listen(); at close
 * the last one moves into its slot (net/core/sock_reuseport.c). This
 * module opens and closes every TCP listening socket of the workers under
 * one lock and mirrors that order. When a reload retires workers, their
 * sockets are marked retiring; as long as the live sockets are the first
 * `k` of the array (the retiring ones after them: closing one of those
 * only moves the others among themselves), a classic BPF program
 * (SO_ATTACH_REUSEPORT_CBPF, no privilege needed) returning hash % k
 * sends every new connection to a live socket. The retiring ones then
 * only finish the handshakes begun before, are drained and closed. When
 * no socket of a group is retiring any more, the program is detached and
 * the kernel's own hash spreads connections again. */
#ifndef SLUICE_REUSEPORT_H
#define SLUICE_REUSEPORT_H

#include "sluice/addr.h"
#include "sluice/common.h"

#include <linux/filter.h>
#include <stdbool.h>
#include <stddef.h>

/* The largest program reuseport_prog() writes. */
#define REUSEPORT_PROG_MAX 32

/* How long a retiring worker keeps accepting on a socket it was steered
 * away from before draining and closing it: handshakes the kernel began
 * on it before the steering complete within this (one round trip). */
#define REUSEPORT_RETIRE_GRACE 1.0

/* ---- the mirror of the kernel's order (pure, unit tested) ---- */

struct reuseport_sock {
    int fd;
    int worker;
    bool retiring;
};

struct reuseport_order {
    struct reuseport_sock *socks;
    int n, cap;
};

/* listen() joined fd: append it. Returns -1 when out of memory. */
int reuseport_order_append(struct reuseport_order *o, int fd, int worker);
/* Make room for one more append (so that it cannot fail later). */
int reuseport_order_reserve(struct reuseport_order *o);
/* fd left the group (closed): the last socket takes its slot. Returns
 * its former index, -1 if fd is not in o. */
int reuseport_order_remove(struct reuseport_order *o, int fd);
/* Mark the sockets of workers >= nworkers retiring. */
void reuseport_order_retire(struct reuseport_order *o, int nworkers);
/* How many sockets a steering program may choose from: the length of
 * the prefix with no retiring socket when one is retiring after it; 0
 * when none is retiring (no program needed) or the prefix is empty (no
 * steering possible). */
int reuseport_order_steer(const struct reuseport_order *o);

/* The classic BPF program returning a hash of the client's address and
 * port (IPv4 or IPv6, read below the TCP header with SKF_NET_OFF) modulo
 * k, k >= 1. Writes at most REUSEPORT_PROG_MAX instructions to prog and
 * returns how many. */
int reuseport_prog(int k, struct sock_filter *prog);

/* ---- the process's groups (any thread, one lock) ---- */

/* listener_open() for worker `worker`'s socket of a TCP bind, recorded
 * in its group's order. Returns the fd, or -1 with err set. */
int reuseport_open(const struct sockaddr_any *addr, int backlog, int worker, char *err,
                   size_t errlen);
/* Close a worker's listening socket (any kind: one this module did not
 * open is just closed), keeping the order and the steering up to date. */
void reuseport_close(int fd);
/* A reload leaves `nworkers` workers: steer every group away from the
 * sockets of the others. Before those workers are told to retire. */
void reuseport_retire_workers(int nworkers);
/* Is fd a retiring socket that no new connection is steered to? */
bool reuseport_steered_away(int fd);

#endif
