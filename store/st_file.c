/* st_file: the file connector (DESIGN §6, docs/protocol.md §5).
 *
 * Layout of the store directory (0700, files 0600):
 *   <H>              the object, H = xxh3-128 as 32 lowercase hex digits
 *   <H>.<E>.<P>.<S>  one hard link per issued token (the token's key):
 *                    E = expiry (unix s), P = sender pid, S = sequence
 *   tmp.<P>.<S>      an object being written
 *
 * The inode's link count is the reference count: each token holds one
 * name, the object name <H> is what later puts of the same bytes find
 * (dedup), and the last reader removes <H> when it is the only name left.
 *
 * Every operation works on full paths rather than on a directory fd kept
 * open: an application may close fds it did not open (daemons often close
 * them all), and a dirfd reused by the application behind our back would
 * make us create files wherever that fd points. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "psi_err.h"
#include "psi_store.h"
#include "psi_text.h"

#define ST_HEX_LEN 32            /* object name length, §5 */
#define ST_CHUNK (256u << 10)    /* hashed then written while still in cache */
#define ST_GRACE 60              /* seconds before gc touches an unreferenced file */
#define ST_NAME_MAX 128          /* longest name we create or accept (a key) */
#define ST_RETRIES 16            /* name collisions and dedup races, see put */

typedef struct st_file {
    psi_store base;
    bool is_default;   /* the per-user default dir: ownership is enforced */
    atomic_int ready;  /* the directory exists and passed the checks */
    size_t dir_len;
    char dir[PATH_MAX];
} st_file;

/* Sequence numbers of this process's names; the pid, re-read on every put,
 * keeps a forked child's names apart from its parent's. */
static atomic_uint_fast64_t st_seq;

/* ---- names ---------------------------------------------------------------- */

enum st_kind { ST_OTHER, ST_OBJECT, ST_REF, ST_TMP };

typedef struct st_name {
    enum st_kind kind;
    uint64_t expiry; /* ST_REF */
    uint64_t pid;    /* ST_REF, ST_TMP */
} st_name;

/* Reads 1..max_digits decimal digits up to '.' or the end; *p moves past
 * them. Rejects overflow, so a name maps to exactly one number. */
static bool take_num(const char **p, const char *end, int max_digits, uint64_t *v)
{
    const char *s = *p;
    uint64_t n = 0;
    int digits = 0;

    while (s < end && *s >= '0' && *s <= '9') {
        unsigned d = (unsigned)(*s - '0');
        if (++digits > max_digits || n > (UINT64_MAX - d) / 10)
            return false;
        n = n * 10 + d;
        s++;
    }
    if (digits == 0)
        return false;
    *p = s;
    *v = n;
    return true;
}

static bool take_dot(const char **p, const char *end)
{
    if (*p >= end || **p != '.')
        return false;
    (*p)++;
    return true;
}

/* Classifies a directory entry or a key by the patterns of §5. Anything
 * that is not exactly one of them is ST_OTHER, which gc never removes. A
 * pid must be >= 1: gc feeds it to kill(), where 0 means a process group. */
static enum st_kind st_name_parse(const char *s, size_t len, st_name *out)
{
    const char *p, *end = s + len;
    uint64_t seq;

    memset(out, 0, sizeof *out);
    if (len == ST_HEX_LEN && psi_is_lower_hex(s, len))
        return out->kind = ST_OBJECT;
    if (len > ST_HEX_LEN && psi_is_lower_hex(s, ST_HEX_LEN)) {
        p = s + ST_HEX_LEN;
        if (take_dot(&p, end) && take_num(&p, end, 20, &out->expiry) &&
            take_dot(&p, end) && take_num(&p, end, 10, &out->pid) && out->pid > 0 &&
            out->pid <= INT_MAX && take_dot(&p, end) && take_num(&p, end, 20, &seq) &&
            p == end)
            return out->kind = ST_REF;
    } else if (len > 4 && memcmp(s, "tmp.", 4) == 0) {
        p = s + 4;
        if (take_num(&p, end, 10, &out->pid) && out->pid > 0 && out->pid <= INT_MAX &&
            take_dot(&p, end) && take_num(&p, end, 20, &seq) && p == end)
            return out->kind = ST_TMP;
    }
    memset(out, 0, sizeof *out);
    return ST_OTHER;
}

