/* Unit tests for the policy parser: every statement, every error path with
 * its line:col and message, every warning, the example policy, the
 * environment overrides, and psi_policy_load's bad inputs. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "psi_policy.h"
#include "psi_token.h"

#ifndef SRCDIR
#define SRCDIR "."
#endif

static psi_policy g_pol; /* large: keep it off the test stack */

/* ---- collecting diagnostics -------------------------------------------- */

#define MAXD 64
typedef struct diags {
    pol_diag v[MAXD];
    int n, errors, warnings;
    char path[64];
} diags;

static diags g_d;

static void collect(void *ctx, const char *path, const pol_diag *d)
{
    diags *c = ctx;

    if (c->n < MAXD)
        c->v[c->n++] = *d;
    c->errors += !d->warning;
    c->warnings += d->warning;
    snprintf(c->path, sizeof c->path, "%s", path);
}

static int parse(const char *text)
{
    memset(&g_d, 0, sizeof g_d);
    int rc = psi_policy_parse("t.policy", text, strlen(text), &g_pol, collect, &g_d);
    assert_int_equal(rc, g_d.errors);
    return rc;
}

static void dump(void)
{
    for (int i = 0; i < g_d.n; i++)
        print_message("  %d:%d: %s: %s\n", g_d.v[i].line, g_d.v[i].col,
                      g_d.v[i].warning ? "warning" : "error", g_d.v[i].msg);
}

/* Is there a diagnostic of this kind at line:col whose message has `part`? */
static void has_diag(bool warning, int line, int col, const char *part)
{
    for (int i = 0; i < g_d.n; i++)
        if (g_d.v[i].warning == warning && g_d.v[i].line == line && g_d.v[i].col == col &&
            strstr(g_d.v[i].msg, part))
            return;
    dump();
    fail_msg("no %s at %d:%d containing '%s'", warning ? "warning" : "error", line, col, part);
}

static void parses_clean(const char *text)
{
    if (parse(text) != 0 || g_d.warnings != 0) {
        dump();
        fail_msg("expected a clean parse of:\n%s", text);
    }
}

/* ---- statements --------------------------------------------------------- */

static void test_defaults(void **state)
{
    parses_clean("defaults threshold=64K connector=c\nconnector c file:///tmp/x\n"
                 "rule: => proxy\n");
    assert_true(g_pol.has_threshold);
    assert_int_equal(g_pol.threshold, 65536);
    assert_int_equal(g_pol.threshold_from, POL_FROM_FILE);
    assert_int_equal(g_pol.default_connector, 0);

    parses_clean("rule: => pass\n");
    assert_false(g_pol.has_threshold);
    assert_int_equal(g_pol.threshold, PSI_DEFAULT_THRESHOLD);
    assert_int_equal(g_pol.threshold_from, POL_FROM_BUILTIN);
    assert_int_equal(g_pol.default_connector, -1);

    /* split over two lines */
    parses_clean("defaults threshold=2M\ndefaults connector=c\nconnector c file:///x\n");
    assert_int_equal(g_pol.threshold, 2 << 20);
    assert_int_equal(g_pol.default_connector, 0);
}

static void test_connectors(void **state)
{
    parses_clean("connector a file:///tmp/a\nconnector b.2 file:///tmp/b\n"
                 "rule: channel=tcp => proxy connector=b.2\nrule: channel=udp => proxy connector=a\n");
    assert_int_equal(g_pol.nconnectors, 2);
    assert_string_equal(g_pol.connectors[1].name, "b.2");
    assert_string_equal(g_pol.connectors[1].url, "file:///tmp/b");
    assert_int_equal(g_pol.connectors[1].line, 2);
    assert_int_equal(g_pol.connectors[1].col, 11);
    assert_int_equal(g_pol.rules[0].connector, 1);
    assert_int_equal(g_pol.rules[1].connector, 0);

    /* used before declared */
    parses_clean("rule: => proxy connector=late\nconnector late file:///l\n");
    assert_int_equal(g_pol.rules[0].connector, 0);
}

static void test_peers(void **state)
{
    parses_clean("peer 10.1.2.3:8786 [::1]:9000\npeer unix:/run/a.sock,unix:@abs 1.2.3.4:*\n"
                 "peer 10.1.2.3:8786\n");
    assert_int_equal(g_pol.npeers, 5); /* the duplicate is dropped */
    assert_int_equal(g_pol.peers[0].kind, PSI_PEER_INET);
    assert_int_equal(g_pol.peers[0].port, 8786);
    assert_int_equal(g_pol.peers[1].family, AF_INET6);
    assert_string_equal(g_pol.peers[2].path, "/run/a.sock");
    assert_string_equal(g_pol.peers[3].path, "@abs");
    assert_int_equal(g_pol.peers[4].port, -1);
}

