/* Unit tests for the PSI_* environment: sizes, peers, levels, booleans,
 * peer matching and psi_config_load's one-warning-per-bad-variable rule. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "psi_config.h"
#include "psi_log.h"

static psi_config g_cfg; /* large: keep it off the test stack */

/* ---- psi_parse_size --------------------------------------------------- */

static uint64_t size_ok(const char *s)
{
    psi_err err = {0};
    uint64_t v = 0;
    if (psi_parse_size(s, &v, &err) != 0)
        fail_msg("psi_parse_size(\"%s\") failed: %s", s, err.msg);
    return v;
}

static void size_bad(const char *s, const char *msg_part)
{
    psi_err err = {0};
    uint64_t v = 777;
    assert_int_equal(psi_parse_size(s, &v, &err), -1);
    assert_int_equal(v, 777); /* untouched on error */
    assert_non_null(strstr(err.msg, msg_part));
}

static void test_size_plain(void **state)
{
    assert_int_equal(size_ok("1"), 1);
    assert_int_equal(size_ok("1048576"), 1048576);
    assert_int_equal(size_ok("007"), 7);
    assert_int_equal(size_ok("1B"), 1);
    assert_int_equal(size_ok("12b"), 12);
    assert_true(size_ok("18446744073709551615") == UINT64_MAX);
}

static void test_size_binary_suffixes(void **state)
{
    const uint64_t k = 1024;
    assert_int_equal(size_ok("64K"), 64 * k);
    assert_int_equal(size_ok("64k"), 64 * k);
    assert_int_equal(size_ok("64KiB"), 64 * k);
    assert_int_equal(size_ok("64kib"), 64 * k);
    assert_int_equal(size_ok("1M"), k * k);
    assert_int_equal(size_ok("1MiB"), k * k);
    assert_int_equal(size_ok("1mib"), k * k);
    assert_int_equal(size_ok("2G"), 2 * k * k * k);
    assert_int_equal(size_ok("2GiB"), 2 * k * k * k);
    assert_true(size_ok("3T") == 3 * k * k * k * k);
    assert_true(size_ok("3TiB") == 3 * k * k * k * k);
}

static void test_size_decimal_suffixes(void **state)
{
    assert_int_equal(size_ok("1KB"), 1000);
    assert_int_equal(size_ok("1kb"), 1000);
    assert_int_equal(size_ok("5MB"), 5000000);
    assert_int_equal(size_ok("2GB"), 2000000000ull);
    assert_true(size_ok("4TB") == 4000000000000ull);
}

static void test_size_overflow(void **state)
{
    size_bad("18446744073709551616", "too large");
    size_bad("99999999999999999999999", "too large");
    size_bad("17179869184G", "too large"); /* 2^34 * 2^30 = 2^64 */
    size_bad("16777216T", "too large");    /* 2^24 * 2^40 */
    assert_true(size_ok("17179869183G") == 17179869183ull << 30);
}

static void test_size_junk(void **state)
{
    size_bad("", "empty");
    size_bad("12Q", "unknown suffix 'Q'");
    size_bad("1.5M", "unknown suffix '.5M'");
    size_bad(" 1M", "digit");
    size_bad("1M ", "unknown suffix");
    size_bad("1 M", "unknown suffix");
    size_bad("-1", "digit");
    size_bad("+1", "digit");
    size_bad("K", "digit");
    size_bad("1MiBx", "unknown suffix");
    size_bad("1KiBB", "unknown suffix");
    size_bad("0x10", "unknown suffix");
    size_bad("1Mi", "unknown suffix");
}

static void test_size_zero(void **state)
{
    size_bad("0", "at least 1 byte");
    size_bad("0K", "at least 1 byte");
    size_bad("000", "at least 1 byte");
}

/* ---- levels and booleans ---------------------------------------------- */

