/* reuseport.c - steering new connections away from retiring workers'
 * listening sockets (see include/sluice/reuseport.h). */
#include "sluice/reuseport.h"
#include "sluice/fault.h"
#include "sluice/listener.h"
#include "sluice/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef SO_ATTACH_REUSEPORT_CBPF
#define SO_ATTACH_REUSEPORT_CBPF 51
#endif
#ifndef SO_DETACH_REUSEPORT_BPF
#define SO_DETACH_REUSEPORT_BPF 68
#endif

/* ---- the mirror of the kernel's order ---- */

int reuseport_order_reserve(struct reuseport_order *o)
{
    if (o->n < o->cap)
        return 0;
    int cap = o->cap ? o->cap * 2 : 8;
    struct reuseport_sock *s = realloc(o->socks, (size_t)cap * sizeof(*s));
    if (s == NULL)
        return -1;
    o->socks = s;
    o->cap = cap;
    return 0;
}

int reuseport_order_append(struct reuseport_order *o, int fd, int worker)
{
    if (reuseport_order_reserve(o) < 0)
        return -1;
    o->socks[o->n++] = (struct reuseport_sock){.fd = fd, .worker = worker};
    return 0;
}

int reuseport_order_remove(struct reuseport_order *o, int fd)
{
    for (int i = 0; i < o->n; i++) {
        if (o->socks[i].fd == fd) {
            /* __reuseport_detach_sock(): the last one fills the gap. */
            o->socks[i] = o->socks[--o->n];
            return i;
        }
    }
    return -1;
}

void reuseport_order_retire(struct reuseport_order *o, int nworkers)
{
    for (int i = 0; i < o->n; i++)
        if (o->socks[i].worker >= nworkers)
            o->socks[i].retiring = true;
}

int reuseport_order_steer(const struct reuseport_order *o)
{
    int k = 0;
    while (k < o->n && !o->socks[k].retiring)
        k++;
    return k == o->n ? 0 : k;
}

int reuseport_prog(int k, struct sock_filter *prog)
{
    if (k <= 1) {
        prog[0] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, 0);
        return 1;
    }
    /* The packet data starts after the TCP header (there is none in a
     * SYN): read the IP header below it. A load that fails ends the
     * program with 0, still a live socket. */
    const struct sock_filter p[] = {
        BPF_STMT(BPF_LD | BPF_B | BPF_ABS, (uint32_t)SKF_NET_OFF), /* version */
        BPF_STMT(BPF_ALU | BPF_RSH | BPF_K, 4),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 6, 5, 0),
        /* IPv4: source address, then the ports after ihl words. */
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (uint32_t)SKF_NET_OFF + 12),
        BPF_STMT(BPF_ST, 0),
        BPF_STMT(BPF_LDX | BPF_B | BPF_MSH, (uint32_t)SKF_NET_OFF),
        BPF_STMT(BPF_LD | BPF_W | BPF_IND, (uint32_t)SKF_NET_OFF),
        BPF_JUMP(BPF_JMP | BPF_JA, 3, 0, 0),
        /* IPv6: the source address's last word, the ports after the
         * fixed header (a SYN carries no extension header). */
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (uint32_t)SKF_NET_OFF + 20),
        BPF_STMT(BPF_ST, 0),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (uint32_t)SKF_NET_OFF + 40),
        /* x = address ^ ports; x ^= x >> 16 (the client's port into the
         * low half: ports a kernel picks may all be even); x *= golden
         * ratio; x ^= x >> 16 (the well mixed high half down). */
        BPF_STMT(BPF_LDX | BPF_W | BPF_MEM, 0),
        BPF_STMT(BPF_ALU | BPF_XOR | BPF_X, 0),
        BPF_STMT(BPF_ST, 1),
        BPF_STMT(BPF_ALU | BPF_RSH | BPF_K, 16),
        BPF_STMT(BPF_LDX | BPF_W | BPF_MEM, 1),
        BPF_STMT(BPF_ALU | BPF_XOR | BPF_X, 0),
        BPF_STMT(BPF_ALU | BPF_MUL | BPF_K, 0x9e3779b1u),
        BPF_STMT(BPF_ST, 1),
        BPF_STMT(BPF_ALU | BPF_RSH | BPF_K, 16),
        BPF_STMT(BPF_LDX | BPF_W | BPF_MEM, 1),
        BPF_STMT(BPF_ALU | BPF_XOR | BPF_X, 0),
        BPF_STMT(BPF_ALU | BPF_MOD | BPF_K, (uint32_t)k),
        BPF_STMT(BPF_RET | BPF_A, 0),
    };
    _Static_assert(ARRAY_SIZE(p) <= REUSEPORT_PROG_MAX, "REUSEPORT_PROG_MAX");
    memcpy(prog, p, sizeof(p));
    return (int)ARRAY_SIZE(p);
}

/* ---- the process's groups ---- */

struct reuseport_group {
    struct reuseport_group *next;
    struct sockaddr_any addr;
    struct reuseport_order order;
    int steer; /* k of the attached program, 0: none attached */
};

