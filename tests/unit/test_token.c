/* Unit tests for the token codec (docs/protocol.md §4). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <xxhash.h>

#include <cmocka.h>

#include "psi_store.h"
#include "psi_token.h"

#define KEY "0123456789abcdef0123456789abcdef.1700003600.4242.7"

static psi_token sample(void)
{
    psi_token t = {0};
    t.connector = PSI_CONN_FILE;
    t.lifetime = PSI_LIFE_EVICT_ON_READ;
    t.size = 0x0102030405060708ull;
    t.sum.lo = 0x1122334455667788ull;
    t.sum.hi = 0x99aabbccddeeff00ull;
    t.ttl = 0xa1b2c3d4u;
    t.key_len = (uint8_t)strlen(KEY);
    memcpy(t.key, KEY, t.key_len + 1u);
    return t;
}

static size_t encode_ok(const psi_token *t, uint8_t *buf)
{
    psi_err err = {0};
    int n = psi_token_encode(t, buf, PSI_TOKEN_MAX_BODY, &err);
    assert_int_equal(n, (int)psi_token_body_len(t));
    return (size_t)n;
}

/* Rewrites the trailing body checksum after a test changed a field, so the
 * decoder gets as far as the check under test. */
static void reseal(uint8_t *buf, size_t len)
{
    uint64_t h = XXH3_64bits(buf, len - 8);
    for (int i = 0; i < 8; i++)
        buf[len - 8 + (size_t)i] = (uint8_t)(h >> (8 * i));
}

/* Decoding must fail with EIO and a message containing `what`. */
static void expect_decode_error(const uint8_t *buf, size_t len, const char *what)
{
    psi_err err = {0};
    psi_token out;
    assert_int_equal(psi_token_decode(buf, len, &out, &err), -1);
    assert_int_equal(err.code, EIO);
    if (what && !strstr(err.msg, what))
        fail_msg("message '%s' does not mention '%s'", err.msg, what);
}

static void test_round_trip(void **state)
{
    psi_token t = sample(), out;
    uint8_t buf[PSI_TOKEN_MAX_BODY];
    psi_err err = {0};

    size_t n = encode_ok(&t, buf);
    assert_int_equal(n, 41 + strlen(KEY));
    assert_int_equal(psi_token_decode(buf, n, &out, &err), 0);
    assert_int_equal(out.connector, t.connector);
    assert_int_equal(out.lifetime, t.lifetime);
    assert_true(out.size == t.size);
    assert_true(out.sum.lo == t.sum.lo && out.sum.hi == t.sum.hi);
    assert_int_equal(out.ttl, t.ttl);
    assert_int_equal(out.key_len, t.key_len);
    assert_string_equal(out.key, KEY);
}

/* The exact bytes of §4: little-endian, hash low half first. */
static void test_wire_layout(void **state)
{
    psi_token t = sample();
    uint8_t buf[PSI_TOKEN_MAX_BODY];
    size_t n = encode_ok(&t, buf);
    static const uint8_t head[33] = {
        1, 1, 2, (uint8_t)strlen(KEY),
        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,
        0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11,
        0x00, 0xff, 0xee, 0xdd, 0xcc, 0xbb, 0xaa, 0x99,
        0xd4, 0xc3, 0xb2, 0xa1,
        0,
    };
    assert_memory_equal(buf, head, sizeof head);
    assert_memory_equal(buf + 33, KEY, strlen(KEY));
    uint64_t h = XXH3_64bits(buf, 33 + strlen(KEY));
    for (int i = 0; i < 8; i++)
        assert_int_equal(buf[n - 8 + (size_t)i], (uint8_t)(h >> (8 * i)));
}

static void test_extreme_keys_round_trip(void **state)
{
    psi_token t = sample(), out;
    uint8_t buf[PSI_TOKEN_MAX_BODY];
    psi_err err = {0};

    t.key_len = 1;
    strcpy(t.key, "Z");
    size_t n = encode_ok(&t, buf);
    assert_int_equal(n, PSI_TOKEN_MIN_BODY);
    assert_int_equal(psi_token_decode(buf, n, &out, &err), 0);
    assert_string_equal(out.key, "Z");

    memset(t.key, 'k', PSI_TOKEN_KEY_MAX);
    t.key[PSI_TOKEN_KEY_MAX] = '\0';
    t.key_len = PSI_TOKEN_KEY_MAX;
    n = encode_ok(&t, buf);
    assert_int_equal(n, PSI_TOKEN_MAX_BODY);
    assert_int_equal(psi_token_decode(buf, n, &out, &err), 0);
    assert_int_equal(out.key_len, PSI_TOKEN_KEY_MAX);
    assert_int_equal(strlen(out.key), PSI_TOKEN_KEY_MAX);
}

