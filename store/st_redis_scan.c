/* st_redis_scan: listing and collecting the Redis connector's keys
 * (docs/store-redis.md §8): SCAN of the prefix on every data node. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "st_redis_int.h"

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

int st_redis_ls(psi_store *st, psi_ls_fn fn, void *arg, psi_err *err)
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
        const char *argv[6] = {sha[0] ? "EVALSHA" : "EVAL", sha[0] ? sha : rd_scripts[RD_SCRIPT_GC], "2",
                               nm.obj, nm.meta, chs};
        redisReply *x = rd_call(n, 6, argv, NULL);
        if (!x)
            return rd_io_fail(n, "EVALSHA gc", err);
        if (x->type == REDIS_REPLY_INTEGER && x->integer > 0)
            r->objects_removed++; /* what was left of one object, all at once */
        rd_api.free_reply(x);
    }
    return 0;
}

/* Removes what expiry or eviction left behind: meta hashes and chunks
 * whose object key is gone. Objects themselves expire on the server. */
int st_redis_gc(psi_store *st, psi_gc_report *r, psi_err *err)
{
    st_redis *s = (st_redis *)st;

    memset(r, 0, sizeof *r);
    rd_enter(s);
    int rc = rd_scan(s, "{*", rd_gc_batch, r, err);
    rd_leave(s);
    return rc < 0 ? -1 : 0;
}