static pthread_mutex_t groups_lock = PTHREAD_MUTEX_INITIALIZER;
static struct reuseport_group *groups; /* under groups_lock */

static void group_log_addr(const struct reuseport_group *g, char *a, size_t len)
{
    addr_format(&g->addr.u.sa, g->addr.len, a, len);
}

/* Attach, replace or detach g's program after its order changed. A
 * failure leaves no program: the retiring sockets are then drained as if
 * there were no steering (worker.c asks reuseport_steered_away()). */
static void group_update(struct reuseport_group *g)
{
    int k = reuseport_order_steer(&g->order);
    if (fault_no_steering())
        k = 0;
    if (k == g->steer || g->order.n == 0)
        return;
    char a[ADDR_STRLEN];
    group_log_addr(g, a, sizeof(a));
    int fd = g->order.socks[0].fd;
    if (k == 0) {
        int zero = 0; /* the kernel wants an int there, and ignores it */
        if (setsockopt(fd, SOL_SOCKET, SO_DETACH_REUSEPORT_BPF, &zero, sizeof(zero)) < 0 &&
            errno != ENOENT)
            log_warn("%s: cannot detach the reuseport program: %s", a, strerror(errno));
        g->steer = 0;
        log_info("%s: no worker retiring: new connections spread over its %d listening "
                 "sockets again",
                 a, g->order.n);
        return;
    }
    struct sock_filter insns[REUSEPORT_PROG_MAX];
    struct sock_fprog prog = {.len = (unsigned short)reuseport_prog(k, insns), .filter = insns};
    if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof(prog)) < 0) {
        log_warn("%s: cannot steer new connections away from retiring workers "
                 "(SO_ATTACH_REUSEPORT_CBPF: %s): their sockets drain as they are",
                 a, strerror(errno));
        int zero = 0;
        if (g->steer)
            setsockopt(fd, SOL_SOCKET, SO_DETACH_REUSEPORT_BPF, &zero, sizeof(zero));
        g->steer = 0;
        return;
    }
    g->steer = k;
    log_info("%s: new connections go to %d of its %d listening sockets while workers retire", a, k,
             g->order.n);
}

static struct reuseport_group *group_of_fd(int fd, int *idx)
{
    for (struct reuseport_group *g = groups; g; g = g->next)
        for (int i = 0; i < g->order.n; i++)
            if (g->order.socks[i].fd == fd) {
                *idx = i;
                return g;
            }
    return NULL;
}

int reuseport_open(const struct sockaddr_any *addr, int backlog, int worker, char *err,
                   size_t errlen)
{
    pthread_mutex_lock(&groups_lock);
    struct reuseport_group *g = groups;
    while (g && !addr_equal(&g->addr, addr))
        g = g->next;
    bool made = false;
    if (g == NULL && (g = calloc(1, sizeof(*g))) != NULL) {
        g->addr = *addr;
        made = true;
    }
    int fd = -1;
    /* Room first, listen() second: once in the kernel's group the socket
     * must be in the mirror too. */
    if (g == NULL || reuseport_order_reserve(&g->order) < 0) {
        char a[ADDR_STRLEN];
        addr_format(&addr->u.sa, addr->len, a, sizeof(a));
        snprintf(err, errlen, "%s: out of memory", a);
    } else if ((fd = listener_open(addr, backlog, err, errlen)) >= 0) {
        reuseport_order_append(&g->order, fd, worker);
        /* Joins after the live prefix: the program stays valid. */
    }
    if (made) {
        if (g && g->order.n > 0) {
            g->next = groups;
            groups = g;
        } else if (g) {
            free(g->order.socks);
            free(g);
        }
    }
    pthread_mutex_unlock(&groups_lock);
    return fd;
}

void reuseport_close(int fd)
{
    pthread_mutex_lock(&groups_lock);
    int idx;
    struct reuseport_group *g = group_of_fd(fd, &idx);
    /* The program belongs to the group, not to the socket closed. */
    close(fd);
    if (g != NULL) {
        reuseport_order_remove(&g->order, fd);
        if (g->order.n == 0) {
            struct reuseport_group **pp = &groups;
            while (*pp != g)
                pp = &(*pp)->next;
            *pp = g->next;
            free(g->order.socks);
            free(g);
        } else {
            group_update(g);
        }
    }
    pthread_mutex_unlock(&groups_lock);
}

void reuseport_retire_workers(int nworkers)
{
    pthread_mutex_lock(&groups_lock);
    for (struct reuseport_group *g = groups; g; g = g->next) {
        reuseport_order_retire(&g->order, nworkers);
        group_update(g);
    }
    pthread_mutex_unlock(&groups_lock);
}

bool reuseport_steered_away(int fd)
{
    pthread_mutex_lock(&groups_lock);
    int idx;
    struct reuseport_group *g = group_of_fd(fd, &idx);
    bool away = g != NULL && g->steer > 0 && idx >= g->steer;
    pthread_mutex_unlock(&groups_lock);
    return away;
}
