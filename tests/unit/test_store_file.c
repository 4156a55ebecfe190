/* Unit tests for the file connector and the generic store layer
 * (DESIGN §6, docs/protocol.md §5). Each test gets its own mkdtemp dir. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "psi_store.h"
#include "psi_token.h"

typedef struct fixture {
    char root[PATH_MAX];  /* the mkdtemp dir */
    char dir[PATH_MAX];   /* the store dir inside it, made by the first put */
    psi_store *s;
} fixture;

/* ---- helpers -------------------------------------------------------------- */

/* snprintf into a PATH_MAX buffer; a test path never truncates. */
static void __attribute__((format(printf, 2, 3))) pathf(char *out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, PATH_MAX, fmt, ap);
    va_end(ap);
    assert_true(n >= 0 && n < PATH_MAX);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void rm_rf(const char *path)
{
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    char url[PATH_MAX + 16];
    psi_err err = {0};

    pathf(f->root, "/tmp/psi-test-XXXXXX");
    assert_non_null(mkdtemp(f->root));
    pathf(f->dir, "%s/store", f->root);
    pathf(url, "file://%s", f->dir);
    assert_int_equal(psi_store_open(url, &f->s, &err), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    psi_store_close(f->s);
    rm_rf(f->root);
    free(f);
    return 0;
}

static uint8_t *pattern(size_t len, unsigned seed)
{
    uint8_t *p = malloc(len);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < len; i++) {
        x = x * 1103515245u + 12345u;
        p[i] = (uint8_t)(x >> 16);
    }
    return p;
}

static void put_ok(fixture *f, const void *buf, size_t len, uint8_t lifetime, uint32_t ttl,
                   psi_token *tok)
{
    psi_put_opts o = {.lifetime = lifetime, .ttl = ttl};
    psi_err err = {0};
    if (psi_store_put(f->s, buf, len, &o, tok, &err) != 0)
        fail_msg("put: %s", err.msg);
}

static void path_of(const fixture *f, const char *name, size_t n, char out[PATH_MAX])
{
    pathf(out, "%s/%.*s", f->dir, (int)n, name);
}

static struct stat stat_of(const fixture *f, const char *name, size_t n)
{
    char p[PATH_MAX];
    struct stat st;
    path_of(f, name, n, p);
    if (lstat(p, &st) != 0)
        fail_msg("lstat %s: %s", p, strerror(errno));
    return st;
}

static int exists_name(const fixture *f, const char *name, size_t n)
{
    char p[PATH_MAX];
    struct stat st;
    path_of(f, name, n, p);
    return lstat(p, &st) == 0;
}

/* Entries of a directory, not counting . and .. */
static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    if (!d)
        return -1;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

static void make_file(const char *path, const void *data, size_t len, time_t mtime)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
    if (mtime) {
        struct timespec ts[2] = {{mtime, 0}, {mtime, 0}};
        assert_int_equal(utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW), 0);
    }
}

static void expect_msg(const psi_err *err, const char *what)
{
    if (!strstr(err->msg, what))
        fail_msg("message '%s' does not mention '%s'", err->msg, what);
}

/* A pid that existed a moment ago and is dead now. */
static pid_t dead_pid(void)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(0);
    waitpid(pid, NULL, 0);
    return pid;
}

/* ---- put / get / release -------------------------------------------------- */

static void test_put_get_release_round_trip(void **state)
{
    fixture *f = *state;
    size_t len = (3u << 20) + 17; /* several hash/write chunks */
    uint8_t *buf = pattern(len, 1);
    psi_token tok;
    psi_obj obj = {0};
    psi_err err = {0};
    char hex[33];

    mode_t old = umask(0); /* modes must not depend on the umask */
    put_ok(f, buf, len, PSI_LIFE_REFCOUNT, 0, &tok);
    umask(old);

    psi_hash128 h = psi_hash_buf(buf, len);
    psi_hash_hex(&h, hex);
    assert_int_equal(tok.connector, PSI_CONN_FILE);
    assert_int_equal(tok.lifetime, PSI_LIFE_REFCOUNT);
    assert_true(tok.size == len);
    assert_true(tok.sum.lo == h.lo && tok.sum.hi == h.hi);
    assert_int_equal(tok.ttl, PSI_DEFAULT_TTL);
    assert_int_equal(tok.key_len, strlen(tok.key));
    assert_true(psi_key_valid(tok.key, tok.key_len));

    /* Key = <H>.<E>.<P>.<S>, E = now + ttl. */
    unsigned long long e, p, s;
    char kh[33];
    assert_int_equal(sscanf(tok.key, "%32[0-9a-f].%llu.%llu.%llu", kh, &e, &p, &s), 4);
    assert_string_equal(kh, hex);
    assert_true(p == (unsigned long long)getpid());
    long long now = (long long)time(NULL);
    assert_true((long long)e >= now + PSI_DEFAULT_TTL - 5 && (long long)e <= now + PSI_DEFAULT_TTL);

    /* Exactly the object and one reference, same inode, private modes. */
    assert_int_equal(count_entries(f->dir), 2);
    struct stat so = stat_of(f, hex, 32), sr = stat_of(f, tok.key, tok.key_len);
    assert_true(so.st_ino == sr.st_ino);
    assert_int_equal(so.st_nlink, 2);
    assert_int_equal(so.st_mode & 07777, 0600);
    struct stat sd;
    assert_int_equal(stat(f->dir, &sd), 0);
    assert_int_equal(sd.st_mode & 07777, 0700);

    assert_int_equal(f->s->ops->exists(f->s, &tok), 1);
    assert_int_equal(f->s->ops->get(f->s, &tok, &obj, &err), 0);
    assert_int_equal(obj.len, len);
    assert_memory_equal(obj.data, buf, len);
    assert_int_equal(f->s->ops->release(f->s, &tok, &err), 0);
    /* The mapping outlives the names. */
    assert_memory_equal(obj.data, buf, len);
    psi_obj_release(&obj);
    assert_null(obj.map_base);

    assert_int_equal(f->s->ops->exists(f->s, &tok), 0);
    assert_int_equal(count_entries(f->dir), 0);
    free(buf);
}