static void test_rule_conditions(void **state)
{
    parses_clean("rule big: channel=tcp,unix direction=send peer=10.1.0.0/16 port=8000-8100 "
                 "size=1M..64MiB exe=\"my prog*\" caller=save_* => proxy\n"
                 "rule: peer=fd00::/8 port=80 size=..64K => pass\n"
                 "rule: peer=unix:/run/*.sock size=4K.. direction=recv => log\n"
                 "rule : peer=[::1] => pass\n"
                 "rule named : channel=pipe => pass\n");
    assert_int_equal(g_pol.nrules, 5);
    pol_rule *r = &g_pol.rules[0];
    assert_string_equal(r->name, "big");
    assert_int_equal(r->line, 1);
    assert_int_equal(r->col, 1);
    assert_int_equal(r->channels, POL_CH_TCP | POL_CH_UNIX);
    assert_int_equal(r->direction, POL_DIR_SEND);
    assert_true(r->has_net);
    assert_int_equal(r->family, AF_INET);
    assert_int_equal(r->prefix, 16);
    assert_int_equal(r->net[0], 10);
    assert_int_equal(r->net[1], 1);
    assert_int_equal(r->port_lo, 8000);
    assert_int_equal(r->port_hi, 8100);
    assert_int_equal(r->size_min, 1 << 20);
    assert_int_equal(r->size_max, 64 << 20);
    assert_string_equal(r->exe_glob, "my prog*");
    assert_string_equal(r->caller_glob, "save_*");
    assert_int_equal(r->action, POL_ACT_PROXY);
    assert_true(g_pol.needs_callers);

    r = &g_pol.rules[1];
    assert_string_equal(r->name, "rule#2");
    assert_int_equal(r->channels, POL_CH_ANY);
    assert_int_equal(r->direction, POL_DIR_ANY);
    assert_int_equal(r->family, AF_INET6);
    assert_int_equal(r->prefix, 8);
    assert_int_equal(r->net[0], 0xfd);
    assert_int_equal(r->port_lo, 80);
    assert_int_equal(r->port_hi, 80);
    assert_int_equal(r->size_min, 0);
    assert_int_equal(r->size_max, 65536);
    assert_int_equal(r->action, POL_ACT_PASS);

    r = &g_pol.rules[2];
    assert_string_equal(r->unix_glob, "/run/*.sock");
    assert_false(r->has_net);
    assert_int_equal(r->port_lo, -1);
    assert_true(r->size_max == UINT64_MAX);
    assert_int_equal(r->size_min, 4096);
    assert_int_equal(r->direction, POL_DIR_RECV);
    assert_int_equal(r->action, POL_ACT_LOG);
    assert_true(g_pol.has_log);

    assert_int_equal(g_pol.rules[3].prefix, 128);
    assert_string_equal(g_pol.rules[4].name, "named");
    assert_int_equal(g_pol.rules[4].channels, POL_CH_PIPE);
}

static void test_rule_options(void **state)
{
    parses_clean("connector c file:///c\n"
                 "rule: channel=tcp => proxy connector=c lifetime=ttl ttl=10m threshold=256KiB\n"
                 "rule: channel=unix => proxy lifetime=evict-on-read ttl=45\n"
                 "rule: channel=pipe => proxy lifetime=refcount ttl=1h\n"
                 "rule: channel=udp => proxy ttl=2d\n"
                 "rule: channel=mpi => proxy ttl=30d\n"
                 "rule: channel=zmq => proxy ttl=30s\n");
    pol_rule *r = g_pol.rules;
    assert_int_equal(r[0].connector, 0);
    assert_int_equal(r[0].lifetime, PSI_LIFE_TTL);
    assert_int_equal(r[0].ttl, 600);
    assert_true(r[0].has_threshold);
    assert_int_equal(r[0].threshold, 256 * 1024);
    assert_int_equal(r[1].lifetime, PSI_LIFE_EVICT_ON_READ);
    assert_int_equal(r[1].ttl, 45);
    assert_int_equal(r[1].connector, -1);
    assert_false(r[1].has_threshold);
    assert_int_equal(r[2].lifetime, PSI_LIFE_REFCOUNT);
    assert_int_equal(r[2].ttl, 3600);
    assert_int_equal(r[3].ttl, 2 * 86400);
    assert_int_equal(r[3].lifetime, -1);
    assert_int_equal(r[4].ttl, 30 * 86400);
    assert_int_equal(r[5].ttl, 30);
    /* the smallest proxy threshold any rule can act on */
    assert_int_equal(g_pol.min_candidate, 256 * 1024);
    assert_false(g_pol.needs_callers);
    assert_false(g_pol.has_log);
}

