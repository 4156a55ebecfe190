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
 * Sockets are single-threaded by libzmq's own rule, so a socket's state is
 * read and written without a lock by the thread using the socket; only the
 * table that maps a socket handle to its state is locked. */
#include "pl_zmq.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <link.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pl_engine.h"
#include "pl_store.h"
#include "pl_zmqf.h"
#include "psi_log.h"
#include "psi_registry.h"
#include "psi_stats.h"

#ifndef ZMQ_METADATA
#define ZMQ_METADATA 95 /* libzmq >= 4.3 (a draft option in its header) */
#endif

#define PL_ZQ_PROP "X-Psi"       /* docs/protocol.md §7 */
#define PL_ZQ_ANNOUNCE "X-Psi:1" /* property name and value, as ZMQ_METADATA wants it */

/* ---- the real libzmq functions ------------------------------------------ */

#define PL_ZQ_FNS(X)                                                               \
    X(void *, zmq_socket, (void *ctx, int type))                                   \
    X(int, zmq_close, (void *s))                                                   \
    X(int, zmq_bind, (void *s, const char *ep))                                    \
    X(int, zmq_connect, (void *s, const char *ep))                                 \
    X(int, zmq_disconnect, (void *s, const char *ep))                              \
    X(int, zmq_setsockopt, (void *s, int opt, const void *v, size_t len))          \
    X(int, zmq_getsockopt, (void *s, int opt, void *v, size_t *len))               \
    X(int, zmq_send, (void *s, const void *buf, size_t len, int flags))            \
    X(int, zmq_send_const, (void *s, const void *buf, size_t len, int flags))      \
    X(int, zmq_sendiov, (void *s, struct iovec *iov, size_t count, int flags))     \
    X(int, zmq_msg_send, (zmq_msg_t * m, void *s, int flags))                      \
    X(int, zmq_recv, (void *s, void *buf, size_t len, int flags))                  \
    X(int, zmq_recviov, (void *s, struct iovec *iov, size_t *count, int flags))    \
    X(int, zmq_msg_recv, (zmq_msg_t * m, void *s, int flags))                      \
    X(int, zmq_msg_init, (zmq_msg_t * m))                                          \
    X(int, zmq_msg_init_size, (zmq_msg_t * m, size_t n))                           \
    X(int, zmq_msg_close, (zmq_msg_t * m))                                         \
    X(int, zmq_msg_move, (zmq_msg_t * dst, zmq_msg_t *src))                        \
    X(void *, zmq_msg_data, (zmq_msg_t * m))                                       \
    X(size_t, zmq_msg_size, (const zmq_msg_t *m))                                  \
    X(int, zmq_msg_more, (const zmq_msg_t *m))                                     \
    X(const char *, zmq_msg_gets, (const zmq_msg_t *m, const char *prop))          \
    X(void, zmq_version, (int *major, int *minor, int *patch))

#define PL_ZQ_PTR(ret, name, params) ret(*name) params;
static struct {
    PL_ZQ_FNS(PL_ZQ_PTR)
} zr;
#undef PL_ZQ_PTR

static pthread_once_t pl_zq_once = PTHREAD_ONCE_INIT;
static bool pl_zq_bound;      /* every function above was found */
static bool pl_zq_layout_ok;  /* zmq_msg_t is laid out as pl_zq_transplant expects */
static int pl_zq_mode = PL_ZQ_AUTO;

/* Set while a hook runs: libzmq calls some of its own exported functions
 * (zmq_sendmsg calls zmq_msg_send), and those calls reach our hooks. */
static _Thread_local int pl_zq_depth __attribute__((tls_model("initial-exec")));

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

/* libzmq 4.1-4.3 (msg.hpp): every zmq_msg_t variant starts with its
 * metadata pointer and keeps its flags byte at offset 43, bit 0 = more.
 * Checked on a live message before it is relied on. */
#define PL_ZQ_FLAGS_AT 43

