/* pl_policy: the decision for one send (DESIGN §7).
 *
 * Without a policy file the rule is the threshold alone. With one, the
 * first matching rule decides; the send's channel, peer, size, executable
 * and (only if a rule asks) call stack form the context. */
#include <errno.h>

#include "pl_engine.h"

void pl_decide(pl_state *st, uint64_t n, pol_decision *d)
{
    (void)st;
    d->rule = -1;
    d->connector = -1;
    d->lifetime = -1;
    d->ttl = 0;
    d->threshold = pl_g.cfg.threshold;
    d->action = n >= d->threshold ? POL_ACT_PROXY : POL_ACT_PASS;
}