/* A token key is usable only if it names a reference, and nothing else:
 * checked before the key goes anywhere near a path (DESIGN §6). */
static bool st_key_ok(const psi_token *tok)
{
    st_name n;

    return psi_key_valid(tok->key, tok->key_len) &&
           strnlen(tok->key, sizeof tok->key) == tok->key_len &&
           st_name_parse(tok->key, tok->key_len, &n) == ST_REF;
}

/* <dir>/<name>. open() checked that dir + '/' + ST_NAME_MAX fits, and
 * every name is at most ST_NAME_MAX, so this never truncates. */
static void st_path(const st_file *f, char out[PATH_MAX], const char *name, size_t name_len)
{
    if (name_len > ST_NAME_MAX)
        name_len = ST_NAME_MAX;
    memcpy(out, f->dir, f->dir_len);
    out[f->dir_len] = '/';
    memcpy(out + f->dir_len + 1, name, name_len);
    out[f->dir_len + 1 + name_len] = '\0';
}

/* ---- the directory -------------------------------------------------------- */

/* mkdir -p with mode 0700 for every directory it creates. */
static int mkdir_p(const char *dir)
{
    char path[PATH_MAX];

    snprintf(path, sizeof path, "%s", dir);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0700) < 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(path, 0700) == 0)
        return chmod(path, 0700); /* the umask must not widen or narrow it */
    return errno == EEXIST ? 0 : -1;
}

/* The default directory sits in a world-writable place (/dev/shm), where
 * another user could have created it first to read or plant our objects:
 * it must be a real directory that we own, and it is made private. A dir
 * named by PSI_STORE is the user's choice (a group share, say) and only
 * has to be a directory. */