static void test_lexing(void **state)
{
    /* comments, blank lines, CRLF, tabs, quotes with escapes, '#' in a word */
    parses_clean("# header\n\n   \t\n\trule q:\texe=\"a \\\"b\\\" \\\\c\" => pass # trailing\r\n"
                 "rule h: exe=a#b => pass\n"
                 "rule e: caller=\"\\*x\" => pass\n");
    assert_string_equal(g_pol.rules[0].exe_glob, "a \"b\" \\c");
    assert_string_equal(g_pol.rules[1].exe_glob, "a#b");
    assert_string_equal(g_pol.rules[2].caller_glob, "\\*x");
    /* no final newline */
    parses_clean("rule: => pass");
    assert_int_equal(g_pol.nrules, 1);
    /* columns count characters, not bytes: "é" is one column */
    assert_int_equal(parse("# é\nrule é: => pass\n"), 1);
    has_diag(false, 2, 6, "not a valid rule name");
    assert_int_equal(parse("rule: exe=é* chanel=tcp => pass\n"), 1);
    has_diag(false, 1, 14, "unknown condition 'chanel'");
}

static void test_example_policy(void **state)
{
    memset(&g_d, 0, sizeof g_d);
    int rc = psi_policy_load(SRCDIR "/docs/example.policy", &g_pol, collect, &g_d);
    if (rc || g_d.warnings)
        dump();
    assert_int_equal(rc, 0);
    assert_int_equal(g_d.warnings, 0);
    assert_int_equal(g_pol.nrules, 7);
    assert_int_equal(g_pol.nconnectors, 2);
    assert_int_equal(g_pol.npeers, 3);
    assert_string_equal(g_pol.rules[0].name, "postgres");
    assert_string_equal(g_pol.rules[6].name, "small-msgs");
    assert_int_equal(g_pol.default_connector, 0);
    assert_true(g_pol.needs_callers);
    assert_true(g_pol.has_log);
    assert_int_equal(g_pol.min_candidate, 64 * 1024);
}

/* ---- errors: one table, each case with line:col and message -------------- */

typedef struct err_case {
    const char *text;
    int line, col;
    const char *msg;
} err_case;