static void test_reserved_byte_ignored(void **state)
{
    psi_token t = sample(), out;
    uint8_t buf[PSI_TOKEN_MAX_BODY];
    psi_err err = {0};
    size_t n = encode_ok(&t, buf);

    buf[32] = 0x5a;
    reseal(buf, n);
    assert_int_equal(psi_token_decode(buf, n, &out, &err), 0);
}

static void test_truncated_at_every_length(void **state)
{
    psi_token t = sample();
    uint8_t buf[PSI_TOKEN_MAX_BODY];
    size_t n = encode_ok(&t, buf);

    for (size_t len = 0; len < n; len++)
        expect_decode_error(buf, len, "length mismatch");
}

static void test_trailing_byte(void **state)
{
    psi_token t = sample();
    uint8_t buf[PSI_TOKEN_MAX_BODY + 1];
    size_t n = encode_ok(&t, buf);
    buf[n] = 0;
    expect_decode_error(buf, n + 1, "length mismatch");
}

/* Any single flipped bit anywhere in the body is caught. */
static void test_flip_every_byte(void **state)
{
    psi_token t = sample();
    uint8_t buf[PSI_TOKEN_MAX_BODY];
    size_t n = encode_ok(&t, buf);

    for (size_t i = 0; i < n; i++) {
        for (int bit = 0; bit < 8; bit++) {
            buf[i] ^= (uint8_t)(1u << bit);
            /* Flips of the version or key length byte are caught by those
             * checks first; every other flip by the body checksum. */
            expect_decode_error(buf, n, i == 0 ? "version" : i == 3 ? "length" : "checksum");
            buf[i] ^= (uint8_t)(1u << bit);
        }
    }
}

static void field_wrong(size_t off, uint8_t v, const char *what)
{
    psi_token t = sample();
    uint8_t buf[PSI_TOKEN_MAX_BODY];
    size_t n = encode_ok(&t, buf);
    buf[off] = v;
    reseal(buf, n);
    expect_decode_error(buf, n, what);
}

static void test_each_field_wrong(void **state)
{
    field_wrong(0, 0, "version");
    field_wrong(0, 2, "version");
    field_wrong(1, 0, "connector");
    field_wrong(1, 5, "connector");
    field_wrong(1, 0xff, "connector");
    field_wrong(2, 3, "lifetime");
    field_wrong(2, 0xff, "lifetime");
    field_wrong(3, 0, "key length");
    field_wrong(3, 129, "key length");
    field_wrong(3, 255, "key length");

    /* Payload length 0. */
    psi_token t = sample();
    uint8_t buf[PSI_TOKEN_MAX_BODY];
    size_t n = encode_ok(&t, buf);
    memset(buf + 4, 0, 8);
    reseal(buf, n);
    expect_decode_error(buf, n, "payload length 0");
}

/* A body carrying `key` (any bytes) with a valid checksum. */
static void decode_key(const char *key, size_t k, const char *what)
{
    psi_token t = sample();
    uint8_t buf[PSI_TOKEN_MAX_BODY];
    size_t n = encode_ok(&t, buf);

    assert_true(k <= PSI_TOKEN_KEY_MAX);
    buf[3] = (uint8_t)k;
    memcpy(buf + 33, key, k);
    n = 33 + k + 8;
    reseal(buf, n);
    expect_decode_error(buf, n, what);
}

static void test_bad_keys_rejected(void **state)
{
    decode_key("a/b", 3, "invalid key");
    decode_key("/etc/passwd", 11, "invalid key");
    decode_key("a..b", 4, "invalid key");
    decode_key("..", 2, "invalid key");
    decode_key(".hidden", 7, "invalid key");
    decode_key("-x", 2, "invalid key");
    decode_key("_x", 2, "invalid key");
    decode_key("caf\xc3\xa9", 5, "invalid key");
    decode_key("a b", 3, "invalid key");
    decode_key("a\0b", 3, "invalid key");
    decode_key("a\\b", 3, "invalid key");
    decode_key("a\nb", 3, "invalid key");
}

