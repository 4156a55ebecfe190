/* st_redis: the Redis connector (DESIGN §6, docs/store-redis.md).
 *
 * Keys on the server, for a token key H (P = the URL's prefix, "psi:"):
 *   P{H}      the object, or its first chunk
 *   P{H}#i    chunk i (i >= 1) of an object larger than one chunk
 *   P{H}.m    a hash: refs, t (put time), size, n (chunks), exp, life
 * The {H} hashtag keeps all of them in one Cluster slot, so the Lua scripts
 * below may touch them together. H is the payload's xxh3-128 in hex for
 * refcounted objects (the same bytes put twice share one object with refs
 * 2), H-t for TTL objects (shared, never counted) and H-e<nonce> for
 * evict-on-read objects (one per put: the first read deletes it).
 *
 * hiredis is loaded with dlopen on first use; a store handle serialises
 * its users with a mutex (a hiredis context is not thread-safe) and runs
 * every hiredis call inside PSI_STORE_ENTER/LEAVE. A connection that
 * failed is dropped and made again by the next call. */
#include <dlfcn.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "psi_log.h"
#include "psi_store.h"
#include "st_redis.h"

#define RD_MAX_NODES 64       /* servers plus Cluster nodes discovered */
#define RD_REDIRECTS 5        /* MOVED/ASK/TRYAGAIN rounds per command */
#define RD_BATCH_CMDS 64      /* commands per pipeline round trip */
#define RD_BATCH_BYTES ((size_t)64 << 20)
#define RD_CHECK_FIRST ((size_t)1 << 20) /* puts this large ask "stored already?" first */
#define RD_HEX 32
#define RD_NAME_MAX (ST_REDIS_PREFIX_MAX + PSI_TOKEN_KEY_MAX + 4) /* P{H} */

/* ---- hiredis, loaded privately -------------------------------------------- */

static struct {
    redisContext *(*connect)(const char *, int, const struct timeval);
    int (*set_timeout)(redisContext *, const struct timeval);
    void (*free_ctx)(redisContext *);
    int (*append_argv)(redisContext *, int, const char **, const size_t *);
    int (*get_reply)(redisContext *, void **);
    void (*free_reply)(void *);
    char error[256];
} rd_api;

static pthread_once_t rd_api_once = PTHREAD_ONCE_INIT;

static void rd_api_load(void)
{
    void *h = dlopen("libhiredis.so.0.14", RTLD_LAZY | RTLD_LOCAL);
    if (!h) {
        snprintf(rd_api.error, sizeof rd_api.error, "%s", dlerror());
        return;
    }
    *(void **)&rd_api.connect = dlsym(h, "redisConnectWithTimeout");
    *(void **)&rd_api.set_timeout = dlsym(h, "redisSetTimeout");
    *(void **)&rd_api.free_ctx = dlsym(h, "redisFree");
    *(void **)&rd_api.append_argv = dlsym(h, "redisAppendCommandArgv");
    *(void **)&rd_api.get_reply = dlsym(h, "redisGetReply");
    *(void **)&rd_api.free_reply = dlsym(h, "freeReplyObject");
    if (!rd_api.connect || !rd_api.set_timeout || !rd_api.free_ctx || !rd_api.append_argv ||
        !rd_api.get_reply || !rd_api.free_reply) {
        snprintf(rd_api.error, sizeof rd_api.error, "libhiredis.so.0.14 lacks a function");
        rd_api.connect = NULL;
    }
    /* Never dlclose: replies handed out as psi_obj outlive any handle. */
}

static int rd_api_ready(psi_err *err)
{
    pthread_once(&rd_api_once, rd_api_load);
    if (rd_api.connect)
        return 0;
    return psi_fail(err, ENOSYS, "redis store: cannot load libhiredis.so.0.14 (install the "
                    "Debian package libhiredis0.14): %s", rd_api.error);
}

/* ---- scripts -------------------------------------------------------------- */

/* KEYS: object, meta. ARGV: mode (put|check), life, ttl, size, chunks.
 * check: only if the object is stored whole already; returns 0 if not.
 * Then: one more reference (refcount life), the put time kept from the
 * first put, and every key expiring at the later of its current expiry
 * and now + ttl (a second put never shortens the first one's TTL). */
static const char rd_lua_commit[] =
    "local obj, meta = KEYS[1], KEYS[2]\n"
    "local n = tonumber(ARGV[5])\n"
    "if ARGV[1] == 'check' then\n"
    "  if redis.call('HGET', meta, 'size') ~= ARGV[4] or redis.call('EXISTS', obj) == 0 then return 0 end\n"
    "  n = tonumber(redis.call('HGET', meta, 'n') or '1')\n"
    "  if n > 1 and redis.call('EXISTS', obj .. '#' .. (n - 1)) == 0 then return 0 end\n"
    "end\n"
    "local now = tonumber(redis.call('TIME')[1])\n"
    "local exp = now + tonumber(ARGV[3])\n"
    "local old = tonumber(redis.call('HGET', meta, 'exp') or '0')\n"
    "if old > exp then exp = old end\n"
    "if ARGV[2] == '0' then redis.call('HINCRBY', meta, 'refs', 1) end\n"
    "redis.call('HSETNX', meta, 't', now)\n"
    "redis.call('HSET', meta, 'size', ARGV[4], 'n', n, 'exp', exp, 'life', ARGV[2])\n"
    "redis.call('EXPIREAT', meta, exp)\n"
    "redis.call('EXPIREAT', obj, exp)\n"
    "for i = 1, n - 1 do redis.call('EXPIREAT', obj .. '#' .. i, exp) end\n"
    "return 1\n";

/* KEYS: object, meta. One reference less; the last one removes it all. */
static const char rd_lua_release[] =
    "local r = redis.call('HINCRBY', KEYS[2], 'refs', -1)\n"
    "if r > 0 then return r end\n"
    "local n = tonumber(redis.call('HGET', KEYS[2], 'n') or '1')\n"
    "redis.call('DEL', KEYS[1], KEYS[2])\n"
    "for i = 1, n - 1 do redis.call('DEL', KEYS[1] .. '#' .. i) end\n"
    "return r\n";

/* KEYS: object, meta. ARGV: a chunk number or 0. Removes what is left of
 * an object whose first key is gone (expired, evicted under maxmemory):
 * its meta hash and chunks. Atomic, so a put racing with gc is safe. */
static const char rd_lua_gc[] =
    "if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end\n"
    "local n = tonumber(redis.call('HGET', KEYS[2], 'n') or '0')\n"
    "local d = redis.call('DEL', KEYS[2])\n"
    "for i = 1, n - 1 do d = d + redis.call('DEL', KEYS[1] .. '#' .. i) end\n"
    "if ARGV[1] ~= '0' then d = d + redis.call('DEL', KEYS[1] .. '#' .. ARGV[1]) end\n"
    "return d\n";

/* ---- the store ------------------------------------------------------------ */

typedef struct rd_node {
    char host[ST_REDIS_HOST_MAX + 1];
    int port;
    redisContext *ctx;
    size_t max_bulk; /* proto-max-bulk-len, read at connect */
    char sha[3][41]; /* SCRIPT LOAD results, per connection */
    int pending;     /* replies owed for releases sent without waiting */
} rd_node;

typedef struct st_redis {
    psi_store base;
    pthread_mutex_t lock;
    st_redis_url u;
    pid_t pid;
    int topology;  /* 0 unknown, 1 plain servers, 2 Cluster */
    int nnodes;    /* nodes[0..nservers) are the URL's servers */
    rd_node nodes[RD_MAX_NODES];
    int16_t slot_node[ST_REDIS_SLOTS];
} st_redis;

