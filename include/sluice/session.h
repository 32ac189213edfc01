/* session.h - one proxied connection: client fd, backend fd, two relay
 * directions, one timer. Lives and dies on the worker that accepted it. */
#ifndef SLUICE_SESSION_H
#define SLUICE_SESSION_H

#include "sluice/session-t.h"

const char *session_state_str(enum session_state s);
const char *end_reason_str(enum end_reason r);

/* Take ownership of an accepted fd (slots in the global and listener
 * counts already reserved by the caller) and start connecting. `lc`
 * belongs to generation `cfg`, of which the session takes a reference.
 * src (may be NULL): the client's count in its source entry, which the
 * session now holds and releases when it ends. */
void session_start(struct worker *w, struct config *cfg, struct listener_conf *lc, int fd,
                   const struct sockaddr_ip *client, struct src_entry *src);

/* Worker: s (one of its sessions) was woken from its pool's queue
 * (w->wake): it picks a server again and connects, or keeps its place at
 * the head; if it ended meanwhile, its turn goes to the next waiter and it
 * is freed. */
void session_queue_woken(struct session *s);

/* Open w's io_uring now if a listener of its generation has relay =
 * uring (once; a refusal is logged once and those listeners copy), so a
 * ring is ready before the first session and its descriptors are there
 * from the start. */
void session_uring_prepare(struct worker *w);

/* End a session with one reason; safe from any callback of this worker. */
void session_finish(struct session *s, enum end_reason reason);

#endif
