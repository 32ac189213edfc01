/* log.c - timestamped, leveled log lines on stderr; the access log sink. */
#include "sluice/log.h"
#include "sluice/common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
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

static bool write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return false;
        }
        buf += n;
        len -= (size_t)n;
    }
    return true;
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
 * a reopen (SIGUSR1, a reload) dup2()s the new file or socket onto it,
 * which is atomic, so a worker writing at that moment never sees a closed
 * or recycled descriptor. */
static int access_slot = -1;

/* Lines that could not be written: a syslog socket full or absent, a
 * write error on the file. */
static _Atomic unsigned long long access_dropped;

/* Syslog: the sink is a datagram socket (Unix or UDP) and every line is
 * sent as one RFC 5424 message, never blocking. */
enum access_sink { SINK_FD, SINK_SYSLOG_UNIX, SINK_SYSLOG_UDP };
static _Atomic int access_sink = SINK_FD;
static _Atomic int syslog_pri = 16 * 8 + 6; /* local0.info */
/* "HOSTNAME APP-NAME PROCID MSGID - " of the header, swapped whole on a
 * reload that changes syslog_tag; old ones are kept until close (a worker
 * may still be reading one). */
struct syslog_tail {
    struct syslog_tail *older;
    size_t len;
    char text[];
};
static struct syslog_tail *_Atomic syslog_tail;
/* A Unix syslog socket that went away (syslogd restarted, /dev/log
 * recreated) is reconnected by the next line at least a second after the
 * last try, by whichever worker gets the lock first. */
static pthread_mutex_t syslog_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sockaddr_storage syslog_addr; /* under syslog_lock */
static socklen_t syslog_addr_len;
static _Atomic bool syslog_broken;
static _Atomic int64_t syslog_retry_ms;
#define SYSLOG_RETRY_MS 1000

static const struct {
    const char *name;
    int code;
} facilities[] = {
    {"kern", 0},      {"user", 1},    {"mail", 2},    {"daemon", 3},  {"auth", 4},
    {"syslog", 5},    {"lpr", 6},     {"news", 7},    {"uucp", 8},    {"cron", 9},
    {"authpriv", 10}, {"ftp", 11},    {"local0", 16}, {"local1", 17}, {"local2", 18},
    {"local3", 19},   {"local4", 20}, {"local5", 21}, {"local6", 22}, {"local7", 23},
};

int log_syslog_facility_parse(const char *name)
{
    for (size_t i = 0; i < ARRAY_SIZE(facilities); i++)
        if (strcasecmp(name, facilities[i].name) == 0)
            return facilities[i].code;
    return -1;
}

const char *log_syslog_facility_str(int code)
{
    for (size_t i = 0; i < ARRAY_SIZE(facilities); i++)
        if (facilities[i].code == code)
            return facilities[i].name;
    return "?";
}

const char *log_syslog_parse(const char *target, struct sockaddr_storage *ss, socklen_t *len,
                             bool *is_unix)
{
    if (strncmp(target, "syslog:", 7) != 0)
        return "not a syslog: target";
    const char *a = target + 7;
    memset(ss, 0, sizeof(*ss));
    if (strncmp(a, "unix:", 5) == 0)
        a += 5;
    if (a[0] == '/') {
        struct sockaddr_un *un = (struct sockaddr_un *)ss;
        if (strlen(a) >= sizeof(un->sun_path))
            return "Unix socket path too long";
        un->sun_family = AF_UNIX;
        strcpy(un->sun_path, a);
        *len = (socklen_t)sizeof(*un);
        *is_unix = true;
        return NULL;
    }
    char host[64];
    const char *colon;
    if (a[0] == '[') {
        const char *end = strchr(a, ']');
        if (end == NULL || end[1] != ':')
            return "expected syslog:/path, syslog:unix:/path, syslog:IP:PORT or syslog:[IPv6]:PORT";
        if ((size_t)(end - a - 1) >= sizeof(host))
            return "address too long";
        memcpy(host, a + 1, (size_t)(end - a - 1));
        host[end - a - 1] = '\0';
        colon = end + 1;
    } else {
        colon = strrchr(a, ':');
        if (colon == NULL || (size_t)(colon - a) >= sizeof(host))
            return "expected syslog:/path, syslog:unix:/path, syslog:IP:PORT or syslog:[IPv6]:PORT";
        memcpy(host, a, (size_t)(colon - a));
        host[colon - a] = '\0';
    }
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (colon[1] < '0' || colon[1] > '9' || *end != '\0' || port < 1 || port > 65535)
        return "port must be 1..65535";
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (a[0] != '[' && inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        *len = sizeof(*in4);
    } else if (a[0] == '[' && inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        *len = sizeof(*in6);
    } else {
        return "not an IP address (host names are not resolved here)";
    }
    *is_unix = false;
    return NULL;
}

