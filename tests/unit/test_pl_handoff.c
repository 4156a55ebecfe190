/* The exec handoff: export a state (decoder mid-record, held and raw bytes,
 * a dup), import it as a new image would, and get the same state back on
 * the same objects; malformed handoffs are dropped; the new environment
 * carries exactly one PSI_HANDOFF. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "pl_engine.h"
#include "pl_handoff.h"
#include "pl_state.h"

static int setup(void **unused)
{
    pl_init();
    pl_g.ready = true;
    pl_g.passthrough = false;
    pl_g.dryrun = false;
    pl_state_finalize = pl_engine_finalize;
    return 0;
}

static void push_hold(pl_state *st, const char *text)
{
    pl_seg *s = calloc(1, sizeof(*s));
    size_t n = strlen(text);
    uint8_t *copy = malloc(n);
    memcpy(copy, text, n);
    s->data = copy;
    s->len = n;
    s->off = 2; /* the application took two bytes already */
    s->obj.data = copy;
    s->obj.len = n;
    s->obj.heap = copy;
    if (st->hold_tail)
        st->hold_tail->next = s;
    else
        st->hold = s;
    st->hold_tail = s;
}

static void round_trip_keeps_state_and_bytes(void **unused)
{
    int sv[2], other[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, other), 0);
    pl_state *st = pl_state_new(PL_KIND_STREAM);
    st->channel = 2;
    st->in_mode = PL_IN_FRAMED;
    atomic_store(&st->out_mode, PL_OUT_FRAMED);
    st->data_left = 77;
    st->rx.phase = PL_RX_DATA;
    st->rx.left = 1234;
    st->rx.hdr_len = 3;
    memcpy(st->rx.hdr, "\x01\x02\x03", 3);
    st->rx.tok_len = 5;
    memcpy(st->rx.tok, "token", 5);
    memset(st->nonce, 0xab, sizeof(st->nonce));
    push_hold(st, "xyheld bytes one");
    push_hold(st, "xyand two");
    st->raw = malloc(16);
    memcpy(st->raw, "RRraw-undecoded", 15);
    st->raw_off = 2;
    st->raw_len = 15;
    st->raw_cap = 16;
    assert_int_equal(pl_fd_attach(sv[0], st), 0);
    int dupfd = dup(sv[0]);
    pl_fd_dup(sv[0], dupfd);
    pl_state *cl = pl_state_new(PL_KIND_STREAM); /* FD_CLOEXEC: dies with exec */
    assert_int_equal(pl_fd_attach(other[0], cl), 0);

    int mfd = pl_handoff_export(false);
    assert_true(mfd >= 0);
    assert_int_equal(fcntl(mfd, F_GETFD) & FD_CLOEXEC, 0);

    /* The new image starts with an empty table. */
    pl_fd_detach(sv[0]);
    pl_fd_detach(dupfd);
    pl_fd_detach(other[0]);
    char var[32];
    snprintf(var, sizeof(var), "%d", mfd);
    setenv(PL_HANDOFF_ENV, var, 1);
    pl_handoff_import();
    assert_null(getenv(PL_HANDOFF_ENV));
    assert_int_equal(fcntl(mfd, F_GETFD), -1); /* consumed */

    pl_state *r = pl_fd_get(sv[0]);
    assert_non_null(r);
    assert_ptr_equal(pl_fd_get(dupfd), r);
    assert_null(pl_fd_get(other[0]));
    assert_null(pl_fd_get(sv[1]));
    assert_int_equal(r->kind, PL_KIND_STREAM);
    assert_int_equal(r->channel, 2);
    assert_int_equal(r->in_mode, PL_IN_FRAMED);
    assert_int_equal(atomic_load(&r->out_mode), PL_OUT_FRAMED);
    assert_int_equal(r->data_left, 77);
    assert_int_equal(r->rx.phase, PL_RX_DATA);
    assert_int_equal(r->rx.left, 1234);
    assert_int_equal(r->rx.hdr_len, 3);
    assert_memory_equal(r->rx.hdr, "\x01\x02\x03", 3);
    assert_int_equal(r->rx.tok_len, 5);
    assert_memory_equal(r->rx.tok, "token", 5);
    uint8_t nonce[PL_NONCE_LEN];
    memset(nonce, 0xab, sizeof(nonce));
    assert_memory_equal(r->nonce, nonce, sizeof(nonce));
    assert_non_null(r->hold);
    const char *held = "held bytes oneand two";
    assert_int_equal(r->hold->len - r->hold->off, strlen(held));
    assert_memory_equal(r->hold->data + r->hold->off, held, strlen(held));
    assert_int_equal(r->raw_len - r->raw_off, 13);
    assert_memory_equal(r->raw + r->raw_off, "raw-undecoded", 13);
    assert_int_equal(atomic_load(&r->ready), strlen(held) + 13);

    pl_fd_detach(sv[0]);
    pl_fd_detach(dupfd);
    close(dupfd);
    close(sv[0]);
    close(sv[1]);
    close(other[0]);
    close(other[1]);
}

