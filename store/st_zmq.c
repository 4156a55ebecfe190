/* st_zmq: the ZeroMQ peer store connector (DESIGN §6, docs/store-zmq.md).
 *
 * Objects live in a `psi store-server` (tools/psi_store_server.c), by
 * default the node-local one on ipc://<runtime dir>/store.sock, which a put
 * starts on demand. The token key names the server's endpoint and the
 * object's hash, so a receiver anywhere fetches it without configuration.
 *
 * Process-wide state: one libzmq context and one DEALER socket per server
 * endpoint, under one mutex. Every request carries an id; a reply with
 * another id (left over from a request that timed out) is skipped, and a
 * socket whose request timed out is closed (linger 0) so that nothing it
 * still queues reaches the server later. libzmq contexts must not be used
 * or terminated after fork: a child leaks its parent's and makes its own.
 * Finding and starting a server: st_zmq_start.c. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "psi_log.h"
#include "psi_store.h"
#include "st_zmq.h"

#define STZ_MAX_CONNS 16     /* cached server connections per process */
#define STZ_LEND_MIN (256u << 10) /* payloads sent without a copy */
#define STZ_SLOW_RATE 10000 /* bytes per ms (10 MB/s): the slowest link we wait for */

typedef struct st_zmq {
    psi_store base;
    stz_url u;
} st_zmq;

typedef struct stz_conn {
    struct stz_conn *next;
    void *sock;
    int timeout_ms;     /* the URL's, for sends and small replies */
    int rcv_timeout_ms; /* ZMQ_RCVTIMEO as set now */
    char ep[STZ_EP_STR_MAX];
} stz_conn;

static pthread_mutex_t stz_lock = PTHREAD_MUTEX_INITIALIZER;
static void *stz_ctx;
static stz_conn *stz_conns;
static int stz_nconns;
static uint32_t stz_next_id;
static pthread_once_t stz_atfork_once = PTHREAD_ONCE_INIT;

/* In a fork child: the parent's context and sockets are leaked, never used
 * or closed (libzmq's I/O threads did not survive the fork). */
static void stz_child_reset(void)
{
    pthread_mutex_init(&stz_lock, NULL);
    stz_ctx = NULL;
    stz_conns = NULL;
    stz_nconns = 0;
}

static void stz_atfork_init(void)
{
    pthread_atfork(NULL, NULL, stz_child_reset);
}

/* ---- connections ---------------------------------------------------------- */

static void stz_conn_drop(const stz_api *z, stz_conn *c)
{
    for (stz_conn **pp = &stz_conns; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            stz_nconns--;
            break;
        }
    z->close(c->sock);
    free(c);
}

/* The cached connection to ep, or a new one if something listens there.
 * Called with stz_lock held. */
