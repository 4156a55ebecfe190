/* Unit tests for the Redis connector (docs/store-redis.md): the URL parser,
 * Cluster key slots, home servers and chunk arithmetic; then, if
 * redis-server is installed, the connector against real servers started
 * here on free loopback ports (each in its own temp dir, killed at the
 * end of its test). */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "psi_store.h"
#include "psi_token.h"
#include "st_redis.h"

/* ---- URL -------------------------------------------------------------------- */

static st_redis_url U;

static int parse(const char *url)
{
    psi_err err = {0};
    int rc = st_redis_url_parse(url, &U, &err);
    if (rc < 0)
        assert_int_equal(err.code, EINVAL);
    return rc;
}

static void test_url_forms(void **state)
{
    (void)state;
    assert_int_equal(parse("redis://127.0.0.1:6379"), 0);
    assert_int_equal(U.nservers, 1);
    assert_string_equal(U.servers[0].host, "127.0.0.1");
    assert_int_equal(U.servers[0].port, 6379);
    assert_int_equal(U.db, 0);
    assert_false(U.has_pass);
    assert_string_equal(U.prefix, "psi:");
    assert_int_equal(U.connect_timeout_ms, 2000);
    assert_int_equal(U.timeout_ms, 10000);
    assert_int_equal(U.chunk, 0);

    assert_int_equal(parse("redis://cache.example.com"), 0);
    assert_int_equal(U.servers[0].port, 6379);

    assert_int_equal(parse("redis://:s3cret@h:7000/2"), 0);
    assert_true(U.has_pass);
    assert_false(U.has_user);
    assert_string_equal(U.pass, "s3cret");
    assert_int_equal(U.db, 2);

    assert_int_equal(parse("redis://alice:p%40ss%3Aw@h:1/"), 0);
    assert_true(U.has_user);
    assert_string_equal(U.user, "alice");
    assert_string_equal(U.pass, "p@ss:w");
    assert_int_equal(U.db, 0);

    assert_int_equal(parse("redis://:pw@a:1,b:2,[::1]:3/5?prefix=t1:&timeout_ms=500"
                           "&connect_timeout_ms=100&chunk=64K"),
                     0);
    assert_int_equal(U.nservers, 3);
    assert_string_equal(U.servers[1].host, "b");
    assert_int_equal(U.servers[1].port, 2);
    assert_string_equal(U.servers[2].host, "::1");
    assert_int_equal(U.servers[2].port, 3);
    assert_int_equal(U.db, 5);
    assert_string_equal(U.prefix, "t1:");
    assert_int_equal(U.timeout_ms, 500);
    assert_int_equal(U.connect_timeout_ms, 100);
    assert_int_equal(U.chunk, 64 * 1024);

    assert_int_equal(parse("redis://h:1?chunk=1MiB"), 0);
    assert_int_equal(U.chunk, 1 << 20);
    assert_int_equal(parse("redis://h:1?chunk=2MiB&prefix="), 0);
    assert_int_equal(U.chunk, 2 << 20);
    assert_string_equal(U.prefix, "");
    assert_int_equal(parse("redis://[::1]"), 0);
    assert_int_equal(U.servers[0].port, 6379);
}

/* Each malformed URL fails with a message containing `want`, and never
 * repeats the password. */
static void bad(const char *url, const char *want)
{
    psi_err err = {0};
    int rc = st_redis_url_parse(url, &U, &err);
    if (rc == 0)
        fail_msg("'%s' parsed, expected an error about '%s'", url, want);
    assert_int_equal(err.code, EINVAL);
    if (!strstr(err.msg, want))
        fail_msg("'%s': message '%s' lacks '%s'", url, err.msg, want);
    if (strstr(url, "hunter2") && strstr(err.msg, "hunter2"))
        fail_msg("'%s': message '%s' shows the password", url, err.msg);
}

