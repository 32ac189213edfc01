/* config-t.h - one immutable config generation, as parsed from the INI file. */
#ifndef SLUICE_CONFIG_T_H
#define SLUICE_CONFIG_T_H

#include "sluice/acl-t.h"
#include "sluice/access_log-t.h"
#include "sluice/addr-t.h"
#include "sluice/backend-t.h"
#include "sluice/keepalive-t.h"
#include "sluice/srclimit-t.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

enum balance_algo {
    BALANCE_ROUNDROBIN,
    BALANCE_LEASTCONN,
    BALANCE_RANDOM,
    BALANCE_SOURCE,
    BALANCE_FIRST,
};

struct server_conf {
    char *name;
    struct sockaddr_any addr;
    char addr_str[ADDR_STRLEN];
    int weight;        /* 0..256 from the file */
    int max_conns;     /* 0 = unlimited */
    int send_proxy;    /* PROXY header to this server: 0 off, 1 or 2; -1 = the pool's */
    bool backup;
    int line;
    /* Given by host name ("NAME:PORT"): host is set, addr is the answer
     * found at load time (dns_init says how that went) and the running
     * address lives in be->addr (backend_addr()). NULL: addr is a literal. */
    char *host;
    int port;
    enum dns_family family;
    enum resolve_mode resolve;  /* all/srv: a template in pool_conf.named */
    struct dns_set *dns_init_set; /* all/srv: the load-time answer (NULL: none) */
    /* A server made from a resolve=all/srv template ("NAME#N"): its
     * address is the literal addr; tmpl is the template (same generation). */
    const struct server_conf *tmpl;
    bool init_addr_none;        /* init_addr=none: unresolvable at load starts down */
    enum dns_result dns_init;   /* the load-time resolution */
    int dns_ttl;                /* its TTL in seconds */
    int64_t resolve_interval_ms; /* -1: the answer's TTL, clamped (pool's, else global) */
    int64_t resolve_hold_ms;     /* pool's, else global */
    struct pool_conf *pool;
    struct backend *be; /* runtime state, attached by config_attach_runtime */
};

enum check_kind {
    CHECK_NONE,        /* no active checks: only passive health */
    CHECK_TCP,         /* a connect that succeeds */
    CHECK_SEND_EXPECT, /* send check_send, reply must start with check_expect */
};

struct balance_state; /* per worker, see balance.c */
struct pool_queue;    /* queue-t.h */

struct pool_conf {
    char *name;
    int line;
    enum balance_algo balance;
    struct server_conf *servers;
    int nservers;
    /* resolve=all/srv lines: templates, never picked. Each answer's
     * addresses are added to servers as "NAME#N" (resolver_expand()). */
    struct server_conf *named;
    int nnamed;
    int64_t connect_timeout_ms;
    int64_t idle_timeout_ms;
    int64_t fail_timeout_ms;
    int retries;
    int fall;
    int rise;
    int send_proxy; /* PROXY protocol header to servers: 0 off, 1 (text), 2 (binary) */
    enum check_kind check;
    int64_t check_interval_ms;
    int64_t check_timeout_ms;
    char *check_send; /* unescaped; may hold NUL bytes */
    size_t check_send_len;
    char *check_expect;
    size_t check_expect_len;
    struct keepalive_conf keepalive; /* on backend sockets (not unix: ones) */
    int max_queue;            /* sessions that may wait for a full pool; 0 = none */
    int64_t queue_timeout_ms; /* how long one may wait (-1 while parsing: connect_timeout) */
    struct pool_queue *q;     /* runtime state, attached by config_attach_runtime */
    int64_t resolve_interval_ms; /* -1: the TTL; -2 while parsing: [global]'s */
    int64_t resolve_hold_ms;     /* -2 while parsing: [global]'s */
    /* Balancer state, one per worker, made lazily by that worker only. */
    struct balance_state *wstate[SLUICE_MAX_WORKERS];
};

/* route = sni: one `sni = HOST POOL` line of a listener. */
struct sni_rule {
    char *host;     /* lower case; for "*.NAME" only NAME */
    bool wildcard;  /* "*.NAME": one label in front of NAME, no more */
    char *pool_name;
    int line;
    struct pool_conf *pool;
};

