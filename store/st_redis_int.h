/* st_redis_int: what the Redis connector's files share (st_redis.c: the
 * operations; st_redis_conn.c: connections and pipelines; st_redis_scan.c:
 * ls and gc). Not an interface: see psi_store.h and docs/store-redis.md. */
#ifndef ST_REDIS_INT_H
#define ST_REDIS_INT_H

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/types.h>

#include "psi_store.h"
#include "st_redis.h"

#define RD_MAX_NODES 64       /* servers plus Cluster nodes discovered */
#define RD_REDIRECTS 5        /* MOVED/ASK/TRYAGAIN rounds per command */
#define RD_BATCH_CMDS 64      /* commands per pipeline round trip */
#define RD_BATCH_BYTES ((size_t)64 << 20)
#define RD_CHECK_FIRST ((size_t)1 << 20) /* puts this large ask "stored already?" first */
#define RD_HEX 32
#define RD_READER_KEEP ((size_t)1 << 20) /* hiredis read buffer kept between replies */
#define RD_NAME_MAX (ST_REDIS_PREFIX_MAX + PSI_TOKEN_KEY_MAX + 4) /* P{H} */


/* hiredis, loaded with dlopen on first use (rd_api_ready). */
typedef struct rd_api_table {
    redisContext *(*connect)(const char *, int, const struct timeval);
    int (*set_timeout)(redisContext *, const struct timeval);
    void (*free_ctx)(redisContext *);
    int (*append_argv)(redisContext *, int, const char **, const size_t *);
    int (*get_reply)(redisContext *, void **);
    void (*free_reply)(void *);
    char error[256];
} rd_api_table;

extern rd_api_table rd_api;
int rd_api_ready(psi_err *err);


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
extern const char *const rd_scripts[]; /* the Lua texts, by RD_SCRIPT_* */

typedef struct rd_cmd {
    int argc;
    const char *argv[10];
    size_t len[10];
    int script;         /* EVALSHA of rd_scripts[script], or -1 */
    redisReply *reply;  /* filled by rd_exec */
    rd_node *node;      /* where the reply came from */
} rd_cmd;

#define RD_ARG(c, i, p, n) ((void)((c)->argv[i] = (p)), (void)((c)->len[i] = (n)))
#define RD_ARGV(...) ((const char *[]){__VA_ARGS__})
#define RD_CALL(n, ...)                                                                  \
    rd_call((n), (int)(sizeof RD_ARGV(__VA_ARGS__) / sizeof(char *)), RD_ARGV(__VA_ARGS__), \
            NULL)

/* Connections (st_redis_conn.c). */
int rd_connect(st_redis *s, rd_node *n, psi_err *err);
redisReply *rd_call(rd_node *n, int argc, const char **argv, const size_t *len);
int rd_io_fail(rd_node *n, const char *what, psi_err *err);
int rd_reply_fail(const rd_node *n, const char *cmd, const char *key, const redisReply *r,
                  psi_err *err);
rd_node *rd_home(st_redis *s, const char *tag, size_t tlen, psi_err *err);
int rd_write(st_redis *s, rd_node *n, rd_cmd *c, int nc, const bool *todo, bool asking,
             psi_err *err);
int rd_drain(rd_node *n, psi_err *err);
int rd_exec(st_redis *s, const char *tag, size_t tlen, rd_cmd *c, int nc, psi_err *err);
void rd_free_replies(rd_cmd *c, int nc);
void rd_drop_all(st_redis *s);
void rd_enter(st_redis *s);
void rd_leave(st_redis *s);

/* Keys (st_redis.c). */
enum rd_kind { RD_BAD, RD_REF, RD_TTL, RD_EVICT };
enum rd_kind rd_key_kind(const char *k, size_t n);
typedef struct rd_names {
    char obj[RD_NAME_MAX];
    char meta[RD_NAME_MAX + 2];
    size_t obj_len, meta_len;
    const char *tag;
    size_t tag_len;
} rd_names;
void rd_names_make(const st_redis *s, const char *key, size_t n, rd_names *out);

/* ls and gc (st_redis_scan.c). */
int st_redis_ls(psi_store *st, psi_ls_fn fn, void *arg, psi_err *err);
int st_redis_gc(psi_store *st, psi_gc_report *r, psi_err *err);

#endif
