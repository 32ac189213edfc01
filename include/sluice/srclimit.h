/* srclimit.h - per-source connection and rate limits: a bounded table of
 * client addresses (masked to a prefix) shared by a listener's workers,
 * sharded, with the live count and the token bucket of each source
 * updated with atomics; and the lock-free token bucket of a listener's
 * max_conn_rate. Pure: no sockets, no event loop, time is passed in. */
#ifndef SLUICE_SRCLIMIT_H
#define SLUICE_SRCLIMIT_H

#include "sluice/srclimit-t.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define SRC_SHARDS_MAX 64

enum src_verdict {
    SRC_OK,         /* admitted and counted: release the entry at the end */
    SRC_CONN_LIMIT, /* the source already has max live sessions */
    SRC_RATE_LIMIT, /* the source's token bucket is empty */
    SRC_UNTRACKED,  /* admitted without accounting: the table is full of
                       entries with live sessions (counted source_table_full) */
    SRC_NOT_LIMITED /* not an IP address (a Unix-socket client): admitted */
};

/* A new table of `size` entries (all allocated here, none later) keyed by
 * addresses masked to prefix4 / prefix6 bits. One reference, owned by the
 * caller. NULL when out of memory. */
struct src_table *srclimit_table_new(int size, int prefix4, int prefix6);
void srclimit_table_ref(struct src_table *t);
/* Drop a reference; the last frees the table. Any thread. */
void srclimit_table_put(struct src_table *t);
/* True when t was made for these parameters (so a reload may keep it). */
bool srclimit_table_fits(const struct src_table *t, int size, int prefix4, int prefix6);
/* Entries in use (a gauge) and the table's size. */
int srclimit_table_used(const struct src_table *t);
int srclimit_table_size(const struct src_table *t);

/* The table key of sa: 16 bytes, an IPv4 address (or an IPv4-mapped IPv6
 * one) as ::ffff:a.b.c.d masked to prefix4, an IPv6 address masked to
 * prefix6. false for anything else (AF_UNIX). */
bool srclimit_key(const struct sockaddr *sa, int prefix4, int prefix6, uint8_t key[16]);

/* Count a new connection from sa at now_ns (CLOCK_MONOTONIC ns): find or
 * make its entry (evicting the least recently seen idle entry of its shard
 * when the shard is full), then admit it if the source has fewer than
 * max_live live sessions (0: no limit; an atomic increment-if-below, so the
 * limit is exact over all threads) and a token in its bucket (rate->n == 0:
 * no rate limit). On SRC_OK *out is the entry, to be given back with
 * srclimit_release() when the session ends; otherwise *out is NULL. */
enum src_verdict srclimit_admit(struct src_table *t, const struct sockaddr *sa, int max_live,
                                const struct rate_conf *rate, int64_t now_ns,
                                struct src_entry **out);
/* The session counted by srclimit_admit() has ended. Lock-free. */
void srclimit_release(struct src_entry *e);

/* One source as `show sources` lists it. */
struct src_top {
    char addr[64]; /* "ADDR/PREFIX" */
    int live;
    double rate;      /* connections per second, recent */
    uint64_t refused; /* refusals (conn and rate limits) */
};

/* The n busiest sources of t (most live sessions, then highest recent
 * rate, then most refusals) into out[0..n-1], at now_ns; returns how many. */
int srclimit_top(struct src_table *t, int64_t now_ns, struct src_top *out, int n);

/* Lock-free token bucket (GCRA) of a rate: *tat is its state, 0 = full.
 * Takes a token at now_ns and returns 0, or returns how many ns until one
 * is back (nothing taken). */
int64_t ratelimit_take(_Atomic int64_t *tat, const struct rate_conf *rate, int64_t now_ns);
/* Give back a token taken but not used. */
void ratelimit_give(_Atomic int64_t *tat, const struct rate_conf *rate);

/* CLOCK_MONOTONIC in ns. */
int64_t srclimit_now_ns(void);

/* Bytes one entry costs (for the docs and `show info`). */
size_t srclimit_entry_bytes(void);

#endif
