/* Unit tests for the PSI_STATS line: snapshot, format, append, parse. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "psi_stats.h"

static psi_stats_rec sample(void)
{
    psi_stats_rec r = {
        .bytes_sent = 1, .bytes_proxied = 2, .tokens_sent = 3, .tokens_resolved = 4,
        .bytes_resolved = 5, .inline_fallbacks = 6, .errors = 7,
        .put_seconds = 1.5, .get_seconds = 0.000000001,
    };
    return r;
}

static int format(const psi_stats_rec *r, pid_t pid, const char *exe, char *buf, size_t cap)
{
    int n = psi_stats_format(r, pid, exe, buf, cap);
    assert_true(n > 0);
    assert_int_equal((size_t)n, strlen(buf));
    assert_int_equal(buf[n - 1], '\n');
    assert_null(memchr(buf, '\n', (size_t)n - 1)); /* one line */
    return n;
}

static void parse_ok(const char *line, psi_stats_rec *r, long *pid, char *exe, size_t cap)
{
    psi_err err = {0};
    if (psi_stats_parse_line(line, r, pid, exe, cap, &err) != 0)
        fail_msg("parse of [%s] failed: %s", line, err.msg);
}

/* ---- snapshot and format ---------------------------------------------- */

static void test_snapshot(void **state)
{
    psi_stats_rec r;

    memset(&psi_g_stats, 0, sizeof psi_g_stats);
    PSI_STAT_ADD(bytes_sent, 100);
    PSI_STAT_ADD(bytes_sent, 23);
    PSI_STAT_ADD(bytes_proxied, 7);
    PSI_STAT_ADD(tokens_sent, 1);
    PSI_STAT_ADD(tokens_resolved, 2);
    PSI_STAT_ADD(bytes_resolved, 3);
    PSI_STAT_ADD(inline_fallbacks, 4);
    PSI_STAT_ADD(errors, 5);
    PSI_STAT_ADD(put_ns, 1500000000);
    PSI_STAT_ADD(get_ns, 250);
    psi_stats_snapshot(&psi_g_stats, &r);
    assert_int_equal(r.bytes_sent, 123);
    assert_int_equal(r.bytes_proxied, 7);
    assert_int_equal(r.tokens_sent, 1);
    assert_int_equal(r.tokens_resolved, 2);
    assert_int_equal(r.bytes_resolved, 3);
    assert_int_equal(r.inline_fallbacks, 4);
    assert_int_equal(r.errors, 5);
    assert_true(r.put_seconds == 1.5);
    assert_true(r.get_seconds > 2.49e-7 && r.get_seconds < 2.51e-7);
}

static void test_format_exact(void **state)
{
    psi_stats_rec r = sample();
    char buf[512];

    format(&r, 4242, "/usr/bin/app", buf, sizeof buf);
    assert_string_equal(buf,
                        "{\"pid\":4242,\"exe\":\"/usr/bin/app\",\"bytes_sent\":1,"
                        "\"bytes_proxied\":2,\"tokens_sent\":3,\"tokens_resolved\":4,"
                        "\"bytes_resolved\":5,\"inline_fallbacks\":6,\"errors\":7,"
                        "\"put_seconds\":1.500000000,\"get_seconds\":0.000000001}\n");
}

static void test_format_small_buffer(void **state)
{
    psi_stats_rec r = sample();
    char buf[512];
    int n = format(&r, 1, "/bin/x", buf, sizeof buf);

    /* n + 1 bytes (for the NUL) is the least that fits; less is -1. */
    assert_int_equal(psi_stats_format(&r, 1, "/bin/x", buf, (size_t)n + 1), n);
    for (size_t cap = 0; cap <= (size_t)n; cap++)
        assert_int_equal(psi_stats_format(&r, 1, "/bin/x", buf, cap), -1);
}

static void test_round_trip(void **state)
{
    psi_stats_rec in = {
        .bytes_sent = UINT64_MAX, .bytes_proxied = 1ull << 40, .tokens_sent = 0,
        .tokens_resolved = 99, .bytes_resolved = 12345678901234ull, .inline_fallbacks = 1,
        .errors = 2, .put_seconds = 12.345678901, .get_seconds = 0,
    };
    psi_stats_rec out;
    char buf[1024], exe[256];
    long pid = 0;

    format(&in, 31337, "/opt/my app/bin/run", buf, sizeof buf);
    parse_ok(buf, &out, &pid, exe, sizeof exe);
    assert_int_equal(pid, 31337);
    assert_string_equal(exe, "/opt/my app/bin/run");
    assert_true(out.bytes_sent == UINT64_MAX);
    assert_true(out.bytes_proxied == 1ull << 40);
    assert_int_equal(out.tokens_sent, 0);
    assert_int_equal(out.tokens_resolved, 99);
    assert_true(out.bytes_resolved == 12345678901234ull);
    assert_int_equal(out.inline_fallbacks, 1);
    assert_int_equal(out.errors, 2);
    assert_true(out.put_seconds > 12.3456789 && out.put_seconds < 12.3456790);
    assert_true(out.get_seconds == 0);
}

