/* Unit tests for the policy matcher: a table of sends against one policy
 * (each condition kind, first-match order, proxy thresholds, the default
 * decision), lazy caller evaluation, explanations, and pol_glob. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include <cmocka.h>

#include "psi_policy.h"
#include "psi_token.h"

static psi_policy g_pol;

static void load(const char *text)
{
    int rc = psi_policy_parse("m.policy", text, strlen(text), &g_pol, NULL, NULL);
    assert_int_equal(rc, 0);
}

/* ---- peers ------------------------------------------------------------- */

typedef struct peer {
    struct sockaddr_storage ss;
    socklen_t len;
} peer;

static peer ip(const char *addr, int port)
{
    peer p;
    memset(&p, 0, sizeof p);
    struct sockaddr_in *in = (struct sockaddr_in *)&p.ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&p.ss;
    if (inet_pton(AF_INET, addr, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        p.len = sizeof *in;
    } else {
        assert_int_equal(inet_pton(AF_INET6, addr, &in6->sin6_addr), 1);
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        p.len = sizeof *in6;
    }
    return p;
}

static peer un(const char *path)
{
    peer p;
    memset(&p, 0, sizeof p);
    struct sockaddr_un *u = (struct sockaddr_un *)&p.ss;
    size_t n = strlen(path);
    u->sun_family = AF_UNIX;
    memcpy(u->sun_path, path, n);
    if (path[0] == '@')
        u->sun_path[0] = '\0';
    p.len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (path[0] != '@'));
    return p;
}

/* ---- callers ------------------------------------------------------------ */

typedef struct stack {
    const char *const *names;
    size_t n;
    int calls;
} stack;

static const char *const *stack_fn(void *arg, size_t *n)
{
    stack *s = arg;
    s->calls++;
    *n = s->n;
    return s->names;
}

/* ---- the table ------------------------------------------------------------ */

static const char *const policy_text =
    "defaults threshold=1MiB\n"
    "connector fast file:///tmp/fast\n"
    "connector slow file:///tmp/slow\n"
    "rule db: channel=tcp port=5432 => pass\n"                                   /* 0 */
    "rule cluster: channel=tcp peer=10.1.0.0/16 port=8786-8799 => proxy "
    "threshold=256K connector=fast lifetime=evict-on-read\n"                     /* 1 */
    "rule v6: peer=fd00::/8 direction=send => proxy connector=slow ttl=1h\n"     /* 2 */
    "rule sock: channel=unix peer=unix:/run/app/*.sock => proxy threshold=64K\n" /* 3 */
    "rule abstract: peer=unix:@psi-* => log\n"                                   /* 4 */
    "rule py: channel=pipe exe=python3* size=64K..1M => log\n"                  /* 5 */
    "rule ckpt: size=16M.. caller=save_* => proxy lifetime=ttl ttl=2h\n"         /* 6 */
    "rule recv: direction=recv => pass\n"                                        /* 7 */
    "rule small-udp: channel=udp,mpi size=..4M => pass\n";                      /* 8 */

typedef struct mcase {
    const char *what;
    int channel, direction;
    peer p;
    bool has_peer;
    uint64_t size;
    const char *exe;
    const char *const *callers;
    size_t ncallers;
    int rule, action, connector;
    uint64_t threshold;
} mcase;

static const char *const st_save[] = {"memcpy", "save_checkpoint", "main"};
static const char *const st_other[] = {"send_all", "main"};

#define K 1024ull
#define M (1024ull * 1024)
#define FAST 0
#define SLOW 1
#define DEF (-1)

static void run_table(const mcase *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const mcase *c = &cases[i];
        stack st = {c->callers, c->ncallers, 0};
        pol_ctx ctx = {
            .channel = c->channel,
            .direction = c->direction ? c->direction : POL_DIR_SEND,
            .peer = c->has_peer ? (const struct sockaddr *)&c->p.ss : NULL,
            .peer_len = c->has_peer ? c->p.len : 0,
            .size = c->size,
            .exe = c->exe,
            .callers = stack_fn,
            .callers_arg = &st,
        };
        pol_decision d;
        memset(&d, 0x5a, sizeof d);
        psi_policy_decide(&g_pol, &ctx, g_pol.threshold, &d);
        if (d.rule != c->rule || d.action != c->action || d.connector != c->connector ||
            d.threshold != c->threshold)
            fail_msg("case %zu (%s): got rule %d action %s connector %d threshold %llu; "
                     "expected rule %d action %s connector %d threshold %llu", i, c->what,
                     d.rule, pol_action_name(d.action), d.connector,
                     (unsigned long long)d.threshold, c->rule, pol_action_name(c->action),
                     c->connector, (unsigned long long)c->threshold);
        /* the stack is walked at most once per decision */
        assert_true(st.calls <= 1);
    }
}

