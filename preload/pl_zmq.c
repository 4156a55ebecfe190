/* pl_zmq: ZeroMQ message proxying (docs/zmq.md, docs/protocol.md §7).
 *
 * A frame of at least the threshold, sent on a socket whose every peer is
 * known to be interposed, is put into the store and travels as a token
 * frame; the receiving hook swaps it back. Which frames are ours is decided
 * per connection, without guessing: a socket that may send tokens announces
 * "X-Psi" in its ZMTP handshake (ZMQ_METADATA), and a receiver interprets
 * only frames whose message carries that property (zmq_msg_gets). Such a
 * sender escapes every real frame that could be read as ours (pl_zmqf.h).
 *
 * This file binds libzmq, keeps the socket table and sends; pl_zmq_rx.c
 * receives. Sockets are single-threaded by libzmq's own rule, so a
 * socket's state is read and written without a lock by the thread using
 * the socket; the table that maps a socket handle to its state is read
 * without a lock too, and written under one. */
#include "pl_zmq.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <link.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pl_engine.h"
#include "pl_store.h"
#include "pl_zmq_int.h"
#include "pl_zmqf.h"
#include "psi_log.h"
#include "psi_registry.h"
#include "psi_stats.h"

#ifndef ZMQ_METADATA
#define ZMQ_METADATA 95 /* libzmq >= 4.3 (a draft option in its header) */
#endif

/* ---- the real libzmq functions ------------------------------------------ */

pl_zq_real pl_zr;

static pthread_once_t pl_zq_once = PTHREAD_ONCE_INIT;
static bool pl_zq_bound;      /* every function above was found */
bool pl_zq_layout_ok;         /* zmq_msg_t is laid out as pl_zq_transplant expects */
static int pl_zq_mode = PL_ZQ_AUTO;

_Thread_local int pl_zq_depth __attribute__((tls_model("initial-exec")));

/* A program that loaded libzmq privately (RTLD_LOCAL, as Python extension
 * modules are) has it outside RTLD_NEXT's reach: find it among the loaded
 * objects by name. */
static int pl_zq_find_lib(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    const char *name = info->dlpi_name;
    if (!name || !strstr(name, "libzmq"))
        return 0;
    void *h = dlopen(name, RTLD_NOLOAD | RTLD_LAZY | RTLD_LOCAL);
    if (!h)
        return 0;
    *(void **)arg = h;
    return 1;
}

int pl_zq_parse_mode(const char *v)
{
    if (!v || !*v || strcmp(v, "auto") == 0)
        return PL_ZQ_AUTO;
    if (strcmp(v, "on") == 0 || strcmp(v, "1") == 0)
        return PL_ZQ_ON;
    if (strcmp(v, "off") == 0 || strcmp(v, "0") == 0)
        return PL_ZQ_OFF;
    return -1;
}

static bool pl_zq_check_layout(void)
{
    int maj = 0, min = 0, pat = 0;
    pl_zr.zmq_version(&maj, &min, &pat);
    if (maj != 4 || min < 1 || min > 3)
        return false;
    zmq_msg_t m;
    if (pl_zr.zmq_msg_init_size(&m, 64) != 0)
        return false;
    unsigned char *b = (unsigned char *)&m;
    void *md;
    memcpy(&md, b, sizeof(md));
    bool ok = md == NULL && b[PL_ZQ_FLAGS_AT] == 0 && !pl_zr.zmq_msg_more(&m);
    if (ok) {
        b[PL_ZQ_FLAGS_AT] |= 1;
        ok = pl_zr.zmq_msg_more(&m) == 1;
        b[PL_ZQ_FLAGS_AT] &= (unsigned char)~1u;
    }
    pl_zr.zmq_msg_close(&m);
    return ok;
}

