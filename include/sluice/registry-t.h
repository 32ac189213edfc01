/* registry-t.h - keyed, reference-counted runtime objects (see registry.h). */
#ifndef SLUICE_REGISTRY_T_H
#define SLUICE_REGISTRY_T_H

struct registry_obj {
    struct registry_obj *next;
    char *key;
    int refs; /* protected by the registry lock */
};

struct registry {
    struct registry_obj *head;
    void (*fini)(struct registry_obj *); /* frees what an object owns; may be NULL */
};

#endif
