/* main.c - command line: run, check a config (-t), print it (-T), version, usage. */
#include "sluice/config.h"
#include "sluice/control.h"
#include "sluice/log.h"
#include "sluice/privilege.h"
#include "sluice/resolver.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#define DEFAULT_CONFIG "/etc/sluice/sluice.ini"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: sluice [-t | -T] [-c FILE]\n"
            "       sluice -V | -h\n"
            "\n"
            "  -c, --config FILE  configuration file (default " DEFAULT_CONFIG ")\n"
            "  -t, --test         check the configuration and exit (never binds)\n"
            "  -T, --dump         check it, then print the effective configuration\n"
            "                     (every key, defaults filled in) as an INI file\n"
            "  -V, --version      print the version and exit\n"
            "  -h, --help         print this help and exit\n"
            "\n"
            "Runs in the foreground and logs to stderr. Signals: TERM/INT stop\n"
            "gracefully, HUP reloads the configuration, USR1 reopens the access log.\n");
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'}, {"test", no_argument, NULL, 't'},
        {"dump", no_argument, NULL, 'T'},         {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    const char *path = DEFAULT_CONFIG;
    bool check_only = false, dump = false;
    int opt;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":c:tTVh", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 't':
            check_only = true;
            break;
        case 'T':
            check_only = dump = true;
            break;
        case 'V':
            printf("sluice %s\n", SLUICE_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        case ':':
            fprintf(stderr, "sluice: %s needs a file name\n", argv[optind - 1]);
            usage(stderr);
            return 2;
        default:
            if (optopt != 0)
                fprintf(stderr, "sluice: unknown option -%c\n", optopt);
            else
                fprintf(stderr, "sluice: unknown option %s\n", argv[optind - 1]);
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "sluice: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }

    struct config *cfg = config_load_reporting(path, "sluice");
    if (cfg == NULL)
        return 1;
    /* Host names of servers (bounded; -t too, so it says which failed). */
    struct config_errors errs = {0};
    if (resolver_resolve_config(cfg, &errs) > 0) {
        config_errors_print(&errs, stderr);
        fprintf(stderr, "sluice: %d error%s in %s\n", errs.n, errs.n == 1 ? "" : "s", path);
        config_errors_free(&errs);
        config_unref(cfg);
        return 1;
    }
    if (check_only) {
        /* What would stop a start is an error here too (ExecStartPre=). */
        char why[300];
        if (privilege_check(cfg, why, sizeof(why)) < 0) {
            fprintf(stderr, "sluice: %s\n", why);
            config_unref(cfg);
            return 1;
        }
        /* The start warns about this too: every reload would fail. */
        if (privilege_user_can_read(cfg, path, why, sizeof(why)) < 0)
            fprintf(stderr, "sluice: warning: %s is not readable by user %s (%s): reloads will fail\n",
                    path, cfg->user, why);
        if (dump)
            config_dump(cfg, stdout);
        else
            printf("configuration OK\n");
        config_unref(cfg);
        return 0;
    }
    return control_run(cfg, path); /* takes the reference */
}