static void test_table(void **state)
{
    const mcase cases[] = {
        {"port excluded first", POL_CH_TCP, 0, ip("10.1.2.3", 5432), true, 64 * M, NULL,
         NULL, 0, 0, POL_ACT_PASS, DEF, M},
        {"cluster, big", POL_CH_TCP, 0, ip("10.1.2.3", 8786), true, 4 * M, NULL, NULL, 0, 1,
         POL_ACT_PROXY, FAST, 256 * K},
        {"cluster, at its threshold", POL_CH_TCP, 0, ip("10.1.255.1", 8799), true, 256 * K,
         NULL, NULL, 0, 1, POL_ACT_PROXY, FAST, 256 * K},
        {"cluster, below its threshold: passes, rule decided", POL_CH_TCP, 0,
         ip("10.1.2.3", 8786), true, 256 * K - 1, NULL, NULL, 0, 1, POL_ACT_PASS, DEF,
         256 * K},
        {"v4-mapped peer counts as IPv4", POL_CH_TCP, 0, ip("::ffff:10.1.2.3", 8790), true,
         4 * M, NULL, NULL, 0, 1, POL_ACT_PROXY, FAST, 256 * K},
        {"outside the network: default", POL_CH_TCP, 0, ip("10.2.0.1", 8786), true, 4 * M,
         NULL, NULL, 0, -1, POL_ACT_PROXY, DEF, M},
        {"port out of range: default", POL_CH_TCP, 0, ip("10.1.2.3", 8800), true, 4 * M,
         NULL, NULL, 0, -1, POL_ACT_PROXY, DEF, M},
        {"udp not in channel list of cluster", POL_CH_UDP, 0, ip("10.1.2.3", 8786), true,
         8 * M, NULL, NULL, 0, -1, POL_ACT_PROXY, DEF, M},
        {"v6 network", POL_CH_TCP, 0, ip("fd12::1", 80), true, 2 * M, NULL, NULL, 0, 2,
         POL_ACT_PROXY, SLOW, M},
        {"v6 network, recv: direction fails", POL_CH_TCP, POL_DIR_RECV, ip("fd12::1", 80),
         true, 2 * M, NULL, NULL, 0, 7, POL_ACT_PASS, DEF, M},
        {"v6 outside", POL_CH_TCP, 0, ip("fe80::1", 80), true, 2 * M, NULL, NULL, 0, -1,
         POL_ACT_PROXY, DEF, M},
        {"unix glob", POL_CH_UNIX, 0, un("/run/app/w1.sock"), true, 100 * K, NULL, NULL, 0, 3,
         POL_ACT_PROXY, DEF, 64 * K},
        {"unix glob: '*' spans '/'", POL_CH_UNIX, 0, un("/run/app/a/b.sock"), true, 100 * K,
         NULL, NULL, 0, 3, POL_ACT_PROXY, DEF, 64 * K},
        {"unix other path", POL_CH_UNIX, 0, un("/run/other.sock"), true, 100 * K, NULL, NULL,
         0, -1, POL_ACT_PASS, DEF, M},
        {"abstract unix", POL_CH_UNIX, 0, un("@psi-x"), true, 10, NULL, NULL, 0, 4,
         POL_ACT_LOG, DEF, M},
        {"no peer: peer rules fail", POL_CH_UNIX, 0, {{0}, 0}, false, 2 * M, NULL, NULL, 0,
         -1, POL_ACT_PROXY, DEF, M},
        {"exe glob and size range", POL_CH_PIPE, 0, {{0}, 0}, false, 100 * K, "python3.11",
         NULL, 0, 5, POL_ACT_LOG, DEF, M},
        {"exe glob, size above range", POL_CH_PIPE, 0, {{0}, 0}, false, M + 1, "python3",
         NULL, 0, -1, POL_ACT_PROXY, DEF, M},
        {"size range inclusive max", POL_CH_PIPE, 0, {{0}, 0}, false, M, "python3", NULL, 0,
         5, POL_ACT_LOG, DEF, M},
        {"exe mismatch", POL_CH_PIPE, 0, {{0}, 0}, false, 100 * K, "perl", NULL, 0, -1,
         POL_ACT_PASS, DEF, M},
        {"exe unknown", POL_CH_PIPE, 0, {{0}, 0}, false, 100 * K, NULL, NULL, 0, -1,
         POL_ACT_PASS, DEF, M},
        {"caller on the stack", POL_CH_PIPE, 0, {{0}, 0}, false, 32 * M, NULL, st_save, 3, 6,
         POL_ACT_PROXY, DEF, M},
        {"caller absent", POL_CH_PIPE, 0, {{0}, 0}, false, 32 * M, NULL, st_other, 2, -1,
         POL_ACT_PROXY, DEF, M},
        {"stack unknown", POL_CH_PIPE, 0, {{0}, 0}, false, 32 * M, NULL, NULL, 0, -1,
         POL_ACT_PROXY, DEF, M},
        {"recv rule", POL_CH_PIPE, POL_DIR_RECV, {{0}, 0}, false, 2 * M, NULL, NULL, 0, 7,
         POL_ACT_PASS, DEF, M},
        {"channel list: mpi", POL_CH_MPI, 0, {{0}, 0}, false, 4 * M, NULL, NULL, 0, 8,
         POL_ACT_PASS, DEF, M},
        {"channel list: mpi above range", POL_CH_MPI, 0, {{0}, 0}, false, 4 * M + 1, NULL,
         NULL, 0, -1, POL_ACT_PROXY, DEF, M},
        {"default: below threshold", POL_CH_ZMQ, 0, {{0}, 0}, false, M - 1, NULL, NULL, 0, -1,
         POL_ACT_PASS, DEF, M},
        {"default: at threshold", POL_CH_ZMQ, 0, {{0}, 0}, false, M, NULL, NULL, 0, -1,
         POL_ACT_PROXY, DEF, M},
    };

    load(policy_text);
    assert_int_equal(g_pol.nrules, 9);
    run_table(cases, sizeof cases / sizeof cases[0]);

    /* the rule's lifetime and ttl travel with the decision */
    pol_ctx ctx = {.channel = POL_CH_TCP, .direction = POL_DIR_SEND, .size = 4 * M};
    peer p = ip("10.1.2.3", 8786);
    ctx.peer = (const struct sockaddr *)&p.ss;
    ctx.peer_len = p.len;
    pol_decision d;
    psi_policy_decide(&g_pol, &ctx, g_pol.threshold, &d);
    assert_int_equal(d.lifetime, PSI_LIFE_EVICT_ON_READ);
    assert_int_equal(d.ttl, 0);
    p = ip("fd00::1", 1);
    ctx.peer = (const struct sockaddr *)&p.ss;
    ctx.peer_len = p.len;
    psi_policy_decide(&g_pol, &ctx, g_pol.threshold, &d);
    assert_int_equal(d.rule, 2);
    assert_int_equal(d.lifetime, -1);
    assert_int_equal(d.ttl, 3600);
    /* the threshold argument is the default one */
    ctx.channel = POL_CH_ZMQ;
    ctx.peer = NULL;
    ctx.size = 5000;
    psi_policy_decide(&g_pol, &ctx, 4096, &d);
    assert_int_equal(d.action, POL_ACT_PROXY);
    assert_int_equal(d.threshold, 4096);
    assert_int_equal(g_pol.min_candidate, 64 * K);
    assert_true(g_pol.needs_callers);
    assert_true(g_pol.has_log);
}

