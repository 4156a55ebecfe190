/* Unit tests for the ZeroMQ store (docs/store-zmq.md): the token key and
 * endpoint codec both ways and every malformed key, the URL parser, the
 * request/reply codec with every truncated or malformed message, and live
 * tests against a real `psi store-server` started here (build/psi). */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "psi_store.h"
#include "psi_token.h"
#include "st_zmq.h"

static const psi_hash128 H = {.lo = 0x0123456789abcdefULL, .hi = 0xfedcba9876543210ULL};
#define HHEX "fedcba98765432100123456789abcdef"

/* ---- keys ----------------------------------------------------------------- */

static void roundtrip(const stz_ep *ep, const char *want)
{
    char key[PSI_TOKEN_KEY_MAX + 1];
    psi_err err = {0};
    stz_ep back;
    psi_hash128 sum;

    int n = stz_key_encode(ep, &H, key, &err);
    assert_int_equal(n, (int)strlen(want));
    assert_string_equal(key, want);
    assert_true(psi_key_valid(key, (size_t)n));
    assert_int_equal(stz_key_decode(key, (size_t)n, &back, &sum, &err), 0);
    assert_true(stz_ep_equal(ep, &back));
    assert_true(sum.lo == H.lo && sum.hi == H.hi);
}

static void test_key_roundtrip(void **state)
{
    stz_ep ep = {.kind = STZ_EP_DEFAULT};
    roundtrip(&ep, "i" HHEX);

    memset(&ep, 0, sizeof ep);
    ep.kind = STZ_EP_TCP;
    ep.family = AF_INET;
    inet_pton(AF_INET, "10.1.2.254", ep.addr);
    ep.port = 5555;
    roundtrip(&ep, "t0a0102fe-5555-" HHEX);
    ep.port = 1;
    roundtrip(&ep, "t0a0102fe-1-" HHEX);
    ep.port = 65535;
    roundtrip(&ep, "t0a0102fe-65535-" HHEX);

    memset(&ep, 0, sizeof ep);
    ep.kind = STZ_EP_TCP;
    ep.family = AF_INET6;
    inet_pton(AF_INET6, "fe80::1", ep.addr);
    ep.port = 80;
    roundtrip(&ep, "tfe800000000000000000000000000001-80-" HHEX);

    memset(&ep, 0, sizeof ep);
    ep.kind = STZ_EP_IPC;
    strcpy(ep.path, "/t/s");
    roundtrip(&ep, "x2f742f73-" HHEX);
    memset(ep.path, 'a', STZ_IPC_PATH_MAX);
    ep.path[0] = '/';
    ep.path[STZ_IPC_PATH_MAX] = '\0';
    char key[PSI_TOKEN_KEY_MAX + 1];
    psi_err err = {0};
    int n = stz_key_encode(&ep, &H, key, &err);
    assert_int_equal(n, 1 + 2 * STZ_IPC_PATH_MAX + 1 + 32);
    assert_true(n <= PSI_TOKEN_KEY_MAX);
    ep.path[STZ_IPC_PATH_MAX] = 'a';
    ep.path[STZ_IPC_PATH_MAX + 1] = '\0';
    assert_int_equal(stz_key_encode(&ep, &H, key, &err), -1);
    assert_int_equal(err.code, ENAMETOOLONG);
}

static void test_key_malformed(void **state)
{
    static const char *const bad[] = {
        "",
        "i",
        HHEX,                                   /* no kind */
        "i" HHEX "0",                           /* too long for 'i' */
        "i" "FEDCBA98765432100123456789ABCDEF", /* uppercase hash */
        "i" "fedcba98765432100123456789abcdeg", /* not hex */
        "q" HHEX,                               /* unknown kind */
        "t0a0102fe-5555" HHEX,                  /* no dash before hash */
        "t0a0102fe5555-" HHEX,                  /* no dash after address */
        "t0a0102f-5555-" HHEX,                  /* 7 hex digits */
        "t0a0102fe00-5555-" HHEX,               /* 10 hex digits */
        "t0A0102fe-5555-" HHEX,                 /* uppercase address */
        "t0a0102fe-0-" HHEX,                    /* port 0 */
        "t0a0102fe-65536-" HHEX,                /* port too big */
        "t0a0102fe-05555-" HHEX,                /* leading zero */
        "t0a0102fe--" HHEX,                     /* no port */
        "t0a0102fe-55a5-" HHEX,                 /* port not decimal */
        "t0a0102fe-1234567-" HHEX,              /* port too long */
        "t-5555-" HHEX,                         /* no address */
        "x-" HHEX,                              /* empty path */
        "x2f7-" HHEX,                           /* odd hex */
        "x2f74" HHEX,                           /* no dash */
        "x7478-" HHEX,                          /* relative path */
        "x2f0078-" HHEX,                        /* NUL in the path */
        "x2F74-" HHEX,                          /* uppercase */
        "0123456789abcdef0123456789abcdef.1700000000.42.7", /* a file store key */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        stz_ep ep;
        psi_hash128 sum;
        psi_err err = {0};
        if (stz_key_decode(bad[i], strlen(bad[i]), &ep, &sum, &err) != -1)
            fail_msg("key '%s' was accepted", bad[i]);
        assert_int_equal(err.code, EIO);
        assert_non_null(strstr(err.msg, "not a zmq store key"));
    }
    /* a key too long for any token */
    char big[200];
    memset(big, 'a', sizeof big);
    stz_ep ep;
    psi_hash128 sum;
    psi_err err = {0};
    assert_int_equal(stz_key_decode(big, sizeof big, &ep, &sum, &err), -1);
}

