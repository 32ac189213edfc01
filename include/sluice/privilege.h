/* privilege.h - run as an unprivileged user: resolve [global] user/group,
 * refuse root without them, and drop to them once every privileged thing
 * (binds, log, admin socket) is open. */
#ifndef SLUICE_PRIVILEGE_H
#define SLUICE_PRIVILEGE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct config;

/* Resolve a user name or numeric uid. On success sets *uid and, when
 * primary_gid is not NULL, the user's primary group; returns NULL. On
 * failure returns a static reason. */
const char *privilege_lookup_user(const char *name, uid_t *uid, gid_t *primary_gid);

/* Resolve a group name or numeric gid; NULL on success, else a reason. */
const char *privilege_lookup_group(const char *name, gid_t *gid);

/* The user a root start without [global] user drops to, like nginx: the
 * `sluice` system user (and its primary group) if it exists, else `nobody`
 * with group `nogroup` (or nobody's primary group). Returns the user's
 * name (static) and sets *uid, *gid; NULL when neither exists. */
const char *privilege_default_user(uid_t *uid, gid_t *gid);

/* Whether cfg's user can read path: checked in a child that drops to the
 * user, so groups and ACLs count exactly as they will after the drop.
 * Returns 0 (readable, or no switch will happen), or -1 with why. */
int privilege_user_can_read(const struct config *cfg, const char *path, char *why, size_t len);

/* Decide before anything is opened whether this process may run with
 * cfg: as root it needs user (or allow_root = yes). Returns 0, or -1 with
 * the reason in err. */
int privilege_check(const struct config *cfg, char *err, size_t errlen);

/* The owner that files sluice creates must get so that the process can
 * still manage them after privilege_drop() (the admin socket, its
 * directory, the access log): cfg's user and group when the process will
 * switch to them, (uid_t)-1/(gid_t)-1 (leave alone) otherwise. */
void privilege_owner(const struct config *cfg, uid_t *uid, gid_t *gid);

/* Switch to cfg's user and group for good (supplementary groups of the
 * user included), keeping only CAP_NET_BIND_SERVICE so that a reload can
 * still bind ports below 1024. Does nothing when cfg has no user or the
 * process is not root. Returns 0, or -1 with the reason in err; the
 * caller must then exit. */
int privilege_drop(const struct config *cfg, char *err, size_t errlen);

#endif
