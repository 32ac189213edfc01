/* config_dump.h - every key of a config generation as the INI file writes
 * it, one (key, value) at a time: `sluice -T` prints them, the reload
 * diff (config_diff.h) compares them, so both show a value alike. */
#ifndef SLUICE_CONFIG_DUMP_H
#define SLUICE_CONFIG_DUMP_H

#include "sluice/config-t.h"

#include <stdbool.h>

/* Receives the keys of one section in file order. kv: a key and its value
 * as the file writes it (a key given several times, such as bind, comes
 * once per value). comment: a remark the dump prints as "; TEXT" (a key
 * without a value, why it has none); may be NULL. The strings live only
 * during the call. */
struct config_sink {
    void (*kv)(struct config_sink *sink, const char *key, const char *value);
    void (*comment)(struct config_sink *sink, const char *text);
};

void config_emit_global(const struct config *cfg, struct config_sink *sink);
/* A listener's keys (not its section header). */
void config_emit_listener(const struct listener_conf *l, struct config_sink *sink);
/* A pool's own keys, without its server lines. */
void config_emit_pool(const struct pool_conf *p, struct config_sink *sink);
/* The fields of one server line after its name: "address" first, then
 * each NAME=VALUE option, then "backup" ("yes" or "no"). */
void config_emit_server(const struct server_conf *s, struct config_sink *sink);
/* Whether s is a line of the file (not made from a resolve=all/srv
 * answer): the pool's servers, then its templates (pool_conf.named). */
bool config_server_is_line(const struct server_conf *s);

#endif
