/* notify.c - sd_notify over $NOTIFY_SOCKET (a Unix datagram socket; a
 * leading '@' names an abstract socket). */
#include "sluice/notify.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

int notify_send(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (path == NULL || path[0] == '\0')
        return 0;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || n >= sizeof(sa.sun_path))
        return -1;
    memcpy(sa.sun_path, path, n);
    if (path[0] == '@')
        sa.sun_path[0] = '\0';
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    /* RELOADING=1 wants the time it started (systemd 253+ checks it). */
    char msg[256];
    int len = snprintf(msg, sizeof(msg), "%s\nMAINPID=%d\n", state, (int)getpid());
    if (strstr(state, "RELOADING=1") != NULL && len > 0 && (size_t)len < sizeof(msg)) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        len += snprintf(msg + len, sizeof(msg) - (size_t)len, "MONOTONIC_USEC=%llu\n",
                        (unsigned long long)ts.tv_sec * 1000000ULL +
                            (unsigned long long)ts.tv_nsec / 1000);
    }
    if (len <= 0 || (size_t)len >= sizeof(msg)) {
        close(fd);
        return -1;
    }
    ssize_t rc = sendto(fd, msg, (size_t)len, MSG_NOSIGNAL, (struct sockaddr *)&sa,
                        (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n));
    close(fd);
    return rc == len ? 0 : -1;
}
