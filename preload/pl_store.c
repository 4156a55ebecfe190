/* pl_store: the process's store connectors, opened on first use.
 *
 * Slot 0 is the default connector (PSI_STORE, else the policy's
 * `defaults connector`, else the embedded file store); slot i+1 is the
 * policy's connector i. Opening is lazy so that a program that never sends
 * a large payload never touches a store. A failed open is retried at most
 * once a second: the fault may be temporary (a full or unmounted
 * directory). */
#include "pl_store.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "pl_engine.h"
#include "psi_log.h"

#define PL_STORE_SLOTS (POL_MAX_CONNECTORS + 1)

static pthread_mutex_t pl_store_lock = PTHREAD_MUTEX_INITIALIZER;
static psi_store *pl_store_handle[PL_STORE_SLOTS];
static time_t pl_store_failed_at[PL_STORE_SLOTS];

/* The URL behind a slot. */
static const char *pl_store_url(int slot)
{
    const psi_policy *p = pl_g.policy;
    if (slot > 0 && p && (size_t)(slot - 1) < p->nconnectors)
        return p->connectors[slot - 1].url;
    if (!pl_g.cfg.store_url[0] && p && p->default_connector >= 0 &&
        (size_t)p->default_connector < p->nconnectors)
        return p->connectors[p->default_connector].url;
    return pl_g.cfg.store_url;
}

static psi_store *pl_store_get(int slot, psi_err *err)
{
    if (slot < 0 || slot >= PL_STORE_SLOTS)
        slot = 0;
    pthread_mutex_lock(&pl_store_lock);
    psi_store *s = pl_store_handle[slot];
    if (!s) {
        time_t now = time(NULL);
        if (pl_store_failed_at[slot] && now - pl_store_failed_at[slot] < 1) {
            psi_fail(err, EIO, "store unavailable (open failed recently)");
        } else if (psi_store_open(pl_store_url(slot), &s, err) == 0) {
            pl_store_handle[slot] = s;
        } else {
            s = NULL;
            pl_store_failed_at[slot] = now;
        }
    }
    pthread_mutex_unlock(&pl_store_lock);
    return s;
}

int pl_store_put(const void *buf, size_t n, const pol_decision *d, psi_token *tok, psi_err *err)
{
    psi_store *s = pl_store_get(d ? d->connector + 1 : 0, err);
    if (!s)
        return -1;
    psi_put_opts o = {.lifetime = PSI_LIFE_REFCOUNT, .ttl = 0};
    if (d && d->lifetime >= 0)
        o.lifetime = (uint8_t)d->lifetime;
    if (d)
        o.ttl = d->ttl;
    return psi_store_put(s, buf, n, &o, tok, err);
}

int pl_store_ref(const psi_token *tok, const pol_decision *d, psi_token *out, psi_err *err)
{
    psi_store *s = pl_store_get(d ? d->connector + 1 : 0, err);
    if (!s)
        return -1;
    return psi_store_ref(s, tok, out, err);
}

int pl_store_resolve(const psi_token *tok, psi_obj *obj, psi_err *err)
{
    psi_err ignored;
    /* The local store may be unavailable for puts yet other connectors can
     * still resolve: psi_store_resolve opens by id when it must. */
    psi_store *s = pl_store_get(0, &ignored);
    return psi_store_resolve(s, tok, obj, err);
}
