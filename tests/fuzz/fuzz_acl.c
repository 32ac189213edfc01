/* fuzz_acl.c - libFuzzer target for the access-list parsers (acl.h): one
 * network (acl_cidr_parse), a config value (acl_add_words) and a list
 * file's text (acl_load_buffer).
 *
 * The first input byte selects the function, the rest is its input.
 * Besides "does not crash", a network that parses has no host bits set,
 * formats back to text that parses to the same network, and is found by
 * a lookup of its own address; a list that loads holds no more networks
 * than it has lines. */
#include "sluice/acl.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_acl: contract broken: %s\n", what);
        abort();
    }
}

/* A lookup of every address family, so each table kind is walked. */
static void probe(const struct acl *a, const uint8_t *bytes, size_t n)
{
    struct sockaddr_in s4 = {.sin_family = AF_INET};
    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6};
    memcpy(&s4.sin_addr, bytes, n < 4 ? n : 4);
    memcpy(&s6.sin6_addr, bytes, n < 16 ? n : 16);
    (void)acl_allows(a, (struct sockaddr *)&s4);
    (void)acl_allows(a, (struct sockaddr *)&s6);
}

static void fuzz_cidr(const char *s, size_t n)
{
    struct acl_cidr c;
    char why[200];
    if (acl_cidr_parse(s, n, &c, why, sizeof(why)) != NULL)
        return;
    int max = c.family == AF_INET ? 32 : 128;
    check(c.family == AF_INET || c.family == AF_INET6, "family");
    check(c.len <= max, "prefix length in range");
    for (int bit = c.len; bit < max; bit++)
        check(!(c.addr[bit / 8] & (0x80 >> (bit % 8))), "no host bits");
    char text[INET6_ADDRSTRLEN + 8], addr[INET6_ADDRSTRLEN];
    check(inet_ntop(c.family, c.addr, addr, sizeof(addr)) != NULL, "formats");
    snprintf(text, sizeof(text), "%s/%d", addr, c.len);
    struct acl_cidr back;
    check(acl_cidr_parse(text, strlen(text), &back, why, sizeof(why)) == NULL, "reparses");
    check(memcmp(&back, &c, sizeof(c)) == 0, "same network");

    struct acl *a = acl_new();
    if (a == NULL)
        return;
    if (acl_add(a, &c, 0, false) == 0) {
        bool allowed;
        if (c.family == AF_INET) {
            struct sockaddr_in s4 = {.sin_family = AF_INET};
            memcpy(&s4.sin_addr, c.addr, 4);
            allowed = acl_allows(a, (struct sockaddr *)&s4);
        } else {
            struct sockaddr_in6 s6 = {.sin6_family = AF_INET6};
            memcpy(&s6.sin6_addr, c.addr, 16);
            allowed = acl_allows(a, (struct sockaddr *)&s6);
        }
        check(!allowed, "a network contains its own address");
        check(acl_entries(a) == 1, "one entry");
    }
    acl_free(a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t op = data[0] % 3;
    const char *s = (const char *)data + 1;
    size_t n = size - 1;
    if (op == 0) {
        fuzz_cidr(s, n);
        return 0;
    }
    struct acl *a = acl_new();
    if (a == NULL)
        return 0;
    char err[300];
    if (op == 1) {
        char *v = malloc(n + 1);
        if (v != NULL) {
            memcpy(v, s, n);
            v[n] = '\0'; /* a config value: stops at the first NUL */
            (void)acl_add_words(a, v, 1, data[0] & 0x80, err, sizeof(err));
            free(v);
        }
    } else {
        size_t count = 0, lines = 1;
        for (size_t i = 0; i < n; i++)
            lines += s[i] == '\n';
        if (acl_load_buffer(a, s, n, "fuzz", 2, data[0] & 0x80, &count, err, sizeof(err)) == 0) {
            check(count <= lines, "no more networks than lines");
            check(acl_entries(a) <= count, "entries <= networks");
        } else {
            check(strncmp(err, "fuzz:", 5) == 0, "errors name the file");
        }
    }
    probe(a, data, size);
    acl_free(a);
    return 0;
}