static stz_conn *stz_conn_get(const stz_api *z, const stz_ep *ep, int timeout_ms, psi_err *err)
{
    char eps[STZ_EP_STR_MAX];

    if (stz_ep_string(ep, eps, sizeof eps, err) < 0)
        return NULL;
    for (stz_conn *c = stz_conns; c; c = c->next)
        if (strcmp(c->ep, eps) == 0 && c->timeout_ms == timeout_ms)
            return c;

    int e = stz_probe(ep, timeout_ms);
    if (e) {
        psi_fail(err, e == ENOENT ? ECONNREFUSED : e, "zmq store %s: no server (%s)", eps,
                 strerror(e));
        return NULL;
    }
    if (!stz_ctx) {
        stz_ctx = z->ctx_new();
        if (!stz_ctx) {
            psi_fail(err, EIO, "zmq store: zmq_ctx_new: %s", z->strerror(z->err()));
            return NULL;
        }
        z->ctx_set(stz_ctx, ZMQ_IO_THREADS, 1);
        /* Names our I/O thread, so the hooks pass its sockets through
         * (psi_store_thread_internal). */
        z->ctx_set(stz_ctx, ZMQ_THREAD_NAME_PREFIX, PSI_ZMQ_THREAD_PREFIX);
        z->ctx_set(stz_ctx, ZMQ_BLOCKY, 0);
    }
    if (stz_nconns >= STZ_MAX_CONNS) { /* drop the oldest (the list tail) */
        stz_conn *last = stz_conns;
        while (last->next)
            last = last->next;
        stz_conn_drop(z, last);
    }
    stz_conn *c = calloc(1, sizeof *c);
    if (!c) {
        psi_fail(err, ENOMEM, "zmq store %s: out of memory", eps);
        return NULL;
    }
    int zero = 0, one = 1;
    c->sock = z->socket(stz_ctx, ZMQ_DEALER);
    if (!c->sock || z->setsockopt(c->sock, ZMQ_LINGER, &zero, sizeof zero) < 0 ||
        z->setsockopt(c->sock, ZMQ_IMMEDIATE, &one, sizeof one) < 0 ||
        z->setsockopt(c->sock, ZMQ_RCVTIMEO, &timeout_ms, sizeof timeout_ms) < 0 ||
        z->setsockopt(c->sock, ZMQ_SNDTIMEO, &timeout_ms, sizeof timeout_ms) < 0 ||
        z->connect(c->sock, eps) < 0) {
        psi_fail(err, EIO, "zmq store %s: %s", eps, z->strerror(z->err()));
        if (c->sock)
            z->close(c->sock);
        free(c);
        return NULL;
    }
    c->timeout_ms = timeout_ms;
    c->rcv_timeout_ms = timeout_ms;
    snprintf(c->ep, sizeof c->ep, "%s", eps);
    c->next = stz_conns;
    stz_conns = c;
    stz_nconns++;
    return c;
}

/* ---- one request ---------------------------------------------------------- */

/* libzmq's errno after a failed send/recv, as the generic layer reads it:
 * EAGAIN from a timeout is ETIMEDOUT (transient, retried). */
static int stz_errno(const stz_api *z)
{
    int e = z->err();
    return e == EAGAIN || e == EINTR ? ETIMEDOUT : e == ETERM || e == ENOTSOCK ? EIO : e;
}

static int64_t stz_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A libzmq call interrupted by one of the application's signals is
 * restarted, within the request's deadline (each restart restarts the
 * socket timeout). */
#define STZ_RESTART(call, z, deadline)                                        \
    ({                                                                        \
        int r_;                                                               \
        while ((r_ = (call)) < 0 && (z)->err() == EINTR &&                    \
               stz_now_ms() < (deadline))                                     \
            ;                                                                 \
        r_;                                                                   \
    })

/* Sends req (+ payload, consumed) and waits for its reply. On success *rep
 * is filled and *data holds the data frame if the reply has one (the
 * caller closes it). A timed-out or broken connection is dropped. Called
 * with stz_lock held. */