enum { RD_SCRIPT_COMMIT, RD_SCRIPT_RELEASE, RD_SCRIPT_GC };
static const char *const rd_scripts[] = {rd_lua_commit, rd_lua_release, rd_lua_gc};

static atomic_uint_fast64_t rd_nonce_seq;

static struct timeval rd_tv(int ms)
{
    return (struct timeval){.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
}

/* A transport failure: the context is dropped (no bytes sent) so the next
 * call connects again. EOF and timeouts get the errno the generic layer
 * retries on. */
static int rd_io_fail(rd_node *n, const char *what, psi_err *err)
{
    int e = errno;
    char msg[128] = "connection lost";

    if (n->ctx) {
        snprintf(msg, sizeof msg, "%s", n->ctx->errstr[0] ? n->ctx->errstr : "I/O error");
        if (n->ctx->err == REDIS_ERR_EOF)
            e = ECONNRESET;
        else if (n->ctx->err != REDIS_ERR_IO || e == 0)
            e = n->ctx->err == REDIS_ERR_OOM ? ENOMEM : ECONNRESET;
        rd_api.free_ctx(n->ctx);
        n->ctx = NULL;
    }
    if (e == EAGAIN || e == EWOULDBLOCK || e == EINPROGRESS)
        e = ETIMEDOUT;
    if (e == ETIMEDOUT && strstr(msg, "temporarily"))
        snprintf(msg, sizeof msg, "timed out");
    return psi_fail(err, e, "redis %s:%d: %s: %s", n->host, n->port, what, msg);
}

/* The errno for an error reply (docs/store-redis.md, "Errors"). */
static int rd_reply_errno(const redisReply *r)
{
    static const struct {
        const char *prefix;
        int code;
    } map[] = {
        {"OOM", ENOSPC},          {"LOADING", EBUSY},     {"BUSY", EBUSY},
        {"TRYAGAIN", EAGAIN},     {"CLUSTERDOWN", EAGAIN}, {"MASTERDOWN", EAGAIN},
        {"WRONGTYPE", EPROTO},    {"NOAUTH", EACCES},     {"WRONGPASS", EACCES},
        {"NOPERM", EACCES},       {"READONLY", EROFS},    {"EXECABORT", EIO},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strncmp(r->str, map[i].prefix, strlen(map[i].prefix)) == 0)
            return map[i].code;
    return EIO;
}

static int rd_reply_fail(const rd_node *n, const char *cmd, const char *key,
                         const redisReply *r, psi_err *err)
{
    if (!r || r->type != REDIS_REPLY_ERROR)
        return psi_fail(err, EPROTO, "redis %s:%d: %s %s: unexpected reply type %d", n->host,
                        n->port, cmd, key, r ? r->type : -1);
    return psi_fail(err, rd_reply_errno(r), "redis %s:%d: %s %s: %.*s", n->host, n->port, cmd,
                    key, (int)(r->len > 160 ? 160 : r->len), r->str);
}

/* One command, one reply, on a connected node (set-up commands). */
static redisReply *rd_call(rd_node *n, int argc, const char **argv, const size_t *len)
{
    void *r = NULL;
    if (rd_api.append_argv(n->ctx, argc, argv, len) != REDIS_OK ||
        rd_api.get_reply(n->ctx, &r) != REDIS_OK)
        return NULL;
    return r;
}

#define RD_ARGV(...) ((const char *[]){__VA_ARGS__})
#define RD_CALL(n, ...)                                                                  \
    rd_call((n), (int)(sizeof RD_ARGV(__VA_ARGS__) / sizeof(char *)), RD_ARGV(__VA_ARGS__), \
            NULL)

static int rd_set_cluster(st_redis *s, rd_node *n, psi_err *err);

/* Connects a node and prepares the connection: AUTH, Cluster detection
 * (once per store), SELECT, proto-max-bulk-len and the scripts. */
static int rd_connect(st_redis *s, rd_node *n, psi_err *err)
{
    redisReply *r;

    if (n->ctx)
        return 0;
    errno = 0;
    n->pending = 0;
    n->ctx = rd_api.connect(n->host, n->port, rd_tv(s->u.connect_timeout_ms));
    if (!n->ctx) {
        errno = ENOMEM;
        return rd_io_fail(n, "connect", err);
    }
    if (n->ctx->err) {
        int e = errno;
        if (strstr(n->ctx->errstr, "refused"))
            errno = ECONNREFUSED;
        else if (strstr(n->ctx->errstr, "timed out"))
            errno = ETIMEDOUT;
        else if (!e)
            errno = ECONNREFUSED;
        /* hiredis reports a failed connect as REDIS_ERR_IO */
        return rd_io_fail(n, "connect", err);
    }
    rd_api.set_timeout(n->ctx, rd_tv(s->u.timeout_ms));

    if (s->u.has_pass) {
        r = s->u.has_user ? RD_CALL(n, "AUTH", s->u.user, s->u.pass)
                          : RD_CALL(n, "AUTH", s->u.pass);
        if (!r)
            return rd_io_fail(n, "AUTH", err);
        if (r->type == REDIS_REPLY_ERROR) {
            psi_fail(err, EACCES, "redis %s:%d: AUTH%s%s failed: %.*s", n->host, n->port,
                     s->u.has_user ? " as user " : "", s->u.has_user ? s->u.user : "",
                     (int)(r->len > 120 ? 120 : r->len), r->str);
            rd_api.free_reply(r);
            rd_api.free_ctx(n->ctx);
            n->ctx = NULL;
            return -1;
        }
        rd_api.free_reply(r);
    }
    if (s->topology == 0) {
        r = RD_CALL(n, "INFO", "cluster");
        if (!r)
            return rd_io_fail(n, "INFO cluster", err);
        int cluster = r->type == REDIS_REPLY_STRING && strstr(r->str, "cluster_enabled:1");
        if (r->type == REDIS_REPLY_ERROR && rd_reply_errno(r) == EACCES) {
            rd_reply_fail(n, "INFO", "cluster", r, err);
            rd_api.free_reply(r);
            rd_api.free_ctx(n->ctx);
            n->ctx = NULL;
            return -1;
        }
        rd_api.free_reply(r);
        if (cluster) {
            if (s->u.db != 0) {
                rd_api.free_ctx(n->ctx);
                n->ctx = NULL;
                return psi_fail(err, EINVAL, "redis %s:%d: a Redis Cluster has only "
                                "database 0, the URL asks for /%d", n->host, n->port, s->u.db);
            }
            if (rd_set_cluster(s, n, err) < 0)
                return -1;
        } else {
            s->topology = 1;
        }
    }
    if (s->u.db != 0 && s->topology == 1) {
        char db[16];
        snprintf(db, sizeof db, "%d", s->u.db);
        r = RD_CALL(n, "SELECT", db);
        if (!r)
            return rd_io_fail(n, "SELECT", err);
        if (r->type == REDIS_REPLY_ERROR) {
            rd_reply_fail(n, "SELECT", db, r, err);
            rd_api.free_reply(r);
            rd_api.free_ctx(n->ctx);
            n->ctx = NULL;
            return -1;
        }
        rd_api.free_reply(r);
    }
    /* CONFIG may be refused (renamed, ACL): Redis's default then. */
    n->max_bulk = ST_REDIS_MAX_BULK_DEFAULT;
    r = RD_CALL(n, "CONFIG", "GET", "proto-max-bulk-len");
    if (!r)
        return rd_io_fail(n, "CONFIG GET", err);
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[1]->type == REDIS_REPLY_STRING) {
        unsigned long long v = strtoull(r->element[1]->str, NULL, 10);
        if (v >= ST_REDIS_CHUNK_MIN)
            n->max_bulk = (size_t)v;
    }
    rd_api.free_reply(r);
    for (int i = 0; i < 3; i++) {
        r = RD_CALL(n, "SCRIPT", "LOAD", rd_scripts[i]);
        if (!r)
            return rd_io_fail(n, "SCRIPT LOAD", err);
        if (r->type == REDIS_REPLY_STRING && r->len == 40)
            memcpy(n->sha[i], r->str, 41);
        else
            n->sha[i][0] = '\0'; /* scripts refused: EVAL says why */
        rd_api.free_reply(r);
    }
    return 0;
}

