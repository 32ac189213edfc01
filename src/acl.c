/* acl.c - access lists. One open-addressing hash table per (family,
 * prefix length): a lookup masks the address to each length present and
 * probes that table, so it costs at most 33 (IPv4) or 129 (IPv6) probes
 * whatever the number of networks. Each entry holds the lowest rule
 * number that listed it and that rule's action; the tables are visited in
 * order of the lowest rule they hold, so a lookup stops as soon as no
 * table left can beat the best match found. */
#include "sluice/acl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* An entry's value: (rule + 1) << 1 | allow, so 0 means "empty slot" and
 * a lower value is an earlier rule. */
#define V_NONE UINT32_MAX

struct slot4 {
    uint32_t key; /* host byte order, masked */
    uint32_t v;
};

struct slot6 {
    uint64_t hi, lo; /* host byte order, masked */
    uint32_t v;
};

struct acl_tab {
    uint32_t cap; /* 0 or a power of two */
    uint32_t n;
    uint32_t min_v; /* lowest value stored (V_NONE: empty) */
    uint8_t bits;   /* log2(cap) */
    void *slots;
};

struct acl_fam {
    struct acl_tab *tabs; /* [maxlen + 1] */
    uint8_t order[129];   /* prefix lengths present, by tabs[].min_v */
    int norder;
};

struct acl {
    struct acl_fam f4, f6;
    struct acl_tab t4[33], t6[129];
    size_t entries;
};

static uint32_t mask4(int len)
{
    return len == 0 ? 0 : ~(uint32_t)0 << (32 - len);
}

static void mask6(int len, uint64_t *hi, uint64_t *lo)
{
    *hi = len == 0 ? 0 : len >= 64 ? ~(uint64_t)0 : ~(uint64_t)0 << (64 - len);
    *lo = len <= 64 ? 0 : len == 128 ? ~(uint64_t)0 : ~(uint64_t)0 << (128 - len);
}

static uint32_t hash4(uint32_t k, uint8_t bits)
{
    return (uint32_t)(((uint64_t)k * 0x9E3779B97F4A7C15ull) >> (64 - bits));
}

static uint32_t hash6(uint64_t hi, uint64_t lo, uint8_t bits)
{
    uint64_t h = (hi ^ (lo * 0xC2B2AE3D27D4EB4Full)) * 0x9E3779B97F4A7C15ull;
    return (uint32_t)((h ^ (h >> 29)) >> (64 - bits));
}

