/* pidfile.h - [global] pid_file: a file holding sluice's pid, locked while
 * sluice runs so a second instance on the same file refuses to start. */
#ifndef SLUICE_PIDFILE_H
#define SLUICE_PIDFILE_H

#include <stddef.h>

struct pidfile;

/* Create or take over path, lock it (a running holder makes this fail),
 * write the pid. NULL with the reason in err on failure. */
struct pidfile *pidfile_open(const char *path, char *err, size_t errlen);

/* Remove the file at exit; where the dropped user may not unlink it (a
 * root-owned directory), empty it instead so no stale pid is left. */
void pidfile_close(struct pidfile *pf);

#endif