static int dir_check(const st_file *f, psi_err *err)
{
    struct stat st;

    if ((f->is_default ? lstat(f->dir, &st) : stat(f->dir, &st)) < 0)
        return psi_fail(err, errno, "file store %s: %s", f->dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return psi_fail(err, ENOTDIR, "file store %s: not a directory", f->dir);
    if (!f->is_default)
        return 0;
    if (st.st_uid != geteuid())
        return psi_fail(err, EACCES, "file store %s: owned by uid %u, not by us; refusing "
                        "to use it", f->dir, (unsigned)st.st_uid);
    if ((st.st_mode & 077) && chmod(f->dir, 0700) < 0)
        return psi_fail(err, errno, "file store %s: chmod 0700: %s", f->dir, strerror(errno));
    return 0;
}

static int dir_ready(st_file *f, psi_err *err)
{
    if (atomic_load_explicit(&f->ready, memory_order_acquire))
        return 0;
    if (mkdir_p(f->dir) < 0)
        return psi_fail(err, errno, "file store %s: cannot create directory: %s", f->dir,
                        strerror(errno));
    if (dir_check(f, err) < 0)
        return -1;
    atomic_store_explicit(&f->ready, 1, memory_order_release);
    return 0;
}

/* ---- put ------------------------------------------------------------------ */

/* Creates tmp.<pid>.<seq>. A name taken already (a recycled pid, or
 * another host on a shared file system) just moves to the next sequence;
 * a directory removed under us (rm -rf of /dev/shm/psi-*) is made again. */
static int tmp_create(st_file *f, char path[PATH_MAX], psi_err *err)
{
    bool remade = false;

    for (int i = 0; i < ST_RETRIES; i++) {
        char name[64];
        int n = snprintf(name, sizeof name, "tmp.%ld.%llu", (long)getpid(),
                         (unsigned long long)atomic_fetch_add(&st_seq, 1));
        st_path(f, path, name, (size_t)n);
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd >= 0)
            return fd;
        if (errno == ENOENT && !remade) {
            remade = true;
            atomic_store(&f->ready, 0);
            if (dir_ready(f, err) < 0)
                return -1;
            continue;
        }
        if (errno != EEXIST)
            break;
    }
    return psi_fail(err, errno, "file store %s: cannot create temp file: %s", f->dir,
                    strerror(errno));
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = EIO;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The one pass over the payload (DESIGN §8): each chunk is hashed and then
 * written while it is still in cache. */
static int write_hashed(int fd, const void *buf, size_t len, psi_hash128 *sum)
{
    psi_hasher *st = psi_hasher_new();
    const uint8_t *p = buf;
    int rc = 0;

    if (!st) {
        errno = ENOMEM;
        return -1;
    }
    while (len > 0 && rc == 0) {
        size_t n = len < ST_CHUNK ? len : ST_CHUNK;
        psi_hasher_update(st, p, n);
        rc = write_all(fd, p, n);
        p += n;
        len -= n;
    }
    *sum = psi_hasher_done(st);
    return rc;
}

/* Links a fresh reference name to `target`; on a name collision (see
 * tmp_create) takes the next sequence number. Fills key. */
static int ref_link(st_file *f, const char *target, const char *hex, uint64_t expiry,
                    char key[ST_NAME_MAX + 1])
{
    char path[PATH_MAX];

    for (int i = 0; i < ST_RETRIES; i++) {
        int n = snprintf(key, ST_NAME_MAX + 1, "%s.%llu.%ld.%llu", hex,
                         (unsigned long long)expiry, (long)getpid(),
                         (unsigned long long)atomic_fetch_add(&st_seq, 1));
        st_path(f, path, key, (size_t)n);
        if (link(target, path) == 0)
            return 0;
        if (errno != EEXIST)
            return -1;
    }
    return -1;
}

/* Gives the written temp file its names: the object name <H> (unless the
 * same bytes are stored already) and one reference. On return the caller
 * unlinks the temp name either way.
 *
 * New object: link tmp -> <H> first, then tmp -> ref. While both exist the
 * link count is >= 2, so no reader or gc ever sees <H> as unreferenced.
 * Known object: link <H> -> ref, so the bytes are stored once. If <H>
 * vanishes between our EEXIST and that link (its last reader removed it),
 * link fails with ENOENT and we go round again. */
static int publish(st_file *f, const char *tmp, const char *hex, size_t len,
                   uint64_t expiry, char key[ST_NAME_MAX + 1])
{
    char obj[PATH_MAX];
    struct stat st;

    st_path(f, obj, hex, ST_HEX_LEN);
    for (int i = 0; i < ST_RETRIES; i++) {
        if (link(tmp, obj) == 0) {
            if (ref_link(f, tmp, hex, expiry, key) == 0)
                return 0;
            int e = errno;
            unlink(obj); /* benign for a racing put: see st_file_release */
            errno = e;
            return -1;
        }
        if (errno != EEXIST)
            return -1;
        /* Not one of ours (wrong size or type: damaged or planted): our
         * complete copy takes the name over; older refs keep their inode.
         * If the rename fails the new ref is still whole, only not shared. */
        if (lstat(obj, &st) == 0 && (!S_ISREG(st.st_mode) || (size_t)st.st_size != len)) {
            if (ref_link(f, tmp, hex, expiry, key) < 0)
                return -1;
            (void)rename(tmp, obj);
            return 0;
        }
        if (ref_link(f, obj, hex, expiry, key) == 0)
            return 0;
        if (errno != ENOENT)
            return -1;
    }
    errno = EAGAIN;
    return -1;
}

static int st_file_put(psi_store *s, const void *buf, size_t len, const psi_put_opts *o,
                       psi_token *tok, psi_err *err)
{
    st_file *f = (st_file *)s;
    char tmp[PATH_MAX], hex[ST_HEX_LEN + 1], key[ST_NAME_MAX + 1];
    uint32_t ttl = o->ttl ? o->ttl : PSI_DEFAULT_TTL;
    psi_hash128 sum;

    if (dir_ready(f, err) < 0)
        return -1;
    int fd = tmp_create(f, tmp, err);
    if (fd < 0)
        return -1;

    const char *step = "writing";
    int rc = write_hashed(fd, buf, len, &sum);
    int e = errno;
    if (close(fd) < 0 && rc == 0) { /* NFS reports write errors at close */
        rc = -1;
        e = errno;
    }
    if (rc == 0) {
        step = "linking";
        psi_hash_hex(&sum, hex);
        rc = publish(f, tmp, hex, len, (uint64_t)time(NULL) + ttl, key);
        e = errno;
    }
    unlink(tmp); /* after publish it is a spare name; after a failure, garbage */
    if (rc < 0)
        return psi_fail(err, e, "file store %s: %s %zu bytes: %s", f->dir, step, len,
                        strerror(e));

    memset(tok, 0, sizeof *tok);
    tok->connector = PSI_CONN_FILE;
    tok->lifetime = o->lifetime;
    tok->size = len;
    tok->sum = sum;
    tok->ttl = ttl;
    tok->key_len = (uint8_t)strlen(key);
    memcpy(tok->key, key, tok->key_len + 1u);
    return 0;
}

/* ---- get / release / exists ----------------------------------------------- */

static int st_file_get(psi_store *s, const psi_token *tok, psi_obj *obj, psi_err *err)
{
    st_file *f = (st_file *)s;
    char path[PATH_MAX];
    struct stat st;

    if (!st_key_ok(tok))
        return psi_fail(err, EIO, "file store %s: token key is not a file store key",
                        f->dir);
    if (tok->size == 0 || tok->size > SIZE_MAX)
        return psi_fail(err, EIO, "file store %s: object %s: bad size %llu", f->dir,
                        tok->key, (unsigned long long)tok->size);
    st_path(f, path, tok->key, tok->key_len);
    /* O_NOFOLLOW: the name is ours to read only if it is not a symlink. */
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return psi_fail(err, EIO, "file store %s: object %s: %s", f->dir, tok->key,
                        strerror(errno));
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != tok->size) {
        close(fd);
        return psi_fail(err, EIO, "file store %s: object %s: not a regular file of %llu "
                        "bytes", f->dir, tok->key, (unsigned long long)tok->size);
    }
    /* MAP_POPULATE: the reader hashes every byte at once anyway, and
     * populating in one go is cheaper than a page fault per 64 KiB. */
    void *map = mmap(NULL, (size_t)tok->size, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED)
        return psi_fail(err, EIO, "file store %s: object %s: mmap: %s", f->dir, tok->key,
                        strerror(e));
    obj->data = map;
    obj->len = (size_t)tok->size;
    obj->map_base = map;
    obj->map_len = (size_t)tok->size;
    obj->heap = NULL;
    return 0;
}