static void test_ep_string(void **state)
{
    stz_ep ep;
    char s[STZ_EP_STR_MAX];
    psi_err err = {0};

    assert_int_equal(stz_ep_parse("tcp://127.0.0.1:9", &ep, &err), 0);
    assert_int_equal(stz_ep_string(&ep, s, sizeof s, &err), 0);
    assert_string_equal(s, "tcp://127.0.0.1:9");
    assert_true(stz_ep_loopback(&ep));
    assert_int_equal(stz_ep_parse("[::1]:70", &ep, &err), 0);
    assert_int_equal(stz_ep_string(&ep, s, sizeof s, &err), 0);
    assert_string_equal(s, "tcp://[::1]:70");
    assert_true(stz_ep_loopback(&ep));
    assert_int_equal(stz_ep_parse("10.0.0.1:70", &ep, &err), 0);
    assert_false(stz_ep_loopback(&ep));
    assert_int_equal(stz_ep_parse("ipc:///a/b", &ep, &err), 0);
    assert_int_equal(stz_ep_string(&ep, s, sizeof s, &err), 0);
    assert_string_equal(s, "ipc:///a/b");
    static const char *const bad[] = {"tcp://1.2.3.4", "udp://1.2.3.4:5", "ipc://rel",
                                      "1.2.3.4:0", "::1:5", "host.invalid.:5", "[::1]5",
                                      "tcp://:5"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (stz_ep_parse(bad[i], &ep, &err) != -1)
            fail_msg("endpoint '%s' was accepted", bad[i]);
}

/* ---- URLs ----------------------------------------------------------------- */

static void test_url_forms(void **state)
{
    stz_url u;
    psi_err err = {0};

    assert_int_equal(stz_url_parse("zmq://", &u, &err), 0);
    assert_int_equal(u.ep.kind, STZ_EP_DEFAULT);
    assert_true(u.autostart);
    assert_int_equal(u.timeout_ms, STZ_TIMEOUT_MS);

    assert_int_equal(stz_url_parse("zmq://?autostart=0&timeout_ms=250", &u, &err), 0);
    assert_false(u.autostart);
    assert_int_equal(u.timeout_ms, 250);

    assert_int_equal(stz_url_parse("zmq://127.0.0.1:7000", &u, &err), 0);
    assert_int_equal(u.ep.kind, STZ_EP_TCP);
    assert_int_equal(u.ep.port, 7000);
    assert_false(u.autostart);
    assert_int_equal(stz_url_parse("zmq://localhost:7000?autostart=1", &u, &err), 0);
    assert_true(u.autostart);
    assert_int_equal(u.ep.addr[0], 127);
    assert_int_equal(stz_url_parse("zmq://[::1]:7000", &u, &err), 0);
    assert_int_equal(u.ep.family, AF_INET6);

    assert_int_equal(stz_url_parse("zmq:///run/s.sock", &u, &err), 0);
    assert_int_equal(u.ep.kind, STZ_EP_IPC);
    assert_string_equal(u.ep.path, "/run/s.sock");
    assert_false(u.autostart);
}

static void test_url_errors(void **state)
{
    static const char *const bad[] = {
        "file:///x",
        "zmq://host",                    /* no port */
        "zmq://127.0.0.1:",              /* empty port */
        "zmq://127.0.0.1:0",
        "zmq://127.0.0.1:65536",
        "zmq://127.0.0.1:12x",
        "zmq://127.0.0.1:5/path",
        "zmq://[::1:5",
        "zmq://::1:5",                   /* v6 without brackets */
        "zmq://no-such-host.invalid:5",
        "zmq://?autostart=2",
        "zmq://?autostart",
        "zmq://?timeout_ms=0",
        "zmq://?timeout_ms=abc",
        "zmq://?bogus=1",
        "zmq://10.1.2.3:5?autostart=1",  /* autostart needs a local endpoint */
        "zmq:///a/path/that/is/longer/than/forty/seven/bytes/x.sock", /* no room in a key */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        stz_url u;
        psi_err err = {0};
        if (stz_url_parse(bad[i], &u, &err) != -1)
            fail_msg("URL '%s' was accepted", bad[i]);
        assert_true(err.code == EINVAL || err.code == ENAMETOOLONG);
        assert_true(err.msg[0] != '\0');
    }
    /* through the generic layer, with the scheme dispatch */
    psi_store *s;
    psi_err err = {0};
    assert_int_equal(psi_store_open("zmq://127.0.0.1", &s, &err), -1);
    assert_non_null(strstr(err.msg, "port"));
    assert_int_equal(psi_store_open("zmq://127.0.0.1:5", &s, &err), 0);
    assert_int_equal(s->ops->id, PSI_CONN_ZMQ);
    psi_store_close(s);
}

/* ---- requests and replies ------------------------------------------------- */

static void test_req_codec(void **state)
{
    stz_req r = {.op = STZ_PUT, .id = 0xdeadbeef, .lifetime = PSI_LIFE_EVICT_ON_READ,
                 .ttl = 77, .size = 1ull << 40, .sum = H};
    stz_req back;
    uint8_t b[STZ_REQ_LEN], c[STZ_REQ_LEN];
    psi_err err = {0};

    stz_req_encode(&r, b);
    assert_int_equal(stz_req_decode(b, sizeof b, &back, &err), 0);
    assert_true(back.op == r.op && back.id == r.id && back.lifetime == r.lifetime &&
                back.ttl == r.ttl && back.size == r.size && back.sum.lo == r.sum.lo &&
                back.sum.hi == r.sum.hi);
    assert_int_equal(stz_req_check(&back, 1, (size_t)(1ull << 40), &err), 0);

    for (size_t n = 0; n < STZ_REQ_LEN; n++) /* every truncation */
        assert_int_equal(stz_req_decode(b, n, &back, &err), -1);
    assert_int_equal(err.code, EPROTO);
    uint8_t longer[STZ_REQ_LEN + 1] = {0};
    memcpy(longer, b, sizeof b);
    assert_int_equal(stz_req_decode(longer, sizeof longer, &back, &err), -1);

    struct { size_t off; uint8_t val; } mut[] = {
        {0, 'X'}, {1, 'X'}, {2, 0}, {2, 2}, {3, 0}, {3, STZ_OP_MAX + 1}, {8, 3},
        {9, 1}, {10, 1}, {11, 1},
    };
    for (size_t i = 0; i < sizeof mut / sizeof mut[0]; i++) {
        memcpy(c, b, sizeof b);
        c[mut[i].off] = mut[i].val;
        if (stz_req_decode(c, sizeof c, &back, &err) != -1)
            fail_msg("request with byte %zu = %u was accepted", mut[i].off, mut[i].val);
    }
    /* a zero size for ops that name an object */
    for (uint8_t op = STZ_PUT; op <= STZ_RELEASE; op++) {
        stz_req z = {.op = op, .size = 0};
        stz_req_encode(&z, c);
        assert_int_equal(stz_req_decode(c, sizeof c, &back, &err), -1);
    }
    stz_req ls = {.op = STZ_LS};
    stz_req_encode(&ls, c);
    assert_int_equal(stz_req_decode(c, sizeof c, &back, &err), 0);

    /* frame checks */
    stz_req put = {.op = STZ_PUT, .size = 10};
    assert_int_equal(stz_req_check(&put, 0, 0, &err), -1);  /* no payload */
    assert_int_equal(stz_req_check(&put, 2, 10, &err), -1); /* two frames */
    assert_int_equal(stz_req_check(&put, 1, 9, &err), -1);  /* short */
    assert_int_equal(stz_req_check(&put, 1, 11, &err), -1); /* long */
    assert_int_equal(stz_req_check(&put, 1, 10, &err), 0);
    stz_req get = {.op = STZ_GET, .size = 10};
    assert_int_equal(stz_req_check(&get, 1, 10, &err), -1);
    assert_int_equal(stz_req_check(&get, 0, 0, &err), 0);
}

static void test_rep_codec(void **state)
{
    stz_rep r = {.op = STZ_GET, .id = 7, .status = 0, .v1 = 123, .v2 = 1ull << 63};
    stz_rep back;
    uint8_t b[STZ_REP_LEN], c[STZ_REP_LEN];
    psi_err err = {0};

    stz_rep_encode(&r, b);
    assert_int_equal(stz_rep_decode(b, sizeof b, &back, &err), 0);
    assert_true(back.op == r.op && back.id == r.id && back.status == r.status &&
                back.v1 == r.v1 && back.v2 == r.v2);
    for (size_t n = 0; n < STZ_REP_LEN; n++)
        assert_int_equal(stz_rep_decode(b, n, &back, &err), -1);
    uint8_t longer[STZ_REP_LEN + 1] = {0};
    memcpy(longer, b, sizeof b);
    assert_int_equal(stz_rep_decode(longer, sizeof longer, &back, &err), -1);
    struct { size_t off; uint8_t val; } mut[] = {
        {0, 'Q'}, {1, 'Q'}, {2, 9}, {3, 0}, {3, 200}, {10, 1}, {12, 1}, {15, 1},
    };
    for (size_t i = 0; i < sizeof mut / sizeof mut[0]; i++) {
        memcpy(c, b, sizeof b);
        c[mut[i].off] = mut[i].val;
        if (stz_rep_decode(c, sizeof c, &back, &err) != -1)
            fail_msg("reply with byte %zu = %u was accepted", mut[i].off, mut[i].val);
    }

    /* data frames against the header */
    assert_int_equal(stz_rep_check(&r, 1, 123, &err), 0);
    assert_int_equal(stz_rep_check(&r, 1, 122, &err), -1);
    assert_int_equal(stz_rep_check(&r, 0, 0, &err), -1);
    assert_int_equal(stz_rep_check(&r, 2, 123, &err), -1);
    stz_rep e = {.op = STZ_GET, .status = ENOENT};
    assert_int_equal(stz_rep_check(&e, 1, 14, &err), 0);
    assert_int_equal(stz_rep_check(&e, 0, 0, &err), -1);
    assert_int_equal(stz_rep_check(&e, 1, STZ_ERRMSG_MAX + 1, &err), -1);
    stz_rep put = {.op = STZ_PUT};
    assert_int_equal(stz_rep_check(&put, 1, 0, &err), 0);
    assert_int_equal(stz_rep_check(&put, 1, STZ_ADVERTISE_MAX + 1, &err), -1);
    assert_int_equal(stz_rep_check(&put, 0, 0, &err), -1);
    stz_rep ls = {.op = STZ_LS};
    assert_int_equal(stz_rep_check(&ls, 1, 2 * STZ_LS_REC_LEN, &err), 0);
    assert_int_equal(stz_rep_check(&ls, 1, STZ_LS_REC_LEN + 1, &err), -1);
    stz_rep st = {.op = STZ_STATS};
    assert_int_equal(stz_rep_check(&st, 1, STZ_STATS_LEN, &err), 0);
    assert_int_equal(stz_rep_check(&st, 1, STZ_STATS_LEN - 1, &err), -1);
    stz_rep rel = {.op = STZ_RELEASE};
    assert_int_equal(stz_rep_check(&rel, 0, 0, &err), 0);
    assert_int_equal(stz_rep_check(&rel, 1, 0, &err), -1);
}

static void test_ls_stats_codec(void **state)
{
    stz_ls_rec r = {.sum = H, .size = 99, .age = 5, .refs = 3, .expires = -1, .lifetime = 2}, b;
    uint8_t buf[STZ_LS_REC_LEN];
    stz_ls_encode(&r, buf);
    stz_ls_decode(buf, &b);
    assert_memory_equal(&r.sum, &b.sum, sizeof r.sum);
    assert_true(b.size == 99 && b.age == 5 && b.refs == 3 && b.expires == -1 && b.lifetime == 2);

    stz_stats s = {1, 2, 3, 4, 5, 6, 7, 8}, t;
    uint8_t sb[STZ_STATS_LEN];
    stz_stats_encode(&s, sb);
    stz_stats_decode(sb, &t);
    assert_memory_equal(&s, &t, sizeof s);
}

/* ---- live, against build/psi store-server --------------------------------- */

typedef struct live {
    char dir[PATH_MAX];
    char url[PATH_MAX + 64];
    pid_t pid;
    psi_store *s;
} live;

static char psi_bin[PATH_MAX];

/* build/psi, found from this binary: build/tests/x or build/san/tests/x. */
static int find_psi(void)
{
    char exe[PATH_MAX];
    const char *env = getenv("PSI_TEST_BIN");
    if (env && *env) {
        snprintf(psi_bin, sizeof psi_bin, "%s", env);
        return access(psi_bin, X_OK);
    }
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return -1;
    exe[n] = '\0';
    for (int up = 2; up <= 3; up++) {
        char d[PATH_MAX];
        snprintf(d, sizeof d, "%s", exe);
        for (int i = 0; i < up; i++) {
            char *sl = strrchr(d, '/');
            if (!sl)
                return -1;
            *sl = '\0';
        }
        if ((size_t)snprintf(psi_bin, sizeof psi_bin, "%.4000s/psi", d) >= sizeof psi_bin)
            return -1;
        if (access(psi_bin, X_OK) == 0)
            return 0;
    }
    return -1;
}

static int server_up(live *l)
{
    stz_url u;
    psi_err err = {0};
    assert_int_equal(stz_url_parse(l->url, &u, &err), 0);
    for (int i = 0; i < 500; i++) {
        if (stz_probe(&u.ep, 100) == 0)
            return 0;
        int st;
        if (waitpid(l->pid, &st, WNOHANG) == l->pid)
            return -1;
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return -1;
}

static int live_setup(void **state)
{
    live *l = calloc(1, sizeof *l);
    char sock[PATH_MAX], logf[PATH_MAX];
    psi_err err = {0};

    if (!psi_bin[0] && find_psi() < 0) {
        free(l);
        *state = NULL;
        return 0;
    }
    snprintf(l->dir, sizeof l->dir, "/tmp/psi-zt-XXXXXX");
    assert_non_null(mkdtemp(l->dir));
    snprintf(sock, sizeof sock, "%.200s/s.sock", l->dir);
    snprintf(logf, sizeof logf, "%.200s/server.log", l->dir);
    snprintf(l->url, sizeof l->url, "zmq://%s?timeout_ms=2000", sock);
    l->pid = fork();
    assert_true(l->pid >= 0);
    if (l->pid == 0) {
        char bind[PATH_MAX + 8];
        snprintf(bind, sizeof bind, "ipc://%s", sock);
        unsetenv("LD_PRELOAD");
        execl(psi_bin, psi_bin, "store-server", "--foreground", "--bind", bind,
              "--max-bytes", "1M", "--log-file", logf, (char *)NULL);
        _exit(127);
    }
    assert_int_equal(server_up(l), 0);
    assert_int_equal(psi_store_open(l->url, &l->s, &err), 0);
    *state = l;
    return 0;
}

static void live_kill(live *l)
{
    if (l->pid > 0) {
        kill(l->pid, SIGTERM);
        waitpid(l->pid, NULL, 0);
        l->pid = 0;
    }
}

static int live_teardown(void **state)
{
    live *l = *state;
    char cmd[PATH_MAX + 16];
    if (!l)
        return 0;
    live_kill(l);
    psi_store_close(l->s);
    snprintf(cmd, sizeof cmd, "rm -rf %s", l->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", l->dir);
    free(l);
    return 0;
}

#define LIVE(l)                                                               \
    live *l = *state;                                                         \
    if (!l)                                                                   \
        skip()

static stz_stats stats(live *l)
{
    stz_stats s;
    psi_err err = {0};
    if (stz_stats_get(l->s, &s, &err) < 0)
        fail_msg("stats: %s", err.msg);
    return s;
}

static uint8_t *pattern(size_t n, unsigned seed)
{
    uint8_t *p = malloc(n);
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)((i * 131 + seed * 7919) >> 3);
    return p;
}

static void put_ok(live *l, const void *buf, size_t n, uint8_t lifetime, uint32_t ttl,
                   psi_token *tok)
{
    psi_put_opts o = {.lifetime = lifetime, .ttl = ttl};
    psi_err err = {0};
    if (psi_store_put(l->s, buf, n, &o, tok, &err) < 0)
        fail_msg("put %zu: %s", n, err.msg);
    assert_int_equal(tok->connector, PSI_CONN_ZMQ);
    assert_true(psi_key_valid(tok->key, tok->key_len));
    assert_int_equal(tok->key[0], 'x');
}

static void resolve_ok(live *l, const psi_token *tok, const void *want, size_t n)
{
    psi_obj o;
    psi_err err = {0};
    if (psi_store_resolve(l->s, tok, &o, &err) < 0)
        fail_msg("resolve: %s", err.msg);
    assert_int_equal(o.len, n);
    assert_memory_equal(o.data, want, n);
    assert_null(o.heap); /* the zmq message itself, not a copy */
    assert_non_null(o.done);
    psi_obj_release(&o);
}

static void test_live_put_get_release(void **state)
{
    LIVE(l);
    psi_token tok;
    uint8_t *p = pattern(300000, 1);
    put_ok(l, p, 300000, PSI_LIFE_REFCOUNT, 0, &tok);
    assert_int_equal(tok.size, 300000);
    assert_true(l->s->ops->exists(l->s, &tok));
    stz_stats s = stats(l);
    assert_int_equal(s.objects, 1);
    assert_int_equal(s.bytes, 300000);
    resolve_ok(l, &tok, p, 300000);
    s = stats(l);
    assert_int_equal(s.objects, 0); /* released by resolve */
    assert_false(l->s->ops->exists(l->s, &tok));
    /* a second resolve of the same token: the object is gone */
    psi_obj o;
    psi_err err = {0};
    assert_int_equal(psi_store_resolve(l->s, &tok, &o, &err), -1);
    assert_int_equal(err.code, EIO);
    assert_non_null(strstr(err.msg, "not found"));
    assert_non_null(strstr(err.msg, l->dir));
    free(p);
}

static void test_live_refcount_dedup(void **state)
{
    LIVE(l);
    psi_token a, b;
    uint8_t *p = pattern(100000, 2);
    put_ok(l, p, 100000, PSI_LIFE_REFCOUNT, 0, &a);
    put_ok(l, p, 100000, PSI_LIFE_REFCOUNT, 0, &b);
    assert_string_equal(a.key, b.key);
    stz_stats s = stats(l);
    assert_int_equal(s.objects, 1); /* stored once */
    assert_int_equal(s.bytes, 100000);
    assert_int_equal(s.dedup_hits, 1);
    resolve_ok(l, &a, p, 100000);
    assert_int_equal(stats(l).objects, 1); /* b still holds it */
    resolve_ok(l, &b, p, 100000);
    assert_int_equal(stats(l).objects, 0);
    free(p);
}

static int count_obj(const psi_obj_info *o, void *arg)
{
    (*(int *)arg)++;
    assert_int_equal(o->size, 5000);
    assert_true(o->refs == 1 || o->refs == 0);
    assert_true(o->expires > 0);
    return 0;
}

static void test_live_ttl_and_ls(void **state)
{
    LIVE(l);
    psi_token tok;
    psi_err err = {0};
    uint8_t *p = pattern(5000, 3);
    put_ok(l, p, 5000, PSI_LIFE_TTL, 1, &tok);
    int n = 0;
    assert_int_equal(l->s->ops->ls(l->s, count_obj, &n, &err), 0);
    assert_int_equal(n, 1);
    resolve_ok(l, &tok, p, 5000); /* TTL: the release keeps it */
    assert_int_equal(stats(l).objects, 1);
    /* gone within a few seconds, by the server's timer */
    int i;
    for (i = 0; i < 60 && stats(l).objects != 0; i++) {
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(stats(l).objects, 0);
    assert_true(stats(l).expired >= 1);
    /* gc through the connector: nothing left to do */
    psi_gc_report r;
    assert_int_equal(l->s->ops->gc(l->s, &r, &err), 0);
    assert_int_equal(r.objects_removed, 0);
    free(p);
}

static void test_live_evict_on_read(void **state)
{
    LIVE(l);
    psi_token tok;
    uint8_t *p = pattern(70000, 4);
    put_ok(l, p, 70000, PSI_LIFE_EVICT_ON_READ, 0, &tok);
    assert_int_equal(stats(l).objects, 1);
    resolve_ok(l, &tok, p, 70000);
    assert_int_equal(stats(l).objects, 0);
    free(p);
}

static void test_live_full(void **state)
{
    LIVE(l);
    psi_token a, b;
    psi_err err = {0};
    uint8_t *p = pattern(700000, 5), *q = pattern(700000, 6);
    put_ok(l, p, 700000, PSI_LIFE_REFCOUNT, 0, &a);
    assert_int_equal(psi_store_put(l->s, q, 700000, NULL, &b, &err), -1);
    assert_int_equal(err.code, ENOSPC);
    assert_non_null(strstr(err.msg, "store full"));
    assert_int_equal(stats(l).refused_full, 1);
    /* the same bytes again are no new object: accepted though full */
    put_ok(l, p, 700000, PSI_LIFE_REFCOUNT, 0, &b);
    resolve_ok(l, &a, p, 700000);
    resolve_ok(l, &b, p, 700000);
    /* room again */
    put_ok(l, q, 700000, PSI_LIFE_REFCOUNT, 0, &b);
    resolve_ok(l, &b, q, 700000);
    free(p);
    free(q);
}

static void test_live_fork(void **state)
{
    LIVE(l);
    psi_token tok;
    uint8_t *p = pattern(50000, 7);
    put_ok(l, p, 50000, PSI_LIFE_REFCOUNT, 0, &tok);
    pid_t pid = fork();
    if (pid == 0) {
        /* the child's connector makes its own context */
        psi_obj o;
        psi_err err = {0};
        psi_token t2;
        int ok = psi_store_resolve(l->s, &tok, &o, &err) == 0 && o.len == 50000 &&
                 memcmp(o.data, p, 50000) == 0;
        if (ok)
            psi_obj_release(&o);
        ok = ok && psi_store_put(l->s, p, 50000, NULL, &t2, &err) == 0;
        _exit(ok ? 0 : 1);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    /* the parent's connection still works; the child's put holds one ref */
    assert_int_equal(stats(l).objects, 1);
    psi_token t3;
    put_ok(l, p, 50000, PSI_LIFE_REFCOUNT, 0, &t3);
    resolve_ok(l, &t3, p, 50000);
    resolve_ok(l, &t3, p, 50000); /* the child's reference */
    assert_int_equal(stats(l).objects, 0);
    free(p);
}

/* Raw requests to the server: a DEALER of our own. */
typedef struct raw {
    const stz_api *z;
    void *ctx, *sock;
} raw;

static void raw_open(raw *r, live *l)
{
    psi_err err = {0};
    char ep[PATH_MAX + 16];
    int t = 2000, zero = 0;
    r->z = stz_load(&err);
    assert_non_null(r->z);
    r->ctx = r->z->ctx_new();
    r->sock = r->z->socket(r->ctx, ZMQ_DEALER);
    r->z->setsockopt(r->sock, ZMQ_RCVTIMEO, &t, sizeof t);
    r->z->setsockopt(r->sock, ZMQ_LINGER, &zero, sizeof zero);
    snprintf(ep, sizeof ep, "ipc://%.200s/s.sock", l->dir);
    assert_int_equal(r->z->connect(r->sock, ep), 0);
}

static void raw_close(raw *r)
{
    r->z->close(r->sock);
    r->z->ctx_term(r->ctx);
}

/* Sends n frames. */
static void raw_send(raw *r, int n, const void *const *bufs, const size_t *lens)
{
    for (int i = 0; i < n; i++)
        assert_true(r->z->send(r->sock, bufs[i], lens[i], i + 1 < n ? ZMQ_SNDMORE : 0) >= 0);
}

/* Receives one reply; returns its status, or -1 if none came. */
static int raw_reply(raw *r, stz_rep *rep)
{
    uint8_t h[64], d[256];
    psi_err err = {0};
    zmq_msg_t m;
    r->z->msg_init(&m);
    int n = r->z->msg_recv(&m, r->sock, 0);
    if (n < 0) {
        r->z->msg_close(&m);
        return -1;
    }
    size_t len = r->z->msg_size(&m);
    memcpy(h, r->z->msg_data(&m), len < sizeof h ? len : sizeof h);
    int more = r->z->msg_more(&m);
    r->z->msg_close(&m);
    while (more) {
        r->z->msg_init(&m);
        r->z->msg_recv(&m, r->sock, 0);
        size_t dl = r->z->msg_size(&m);
        memcpy(d, r->z->msg_data(&m), dl < sizeof d - 1 ? dl : sizeof d - 1);
        more = r->z->msg_more(&m);
        r->z->msg_close(&m);
    }
    assert_int_equal(stz_rep_decode(h, len, rep, &err), 0);
    return (int)rep->status;
}

static void test_live_malformed_requests(void **state)
{
    LIVE(l);
    raw r;
    stz_rep rep;
    uint8_t hdr[STZ_REQ_LEN], payload[100] = {1, 2, 3};
    raw_open(&r, l);

    /* a header that does not decode: dropped, no reply */
    static const uint8_t junk[5] = "junk";
    raw_send(&r, 1, (const void *const[]){junk}, (const size_t[]){4});
    /* PUT without its payload frame */
    stz_req q = {.op = STZ_PUT, .id = 1, .size = 100, .sum = psi_hash_buf(payload, 100)};
    stz_req_encode(&q, hdr);
    raw_send(&r, 1, (const void *const[]){hdr}, (const size_t[]){sizeof hdr});
    assert_int_equal(raw_reply(&r, &rep), EPROTO);
    assert_int_equal(rep.id, 1);
    /* PUT whose payload is shorter than its header says */
    q.id = 2;
    stz_req_encode(&q, hdr);
    raw_send(&r, 2, (const void *const[]){hdr, payload}, (const size_t[]){sizeof hdr, 99});
    assert_int_equal(raw_reply(&r, &rep), EPROTO);
    assert_int_equal(rep.id, 2);
    /* PUT whose payload is not what its hash names */
    q.id = 3;
    q.sum.lo ^= 1;
    stz_req_encode(&q, hdr);
    raw_send(&r, 2, (const void *const[]){hdr, payload}, (const size_t[]){sizeof hdr, 100});
    assert_int_equal(raw_reply(&r, &rep), EPROTO);
    /* PUT with a frame after its payload */
    q.id = 7;
    q.sum = psi_hash_buf(payload, 100);
    stz_req_encode(&q, hdr);
    raw_send(&r, 3, (const void *const[]){hdr, payload, payload},
             (const size_t[]){sizeof hdr, 100, 5});
    assert_int_equal(raw_reply(&r, &rep), EPROTO);
    assert_int_equal(rep.id, 7);
    /* GET with a frame too many */
    stz_req g = {.op = STZ_GET, .id = 4, .size = 100, .sum = psi_hash_buf(payload, 100)};
    stz_req_encode(&g, hdr);
    raw_send(&r, 2, (const void *const[]){hdr, payload}, (const size_t[]){sizeof hdr, 1});
    assert_int_equal(raw_reply(&r, &rep), EPROTO);
    /* a GET of something never stored */
    g.id = 5;
    stz_req_encode(&g, hdr);
    raw_send(&r, 1, (const void *const[]){hdr}, (const size_t[]){sizeof hdr});
    assert_int_equal(raw_reply(&r, &rep), ENOENT);
    /* every truncation of a valid header: dropped; the server lives on */
    for (size_t n = 0; n < STZ_REQ_LEN; n++)
        raw_send(&r, 1, (const void *const[]){hdr}, (const size_t[]){n});
    stz_req ping = {.op = STZ_PING, .id = 6};
    stz_req_encode(&ping, hdr);
    raw_send(&r, 1, (const void *const[]){hdr}, (const size_t[]){sizeof hdr});
    assert_int_equal(raw_reply(&r, &rep), 0);
    assert_int_equal(rep.id, 6);
    assert_int_equal(stats(l).objects, 0);
    raw_close(&r);
}

/* A request that times out (server stopped) fails with ETIMEDOUT, retried
 * then EIO; once the server runs again the next request on that endpoint
 * gets its own reply, not the stale one. */
static void test_live_timeout_recovers(void **state)
{
    LIVE(l);
    psi_token tok;
    psi_obj o;
    psi_err err = {0};
    psi_store *fast;
    char url[PATH_MAX + 64];
    uint8_t *p = pattern(40000, 9);

    put_ok(l, p, 40000, PSI_LIFE_REFCOUNT, 0, &tok);
    snprintf(url, sizeof url, "zmq://%.200s/s.sock?timeout_ms=300", l->dir);
    assert_int_equal(psi_store_open(url, &fast, &err), 0);
    assert_int_equal(kill(l->pid, SIGSTOP), 0);
    assert_int_equal(fast->ops->get(fast, &tok, &o, &err), -1);
    assert_int_equal(err.code, ETIMEDOUT);
    assert_non_null(strstr(err.msg, "ipc://"));
    assert_int_equal(kill(l->pid, SIGCONT), 0);
    /* its answer to the abandoned GET goes to the closed socket, not here */
    assert_int_equal(fast->ops->get(fast, &tok, &o, &err), 0);
    assert_int_equal(o.len, 40000);
    assert_memory_equal(o.data, p, 40000);
    psi_obj_release(&o);
    resolve_ok(l, &tok, p, 40000);
    assert_int_equal(stats(l).objects, 0);
    psi_store_close(fast);
    free(p);
}

static void test_live_server_gone(void **state)
{
    LIVE(l);
    psi_token tok;
    psi_obj o;
    psi_err err = {0};
    uint8_t *p = pattern(9000, 8);
    put_ok(l, p, 9000, PSI_LIFE_REFCOUNT, 0, &tok);
    live_kill(l);
    setenv("PSI_STORE_RETRIES", "2", 1); /* read once, by the first resolve */
    assert_int_equal(psi_store_resolve(l->s, &tok, &o, &err), -1);
    assert_int_equal(err.code, EIO);
    assert_non_null(strstr(err.msg, "ipc://"));
    assert_non_null(strstr(err.msg, "retries"));
    /* a put finds no server and, without autostart, fails at once */
    assert_int_equal(psi_store_put(l->s, p, 9000, NULL, &tok, &err), -1);
    assert_int_equal(err.code, ECONNREFUSED);
    free(p);
}

static int free_tcp_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
    socklen_t al = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* A server with --advertise: a put through its ipc endpoint issues a key
 * naming the advertised tcp address, which a reader then uses. */
static void test_live_advertise(void **state)
{
    live l = {0};
    char sock[PATH_MAX], tcp[64], adv[64], want[64];
    psi_err err = {0};

    if (!psi_bin[0] && find_psi() < 0)
        skip();
    int port = free_tcp_port();
    snprintf(l.dir, sizeof l.dir, "/tmp/psi-zt-XXXXXX");
    assert_non_null(mkdtemp(l.dir));
    snprintf(sock, sizeof sock, "%.200s/s.sock", l.dir);
    snprintf(l.url, sizeof l.url, "zmq://%s", sock);
    snprintf(tcp, sizeof tcp, "tcp://127.0.0.1:%d", port);
    snprintf(adv, sizeof adv, "127.0.0.1:%d", port);
    l.pid = fork();
    if (l.pid == 0) {
        char bind[PATH_MAX + 8];
        snprintf(bind, sizeof bind, "ipc://%s", sock);
        char logf[PATH_MAX];
        snprintf(logf, sizeof logf, "%.200s/server.log", l.dir);
        execl(psi_bin, psi_bin, "store-server", "--foreground", "--bind", bind, "--bind", tcp,
              "--advertise", adv, "--log-file", logf, (char *)NULL);
        _exit(127);
    }
    assert_int_equal(server_up(&l), 0);
    assert_int_equal(psi_store_open(l.url, &l.s, &err), 0);
    psi_token tok;
    uint8_t *p = pattern(30000, 11);
    psi_put_opts o = {0};
    assert_int_equal(psi_store_put(l.s, p, 30000, &o, &tok, &err), 0);
    snprintf(want, sizeof want, "t7f000001-%d-", port);
    assert_memory_equal(tok.key, want, strlen(want));
    /* resolved through the default zmq store (the token's server), not l.s */
    psi_obj obj;
    assert_int_equal(psi_store_resolve(NULL, &tok, &obj, &err), 0);
    assert_int_equal(obj.len, 30000);
    assert_memory_equal(obj.data, p, 30000);
    psi_obj_release(&obj);
    assert_int_equal(stats(&l).objects, 0);
    free(p);
    live_kill(&l);
    psi_store_close(l.s);
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf %.200s", l.dir);
    assert_int_equal(system(cmd), 0);
}

/* Four processes put to zmq:// at once with no server: the lock lets
 * exactly one start it, and every put succeeds. */
static void test_live_autostart_once(void **state)
{
    char dir[PATH_MAX], run[PATH_MAX], logp[PATH_MAX], line[512];
    enum { N = 4 };
    pid_t kids[N];

    if (!psi_bin[0] && find_psi() < 0)
        skip();
    snprintf(dir, sizeof dir, "/tmp/psi-za-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(run, sizeof run, "%.200s/run", dir);
    snprintf(logp, sizeof logp, "%.200s/run/store.log", dir);
    assert_int_equal(mkdir(run, 0700), 0);
    for (int i = 0; i < N; i++) {
        kids[i] = fork();
        assert_true(kids[i] >= 0);
        if (kids[i] == 0) {
            /* a fresh process: the runtime dir is read on first use */
            setenv("PSI_RUNTIME_DIR", run, 1);
            setenv("PSI_STORE_SERVER_BIN", psi_bin, 1);
            psi_store *s;
            psi_token tok;
            psi_err err = {0};
            uint8_t *p = pattern(20000, 100 + (unsigned)i);
            int ok = psi_store_open("zmq://", &s, &err) == 0 &&
                     psi_store_put(s, p, 20000, NULL, &tok, &err) == 0 && tok.key[0] == 'i';
            if (!ok)
                fprintf(stderr, "child %d: %s\n", i, err.msg);
            _exit(ok ? 0 : 1);
        }
    }
    for (int i = 0; i < N; i++) {
        int st;
        assert_int_equal(waitpid(kids[i], &st, 0), kids[i]);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    FILE *f = fopen(logp, "r");
    assert_non_null(f);
    int starts = 0;
    long pid = 0;
    while (fgets(line, sizeof line, f)) {
        char *b = strstr(line, "psi store-server[");
        if (b && !pid)
            pid = strtol(b + strlen("psi store-server["), NULL, 10);
        starts += strstr(line, "listening on") != NULL;
    }
    fclose(f);
    assert_true(pid > 1);
    kill((pid_t)pid, SIGTERM);
    assert_int_equal(starts, 1);
    char cmd[PATH_MAX + 16];
    for (int i = 0; i < 100 && kill((pid_t)pid, 0) == 0; i++) {
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    snprintf(cmd, sizeof cmd, "rm -rf %.200s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_roundtrip),
        cmocka_unit_test(test_key_malformed),
        cmocka_unit_test(test_ep_string),
        cmocka_unit_test(test_url_forms),
        cmocka_unit_test(test_url_errors),
        cmocka_unit_test(test_req_codec),
        cmocka_unit_test(test_rep_codec),
        cmocka_unit_test(test_ls_stats_codec),
        cmocka_unit_test_setup_teardown(test_live_put_get_release, live_setup, live_teardown),
        cmocka_unit_test_setup_teardown(test_live_refcount_dedup, live_setup, live_teardown),
        cmocka_unit_test_setup_teardown(test_live_ttl_and_ls, live_setup, live_teardown),
        cmocka_unit_test_setup_teardown(test_live_evict_on_read, live_setup, live_teardown),
        cmocka_unit_test_setup_teardown(test_live_full, live_setup, live_teardown),
        cmocka_unit_test_setup_teardown(test_live_fork, live_setup, live_teardown),
        cmocka_unit_test_setup_teardown(test_live_malformed_requests, live_setup, live_teardown),
        cmocka_unit_test_setup_teardown(test_live_timeout_recovers, live_setup, live_teardown),
        cmocka_unit_test_setup_teardown(test_live_server_gone, live_setup, live_teardown),
        cmocka_unit_test(test_live_advertise),
        cmocka_unit_test(test_live_autostart_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