static void test_key_valid(void **state)
{
    char long_key[PSI_TOKEN_KEY_MAX + 2];

    assert_true(psi_key_valid("a", 1));
    assert_true(psi_key_valid("0", 1));
    assert_true(psi_key_valid("A.b_c-d.9", 9));
    assert_true(psi_key_valid("a.", 2));
    assert_true(psi_key_valid(KEY, strlen(KEY)));
    assert_false(psi_key_valid("", 0));
    assert_false(psi_key_valid(NULL, 1));
    assert_false(psi_key_valid(".", 1));
    assert_false(psi_key_valid("..", 2));
    assert_false(psi_key_valid("a..", 3));
    assert_false(psi_key_valid(".a", 2));
    assert_false(psi_key_valid("a/b", 3));
    assert_false(psi_key_valid("a\xff", 2));
    assert_false(psi_key_valid("\xc3\xa9", 2));

    memset(long_key, 'x', sizeof long_key);
    assert_true(psi_key_valid(long_key, PSI_TOKEN_KEY_MAX));
    assert_false(psi_key_valid(long_key, PSI_TOKEN_KEY_MAX + 1));
}

static void expect_encode_error(const psi_token *t, size_t cap, int code)
{
    uint8_t buf[PSI_TOKEN_MAX_BODY];
    psi_err err = {0};
    assert_int_equal(psi_token_encode(t, buf, cap, &err), -1);
    assert_int_equal(err.code, code);
    assert_true(err.msg[0] != '\0');
}

static void test_encode_errors(void **state)
{
    psi_token t;

    t = sample(); t.size = 0;
    expect_encode_error(&t, PSI_TOKEN_MAX_BODY, EINVAL);
    t = sample(); t.connector = 0;
    expect_encode_error(&t, PSI_TOKEN_MAX_BODY, EINVAL);
    t = sample(); t.connector = 5;
    expect_encode_error(&t, PSI_TOKEN_MAX_BODY, EINVAL);
    t = sample(); t.lifetime = 3;
    expect_encode_error(&t, PSI_TOKEN_MAX_BODY, EINVAL);
    t = sample(); t.key_len = 0; t.key[0] = '\0';
    expect_encode_error(&t, PSI_TOKEN_MAX_BODY, EINVAL);
    t = sample(); t.key_len = PSI_TOKEN_KEY_MAX + 1;
    expect_encode_error(&t, PSI_TOKEN_MAX_BODY, EINVAL);
    t = sample(); strcpy(t.key, "../x"); t.key_len = 4;
    expect_encode_error(&t, PSI_TOKEN_MAX_BODY, EINVAL);
    t = sample(); strcpy(t.key, "a/b"); t.key_len = 3;
    expect_encode_error(&t, PSI_TOKEN_MAX_BODY, EINVAL);
    t = sample();
    expect_encode_error(&t, psi_token_body_len(&t) - 1, ENOBUFS);
    expect_encode_error(&t, 0, ENOBUFS);
}

static void test_encode_exact_cap(void **state)
{
    psi_token t = sample();
    uint8_t buf[PSI_TOKEN_MAX_BODY];
    psi_err err = {0};
    size_t n = psi_token_body_len(&t);
    assert_int_equal(psi_token_encode(&t, buf, n, &err), (int)n);
}

static void test_hash_hex(void **state)
{
    psi_hash128 h = {.lo = 0x0123456789abcdefull, .hi = 0xfedcba9876543210ull};
    char out[33];

    psi_hash_hex(&h, out);
    assert_string_equal(out, "fedcba98765432100123456789abcdef");
    h = (psi_hash128){0, 0};
    psi_hash_hex(&h, out);
    assert_string_equal(out, "00000000000000000000000000000000");
}

static void test_hash_buf_matches_xxh3(void **state)
{
    static const char msg[] = "psinterpose";
    XXH128_hash_t ref = XXH3_128bits(msg, sizeof msg - 1);
    psi_hash128 h = psi_hash_buf(msg, sizeof msg - 1);
    assert_true(h.lo == ref.low64 && h.hi == ref.high64);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_wire_layout),
        cmocka_unit_test(test_extreme_keys_round_trip),
        cmocka_unit_test(test_reserved_byte_ignored),
        cmocka_unit_test(test_truncated_at_every_length),
        cmocka_unit_test(test_trailing_byte),
        cmocka_unit_test(test_flip_every_byte),
        cmocka_unit_test(test_each_field_wrong),
        cmocka_unit_test(test_bad_keys_rejected),
        cmocka_unit_test(test_key_valid),
        cmocka_unit_test(test_encode_errors),
        cmocka_unit_test(test_encode_exact_cap),
        cmocka_unit_test(test_hash_hex),
        cmocka_unit_test(test_hash_buf_matches_xxh3),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