static void test_resolve_round_trip(void **state)
{
    fixture *f = *state;
    uint8_t *buf = pattern(100000, 2);
    psi_token tok;
    psi_obj obj;
    psi_err err = {0};

    put_ok(f, buf, 100000, PSI_LIFE_REFCOUNT, 0, &tok);
    assert_int_equal(psi_store_resolve(f->s, &tok, &obj, &err), 0);
    assert_int_equal(obj.len, 100000);
    assert_memory_equal(obj.data, buf, 100000);
    psi_obj_release(&obj);
    assert_int_equal(count_entries(f->dir), 0);
    free(buf);
}

static void test_one_byte_payload(void **state)
{
    fixture *f = *state;
    psi_token tok;
    psi_obj obj;
    psi_err err = {0};

    put_ok(f, "x", 1, PSI_LIFE_REFCOUNT, 0, &tok);
    assert_int_equal(psi_store_resolve(f->s, &tok, &obj, &err), 0);
    assert_int_equal(obj.len, 1);
    assert_int_equal(obj.data[0], 'x');
    psi_obj_release(&obj);
}

static void test_put_empty_rejected(void **state)
{
    fixture *f = *state;
    psi_token tok;
    psi_err err = {0};
    assert_int_equal(psi_store_put(f->s, "", 0, NULL, &tok, &err), -1);
    assert_int_equal(err.code, EINVAL);
}

static void test_token_survives_encode(void **state)
{
    fixture *f = *state;
    uint8_t *buf = pattern(5000, 3), body[PSI_TOKEN_MAX_BODY];
    psi_token tok, back;
    psi_obj obj;
    psi_err err = {0};

    put_ok(f, buf, 5000, PSI_LIFE_REFCOUNT, 0, &tok);
    int n = psi_token_encode(&tok, body, sizeof body, &err);
    assert_true(n > 0);
    assert_int_equal(psi_token_decode(body, (size_t)n, &back, &err), 0);
    assert_int_equal(psi_store_resolve(f->s, &back, &obj, &err), 0);
    assert_memory_equal(obj.data, buf, 5000);
    psi_obj_release(&obj);
    free(buf);
}

/* ---- dedup and lifetimes -------------------------------------------------- */

static void test_dedup_stores_once(void **state)
{
    fixture *f = *state;
    uint8_t *buf = pattern(200000, 4);
    psi_token t1, t2;
    psi_obj obj;
    psi_err err = {0};
    char hex[33];

    put_ok(f, buf, 200000, PSI_LIFE_REFCOUNT, 0, &t1);
    put_ok(f, buf, 200000, PSI_LIFE_REFCOUNT, 0, &t2);
    assert_string_not_equal(t1.key, t2.key);
    assert_memory_equal(t1.key, t2.key, 32);
    memcpy(hex, t1.key, 32);
    hex[32] = '\0';

    struct stat so = stat_of(f, hex, 32);
    assert_int_equal(so.st_nlink, 3);
    assert_true(stat_of(f, t1.key, t1.key_len).st_ino == so.st_ino);
    assert_true(stat_of(f, t2.key, t2.key_len).st_ino == so.st_ino);
    assert_int_equal(count_entries(f->dir), 3);

    assert_int_equal(psi_store_resolve(f->s, &t1, &obj, &err), 0);
    psi_obj_release(&obj);
    assert_int_equal(stat_of(f, hex, 32).st_nlink, 2);
    assert_true(exists_name(f, hex, 32));

    /* Releasing the last reference removes the object too. */
    assert_int_equal(psi_store_resolve(f->s, &t2, &obj, &err), 0);
    assert_memory_equal(obj.data, buf, 200000);
    psi_obj_release(&obj);
    assert_int_equal(count_entries(f->dir), 0);
    free(buf);
}

/* ref: a new reference without a new copy; each token resolves once and
 * the last release removes the object. ENOENT once the object is gone. */