static void pl_zq_bind_all(void)
{
    void *h = RTLD_NEXT;
    if (!dlsym(RTLD_NEXT, "zmq_msg_send")) {
        h = NULL;
        dl_iterate_phdr(pl_zq_find_lib, &h);
    }
    bool ok = h != NULL;
#define PL_ZQ_BIND(ret, name, params)                        \
    if (ok && !(*(void **)&pl_zr.name = dlsym(h, #name))) {     \
        psi_log(PSI_LOG_ERROR, "libzmq lacks %s; ZeroMQ messages pass unchanged", #name); \
        ok = false;                                          \
    }
    PL_ZQ_FNS(PL_ZQ_BIND)
#undef PL_ZQ_BIND
    if (!h)
        psi_log(PSI_LOG_ERROR, "a zmq_* function was called but libzmq is not loaded");
    pl_zq_bound = ok;
    if (!ok)
        return;
    pl_zq_layout_ok = pl_zq_check_layout();
    const char *v = getenv("PSI_ZMQ");
    int mode = pl_zq_parse_mode(v);
    if (mode < 0) {
        psi_log(PSI_LOG_WARN, "PSI_ZMQ=%s is not on, auto or off; using auto", v);
        mode = PL_ZQ_AUTO;
    }
    pl_zq_mode = mode;
    if (!pl_zq_layout_ok)
        psi_log(PSI_LOG_WARN, "libzmq's message layout is not one this build knows; a resolved "
                              "frame received with zmq_msg_recv loses its more flag and metadata");
}

/* Binds libzmq on first use. Pass-through (false) for store-internal
 * calls, nested calls and a disabled interposer. */
static bool pl_zq_active(void)
{
    pthread_once(&pl_zq_once, pl_zq_bind_all);
    return pl_zq_bound && pl_zq_depth == 0 && !psi_store_internal && pl_g.ready &&
           !pl_g.passthrough && !pl_g.dryrun;
}

/* ---- per-socket state ------------------------------------------------------ */

/* The table is read without a lock (every send and receive looks a socket
 * up). Writers hold pl_zq_lock. A removed entry leaves a tombstone, so a
 * probe chain is never cut (tombstones at a chain's end are cleared:
 * pl_zq_clear_run), and states are never freed: a closed socket's
 * state goes on a free list and is reused, so a racing reader only ever
 * reads a live or recycled state, whose `s` cannot be its own socket. */
#define PL_ZQ_GONE ((pl_zsock *)1)

static pthread_mutex_t pl_zq_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic(pl_zsock *) pl_zq_tab[PL_ZQ_TAB];
static pl_zsock *pl_zq_free; /* under pl_zq_lock, linked through `s` */

static size_t pl_zq_slot(const void *s)
{
    uintptr_t x = (uintptr_t)s;
    x ^= x >> 17;
    x *= 0x9e3779b97f4a7c15ull;
    return (size_t)(x >> 40) % PL_ZQ_TAB;
}

static pl_zsock *pl_zq_find(void *s)
{
    for (size_t i = 0, k = pl_zq_slot(s); i < PL_ZQ_TAB; i++, k = (k + 1) % PL_ZQ_TAB) {
        pl_zsock *e = atomic_load_explicit(&pl_zq_tab[k], memory_order_acquire);
        if (!e)
            return NULL;
        if (e != PL_ZQ_GONE && atomic_load_explicit(&e->s, memory_order_relaxed) == s)
            return e;
    }
    return NULL;
}

/* A new state for socket s in the table, or NULL (table full, no memory). */
static pl_zsock *pl_zq_add(void *s, int type)
{
    pl_zsock *z = NULL;
    pthread_mutex_lock(&pl_zq_lock);
    size_t k = pl_zq_slot(s);
    for (size_t i = 0; i < PL_ZQ_TAB; i++, k = (k + 1) % PL_ZQ_TAB) {
        pl_zsock *e = atomic_load_explicit(&pl_zq_tab[k], memory_order_relaxed);
        if (e && e != PL_ZQ_GONE)
            continue;
        if (pl_zq_free) {
            z = pl_zq_free;
            pl_zq_free = atomic_load_explicit(&z->s, memory_order_relaxed);
        } else {
            z = malloc(sizeof(*z));
        }
        if (z) {
            memset((char *)z + sizeof(z->s), 0, sizeof(*z) - sizeof(z->s));
            z->type = type;
            atomic_store_explicit(&z->s, s, memory_order_relaxed);
            atomic_store_explicit(&pl_zq_tab[k], z, memory_order_release);
        }
        break;
    }
    pthread_mutex_unlock(&pl_zq_lock);
    if (!z) {
        static atomic_int warned;
        psi_log_once(warned, PSI_LOG_WARN,
                     "cannot track more than %d ZeroMQ sockets; later ones pass unchanged",
                     PL_ZQ_TAB);
    }
    return z;
}

/* Marks that end where a chain ends turn back into empty slots, so that a
 * process that keeps opening and closing sockets does not fill the table
 * with them and make every miss a full scan. Safe for lock-free readers:
 * no chain reaches past an empty slot, so none reaches a mark just before
 * one. Under pl_zq_lock. */
static void pl_zq_clear_run(size_t k)
{
    size_t next = (k + 1) % PL_ZQ_TAB;
    while (!atomic_load_explicit(&pl_zq_tab[next], memory_order_relaxed) &&
           atomic_load_explicit(&pl_zq_tab[k], memory_order_relaxed) == PL_ZQ_GONE) {
        atomic_store_explicit(&pl_zq_tab[k], NULL, memory_order_release);
        next = k;
        k = (k + PL_ZQ_TAB - 1) % PL_ZQ_TAB;
    }
}

static void pl_zq_remove(void *s)
{
    pthread_mutex_lock(&pl_zq_lock);
    for (size_t i = 0, k = pl_zq_slot(s); i < PL_ZQ_TAB; i++, k = (k + 1) % PL_ZQ_TAB) {
        pl_zsock *e = atomic_load_explicit(&pl_zq_tab[k], memory_order_relaxed);
        if (!e)
            break;
        if (e != PL_ZQ_GONE && atomic_load_explicit(&e->s, memory_order_relaxed) == s) {
            atomic_store_explicit(&pl_zq_tab[k], PL_ZQ_GONE, memory_order_release);
            atomic_store_explicit(&e->s, (void *)pl_zq_free, memory_order_relaxed);
            pl_zq_free = e;
            pl_zq_clear_run(k);
            break;
        }
    }
    pthread_mutex_unlock(&pl_zq_lock);
}

/* The state of an application socket, or NULL: pass the call through. A
 * socket is in the table only if libzmq was bound and the interposer was
 * active when it was created, so the fast path needs no other check. */
pl_zsock *pl_zq_lookup(void *s)
{
    pl_zsock *z = pl_zq_find(s);
    if (z && pl_zq_depth == 0 && !psi_store_internal)
        return z;
    pthread_once(&pl_zq_once, pl_zq_bind_all); /* for the pass-through */
    return NULL;
}

/* The socket types whose frames we may touch. Everything else (STREAM's raw
 * bytes, the draft thread-safe types) passes unchanged. */
static bool pl_zq_tracked_type(int type)
{
    switch (type) {
    case ZMQ_PAIR: case ZMQ_PUB: case ZMQ_SUB: case ZMQ_REQ: case ZMQ_REP: case ZMQ_DEALER:
    case ZMQ_ROUTER: case ZMQ_PULL: case ZMQ_PUSH: case ZMQ_XPUB: case ZMQ_XSUB:
        return true;
    default:
        return false;
    }
}

/* Whether the next frame sent is the application's payload, seen by the
 * peer as sent (docs/zmq.md §2): a ROUTER's first frame is the routing id
 * libzmq consumes; a PUB's first frame is matched against subscriptions
 * and must stay as it is; XSUB sends subscriptions. */
static bool pl_zq_send_ours(const pl_zsock *z)
{
    switch (z->type) {
    case ZMQ_ROUTER: case ZMQ_PUB: case ZMQ_XPUB:
        return z->send_more;
    case ZMQ_XSUB: case ZMQ_SUB:
        return false;
    default:
        return true;
    }
}

void *pl_zq_socket(void *ctx, int type)
{
    if (!pl_zq_active())
        return ZREAL(zmq_socket, NULL, ctx, type);
    pl_zq_depth++;
    void *s = pl_zr.zmq_socket(ctx, type);
    if (s && pl_zq_tracked_type(type)) {
        int saved = errno;
        pl_zq_add(s, type);
        errno = saved;
    }
    pl_zq_depth--;
    return s;
}

int pl_zq_close(void *s)
{
    pthread_once(&pl_zq_once, pl_zq_bind_all);
    /* Forget the handle before libzmq may reuse its memory for another. */
    pl_zq_remove(s);
    return ZREAL(zmq_close, -1, s);
}

/* The registry says the peer behind c listens through an interposed
 * process. A yes is trusted for a second: a large frame should not pay a
 * directory scan each time, and a replaced peer is found within a second. */
static bool pl_zq_conn_interposed(pl_zconn *c)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    if (c->checked && ts.tv_sec - c->checked < 1)
        return true;
    if (c->len && psi_registry_is_interposed((struct sockaddr *)&c->sa, c->len)) {
        c->checked = ts.tv_sec ? ts.tv_sec : 1;
        return true;
    }
    c->checked = 0;
    return false;
}

/* Decided at the socket's first bind or connect, before libzmq's handshake
 * can start: with PSI_ZMQ=on every socket announces; in auto mode only one
 * whose first endpoint is a connect to an interposed tcp/ipc listener. */
static void pl_zq_start(void *s, pl_zsock *z, const char *ep, bool connecting)
{
    if (z->started)
        return;
    z->started = true;
    bool want = false;
    struct sockaddr_storage sa;
    socklen_t len;
    bool ip = ep && (strncmp(ep, "tcp://", 6) == 0 || strncmp(ep, "ipc://", 6) == 0);
    if (pl_zq_mode == PL_ZQ_ON)
        want = ip;
    else if (pl_zq_mode == PL_ZQ_AUTO && connecting && pl_zf_endpoint(ep, &sa, &len) == 0)
        want = psi_registry_is_interposed((struct sockaddr *)&sa, len);
    if (want && pl_zr.zmq_setsockopt(s, ZMQ_METADATA, PL_ZQ_ANNOUNCE, strlen(PL_ZQ_ANNOUNCE)) == 0)
        z->announced = true;
    psi_log(PSI_LOG_DEBUG, "zmq socket %p (%s %s): %s", s, connecting ? "connect" : "bind", ep,
            z->announced ? "announces X-Psi" : "plain");
}

static int pl_zq_endpoint_call(void *s, const char *ep, bool connecting)
{
    pl_zsock *z = pl_zq_lookup(s);
    if (!z)
        return connecting ? ZREAL(zmq_connect, -1, s, ep) : ZREAL(zmq_bind, -1, s, ep);
    pl_zq_depth++;
    int saved = errno;
    pl_zq_start(s, z, ep, connecting);
    errno = saved;
    int rc = connecting ? pl_zr.zmq_connect(s, ep) : pl_zr.zmq_bind(s, ep);
    if (rc == 0) {
        saved = errno;
        bool ip = strncmp(ep, "tcp://", 6) == 0 || strncmp(ep, "ipc://", 6) == 0;
        if (!ip)
            z->unknown = true;
        if (!connecting) {
            z->bound = true;
        } else if (z->nconn == PL_ZQ_CONN_MAX) {
            z->unknown = true;
        } else {
            pl_zconn *c = &z->conn[z->nconn++];
            memset(c, 0, sizeof(*c));
            snprintf(c->ep, sizeof(c->ep), "%s", ep);
            if (strlen(ep) >= sizeof(c->ep) || pl_zf_endpoint(ep, &c->sa, &c->len) != 0)
                c->len = 0; /* never interposed as far as auto mode knows */
        }
        errno = saved;
    }
    pl_zq_depth--;
    return rc;
}

int pl_zq_bind(void *s, const char *ep)
{
    return pl_zq_endpoint_call(s, ep, false);
}

int pl_zq_connect(void *s, const char *ep)
{
    return pl_zq_endpoint_call(s, ep, true);
}

int pl_zq_disconnect(void *s, const char *ep)
{
    pl_zsock *z = pl_zq_lookup(s);
    int rc = ZREAL(zmq_disconnect, -1, s, ep);
    if (z && rc == 0 && ep) {
        for (int i = 0; i < z->nconn; i++) {
            if (strcmp(z->conn[i].ep, ep) == 0) {
                z->conn[i] = z->conn[--z->nconn];
                break;
            }
        }
    }
    return rc;
}

/* ---- sending ---------------------------------------------------------------- */

/* Every peer of z is known to be interposed (docs/zmq.md §3). */
static bool pl_zq_may_token(pl_zsock *z)
{
    if (!z->announced || z->unknown || pl_zq_mode == PL_ZQ_OFF)
        return false;
    if (pl_zq_mode == PL_ZQ_ON)
        return true;
    if (z->bound || z->nconn == 0)
        return false;
    for (int i = 0; i < z->nconn; i++)
        if (!pl_zq_conn_interposed(&z->conn[i]))
            return false;
    return true;
}

/* What goes on the wire for one frame. */
typedef struct pl_zplan {
    int kind; /* PL_ZF_PLAIN: the frame as it is; PL_ZF_ESCAPED; PL_ZF_TOKEN: frame[0..len) */
    size_t len;
    uint8_t frame[PL_ZF_TOKEN_MAX];
} pl_zplan;

/* A token is all-or-nothing, like the frame it replaces: a non-blocking
 * send that libzmq would refuse is refused before the payload is stored. */
static bool pl_zq_would_block(void *s, pl_zsock *z, int flags)
{
    if (!(flags & ZMQ_DONTWAIT) || z->send_more)
        return false; /* later frames of a message are never refused */
    int ev = 0;
    size_t l = sizeof(ev);
    return pl_zr.zmq_getsockopt(s, ZMQ_EVENTS, &ev, &l) == 0 && !(ev & ZMQ_POLLOUT);
}

/* Decides how one frame travels; for a token, stores the payload. Returns
 * 0, or -1 with errno EAGAIN (non-blocking and no room). */
static int pl_zq_plan(void *s, pl_zsock *z, const void *buf, size_t n, int flags, pl_zplan *p)
{
    p->kind = PL_ZF_PLAIN;
    if (!z->announced || !pl_zq_send_ours(z))
        return 0;
    if (n > 0 && n >= pl_g.min_candidate && pl_zq_may_token(z)) {
        pol_decision d;
        const pl_zconn *c = z->nconn == 1 ? &z->conn[0] : NULL;
        pl_decide_for(POL_CH_ZMQ, c && c->len ? (const struct sockaddr *)&c->sa : NULL,
                      c ? c->len : 0, n, &d);
        if (d.action == POL_ACT_LOG) {
            char where[40];
            snprintf(where, sizeof where, "on socket %p", s);
            pl_log_send_for(POL_CH_ZMQ, where, n, &d);
        }
        if (d.action == POL_ACT_PROXY) {
            if (pl_zq_would_block(s, z, flags)) {
                errno = EAGAIN;
                return -1;
            }
            /* A PUB delivers one frame to every subscriber: a token resolved
             * once (refcount, evict-on-read) would fail the others. */
            if (z->type == ZMQ_PUB || z->type == ZMQ_XPUB)
                d.lifetime = PSI_LIFE_TTL;
            psi_token tok;
            psi_err err = {0};
            uint64_t t0 = pl_now_ns();
            /* ZeroMQ hides which peer gets a frame. */
            if (pl_store_put(buf, n, &d, pl_store_route_unknown(&d), &tok, &err) == 0) {
                PSI_STAT_ADD(put_ns, pl_now_ns() - t0);
                int l = pl_zf_token_encode(&tok, p->frame, sizeof(p->frame), &err);
                if (l > 0) {
                    p->kind = PL_ZF_TOKEN;
                    p->len = (size_t)l;
                    psi_log(PSI_LOG_DEBUG, "zmq: %zu-byte frame sent as token %s", n, tok.key);
                    return 0;
                }
                psi_log(PSI_LOG_ERROR, "zmq token encode failed: %s", err.msg);
            } else {
                static atomic_int warned;
                PSI_STAT_ADD(inline_fallbacks, 1);
                psi_log_once(warned, PSI_LOG_WARN,
                             "store refused a %zu-byte zmq frame (%s); sending inline", n,
                             err.msg);
            }
        }
    }
    if (pl_zf_needs_escape(buf, n))
        p->kind = PL_ZF_ESCAPED;
    return 0;
}

/* Sends a planned token or escaped frame. Returns 0 or -1 (errno). */
static int pl_zq_send_planned(void *s, const pl_zplan *p, const void *buf, size_t n, int flags)
{
    if (p->kind == PL_ZF_TOKEN)
        return pl_zr.zmq_send(s, p->frame, p->len, flags) < 0 ? -1 : 0;
    zmq_msg_t m;
    if (pl_zr.zmq_msg_init_size(&m, n + PL_ZF_HDR) != 0)
        return -1;
    uint8_t *d = pl_zr.zmq_msg_data(&m);
    pl_zf_header(d, PL_ZF_KIND_ESCAPE);
    memcpy(d + PL_ZF_HDR, buf, n);
    if (pl_zr.zmq_msg_send(&m, s, flags) < 0) {
        int e = errno;
        pl_zr.zmq_msg_close(&m);
        errno = e;
        return -1;
    }
    return 0;
}

static void pl_zq_sent(pl_zsock *z, const pl_zplan *p, size_t n, int flags)
{
    z->send_more = (flags & ZMQ_SNDMORE) != 0;
    if (p->kind == PL_ZF_TOKEN) {
        PSI_STAT_ADD(tokens_sent, 1);
        PSI_STAT_ADD(bytes_proxied, n);
        PSI_STAT_ADD(bytes_sent, n);
    }
}

int pl_zq_count(size_t n)
{
    return n < INT_MAX ? (int)n : INT_MAX; /* what libzmq returns */
}

static int pl_zq_send_buf(void *s, const void *buf, size_t len, int flags, bool is_const)
{
    pl_zsock *z = pl_zq_lookup(s);
    if (!z)
        return is_const ? ZREAL(zmq_send_const, -1, s, buf, len, flags)
                        : ZREAL(zmq_send, -1, s, buf, len, flags);
    pl_zq_depth++;
    pl_zplan p;
    int rc = pl_zq_plan(s, z, buf, len, flags, &p);
    if (rc == 0) {
        if (p.kind == PL_ZF_PLAIN)
            rc = is_const ? pl_zr.zmq_send_const(s, buf, len, flags) : pl_zr.zmq_send(s, buf, len, flags);
        else
            rc = pl_zq_send_planned(s, &p, buf, len, flags) == 0 ? pl_zq_count(len) : -1;
        if (rc >= 0)
            pl_zq_sent(z, &p, len, flags);
    }
    pl_zq_depth--;
    return rc;
}

int pl_zq_send(void *s, const void *buf, size_t len, int flags)
{
    return pl_zq_send_buf(s, buf, len, flags, false);
}

int pl_zq_send_const(void *s, const void *buf, size_t len, int flags)
{
    return pl_zq_send_buf(s, buf, len, flags, true);
}

int pl_zq_sendiov(void *s, struct iovec *iov, size_t count, int flags)
{
    pl_zsock *z = pl_zq_lookup(s);
    if (!z || !iov || count == 0)
        return ZREAL(zmq_sendiov, -1, s, iov, count, flags);
    /* As libzmq does it: one frame per element, the caller's flags on each
     * but the last, which loses ZMQ_SNDMORE. */
    int rc = 0;
    for (size_t i = 0; i < count; i++) {
        int f = i == count - 1 ? flags & ~ZMQ_SNDMORE : flags;
        rc = pl_zq_send_buf(s, iov[i].iov_base, iov[i].iov_len, f, false);
        if (rc < 0)
            break;
    }
    return rc;
}

int pl_zq_msg_send(zmq_msg_t *msg, void *s, int flags)
{
    pl_zsock *z = pl_zq_lookup(s);
    if (!z)
        return ZREAL(zmq_msg_send, -1, msg, s, flags);
    pl_zq_depth++;
    const void *buf = pl_zr.zmq_msg_data(msg);
    size_t len = pl_zr.zmq_msg_size(msg);
    pl_zplan p;
    int rc = pl_zq_plan(s, z, buf, len, flags, &p);
    if (rc == 0) {
        if (p.kind == PL_ZF_PLAIN) {
            rc = pl_zr.zmq_msg_send(msg, s, flags);
        } else if (pl_zq_send_planned(s, &p, buf, len, flags) == 0) {
            /* The application's message was sent as far as it can tell:
             * release it as libzmq would (its free function runs now, once,
             * unless a zmq_msg_copy still holds the content). */
            pl_zr.zmq_msg_close(msg);
            pl_zr.zmq_msg_init(msg);
            rc = pl_zq_count(len);
        } else {
            rc = -1;
        }
        if (rc >= 0)
            pl_zq_sent(z, &p, len, flags);
    }
    pl_zq_depth--;
    return rc;
}

