/* Unit tests for the MPI token message and the probe stash
 * (preload/pl_mpi_msg.h, docs/mpi.md). No MPI runs here. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include <cmocka.h>

#include "pl_mpi_msg.h"

#define KEY "0123456789abcdef0123456789abcdef.1700003600.4242.7"

static pl_mpi_msg sample(void)
{
    pl_mpi_msg m = {.kind = PL_MPI_TOKEN, .bytes = 64u << 20};
    m.tok.connector = PSI_CONN_FILE;
    m.tok.lifetime = PSI_LIFE_REFCOUNT;
    m.tok.size = m.bytes;
    m.tok.sum.lo = 0x1122334455667788ull;
    m.tok.sum.hi = 0x99aabbccddeeff00ull;
    m.tok.ttl = 3600;
    m.tok.key_len = (uint8_t)strlen(KEY);
    memcpy(m.tok.key, KEY, m.tok.key_len + 1u);
    return m;
}

static void encode_ok(const pl_mpi_msg *m, uint8_t out[PL_MPI_MSG_LEN])
{
    psi_err err = {0};
    assert_int_equal(pl_mpi_msg_encode(m, out, &err), 0);
}

static void reseal(uint8_t *b)
{
    uint64_t h = XXH3_64bits(b, PL_MPI_SUM_OFF);
    for (int i = 0; i < 8; i++)
        b[PL_MPI_SUM_OFF + i] = (uint8_t)(h >> (8 * i));
}

static void expect_error(const uint8_t *b, const char *what)
{
    pl_mpi_msg m;
    psi_err err = {0};
    assert_int_equal(pl_mpi_msg_decode(b, &m, &err), -1);
    assert_int_equal(err.code, EIO);
    if (!strstr(err.msg, what))
        fail_msg("message '%s' does not mention '%s'", err.msg, what);
}

static void test_round_trip(void **state)
{
    pl_mpi_msg m = sample(), out;
    uint8_t b[PL_MPI_MSG_LEN];
    psi_err err = {0};
    encode_ok(&m, b);
    assert_true(pl_mpi_msg_is(b, PL_MPI_MSG_LEN));
    assert_int_equal(pl_mpi_msg_decode(b, &out, &err), 0);
    assert_int_equal(out.kind, PL_MPI_TOKEN);
    assert_true(out.bytes == m.bytes);
    assert_true(out.tok.size == m.bytes);
    assert_true(out.tok.sum.lo == m.tok.sum.lo && out.tok.sum.hi == m.tok.sum.hi);
    assert_string_equal(out.tok.key, KEY);
}

/* docs/mpi.md: magic, version 1, kind, body length at 18, bytes at 24 LE,
 * body at 32, zero padding, checksum in the last 8 bytes. */
static void test_layout(void **state)
{
    pl_mpi_msg m = sample();
    uint8_t b[PL_MPI_MSG_LEN];
    encode_ok(&m, b);
    assert_memory_equal(b, pl_mpi_magic, PL_MPI_MAGIC_LEN);
    assert_int_equal(b[0], 0xA7);
    assert_int_equal(b[16], 1);
    assert_int_equal(b[17], PL_MPI_TOKEN);
    size_t blen = (size_t)b[18] | (size_t)b[19] << 8;
    assert_int_equal(blen, psi_token_body_len(&m.tok));
    assert_int_equal(b[24 + 3], 4); /* 64 MiB = 0x04000000 */
    for (size_t i = 32 + blen; i < PL_MPI_SUM_OFF; i++)
        assert_int_equal(b[i], 0);
    uint64_t h = XXH3_64bits(b, PL_MPI_SUM_OFF), got = 0;
    for (int i = 0; i < 8; i++)
        got |= (uint64_t)b[PL_MPI_SUM_OFF + i] << (8 * i);
    assert_true(h == got);
}

static void test_inline(void **state)
{
    pl_mpi_msg m = {.kind = PL_MPI_INLINE, .bytes = 12345}, out;
    uint8_t b[PL_MPI_MSG_LEN];
    psi_err err = {0};
    encode_ok(&m, b);
    assert_int_equal(pl_mpi_msg_decode(b, &out, &err), 0);
    assert_int_equal(out.kind, PL_MPI_INLINE);
    assert_true(out.bytes == 12345);
}

/* Any single flipped bit is caught (magic or checksum). */
static void test_flip_every_bit(void **state)
{
    pl_mpi_msg m = sample(), out;
    uint8_t b[PL_MPI_MSG_LEN];
    encode_ok(&m, b);
    for (size_t i = 0; i < PL_MPI_MSG_LEN; i++)
        for (int bit = 0; bit < 8; bit++) {
            psi_err err = {0};
            b[i] ^= (uint8_t)(1u << bit);
            assert_int_equal(pl_mpi_msg_decode(b, &out, &err), -1);
            b[i] ^= (uint8_t)(1u << bit);
        }
}

