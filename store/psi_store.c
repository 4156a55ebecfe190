/* psi_store: the generic connector layer (DESIGN §6).
 *
 * Parses store URLs, dispatches to connectors through their ops tables and
 * owns the rules every connector shares: a resolved payload is checked
 * against the token's length and xxh3-128 before anyone sees it. */
#include "psi_store.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "psi_err.h"
#include "psi_log.h"
#include "psi_registry.h"
#include "st_shm.h"

#define PSI_STR2(x) #x
#define PSI_STR(x) PSI_STR2(x)

/* Connectors compiled into this build, by id. */
static const psi_store_ops *const store_ops[] = {
    &psi_store_file_ops,
    &psi_store_shm_ops,
    &psi_store_zmq_ops,
    &psi_store_redis_ops,
};

/* Every connector the protocol knows, indexed by psi_conn_id, so a URL or a
 * token naming one this build lacks gets a message naming it. */
static const char *const conn_names[] = {
    [PSI_CONN_FILE] = "file",
    [PSI_CONN_SHM] = "shm",
    [PSI_CONN_REDIS] = "redis",
    [PSI_CONN_ZMQ] = "zmq",
};

#define N_CONN (sizeof conn_names / sizeof conn_names[0])

const psi_store_ops *psi_store_ops_by_id(uint8_t id)
{
    for (size_t i = 0; i < sizeof store_ops / sizeof store_ops[0]; i++)
        if (store_ops[i]->id == id)
            return store_ops[i];
    return NULL;
}

const psi_store_ops *psi_store_ops_by_scheme(const char *scheme, size_t len)
{
    for (size_t i = 0; i < sizeof store_ops / sizeof store_ops[0]; i++) {
        const char *s = store_ops[i]->scheme;
        if (strlen(s) == len && memcmp(s, scheme, len) == 0)
            return store_ops[i];
    }
    return NULL;
}

static int scheme_known(const char *scheme, size_t len)
{
    for (size_t i = 0; i < N_CONN; i++)
        if (conn_names[i] && strlen(conn_names[i]) == len &&
            memcmp(conn_names[i], scheme, len) == 0)
            return 1;
    return 0;
}


/* ---- default directory ---------------------------------------------------- */

static char default_dir[1024];
static pthread_once_t default_dir_once = PTHREAD_ONCE_INIT;

static void default_dir_init(void)
{
    struct stat st;

    /* tmpfs is the fast path (DESIGN §8); fall back to the runtime dir on
     * hosts whose /dev/shm is missing or read-only (some containers). */
    if (stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) &&
        access("/dev/shm", W_OK | X_OK) == 0) {
        snprintf(default_dir, sizeof default_dir, "/dev/shm/psi-%u", (unsigned)geteuid());
        return;
    }
    const char *rt = psi_runtime_dir();
    if (rt && (size_t)snprintf(default_dir, sizeof default_dir, "%s/store", rt) <
                  sizeof default_dir)
        return;
    default_dir[0] = '\0';
}

const char *psi_store_default_dir(void)
{
    pthread_once(&default_dir_once, default_dir_init);
    return default_dir[0] ? default_dir : NULL;
}

/* ---- open / close / put --------------------------------------------------- */

int psi_store_open(const char *url, psi_store **out, psi_err *err)
{
    *out = NULL;
    if (!url || !url[0])
        return psi_store_file_ops.open(NULL, out, err);

    const char *sep = strstr(url, "://");
    if (!sep || sep == url)
        return psi_fail(err, EINVAL, "PSI_STORE: malformed URL '%s' (expected "
                        "scheme://..., e.g. file:///dir)", url);

    size_t n = (size_t)(sep - url);
    const psi_store_ops *ops = psi_store_ops_by_scheme(url, n);
    if (ops)
        return ops->open(url, out, err);
    if (scheme_known(url, n))
        return psi_fail(err, EINVAL, "PSI_STORE: connector '%.*s' is not available in "
                        "this build", (int)n, url);
    return psi_fail(err, EINVAL, "PSI_STORE: unknown connector '%.*s' in '%s'", (int)n, url,
                    url);
}

void psi_store_close(psi_store *s)
{
    if (s)
        s->ops->close(s);
}

int psi_store_put(psi_store *s, const void *buf, size_t len, const psi_put_opts *o,
                  psi_token *tok, psi_err *err)
{
    static const psi_put_opts defaults = {.lifetime = PSI_LIFE_REFCOUNT, .ttl = 0};

    if (len == 0)
        return psi_fail(err, EINVAL, "store put: empty payload (tokens carry >= 1 byte)");
    if (!o)
        o = &defaults;
    if (o->lifetime > PSI_LIFE_EVICT_ON_READ)
        return psi_fail(err, EINVAL, "store put: unknown lifetime %u", (unsigned)o->lifetime);
    return s->ops->put(s, buf, len, o, tok, err);
}

