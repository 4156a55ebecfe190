/* Unit tests of pl_proto: HELLO/ANSWER layout, pl_detect, pl_find and the
 * record decoder (docs/protocol.md §2, §3). The decoder is fed every split
 * of a framed stream, byte by byte and in random chunks, into output buffers
 * of several sizes, separate from the input and aliasing it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pl_proto.h"

/* ---------------------------------------------------------------- helpers */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static void rng_seed(uint64_t s)
{
    rng_state = s ? s : 0x9e3779b97f4a7c15ull;
}

static uint32_t rng(void)
{
    /* xorshift64*: deterministic, so a failure reproduces. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545f4914f6cdd1dull) >> 32);
}

static void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static void make_hdr(uint8_t hdr[PL_REC_HDR], uint8_t type, uint32_t len)
{
    hdr[0] = type;
    put_le32(hdr + 1, len);
}

/* assert_memory_equal compares byte by byte in a loop; the split tests
 * compare gigabytes, so they use memcmp and report only a mismatch. */
#define check_mem(a, b, n)                                                                    \
    do {                                                                                      \
        if (memcmp((a), (b), (n)) != 0)                                                       \
            assert_memory_equal((a), (b), (n));                                               \
    } while (0)

/* A nonce full of bytes that look like protocol bytes. */
static const uint8_t nonce_tricky[PL_NONCE_LEN] = {
    0xF5, 'P', 'S', 'H', 0x01, 0xF5, 'P', 'S', 'A', 0xF5, 0xF5, 0x00, 0xFF, 0x01, 0x02, 0xF5,
};

/* ----------------------------------------------------------- HELLO/ANSWER */

static void check_hello_layout(bool answer, const uint8_t nonce[PL_NONCE_LEN])
{
    uint8_t buf[PL_HELLO_LEN + 16];
    memset(buf, 0xAA, sizeof(buf));
    pl_hello_make(buf + 8, nonce, answer);
    for (size_t i = 0; i < 8; i++)
        assert_int_equal(buf[i], 0xAA); /* nothing written before */
    const uint8_t *h = buf + 8;
    assert_int_equal(h[0], 0xF5);
    assert_int_equal(h[1], 0x50);
    assert_int_equal(h[2], 0x53);
    assert_int_equal(h[3], answer ? 0x41 : 0x48);
    assert_int_equal(h[4], 1); /* version */
    assert_int_equal(h[5], 0); /* flags */
    assert_int_equal(h[6], 0); /* reserved */
    assert_int_equal(h[7], 0);
    for (size_t i = 0; i < PL_NONCE_LEN; i++)
        assert_int_equal(h[8 + i], nonce[i]);
    for (size_t i = 8 + PL_HELLO_LEN; i < sizeof(buf); i++)
        assert_int_equal(buf[i], 0xAA); /* nothing written after */
}

static void test_hello_constants(void **state)
{
    (void)state;
    assert_int_equal(PL_HELLO_LEN, 24);
    assert_int_equal(PL_NONCE_LEN, 16);
    assert_int_equal(PL_REC_HDR, 5);
    assert_int_equal(PL_REC_DATA, 1);
    assert_int_equal(PL_REC_TOKEN, 2);
    assert_int_equal(PL_DATA_MAX, 0x7fffffffu);
    assert_int_equal(PSI_PROTO_VERSION, 1);
    assert_int_equal(PSI_TOKEN_MIN_BODY, 42);
    assert_int_equal(PSI_TOKEN_MAX_BODY, 169);
}

static void test_hello_layout(void **state)
{
    (void)state;
    uint8_t seq[PL_NONCE_LEN], zero[PL_NONCE_LEN], ones[PL_NONCE_LEN];
    for (size_t i = 0; i < PL_NONCE_LEN; i++)
        seq[i] = (uint8_t)(0x10 + i);
    memset(zero, 0, sizeof(zero));
    memset(ones, 0xFF, sizeof(ones));
    const uint8_t *nonces[] = {seq, zero, ones, nonce_tricky};
    for (size_t n = 0; n < 4; n++) {
        check_hello_layout(false, nonces[n]);
        check_hello_layout(true, nonces[n]);
    }
}

static void test_hello_exact_bytes(void **state)
{
    (void)state;
    uint8_t nonce[PL_NONCE_LEN];
    for (size_t i = 0; i < PL_NONCE_LEN; i++)
        nonce[i] = (uint8_t)(0xA0 + i);
    static const uint8_t want_hello[PL_HELLO_LEN] = {
        0xF5, 0x50, 0x53, 0x48, 0x01, 0x00, 0x00, 0x00, 0xA0, 0xA1, 0xA2, 0xA3,
        0xA4, 0xA5, 0xA6, 0xA7, 0xA8, 0xA9, 0xAA, 0xAB, 0xAC, 0xAD, 0xAE, 0xAF,
    };
    static const uint8_t want_answer[PL_HELLO_LEN] = {
        0xF5, 0x50, 0x53, 0x41, 0x01, 0x00, 0x00, 0x00, 0xA0, 0xA1, 0xA2, 0xA3,
        0xA4, 0xA5, 0xA6, 0xA7, 0xA8, 0xA9, 0xAA, 0xAB, 0xAC, 0xAD, 0xAE, 0xAF,
    };
    uint8_t got[PL_HELLO_LEN];
    pl_hello_make(got, nonce, false);
    assert_memory_equal(got, want_hello, PL_HELLO_LEN);
    pl_hello_make(got, nonce, true);
    assert_memory_equal(got, want_answer, PL_HELLO_LEN);
    assert_memory_equal(want_hello, "\xF5PSH", 4);
    assert_memory_equal(want_answer, "\xF5PSA", 4);
}

/* ---------------------------------------------------------------- detect */

static void test_detect_prefixes(void **state)
{
    (void)state;
    uint8_t h[PL_HELLO_LEN + 40];
    pl_hello_make(h, nonce_tricky, false);
    for (size_t i = PL_HELLO_LEN; i < sizeof(h); i++)
        h[i] = (uint8_t)(i * 7); /* records after the HELLO */
    /* No bytes yet: nothing differs, so keep waiting. */
    assert_int_equal(pl_detect(h, 0), PL_DETECT_PARTIAL);
    for (size_t len = 1; len < PL_HELLO_LEN; len++)
        assert_int_equal(pl_detect(h, len), PL_DETECT_PARTIAL);
    for (size_t len = PL_HELLO_LEN; len <= sizeof(h); len++)
        assert_int_equal(pl_detect(h, len), PL_DETECT_HELLO);
}

static void test_detect_empty_null(void **state)
{
    (void)state;
    assert_int_equal(pl_detect(NULL, 0), PL_DETECT_PARTIAL);
}

static void test_detect_magic_mismatch(void **state)
{
    (void)state;
    uint8_t good[PL_HELLO_LEN];
    pl_hello_make(good, nonce_tricky, false);
    for (size_t pos = 0; pos < 4; pos++) {
        for (unsigned v = 0; v < 256; v++) {
            if (v == good[pos])
                continue;
            uint8_t h[PL_HELLO_LEN];
            memcpy(h, good, sizeof(h));
            h[pos] = (uint8_t)v;
            for (size_t len = 0; len <= PL_HELLO_LEN; len++) {
                int want = len > pos ? PL_DETECT_PLAIN : PL_DETECT_PARTIAL;
                assert_int_equal(pl_detect(h, len), want);
            }
        }
    }
}

static void test_detect_bad_version(void **state)
{
    (void)state;
    uint8_t good[PL_HELLO_LEN];
    pl_hello_make(good, nonce_tricky, false);
    for (unsigned v = 0; v < 256; v++) {
        if (v == PSI_PROTO_VERSION)
            continue;
        uint8_t h[PL_HELLO_LEN + 8];
        memset(h, 0, sizeof(h));
        memcpy(h, good, PL_HELLO_LEN);
        h[4] = (uint8_t)v;
        for (size_t len = 0; len <= sizeof(h); len++) {
            int want = len > 4 ? PL_DETECT_BADVER : PL_DETECT_PARTIAL;
            assert_int_equal(pl_detect(h, len), want);
        }
    }
}

static void test_detect_ignores_flags_reserved_nonce(void **state)
{
    (void)state;
    uint8_t h[PL_HELLO_LEN];
    pl_hello_make(h, nonce_tricky, false);
    h[5] = 0xFF; /* unknown flag bits: receivers ignore them (§2) */
    h[6] = 0x12;
    h[7] = 0x34;
    for (size_t len = 0; len < PL_HELLO_LEN; len++)
        assert_int_equal(pl_detect(h, len), PL_DETECT_PARTIAL);
    assert_int_equal(pl_detect(h, PL_HELLO_LEN), PL_DETECT_HELLO);
    for (unsigned v = 0; v < 256; v++) {
        for (size_t pos = 5; pos < PL_HELLO_LEN; pos++) {
            h[pos] = (uint8_t)v;
            assert_int_equal(pl_detect(h, PL_HELLO_LEN), PL_DETECT_HELLO);
        }
    }
}

static void test_detect_answer_is_plain(void **state)
{
    (void)state;
    uint8_t a[PL_HELLO_LEN];
    pl_hello_make(a, nonce_tricky, true);
    /* "\xF5PS" is shared by both magics; the 'A' decides. */
    for (size_t len = 0; len <= 3; len++)
        assert_int_equal(pl_detect(a, len), PL_DETECT_PARTIAL);
    for (size_t len = 4; len <= PL_HELLO_LEN; len++)
        assert_int_equal(pl_detect(a, len), PL_DETECT_PLAIN);
}

static void test_detect_plain_protocols(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        size_t len;
    } plain[] = {
        {"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27},
        {"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11},
        {"SSH-2.0-OpenSSH_9.2\r\n", 21},
        {"*1\r\n$4\r\nPING\r\n", 14},
        {"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24},
        {"\x00\x00\x00\x08\x04\xd2\x16\x2f", 8}, /* PostgreSQL SSLRequest */
        {"\xef\xbb\xbfhello", 8},                /* UTF-8 BOM */
        {"\x01\x00\x00\x00\x05hello", 10},       /* a record without HELLO */
    };
    for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
        const uint8_t *b = (const uint8_t *)plain[i].s;
        assert_int_equal(pl_detect(b, 0), PL_DETECT_PARTIAL);
        for (size_t len = 1; len <= plain[i].len; len++)
            assert_int_equal(pl_detect(b, len), PL_DETECT_PLAIN);
    }
    const uint8_t empty[1] = {0};
    assert_int_equal(pl_detect(empty, 0), PL_DETECT_PARTIAL);
    assert_int_equal(pl_detect((const uint8_t *)"\xF5", 1), PL_DETECT_PARTIAL);
    assert_int_equal(pl_detect((const uint8_t *)"\xF5P", 2), PL_DETECT_PARTIAL);
    assert_int_equal(pl_detect((const uint8_t *)"\xF5PSH", 4), PL_DETECT_PARTIAL);
    assert_int_equal(pl_detect((const uint8_t *)"\xF5PSH\x01", 5), PL_DETECT_PARTIAL);
    assert_int_equal(pl_detect((const uint8_t *)"\xF5PSH\x02", 5), PL_DETECT_BADVER);
    assert_int_equal(pl_detect((const uint8_t *)"\xF5psh", 4), PL_DETECT_PLAIN);
}

/* ------------------------------------------------------------------ find */

/* Obviously correct reference for pl_find. */
static size_t ref_find(const uint8_t *hay, size_t n, const uint8_t *pat, size_t m, size_t *partial)
{
    *partial = 0;
    for (size_t i = 0; i + m <= n; i++)
        if (memcmp(hay + i, pat, m) == 0)
            return i;
    size_t maxk = m - 1 < n ? m - 1 : n;
    for (size_t k = maxk; k >= 1; k--) {
        if (memcmp(hay + n - k, pat, k) == 0) {
            *partial = k;
            break;
        }
    }
    return n;
}

static void check_find(const uint8_t *hay, size_t n, const uint8_t *pat, size_t m, size_t want_off,
                       size_t want_partial)
{
    size_t partial = 12345;
    size_t off = pl_find(hay, n, pat, m, &partial);
    assert_int_equal(off, want_off);
    assert_int_equal(partial, want_partial);
    size_t rpartial = 999;
    assert_int_equal(ref_find(hay, n, pat, m, &rpartial), want_off);
    assert_int_equal(rpartial, want_partial);
}

static void test_find_match_positions(void **state)
{
    (void)state;
    uint8_t pat[PL_HELLO_LEN];
    pl_hello_make(pat, nonce_tricky, true);
    uint8_t hay[200];
    for (size_t i = 0; i < sizeof(hay); i++)
        hay[i] = (uint8_t)('a' + i % 26);

    /* exactly the pattern */
    check_find(pat, PL_HELLO_LEN, pat, PL_HELLO_LEN, 0, 0);
    /* at the start, in the middle, at the end of a longer hay */
    for (size_t at = 0; at + PL_HELLO_LEN <= sizeof(hay); at++) {
        uint8_t h[200];
        memcpy(h, hay, sizeof(h));
        memcpy(h + at, pat, PL_HELLO_LEN);
        check_find(h, sizeof(h), pat, PL_HELLO_LEN, at, 0);
    }
    /* the first of two matches */
    uint8_t two[100];
    memcpy(two, hay, sizeof(two));
    memcpy(two + 10, pat, PL_HELLO_LEN);
    memcpy(two + 60, pat, PL_HELLO_LEN);
    check_find(two, sizeof(two), pat, PL_HELLO_LEN, 10, 0);
    /* a match, then a partial at the end: the match wins */
    memcpy(two + 95, pat, 5);
    check_find(two, sizeof(two), pat, PL_HELLO_LEN, 10, 0);
}

static void test_find_no_match(void **state)
{
    (void)state;
    uint8_t pat[PL_HELLO_LEN];
    pl_hello_make(pat, nonce_tricky, true);
    uint8_t hay[300];
    for (size_t i = 0; i < sizeof(hay); i++)
        hay[i] = (uint8_t)('a' + i % 26);
    check_find(hay, sizeof(hay), pat, PL_HELLO_LEN, sizeof(hay), 0);
    check_find(hay, 0, pat, PL_HELLO_LEN, 0, 0);
    check_find(hay, 1, pat, PL_HELLO_LEN, 1, 0);

    /* full of candidates that fail: every 0xF5, every "\xF5PS", HELLO
     * instead of ANSWER, an ANSWER with the wrong nonce */
    memset(hay, 0xF5, sizeof(hay));
    hay[sizeof(hay) - 1] = 'x';
    check_find(hay, sizeof(hay), pat, PL_HELLO_LEN, sizeof(hay), 0);
    for (size_t i = 0; i + 3 <= sizeof(hay); i += 3)
        memcpy(hay + i, "\xF5PS", 3);
    hay[297] = 'x';
    check_find(hay, 298, pat, PL_HELLO_LEN, 298, 0);
    check_find(hay, 297, pat, PL_HELLO_LEN, 297, 3); /* ends with "\xF5PS" */
    uint8_t hello[PL_HELLO_LEN];
    pl_hello_make(hello, nonce_tricky, false);
    memcpy(hay + 100, hello, PL_HELLO_LEN);
    uint8_t wrong[PL_HELLO_LEN];
    memcpy(wrong, pat, PL_HELLO_LEN);
    wrong[PL_HELLO_LEN - 1] ^= 1;
    memcpy(hay + 150, wrong, PL_HELLO_LEN);
    hay[299] = 'x';
    check_find(hay, sizeof(hay), pat, PL_HELLO_LEN, sizeof(hay), 0);
}

static void test_find_partial_every_length(void **state)
{
    (void)state;
    uint8_t pat[PL_HELLO_LEN];
    pl_hello_make(pat, nonce_tricky, true);
    uint8_t junk[40];
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (uint8_t)('a' + i % 26);
    for (size_t k = 1; k < PL_HELLO_LEN; k++) {
        uint8_t h[64];
        /* alone, after junk, after junk full of magic fragments */
        check_find(pat, k, pat, PL_HELLO_LEN, k, k);
        memcpy(h, junk, sizeof(junk));
        memcpy(h + sizeof(junk), pat, k);
        check_find(h, sizeof(junk) + k, pat, PL_HELLO_LEN, sizeof(junk) + k, k);
        memcpy(h, "\xF5PS\xF5P\xF5\xF5PSH\xF5PSA\x02", 15);
        memcpy(h + 15, pat, k);
        check_find(h, 15 + k, pat, PL_HELLO_LEN, 15 + k, k);
    }
}

static void test_find_partial_longest_suffix(void **state)
{
    (void)state;
    uint8_t pat[PL_HELLO_LEN];
    pl_hello_make(pat, nonce_tricky, true);

    /* The leftmost candidate ("\xF5PS\xF5P") fails at its 4th byte, the
     * later shorter one ("\xF5P") is a real prefix. */
    check_find((const uint8_t *)"xx\xF5PS\xF5P", 7, pat, PL_HELLO_LEN, 7, 2);
    check_find((const uint8_t *)"\xF5PS\xF5P", 5, pat, PL_HELLO_LEN, 5, 2);
    /* fails at the last available byte, the rest is no candidate */
    check_find((const uint8_t *)"\xF5PSB", 4, pat, PL_HELLO_LEN, 4, 0);
    check_find((const uint8_t *)"\xF5PSH\x01", 5, pat, PL_HELLO_LEN, 5, 0);
    check_find((const uint8_t *)"\xF5\xF5", 2, pat, PL_HELLO_LEN, 2, 1);

    /* A pattern whose nonce repeats its own start: for every k, hay ends
     * with pat[0..k); shorter suffixes are prefixes too, the longest wins. */
    uint8_t self[PL_NONCE_LEN] = {0xF5, 'P', 'S', 'A', 0x01, 0x00, 0x00, 0x00,
                                  0xF5, 'P', 'S', 'A', 0x01, 0x00, 0x00, 0x00};
    uint8_t sp[PL_HELLO_LEN];
    pl_hello_make(sp, self, true);
    for (size_t k = 1; k < PL_HELLO_LEN; k++) {
        uint8_t h[80];
        memset(h, 'z', sizeof(h));
        memcpy(h + 30, sp, k);
        check_find(h, 30 + k, sp, PL_HELLO_LEN, 30 + k, k);
        /* preceded by an almost-match that must not hide it */
        memcpy(h, sp, 20);
        h[19] ^= 0x55;
        check_find(h, 30 + k, sp, PL_HELLO_LEN, 30 + k, k);
    }
    /* the full self-similar pattern after a start that overlaps it */
    uint8_t h2[PL_HELLO_LEN + 8];
    memcpy(h2, sp, 8);
    memcpy(h2 + 8, sp, PL_HELLO_LEN);
    check_find(h2, sizeof(h2), sp, PL_HELLO_LEN, 0, 0); /* sp[0..8)=sp[8..16)... */

    /* repeated bytes: "\xF5\xF5\xF5P" in "\xF5\xF5\xF5\xF5\xF5P" is at 2 */
    const uint8_t rep[] = {0xF5, 0xF5, 0xF5, 'P'};
    check_find((const uint8_t *)"\xF5\xF5\xF5\xF5\xF5P", 6, rep, 4, 2, 0);
    check_find((const uint8_t *)"\xF5\xF5\xF5\xF5\xF5", 5, rep, 4, 5, 3);
    check_find((const uint8_t *)"\xF5\xF5P\xF5", 4, rep, 4, 4, 1);
    check_find((const uint8_t *)"\xF5\xF5P\xF5\xF5", 5, rep, 4, 5, 2);
    check_find((const uint8_t *)"P", 1, rep, 4, 1, 0);
}

static void test_find_short_patterns(void **state)
{
    (void)state;
    const uint8_t one[] = {0xF5};
    check_find((const uint8_t *)"abc", 3, one, 1, 3, 0);
    check_find((const uint8_t *)"ab\xF5", 3, one, 1, 2, 0); /* m=1: never partial */
    check_find((const uint8_t *)"\xF5", 1, one, 1, 0, 0);
    check_find((const uint8_t *)"", 0, one, 1, 0, 0);
    /* the empty pattern matches at 0 and reads nothing of pat */
    size_t part = 99;
    assert_int_equal(pl_find((const uint8_t *)"abc", 3, NULL, 0, &part), 0);
    assert_int_equal(part, 0);
    part = 99;
    assert_int_equal(pl_find(NULL, 0, NULL, 0, &part), 0);
    assert_int_equal(part, 0);
    uint8_t pat64[64];
    for (size_t i = 0; i < 64; i++)
        pat64[i] = i % 3 ? (uint8_t)i : 0xF5;
    uint8_t h[200];
    memset(h, 0xF5, sizeof(h));
    memcpy(h + 100, pat64, 64);
    check_find(h, sizeof(h), pat64, 64, 100, 0);
    check_find(h, 100 + 63, pat64, 64, 163, 63);
}

static void test_find_exhaustive_small_alphabet(void **state)
{
    (void)state;
    static const uint8_t alpha[4] = {0xF5, 'P', 'S', 'A'};
    static const struct {
        const char *p;
        size_t m;
    } pats[] = {
        {"\xF5PSA", 4}, {"\xF5P\xF5PS", 5}, {"\xF5\xF5\xF5", 3}, {"\xF5PS\xF5PSA", 7},
        {"P", 1},       {"PP", 2},          {"\xF5PS\xF5P\xF5PS\xF5PSA", 12},
    };
    uint8_t hay[8];
    for (size_t pi = 0; pi < sizeof(pats) / sizeof(pats[0]); pi++) {
        const uint8_t *pat = (const uint8_t *)pats[pi].p;
        size_t m = pats[pi].m;
        for (size_t n = 0; n <= sizeof(hay); n++) {
            size_t combos = 1;
            for (size_t i = 0; i < n; i++)
                combos *= 4;
            for (size_t c = 0; c < combos; c++) {
                size_t x = c;
                for (size_t i = 0; i < n; i++, x /= 4)
                    hay[i] = alpha[x % 4];
                size_t p1 = 7777, p2 = 8888;
                size_t o1 = pl_find(hay, n, pat, m, &p1);
                size_t o2 = ref_find(hay, n, pat, m, &p2);
                if (o1 != o2 || p1 != p2)
                    fail_msg("pattern %zu, hay %zu/%zu: got %zu/%zu want %zu/%zu", pi, n, c, o1,
                             p1, o2, p2);
            }
        }
    }
}

static void test_find_random(void **state)
{
    (void)state;
    rng_seed(42);
    uint8_t hay[120], pat[64];
    for (int iter = 0; iter < 200000; iter++) {
        size_t n = rng() % sizeof(hay);
        size_t m = 1 + rng() % (iter % 4 ? PL_HELLO_LEN : 64);
        uint8_t a = 0xF5, b = (uint8_t)(rng() % 3 ? 'P' : 0xF5);
        for (size_t i = 0; i < m; i++)
            pat[i] = rng() % 4 ? a : b;
        for (size_t i = 0; i < n; i++)
            hay[i] = rng() % 4 ? a : b;
        /* sometimes plant the pattern or a prefix of it */
        if (n && rng() % 3 == 0) {
            size_t k = rng() % (m + 1);
            if (k > n)
                k = n;
            size_t at = rng() % 2 ? n - k : rng() % (n - k + 1);
            memcpy(hay + at, pat, k);
        }
        size_t p1 = 7777, p2 = 8888;
        size_t o1 = pl_find(hay, n, pat, m, &p1);
        size_t o2 = ref_find(hay, n, pat, m, &p2);
        if (o1 != o2 || p1 != p2)
            fail_msg("iter %d n %zu m %zu: got %zu/%zu want %zu/%zu", iter, n, m, o1, p1, o2, p2);
    }
}

/* ---------------------------------------------------------- record streams */

enum { REC_MAX = 64 };

struct rec_spec {
    uint8_t type;
    uint32_t len;
};

struct tok_info {
    size_t end;          /* stream offset just after the token record */
    size_t len;          /* body length */
    size_t data_before;  /* DATA payload bytes before this token */
    const uint8_t *body; /* inside stream.bytes */
};

struct stream {
    uint8_t *bytes;
    size_t len;
    uint8_t *data; /* concatenated DATA payloads */
    size_t data_len;
    size_t ntok;
    struct tok_info tok[REC_MAX];
    bool *clean; /* clean[p]: EOF after p consumed bytes is clean */
};

/* A token body of the right shape (§4); the decoder checks only its length,
 * but the bytes differ per token so a mix-up shows. */
static void fill_token_body(uint8_t *b, size_t len, unsigned salt)
{
    b[0] = PSI_PROTO_VERSION;
    b[1] = PSI_CONN_FILE;
    b[2] = PSI_LIFE_REFCOUNT;
    b[3] = (uint8_t)(len - 41);
    for (size_t i = 4; i < len; i++)
        b[i] = (uint8_t)(salt * 31 + i * 13);
    /* bytes that look like headers and magic inside the body */
    b[len - 1] = 0xF5;
    if (len > 45) {
        b[40] = PL_REC_TOKEN;
        b[41] = PL_REC_DATA;
    }
}

static void stream_build(struct stream *s, const struct rec_spec *recs, size_t nrec)
{
    assert_true(nrec <= REC_MAX);
    memset(s, 0, sizeof(*s));
    size_t total = 0, dtotal = 0;
    for (size_t r = 0; r < nrec; r++) {
        total += PL_REC_HDR + recs[r].len;
        if (recs[r].type == PL_REC_DATA)
            dtotal += recs[r].len;
    }
    s->bytes = malloc(total + 1);
    s->data = malloc(dtotal + 1);
    s->clean = calloc(total + 1, sizeof(bool));
    assert_non_null(s->bytes);
    assert_non_null(s->data);
    assert_non_null(s->clean);
    size_t pos = 0;
    for (size_t r = 0; r < nrec; r++) {
        uint8_t *h = s->bytes + pos;
        make_hdr(h, recs[r].type, recs[r].len);
        for (size_t k = 0; k < PL_REC_HDR; k++)
            s->clean[pos + k] = true;
        pos += PL_REC_HDR;
        uint8_t *body = s->bytes + pos;
        if (recs[r].type == PL_REC_DATA) {
            for (size_t i = 0; i < recs[r].len; i++) {
                uint32_t v = rng();
                /* plenty of bytes that look like headers or magic */
                if (v % 5 == 0)
                    body[i] = 0xF5;
                else if (v % 7 == 0)
                    body[i] = (uint8_t)(1 + (v >> 8) % 2);
                else
                    body[i] = (uint8_t)(v >> 16);
            }
            memcpy(s->data + s->data_len, body, recs[r].len);
            s->data_len += recs[r].len;
        } else {
            fill_token_body(body, recs[r].len, (unsigned)s->ntok + 1);
            struct tok_info *t = &s->tok[s->ntok++];
            t->end = pos + recs[r].len;
            t->len = recs[r].len;
            t->data_before = s->data_len;
            t->body = body;
        }
        pos += recs[r].len;
    }
    s->len = pos;
    s->clean[pos] = true;
}

static void stream_free(struct stream *s)
{
    free(s->bytes);
    free(s->data);
    free(s->clean);
    memset(s, 0, sizeof(*s));
}

enum out_mode {
    OUT_SEPARATE, /* a buffer of its own */
    OUT_SAME,     /* out == in */
    OUT_COMPACT,  /* one buffer: out = start + produced so far <= in */
};

/* run_stream's buffers, reused across the thousands of runs of a test
 * (a fresh 64 KiB malloc per run made the kernel the bottleneck). */
struct scratch {
    uint8_t *p;
    size_t size;
};
static struct scratch scratch_sep, scratch_buf, scratch_got;

static uint8_t *scratch_get(struct scratch *sc, size_t size)
{
    if (sc->size != size) {
        free(sc->p);
        sc->p = malloc(size);
        assert_non_null(sc->p);
        sc->size = size;
    }
    return sc->p;
}

static int scratch_free(void **state)
{
    (void)state;
    struct scratch *all[] = {&scratch_sep, &scratch_buf, &scratch_got};
    for (size_t i = 0; i < 3; i++) {
        free(all[i]->p);
        all[i]->p = NULL;
        all[i]->size = 0;
    }
    return 0;
}

#define CAP_LARGE ((size_t)-1)
#define CANARY 16

/* Feeds s to a fresh decoder in chunks ending at cuts[0..ncuts) (ascending,
 * the last one s->len), and checks every call. */
static void run_stream(const struct stream *s, const size_t *cuts, size_t ncuts, size_t out_cap,
                       enum out_mode mode)
{
    size_t cap_alloc = out_cap == CAP_LARGE ? s->len : out_cap;
    /* A buffer exactly as large as the caller says, so ASan sees any write
     * past out_cap; the canary catches it without ASan. */
    uint8_t *sep = scratch_get(&scratch_sep, cap_alloc + CANARY);
    uint8_t *buf = scratch_get(&scratch_buf, s->len + 1);
    uint8_t *got = scratch_get(&scratch_got, s->data_len + 1);
    memset(sep + cap_alloc, 0xC5, CANARY);
    if (mode != OUT_SEPARATE)
        memset(buf, 0xEE, s->len); /* bytes not yet "read" */

    pl_rx rx;
    pl_rx_init(&rx);
    assert_true(pl_rx_eof_clean(&rx));
    size_t pos = 0, have = 0, prod = 0, ntok = 0;
    for (size_t c = 0; c < ncuts; c++) {
        size_t end = cuts[c];
        assert_true(end >= have && end <= s->len);
        memcpy(buf + have, s->bytes + have, end - have);
        have = end;
        while (pos < end) {
            uint8_t *in = buf + pos;
            size_t in_len = end - pos;
            uint8_t *out;
            size_t cap;
            switch (mode) {
            case OUT_SAME:
                out = in;
                cap = out_cap < in_len ? out_cap : in_len;
                break;
            case OUT_COMPACT:
                out = buf + prod;
                cap = out_cap < s->len - prod ? out_cap : s->len - prod;
                break;
            default:
                out = sep;
                cap = cap_alloc;
                break;
            }
            size_t consumed = 7777777, produced = 7777777;
            int ev = pl_rx_decode(&rx, in, in_len, out, cap, &consumed, &produced);
            assert_true(ev == PL_RX_MORE || ev == PL_RX_TOKEN_READY);
            assert_true(consumed <= in_len);
            assert_true(produced <= cap);
            assert_true(produced <= consumed);
            assert_true(consumed > 0); /* progress: input and room were there */
            assert_true(prod + produced <= s->data_len);
            memcpy(got + prod, out, produced);
            /* bytes come out in stream order, as they are consumed */
            check_mem(got + prod, s->data + prod, produced);
            prod += produced;
            pos += consumed;
            if (ev == PL_RX_TOKEN_READY) {
                assert_true(ntok < s->ntok);
                const struct tok_info *t = &s->tok[ntok];
                assert_int_equal(pos, t->end); /* stopped right after it */
                assert_int_equal(prod, t->data_before);
                assert_int_equal(rx.tok_len, t->len);
                check_mem(rx.tok, t->body, t->len);
                assert_false(pl_rx_eof_clean(&rx));
                pl_rx_token_taken(&rx);
                ntok++;
            } else if (consumed < in_len) {
                /* only a full output buffer stops it early */
                assert_int_equal(produced, cap);
                assert_false(pl_rx_eof_clean(&rx));
            }
            assert_int_equal(pl_rx_eof_clean(&rx), s->clean[pos]);
        }
    }
    assert_int_equal(pos, s->len);
    assert_int_equal(prod, s->data_len);
    assert_int_equal(ntok, s->ntok);
    check_mem(got, s->data, s->data_len);
    if (mode == OUT_COMPACT)
        check_mem(buf, s->data, s->data_len);
    for (size_t i = 0; i < CANARY; i++)
        assert_int_equal(sep[cap_alloc + i], 0xC5);
    assert_true(pl_rx_eof_clean(&rx));
}

static const struct rec_spec big_recs[] = {
    {PL_REC_TOKEN, 42},  {PL_REC_DATA, 1},    {PL_REC_DATA, 2},     {PL_REC_TOKEN, 169},
    {PL_REC_TOKEN, 100}, {PL_REC_DATA, 5},    {PL_REC_DATA, 1000},  {PL_REC_TOKEN, 77},
    {PL_REC_DATA, 65536}, {PL_REC_DATA, 1},   {PL_REC_TOKEN, 42},   {PL_REC_DATA, 5},
};

/* The same shapes without the 64 KiB record: small enough to try every
 * split point with a 1-byte output buffer. */
static const struct rec_spec small_recs[] = {
    {PL_REC_DATA, 1},   {PL_REC_TOKEN, 42},  {PL_REC_DATA, 2},   {PL_REC_TOKEN, 169},
    {PL_REC_TOKEN, 43}, {PL_REC_DATA, 5},    {PL_REC_DATA, 1000}, {PL_REC_DATA, 1},
    {PL_REC_TOKEN, 168}, {PL_REC_DATA, 7},   {PL_REC_TOKEN, 42},
};

static const size_t small_caps[] = {1, 3, 7, 4096, CAP_LARGE};

static void build_big(struct stream *s)
{
    rng_seed(1);
    stream_build(s, big_recs, sizeof(big_recs) / sizeof(big_recs[0]));
}

static void build_small(struct stream *s)
{
    rng_seed(2);
    stream_build(s, small_recs, sizeof(small_recs) / sizeof(small_recs[0]));
}

static void every_split(const struct stream *s, size_t cap, enum out_mode mode)
{
    for (size_t k = 0; k <= s->len; k++) {
        size_t cuts[2] = {k, s->len};
        run_stream(s, cuts, 2, cap, mode);
    }
}

static void test_rx_whole_stream(void **state)
{
    (void)state;
    struct stream s;
    build_big(&s);
    assert_int_equal(s.ntok, 5);
    assert_int_equal(s.data_len, 1 + 2 + 5 + 1000 + 65536 + 1 + 5);
    size_t cuts[1] = {s.len};
    for (size_t c = 0; c < sizeof(small_caps) / sizeof(small_caps[0]); c++)
        for (int mode = OUT_SEPARATE; mode <= OUT_COMPACT; mode++)
            run_stream(&s, cuts, 1, small_caps[c], (enum out_mode)mode);
    stream_free(&s);
}

static void test_rx_every_split_big(void **state)
{
    (void)state;
    struct stream s;
    build_big(&s);
    every_split(&s, CAP_LARGE, OUT_SEPARATE);
    every_split(&s, 4096, OUT_SEPARATE);
    stream_free(&s);
}

static void test_rx_every_split_big_in_place(void **state)
{
    (void)state;
    struct stream s;
    build_big(&s);
    every_split(&s, CAP_LARGE, OUT_SAME);
    every_split(&s, CAP_LARGE, OUT_COMPACT);
    stream_free(&s);
}

static void test_rx_every_split_small_caps(void **state)
{
    (void)state;
    struct stream s;
    build_small(&s);
    for (size_t c = 0; c < sizeof(small_caps) / sizeof(small_caps[0]); c++)
        for (int mode = OUT_SEPARATE; mode <= OUT_COMPACT; mode++)
            every_split(&s, small_caps[c], (enum out_mode)mode);
    stream_free(&s);
}

static void byte_by_byte(const struct stream *s, size_t cap, enum out_mode mode)
{
    size_t *cuts = malloc(s->len * sizeof(size_t));
    assert_non_null(cuts);
    for (size_t i = 0; i < s->len; i++)
        cuts[i] = i + 1;
    run_stream(s, cuts, s->len, cap, mode);
    free(cuts);
}

static void test_rx_byte_by_byte(void **state)
{
    (void)state;
    struct stream big, small;
    build_big(&big);
    build_small(&small);
    for (size_t c = 0; c < sizeof(small_caps) / sizeof(small_caps[0]); c++) {
        for (int mode = OUT_SEPARATE; mode <= OUT_COMPACT; mode++) {
            byte_by_byte(&big, small_caps[c], (enum out_mode)mode);
            byte_by_byte(&small, small_caps[c], (enum out_mode)mode);
        }
    }
    stream_free(&big);
    stream_free(&small);
}

static void test_rx_random_chunks(void **state)
{
    (void)state;
    struct stream big;
    build_big(&big);
    size_t *cuts = malloc((big.len + 1) * sizeof(size_t));
    assert_non_null(cuts);
    rng_seed(7);
    for (int iter = 0; iter < 300; iter++) {
        const struct stream *s = &big;
        struct stream rnd;
        bool own = iter % 2 == 1;
        if (own) {
            /* a random sequence of records */
            struct rec_spec recs[40];
            size_t nrec = 1 + rng() % 40;
            for (size_t r = 0; r < nrec; r++) {
                if (rng() % 3 == 0) {
                    recs[r].type = PL_REC_TOKEN;
                    recs[r].len = PSI_TOKEN_MIN_BODY +
                                  rng() % (PSI_TOKEN_MAX_BODY - PSI_TOKEN_MIN_BODY + 1);
                } else {
                    static const uint32_t dl[] = {1,   2,    3,    4,    5,   6,   7,
                                                  8,   100,  4095, 4096, 4097, 9000};
                    recs[r].type = PL_REC_DATA;
                    recs[r].len = dl[rng() % (sizeof(dl) / sizeof(dl[0]))];
                }
            }
            stream_build(&rnd, recs, nrec);
            s = &rnd;
        }
        size_t ncuts = 0, at = 0;
        size_t maxchunk = (size_t[]){1, 4, 6, 50, 300, 5000, 70000}[rng() % 7];
        while (at < s->len) {
            at += 1 + rng() % maxchunk;
            if (at > s->len)
                at = s->len;
            cuts[ncuts++] = at;
        }
        size_t cap = small_caps[rng() % 5];
        if (rng() % 4 == 0)
            cap = 1 + rng() % 10000;
        if (cap == 1 && s->len > 20000 && ncuts > 10000)
            cap = 2; /* keep the run short */
        run_stream(s, cuts, ncuts, cap, (enum out_mode)(rng() % 3));
        if (own)
            stream_free(&rnd);
    }
    free(cuts);
    stream_free(&big);
}

/* ------------------------------------------------------------- malformed */

/* Feeds hdr (5 bytes) after an optional valid prefix, split at every point
 * of the header, and expects an error whose text contains `what`. */
static void expect_bad_header(uint8_t type, uint32_t len, const char *what)
{
    uint8_t hdr[PL_REC_HDR];
    make_hdr(hdr, type, len);
    /* the whole header in one call */
    {
        pl_rx rx;
        pl_rx_init(&rx);
        uint8_t out[16];
        size_t consumed = 99, produced = 99;
        int ev = pl_rx_decode(&rx, hdr, sizeof(hdr), out, sizeof(out), &consumed, &produced);
        assert_int_equal(ev, PL_RX_ERROR);
        assert_int_equal(consumed, PL_REC_HDR);
        assert_int_equal(produced, 0);
        assert_true(strlen(rx.err) > 0 && strlen(rx.err) < sizeof(rx.err));
        if (strstr(rx.err, what) == NULL)
            fail_msg("error text \"%s\" lacks \"%s\"", rx.err, what);
    }
    /* split across two reads, at every point, with trailing bytes */
    for (size_t k = 1; k < PL_REC_HDR; k++) {
        pl_rx rx;
        pl_rx_init(&rx);
        uint8_t in[PL_REC_HDR + 8];
        memcpy(in, hdr, PL_REC_HDR);
        memset(in + PL_REC_HDR, 'x', 8);
        uint8_t out[16];
        size_t consumed, produced;
        assert_int_equal(pl_rx_decode(&rx, in, k, out, sizeof(out), &consumed, &produced),
                         PL_RX_MORE);
        assert_int_equal(consumed, k);
        assert_int_equal(produced, 0);
        assert_true(pl_rx_eof_clean(&rx));
        assert_int_equal(pl_rx_decode(&rx, in + k, sizeof(in) - k, out, sizeof(out), &consumed,
                                      &produced),
                         PL_RX_ERROR);
        assert_int_equal(consumed, PL_REC_HDR - k); /* nothing past the header */
        assert_int_equal(produced, 0);
        if (strstr(rx.err, what) == NULL)
            fail_msg("error text \"%s\" lacks \"%s\"", rx.err, what);
    }
    /* byte by byte */
    {
        pl_rx rx;
        pl_rx_init(&rx);
        uint8_t out[4];
        size_t consumed, produced;
        for (size_t k = 0; k + 1 < PL_REC_HDR; k++)
            assert_int_equal(pl_rx_decode(&rx, hdr + k, 1, out, sizeof(out), &consumed, &produced),
                             PL_RX_MORE);
        assert_int_equal(pl_rx_decode(&rx, hdr + 4, 1, out, sizeof(out), &consumed, &produced),
                         PL_RX_ERROR);
        assert_int_equal(consumed, 1);
    }
}

static void test_rx_bad_type(void **state)
{
    (void)state;
    expect_bad_header(0x00, 10, "type 0x00");
    expect_bad_header(0x03, 10, "type 0x03");
    expect_bad_header(0xFF, 10, "type 0xff");
    expect_bad_header(0xF5, 0x01485350, "type 0xf5"); /* a second HELLO */
    for (unsigned t = 0; t < 256; t++)
        if (t != PL_REC_DATA && t != PL_REC_TOKEN)
            expect_bad_header((uint8_t)t, 42, "unknown record type");
}

static void test_rx_bad_data_length(void **state)
{
    (void)state;
    expect_bad_header(PL_REC_DATA, 0, "DATA record of length 0");
    expect_bad_header(PL_REC_DATA, 0x80000000u, "DATA record of length 2147483648");
    expect_bad_header(PL_REC_DATA, 0xFFFFFFFFu, "DATA record of length 4294967295");
}

static void test_rx_bad_token_length(void **state)
{
    (void)state;
    expect_bad_header(PL_REC_TOKEN, 0, "TOKEN record of length 0");
    expect_bad_header(PL_REC_TOKEN, 41, "TOKEN record of length 41");
    expect_bad_header(PL_REC_TOKEN, 170, "TOKEN record of length 170");
    expect_bad_header(PL_REC_TOKEN, 1000, "TOKEN record of length 1000");
    expect_bad_header(PL_REC_TOKEN, 0xFFFFFFFFu, "TOKEN record of length 4294967295");
}

static void test_rx_length_limits_accepted(void **state)
{
    (void)state;
    uint8_t in[PL_REC_HDR + 10];
    uint8_t out[32];
    size_t consumed, produced;
    pl_rx rx;

    /* the largest DATA record */
    pl_rx_init(&rx);
    make_hdr(in, PL_REC_DATA, PL_DATA_MAX);
    memset(in + PL_REC_HDR, 'd', 10);
    assert_int_equal(pl_rx_decode(&rx, in, sizeof(in), out, sizeof(out), &consumed, &produced),
                     PL_RX_MORE);
    assert_int_equal(consumed, sizeof(in));
    assert_int_equal(produced, 10);
    assert_memory_equal(out, "dddddddddd", 10);
    assert_false(pl_rx_eof_clean(&rx));
    assert_int_equal(rx.left, PL_DATA_MAX - 10);

    /* both token limits: the header is accepted */
    uint32_t lens[] = {PSI_TOKEN_MIN_BODY, PSI_TOKEN_MAX_BODY};
    for (size_t i = 0; i < 2; i++) {
        pl_rx_init(&rx);
        make_hdr(in, PL_REC_TOKEN, lens[i]);
        assert_int_equal(pl_rx_decode(&rx, in, PL_REC_HDR, out, sizeof(out), &consumed, &produced),
                         PL_RX_MORE);
        assert_int_equal(consumed, PL_REC_HDR);
        assert_false(pl_rx_eof_clean(&rx));
    }
}

static void test_rx_error_after_good_records(void **state)
{
    (void)state;
    /* DATA "abc", TOKEN, then a bad header, then more bytes */
    uint8_t in[PL_REC_HDR + 3 + PL_REC_HDR + 42 + PL_REC_HDR + 4];
    size_t p = 0;
    make_hdr(in + p, PL_REC_DATA, 3);
    memcpy(in + p + PL_REC_HDR, "abc", 3);
    p += PL_REC_HDR + 3;
    make_hdr(in + p, PL_REC_TOKEN, 42);
    fill_token_body(in + p + PL_REC_HDR, 42, 9);
    p += PL_REC_HDR + 42;
    size_t bad = p;
    make_hdr(in + p, 0x07, 4);
    memcpy(in + p + PL_REC_HDR, "wxyz", 4);

    pl_rx rx;
    pl_rx_init(&rx);
    uint8_t out[64];
    size_t consumed, produced;
    assert_int_equal(pl_rx_decode(&rx, in, sizeof(in), out, sizeof(out), &consumed, &produced),
                     PL_RX_TOKEN_READY);
    assert_int_equal(consumed, bad);
    assert_int_equal(produced, 3);
    assert_memory_equal(out, "abc", 3);
    pl_rx_token_taken(&rx);
    assert_int_equal(pl_rx_decode(&rx, in + bad, sizeof(in) - bad, out, sizeof(out), &consumed,
                                  &produced),
                     PL_RX_ERROR);
    assert_int_equal(consumed, PL_REC_HDR);
    assert_int_equal(produced, 0);
    assert_non_null(strstr(rx.err, "0x07"));
}

static void test_rx_error_is_sticky(void **state)
{
    (void)state;
    /* After an error the stream is dead (pl_proto.h): more bytes, even a
     * well-formed record, must not be decoded, and EOF is not clean. */
    uint8_t bad[PL_REC_HDR];
    make_hdr(bad, PL_REC_DATA, 0);
    uint8_t good[PL_REC_HDR + 2];
    make_hdr(good, PL_REC_DATA, 2);
    good[5] = 'o';
    good[6] = 'k';
    pl_rx rx;
    pl_rx_init(&rx);
    uint8_t out[16];
    size_t consumed, produced;
    assert_int_equal(pl_rx_decode(&rx, bad, sizeof(bad), out, sizeof(out), &consumed, &produced),
                     PL_RX_ERROR);
    char first[sizeof(rx.err)];
    memcpy(first, rx.err, sizeof(first));
    assert_false(pl_rx_eof_clean(&rx));
    for (int again = 0; again < 3; again++) {
        consumed = produced = 99;
        assert_int_equal(pl_rx_decode(&rx, good, sizeof(good), out, sizeof(out), &consumed,
                                      &produced),
                         PL_RX_ERROR);
        assert_int_equal(consumed, 0);
        assert_int_equal(produced, 0);
        assert_string_equal(rx.err, first);
        assert_false(pl_rx_eof_clean(&rx));
    }
    /* pl_rx_init starts over */
    pl_rx_init(&rx);
    assert_true(pl_rx_eof_clean(&rx));
    assert_int_equal(rx.err[0], '\0');
    assert_int_equal(pl_rx_decode(&rx, good, sizeof(good), out, sizeof(out), &consumed, &produced),
                     PL_RX_MORE);
    assert_int_equal(consumed, sizeof(good));
    assert_int_equal(produced, 2);
    assert_memory_equal(out, "ok", 2);
}

/* -------------------------------------------------------------- eof_clean */

static void test_rx_eof_clean_data(void **state)
{
    (void)state;
    uint8_t in[2 * (PL_REC_HDR + 4)];
    make_hdr(in, PL_REC_DATA, 4);
    memcpy(in + PL_REC_HDR, "wxyz", 4);
    memcpy(in + PL_REC_HDR + 4, in, PL_REC_HDR + 4);
    for (size_t upto = 0; upto <= sizeof(in); upto++) {
        pl_rx rx;
        pl_rx_init(&rx);
        uint8_t out[16];
        size_t consumed, produced;
        assert_true(pl_rx_eof_clean(&rx));
        if (upto) {
            assert_int_equal(
                pl_rx_decode(&rx, in, upto, out, sizeof(out), &consumed, &produced), PL_RX_MORE);
            assert_int_equal(consumed, upto);
        }
        size_t r = upto % (PL_REC_HDR + 4); /* offset inside a record */
        bool want = r < PL_REC_HDR;         /* start, or 1..4 header bytes */
        assert_int_equal(pl_rx_eof_clean(&rx), want);
    }
}

static void test_rx_eof_clean_token(void **state)
{
    (void)state;
    uint8_t in[PL_REC_HDR + 100 + PL_REC_HDR];
    make_hdr(in, PL_REC_TOKEN, 100);
    fill_token_body(in + PL_REC_HDR, 100, 3);
    make_hdr(in + PL_REC_HDR + 100, PL_REC_DATA, 9);
    for (size_t upto = 0; upto <= sizeof(in); upto++) {
        pl_rx rx;
        pl_rx_init(&rx);
        uint8_t out[16];
        size_t consumed = 0, produced;
        int ev = PL_RX_MORE;
        if (upto)
            ev = pl_rx_decode(&rx, in, upto, out, sizeof(out), &consumed, &produced);
        if (upto < PL_REC_HDR) {
            assert_int_equal(ev, PL_RX_MORE);
            assert_true(pl_rx_eof_clean(&rx));
        } else if (upto < PL_REC_HDR + 100) {
            assert_int_equal(ev, PL_RX_MORE);
            assert_false(pl_rx_eof_clean(&rx)); /* inside the token */
        } else {
            assert_int_equal(ev, PL_RX_TOKEN_READY);
            assert_int_equal(consumed, PL_REC_HDR + 100);
            assert_false(pl_rx_eof_clean(&rx)); /* not yet taken */
            pl_rx_token_taken(&rx);
            assert_true(pl_rx_eof_clean(&rx));
            size_t rest = upto - consumed;
            if (rest) {
                assert_int_equal(pl_rx_decode(&rx, in + consumed, rest, out, sizeof(out),
                                              &consumed, &produced),
                                 PL_RX_MORE);
                assert_int_equal(consumed, rest);
            }
            /* 0..4 bytes of the next header: clean; all 5: inside DATA */
            assert_int_equal(pl_rx_eof_clean(&rx), rest < PL_REC_HDR);
        }
    }
}

/* ------------------------------------------------------------ output room */

static void test_rx_out_cap_zero(void **state)
{
    (void)state;
    uint8_t in[PL_REC_HDR + 6];
    make_hdr(in, PL_REC_DATA, 6);
    memcpy(in + PL_REC_HDR, "abcdef", 6);
    pl_rx rx;
    pl_rx_init(&rx);
    size_t consumed = 99, produced = 99;
    uint8_t out[8];
    memset(out, 0xEE, sizeof(out));

    /* header bytes may go, payload bytes may not */
    assert_int_equal(pl_rx_decode(&rx, in, sizeof(in), out, 0, &consumed, &produced), PL_RX_MORE);
    assert_int_equal(consumed, PL_REC_HDR);
    assert_int_equal(produced, 0);
    assert_false(pl_rx_eof_clean(&rx));
    /* again, now at the payload: nothing at all */
    assert_int_equal(pl_rx_decode(&rx, in + PL_REC_HDR, 6, out, 0, &consumed, &produced),
                     PL_RX_MORE);
    assert_int_equal(consumed, 0);
    assert_int_equal(produced, 0);
    assert_int_equal(pl_rx_decode(&rx, in + PL_REC_HDR, 6, NULL, 0, &consumed, &produced),
                     PL_RX_MORE);
    assert_int_equal(consumed, 0);
    assert_int_equal(produced, 0);
    for (size_t i = 0; i < sizeof(out); i++)
        assert_int_equal(out[i], 0xEE);
    /* with room it continues where it stopped */
    assert_int_equal(pl_rx_decode(&rx, in + PL_REC_HDR, 6, out, 4, &consumed, &produced),
                     PL_RX_MORE);
    assert_int_equal(consumed, 4);
    assert_int_equal(produced, 4);
    assert_memory_equal(out, "abcd", 4);
    assert_int_equal(pl_rx_decode(&rx, in + PL_REC_HDR + 4, 2, out, 8, &consumed, &produced),
                     PL_RX_MORE);
    assert_int_equal(consumed, 2);
    assert_memory_equal(out, "ef", 2);
    assert_true(pl_rx_eof_clean(&rx));

    /* a partial header with no room: consumed, nothing produced */
    pl_rx_init(&rx);
    assert_int_equal(pl_rx_decode(&rx, in, 3, NULL, 0, &consumed, &produced), PL_RX_MORE);
    assert_int_equal(consumed, 3);
    assert_int_equal(produced, 0);
    assert_true(pl_rx_eof_clean(&rx));
}

static void test_rx_token_needs_no_room(void **state)
{
    (void)state;
    /* DATA "abc" fills out exactly; the TOKEN after it still completes,
     * and the DATA header after the token is taken, its payload is not. */
    uint8_t in[PL_REC_HDR + 3 + PL_REC_HDR + 50 + PL_REC_HDR + 2];
    size_t p = 0;
    make_hdr(in, PL_REC_DATA, 3);
    memcpy(in + PL_REC_HDR, "abc", 3);
    p = PL_REC_HDR + 3;
    make_hdr(in + p, PL_REC_TOKEN, 50);
    fill_token_body(in + p + PL_REC_HDR, 50, 5);
    const uint8_t *body = in + p + PL_REC_HDR;
    p += PL_REC_HDR + 50;
    make_hdr(in + p, PL_REC_DATA, 2);
    memcpy(in + p + PL_REC_HDR, "de", 2);

    pl_rx rx;
    pl_rx_init(&rx);
    uint8_t out[3];
    size_t consumed, produced;
    assert_int_equal(pl_rx_decode(&rx, in, sizeof(in), out, sizeof(out), &consumed, &produced),
                     PL_RX_TOKEN_READY);
    assert_int_equal(consumed, p);
    assert_int_equal(produced, 3);
    assert_memory_equal(out, "abc", 3);
    assert_int_equal(rx.tok_len, 50);
    assert_memory_equal(rx.tok, body, 50);

    /* calling again before taking it changes nothing */
    size_t c2, p2;
    assert_int_equal(pl_rx_decode(&rx, in + p, sizeof(in) - p, out, sizeof(out), &c2, &p2),
                     PL_RX_TOKEN_READY);
    assert_int_equal(c2, 0);
    assert_int_equal(p2, 0);
    assert_int_equal(rx.tok_len, 50);
    assert_memory_equal(rx.tok, body, 50);

    pl_rx_token_taken(&rx);
    assert_int_equal(rx.tok_len, 0);
    assert_true(pl_rx_eof_clean(&rx));
    /* with no room: the header goes, the payload stays */
    assert_int_equal(pl_rx_decode(&rx, in + p, sizeof(in) - p, out, 0, &c2, &p2), PL_RX_MORE);
    assert_int_equal(c2, PL_REC_HDR);
    assert_int_equal(p2, 0);
    assert_int_equal(pl_rx_decode(&rx, in + p + PL_REC_HDR, 2, out, 1, &c2, &p2), PL_RX_MORE);
    assert_int_equal(c2, 1);
    assert_int_equal(p2, 1);
    assert_int_equal(out[0], 'd');
    assert_int_equal(pl_rx_decode(&rx, in + p + PL_REC_HDR + 1, 1, out, 1, &c2, &p2), PL_RX_MORE);
    assert_int_equal(out[0], 'e');
    assert_true(pl_rx_eof_clean(&rx));
}

static void test_rx_empty_input(void **state)
{
    (void)state;
    pl_rx rx;
    pl_rx_init(&rx);
    uint8_t out[4];
    size_t consumed = 9, produced = 9;
    assert_int_equal(pl_rx_decode(&rx, NULL, 0, out, sizeof(out), &consumed, &produced),
                     PL_RX_MORE);
    assert_int_equal(consumed, 0);
    assert_int_equal(produced, 0);
    assert_true(pl_rx_eof_clean(&rx));
}

static void test_rx_init_clears(void **state)
{
    (void)state;
    pl_rx rx;
    memset(&rx, 0xAB, sizeof(rx));
    pl_rx_init(&rx);
    assert_int_equal(rx.phase, PL_RX_HDR);
    assert_int_equal(rx.hdr_len, 0);
    assert_int_equal(rx.left, 0);
    assert_int_equal(rx.tok_len, 0);
    assert_int_equal(rx.err[0], '\0');
    assert_true(pl_rx_eof_clean(&rx));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hello_constants),
        cmocka_unit_test(test_hello_layout),
        cmocka_unit_test(test_hello_exact_bytes),
        cmocka_unit_test(test_detect_prefixes),
        cmocka_unit_test(test_detect_empty_null),
        cmocka_unit_test(test_detect_magic_mismatch),
        cmocka_unit_test(test_detect_bad_version),
        cmocka_unit_test(test_detect_ignores_flags_reserved_nonce),
        cmocka_unit_test(test_detect_answer_is_plain),
        cmocka_unit_test(test_detect_plain_protocols),
        cmocka_unit_test(test_find_match_positions),
        cmocka_unit_test(test_find_no_match),
        cmocka_unit_test(test_find_partial_every_length),
        cmocka_unit_test(test_find_partial_longest_suffix),
        cmocka_unit_test(test_find_short_patterns),
        cmocka_unit_test(test_find_exhaustive_small_alphabet),
        cmocka_unit_test(test_find_random),
        cmocka_unit_test(test_rx_whole_stream),
        cmocka_unit_test(test_rx_every_split_big),
        cmocka_unit_test(test_rx_every_split_big_in_place),
        cmocka_unit_test(test_rx_every_split_small_caps),
        cmocka_unit_test(test_rx_byte_by_byte),
        cmocka_unit_test(test_rx_random_chunks),
        cmocka_unit_test(test_rx_bad_type),
        cmocka_unit_test(test_rx_bad_data_length),
        cmocka_unit_test(test_rx_bad_token_length),
        cmocka_unit_test(test_rx_length_limits_accepted),
        cmocka_unit_test(test_rx_error_after_good_records),
        cmocka_unit_test(test_rx_error_is_sticky),
        cmocka_unit_test(test_rx_eof_clean_data),
        cmocka_unit_test(test_rx_eof_clean_token),
        cmocka_unit_test(test_rx_out_cap_zero),
        cmocka_unit_test(test_rx_token_needs_no_room),
        cmocka_unit_test(test_rx_empty_input),
        cmocka_unit_test(test_rx_init_clears),
    };
    /* PL_TEST_FILTER=test_find_* runs a subset (cmocka glob). */
    const char *filter = getenv("PL_TEST_FILTER");
    if (filter && *filter)
        cmocka_set_test_filter(filter);
    return cmocka_run_group_tests(tests, NULL, scratch_free);
}