static rd_node *rd_node_for(st_redis *s, const char *host, int port)
{
    for (int i = 0; i < s->nnodes; i++)
        if (s->nodes[i].port == port && strcmp(s->nodes[i].host, host) == 0)
            return &s->nodes[i];
    if (s->nnodes == RD_MAX_NODES || strlen(host) > ST_REDIS_HOST_MAX)
        return NULL;
    rd_node *n = &s->nodes[s->nnodes++];
    memset(n, 0, sizeof *n);
    snprintf(n->host, sizeof n->host, "%s", host);
    n->port = port;
    return n;
}

/* Reads CLUSTER SLOTS from a connected node into the slot map. */
static int rd_load_slots(st_redis *s, rd_node *n, psi_err *err)
{
    redisReply *r = RD_CALL(n, "CLUSTER", "SLOTS");
    if (!r)
        return rd_io_fail(n, "CLUSTER SLOTS", err);
    if (r->type != REDIS_REPLY_ARRAY) {
        rd_reply_fail(n, "CLUSTER", "SLOTS", r, err);
        rd_api.free_reply(r);
        return -1;
    }
    for (int i = 0; i < ST_REDIS_SLOTS; i++)
        s->slot_node[i] = -1;
    for (size_t i = 0; i < r->elements; i++) {
        redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            e->element[2]->type != REDIS_REPLY_ARRAY || e->element[2]->elements < 2)
            continue;
        redisReply *addr = e->element[2];
        const char *host = addr->element[0]->type == REDIS_REPLY_STRING &&
                                   addr->element[0]->len > 0
                               ? addr->element[0]->str
                               : n->host; /* "" means the node asked */
        int port = (int)addr->element[1]->integer;
        rd_node *m = rd_node_for(s, host, port);
        long lo = (long)e->element[0]->integer, hi = (long)e->element[1]->integer;
        if (!m || lo < 0 || hi >= ST_REDIS_SLOTS)
            continue;
        for (long sl = lo; sl <= hi; sl++)
            s->slot_node[sl] = (int16_t)(m - s->nodes);
    }
    rd_api.free_reply(r);
    return 0;
}

static int rd_set_cluster(st_redis *s, rd_node *n, psi_err *err)
{
    s->topology = 2;
    return rd_load_slots(s, n, err);
}

/* Any connected node, else the URL's servers in turn: for a slot map. */
static int rd_refresh_slots(st_redis *s, psi_err *err)
{
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < s->nnodes; i++) {
            rd_node *n = &s->nodes[i];
            if (pass == 0 && !n->ctx)
                continue;
            if (rd_connect(s, n, err) == 0 && rd_load_slots(s, n, err) == 0)
                return 0;
        }
    return -1;
}

/* The node holding `tag`'s keys, connected. */
static rd_node *rd_home(st_redis *s, const char *tag, size_t tlen, psi_err *err)
{
    if (s->topology == 0) {
        /* The first connection tells whether this is a Cluster. */
        int i;
        for (i = 0; i < s->u.nservers; i++)
            if (rd_connect(s, &s->nodes[i], err) == 0)
                break;
        if (i == s->u.nservers)
            return NULL;
    }
    rd_node *n;
    if (s->topology == 2) {
        unsigned slot = st_redis_crc16(tag, tlen) & (ST_REDIS_SLOTS - 1);
        if (s->slot_node[slot] < 0 && rd_refresh_slots(s, err) < 0)
            return NULL;
        if (s->slot_node[slot] < 0) {
            psi_fail(err, EAGAIN, "redis cluster: no node serves slot %u", slot);
            return NULL;
        }
        n = &s->nodes[s->slot_node[slot]];
    } else {
        n = &s->nodes[st_redis_home(tag, tlen, s->u.servers, s->u.nservers)];
    }
    return rd_connect(s, n, err) == 0 ? n : NULL;
}

/* ---- pipelines with Cluster redirects ------------------------------------ */

typedef struct rd_cmd {
    int argc;
    const char *argv[10];
    size_t len[10];
    int script;         /* EVALSHA of rd_scripts[script], or -1 */
    redisReply *reply;  /* filled by rd_exec */
    rd_node *node;      /* where the reply came from */
} rd_cmd;

static bool rd_is(const redisReply *r, const char *prefix)
{
    return r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, prefix, strlen(prefix)) == 0;
}

/* "MOVED 3999 127.0.0.1:6381": the node named. */
static rd_node *rd_redirect_target(st_redis *s, const redisReply *r)
{
    const char *sp = strrchr(r->str, ' ');
    const char *colon = sp ? strrchr(sp, ':') : NULL;
    char host[ST_REDIS_HOST_MAX + 1];
    if (!colon || colon - sp - 1 > ST_REDIS_HOST_MAX)
        return NULL;
    size_t hn = (size_t)(colon - sp - 1);
    memcpy(host, sp + 1, hn);
    host[hn] = '\0';
    return rd_node_for(s, host, atoi(colon + 1));
}

/* A transport failure outside hiredis (our own writev). */
static int rd_sys_fail(rd_node *n, const char *what, int e, psi_err *err)
{
    if (e == EAGAIN || e == EWOULDBLOCK)
        e = ETIMEDOUT;
    if (e == EPIPE)
        e = ECONNRESET;
    if (n->ctx) {
        rd_api.free_ctx(n->ctx);
        n->ctx = NULL;
    }
    return psi_fail(err, e, "redis %s:%d: %s: %s", n->host, n->port, what,
                    e == ETIMEDOUT ? "timed out" : strerror(e));
}

/* The commands in RESP, as iovecs: headers and small arguments are copied
 * into one scratch buffer, large arguments (payloads) are referenced where
 * they are. hiredis would format each command into a new buffer and copy it
 * again into its output buffer: two copies of every payload byte, and page
 * faults on fresh memory for each large put. */
#define RD_INLINE_ARG 512

typedef struct rd_out {
    struct iovec *iov;
    int niov;
    char *scratch;
    size_t used, run; /* scratch bytes written; start of the pending run */
} rd_out;

static void rd_out_flush(rd_out *o)
{
    if (o->used > o->run)
        o->iov[o->niov++] = (struct iovec){o->scratch + o->run, o->used - o->run};
    o->run = o->used;
}

static void rd_out_put(rd_out *o, const char *p, size_t n)
{
    if (n > RD_INLINE_ARG) {
        rd_out_flush(o);
        o->iov[o->niov++] = (struct iovec){(void *)p, n};
        return;
    }
    memcpy(o->scratch + o->used, p, n);
    o->used += n;
}

