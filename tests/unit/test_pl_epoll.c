/* The epoll overlay (pl_epoll.c, DESIGN §4) over real epoll sets and
 * socketpairs. The hooks are not linked here: epoll_create1/epoll_wait in
 * this file are libc's, and the overlay is driven through pl_epoll_*.
 * Held bytes are simulated by setting a tracked state's `ready` count and
 * reporting the growth the way pl_ready_update does. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "pl_engine.h"
#include "pl_epoll.h"
#include "pl_state.h"

/* A tracked socketpair end (fd) with its untracked peer. */
typedef struct tracked {
    int fd, peer;
    pl_state *st;
} tracked;

static void tracked_open(tracked *t)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    t->fd = sv[0];
    t->peer = sv[1];
    t->st = pl_state_new(PL_KIND_STREAM);
    assert_non_null(t->st);
    assert_int_equal(pl_fd_attach(t->fd, t->st), 0);
}

static void tracked_close(tracked *t)
{
    pl_fd_detach(t->fd);
    close(t->fd);
    close(t->peer);
}

/* What pl_ready_update does when held bytes change. */
static void hold(tracked *t, size_t n)
{
    size_t old = atomic_exchange(&t->st->ready, n);
    if (n > old)
        pl_epoll_on_ready(t->st);
}

static int ep_new(void)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    assert_true(ep >= 0);
    assert_int_equal(pl_epoll_created(ep), ep);
    return ep;
}

static void ep_close(int ep)
{
    pl_fd_detach(ep);
    close(ep);
}

static void ep_add(int ep, int op, int fd, uint32_t events, uint64_t data)
{
    struct epoll_event ev = {.events = events, .data.u64 = data};
    assert_int_equal(pl_epoll_ctl(ep, op, fd, &ev), 0);
}

/* A wait with timeout ms (-1: none); checks no event is ours. */
static int ep_wait(int ep, struct epoll_event *evs, int max, int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    int n = pl_epoll_wait(ep, evs, max, PL_EP_WAIT, ms < 0 ? NULL : &ts, NULL);
    for (int i = 0; i < n; i++)
        assert_true(evs[i].data.u64 != PL_EP_MAGIC);
    return n;
}

static void level_reports_held_bytes_with_app_data(void **unused)
{
    (void)unused;
    tracked t;
    tracked_open(&t);
    int ep = ep_new();
    ep_add(ep, EPOLL_CTL_ADD, t.fd, EPOLLIN, 42);
    struct epoll_event evs[4];
    assert_int_equal(ep_wait(ep, evs, 4, 0), 0);
    hold(&t, 100);
    for (int round = 0; round < 3; round++) { /* level: every time */
        assert_int_equal(ep_wait(ep, evs, 4, 0), 1);
        assert_int_equal(evs[0].data.u64, 42);
        assert_int_equal(evs[0].events, EPOLLIN);
    }
    /* poll/select see an epoll fd with held-ready members as readable. */
    assert_true(pl_has_ready(pl_fd_get(ep)));
    hold(&t, 0);
    assert_int_equal(ep_wait(ep, evs, 4, 0), 0);
    assert_false(pl_has_ready(pl_fd_get(ep)));
    ep_close(ep);
    tracked_close(&t);
}

static void merges_into_kernel_event(void **unused)
{
    (void)unused;
    tracked t;
    tracked_open(&t);
    int ep = ep_new();
    ep_add(ep, EPOLL_CTL_ADD, t.fd, EPOLLIN | EPOLLOUT, 7);
    hold(&t, 10);
    assert_int_equal(write(t.peer, "x", 1), 1);
    struct epoll_event evs[4];
    assert_int_equal(ep_wait(ep, evs, 4, 0), 1);
    assert_int_equal(evs[0].data.u64, 7);
    assert_int_equal(evs[0].events, EPOLLIN | EPOLLOUT);
    hold(&t, 0);
    ep_close(ep);
    tracked_close(&t);
}

static void edge_reports_each_growth_once(void **unused)
{
    (void)unused;
    tracked t;
    tracked_open(&t);
    int ep = ep_new();
    hold(&t, 50); /* bytes held before ADD count as an edge, as in the kernel */
    ep_add(ep, EPOLL_CTL_ADD, t.fd, EPOLLIN | EPOLLET, 9);
    struct epoll_event evs[4];
    assert_int_equal(ep_wait(ep, evs, 4, 0), 1);
    assert_int_equal(evs[0].data.u64, 9);
    assert_int_equal(ep_wait(ep, evs, 4, 0), 0);
    hold(&t, 20); /* the application took some: no new edge */
    assert_int_equal(ep_wait(ep, evs, 4, 0), 0);
    hold(&t, 4000); /* a token resolved: new bytes */
    assert_int_equal(ep_wait(ep, evs, 4, 0), 1);
    assert_int_equal(ep_wait(ep, evs, 4, 0), 0);
    /* MOD re-checks readiness, as the kernel does. */
    ep_add(ep, EPOLL_CTL_MOD, t.fd, EPOLLIN | EPOLLET, 10);
    assert_int_equal(ep_wait(ep, evs, 4, 0), 1);
    assert_int_equal(evs[0].data.u64, 10);
    hold(&t, 0);
    ep_close(ep);
    tracked_close(&t);
}