static void test_log_level(void **state)
{
    assert_int_equal(psi_parse_log_level("error"), PSI_LOG_ERROR);
    assert_int_equal(psi_parse_log_level("WARN"), PSI_LOG_WARN);
    assert_int_equal(psi_parse_log_level("warning"), PSI_LOG_WARN);
    assert_int_equal(psi_parse_log_level("Info"), PSI_LOG_INFO);
    assert_int_equal(psi_parse_log_level("debug"), PSI_LOG_DEBUG);
    assert_int_equal(psi_parse_log_level("0"), 0);
    assert_int_equal(psi_parse_log_level("3"), 3);
    assert_int_equal(psi_parse_log_level("4"), -1);
    assert_int_equal(psi_parse_log_level("10"), -1);
    assert_int_equal(psi_parse_log_level(""), -1);
    assert_int_equal(psi_parse_log_level("verbose"), -1);
    assert_int_equal(psi_parse_log_level(NULL), -1);
}

static void test_bool(void **state)
{
    const char *yes[] = {"1", "yes", "YES", "true", "True", "on", "ON"};
    const char *no[] = {"0", "no", "No", "false", "FALSE", "off", ""};
    const char *bad[] = {"2", "y", "n", "enable", " 1", "1 ", "nope"};

    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
        assert_int_equal(psi_parse_bool(yes[i]), 1);
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        assert_int_equal(psi_parse_bool(no[i]), 0);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(psi_parse_bool(bad[i]), -1);
}

static void test_store_url(void **state)
{
    psi_err err;
    assert_int_equal(psi_check_store_url("", &err), 0);
    assert_int_equal(psi_check_store_url("file:///tmp/x", &err), 0);
    assert_int_equal(psi_check_store_url("shm://", &err), 0);
    assert_int_equal(psi_check_store_url("redis://:pw@h:6379/0", &err), 0);
    assert_int_equal(psi_check_store_url("zmq://tcp://h:1", &err), 0);
    assert_int_equal(psi_check_store_url("ftp://x", &err), -1);
    assert_int_equal(psi_check_store_url("/tmp/dir", &err), -1);
    assert_int_equal(psi_check_store_url("file:/tmp", &err), -1);
}

/* ---- psi_parse_peers -------------------------------------------------- */

static psi_config *peers_ok(const char *s)
{
    psi_err err = {0};
    memset(&g_cfg, 0, sizeof g_cfg);
    if (psi_parse_peers(s, &g_cfg, &err) != 0)
        fail_msg("psi_parse_peers(\"%s\") failed: %s", s, err.msg);
    return &g_cfg;
}

static void peers_bad(const char *s, const char *entry, const char *msg_part)
{
    psi_err err = {0};
    memset(&g_cfg, 0, sizeof g_cfg);
    assert_int_equal(psi_parse_peers(s, &g_cfg, &err), -1);
    if (!strstr(err.msg, entry) || !strstr(err.msg, msg_part))
        fail_msg("psi_parse_peers(\"%s\"): message \"%s\" lacks \"%s\" or \"%s\"", s, err.msg,
                 entry, msg_part);
}

static void assert_v4(const psi_peer *p, const char *addr, int port)
{
    unsigned char a[4];
    assert_int_equal(inet_pton(AF_INET, addr, a), 1);
    assert_int_equal(p->kind, PSI_PEER_INET);
    assert_int_equal(p->family, AF_INET);
    assert_memory_equal(p->addr, a, 4);
    assert_int_equal(p->port, port);
}

static void test_peers_good(void **state)
{
    psi_config *c = peers_ok("1.2.3.4:5000");
    assert_int_equal(c->npeers, 1);
    assert_v4(&c->peers[0], "1.2.3.4", 5000);

    c = peers_ok("[::1]:5000");
    assert_int_equal(c->npeers, 1);
    assert_int_equal(c->peers[0].family, AF_INET6);
    assert_int_equal(c->peers[0].addr[15], 1);
    assert_int_equal(c->peers[0].port, 5000);

    c = peers_ok("10.0.0.1:*");
    assert_v4(&c->peers[0], "10.0.0.1", -1);

    /* A v4-mapped address is the IPv4 host. */
    c = peers_ok("[::ffff:10.1.2.3]:80");
    assert_v4(&c->peers[0], "10.1.2.3", 80);

    c = peers_ok("unix:/run/app.sock");
    assert_int_equal(c->peers[0].kind, PSI_PEER_UNIX);
    assert_string_equal(c->peers[0].path, "/run/app.sock");

    c = peers_ok("unix:@abstract");
    assert_string_equal(c->peers[0].path, "@abstract");
}

