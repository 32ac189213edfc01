/* listener.h - listening sockets: opened by the main thread (so a bind
 * error stops startup cleanly), accepted from by a worker. */
#ifndef SLUICE_LISTENER_H
#define SLUICE_LISTENER_H

#include "sluice/addr.h"
#include "sluice/listener-t.h"

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

/* True for the accept() errors that mean "out of descriptors or memory":
 * EMFILE, ENFILE, ENOBUFS, ENOMEM. */
bool listener_exhausted_errno(int err);

/* Record one such failure at `now`: p->until becomes now +
 * LISTENER_EXHAUSTED_PAUSE, and the caller stops its accept watcher until
 * then. Returns true when this failure starts a new burst, so the caller
 * logs once per burst rather than once per failed accept. */
bool listener_pause_exhausted(struct accept_pause *p, ev_tstamp now);

enum accept_result {
    ACCEPT_MORE,   /* the batch was full: more may be queued */
    ACCEPT_EMPTY,  /* the queue is empty (EAGAIN), or a draining socket
                      has accepted all it owed */
    ACCEPT_PAUSED, /* a limit or EMFILE paused the socket */
    ACCEPT_FAILED, /* another accept error (counted, logged) */
};

/* What becomes of an accepted connection: the worker starts a session
 * (slots in the process and listener counts are already taken for it).
 * A callback, so this module does not depend on sessions or workers. */
typedef void listener_accepted_fn(struct worker *w, struct config *cfg, struct listener_conf *lc,
                                  int fd, const struct sockaddr_ip *peer);

/* Accept up to one batch from a worker's listening socket, handing each
 * connection to `accepted`. */
enum accept_result listener_accept_batch(struct worker_listen *wl, listener_accepted_fn *accepted);

/* Worker thread: restart accept watchers paused at a limit or EMFILE when
 * they may accept again (a draining one is also woken, so it notices an
 * empty queue); returns true if some remain paused. */
int listener_resume_paused(struct worker *w);

#endif