static void test_each_field_wrong(void **state)
{
    pl_mpi_msg m = sample();
    uint8_t b[PL_MPI_MSG_LEN], good[PL_MPI_MSG_LEN];
    encode_ok(&m, good);

    memcpy(b, good, sizeof b);
    b[5] = 'x';
    expect_error(b, "magic");
    memcpy(b, good, sizeof b);
    b[100] ^= 1;
    expect_error(b, "checksum");
    memcpy(b, good, sizeof b);
    b[16] = 2;
    reseal(b);
    expect_error(b, "version");
    memcpy(b, good, sizeof b);
    b[17] = 9;
    reseal(b);
    expect_error(b, "kind");
    memcpy(b, good, sizeof b);
    b[18] = 0xff;
    b[19] = 0xff;
    reseal(b);
    expect_error(b, "body length");
    memcpy(b, good, sizeof b);
    b[24] ^= 1; /* payload size no longer the token's */
    reseal(b);
    expect_error(b, "token names");
    memcpy(b, good, sizeof b);
    b[17] = PL_MPI_INLINE; /* inline kind with a body */
    reseal(b);
    expect_error(b, "inline");
}

static void test_is(void **state)
{
    pl_mpi_msg m = sample();
    uint8_t b[PL_MPI_MSG_LEN];
    encode_ok(&m, b);
    assert_false(pl_mpi_msg_is(b, PL_MPI_MSG_LEN - 1));
    assert_false(pl_mpi_msg_is(b, PL_MPI_MSG_LEN + 1));
    memset(b, 0, sizeof b);
    assert_false(pl_mpi_msg_is(b, PL_MPI_MSG_LEN));
}

static void test_encode_rejects(void **state)
{
    pl_mpi_msg m = sample();
    uint8_t b[PL_MPI_MSG_LEN];
    psi_err err = {0};
    m.kind = 7;
    assert_int_equal(pl_mpi_msg_encode(&m, b, &err), -1);
    m = sample();
    m.tok.key_len = 0;
    m.tok.key[0] = 0;
    assert_int_equal(pl_mpi_msg_encode(&m, b, &err), -1);
}

/* ---- stash ---------------------------------------------------------------- */

static pl_mpi_ent *ent(uint64_t comm, int source, int tag)
{
    pl_mpi_ent *e = calloc(1, sizeof *e);
    assert_non_null(e);
    e->comm = comm;
    e->source = source;
    e->tag = tag;
    return e;
}

static pl_mpi_pat pat(uint64_t comm, int source, int tag, bool any_source, bool any_tag)
{
    return (pl_mpi_pat){comm, source, tag, any_source, any_tag};
}

/* Takes the entry the pattern matches and checks it is (source, tag). */
static void take_is(pl_mpi_stash *q, pl_mpi_pat p, int source, int tag)
{
    pl_mpi_ent *e = pl_mpi_stash_take(q, &p);
    assert_non_null(e);
    assert_int_equal(e->source, source);
    assert_int_equal(e->tag, tag);
    free(e);
}

/* Arrival order is kept per pattern: ANY_SOURCE takes the oldest; a
 * specific source skips others without disturbing them. */
static void test_stash_order(void **state)
{
    pl_mpi_stash q = {0};
    pl_mpi_stash_push(&q, ent(1, 2, 10));
    pl_mpi_stash_push(&q, ent(1, 3, 10));
    pl_mpi_stash_push(&q, ent(1, 2, 11));
    pl_mpi_stash_push(&q, ent(1, 2, 10));
    assert_int_equal(q.n, 4);

    take_is(&q, pat(1, 2, 0, false, true), 2, 10);  /* source 2, ANY_TAG: oldest */
    take_is(&q, pat(1, 0, 11, true, false), 2, 11); /* ANY_SOURCE, tag 11 */
    take_is(&q, pat(1, 0, 0, true, true), 3, 10);   /* ANY/ANY: oldest left */
    take_is(&q, pat(1, 2, 10, false, false), 2, 10);
    assert_int_equal(q.n, 0);
    assert_null(q.head);
    assert_null(q.tail);
}

static void test_stash_comm_and_miss(void **state)
{
    pl_mpi_stash q = {0};
    pl_mpi_stash_push(&q, ent(5, 0, 1));
    pl_mpi_pat p = pat(6, 0, 1, true, true);
    assert_null(pl_mpi_stash_take(&q, &p)); /* another communicator */
    p = pat(5, 1, 1, false, false);
    assert_null(pl_mpi_stash_take(&q, &p)); /* another source */
    p = pat(5, 0, 2, false, false);
    assert_null(pl_mpi_stash_take(&q, &p)); /* another tag */
    assert_int_equal(q.n, 1);
    take_is(&q, pat(5, 0, 1, false, false), 0, 1);
}