static int stz_call(const stz_api *z, stz_conn *c, stz_req *req, zmq_msg_t *payload,
                    stz_rep *rep, zmq_msg_t *data, psi_err *err)
{
    uint8_t hdr[STZ_REQ_LEN];
    const char *step = "sending";
    psi_err local;
    int e = 0;

    if (!err)
        err = &local;
    z->msg_init(data);
    req->id = ++stz_next_id;
    stz_req_encode(req, hdr);
    /* Moving a large payload takes time of its own: the reply may wait
     * timeout_ms plus 1 ms per STZ_SLOW_RATE bytes moved. */
    int wait_ms = c->timeout_ms;
    uint64_t moved = req->op == STZ_PUT || req->op == STZ_GET ? req->size : 0;
    if (moved / STZ_SLOW_RATE < (uint64_t)(INT_MAX - wait_ms))
        wait_ms += (int)(moved / STZ_SLOW_RATE);
    else
        wait_ms = INT_MAX;
    if (wait_ms != c->rcv_timeout_ms &&
        z->setsockopt(c->sock, ZMQ_RCVTIMEO, &wait_ms, sizeof wait_ms) == 0)
        c->rcv_timeout_ms = wait_ms;
    int64_t deadline = stz_now_ms() + (int64_t)c->timeout_ms + wait_ms;
    if (STZ_RESTART(z->send(c->sock, hdr, sizeof hdr, payload ? ZMQ_SNDMORE : 0), z,
                    deadline) < 0) {
        e = stz_errno(z);
        if (payload)
            z->msg_close(payload);
        goto broken;
    }
    if (payload && STZ_RESTART(z->msg_send(payload, c->sock, 0), z, deadline) < 0) {
        e = stz_errno(z);
        z->msg_close(payload);
        goto broken;
    }
    step = "waiting for the reply";
    for (int skipped = 0; skipped < 64; skipped++) {
        zmq_msg_t h;
        z->msg_init(&h);
        if (STZ_RESTART(z->msg_recv(&h, c->sock, 0), z, deadline) < 0) {
            e = stz_errno(z);
            z->msg_close(&h);
            goto broken;
        }
        int more = z->msg_more(&h), nmore = 0;
        int rc = stz_rep_decode(z->msg_data(&h), z->msg_size(&h), rep, err);
        z->msg_close(&h);
        while (more) { /* every frame of this message, even a bad one */
            zmq_msg_t *m = nmore == 0 ? data : &h;
            if (nmore > 0)
                z->msg_init(m);
            if (STZ_RESTART(z->msg_recv(m, c->sock, 0), z, deadline) < 0) {
                e = stz_errno(z);
                if (m != data)
                    z->msg_close(m);
                goto broken;
            }
            more = z->msg_more(m);
            if (nmore++ > 0)
                z->msg_close(m);
        }
        if (rc < 0 || (rep->id == req->id &&
                        stz_rep_check(rep, nmore, z->msg_size(data), err) < 0)) {
            char why[sizeof err->msg];
            snprintf(why, sizeof why, "%s", err->msg);
            z->msg_close(data);
            psi_fail(err, EPROTO, "zmq store %s: bad reply: %.150s", c->ep, why);
            stz_conn_drop(z, c);
            return -1;
        }
        if (rep->id == req->id && rep->op == req->op)
            return 0;
        z->msg_close(data); /* a stale reply of an abandoned request */
        z->msg_init(data);
    }
    e = EPROTO;
broken:
    z->msg_close(data);
    psi_fail(err, e, "zmq store %s: %s: %s", c->ep, step, strerror(e));
    stz_conn_drop(z, c);
    return -1;
}

/* The server's error reply as a psi_err, message frame included. */
static int stz_rep_fail(const stz_api *z, const char *ep, const stz_rep *rep, zmq_msg_t *data,
                        const char *what, psi_err *err)
{
    int n = (int)z->msg_size(data);
    psi_fail(err, (int)rep->status, "zmq store %s: %s: %.*s", ep, what, n,
             (const char *)z->msg_data(data));
    z->msg_close(data);
    return -1;
}

/* ---- the connector -------------------------------------------------------- */

/* Takes the lock and the library; NULL (err set) if libzmq is missing. */
static const stz_api *stz_enter(psi_err *err)
{
    const stz_api *z = stz_load(err);
    if (!z)
        return NULL;
    pthread_once(&stz_atfork_once, stz_atfork_init);
    PSI_STORE_ENTER();
    pthread_mutex_lock(&stz_lock);
    return z;
}

static void stz_leave(void)
{
    pthread_mutex_unlock(&stz_lock);
    PSI_STORE_LEAVE();
}

/* The payload, copied into a message of its own. */
static int stz_fill(const stz_api *z, zmq_msg_t *m, const void *buf, size_t len)
{
    if (z->msg_init_size(m, len) < 0)
        return -1;
    memcpy(z->msg_data(m), buf, len);
    return 0;
}

/* A large payload is sent from the application's buffer, not a copy: the
 * message borrows it, and put returns only once libzmq has let go of it
 * (stz_lend_done, called by libzmq's I/O thread after the last byte is
 * written, or when a dropped socket discards the message). */
typedef struct stz_lend {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
} stz_lend;

