/* fuzz_proxy.c - libFuzzer target for the PROXY protocol parser.
 *
 * Any bytes as the start of a client stream. Besides "does not crash or
 * read out of bounds", the parser is held to its contract: a complete
 * header never claims more bytes than it was given, every strict prefix of
 * a complete header asks for more (never accepts, never rejects), and a
 * header that names TCP addresses builds back into one that parses to the
 * same addresses. */
#include "sluice/proxy_proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_proxy: contract broken: %s\n", what);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct proxy_hdr h;
    size_t used = 0;
    const char *why = NULL;
    enum proxy_parse_result r = proxy_parse(data, size, &h, &used, &why);
    if (r == PROXY_INVALID) {
        check(why != NULL && why[0] != '\0', "invalid without a reason");
        return 0;
    }
    if (r == PROXY_NEED_MORE)
        return 0;
    check(used > 0 && used <= size && used <= PROXY_HDR_MAX, "consumed out of range");
    check(h.version == 1 || h.version == 2, "bad version");
    for (size_t n = 0; n < used; n++) {
        struct proxy_hdr p;
        size_t u = 0;
        const char *w = NULL;
        check(proxy_parse(data, n, &p, &u, &w) == PROXY_NEED_MORE, "a prefix was not NEED_MORE");
    }
    if (!h.local) {
        uint8_t buf[256];
        for (int v = 1; v <= 2; v++) {
            size_t n = proxy_build(v, &h.src.u.sa, &h.dst.u.sa, buf, sizeof(buf));
            check(n > 0, "build failed");
            struct proxy_hdr back;
            size_t u = 0;
            const char *w = NULL;
            check(proxy_parse(buf, n, &back, &u, &w) == PROXY_DONE && u == n, "rebuild did not parse");
            socklen_t len = h.src.u.sa.sa_family == AF_INET ? sizeof(struct sockaddr_in)
                                                            : sizeof(struct sockaddr_in6);
            check(memcmp(&back.src, &h.src, len) == 0 && memcmp(&back.dst, &h.dst, len) == 0,
                  "addresses changed in a round trip");
        }
    }
    return 0;
}