/* Peek leaves the entry; take of the last entry fixes the tail so a later
 * push still appends. */
static void test_stash_peek_and_tail(void **state)
{
    pl_mpi_stash q = {0};
    pl_mpi_stash_push(&q, ent(1, 0, 1));
    pl_mpi_stash_push(&q, ent(1, 0, 2));
    pl_mpi_pat p = pat(1, 0, 2, false, false);
    pl_mpi_ent *e = pl_mpi_stash_peek(&q, &p);
    assert_non_null(e);
    assert_int_equal(e->tag, 2);
    assert_int_equal(q.n, 2);
    take_is(&q, p, 0, 2);
    pl_mpi_stash_push(&q, ent(1, 0, 3));
    take_is(&q, pat(1, 0, 0, false, true), 0, 1);
    take_is(&q, pat(1, 0, 0, false, true), 0, 3);
    assert_null(q.head);
    assert_null(q.tail);
}

/* A matched message is found by its handle wherever it sits; the queue
 * stays whole (head, tail, count, next) around the one taken out. */
static void test_stash_take_handle(void **state)
{
    pl_mpi_stash q = {0};
    for (uint32_t h = 1; h <= 4; h++) {
        pl_mpi_ent *e = ent(1, 0, (int)h);
        e->handle = PL_MPI_FAKE_BASE | h;
        pl_mpi_stash_push(&q, e);
    }
    assert_null(pl_mpi_stash_take_handle(&q, PL_MPI_FAKE_BASE | 9)); /* missing */
    assert_int_equal(q.n, 4);

    uint32_t order[] = {2, 1, 4, 3}; /* middle, first, last, the only one */
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        pl_mpi_ent *e = pl_mpi_stash_take_handle(&q, PL_MPI_FAKE_BASE | order[i]);
        assert_non_null(e);
        assert_int_equal(e->tag, (int)order[i]);
        assert_null(e->next);
        assert_int_equal(q.n, 3 - i);
        free(e);
        assert_null(pl_mpi_stash_take_handle(&q, PL_MPI_FAKE_BASE | order[i]));
    }
    assert_null(q.head);
    assert_null(q.tail);

    /* After taking the last, a push still appends. */
    pl_mpi_ent *a = ent(1, 0, 5), *b = ent(1, 0, 6);
    a->handle = PL_MPI_FAKE_BASE | 5;
    b->handle = PL_MPI_FAKE_BASE | 6;
    pl_mpi_stash_push(&q, a);
    pl_mpi_stash_push(&q, b);
    free(pl_mpi_stash_take_handle(&q, PL_MPI_FAKE_BASE | 6));
    assert_ptr_equal(q.tail, a);
    pl_mpi_stash_push(&q, ent(1, 0, 7));
    take_is(&q, pat(1, 0, 0, false, true), 0, 5);
    take_is(&q, pat(1, 0, 0, false, true), 0, 7);
    assert_int_equal(q.n, 0);
}

static void test_ent_bytes(void **state)
{
    pl_mpi_ent e = {0};
    assert_true(pl_mpi_ent_bytes(&e) == PL_MPI_MSG_LEN);
    e.is_token = true;
    e.msg.bytes = 1u << 30;
    assert_true(pl_mpi_ent_bytes(&e) == 1u << 30);

    /* A whole message of another size a racing probe took in. */
    pl_mpi_ent *b = calloc(1, sizeof *b);
    assert_non_null(b);
    b->big = malloc(1000);
    b->big_len = 1000;
    assert_true(pl_mpi_ent_bytes(b) == 1000);
    pl_mpi_ent_free(b); /* frees both (ASan checks) */
    pl_mpi_ent_free(NULL);
}

/* Our matched-message handles never collide with MPICH's (docs/mpi.md). */
static void test_fake_handles(void **state)
{
    assert_true(pl_mpi_fake_handle(PL_MPI_FAKE_BASE | 1));
    assert_true(pl_mpi_fake_handle(PL_MPI_FAKE_BASE | 0xffffff));
    assert_false(pl_mpi_fake_handle(0xac000000u)); /* an MPICH message handle */
    assert_false(pl_mpi_fake_handle(0x2c000000u)); /* MPI_MESSAGE_NULL */
    assert_false(pl_mpi_fake_handle(0x6c000000u)); /* MPI_MESSAGE_NO_PROC */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_inline),
        cmocka_unit_test(test_flip_every_bit),
        cmocka_unit_test(test_each_field_wrong),
        cmocka_unit_test(test_is),
        cmocka_unit_test(test_encode_rejects),
        cmocka_unit_test(test_stash_order),
        cmocka_unit_test(test_stash_comm_and_miss),
        cmocka_unit_test(test_stash_peek_and_tail),
        cmocka_unit_test(test_stash_take_handle),
        cmocka_unit_test(test_ent_bytes),
        cmocka_unit_test(test_fake_handles),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
