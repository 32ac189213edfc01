/* acl.h - access lists: allow/deny CIDR rules, first match wins, looked
 * up in O(address bits) whatever the number of entries. Pure: built on
 * the control thread, then read-only (any thread may look up). */
#ifndef SLUICE_ACL_H
#define SLUICE_ACL_H

#include "sluice/acl-t.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Rule numbers go up to this (exclusive). */
#define ACL_MAX_RULES (1u << 29)
/* A list file larger than this is refused. */
#define ACL_FILE_MAX_BYTES (256u * 1024 * 1024)

/* Parse one network: "A.B.C.D", "A.B.C.D/N", an IPv6 literal, "IPV6/N"
 * (a bare address is /32 or /128). Host bits set after the prefix are an
 * error (the message names the network meant). An IPv6 network inside
 * ::ffff:0:0/96 (v4-mapped, prefix >= 96) becomes the IPv4 network it
 * maps. s is n bytes, not NUL-terminated. Returns NULL, or why not. */
const char *acl_cidr_parse(const char *s, size_t n, struct acl_cidr *out, char *why, size_t whylen);

/* An empty list (allows everything); NULL when out of memory. */
struct acl *acl_new(void);
void acl_free(struct acl *a);

/* Add network c as part of rule number `rule` (0-based, file order; a
 * lower number wins). Returns 0, or -1 when out of memory (a is then
 * unchanged). */
int acl_add(struct acl *a, const struct acl_cidr *c, uint32_t rule, bool allow);

/* A config value: networks and/or the word `all` (0.0.0.0/0 and ::/0),
 * separated by blanks, all added as rule `rule`. Returns 0, -1 with why
 * set (a bad word or none at all; words before it may have been added:
 * the caller drops the list), or -2 when out of memory. */
int acl_add_words(struct acl *a, const char *v, uint32_t rule, bool allow, char *why,
                  size_t whylen);

/* A list file's text: one network per line, blank lines and `#`
 * comments (whole-line or after the network) allowed; every network is
 * part of rule `rule`. A bad line: -1, err = "NAME:LINE: 'WORD': why".
 * Out of memory: -2. *count gets the networks added. */
int acl_load_buffer(struct acl *a, const char *data, size_t len, const char *name, uint32_t rule,
                    bool allow, size_t *count, char *err, size_t errlen);

/* The same read from a regular file at path (at most ACL_FILE_MAX_BYTES). */
int acl_load_file(struct acl *a, const char *path, uint32_t rule, bool allow, size_t *count,
                  char *err, size_t errlen);

/* The verdict for a client address (AF_INET or AF_INET6; a v4-mapped
 * IPv6 address is looked up as its IPv4 address): the action of the
 * lowest-numbered rule with a network containing it, allow when none
 * does. Any other family, or a == NULL: allow. */
bool acl_allows(const struct acl *a, const struct sockaddr *sa);

/* Networks stored (duplicates counted once) and bytes held. */
size_t acl_entries(const struct acl *a);
size_t acl_bytes(const struct acl *a);

#endif
