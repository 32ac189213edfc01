/* config_diff.c - compare two config generations key by key (what a
 * reload or a dry run changes), with values as config_dump.c writes them. */
#include "sluice/config_diff.h"
#include "sluice/config_dump.h"
#include "sluice/strbuf.h"

#include <stdlib.h>
#include <string.h>

#define NONE "(none)"

/* The keys of one section in file order; a repeated key (bind, sni) is
 * one entry with its values joined by ", ". */
struct kv {
    char *key, *value;
};

struct kvlist {
    struct config_sink sink;
    struct kv *v;
    int n, cap;
    bool oom;
};

static void kvlist_add(struct config_sink *sink, const char *key, const char *value)
{
    struct kvlist *l = (struct kvlist *)sink;
    if (l->oom)
        return;
    if (l->n > 0 && strcmp(l->v[l->n - 1].key, key) == 0) {
        char *prev = l->v[l->n - 1].value;
        size_t a = strlen(prev), b = strlen(value);
        char *joined = realloc(prev, a + 2 + b + 1);
        if (joined == NULL) {
            l->oom = true;
            return;
        }
        memcpy(joined + a, ", ", 2);
        memcpy(joined + a + 2, value, b + 1);
        l->v[l->n - 1].value = joined;
        return;
    }
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 32;
        void *nv = realloc(l->v, (size_t)cap * sizeof(*l->v));
        if (nv == NULL) {
            l->oom = true;
            return;
        }
        l->v = nv;
        l->cap = cap;
    }
    char *k = strdup(key), *v = strdup(value);
    if (k == NULL || v == NULL) {
        free(k);
        free(v);
        l->oom = true;
        return;
    }
    l->v[l->n].key = k;
    l->v[l->n].value = v;
    l->n++;
}

static void kvlist_init(struct kvlist *l)
{
    memset(l, 0, sizeof(*l));
    l->sink.kv = kvlist_add;
}

static void kvlist_free(struct kvlist *l)
{
    for (int i = 0; i < l->n; i++) {
        free(l->v[i].key);
        free(l->v[i].value);
    }
    free(l->v);
}

static const char *kvlist_get(const struct kvlist *l, const char *key)
{
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->v[i].key, key) == 0)
            return l->v[i].value;
    return NULL;
}

/* Append a change (the strings are copied; NULL stays NULL). */
static int add(struct config_diff *d, enum diff_kind kind, enum diff_what what, const char *name,
               const char *key, const char *old_value, const char *new_value)
{
    if (d->n == d->cap) {
        int cap = d->cap ? d->cap * 2 : 16;
        void *nv = realloc(d->changes, (size_t)cap * sizeof(*d->changes));
        if (nv == NULL)
            return -1;
        d->changes = nv;
        d->cap = cap;
    }
    struct config_change *c = &d->changes[d->n];
    *c = (struct config_change){.kind = kind, .what = what};
    c->name = name ? strdup(name) : NULL;
    c->key = key ? strdup(key) : NULL;
    c->old_value = old_value ? strdup(old_value) : NULL;
    c->new_value = new_value ? strdup(new_value) : NULL;
    d->n++; /* freed by config_diff_free() even if a copy failed */
    if ((name && !c->name) || (key && !c->key) || (old_value && !c->old_value) ||
        (new_value && !c->new_value))
        return -1;
    return 0;
}

/* Compare two key lists; one DIFF_CHANGED per differing key (new's order,
 * then keys only old has). Returns the number of changes, -1 on OOM. */
static int diff_keys(struct config_diff *d, enum diff_what what, const char *name,
                     const struct kvlist *a, const struct kvlist *b)
{
    if (a->oom || b->oom)
        return -1;
    int n = 0;
    for (int i = 0; i < b->n; i++) {
        const char *ov = kvlist_get(a, b->v[i].key);
        if (ov != NULL && strcmp(ov, b->v[i].value) == 0)
            continue;
        if (add(d, DIFF_CHANGED, what, name, b->v[i].key, ov ? ov : NONE, b->v[i].value) < 0)
            return -1;
        n++;
    }
    for (int i = 0; i < a->n; i++) {
        if (kvlist_get(b, a->v[i].key) != NULL)
            continue;
        if (add(d, DIFF_CHANGED, what, name, a->v[i].key, a->v[i].value, NONE) < 0)
            return -1;
        n++;
    }
    return n;
}

typedef void (*emit_fn)(const void *obj, struct config_sink *sink);

static void emit_global(const void *o, struct config_sink *s)
{
    config_emit_global(o, s);
}
static void emit_listener(const void *o, struct config_sink *s)
{
    config_emit_listener(o, s);
}
static void emit_pool(const void *o, struct config_sink *s)
{
    config_emit_pool(o, s);
}
static void emit_server(const void *o, struct config_sink *s)
{
    config_emit_server(o, s);
}

