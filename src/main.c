/* main.c - command line: run, check a config (-t), version, usage. */
#include "sluice/config.h"
#include "sluice/control.h"
#include "sluice/log.h"
#include "sluice/privilege.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#define DEFAULT_CONFIG "/etc/sluice/sluice.ini"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: sluice [-t] [-c FILE]\n"
            "       sluice -V | -h\n"
            "\n"
            "  -c FILE  configuration file (default " DEFAULT_CONFIG ")\n"
            "  -t       check the configuration and exit (never binds)\n"
            "  -V       print the version and exit\n"
            "  -h       print this help and exit\n"
            "\n"
            "Runs in the foreground and logs to stderr. Signals: TERM/INT stop\n"
            "gracefully, HUP reloads the configuration, USR1 reopens the access log.\n");
}

int main(int argc, char **argv)
{
    const char *path = DEFAULT_CONFIG;
    bool check_only = false;
    int opt;
    opterr = 0;
    while ((opt = getopt(argc, argv, "c:tVh")) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 't':
            check_only = true;
            break;
        case 'V':
            printf("sluice %s\n", SLUICE_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            if (optopt == 'c')
                fprintf(stderr, "sluice: -c needs a file name\n");
            else
                fprintf(stderr, "sluice: unknown option -%c\n", optopt ? optopt : '?');
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "sluice: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }

    struct config_errors errs = {0};
    struct config *cfg = config_load_file(path, &errs);
    if (cfg == NULL) {
        config_errors_print(&errs, stderr);
        fprintf(stderr, "sluice: %d error%s in %s\n", errs.n, errs.n == 1 ? "" : "s", path);
        config_errors_free(&errs);
        return 1;
    }
    if (check_only) {
        /* What would stop a start is an error here too (ExecStartPre=). */
        char why[256];
        if (privilege_check(cfg, why, sizeof(why)) < 0) {
            fprintf(stderr, "sluice: %s\n", why);
            config_unref(cfg);
            return 1;
        }
        /* The start warns about this too: every reload would fail. */
        if (privilege_user_can_read(cfg, path, why, sizeof(why)) < 0)
            fprintf(stderr, "sluice: warning: %s is not readable by user %s (%s): reloads will fail\n",
                    path, cfg->user, why);
        printf("configuration OK\n");
        config_unref(cfg);
        return 0;
    }
    int rc = control_run(cfg, path);
    config_unref(cfg);
    return rc;
}