static void rd_out_cmd(rd_out *o, int argc, const char **argv, const size_t *len)
{
    o->used += (size_t)sprintf(o->scratch + o->used, "*%d\r\n", argc);
    for (int k = 0; k < argc; k++) {
        size_t n = len ? len[k] : strlen(argv[k]);
        o->used += (size_t)sprintf(o->scratch + o->used, "$%zu\r\n", n);
        rd_out_put(o, argv[k], n);
        memcpy(o->scratch + o->used, "\r\n", 2);
        o->used += 2;
    }
}

static int rd_writev_all(int fd, struct iovec *iov, int niov)
{
    int i = 0;
    while (i < niov) {
        ssize_t w = writev(fd, iov + i, niov - i > IOV_MAX ? IOV_MAX : niov - i);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w == 0 ? (errno = EPIPE, -1) : -1;
        size_t left = (size_t)w;
        while (i < niov && left >= iov[i].iov_len)
            left -= iov[i++].iov_len;
        if (i < niov) {
            iov[i].iov_base = (char *)iov[i].iov_base + left;
            iov[i].iov_len -= left;
        }
    }
    return 0;
}

/* Reads the replies owed for releases sent without waiting (see
 * st_redis_release); an error among them is logged once: the reference is
 * then left for the TTL. */
static int rd_drain(rd_node *n, psi_err *err)
{
    static atomic_int warned;

    while (n->pending > 0) {
        void *r;
        if (rd_api.get_reply(n->ctx, &r) != REDIS_OK)
            return rd_io_fail(n, "EVALSHA release", err);
        n->pending--;
        const redisReply *x = r;
        if (x->type == REDIS_REPLY_ERROR)
            psi_log_once(warned, PSI_LOG_WARN, "redis %s:%d: EVALSHA release: %.*s (the "
                         "object is left for its TTL)", n->host, n->port,
                         (int)(x->len > 120 ? 120 : x->len), x->str);
        rd_api.free_reply(r);
    }
    return 0;
}

/* Writes the commands still without a reply to node n as one pipeline,
 * each preceded by ASKING if asking. */
static int rd_write(st_redis *s, rd_node *n, rd_cmd *c, int nc, const bool *todo, bool asking,
                    psi_err *err)
{
    static const char *ask[] = {"ASKING"};
    size_t cap = 0;
    int nargs = 0;

    if (rd_connect(s, n, err) < 0 || rd_drain(n, err) < 0)
        return -1;
    for (int i = 0; i < nc; i++) {
        if (!todo[i])
            continue;
        if (c[i].script >= 0) {
            /* EVALSHA if the script was loaded, else EVAL with the text */
            const char *sha = n->sha[c[i].script];
            c[i].argv[0] = sha[0] ? "EVALSHA" : "EVAL";
            c[i].len[0] = strlen(c[i].argv[0]);
            c[i].argv[1] = sha[0] ? sha : rd_scripts[c[i].script];
            c[i].len[1] = strlen(c[i].argv[1]);
        }
        cap += 48 + 16;
        for (int k = 0; k < c[i].argc; k++)
            cap += 24 + 2 + (c[i].len[k] <= RD_INLINE_ARG ? c[i].len[k] : 0);
        nargs += c[i].argc + 1;
    }
    rd_out o = {0};
    o.scratch = malloc(cap);
    o.iov = malloc(sizeof *o.iov * (size_t)(2 * nargs + 2));
    if (!o.scratch || !o.iov) {
        free(o.scratch);
        free(o.iov);
        return psi_fail(err, ENOMEM, "redis %s:%d: out of memory", n->host, n->port);
    }
    for (int i = 0; i < nc; i++) {
        if (!todo[i])
            continue;
        if (asking)
            rd_out_cmd(&o, 1, ask, NULL);
        rd_out_cmd(&o, c[i].argc, c[i].argv, c[i].len);
    }
    rd_out_flush(&o);
    int rc = rd_writev_all(n->ctx->fd, o.iov, o.niov);
    int e = errno;
    free(o.scratch);
    free(o.iov);
    return rc < 0 ? rd_sys_fail(n, c[0].argv[0], e, err) : 0;
}

/* rd_write, then the replies. */
static int rd_send(st_redis *s, rd_node *n, rd_cmd *c, int nc, const bool *todo, bool asking,
                   psi_err *err)
{
    if (rd_write(s, n, c, nc, todo, asking, err) < 0)
        return -1;
    for (int i = 0; i < nc; i++) {
        void *r;
        if (!todo[i])
            continue;
        if (asking) {
            if (rd_api.get_reply(n->ctx, &r) != REDIS_OK)
                return rd_io_fail(n, "ASKING", err);
            rd_api.free_reply(r);
        }
        if (rd_api.get_reply(n->ctx, &r) != REDIS_OK)
            return rd_io_fail(n, c[i].argv[0], err);
        c[i].reply = r;
        c[i].node = n;
    }
    return 0;
}

static void rd_free_replies(rd_cmd *c, int nc)
{
    for (int i = 0; i < nc; i++) {
        if (c[i].reply)
            rd_api.free_reply(c[i].reply);
        c[i].reply = NULL;
    }
}

/* Runs the commands (all on keys of one hashtag) as a pipeline on the
 * tag's home node. A command answered MOVED goes again to the new owner
 * (after a slot map refresh), ASK to the importing node behind ASKING,
 * TRYAGAIN and NOSCRIPT to the same node; at most RD_REDIRECTS rounds.
 * Error replies that remain are left for the caller. -1 only for a
 * transport failure (all replies freed). */
static int rd_exec(st_redis *s, const char *tag, size_t tlen, rd_cmd *c, int nc, psi_err *err)
{
    bool todo[RD_BATCH_CMDS + 2];
    rd_node *n = rd_home(s, tag, tlen, err);
    bool asking = false;

    if (!n)
        return -1;
    for (int i = 0; i < nc; i++) {
        todo[i] = true;
        c[i].reply = NULL;
    }
    for (int round = 0;; round++) {
        if (rd_send(s, n, c, nc, todo, asking, err) < 0) {
            rd_free_replies(c, nc);
            return -1;
        }
        rd_node *next = NULL;
        bool again = false, moved = false;
        asking = false;
        for (int i = 0; i < nc; i++) {
            todo[i] = false;
            redisReply *r = c[i].reply;
            if (!r || r->type != REDIS_REPLY_ERROR || round >= RD_REDIRECTS)
                continue;
            rd_node *t = NULL;
            if (rd_is(r, "MOVED ")) {
                t = rd_redirect_target(s, r);
                moved = true;
            } else if (rd_is(r, "ASK ")) {
                t = rd_redirect_target(s, r);
                asking = true;
            } else if (rd_is(r, "TRYAGAIN") || (rd_is(r, "NOSCRIPT") && c[i].script >= 0)) {
                if (rd_is(r, "NOSCRIPT"))
                    n->sha[c[i].script][0] = '\0';
                t = n;
            }
            if (!t)
                continue;
            next = t;
            todo[i] = true;
            again = true;
            rd_api.free_reply(r);
            c[i].reply = NULL;
        }
        if (!again)
            return 0;
        if (moved && rd_refresh_slots(s, err) < 0) {
            rd_free_replies(c, nc);
            return -1;
        }
        if (!asking && !moved) {
            struct timespec ts = {0, 20 * 1000000L}; /* TRYAGAIN: a migration in progress */
            nanosleep(&ts, NULL);
        }
        n = next;
    }
    return 0;
}

/* ---- keys ----------------------------------------------------------------- */

