/* st_redis_conn: the Redis connector's connections (docs/store-redis.md):
 * hiredis loaded privately, connection set-up (AUTH, Cluster detection,
 * SELECT, proto-max-bulk-len, scripts), the Cluster slot map, pipelines
 * written with writev and their redirects (MOVED, ASK, TRYAGAIN). */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "psi_log.h"
#include "st_redis_int.h"

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

const char *const rd_scripts[] = {rd_lua_commit, rd_lua_release, rd_lua_gc};

/* ---- hiredis, loaded privately -------------------------------------------- */

rd_api_table rd_api;

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

int rd_api_ready(psi_err *err)
{
    pthread_once(&rd_api_once, rd_api_load);
    if (rd_api.connect)
        return 0;
    return psi_fail(err, ENOSYS, "redis store: cannot load libhiredis.so.0.14 (install the "
                    "Debian package libhiredis0.14): %s", rd_api.error);
}

static struct timeval rd_tv(int ms)
{
    return (struct timeval){.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
}

/* A transport failure: the context is dropped (no bytes sent) so the next
 * call connects again. EOF and timeouts get the errno the generic layer
 * retries on. */
int rd_io_fail(rd_node *n, const char *what, psi_err *err)
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

int rd_reply_fail(const rd_node *n, const char *cmd, const char *key,
                         const redisReply *r, psi_err *err)
{
    if (!r || r->type != REDIS_REPLY_ERROR)
        return psi_fail(err, EPROTO, "redis %s:%d: %s %s: unexpected reply type %d", n->host,
                        n->port, cmd, key, r ? r->type : -1);
    return psi_fail(err, rd_reply_errno(r), "redis %s:%d: %s %s: %.*s", n->host, n->port, cmd,
                    key, (int)(r->len > 160 ? 160 : r->len), r->str);
}

/* One command, one reply, on a connected node (set-up commands). */
redisReply *rd_call(rd_node *n, int argc, const char **argv, const size_t *len)
{
    void *r = NULL;
    if (rd_api.append_argv(n->ctx, argc, argv, len) != REDIS_OK ||
        rd_api.get_reply(n->ctx, &r) != REDIS_OK)
        return NULL;
    return r;
}


static int rd_load_slots(st_redis *s, rd_node *n, psi_err *err);

/* Connects a node and prepares the connection: AUTH, Cluster detection
 * (once per store), SELECT, proto-max-bulk-len and the scripts. */
int rd_connect(st_redis *s, rd_node *n, psi_err *err)
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
    /* hiredis frees its read buffer after every reply larger than 16 KiB
     * and grows it again for the next one: malloc and page-fault churn on
     * every get. Buffers up to RD_READER_KEEP stay. */
    n->ctx->reader->maxbuf = RD_READER_KEEP;

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
            s->topology = 2;
            if (rd_load_slots(s, n, err) < 0)
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
rd_node *rd_home(st_redis *s, const char *tag, size_t tlen, psi_err *err)
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
int rd_drain(rd_node *n, psi_err *err)
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
int rd_write(st_redis *s, rd_node *n, rd_cmd *c, int nc, const bool *todo, bool asking,
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

void rd_free_replies(rd_cmd *c, int nc)
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
int rd_exec(st_redis *s, const char *tag, size_t tlen, rd_cmd *c, int nc, psi_err *err)
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

/* ---- lock, fork ----------------------------------------------------------- */

void rd_drop_all(st_redis *s)
{
    for (int i = 0; i < s->nnodes; i++)
        if (s->nodes[i].ctx) {
            rd_api.free_ctx(s->nodes[i].ctx); /* closes the fd; sends nothing */
            s->nodes[i].ctx = NULL;
        }
}

void rd_enter(st_redis *s)
{
    pthread_mutex_lock(&s->lock);
    PSI_STORE_ENTER();
    /* A forked child never writes to its parent's connections. */
    if (s->pid != getpid()) {
        rd_drop_all(s);
        s->pid = getpid();
    }
}

void rd_leave(st_redis *s)
{
    PSI_STORE_LEAVE();
    pthread_mutex_unlock(&s->lock);
}

