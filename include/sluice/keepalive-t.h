/* keepalive-t.h - TCP keepalive settings of one side of a session: a
 * listener's (accepted client sockets) or a pool's (backend sockets). */
#ifndef SLUICE_KEEPALIVE_T_H
#define SLUICE_KEEPALIVE_T_H

#include <stdbool.h>

/* Used when tcp_keepalive = on and the others are not set: the first probe
 * after a minute of silence (well inside the idle timeouts of common NATs,
 * firewalls and cloud load balancers, 5 to 15 minutes, so the probes also
 * keep their mappings alive), then one every 10 s; 6 unanswered probes end
 * the connection, so a dead peer is noticed within 2 minutes. The kernel's
 * own defaults (2 h, 75 s, 9) would come long after a NAT forgot the flow. */
#define KEEPALIVE_IDLE_DEFAULT 60
#define KEEPALIVE_INTERVAL_DEFAULT 10
#define KEEPALIVE_COUNT_DEFAULT 6

/* Linux's limits for TCP_KEEPIDLE / TCP_KEEPINTVL (seconds) and TCP_KEEPCNT. */
#define KEEPALIVE_TIME_MAX 32767
#define KEEPALIVE_COUNT_MAX 127

struct keepalive_conf {
    bool on;        /* tcp_keepalive: SO_KEEPALIVE and the three below */
    int idle_s;     /* keepalive_idle: silence before the first probe */
    int interval_s; /* keepalive_interval: time between probes */
    int count;      /* keepalive_count: unanswered probes that end it */
};

#endif