/* diff_keys() over what emit writes for a and b. */
static int diff_objects(struct config_diff *d, enum diff_what what, const char *name, emit_fn emit,
                        const void *a, const void *b)
{
    struct kvlist la, lb;
    kvlist_init(&la);
    kvlist_init(&lb);
    emit(a, &la.sink);
    emit(b, &lb.sink);
    int n = diff_keys(d, what, name, &la, &lb);
    kvlist_free(&la);
    kvlist_free(&lb);
    return n;
}

/* The i-th server line of p (servers, then templates), or NULL past the
 * end; made-from-answer servers are skipped by the callers. */
static const struct server_conf *server_at(const struct pool_conf *p, int i)
{
    return i < p->nservers ? &p->servers[i] : &p->named[i - p->nservers];
}

static const struct server_conf *find_server_line(const struct pool_conf *p, const char *name)
{
    for (int i = 0; i < p->nservers + p->nnamed; i++) {
        const struct server_conf *s = server_at(p, i);
        if (config_server_is_line(s) && strcmp(s->name, name) == 0)
            return s;
    }
    return NULL;
}

static int count_lines(const struct pool_conf *p)
{
    int n = 0;
    for (int i = 0; i < p->nservers + p->nnamed; i++)
        n += config_server_is_line(server_at(p, i));
    return n;
}

/* A server line after its name, as sluice -T writes it. */
struct line_sink {
    struct config_sink sink;
    struct strbuf *out;
};

static void server_line_kv(struct config_sink *sink, const char *key, const char *value)
{
    struct strbuf *b = ((struct line_sink *)sink)->out;
    const char *sep = b->len ? " " : "";
    if (strcmp(key, "address") == 0)
        strbuf_printf(b, "%s%s", sep, value);
    else if (strcmp(key, "backup") == 0) {
        if (strcmp(value, "yes") == 0)
            strbuf_printf(b, "%sbackup", sep);
    } else
        strbuf_printf(b, "%s%s=%s", sep, key, value);
}

/* Shared tail of server/listener summaries: 0, or -1 on OOM. */
static int add_summary(struct config_diff *d, enum diff_what what, const char *name,
                       struct strbuf *b)
{
    int rc = b->oom ? -1 : add(d, DIFF_ADDED, what, name, NULL, NULL, b->data ? b->data : "");
    strbuf_free(b);
    return rc;
}

static int server_added(struct config_diff *d, const char *ref, const struct server_conf *s)
{
    struct strbuf b;
    strbuf_init(&b);
    struct line_sink ls = {{server_line_kv, NULL}, &b};
    config_emit_server(s, &ls.sink);
    return add_summary(d, DIFF_SERVER, ref, &b);
}

static int listener_added(struct config_diff *d, const struct listener_conf *l)
{
    struct kvlist kl;
    kvlist_init(&kl);
    config_emit_listener(l, &kl.sink);
    struct strbuf b;
    strbuf_init(&b);
    const char *bind = kvlist_get(&kl, "bind");
    strbuf_printf(&b, "bind %s, ", bind ? bind : NONE);
    if (l->route_sni)
        strbuf_printf(&b, "route sni (%d rules)", l->nsni_rules);
    else
        strbuf_printf(&b, "pool %s", l->pool_name);
    bool oom = kl.oom;
    kvlist_free(&kl);
    if (oom) {
        strbuf_free(&b);
        return -1;
    }
    return add_summary(d, DIFF_LISTENER, l->name, &b);
}

static int pool_count(struct config_diff *d, enum diff_kind kind, const struct pool_conf *p)
{
    char v[64];
    snprintf(v, sizeof(v), "%d servers", count_lines(p));
    return add(d, kind, DIFF_POOL, p->name, NULL, kind == DIFF_REMOVED ? v : NULL,
               kind == DIFF_ADDED ? v : NULL);
}

/* The names of the server lines of a that b has too, in a's order,
 * space-separated (to see an order change among the servers kept). */
static void common_order(const struct pool_conf *a, const struct pool_conf *b, struct strbuf *out)
{
    for (int i = 0; i < a->nservers + a->nnamed; i++) {
        const struct server_conf *s = server_at(a, i);
        if (config_server_is_line(s) && find_server_line(b, s->name))
            strbuf_printf(out, "%s%s", out->len ? " " : "", s->name);
    }
}

/* Pools in both generations: their keys, server lines and order. Returns
 * 0 or -1 on OOM. */