static void test_peers_list_whitespace_empty(void **state)
{
    psi_config *c = peers_ok("  1.1.1.1:1 ,\t[::1]:2 ,unix:/x  ");
    assert_int_equal(c->npeers, 3);
    assert_v4(&c->peers[0], "1.1.1.1", 1);
    assert_int_equal(c->peers[1].port, 2);
    assert_string_equal(c->peers[2].path, "/x");

    assert_int_equal(peers_ok("")->npeers, 0);
    assert_int_equal(peers_ok("   ")->npeers, 0);
    assert_int_equal(peers_ok("1.1.1.1:1,,1.1.1.2:1,")->npeers, 2);
    assert_int_equal(peers_ok("1.1.1.1:1,1.1.1.1:1")->npeers, 1); /* duplicates once */
}

static void test_peers_names(void **state)
{
    psi_config *c = peers_ok("localhost:5000");
    bool v4 = false;

    assert_true(c->npeers >= 1);
    for (size_t i = 0; i < c->npeers; i++) {
        assert_int_equal(c->peers[i].port, 5000);
        if (c->peers[i].family == AF_INET && c->peers[i].addr[0] == 127)
            v4 = true;
    }
    assert_true(v4);
    peers_bad("no-such-host.invalid:1", "no-such-host.invalid", "cannot resolve");
}

static void test_peers_bad(void **state)
{
    char longpath[300];

    peers_bad("1.2.3.4", "1.2.3.4", "missing ':port'");
    peers_bad("1.2.3.4:0", "1.2.3.4:0", "port 0");
    peers_bad("1.2.3.4:65536", "1.2.3.4:65536", "1 to 65535");
    peers_bad("1.2.3.4:abc", "1.2.3.4:abc", "1 to 65535");
    peers_bad("1.2.3.4:", "1.2.3.4:", "missing port");
    peers_bad("1.2.3.4:-1", "1.2.3.4:-1", "1 to 65535");
    peers_bad("::1:5000", "::1:5000", "brackets");
    peers_bad("[::1]5000", "[::1]5000", "[v6addr]:port");
    peers_bad("[::1", "[::1", "[v6addr]:port");
    peers_bad("[zz::x]:1", "[zz::x]:1", "not an IPv6 address");
    peers_bad("[1.2.3.4]:1", "[1.2.3.4]:1", "not an IPv6 address");
    peers_bad(":5000", ":5000", "missing host");
    peers_bad("unix:", "unix:", "empty");
    peers_bad("unix:@", "unix:@", "empty");
    memset(longpath, 'a', sizeof longpath);
    memcpy(longpath, "unix:/", 6);
    longpath[5 + 108] = '\0'; /* a 108-byte path leaves no room for the NUL */
    peers_bad(longpath, "unix:/aaa", "longer than 107");
}

static void test_peers_partial(void **state)
{
    psi_err err;
    memset(&g_cfg, 0, sizeof g_cfg);
    assert_int_equal(psi_parse_peers("1.1.1.1:1, bad ,1.1.1.2:2", &g_cfg, &err), -1);
    assert_int_equal(g_cfg.npeers, 1);
    assert_non_null(strstr(err.msg, "'bad'"));
}

static void test_peers_too_many(void **state)
{
    char list[PSI_MAX_PEERS * 20 + 32] = "";
    psi_err err;

    for (int i = 0; i <= PSI_MAX_PEERS; i++)
        sprintf(list + strlen(list), "10.0.%d.%d:1,", i / 256, i % 256);
    memset(&g_cfg, 0, sizeof g_cfg);
    assert_int_equal(psi_parse_peers(list, &g_cfg, &err), -1);
    assert_int_equal(g_cfg.npeers, PSI_MAX_PEERS);
    assert_non_null(strstr(err.msg, "more than 64 peers"));
}