static void test_first_match_order(void **state)
{
    const mcase cases[] = {
        {"first of two matching rules", POL_CH_TCP, 0, {{0}, 0}, false, 2 * M, NULL, NULL, 0,
         0, POL_ACT_PASS, DEF, M},
        {"second when the first fails", POL_CH_UDP, 0, {{0}, 0}, false, 2 * M, NULL, NULL, 0,
         1, POL_ACT_PROXY, 0, M},
    };
    load("connector c file:///c\nrule a: channel=tcp => pass\n"
         "rule b: channel=tcp,udp => proxy connector=c\n");
    run_table(cases, 2);
    /* defaults connector= applies to rules without their own, and to the
     * default decision */
    load("connector c file:///c\ndefaults connector=c\nrule a: channel=tcp => proxy\n");
    const mcase def[] = {
        {"rule without connector", POL_CH_TCP, 0, {{0}, 0}, false, 2 * M, NULL, NULL, 0, 0,
         POL_ACT_PROXY, 0, M},
        {"default decision", POL_CH_UDP, 0, {{0}, 0}, false, 2 * M, NULL, NULL, 0, -1,
         POL_ACT_PROXY, 0, M},
    };
    run_table(def, 2);
    /* an empty policy object (no rules) is the threshold rule alone */
    pol_ctx ctx = {.channel = POL_CH_TCP, .direction = POL_DIR_SEND, .size = 10};
    pol_decision d;
    load("peer 1.2.3.4:5\n");
    psi_policy_decide(&g_pol, &ctx, 10, &d);
    assert_int_equal(d.rule, -1);
    assert_int_equal(d.action, POL_ACT_PROXY);
    psi_policy_decide(&g_pol, &ctx, 11, &d);
    assert_int_equal(d.action, POL_ACT_PASS);
}

