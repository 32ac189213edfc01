/* hash.h - the one integer mixer, string hash and pseudo-random generator
 * sluice uses (source hashing, random balancing, check jitter). Not for
 * anything that needs to be unpredictable to an attacker. */
#ifndef SLUICE_HASH_H
#define SLUICE_HASH_H

#include <stdint.h>

/* splitmix64's finaliser: every input bit affects every output bit. */
static inline uint64_t hash_mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

/* FNV-1a over a NUL-terminated string. */
static inline uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

/* xorshift64*: one state per owner (a worker's balancer, the health
 * thread), never shared between threads. The seed must not be 0. */
static inline uint64_t rng_next(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* A uniform double in [0, 1) from a 64-bit value (its top 53 bits). */
static inline double hash_unit(uint64_t x)
{
    return (double)(x >> 11) / 9007199254740992.0;
}

#endif
