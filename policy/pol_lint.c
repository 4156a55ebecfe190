/* pol_lint: warnings about a policy that parses (docs/policy.md §7).
 *
 * Each check is sound: a warning is only given when it is certainly true
 * (a shadowed rule really can never match). Checks are not complete: some
 * dead rules go unreported, e.g. one covered only by two earlier rules
 * together, or by a glob that is wider in a way we do not prove. */
#include <stdio.h>
#include <string.h>

#include "pol_internal.h"

/* Channels on which a send can have an IP or a unix peer address. */
#define CH_IP_PEER (POL_CH_TCP | POL_CH_UDP | POL_CH_ZMQ)
#define CH_UNIX_PEER (POL_CH_UNIX | POL_CH_ZMQ)

bool pol_rule_satisfiable(const pol_rule *r, char *why, size_t cap)
{
    if ((r->has_net || r->port_lo >= 0) && !(r->channels & CH_IP_PEER)) {
        snprintf(why, cap, "peer=/port= need an IP peer, which only tcp, udp and zmq have");
        return false;
    }
    if (r->unix_glob[0] && !(r->channels & CH_UNIX_PEER)) {
        snprintf(why, cap, "peer=unix: needs a unix peer, which only unix and zmq have");
        return false;
    }
    if (r->unix_glob[0] && r->port_lo >= 0) {
        snprintf(why, cap, "a unix peer has no port, so peer=unix: and port= never both hold");
        return false;
    }
    return true;
}

static bool glob_all(const char *g)
{
    if (!*g)
        return false;
    for (; *g; g++)
        if (*g != '*')
            return false;
    return true;
}

static bool has_meta(const char *g)
{
    return strpbrk(g, "*?[\\") != NULL;
}

/* Is every send that `later` matches also matched by `earlier`? An empty
 * pattern is "no condition". Proven cases: no condition earlier; earlier
 * is only '*'s; equal patterns; later is a literal that earlier matches.
 * A condition earlier and none later is never covered, not even by '*':
 * '*' fails when the value is unknown (no exe, no stack), the absent
 * condition does not. */
static bool glob_covers(const char *earlier, const char *later)
{
    if (!earlier[0])
        return true;
    if (!later[0])
        return false;
    if (glob_all(earlier))
        return true;
    if (strcmp(earlier, later) == 0)
        return true;
    return !has_meta(later) && pol_glob(earlier, later);
}

static bool net_covers(const pol_rule *e, const pol_rule *l)
{
    int bits = e->prefix, i = 0;

    if (!e->has_net)
        return true;
    if (!l->has_net || l->family != e->family || l->prefix < e->prefix)
        return false;
    for (; bits >= 8; bits -= 8, i++)
        if (l->net[i] != e->net[i])
            return false;
    if (bits) {
        unsigned char mask = (unsigned char)(0xFF << (8 - bits));
        if ((l->net[i] & mask) != (e->net[i] & mask))
            return false;
    }
    return true;
}

bool pol_rule_covers(const pol_rule *e, const pol_rule *l)
{
    if (l->channels & ~e->channels)
        return false;
    if (l->direction & ~e->direction)
        return false;
    if (l->size_min < e->size_min || l->size_max > e->size_max)
        return false;
    if (!net_covers(e, l))
        return false;
    if (e->port_lo >= 0 && (l->port_lo < e->port_lo || l->port_hi > e->port_hi ||
                            l->port_lo < 0))
        return false;
    /* An earlier unix glob needs the later rule to be about unix peers too:
     * without peer=unix: the later rule also matches IP peers and pipes. */
    if (e->unix_glob[0] && (!l->unix_glob[0] || !glob_covers(e->unix_glob, l->unix_glob)))
        return false;
    if (!glob_covers(e->exe_glob, l->exe_glob))
        return false;
    if (!glob_covers(e->caller_glob, l->caller_glob))
        return false;
    return true;
}

void pol_lint(const psi_policy *p, const bool *used, pol_diags *d)
{
    bool live[POL_MAX_RULES];
    char why[160], a[32], b[32];

    for (size_t i = 0; i < p->nrules; i++) {
        const pol_rule *r = &p->rules[i];
        live[i] = pol_rule_satisfiable(r, why, sizeof why);
        if (!live[i]) {
            pol_diag_add(d, true, r->line, r->col, "rule '%s' can never match: %s", r->name,
                         why);
            continue;
        }
        for (size_t j = 0; j < i; j++) {
            if (live[j] && pol_rule_covers(&p->rules[j], r)) {
                pol_diag_add(d, true, r->line, r->col, "rule '%s' can never match: the "
                             "earlier rule '%s' (line %d) matches every send it matches",
                             r->name, p->rules[j].name, p->rules[j].line);
                live[i] = false;
                break;
            }
        }
        if (!live[i] || r->action != POL_ACT_PROXY)
            continue;
        /* Only the file's own threshold is known here; PSI_THRESHOLD may
         * differ at run time, so this is checked against rule thresholds and
         * `defaults threshold=` only. */
        if ((r->has_threshold || p->has_threshold) &&
            r->size_max < pol_rule_threshold(r, p->threshold)) {
            pol_size_str(r->size_max, a, sizeof a);
            pol_size_str(pol_rule_threshold(r, p->threshold), b, sizeof b);
            pol_diag_add(d, true, r->line, r->col, "rule '%s' never proxies: it matches "
                         "sizes up to %s, below its threshold %s, so matching sends pass; "
                         "add threshold= to the rule", r->name, a, b);
        }
    }
    for (size_t i = 0; i < p->nconnectors; i++)
        if (!used[i])
            pol_diag_add(d, true, p->connectors[i].line, p->connectors[i].col,
                         "connector '%s' is declared but no rule or default uses it",
                         p->connectors[i].name);
}