static bool pl_zq_check_layout(void)
{
    int maj = 0, min = 0, pat = 0;
    zr.zmq_version(&maj, &min, &pat);
    if (maj != 4 || min < 1 || min > 3)
        return false;
    zmq_msg_t m;
    if (zr.zmq_msg_init_size(&m, 64) != 0)
        return false;
    unsigned char *b = (unsigned char *)&m;
    void *md;
    memcpy(&md, b, sizeof(md));
    bool ok = md == NULL && b[PL_ZQ_FLAGS_AT] == 0 && !zr.zmq_msg_more(&m);
    if (ok) {
        b[PL_ZQ_FLAGS_AT] |= 1;
        ok = zr.zmq_msg_more(&m) == 1;
        b[PL_ZQ_FLAGS_AT] &= (unsigned char)~1u;
    }
    zr.zmq_msg_close(&m);
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
    if (ok && !(*(void **)&zr.name = dlsym(h, #name))) {     \
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

/* The real call, for hooks that pass through: NULL (libzmq not found)
 * fails like a bad socket. */
#define ZREAL(name, fail, ...) \
    (zr.name ? zr.name(__VA_ARGS__) : (errno = ENOTSUP, fail))

/* ---- per-socket state ------------------------------------------------------ */

#define PL_ZQ_CONN_MAX 16
#define PL_ZQ_TAB 4096 /* sockets tracked at once; more pass through unchanged */

typedef struct pl_zconn {
    char ep[128];
    struct sockaddr_storage sa;
    socklen_t len;
    time_t checked; /* when the registry last said this peer is interposed (0: never) */
} pl_zconn;

typedef struct pl_zsock {
    _Atomic(void *) s; /* first: pl_zq_add clears what follows it */
    int type;
    bool started;   /* the first bind/connect happened: announcement decided */
    bool announced; /* X-Psi set: we escape, and may send tokens */
    bool bound;     /* some zmq_bind: peers we cannot vouch for in auto mode */
    bool unknown;   /* an endpoint that is not tcp/ipc, or one we cannot parse */
    bool send_more; /* the next frame sent continues a message */
    bool recv_more; /* the next frame received continues a message */
    int nconn;
    pl_zconn conn[PL_ZQ_CONN_MAX];
} pl_zsock;

/* The table is read without a lock (every send and receive looks a socket
 * up). Writers hold pl_zq_lock. A removed entry leaves a tombstone, so a
 * probe chain is never cut, and states are never freed: a closed socket's
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
            break;
        }
    }
    pthread_mutex_unlock(&pl_zq_lock);
}

/* The state of an application socket, or NULL: pass the call through. A
 * socket is in the table only if libzmq was bound and the interposer was
 * active when it was created, so the fast path needs no other check. */
static pl_zsock *pl_zq_lookup(void *s)
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

/* The receiving mirror of pl_zq_send_ours. */
static bool pl_zq_recv_ours(const pl_zsock *z)
{
    switch (z->type) {
    case ZMQ_ROUTER: case ZMQ_SUB: case ZMQ_XSUB:
        return z->recv_more;
    case ZMQ_XPUB: case ZMQ_PUB:
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
    void *s = zr.zmq_socket(ctx, type);
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
    if (want && zr.zmq_setsockopt(s, ZMQ_METADATA, PL_ZQ_ANNOUNCE, strlen(PL_ZQ_ANNOUNCE)) == 0)
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
    int rc = connecting ? zr.zmq_connect(s, ep) : zr.zmq_bind(s, ep);
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

static double pl_zq_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
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
    return zr.zmq_getsockopt(s, ZMQ_EVENTS, &ev, &l) == 0 && !(ev & ZMQ_POLLOUT);
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
            const char *rule = d.rule >= 0 ? pl_g.policy->rules[d.rule].name : "(none)";
            psi_log(PSI_LOG_WARN, "policy rule %s: zmq send of %zu bytes on socket %p", rule, n, s);
        }
        if (d.action == POL_ACT_PROXY && n >= d.threshold) {
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
            double t0 = pl_zq_now();
            if (pl_store_put(buf, n, &d, &tok, &err) == 0) {
                PSI_STAT_ADD(put_ns, (uint64_t)((pl_zq_now() - t0) * 1e9));
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
        return zr.zmq_send(s, p->frame, p->len, flags) < 0 ? -1 : 0;
    zmq_msg_t m;
    if (zr.zmq_msg_init_size(&m, n + PL_ZF_HDR) != 0)
        return -1;
    uint8_t *d = zr.zmq_msg_data(&m);
    pl_zf_header(d, PL_ZF_KIND_ESCAPE);
    memcpy(d + PL_ZF_HDR, buf, n);
    if (zr.zmq_msg_send(&m, s, flags) < 0) {
        int e = errno;
        zr.zmq_msg_close(&m);
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

static int pl_zq_count(size_t n)
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
            rc = is_const ? zr.zmq_send_const(s, buf, len, flags) : zr.zmq_send(s, buf, len, flags);
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
    const void *buf = zr.zmq_msg_data(msg);
    size_t len = zr.zmq_msg_size(msg);
    pl_zplan p;
    int rc = pl_zq_plan(s, z, buf, len, flags, &p);
    if (rc == 0) {
        if (p.kind == PL_ZF_PLAIN) {
            rc = zr.zmq_msg_send(msg, s, flags);
        } else if (pl_zq_send_planned(s, &p, buf, len, flags) == 0) {
            /* The application's message was sent as far as it can tell:
             * release it as libzmq would (its free function runs now, once,
             * unless a zmq_msg_copy still holds the content). */
            zr.zmq_msg_close(msg);
            zr.zmq_msg_init(msg);
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

/* ---- receiving -------------------------------------------------------------- */

/* One received frame, classified. The application's bytes are
 * data[0..len): inside msg (plain, escaped) or inside obj (token). */
typedef struct pl_zrx {
    int kind;
    const uint8_t *data;
    size_t len;
    psi_obj obj;
} pl_zrx;

static int pl_zq_resolve(const psi_token *tok, pl_zrx *rx)
{
    psi_err err = {0};
    double t0 = pl_zq_now();
    if (pl_store_resolve(tok, &rx->obj, &err) != 0) {
        psi_log(PSI_LOG_ERROR, "zmq: cannot resolve token %s (%llu bytes): %s", tok->key,
                (unsigned long long)tok->size, err.msg);
        PSI_STAT_ADD(errors, 1);
        errno = EIO;
        return -1;
    }
    PSI_STAT_ADD(get_ns, (uint64_t)((pl_zq_now() - t0) * 1e9));
    PSI_STAT_ADD(tokens_resolved, 1);
    PSI_STAT_ADD(bytes_resolved, rx->obj.len);
    rx->data = rx->obj.data;
    rx->len = rx->obj.len;
    psi_log(PSI_LOG_DEBUG, "zmq: resolved token %s (%zu bytes)", tok->key, rx->len);
    return 0;
}

/* Receives one frame into msg (initialised by the caller) and classifies
 * it. Returns 0, or -1 with errno: the real call's, or EIO/EPROTO for a
 * frame of ours that cannot be decoded (consumed; later frames follow). */
static int pl_zq_recv_frame(void *s, pl_zsock *z, zmq_msg_t *msg, int flags, pl_zrx *rx)
{
    memset(rx, 0, sizeof(*rx));
    if (zr.zmq_msg_recv(msg, s, flags) < 0)
        return -1;
    bool ours = pl_zq_recv_ours(z);
    if (z->type == ZMQ_ROUTER || z->type == ZMQ_SUB || z->type == ZMQ_XSUB)
        z->recv_more = zr.zmq_msg_more(msg) != 0; /* only they look at it */
    rx->kind = PL_ZF_PLAIN;
    rx->data = zr.zmq_msg_data(msg);
    rx->len = zr.zmq_msg_size(msg);
    if (!ours || !pl_zf_needs_escape(rx->data, rx->len))
        return 0;
    int saved = errno; /* zmq_msg_gets sets EINVAL for a missing property */
    bool announced = zr.zmq_msg_gets(msg, PL_ZQ_PROP) != NULL;
    errno = saved;
    if (!announced)
        return 0;
    psi_token tok;
    psi_err err = {0};
    int kind = pl_zf_classify(rx->data, rx->len, &tok, &err);
    if (kind < 0) {
        psi_log(PSI_LOG_ERROR, "zmq: bad frame from an interposed peer: %s", err.msg);
        PSI_STAT_ADD(errors, 1);
        errno = err.code == EPROTO ? EPROTO : EIO;
        return -1;
    }
    rx->kind = kind;
    if (kind == PL_ZF_ESCAPED) {
        rx->data += PL_ZF_HDR;
        rx->len -= PL_ZF_HDR;
        return 0;
    }
    return pl_zq_resolve(&tok, rx);
}

static void pl_zq_rx_done(pl_zrx *rx)
{
    if (rx->kind == PL_ZF_TOKEN)
        psi_obj_release(&rx->obj);
}

int pl_zq_recv(void *s, void *buf, size_t len, int flags)
{
    pl_zsock *z = pl_zq_lookup(s);
    if (!z)
        return ZREAL(zmq_recv, -1, s, buf, len, flags);
    pl_zq_depth++;
    zmq_msg_t m;
    zr.zmq_msg_init(&m);
    pl_zrx rx;
    int rc = -1;
    if (pl_zq_recv_frame(s, z, &m, flags, &rx) == 0) {
        /* zmq_recv truncates to len and returns the frame's real size. */
        memcpy(buf, rx.data, rx.len < len ? rx.len : len);
        rc = pl_zq_count(rx.len);
        pl_zq_rx_done(&rx);
    }
    int e = errno;
    zr.zmq_msg_close(&m);
    errno = e;
    pl_zq_depth--;
    return rc;
}

int pl_zq_recviov(void *s, struct iovec *iov, size_t *count, int flags)
{
    pl_zsock *z = pl_zq_lookup(s);
    if (!z || !iov || !count || *count == 0)
        return ZREAL(zmq_recviov, -1, s, iov, count, flags);
    pl_zq_depth++;
    /* As libzmq does it: up to *count frames of one message, each copied
     * into a buffer from malloc that the caller frees. */
    size_t max = *count;
    int nread = 0;
    bool more = true;
    *count = 0;
    for (size_t i = 0; more && i < max; i++) {
        zmq_msg_t m;
        zr.zmq_msg_init(&m);
        pl_zrx rx;
        if (pl_zq_recv_frame(s, z, &m, flags, &rx) != 0) {
            int e = errno;
            zr.zmq_msg_close(&m);
            errno = e;
            nread = -1;
            break;
        }
        iov[i].iov_len = rx.len;
        iov[i].iov_base = malloc(rx.len ? rx.len : 1);
        if (!iov[i].iov_base) {
            pl_zq_rx_done(&rx);
            zr.zmq_msg_close(&m);
            errno = ENOMEM;
            nread = -1;
            break;
        }
        memcpy(iov[i].iov_base, rx.data, rx.len);
        more = zr.zmq_msg_more(&m) != 0;
        pl_zq_rx_done(&rx);
        zr.zmq_msg_close(&m);
        ++*count;
        ++nread;
    }
    pl_zq_depth--;
    return nread;
}

/* Moves the received frame's metadata (zmq_msg_gets) and more flag onto
 * the message that replaces it. The metadata reference moves with the
 * pointer, so closing `from` afterwards drops nothing. */
static void pl_zq_transplant(zmq_msg_t *from, zmq_msg_t *to)
{
    if (!pl_zq_layout_ok)
        return;
    unsigned char *f = (unsigned char *)from, *t = (unsigned char *)to;
    void *md;
    memcpy(&md, f, sizeof(md));
    memcpy(t, &md, sizeof(md));
    memset(f, 0, sizeof(md));
    t[PL_ZQ_FLAGS_AT] |= f[PL_ZQ_FLAGS_AT] & 1;
}

int pl_zq_msg_recv(zmq_msg_t *msg, void *s, int flags)
{
    pl_zsock *z = pl_zq_lookup(s);
    if (!z)
        return ZREAL(zmq_msg_recv, -1, msg, s, flags);
    pl_zq_depth++;
    pl_zrx rx;
    int rc = -1;
    if (pl_zq_recv_frame(s, z, msg, flags, &rx) == 0) {
        rc = pl_zq_count(rx.len);
        if (rx.kind != PL_ZF_PLAIN) {
            /* A copy, not the mapping: the application may write into a
             * received message, and store mappings are read-only. */
            zmq_msg_t nm;
            if (zr.zmq_msg_init_size(&nm, rx.len) != 0) {
                rc = -1;
                errno = ENOMEM;
            } else {
                memcpy(zr.zmq_msg_data(&nm), rx.data, rx.len);
                pl_zq_transplant(msg, &nm);
                zr.zmq_msg_move(msg, &nm);
                zr.zmq_msg_close(&nm);
            }
            pl_zq_rx_done(&rx);
        }
    } else if (errno == EIO || errno == EPROTO) {
        /* The frame was consumed: leave an empty message, as after a
         * successful receive of nothing. */
        int e = errno;
        zr.zmq_msg_close(msg);
        zr.zmq_msg_init(msg);
        errno = e;
    }
    pl_zq_depth--;
    return rc;
}
