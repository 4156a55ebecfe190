/* pl_policy: the decision for one send (DESIGN §7).
 *
 * Without a policy file the rule is the threshold alone. With one, the
 * first matching rule decides; the send's channel, peer, size, executable
 * and (only if a rule asks) call stack form the context. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pl_caller.h"
#include "pl_engine.h"
#include "psi_log.h"

static psi_policy pl_policy_storage;

/* The threshold that applies when no rule says otherwise: PSI_THRESHOLD if
 * set (env overrides the file for one run), else `defaults threshold`. */
static uint64_t pl_default_threshold(void)
{
    const psi_policy *p = pl_g.policy;
    return p && p->has_threshold ? p->threshold : pl_g.cfg.threshold;
}

static void pl_policy_diag(void *ctx, const char *path, const pol_diag *d)
{
    (void)ctx;
    if (d->line > 0)
        psi_log(d->warning ? PSI_LOG_WARN : PSI_LOG_ERROR, "%s:%d:%d: %s", path, d->line, d->col,
                d->msg);
    else
        psi_log(d->warning ? PSI_LOG_WARN : PSI_LOG_ERROR, "%s: %s", path, d->msg);
}

int pl_policy_init(void)
{
    pl_g.min_candidate = pl_g.cfg.threshold;
    if (!pl_g.cfg.policy[0])
        return 0;
    psi_policy *p = &pl_policy_storage;
    int errors = psi_policy_load(pl_g.cfg.policy, p, pl_policy_diag, NULL);
    if (errors > 0) {
        psi_log(PSI_LOG_ERROR,
                "PSI_POLICY=%s has %d error%s; passing everything through unchanged "
                "(check it with `psi policy check`)",
                pl_g.cfg.policy, errors, errors == 1 ? "" : "s");
        return -1;
    }
    const char *env = getenv("PSI_THRESHOLD");
    psi_policy_apply_env(p, &pl_g.cfg, env && env[0]);
    /* `peer` declarations mean what PSI_PEERS means. */
    for (size_t i = 0; i < p->npeers && pl_g.cfg.npeers < PSI_MAX_PEERS; i++)
        pl_g.cfg.peers[pl_g.cfg.npeers++] = p->peers[i];
    pl_g.policy = p;
    /* libunwind sets itself up with pipe2 and open, through our hooks:
     * do it now, before the hooks treat such fds as the application's. */
    if (p->needs_callers)
        pl_caller_init();
    uint64_t t = pl_default_threshold();
    pl_g.min_candidate = p->min_candidate < t ? p->min_candidate : t;
    if (p->has_log)
        pl_g.min_candidate = 1; /* a `log` rule may match a send of any size */
    psi_log(PSI_LOG_INFO, "policy %s: %zu rules, %zu connectors", pl_g.cfg.policy, p->nrules,
            p->nconnectors);
    return 0;
}

static const char *const *pl_ctx_callers(void *arg, size_t *n)
{
    return pl_callers(arg, n);
}

void pl_decide_for(int channel, const struct sockaddr *peer, socklen_t peer_len, uint64_t n,
                   pol_decision *d)
{
    if (!pl_g.policy) {
        d->rule = -1;
        d->connector = -1;
        d->lifetime = -1;
        d->ttl = 0;
        d->threshold = pl_g.cfg.threshold;
        d->action = n >= d->threshold ? POL_ACT_PROXY : POL_ACT_PASS;
        return;
    }
    pol_ctx c = {
        .channel = channel,
        .direction = POL_DIR_SEND,
        .peer = peer_len ? peer : NULL,
        .peer_len = peer_len,
        .size = n,
        .exe = program_invocation_short_name,
        .callers = pl_ctx_callers,
        .callers_arg = NULL,
    };
    psi_policy_decide(pl_g.policy, &c, pl_default_threshold(), d);
}

void pl_decide(pl_state *st, uint64_t n, pol_decision *d)
{
    pl_decide_for(st->channel ? st->channel : POL_CH_TCP, (const struct sockaddr *)&st->peer,
                  st->peer_len, n, d);
}

void pl_log_send_for(int channel, const char *where, uint64_t n, const pol_decision *d)
{
    const char *rule = d->rule >= 0 ? pl_g.policy->rules[d->rule].name : "(none)";
    psi_log(PSI_LOG_WARN, "policy rule %s: %s send of %llu bytes %s", rule,
            pol_channel_name(channel), (unsigned long long)n, where);
}

void pl_log_send(pl_state *st, int fd, uint64_t n, const pol_decision *d)
{
    char where[32];
    snprintf(where, sizeof where, "on fd %d", fd);
    pl_log_send_for(st->channel ? st->channel : POL_CH_TCP, where, n, d);
}
