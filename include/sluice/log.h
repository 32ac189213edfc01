/* log.h - leveled, printf-checked logging to stderr and the access log. */
#ifndef SLUICE_LOG_H
#define SLUICE_LOG_H

#include "sluice/log-t.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

extern _Atomic int log_current_level;

const char *log_level_str(enum log_level level);
/* Parse "error", "warn", "info", "debug"; returns false if unknown. */
bool log_level_parse(const char *s, enum log_level *out);

#define log_enabled(level) ((int)(level) <= log_current_level)

void log_write(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_error(...) log_write(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)                                                          \
    do {                                                                       \
        if (log_enabled(LOG_WARN))                                             \
            log_write(LOG_WARN, __VA_ARGS__);                                  \
    } while (0)
#define log_info(...)                                                          \
    do {                                                                       \
        if (log_enabled(LOG_INFO))                                             \
            log_write(LOG_INFO, __VA_ARGS__);                                  \
    } while (0)
#define log_debug(...)                                                         \
    do {                                                                       \
        if (log_enabled(LOG_DEBUG))                                            \
            log_write(LOG_DEBUG, __VA_ARGS__);                                 \
    } while (0)

/* True when a line may be written now (then *dropped holds how many were
 * suppressed before it); false counts one more suppressed line. */
static inline bool log_limit_due(struct log_limit *l, double now, double interval,
                                 unsigned long *dropped)
{
    if (l->last != 0 && now - l->last < interval) {
        l->suppressed++;
        return false;
    }
    *dropped = l->suppressed;
    l->suppressed = 0;
    l->last = now;
    return true;
}

/* log_limit_due for a struct log_limit_shared: true for at most one caller
 * per interval_ms (then *dropped holds how many calls were suppressed
 * before it), false counts one more suppressed line. */
bool log_limit_shared_due(struct log_limit_shared *l, int64_t now_ms, int64_t interval_ms,
                          unsigned long *dropped);

/* Milliseconds on CLOCK_MONOTONIC; comparable across threads. */
int64_t time_mono_ms(void);

/* Writes "YYYY-MM-DDTHH:MM:SS.mmmZ" (24 chars + NUL) into buf. */
void log_timestamp(char *buf, size_t size);

/* Access log: off (fd -1), stderr, a file opened O_APPEND, or syslog
 * ("syslog:/dev/log", "syslog:unix:/path", "syslog:IP:PORT",
 * "syslog:[IPv6]:PORT": one RFC 5424 datagram per line, sent without
 * blocking; a full or absent socket drops the line and counts it). Lines are
 * written with one write(2) each, so workers never interleave. Unless
 * owner/group are -1, the file is not opened through a symlink and, if it
 * is a regular file with one link, is given to them (so it can be reopened
 * after privileges are dropped). 0 ok, -1 with errno. */
int log_access_open(const char *target, uid_t owner, gid_t group);
bool log_access_enabled(void);
void log_access_line(const char *line, size_t len);
void log_access_close(void);
/* Lines not written (syslog full or absent, file write errors). */
unsigned long long log_access_dropped(void);

struct sockaddr_storage;
/* Parse a "syslog:..." access_log target; NULL or why not. */
const char *log_syslog_parse(const char *target, struct sockaddr_storage *ss, socklen_t *len,
                             bool *is_unix);
/* Facility name (kern .. ftp, local0 .. local7) -> code, or -1. */
int log_syslog_facility_parse(const char *name);
const char *log_syslog_facility_str(int code);
/* PRI and the header's APP-NAME for syslog lines (before log_access_open
 * and on reload). 0 ok, -1 out of memory. */
int log_access_syslog_setup(int facility, const char *tag);

#endif