static uint64_t load64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static uint32_t load32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Large blocks (a table of a long list, a list file's text) come straight
 * from mmap: freeing them gives the memory back to the system at once, so
 * a reload that replaces a large list does not leave the old one's pages
 * in the heap (malloc would raise its mmap threshold after the first such
 * free and keep later ones on the heap). Zero-filled. */
#define BIG_BLOCK (64u * 1024)

static void *block_alloc(size_t n)
{
    if (n < BIG_BLOCK)
        return calloc(1, n);
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void block_free(void *p, size_t n)
{
    if (p == NULL)
        return;
    if (n < BIG_BLOCK)
        free(p);
    else
        munmap(p, n);
}

static size_t tab_bytes(const struct acl_tab *t, bool v6)
{
    return (size_t)t->cap * (v6 ? sizeof(struct slot6) : sizeof(struct slot4));
}

struct acl *acl_new(void)
{
    struct acl *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return NULL;
    a->f4.tabs = a->t4;
    a->f6.tabs = a->t6;
    for (int i = 0; i < 33; i++)
        a->t4[i].min_v = V_NONE;
    for (int i = 0; i < 129; i++)
        a->t6[i].min_v = V_NONE;
    return a;
}

void acl_free(struct acl *a)
{
    if (a == NULL)
        return;
    for (int i = 0; i < 33; i++)
        block_free(a->t4[i].slots, tab_bytes(&a->t4[i], false));
    for (int i = 0; i < 129; i++)
        block_free(a->t6[i].slots, tab_bytes(&a->t6[i], true));
    free(a);
}

/* Find k's slot in t (cap > 0): its own, or the empty one it would take. */
static struct slot4 *find4(const struct acl_tab *t, uint32_t k)
{
    struct slot4 *s = t->slots;
    for (uint32_t i = hash4(k, t->bits);; i = (i + 1) & (t->cap - 1))
        if (s[i].v == 0 || s[i].key == k)
            return &s[i];
}

static struct slot6 *find6(const struct acl_tab *t, uint64_t hi, uint64_t lo)
{
    struct slot6 *s = t->slots;
    for (uint32_t i = hash6(hi, lo, t->bits);; i = (i + 1) & (t->cap - 1))
        if (s[i].v == 0 || (s[i].hi == hi && s[i].lo == lo))
            return &s[i];
}

/* Room for one more entry at a load of at most 3/4; -1 when out of memory. */
static int tab_reserve(struct acl_tab *t, bool v6)
{
    if (t->cap != 0 && (uint64_t)(t->n + 1) * 4 <= (uint64_t)t->cap * 3)
        return 0;
    uint8_t bits = t->cap == 0 ? 3 : (uint8_t)(t->bits + 1);
    if (bits > 31)
        return -1;
    size_t sz = v6 ? sizeof(struct slot6) : sizeof(struct slot4);
    struct acl_tab nt = {.cap = 1u << bits, .bits = bits, .n = t->n, .min_v = t->min_v};
    if ((nt.slots = block_alloc((size_t)nt.cap * sz)) == NULL)
        return -1;
    for (uint32_t i = 0; i < t->cap; i++) {
        if (v6) {
            const struct slot6 *o = (const struct slot6 *)t->slots + i;
            if (o->v != 0)
                *find6(&nt, o->hi, o->lo) = *o;
        } else {
            const struct slot4 *o = (const struct slot4 *)t->slots + i;
            if (o->v != 0)
                *find4(&nt, o->key) = *o;
        }
    }
    block_free(t->slots, tab_bytes(t, v6));
    *t = nt;
    return 0;
}

/* Keep f->order sorted by min_v after tabs[len] got a new one. */
static void fam_reorder(struct acl_fam *f, int len)
{
    int i = 0;
    while (i < f->norder && f->order[i] != len)
        i++;
    if (i == f->norder)
        f->order[f->norder++] = (uint8_t)len;
    for (; i > 0 && f->tabs[f->order[i - 1]].min_v > f->tabs[f->order[i]].min_v; i--) {
        uint8_t t = f->order[i];
        f->order[i] = f->order[i - 1];
        f->order[i - 1] = t;
    }
}

int acl_add(struct acl *a, const struct acl_cidr *c, uint32_t rule, bool allow)
{
    if (rule >= ACL_MAX_RULES)
        return -1;
    uint32_t v = (rule + 1) << 1 | (allow ? 1u : 0u);
    bool v6 = c->family == AF_INET6;
    struct acl_fam *f = v6 ? &a->f6 : &a->f4;
    struct acl_tab *t = &f->tabs[c->len];
    if (tab_reserve(t, v6) < 0)
        return -1;
    uint32_t *slot_v;
    if (v6) {
        uint64_t mh, ml;
        mask6(c->len, &mh, &ml);
        uint64_t hi = load64(c->addr) & mh, lo = load64(c->addr + 8) & ml;
        struct slot6 *s = find6(t, hi, lo);
        s->hi = hi;
        s->lo = lo;
        slot_v = &s->v;
    } else {
        uint32_t k = load32(c->addr) & mask4(c->len);
        struct slot4 *s = find4(t, k);
        s->key = k;
        slot_v = &s->v;
    }
    if (*slot_v == 0) {
        t->n++;
        a->entries++;
    }
    if (*slot_v == 0 || v < *slot_v)
        *slot_v = v; /* first match wins: an earlier rule keeps it */
    if (v < t->min_v) {
        t->min_v = v;
        fam_reorder(f, c->len);
    }
    return 0;
}

static uint32_t lookup4(const struct acl *a, uint32_t addr)
{
    uint32_t best = V_NONE;
    for (int i = 0; i < a->f4.norder; i++) {
        const struct acl_tab *t = &a->t4[a->f4.order[i]];
        if (t->min_v >= best)
            break;
        const struct slot4 *s = find4(t, addr & mask4(a->f4.order[i]));
        if (s->v != 0 && s->v < best)
            best = s->v;
    }
    return best;
}

static uint32_t lookup6(const struct acl *a, uint64_t hi, uint64_t lo)
{
    uint32_t best = V_NONE;
    for (int i = 0; i < a->f6.norder; i++) {
        const struct acl_tab *t = &a->t6[a->f6.order[i]];
        if (t->min_v >= best)
            break;
        uint64_t mh, ml;
        mask6(a->f6.order[i], &mh, &ml);
        const struct slot6 *s = find6(t, hi & mh, lo & ml);
        if (s->v != 0 && s->v < best)
            best = s->v;
    }
    return best;
}

static const uint8_t v4mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

bool acl_allows(const struct acl *a, const struct sockaddr *sa)
{
    if (a == NULL)
        return true;
    uint32_t v;
    if (sa->sa_family == AF_INET) {
        v = lookup4(a, ntohl(((const struct sockaddr_in *)(const void *)sa)->sin_addr.s_addr));
    } else if (sa->sa_family == AF_INET6) {
        const uint8_t *b = ((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr.s6_addr;
        if (memcmp(b, v4mapped_prefix, 12) == 0)
            v = lookup4(a, load32(b + 12));
        else
            v = lookup6(a, load64(b), load64(b + 8));
    } else {
        return true;
    }
    return v == V_NONE || (v & 1u);
}

size_t acl_entries(const struct acl *a)
{
    return a ? a->entries : 0;
}

size_t acl_bytes(const struct acl *a)
{
    if (a == NULL)
        return 0;
    size_t n = sizeof(*a);
    for (int i = 0; i < 33; i++)
        n += tab_bytes(&a->t4[i], false);
    for (int i = 0; i < 129; i++)
        n += tab_bytes(&a->t6[i], true);
    return n;
}

/* ---- parsing ---- */

static bool is_blank(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n' || ch == '\v' || ch == '\f';
}

const char *acl_cidr_parse(const char *s, size_t n, struct acl_cidr *out, char *why, size_t whylen)
{
    char buf[INET6_ADDRSTRLEN + 8];
    if (n == 0) {
        snprintf(why, whylen, "empty network");
        return why;
    }
    if (n >= sizeof(buf)) {
        snprintf(why, whylen, "too long for an address or CIDR");
        return why;
    }
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (memchr(buf, '\0', n) != NULL) {
        snprintf(why, whylen, "contains a NUL byte");
        return why;
    }
    char *slash = strchr(buf, '/');
    if (slash != NULL)
        *slash = '\0';
    struct acl_cidr c = {0};
    int max;
    if (strchr(buf, ':') != NULL) {
        c.family = AF_INET6;
        max = 128;
        if (inet_pton(AF_INET6, buf, c.addr) != 1) {
            snprintf(why, whylen, "not an IPv6 address");
            return why;
        }
    } else {
        c.family = AF_INET;
        max = 32;
        if (inet_pton(AF_INET, buf, c.addr) != 1) {
            snprintf(why, whylen, "not an IPv4 or IPv6 address (CIDR: ADDRESS/BITS)");
            return why;
        }
    }
    int len = max;
    if (slash != NULL) {
        const char *p = slash + 1;
        if (*p == '\0' || strlen(p) > 3) {
            snprintf(why, whylen, "prefix length must be 0..%d", max);
            return why;
        }
        len = 0;
        for (; *p; p++) {
            if (*p < '0' || *p > '9') {
                snprintf(why, whylen, "prefix length must be 0..%d", max);
                return why;
            }
            len = len * 10 + (*p - '0');
        }
        if (len > max) {
            snprintf(why, whylen, "prefix length must be 0..%d", max);
            return why;
        }
    }
    c.len = (uint8_t)len;
    /* Host bits: refuse rather than guess whether the address or the
     * length is the typo. */
    bool host_bits = false;
    struct acl_cidr m = c;
    for (int i = 0; i < max / 8; i++) {
        int keep = len - i * 8;
        uint8_t mask = keep >= 8 ? 0xff : keep <= 0 ? 0 : (uint8_t)(0xff << (8 - keep));
        if (c.addr[i] & ~mask)
            host_bits = true;
        m.addr[i] = c.addr[i] & mask;
    }
    if (host_bits) {
        char net[INET6_ADDRSTRLEN];
        inet_ntop(c.family, m.addr, net, sizeof(net));
        snprintf(why, whylen, "host bits set after /%d (the network is %s/%d)", len, net, len);
        return why;
    }
    if (c.family == AF_INET6 && len >= 96 && memcmp(c.addr, v4mapped_prefix, 12) == 0) {
        c.family = AF_INET;
        c.len = (uint8_t)(len - 96);
        memmove(c.addr, c.addr + 12, 4);
        memset(c.addr + 4, 0, 12);
    }
    *out = c;
    return NULL;
}

int acl_add_words(struct acl *a, const char *v, uint32_t rule, bool allow, char *why, size_t whylen)
{
    int words = 0;
    for (const char *p = v;;) {
        while (is_blank(*p))
            p++;
        if (*p == '\0')
            break;
        const char *e = p;
        while (*e && !is_blank(*e))
            e++;
        size_t n = (size_t)(e - p);
        words++;
        if (n == 3 && memcmp(p, "all", 3) == 0) {
            struct acl_cidr any4 = {.family = AF_INET}, any6 = {.family = AF_INET6};
            if (acl_add(a, &any4, rule, allow) < 0 || acl_add(a, &any6, rule, allow) < 0)
                return -2;
        } else {
            struct acl_cidr c;
            char r[160];
            if (acl_cidr_parse(p, n, &c, r, sizeof(r)) != NULL) {
                snprintf(why, whylen, "'%.*s': %s", (int)(n > 64 ? 64 : n), p, r);
                return -1;
            }
            if (acl_add(a, &c, rule, allow) < 0)
                return -2;
        }
        p = e;
    }
    if (words == 0) {
        snprintf(why, whylen, "expected one or more networks (ADDRESS, ADDRESS/BITS) or all");
        return -1;
    }
    return 0;
}

int acl_load_buffer(struct acl *a, const char *data, size_t len, const char *name, uint32_t rule,
                    bool allow, size_t *count, char *err, size_t errlen)
{
    size_t added = 0;
    int lineno = 0;
    for (size_t pos = 0; pos < len;) {
        const char *line = data + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - line) : len - pos;
        pos += n + 1;
        lineno++;
        const char *hash = memchr(line, '#', n);
        if (hash != NULL)
            n = (size_t)(hash - line);
        size_t b = 0;
        while (b < n && is_blank(line[b]))
            b++;
        while (n > b && is_blank(line[n - 1]))
            n--;
        if (b == n)
            continue;
        const char *w = line + b;
        size_t wn = n - b;
        struct acl_cidr c;
        char r[160];
        size_t i = 0;
        while (i < wn && !is_blank(w[i]))
            i++;
        if (i < wn) {
            snprintf(err, errlen, "%s:%d: '%.*s': one network per line", name, lineno,
                     (int)(wn > 64 ? 64 : wn), w);
            return -1;
        }
        if (acl_cidr_parse(w, wn, &c, r, sizeof(r)) != NULL) {
            snprintf(err, errlen, "%s:%d: '%.*s': %s", name, lineno, (int)(wn > 64 ? 64 : wn), w,
                     r);
            return -1;
        }
        if (acl_add(a, &c, rule, allow) < 0) {
            snprintf(err, errlen, "%s:%d: out of memory", name, lineno);
            return -2;
        }
        added++;
    }
    if (count != NULL)
        *count = added;
    return 0;
}

int acl_load_file(struct acl *a, const char *path, uint32_t rule, bool allow, size_t *count,
                  char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        close(fd);
        return -1;
    }
    if ((uint64_t)st.st_size > ACL_FILE_MAX_BYTES) {
        snprintf(err, errlen, "%s: larger than %u MiB", path, ACL_FILE_MAX_BYTES >> 20);
        close(fd);
        return -1;
    }
    /* One byte more than the file's size: reading it means the file
     * grew meanwhile (being rewritten in place); refuse rather than load
     * half of it. */
    size_t cap = (size_t)st.st_size + 1, len = 0;
    char *data = block_alloc(cap);
    if (data == NULL) {
        snprintf(err, errlen, "%s: out of memory", path);
        close(fd);
        return -2;
    }
    while (len < cap) {
        ssize_t r = read(fd, data + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(err, errlen, "%s: read: %s", path, strerror(errno));
            block_free(data, cap);
            close(fd);
            return -1;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    if (len == cap) {
        snprintf(err, errlen, "%s: changed while being read (replace it with rename)", path);
        block_free(data, cap);
        close(fd);
        return -1;
    }
    close(fd);
    int rc = acl_load_buffer(a, data, len, path, rule, allow, count, err, errlen);
    block_free(data, cap);
    return rc;
}
