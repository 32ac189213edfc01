/* listener-t.h - types embedded by the owners of listening sockets (a
 * worker, the admin servers): the pause after running out of descriptors. */
#ifndef SLUICE_LISTENER_T_H
#define SLUICE_LISTENER_T_H

#include <ev.h>
#include <sys/types.h>

/* How long a listening socket stops accepting after EMFILE/ENFILE/ENOBUFS/
 * ENOMEM: the socket stays readable, so accepting again at once would spin. */
#define LISTENER_EXHAUSTED_PAUSE 0.1

/* State of that pause for one owner; zero-initialised means never hit. */
struct accept_pause {
    ev_tstamp until; /* accept again from here on */
    ev_tstamp last;  /* last failure; a new burst (and log line) starts after 1 s without one */
};

/* The file a Unix listening socket's bind() created: removed only while the
 * path still names that very file (never one another process put there). */
struct unix_file {
    dev_t dev;
    ino_t ino;
};

#endif