/* ---- psi_peers_match -------------------------------------------------- */

static struct sockaddr_in sin4(const char *addr, int port)
{
    struct sockaddr_in s = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    assert_int_equal(inet_pton(AF_INET, addr, &s.sin_addr), 1);
    return s;
}

static struct sockaddr_in6 sin6(const char *addr, int port)
{
    struct sockaddr_in6 s = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};
    assert_int_equal(inet_pton(AF_INET6, addr, &s.sin6_addr), 1);
    return s;
}

static bool match4(const psi_config *c, const char *addr, int port)
{
    struct sockaddr_in s = sin4(addr, port);
    return psi_peers_match(c, (struct sockaddr *)&s, sizeof s);
}

static bool match6(const psi_config *c, const char *addr, int port)
{
    struct sockaddr_in6 s = sin6(addr, port);
    return psi_peers_match(c, (struct sockaddr *)&s, sizeof s);
}

static void test_match_inet(void **state)
{
    psi_config *c = peers_ok("10.0.0.1:5000,10.0.0.2:*,[2001:db8::1]:7000,[::ffff:10.0.0.3]:80");

    assert_true(match4(c, "10.0.0.1", 5000));
    assert_false(match4(c, "10.0.0.1", 5001));
    assert_false(match4(c, "10.0.0.9", 5000));
    assert_true(match4(c, "10.0.0.2", 1));     /* any port */
    assert_true(match4(c, "10.0.0.2", 65535));
    assert_true(match6(c, "2001:db8::1", 7000));
    assert_false(match6(c, "2001:db8::1", 7001));
    assert_false(match6(c, "2001:db8::2", 7000));
    /* v4-mapped destinations match IPv4 peers, both ways of writing them. */
    assert_true(match6(c, "::ffff:10.0.0.1", 5000));
    assert_true(match6(c, "::ffff:10.0.0.2", 9));
    assert_true(match4(c, "10.0.0.3", 80));
    assert_true(match6(c, "::ffff:10.0.0.3", 80));
    assert_false(match6(c, "::ffff:10.0.0.1", 5001));
    /* an IPv6 address that merely ends in the same bytes is not the host */
    assert_false(match6(c, "::10.0.0.1", 5000));
}

static void test_match_bad_input(void **state)
{
    psi_config *c = peers_ok("10.0.0.1:5000");
    struct sockaddr_in s = sin4("10.0.0.1", 5000);
    struct sockaddr sa = {.sa_family = AF_PACKET};

    assert_false(psi_peers_match(c, (struct sockaddr *)&s, sizeof s - 1));
    assert_false(psi_peers_match(c, NULL, sizeof s));
    assert_false(psi_peers_match(c, &sa, sizeof sa));
    assert_false(psi_peers_match(peers_ok(""), (struct sockaddr *)&s, sizeof s));
}

static socklen_t sun_path_addr(struct sockaddr_un *u, const char *path)
{
    memset(u, 0, sizeof *u);
    u->sun_family = AF_UNIX;
    strcpy(u->sun_path, path);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);
}

static socklen_t sun_abstract(struct sockaddr_un *u, const char *name)
{
    memset(u, 0, sizeof *u);
    u->sun_family = AF_UNIX;
    memcpy(u->sun_path + 1, name, strlen(name));
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(name));
}

