/* log.c - timestamped, leveled log lines on stderr; the access log sink. */
#include "sluice/log.h"
#include "sluice/common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

_Atomic int log_current_level = LOG_INFO;
static _Atomic int access_fd = -1;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

const char *log_level_str(enum log_level level)
{
    return (unsigned)level < ARRAY_SIZE(level_names) ? level_names[level] : "?";
}

bool log_level_parse(const char *s, enum log_level *out)
{
    for (size_t i = 0; i < ARRAY_SIZE(level_names); i++) {
        if (strcasecmp(s, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return true;
        }
    }
    return false;
}

int64_t time_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool log_limit_shared_due(struct log_limit_shared *l, int64_t now_ms, int64_t interval_ms,
                          unsigned long *dropped)
{
    int64_t next = atomic_load_explicit(&l->next_ms, memory_order_relaxed);
    /* Only the thread whose exchange moves next_ms forward writes the line:
     * two threads arriving together cannot both pass. */
    if (now_ms < next || !atomic_compare_exchange_strong_explicit(&l->next_ms, &next,
                                                                  now_ms + interval_ms,
                                                                  memory_order_relaxed,
                                                                  memory_order_relaxed)) {
        atomic_fetch_add_explicit(&l->suppressed, 1, memory_order_relaxed);
        return false;
    }
    *dropped = atomic_exchange_explicit(&l->suppressed, 0, memory_order_relaxed);
    return true;
}

void log_timestamp(char *buf, size_t size)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
}

static void write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        buf += n;
        len -= (size_t)n;
    }
}

void log_write(enum log_level level, const char *fmt, ...)
{
    if (!log_enabled(level))
        return;
    char line[2048];
    log_timestamp(line, sizeof(line));
    size_t off = strlen(line);
    off += (size_t)snprintf(line + off, sizeof(line) - off, " [%s] ",
                            log_level_str(level));
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line + off, sizeof(line) - off - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    off += (size_t)n;
    if (off > sizeof(line) - 2)
        off = sizeof(line) - 2;
    line[off++] = '\n';
    write_all(STDERR_FILENO, line, off);
}

/* The access log keeps one descriptor number for the life of the process:
 * a reopen (SIGUSR1, a reload) dup2()s the new file onto it, which is
 * atomic, so a worker writing at that moment never sees a closed or
 * recycled descriptor. */
static int access_slot = -1;

/* Open the log file for appending. O_NONBLOCK for the open only: a FIFO
 * nobody reads fails (ENXIO) instead of blocking the main thread. When
 * sluice will hand the file to another user (as root, before dropping
 * privileges), O_NOFOLLOW: whoever can write the log directory must not
 * point the name at another file. */
static int open_log_file(const char *path, bool for_other_user)
{
    int flags = O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NONBLOCK;
    int fd = open(path, flags | (for_other_user ? O_NOFOLLOW : 0), 0640);
    if (fd >= 0 && fcntl(fd, F_SETFL, O_APPEND) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int log_access_open(const char *target, uid_t owner, gid_t group)
{
    if (target == NULL || strcmp(target, "off") == 0) {
        atomic_store(&access_fd, -1);
        return 0;
    }
    int fd;
    if (strcmp(target, "stderr") == 0)
        fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
    else
        fd = open_log_file(target, owner != (uid_t)-1 || group != (gid_t)-1);
    if (fd < 0)
        return -1;
    struct stat st;
    /* Hand over only a plain file with one name (not a hard link to some
     * other file planted in the log directory). */
    if ((owner != (uid_t)-1 || group != (gid_t)-1) && strcmp(target, "stderr") != 0 &&
        fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink == 1 &&
        fchown(fd, owner, group) < 0)
        log_warn("access_log %s: chown: %s (a reopen may fail)", target, strerror(errno));
    if (access_slot < 0) {
        access_slot = fd;
    } else {
        int rc = dup3(fd, access_slot, O_CLOEXEC);
        close(fd);
        if (rc < 0)
            return -1;
    }
    atomic_store(&access_fd, access_slot);
    return 0;
}

bool log_access_enabled(void)
{
    return atomic_load_explicit(&access_fd, memory_order_relaxed) >= 0;
}

void log_access_line(const char *line, size_t len)
{
    int fd = atomic_load_explicit(&access_fd, memory_order_relaxed);
    if (fd >= 0)
        write_all(fd, line, len);
}

void log_access_close(void)
{
    atomic_store(&access_fd, -1);
    if (access_slot >= 0)
        close(access_slot);
    access_slot = -1;
}