static void oneshot_disarms_until_mod(void **unused)
{
    (void)unused;
    tracked t;
    tracked_open(&t);
    int ep = ep_new();
    ep_add(ep, EPOLL_CTL_ADD, t.fd, EPOLLIN | EPOLLONESHOT, 5);
    hold(&t, 10);
    struct epoll_event evs[4];
    assert_int_equal(ep_wait(ep, evs, 4, 0), 1);
    /* Disarmed in the shadow and in the kernel: kernel bytes stay unreported. */
    assert_int_equal(write(t.peer, "y", 1), 1);
    assert_int_equal(ep_wait(ep, evs, 4, 0), 0);
    ep_add(ep, EPOLL_CTL_MOD, t.fd, EPOLLIN | EPOLLONESHOT, 6);
    assert_int_equal(ep_wait(ep, evs, 4, 0), 1);
    assert_int_equal(evs[0].data.u64, 6);
    assert_int_equal(ep_wait(ep, evs, 4, 0), 0);
    hold(&t, 0);
    ep_close(ep);
    tracked_close(&t);
}

static void maxevents_respected_and_fair(void **unused)
{
    (void)unused;
    tracked t[3];
    int ep = ep_new();
    for (int i = 0; i < 3; i++) {
        tracked_open(&t[i]);
        ep_add(ep, EPOLL_CTL_ADD, t[i].fd, EPOLLIN, 100 + (uint64_t)i);
        hold(&t[i], 1);
    }
    struct epoll_event evs[4];
    int seen[3] = {0, 0, 0};
    for (int round = 0; round < 3; round++) {
        assert_int_equal(ep_wait(ep, evs, 2, 0), 2);
        for (int k = 0; k < 2; k++) {
            assert_true(evs[k].data.u64 >= 100 && evs[k].data.u64 < 103);
            seen[evs[k].data.u64 - 100]++;
        }
    }
    for (int i = 0; i < 3; i++)
        assert_true(seen[i] > 0); /* nobody starved */
    ep_close(ep);
    for (int i = 0; i < 3; i++)
        tracked_close(&t[i]);
}

static void del_and_close_forget(void **unused)
{
    (void)unused;
    tracked t;
    tracked_open(&t);
    int ep = ep_new();
    ep_add(ep, EPOLL_CTL_ADD, t.fd, EPOLLIN, 1);
    hold(&t, 10);
    struct epoll_event evs[4];
    assert_int_equal(ep_wait(ep, evs, 4, 0), 1);
    assert_int_equal(pl_epoll_ctl(ep, EPOLL_CTL_DEL, t.fd, NULL), 0);
    assert_int_equal(ep_wait(ep, evs, 4, 0), 0);
    ep_add(ep, EPOLL_CTL_ADD, t.fd, EPOLLIN, 2);
    assert_int_equal(ep_wait(ep, evs, 4, 0), 1);
    /* Closing the member drops it, as the kernel drops its registration. */
    tracked_close(&t);
    assert_int_equal(ep_wait(ep, evs, 4, 0), 0);
    ep_close(ep);
}

/* Errors of the real call come back unchanged. */
static void errors_pass_through(void **unused)
{
    (void)unused;
    struct epoll_event evs[1];
    errno = 0;
    assert_int_equal(pl_epoll_wait(-1, evs, 1, PL_EP_PWAIT2, NULL, NULL), -1);
    assert_int_equal(errno, EBADF);
    int ep = ep_new();
    errno = 0;
    assert_int_equal(pl_epoll_wait(ep, evs, 0, PL_EP_WAIT, NULL, NULL), -1);
    assert_int_equal(errno, EINVAL);
    tracked t;
    tracked_open(&t);
    struct epoll_event ev = {.events = EPOLLIN};
    errno = 0;
    assert_int_equal(pl_epoll_ctl(ep, EPOLL_CTL_MOD, t.fd, &ev), -1);
    assert_int_equal(errno, ENOENT);
    ep_close(ep);
    tracked_close(&t);
}

typedef struct waiter {
    int ep, n;
    struct epoll_event ev[4];
} waiter;

static void *wait_thread(void *arg)
{
    waiter *w = arg;
    w->n = ep_wait(w->ep, w->ev, 4, 20000);
    return NULL;
}

/* Another thread leaves bytes held: a thread asleep in the kernel wakes
 * (whenever it got there, before or after). */
