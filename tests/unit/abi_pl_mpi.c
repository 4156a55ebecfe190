/* Unit tests for what differs between the MPI ABIs (preload/pl_mpi_abi.h):
 * our message handles, the status byte count, communicator keys and the
 * request hash. Built once per ABI the library is built for (Makefile:
 * test_pl_mpi_abi_mpich, test_pl_mpi_abi_ompi), against that mpi.h. No
 * MPI runs here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pl_mpi_abi.h"

#ifdef PL_MPI_ABI_OMPI
/* pl_mpi.c defines these in the library. */
pl_ompi_objs pl_ompi_obj;
char pl_ompi_fake_msgs[PL_OMPI_FAKE_SPAN];
/* The last handle number before the numbers wrap. */
#define LAST_NUMBER (PL_OMPI_FAKE_SPAN - 1u)
#else
#define LAST_NUMBER (~PL_MPI_FAKE_MASK)
#endif

/* Every handle we hand out is recognised as ours, with its number. */
static void test_fake_round_trip(void **state)
{
    (void)state;
    uint32_t h = PL_MPI_FAKE_BASE | (LAST_NUMBER - 3u);
    for (int i = 0; i < 10; i++) {
        h = pl_mpi_fake_next(h);
        uint32_t back = 0;
        MPI_Message m = pl_mpi_fake_msg(h);
        assert_true(pl_mpi_is_fake_msg(m, &back));
        assert_int_equal(back, h);
        assert_true(pl_mpi_fake_handle(h));
    }
}

/* Numbers wrap to 0 after the last one the ABI can express. */
static void test_fake_wraps(void **state)
{
    (void)state;
    uint32_t last = PL_MPI_FAKE_BASE | LAST_NUMBER;
    assert_int_equal(pl_mpi_fake_next(last), PL_MPI_FAKE_BASE);
    assert_int_equal(pl_mpi_fake_next(PL_MPI_FAKE_BASE), PL_MPI_FAKE_BASE | 1u);
    /* distinct handles for distinct numbers */
    assert_true(pl_mpi_fake_msg(last) != pl_mpi_fake_msg(PL_MPI_FAKE_BASE));
}

/* Handles the MPI library issues are never taken for ours. */
static void test_real_handles_are_not_ours(void **state)
{
    (void)state;
    uint32_t back;
#ifdef PL_MPI_ABI_OMPI
    /* Open MPI's handles are addresses of its own objects: anything
     * outside our block, including its edges. */
    static char other[64];
    void *heap = malloc(64);
    assert_false(pl_mpi_is_fake_msg((MPI_Message)(void *)other, &back));
    assert_false(pl_mpi_is_fake_msg((MPI_Message)heap, &back));
    assert_false(pl_mpi_is_fake_msg((MPI_Message)(void *)(pl_ompi_fake_msgs - 1), &back));
    assert_false(pl_mpi_is_fake_msg(
        (MPI_Message)(void *)(pl_ompi_fake_msgs + PL_OMPI_FAKE_SPAN), &back));
    assert_false(pl_mpi_is_fake_msg((MPI_Message)NULL, &back));
    assert_true(pl_mpi_is_fake_msg((MPI_Message)(void *)pl_ompi_fake_msgs, &back));
    free(heap);
#else
    /* MPICH's: MPI_MESSAGE_NULL, MPI_MESSAGE_NO_PROC, a communicator, a
     * heap-allocated message handle (kind 2, object 0xE: 0xAE000000 | i). */
    static const int real[] = {MPI_MESSAGE_NULL, MPI_MESSAGE_NO_PROC, MPI_COMM_WORLD,
                               (int)0xAE000001u, (int)0xAE00FFFFu, 0};
    for (size_t i = 0; i < sizeof real / sizeof real[0]; i++)
        assert_false(pl_mpi_is_fake_msg((MPI_Message)real[i], &back));
#endif
}

/* The byte count a status reports, read from the ABI's own fields. */
static void test_status_bytes(void **state)
{
    (void)state;
    MPI_Status st;
    memset(&st, 0, sizeof st);
    uint64_t big = (5ull << 30) + 12345u; /* past 32 bits */
#ifdef PL_MPI_ABI_OMPI
    st._ucount = (size_t)big;
    st._cancelled = 1;
#else
    st.count_lo = (int)(uint32_t)big;
    st.count_hi_and_cancelled = (int)((uint32_t)(big >> 32) << 1 | 1u); /* cancelled bit set */
#endif
    assert_int_equal(pl_mpi_status_bytes(&st), big);
    memset(&st, 0, sizeof st);
    assert_int_equal(pl_mpi_status_bytes(&st), 0);
}

/* A communicator survives the stash's key and back, all bits intact. */
static void test_comm_key(void **state)
{
    (void)state;
#ifdef PL_MPI_ABI_OMPI
    static char objs[3][16];
    MPI_Comm cs[] = {(MPI_Comm)(void *)objs[0], (MPI_Comm)(void *)objs[2],
                     (MPI_Comm)(uintptr_t)0x7f00deadbeef0010ull};
#else
    MPI_Comm cs[] = {MPI_COMM_WORLD, MPI_COMM_SELF, (MPI_Comm)0x84000002u};
#endif
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        assert_true(pl_mpi_comm_of_key(pl_mpi_comm_key(cs[i])) == cs[i]);
        for (size_t j = 0; j < i; j++)
            assert_true(pl_mpi_comm_key(cs[i]) != pl_mpi_comm_key(cs[j]));
    }
}

/* The request table's buckets (top 8 bits of the hash) spread requests
 * the way the library allocates them: consecutive ints for MPICH,
 * objects a fixed stride apart for Open MPI. */
static void test_req_hash_spreads(void **state)
{
    (void)state;
    unsigned char seen[256] = {0};
    int distinct = 0;
    for (uintptr_t i = 0; i < 256; i++) {
#ifdef PL_MPI_ABI_OMPI
        MPI_Request r = (MPI_Request)(uintptr_t)(0x55550000a000ull + i * 256u);
#else
        MPI_Request r = (MPI_Request)(0xAC000000u | (uint32_t)i);
#endif
        unsigned b = pl_mpi_req_hash(r) >> 24;
        distinct += !seen[b];
        seen[b] = 1;
    }
    assert_true(distinct >= 128);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fake_round_trip),
        cmocka_unit_test(test_fake_wraps),
        cmocka_unit_test(test_real_handles_are_not_ours),
        cmocka_unit_test(test_status_bytes),
        cmocka_unit_test(test_comm_key),
        cmocka_unit_test(test_req_hash_spreads),
    };
    return cmocka_run_group_tests_name(PL_MPI_ABI_NAME " ABI", tests, NULL, NULL);
}
