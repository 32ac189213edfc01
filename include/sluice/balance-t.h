/* balance-t.h - the balancer's types embedded by a session. */
#ifndef SLUICE_BALANCE_T_H
#define SLUICE_BALANCE_T_H

#include <stdint.h>

/* The servers a session already tried (or found full), by index in the
 * pool: the first 64 in a word, the rest, in pools of more than 64
 * servers, in a bitmap allocated on first use. Zero-initialised = empty. */
struct balance_exclude {
    uint64_t bits;
    uint64_t *more; /* bit i-64 for server i >= 64; NULL until needed */
};

#endif
