/* listener.h - listening sockets: opened by the main thread (so a bind
 * error stops startup cleanly), accepted from by a worker. */
#ifndef SLUICE_LISTENER_H
#define SLUICE_LISTENER_H

#include "sluice/addr.h"
#include "sluice/listener-t.h"
#include "sluice/session-t.h"
#include "sluice/srclimit-t.h"

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>

struct config;
struct listener_conf;
struct worker;
struct worker_listen;

/* Non-blocking, close-on-exec, SO_REUSEADDR + SO_REUSEPORT, bound and
 * listening. Returns the fd, or -1 with a message in err. */
int listener_open(const struct sockaddr_any *addr, int backlog, char *err, size_t errlen);
/* Whether listener_open() could bind addr now (a TCP address; a reload's
 * dry run): binds a socket with the same options and closes it without
 * listen(), so no client can reach it. 0, or -1 with the same message. */
int listener_probe(const struct sockaddr_any *addr, char *err, size_t errlen);

/* A Unix stream listening socket at addr's path (non-blocking,
 * close-on-exec), the one behind the admin socket and `bind = unix:`:
 * - a missing parent directory is made like mkdir -p, root's, mode 0750
 *   (0751 when mode lets others in), group gid;
 * - a socket file left by a dead process is replaced; one something
 *   answers on is refused ("in use by another process"), and so is any
 *   other kind of file (a symlink included: it is never followed);
 * - the file gets `mode` at creation (umask around bind(), so it is
 *   never wider, and no chmod that could follow a swapped-in symlink),
 *   then lchown(uid, gid) unless both are -1.
 * Returns the fd (and, when made is not NULL, which file it created), or
 * -1 with a message in err and nothing left behind. Main thread only: it
 * changes the process umask for the bind. */
int listener_open_unix(const struct sockaddr_any *addr, int backlog, int mode, uid_t uid, gid_t gid,
                       struct unix_file *made, char *err, size_t errlen);

/* Remove the socket file at path if it is still the one `made` recorded
 * (lstat: a socket with the same device and inode). Returns 0 when
 * removed or already gone, -1 (errno set) otherwise. */
int listener_unlink_unix(const char *path, const struct unix_file *made);

/* True for the accept() errors that mean "out of descriptors or memory":
 * EMFILE, ENFILE, ENOBUFS, ENOMEM. */
bool listener_exhausted_errno(int err);

/* Record one such failure at `now`: p->until becomes now +
 * LISTENER_EXHAUSTED_PAUSE, and the caller stops its accept watcher until
 * then. Returns true when this failure starts a new burst, so the caller
 * logs once per burst rather than once per failed accept. */
bool listener_pause_exhausted(struct accept_pause *p, ev_tstamp now);

/* The access list's verdict on a new client of lc (the accepted peer,
 * or with accept_proxy the PROXY header's source). A refused one is
 * counted in the listener's `denied` and logged at most once a second
 * per listener (over all workers), with how many were not logged. The
 * caller closes it (abortively) and ends it with reason `denied`.
 * Returns true when allowed. Worker threads. */
struct sockaddr_ip;
bool listener_admit(struct worker *w, struct listener_conf *lc, const struct sockaddr_ip *client);

enum accept_result {
    ACCEPT_MORE,   /* the batch was full: more may be queued */
    ACCEPT_EMPTY,  /* the queue is empty (EAGAIN), or a draining socket
                      has accepted all it owed */
    ACCEPT_PAUSED, /* a limit or EMFILE paused the socket */
    ACCEPT_FAILED, /* another accept error (counted, logged) */
};

/* What becomes of an accepted connection: the worker starts a session
 * (slots in the process and listener counts are already taken for it, and
 * src, when not NULL, is its count in its source's entry, to be released
 * with srclimit_release() when it ends).
 * A callback, so this module does not depend on sessions or workers. */
typedef void listener_accepted_fn(struct worker *w, struct config *cfg, struct listener_conf *lc,
                                  int fd, const struct sockaddr_ip *peer, struct src_entry *src);

/* Accept up to one batch from a worker's listening socket, handing each
 * connection to `accepted`. */
enum accept_result listener_accept_batch(struct worker_listen *wl, listener_accepted_fn *accepted);

/* The per-source limits of lc (max_conns_per_source, rate_per_source) for
 * a new client at sa: END_NONE when admitted (then *src is the entry the
 * session holds, or NULL when not counted), else the end reason
 * (source_conn_limit, source_rate_limit), already counted for the
 * listener (not in the worker's end reasons: the caller's) and logged at
 * most once per second per listener. The caller closes the client
 * abortively (and, with a session, ends it with that reason). Any worker. */
enum end_reason listener_source_admit(struct worker *w, struct listener_conf *lc,
                                      const struct sockaddr *sa, struct src_entry **src);

/* Make close(fd) send RST instead of FIN (SO_LINGER 0): a refused client
 * leaves no TIME_WAIT on the proxy. */
void listener_abortive_close(int fd);

/* Worker thread: restart accept watchers paused at a limit or EMFILE when
 * they may accept again (a draining one is also woken, so it notices an
 * empty queue); returns true if some remain paused. */
int listener_resume_paused(struct worker *w);

#endif