/* The stack walk costs; it must happen only when a rule with caller= has
 * every other condition matched, and once per decision. */
static void test_callers_lazy(void **state)
{
    static const char *const names[] = {"f", "g"};
    stack st = {names, 2, 0};
    pol_ctx ctx = {.channel = POL_CH_PIPE, .direction = POL_DIR_SEND, .size = 2 * M,
                   .exe = "prog", .callers = stack_fn, .callers_arg = &st};
    pol_decision d;

    load("rule a: channel=tcp caller=f => pass\n"    /* channel fails first */
         "rule b: size=..1M caller=f => pass\n"      /* size fails */
         "rule c: exe=other caller=f => pass\n"      /* exe fails */
         "rule d: direction=recv caller=f => pass\n" /* direction fails */
         "rule e: channel=pipe caller=zzz => log\n"  /* walks: no match */
         "rule f: caller=g => proxy ttl=1m\n");      /* reuses the walk */
    psi_policy_decide(&g_pol, &ctx, g_pol.threshold, &d);
    assert_int_equal(d.rule, 5);
    assert_int_equal(d.action, POL_ACT_PROXY);
    assert_int_equal(st.calls, 1);

    st.calls = 0;
    ctx.channel = POL_CH_TCP; /* rule a: channel passes, caller f matches */
    psi_policy_decide(&g_pol, &ctx, g_pol.threshold, &d);
    assert_int_equal(d.rule, 0);
    assert_int_equal(st.calls, 1);

    /* nothing needs the stack when every caller rule fails elsewhere */
    st.calls = 0;
    ctx.channel = POL_CH_UDP;
    ctx.size = 10;
    ctx.exe = "x";
    load("rule a: channel=tcp caller=f => pass\nrule b: size=1M.. caller=* => pass\n"
         "rule c: exe=y caller=* => pass\n");
    psi_policy_decide(&g_pol, &ctx, g_pol.threshold, &d);
    assert_int_equal(d.rule, -1);
    assert_int_equal(st.calls, 0);

    /* no callback at all: caller rules fail, nothing crashes */
    ctx.callers = NULL;
    ctx.channel = POL_CH_TCP;
    psi_policy_decide(&g_pol, &ctx, g_pol.threshold, &d);
    assert_int_equal(d.rule, -1);
}

static void expect_reason(size_t rule, const pol_ctx *c, bool match, const char *part)
{
    char buf[256];
    bool m = psi_policy_explain_rule(&g_pol, rule, c, buf, sizeof buf);
    if (m != match || !strstr(buf, part))
        fail_msg("rule %zu: got %s '%s', expected %s '%s'", rule, m ? "match" : "no", buf,
                 match ? "match" : "no", part);
}