static void test_ref_adds_a_link(void **state)
{
    fixture *f = *state;
    uint8_t *buf = pattern(100000, 9);
    psi_token t1, t2, t3;
    psi_obj obj;
    psi_err err = {0};
    char hex[33];

    put_ok(f, buf, 100000, PSI_LIFE_REFCOUNT, 0, &t1);
    assert_int_equal(psi_store_ref(f->s, &t1, &t2, &err), 0);
    assert_string_not_equal(t1.key, t2.key);
    assert_memory_equal(t1.key, t2.key, 32);
    assert_true(t2.size == t1.size && t2.sum.lo == t1.sum.lo && t2.sum.hi == t1.sum.hi);
    memcpy(hex, t1.key, 32);
    hex[32] = '\0';
    assert_int_equal(stat_of(f, hex, 32).st_nlink, 3);

    assert_int_equal(psi_store_resolve(f->s, &t1, &obj, &err), 0);
    psi_obj_release(&obj);
    /* A ref of a token already resolved still works while the object lives. */
    assert_int_equal(psi_store_ref(f->s, &t1, &t3, &err), 0);
    assert_int_equal(psi_store_resolve(f->s, &t2, &obj, &err), 0);
    assert_memory_equal(obj.data, buf, 100000);
    psi_obj_release(&obj);
    assert_int_equal(psi_store_resolve(f->s, &t3, &obj, &err), 0);
    psi_obj_release(&obj);
    assert_int_equal(count_entries(f->dir), 0);

    assert_int_equal(psi_store_ref(f->s, &t1, &t3, &err), -1);
    assert_int_equal(err.code, ENOENT);
    free(buf);
}

static void test_different_payloads_different_objects(void **state)
{
    fixture *f = *state;
    uint8_t *a = pattern(4096, 5), *b = pattern(4096, 6);
    psi_token ta, tb;

    put_ok(f, a, 4096, PSI_LIFE_REFCOUNT, 0, &ta);
    put_ok(f, b, 4096, PSI_LIFE_REFCOUNT, 0, &tb);
    assert_memory_not_equal(ta.key, tb.key, 32);
    assert_int_equal(count_entries(f->dir), 4);
    free(a);
    free(b);
}

static void test_ttl_lifetime_keeps_ref(void **state)
{
    fixture *f = *state;
    uint8_t *buf = pattern(3000, 7);
    psi_token tok;
    psi_obj obj;
    psi_err err = {0};
    psi_gc_report r;

    put_ok(f, buf, 3000, PSI_LIFE_TTL, 30, &tok);
    assert_int_equal(tok.ttl, 30);
    unsigned long long e;
    assert_int_equal(sscanf(tok.key + 33, "%llu", &e), 1);
    assert_true((long long)e <= (long long)time(NULL) + 30);
    assert_true((long long)e >= (long long)time(NULL) + 25);

    assert_int_equal(psi_store_resolve(f->s, &tok, &obj, &err), 0);
    psi_obj_release(&obj);
    /* Still there, and resolvable again until it expires. */
    assert_int_equal(f->s->ops->exists(f->s, &tok), 1);
    assert_int_equal(psi_store_resolve(f->s, &tok, &obj, &err), 0);
    psi_obj_release(&obj);
    assert_int_equal(f->s->ops->gc(f->s, &r, &err), 0);
    assert_int_equal(r.refs_expired, 0);
    assert_int_equal(count_entries(f->dir), 2);
    free(buf);
}

static void test_evict_on_read(void **state)
{
    fixture *f = *state;
    uint8_t *buf = pattern(3000, 8);
    psi_token tok;
    psi_obj obj;
    psi_err err = {0};

    put_ok(f, buf, 3000, PSI_LIFE_EVICT_ON_READ, 0, &tok);
    assert_int_equal(tok.lifetime, PSI_LIFE_EVICT_ON_READ);
    assert_int_equal(psi_store_resolve(f->s, &tok, &obj, &err), 0);
    psi_obj_release(&obj);
    assert_int_equal(count_entries(f->dir), 0);
    /* A second read of a single-use token fails. */
    assert_int_equal(psi_store_resolve(f->s, &tok, &obj, &err), -1);
    assert_int_equal(err.code, EIO);
    free(buf);
}

static void test_release_is_idempotent(void **state)
{
    fixture *f = *state;
    psi_token tok;
    psi_err err = {0};

    put_ok(f, "abc", 3, PSI_LIFE_REFCOUNT, 0, &tok);
    assert_int_equal(f->s->ops->release(f->s, &tok, &err), 0);
    assert_int_equal(f->s->ops->release(f->s, &tok, &err), 0);
    assert_int_equal(count_entries(f->dir), 0);
}

/* ---- get: keys and damaged objects ---------------------------------------- */

static psi_token token_with_key(const char *key, size_t len, uint64_t size)
{
    psi_token t = {0};
    t.connector = PSI_CONN_FILE;
    t.lifetime = PSI_LIFE_REFCOUNT;
    t.size = size;
    t.key_len = (uint8_t)len;
    memcpy(t.key, key, len);
    return t;
}

static void expect_get_eio(fixture *f, const psi_token *t)
{
    psi_obj obj = {0};
    psi_err err = {0};
    assert_int_equal(f->s->ops->get(f->s, t, &obj, &err), -1);
    assert_int_equal(err.code, EIO);
    assert_null(obj.map_base);
    assert_int_equal(psi_store_resolve(f->s, t, &obj, &err), -1);
    assert_int_equal(err.code, EIO);
}