static void test_url_errors(void **state)
{
    (void)state;
    bad("http://h:1", "expected redis://");
    bad("redis://", "no host");
    bad("redis:///0", "no host");
    bad("redis://hunter2@h:1", "no ':' before '@'");
    bad("redis://u:@h:1", "empty password");
    bad("redis://:hunter2%4@h:1", "bad %XX escape in the password");
    bad("redis://u%zz:hunter2@h:1", "bad %XX escape in the user name");
    bad("redis://:hunter2@h:0", "bad port '0'");
    bad("redis://h:65536", "bad port '65536'");
    bad("redis://h:", "bad port ''");
    bad("redis://h:6x", "bad port '6x'");
    bad("redis://h*st:1", "bad character '*'");
    bad("redis://:1", "empty host");
    bad("redis://a:1,,b:2", "empty server");
    bad("redis://a:1,", "empty server after ','");
    bad("redis://a:1,a:1", "server a:1 named twice");
    bad("redis://[::1:1", "'[' without ']'");
    bad("redis://[::1]x", "junk after ']'");
    bad("redis://[zz]:1", "bad IPv6 address");
    bad("redis://h:1/x", "bad database '/x'");
    bad("redis://h:1/-1", "bad database");
    bad("redis://h:1?prefix", "has no value");
    bad("redis://h:1?colour=red", "unknown option 'colour'");
    bad("redis://h:1?prefix={x}", "prefix '{x}'");
    bad("redis://h:1?timeout_ms=0", "timeout_ms='0'");
    bad("redis://h:1?connect_timeout_ms=abc", "connect_timeout_ms='abc'");
    bad("redis://h:1?chunk=12", "chunk='12'");
    bad("redis://h:1?chunk=1G", "chunk='1G'");
    bad("redis://h:1?chunk=5X", "chunk='5X'");
    bad("redis://a:1,b:2,c:3,d:4,e:5,f:6,g:7,h:8,i:9,j:10,k:11,l:12,m:13,n:14,o:15,p:16,q:17",
        "more than 16 servers");
    char big[1100];
    memset(big, 'a', sizeof big);
    memcpy(big, "redis://", 8);
    big[sizeof big - 1] = '\0';
    bad(big, "longer than 1023 bytes");
}

/* ---- slots, homes, chunks ---------------------------------------------- */

/* Expected values from `redis-cli CLUSTER KEYSLOT` (Redis 7.0.15). */
static void test_keyslot(void **state)
{
    static const struct {
        const char *key;
        unsigned slot;
    } v[] = {
        {"", 0},
        {"a", 15495},
        {"foo", 12182},
        {"123456789", 12739},
        {"{user1000}.following", 3443},
        {"user{}", 7599},
        {"psi:{0123456789abcdef0123456789abcdef}", 1829},
        {"psi:{0123456789abcdef0123456789abcdef}#3", 1829},
        {"x{a}y{b}", 15495},
        {"{}abc", 5980},
        {"hello world", 15332},
        {"foo{bar", 15278},
    };
    (void)state;
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        assert_int_equal(st_redis_keyslot(v[i].key, strlen(v[i].key)), v[i].slot);
    assert_int_equal(st_redis_crc16("123456789", 9), 0x31C3); /* XMODEM check value */
}

static void test_rendezvous(void **state)
{
    st_redis_server sv[3] = {{"10.0.0.1", 6379}, {"10.0.0.2", 6379}, {"10.0.0.3", 6380}};
    st_redis_server rev[3] = {sv[2], sv[1], sv[0]};
    int count[3] = {0}, moved = 0;
    (void)state;

    for (int i = 0; i < 3000; i++) {
        char key[40];
        int n = snprintf(key, sizeof key, "%032x", i * 2654435761u);
        int h = st_redis_home(key, (size_t)n, sv, 3);
        count[h]++;
        /* the order of the servers in the URL does not matter */
        assert_int_equal(2 - st_redis_home(key, (size_t)n, rev, 3), h);
        /* dropping server 2 moves only the keys that lived there */
        int h2 = st_redis_home(key, (size_t)n, sv, 2);
        if (h != 2)
            assert_int_equal(h2, h);
        else
            moved++;
    }
    for (int i = 0; i < 3; i++)
        if (count[i] < 850 || count[i] > 1150)
            fail_msg("server %d is home to %d of 3000 keys", i, count[i]);
    assert_int_equal(moved, count[2]);
    assert_int_equal(st_redis_home("k", 1, sv, 1), 0);
}

static void test_chunk_math(void **state)
{
    (void)state;
    assert_int_equal(st_redis_nchunks(1, 1024), 1);
    assert_int_equal(st_redis_nchunks(1024, 1024), 1);
    assert_int_equal(st_redis_nchunks(1025, 1024), 2);
    assert_int_equal(st_redis_nchunks(64ull << 20, 1 << 20), 64);
    assert_int_equal(st_redis_nchunks((64ull << 20) + 1, 1 << 20), 65);
    assert_int_equal(st_redis_nchunks(0, 1024), 0);
    assert_int_equal(st_redis_chunk_len(2500, 1024, 0), 1024);
    assert_int_equal(st_redis_chunk_len(2500, 1024, 1), 1024);
    assert_int_equal(st_redis_chunk_len(2500, 1024, 2), 452);
    assert_int_equal(st_redis_chunk_len(2500, 1024, 3), 0);
    assert_int_equal(st_redis_chunk_size(0, 0), 512u << 20);
    assert_int_equal(st_redis_chunk_size(0, 1 << 20), 1 << 20);
    assert_int_equal(st_redis_chunk_size(64 << 10, 1 << 20), 64 << 10);
    assert_int_equal(st_redis_chunk_size(4 << 20, 1 << 20), 1 << 20);
}

