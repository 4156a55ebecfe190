/* The fd table: attach, dup, close, stale numbers, refcounts, range. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "pl_state.h"

static int finalized;
static pl_state *last_finalized;

static void count_finalize(pl_state *st)
{
    finalized++;
    last_finalized = st;
}

static int setup(void **unused)
{
    /* The library's constructor may have adopted fds 0 and 1 (pipes). */
    pl_state_finalize = NULL;
    pl_fd_detach(0);
    pl_fd_detach(1);
    finalized = 0;
    last_finalized = NULL;
    pl_state_finalize = count_finalize;
    return 0;
}

static void untracked_fd_is_null(void **unused)
{
    assert_null(pl_fd_get(0));
    assert_null(pl_fd_get(4095));
    assert_null(pl_fd_get(-1));
    assert_null(pl_fd_get(PL_FD_CHUNK * PL_FD_CHUNKS));
    assert_null(pl_fd_get(0x7fffffff));
}

static void attach_then_close(void **unused)
{
    pl_state *st = pl_state_new(PL_KIND_STREAM);
    assert_non_null(st);
    assert_int_equal(pl_fd_attach(7, st), 0);
    assert_ptr_equal(pl_fd_get(7), st);
    assert_int_equal(pl_fdtab_count(), 1);
    pl_fd_detach(7);
    assert_null(pl_fd_get(7));
    assert_int_equal(finalized, 1);
    assert_ptr_equal(last_finalized, st);
    assert_int_equal(pl_fdtab_count(), 0);
}

static void dup_shares_state_until_last_close(void **unused)
{
    pl_state *st = pl_state_new(PL_KIND_STREAM);
    pl_fd_attach(10, st);
    pl_fd_dup(10, 11);
    pl_fd_dup(10, 5000); /* another chunk of the table */
    assert_ptr_equal(pl_fd_get(11), st);
    assert_ptr_equal(pl_fd_get(5000), st);
    pl_fd_detach(10);
    assert_int_equal(finalized, 0);
    assert_ptr_equal(pl_fd_get(11), st);
    pl_fd_detach(5000);
    assert_int_equal(finalized, 0);
    pl_fd_detach(11);
    assert_int_equal(finalized, 1);
}

static void dup2_over_tracked_fd_drops_old_state(void **unused)
{
    pl_state *a = pl_state_new(PL_KIND_STREAM);
    pl_state *b = pl_state_new(PL_KIND_PIPE);
    pl_fd_attach(20, a);
    pl_fd_attach(21, b);
    pl_fd_dup(20, 21); /* dup2(20, 21): 21's old description is closed */
    assert_int_equal(finalized, 1);
    assert_ptr_equal(last_finalized, b);
    assert_ptr_equal(pl_fd_get(21), a);
    pl_fd_detach(20);
    pl_fd_detach(21);
    assert_int_equal(finalized, 2);
}

static void dup_of_untracked_clears_target(void **unused)
{
    pl_state *a = pl_state_new(PL_KIND_STREAM);
    pl_fd_attach(30, a);
    pl_fd_dup(31, 30); /* dup2(untracked 31, 30) */
    assert_null(pl_fd_get(30));
    assert_int_equal(finalized, 1);
}

static void dup_onto_itself_keeps_state(void **unused)
{
    pl_state *a = pl_state_new(PL_KIND_STREAM);
    pl_fd_attach(40, a);
    pl_fd_dup(40, 40);
    assert_ptr_equal(pl_fd_get(40), a);
    assert_int_equal(finalized, 0);
    pl_fd_detach(40);
    assert_int_equal(finalized, 1);
}

static void stale_number_reattached(void **unused)
{
    pl_state *a = pl_state_new(PL_KIND_STREAM);
    pl_state *b = pl_state_new(PL_KIND_STREAM);
    pl_fd_attach(50, a);
    pl_fd_attach(50, b); /* the kernel reused 50 behind our back */
    assert_int_equal(finalized, 1);
    assert_ptr_equal(last_finalized, a);
    assert_ptr_equal(pl_fd_get(50), b);
    pl_fd_detach(50);
}

static void reference_outlives_close(void **unused)
{
    pl_state *a = pl_state_new(PL_KIND_STREAM);
    pl_fd_attach(60, a);
    pl_state *in_flight = pl_state_get(60); /* a call in progress */
    pl_fd_detach(60);
    assert_int_equal(finalized, 0);
    pl_state_put(in_flight);
    assert_int_equal(finalized, 1);
}

static void freed_states_are_reused(void **unused)
{
    pl_state *a = pl_state_new(PL_KIND_STREAM);
    pl_fd_attach(70, a);
    pl_fd_detach(70);
    pl_state *b = pl_state_new(PL_KIND_PIPE);
    assert_ptr_equal(a, b); /* type-stable memory, never returned to malloc */
    assert_int_equal(b->kind, PL_KIND_PIPE);
    assert_int_equal(atomic_load(&b->refs), 1);
    assert_int_equal(b->in_mode, PL_IN_PLAIN);
    pl_state_put(b);
}

static void out_of_range_attach_fails(void **unused)
{
    pl_state *a = pl_state_new(PL_KIND_STREAM);
    assert_int_equal(pl_fd_attach(PL_FD_CHUNK * PL_FD_CHUNKS, a), -1);
    assert_int_equal(finalized, 1); /* the reference was dropped, not leaked */
    pl_fd_detach(-5);                /* no-op */
    pl_fd_detach(PL_FD_CHUNK * PL_FD_CHUNKS + 3);
}

static void atfork_child_leaves_states(void **unused)
{
    pl_state *a = pl_state_new(PL_KIND_STREAM);
    pl_fd_attach(80, a);
    pthread_mutex_lock(&a->in_lock); /* as if another thread held it at fork */
    pl_fdtab_atfork_child();
    assert_int_equal(pthread_mutex_trylock(&a->in_lock), 0);
    pthread_mutex_unlock(&a->in_lock);
    assert_ptr_equal(pl_fd_get(80), a);
    pl_fd_detach(80);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(untracked_fd_is_null, setup),
        cmocka_unit_test_setup(attach_then_close, setup),
        cmocka_unit_test_setup(dup_shares_state_until_last_close, setup),
        cmocka_unit_test_setup(dup2_over_tracked_fd_drops_old_state, setup),
        cmocka_unit_test_setup(dup_of_untracked_clears_target, setup),
        cmocka_unit_test_setup(dup_onto_itself_keeps_state, setup),
        cmocka_unit_test_setup(stale_number_reattached, setup),
        cmocka_unit_test_setup(reference_outlives_close, setup),
        cmocka_unit_test_setup(freed_states_are_reused, setup),
        cmocka_unit_test_setup(out_of_range_attach_fails, setup),
        cmocka_unit_test_setup(atfork_child_leaves_states, setup),
    };
    return cmocka_run_group_tests_name("pl_fdtab", tests, NULL, NULL);
}
