/* pidfile.c - write, lock and remove [global] pid_file. */
#include "sluice/pidfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

struct pidfile {
    int fd;
    char path[];
};

struct pidfile *pidfile_open(const char *path, char *err, size_t errlen)
{
    size_t n = strlen(path);
    struct pidfile *pf = malloc(sizeof(*pf) + n + 1);
    if (pf == NULL) {
        snprintf(err, errlen, "pid_file %s: out of memory", path);
        return NULL;
    }
    memcpy(pf->path, path, n + 1);
    /* O_NOFOLLOW: a root start must not write through a planted symlink. */
    pf->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (pf->fd < 0) {
        snprintf(err, errlen, "pid_file %s: %s", path, strerror(errno));
        free(pf);
        return NULL;
    }
    if (flock(pf->fd, LOCK_EX | LOCK_NB) < 0) {
        char held[32] = "";
        ssize_t r = pread(pf->fd, held, sizeof(held) - 1, 0);
        held[r > 0 ? r : 0] = '\0';
        held[strcspn(held, "\n")] = '\0';
        snprintf(err, errlen, "pid_file %s: %s (held by pid %s: is sluice already running?)",
                 path, strerror(errno), held[0] ? held : "?");
        close(pf->fd);
        free(pf);
        return NULL;
    }
    char line[32];
    int len = snprintf(line, sizeof(line), "%ld\n", (long)getpid());
    if (ftruncate(pf->fd, 0) < 0 || pwrite(pf->fd, line, (size_t)len, 0) != len) {
        snprintf(err, errlen, "pid_file %s: write: %s", path, strerror(errno));
        close(pf->fd);
        unlink(path);
        free(pf);
        return NULL;
    }
    return pf;
}

void pidfile_close(struct pidfile *pf)
{
    if (pf == NULL)
        return;
    if (unlink(pf->path) < 0 && ftruncate(pf->fd, 0) < 0) {
        /* Nothing more to do: the lock goes with the descriptor. */
    }
    close(pf->fd);
    free(pf);
}