enum rd_kind { RD_BAD, RD_REF, RD_TTL, RD_EVICT };

static bool rd_lower_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

/* A token key is one of ours: H, H-t or H-e<16 hex>. */
static enum rd_kind rd_key_kind(const char *k, size_t n)
{
    if (n < RD_HEX || !rd_lower_hex(k, RD_HEX) || !psi_key_valid(k, n))
        return RD_BAD;
    if (n == RD_HEX)
        return RD_REF;
    if (n == RD_HEX + 2 && memcmp(k + RD_HEX, "-t", 2) == 0)
        return RD_TTL;
    if (n == RD_HEX + 18 && memcmp(k + RD_HEX, "-e", 2) == 0 && rd_lower_hex(k + RD_HEX + 2, 16))
        return RD_EVICT;
    return RD_BAD;
}

/* Server-side names of a token key: P{H}, P{H}.m, and P{H}#i. */
typedef struct rd_names {
    char obj[RD_NAME_MAX];
    char meta[RD_NAME_MAX + 2];
    size_t obj_len, meta_len;
    const char *tag;
    size_t tag_len;
} rd_names;

static void rd_names_make(const st_redis *s, const char *key, size_t n, rd_names *out)
{
    out->obj_len = (size_t)snprintf(out->obj, sizeof out->obj, "%s{%.*s}", s->u.prefix, (int)n,
                                    key);
    out->meta_len = (size_t)snprintf(out->meta, sizeof out->meta, "%s.m", out->obj);
    out->tag = key;
    out->tag_len = n;
}

static size_t rd_chunk_name(const rd_names *nm, size_t i, char *out, size_t cap)
{
    return (size_t)snprintf(out, cap, "%s#%zu", nm->obj, i);
}

/* ---- lock, fork ----------------------------------------------------------- */

static void rd_drop_all(st_redis *s, bool talk)
{
    for (int i = 0; i < s->nnodes; i++)
        if (s->nodes[i].ctx) {
            rd_api.free_ctx(s->nodes[i].ctx); /* closes the fd; sends nothing */
            s->nodes[i].ctx = NULL;
        }
    (void)talk;
}

static void rd_enter(st_redis *s)
{
    pthread_mutex_lock(&s->lock);
    PSI_STORE_ENTER();
    /* A forked child never writes to its parent's connections. */
    if (s->pid != getpid()) {
        rd_drop_all(s, false);
        s->pid = getpid();
    }
}

static void rd_leave(st_redis *s)
{
    PSI_STORE_LEAVE();
    pthread_mutex_unlock(&s->lock);
}

/* ---- put ------------------------------------------------------------------ */

#define RD_ARG(c, i, p, n) ((void)((c)->argv[i] = (p)), (void)((c)->len[i] = (n)))

static int rd_put_locked(st_redis *s, const void *buf, size_t len, const psi_put_opts *o,
                         psi_token *tok, psi_err *err)
{
    psi_hash128 sum = psi_hash_buf(buf, len);
    uint32_t ttl = o->ttl ? o->ttl : PSI_DEFAULT_TTL;
    char key[PSI_TOKEN_KEY_MAX + 1];
    rd_names nm;

    psi_hash_hex(&sum, key);
    if (o->lifetime == PSI_LIFE_TTL) {
        strcat(key, "-t");
    } else if (o->lifetime == PSI_LIFE_EVICT_ON_READ) {
        uint64_t nonce = XXH3_64bits_withSeed(&sum, sizeof sum,
                                              ((uint64_t)getpid() << 32) ^
                                                  atomic_fetch_add(&rd_nonce_seq, 1) ^
                                                  (uint64_t)time(NULL) << 16);
        snprintf(key + RD_HEX, sizeof key - RD_HEX, "-e%016llx", (unsigned long long)nonce);
    }
    size_t klen = strlen(key);
    rd_names_make(s, key, klen, &nm);

    rd_node *home = rd_home(s, key, klen, err);
    if (!home)
        return -1;
    size_t chunk = st_redis_chunk_size(s->u.chunk, home->max_bulk);
    size_t nchunks = st_redis_nchunks(len, chunk);
    char life[8], ttls[16], size[24], nch[24];
    snprintf(life, sizeof life, "%u", (unsigned)o->lifetime);
    snprintf(ttls, sizeof ttls, "%u", (unsigned)ttl);
    snprintf(size, sizeof size, "%zu", len);
    snprintf(nch, sizeof nch, "%zu", nchunks);

    rd_cmd c[RD_BATCH_CMDS + 1];
#define COMMIT(cmd, mode)                                                                  \
    do {                                                                                   \
        memset((cmd), 0, sizeof *(cmd));                                                   \
        (cmd)->script = RD_SCRIPT_COMMIT;                                                  \
        (cmd)->argc = 10;                                                                  \
        RD_ARG((cmd), 2, "2", 1);                                                          \
        RD_ARG((cmd), 3, nm.obj, nm.obj_len);                                              \
        RD_ARG((cmd), 4, nm.meta, nm.meta_len);                                            \
        RD_ARG((cmd), 5, (mode), strlen(mode));                                            \
        RD_ARG((cmd), 6, life, strlen(life));                                              \
        RD_ARG((cmd), 7, ttls, strlen(ttls));                                              \
        RD_ARG((cmd), 8, size, strlen(size));                                              \
        RD_ARG((cmd), 9, nch, strlen(nch));                                                \
    } while (0)

    /* Large objects: ask first whether the bytes are stored already (a
     * payload sent to many peers is uploaded once). Evict-on-read keys
     * are unique, so never stored already. */
    if (len >= RD_CHECK_FIRST && o->lifetime != PSI_LIFE_EVICT_ON_READ) {
        COMMIT(&c[0], "check");
        if (rd_exec(s, key, klen, c, 1, err) < 0)
            return -1;
        redisReply *r = c[0].reply;
        int hit = r && r->type == REDIS_REPLY_INTEGER && r->integer == 1;
        if (!hit && (!r || r->type != REDIS_REPLY_INTEGER)) {
            rd_reply_fail(c[0].node, "EVALSHA commit", nm.obj, r, err);
            rd_free_replies(c, 1);
            return -1;
        }
        rd_free_replies(c, 1);
        if (hit)
            goto done;
    }

    /* SET every chunk (EX: a put cut short leaves nothing for ever), then
     * commit in the same pipeline; batches bound the memory hiredis
     * buffers. */
    char names[RD_BATCH_CMDS][sizeof nm.obj + 24];
    size_t i = 0;
    while (i < nchunks) {
        int nc = 0;
        size_t bytes = 0;
        while (i < nchunks && nc < RD_BATCH_CMDS && (nc == 0 || bytes < RD_BATCH_BYTES)) {
            rd_cmd *x = &c[nc];
            size_t cl = st_redis_chunk_len(len, chunk, i);
            memset(x, 0, sizeof *x);
            x->script = -1;
            x->argc = 5;
            RD_ARG(x, 0, "SET", 3);
            if (i == 0)
                RD_ARG(x, 1, nm.obj, nm.obj_len);
            else
                RD_ARG(x, 1, names[nc], rd_chunk_name(&nm, i, names[nc], sizeof names[nc]));
            RD_ARG(x, 2, (const char *)buf + (size_t)i * chunk, cl);
            RD_ARG(x, 3, "EX", 2);
            RD_ARG(x, 4, ttls, strlen(ttls));
            bytes += cl;
            nc++;
            i++;
        }
        int ncmd = nc;
        if (i == nchunks) {
            COMMIT(&c[ncmd], "put");
            ncmd++;
        }
        if (rd_exec(s, key, klen, c, ncmd, err) < 0)
            return -1;
        for (int k = 0; k < ncmd; k++) {
            redisReply *r = c[k].reply;
            bool ok = k < nc ? r && r->type == REDIS_REPLY_STATUS
                             : r && r->type == REDIS_REPLY_INTEGER;
            if (!ok) {
                rd_reply_fail(c[k].node, k < nc ? "SET" : "EVALSHA commit", nm.obj, r, err);
                rd_free_replies(c, ncmd);
                return -1;
            }
        }
        rd_free_replies(c, ncmd);
    }
#undef COMMIT
done:
    memset(tok, 0, sizeof *tok);
    tok->connector = PSI_CONN_REDIS;
    tok->lifetime = o->lifetime;
    tok->size = len;
    tok->sum = sum;
    tok->ttl = ttl;
    tok->key_len = (uint8_t)klen;
    memcpy(tok->key, key, klen + 1);
    return 0;
}

