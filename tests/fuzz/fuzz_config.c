/* fuzz_config.c - libFuzzer target: any bytes as an INI file through the
 * full loader (config_load_buffer: lexing, every key, cross-section
 * validation), then config_attach_runtime and config_unref. The runtime
 * registries must be empty again afterwards, so a generation that leaks a
 * backend or listener reference aborts here rather than only in LSan. */
#include "sluice/config.h"
#include "sluice/log.h"
#include "sluice/registry.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    log_current_level = LOG_ERROR; /* the loader itself logs nothing; keep it so */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct config_errors errs = {0};
    struct config *cfg = config_load_buffer((const char *)data, size, "fuzz.ini", &errs);
    if (cfg == NULL) {
        /* A rejected file always says why, in "NAME:LINE: key: reason" form. */
        if (errs.n == 0) {
            fprintf(stderr, "config rejected without an error message\n");
            abort();
        }
        for (int i = 0; i < errs.n; i++) {
            if (errs.msgs[i] == NULL || strncmp(errs.msgs[i], "fuzz.ini:", 9) != 0) {
                fprintf(stderr, "malformed error message: %s\n",
                        errs.msgs[i] ? errs.msgs[i] : "(null)");
                abort();
            }
        }
    } else {
        if (errs.n != 0) {
            fprintf(stderr, "config loaded with %d errors\n", errs.n);
            abort();
        }
        if (config_attach_runtime(cfg) != 0) {
            fprintf(stderr, "config_attach_runtime failed\n");
            abort();
        }
        config_unref(cfg);
    }
    config_errors_free(&errs);
    if (registry_count(&backend_registry) != 0 || registry_count(&listener_registry) != 0) {
        fprintf(stderr, "registry not empty after config_unref: %zu backends, %zu listeners\n",
                registry_count(&backend_registry), registry_count(&listener_registry));
        abort();
    }
    return 0;
}