static int diff_pool(struct config_diff *d, const struct pool_conf *a, const struct pool_conf *b)
{
    int before = d->n;
    if (diff_objects(d, DIFF_POOL, b->name, emit_pool, a, b) < 0)
        return -1;
    struct strbuf oa, ob;
    strbuf_init(&oa);
    strbuf_init(&ob);
    common_order(a, b, &oa);
    common_order(b, a, &ob);
    int rc = 0;
    if (oa.oom || ob.oom)
        rc = -1;
    else if (oa.len && strcmp(oa.data, ob.data) != 0)
        rc = add(d, DIFF_CHANGED, DIFF_POOL, b->name, "server order", oa.data, ob.data);
    strbuf_free(&oa);
    strbuf_free(&ob);
    if (rc < 0)
        return -1;
    char ref[512];
    for (int i = 0; i < b->nservers + b->nnamed; i++) {
        const struct server_conf *s = server_at(b, i);
        if (!config_server_is_line(s))
            continue;
        snprintf(ref, sizeof(ref), "%s/%s", b->name, s->name);
        const struct server_conf *o = find_server_line(a, s->name);
        int n = o ? diff_objects(d, DIFF_SERVER, ref, emit_server, o, s) : server_added(d, ref, s);
        if (n < 0)
            return -1;
        if (o && n == 0)
            d->servers_kept++;
    }
    for (int i = 0; i < a->nservers + a->nnamed; i++) {
        const struct server_conf *s = server_at(a, i);
        if (!config_server_is_line(s) || find_server_line(b, s->name))
            continue;
        snprintf(ref, sizeof(ref), "%s/%s", a->name, s->name);
        if (add(d, DIFF_REMOVED, DIFF_SERVER, ref, NULL, NULL, NULL) < 0)
            return -1;
    }
    if (d->n == before)
        d->pools_kept++;
    return 0;
}

static const struct listener_conf *find_listener(const struct config *c, const char *name)
{
    for (int i = 0; i < c->nlisteners; i++)
        if (strcmp(c->listeners[i].name, name) == 0)
            return &c->listeners[i];
    return NULL;
}

static const struct pool_conf *find_pool(const struct config *c, const char *name)
{
    for (int i = 0; i < c->npools; i++)
        if (strcmp(c->pools[i].name, name) == 0)
            return &c->pools[i];
    return NULL;
}

/* [global], then listeners (changed or added in the new file's order,
 * then removed), then pools likewise, each kept pool's servers after it. */
static int diff_all(const struct config *a, const struct config *b, struct config_diff *d)
{
    if (diff_objects(d, DIFF_GLOBAL, NULL, emit_global, a, b) < 0)
        return -1;
    for (int i = 0; i < b->nlisteners; i++) {
        const struct listener_conf *l = &b->listeners[i], *o = find_listener(a, l->name);
        int n =
            o ? diff_objects(d, DIFF_LISTENER, l->name, emit_listener, o, l) : listener_added(d, l);
        if (n < 0)
            return -1;
        if (o && n == 0)
            d->listeners_kept++;
    }
    for (int i = 0; i < a->nlisteners; i++)
        if (!find_listener(b, a->listeners[i].name) &&
            add(d, DIFF_REMOVED, DIFF_LISTENER, a->listeners[i].name, NULL, NULL, NULL) < 0)
            return -1;
    for (int i = 0; i < b->npools; i++) {
        const struct pool_conf *p = &b->pools[i], *o = find_pool(a, p->name);
        if ((o ? diff_pool(d, o, p) : pool_count(d, DIFF_ADDED, p)) < 0)
            return -1;
    }
    for (int i = 0; i < a->npools; i++)
        if (!find_pool(b, a->pools[i].name) && pool_count(d, DIFF_REMOVED, &a->pools[i]) < 0)
            return -1;
    return 0;
}

int config_diff(const struct config *old, const struct config *cfg, struct config_diff *d)
{
    memset(d, 0, sizeof(*d));
    return diff_all(old, cfg, d);
}

void config_diff_free(struct config_diff *d)
{
    for (int i = 0; i < d->n; i++) {
        free(d->changes[i].name);
        free(d->changes[i].key);
        free(d->changes[i].old_value);
        free(d->changes[i].new_value);
    }
    free(d->changes);
    memset(d, 0, sizeof(*d));
}

static const char *const what_str[] = {"global", "listener", "pool", "server"};

void config_change_format(const struct config_change *c, struct strbuf *out)
{
    const char *verb = c->kind == DIFF_ADDED     ? "added"
                       : c->kind == DIFF_REMOVED ? "removed"
                                                 : "changed";
    strbuf_printf(out, "%s %s", verb, what_str[c->what]);
    if (c->name)
        strbuf_printf(out, " %s", c->name);
    if (c->kind == DIFF_CHANGED)
        strbuf_printf(out, " %s: %s -> %s", c->key, c->old_value, c->new_value);
    else if (c->kind == DIFF_ADDED && c->new_value)
        strbuf_printf(out, ": %s", c->new_value);
    else if (c->kind == DIFF_REMOVED && c->old_value)
        strbuf_printf(out, ": %s", c->old_value);
}

void config_diff_format(const struct config_diff *d, const char *prefix, struct strbuf *out)
{
    for (int i = 0; i < d->n; i++) {
        strbuf_puts(out, prefix);
        config_change_format(&d->changes[i], out);
        strbuf_puts(out, "\n");
    }
    strbuf_printf(out, "%s%s: %d listeners, %d pools, %d servers%s\n", prefix,
                  d->n ? "unchanged" : "no changes", d->listeners_kept, d->pools_kept,
                  d->servers_kept, d->n ? "" : " as running");
}
