/* The stores a store command works on (`psi store ls|du`, `psi gc`;
 * docs/store-cli.md): the --store URLs if any were given, else everything
 * this user has configured (PSI_STORE, the policy's connectors) plus the
 * embedded default of every connector compiled in. A default whose server
 * is not there is "not running", which is no failure: most hosts never
 * start a Redis or ZeroMQ store. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "psi_config.h"
#include "psi_policy.h"
#include "psi_store.h"
#include "psi_tool.h"

bool cmd_store_absent(int code)
{
    return code == ECONNREFUSED || code == ENOENT;
}

const char *cmd_store_label(const cmd_store_entry *c)
{
    return c->s ? c->s->url : c->url;
}

/* Is this store already in the set? Compared by the URL the connector
 * reports, so PSI_STORE naming the default directory is listed once. */
static bool seen(const cmd_store_set *set, const char *url)
{
    for (size_t i = 0; i < set->n; i++)
        if (strcmp(cmd_store_label(&set->v[i]), url) == 0)
            return true;
    return false;
}

static cmd_store_entry *add(cmd_store_set *set)
{
    if (set->n == set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 8;
        cmd_store_entry *v = realloc(set->v, cap * sizeof *v);
        if (!v)
            return NULL;
        set->v = v;
        set->cap = cap;
    }
    cmd_store_entry *c = &set->v[set->n];
    memset(c, 0, sizeof *c);
    return c;
}

/* Opens one store: a URL (named on the command line if `asked`, else
 * configured) or, with ops, that connector's default. A failed open is
 * recorded in the entry, not returned. */
static int open_one(cmd_store_set *set, const char *url, const psi_store_ops *ops, bool asked)
{
    const psi_store_ops *url_ops = NULL;
    cmd_store_entry *c = add(set);
    psi_err e = {0};
    int rc;

    if (!c) {
        fprintf(stderr, "psi: out of memory\n");
        return -1;
    }
    c->is_default = ops != NULL;
    if (ops) {
        snprintf(c->url, sizeof c->url, "%s (default)", ops->scheme);
        snprintf(c->connector, sizeof c->connector, "%s", ops->scheme);
        rc = ops->open(NULL, &c->s, &e);
    } else {
        snprintf(c->url, sizeof c->url, "%s", url);
        const char *sep = strstr(url, "://");
        url_ops = sep ? psi_store_ops_by_scheme(url, (size_t)(sep - url)) : NULL;
        snprintf(c->connector, sizeof c->connector, "%.*s", sep ? (int)(sep - url) : 1,
                 sep ? url : "?");
        rc = psi_store_open(url, &c->s, &e);
    }
    if (rc < 0) {
        c->s = NULL;
        if (c->is_default && cmd_store_absent(e.code))
            c->state = CMD_STORE_NOT_RUNNING;
        else if (!ops && !url_ops && !asked)
            c->state = CMD_STORE_UNAVAILABLE;
        else
            c->state = CMD_STORE_FAILED;
        snprintf(c->msg, sizeof c->msg, "%s", e.msg);
    } else if (seen(set, c->s->url)) {
        psi_store_close(c->s); /* the same store reached twice */
        return 0;
    } else {
        snprintf(c->connector, sizeof c->connector, "%s", c->s->ops->scheme);
    }
    set->n++;
    return 0;
}

/* Errors only: warnings are for `psi policy check`, not for a listing. */
static void policy_diag(void *ctx, const char *path, const pol_diag *d)
{
    const char *cmd = ctx;
    if (d->warning)
        return;
    if (d->line)
        fprintf(stderr, "psi %s: %s:%d:%d: error: %s\n", cmd, path, d->line, d->col, d->msg);
    else
        fprintf(stderr, "psi %s: %s: error: %s\n", cmd, path, d->msg);
}

int cmd_stores_open(const char *cmd, char *const *urls, size_t nurls, const char *policy,
                    cmd_store_set *set)
{
    static psi_policy pol; /* large: not on the stack */
    const char *env = getenv("PSI_STORE");
    psi_err e;

    memset(set, 0, sizeof *set);
    for (size_t i = 0; i < nurls; i++)
        if (psi_check_store_url(urls[i], &e) < 0 || !urls[i][0])
            return cmd_usage_error(cmd, "--store: %s", urls[i][0] ? e.msg : "empty URL");
    if (nurls) {
        for (size_t i = 0; i < nurls; i++)
            if (open_one(set, urls[i], NULL, true) < 0)
                return CMD_EXIT_FAIL;
        return 0;
    }

    if (env && *env && psi_check_store_url(env, &e) < 0)
        return cmd_usage_error(cmd, "%s", e.msg);
    if (!policy || !*policy)
        policy = getenv("PSI_POLICY");
    if (policy && *policy) {
        int errors = psi_policy_load(policy, &pol, policy_diag, (void *)cmd);
        if (errors)
            return cmd_usage_error(cmd, "the policy %s has %d error%s", policy, errors,
                                   errors == 1 ? "" : "s");
    }

    if (env && *env && open_one(set, env, NULL, false) < 0)
        return CMD_EXIT_FAIL;
    for (size_t i = 0; policy && *policy && i < pol.nconnectors; i++)
        if (open_one(set, pol.connectors[i].url, NULL, false) < 0)
            return CMD_EXIT_FAIL;
    for (unsigned id = 1; id < 256; id++) {
        const psi_store_ops *ops = psi_store_ops_by_id((uint8_t)id);
        if (ops && open_one(set, NULL, ops, false) < 0)
            return CMD_EXIT_FAIL;
    }
    return 0;
}

void cmd_stores_close(cmd_store_set *set)
{
    for (size_t i = 0; i < set->n; i++)
        psi_store_close(set->v[i].s);
    free(set->v);
    memset(set, 0, sizeof *set);
}