static void test_get_rejects_foreign_keys(void **state)
{
    fixture *f = *state;
    char p[PATH_MAX];
    static const char hex[] = "0123456789abcdef0123456789abcdef";

    /* Real files of the right size wherever a bad key could lead, so a
     * get that used the key as a path would succeed. */
    put_ok(f, "seed", 4, PSI_LIFE_REFCOUNT, 0, &(psi_token){0});
    pathf(p, "%s/x", f->root);
    make_file(p, "1234", 4, 0);
    pathf(p, "%s/a", f->dir);
    assert_int_equal(mkdir(p, 0700), 0);
    pathf(p, "%s/a/b", f->dir);
    make_file(p, "1234", 4, 0);
    path_of(f, hex, 32, p);
    make_file(p, "1234", 4, 0);
    path_of(f, "tmp.1.2", 7, p);
    make_file(p, "1234", 4, 0);
    pathf(p, "%s/%s.1.2.3", f->dir, "0123456789ABCDEF0123456789ABCDEF");
    make_file(p, "1234", 4, 0);

    static const char *const keys[] = {
        "../x", "a/b", "..", ".", "x", "a", "tmp.1.2", hex,
        "0123456789ABCDEF0123456789ABCDEF.1.2.3",            /* uppercase */
        "0123456789abcdef0123456789abcdef.1.2",              /* too few parts */
        "0123456789abcdef0123456789abcdef.1.2.3.4",          /* too many */
        "0123456789abcdef0123456789abcdef.1.0.3",            /* pid 0 */
        "0123456789abcdef0123456789abcdef.1.-2.3",
        "0123456789abcdef0123456789abcdef..1.2",
        "0123456789abcdef0123456789abcde.1.2.3",             /* 31 hex */
        "0123456789abcdef0123456789abcdef.99999999999999999999999.2.3",
        "",
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        psi_token t = token_with_key(keys[i], strlen(keys[i]), 4);
        expect_get_eio(f, &t);
        assert_int_equal(f->s->ops->exists(f->s, &t), 0);
    }
    /* A key whose length byte and string disagree. */
    psi_token t = token_with_key("a/b", 3, 4);
    t.key_len = 1;
    expect_get_eio(f, &t);
}

static void test_get_wrong_size(void **state)
{
    fixture *f = *state;
    uint8_t *buf = pattern(10000, 9);
    psi_token tok, t2;
    char p[PATH_MAX];
    psi_err err = {0};
    psi_obj obj;

    put_ok(f, buf, 10000, PSI_LIFE_REFCOUNT, 0, &tok);
    t2 = tok;
    t2.size = 9999; /* token disagrees with the file */
    expect_get_eio(f, &t2);

    path_of(f, tok.key, tok.key_len, p);
    assert_int_equal(truncate(p, 5000), 0); /* file disagrees with the token */
    assert_int_equal(f->s->ops->get(f->s, &tok, &obj, &err), -1);
    assert_int_equal(err.code, EIO);
    expect_msg(&err, tok.key);
    free(buf);
}

static void test_get_refuses_symlink(void **state)
{
    fixture *f = *state;
    psi_token tok;
    char p[PATH_MAX], target[PATH_MAX];

    put_ok(f, "1234", 4, PSI_LIFE_REFCOUNT, 0, &tok);
    path_of(f, tok.key, tok.key_len, p);
    pathf(target, "%s/x", f->root);
    make_file(target, "1234", 4, 0);
    assert_int_equal(unlink(p), 0);
    assert_int_equal(symlink(target, p), 0);
    expect_get_eio(f, &tok);
}

static void test_resolve_corrupted_payload(void **state)
{
    fixture *f = *state;
    uint8_t *buf = pattern(70000, 10);
    psi_token tok;
    psi_obj obj;
    psi_err err = {0};
    char p[PATH_MAX];

    put_ok(f, buf, 70000, PSI_LIFE_REFCOUNT, 0, &tok);
    path_of(f, tok.key, 32, p); /* the object: same inode as the ref */
    int fd = open(p, O_WRONLY);
    assert_true(fd >= 0);
    uint8_t c = (uint8_t)(buf[12345] ^ 0x40);
    assert_int_equal(pwrite(fd, &c, 1, 12345), 1);
    close(fd);

    assert_int_equal(psi_store_resolve(f->s, &tok, &obj, &err), -1);
    assert_int_equal(err.code, EIO);
    expect_msg(&err, "checksum");
    expect_msg(&err, tok.key);
    assert_null(obj.map_base);
    /* The reference is kept for diagnosis and gc. */
    assert_true(exists_name(f, tok.key, tok.key_len));
    free(buf);
}

static void test_resolve_wrong_hash_in_token(void **state)
{
    fixture *f = *state;
    psi_token tok;
    psi_obj obj;
    psi_err err = {0};

    put_ok(f, "hello", 5, PSI_LIFE_REFCOUNT, 0, &tok);
    tok.sum.hi ^= 1;
    assert_int_equal(psi_store_resolve(f->s, &tok, &obj, &err), -1);
    assert_int_equal(err.code, EIO);
    expect_msg(&err, "checksum");
}

static void test_resolve_missing_object(void **state)
{
    fixture *f = *state;
    psi_token tok;
    psi_obj obj;
    psi_err err = {0};
    char p[PATH_MAX];

    put_ok(f, "hello", 5, PSI_LIFE_REFCOUNT, 0, &tok);
    path_of(f, tok.key, tok.key_len, p);
    assert_int_equal(unlink(p), 0);
    assert_int_equal(psi_store_resolve(f->s, &tok, &obj, &err), -1);
    assert_int_equal(err.code, EIO);
    expect_msg(&err, tok.key);
}