int log_access_syslog_setup(int facility, const char *tag)
{
    char host[256];
    if (gethostname(host, sizeof(host)) < 0 || host[0] == '\0')
        strcpy(host, "-");
    host[sizeof(host) - 1] = '\0';
    /* RFC 5424 HOSTNAME is PRINTUSASCII without spaces, at most 255. */
    for (char *p = host; *p; p++)
        if (*p <= ' ' || *p > '~')
            *p = '_';
    size_t cap = strlen(host) + strlen(tag) + 64;
    struct syslog_tail *t = malloc(sizeof(*t) + cap);
    if (t == NULL)
        return -1;
    int n = snprintf(t->text, cap, "%s %s %d access - ", host, tag, (int)getpid());
    t->len = n > 0 ? (size_t)n : 0;
    t->older = atomic_load(&syslog_tail);
    atomic_store(&syslog_tail, t);
    atomic_store(&syslog_pri, facility * 8 + 6); /* severity 6: informational */
    return 0;
}

/* A datagram socket connected to the syslog address; -1 only when no
 * socket could be made. *connected false: it exists but could not be
 * connected (the syslog socket is absent). Under syslog_lock. */
static int syslog_socket(const struct sockaddr_storage *ss, socklen_t len, bool *connected)
{
    int fd = socket(ss->ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    *connected = connect(fd, (const struct sockaddr *)ss, len) == 0;
    if (ss->ss_family != AF_UNIX) {
        /* Room for a burst; beyond it lines are dropped, not queued. */
        int sz = 256 * 1024;
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
    }
    return fd;
}

/* Put fd in the access slot (or make it the slot); closes fd. */
static int install_slot(int fd)
{
    if (access_slot < 0) {
        access_slot = fd;
        return 0;
    }
    int rc = dup3(fd, access_slot, O_CLOEXEC);
    int err = errno;
    close(fd);
    errno = err;
    return rc < 0 ? -1 : 0;
}

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

static int open_syslog(const char *target)
{
    struct sockaddr_storage ss;
    socklen_t len;
    bool is_unix, connected;
    const char *why = log_syslog_parse(target, &ss, &len, &is_unix);
    if (why != NULL) {
        errno = EINVAL;
        return -1;
    }
    if (atomic_load(&syslog_tail) == NULL && log_access_syslog_setup(16, "sluice") < 0)
        return -1;
    pthread_mutex_lock(&syslog_lock);
    int fd = syslog_socket(&ss, len, &connected);
    int rc = -1;
    if (fd >= 0) {
        if (!connected)
            log_warn("access_log %s: %s (lines are dropped and counted until it is back)", target,
                     strerror(errno));
        rc = install_slot(fd);
    }
    if (rc == 0) {
        syslog_addr = ss;
        syslog_addr_len = len;
        atomic_store(&syslog_broken, is_unix && !connected);
        atomic_store(&syslog_retry_ms, time_mono_ms() + SYSLOG_RETRY_MS);
        atomic_store(&access_sink, is_unix ? SINK_SYSLOG_UNIX : SINK_SYSLOG_UDP);
    }
    pthread_mutex_unlock(&syslog_lock);
    return rc;
}

int log_access_open(const char *target, uid_t owner, gid_t group)
{
    if (target == NULL || strcmp(target, "off") == 0) {
        atomic_store(&access_fd, -1);
        return 0;
    }
    if (strncmp(target, "syslog:", 7) == 0) {
        if (open_syslog(target) < 0)
            return -1;
        atomic_store(&access_fd, access_slot);
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
    /* A line in flight to the old sink may go to the new one with the
     * old framing: harmless (one line). The lock keeps a worker's syslog
     * reconnect from putting a socket back over the new file. */
    pthread_mutex_lock(&syslog_lock);
    int rc = install_slot(fd);
    if (rc == 0)
        atomic_store(&access_sink, SINK_FD);
    pthread_mutex_unlock(&syslog_lock);
    if (rc < 0)
        return -1;
    atomic_store(&access_fd, access_slot);
    return 0;
}

bool log_access_enabled(void)
{
    return atomic_load_explicit(&access_fd, memory_order_relaxed) >= 0;
}

unsigned long long log_access_dropped(void)
{
    return atomic_load_explicit(&access_dropped, memory_order_relaxed);
}

/* Unix syslog gone: try to connect again, at most once per retry
 * interval, by one thread (the others drop their line meanwhile). */
static void syslog_reconnect(void)
{
    int64_t now = time_mono_ms();
    int64_t due = atomic_load_explicit(&syslog_retry_ms, memory_order_relaxed);
    if (now < due || !atomic_compare_exchange_strong(&syslog_retry_ms, &due, now + SYSLOG_RETRY_MS))
        return;
    if (pthread_mutex_trylock(&syslog_lock) != 0)
        return;
    if (atomic_load(&access_sink) != SINK_SYSLOG_UNIX) { /* switched meanwhile */
        pthread_mutex_unlock(&syslog_lock);
        return;
    }
    bool connected = false;
    int fd = syslog_socket(&syslog_addr, syslog_addr_len, &connected);
    if (fd >= 0 && connected && install_slot(fd) == 0)
        atomic_store(&syslog_broken, false);
    else if (fd >= 0 && !connected)
        close(fd);
    pthread_mutex_unlock(&syslog_lock);
}

static void syslog_send(int fd, int sink, const char *line, size_t len)
{
    if (sink == SINK_SYSLOG_UNIX && atomic_load_explicit(&syslog_broken, memory_order_relaxed)) {
        syslog_reconnect();
        if (atomic_load(&syslog_broken)) {
            atomic_fetch_add_explicit(&access_dropped, 1, memory_order_relaxed);
            return;
        }
    }
    char hdr[64];
    int n = snprintf(hdr, 16, "<%d>1 ", atomic_load_explicit(&syslog_pri, memory_order_relaxed));
    log_timestamp(hdr + n, sizeof(hdr) - (size_t)n);
    n += 24;
    hdr[n++] = ' ';
    const struct syslog_tail *t = atomic_load_explicit(&syslog_tail, memory_order_acquire);
    if (len > 0 && line[len - 1] == '\n')
        len--; /* one message per datagram: no newline */
    struct iovec iov[3] = {
        {.iov_base = hdr, .iov_len = (size_t)n},
        {.iov_base = (void *)t->text, .iov_len = t->len},
        {.iov_base = (void *)line, .iov_len = len},
    };
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 3};
    ssize_t rc;
    do
        rc = sendmsg(fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
    while (rc < 0 && errno == EINTR);
    if (rc < 0) {
        atomic_fetch_add_explicit(&access_dropped, 1, memory_order_relaxed);
        /* The receiving socket was closed (syslogd restarted) or never
         * connected: reconnect later. A full one (EAGAIN) just drops. */
        if (sink == SINK_SYSLOG_UNIX && (errno == ECONNREFUSED || errno == ENOTCONN ||
                                         errno == EDESTADDRREQ || errno == ENOENT))
            atomic_store(&syslog_broken, true);
    }
}

void log_access_line(const char *line, size_t len)
{
    int fd = atomic_load_explicit(&access_fd, memory_order_relaxed);
    if (fd < 0)
        return;
    int sink = atomic_load_explicit(&access_sink, memory_order_relaxed);
    if (sink != SINK_FD) {
        syslog_send(fd, sink, line, len);
        return;
    }
    if (!write_all(fd, line, len))
        atomic_fetch_add_explicit(&access_dropped, 1, memory_order_relaxed);
}

void log_access_close(void)
{
    atomic_store(&access_fd, -1);
    if (access_slot >= 0)
        close(access_slot);
    access_slot = -1;
    struct syslog_tail *t = atomic_exchange(&syslog_tail, NULL);
    while (t != NULL) {
        struct syslog_tail *older = t->older;
        free(t);
        t = older;
    }
}