/* Drops the token's reference, then the object name if that is the last
 * link. The check-then-unlink of <H> races with puts of the same bytes,
 * and the race is benign: every reference is itself a hard link to the
 * inode, so removing the name <H> never removes data a token still names.
 * The worst case is that a concurrent put that just linked a new ref loses
 * the dedup name, and the next put of those bytes stores a second copy. */
static int st_file_release(psi_store *s, const psi_token *tok, psi_err *err)
{
    st_file *f = (st_file *)s;
    char path[PATH_MAX];
    struct stat st;

    if (tok->lifetime == PSI_LIFE_TTL)
        return 0; /* the reference expires; psi gc removes it */
    if (!st_key_ok(tok))
        return psi_fail(err, EINVAL, "file store %s: token key is not a file store key",
                        f->dir);
    st_path(f, path, tok->key, tok->key_len);
    /* ENOENT: already gone (gc after expiry, or a duplicated token); the
     * goal of release is reached either way. */
    if (unlink(path) < 0 && errno != ENOENT)
        return psi_fail(err, errno, "file store %s: removing reference %s: %s", f->dir,
                        tok->key, strerror(errno));
    st_path(f, path, tok->key, ST_HEX_LEN);
    if (lstat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink == 1)
        unlink(path); /* failure only leaves work for gc */
    return 0;
}

/* Another reference to the object tok names: one more hard link, so a
 * fan-out stores the bytes once and every receiver releases its own name.
 * Linked from the object name <H> (it lives while any reference does), or
 * from tok's own reference if <H> was taken over. ENOENT when the object
 * is gone: the caller puts again. */
