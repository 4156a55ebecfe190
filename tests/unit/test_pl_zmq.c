/* Unit tests of the ZeroMQ frame codec (docs/protocol.md §7): the escape
 * rule, token frames round trip, every malformed token frame is refused
 * with the right errno, zmq_connect endpoints, PSI_ZMQ values. */
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/un.h>
#include <xxhash.h>

#include <cmocka.h>

#include "pl_zmq.h"
#include "pl_zmqf.h"

#define KEY "0123456789abcdef0123456789abcdef.1700003600.4242.7"

static psi_token sample(void)
{
    psi_token t = {0};
    t.connector = PSI_CONN_FILE;
    t.lifetime = PSI_LIFE_TTL;
    t.size = 16u << 20;
    t.sum.lo = 0x1122334455667788ull;
    t.sum.hi = 0x99aabbccddeeff00ull;
    t.ttl = 60;
    t.key_len = (uint8_t)strlen(KEY);
    memcpy(t.key, KEY, t.key_len + 1u);
    return t;
}

static size_t frame_ok(uint8_t *buf)
{
    psi_token t = sample();
    psi_err err = {0};
    int n = pl_zf_token_encode(&t, buf, PL_ZF_TOKEN_MAX, &err);
    assert_int_equal(n, PL_ZF_HDR + (int)psi_token_body_len(&t));
    return (size_t)n;
}

/* Rewrites the body checksum after a field changed (body = buf+4). */
static void reseal(uint8_t *buf, size_t len)
{
    uint64_t h = XXH3_64bits(buf + PL_ZF_HDR, len - PL_ZF_HDR - 8);
    for (int i = 0; i < 8; i++)
        buf[len - 8 + (size_t)i] = (uint8_t)(h >> (8 * i));
}

static void expect_bad(const uint8_t *buf, size_t len, int code, const char *what)
{
    psi_err err = {0};
    psi_token tok;
    assert_int_equal(pl_zf_classify(buf, len, &tok, &err), -1);
    assert_int_equal(err.code, code);
    if (what && !strstr(err.msg, what))
        fail_msg("message '%s' does not mention '%s'", err.msg, what);
}

static void test_escape_rule(void **state)
{
    (void)state;
    static const uint8_t p[] = {0xF5, 0x50, 0x53, 0x5A, 1, 2};
    assert_false(pl_zf_needs_escape(p, 0));
    assert_false(pl_zf_needs_escape(p, 3)); /* three bytes can never be ours */
    for (size_t n = 4; n <= sizeof(p); n++)
        assert_true(pl_zf_needs_escape(p, n));
    uint8_t q[8];
    for (int b = 0; b < 256; b++) { /* every fourth byte: ours, whatever its kind */
        memcpy(q, p, 4);
        q[3] = (uint8_t)b;
        assert_true(pl_zf_needs_escape(q, 4));
    }
    for (int i = 0; i < 3; i++) { /* one byte off the prefix: the application's */
        memcpy(q, p, 4);
        q[i] ^= 0x01;
        assert_false(pl_zf_needs_escape(q, 4));
    }
}

static void test_plain_frames(void **state)
{
    (void)state;
    psi_err err = {0};
    psi_token tok;
    static const uint8_t three[] = {0xF5, 0x50, 0x53};
    assert_int_equal(pl_zf_classify(three, 3, &tok, &err), PL_ZF_PLAIN);
    assert_int_equal(pl_zf_classify((const uint8_t *)"", 0, &tok, &err), PL_ZF_PLAIN);
    assert_int_equal(pl_zf_classify((const uint8_t *)"hello", 5, &tok, &err), PL_ZF_PLAIN);
    static const uint8_t f5[] = {0xF5, 0x50, 0x54, 0x5A, 0};
    assert_int_equal(pl_zf_classify(f5, sizeof(f5), &tok, &err), PL_ZF_PLAIN);
}