static const err_case err_cases[] = {
    /* statements */
    {"rulez x\n", 1, 1, "unknown statement 'rulez'; expected defaults, connector, peer or rule"},
    {"\n  frob\n", 2, 3, "unknown statement 'frob'"},
    /* lexer */
    {"rule: exe=\"abc => pass\n", 1, 11, "unterminated quoted string"},
    /* defaults */
    {"defaults\n", 1, 9, "expected threshold=SIZE and/or connector=NAME"},
    {"defaults threshold\n", 1, 10, "expected threshold=SIZE or connector=NAME, got 'threshold'"},
    {"defaults thresh=1M\n", 1, 10, "unknown default 'thresh'; expected threshold or connector"},
    {"defaults threshold=0\n", 1, 20, "0 is not allowed"},
    {"defaults threshold=12Q\n", 1, 20, "unknown suffix 'Q'"},
    {"defaults threshold=1M\ndefaults threshold=2M\n", 2, 10,
     "default threshold already set at line 1"},
    {"connector c file:///c\ndefaults connector=c connector=c\n", 2, 22,
     "default connector already set at line 2"},
    {"defaults connector=nope\n", 1, 20, "connector 'nope' is not declared"},
    {"defaults connector=b@d\n", 1, 20, "not a valid connector name"},
    /* connector */
    {"connector\n", 1, 10, "expected 'connector NAME URL'"},
    {"connector c\n", 1, 11, "expected 'connector NAME URL'"},
    {"connector c=1 file:///x\n", 1, 11, "expected 'connector NAME URL'"},
    {"connector c file:///x extra\n", 1, 23, "unexpected 'extra' after the connector URL"},
    {"connector -c file:///x\n", 1, 11, "not a valid connector name"},
    {"connector c ftp://x\n", 1, 13, "'ftp://x' is not a store URL"},
    {"connector c file://rel\n", 1, 20, "needs an absolute directory"},
    {"connector c file:///a\nconnector c file:///b\n", 2, 11,
     "connector 'c' already declared at line 1"},
    /* peer */
    {"peer\n", 1, 5, "expected 'peer ADDR'"},
    {"peer 10.0.0.1\n", 1, 6, "missing ':port'"},
    {"peer ok:1 10.0.0.1:99999\n", 1, 11, "not a number from 1 to 65535"},
    {"peer unix:\n", 1, 6, "empty unix socket path"},
    /* rule head */
    {"rule x channel=tcp => pass\n", 1, 6, "expected 'rule NAME:' or 'rule:'"},
    {"rule\n", 1, 5, "expected 'rule NAME:' or 'rule:'"},
    {"rule b@d: => pass\n", 1, 6, "'b@d' is not a valid rule name"},
    {"rule a: => pass\nrule a: => pass\n", 2, 6, "rule name 'a' already used at line 1"},
    {"rule a: channel=tcp\n", 1, 20, "expected '=>' and an action"},
    {"rule a: channel=tcp =>\n", 1, 23, "expected an action after '=>'"},
    {"rule a: => proxi\n", 1, 12, "unknown action 'proxi'; expected proxy, pass or log"},
    {"rule a: channel=tcp=> pass\n", 1, 20, "put blanks around '=>'"},
    {"rule a: size=1M..=> pass\n", 1, 18, "put blanks around '=>'"},
    {"rule a: tcp => pass\n", 1, 9, "expected a condition KEY=VALUE such as channel=tcp"},
    /* conditions */
    {"rule a: chanel=tcp => pass\n", 1, 9, "unknown condition 'chanel'; expected channel, "
                                          "direction, peer, port, size, exe or caller"},
    {"rule a: ttl=1h => pass\n", 1, 9, "'ttl' is an option of the proxy action"},
    {"rule a: channel=tcp channel=udp => pass\n", 1, 21,
     "'channel' given twice in one rule (first at column 9)"},
    {"rule a: channel= => pass\n", 1, 17, "empty value for 'channel'"},
    {"rule a: channel=tcp,tpc => pass\n", 1, 21, "'tpc' is not a channel"},
    {"rule a: channel=tcp, => pass\n", 1, 21, "'' is not a channel"},
    {"rule a: direction=out => pass\n", 1, 19, "expected send or recv"},
    {"rule a: peer=10.0.0.0/33 => pass\n", 1, 23, "prefix '/33' is out of range for IPv4; "
                                                 "expected /0 to /32"},
    {"rule a: peer=fd00::/129 => pass\n", 1, 21, "out of range for IPv6; expected /0 to /128"},
    {"rule a: peer=10.0.0.0/ => pass\n", 1, 23, "prefix '/' is out of range"},
    {"rule a: peer=10.0.0.0/x => pass\n", 1, 23, "prefix '/x' is out of range"},
    {"rule a: peer=10.0.0.1:80 => pass\n", 1, 22, "peer= takes no port; write it as a "
                                                 "separate condition: port=80"},
    {"rule a: peer=example.com => pass\n", 1, 14, "host names are not allowed"},
    {"rule a: peer=unix: => pass\n", 1, 19, "empty unix path pattern"},
    {"rule a: peer=unix:/a[b => pass\n", 1, 21, "unterminated '['"},
    {"rule a: port=0 => pass\n", 1, 14, "expected a number from 1 to 65535"},
    {"rule a: port=70000 => pass\n", 1, 14, "port '70000' is not valid"},
    {"rule a: port=http => pass\n", 1, 14, "port 'http' is not valid"},
    {"rule a: port=9-8 => pass\n", 1, 14, "port range '9-8' is empty: 9 is larger than 8"},
    {"rule a: port=8- => pass\n", 1, 14, "port '8-' is not valid"},
    {"rule a: size=4M => pass\n", 1, 14, "expected MIN..MAX, MIN.. or ..MAX"},
    {"rule a: size=.. => pass\n", 1, 14, "is not a range"},
    {"rule a: size=1..2..3 => pass\n", 1, 14, "is not a range"},
    {"rule a: size=4M..1M => pass\n", 1, 14, "size range '4M..1M' is empty: the minimum is "
                                            "larger than the maximum"},
    {"rule a: size=0..1M => pass\n", 1, 14, "size minimum '0': 0 is not allowed"},
    {"rule a: size=1K..2X => pass\n", 1, 18, "size maximum '2X': unknown suffix 'X'"},
    {"rule a: size=x.. => pass\n", 1, 14, "does not start with a digit"},
    {"rule a: exe=/usr/bin/python3 => pass\n", 1, 13, "basename, which has no '/'"},
    {"rule a: exe=py\\ => pass\n", 1, 15, "trailing '\\'"},
    {"rule a: caller=[abc => pass\n", 1, 16, "caller pattern '[abc': unterminated '['"},
    {"rule a: caller=\"\" => pass\n", 1, 17, "empty value for 'caller'"},
    /* action options */
    {"rule a: => pass lifetime=ttl\n", 1, 17, "'pass' takes no options; 'lifetime' is an "
                                             "option of 'proxy'"},
    {"rule a: => log foo=1\n", 1, 16, "'log' takes no options; 'foo' is not an option"},
    {"rule a: => proxy bogus=1\n", 1, 18, "unknown option 'bogus' of proxy; expected "
                                         "connector, lifetime, ttl or threshold"},
    {"rule a: => proxy channel=tcp\n", 1, 18, "'channel' is a condition; write it before '=>'"},
    {"rule a: => proxy fast\n", 1, 18, "expected an option KEY=VALUE after 'proxy'"},
    {"rule a: => proxy ttl=1h ttl=2h\n", 1, 25, "'ttl' given twice in one rule (first at "
                                               "column 18)"},
    {"rule a: => proxy connector=missing\n", 1, 28, "connector 'missing' is not declared; "
                                                   "declare it with 'connector missing URL'"},
    {"rule a: => proxy connector=\n", 1, 28, "empty value for 'connector'"},
    {"rule a: => proxy lifetime=forever\n", 1, 27, "expected refcount, ttl or evict-on-read"},
    {"rule a: => proxy ttl=0\n", 1, 22, "ttl '0' is out of range; expected 1s to 30d"},
    {"rule a: => proxy ttl=0s\n", 1, 22, "out of range"},
    {"rule a: => proxy ttl=31d\n", 1, 22, "ttl '31d' is out of range"},
    {"rule a: => proxy ttl=99999999999 \n", 1, 22, "out of range"},
    {"rule a: => proxy ttl=10x\n", 1, 22, "ttl '10x' is not a duration"},
    {"rule a: => proxy ttl=h\n", 1, 22, "is not a duration"},
    {"rule a: => proxy threshold=0\n", 1, 28, "threshold '0': 0 is not allowed"},
    {"rule a: => proxy threshold=1Q\n", 1, 28, "unknown suffix 'Q'"},
};