static int st_file_ref(psi_store *s, const psi_token *tok, psi_token *out, psi_err *err)
{
    st_file *f = (st_file *)s;
    char path[PATH_MAX], hex[ST_HEX_LEN + 1], key[ST_NAME_MAX + 1];
    struct stat st;

    if (!st_key_ok(tok))
        return psi_fail(err, EINVAL, "file store %s: token key is not a file store key",
                        f->dir);
    if (dir_ready(f, err) < 0)
        return -1;
    psi_hash_hex(&tok->sum, hex);
    uint64_t expiry = (uint64_t)time(NULL) + (tok->ttl ? tok->ttl : PSI_DEFAULT_TTL);
    int rc = -1;
    st_path(f, path, hex, ST_HEX_LEN);
    if (lstat(path, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size == tok->size)
        rc = ref_link(f, path, hex, expiry, key);
    if (rc < 0) {
        st_path(f, path, tok->key, tok->key_len);
        rc = ref_link(f, path, hex, expiry, key);
    }
    if (rc < 0)
        return psi_fail(err, errno, "file store %s: new reference to %s: %s", f->dir, hex,
                        strerror(errno));
    *out = *tok;
    out->ttl = tok->ttl ? tok->ttl : PSI_DEFAULT_TTL;
    out->key_len = (uint8_t)strlen(key);
    memcpy(out->key, key, out->key_len + 1u);
    return 0;
}

static int st_file_exists(psi_store *s, const psi_token *tok)
{
    st_file *f = (st_file *)s;
    char path[PATH_MAX];
    struct stat st;

    if (!st_key_ok(tok))
        return 0;
    st_path(f, path, tok->key, tok->key_len);
    return lstat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* ---- gc ------------------------------------------------------------------- */

static bool pid_dead(uint64_t pid)
{
    return kill((pid_t)pid, 0) < 0 && errno == ESRCH;
}

/* Removes a regular file of the store; counts its bytes if this was its
 * last link. Returns 1 if removed. */
static int gc_remove(int dfd, const char *name, psi_gc_report *r)
{
    struct stat st;

    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
        return 0;
    if (unlinkat(dfd, name, 0) < 0)
        return 0;
    if (st.st_nlink == 1)
        r->bytes_freed += (uint64_t)st.st_size;
    return 1;
}

/* Pass 1: expired references and temp files of dead writers. A temp file
 * must also be idle for ST_GRACE: on a shared file system its pid may
 * belong to a live writer on another host. */
static void gc_refs_and_tmp(DIR *d, time_t now, psi_gc_report *r)
{
    struct dirent *e;
    struct stat st;
    st_name n;

    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        switch (st_name_parse(e->d_name, strlen(e->d_name), &n)) {
        case ST_OBJECT:
            r->objects_seen++;
            break;
        case ST_REF:
            r->refs_seen++;
            if (n.expiry < (uint64_t)now && gc_remove(dirfd(d), e->d_name, r))
                r->refs_expired++;
            break;
        case ST_TMP:
            if (pid_dead(n.pid) &&
                fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                st.st_mtime < now - ST_GRACE && gc_remove(dirfd(d), e->d_name, r))
                r->tmp_removed++;
            break;
        default:
            r->unknown_seen++;
        }
    }
}

/* Pass 2, after pass 1 dropped expired refs: object names that are their
 * inode's only link. ST_GRACE keeps gc away from a put that is between
 * finding <H> and linking its reference to it (see publish). */
static void gc_objects(DIR *d, time_t now, psi_gc_report *r)
{
    struct dirent *e;
    struct stat st;
    st_name n;

    rewinddir(d);
    while ((e = readdir(d))) {
        if (st_name_parse(e->d_name, strlen(e->d_name), &n) != ST_OBJECT)
            continue;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            S_ISREG(st.st_mode) && st.st_nlink == 1 && st.st_mtime < now - ST_GRACE &&
            gc_remove(dirfd(d), e->d_name, r))
            r->objects_removed++;
    }
}

static int st_file_gc(psi_store *s, psi_gc_report *r, psi_err *err)
{
    st_file *f = (st_file *)s;
    time_t now = time(NULL);

    memset(r, 0, sizeof *r);
    DIR *d = opendir(f->dir);
    if (!d) {
        if (errno == ENOENT)
            return 0; /* never used: nothing to collect */
        return psi_fail(err, errno, "file store %s: %s", f->dir, strerror(errno));
    }
    gc_refs_and_tmp(d, now, r);
    gc_objects(d, now, r);
    closedir(d);
    return 0;
}

