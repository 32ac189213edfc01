/* session-t.h - one proxied connection, as embedded and read by the
 * worker, the admin side and the stats (see session.h for its functions). */
#ifndef SLUICE_SESSION_T_H
#define SLUICE_SESSION_T_H

#include "sluice/addr-t.h"
#include "sluice/balance-t.h"
#include "sluice/config-t.h"
#include "sluice/queue-t.h"
#include "sluice/relay-t.h"
#include "sluice/splice-t.h"
#include "sluice/srclimit-t.h"
#include "sluice/uring-t.h"

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>

struct worker;

enum session_state {
    SS_PROXY_HEADER, /* accept_proxy: waiting for the client's PROXY header */
    SS_TLS_HELLO,   /* route = sni: waiting for the client's TLS ClientHello */
    SS_CONNECTING,  /* backend connect in flight (maybe a retry) */
    SS_RELAYING,    /* bytes flow both ways */
    SS_HALF_CLOSED, /* one side sent EOF; the other direction still flows */
    SS_CLOSING,     /* finished; freed at the end of the outermost callback */
    SS_QUEUED,      /* every usable server is full: waiting in the pool's queue */
};

#define END_REASONS(X)                                                         \
    X(client_close)   /* the client sent EOF first, both sides finished */    \
    X(backend_close)  /* the backend sent EOF first, both sides finished */   \
    X(connect_failed) /* every connect attempt failed */                       \
    X(no_backend)     /* no usable server in the pool */                       \
    X(idle_timeout)   /* no bytes either way for idle_timeout */               \
    X(reset)          /* RST or socket error on either side */                 \
    X(shutdown)       /* sluice stopped before the session finished */         \
    X(local_error)    /* out of memory or descriptors on our side */           \
    X(proxy_header)   /* accept_proxy: header malformed, missing or late */  \
    X(keepalive_timeout) /* tcp_keepalive: a peer stopped answering (ETIMEDOUT) */ \
    X(tls_hello)      /* route = sni: ClientHello malformed, cut or late */    \
    X(no_route)       /* route = sni: no rule for the name, no sni_default */  \
    X(queue_timeout)  /* waited queue_timeout in the pool's queue */           \
    X(queue_full)     /* every server full and max_queue sessions waiting */  \
    X(denied)         /* the access list (allow/deny) refused the client */   \
    X(admin)          /* shutdown session(s), del server force */             \
    X(source_conn_limit) /* the client's source had max_conns_per_source live */ \
    X(source_rate_limit) /* the client's source exceeded rate_per_source */

enum end_reason {
#define X(name) END_##name,
    END_REASONS(X)
#undef X
    END_REASON_COUNT,
    END_NONE = END_REASON_COUNT,
};

/* One direction of the relay: bytes read from `src` wait in `chain` until
 * written to `dst`. up = client -> backend, down = backend -> client. */
struct relay_dir {
    struct bufchain chain; /* copy mode */
    struct pipebuf pipe;   /* splice mode */
    bool splice;           /* this direction moves bytes with splice(2) */
    uint32_t read_hint;    /* bytes to ask for next: grows while reads fill it */
    uint64_t bytes;    /* bytes delivered to dst (written to its socket) */
    bool src_eof;      /* src sent FIN */
    bool shut_sent;    /* FIN forwarded to dst */
    bool dst_blocked;  /* last write hit EAGAIN: wait for EV_WRITE */
    struct uring_dir ur; /* relay = uring: received buffers and ops in flight */
};

struct session {
    struct worker *w;
    uint64_t id;                 /* unique in the process: see session_start() */
    struct session *prev, *next; /* worker's live list */
    struct config *cfg;          /* generation this session started on */
    struct listener_conf *lc;
    struct pool_conf *pool;      /* the listener's, or chosen by SNI (NULL before) */
    struct server_conf *srv;     /* current backend (NULL before a pick) */
    ev_io w_client;
    ev_io w_backend;
    ev_timer w_timer;            /* connect timeout, then idle timeout */
    struct relay_dir up, down;
    ev_tstamp started;
    ev_tstamp last_activity;
    /* For the latency histograms (CLOCK_MONOTONIC us, hist_now_us()):
     * accept, the current connect() call, and the connect that worked
     * (0 until then). */
    int64_t accepted_us, connect_us, connected_us;
    bool first_byte;                /* a byte came from the server */
    struct balance_exclude exclude; /* servers already tried, see balance.h */
    uint8_t attempts;
    uint8_t state;               /* enum session_state */
    uint8_t reason;              /* enum end_reason */
    uint8_t busy;                /* callback nesting: free only at 0 */
    bool client_eof_first;
    bool holds_backend;          /* counted in srv->be->active */
    bool has_local;              /* `local` came from a PROXY header */
    struct sockaddr_ip client;   /* the client (from the PROXY header if any) */
    struct sockaddr_ip local;    /* the address it connected to */
    char *sni;                   /* route = sni: the server name asked for (NULL: none) */
    uint32_t hello_need;         /* route = sni: parse again once up holds this much */
    /* The pool's queue (queue.h). qprev/qnext/qstate belong to the queue
     * and are touched only under its lock; the rest is this worker's. */
    struct session *qprev, *qnext;
    struct session *wnext;       /* the worker's list of woken sessions */
    uint8_t qstate;              /* enum queue_state */
    bool queued;                 /* joined the queue and has not left it */
    ev_tstamp queued_at;
    double queued_ms;            /* time spent queued, for the access log */
    struct src_entry *src;       /* counted in its source's entry (srclimit.h); NULL: not */
    ev_tstamp connect_started;   /* first connect attempt (after any queue); 0: none */
    ev_tstamp connected_at;      /* backend connection established; 0: never */
    uint8_t end_state;           /* enum session_state when it finished */
    uint8_t fail_side;           /* enum fail_side: whose socket failed (reset etc.) */
    struct uring_sess ur;        /* relay = uring (see session.c, uring.h) */
};

/* For the access log's term_side: which socket an error came from. */
enum fail_side { FAIL_NONE, FAIL_CLIENT, FAIL_SERVER };

#endif
