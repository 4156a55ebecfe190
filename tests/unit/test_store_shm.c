/* The shm pool connector: names, keys, URLs, and the object life cycle on a
 * real tmpfs pool (a fresh directory under /dev/shm per test). */
#include <dirent.h>
#include <sched.h>
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "psi_store.h"
#include "st_shm.h"

typedef struct fixture {
    char dir[128];
    char url[256];
    psi_store *s;
} fixture;

static int count_segments(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *de;
    if (!d)
        return 0;
    while ((de = readdir(d)))
        n += de->d_name[0] == 's';
    closedir(d);
    return n;
}

static void rm_pool(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char path[512];
    if (!d)
        return;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.') {
            snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
            unlink(path);
        }
    closedir(d);
    rmdir(dir);
}

static int setup_opts(void **state, const char *opts)
{
    fixture *f = calloc(1, sizeof *f);
    psi_err err = {0};
    snprintf(f->dir, sizeof f->dir, "/dev/shm/psi-test-shm-%d-%ld", (int)getpid(),
             (long)random());
    snprintf(f->url, sizeof f->url, "shm://%s%s", f->dir, opts);
    if (psi_store_open(f->url, &f->s, &err) != 0) {
        fprintf(stderr, "open %s: %s\n", f->url, err.msg);
        return -1;
    }
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return setup_opts(state, "");
}

static int setup_small(void **state)
{
    return setup_opts(state, "?max=3M&keep=0");
}

static int teardown(void **state)
{
    fixture *f = *state;
    psi_store_close(f->s);
    rm_pool(f->dir);
    free(f);
    return 0;
}

static uint8_t *pattern(size_t n, unsigned seed)
{
    uint8_t *b = malloc(n);
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)(i * 31 + seed + (i >> 12));
    return b;
}

static void put_ok(fixture *f, const void *buf, size_t n, uint8_t lifetime, uint32_t ttl,
                   psi_token *t)
{
    psi_put_opts o = {.lifetime = lifetime, .ttl = ttl};
    psi_err err = {0};
    if (psi_store_put(f->s, buf, n, &o, t, &err) != 0)
        fail_msg("put: %s", err.msg);
    assert_int_equal(t->connector, PSI_CONN_SHM);
    assert_int_equal(t->size, n);
    assert_true(psi_key_valid(t->key, t->key_len));
}

static void resolve_ok(fixture *f, const psi_token *t, const void *expect, size_t n)
{
    psi_obj obj;
    psi_err err = {0};
    if (psi_store_resolve(f->s, t, &obj, &err) != 0)
        fail_msg("resolve %s: %s", t->key, err.msg);
    assert_int_equal(obj.len, n);
    assert_memory_equal(obj.data, expect, n);
    psi_obj_release(&obj);
}

static void resolve_fails(fixture *f, const psi_token *t, const char *what)
{
    psi_obj obj;
    psi_err err = {0};
    assert_int_equal(psi_store_resolve(f->s, t, &obj, &err), -1);
    assert_int_equal(err.code, EIO);
    if (!strstr(err.msg, what))
        fail_msg("message '%s' lacks '%s'", err.msg, what);
}

/* ---- names, keys, URLs ---------------------------------------------------- */

