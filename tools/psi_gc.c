/* psi gc: the safety net (DESIGN §6): every store's expired references,
 * orphaned objects and dead writers' temp files, and registry entries of
 * listeners that are gone. The rules live in the connectors and the
 * registry; this only runs them and reports. Which stores: psi_stores.c. */
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
    {"policy", required_argument, NULL, 'p'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* One store: its report line, or why there is none. Returns -1 on failure. */
static int gc_store(const cmd_store_entry *c)
{
    const char *label = cmd_store_label(c);
    psi_gc_report r = {0};
    psi_err e = {0};
    char freed[32];

    if (c->state == CMD_STORE_NOT_RUNNING) {
        printf("store %s: not running\n", label);
        return 0;
    }
    if (c->state == CMD_STORE_UNAVAILABLE) {
        printf("store %s: connector not available in this build\n", label);
        return 0;
    }
    if (c->state != CMD_STORE_OK) {
        fprintf(stderr, "psi gc: cannot open store %s: %s\n", label, c->msg);
        return -1;
    }
    if (!c->s->ops->gc) {
        printf("store %s: this connector has no gc\n", label);
        return 0;
    }
    if (c->s->ops->gc(c->s, &r, &e) < 0) {
        if (c->is_default && cmd_store_absent(e.code)) {
            printf("store %s: not running\n", label);
            return 0;
        }
        fprintf(stderr, "psi gc: store %s: %s\n", label, e.msg);
        return -1;
    }
    cmd_human_bytes(r.bytes_freed, freed, sizeof freed);
    printf("store %s: %" PRIu64 " refs expired, %" PRIu64 " objects removed, %" PRIu64
           " temp files removed, %s freed\n",
           label, r.refs_expired, r.objects_removed, r.tmp_removed, freed);
    return 0;
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
    char **urls = calloc((size_t)argc, sizeof *urls);
    const char *policy = NULL;
    cmd_store_set set;
    size_t nurls = 0;
    int opt, rc = 0;

    if (!urls)
        return CMD_EXIT_FAIL;
    opterr = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, ":h", gc_options, NULL)) != -1) {
        if (opt == 'h') {
            free(urls);
            cmd_help_print(stdout, "gc");
            return 0;
        }
        if (opt == 's') {
            urls[nurls++] = optarg;
        } else if (opt == 'p') {
            policy = optarg;
        } else {
            free(urls);
            return cmd_bad_option("gc", opt, argv);
        }
    }
    if (optind < argc) {
        free(urls);
        return cmd_usage_error("gc", "unexpected argument '%s'", argv[optind]);
    }
    rc = cmd_stores_open("gc", urls, nurls, policy, &set);
    free(urls);
    if (rc)
        return rc;
    for (size_t i = 0; i < set.n; i++)
        if (gc_store(&set.v[i]) < 0)
            rc = CMD_EXIT_FAIL;
    cmd_stores_close(&set);
    if (gc_registry() < 0)
        rc = CMD_EXIT_FAIL;
    return rc;
}
