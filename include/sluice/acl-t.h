/* acl-t.h - a listener's access list as the config keeps it (see acl.h). */
#ifndef SLUICE_ACL_T_H
#define SLUICE_ACL_T_H

#include <stdbool.h>
#include <stdint.h>

struct acl; /* the lookup structure, built by config load (acl.c) */

enum acl_kind { ACL_ALLOW, ACL_DENY, ACL_ALLOW_FILE, ACL_DENY_FILE };

/* One allow/deny/allow_file/deny_file line of a listener, in file order
 * (its position is its rule number): kept for -T and messages. */
struct acl_line {
    uint8_t kind; /* enum acl_kind */
    int line;
    char *text; /* the CIDRs as written; for files the path as resolved */
};

/* One network: family AF_INET or AF_INET6, len bits of addr (network
 * byte order, host bits zero). */
struct acl_cidr {
    uint8_t family;
    uint8_t len;
    uint8_t addr[16];
};

#endif
