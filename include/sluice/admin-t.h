/* admin-t.h - the operations table the control module gives the admin
 * side (see admin.h). */
#ifndef SLUICE_ADMIN_T_H
#define SLUICE_ADMIN_T_H

struct config;
struct server_conf;
struct config_edit;
struct strbuf;
struct worker;

/* What the admin side may see and do in the running sluice, handed to it
 * by the control module (control_admin_ops()), so that admin.c never
 * depends on control.c. Every function runs on the main thread; ctx is
 * passed back to each. */
struct admin_ops {
    void *ctx;
    struct config *(*config)(void *ctx); /* the running generation */
    int (*worker_slots)(void *ctx);      /* worker ids in use: 0 .. n-1 */
    /* Run fn(worker, arg) on every running worker, then done(arg) here;
     * -1 on allocation failure (done is then not called). */
    int (*fanout)(void *ctx, void (*fn)(struct worker *, void *), void (*done)(void *), void *arg);
    void (*info)(void *ctx, struct strbuf *out);
    void (*table)(void *ctx, struct strbuf *out);
    void (*json)(void *ctx, struct strbuf *out);
    void (*backends)(void *ctx, struct strbuf *out);
    void (*prometheus)(void *ctx, struct strbuf *out);
    void (*latency)(void *ctx, struct server_conf *sv, struct strbuf *out); /* sv NULL: all */
    void (*reload)(void *ctx, struct strbuf *report); /* the reply: result or errors */
    void (*reopen)(void *ctx, struct strbuf *reply);  /* the access log */
    /* `reload dry-run`: what a reload would change, applying nothing. */
    void (*reload_dry_run)(void *ctx, struct strbuf *report);
    /* A runtime server change (add/del server, set server addr): a new
     * generation from the running one with edit applied, committed like a
     * reload. `what` is the command for logs. 0, or -1 with one line
     * "error: ..." in out and nothing changed. */
    int (*server_change)(void *ctx, const struct config_edit *edit, const char *what,
                         struct strbuf *out);
    /* The running configuration as an INI file (show config). */
    void (*show_config)(void *ctx, struct strbuf *out);
};

#endif