int psi_store_ref(psi_store *s, const psi_token *tok, psi_token *out, psi_err *err)
{
    if (!s->ops->ref || s->ops->id != tok->connector)
        return psi_fail(err, ENOTSUP, "store %s: cannot add a reference to an object",
                        s->ops->scheme);
    return s->ops->ref(s, tok, out, err);
}

/* ---- resolve -------------------------------------------------------------- */

_Thread_local int psi_store_internal;

int psi_store_thread_internal(void)
{
    /* -1 unknown, else the answer: libzmq names its threads before they do
     * any I/O, so the first look is final. */
    static _Thread_local signed char zmq_bg = -1;
    char name[16] = "";

    if (psi_store_internal)
        return 1;
    if (zmq_bg < 0) {
        int saved = errno;
        zmq_bg = prctl(PR_GET_NAME, name) == 0 &&
                 strncmp(name, PSI_STR(PSI_ZMQ_THREAD_PREFIX) "/ZMQbg",
                         sizeof PSI_STR(PSI_ZMQ_THREAD_PREFIX) "/ZMQbg" - 1) == 0;
        errno = saved;
    }
    return zmq_bg;
}

int psi_store_transient(int code)
{
    switch (code) {
    case ECONNREFUSED:
    case ECONNRESET:
    case ECONNABORTED:
    case ETIMEDOUT:
    case EHOSTUNREACH:
    case ENETUNREACH:
    case ENOTCONN:
    case EPIPE:
    case EAGAIN:
    case EBUSY: /* a server loading its data set (Redis LOADING) */
        return 1;
    default:
        return 0;
    }
}

/* PSI_STORE_RETRIES and PSI_STORE_BACKOFF_MS, read once. Values out of
 * range keep the default (a resolve must stay bounded). */
static int retry_count = 6, retry_backoff_ms = 20;
static pthread_once_t retry_once = PTHREAD_ONCE_INIT;

static void retry_init(void)
{
    const char *v = getenv("PSI_STORE_RETRIES");
    char *end;
    long n;

    if (v && *v && (n = strtol(v, &end, 10)) >= 0 && n <= 20 && !*end)
        retry_count = (int)n;
    v = getenv("PSI_STORE_BACKOFF_MS");
    if (v && *v && (n = strtol(v, &end, 10)) >= 1 && n <= 1000 && !*end)
        retry_backoff_ms = (int)n;
}

