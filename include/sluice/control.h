/* control.h - the main thread: starts workers, handles signals, reloads,
 * serves the admin side, stops. */
#ifndef SLUICE_CONTROL_H
#define SLUICE_CONTROL_H

#include "sluice/control-t.h"

/* Run sluice with a loaded config until stopped; returns the exit code.
 * Takes the caller's reference to cfg (so the first generation is freed
 * once a reload replaced it and its last session ended). */
int control_run(struct config *cfg, const char *config_path);

/* Re-read the config file and apply it. On error nothing changes and
 * every error is appended to `report` (one per line); on success a
 * one-line summary is, then the changes (config_diff_format()) and the
 * `set weight`s it undoes ("undone: ..."). Returns 0 on success. */
int control_reload(struct control *ctl, struct strbuf *report);
/* What control_reload() would change, into report ("reload dry-run ok:
 * ..." and the changes, or the errors and "reload dry-run failed: ..."):
 * the same parse, checks and host name resolution, new TCP bind
 * addresses bound and closed again; nothing is applied or counted.
 * Returns 0 when a reload would get that far. */
int control_reload_dry_run(struct control *ctl, struct strbuf *report);

/* Reopen the access log by its path (after log rotation): SIGUSR1 and the
 * admin `reopen`. Logs the outcome prefixed with `who`; when reply is not
 * NULL, appends `access log reopened` or `error: reopen access log PATH:
 * REASON`. On failure the previous file stays in use. Returns 0 or -1. */
int control_reopen_access_log(struct control *ctl, const char *who, struct strbuf *reply);

struct strbuf;

/* The operations the admin socket and admin_http may use on ctl. */
void control_admin_ops(struct control *ctl, struct admin_ops *ops);

/* Run fn(worker, arg) on every running worker, then done(arg) back on the
 * main thread once all have run (at once if no worker runs). Returns -1
 * on allocation failure (done is then not called). */
int control_fanout(struct control *ctl, void (*fn)(struct worker *, void *),
                   void (*done)(void *), void *arg);

#endif
