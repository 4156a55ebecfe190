/* Call-site resolution: names in stack order, the call site string, the
 * per-site cache (hits, distinct sites, a full cache), threads, errno. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "pl_caller.h"
#include "psi_policy.h"

typedef struct result {
    const char *const *names;
    size_t n;
    const char *site;
    char first[64]; /* names[0], copied: an uncached result is per-thread */
} result;

static _Atomic int sink; /* atomic: threads call the same functions */

/* The functions below stand for an application's call path. They are
 * noipa (no inlining, no cloning into "probe.constprop.0") and do work after
 * each call (no tail call), so every one keeps a frame with its own name
 * under the -O2 the Makefile builds tests with. */
__attribute__((noipa)) void probe(result *r)
{
    r->names = pl_callers(NULL, &r->n);
    r->site = pl_callsite();
    snprintf(r->first, sizeof(r->first), "%s", r->n ? r->names[0] : "");
    sink++;
}

__attribute__((noipa)) void probe_b(result *r)
{
    r->names = pl_callers(NULL, &r->n);
    r->site = pl_callsite();
    snprintf(r->first, sizeof(r->first), "%s", r->n ? r->names[0] : "");
    sink += 2;
}

__attribute__((noipa)) void middle_sender(result *r)
{
    probe(r);
    sink++;
}

__attribute__((noipa)) void outer_sender(result *r)
{
    middle_sender(r);
    sink++;
}

/* The cache key is the first PL_CALLER_KEY (4) return addresses: with this
 * fourth level, calls from anywhere in a test share one key. */
__attribute__((noipa)) void send_path(result *r)
{
    outer_sender(r);
    sink++;
}

__attribute__((noipa)) void alt_sender(result *r)
{
    probe_b(r);
    sink++;
}

static long find(const result *r, const char *name)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->names[i], name) == 0)
            return (long)i;
    return -1;
}

static void names_in_stack_order(void **unused)
{
    result r;
    send_path(&r);
    assert_true(r.n >= 5 && r.n <= PL_CALLER_MAX);
    /* The walk starts at the caller of pl_callers: nothing of ours shows. */
    assert_string_equal(r.names[0], "probe");
    assert_int_equal(find(&r, "middle_sender"), 1);
    assert_int_equal(find(&r, "outer_sender"), 2);
    assert_int_equal(find(&r, "send_path"), 3);
    /* The first call with this key: its outer frames are this test's. */
    assert_int_equal(find(&r, "names_in_stack_order"), 4);
    assert_true(find(&r, "main") > 4);
    assert_int_equal(find(&r, "pl_callers"), -1);
    assert_int_equal(find(&r, "pl_callsite"), -1);
}

static void callsite_is_func_offset_module(void **unused)
{
    result r;
    send_path(&r);
    /* "probe+0x2a (test_pl_caller)": the innermost frame, its offset, and
     * the module (the test binary, not libc and not us). */
    assert_true(strncmp(r.site, "probe+0x", 8) == 0);
    const char *paren = strchr(r.site, ' ');
    assert_non_null(paren);
    assert_string_equal(paren, " (test_pl_caller)");
    unsigned long off = 0;
    assert_int_equal(sscanf(r.site, "probe+0x%lx", &off), 1);
    assert_true(off > 0 && off < 4096);
}

static void second_call_hits_the_cache(void **unused)
{
    result r[2];
    send_path(&r[0]);
    uint64_t hits0 = pl_caller_cache_hits(), misses0 = pl_caller_cache_misses();
    send_path(&r[1]);
    /* pl_callers and pl_callsite: two sites, both hits the second time. */
    assert_int_equal(pl_caller_cache_hits() - hits0, 2);
    assert_int_equal(pl_caller_cache_misses() - misses0, 0);
    assert_ptr_equal(r[0].names, r[1].names); /* interned, not recomputed */
    assert_ptr_equal(r[0].site, r[1].site);
    assert_int_equal(r[0].n, r[1].n);
}

static void different_sites_differ(void **unused)
{
    result a, b;
    send_path(&a);
    alt_sender(&b);
    assert_string_equal(b.names[0], "probe_b");
    assert_string_equal(b.names[1], "alt_sender");
    assert_int_equal(find(&b, "outer_sender"), -1);
    assert_int_equal(find(&a, "alt_sender"), -1);
    assert_true(strncmp(b.site, "probe_b+0x", 10) == 0);
    assert_string_not_equal(a.site, b.site);
    assert_ptr_not_equal(a.names, b.names);
}

static void errno_is_preserved(void **unused)
{
    result r;
    errno = EMSGSIZE;
    alt_sender(&r);
    assert_int_equal(errno, EMSGSIZE);
}

#define THREADS 8
#define CALLS 2000

static void *thread_body(void *arg)
{
    long bad = 0;
    for (int i = 0; i < CALLS; i++) {
        result r;
        if (i % 2)
            outer_sender(&r);
        else
            alt_sender(&r);
        const char *want = i % 2 ? "probe" : "probe_b";
        const char *parent = i % 2 ? "middle_sender" : "alt_sender";
        if (strcmp(r.first, want) != 0 || r.n < 2 || strcmp(r.names[1], parent) != 0 ||
            strncmp(r.site, want, strlen(want)) != 0)
            bad++;
    }
    return (void *)bad;
}

static void threads_share_the_cache(void **unused)
{
    pthread_t t[THREADS];
    size_t sites0 = pl_caller_cache_sites();
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, thread_body, NULL), 0);
    for (int i = 0; i < THREADS; i++) {
        void *bad;
        assert_int_equal(pthread_join(t[i], &bad), 0);
        assert_int_equal((long)bad, 0);
    }
    /* Every thread has the same call path below thread_body: 2 paths x
     * (pl_callers, pl_callsite), whichever thread got there first. */
    assert_int_equal(pl_caller_cache_sites() - sites0, 4);
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