static int st_redis_put(psi_store *st, const void *buf, size_t len, const psi_put_opts *o,
                        psi_token *tok, psi_err *err)
{
    st_redis *s = (st_redis *)st;

    rd_enter(s);
    int rc = rd_put_locked(s, buf, len, o, tok, err);
    rd_leave(s);
    return rc;
}

/* ---- get ------------------------------------------------------------------ */

static void rd_reply_done(void *r)
{
    rd_api.free_reply(r);
}

static int rd_get_locked(st_redis *s, const psi_token *tok, psi_obj *obj, psi_err *err)
{
    enum rd_kind kind = rd_key_kind(tok->key, tok->key_len);
    const char *get = kind == RD_EVICT ? "GETDEL" : "GET";
    rd_names nm;
    rd_cmd c[RD_BATCH_CMDS + 1];

    if (kind == RD_BAD || strnlen(tok->key, sizeof tok->key) != tok->key_len)
        return psi_fail(err, EIO, "redis store: token key '%.*s' is not a redis store key",
                        (int)(tok->key_len <= PSI_TOKEN_KEY_MAX ? tok->key_len : 0), tok->key);
    if (tok->size == 0 || tok->size > SIZE_MAX / 2)
        return psi_fail(err, EIO, "redis store: object %s: bad size %llu", tok->key,
                        (unsigned long long)tok->size);
    rd_names_make(s, tok->key, tok->key_len, &nm);

    memset(c, 0, sizeof c[0]);
    c[0].script = -1;
    c[0].argc = 2;
    RD_ARG(&c[0], 0, get, strlen(get));
    RD_ARG(&c[0], 1, nm.obj, nm.obj_len);
    if (rd_exec(s, nm.tag, nm.tag_len, c, 1, err) < 0)
        return -1;
    redisReply *first = c[0].reply;
    rd_node *n = c[0].node;
    if (first->type == REDIS_REPLY_NIL) {
        rd_free_replies(c, 1);
        return psi_fail(err, ENOENT, "redis %s:%d: %s %s: no such object (expired, evicted, "
                        "already read, or lost in a restart)", n->host, n->port, get, nm.obj);
    }
    if (first->type != REDIS_REPLY_STRING) {
        rd_reply_fail(n, get, nm.obj, first, err);
        rd_free_replies(c, 1);
        return -1;
    }
    if (first->len >= tok->size || first->len == 0) {
        /* The whole object: handed over without a copy. */
        obj->data = (const uint8_t *)first->str;
        obj->len = first->len;
        obj->done = rd_reply_done;
        obj->done_ctx = first;
        if (kind == RD_EVICT) {
            memset(c, 0, sizeof c[0]);
            c[0].script = -1;
            c[0].argc = 2;
            RD_ARG(&c[0], 0, "DEL", 3);
            RD_ARG(&c[0], 1, nm.meta, nm.meta_len);
            if (rd_exec(s, nm.tag, nm.tag_len, c, 1, NULL) == 0)
                rd_free_replies(c, 1);
        }
        return 0;
    }

    /* Chunked: every chunk but the last as long as the first. */
    size_t chunk = first->len, size = (size_t)tok->size;
    size_t nchunks = st_redis_nchunks(size, chunk);
    uint8_t *buf = malloc(size);
    if (!buf) {
        rd_free_replies(c, 1);
        return psi_fail(err, ENOMEM, "redis store: object %s: no memory for %zu bytes",
                        nm.obj, size);
    }
    memcpy(buf, first->str, chunk);
    rd_free_replies(c, 1);
    char names[RD_BATCH_CMDS][sizeof nm.obj + 24];
    size_t i = 1;
    while (i < nchunks) {
        int nc = 0;
        size_t bytes = 0;
        size_t from = i;
        while (i < nchunks && nc < RD_BATCH_CMDS && (nc == 0 || bytes < RD_BATCH_BYTES)) {
            memset(&c[nc], 0, sizeof c[nc]);
            c[nc].script = -1;
            c[nc].argc = 2;
            RD_ARG(&c[nc], 0, get, strlen(get));
            RD_ARG(&c[nc], 1, names[nc], rd_chunk_name(&nm, i, names[nc], sizeof names[nc]));
            bytes += chunk;
            nc++;
            i++;
        }
        if (rd_exec(s, nm.tag, nm.tag_len, c, nc, err) < 0) {
            free(buf);
            return -1;
        }
        for (int k = 0; k < nc; k++) {
            redisReply *r = c[k].reply;
            size_t want = st_redis_chunk_len(size, chunk, from + (size_t)k);
            if (!r || r->type != REDIS_REPLY_STRING || r->len != want) {
                if (r && r->type == REDIS_REPLY_ERROR)
                    rd_reply_fail(c[k].node, get, names[k], r, err);
                else
                    psi_fail(err, ENOENT, "redis %s:%d: %s %s: chunk %zu of %zu is %s",
                             c[k].node->host, c[k].node->port, get, names[k], from + (size_t)k,
                             nchunks, r && r->type == REDIS_REPLY_STRING ? "the wrong size"
                                                                          : "missing");
                rd_free_replies(c, nc);
                free(buf);
                return -1;
            }
            memcpy(buf + (from + (size_t)k) * chunk, r->str, want);
        }
        rd_free_replies(c, nc);
    }
    if (kind == RD_EVICT) {
        memset(c, 0, sizeof c[0]);
        c[0].script = -1;
        c[0].argc = 2;
        RD_ARG(&c[0], 0, "DEL", 3);
        RD_ARG(&c[0], 1, nm.meta, nm.meta_len);
        if (rd_exec(s, nm.tag, nm.tag_len, c, 1, NULL) == 0)
            rd_free_replies(c, 1);
    }
    obj->data = buf;
    obj->len = size;
    obj->heap = buf;
    return 0;
}

static int st_redis_get(psi_store *st, const psi_token *tok, psi_obj *obj, psi_err *err)
{
    st_redis *s = (st_redis *)st;

    memset(obj, 0, sizeof *obj);
    rd_enter(s);
    int rc = rd_get_locked(s, tok, obj, err);
    rd_leave(s);
    if (rc < 0 && err && err->code == ENOENT)
        err->code = EIO;
    return rc;
}

/* ---- release / exists ----------------------------------------------------- */

