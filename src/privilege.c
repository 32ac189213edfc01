/* privilege.c - switch from root to [global] user/group after start-up.
 *
 * sluice binds, opens its access log and creates its admin socket as the
 * user it starts as, then (as root) becomes cfg->user for good. Only
 * CAP_NET_BIND_SERVICE is kept, so a reload can still add a listener on a
 * port below 1024; nothing else of root survives. */
#include "sluice/privilege.h"

#include "sluice/config-t.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* Enough for any sane passwd/group entry; a bigger one is refused (ERANGE)
 * rather than retried with a heap buffer. */
#define PW_BUF 16384

/* A decimal id that fits in uid_t/gid_t (not -1, which means "unchanged"). */
static bool parse_id(const char *s, unsigned long *out)
{
    if (*s < '0' || *s > '9')
        return false;
    char *end;
    errno = 0;
    unsigned long n = strtoul(s, &end, 10);
    if (errno != 0 || *end != '\0' || n >= 0xffffffffUL)
        return false;
    *out = n;
    return true;
}

/* Resolve a user (or, with `group`, a group) by name or number: the id,
 * and for a user its primary group. NULL, or why not. */
static const char *lookup_id(const char *name, bool group, unsigned *id, unsigned *primary_gid)
{
    char buf[PW_BUF];
    unsigned long num;
    bool numeric = parse_id(name, &num);
    bool found;
    int rc;
    if (group) {
        struct group gr, *res = NULL;
        rc = numeric ? getgrgid_r((gid_t)num, &gr, buf, sizeof(buf), &res)
                     : getgrnam_r(name, &gr, buf, sizeof(buf), &res);
        if ((found = res != NULL))
            *id = gr.gr_gid;
    } else {
        struct passwd pw, *res = NULL;
        rc = numeric ? getpwuid_r((uid_t)num, &pw, buf, sizeof(buf), &res)
                     : getpwnam_r(name, &pw, buf, sizeof(buf), &res);
        if ((found = res != NULL)) {
            *id = pw.pw_uid;
            *primary_gid = pw.pw_gid;
        }
    }
    if (found)
        return NULL;
    if (rc == 0 || rc == ENOENT || rc == ESRCH)
        return group ? "no such group" : "no such user";
    return group ? "cannot look up the group" : "cannot look up the user";
}

const char *privilege_lookup_user(const char *name, uid_t *uid, gid_t *primary_gid)
{
    unsigned id, gid;
    const char *why = lookup_id(name, false, &id, &gid);
    if (why != NULL)
        return why;
    *uid = id;
    if (primary_gid != NULL)
        *primary_gid = gid;
    return NULL;
}

const char *privilege_lookup_group(const char *name, gid_t *gid)
{
    unsigned id, unused;
    const char *why = lookup_id(name, true, &id, &unused);
    if (why == NULL)
        *gid = id;
    return why;
}

const char *privilege_default_user(uid_t *uid, gid_t *gid)
{
    gid_t primary;
    if (privilege_lookup_user("sluice", uid, &primary) == NULL) {
        *gid = primary;
        return "sluice";
    }
    if (privilege_lookup_user("nobody", uid, &primary) == NULL) {
        if (privilege_lookup_group("nogroup", gid) != NULL)
            *gid = primary;
        return "nobody";
    }
    return NULL;
}

int privilege_user_can_read(const struct config *cfg, const char *path, char *why, size_t len)
{
    if (cfg->user == NULL || cfg->uid == 0 || geteuid() != 0)
        return 0;
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) < 0)
        return 0; /* cannot tell: the start will say so */
    pid_t pid = fork();
    if (pid < 0) {
        close(pipefd[0]);
        close(pipefd[1]);
        return 0;
    }
    if (pid == 0) {
        char err[256];
        int e = privilege_drop(cfg, err, sizeof(err)) < 0 ? EPERM
                : access(path, R_OK) < 0                 ? errno
                                                         : 0;
        ssize_t w = write(pipefd[1], &e, sizeof(e));
        _exit(w == (ssize_t)sizeof(e) ? 0 : 1);
    }
    close(pipefd[1]);
    int e = 0;
    ssize_t n;
    do
        n = read(pipefd[0], &e, sizeof(e));
    while (n < 0 && errno == EINTR);
    close(pipefd[0]);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
    if (n != (ssize_t)sizeof(e) || e == 0)
        return 0;
    snprintf(why, len, "%s", strerror(e));
    return -1;
}