static void test_escaped(void **state)
{
    (void)state;
    psi_err err = {0};
    psi_token tok;
    uint8_t f[16];
    pl_zf_header(f, PL_ZF_KIND_ESCAPE);
    assert_memory_equal(f, "\xF5PSE", 4);
    assert_int_equal(pl_zf_classify(f, 4, &tok, &err), PL_ZF_ESCAPED); /* an empty frame... */
    pl_zf_header(f + 4, PL_ZF_KIND_TOKEN); /* ...or one that looks like a token */
    assert_int_equal(pl_zf_classify(f, 8, &tok, &err), PL_ZF_ESCAPED);
}

static void test_token_round_trip(void **state)
{
    (void)state;
    uint8_t buf[PL_ZF_TOKEN_MAX];
    size_t n = frame_ok(buf);
    assert_memory_equal(buf, "\xF5PSZ", 4);
    psi_err err = {0};
    psi_token tok, want = sample();
    assert_int_equal(pl_zf_classify(buf, n, &tok, &err), PL_ZF_TOKEN);
    assert_int_equal(tok.connector, want.connector);
    assert_int_equal(tok.lifetime, want.lifetime);
    assert_true(tok.size == want.size);
    assert_true(tok.sum.lo == want.sum.lo && tok.sum.hi == want.sum.hi);
    assert_int_equal(tok.ttl, want.ttl);
    assert_string_equal(tok.key, want.key);
}

static void test_encode_errors(void **state)
{
    (void)state;
    uint8_t buf[PL_ZF_TOKEN_MAX];
    psi_err err = {0};
    psi_token t = sample();
    assert_int_equal(pl_zf_token_encode(&t, buf, 3, &err), -1);
    assert_int_equal(pl_zf_token_encode(&t, buf, PL_ZF_HDR + 10, &err), -1);
    t.size = 0;
    assert_int_equal(pl_zf_token_encode(&t, buf, sizeof(buf), &err), -1);
}

static void test_unknown_kind(void **state)
{
    (void)state;
    uint8_t buf[PL_ZF_TOKEN_MAX];
    size_t n = frame_ok(buf);
    for (int b = 0; b < 256; b++) {
        if (b == PL_ZF_KIND_TOKEN || b == PL_ZF_KIND_ESCAPE)
            continue;
        buf[3] = (uint8_t)b;
        expect_bad(buf, n, EPROTO, "unknown kind");
        expect_bad(buf, 4, EPROTO, "unknown kind");
    }
}

static void test_truncated_token(void **state)
{
    (void)state;
    uint8_t buf[PL_ZF_TOKEN_MAX + 1];
    size_t n = frame_ok(buf);
    for (size_t l = 4; l < n; l++)
        expect_bad(buf, l, EIO, NULL);
    buf[n] = 0; /* one byte too many */
    expect_bad(buf, n + 1, EIO, NULL);
}

static void test_flipped_token(void **state)
{
    (void)state;
    uint8_t buf[PL_ZF_TOKEN_MAX];
    size_t n = frame_ok(buf);
    for (size_t i = PL_ZF_HDR; i < n; i++) {
        for (int bit = 0; bit < 8; bit++) {
            if (i == PL_ZF_HDR + 32) /* the reserved byte: ignored by design */
                continue;
            buf[i] ^= (uint8_t)(1u << bit);
            expect_bad(buf, n, EIO, NULL);
            buf[i] ^= (uint8_t)(1u << bit);
        }
    }
}

static void field_wrong(size_t off, uint8_t v, const char *what)
{
    uint8_t buf[PL_ZF_TOKEN_MAX];
    size_t n = frame_ok(buf);
    buf[PL_ZF_HDR + off] = v;
    reseal(buf, n);
    expect_bad(buf, n, EIO, what);
}

static void test_token_fields_wrong(void **state)
{
    (void)state;
    field_wrong(0, 2, "version");
    field_wrong(1, 0, "connector");
    field_wrong(1, 9, "connector");
    field_wrong(2, 3, "lifetime");
    field_wrong(3, 0, "key length");
    field_wrong(3, 129, "key length");
    field_wrong(PSI_TOKEN_FIXED, '/', "key"); /* key must start alphanumeric */
    field_wrong(PSI_TOKEN_FIXED + 33, '.', "key"); /* KEY[32] is a dot: ".." */
    uint8_t buf[PL_ZF_TOKEN_MAX];
    size_t n = frame_ok(buf);
    memset(buf + PL_ZF_HDR + 4, 0, 8); /* payload length 0 */
    reseal(buf, n);
    expect_bad(buf, n, EIO, "payload length 0");
}