static int st_redis_release(psi_store *st, const psi_token *tok, psi_err *err)
{
    st_redis *s = (st_redis *)st;
    enum rd_kind kind = rd_key_kind(tok->key, tok->key_len);
    rd_names nm;
    rd_cmd c;

    /* TTL objects expire; evict-on-read ones went with the read. */
    if (kind == RD_TTL || kind == RD_EVICT)
        return 0;
    if (kind == RD_BAD)
        return psi_fail(err, EINVAL, "redis store: token key '%.*s' is not a redis store key",
                        (int)(tok->key_len <= PSI_TOKEN_KEY_MAX ? tok->key_len : 0), tok->key);
    rd_names_make(s, tok->key, tok->key_len, &nm);
    memset(&c, 0, sizeof c);
    c.script = RD_SCRIPT_RELEASE;
    c.argc = 5;
    RD_ARG(&c, 2, "2", 1);
    RD_ARG(&c, 3, nm.obj, nm.obj_len);
    RD_ARG(&c, 4, nm.meta, nm.meta_len);
    rd_enter(s);
    /* Off a Cluster, the reply is not waited for: the reader has its bytes
     * already, and the round trip would double a small resolve's latency.
     * The next command on that connection reads it (rd_drain). A Cluster
     * may answer with a redirect, so there the reply is read. */
    if (s->topology == 1) {
        bool todo = true;
        rd_node *n = rd_home(s, nm.tag, nm.tag_len, err);
        int rc = n ? rd_write(s, n, &c, 1, &todo, false, err) : -1;
        if (rc == 0)
            n->pending++;
        rd_leave(s);
        return rc;
    }
    int rc = rd_exec(s, nm.tag, nm.tag_len, &c, 1, err);
    if (rc == 0) {
        if (c.reply->type != REDIS_REPLY_INTEGER)
            rc = rd_reply_fail(c.node, "EVALSHA release", nm.obj, c.reply, err);
        rd_free_replies(&c, 1);
    }
    rd_leave(s);
    return rc;
}

static int st_redis_exists(psi_store *st, const psi_token *tok)
{
    st_redis *s = (st_redis *)st;
    rd_names nm;
    rd_cmd c;
    psi_err err;

    if (rd_key_kind(tok->key, tok->key_len) == RD_BAD)
        return 0;
    rd_names_make(s, tok->key, tok->key_len, &nm);
    memset(&c, 0, sizeof c);
    c.script = -1;
    c.argc = 2;
    RD_ARG(&c, 0, "EXISTS", 6);
    RD_ARG(&c, 1, nm.obj, nm.obj_len);
    rd_enter(s);
    int found = 0;
    if (rd_exec(s, nm.tag, nm.tag_len, &c, 1, &err) == 0) {
        found = c.reply->type == REDIS_REPLY_INTEGER && c.reply->integer == 1;
        rd_free_replies(&c, 1);
    }
    rd_leave(s);
    return found;
}

/* ---- walking the keys: ls and gc ------------------------------------------ */

/* The nodes that hold data: the URL's servers, or a Cluster's masters. */
static int rd_data_nodes(st_redis *s, rd_node **out, psi_err *err)
{
    int n = 0;

    if (!rd_home(s, "x", 1, err)) /* learns the topology */
        return -1;
    if (s->topology != 2) {
        for (int i = 0; i < s->u.nservers; i++)
            out[n++] = &s->nodes[i];
        return n;
    }
    bool seen[RD_MAX_NODES] = {false};
    for (int sl = 0; sl < ST_REDIS_SLOTS; sl++) {
        int k = s->slot_node[sl];
        if (k >= 0 && !seen[k]) {
            seen[k] = true;
            out[n++] = &s->nodes[k];
        }
    }
    return n;
}

/* A server key: prefix{TAG}, prefix{TAG}.m or prefix{TAG}#N. */
enum rd_skey { RD_SK_OTHER, RD_SK_OBJ, RD_SK_META, RD_SK_CHUNK };

static enum rd_skey rd_skey_parse(const st_redis *s, const char *k, size_t n, const char **tag,
                                  size_t *tlen, long *chunk)
{
    size_t pl = strlen(s->u.prefix);
    if (n < pl + 3 || memcmp(k, s->u.prefix, pl) != 0 || k[pl] != '{')
        return RD_SK_OTHER;
    const char *close = memchr(k + pl + 1, '}', n - pl - 1);
    if (!close)
        return RD_SK_OTHER;
    *tag = k + pl + 1;
    *tlen = (size_t)(close - *tag);
    if (rd_key_kind(*tag, *tlen) == RD_BAD)
        return RD_SK_OTHER;
    const char *rest = close + 1;
    size_t rn = (size_t)(k + n - rest);
    if (rn == 0)
        return RD_SK_OBJ;
    if (rn == 2 && memcmp(rest, ".m", 2) == 0)
        return RD_SK_META;
    if (rest[0] == '#' && rn > 1 && rn < 12) {
        long v = 0;
        for (size_t i = 1; i < rn; i++) {
            if (rest[i] < '0' || rest[i] > '9')
                return RD_SK_OTHER;
            v = v * 10 + (rest[i] - '0');
        }
        if (v < 1)
            return RD_SK_OTHER;
        *chunk = v;
        return RD_SK_CHUNK;
    }
    return RD_SK_OTHER;
}

typedef int (*rd_key_fn)(st_redis *s, rd_node *n, redisReply *keys, void *arg, psi_err *err);

/* SCAN over every data node for prefix + pattern; fn gets each batch. */
static int rd_scan(st_redis *s, const char *pattern, rd_key_fn fn, void *arg, psi_err *err)
{
    rd_node *nodes[RD_MAX_NODES];
    char match[ST_REDIS_PREFIX_MAX + 16];
    int nn = rd_data_nodes(s, nodes, err);

    if (nn < 0)
        return -1;
    snprintf(match, sizeof match, "%s%s", s->u.prefix, pattern);
    for (int i = 0; i < nn; i++) {
        rd_node *n = nodes[i];
        char cursor[32] = "0";
        do {
            if (rd_connect(s, n, err) < 0 || rd_drain(n, err) < 0)
                return -1;
            redisReply *r = RD_CALL(n, "SCAN", cursor, "MATCH", match, "COUNT", "1000");
            if (!r)
                return rd_io_fail(n, "SCAN", err);
            if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
                r->element[0]->type != REDIS_REPLY_STRING ||
                r->element[1]->type != REDIS_REPLY_ARRAY) {
                rd_reply_fail(n, "SCAN", match, r, err);
                rd_api.free_reply(r);
                return -1;
            }
            snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
            int rc = r->element[1]->elements ? fn(s, n, r->element[1], arg, err) : 0;
            rd_api.free_reply(r);
            if (rc != 0)
                return rc;
        } while (strcmp(cursor, "0") != 0);
    }
    return 0;
}

typedef struct rd_ls_arg {
    psi_ls_fn fn;
    void *arg;
    time_t now;
} rd_ls_arg;

static long long rd_int(const redisReply *r)
{
    if (r && r->type == REDIS_REPLY_INTEGER)
        return r->integer;
    if (r && r->type == REDIS_REPLY_STRING)
        return strtoll(r->str, NULL, 10);
    return -1;
}

