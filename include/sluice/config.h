/* config.h - load and validate an INI file into a config generation.
 *
 * Loading never touches running state: the result is a fresh, private
 * struct config, or NULL with every error collected as
 * "FILE:LINE: key: reason". config_attach_runtime() then links servers and
 * listeners to their long-lived runtime state (health, counters). */
#ifndef SLUICE_CONFIG_H
#define SLUICE_CONFIG_H

#include "sluice/config-t.h"

#include <stdio.h>

/* Every error of one load, in line order ("FILE:LINE: key: reason"). */
struct config_errors {
    char **msgs;
    int *lines; /* the line of each message, for ordering */
    int n;
};

struct config *config_load_file(const char *path, struct config_errors *errs);
struct config *config_load_buffer(const char *data, size_t len, const char *name,
                                  struct config_errors *errs);
void config_errors_print(const struct config_errors *errs, FILE *out);
/* config_load_file(), and on failure every error and a count line
 * ("PROG: N errors in PATH") on stderr; NULL then. */
struct config *config_load_reporting(const char *path, const char *prog);
void config_errors_free(struct config_errors *errs);
/* Append "FILE:LINE: key: reason" (checks after the load, such as the
 * resolution of host names, report through it). */
void config_errors_add(struct config_errors *errs, const char *file, int line, const char *key,
                       const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Link every server and listener to its runtime state, creating state that
 * does not exist yet; returns -1 on allocation failure. Changes nothing a
 * running generation sees (new servers only get their initial weight). */
int config_attach_runtime(struct config *cfg);
/* While preparing a generation (after config_attach_runtime()): append
 * a server "TMPL#num" for the answer t of template tmpl (in p->named) to
 * p->servers and attach it. p->servers moves: no pointer into it may be
 * kept across calls. NULL on allocation failure (cfg is then only fit to
 * be freed). */
struct server_conf *config_add_server(struct config *cfg, struct pool_conf *p,
                                      const struct server_conf *tmpl, int num,
                                      const struct dns_target *t);
/* Whether the runtime state of server `name` of pool p still exists (a
 * generation, running or still finishing sessions, has it). */
bool config_server_known(const struct pool_conf *p, const char *name);
/* Commit the file's weights to the runtime state (a reload that went
 * through overrides `set weight`). */
void config_apply_weights(struct config *cfg);
/* Make cfg's per-source tables their listeners' current ones, so the next
 * reload keeps them (see attach_sources in config.c). Control thread, at
 * start and when a reload is committed. */
void config_commit_sources(struct config *cfg);

void config_ref(struct config *cfg);
/* Frees the generation (and releases its runtime state) at zero. */
void config_unref(struct config *cfg);

/* Print cfg as an INI file with every key and default filled in (sluice -T);
 * config_load_file() reads it back to the same configuration. */
void config_dump(const struct config *cfg, FILE *out);

/* One change to a pool's server lines, made while dumping (the runtime
 * `add server`, `del server` and `set server ... addr` commands build
 * their generation from the running one's dump with it). */
enum config_edit_op {
    CONFIG_EDIT_ADD,  /* a line "server = VALUE" at the end of pool's */
    CONFIG_EDIT_DEL,  /* no line for server */
    CONFIG_EDIT_ADDR, /* server's address is VALUE (a literal: DNS options dropped) */
};

struct config_edit {
    enum config_edit_op op;
    const char *pool;
    const char *server; /* DEL, ADDR */
    const char *value;  /* ADD: "NAME ADDRESS [options]"; ADDR: the address */
};

/* config_dump() without its header comment, with one edit applied (NULL:
 * none). Servers print the weight they run with (`set weight` included),
 * so a file made from it keeps them on reload. */
void config_dump_edited(const struct config *cfg, FILE *out, const struct config_edit *edit);

enum config_section { CONFIG_GLOBAL, CONFIG_LISTENER, CONFIG_POOL };
/* The keys a section accepts (the parser's own table). */
const char *const *config_section_keys(enum config_section sec, size_t *n);

struct pool_conf *config_find_pool(struct config *cfg, const char *name);
/* route = sni: the pool for a server name (lower case, "" when the client
 * sent none): an exact rule, else a wildcard rule ("*.NAME" matches one
 * label in front of NAME), else sni_default; NULL when none applies. */
struct pool_conf *config_route_sni(const struct listener_conf *l, const char *host);
const char *balance_algo_str(enum balance_algo algo);

/* Registries of runtime state (tests look at their sizes). */
extern struct registry backend_registry;
extern struct registry listener_registry;

#endif