static void test_errors_table(void **state)
{
    for (size_t i = 0; i < sizeof err_cases / sizeof err_cases[0]; i++) {
        const err_case *c = &err_cases[i];
        if (parse(c->text) < 1) {
            dump();
            fail_msg("case %zu: no error for %s", i, c->text);
        }
        has_diag(false, c->line, c->col, c->msg);
    }
}

/* All errors are reported, in file order, not only the first. */
static void test_errors_all_reported(void **state)
{
    int n = parse("rule a: chanel=tcp port=0 => proxi\n"
                           "bogus\n"
                           "rule b: size=2..1 => proxy ttl=0 lifetime=x\n");
    if (n != 7)
        dump();
    assert_int_equal(n, 7);
    has_diag(false, 1, 9, "unknown condition");
    has_diag(false, 1, 25, "port '0'");
    has_diag(false, 1, 30, "unknown action");
    has_diag(false, 2, 1, "unknown statement");
    has_diag(false, 3, 14, "is empty");
    has_diag(false, 3, 32, "ttl '0'");
    has_diag(false, 3, 43, "lifetime 'x'");
    /* sorted by line, then column */
    for (int i = 1; i < g_d.n; i++)
        assert_true(g_d.v[i - 1].line < g_d.v[i].line ||
                    (g_d.v[i - 1].line == g_d.v[i].line && g_d.v[i - 1].col <= g_d.v[i].col));
    /* no warnings while there are errors */
    assert_int_equal(parse("connector unused file:///u\nrule a: => pass\nrule b: => pass\n"
                           "nope\n"), 1);
    assert_int_equal(g_d.warnings, 0);
}

static void test_too_many(void **state)
{
    size_t cap = (POL_MAX_RULES + 2) * 32 + (POL_MAX_CONNECTORS + 1) * 40;
    char *text = malloc(cap), *p = text;
    for (int i = 0; i < POL_MAX_RULES + 2; i++)
        p += sprintf(p, "rule r%d: size=%d.. => pass\n", i, i + 1);
    *p = '\0';
    assert_int_equal(parse(text), 1);
    has_diag(false, POL_MAX_RULES + 1, 1, "more than 256 rules");
    assert_int_equal(g_pol.nrules, POL_MAX_RULES);

    p = text;
    for (int i = 0; i < POL_MAX_CONNECTORS + 1; i++)
        p += sprintf(p, "connector c%d file:///c%d\n", i, i);
    *p = '\0';
    assert_int_equal(parse(text), 1);
    has_diag(false, POL_MAX_CONNECTORS + 1, 1, "more than 32 connectors");

    p = text;
    p += sprintf(p, "peer");
    for (int i = 0; i < POL_MAX_PEERS + 1; i++)
        p += sprintf(p, "%s10.0.%d.%d:1", i ? "," : " ", i / 200, i % 200 + 1);
    *p = '\0';
    assert_int_equal(parse(text), 1);
    has_diag(false, 1, 6, "more than 64 peers");

    p = text;
    p += sprintf(p, "rule a:");
    for (int i = 0; i < 64; i++)
        p += sprintf(p, " x");
    *p = '\0';
    assert_int_equal(parse(text), 1);
    has_diag(false, 1, 9 + 2 * 62, "more than 64 words on one line");
    free(text);
}