static void wakes_sleeping_thread(void **unused)
{
    (void)unused;
    tracked t;
    tracked_open(&t);
    waiter w = {.ep = ep_new()};
    ep_add(w.ep, EPOLL_CTL_ADD, t.fd, EPOLLIN | EPOLLET, 77);
    pthread_t thr;
    assert_int_equal(pthread_create(&thr, NULL, wait_thread, &w), 0);
    hold(&t, 1 << 20);
    assert_int_equal(pthread_join(thr, NULL), 0);
    assert_int_equal(w.n, 1);
    assert_int_equal(w.ev[0].data.u64, 77);
    hold(&t, 0);
    ep_close(w.ep);
    tracked_close(&t);
}

/* An epoll fd inside another: the outer sees the inner readable when the
 * inner has held-ready members, and an outer sleeper is woken. */
static void nested_epoll(void **unused)
{
    (void)unused;
    tracked t;
    tracked_open(&t);
    int inner = ep_new();
    waiter w = {.ep = ep_new()};
    ep_add(inner, EPOLL_CTL_ADD, t.fd, EPOLLIN, 1);
    ep_add(w.ep, EPOLL_CTL_ADD, inner, EPOLLIN, 2);
    struct epoll_event evs[4];
    assert_int_equal(ep_wait(w.ep, evs, 4, 0), 0);
    pthread_t thr;
    assert_int_equal(pthread_create(&thr, NULL, wait_thread, &w), 0);
    hold(&t, 10);
    assert_int_equal(pthread_join(thr, NULL), 0);
    assert_int_equal(w.n, 1);
    assert_int_equal(w.ev[0].data.u64, 2);
    assert_int_equal(ep_wait(inner, evs, 4, 0), 1);
    assert_int_equal(evs[0].data.u64, 1);
    assert_int_equal(ep_wait(w.ep, evs, 4, 0), 1); /* still held: level */
    hold(&t, 0);
    assert_int_equal(ep_wait(inner, evs, 4, 0), 0);
    assert_int_equal(ep_wait(w.ep, evs, 4, 0), 0);
    ep_close(w.ep);
    ep_close(inner);
    tracked_close(&t);
}

/* A timeout with nothing to report still expires (no busy loop returning
 * early, no overrun). */
static void timeout_expires(void **unused)
{
    (void)unused;
    tracked t;
    tracked_open(&t);
    int ep = ep_new();
    ep_add(ep, EPOLL_CTL_ADD, t.fd, EPOLLIN, 3);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    struct epoll_event evs[4];
    assert_int_equal(ep_wait(ep, evs, 4, 50), 0);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double el = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) * 1e-9;
    assert_true(el >= 0.045 && el < 5.0);
    ep_close(ep);
    tracked_close(&t);
}

/* EPOLLEXCLUSIVE: two epoll sets wait on one fd; a growth of its held bytes
 * is reported by one of them only, which keeps reporting it (level) until
 * the bytes are taken; the next growth may go to either. */
static void exclusive_reports_once(void **unused)
{
    (void)unused;
    tracked t;
    tracked_open(&t);
    int a = ep_new(), b = ep_new();
    ep_add(a, EPOLL_CTL_ADD, t.fd, EPOLLIN | EPOLLEXCLUSIVE, 1);
    ep_add(b, EPOLL_CTL_ADD, t.fd, EPOLLIN | EPOLLEXCLUSIVE, 2);
    struct epoll_event evs[4];
    hold(&t, 100);
    int na = ep_wait(a, evs, 4, 0);
    int nb = ep_wait(b, evs, 4, 0);
    assert_int_equal(na + nb, 1);
    int winner = na ? a : b, loser = na ? b : a;
    assert_int_equal(ep_wait(winner, evs, 4, 0), 1); /* level, for the winner */
    assert_int_equal(ep_wait(loser, evs, 4, 0), 0);
    hold(&t, 0);
    assert_int_equal(ep_wait(winner, evs, 4, 0), 0);
    hold(&t, 50); /* a new growth: one of them again */
    na = ep_wait(a, evs, 4, 0);
    nb = ep_wait(b, evs, 4, 0);
    assert_int_equal(na + nb, 1);
    ep_close(a);
    ep_close(b);
    tracked_close(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(level_reports_held_bytes_with_app_data),
        cmocka_unit_test(merges_into_kernel_event),
        cmocka_unit_test(edge_reports_each_growth_once),
        cmocka_unit_test(oneshot_disarms_until_mod),
        cmocka_unit_test(maxevents_respected_and_fair),
        cmocka_unit_test(del_and_close_forget),
        cmocka_unit_test(errors_pass_through),
        cmocka_unit_test(wakes_sleeping_thread),
        cmocka_unit_test(nested_epoll),
        cmocka_unit_test(timeout_expires),
        cmocka_unit_test(exclusive_reports_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