static void test_endpoints(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    socklen_t len;
    const struct sockaddr_in *v4 = (const void *)&ss;
    const struct sockaddr_in6 *v6 = (const void *)&ss;
    const struct sockaddr_un *un = (const void *)&ss;

    assert_int_equal(pl_zf_endpoint("tcp://127.0.0.1:5555", &ss, &len), 0);
    assert_int_equal(v4->sin_family, AF_INET);
    assert_int_equal(ntohs(v4->sin_port), 5555);
    assert_int_equal(ntohl(v4->sin_addr.s_addr), 0x7f000001);
    assert_int_equal(pl_zf_endpoint("tcp://localhost:1", &ss, &len), 0);
    assert_int_equal(ntohl(v4->sin_addr.s_addr), 0x7f000001);
    assert_int_equal(pl_zf_endpoint("tcp://10.0.0.1:7;127.0.0.2:80", &ss, &len), 0);
    assert_int_equal(ntohl(v4->sin_addr.s_addr), 0x7f000002);
    assert_int_equal(ntohs(v4->sin_port), 80);
    assert_int_equal(pl_zf_endpoint("tcp://[::1]:65535", &ss, &len), 0);
    assert_int_equal(v6->sin6_family, AF_INET6);
    assert_int_equal(ntohs(v6->sin6_port), 65535);
    assert_int_equal(len, sizeof(struct sockaddr_in6));

    assert_int_equal(pl_zf_endpoint("ipc:///tmp/x.sock", &ss, &len), 0);
    assert_int_equal(un->sun_family, AF_UNIX);
    assert_string_equal(un->sun_path, "/tmp/x.sock");
    assert_int_equal(len, offsetof(struct sockaddr_un, sun_path) + 12);
    assert_int_equal(pl_zf_endpoint("ipc://@abs", &ss, &len), 0);
    assert_int_equal(un->sun_path[0], 0);
    assert_memory_equal(un->sun_path + 1, "abs", 3);
    assert_int_equal(len, offsetof(struct sockaddr_un, sun_path) + 4);

    static const char *const bad[] = {
        "tcp://example.org:80", "tcp://127.0.0.1:0", "tcp://127.0.0.1:65536", "tcp://127.0.0.1:",
        "tcp://127.0.0.1:*", "tcp://:80", "tcp://[::1:80", "tcp://127.0.0.1", "inproc://x",
        "pgm://eth0;239.1.1.1:5555", "ipc://", "ipc://*", "tcp:/127.0.0.1:1", "", NULL,
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (pl_zf_endpoint(bad[i], &ss, &len) != -1)
            fail_msg("endpoint '%s' accepted", bad[i] ? bad[i] : "(null)");
}

static void test_mode(void **state)
{
    (void)state;
    assert_int_equal(pl_zq_parse_mode(NULL), PL_ZQ_AUTO);
    assert_int_equal(pl_zq_parse_mode(""), PL_ZQ_AUTO);
    assert_int_equal(pl_zq_parse_mode("auto"), PL_ZQ_AUTO);
    assert_int_equal(pl_zq_parse_mode("on"), PL_ZQ_ON);
    assert_int_equal(pl_zq_parse_mode("1"), PL_ZQ_ON);
    assert_int_equal(pl_zq_parse_mode("off"), PL_ZQ_OFF);
    assert_int_equal(pl_zq_parse_mode("0"), PL_ZQ_OFF);
    assert_int_equal(pl_zq_parse_mode("yes"), -1);
    assert_int_equal(pl_zq_parse_mode("ON"), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape_rule),      cmocka_unit_test(test_plain_frames),
        cmocka_unit_test(test_escaped),          cmocka_unit_test(test_token_round_trip),
        cmocka_unit_test(test_encode_errors),    cmocka_unit_test(test_unknown_kind),
        cmocka_unit_test(test_truncated_token),  cmocka_unit_test(test_flipped_token),
        cmocka_unit_test(test_token_fields_wrong), cmocka_unit_test(test_endpoints),
        cmocka_unit_test(test_mode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