static void test_long_word(void **state)
{
    char *text = malloc(3000);
    strcpy(text, "rule a: exe=");
    memset(text + 12, 'x', 2000);
    strcpy(text + 2012, " => pass\n");
    assert_int_equal(parse(text), 1);
    has_diag(false, 1, 9, "word longer than 1024 bytes");
    memset(text + 12, 'x', 300);
    strcpy(text + 312, " => pass\n");
    assert_int_equal(parse(text), 1);
    has_diag(false, 1, 13, "exe pattern longer than 255 bytes");
    free(text);
}

static void test_empty_and_binary(void **state)
{
    assert_int_equal(parse(""), 1);
    has_diag(false, 0, 0, "empty file: no statements");
    assert_int_equal(parse("# only a comment\n\n   \n"), 1);
    has_diag(false, 0, 0, "empty policy: no statements");

    memset(&g_d, 0, sizeof g_d);
    assert_int_equal(psi_policy_parse("t", "rule: => pass\n\0x", 17, &g_pol, collect, &g_d), 1);
    has_diag(false, 0, 0, "a NUL byte at byte 14 (line 2)");
    assert_int_equal(parse("rule: exe=\xff => pass\n"), 1);
    has_diag(false, 0, 0, "invalid UTF-8 at byte 10 (line 1)");
    assert_int_equal(parse("rule: exe=\xc0\xaf => pass\n"), 1); /* overlong '/' */
    has_diag(false, 0, 0, "invalid UTF-8");
    assert_int_equal(parse("rule: exe=\xed\xa0\x80 => pass\n"), 1); /* surrogate */
    has_diag(false, 0, 0, "invalid UTF-8");
    assert_int_equal(parse("rule: exe=\xe2\x82 => pass\n"), 1); /* truncated */
    has_diag(false, 0, 0, "invalid UTF-8");
    assert_int_equal(parse("rule: exe=\xe2\x82"), 1); /* truncated at the end */
    has_diag(false, 0, 0, "invalid UTF-8");
    parses_clean("rule: exe=\xe2\x82\xac\xf0\x9f\x98\x80 => pass\n"); /* € and an emoji */

    /* NULL diag callback: still counts */
    assert_int_equal(psi_policy_parse("t", "x\ny\n", 4, &g_pol, NULL, NULL), 2);
}

/* ---- warnings ------------------------------------------------------------ */

static void test_warnings(void **state)
{
    assert_int_equal(parse("connector unused file:///u\nrule: => pass\n"), 0);
    has_diag(true, 1, 11, "connector 'unused' is declared but no rule or default uses it");

    /* Every connector of the protocol is in the build: no warning; a URL
     * its connector refuses is an error at the URL. */
    assert_int_equal(parse("connector r zmq://127.0.0.1:5555\ndefaults connector=r\n"), 0);
    assert_int_not_equal(parse("connector r redis://h:notaport\ndefaults connector=r\n"), 0);
    has_diag(false, 1, 13, "connector 'r': ");
    assert_int_not_equal(parse("connector r shm://?max=lots\ndefaults connector=r\n"), 0);
    has_diag(false, 1, 13, "max in");

    assert_int_equal(parse("rule n: peer=10.1.2.3/8 => pass\n"), 0);
    has_diag(true, 1, 14, "has host bits set below the prefix; it means 10.0.0.0/8");
    assert_int_equal(g_pol.rules[0].net[1], 0);

    assert_int_equal(parse("rule u: channel=unix port=80 => pass\n"), 0);
    has_diag(true, 1, 1, "rule 'u' can never match: peer=/port= need an IP peer");
    assert_int_equal(parse("rule u: channel=pipe peer=10.0.0.0/8 => pass\n"), 0);
    has_diag(true, 1, 1, "can never match: peer=/port= need an IP peer");
    assert_int_equal(parse("rule u: channel=tcp peer=unix:/x => pass\n"), 0);
    has_diag(true, 1, 1, "peer=unix: needs a unix peer");
    assert_int_equal(parse("rule u: peer=unix:/x port=1 => pass\n"), 0);
    has_diag(true, 1, 1, "a unix peer has no port");

    assert_int_equal(parse("defaults threshold=1M\nrule s: size=..64K => proxy\n"), 0);
    has_diag(true, 2, 1, "rule 's' never proxies: it matches sizes up to 64KiB, below its "
                         "threshold 1MiB");
    assert_int_equal(parse("rule s: size=..64K => proxy threshold=1M\n"), 0);
    has_diag(true, 1, 1, "never proxies");
    /* fine: the rule's own threshold is low enough */
    parses_clean("defaults threshold=1M\nrule s: size=..64K => proxy threshold=4K\n");
    /* not checked without a file threshold: PSI_THRESHOLD may lower it */
    parses_clean("rule s: size=..64K => proxy\n");
}