/* get, retried with backoff while the failure is one that may pass. */
static int get_retried(psi_store *s, const psi_token *tok, psi_obj *obj, psi_err *err)
{
    pthread_once(&retry_once, retry_init);
    long wait_ms = retry_backoff_ms;
    for (int attempt = 0;; attempt++) {
        if (s->ops->get(s, tok, obj, err) == 0)
            return 0;
        if (attempt >= retry_count || !psi_store_transient(err->code))
            break;
        struct timespec ts = {.tv_sec = wait_ms / 1000, .tv_nsec = (wait_ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
            ;
        wait_ms = wait_ms * 2 > 1000 ? 1000 : wait_ms * 2;
    }
    if (retry_count > 0 && psi_store_transient(err->code)) {
        /* Appended in place; a message already near the limit loses the
         * suffix rather than its own end. */
        size_t used = strnlen(err->msg, sizeof err->msg);
        char suffix[32];
        int n = snprintf(suffix, sizeof suffix, " (after %d retries)", retry_count);
        if (n > 0 && used + (size_t)n < sizeof err->msg)
            memcpy(err->msg + used, suffix, (size_t)n + 1);
    }
    return -1;
}

/* One default store per connector id, opened on first use by a token that
 * names a connector other than the local one. Published with a
 * compare-and-swap rather than under a mutex: no lock is held across fork()
 * or a slow connect, and a thread that loses the race closes its copy. The
 * stores live for the life of the process. */
static _Atomic(psi_store *) default_stores[N_CONN];

/* A failed resolve is EIO for the reader, whatever the connector said. */
static void set_eio(psi_err *err)
{
    if (err)
        err->code = EIO;
}

static psi_store *default_store(uint8_t id, psi_err *err)
{
    psi_store *s = atomic_load_explicit(&default_stores[id], memory_order_acquire);
    if (s)
        return s;

    const psi_store_ops *ops = psi_store_ops_by_id(id);
    if (!ops) {
        psi_fail(err, EIO, "token names connector '%s', which is not available in this "
                 "build", conn_names[id]);
        return NULL;
    }
    if (ops->open(NULL, &s, err) < 0) {
        set_eio(err);
        return NULL;
    }
    psi_store *expected = NULL;
    if (!atomic_compare_exchange_strong(&default_stores[id], &expected, s)) {
        ops->close(s);
        s = expected;
    }
    return s;
}

static psi_store *resolve_store(psi_store *local, uint8_t id, psi_err *err)
{
    if (local && local->ops->id == id)
        return local;
    if (id >= N_CONN || !conn_names[id]) {
        psi_fail(err, EIO, "token names unknown connector %u", (unsigned)id);
        return NULL;
    }
    return default_store(id, err);
}

/* A key for a message, bounded even if the token was never validated. */
#define KEY_ARG(t) ((t)->key_len <= PSI_TOKEN_KEY_MAX ? (int)(t)->key_len : 0), (t)->key

/* Length and xxh3-128 of what the connector returned, against the token. */
static int check_payload(const psi_token *tok, const psi_obj *obj, psi_err *err)
{
    psi_hash128 h = psi_hash_buf(obj->data, obj->len);
    if (h.lo != tok->sum.lo || h.hi != tok->sum.hi)
        return psi_fail(err, EIO, "object %.*s: payload checksum mismatch (corrupted store "
                        "object)", KEY_ARG(tok));
    return 0;
}

void psi_store_atfork_child(void)
{
    for (size_t i = 0; i < N_CONN; i++) {
        psi_store *s = atomic_exchange(&default_stores[i], NULL);
        if (s)
            psi_store_forget(s);
    }
}

void psi_store_forget(psi_store *s)
{
    if (s && s->ops->forget)
        s->ops->forget(s);
    else if (s)
        s->ops->close(s);
}

static int resolve(psi_store *local, const psi_token *tok, psi_obj *obj, bool lazy,
                   psi_err *err)
{
    static atomic_int release_warned;
    psi_err rel_err = {0};

    memset(obj, 0, sizeof *obj);
    psi_store *s = resolve_store(local, tok->connector, err);
    if (!s)
        return -1;
    psi_err local_err;
    if (!err)
        err = &local_err;
    if (get_retried(s, tok, obj, err) < 0) {
        set_eio(err); /* whatever the cause, the reader sees EIO (§4) */
        return -1;
    }
    if (obj->len != tok->size) {
        psi_fail(err, EIO, "object %.*s: payload is %zu bytes, token says %llu", KEY_ARG(tok),
                 obj->len, (unsigned long long)tok->size);
        psi_obj_release(obj);
        return -1;
    }
    if (obj->verify ? !lazy && obj->verify(obj->done_ctx, 0, obj->len, err) < 0
                    : check_payload(tok, obj, err) < 0) {
        /* The reference is kept: a bad object is evidence, and the TTL
         * safety net (psi gc) removes it later. */
        psi_obj_release(obj);
        return -1;
    }
    /* The payload is already mapped or copied, so failing to drop the
     * reference costs only disk space until psi gc; the read succeeds. */
    if (s->ops->release(s, tok, &rel_err) < 0)
        psi_log_once(release_warned, PSI_LOG_WARN, "store: %s (left for psi gc)",
                     rel_err.msg);
    return 0;
}

int psi_store_resolve(psi_store *local, const psi_token *tok, psi_obj *obj, psi_err *err)
{
    return resolve(local, tok, obj, false, err);
}

int psi_store_resolve_lazy(psi_store *local, const psi_token *tok, psi_obj *obj, psi_err *err)
{
    return resolve(local, tok, obj, true, err);
}

int psi_obj_verify(const psi_obj *o, size_t off, size_t len, psi_err *err)
{
    if (!o->verify || len == 0)
        return 0;
    return o->verify(o->done_ctx, off, len, err);
}

/* The step of psi_obj_copy: a multiple of the shm connector's 256 KiB
 * piece; 4 MiB stays in L3 and lets memcpy run long (32 writes of 64 MiB,
 * tests/bench/run.sh: 0.35 s at 4 MiB, 0.37 s at 1 MiB, 0.39 s at 16 MiB,
 * 0.49 s at 256 KiB). */
#define PSI_COPY_STEP ((size_t)4 << 20)

int psi_obj_copy(const psi_obj *o, size_t off, void *dst, size_t len, psi_err *err)
{
    uint8_t *d = dst;
    if (!o->verify) {
        memcpy(d, o->data + off, len);
        return 0;
    }
    for (size_t done = 0; done < len;) {
        size_t pos = off + done;
        size_t k = PSI_COPY_STEP - pos % PSI_COPY_STEP;
        if (k > len - done)
            k = len - done;
        if (o->verify(o->done_ctx, pos, k, err) != 0)
            return -1;
        memcpy(d + done, o->data + pos, k);
        done += k;
    }
    return 0;
}

psi_hash128 psi_token_sum(uint8_t connector, const void *buf, size_t len)
{
    if (connector == PSI_CONN_SHM)
        return st_shm_sum(buf, len);
    return psi_hash_buf(buf, len);
}

void psi_obj_release(psi_obj *o)
{
    if (!o)
        return;
    if (o->map_base)
        munmap(o->map_base, o->map_len);
    free(o->heap);
    void (*done)(void *) = o->done;
    void *ctx = o->done_ctx;
    memset(o, 0, sizeof *o);
    if (done)
        done(ctx);
}
