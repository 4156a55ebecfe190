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
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "psi_text.h"
#include "st_redis_int.h"

static atomic_uint_fast64_t rd_nonce_seq;

/* ---- keys ----------------------------------------------------------------- */

/* A token key is one of ours: H, H-t or H-e<16 hex>. */
enum rd_kind rd_key_kind(const char *k, size_t n)
{
    if (n < RD_HEX || !psi_is_lower_hex(k, RD_HEX) || !psi_key_valid(k, n))
        return RD_BAD;
    if (n == RD_HEX)
        return RD_REF;
    if (n == RD_HEX + 2 && memcmp(k + RD_HEX, "-t", 2) == 0)
        return RD_TTL;
    if (n == RD_HEX + 18 && memcmp(k + RD_HEX, "-e", 2) == 0 && psi_is_lower_hex(k + RD_HEX + 2, 16))
        return RD_EVICT;
    return RD_BAD;
}

/* Server-side names of a token key: P{H}, P{H}.m, and P{H}#i. */

void rd_names_make(const st_redis *s, const char *key, size_t n, rd_names *out)
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

/* ---- put ------------------------------------------------------------------ */

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
    int nfirst = 1;

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
    if (kind == RD_EVICT) {
        /* The object goes with the GETDEL; its metadata goes in the same
         * pipeline (same hashtag; best effort: it carries the TTL and
         * expires anyway, so its reply is not checked). */
        memset(&c[1], 0, sizeof c[1]);
        c[1].script = -1;
        c[1].argc = 2;
        RD_ARG(&c[1], 0, "DEL", 3);
        RD_ARG(&c[1], 1, nm.meta, nm.meta_len);
        nfirst = 2;
    }
    if (rd_exec(s, nm.tag, nm.tag_len, c, nfirst, err) < 0)
        return -1;
    redisReply *first = c[0].reply;
    rd_node *n = c[0].node;
    if (first->type == REDIS_REPLY_NIL) {
        rd_free_replies(c, nfirst);
        return psi_fail(err, ENOENT, "redis %s:%d: %s %s: no such object (expired, evicted, "
                        "already read, or lost in a restart)", n->host, n->port, get, nm.obj);
    }
    if (first->type != REDIS_REPLY_STRING) {
        rd_reply_fail(n, get, nm.obj, first, err);
        rd_free_replies(c, nfirst);
        return -1;
    }
    if (first->len >= tok->size || first->len == 0) {
        /* The whole object: handed over without a copy. */
        obj->data = (const uint8_t *)first->str;
        obj->len = first->len;
        obj->done = rd_reply_done;
        obj->done_ctx = first;
        rd_free_replies(c + 1, nfirst - 1);
        return 0;
    }

    /* Chunked: every chunk but the last as long as the first. */
    size_t chunk = first->len, size = (size_t)tok->size;
    size_t nchunks = st_redis_nchunks(size, chunk);
    uint8_t *buf = malloc(size);
    if (!buf) {
        rd_free_replies(c, nfirst);
        return psi_fail(err, ENOMEM, "redis store: object %s: no memory for %zu bytes",
                        nm.obj, size);
    }
    memcpy(buf, first->str, chunk);
    rd_free_replies(c, nfirst);
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
    rd_drop_all(s);
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
    rd_drop_all(s);
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