static void nothing_tracked_means_no_handoff(void **unused)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    pl_state *st = pl_state_new(PL_KIND_STREAM);
    assert_int_equal(pl_fd_attach(sv[0], st), 0);
    assert_int_equal(pl_handoff_export(false), -1); /* only a CLOEXEC fd */
    int mfd = pl_handoff_export(true);               /* posix_spawn: every state */
    assert_true(mfd >= 0);
    close(mfd);
    pl_fd_detach(sv[0]);
    close(sv[0]);
    close(sv[1]);
}

static void import_hands(const char *content)
{
    int mfd = memfd_create("t", 0);
    assert_true(mfd >= 0);
    assert_int_equal(write(mfd, content, strlen(content)), (ssize_t)strlen(content));
    char var[32];
    snprintf(var, sizeof(var), "%d", mfd);
    setenv(PL_HANDOFF_ENV, var, 1);
    size_t before = pl_fdtab_count();
    pl_handoff_import();
    assert_null(getenv(PL_HANDOFF_ENV));
    assert_int_equal(pl_fdtab_count(), before);
    assert_int_equal(fcntl(mfd, F_GETFD), -1);
}

static void malformed_handoffs_are_dropped(void **unused)
{
    import_hands("PSIH 1\n");
    import_hands("PSIH 9\nS k=1\nE\n");
    import_hands("PSIH 1\nS k=1 c=1 d=0 i=0 a=2 om=4 dl=0 ep=0 im=3 ie=0 rp=0 rh=zz rl=0 tk=- "
                 "dt=- an=- sk=- nc=- pe=- re=- rpid=0 hl=0 rw=0\nE\n");
    import_hands("PSIH 1\nS k=1 c=1 d=0 i=0 a=2 om=4 dl=0 ep=0 im=3 ie=0 rp=0 rh=- rl=0 tk=- "
                 "dt=- an=- sk=- nc=- pe=- re=- rpid=0 hl=999999 rw=0\nE\n");
    setenv(PL_HANDOFF_ENV, "not-a-number", 1);
    pl_handoff_import();
    assert_null(getenv(PL_HANDOFF_ENV));
}

static void env_has_exactly_one_handoff(void **unused)
{
    char *envp[] = {"A=1", "PSI_HANDOFF=7", "PSI_HANDOFFX=2", "B=2", NULL};
    size_t n = pl_handoff_env_count(envp);
    assert_int_equal(n, 4);
    char *out[n + 2];
    char var[32];
    pl_handoff_env(envp, 12, out, var);
    assert_string_equal(out[0], "A=1");
    assert_string_equal(out[1], "PSI_HANDOFFX=2");
    assert_string_equal(out[2], "B=2");
    assert_string_equal(out[3], "PSI_HANDOFF=12");
    assert_null(out[4]);
    pl_handoff_env(NULL, 3, out, var);
    assert_string_equal(out[0], "PSI_HANDOFF=3");
    assert_null(out[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(round_trip_keeps_state_and_bytes, setup),
        cmocka_unit_test_setup(nothing_tracked_means_no_handoff, setup),
        cmocka_unit_test_setup(malformed_handoffs_are_dropped, setup),
        cmocka_unit_test(env_has_exactly_one_handoff),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