static void test_names(void **state)
{
    (void)state;
    const char *good[] = {"s1-0-0", "s1a2b-10addb-ff", "sffffffffffffffff-0-1"};
    const char *bad[] = {"", "s", "s1-2", "s1-2-3-4", "x1-2-3", "s1--3", "s1-2-", "sA-2-3",
                         "s1-2-3/", "../s1-2-3", "s1-2-3.4", "s11111111111111111-2-3"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        assert_true(st_shm_name_valid(good[i], strlen(good[i])));
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (st_shm_name_valid(bad[i], strlen(bad[i])))
            fail_msg("'%s' accepted", bad[i]);
}

static void test_keys(void **state)
{
    (void)state;
    char name[ST_SHM_NAME_MAX + 1];
    uint64_t gen = 0;
    assert_int_equal(st_shm_key_parse("s1-2-3.1f", 9, name, &gen), 0);
    assert_string_equal(name, "s1-2-3");
    assert_int_equal(gen, 0x1f);
    const char *bad[] = {"s1-2-3", "s1-2-3.", "s1-2-3.g", "s1-2-3.11111111111111111",
                         "0123456789abcdef0123456789abcdef", "s1-2.3", ".5", "s1-2-3.1.2"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (st_shm_key_parse(bad[i], strlen(bad[i]), name, &gen) == 0)
            fail_msg("'%s' accepted", bad[i]);
}

static void test_urls(void **state)
{
    (void)state;
    char dir[PATH_MAX];
    uint64_t max, keep;
    psi_err err = {0};

    assert_int_equal(st_shm_parse_url("shm://", dir, &max, &keep, &err), 0);
    assert_string_equal(dir, "");
    assert_int_equal(max, 0);
    assert_int_equal(keep, UINT64_MAX);
    assert_int_equal(st_shm_parse_url("shm:///dev/shm/p//?max=1G&keep=0", dir, &max, &keep,
                                      &err), 0);
    assert_string_equal(dir, "/dev/shm/p");
    assert_int_equal(max, 1ull << 30);
    assert_int_equal(keep, 0);
    assert_int_equal(st_shm_parse_url("shm://?keep=64M", dir, &max, &keep, &err), 0);
    assert_int_equal(keep, 64ull << 20);

    struct {
        const char *url, *what;
    } bad[] = {
        {"shm:/x", "not a shm:// URL"},       {"shm://host/x", "malformed URL"},
        {"shm://?size=1G", "unknown option"}, {"shm://?max=lots", "max in"},
        {"shm://?max=", "max in"},            {"shm://?&", "bad option"},
        {"shm://?keep=-1", "keep in"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(st_shm_parse_url(bad[i].url, dir, &max, &keep, &err), -1);
        assert_int_equal(err.code, EINVAL);
        if (!strstr(err.msg, bad[i].what))
            fail_msg("%s: message '%s' lacks '%s'", bad[i].url, err.msg, bad[i].what);
    }
}

/* ---- life cycle ----------------------------------------------------------- */

static void test_put_resolve_reuses_segment(void **state)
{
    fixture *f = *state;
    size_t n = 3u << 20;
    uint8_t *a = pattern(n, 1), *b = pattern(n, 2);
    psi_token t1, t2;

    put_ok(f, a, n, PSI_LIFE_REFCOUNT, 0, &t1);
    resolve_ok(f, &t1, a, n);
    put_ok(f, b, n, PSI_LIFE_REFCOUNT, 0, &t2);
    /* The same segment, the next generation: its pages were reused. */
    assert_int_equal(count_segments(f->dir), 1);
    assert_memory_equal(t1.key, t2.key, strchr(t1.key, '.') - t1.key);
    assert_string_not_equal(t1.key, t2.key);
    /* The first token names a generation that is gone. */
    resolve_fails(f, &t1, "is gone");
    resolve_ok(f, &t2, b, n);
    free(a);
    free(b);
}

/* The directory is checked once per handle; removed under us (rm -rf of
 * the pool), it is made again, with its checks, when a segment is next
 * created. */
static void test_pool_dir_removed(void **state)
{
    fixture *f = *state;
    size_t n = 1u << 20;
    uint8_t *a = pattern(n, 1), *b = pattern(n, 2);
    psi_token t1, t2;
    struct stat st;

    put_ok(f, a, n, PSI_LIFE_REFCOUNT, 0, &t1);
    rm_pool(f->dir);
    assert_int_equal(stat(f->dir, &st), -1);
    /* t1 still holds the mapped segment: this put needs a new file. */
    put_ok(f, b, n, PSI_LIFE_REFCOUNT, 0, &t2);
    assert_int_equal(stat(f->dir, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_int_equal(count_segments(f->dir), 1);
    resolve_ok(f, &t2, b, n);
    free(a);
    free(b);
}

static void test_unaligned_sizes(void **state)
{
    fixture *f = *state;
    size_t sizes[] = {1, 15, 16, 17, 63, 64, 65, 4095, 4097, (1u << 20) + 3};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        uint8_t *a = pattern(sizes[i] + 1, (unsigned)i);
        psi_token t;
        /* An unaligned source exercises the streamed copy's head and tail. */
        put_ok(f, a + 1, sizes[i], PSI_LIFE_REFCOUNT, 0, &t);
        assert_true(psi_token_sum(PSI_CONN_SHM, a + 1, sizes[i]).lo == t.sum.lo);
        resolve_ok(f, &t, a + 1, sizes[i]);
        free(a);
    }
}

static void test_dedup_refcount(void **state)
{
    fixture *f = *state;
    size_t n = 1u << 20;
    uint8_t *a = pattern(n, 3);
    psi_token t[3];

    for (int i = 0; i < 3; i++)
        put_ok(f, a, n, PSI_LIFE_REFCOUNT, 0, &t[i]);
    /* Stored once: every token names the same object. */
    assert_string_equal(t[0].key, t[1].key);
    assert_string_equal(t[0].key, t[2].key);
    for (int i = 0; i < 3; i++) {
        assert_true(f->s->ops->exists(f->s, &t[0]));
        resolve_ok(f, &t[i], a, n);
    }
    assert_false(f->s->ops->exists(f->s, &t[0]));
    free(a);
}

static void test_evict_on_read(void **state)
{
    fixture *f = *state;
    uint8_t *a = pattern(5000, 4);
    psi_token t;
    put_ok(f, a, 5000, PSI_LIFE_EVICT_ON_READ, 0, &t);
    resolve_ok(f, &t, a, 5000);
    resolve_fails(f, &t, "is gone");
    free(a);
}

static void test_ttl_lifetime(void **state)
{
    fixture *f = *state;
    uint8_t *a = pattern(5000, 5);
    psi_token t;
    psi_gc_report r = {0};
    psi_err err = {0};

    put_ok(f, a, 5000, PSI_LIFE_TTL, 1, &t);
    /* A ttl object outlives its readers... */
    resolve_ok(f, &t, a, 5000);
    resolve_ok(f, &t, a, 5000);
    assert_int_equal(f->s->ops->gc(f->s, &r, &err), 0);
    assert_true(f->s->ops->exists(f->s, &t));
    /* ...until its time has passed (one-second clock: wait up to 3 s). */
    for (int i = 0; i < 30 && f->s->ops->exists(f->s, &t); i++) {
        struct timespec ts = {0, 100000000};
        nanosleep(&ts, NULL);
        f->s->ops->gc(f->s, &r, &err);
    }
    assert_false(f->s->ops->exists(f->s, &t));
    assert_int_equal(r.objects_removed, 1);
    free(a);
}

static void test_hold_keeps_bytes_until_release(void **state)
{
    fixture *f = *state;
    size_t n = 1u << 20;
    uint8_t *a = pattern(n, 6), *b = pattern(n, 7);
    psi_token t1, t2;
    psi_obj obj;
    psi_err err = {0};

    put_ok(f, a, n, PSI_LIFE_REFCOUNT, 0, &t1);
    assert_int_equal(psi_store_resolve(f->s, &t1, &obj, &err), 0);
    /* The token's reference is gone but the reader still holds the bytes:
     * the next put must not overwrite them. */
    put_ok(f, b, n, PSI_LIFE_REFCOUNT, 0, &t2);
    assert_int_equal(count_segments(f->dir), 2);
    assert_memory_equal(obj.data, a, n);
    psi_obj_release(&obj);
    resolve_ok(f, &t2, b, n);
    free(a);
    free(b);
}

static void test_bad_tokens(void **state)
{
    fixture *f = *state;
    uint8_t *a = pattern(100, 8);
    psi_token t;
    put_ok(f, a, 100, PSI_LIFE_REFCOUNT, 0, &t);

    psi_token wrong = t;
    wrong.size = 99;
    resolve_fails(f, &wrong, "token says 99");
    wrong = t;
    wrong.sum.lo ^= 1;
    resolve_fails(f, &wrong, "does not match the token");
    wrong = t;
    snprintf(wrong.key, sizeof wrong.key, "0123456789abcdef");
    wrong.key_len = 16;
    resolve_fails(f, &wrong, "is not a shm object key");
    snprintf(wrong.key, sizeof wrong.key, "s1-2-3.1");
    wrong.key_len = 8;
    resolve_fails(f, &wrong, "No such file");

    /* A file in the pool with a segment's name but not our header. */
    char path[512];
    snprintf(path, sizeof path, "%s/s9-9-9", f->dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    for (int i = 0; i < (2 << 20) / 8; i++)
        fputs("garbage!", fp);
    fclose(fp);
    snprintf(wrong.key, sizeof wrong.key, "s9-9-9.1");
    resolve_fails(f, &wrong, "is not a psinterpose segment");
    unlink(path);

    resolve_ok(f, &t, a, 100);
    free(a);
}

static void test_pool_full(void **state)
{
    fixture *f = *state;
    size_t n = 1u << 20;
    uint8_t *a = pattern(n, 9), *b = pattern(2 * n, 10);
    psi_token t1, t2;
    psi_put_opts o = {.lifetime = PSI_LIFE_REFCOUNT};
    psi_err err = {0};

    put_ok(f, a, n, PSI_LIFE_REFCOUNT, 0, &t1);
    /* 1 MiB held by a token, 2 MiB more would pass the 3 MiB budget... */
    assert_int_equal(psi_store_put(f->s, b, 2 * n + 1, &o, &t2, &err), -1);
    assert_int_equal(err.code, ENOSPC);
    assert_non_null(strstr(err.msg, "pool full"));
    /* ...until the first object is resolved and its segment given back. */
    resolve_ok(f, &t1, a, n);
    put_ok(f, b, 2 * n, PSI_LIFE_REFCOUNT, 0, &t2);
    resolve_ok(f, &t2, b, 2 * n);
    free(a);
    free(b);
}

/* A byte of the payload changed in the segment: the piece that holds it
 * fails its check, the pieces before it are delivered, nothing after. */
static void test_corrupted_piece(void **state)
{
    fixture *f = *state;
    size_t n = 1u << 20, piece = 256u << 10;
    uint8_t *a = pattern(n, 17), out[1];
    psi_token t;
    psi_obj obj;
    psi_err err = {0};

    psi_token t2;
    put_ok(f, a, n, PSI_LIFE_REFCOUNT, 0, &t);
    put_ok(f, a, n, PSI_LIFE_REFCOUNT, 0, &t2); /* a second reference, for the second try */
    char path[512];
    snprintf(path, sizeof path, "%s/%.*s", f->dir, (int)(strchr(t.key, '.') - t.key), t.key);
    FILE *fp = fopen(path, "r+");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, 4096 + (long)piece + 5, SEEK_SET), 0);
    out[0] = (uint8_t)(a[piece + 5] ^ 0xff);
    assert_int_equal(fwrite(out, 1, 1, fp), 1);
    fclose(fp);

    /* Checked piece by piece: the first piece passes, the second fails. */
    assert_int_equal(psi_store_resolve_lazy(f->s, &t, &obj, &err), 0);
    assert_int_equal(psi_obj_verify(&obj, 0, piece, &err), 0);
    assert_int_equal(psi_obj_verify(&obj, piece - 1, 2, &err), -1);
    assert_int_equal(err.code, EIO);
    assert_non_null(strstr(err.msg, "do not match their checksum"));
    psi_obj_release(&obj);
    /* Checked whole (psi_store_resolve): the read fails. */
    resolve_fails(f, &t2, "do not match their checksum");
    free(a);
}

struct ls_count {
    int n;
    int64_t refs;
};

static int ls_cb(const psi_obj_info *o, void *arg)
{
    struct ls_count *c = arg;
    c->n++;
    c->refs += o->refs;
    return 0;
}

static void test_ls(void **state)
{
    fixture *f = *state;
    uint8_t *a = pattern(4096, 11), *b = pattern(8192, 12);
    psi_token t1, t2, t3;
    psi_err err = {0};
    struct ls_count c = {0};

    put_ok(f, a, 4096, PSI_LIFE_REFCOUNT, 0, &t1);
    put_ok(f, a, 4096, PSI_LIFE_REFCOUNT, 0, &t2);
    put_ok(f, b, 8192, PSI_LIFE_REFCOUNT, 0, &t3);
    assert_int_equal(f->s->ops->ls(f->s, ls_cb, &c, &err), 0);
    assert_int_equal(c.n, 2);
    assert_int_equal(c.refs, 3);
    resolve_ok(f, &t1, a, 4096);
    resolve_ok(f, &t2, a, 4096);
    resolve_ok(f, &t3, b, 8192);
    c = (struct ls_count){0};
    assert_int_equal(f->s->ops->ls(f->s, ls_cb, &c, &err), 0);
    assert_int_equal(c.n, 0);
    free(a);
    free(b);
}

/* ---- processes ------------------------------------------------------------ */

/* A child puts and dies without resolving: the object outlives it. */
static void test_object_survives_sender(void **state)
{
    fixture *f = *state;
    size_t n = 2u << 20;
    uint8_t *a = pattern(n, 13);
    int pfd[2];
    psi_token t;

    assert_int_equal(pipe(pfd), 0);
    pid_t pid = fork();
    if (pid == 0) {
        psi_store *cs;
        psi_err e;
        psi_put_opts o = {.lifetime = PSI_LIFE_REFCOUNT};
        if (psi_store_open(f->url, &cs, &e) != 0 || psi_store_put(cs, a, n, &o, &t, &e) != 0)
            _exit(1);
        ssize_t w = write(pfd[1], &t, sizeof t);
        _exit(w == (ssize_t)sizeof t ? 0 : 1);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_int_equal(read(pfd[0], &t, sizeof t), (ssize_t)sizeof t);
    close(pfd[0]);
    close(pfd[1]);
    resolve_ok(f, &t, a, n);
    /* Its owner is gone, so nobody will reuse it: the last reader unlinks. */
    assert_int_equal(count_segments(f->dir), 0);
    free(a);
}

/* A child process opens the pool, puts (a, n) and resolves it, then
 * exits normally (exit, so the pool's exit handler runs). */
static void child_put_resolve_exit(fixture *f, const uint8_t *a, size_t n)
{
    pid_t pid = fork();
    if (pid == 0) {
        psi_store *cs;
        psi_err e;
        psi_put_opts o = {.lifetime = PSI_LIFE_REFCOUNT};
        psi_token t;
        psi_obj obj;
        if (psi_store_open(f->url, &cs, &e) != 0 || psi_store_put(cs, a, n, &o, &t, &e) != 0 ||
            psi_store_resolve(cs, &t, &obj, &e) != 0)
            _exit(1);
        psi_obj_release(&obj);
        exit(0);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* A child that exits normally leaves its free segments warm in the pool
 * (default keep), and the next process adopts one instead of allocating. */
static void test_exit_keeps_warm_segment(void **state)
{
    fixture *f = *state;
    size_t n = 2u << 20;
    uint8_t *a = pattern(n, 14);

    child_put_resolve_exit(f, a, n);
    assert_int_equal(count_segments(f->dir), 1);

    psi_token t;
    put_ok(f, a, n, PSI_LIFE_REFCOUNT, 0, &t);
    assert_int_equal(count_segments(f->dir), 1); /* adopted, not created */
    resolve_ok(f, &t, a, n);

    /* psi gc gives the idle pool back. */
    psi_gc_report r = {0};
    psi_err err = {0};
    pid_t pid = fork();
    if (pid == 0)
        exit(0);
    waitpid(pid, NULL, 0);
    assert_int_equal(f->s->ops->gc(f->s, &r, &err), 0);
    free(a);
}

/* keep=0: a normal exit unlinks every free segment. */
static void test_exit_keep_zero(void **state)
{
    fixture *f = *state;
    size_t n = 1u << 20;
    uint8_t *a = pattern(n, 15);

    child_put_resolve_exit(f, a, n);
    assert_int_equal(count_segments(f->dir), 0);
    free(a);
}

/* A segment whose owner died mid-put is reclaimed by gc. */
static void test_gc_dead_writer(void **state)
{
    fixture *f = *state;
    size_t n = 256u << 20;
    uint8_t *a = pattern(n, 16);
    int pfd[2];

    assert_int_equal(pipe(pfd), 0);
    pid_t pid = fork();
    if (pid == 0) {
        psi_store *cs;
        psi_err e;
        psi_put_opts o = {.lifetime = PSI_LIFE_REFCOUNT};
        psi_token t;
        if (psi_store_open(f->url, &cs, &e) != 0)
            _exit(1);
        (void)!write(pfd[1], "x", 1);
        for (;;)
            psi_store_put(cs, a, n, &o, &t, &e); /* until killed */
    }
    char c;
    assert_int_equal(read(pfd[0], &c, 1), 1);
    /* Killed at some point of its puts: WRITING, READY or FREE segments
     * of a dead owner remain. */
    while (count_segments(f->dir) == 0)
        sched_yield();
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    close(pfd[0]);
    close(pfd[1]);

    psi_gc_report r = {0};
    psi_err err = {0};
    assert_int_equal(f->s->ops->gc(f->s, &r, &err), 0);
    assert_true(r.objects_seen + r.tmp_removed >= 1);
    /* READY objects of the dead sender stay for their readers until TTL;
     * nothing half-written or free is left. */
    struct ls_count lc = {0};
    f->s->ops->ls(f->s, ls_cb, &lc, &err);
    assert_int_equal(count_segments(f->dir), lc.n);
    free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_urls),
        cmocka_unit_test_setup_teardown(test_put_resolve_reuses_segment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pool_dir_removed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unaligned_sizes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dedup_refcount, setup, teardown),
        cmocka_unit_test_setup_teardown(test_evict_on_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ttl_lifetime, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hold_keeps_bytes_until_release, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_tokens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupted_piece, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pool_full, setup_small, teardown),
        cmocka_unit_test_setup_teardown(test_ls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_object_survives_sender, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exit_keeps_warm_segment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exit_keep_zero, setup_small, teardown),
        cmocka_unit_test_setup_teardown(test_gc_dead_writer, setup, teardown),
    };
    srandom((unsigned)getpid());
    return cmocka_run_group_tests(tests, NULL, NULL);
}