static void test_match_unix(void **state)
{
    psi_config *c = peers_ok("unix:/tmp/s.sock,unix:@abs");
    struct sockaddr_un u;
    socklen_t len;

    len = sun_path_addr(&u, "/tmp/s.sock");
    assert_true(psi_peers_match(c, (struct sockaddr *)&u, len));
    assert_true(psi_peers_match(c, (struct sockaddr *)&u, sizeof u)); /* padded */
    assert_true(psi_peers_match(c, (struct sockaddr *)&u, len - 1));  /* no NUL */
    len = sun_path_addr(&u, "/tmp/s.sock2");
    assert_false(psi_peers_match(c, (struct sockaddr *)&u, len));
    len = sun_path_addr(&u, "/tmp/s.soc");
    assert_false(psi_peers_match(c, (struct sockaddr *)&u, len));
    len = sun_path_addr(&u, "@abs"); /* a file named "@abs" is not abstract */
    assert_false(psi_peers_match(c, (struct sockaddr *)&u, len));

    len = sun_abstract(&u, "abs");
    assert_true(psi_peers_match(c, (struct sockaddr *)&u, len));
    /* abstract names are length-exact: "abs" plus padding is another name */
    assert_false(psi_peers_match(c, (struct sockaddr *)&u, sizeof u));
    len = sun_abstract(&u, "ab");
    assert_false(psi_peers_match(c, (struct sockaddr *)&u, len));
    len = sun_abstract(&u, "/tmp/s.sock");
    assert_false(psi_peers_match(c, (struct sockaddr *)&u, len));
    /* unnamed */
    assert_false(psi_peers_match(c, (struct sockaddr *)&u, offsetof(struct sockaddr_un, sun_path)));
}

/* ---- psi_config_load -------------------------------------------------- */

static const char *const *g_env; /* NULL-terminated name, value pairs */

static const char *fake_get(const char *name)
{
    for (size_t i = 0; g_env && g_env[i]; i += 2)
        if (strcmp(g_env[i], name) == 0)
            return g_env[i + 1];
    return NULL;
}

typedef struct warnings {
    int n;
    char vars[16][32];
    char msgs[16][512];
} warnings;

static void record_warning(void *ctx, const char *var, const char *msg)
{
    warnings *w = ctx;
    assert_true(w->n < 16);
    snprintf(w->vars[w->n], sizeof w->vars[0], "%s", var);
    snprintf(w->msgs[w->n], sizeof w->msgs[0], "%s", msg);
    w->n++;
}

static warnings *load(const char *const *env)
{
    static warnings w;
    memset(&w, 0, sizeof w);
    g_env = env;
    psi_config_load(&g_cfg, fake_get, record_warning, &w);
    return &w;
}

static const char *warning_for(const warnings *w, const char *var)
{
    for (int i = 0; i < w->n; i++)
        if (strcmp(w->vars[i], var) == 0)
            return w->msgs[i];
    return NULL;
}

static void test_load_defaults(void **state)
{
    static const char *const none[] = {NULL};
    warnings *w = load(none);

    assert_int_equal(w->n, 0);
    assert_true(g_cfg.threshold == PSI_DEFAULT_THRESHOLD);
    assert_string_equal(g_cfg.store_url, "");
    assert_int_equal(g_cfg.npeers, 0);
    assert_false(g_cfg.pipes);
    assert_int_equal(g_cfg.log_level, PSI_LOG_WARN);
    assert_string_equal(g_cfg.log_file, "");
    assert_string_equal(g_cfg.stats, "");
    assert_false(g_cfg.disable);
    assert_false(g_cfg.dryrun);
    assert_string_equal(g_cfg.policy, "");
}

static void test_load_all_good(void **state)
{
    static const char *const env[] = {
        "PSI_THRESHOLD", "64KiB",
        "PSI_STORE", "file:///tmp/psi-store",
        "PSI_PEERS", "127.0.0.1:5000,unix:/tmp/s",
        "PSI_PIPES", "yes",
        "PSI_LOG", "debug",
        "PSI_LOG_FILE", "/tmp/psi.log",
        "PSI_STATS", "stderr",
        "PSI_DISABLE", "1",
        "PSI_DRYRUN", "on",
        "PSI_POLICY", "/etc/psi.policy",
        NULL,
    };
    warnings *w = load(env);

    assert_int_equal(w->n, 0);
    assert_int_equal(g_cfg.threshold, 65536);
    assert_string_equal(g_cfg.store_url, "file:///tmp/psi-store");
    assert_int_equal(g_cfg.npeers, 2);
    assert_true(g_cfg.pipes);
    assert_int_equal(g_cfg.log_level, PSI_LOG_DEBUG);
    assert_string_equal(g_cfg.log_file, "/tmp/psi.log");
    assert_string_equal(g_cfg.stats, "stderr");
    assert_true(g_cfg.disable);
    assert_true(g_cfg.dryrun);
    assert_string_equal(g_cfg.policy, "/etc/psi.policy");
}