/* ---- gc ------------------------------------------------------------------- */

static void test_gc(void **state)
{
    fixture *f = *state;
    psi_token fresh;
    psi_gc_report r;
    psi_err err = {0};
    char p[PATH_MAX], q[PATH_MAX];
    time_t old = time(NULL) - 3600;
    pid_t dead = dead_pid();
    static const char ho[] = "00000000000000000000000000000001"; /* old, expired ref */
    static const char hn[] = "00000000000000000000000000000002"; /* fresh, unreferenced */
    static const char hu[] = "00000000000000000000000000000003"; /* old, unreferenced */

    put_ok(f, "fresh payload", 13, PSI_LIFE_REFCOUNT, 0, &fresh); /* kept: ref not expired */

    path_of(f, ho, 32, p);
    make_file(p, "0123456789", 10, old);
    pathf(q, "%s/%s.100.1.1", f->dir, ho);
    assert_int_equal(link(p, q), 0);
    path_of(f, hn, 32, p);
    make_file(p, "nn", 2, 0);
    path_of(f, hu, 32, p);
    make_file(p, "uuuu", 4, old);

    pathf(p, "%s/tmp.%d.0", f->dir, (int)dead);      /* dead, idle: removed */
    make_file(p, "ttttt", 5, old);
    pathf(p, "%s/tmp.%d.1", f->dir, (int)dead);      /* dead, just written */
    make_file(p, "t", 1, 0);
    pathf(p, "%s/tmp.%d.2", f->dir, (int)getpid());  /* alive */
    make_file(p, "t", 1, old);

    /* Names that are not ours: never removed, only counted. */
    static const char *const foreign[] = {
        "notes.txt", "tmp.0.1", "tmp.x.1", "tmp.1", "00000000000000000000000000000004.1.2",
        "0000000000000000000000000000000A", "0000000000000000000000000000000.100.1.1",
    };
    for (size_t i = 0; i < sizeof foreign / sizeof foreign[0]; i++) {
        path_of(f, foreign[i], strlen(foreign[i]), p);
        make_file(p, "z", 1, old);
    }
    int before = count_entries(f->dir);

    assert_int_equal(f->s->ops->gc(f->s, &r, &err), 0);
    assert_int_equal(r.refs_seen, 2);
    assert_int_equal(r.refs_expired, 1);
    assert_int_equal(r.objects_seen, 4);
    assert_int_equal(r.objects_removed, 2);          /* ho after its ref went, and hu */
    assert_int_equal(r.tmp_removed, 1);
    assert_int_equal(r.unknown_seen, 7);
    assert_int_equal(r.bytes_freed, 10 + 4 + 5);
    assert_int_equal(count_entries(f->dir), before - 4);

    assert_false(exists_name(f, ho, 32));
    assert_false(exists_name(f, hu, 32));
    assert_true(exists_name(f, hn, 32));
    assert_true(exists_name(f, fresh.key, fresh.key_len));
    assert_true(exists_name(f, fresh.key, 32));
    for (size_t i = 0; i < sizeof foreign / sizeof foreign[0]; i++)
        assert_true(exists_name(f, foreign[i], strlen(foreign[i])));
    pathf(p, "tmp.%d.1", (int)dead);
    assert_true(exists_name(f, p, strlen(p)));
    pathf(p, "tmp.%d.2", (int)getpid());
    assert_true(exists_name(f, p, strlen(p)));
}

static void test_gc_missing_dir(void **state)
{
    fixture *f = *state;
    psi_gc_report r;
    psi_err err = {0};
    assert_int_equal(f->s->ops->gc(f->s, &r, &err), 0);
    assert_int_equal(r.objects_seen + r.refs_seen + r.unknown_seen, 0);
}

/* ---- put failures --------------------------------------------------------- */

static void test_put_enotdir(void **state)
{
    fixture *f = *state;
    char file[PATH_MAX], url[PATH_MAX + 16], buf[8] = {0};
    psi_store *s;
    psi_token tok;
    psi_err err = {0};

    pathf(file, "%s/plain", f->root);
    make_file(file, "keep", 4, 0);
    pathf(url, "file://%s/sub/store", file);
    assert_int_equal(psi_store_open(url, &s, &err), 0);
    assert_int_equal(psi_store_put(s, "payload", 7, NULL, &tok, &err), -1);
    assert_int_equal(err.code, ENOTDIR);
    expect_msg(&err, file);
    psi_store_close(s);

    /* Nothing left behind, the file untouched. */
    assert_int_equal(count_entries(f->root), 1);
    int fd = open(file, O_RDONLY);
    assert_int_equal(read(fd, buf, sizeof buf), 4);
    close(fd);
    assert_string_equal(buf, "keep");
}

/* A write that fails half way (here EFBIG from RLIMIT_FSIZE, as ENOSPC or
 * EDQUOT would on a full disk) leaves no temp file and reports errno. */
static void test_put_fails_mid_write(void **state)
{
    fixture *f = *state;
    size_t len = 1u << 20;
    uint8_t *buf = pattern(len, 11);
    struct rlimit old, lim;
    psi_token tok;
    psi_err err = {0};

    put_ok(f, "x", 1, PSI_LIFE_REFCOUNT, 0, &tok); /* the dir exists */
    assert_int_equal(count_entries(f->dir), 2);
    signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 300000; /* more than one chunk, less than the payload */
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    int rc = psi_store_put(f->s, buf, len, NULL, &tok, &err);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, SIG_DFL);

    assert_int_equal(rc, -1);
    assert_int_equal(err.code, EFBIG);
    expect_msg(&err, f->dir);
    assert_int_equal(count_entries(f->dir), 2);
    free(buf);
}