typedef struct shadow_case {
    const char *earlier, *later;
    bool shadowed;
} shadow_case;

static const shadow_case shadow_cases[] = {
    {"", "channel=tcp", true},                      /* catch-all first */
    {"channel=tcp", "channel=tcp size=4M..", true},
    {"channel=tcp,unix", "channel=unix", true},
    {"channel=tcp", "channel=tcp,unix", false},
    {"channel=tcp", "", false},
    {"direction=send", "direction=send channel=udp", true},
    {"direction=send", "direction=recv", false},
    {"size=1M..", "size=2M..4M", true},
    {"size=1M..8M", "size=2M..", false},
    {"size=..8M", "size=1K..8M", true},
    {"peer=10.0.0.0/8", "peer=10.1.0.0/16", true},
    {"peer=10.0.0.0/8", "peer=11.0.0.0/16", false},
    {"peer=10.1.0.0/16", "peer=10.0.0.0/8", false},
    {"peer=10.0.0.0/8", "channel=tcp", false},
    {"peer=::/0", "peer=10.0.0.0/8", false},        /* families differ */
    {"peer=0.0.0.0/0", "peer=10.0.0.1", true},
    {"port=1-1000", "port=80", true},
    {"port=1-1000", "port=80-2000", false},
    {"port=80", "peer=10.0.0.0/8", false},
    {"peer=unix:/run/*", "peer=unix:/run/a.sock", true},
    {"peer=unix:/run/*", "peer=unix:/run/*", true},
    {"peer=unix:/run/*", "peer=unix:/run/a*", false}, /* not proven */
    {"peer=unix:*", "peer=unix:/x/*", true},
    {"peer=unix:*", "channel=unix", false},
    {"exe=python*", "exe=python3", true},
    {"exe=python*", "exe=py*", false},
    {"exe=*", "exe=anything*", true},
    {"exe=*", "", false},                           /* unknown exe: '*' fails */
    {"caller=save_*", "caller=save_ckpt size=1M..", true},
    {"caller=*", "channel=tcp", false},
    {"caller=f", "caller=g", false},
    {"channel=tcp size=1M.. exe=a*", "channel=tcp size=2M.. exe=ab direction=send", true},
    {"channel=tcp size=1M.. exe=a*", "channel=tcp size=512K.. exe=ab", false},
};

static void test_shadow_table(void **state)
{
    char text[512];

    for (size_t i = 0; i < sizeof shadow_cases / sizeof shadow_cases[0]; i++) {
        const shadow_case *c = &shadow_cases[i];
        snprintf(text, sizeof text, "rule first: %s => pass\nrule second: %s => log\n",
                 c->earlier, c->later);
        if (parse(text) != 0) {
            dump();
            fail_msg("case %zu does not parse", i);
        }
        if (c->shadowed) {
            has_diag(true, 2, 1, "rule 'second' can never match: the earlier rule 'first' "
                                 "(line 1) matches every send it matches");
        } else if (g_d.warnings) {
            dump();
            fail_msg("case %zu: '%s' then '%s' warned", i, c->earlier, c->later);
        }
    }
    /* a rule that can never match by itself shadows nothing */
    assert_int_equal(parse("rule dead: channel=pipe port=1 => pass\nrule b: channel=pipe "
                           "port=1 size=1M.. => pass\nrule c: channel=tcp => pass\n"), 0);
    assert_int_equal(g_d.warnings, 2);
    has_diag(true, 1, 1, "rule 'dead' can never match: peer=/port=");
    has_diag(true, 2, 1, "rule 'b' can never match: peer=/port=");
}

/* ---- environment --------------------------------------------------------- */

static void test_apply_env(void **state)
{
    static psi_config cfg;
    psi_err e;

    memset(&cfg, 0, sizeof cfg);
    cfg.threshold = 4096;
    assert_int_equal(psi_parse_peers("10.9.9.9:1,10.1.2.3:8786", &cfg, &e), 0);

    parses_clean("defaults threshold=1M\npeer 10.1.2.3:8786\nrule: size=..64K => proxy "
                 "threshold=16K\n");
    psi_policy_apply_env(&g_pol, &cfg, true);
    assert_int_equal(g_pol.threshold, 4096);
    assert_int_equal(g_pol.threshold_from, POL_FROM_ENV);
    assert_int_equal(g_pol.npeers, 2); /* one new, one duplicate */
    assert_int_equal(g_pol.min_candidate, 4096);

    parses_clean("defaults threshold=2M\nrule: => pass\n");
    cfg.threshold = PSI_DEFAULT_THRESHOLD;
    psi_policy_apply_env(&g_pol, &cfg, false); /* the file's threshold stays */
    assert_int_equal(g_pol.threshold, 2 << 20);
    assert_int_equal(g_pol.threshold_from, POL_FROM_FILE);

    parses_clean("rule: => pass\n");
    psi_policy_apply_env(&g_pol, &cfg, false);
    assert_int_equal(g_pol.threshold, PSI_DEFAULT_THRESHOLD);
    assert_int_equal(g_pol.threshold_from, POL_FROM_BUILTIN);

    /* policy peers into a config */
    parses_clean("peer 10.9.9.9:1 10.7.7.7:7\n");
    assert_int_equal(psi_policy_peers_into(&g_pol, &cfg), 0);
    assert_int_equal(cfg.npeers, 3);
}