struct listener_conf {
    char *name;
    int line;
    struct sockaddr_any *binds;
    int nbinds;
    char *pool_name;
    int pool_line;
    struct pool_conf *pool;
    int max_conns;
    int backlog;
    bool splice; /* relay = splice: zero-copy through pipes */
    bool uring;  /* relay = uring: through the worker's io_uring (uring.h) */
    bool accept_proxy;        /* clients start with a PROXY protocol header */
    int64_t proxy_timeout_ms; /* ... which must arrive within this time */
    /* Its unix: binds: the files' mode, and their owner (bind_owner as
     * written, resolved at load time; NULL: the user sluice runs as). */
    int bind_mode;
    char *bind_owner;
    uid_t owner_uid;
    gid_t owner_gid;
    struct keepalive_conf keepalive; /* on accepted client sockets */
    bool route_sni;           /* route = sni: the pool comes from the ClientHello */
    struct sni_rule *sni_rules; /* in file order; `pool` is unset */
    int nsni_rules;
    char *sni_default_name;   /* no server name or no rule matched; NULL: no_route */
    int sni_default_line;
    struct pool_conf *sni_default;
    int64_t sni_timeout_ms;   /* the ClientHello must be complete within this time */
    /* allow/deny/allow_file/deny_file, in file order; acl is their
     * lookup structure (NULL: no such lines, everyone allowed). */
    struct acl_line *acl_lines;
    int nacl_lines;
    struct acl *acl;
    /* Per-source limits, keyed by the client address masked to
     * source_prefix_v4/v6 (the PROXY header's with accept_proxy). */
    int max_conns_per_source;     /* 0 = unlimited */
    struct rate_conf rate_per_source; /* n == 0: off */
    int source_prefix_v4;
    int source_prefix_v6;
    int source_table_size;
    struct rate_conf max_conn_rate; /* listener-wide accept pace; n == 0: off */
    /* The table (one reference) when a per-source limit is on; else NULL. */
    struct src_table *srct;
    struct listener_state *st; /* runtime state, attached at start/reload */
};

struct config {
    _Atomic int refs;
    uint64_t generation;
    char *path;
    /* The file's text as parsed, kept when a pool has resolve=all/srv
     * servers: a DNS change re-parses it, not the file (which may have
     * been edited since). */
    char *text;
    size_t text_len;

    /* [global] */
    int workers;            /* resolved: auto -> online CPUs */
    int log_level;          /* enum log_level */
    char *access_log;       /* "off", "stderr", a path or "syslog:..." */
    char *access_log_format;         /* "kv", "json" or a template, as written */
    struct access_format access_fmt; /* access_log_format compiled */
    int syslog_facility;             /* 0..23 (local0 = 16) */
    char *syslog_tag;                /* RFC 5424 APP-NAME */
    int max_conns;
    int64_t shutdown_timeout_ms;
    uint32_t buffer_size;
    uint32_t max_buffer;
    char *admin_socket;     /* NULL = no admin socket */
    int admin_mode;         /* permission bits of the socket file */
    char *pid_file;         /* NULL = none */
    bool has_admin_http;
    struct sockaddr_any admin_http;
    char *user;             /* NULL = keep the identity sluice starts with */
    char *group;            /* NULL = the user's primary group */
    uid_t uid;              /* resolved at load time (valid when user) */
    gid_t gid;
    bool allow_root;        /* run as root without user */
    bool user_default;      /* user/group chosen by sluice: none in the file */
    char *resolvers;        /* "IP:PORT,..." for c-ares; NULL: /etc/resolv.conf */
    int64_t resolve_interval_ms;     /* -1: the answer's TTL, clamped to min..max */
    int64_t resolve_interval_min_ms;
    int64_t resolve_interval_max_ms;
    int64_t resolve_hold_ms;

    struct listener_conf *listeners;
    int nlisteners;
    struct pool_conf *pools;
    int npools;
    bool runtime_attached;
};

#endif
