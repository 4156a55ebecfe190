/* psi gc: the safety net (DESIGN §6): the store's expired references,
 * orphaned objects and dead writers' temp files, and registry entries of
 * listeners that are gone. The rules live in the store and registry; this
 * only runs them and reports. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "psi_config.h"
#include "psi_registry.h"
#include "psi_store.h"
#include "psi_tool.h"

static const struct option gc_options[] = {
    {"store", required_argument, NULL, 's'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static int gc_store(const char *url)
{
    psi_gc_report r = {0};
    psi_store *s;
    psi_err e;
    char freed[32];
    int rc = 0;

    if (psi_store_open(url && *url ? url : NULL, &s, &e) < 0) {
        fprintf(stderr, "psi gc: cannot open store %s: %s\n", url && *url ? url : "(default)",
                e.msg);
        return -1;
    }
    if (!s->ops->gc) {
        printf("store %s: this connector has no gc\n", s->url);
    } else if (s->ops->gc(s, &r, &e) < 0) {
        fprintf(stderr, "psi gc: store %s: %s\n", s->url, e.msg);
        rc = -1;
    } else {
        cmd_human_bytes(r.bytes_freed, freed, sizeof freed);
        printf("store %s: %" PRIu64 " refs expired, %" PRIu64 " objects removed, %" PRIu64
               " temp files removed, %s freed\n",
               s->url, r.refs_expired, r.objects_removed, r.tmp_removed, freed);
    }
    psi_store_close(s);
    return rc;
}

static int gc_registry(void)
{
    psi_err e;
    int n = psi_registry_gc(&e);

    if (n < 0) {
        fprintf(stderr, "psi gc: registry: %s\n", e.msg);
        return -1;
    }
    printf("registry %s/registry: %d dead entries removed\n", psi_runtime_dir(), n);
    return 0;
}

int cmd_gc(int argc, char **argv)
{
    const char *url = getenv("PSI_STORE");
    psi_err e;
    int opt, rc = 0;

    opterr = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, ":h", gc_options, NULL)) != -1) {
        if (opt == 'h') {
            cmd_help_print(stdout, "gc");
            return 0;
        }
        if (opt != 's')
            return cmd_bad_option("gc", opt, argv);
        url = optarg;
    }
    if (optind < argc)
        return cmd_usage_error("gc", "unexpected argument '%s'", argv[optind]);
    if (url && psi_check_store_url(url, &e) < 0)
        return cmd_usage_error("gc", "%s", e.msg);
    if (gc_store(url) < 0)
        rc = CMD_EXIT_FAIL;
    if (gc_registry() < 0)
        rc = CMD_EXIT_FAIL;
    return rc;
}
