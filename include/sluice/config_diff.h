/* config_diff.h - what a reload changes: two generations compared
 * section by section and key by key, every value as the file writes it
 * (the same text as `sluice -T`, config_dump.h). Pure: it reads the two
 * configs only, never their runtime state. */
#ifndef SLUICE_CONFIG_DIFF_H
#define SLUICE_CONFIG_DIFF_H

#include "sluice/config-t.h"

#include <stdbool.h>

struct strbuf;

enum diff_kind { DIFF_ADDED, DIFF_REMOVED, DIFF_CHANGED };
enum diff_what { DIFF_GLOBAL, DIFF_LISTENER, DIFF_POOL, DIFF_SERVER };

/* One difference. name: the listener or pool, "POOL/NAME" for a server,
 * NULL for [global]. For DIFF_CHANGED, key with old and new value ("(none)"
 * where a side does not set it; a key given several times, such as bind,
 * has its values joined by ", "). For DIFF_ADDED, key is NULL and new_value
 * sums the new object up (a server: its line after the name); for
 * DIFF_REMOVED, key and values are NULL but for a pool's old_value (its
 * server count). */
struct config_change {
    enum diff_kind kind;
    enum diff_what what;
    char *name;
    char *key;
    char *old_value;
    char *new_value;
};

struct config_diff {
    struct config_change *changes; /* global, listeners, pools, servers */
    int n, cap;
    /* In both generations and not changed at all (a pool: neither its keys
     * nor its servers, nor their order). */
    int listeners_kept, pools_kept, servers_kept;
};

/* Compare generation `old` with `cfg` into *d (zeroed by the call).
 * Servers made from a resolve=all/srv answer are not compared: their
 * template line is. Returns -1 on allocation failure (d is then only fit
 * for config_diff_free()). */
int config_diff(const struct config *old, const struct config *cfg, struct config_diff *d);
void config_diff_free(struct config_diff *d);

/* Append one line per change to out, then the line of what stayed:
 *   changed global KEY: OLD -> NEW
 *   added listener NAME: SUMMARY       removed listener NAME
 *   changed listener NAME KEY: OLD -> NEW
 *   added pool NAME: N servers         removed pool NAME: N servers
 *   changed pool NAME KEY: OLD -> NEW  ("server order" is a key too)
 *   added server POOL/NAME: LINE       removed server POOL/NAME
 *   changed server POOL/NAME KEY: OLD -> NEW
 *   unchanged: L listeners, P pools, S servers
 * or, with no change at all, one line "no changes: L listeners, P pools, S
 * servers as running". prefix (may be "") starts every line. */
void config_diff_format(const struct config_diff *d, const char *prefix, struct strbuf *out);
/* One change as its line, without prefix or newline. */
void config_change_format(const struct config_change *c, struct strbuf *out);

#endif