/* ---- files --------------------------------------------------------------- */

static char g_dir[64];

static int setup_dir(void **state)
{
    strcpy(g_dir, "/tmp/psi-pol-test.XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown_dir(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

static int load(const char *name)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    memset(&g_d, 0, sizeof g_d);
    int rc = psi_policy_load(path, &g_pol, collect, &g_d);
    assert_int_equal(rc, g_d.errors);
    return rc;
}

static void test_load_bad_inputs(void **state)
{
    char path[256];

    assert_int_equal(load("missing"), 1);
    has_diag(false, 0, 0, "cannot open the policy file: No such file or directory");
    assert_int_equal(g_pol.nrules, 0);

    snprintf(path, sizeof path, "%s/dir", g_dir);
    assert_int_equal(mkdir(path, 0700), 0);
    assert_int_equal(load("dir"), 1);
    has_diag(false, 0, 0, "is a directory; expected a policy file");

    snprintf(path, sizeof path, "%s/fifo", g_dir);
    assert_int_equal(mkfifo(path, 0600), 0);
    assert_int_equal(load("fifo"), 1); /* and does not block */
    has_diag(false, 0, 0, "not a regular file");

    snprintf(path, sizeof path, "%s/empty", g_dir);
    write_file(path, "", 0);
    assert_int_equal(load("empty"), 1);
    has_diag(false, 0, 0, "empty file: no statements");

    snprintf(path, sizeof path, "%s/bin", g_dir);
    write_file(path, "\x7f" "ELF\x02\x01\x01\0\0\0", 10);
    assert_int_equal(load("bin"), 1);
    has_diag(false, 0, 0, "not a text file: a NUL byte");
    assert_string_equal(g_d.path, path);

    char *big = malloc(POL_FILE_MAX + 2);
    memset(big, '\n', POL_FILE_MAX + 1);
    snprintf(path, sizeof path, "%s/huge", g_dir);
    write_file(path, big, POL_FILE_MAX + 1);
    assert_int_equal(load("huge"), 1);
    has_diag(false, 0, 0, "too large: 1048577 bytes; a policy file is at most 1048576 bytes");
    /* exactly the limit is allowed (and here, only blank lines) */
    memcpy(big, "rule: => pass\n", 14);
    write_file(path, big, POL_FILE_MAX);
    assert_int_equal(load("huge"), 0);
    free(big);

    assert_int_equal(psi_policy_load("", &g_pol, collect, &g_d), 1);
    assert_int_equal(psi_policy_load(NULL, &g_pol, NULL, NULL), 1);

    /* Unreadable: as root, open() ignores the mode bits, so EACCES cannot
     * be produced with chmod; the case is run only as another user. */
    if (geteuid() != 0) {
        snprintf(path, sizeof path, "%s/noread", g_dir);
        write_file(path, "rule: => pass\n", 14);
        assert_int_equal(chmod(path, 0), 0);
        assert_int_equal(load("noread"), 1);
        has_diag(false, 0, 0, "cannot open the policy file: Permission denied");
    }

    snprintf(path, sizeof path, "%s/good", g_dir);
    write_file(path, "rule ok: => pass\n", 17);
    assert_int_equal(load("good"), 0);
    assert_string_equal(g_pol.rules[0].name, "ok");
    assert_string_equal(g_pol.path, path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_connectors),
        cmocka_unit_test(test_peers),
        cmocka_unit_test(test_rule_conditions),
        cmocka_unit_test(test_rule_options),
        cmocka_unit_test(test_lexing),
        cmocka_unit_test(test_example_policy),
        cmocka_unit_test(test_errors_table),
        cmocka_unit_test(test_errors_all_reported),
        cmocka_unit_test(test_too_many),
        cmocka_unit_test(test_long_word),
        cmocka_unit_test(test_empty_and_binary),
        cmocka_unit_test(test_warnings),
        cmocka_unit_test(test_shadow_table),
        cmocka_unit_test(test_apply_env),
        cmocka_unit_test_setup_teardown(test_load_bad_inputs, setup_dir, teardown_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
