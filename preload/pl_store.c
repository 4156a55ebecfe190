/* pl_store: the process's store connector, opened on first use.
 *
 * Opening is lazy so that a program that never sends a large payload never
 * touches the store directory. A failed open is retried at most once a
 * second: the fault may be temporary (a full or unmounted directory). */
#include "pl_store.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "pl_engine.h"
#include "psi_log.h"

static pthread_mutex_t pl_store_lock = PTHREAD_MUTEX_INITIALIZER;
static psi_store *pl_store_handle;
static time_t pl_store_failed_at;

static psi_store *pl_store_get(psi_err *err)
{
    pthread_mutex_lock(&pl_store_lock);
    psi_store *s = pl_store_handle;
    if (!s) {
        time_t now = time(NULL);
        if (pl_store_failed_at && now - pl_store_failed_at < 1) {
            psi_fail(err, EIO, "store unavailable (open failed recently)");
        } else if (psi_store_open(pl_g.cfg.store_url, &s, err) == 0) {
            pl_store_handle = s;
        } else {
            s = NULL;
            pl_store_failed_at = now;
        }
    }
    pthread_mutex_unlock(&pl_store_lock);
    return s;
}

int pl_store_put(const void *buf, size_t n, psi_token *tok, psi_err *err)
{
    psi_store *s = pl_store_get(err);
    if (!s)
        return -1;
    psi_put_opts o = {.lifetime = PSI_LIFE_REFCOUNT, .ttl = 0};
    return psi_store_put(s, buf, n, &o, tok, err);
}

int pl_store_resolve(const psi_token *tok, psi_obj *obj, psi_err *err)
{
    psi_err ignored;
    /* The local store may be unavailable for puts yet other connectors can
     * still resolve: pass NULL and let the resolver open by id. */
    psi_store *s = pl_store_get(&ignored);
    return psi_store_resolve(s, tok, obj, err);
}
