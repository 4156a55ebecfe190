/* pol_report: histogram buckets, peer names, JSON strings, the merge of
 * per-process dry-run files and the threshold sweep. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <netinet/in.h>
#include <sys/un.h>

#include "pol_report.h"

#define MiB (1024ull * 1024)

static void test_bucket(void **state)
{
    (void)state;
    assert_int_equal(pol_report_bucket(0), 0);
    assert_int_equal(pol_report_bucket(1), 0);
    assert_int_equal(pol_report_bucket(2), 1);
    assert_int_equal(pol_report_bucket(3), 1);
    assert_int_equal(pol_report_bucket(4095), 11);
    assert_int_equal(pol_report_bucket(4096), 12);
    assert_int_equal(pol_report_bucket(2 * MiB - 1), 20);
    assert_int_equal(pol_report_bucket(2 * MiB), 21);
    assert_int_equal(pol_report_bucket(UINT64_MAX), 63);
}

static void test_format_peer(void **state)
{
    (void)state;
    char buf[POL_REPORT_PEER_MAX];
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = htons(8080)};
    inet_pton(AF_INET, "127.0.0.1", &in.sin_addr);
    pol_format_peer((struct sockaddr *)&in, sizeof(in), false, buf, sizeof(buf));
    assert_string_equal(buf, "127.0.0.1:8080");

    struct sockaddr_in6 in6 = {.sin6_family = AF_INET6, .sin6_port = htons(80)};
    inet_pton(AF_INET6, "::1", &in6.sin6_addr);
    pol_format_peer((struct sockaddr *)&in6, sizeof(in6), false, buf, sizeof(buf));
    assert_string_equal(buf, "[::1]:80");

    struct sockaddr_un un = {.sun_family = AF_UNIX};
    strcpy(un.sun_path, "/run/x.sock");
    pol_format_peer((struct sockaddr *)&un,
                    (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(un.sun_path) + 1),
                    false, buf, sizeof(buf));
    assert_string_equal(buf, "unix:/run/x.sock");

    memset(un.sun_path, 0, sizeof(un.sun_path));
    memcpy(un.sun_path, "\0abs", 4);
    pol_format_peer((struct sockaddr *)&un, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 4),
                    false, buf, sizeof(buf));
    assert_string_equal(buf, "unix:@abs");

    pol_format_peer((struct sockaddr *)&un, sizeof(sa_family_t), false, buf, sizeof(buf));
    assert_string_equal(buf, "unix:(unnamed)");
    pol_format_peer(NULL, 0, true, buf, sizeof(buf));
    assert_string_equal(buf, "pipe");
    pol_format_peer(NULL, 0, false, buf, sizeof(buf));
    assert_string_equal(buf, "?");
}

static void test_json_string(void **state)
{
    (void)state;
    char buf[64];
    assert_int_equal(pol_json_string("a\"b\\c\n", buf, sizeof(buf)), 15);
    assert_string_equal(buf, "\"a\\\"b\\\\c\\u000a\"");
    pol_json_string("caf\xc3\xa9", buf, sizeof(buf));
    assert_string_equal(buf, "\"caf\xc3\xa9\"");
    pol_json_string("x\xff", buf, sizeof(buf)); /* invalid UTF-8: U+FFFD */
    assert_string_equal(buf, "\"x\xef\xbf\xbd\"");
    assert_int_equal(pol_json_string("0123456789", buf, 8), -1);
}