/* One batch of meta keys: HMGET and TTL for each, pipelined. */
static int rd_ls_batch(st_redis *s, rd_node *n, redisReply *keys, void *argp, psi_err *err)
{
    rd_ls_arg *a = argp;
    static const char *fields[] = {"size", "refs", "t", "life"};

    for (size_t i = 0; i < keys->elements; i++) {
        redisReply *k = keys->element[i];
        const char *tag;
        size_t tlen;
        long ch;
        if (rd_skey_parse(s, k->str, k->len, &tag, &tlen, &ch) != RD_SK_META)
            continue;
        const char *hm[6] = {"HMGET", k->str, fields[0], fields[1], fields[2], fields[3]};
        size_t hl[6] = {5, k->len, 4, 4, 1, 4};
        const char *tt[2] = {"TTL", k->str};
        size_t tl[2] = {3, k->len - 2}; /* the object: the meta name less ".m" */
        void *r1 = NULL, *r2 = NULL;
        if (rd_api.append_argv(n->ctx, 6, hm, hl) != REDIS_OK ||
            rd_api.append_argv(n->ctx, 2, tt, tl) != REDIS_OK ||
            rd_api.get_reply(n->ctx, &r1) != REDIS_OK || rd_api.get_reply(n->ctx, &r2) != REDIS_OK) {
            if (r1)
                rd_api.free_reply(r1);
            return rd_io_fail(n, "HMGET", err);
        }
        redisReply *h = r1, *t = r2;
        psi_obj_info o;
        memset(&o, 0, sizeof o);
        snprintf(o.key, sizeof o.key, "%.*s", (int)tlen, tag);
        bool ok = h->type == REDIS_REPLY_ARRAY && h->elements == 4;
        o.size = ok ? (uint64_t)rd_int(h->element[0]) : 0;
        o.refs = ok ? rd_int(h->element[1]) : -1;
        long long put = ok ? rd_int(h->element[2]) : -1;
        o.age = put > 0 ? (int64_t)(a->now - put) : -1;
        o.lifetime = ok ? (int)rd_int(h->element[3]) : -1;
        o.expires = t->type == REDIS_REPLY_INTEGER && t->integer >= 0 ? t->integer : -1;
        if (o.lifetime != PSI_LIFE_REFCOUNT)
            o.refs = -1;
        snprintf(o.where, sizeof o.where, "%.80s:%d", n->host, n->port);
        rd_api.free_reply(r1);
        rd_api.free_reply(r2);
        if (!ok || o.expires < 0)
            continue; /* the object is gone: gc's business */
        if (a->fn(&o, a->arg) != 0)
            return 1;
    }
    return 0;
}

static int st_redis_ls(psi_store *st, psi_ls_fn fn, void *arg, psi_err *err)
{
    st_redis *s = (st_redis *)st;
    rd_ls_arg a = {fn, arg, time(NULL)};

    rd_enter(s);
    int rc = rd_scan(s, "{*}.m", rd_ls_batch, &a, err);
    rd_leave(s);
    return rc < 0 ? -1 : 0;
}

static int rd_gc_batch(st_redis *s, rd_node *n, redisReply *keys, void *argp, psi_err *err)
{
    psi_gc_report *r = argp;

    for (size_t i = 0; i < keys->elements; i++) {
        redisReply *k = keys->element[i];
        const char *tag;
        size_t tlen;
        long ch = 0;
        enum rd_skey kind = rd_skey_parse(s, k->str, k->len, &tag, &tlen, &ch);
        if (kind == RD_SK_OTHER) {
            r->unknown_seen++;
            continue;
        }
        if (kind == RD_SK_OBJ) {
            r->objects_seen++;
            continue;
        }
        rd_names nm;
        char chs[24];
        rd_names_make(s, tag, tlen, &nm);
        snprintf(chs, sizeof chs, "%ld", kind == RD_SK_CHUNK ? ch : 0L);
        if (kind == RD_SK_META)
            r->refs_seen++;
        const char *sha = n->sha[RD_SCRIPT_GC];
        const char *argv[6] = {sha[0] ? "EVALSHA" : "EVAL", sha[0] ? sha : rd_lua_gc, "2",
                               nm.obj, nm.meta, chs};
        redisReply *x = rd_call(n, 6, argv, NULL);
        if (!x)
            return rd_io_fail(n, "EVALSHA gc", err);
        if (x->type == REDIS_REPLY_INTEGER && x->integer > 0) {
            if (kind == RD_SK_META)
                r->refs_expired++;
            else
                r->tmp_removed++;
        }
        rd_api.free_reply(x);
    }
    return 0;
}

/* Removes what expiry or eviction left behind: meta hashes and chunks
 * whose object key is gone. Objects themselves expire on the server. */
static int st_redis_gc(psi_store *st, psi_gc_report *r, psi_err *err)
{
    st_redis *s = (st_redis *)st;

    memset(r, 0, sizeof *r);
    rd_enter(s);
    int rc = rd_scan(s, "{*", rd_gc_batch, r, err);
    rd_leave(s);
    return rc < 0 ? -1 : 0;
}

/* ---- open / close ---------------------------------------------------------- */

/* url NULL or "": PSI_STORE if it names a redis store, else the local
 * default server. Nothing is connected here: the first call connects. */
static int st_redis_open(const char *url, psi_store **out, psi_err *err)
{
    if (!url || !url[0]) {
        const char *env = getenv("PSI_STORE");
        url = env && strncmp(env, "redis://", 8) == 0 ? env : ST_REDIS_DEFAULT_URL;
    }
    if (rd_api_ready(err) < 0)
        return -1;
    st_redis *s = calloc(1, sizeof *s);
    if (!s)
        return psi_fail(err, ENOMEM, "redis store: out of memory");
    if (st_redis_url_parse(url, &s->u, err) < 0) {
        free(s);
        return -1;
    }
    s->base.ops = &psi_store_redis_ops;
    /* The URL without credentials, for messages and `psi store`. */
    const char *at = strchr(url, '@');
    const char *slash = strchr(url + 8, '/');
    if (at && (!slash || at < slash))
        snprintf(s->base.url, sizeof s->base.url, "redis://%s", at + 1);
    else
        snprintf(s->base.url, sizeof s->base.url, "%s", url);
    pthread_mutex_init(&s->lock, NULL);
    s->pid = getpid();
    s->nnodes = s->u.nservers;
    for (int i = 0; i < s->u.nservers; i++) {
        memcpy(s->nodes[i].host, s->u.servers[i].host, sizeof s->nodes[i].host);
        s->nodes[i].port = s->u.servers[i].port;
    }
    for (int i = 0; i < ST_REDIS_SLOTS; i++)
        s->slot_node[i] = -1;
    *out = &s->base;
    return 0;
}

static void rd_free(st_redis *s)
{
    explicit_bzero(s->u.pass, sizeof s->u.pass);
    free(s);
}

static void st_redis_close(psi_store *st)
{
    st_redis *s = (st_redis *)st;

    rd_enter(s);
    rd_drop_all(s, true);
    rd_leave(s);
    pthread_mutex_destroy(&s->lock);
    rd_free(s);
}

/* In a fork child: the parent's connections are closed here without a
 * byte sent (the parent keeps using them), the lock is not taken (another
 * parent thread may have held it at fork). */
static void st_redis_forget(psi_store *st)
{
    st_redis *s = (st_redis *)st;

    PSI_STORE_ENTER();
    rd_drop_all(s, false);
    PSI_STORE_LEAVE();
    rd_free(s);
}

const psi_store_ops psi_store_redis_ops = {
    .scheme = "redis",
    .id = PSI_CONN_REDIS,
    .open = st_redis_open,
    .put = st_redis_put,
    .get = st_redis_get,
    .release = st_redis_release,
    .exists = st_redis_exists,
    .gc = st_redis_gc,
    .ls = st_redis_ls,
    .close = st_redis_close,
    .forget = st_redis_forget,
};
