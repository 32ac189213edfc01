/* registry.c - keyed, reference-counted objects shared by generations. */
#include "sluice/registry.h"
#include "sluice/common.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;

struct registry_obj *registry_get(struct registry *reg, const char *key, size_t size,
                                  void (*init)(struct registry_obj *))
{
    SLUICE_ASSERT(size >= sizeof(struct registry_obj));
    pthread_mutex_lock(&registry_lock);
    struct registry_obj *o;
    for (o = reg->head; o != NULL; o = o->next) {
        if (strcmp(o->key, key) == 0) {
            o->refs++;
            pthread_mutex_unlock(&registry_lock);
            return o;
        }
    }
    o = aligned_alloc(SLUICE_CACHELINE, (size + SLUICE_CACHELINE - 1) & ~(size_t)(SLUICE_CACHELINE - 1));
    char *k = strdup(key);
    if (o == NULL || k == NULL) {
        free(o);
        free(k);
        pthread_mutex_unlock(&registry_lock);
        return NULL;
    }
    memset(o, 0, size);
    o->key = k;
    o->refs = 1;
    if (init)
        init(o);
    o->next = reg->head;
    reg->head = o;
    pthread_mutex_unlock(&registry_lock);
    return o;
}

bool registry_has(struct registry *reg, const char *key)
{
    pthread_mutex_lock(&registry_lock);
    struct registry_obj *o = reg->head;
    while (o != NULL && strcmp(o->key, key) != 0)
        o = o->next;
    pthread_mutex_unlock(&registry_lock);
    return o != NULL;
}

void registry_put(struct registry *reg, struct registry_obj *obj)
{
    if (obj == NULL)
        return;
    pthread_mutex_lock(&registry_lock);
    SLUICE_ASSERT(obj->refs > 0);
    if (--obj->refs == 0) {
        for (struct registry_obj **p = &reg->head; *p; p = &(*p)->next) {
            if (*p == obj) {
                *p = obj->next;
                break;
            }
        }
        if (reg->fini != NULL)
            reg->fini(obj);
        free(obj->key);
        free(obj);
    }
    pthread_mutex_unlock(&registry_lock);
}

size_t registry_count(struct registry *reg)
{
    size_t n = 0;
    pthread_mutex_lock(&registry_lock);
    for (struct registry_obj *o = reg->head; o; o = o->next)
        n++;
    pthread_mutex_unlock(&registry_lock);
    return n;
}