static void stz_lend_done(void *data, void *hint)
{
    stz_lend *l = hint;
    pthread_mutex_lock(&l->mu);
    l->done = 1;
    pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

static void stz_lend_wait(stz_lend *l)
{
    pthread_mutex_lock(&l->mu);
    while (!l->done)
        pthread_cond_wait(&l->cv, &l->mu);
    pthread_mutex_unlock(&l->mu);
}

static int st_zmq_put(psi_store *s, const void *buf, size_t len, const psi_put_opts *o,
                      psi_token *tok, psi_err *err)
{
    st_zmq *zs = (st_zmq *)s;
    stz_req req = {.op = STZ_PUT, .lifetime = o->lifetime, .ttl = o->ttl, .size = len};
    zmq_msg_t payload, data;
    stz_rep rep;
    stz_ep kep = zs->u.ep;
    char key[PSI_TOKEN_KEY_MAX + 1];
    psi_err local;

    if (!err)
        err = &local;
    const stz_api *z = stz_enter(err);
    if (!z)
        return -1;
    int rc = -1;
    stz_conn *c = stz_conn_get(z, &zs->u.ep, zs->u.timeout_ms, err);
    if (!c && zs->u.autostart && err->code == ECONNREFUSED &&
        stz_autostart(&zs->u.ep, err) == 0)
        c = stz_conn_get(z, &zs->u.ep, zs->u.timeout_ms, err);
    if (!c)
        goto out;
    stz_lend lend = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    bool lent = len >= STZ_LEND_MIN;
    req.sum = psi_hash_buf(buf, len);
    if (lent && z->msg_init_data(&payload, (void *)buf, len, stz_lend_done, &lend) < 0)
        lend.done = 1, lent = false;
    if (!lent && stz_fill(z, &payload, buf, len) < 0) {
        psi_fail(err, ENOMEM, "zmq store %s: no memory for a %zu-byte message", c->ep, len);
        goto out;
    }
    char eps[STZ_EP_STR_MAX];
    snprintf(eps, sizeof eps, "%s", c->ep); /* c may be dropped by stz_call */
    int called = stz_call(z, c, &req, &payload, &rep, &data, err);
    if (lent)
        stz_lend_wait(&lend);
    if (called < 0)
        goto out;
    if (rep.status != 0) {
        stz_rep_fail(z, eps, &rep, &data, rep.status == ENOSPC ? "store full" : "put", err);
        goto out;
    }
    /* The server's --advertise address, if it has one, is what a receiver
     * on another node can reach. */
    size_t an = z->msg_size(&data);
    if (an > 0) {
        char adv[STZ_ADVERTISE_MAX + 1];
        memcpy(adv, z->msg_data(&data), an);
        adv[an] = '\0';
        if (stz_ep_parse(adv, &kep, err) < 0) {
            z->msg_close(&data);
            psi_fail(err, EPROTO, "zmq store %s: server advertises a bad address '%s'", eps,
                     adv);
            goto out;
        }
    }
    z->msg_close(&data);
    int kn = stz_key_encode(&kep, &req.sum, key, err);
    if (kn < 0)
        goto out;
    memset(tok, 0, sizeof *tok);
    tok->connector = PSI_CONN_ZMQ;
    tok->lifetime = o->lifetime;
    tok->size = len;
    tok->sum = req.sum;
    tok->ttl = o->ttl ? o->ttl : PSI_DEFAULT_TTL;
    tok->key_len = (uint8_t)kn;
    memcpy(tok->key, key, (size_t)kn + 1);
    rc = 0;
out:
    stz_leave();
    return rc;
}

/* The token's server endpoint and hash; EIO unless the key is ours and
 * agrees with the token's checksum. */
static int stz_token_ep(const psi_token *tok, stz_ep *ep, psi_err *err)
{
    psi_hash128 sum;
    if (tok->key_len > PSI_TOKEN_KEY_MAX ||
        stz_key_decode(tok->key, tok->key_len, ep, &sum, err) < 0)
        return -1;
    if (sum.lo != tok->sum.lo || sum.hi != tok->sum.hi)
        return psi_fail(err, EIO, "zmq store: token key %s does not match the token's "
                        "checksum", tok->key);
    if (tok->size == 0 || tok->size > SIZE_MAX)
        return psi_fail(err, EIO, "zmq store: object %s: bad size %llu", tok->key,
                        (unsigned long long)tok->size);
    return 0;
}

static void stz_msg_done(void *ctx)
{
    const stz_api *z = stz_load(NULL);
    zmq_msg_t *m = ctx;
    PSI_STORE_ENTER();
    z->msg_close(m);
    PSI_STORE_LEAVE();
    free(m);
}

/* A request about one object at the token's server. Keeps the reply's
 * data frame in *data for GET. */
static int stz_obj_call(st_zmq *zs, uint8_t op, const psi_token *tok, stz_rep *rep,
                        zmq_msg_t *data, psi_err *err)
{
    stz_req req = {.op = op, .lifetime = tok->lifetime, .size = tok->size, .sum = tok->sum};
    stz_ep ep;
    psi_err local;

    if (!err)
        err = &local;
    if (stz_token_ep(tok, &ep, err) < 0)
        return -1;
    const stz_api *z = stz_enter(err);
    if (!z)
        return -1;
    int rc = -1;
    stz_conn *c = stz_conn_get(z, &ep, zs->u.timeout_ms, err);
    if (c) {
        char eps[STZ_EP_STR_MAX];
        snprintf(eps, sizeof eps, "%s", c->ep);
        if (stz_call(z, c, &req, NULL, rep, data, err) == 0) {
            if (rep->status == 0)
                rc = 0;
            else
                stz_rep_fail(z, eps, rep, data,
                             rep->status == ENOENT ? "no such object" : "request", err);
            if (rc < 0 || op != STZ_GET)
                z->msg_close(data);
        }
        if (rc < 0 && err->code == ENOENT)
            psi_fail(err, EIO, "zmq store %s: object %s not found (expired or released)",
                     eps, tok->key);
    }
    stz_leave();
    return rc;
}

static int st_zmq_get(psi_store *s, const psi_token *tok, psi_obj *obj, psi_err *err)
{
    stz_rep rep;
    zmq_msg_t data;

    if (stz_obj_call((st_zmq *)s, STZ_GET, tok, &rep, &data, err) < 0)
        return -1;
    /* The reply's frame is the payload: kept alive, not copied, until
     * psi_obj_release calls done. */
    zmq_msg_t *m = malloc(sizeof *m);
    const stz_api *z = stz_load(NULL);
    if (!m) {
        PSI_STORE_ENTER();
        z->msg_close(&data);
        PSI_STORE_LEAVE();
        return psi_fail(err, ENOMEM, "zmq store: out of memory");
    }
    PSI_STORE_ENTER();
    z->msg_init(m);
    z->msg_move(m, &data);
    z->msg_close(&data);
    obj->data = z->msg_data(m);
    obj->len = z->msg_size(m);
    PSI_STORE_LEAVE();
    obj->map_base = NULL;
    obj->heap = NULL;
    obj->done = stz_msg_done;
    obj->done_ctx = m;
    return 0;
}

static int st_zmq_release(psi_store *s, const psi_token *tok, psi_err *err)
{
    stz_rep rep;
    zmq_msg_t data;

    if (tok->lifetime == PSI_LIFE_TTL)
        return 0; /* the object expires */
    return stz_obj_call((st_zmq *)s, STZ_RELEASE, tok, &rep, &data, err);
}

static int st_zmq_exists(psi_store *s, const psi_token *tok)
{
    stz_rep rep;
    zmq_msg_t data;

    return stz_obj_call((st_zmq *)s, STZ_PING, tok, &rep, &data, NULL) == 0 && rep.v1 == 1;
}

/* A request about the store as a whole, at the store's own endpoint. */
static int stz_store_call(st_zmq *zs, uint8_t op, stz_rep *rep, zmq_msg_t *data,
                          const stz_api **zp, psi_err *err)
{
    stz_req req = {.op = op};
    const stz_api *z = stz_enter(err);
    if (!z)
        return -1;
    *zp = z;
    int rc = -1;
    stz_conn *c = stz_conn_get(z, &zs->u.ep, zs->u.timeout_ms, err);
    if (c) {
        char eps[STZ_EP_STR_MAX];
        snprintf(eps, sizeof eps, "%s", c->ep);
        if (stz_call(z, c, &req, NULL, rep, data, err) == 0) {
            if (rep->status == 0)
                rc = 0;
            else
                stz_rep_fail(z, eps, rep, data, "request", err);
        }
    }
    stz_leave();
    return rc;
}

static int st_zmq_gc(psi_store *s, psi_gc_report *r, psi_err *err)
{
    const stz_api *z;
    stz_rep rep;
    zmq_msg_t data;

    memset(r, 0, sizeof *r);
    if (stz_store_call((st_zmq *)s, STZ_GC, &rep, &data, &z, err) < 0)
        return -1;
    PSI_STORE_ENTER();
    z->msg_close(&data);
    PSI_STORE_LEAVE();
    r->objects_removed = rep.v1;
    r->bytes_freed = rep.v2;
    return 0;
}

static int st_zmq_ls(psi_store *s, psi_ls_fn fn, void *arg, psi_err *err)
{
    st_zmq *zs = (st_zmq *)s;
    const stz_api *z;
    stz_rep rep;
    zmq_msg_t data;
    char eps[STZ_EP_STR_MAX];

    if (stz_store_call(zs, STZ_LS, &rep, &data, &z, err) < 0)
        return -1;
    stz_ep_string(&zs->u.ep, eps, sizeof eps, NULL);
    PSI_STORE_ENTER();
    const uint8_t *p = z->msg_data(&data);
    size_t n = z->msg_size(&data) / STZ_LS_REC_LEN;
    PSI_STORE_LEAVE();
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        stz_ls_rec r;
        psi_obj_info o = {0};
        stz_ls_decode(p + i * STZ_LS_REC_LEN, &r);
        if (stz_key_encode(&zs->u.ep, &r.sum, o.key, NULL) < 0)
            psi_hash_hex(&r.sum, o.key);
        o.size = r.size;
        o.age = r.age;
        o.refs = r.refs;
        o.expires = r.expires;
        o.lifetime = r.lifetime;
        snprintf(o.where, sizeof o.where, "%.95s", eps);
        rc = fn(&o, arg);
    }
    PSI_STORE_ENTER();
    z->msg_close(&data);
    PSI_STORE_LEAVE();
    return 0;
}