/* pl_callers alone, four frames deep so the key is the same every call. */
__attribute__((noipa)) void timed_leaf(void)
{
    size_t k;
    sink += (int)(pl_callers(NULL, &k) != NULL);
}

__attribute__((noipa)) void timed_mid(void)
{
    timed_leaf();
    sink++;
}

__attribute__((noipa)) void timed_top(void)
{
    timed_mid();
    sink++;
}

__attribute__((noipa)) double timed_loop(int n)
{
    double t0 = now_ns();
    for (int i = 0; i < n; i++)
        timed_top();
    return (now_ns() - t0) / n;
}

static void cost_of_a_hit(void **unused)
{
    timed_loop(1); /* the miss */
    uint64_t h0 = pl_caller_cache_hits();
    double ns = timed_loop(200000);
    assert_int_equal(pl_caller_cache_hits() - h0, 200000);
    print_message("pl_callers, cache hit: %.0f ns/call\n", ns);
}

/* 1024 distinct call sites: more than the cache keeps (3/4 of its slots). */
__attribute__((noipa)) void probe_n(result *r)
{
    r->names = pl_callers(NULL, &r->n);
    snprintf(r->first, sizeof(r->first), "%s", r->n ? r->names[0] : "");
    sink++;
}

#define SITE(k) \
    case k:     \
        probe_n(r); \
        sink = k;   \
        break;
#define R4(b) SITE(b) SITE((b) + 1) SITE((b) + 2) SITE((b) + 3)
#define R16(b) R4(b) R4((b) + 4) R4((b) + 8) R4((b) + 12)
#define R64(b) R16(b) R16((b) + 16) R16((b) + 32) R16((b) + 48)
#define R256(b) R64(b) R64((b) + 64) R64((b) + 128) R64((b) + 192)

__attribute__((noipa)) void many_sites(int i, result *r)
{
    switch (i) {
        R256(0) R256(256) R256(512) R256(768)
    }
    sink++;
}

__attribute__((noipa)) void site_path(int i, result *r)
{
    many_sites(i, r);
    sink++;
}

__attribute__((noipa)) void site_path2(int i, result *r)
{
    site_path(i, r);
    sink++;
}

/* Runs last: it fills the cache for the rest of the process. */
static void full_cache_still_answers(void **unused)
{
    result r;
    uint64_t m0 = pl_caller_cache_misses();
    double t0 = now_ns();
    for (int i = 0; i < 1024; i++) {
        site_path2(i, &r);
        assert_string_equal(r.first, "probe_n");
        assert_string_equal(r.names[1], "many_sites");
    }
    double t1 = now_ns();
    assert_int_equal(pl_caller_cache_misses() - m0, 1024); /* all distinct */
    assert_int_equal(pl_caller_cache_sites(), PL_CALLER_SITES / 4 * 3);
    print_message("pl_callers, cache miss (new site, known outer frames): %.0f ns/call\n",
                  (t1 - t0) / 1024);

    /* Full: a site seen for the first time is computed every time, into the
     * thread's buffer, and still right. */
    site_path2(1023, &r);
    const char *const *first = r.names;
    site_path2(1023, &r);
    assert_ptr_equal(r.names, first);
    assert_string_equal(r.names[0], "probe_n");
    assert_int_equal(pl_caller_cache_misses() - m0, 1026);
    /* A site cached before the table filled still hits. */
    uint64_t h0 = pl_caller_cache_hits();
    site_path2(0, &r);
    assert_int_equal(pl_caller_cache_hits() - h0, 1);
    assert_string_equal(r.names[1], "many_sites");
}

/* ---- a caller= rule decided on the real stack ---------------------------- */

static const char caller_policy[] = "rule from-upload: caller=upload_* => proxy\n"
                                    "rule other: channel=tcp => pass\n";

static int decide_here(const psi_policy *p)
{
    pol_ctx c = {.channel = POL_CH_TCP, .direction = POL_DIR_SEND, .size = 8 << 20,
                 .exe = "test", .callers = pl_callers};
    pol_decision d;
    psi_policy_decide(p, &c, 1 << 20, &d);
    return d.rule;
}

__attribute__((noipa)) int upload_chunk(const psi_policy *p)
{
    int r = decide_here(p);
    sink++;
    return r;
}

__attribute__((noipa)) int download_chunk(const psi_policy *p)
{
    int r = decide_here(p);
    sink++;
    return r;
}

static void caller_rule_matches_real_stack(void **unused)
{
    static psi_policy p;
    assert_int_equal(psi_policy_parse("caller.policy", caller_policy, sizeof(caller_policy) - 1,
                                      &p, NULL, NULL),
                     0);
    assert_true(p.needs_callers);
    assert_int_equal(upload_chunk(&p), 0);   /* upload_chunk is on the stack */
    assert_int_equal(download_chunk(&p), 1); /* it is not: the next rule decides */
    assert_int_equal(upload_chunk(&p), 0);   /* and again, from the cache */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(names_in_stack_order),
        cmocka_unit_test(callsite_is_func_offset_module),
        cmocka_unit_test(second_call_hits_the_cache),
        cmocka_unit_test(different_sites_differ),
        cmocka_unit_test(errno_is_preserved),
        cmocka_unit_test(threads_share_the_cache),
        cmocka_unit_test(cost_of_a_hit),
        cmocka_unit_test(full_cache_still_answers),
        cmocka_unit_test(caller_rule_matches_real_stack),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
