/* xxh3-128 through psi_hash: the generic and the AVX2 implementations give
 * libxxhash's bits for every length and every way of cutting the input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include <cmocka.h>

#include "psi_hash.h"

static uint8_t *data(size_t n)
{
    uint8_t *b = malloc(n ? n : 1);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        b[i] = (uint8_t)x;
    }
    return b;
}

static void check_impl(const psi_hash_impl_ops *ops)
{
    size_t big = (3u << 20) + 77;
    uint8_t *b = data(big);
    /* Every length up to 300 crosses xxh3's short-input branches; then a
     * few stripes and blocks, unaligned. */
    size_t lens[] = {1024, 1025, 4095, 65536, 65537, (1u << 20) + 1, big - 1};
    for (size_t n = 0; n <= 300 + sizeof lens / sizeof *lens; n++) {
        size_t len = n <= 300 ? n : lens[n - 301];
        const uint8_t *p = b + (n & 7);
        if (len + 7 > big)
            len = big - 7;
        XXH128_hash_t ref = XXH3_128bits(p, len);
        psi_hash128 one = ops->oneshot(p, len);
        assert_true(one.lo == ref.low64 && one.hi == ref.high64);
        /* Streaming, cut at 1, 7, 64 and 32K bytes. */
        size_t cuts[] = {1, 7, 64, 32768};
        for (size_t c = 0; c < 4 && len < 70000; c++) {
            void *st = ops->new_state();
            assert_non_null(st);
            for (size_t off = 0; off < len; off += cuts[c])
                ops->update(st, p + off, len - off < cuts[c] ? len - off : cuts[c]);
            psi_hash128 s = ops->done(st);
            assert_true(s.lo == ref.low64 && s.hi == ref.high64);
        }
    }
    free(b);
}

static void test_generic(void **state)
{
    (void)state;
    check_impl(&psi_hash_generic_ops);
}

static void test_avx2(void **state)
{
    (void)state;
    if (!psi_hash_avx2_ops_ptr || !psi_hash_cpu_has_avx2())
        skip();
    check_impl(psi_hash_avx2_ops_ptr);
}

static void test_public_api(void **state)
{
    (void)state;
    uint8_t *b = data(100000);
    XXH128_hash_t ref = XXH3_128bits(b, 100000);
    psi_hash128 h = psi_hash_buf(b, 100000);
    assert_true(h.lo == ref.low64 && h.hi == ref.high64);
    psi_hasher *st = psi_hasher_new();
    psi_hasher_update(st, b, 33333);
    psi_hasher_update(st, b + 33333, 100000 - 33333);
    h = psi_hasher_done(st);
    assert_true(h.lo == ref.low64 && h.hi == ref.high64);
    assert_non_null(psi_hash_impl());
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generic),
        cmocka_unit_test(test_avx2),
        cmocka_unit_test(test_public_api),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