static void test_put_recreates_removed_dir(void **state)
{
    fixture *f = *state;
    psi_token tok;
    psi_obj obj;
    psi_err err = {0};

    put_ok(f, "one", 3, PSI_LIFE_REFCOUNT, 0, &tok);
    rm_rf(f->dir);
    put_ok(f, "two", 3, PSI_LIFE_REFCOUNT, 0, &tok);
    assert_int_equal(psi_store_resolve(f->s, &tok, &obj, &err), 0);
    assert_memory_equal(obj.data, "two", 3);
    psi_obj_release(&obj);
}

/* ---- processes and threads ------------------------------------------------ */

static void test_forked_child_names_differ(void **state)
{
    fixture *f = *state;
    psi_token mine, theirs;
    int fds[2];
    char hex[33];

    put_ok(f, "same bytes", 10, PSI_LIFE_REFCOUNT, 0, &mine);
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        psi_token t;
        psi_err err = {0};
        int ok = psi_store_put(f->s, "same bytes", 10, NULL, &t, &err) == 0;
        _exit(ok && write(fds[1], &t, sizeof t) == (ssize_t)sizeof t ? 0 : 1);
    }
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(read(fds[0], &theirs, sizeof theirs), (ssize_t)sizeof theirs);
    close(fds[0]);
    close(fds[1]);

    assert_string_not_equal(mine.key, theirs.key);
    memcpy(hex, mine.key, 32);
    hex[32] = '\0';
    assert_int_equal(stat_of(f, hex, 32).st_nlink, 3);
}

typedef struct racer {
    fixture *f;
    const uint8_t *buf;
    size_t len;
    int failures;
} racer;

/* Many threads putting and resolving the same bytes: exercises the dedup
 * and last-link races of publish/release. */
static void *race_thread(void *arg)
{
    racer *r = arg;
    for (int i = 0; i < 300; i++) {
        psi_token tok;
        psi_obj obj;
        psi_err err = {0};
        if (psi_store_put(r->f->s, r->buf, r->len, NULL, &tok, &err) != 0 ||
            psi_store_resolve(r->f->s, &tok, &obj, &err) != 0 ||
            memcmp(obj.data, r->buf, r->len) != 0) {
            r->failures++;
            continue;
        }
        psi_obj_release(&obj);
    }
    return NULL;
}