static void test_load_all_bad(void **state)
{
    static char long_path[PSI_PATH_MAX + 10];
    static const char *env[] = {
        "PSI_THRESHOLD", "12Q",
        "PSI_STORE", "ftp://host/x",
        "PSI_PEERS", "127.0.0.1:5000,nonsense",
        "PSI_PIPES", "maybe",
        "PSI_LOG", "loud",
        "PSI_LOG_FILE", long_path,
        "PSI_STATS", long_path,
        "PSI_DISABLE", "2",
        "PSI_DRYRUN", "sure",
        "PSI_POLICY", long_path,
        NULL,
    };
    static const char *const vars[] = {
        "PSI_THRESHOLD", "PSI_STORE", "PSI_PEERS", "PSI_PIPES", "PSI_LOG",
        "PSI_LOG_FILE", "PSI_STATS", "PSI_DISABLE", "PSI_DRYRUN", "PSI_POLICY",
    };
    warnings *w;

    memset(long_path, 'x', sizeof long_path - 1);
    long_path[0] = '/';
    w = load(env);

    /* exactly one warning per variable, each naming it */
    assert_int_equal(w->n, 10);
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *m = warning_for(w, vars[i]);
        if (!m)
            fail_msg("no warning for %s", vars[i]);
        assert_true(strncmp(m, vars[i], strlen(vars[i])) == 0);
    }
    assert_string_equal(warning_for(w, "PSI_THRESHOLD"),
                        "PSI_THRESHOLD='12Q': unknown suffix 'Q'; expected a size such as "
                        "1048576, 64K or 1MiB; using the default 1MiB");
    assert_non_null(strstr(warning_for(w, "PSI_STORE"), "file://"));
    assert_non_null(strstr(warning_for(w, "PSI_PEERS"), "'nonsense'"));
    assert_non_null(strstr(warning_for(w, "PSI_PIPES"), "'maybe'"));
    assert_non_null(strstr(warning_for(w, "PSI_LOG"), "error, warn, info or debug"));
    assert_non_null(strstr(warning_for(w, "PSI_LOG_FILE"), "longer than"));

    /* and every default kept */
    assert_true(g_cfg.threshold == PSI_DEFAULT_THRESHOLD);
    assert_string_equal(g_cfg.store_url, "");
    assert_int_equal(g_cfg.npeers, 0); /* a bad list is dropped whole */
    assert_false(g_cfg.pipes);
    assert_int_equal(g_cfg.log_level, PSI_LOG_WARN);
    assert_string_equal(g_cfg.log_file, "");
    assert_string_equal(g_cfg.stats, "");
    assert_false(g_cfg.disable);
    assert_false(g_cfg.dryrun);
    assert_string_equal(g_cfg.policy, "");
}

static void test_load_zero_threshold(void **state)
{
    static const char *const env[] = {"PSI_THRESHOLD", "0", NULL};
    warnings *w = load(env);

    assert_int_equal(w->n, 1);
    assert_non_null(strstr(w->msgs[0], "PSI_THRESHOLD='0'"));
    assert_non_null(strstr(w->msgs[0], "at least 1 byte"));
    assert_true(g_cfg.threshold == PSI_DEFAULT_THRESHOLD);
}

static void test_load_empty_is_unset(void **state)
{
    static const char *const env[] = {
        "PSI_THRESHOLD", "", "PSI_STORE", "", "PSI_PEERS", "", "PSI_PIPES", "",
        "PSI_LOG", "", "PSI_LOG_FILE", "", "PSI_STATS", "", "PSI_DISABLE", "",
        "PSI_DRYRUN", "", "PSI_POLICY", "", NULL,
    };
    warnings *w = load(env);

    assert_int_equal(w->n, 0);
    assert_true(g_cfg.threshold == PSI_DEFAULT_THRESHOLD);
    assert_int_equal(g_cfg.log_level, PSI_LOG_WARN);
}