/* ---- ls ------------------------------------------------------------------- */

/* One object or reference name, as ls groups them: by the hash <H> that
 * both kinds start with, so an object is its <H> name plus its refs. */
typedef struct ls_ent {
    char name[ST_NAME_MAX + 1];
    bool is_ref;
    uint64_t expiry;  /* is_ref */
    uint64_t size;
    time_t mtime;
} ls_ent;

static int ls_ent_cmp(const void *a, const void *b)
{
    const ls_ent *x = a, *y = b;
    int c = memcmp(x->name, y->name, ST_HEX_LEN);
    return c ? c : (int)x->is_ref - (int)y->is_ref; /* the <H> name first */
}

/* Every regular file named <H> or <H>.<E>.<P>.<S>; temp files and foreign
 * names are not objects. A name that vanishes between readdir and the
 * stat (a reader released it) is skipped. */
static int ls_collect(st_file *f, DIR *d, ls_ent **out, size_t *n, psi_err *err)
{
    size_t cap = 0;
    struct dirent *e;
    struct stat st;
    st_name nm;

    *out = NULL;
    *n = 0;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        enum st_kind k = st_name_parse(e->d_name, len, &nm);
        if ((k != ST_OBJECT && k != ST_REF) || len > ST_NAME_MAX ||
            fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
            !S_ISREG(st.st_mode))
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 64;
            ls_ent *grown = realloc(*out, cap * sizeof **out);
            if (!grown) {
                free(*out);
                return psi_fail(err, ENOMEM, "file store %s: ls: out of memory", f->dir);
            }
            *out = grown;
        }
        ls_ent *x = &(*out)[(*n)++];
        memcpy(x->name, e->d_name, len + 1);
        x->is_ref = k == ST_REF;
        x->expiry = nm.expiry;
        x->size = (uint64_t)st.st_size;
        x->mtime = st.st_mtime;
    }
    return 0;
}

/* `where` is the object's path; a directory too long for the field keeps
 * its tail, which is the part that tells stores apart. */
static void ls_where(const st_file *f, const char *name, char *out, size_t cap)
{
    char path[PATH_MAX];

    st_path(f, path, name, strlen(name));
    size_t len = strlen(path);
    if (len < cap)
        memcpy(out, path, len + 1);
    else
        snprintf(out, cap, "...%s", path + len - (cap - 4));
}

/* One group: refs = reference names (each token not yet resolved holds
 * one); expires = the earliest reference expiry, or for an object without
 * references, when gc may take it (ST_GRACE after the put). Lifetimes are
 * not in the names, so they are unknown. */
static void ls_fill(const st_file *f, const ls_ent *g, size_t n, time_t now,
                    psi_obj_info *o)
{
    time_t mtime = g[0].mtime;
    uint64_t expiry = UINT64_MAX;

    memset(o, 0, sizeof *o);
    memcpy(o->key, g[0].name, ST_HEX_LEN);
    o->size = g[0].size;
    for (size_t i = 0; i < n; i++) {
        if (g[i].mtime < mtime)
            mtime = g[i].mtime;
        if (g[i].is_ref) {
            o->refs++;
            if (g[i].expiry < expiry)
                expiry = g[i].expiry;
        }
    }
    o->age = now > mtime ? (int64_t)(now - mtime) : 0;
    if (o->refs == 0)
        o->expires = o->age < ST_GRACE ? ST_GRACE - o->age : 0;
    else
        o->expires = expiry > (uint64_t)now ? (int64_t)(expiry - (uint64_t)now) : 0;
    if (o->expires > INT64_MAX / 2) /* an expiry no clock reaches */
        o->expires = -1;
    o->lifetime = -1;
    /* g[0] is the <H> name, or with none left (see publish) a reference */
    ls_where(f, g[0].name, o->where, sizeof o->where);
}