static void test_concurrent_same_payload(void **state)
{
    fixture *f = *state;
    enum { N = 8 };
    pthread_t th[N];
    racer r[N];
    uint8_t *buf = pattern(8192, 12);

    for (int i = 0; i < N; i++) {
        r[i] = (racer){.f = f, .buf = buf, .len = 8192};
        assert_int_equal(pthread_create(&th[i], NULL, race_thread, &r[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(r[i].failures, 0);
    }
    /* Every reference was released, so the last release removed <H>. */
    assert_int_equal(count_entries(f->dir), 0);
    free(buf);
}

/* ---- URLs, defaults, lookup ----------------------------------------------- */

static void expect_open_error(const char *url, int code, const char *what)
{
    psi_store *s = (psi_store *)1;
    psi_err err = {0};
    assert_int_equal(psi_store_open(url, &s, &err), -1);
    assert_null(s);
    assert_int_equal(err.code, code);
    expect_msg(&err, what);
}

static void test_open_urls(void **state)
{
    expect_open_error("zmq://host", EINVAL, "no port in");
    expect_open_error("nfs://x/y", EINVAL, "unknown connector 'nfs'");
    expect_open_error("/tmp/dir", EINVAL, "malformed URL");
    expect_open_error("://x", EINVAL, "malformed URL");
    expect_open_error("file:/tmp/x", EINVAL, "malformed URL");
    expect_open_error("file://", EINVAL, "malformed URL");
    expect_open_error("file://relative/dir", EINVAL, "malformed URL");
    expect_open_error("file://otherhost/dir", EINVAL, "malformed URL");
    expect_open_error("file:///x%zz", EINVAL, "%");
    expect_open_error("file:///x%00y", EINVAL, "%");
}

static void test_open_escaped_and_localhost(void **state)
{
    fixture *f = *state;
    char url[PATH_MAX + 32], p[PATH_MAX];
    psi_store *s;
    psi_token tok;
    psi_err err = {0};
    struct stat st;

    pathf(url, "file://localhost%s/a%%20b/", f->root);
    assert_int_equal(psi_store_open(url, &s, &err), 0);
    assert_string_equal(s->url, url);
    assert_int_equal(psi_store_put(s, "abc", 3, NULL, &tok, &err), 0);
    pathf(p, "%s/a b/%s", f->root, tok.key);
    assert_int_equal(stat(p, &st), 0);
    psi_store_close(s);
}

static void test_default_store(void **state)
{
    psi_store *s;
    psi_err err = {0};
    char want[64];
    struct stat st;

    const char *d = psi_store_default_dir();
    assert_non_null(d);
    if (stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0) {
        pathf(want, "/dev/shm/psi-%u", (unsigned)geteuid());
        assert_string_equal(d, want);
    }
    assert_ptr_equal(d, psi_store_default_dir());
    for (int i = 0; i < 2; i++) {
        assert_int_equal(psi_store_open(i ? "" : NULL, &s, &err), 0);
        assert_ptr_equal(s->ops, &psi_store_file_ops);
        assert_string_equal(s->url + strlen("file://"), d);
        psi_store_close(s);
    }
}

static void test_resolve_other_connectors(void **state)
{
    fixture *f = *state;
    psi_obj obj;
    psi_err err = {0};
    psi_token t = token_with_key("k", 1, 4);

    t.connector = PSI_CONN_ZMQ;
    assert_int_equal(psi_store_resolve(f->s, &t, &obj, &err), -1);
    assert_int_equal(err.code, EIO);
    expect_msg(&err, "is not a zmq store key");
    t.connector = 9;
    assert_int_equal(psi_store_resolve(f->s, &t, &obj, &err), -1);
    assert_int_equal(err.code, EIO);

    /* No local store: a file token goes to the default file store; this
     * key names nothing there. Read-only: the default dir is not created. */
    psi_token tok = token_with_key("0123456789abcdef0123456789abcdef.1.1.1", 38, 4);
    assert_int_equal(psi_store_resolve(NULL, &tok, &obj, &err), -1);
    assert_int_equal(err.code, EIO);
    expect_msg(&err, tok.key);
}

static void test_ops_lookup(void **state)
{
    assert_ptr_equal(psi_store_ops_by_id(PSI_CONN_FILE), &psi_store_file_ops);
    assert_ptr_equal(psi_store_ops_by_id(PSI_CONN_REDIS), &psi_store_redis_ops);
    assert_ptr_equal(psi_store_ops_by_id(PSI_CONN_ZMQ), &psi_store_zmq_ops);
    assert_ptr_equal(psi_store_ops_by_id(PSI_CONN_SHM), &psi_store_shm_ops);
    assert_null(psi_store_ops_by_id(0));
    assert_ptr_equal(psi_store_ops_by_scheme("file", 4), &psi_store_file_ops);
    assert_ptr_equal(psi_store_ops_by_scheme("file://x", 4), &psi_store_file_ops);
    assert_null(psi_store_ops_by_scheme("fil", 3));
    assert_null(psi_store_ops_by_scheme("files", 5));
    assert_string_equal(psi_store_file_ops.scheme, "file");
    assert_int_equal(psi_store_file_ops.id, PSI_CONN_FILE);
}

/* ---- ls ------------------------------------------------------------------- */

typedef struct ls_seen {
    psi_obj_info o[8];
    size_t n;
    size_t stop_after; /* 0: never stop */
} ls_seen;

static int ls_take(const psi_obj_info *o, void *arg)
{
    ls_seen *v = arg;
    assert_true(v->n < 8);
    v->o[v->n++] = *o;
    return v->stop_after && v->n >= v->stop_after;
}

static const psi_obj_info *ls_find(const ls_seen *v, const char *key)
{
    for (size_t i = 0; i < v->n; i++)
        if (strcmp(v->o[i].key, key) == 0)
            return &v->o[i];
    return NULL;
}

static void ls_ok(fixture *f, ls_seen *v)
{
    psi_err err = {0};
    memset(v, 0, sizeof *v);
    if (f->s->ops->ls(f->s, ls_take, v, &err) != 0)
        fail_msg("ls: %s", err.msg);
}

static void test_ls(void **state)
{
    fixture *f = *state;
    psi_token a1, a2, b;
    ls_seen v;
    char p[PATH_MAX], where[PATH_MAX];
    time_t old = time(NULL) - 3600;
    static const char hu[] = "00000000000000000000000000000003"; /* old, unreferenced */

    assert_non_null(f->s->ops->ls);
    ls_ok(f, &v); /* the directory does not exist yet: nothing, no error */
    assert_int_equal(v.n, 0);

    put_ok(f, "payload a", 9, PSI_LIFE_REFCOUNT, 100, &a1);
    put_ok(f, "payload a", 9, PSI_LIFE_REFCOUNT, 50, &a2); /* same bytes: one object */
    put_ok(f, "payload b!", 10, PSI_LIFE_TTL, 0, &b);
    path_of(f, hu, 32, p);
    make_file(p, "uuuu", 4, old);
    /* Not objects: a temp file, foreign names, a symlink with an object name. */
    pathf(p, "%s/tmp.%d.7", f->dir, (int)getpid());
    make_file(p, "t", 1, 0);
    path_of(f, "notes.txt", 9, p);
    make_file(p, "z", 1, 0);
    path_of(f, "00000000000000000000000000000009", 32, p);
    assert_int_equal(symlink("/etc/passwd", p), 0);

    ls_ok(f, &v);
    assert_int_equal(v.n, 3);
    char ka[33], kb[33];
    memcpy(ka, a1.key, 32), ka[32] = '\0';
    memcpy(kb, b.key, 32), kb[32] = '\0';
    assert_memory_equal(a1.key, a2.key, 32);

    const psi_obj_info *o = ls_find(&v, ka);
    assert_non_null(o);
    assert_int_equal(o->size, 9);
    assert_int_equal(o->refs, 2);
    assert_true(o->expires >= 49 && o->expires <= 50); /* the earlier expiry */
    assert_true(o->age >= 0 && o->age <= 5);
    assert_int_equal(o->lifetime, -1);
    pathf(where, "%s/%s", f->dir, ka);
    assert_string_equal(o->where, where);

    o = ls_find(&v, kb);
    assert_non_null(o);
    assert_int_equal(o->size, 10);
    assert_int_equal(o->refs, 1);
    assert_true(o->expires > PSI_DEFAULT_TTL - 5 && o->expires <= PSI_DEFAULT_TTL);

    o = ls_find(&v, hu);
    assert_non_null(o);
    assert_int_equal(o->size, 4);
    assert_int_equal(o->refs, 0);
    assert_int_equal(o->expires, 0); /* past the grace: gc takes it */
    assert_true(o->age >= 3600 && o->age < 3610);

    /* The walk stops when the callback says so. */
    memset(&v, 0, sizeof v);
    v.stop_after = 1;
    psi_err err = {0};
    assert_int_equal(f->s->ops->ls(f->s, ls_take, &v, &err), 0);
    assert_int_equal(v.n, 1);

    /* A resolved refcount object is gone from the listing. */
    psi_obj obj;
    assert_int_equal(psi_store_resolve(f->s, &a1, &obj, &err), 0);
    psi_obj_release(&obj);
    ls_ok(f, &v);
    assert_int_equal(ls_find(&v, ka)->refs, 1);
    assert_int_equal(psi_store_resolve(f->s, &a2, &obj, &err), 0);
    psi_obj_release(&obj);
    ls_ok(f, &v);
    assert_null(ls_find(&v, ka));
    assert_int_equal(v.n, 2);
}

/* References whose <H> name is gone (see publish) still make an object;
 * `where` then names a reference. */
static void test_ls_refs_without_object_name(void **state)
{
    fixture *f = *state;
    psi_token t;
    ls_seen v;
    char p[PATH_MAX], where[PATH_MAX];

    put_ok(f, "orphaned refs", 13, PSI_LIFE_REFCOUNT, 0, &t);
    path_of(f, t.key, 32, p);
    assert_int_equal(unlink(p), 0);
    ls_ok(f, &v);
    assert_int_equal(v.n, 1);
    assert_memory_equal(v.o[0].key, t.key, 32);
    assert_int_equal(v.o[0].refs, 1);
    assert_int_equal(v.o[0].size, 13);
    pathf(where, "%s/%s", f->dir, t.key);
    assert_string_equal(v.o[0].where, where);
}

/* A directory too long for `where` keeps its tail. */
static void test_ls_long_dir(void **state)
{
    fixture *f = *state;
    char dir[PATH_MAX], url[PATH_MAX + 16];
    psi_store *s;
    psi_token t;
    psi_err err = {0};
    ls_seen v = {0};

    pathf(dir, "%s/a-rather-long-directory-name/and-another-long-level-below-it/x", f->root);
    pathf(url, "file://%s", dir);
    assert_int_equal(psi_store_open(url, &s, &err), 0);
    assert_int_equal(psi_store_put(s, "x", 1, NULL, &t, &err), 0);
    assert_int_equal(s->ops->ls(s, ls_take, &v, &err), 0);
    assert_int_equal(v.n, 1);
    assert_int_equal(strlen(v.o[0].where), sizeof v.o[0].where - 1);
    assert_memory_equal(v.o[0].where, "...", 3);
    assert_string_equal(v.o[0].where + strlen(v.o[0].where) - 32, v.o[0].key);
    psi_store_close(s);
}

/* A store directory that cannot be read is an error naming it. */
static void test_ls_not_a_directory(void **state)
{
    fixture *f = *state;
    psi_err err = {0};
    ls_seen v = {0};

    make_file(f->dir, "x", 1, 0);
    assert_int_equal(f->s->ops->ls(f->s, ls_take, &v, &err), -1);
    assert_int_equal(err.code, ENOTDIR);
    expect_msg(&err, f->dir);
    assert_int_equal(v.n, 0);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_put_get_release_round_trip),
        T(test_resolve_round_trip),
        T(test_one_byte_payload),
        T(test_put_empty_rejected),
        T(test_token_survives_encode),
        T(test_dedup_stores_once),
        T(test_ref_adds_a_link),
        T(test_different_payloads_different_objects),
        T(test_ttl_lifetime_keeps_ref),
        T(test_evict_on_read),
        T(test_release_is_idempotent),
        T(test_get_rejects_foreign_keys),
        T(test_get_wrong_size),
        T(test_get_refuses_symlink),
        T(test_resolve_corrupted_payload),
        T(test_resolve_wrong_hash_in_token),
        T(test_resolve_missing_object),
        T(test_gc),
        T(test_gc_missing_dir),
        T(test_put_enotdir),
        T(test_put_fails_mid_write),
        T(test_put_recreates_removed_dir),
        T(test_forked_child_names_differ),
        T(test_concurrent_same_payload),
        T(test_open_urls),
        T(test_open_escaped_and_localhost),
        T(test_default_store),
        T(test_resolve_other_connectors),
        T(test_ops_lookup),
        T(test_ls),
        T(test_ls_refs_without_object_name),
        T(test_ls_long_dir),
        T(test_ls_not_a_directory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
