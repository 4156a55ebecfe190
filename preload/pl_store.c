/* pl_store: the process's store connectors, opened on first use.
 *
 * Slot 0 is the default connector (PSI_STORE, else the policy's
 * `defaults connector`, else the embedded file store); slot i+1 is the
 * policy's connector i; the last slot is the shm pool used for same-host
 * peers when the default is a remote store (DESIGN §6 routing). Opening is
 * lazy so that a program that never sends a large payload never touches a
 * store. A failed open is retried at most once a second: the fault may be
 * temporary (a full or unmounted directory, a server restarting). */
#include "pl_store.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "pl_engine.h"
#include "psi_log.h"
#include "psi_store.h"

#define PL_STORE_SLOTS (POL_MAX_CONNECTORS + 2)
#define PL_SLOT_SHM (PL_STORE_SLOTS - 1)

static pthread_mutex_t pl_store_lock = PTHREAD_MUTEX_INITIALIZER;
static psi_store *pl_store_handle[PL_STORE_SLOTS];
static time_t pl_store_failed_at[PL_STORE_SLOTS];

/* The URL behind a slot. */
static const char *pl_store_url(int slot)
{
    const psi_policy *p = pl_g.policy;
    if (slot == PL_SLOT_SHM)
        return "shm://";
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

/* ---- routing -------------------------------------------------------------- */

/* This host's interface addresses, read once (getifaddrs). */
#define PL_MAX_LOCAL 32
static struct {
    int family;
    unsigned char addr[16];
} pl_local[PL_MAX_LOCAL];
static int pl_nlocal;
static pthread_once_t pl_local_once = PTHREAD_ONCE_INIT;

static void pl_local_init(void)
{
    struct ifaddrs *ifa, *i;
    if (getifaddrs(&ifa) != 0)
        return;
    for (i = ifa; i && pl_nlocal < PL_MAX_LOCAL; i = i->ifa_next) {
        if (!i->ifa_addr)
            continue;
        if (i->ifa_addr->sa_family == AF_INET) {
            pl_local[pl_nlocal].family = AF_INET;
            memcpy(pl_local[pl_nlocal++].addr, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, 4);
        } else if (i->ifa_addr->sa_family == AF_INET6) {
            pl_local[pl_nlocal].family = AF_INET6;
            memcpy(pl_local[pl_nlocal++].addr, &((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr,
                   16);
        }
    }
    freeifaddrs(ifa);
}

/* Same host: a pipe or unix socket, loopback, or one of our addresses. */
static bool pl_peer_is_local(const struct sockaddr *sa, socklen_t len)
{
    if (!sa || len == 0 || sa->sa_family == AF_UNIX)
        return true;
    int family = sa->sa_family;
    unsigned char a[16];
    if (family == AF_INET) {
        memcpy(a, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        if (a[0] == 127)
            return true;
    } else if (family == AF_INET6) {
        const struct in6_addr *v6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(v6))
            return true;
        if (IN6_IS_ADDR_V4MAPPED(v6)) {
            family = AF_INET;
            memcpy(a, &v6->s6_addr[12], 4);
            if (a[0] == 127)
                return true;
        } else {
            memcpy(a, v6, 16);
        }
    } else {
        return false;
    }
    pthread_once(&pl_local_once, pl_local_init);
    for (int i = 0; i < pl_nlocal; i++)
        if (pl_local[i].family == family &&
            memcmp(pl_local[i].addr, a, family == AF_INET ? 4 : 16) == 0)
            return true;
    return false;
}

/* Remote stores are the ones a peer on another host can reach: Redis, and
 * a ZeroMQ server named by host (zmq:// alone is the node-local server). */
static bool pl_url_is_remote(const char *url)
{
    if (!url)
        return false;
    if (strncmp(url, "redis://", 8) == 0)
        return true;
    return strncmp(url, "zmq://", 6) == 0 && url[6] && url[6] != '/' && url[6] != '?';
}

int pl_store_route_unknown(const pol_decision *d)
{
    return d && d->connector >= 0 ? d->connector + 1 : 0;
}

int pl_store_route(const pol_decision *d, const struct sockaddr *peer, socklen_t peer_len)
{
    if (d && d->connector >= 0)
        return pl_store_route_unknown(d); /* a rule named its connector */
    static atomic_int told;
    if (!pl_g.cfg.route_fixed && pl_url_is_remote(pl_store_url(0)) &&
        pl_peer_is_local(peer, peer_len)) {
        psi_log_once(told, PSI_LOG_INFO, "same-host peer: objects go to the shm pool, not %s "
                     "(PSI_ROUTE=fixed sends everything to the default store)", pl_store_url(0));
        return PL_SLOT_SHM;
    }
    return 0;
}

int pl_store_put(const void *buf, size_t n, const pol_decision *d, int slot, psi_token *tok,
                 psi_err *err)
{
    psi_store *s = pl_store_get(slot, err);
    if (!s)
        return -1;
    psi_put_opts o = {.lifetime = PSI_LIFE_REFCOUNT, .ttl = 0};
    if (d && d->lifetime >= 0)
        o.lifetime = (uint8_t)d->lifetime;
    if (d)
        o.ttl = d->ttl;
    return psi_store_put(s, buf, n, &o, tok, err);
}

/* The store this process configured for a connector id (its URL names the
 * server or directory), or NULL: then psi_store_resolve opens that
 * connector's default. A store that cannot be opened now does not stop the
 * others. */
static psi_store *pl_store_for_id(uint8_t id)
{
    psi_err ignored;
    psi_store *s = NULL;
    for (int slot = 0; slot < PL_STORE_SLOTS && !s; slot++) {
        const char *url = pl_store_url(slot);
        const psi_store_ops *ops = NULL;
        if (url && url[0]) {
            const char *sep = strstr(url, "://");
            if (sep)
                ops = psi_store_ops_by_scheme(url, (size_t)(sep - url));
        } else if (slot == 0) {
            ops = &psi_store_file_ops;
        }
        if (ops && ops->id == id)
            s = pl_store_get(slot, &ignored);
        if (slot == 0 && (!pl_g.policy || pl_g.policy->nconnectors == 0))
            slot = PL_SLOT_SHM - 1; /* no policy connectors: skip to the shm slot */
    }
    return s;
}

int pl_store_ref(const psi_token *tok, const pol_decision *d, psi_token *out, psi_err *err)
{
    (void)d;
    psi_store *s = pl_store_for_id(tok->connector);
    if (!s)
        return psi_fail(err, ENOTSUP, "no store open for this token's connector");
    return psi_store_ref(s, tok, out, err);
}

int pl_store_resolve(const psi_token *tok, psi_obj *obj, psi_err *err)
{
    return psi_store_resolve(pl_store_for_id(tok->connector), tok, obj, err);
}

int pl_store_resolve_lazy(const psi_token *tok, psi_obj *obj, psi_err *err)
{
    return psi_store_resolve_lazy(pl_store_for_id(tok->connector), tok, obj, err);
}

void pl_store_atfork_child(void)
{
    /* The parent may have held the lock at fork: the child is single
     * threaded now, so a fresh lock is safe. */
    pthread_mutex_init(&pl_store_lock, NULL);
    for (int i = 0; i < PL_STORE_SLOTS; i++) {
        psi_store_forget(pl_store_handle[i]);
        pl_store_handle[i] = NULL;
        pl_store_failed_at[i] = 0;
    }
    psi_store_atfork_child();
}
