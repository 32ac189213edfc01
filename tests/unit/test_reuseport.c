/* test_reuseport.c - reuseport.h: the mirror of the kernel's socket order
 * (pure), then the steering on the running kernel over loopback: which
 * sockets of a group new connections reach. */
#include "unit.h"

#include "sluice/addr.h"
#include "sluice/reuseport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- the order ---- */

static void test_order_mirrors_the_kernel(void)
{
    struct reuseport_order o = {0};
    for (int w = 0; w < 4; w++)
        CHECK(reuseport_order_append(&o, 10 + w, w) == 0);
    CHECK_EQ_INT(reuseport_order_steer(&o), 0); /* nothing retiring */
    reuseport_order_retire(&o, 1);              /* 4 -> 1 */
    CHECK_EQ_INT(reuseport_order_steer(&o), 1);
    /* Worker 1 closes: the last (worker 3) takes its slot. */
    CHECK_EQ_INT(reuseport_order_remove(&o, 11), 1);
    CHECK_EQ_INT(o.n, 3);
    CHECK_EQ_INT(o.socks[1].fd, 13);
    CHECK_EQ_INT(reuseport_order_remove(&o, 99), -1);
    /* 1 -> 2 while workers 2 and 3 still drain: the new socket is
     * appended after them and not chosen until they are gone. */
    CHECK(reuseport_order_append(&o, 21, 1) == 0);
    CHECK_EQ_INT(reuseport_order_steer(&o), 1);
    CHECK_EQ_INT(reuseport_order_remove(&o, 12), 2); /* 21 moves to 2 */
    CHECK_EQ_INT(o.socks[2].fd, 21);
    CHECK_EQ_INT(reuseport_order_steer(&o), 1);
    CHECK_EQ_INT(reuseport_order_remove(&o, 13), 1); /* 21 moves to 1 */
    CHECK_EQ_INT(o.socks[1].fd, 21);
    CHECK_EQ_INT(reuseport_order_steer(&o), 0); /* all live again */
    /* A retiring socket in slot 0: no prefix to steer to. */
    o.socks[0].retiring = true;
    CHECK_EQ_INT(reuseport_order_steer(&o), 0);
    free(o.socks);
}

static void test_prog_shape(void)
{
    struct sock_filter p[REUSEPORT_PROG_MAX];
    CHECK_EQ_INT(reuseport_prog(1, p), 1);
    CHECK_EQ_INT(p[0].code, BPF_RET | BPF_K);
    CHECK_EQ_INT(p[0].k, 0);
    int n = reuseport_prog(3, p);
    CHECK(n > 1 && n <= REUSEPORT_PROG_MAX);
    CHECK_EQ_INT(p[n - 1].code, BPF_RET | BPF_A);
    CHECK_EQ_INT(p[n - 2].code, BPF_ALU | BPF_MOD | BPF_K);
    CHECK_EQ_INT(p[n - 2].k, 3);
}

/* ---- on the running kernel ---- */

#define CONNS 64

/* A port free on host now (bound to 0, then closed). */
static int free_port(int family, const char *host, struct sockaddr_any *a)
{
    memset(a, 0, sizeof(*a));
    int s = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -1;
    if (family == AF_INET) {
        a->u.in4.sin_family = AF_INET;
        inet_pton(AF_INET, host, &a->u.in4.sin_addr);
        a->len = sizeof(a->u.in4);
    } else {
        a->u.in6.sin6_family = AF_INET6;
        inet_pton(AF_INET6, host, &a->u.in6.sin6_addr);
        a->len = sizeof(a->u.in6);
    }
    socklen_t len = a->len;
    int rc = bind(s, &a->u.sa, a->len) == 0 && getsockname(s, &a->u.sa, &len) == 0 ? 0 : -1;
    close(s);
    return rc;
}

/* Connect CONNS clients to a, then count what each listening socket got. */
static void spray(const struct sockaddr_any *a, const int *fds, int n, int *got)
{
    int clients[CONNS];
    for (int c = 0; c < CONNS; c++) {
        clients[c] = socket(a->u.sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (clients[c] >= 0 && connect(clients[c], &a->u.sa, a->len) < 0)
            CHECK_MSG(0, "connect: %s", strerror(errno));
    }
    for (int i = 0; i < n; i++) {
        got[i] = 0;
        int fd;
        while ((fd = accept4(fds[i], NULL, NULL, SOCK_CLOEXEC)) >= 0) {
            got[i]++;
            close(fd);
        }
    }
    for (int c = 0; c < CONNS; c++)
        if (clients[c] >= 0)
            close(clients[c]);
}

static void steer_on(int family, const char *host)
{
    struct sockaddr_any a;
    if (free_port(family, host, &a) < 0) {
        unit_skip("no %s on this host", host);
        return;
    }
    char err[256];
    int fd[4], got[4];
    for (int w = 0; w < 4; w++) {
        fd[w] = reuseport_open(&a, 128, w, err, sizeof(err));
        if (!CHECK_MSG(fd[w] >= 0, "%s", err))
            return;
    }
    spray(&a, fd, 4, got);
    for (int w = 0; w < 4; w++)
        CHECK_MSG(got[w] > 0, "socket %d got none of %d (kernel hash)", w, CONNS);

    /* 4 -> 2: only the sockets of workers 0 and 1, both of them. */
    reuseport_retire_workers(2);
    CHECK(!reuseport_steered_away(fd[0]) && !reuseport_steered_away(fd[1]));
    CHECK(reuseport_steered_away(fd[2]) && reuseport_steered_away(fd[3]));
    spray(&a, fd, 4, got);
    CHECK_MSG(got[0] > 0 && got[1] > 0, "live sockets got %d and %d", got[0], got[1]);
    CHECK_MSG(got[2] == 0 && got[3] == 0, "retiring sockets got %d and %d", got[2], got[3]);

    /* Worker 2 closes first: worker 3's socket moves into its slot and
     * still gets nothing. */
    reuseport_close(fd[2]);
    int live[3] = {fd[0], fd[1], fd[3]};
    spray(&a, live, 3, got);
    CHECK_MSG(got[0] > 0 && got[1] > 0 && got[2] == 0, "got %d %d, retiring %d", got[0], got[1],
              got[2]);

    /* Back to 4 while worker 3 still drains: the new sockets wait. */
    fd[2] = reuseport_open(&a, 128, 2, err, sizeof(err));
    CHECK_MSG(fd[2] >= 0, "%s", err);
    int four[4] = {fd[0], fd[1], fd[3], fd[2]};
    spray(&a, four, 4, got);
    CHECK_MSG(got[2] == 0 && got[3] == 0, "retiring %d, new before it is gone %d", got[2], got[3]);

    /* The last retiring socket closes: the kernel's hash over all again. */
    reuseport_close(fd[3]);
    fd[3] = reuseport_open(&a, 128, 3, err, sizeof(err));
    CHECK_MSG(fd[3] >= 0, "%s", err);
    spray(&a, fd, 4, got);
    for (int w = 0; w < 4; w++)
        CHECK_MSG(got[w] > 0, "socket %d got none of %d after the retirement", w, CONNS);
    for (int w = 0; w < 4; w++)
        reuseport_close(fd[w]);
}

static void test_steering_ipv4(void)
{
    steer_on(AF_INET, "127.0.0.1");
}

static void test_steering_ipv6(void)
{
    steer_on(AF_INET6, "::1");
}

UNIT_MAIN(TEST(test_order_mirrors_the_kernel), TEST(test_prog_shape), TEST(test_steering_ipv4),
          TEST(test_steering_ipv6))