/* A user that resolves to uid 0 is root by another name. */
static bool drops_root(const struct config *cfg)
{
    return cfg->user != NULL && cfg->uid != 0;
}

int privilege_check(const struct config *cfg, char *err, size_t errlen)
{
    if (geteuid() != 0 || drops_root(cfg) || cfg->allow_root)
        return 0;
    snprintf(err, errlen,
             "refusing to run as root: no user in [global] and neither a 'sluice' nor a "
             "'nobody' user exists to drop to; set user (and group), or allow_root = yes");
    return -1;
}

void privilege_owner(const struct config *cfg, uid_t *uid, gid_t *gid)
{
    bool switching = drops_root(cfg) && geteuid() == 0;
    *uid = switching ? cfg->uid : (uid_t)-1;
    *gid = switching ? cfg->gid : (gid_t)-1;
}

/* Keep exactly CAP_NET_BIND_SERVICE, effective and permitted. */
static int keep_bind_capability(void)
{
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
    memset(data, 0, sizeof(data));
    data[0].effective = data[0].permitted = 1U << CAP_NET_BIND_SERVICE;
    return (int)syscall(SYS_capset, &hdr, data);
}

int privilege_drop(const struct config *cfg, char *err, size_t errlen)
{
    if (!drops_root(cfg) || geteuid() != 0)
        return 0;
    /* Keep the permitted set across setuid so one capability can stay. */
    if (prctl(PR_SET_KEEPCAPS, 1L, 0L, 0L, 0L) < 0) {
        snprintf(err, errlen, "prctl(PR_SET_KEEPCAPS): %s", strerror(errno));
        return -1;
    }
    /* The user's supplementary groups, by the name in the file; a numeric
     * user by its passwd entry, or with only the group if it has none. */
    char buf[PW_BUF];
    struct passwd pw, *res = NULL;
    unsigned long id;
    const char *name = cfg->user;
    if (parse_id(name, &id))
        name = getpwuid_r(cfg->uid, &pw, buf, sizeof(buf), &res) == 0 && res ? res->pw_name : NULL;
    int rc = name != NULL ? initgroups(name, cfg->gid) : setgroups(1, &cfg->gid);
    if (rc < 0) {
        snprintf(err, errlen, "cannot set the groups of user %s: %s", cfg->user, strerror(errno));
        return -1;
    }
    if (setgid(cfg->gid) < 0) {
        snprintf(err, errlen, "setgid(%u): %s", (unsigned)cfg->gid, strerror(errno));
        return -1;
    }
    if (setuid(cfg->uid) < 0) {
        snprintf(err, errlen, "setuid(%u): %s", (unsigned)cfg->uid, strerror(errno));
        return -1;
    }
    if (keep_bind_capability() < 0) {
        snprintf(err, errlen, "capset(CAP_NET_BIND_SERVICE): %s", strerror(errno));
        return -1;
    }
    prctl(PR_SET_KEEPCAPS, 0L, 0L, 0L, 0L);
    /* setuid clears the dumpable flag, which forbids core dumps and stops
     * LeakSanitizer's exit check (it ptraces the process); like nginx's
     * workers, turn it back on. Other processes of the user still cannot
     * ptrace sluice: it holds a capability they lack. */
    prctl(PR_SET_DUMPABLE, 1L, 0L, 0L, 0L);
    /* Paranoia: there must be no way back. */
    if (setuid(0) == 0) {
        snprintf(err, errlen, "could regain root after dropping privileges");
        return -1;
    }
    return 0;
}