static void test_explain(void **state)
{
    static const char *const names[] = {"main", "send_all"};
    stack st = {names, 2, 0};
    peer p4 = ip("10.1.2.3", 8786), p6 = ip("fd12::1", 80), pu = un("/tmp/x.sock");
    pol_ctx c = {.channel = POL_CH_PIPE, .direction = POL_DIR_SEND, .size = 4 * M,
                 .exe = "python3", .callers = stack_fn, .callers_arg = &st};

    load(policy_text);
    expect_reason(0, &c, false, "channel is pipe, rule wants tcp");
    expect_reason(2, &c, false, "the send has no peer address");
    expect_reason(8, &c, false, "channel is pipe, rule wants udp,mpi");
    expect_reason(5, &c, false, "size 4MiB is outside 64KiB..1MiB");
    c.size = 100 * K;
    c.exe = "perl";
    expect_reason(5, &c, false, "exe 'perl' does not match 'python3*'");
    c.exe = NULL;
    expect_reason(5, &c, false, "exe unknown, rule wants 'python3*'");
    c.exe = "python3";
    expect_reason(5, &c, true, "matches");
    c.direction = POL_DIR_RECV;
    expect_reason(2, &c, false, "direction is recv, rule wants send");
    c.direction = POL_DIR_SEND;

    c.channel = POL_CH_TCP;
    c.peer = (const struct sockaddr *)&p4.ss;
    c.peer_len = p4.len;
    expect_reason(0, &c, false, "port 8786 is not 5432");
    expect_reason(1, &c, true, "matches, but size 100KiB is below the threshold 256KiB");
    expect_reason(2, &c, false, "peer 10.1.2.3:8786 is not in fd00::/8");
    c.peer = (const struct sockaddr *)&p6.ss;
    c.peer_len = p6.len;
    expect_reason(1, &c, false, "peer [fd12::1]:80 is not in 10.1.0.0/16");
    c.size = 32 * M;
    expect_reason(6, &c, false, "no function on the stack matches 'save_*'");
    c.callers = NULL;
    expect_reason(6, &c, false, "call stack unknown, rule wants caller 'save_*'");
    c.channel = POL_CH_UNIX;
    c.peer = (const struct sockaddr *)&pu.ss;
    c.peer_len = pu.len;
    expect_reason(3, &c, false, "peer unix:/tmp/x.sock does not match unix:/run/app/*.sock");
    load("rule p: port=80-90 => pass\n");
    expect_reason(0, &c, false, "has no port, rule wants port 80-90");
    c.peer = (const struct sockaddr *)&p4.ss;
    c.peer_len = p4.len;
    expect_reason(0, &c, false, "port 8786 is not in 80-90");
    expect_reason(7, &c, false, "no such rule");
}

static void test_glob(void **state)
{
    static const struct { const char *p, *s; bool m; } g[] = {
        {"abc", "abc", true},     {"abc", "abd", false},   {"a*", "a", true},
        {"a*", "abc/def", true},  {"*c", "abc", true},      {"*", "", true},
        {"", "", true},           {"", "a", false},         {"a?c", "abc", true},
        {"a?c", "ac", false},     {"[ab]x", "bx", true},    {"[ab]x", "cx", false},
        {"[a-c]", "b", true},     {"[!a-c]", "b", false},   {"[^a-c]", "d", true},
        {"[]]", "]", true},       {"\\*", "*", true},       {"\\*", "a", false},
        {"*a*b*c", "xaybzc", true}, {"*a*b*c", "xaybz", false},
        {"save_*", "save_checkpoint", true}, {"python3*", "python3.11", true},
        {"a[", "a[", true},       {"**x", "yx", true},      {"[a-]", "-", true},
    };
    for (size_t i = 0; i < sizeof g / sizeof g[0]; i++)
        if (pol_glob(g[i].p, g[i].s) != g[i].m)
            fail_msg("pol_glob(\"%s\", \"%s\") != %d", g[i].p, g[i].s, g[i].m);
}

static void test_names(void **state)
{
    char buf[32];

    assert_string_equal(pol_channel_name(POL_CH_TCP), "tcp");
    assert_string_equal(pol_channel_name(POL_CH_ZMQ), "zmq");
    assert_string_equal(pol_channel_name(0), "?");
    assert_string_equal(pol_action_name(POL_ACT_PROXY), "proxy");
    assert_string_equal(pol_action_name(POL_ACT_PASS), "pass");
    assert_string_equal(pol_action_name(POL_ACT_LOG), "log");
    assert_string_equal(pol_lifetime_name(PSI_LIFE_EVICT_ON_READ), "evict-on-read");
    assert_string_equal(pol_lifetime_name(-1), "default");
    pol_size_str(4 * M, buf, sizeof buf);
    assert_string_equal(buf, "4MiB");
    pol_size_str(1500, buf, sizeof buf);
    assert_string_equal(buf, "1500");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_first_match_order),
        cmocka_unit_test(test_callers_lazy),
        cmocka_unit_test(test_explain),
        cmocka_unit_test(test_glob),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