/* ---- live servers ---------------------------------------------------------- */

typedef struct server {
    pid_t pid;
    int port;
    char dir[64];
} server;

static int free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static int have_redis(void)
{
    return system("command -v redis-server >/dev/null 2>&1 && "
                  "command -v redis-cli >/dev/null 2>&1") == 0;
}

/* `redis-cli -p PORT ARGS` (with -a if pass); its first output line. */
static __attribute__((format(printf, 4, 5))) void cli(const server *sv, const char *pass,
                                                      char *out, const char *fmt, ...)
{
    char args[512], cmd[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "redis-cli --no-auth-warning -p %d %s%s %s 2>&1", sv->port,
             pass ? "-a " : "", pass ? pass : "", args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char line[256] = "";
    if (!fgets(line, sizeof line, p))
        line[0] = '\0';
    pclose(p);
    line[strcspn(line, "\n")] = '\0';
    if (out)
        strcpy(out, line);
}

static long cli_int(const server *sv, const char *fmt, const char *arg)
{
    char out[256];
    cli(sv, NULL, out, fmt, arg);
    return strtol(out, NULL, 10);
}

/* Servers of the running test, killed by its teardown even when it fails. */
static server *g_live[4];

/* Starts redis-server on `port` (0: a free one) with extra "--opt value"
 * words; polls PING. */
static void start_server_on(server *sv, const char *extra, int port)
{
    for (int i = 0; i < 4; i++)
        if (!g_live[i] || g_live[i] == sv) {
            g_live[i] = sv;
            break;
        }
    char cmd[600];
    snprintf(sv->dir, sizeof sv->dir, "/tmp/psi-rd-unit.XXXXXX");
    assert_non_null(mkdtemp(sv->dir));
    sv->port = port ? port : free_port();
    snprintf(cmd, sizeof cmd,
             "exec redis-server --port %d --bind 127.0.0.1 --save '' --appendonly no "
             "--dir %s --logfile %s/log %s",
             sv->port, sv->dir, sv->dir, extra ? extra : "");
    sv->pid = fork();
    assert_true(sv->pid >= 0);
    if (sv->pid == 0) {
        int null = open("/dev/null", O_RDWR);
        dup2(null, 1);
        dup2(null, 2);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    const char *pass = extra ? strstr(extra, "--requirepass ") : NULL;
    char pw[64] = "";
    if (pass)
        sscanf(pass + 14, "%63s", pw);
    for (int i = 0; i < 500; i++) {
        char out[256];
        cli(sv, pw[0] ? pw : NULL, out, "PING");
        if (strcmp(out, "PONG") == 0)
            return;
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    fail_msg("redis-server on port %d did not answer PING within 5 s", sv->port);
}

static void start_server(server *sv, const char *extra)
{
    start_server_on(sv, extra, 0);
}

static void stop_server(server *sv)
{
    char cmd[128];
    for (int i = 0; i < 4; i++)
        if (g_live[i] == sv)
            g_live[i] = NULL;
    if (sv->pid > 0) {
        kill(sv->pid, SIGKILL);
        waitpid(sv->pid, NULL, 0);
        sv->pid = 0;
    }
    if (!sv->dir[0])
        return;
    snprintf(cmd, sizeof cmd, "rm -rf %s", sv->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", sv->dir);
    sv->dir[0] = '\0';
}

static int teardown_live(void **state)
{
    (void)state;
    for (int i = 0; i < 4; i++)
        if (g_live[i])
            stop_server(g_live[i]);
    return 0;
}

static psi_store *open_url(const char *fmt, ...)
{
    char url[512];
    va_list ap;
    psi_err err = {0};
    psi_store *s = NULL;
    va_start(ap, fmt);
    vsnprintf(url, sizeof url, fmt, ap);
    va_end(ap);
    if (psi_store_open(url, &s, &err) < 0)
        fail_msg("open %s: %s", url, err.msg);
    return s;
}

static uint8_t *pattern(size_t n, unsigned seed)
{
    uint8_t *b = malloc(n);
    assert_non_null(b);
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b[i] = (uint8_t)x;
    }
    return b;
}

static void put_ok(psi_store *s, const void *b, size_t n, int life, uint32_t ttl, psi_token *t)
{
    psi_put_opts o = {.lifetime = (uint8_t)life, .ttl = ttl};
    psi_err err = {0};
    if (psi_store_put(s, b, n, &o, t, &err) < 0)
        fail_msg("put %zu bytes: %s", n, err.msg);
    assert_int_equal(t->connector, PSI_CONN_REDIS);
    assert_true(psi_key_valid(t->key, t->key_len));
}

static void resolve_same(psi_store *s, const psi_token *t, const void *b, size_t n)
{
    psi_obj o;
    psi_err err = {0};
    if (psi_store_resolve(s, t, &o, &err) < 0)
        fail_msg("resolve %s: %s", t->key, err.msg);
    assert_int_equal(o.len, n);
    assert_memory_equal(o.data, b, n);
    psi_obj_release(&o);
}

#define LIVE()                                                                                \
    do {                                                                                      \
        if (!have_redis())                                                                    \
            skip();                                                                           \
    } while (0)

static void test_live_put_get_refcount(void **state)
{
    server sv;
    psi_token t1, t2;
    psi_err err = {0};
    (void)state;
    LIVE();
    start_server(&sv, NULL);
    psi_store *s = open_url("redis://127.0.0.1:%d", sv.port);
    size_t n = 300 * 1024;
    uint8_t *b = pattern(n, 1);

    put_ok(s, b, n, PSI_LIFE_REFCOUNT, 0, &t1);
    assert_int_equal(t1.key_len, 32);
    assert_int_equal(t1.ttl, PSI_DEFAULT_TTL);
    /* the same bytes again: the same object, two references */
    put_ok(s, b, n, PSI_LIFE_REFCOUNT, 0, &t2);
    assert_string_equal(t1.key, t2.key);
    char meta[200];
    snprintf(meta, sizeof meta, "psi:{%s}.m", t1.key);
    assert_int_equal(cli_int(&sv, "HGET %s refs", meta), 2);
    assert_int_equal(cli_int(&sv, "DBSIZE%s", ""), 2); /* object + meta */
    long ttl = cli_int(&sv, "TTL psi:{%s}", t1.key);
    assert_true(ttl > PSI_DEFAULT_TTL - 10 && ttl <= PSI_DEFAULT_TTL);
    assert_true(psi_store_ops_by_id(PSI_CONN_REDIS)->exists(s, &t1));

    /* get hands over hiredis's buffer: no copy, a done hook */
    psi_obj o;
    assert_int_equal(s->ops->get(s, &t1, &o, &err), 0);
    assert_null(o.heap);
    assert_non_null(o.done);
    assert_memory_equal(o.data, b, n);
    psi_obj_release(&o);

    resolve_same(s, &t1, b, n);
    assert_int_equal(cli_int(&sv, "HGET %s refs", meta), 1);
    resolve_same(s, &t2, b, n);
    assert_int_equal(cli_int(&sv, "DBSIZE%s", ""), 0); /* the last reader removed it */
    assert_false(s->ops->exists(s, &t1));
    assert_int_equal(psi_store_resolve(s, &t1, &o, &err), -1);
    assert_int_equal(err.code, EIO);
    assert_non_null(strstr(err.msg, "no such object"));

    free(b);
    psi_store_close(s);
    stop_server(&sv);
}

static void test_live_ttl_and_evict(void **state)
{
    server sv;
    psi_token t, e1, e2;
    psi_err err = {0};
    psi_obj o;
    (void)state;
    LIVE();
    start_server(&sv, NULL);
    psi_store *s = open_url("redis://127.0.0.1:%d?prefix=x:", sv.port);
    size_t n = 70000;
    uint8_t *b = pattern(n, 2);

    /* lifetime ttl: no refcount; reads leave it; the token's TTL applies */
    put_ok(s, b, n, PSI_LIFE_TTL, 100, &t);
    assert_int_equal(t.ttl, 100);
    long ttl = cli_int(&sv, "TTL x:{%s}", t.key);
    assert_true(ttl > 90 && ttl <= 100);
    resolve_same(s, &t, b, n);
    resolve_same(s, &t, b, n);
    assert_true(s->ops->exists(s, &t));

    /* refcount with a TTL: a later put never shortens it */
    psi_token r1, r2;
    put_ok(s, b, n, PSI_LIFE_REFCOUNT, 500, &r1);
    put_ok(s, b, n, PSI_LIFE_REFCOUNT, 50, &r2);
    ttl = cli_int(&sv, "TTL x:{%s}", r1.key);
    assert_true(ttl > 490 && ttl <= 500);

    /* evict-on-read: one object per put; the first read removes it */
    put_ok(s, b, n, PSI_LIFE_EVICT_ON_READ, 0, &e1);
    put_ok(s, b, n, PSI_LIFE_EVICT_ON_READ, 0, &e2);
    assert_string_not_equal(e1.key, e2.key);
    resolve_same(s, &e1, b, n);
    assert_false(s->ops->exists(s, &e1));
    assert_true(s->ops->exists(s, &e2));
    assert_int_equal(psi_store_resolve(s, &e1, &o, &err), -1);
    assert_int_equal(err.code, EIO);
    resolve_same(s, &e2, b, n);
    char pat[200];
    snprintf(pat, sizeof pat, "x:{%.32s-e*", e1.key);
    assert_int_equal(cli_int(&sv, "EVAL \"return #redis.call('KEYS', ARGV[1])\" 0 '%s'", pat),
                     0);

    free(b);
    psi_store_close(s);
    stop_server(&sv);
}

static void test_live_chunked(void **state)
{
    server sv;
    psi_token t, t2;
    (void)state;
    LIVE();
    start_server(&sv, "--proto-max-bulk-len 1mb");
    psi_store *s = open_url("redis://127.0.0.1:%d", sv.port);
    size_t n = (5u << 20) + 3;
    uint8_t *b = pattern(n, 3);

    put_ok(s, b, n, PSI_LIFE_REFCOUNT, 0, &t);
    /* 6 chunks of <= 1 MiB, and the meta hash */
    assert_int_equal(cli_int(&sv, "DBSIZE%s", ""), 7);
    assert_int_equal(cli_int(&sv, "STRLEN psi:{%s}", t.key), 1 << 20);
    put_ok(s, b, n, PSI_LIFE_REFCOUNT, 0, &t2); /* stored already: counted only */
    assert_int_equal(cli_int(&sv, "DBSIZE%s", ""), 7);
    psi_obj o;
    psi_err err = {0};
    assert_int_equal(s->ops->get(s, &t, &o, &err), 0);
    assert_non_null(o.heap);
    assert_int_equal(o.len, n);
    assert_memory_equal(o.data, b, n);
    psi_obj_release(&o);
    resolve_same(s, &t, b, n);
    resolve_same(s, &t2, b, n);
    assert_int_equal(cli_int(&sv, "DBSIZE%s", ""), 0);

    /* a lost chunk is EIO naming it, never a short payload */
    put_ok(s, b, n, PSI_LIFE_REFCOUNT, 0, &t);
    cli(&sv, NULL, NULL, "DEL psi:{%s}#3", t.key);
    assert_int_equal(psi_store_resolve(s, &t, &o, &err), -1);
    assert_int_equal(err.code, EIO);
    assert_non_null(strstr(err.msg, "#3"));
    psi_store_close(s);

    /* CONFIG refused (renamed away): 512 MiB assumed, so no chunks */
    server nc;
    start_server(&nc, "--rename-command CONFIG \"\"");
    psi_store *s2 = open_url("redis://127.0.0.1:%d", nc.port);
    put_ok(s2, b, 2 << 20, PSI_LIFE_REFCOUNT, 0, &t2);
    assert_int_equal(cli_int(&nc, "DBSIZE%s", ""), 2);
    resolve_same(s2, &t2, b, 2 << 20);
    psi_store_close(s2);
    stop_server(&nc);

    /* ?chunk= forces smaller chunks on a server that takes large ones */
    s = open_url("redis://127.0.0.1:%d/1?chunk=64K", sv.port);
    put_ok(s, b, 200000, PSI_LIFE_EVICT_ON_READ, 0, &t);
    char out[64];
    cli(&sv, NULL, out, "-n 1 DBSIZE");
    assert_string_equal(out, "5"); /* 4 chunks + meta */
    resolve_same(s, &t, b, 200000);
    cli(&sv, NULL, out, "-n 1 DBSIZE");
    assert_string_equal(out, "0");

    free(b);
    psi_store_close(s);
    stop_server(&sv);
}

static void test_live_errors(void **state)
{
    server sv, oom;
    psi_token t;
    psi_err err = {0};
    psi_put_opts po = {.lifetime = PSI_LIFE_REFCOUNT};
    (void)state;
    LIVE();
    uint8_t *b = pattern(4 << 20, 4);

    /* nothing listens: ECONNREFUSED naming the server */
    int port = free_port();
    psi_store *s = open_url("redis://127.0.0.1:%d?connect_timeout_ms=500", port);
    assert_int_equal(psi_store_put(s, b, 1000, &po, &t, &err), -1);
    assert_int_equal(err.code, ECONNREFUSED);
    char where[64];
    snprintf(where, sizeof where, "127.0.0.1:%d", port);
    assert_non_null(strstr(err.msg, where));
    psi_store_close(s);

    /* AUTH: none, wrong, right; the password is never in a message */
    start_server(&sv, "--requirepass hunter2");
    s = open_url("redis://127.0.0.1:%d", sv.port);
    assert_int_equal(psi_store_put(s, b, 1000, &po, &t, &err), -1);
    assert_int_equal(err.code, EACCES);
    assert_non_null(strstr(err.msg, "NOAUTH"));
    psi_store_close(s);
    s = open_url("redis://:wrongpass@127.0.0.1:%d", sv.port);
    assert_int_equal(psi_store_put(s, b, 1000, &po, &t, &err), -1);
    assert_int_equal(err.code, EACCES);
    assert_non_null(strstr(err.msg, "AUTH failed"));
    assert_null(strstr(err.msg, "wrongpass"));
    assert_null(strstr(s->url, "wrongpass"));
    psi_store_close(s);
    s = open_url("redis://default:hunter2@127.0.0.1:%d/3", sv.port);
    put_ok(s, b, 1000, PSI_LIFE_REFCOUNT, 0, &t);
    resolve_same(s, &t, b, 1000);

    /* WRONGTYPE: the meta key is not a hash */
    char out[256];
    psi_hash128 h = psi_hash_buf(b, 2000);
    char hex[33];
    psi_hash_hex(&h, hex);
    cli(&sv, "hunter2", out, "-n 3 SET psi:{%s}.m junk", hex);
    assert_int_equal(psi_store_put(s, b, 2000, &po, &t, &err), -1);
    assert_int_equal(err.code, EPROTO);
    assert_non_null(strstr(err.msg, "WRONGTYPE"));
    snprintf(where, sizeof where, "127.0.0.1:%d", sv.port);
    assert_non_null(strstr(err.msg, where));
    psi_store_close(s);
    stop_server(&sv);

    /* OOM: ENOSPC, so the sender goes inline */
    start_server(&oom, "--maxmemory 1mb");
    s = open_url("redis://127.0.0.1:%d", oom.port);
    assert_int_equal(psi_store_put(s, b, 4 << 20, &po, &t, &err), -1);
    assert_int_equal(err.code, ENOSPC);
    assert_non_null(strstr(err.msg, "OOM"));
    psi_store_close(s);
    stop_server(&oom);
    free(b);
}

/* The server goes away and comes back (no persistence): the next call
 * reconnects; the object is gone and a read says so. */
static void test_live_restart(void **state)
{
    server sv;
    psi_token t;
    psi_err err = {0};
    psi_obj o;
    (void)state;
    LIVE();
    start_server(&sv, NULL);
    psi_store *s = open_url("redis://127.0.0.1:%d?timeout_ms=2000", sv.port);
    uint8_t *b = pattern(100000, 5);
    put_ok(s, b, 100000, PSI_LIFE_REFCOUNT, 0, &t);
    int port = sv.port;
    kill(sv.pid, SIGKILL);
    waitpid(sv.pid, NULL, 0);
    assert_int_equal(s->ops->get(s, &t, &o, &err), -1);
    assert_true(err.code == ECONNREFUSED || err.code == ECONNRESET);
    assert_true(psi_store_transient(err.code));

    stop_server(&sv);
    start_server_on(&sv, NULL, port);
    assert_int_equal(psi_store_resolve(s, &t, &o, &err), -1);
    assert_int_equal(err.code, EIO);
    assert_non_null(strstr(err.msg, "no such object"));
    put_ok(s, b, 100000, PSI_LIFE_REFCOUNT, 0, &t);
    resolve_same(s, &t, b, 100000);
    free(b);
    psi_store_close(s);
    stop_server(&sv);
}

static void test_live_two_servers(void **state)
{
    server a, c;
    psi_token t[40];
    uint8_t *b[40];
    (void)state;
    LIVE();
    start_server(&a, NULL);
    start_server(&c, NULL);
    psi_store *s = open_url("redis://127.0.0.1:%d,127.0.0.1:%d", a.port, c.port);
    for (int i = 0; i < 40; i++) {
        b[i] = pattern(5000, 100 + (unsigned)i);
        put_ok(s, b[i], 5000, PSI_LIFE_REFCOUNT, 0, &t[i]);
    }
    long na = cli_int(&a, "DBSIZE%s", ""), nc = cli_int(&c, "DBSIZE%s", "");
    assert_int_equal(na + nc, 80);
    assert_true(na >= 10 && nc >= 10);
    for (int i = 0; i < 40; i++) {
        resolve_same(s, &t[i], b[i], 5000);
        free(b[i]);
    }
    assert_int_equal(cli_int(&a, "DBSIZE%s", "") + cli_int(&c, "DBSIZE%s", ""), 0);
    psi_store_close(s);
    stop_server(&a);
    stop_server(&c);
}

/* After fork the child lets go of the handle without a byte on the
 * parent's connection (forget); the parent's next calls work unchanged.
 * A child that keeps using its copy gets connections of its own. */
static void test_live_fork(void **state)
{
    server sv;
    psi_token t, t2;
    (void)state;
    LIVE();
    start_server(&sv, NULL);
    psi_store *s = open_url("redis://127.0.0.1:%d", sv.port);
    uint8_t *b = pattern(50000, 7);
    put_ok(s, b, 50000, PSI_LIFE_REFCOUNT, 0, &t);
    put_ok(s, b, 50000, PSI_LIFE_REFCOUNT, 0, &t);
    long before = cli_int(&sv, "INFO stats | grep total_commands_processed | cut -d: -f2%s", "");

    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        s->ops->forget(s);
        _exit(0);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    long after = cli_int(&sv, "INFO stats | grep total_commands_processed | cut -d: -f2%s", "");
    assert_int_equal(after, before + 1); /* only the INFO of this test */
    resolve_same(s, &t, b, 50000);

    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        psi_err err = {0};
        psi_put_opts o = {.lifetime = PSI_LIFE_REFCOUNT};
        _exit(psi_store_put(s, b, 1000, &o, &t2, &err) == 0 ? 0 : 1);
    }
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    resolve_same(s, &t, b, 50000); /* the parent's connection is intact */
    free(b);
    psi_store_close(s);
    stop_server(&sv);
}

/* A server that stops answering: the command times out (ETIMEDOUT, which
 * the generic layer retries); once it answers again the next call
 * reconnects and works. */
static void test_live_timeout(void **state)
{
    server sv;
    psi_token t;
    psi_err err = {0};
    psi_obj o;
    (void)state;
    LIVE();
    start_server(&sv, NULL);
    psi_store *s = open_url("redis://127.0.0.1:%d?timeout_ms=300", sv.port);
    uint8_t *b = pattern(20000, 8);
    put_ok(s, b, 20000, PSI_LIFE_REFCOUNT, 0, &t);
    kill(sv.pid, SIGSTOP);
    assert_int_equal(s->ops->get(s, &t, &o, &err), -1);
    kill(sv.pid, SIGCONT);
    assert_int_equal(err.code, ETIMEDOUT);
    assert_non_null(strstr(err.msg, "timed out"));
    assert_true(psi_store_transient(err.code));
    resolve_same(s, &t, b, 20000);
    free(b);
    psi_store_close(s);
    stop_server(&sv);
}

/* One handle, several threads: the handle serialises them. */
typedef struct thr_arg {
    psi_store *s;
    unsigned seed;
    int failures;
} thr_arg;

static void *thr_main(void *p)
{
    thr_arg *a = p;
    for (int i = 0; i < 30; i++) {
        size_t n = 1000 + (size_t)(a->seed * 997 + (unsigned)i * 131) % 90000;
        uint8_t *b = pattern(n, a->seed * 100 + (unsigned)i);
        psi_token t;
        psi_obj o;
        psi_err err = {0};
        psi_put_opts po = {.lifetime = (uint8_t)(i % 3)};
        if (psi_store_put(a->s, b, n, &po, &t, &err) < 0 ||
            psi_store_resolve(a->s, &t, &o, &err) < 0 || o.len != n ||
            memcmp(o.data, b, n) != 0)
            a->failures++;
        else
            psi_obj_release(&o);
        free(b);
    }
    return NULL;
}

static void test_live_threads(void **state)
{
    server sv;
    pthread_t th[4];
    thr_arg a[4];
    (void)state;
    LIVE();
    start_server(&sv, NULL);
    psi_store *s = open_url("redis://127.0.0.1:%d?chunk=16K", sv.port);
    for (int i = 0; i < 4; i++) {
        a[i] = (thr_arg){s, (unsigned)i + 1, 0};
        assert_int_equal(pthread_create(&th[i], NULL, thr_main, &a[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(a[i].failures, 0);
    }
    psi_store_close(s);
    /* ttl objects stay; nothing else does */
    char out[64];
    cli(&sv, NULL, out, "EVAL \"return #redis.call('KEYS', 'psi:{*}')\" 0");
    long ttl_objs = strtol(out, NULL, 10);
    cli(&sv, NULL, out, "EVAL \"return #redis.call('KEYS', 'psi:{*-t}')\" 0");
    assert_int_equal(ttl_objs, strtol(out, NULL, 10));
    stop_server(&sv);
}

typedef struct ls_seen {
    int n;
    psi_obj_info o[8];
} ls_seen;

static int ls_fn(const psi_obj_info *o, void *arg)
{
    ls_seen *l = arg;
    if (l->n < 8)
        l->o[l->n] = *o;
    l->n++;
    return 0;
}

static void test_live_ls_gc(void **state)
{
    server sv;
    psi_token t1, t2, t3;
    psi_err err = {0};
    (void)state;
    LIVE();
    start_server(&sv, NULL);
    psi_store *s = open_url("redis://127.0.0.1:%d?chunk=1K", sv.port);
    uint8_t *b = pattern(3000, 6);
    put_ok(s, b, 3000, PSI_LIFE_REFCOUNT, 0, &t1);
    put_ok(s, b, 3000, PSI_LIFE_REFCOUNT, 0, &t1);
    put_ok(s, b, 100, PSI_LIFE_TTL, 60, &t2);
    put_ok(s, b + 1, 2500, PSI_LIFE_REFCOUNT, 0, &t3);
    cli(&sv, NULL, NULL, "SET unrelated x");

    ls_seen l = {0};
    assert_int_equal(s->ops->ls(s, ls_fn, &l, &err), 0);
    assert_int_equal(l.n, 3);
    for (int i = 0; i < 3; i++) {
        psi_obj_info *o = &l.o[i];
        assert_true(o->age >= 0 && o->age < 60);
        assert_true(o->expires > 0);
        assert_non_null(strstr(o->where, "127.0.0.1:"));
        if (strcmp(o->key, t1.key) == 0) {
            assert_int_equal(o->size, 3000);
            assert_int_equal(o->refs, 2);
            assert_int_equal(o->lifetime, PSI_LIFE_REFCOUNT);
        } else if (strcmp(o->key, t2.key) == 0) {
            assert_int_equal(o->size, 100);
            assert_int_equal(o->refs, -1);
            assert_int_equal(o->lifetime, PSI_LIFE_TTL);
            assert_true(o->expires <= 60);
        } else {
            assert_string_equal(o->key, t3.key);
        }
    }

    /* t3's first key is lost (evicted, say): gc removes its meta hash and
     * its other chunks; the rest stays */
    cli(&sv, NULL, NULL, "DEL psi:{%s}", t3.key);
    psi_gc_report r;
    assert_int_equal(s->ops->gc(s, &r, &err), 0);
    assert_int_equal(r.objects_removed, 1);
    assert_int_equal(r.unknown_seen, 0); /* only the prefix is scanned */
    char pat[200];
    snprintf(pat, sizeof pat, "psi:{%s}*", t3.key);
    assert_int_equal(cli_int(&sv, "EVAL \"return #redis.call('KEYS', ARGV[1])\" 0 '%s'", pat),
                     0);
    resolve_same(s, &t1, b, 3000);
    resolve_same(s, &t1, b, 3000);
    resolve_same(s, &t2, b, 100);
    free(b);
    psi_store_close(s);
    stop_server(&sv);
}

/* open(NULL): PSI_STORE if it is a redis URL, else the local default. */
static void test_default_url(void **state)
{
    psi_store *s = NULL;
    psi_err err = {0};
    const psi_store_ops *ops = psi_store_ops_by_id(PSI_CONN_REDIS);
    (void)state;
    assert_non_null(ops);
    assert_string_equal(ops->scheme, "redis");
    setenv("PSI_STORE", "redis://:hunter2@10.1.2.3:7000/4", 1);
    assert_int_equal(ops->open(NULL, &s, &err), 0);
    assert_string_equal(s->url, "redis://10.1.2.3:7000/4");
    ops->close(s);
    setenv("PSI_STORE", "file:///tmp/x", 1);
    assert_int_equal(ops->open("", &s, &err), 0);
    assert_string_equal(s->url, "redis://127.0.0.1:6379");
    ops->forget(s); /* as in a fork child: nothing connected, nothing sent */
    unsetenv("PSI_STORE");
    assert_int_equal(psi_store_open("redis://h:1?bogus=1", &s, &err), -1);
    assert_non_null(strstr(err.msg, "unknown option 'bogus'"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_forms),
        cmocka_unit_test(test_url_errors),
        cmocka_unit_test(test_keyslot),
        cmocka_unit_test(test_rendezvous),
        cmocka_unit_test(test_chunk_math),
        cmocka_unit_test(test_default_url),
        cmocka_unit_test_teardown(test_live_put_get_refcount, teardown_live),
        cmocka_unit_test_teardown(test_live_ttl_and_evict, teardown_live),
        cmocka_unit_test_teardown(test_live_chunked, teardown_live),
        cmocka_unit_test_teardown(test_live_errors, teardown_live),
        cmocka_unit_test_teardown(test_live_restart, teardown_live),
        cmocka_unit_test_teardown(test_live_two_servers, teardown_live),
        cmocka_unit_test_teardown(test_live_ls_gc, teardown_live),
        cmocka_unit_test_teardown(test_live_fork, teardown_live),
        cmocka_unit_test_teardown(test_live_timeout, teardown_live),
        cmocka_unit_test_teardown(test_live_threads, teardown_live),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