int stz_stats_get(psi_store *s, stz_stats *out, psi_err *err)
{
    const stz_api *z;
    stz_rep rep;
    zmq_msg_t data;

    if (s->ops != &psi_store_zmq_ops)
        return psi_fail(err, EINVAL, "store %s is not a zmq store", s->url);
    if (stz_store_call((st_zmq *)s, STZ_STATS, &rep, &data, &z, err) < 0)
        return -1;
    PSI_STORE_ENTER();
    stz_stats_decode(z->msg_data(&data), out);
    z->msg_close(&data);
    PSI_STORE_LEAVE();
    return 0;
}

/* url NULL or "": PSI_STORE if it is a zmq:// URL, else the node-local
 * default. No I/O here: the first put connects (and starts a server). */
static int st_zmq_open(const char *url, psi_store **out, psi_err *err)
{
    if (!url || !url[0]) {
        const char *env = getenv("PSI_STORE");
        url = env && strncmp(env, "zmq://", 6) == 0 ? env : "zmq://";
    }
    if (strlen(url) >= sizeof(((psi_store *)0)->url))
        return psi_fail(err, ENAMETOOLONG, "PSI_STORE: URL too long");
    st_zmq *zs = calloc(1, sizeof *zs);
    if (!zs)
        return psi_fail(err, ENOMEM, "zmq store: out of memory");
    if (stz_url_parse(url, &zs->u, err) < 0) {
        free(zs);
        return -1;
    }
    zs->base.ops = &psi_store_zmq_ops;
    snprintf(zs->base.url, sizeof zs->base.url, "%s", url);
    *out = &zs->base;
    return 0;
}

/* Connections are shared by the process and outlive a handle. */
static void st_zmq_close(psi_store *s)
{
    free(s);
}

static void st_zmq_forget(psi_store *s)
{
    stz_child_reset();
    free(s);
}

const psi_store_ops psi_store_zmq_ops = {
    .scheme = "zmq",
    .id = PSI_CONN_ZMQ,
    .open = st_zmq_open,
    .put = st_zmq_put,
    .get = st_zmq_get,
    .release = st_zmq_release,
    .exists = st_zmq_exists,
    .gc = st_zmq_gc,
    .ls = st_zmq_ls,
    .close = st_zmq_close,
    .forget = st_zmq_forget,
};
