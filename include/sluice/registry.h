/* registry.h - runtime objects that outlive a config generation.
 *
 * A backend (pool/server) or a listener keeps its health, counters and live
 * session count across reloads. Each generation that mentions it takes a
 * reference by key; the object is freed when the last generation that
 * mentions it is freed. Only the control path touches the registry, so a
 * mutex is fine here. */
#ifndef SLUICE_REGISTRY_H
#define SLUICE_REGISTRY_H

#include "sluice/registry-t.h"

#include <stdbool.h>
#include <stddef.h>

/* Find the object called key or create one of `size` bytes (zeroed, the
 * registry_obj must be its first member) and call init on it. Takes a
 * reference. Returns NULL on allocation failure. */
struct registry_obj *registry_get(struct registry *reg, const char *key, size_t size,
                                  void (*init)(struct registry_obj *));
/* Whether an object called key exists (some generation still holds it). */
bool registry_has(struct registry *reg, const char *key);
/* Drop a reference; at zero the registry's fini runs and the object is
 * freed with free(). */
void registry_put(struct registry *reg, struct registry_obj *obj);
/* Number of live objects (tests). */
size_t registry_count(struct registry *reg);

#endif