static void test_load_no_warn_callback(void **state)
{
    static const char *const env[] = {"PSI_THRESHOLD", "bad", "PSI_LOG", "info", NULL};

    g_env = env;
    psi_config_load(&g_cfg, fake_get, NULL, NULL);
    assert_true(g_cfg.threshold == PSI_DEFAULT_THRESHOLD);
    assert_int_equal(g_cfg.log_level, PSI_LOG_INFO);
}

/* ---- psi_err and psi_log (PSI_LOG, PSI_LOG_FILE) ---------------------- */

static void test_err(void **state)
{
    psi_err err;
    char big[400];

    assert_int_equal(psi_fail(&err, EIO, "bad %s %d", "thing", 7), -1);
    assert_int_equal(err.code, EIO);
    assert_string_equal(err.msg, "bad thing 7");
    assert_int_equal(psi_fail(NULL, EIO, "ignored"), -1);
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    psi_fail(&err, EINVAL, "%s", big); /* cut, never overflowed */
    assert_int_equal(strlen(err.msg), sizeof err.msg - 1);
    psi_err_clear(&err);
    assert_int_equal(err.code, 0);
    assert_string_equal(err.msg, "");
    psi_err_clear(NULL);
}

static void test_log_file(void **state)
{
    char dir[] = "/tmp/psi-test-log-XXXXXX", path[128], buf[4096], want[128], big[2000];
    struct stat st;
    FILE *f;
    size_t n;

    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/psi.log", dir);
    psi_log_init(PSI_LOG_INFO, path);
    assert_true(psi_log_enabled(PSI_LOG_INFO));
    assert_false(psi_log_enabled(PSI_LOG_DEBUG));
    errno = EAGAIN;
    psi_log(PSI_LOG_INFO, "hello %d", 5);
    assert_int_equal(errno, EAGAIN); /* the application's errno survives */
    psi_log(PSI_LOG_DEBUG, "not shown");
    psi_log(PSI_LOG_ERROR, "already ends in a newline\n");
    memset(big, 'y', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    psi_log(PSI_LOG_WARN, "%s", big);
    psi_log_init(PSI_LOG_WARN, NULL); /* back to stderr; closes the file */

    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    f = fopen(path, "r");
    assert_non_null(f);
    n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    snprintf(want, sizeof want, "psi[%ld]: info: hello 5\npsi[%ld]: error: already ends in a "
             "newline\npsi[%ld]: warn: yyy", (long)getpid(), (long)getpid(), (long)getpid());
    assert_true(strncmp(buf, want, strlen(want)) == 0);
    /* the long line is cut to one line that ends visibly */
    assert_int_equal(buf[n - 1], '\n');
    assert_true(strncmp(buf + n - 4, "...\n", 4) == 0);
    assert_null(strstr(buf, "not shown"));
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_size_plain),
        cmocka_unit_test(test_size_binary_suffixes),
        cmocka_unit_test(test_size_decimal_suffixes),
        cmocka_unit_test(test_size_overflow),
        cmocka_unit_test(test_size_junk),
        cmocka_unit_test(test_size_zero),
        cmocka_unit_test(test_log_level),
        cmocka_unit_test(test_bool),
        cmocka_unit_test(test_store_url),
        cmocka_unit_test(test_peers_good),
        cmocka_unit_test(test_peers_list_whitespace_empty),
        cmocka_unit_test(test_peers_names),
        cmocka_unit_test(test_peers_bad),
        cmocka_unit_test(test_peers_partial),
        cmocka_unit_test(test_peers_too_many),
        cmocka_unit_test(test_match_inet),
        cmocka_unit_test(test_match_bad_input),
        cmocka_unit_test(test_match_unix),
        cmocka_unit_test(test_load_defaults),
        cmocka_unit_test(test_load_all_good),
        cmocka_unit_test(test_load_all_bad),
        cmocka_unit_test(test_load_zero_threshold),
        cmocka_unit_test(test_load_empty_is_unset),
        cmocka_unit_test(test_load_no_warn_callback),
        cmocka_unit_test(test_err),
        cmocka_unit_test(test_log_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
