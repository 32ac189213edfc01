/* admin.h - the admin socket (Unix stream, line protocol) and the optional
 * HTTP listener for /metrics and /stats.json. Both run on the main loop. */
#ifndef SLUICE_ADMIN_H
#define SLUICE_ADMIN_H

#include "sluice/addr.h"
#include "sluice/admin-t.h"
#include "sluice/strbuf.h"

#include <stddef.h>
#include <sys/types.h>

/* Create the socket at path (parent directory made if missing, a stale
 * socket file replaced, mode applied, the file and any directory made
 * given to uid/gid unless they are -1). NULL with a message on failure. */
struct admin *admin_start(const struct admin_ops *ops, const char *path, int mode, uid_t uid, gid_t gid,
                          char *err, size_t errlen);
/* Close every client and remove the socket file. */
void admin_stop(struct admin *a);
const char *admin_path(const struct admin *a);

struct admin_http *admin_http_start(const struct admin_ops *ops, const struct sockaddr_any *addr, char *err,
                                    size_t errlen);
void admin_http_stop(struct admin_http *h);
const struct sockaddr_any *admin_http_addr(const struct admin_http *h);

/* Run one command line synchronously where possible. Returns 1 when the
 * reply is complete in `out`, 0 when it will be completed later through
 * `done(ctx)` (show sessions, which asks the workers). Exposed for tests
 * and fuzzing: commands that need workers fail cleanly without them. */
int admin_execute(const struct admin_ops *ops, const char *line, struct strbuf *out,
                  void (*done)(void *ctx, struct strbuf *reply), void *ctx);

#endif