static const char proc_a[] =
    "{\"pid\":10,\"ppid\":1,\"exe\":\"/usr/bin/python3\",\"argv0\":\"python3\","
    "\"threshold\":1048576,\"dropped\":0,\n\"rows\":[\n"
    "{\"rule\":\"(no rule)\",\"site\":\"f+0x1 (a.out)\",\"peer\":\"pipe\",\"channel\":\"pipe\","
    "\"sends\":3,\"bytes\":6291456,\"proxied_sends\":3,\"proxied_bytes\":6291456,"
    "\"wire_after\":318},\n"
    "{\"rule\":\"(no rule)\",\"site\":\"(small sends)\",\"peer\":\"pipe\",\"channel\":\"pipe\","
    "\"sends\":5,\"bytes\":5120,\"proxied_sends\":0,\"proxied_bytes\":0,\"wire_after\":5120}],\n"
    "\"histogram\":[{\"log2\":10,\"count\":5,\"bytes\":5120},"
    "{\"log2\":21,\"count\":3,\"bytes\":6291456}]}\n";

/* The same pipe row again, a new TCP row, keys in another order, an
 * unknown key of every JSON kind, escapes. */
static const char proc_b[] =
    "{ \"rows\" : [ {\"peer\":\"pipe\",\"rule\":\"(no rule)\",\"channel\":\"pipe\","
    "\"site\":\"f+0x1 (a.out)\",\"bytes\":2097152,\"sends\":1,\"proxied_sends\":1,"
    "\"proxied_bytes\":2097152,\"wire_after\":106,\"future\":[1,{\"x\":null},true]},"
    "{\"rule\":\"big\",\"site\":\"g+0x2 (lib\\u00e9.so)\",\"peer\":\"127.0.0.1:80\","
    "\"channel\":\"tcp\",\"sends\":1,\"bytes\":300,\"proxied_sends\":0,\"proxied_bytes\":0,"
    "\"wire_after\":300} ],"
    " \"histogram\":[{\"count\":1,\"bytes\":2097152,\"log2\":21},{\"log2\":8,\"count\":1,"
    "\"bytes\":300}], \"pid\":11, \"ppid\":10, \"exe\":\"x\", \"argv0\":\"y\","
    " \"extra\":-1.5e3 }";

static void test_merge(void **state)
{
    (void)state;
    pol_report r;
    psi_err err = {0};
    pol_report_init(&r);
    assert_int_equal(pol_report_add_json(&r, proc_a, strlen(proc_a), &err), 0);
    assert_int_equal(pol_report_add_json(&r, proc_b, strlen(proc_b), &err), 0);
    assert_int_equal(r.nprocs, 2);
    assert_int_equal(r.procs[1].pid, 11);
    assert_int_equal(r.procs[1].ppid, 10);
    assert_string_equal(r.procs[0].exe, "/usr/bin/python3");
    assert_int_equal(r.threshold, 1048576);
    assert_int_equal(r.nrows, 3); /* the pipe row of both processes is one */
    pol_report_sort(&r);
    assert_string_equal(r.rows[0].site, "f+0x1 (a.out)");
    assert_int_equal(r.rows[0].sends, 4);
    assert_int_equal(r.rows[0].bytes, 8 * MiB);
    assert_int_equal(r.rows[0].proxied_sends, 4);
    assert_int_equal(r.rows[0].wire_after, 4 * POL_REPORT_TOKEN_WIRE);
    /* then by bytes: the small pipe sends (5120) before the TCP row (300) */
    assert_string_equal(r.rows[1].site, POL_REPORT_SMALL_SITE);
    assert_string_equal(r.rows[2].rule, "big");
    assert_string_equal(r.rows[2].site, "g+0x2 (lib\xc3\xa9.so)");
    assert_string_equal(r.rows[2].channel, "tcp");

    pol_report_row t;
    pol_report_totals(&r, &t);
    assert_int_equal(t.sends, 10);
    assert_int_equal(t.bytes, 8 * MiB + 5120 + 300);
    assert_int_equal(t.proxied_sends, 4);
    assert_int_equal(t.proxied_bytes, 8 * MiB);
    assert_int_equal(t.wire_after, 4 * 106 + 5120 + 300);
    assert_int_equal(r.hist_count[21], 4);
    assert_int_equal(r.hist_bytes[21], 8 * MiB);
    assert_int_equal(r.hist_count[8], 1);
    pol_report_free(&r);
}