static int st_file_ls(psi_store *s, psi_ls_fn fn, void *arg, psi_err *err)
{
    st_file *f = (st_file *)s;
    time_t now = time(NULL);
    ls_ent *v;
    size_t n;

    DIR *d = opendir(f->dir);
    if (!d) {
        if (errno == ENOENT)
            return 0; /* never used: holds nothing */
        return psi_fail(err, errno, "file store %s: %s", f->dir, strerror(errno));
    }
    int rc = ls_collect(f, d, &v, &n, err);
    closedir(d);
    if (rc < 0)
        return -1;
    if (n > 1)
        qsort(v, n, sizeof *v, ls_ent_cmp);
    for (size_t i = 0, j; i < n; i = j) {
        psi_obj_info o;
        for (j = i + 1; j < n && memcmp(v[j].name, v[i].name, ST_HEX_LEN) == 0; j++)
            ;
        ls_fill(f, v + i, j - i, now, &o);
        if (fn(&o, arg) != 0)
            break;
    }
    free(v);
    return 0;
}

/* ---- open / close --------------------------------------------------------- */

/* file:///abs/dir or file://localhost/abs/dir, %XX escapes decoded. */
static int parse_file_url(const char *url, char dir[PATH_MAX], psi_err *err)
{
    const char *p = url + strlen("file://");
    size_t n = 0;

    if (strncmp(url, "file://", 7) != 0)
        return psi_fail(err, EINVAL, "PSI_STORE: '%s' is not a file:// URL", url);
    if (strncmp(p, "localhost/", 10) == 0)
        p += strlen("localhost");
    if (*p != '/')
        return psi_fail(err, EINVAL, "PSI_STORE: malformed URL '%s' (expected "
                        "file:///absolute/dir; remote hosts are not supported)", url);
    int rc = psi_pct_decode(p, strlen(p), dir, PATH_MAX - 1 - ST_NAME_MAX);
    if (rc == -1)
        return psi_fail(err, EINVAL, "PSI_STORE: malformed URL '%s' (bad %% escape)", url);
    if (rc == -2)
        return psi_fail(err, ENAMETOOLONG, "PSI_STORE: directory in '%s' is too long", url);
    n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
        n--;
    dir[n] = '\0';
    return 0;
}

/* url NULL or "": the default directory (psi_store_default_dir()). No
 * file system access here: the directory is made by the first put, so
 * a process that only reads, or never proxies, leaves nothing behind. */
static int st_file_open(const char *url, psi_store **out, psi_err *err)
{
    bool is_default = !url || !url[0];
    char dir[PATH_MAX];

    if (is_default) {
        const char *d = psi_store_default_dir();
        if (!d)
            return psi_fail(err, ENOENT, "file store: no usable default directory (neither "
                            "/dev/shm nor the runtime directory is writable)");
        if (strlen(d) >= PATH_MAX - 1 - ST_NAME_MAX)
            return psi_fail(err, ENAMETOOLONG, "file store %s: path too long", d);
        snprintf(dir, sizeof dir, "%s", d);
    } else {
        if (strlen(url) >= sizeof(((psi_store *)0)->url))
            return psi_fail(err, ENAMETOOLONG, "PSI_STORE: URL too long");
        if (parse_file_url(url, dir, err) < 0)
            return -1;
    }

    st_file *f = calloc(1, sizeof *f);
    if (!f)
        return psi_fail(err, ENOMEM, "file store: out of memory");
    f->base.ops = &psi_store_file_ops;
    f->is_default = is_default;
    f->dir_len = strlen(dir);
    memcpy(f->dir, dir, f->dir_len + 1);
    if ((size_t)snprintf(f->base.url, sizeof f->base.url, "file://%s", dir) >=
        sizeof f->base.url) {
        free(f);
        return psi_fail(err, ENAMETOOLONG, "file store %s: path too long", dir);
    }
    if (!is_default)
        memcpy(f->base.url, url, strlen(url) + 1);
    *out = &f->base;
    return 0;
}

static void st_file_close(psi_store *s)
{
    free(s);
}

const psi_store_ops psi_store_file_ops = {
    .scheme = "file",
    .id = PSI_CONN_FILE,
    .open = st_file_open,
    .put = st_file_put,
    .get = st_file_get,
    .release = st_file_release,
    .exists = st_file_exists,
    .gc = st_file_gc,
    .ls = st_file_ls,
    .close = st_file_close,
    .ref = st_file_ref,
};