/* exe is a path: any bytes. The line must stay one line of valid JSON. */
static void test_escaping(void **state)
{
    const char *exe = "/a \"quoted\"\\back\nnew\ttab\x01\x1f\x7f/caf\xc3\xa9/\xe6\x97\xa5/\xf0\x9f\x98\x80";
    psi_stats_rec r = sample(), out;
    char buf[1024], back[256];
    long pid;

    format(&r, 7, exe, buf, sizeof buf);
    assert_non_null(strstr(buf, "\"exe\":\"/a \\\"quoted\\\"\\\\back\\nnew\\ttab\\u0001\\u001f"
                                "\\u007f/caf\xc3\xa9/\xe6\x97\xa5/\xf0\x9f\x98\x80\""));
    parse_ok(buf, &out, &pid, back, sizeof back);
    assert_string_equal(back, exe);
}

static void test_escaping_invalid_utf8(void **state)
{
    /* a lone continuation byte, a truncated sequence, an overlong '/',
     * and a UTF-16 surrogate encoded in UTF-8 */
    const char *exe = "/x\x80y\xe6\x97z\xc0\xaf\xed\xa0\x80";
    psi_stats_rec r = sample(), out;
    char buf[1024], back[256];
    long pid;

    format(&r, 7, exe, buf, sizeof buf);
    assert_non_null(strstr(buf, "\"/x\\ufffdy\\ufffd\\ufffdz\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\""));
    parse_ok(buf, &out, &pid, back, sizeof back);
    assert_string_equal(back, "/x\xef\xbf\xbdy\xef\xbf\xbd\xef\xbf\xbdz\xef\xbf\xbd\xef\xbf\xbd"
                              "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
}

/* ---- tolerant parsing ------------------------------------------------- */

static void test_parse_any_order_unknown_keys(void **state)
{
    const char *line =
        " { \"errors\" : 3 , \"future\": {\"a\": [1, 2.5e-3, \"}\", {\"b\": null}], \"c\": true},"
        "\"exe\":\"\\/bin\\/sh \\u00e9\\ud83d\\ude00\", \"pid\":\t12, \"note\": \"x\\\"y\","
        "\"bytes_sent\": 10, \"list\": [], \"obj\": {}, \"f\": false, \"neg\": -1.5E+2,"
        "\"put_seconds\": 2.5e-1, \"get_seconds\": 3 }\r\n";
    psi_stats_rec r;
    char exe[64];
    long pid;

    parse_ok(line, &r, &pid, exe, sizeof exe);
    assert_int_equal(pid, 12);
    assert_string_equal(exe, "/bin/sh \xc3\xa9\xf0\x9f\x98\x80");
    assert_int_equal(r.errors, 3);
    assert_int_equal(r.bytes_sent, 10);
    assert_int_equal(r.bytes_proxied, 0); /* missing keys are 0 */
    assert_true(r.put_seconds == 0.25);
    assert_true(r.get_seconds == 3);
}

static void test_parse_null_outputs(void **state)
{
    psi_stats_rec r;
    psi_err err;

    assert_int_equal(psi_stats_parse_line("{\"pid\":5,\"exe\":\"/x\"}", &r, NULL, NULL, 0, &err), 0);
}

/* ---- malformed lines -------------------------------------------------- */

static void bad(const char *line, const char *msg_part)
{
    psi_stats_rec r;
    psi_err err = {0};
    char exe[16];
    long pid;

    if (psi_stats_parse_line(line, &r, &pid, exe, sizeof exe, &err) != -1)
        fail_msg("[%s] parsed but should not", line);
    if (!strstr(err.msg, msg_part))
        fail_msg("[%s]: message \"%s\" lacks \"%s\"", line, err.msg, msg_part);
}

static void test_malformed_structure(void **state)
{
    bad("", "empty line");
    bad("  \n", "empty line");
    bad("not json", "column 1: expected '{'");
    bad("[1]", "column 1: expected '{'");
    bad("{", "column 2: line ends where");
    bad("{\"pid\":1", "column 9: line ends where ',' or '}' was expected");
    bad("{\"pid\":1,}", "column 10: expected a string");
    bad("{\"pid\" 1}", "column 8: expected ':'");
    bad("{pid:1}", "column 2: expected a string");
    bad("{\"pid\":1} junk", "column 11: unexpected text after the object");
    bad("{\"pid\":1}{}", "column 10: unexpected text");
    bad("{\"pid\":1,\"x\":}", "column 14: expected a value");
    bad("{\"pid\":1,\"x\":[1,}", "column 17: expected a value");
    bad("{\"pid\":1,\"x\":tru}", "column 14: expected a value");
    bad("{}", "no \"pid\" key");
    bad("{\"exe\":\"/x\"}", "no \"pid\" key");
}

static void test_malformed_values(void **state)
{
    bad("{\"pid\":\"12\"}", "column 8: expected a number");
    bad("{\"pid\":-1}", "column 8: \"pid\" must be a positive integer");
    bad("{\"pid\":0}", "\"pid\" must be a positive integer");
    bad("{\"pid\":1.5}", "\"pid\" must be a positive integer");
    bad("{\"pid\":1,\"bytes_sent\":-1}", "column 23: \"bytes_sent\" must be a non-negative");
    bad("{\"pid\":1,\"errors\":1e3}", "\"errors\" must be a non-negative integer");
    bad("{\"pid\":1,\"errors\":18446744073709551616}", "below 2^64");
    bad("{\"pid\":1,\"put_seconds\":-2}", "\"put_seconds\" must not be negative");
    bad("{\"pid\":1,\"put_seconds\":\"1\"}", "expected a number");
    bad("{\"pid\":1,\"put_seconds\":1.}", "expected a digit after '.'");
    bad("{\"pid\":1,\"put_seconds\":1e}", "expected a digit in the exponent");
    bad("{\"pid\":1,\"exe\":5}", "\"exe\" must be a string");
}

static void test_malformed_strings(void **state)
{
    bad("{\"pid\":1,\"exe\":\"/x}", "unterminated string");
    bad("{\"pid\":1,\"exe\":\"a\\qb\"}", "column 18: unknown escape '\\q'");
    bad("{\"pid\":1,\"exe\":\"\\u12G4\"}", "\\u needs 4 hex digits");
    bad("{\"pid\":1,\"exe\":\"\\ud800\"}", "unpaired UTF-16 surrogate");
    bad("{\"pid\":1,\"exe\":\"\\ud800\\u0041\"}", "unpaired UTF-16 surrogate");
    bad("{\"pid\":1,\"exe\":\"\\udc00\"}", "unpaired UTF-16 surrogate");
    bad("{\"pid\":1,\"exe\":\"\\u0000\"}", "\\u0000 is not allowed");
    bad("{\"pid\":1,\"exe\":\"a\tb\"}", "control character");
    bad("{\"pid\":1,\"exe\":\"0123456789abcdef\"}", "string longer than 15 bytes");
    bad("{\"pid\":1,\"x\":\"a\\qb\"}", "unknown escape");
}

/* ---- appending -------------------------------------------------------- */

static void read_all(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    size_t n;

    assert_non_null(f);
    n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
}

static void test_append(void **state)
{
    char dir[] = "/tmp/psi-test-stats-XXXXXX", path[256], buf[256];
    psi_err err;

    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/stats.jsonl", dir);
    assert_int_equal(psi_stats_append(path, "{\"pid\":1}\n", 10, &err), 0);
    assert_int_equal(psi_stats_append(path, "{\"pid\":2}\n", 10, &err), 0);
    read_all(path, buf, sizeof buf);
    assert_string_equal(buf, "{\"pid\":1}\n{\"pid\":2}\n");
    unlink(path);

    snprintf(path, sizeof path, "%s/missing/stats.jsonl", dir);
    assert_int_equal(psi_stats_append(path, "x\n", 2, &err), -1);
    assert_int_equal(err.code, ENOENT);
    assert_non_null(strstr(err.msg, path));
    assert_int_equal(psi_stats_append("", "x\n", 2, &err), -1);
    rmdir(dir);
}

static void test_append_stderr(void **state)
{
    char path[] = "/tmp/psi-test-stderr-XXXXXX", buf[64];
    int fd = mkstemp(path), saved = dup(2);
    psi_err err;

    assert_true(fd >= 0 && saved >= 0);
    assert_int_equal(dup2(fd, 2), 2);
    assert_int_equal(psi_stats_append("stderr", "{\"pid\":3}\n", 10, &err), 0);
    dup2(saved, 2);
    close(saved);
    close(fd);
    read_all(path, buf, sizeof buf);
    assert_string_equal(buf, "{\"pid\":3}\n");
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_snapshot),
        cmocka_unit_test(test_format_exact),
        cmocka_unit_test(test_format_small_buffer),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_escaping_invalid_utf8),
        cmocka_unit_test(test_parse_any_order_unknown_keys),
        cmocka_unit_test(test_parse_null_outputs),
        cmocka_unit_test(test_malformed_structure),
        cmocka_unit_test(test_malformed_values),
        cmocka_unit_test(test_malformed_strings),
        cmocka_unit_test(test_append),
        cmocka_unit_test(test_append_stderr),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