static void test_merge_errors_leave_report_alone(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "[]",
        "{\"pid\":1",                                   /* unterminated */
        "{\"ppid\":1}",                                 /* no pid */
        "{\"pid\":-1}",                                 /* negative */
        "{\"pid\":1,\"rows\":[{\"sends\":\"3\"}]}",     /* string for a number */
        "{\"pid\":1,\"histogram\":[{\"log2\":64,\"count\":1}]}", /* bucket out of range */
        "{\"pid\":1,\"exe\":\"a\\qb\"}",                 /* unknown escape */
        "{\"pid\":1} trailing",
        "{\"pid\":99999999999999999999999}",             /* overflow */
    };
    pol_report r;
    pol_report_init(&r);
    psi_err err = {0};
    assert_int_equal(pol_report_add_json(&r, proc_a, strlen(proc_a), &err), 0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err.msg[0] = '\0';
        assert_int_equal(pol_report_add_json(&r, bad[i], strlen(bad[i]), &err), -1);
        assert_true(err.msg[0] != '\0');
        assert_int_equal(r.nprocs, 1);
        assert_int_equal(r.nrows, 2);
        assert_int_equal(r.hist_count[21], 3);
    }
    assert_int_equal(pol_report_add_file(&r, "/nonexistent/dry.1.json", &err), -1);
    pol_report_free(&r);
}

static void test_sweep(void **state)
{
    (void)state;
    pol_report r;
    pol_report_init(&r);
    /* sends: 5 x 1 KiB, 1 x 4 KiB, 2 x 6 KiB, 3 x 2 MiB, 1 x 256 MiB */
    r.hist_count[10] = 5, r.hist_bytes[10] = 5 * 1024;
    r.hist_count[12] = 3, r.hist_bytes[12] = 4096 + 2 * 6144;
    r.hist_count[21] = 3, r.hist_bytes[21] = 6 * MiB;
    r.hist_count[28] = 1, r.hist_bytes[28] = 256 * MiB;
    assert_int_equal(pol_report_sweep(&r, 4096), 4096 + 2 * 6144 + 6 * MiB + 256 * MiB);
    assert_int_equal(pol_report_sweep_sends(&r, 4096), 7);
    assert_int_equal(pol_report_sweep(&r, 8192), 6 * MiB + 256 * MiB);
    assert_int_equal(pol_report_sweep(&r, 1 * MiB), 6 * MiB + 256 * MiB);
    assert_int_equal(pol_report_sweep(&r, 2 * MiB), 6 * MiB + 256 * MiB);
    assert_int_equal(pol_report_sweep(&r, 4 * MiB), 256 * MiB);
    assert_int_equal(pol_report_sweep(&r, 256 * MiB), 256 * MiB);
    assert_int_equal(pol_report_sweep_sends(&r, 256 * MiB), 1);
    assert_int_equal(pol_report_sweep(&r, 512 * MiB), 0);
    /* not a power of two: the bucket holding it is left out (lower bound) */
    assert_int_equal(pol_report_sweep(&r, 5000), 6 * MiB + 256 * MiB);
    assert_int_equal(pol_report_sweep(&r, 0), 5 * 1024 + 4096 + 2 * 6144 + 262 * MiB);
    pol_report_free(&r);
}

static void test_saved_pct(void **state)
{
    (void)state;
    assert_true(pol_report_saved_pct(0, 0) == 0.0);
    assert_true(pol_report_saved_pct(1000, 1000) == 0.0);
    assert_true(pol_report_saved_pct(1000, 250) == 75.0);
    assert_true(pol_report_saved_pct(100, 106) == 0.0); /* a token larger than its payload */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bucket),
        cmocka_unit_test(test_format_peer),
        cmocka_unit_test(test_json_string),
        cmocka_unit_test(test_merge),
        cmocka_unit_test(test_merge_errors_leave_report_alone),
        cmocka_unit_test(test_sweep),
        cmocka_unit_test(test_saved_pct),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
