/* st_shm: the shared-memory pool connector (DESIGN §6, docs/protocol.md §5).
 *
 * A pool of segment files on a tmpfs (default /dev/shm/psi-shm-<uid>),
 * each a 4 KiB header followed by the data area. A sender keeps its
 * segments mapped and reuses them: a put into a segment whose pages are
 * already allocated and mapped is a plain memcpy (~10 GB/s here), where a
 * fresh tmpfs object costs page allocation and faults (~1-2 GB/s). Readers
 * map a segment once and keep the mapping for later objects in it.
 *
 * A segment holds one object at a time. Its header, shared by every process
 * that maps it, has a robust process-shared mutex guarding:
 *   state  FREE -> WRITING (owner claims) -> READY (published) -> FREE
 *   gen    bumped at every claim; a token names segment + gen, so a token
 *          for an object that has been replaced is refused, never misread
 *   refs   token references not yet resolved (refcount, evict-on-read)
 *   holds  readers still delivering bytes from the mapping
 * The object is freed when refs and holds are both 0 (or its TTL passed);
 * only the owner reuses a FREE segment, so its pages stay warm.
 *
 * Crash safety: a segment records its owner (pid and start time). A
 * segment whose owner is gone is never reused: WRITING ones are reclaimed
 * at once, FREE ones unlinked, READY ones stay until their last reference
 * is resolved or their TTL passes. `psi gc` and every process's first open
 * of the pool apply these rules; a process that exits normally unlinks its
 * FREE segments itself, so an idle machine keeps no pool memory. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "psi_err.h"
#include "psi_log.h"
#include "psi_store.h"
#include "st_shm.h"

#define SHM_MAGIC "PSISHM1"       /* docs/protocol.md §5 */
#define SHM_HDR 4096u             /* header bytes before the data */
#define SHM_ALIGN (1u << 20)      /* data areas are whole MiB */
#define SHM_MAX_SEGS 256          /* segments one process tracks */
#define SHM_CACHE_BYTES (4ull << 30) /* idle foreign mappings kept */
#define SHM_IDLE_MAX 600          /* seconds an unowned free segment waits */

enum { SHM_FREE = 0, SHM_WRITING = 1, SHM_READY = 2 };

typedef struct shm_hdr {
    char magic[8];
    pthread_mutex_t lock;
    uint32_t state, lifetime;
    uint64_t gen;
    uint64_t capacity; /* data bytes after the header */
    uint64_t size;
    psi_hash128 sum;
    uint32_t refs, holds;
    int32_t owner_pid;
    uint32_t pad;
    uint64_t owner_start; /* /proc/<pid>/stat start time: pid reuse check */
    int64_t put_time, expiry;
    int64_t idle_since; /* FREE and unowned: when it was left to the pool */
} shm_hdr;

_Static_assert(sizeof(shm_hdr) <= SHM_HDR, "segment header fits its page");

/* One segment this process has mapped: its own (a pool member it may
 * reuse) or another process's (a reader's cached mapping). */
typedef struct shm_seg {
    char name[ST_SHM_NAME_MAX + 1];
    shm_hdr *hdr;
    size_t map_len;
    bool own;
    unsigned users; /* resolved objects of this process still using the map */
    uint64_t last_use;
} shm_seg;

typedef struct st_shm {
    psi_store base;
    char dir[PATH_MAX];
    uint64_t max_bytes;  /* own segments' total capacity */
    uint64_t keep_bytes; /* free segments left warm for the next process */
    pthread_mutex_t lock; /* segs, nsegs, own_bytes, tick */
    shm_seg *segs[SHM_MAX_SEGS];
    size_t nsegs;
    uint64_t own_bytes;
    uint64_t tick;
    pid_t pid; /* the process that opened this handle */
    uint64_t start;
    bool swept;
    atomic_int dir_ok; /* the pool directory exists and passed the checks */
} st_shm;

/* What a resolved object keeps so psi_obj_release can drop its hold. */
typedef struct shm_hold {
    st_shm *s;
    shm_seg *seg;
    const uint8_t *data;
    uint64_t size;
    uint64_t *list;   /* private copy of the chunk checksums, anchored by the token */
    size_t upto;      /* chunks [0, upto) checked */
    uint64_t gen;
    pid_t pid;
} shm_hold;

static atomic_uint_fast64_t shm_seq;

/* ---- processes ------------------------------------------------------------ */

/* Field 22 of /proc/<pid>/stat (start time in clock ticks), 0 if gone. */
static uint64_t proc_start(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    /* The command name may contain spaces and ')': field 3 starts after the
     * last ')' and a space. */
    char *p = strrchr(buf, ')');
    if (!p)
        return 0;
    for (int field = 2; field < 22 && p; field++)
        p = strchr(p + 1, ' ');
    return p ? strtoull(p + 1, NULL, 10) : 0;
}

static bool owner_alive(const shm_hdr *h)
{
    if (h->owner_pid <= 0)
        return false;
    if (kill(h->owner_pid, 0) < 0 && errno == ESRCH)
        return false;
    return proc_start(h->owner_pid) == h->owner_start;
}

/* ---- header lock ---------------------------------------------------------- */

static void hdr_lock(shm_hdr *h)
{
    /* A process that died holding the lock left at most one field
     * half-updated; every field is checked by whoever reads it next. */
    if (pthread_mutex_lock(&h->lock) == EOWNERDEAD)
        pthread_mutex_consistent(&h->lock);
}

static void hdr_unlock(shm_hdr *h)
{
    pthread_mutex_unlock(&h->lock);
}

static int hdr_init_lock(shm_hdr *h)
{
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    int rc = pthread_mutex_init(&h->lock, &a);
    pthread_mutexattr_destroy(&a);
    return rc;
}

static int64_t now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec;
}

/* Under the header lock: an object nobody needs any more becomes FREE.
 * Returns true if the segment should now be unlinked (its owner is gone,
 * so nobody will reuse it). */
static bool hdr_maybe_free(shm_hdr *h, int64_t now)
{
    if (h->state != SHM_READY)
        return false;
    bool expired = h->expiry && now > h->expiry;
    bool done = h->lifetime == PSI_LIFE_TTL ? expired : h->refs == 0;
    if (!done || (h->holds && !expired))
        return false;
    h->state = SHM_FREE;
    h->size = 0;
    return !owner_alive(h);
}

/* ---- mapping -------------------------------------------------------------- */

static int path_of(const st_shm *s, const char *name, char path[PATH_MAX])
{
    return (size_t)snprintf(path, PATH_MAX, "%s/%s", s->dir, name) < PATH_MAX ? 0 : -1;
}

/* Maps an existing segment, checking it is one of ours: all of it, with its
 * page tables filled now (a reader or a sender about to use it), or only
 * its header page (gc and ls look at many segments and use none). */
static int seg_map(st_shm *s, const char *name, bool whole, shm_hdr **out, size_t *len,
                   psi_err *err)
{
    char path[PATH_MAX];
    struct stat st;

    if (path_of(s, name, path) < 0)
        return psi_fail(err, ENAMETOOLONG, "shm store: path too long");
    int fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return psi_fail(err, errno == ENOENT ? ENOENT : EIO, "shm store: segment %s: %s%s",
                        name, strerror(errno),
                        errno == ENOENT ? " (resolved already, expired, or removed by psi gc)"
                                        : "");
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
        (uint64_t)st.st_size < SHM_HDR + SHM_ALIGN) {
        close(fd);
        return psi_fail(err, EIO, "shm store: %s is not a psinterpose segment (type, owner "
                        "or size)", path);
    }
    size_t maplen = whole ? (size_t)st.st_size : SHM_HDR;
    void *m = mmap(NULL, maplen, PROT_READ | PROT_WRITE, MAP_SHARED | (whole ? MAP_POPULATE : 0),
                   fd, 0);
    close(fd);
    if (m == MAP_FAILED)
        return psi_fail(err, EIO, "shm store: cannot map %s: %s", path, strerror(errno));
    shm_hdr *h = m;
    if (memcmp(h->magic, SHM_MAGIC, sizeof h->magic) != 0 ||
        h->capacity + SHM_HDR > (uint64_t)st.st_size) {
        munmap(m, maplen);
        return psi_fail(err, EIO, "shm store: %s is not a psinterpose segment (bad header)",
                        path);
    }
    *out = h;
    *len = maplen;
    return 0;
}

/* Under s->lock: drops idle foreign mappings, oldest first, until the
 * cache is within its budget and has a free slot. */
static void cache_trim(st_shm *s, uint64_t want_bytes)
{
    for (;;) {
        uint64_t cached = 0;
        size_t victim = SIZE_MAX;
        for (size_t i = 0; i < s->nsegs; i++) {
            shm_seg *g = s->segs[i];
            if (g->own || g->users)
                continue;
            cached += g->map_len;
            if (victim == SIZE_MAX || g->last_use < s->segs[victim]->last_use)
                victim = i;
        }
        if (victim == SIZE_MAX ||
            (cached + want_bytes <= SHM_CACHE_BYTES && s->nsegs < SHM_MAX_SEGS))
            return;
        shm_seg *g = s->segs[victim];
        munmap(g->hdr, g->map_len);
        free(g);
        s->segs[victim] = s->segs[--s->nsegs];
    }
}

static shm_seg *seg_find(st_shm *s, const char *name)
{
    for (size_t i = 0; i < s->nsegs; i++)
        if (strcmp(s->segs[i]->name, name) == 0)
            return s->segs[i];
    return NULL;
}

/* Under s->lock: adds a mapping to the table. */
static shm_seg *seg_add(st_shm *s, const char *name, shm_hdr *h, size_t len, bool own)
{
    cache_trim(s, own ? 0 : len);
    if (s->nsegs >= SHM_MAX_SEGS)
        return NULL;
    shm_seg *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    snprintf(g->name, sizeof g->name, "%s", name);
    g->hdr = h;
    g->map_len = len;
    g->own = own;
    g->last_use = ++s->tick;
    s->segs[s->nsegs++] = g;
    return g;
}

/* Under s->lock: forgets one of the table's segments (and unlinks it). */
static void seg_drop(st_shm *s, shm_seg *g, bool do_unlink)
{
    char path[PATH_MAX];
    if (do_unlink && path_of(s, g->name, path) == 0)
        unlink(path);
    if (g->own)
        s->own_bytes -= g->hdr->capacity;
    for (size_t i = 0; i < s->nsegs; i++)
        if (s->segs[i] == g) {
            s->segs[i] = s->segs[--s->nsegs];
            break;
        }
    munmap(g->hdr, g->map_len);
    free(g);
}

/* ---- the pool directory --------------------------------------------------- */

/* Checked once per handle, not per put: a put that reuses a mapped segment
 * does not touch the directory. A directory removed under us shows up as
 * ENOENT when seg_create makes a file in it, which checks it again. */
static int dir_ready(st_shm *s, psi_err *err)
{
    struct stat st;
    if (atomic_load_explicit(&s->dir_ok, memory_order_acquire))
        return 0;
    if (mkdir(s->dir, 0700) < 0 && errno != EEXIST)
        return psi_fail(err, errno == ENOSPC ? ENOSPC : EIO, "shm store: cannot create %s: %s",
                        s->dir, strerror(errno));
    if (lstat(s->dir, &st) < 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid() ||
        (st.st_mode & 077))
        return psi_fail(err, EACCES, "shm store: %s must be a directory owned by uid %u with "
                        "mode 0700", s->dir, (unsigned)geteuid());
    atomic_store_explicit(&s->dir_ok, 1, memory_order_release);
    return 0;
}

/* Applies the crash rules of the top comment to one segment file. `full`
 * (psi gc) also unlinks free segments nobody owns; the sweep at start
 * leaves them for adoption unless they have been idle for SHM_IDLE_MAX. */
static void gc_one(st_shm *s, const char *name, int64_t now, bool full, psi_gc_report *r)
{
    char path[PATH_MAX];
    shm_hdr *h;
    size_t len;
    psi_err e;

    if (path_of(s, name, path) < 0)
        return;
    shm_seg *mine = seg_find(s, name);
    if (mine) {
        h = mine->hdr;
    } else if (seg_map(s, name, false, &h, &len, &e) < 0) {
        /* No header yet: its creator died between creating and
         * initialising it (the name carries the creator's pid). */
        unsigned pid = 0;
        if (sscanf(name, "s%x-", &pid) == 1 && pid > 0 && kill((pid_t)pid, 0) < 0 &&
            errno == ESRCH && unlink(path) == 0)
            r->tmp_removed++;
        return;
    }
    r->objects_seen++;
    hdr_lock(h);
    bool alive = owner_alive(h), remove = false;
    uint64_t freed = 0;
    if (h->state == SHM_WRITING && !alive) {
        h->state = SHM_FREE; /* a put that never finished */
        r->tmp_removed++;
    } else if (h->state == SHM_READY) {
        r->refs_seen += h->refs;
        if (h->expiry && now > h->expiry) {
            freed = h->size;
            r->refs_expired += h->refs;
            r->objects_removed++;
            h->state = SHM_FREE;
            h->size = 0;
        }
    }
    if (h->state == SHM_FREE && !alive) {
        if (h->owner_pid != 0) { /* its owner died: the pool takes it over */
            h->owner_pid = 0;
            h->owner_start = 0;
            h->idle_since = now;
        }
        remove = full || now - h->idle_since > SHM_IDLE_MAX;
    }
    uint64_t cap = h->capacity;
    hdr_unlock(h);
    if (mine)
        return; /* ours: alive, mapped, reused by the next put */
    munmap(h, len);
    if (remove && unlink(path) == 0)
        r->bytes_freed += cap + SHM_HDR;
    else
        r->bytes_freed += freed;
}

static int shm_walk(st_shm *s, void (*fn)(st_shm *, const char *, void *), void *arg,
                    psi_err *err)
{
    DIR *d = opendir(s->dir);
    if (!d) {
        if (errno == ENOENT)
            return 0; /* nothing was ever put */
        return psi_fail(err, EIO, "shm store: cannot read %s: %s", s->dir, strerror(errno));
    }
    struct dirent *de;
    while ((de = readdir(d)))
        if (st_shm_name_valid(de->d_name, strlen(de->d_name)))
            fn(s, de->d_name, arg);
    closedir(d);
    return 0;
}

struct gc_ctx {
    int64_t now;
    bool full;
    psi_gc_report *r;
};

static void gc_visit(st_shm *s, const char *name, void *arg)
{
    struct gc_ctx *c = arg;
    gc_one(s, name, c->now, c->full, c->r);
}

static int st_shm_gc(psi_store *base, psi_gc_report *r, psi_err *err)
{
    st_shm *s = (st_shm *)base;
    struct gc_ctx c = {.now = now_s(), .full = true, .r = r};
    pthread_mutex_lock(&s->lock);
    int rc = shm_walk(s, gc_visit, &c, err);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

/* A dead process's segments are reclaimed at the next start (§6): its
 * unfinished puts and expired objects become free segments of the pool. */
static void sweep_once(st_shm *s)
{
    if (s->swept)
        return;
    s->swept = true;
    psi_gc_report r = {0};
    psi_err e;
    struct gc_ctx c = {.now = now_s(), .full = false, .r = &r};
    shm_walk(s, gc_visit, &c, &e);
}

/* Under s->lock: a free segment nobody owns (left by an exited process)
 * that fits cap, taken over with its pages already allocated. */
struct adopt_ctx {
    uint64_t cap;
    shm_seg *got;
};

static void adopt_visit(st_shm *s, const char *name, void *arg)
{
    struct adopt_ctx *c = arg;
    char path[PATH_MAX];
    shm_hdr peek;

    if (c->got || seg_find(s, name) || path_of(s, name, path) < 0)
        return;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t n = pread(fd, &peek, sizeof peek, 0);
    close(fd);
    /* An unlocked look first, so that only a likely fit is mapped. */
    if (n != (ssize_t)sizeof peek || memcmp(peek.magic, SHM_MAGIC, sizeof peek.magic) != 0 ||
        peek.state != SHM_FREE || peek.owner_pid != 0 || peek.capacity < c->cap ||
        peek.capacity > 2 * c->cap || s->own_bytes + peek.capacity > s->max_bytes)
        return;
    shm_hdr *h;
    size_t len;
    psi_err e;
    if (seg_map(s, name, true, &h, &len, &e) < 0)
        return;
    hdr_lock(h);
    bool mine = h->state == SHM_FREE && h->owner_pid == 0;
    if (mine) {
        h->owner_pid = (int32_t)s->pid;
        h->owner_start = s->start;
    }
    hdr_unlock(h);
    shm_seg *g = mine ? seg_add(s, name, h, len, true) : NULL;
    if (!g) {
        munmap(h, len);
        return;
    }
    s->own_bytes += h->capacity;
    c->got = g;
}

static shm_seg *seg_adopt(st_shm *s, uint64_t cap)
{
    struct adopt_ctx c = {.cap = cap};
    psi_err e;
    shm_walk(s, adopt_visit, &c, &e);
    return c.got;
}

/* ---- put ------------------------------------------------------------------ */

/* Under s->lock: a new segment of `cap` data bytes, allocated and mapped
 * (the pages are faulted in now, once, not at every put). */
static shm_seg *seg_create(st_shm *s, uint64_t cap, psi_err *err)
{
    char name[ST_SHM_NAME_MAX + 1], path[PATH_MAX];
    int fd = -1;
    bool remade = false;

    /* pid, start time and sequence make names unique; a collision (an
     * unreadable /proc, a reused pid) only takes the next number. A
     * directory removed under us (rm -rf of the pool) is made again. */
    for (int tries = 0; fd < 0 && tries < 16; tries++) {
        uint64_t seq = atomic_fetch_add(&shm_seq, 1);
        snprintf(name, sizeof name, "s%x-%" PRIx64 "-%" PRIx64, (unsigned)s->pid,
                 (uint64_t)(s->start & 0xffffffffffffull), seq);
        if (path_of(s, name, path) < 0) {
            psi_fail(err, ENAMETOOLONG, "shm store: path too long");
            return NULL;
        }
        fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0 && errno == ENOENT && !remade) {
            remade = true;
            atomic_store(&s->dir_ok, 0);
            if (dir_ready(s, err) < 0)
                return NULL;
            continue;
        }
        if (fd < 0 && errno != EEXIST)
            break;
    }
    if (fd < 0) {
        psi_fail(err, errno == ENOSPC ? ENOSPC : EIO, "shm store: cannot create %s: %s", path,
                 strerror(errno));
        return NULL;
    }
    size_t len = SHM_HDR + cap;
    int rc = posix_fallocate(fd, 0, (off_t)len);
    if (rc != 0) {
        close(fd);
        unlink(path);
        psi_fail(err, rc == ENOSPC ? ENOSPC : EIO, "shm store: cannot allocate %" PRIu64
                 " bytes in %s: %s", (uint64_t)len, s->dir, strerror(rc));
        return NULL;
    }
    void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
        unlink(path);
        psi_fail(err, ENOMEM, "shm store: cannot map %s: %s", path, strerror(errno));
        return NULL;
    }
    shm_hdr *h = m;
    if (hdr_init_lock(h) != 0) {
        munmap(m, len);
        unlink(path);
        psi_fail(err, EIO, "shm store: cannot initialise the lock of %s", path);
        return NULL;
    }
    h->capacity = cap;
    h->state = SHM_FREE;
    h->owner_pid = (int32_t)s->pid;
    h->owner_start = s->start;
    memcpy(h->magic, SHM_MAGIC, sizeof h->magic); /* last: readers check it */
    shm_seg *g = seg_add(s, name, h, len, true);
    if (!g) {
        munmap(m, len);
        unlink(path);
        psi_fail(err, ENOMEM, "shm store: too many segments in this process");
        return NULL;
    }
    s->own_bytes += cap;
    return g;
}

/* Under s->lock: a FREE own segment that fits len without wasting more
 * than half of it, claimed (state WRITING, gen bumped); else a new one,
 * after dropping free segments if the pool is over its budget. */
static shm_seg *seg_claim(st_shm *s, size_t len, psi_err *err)
{
    uint64_t cap = (st_shm_need_bytes(len) + SHM_ALIGN - 1) / SHM_ALIGN * SHM_ALIGN;
    shm_seg *best = NULL;

    for (size_t i = 0; i < s->nsegs; i++) {
        shm_seg *g = s->segs[i];
        if (!g->own || g->hdr->capacity < cap || g->hdr->capacity > 2 * cap)
            continue;
        if (best && best->hdr->capacity <= g->hdr->capacity)
            continue;
        hdr_lock(g->hdr);
        hdr_maybe_free(g->hdr, now_s()); /* a TTL object past its time */
        bool is_free = g->hdr->state == SHM_FREE;
        hdr_unlock(g->hdr);
        if (is_free)
            best = g;
    }
    if (!best) {
        /* Make room: free segments that do not fit go first. */
        for (size_t i = 0; i < s->nsegs && s->own_bytes + cap > s->max_bytes;) {
            shm_seg *g = s->segs[i];
            bool drop = false;
            if (g->own && !g->users) {
                hdr_lock(g->hdr);
                drop = g->hdr->state == SHM_FREE;
                hdr_unlock(g->hdr);
            }
            if (drop)
                seg_drop(s, g, true); /* segs[i] now holds another entry */
            else
                i++;
        }
        if (s->own_bytes + cap > s->max_bytes) {
            psi_fail(err, ENOSPC, "shm store: pool full (%" PRIu64 " of %" PRIu64 " bytes "
                     "hold objects not yet resolved)", s->own_bytes, s->max_bytes);
            return NULL;
        }
        /* A warm segment left by an exited process, else a new one. */
        best = seg_adopt(s, cap);
        if (!best && !(best = seg_create(s, cap, err)))
            return NULL;
    }
    hdr_lock(best->hdr);
    best->hdr->state = SHM_WRITING;
    best->hdr->gen++;
    hdr_unlock(best->hdr);
    best->users++; /* not dropped while we copy outside the lock */
    best->last_use = ++s->tick;
    return best;
}

/* Under s->lock: another READY own segment with the same bytes gets one more
 * reference instead of a second copy (a fan-out stores once). */
static shm_seg *dedup_ref(st_shm *s, const shm_seg *fresh, const psi_hash128 *sum, size_t len,
                          uint8_t lifetime, int64_t expiry, uint64_t *gen)
{
    for (size_t i = 0; i < s->nsegs; i++) {
        shm_seg *g = s->segs[i];
        if (g == fresh || !g->own)
            continue;
        shm_hdr *h = g->hdr;
        hdr_lock(h);
        bool hit = h->state == SHM_READY && h->size == len && h->sum.lo == sum->lo &&
                   h->sum.hi == sum->hi && h->lifetime == lifetime &&
                   (lifetime == PSI_LIFE_TTL || h->refs > 0);
        if (hit) {
            h->refs++;
            if (expiry > h->expiry)
                h->expiry = expiry;
            *gen = h->gen;
        }
        hdr_unlock(h);
        if (hit)
            return g;
    }
    return NULL;
}

static int st_shm_put(psi_store *base, const void *buf, size_t len, const psi_put_opts *o,
                      psi_token *tok, psi_err *err)
{
    st_shm *s = (st_shm *)base;
    uint32_t ttl = o->ttl ? o->ttl : PSI_DEFAULT_TTL;
    int64_t now = now_s();

    if (getpid() != s->pid)
        return psi_fail(err, EINVAL, "shm store: handle used across fork");
    if (dir_ready(s, err) < 0)
        return -1;
    pthread_mutex_lock(&s->lock);
    sweep_once(s);
    shm_seg *fresh = seg_claim(s, len, err);
    pthread_mutex_unlock(&s->lock);
    if (!fresh)
        return -1;

    psi_hash128 sum;
    st_shm_copy_summed((uint8_t *)fresh->hdr + SHM_HDR, buf, len, &sum);

    uint64_t gen = 0;
    pthread_mutex_lock(&s->lock);
    shm_seg *same = dedup_ref(s, fresh, &sum, len, o->lifetime, now + ttl, &gen);
    shm_seg *g = same ? same : fresh;
    shm_hdr *h = fresh->hdr;
    hdr_lock(h);
    if (same) {
        h->state = SHM_FREE; /* the copy we just made is not needed */
    } else {
        h->size = len;
        h->sum = sum;
        h->lifetime = o->lifetime;
        h->refs = 1;
        h->holds = 0;
        h->put_time = now;
        h->expiry = now + ttl;
        h->state = SHM_READY;
        gen = h->gen;
    }
    hdr_unlock(h);
    fresh->users--;
    pthread_mutex_unlock(&s->lock);

    memset(tok, 0, sizeof *tok);
    tok->connector = PSI_CONN_SHM;
    tok->lifetime = o->lifetime;
    tok->size = len;
    tok->sum = sum;
    tok->ttl = ttl;
    int n = snprintf(tok->key, sizeof tok->key, "%s.%" PRIx64, g->name, gen);
    tok->key_len = (uint8_t)n;
    return 0;
}

/* ---- get / release -------------------------------------------------------- */

/* Checks the pieces covering [off, off+len) that are not checked yet. */
static int shm_verify(void *ctx, size_t off, size_t len, psi_err *err)
{
    shm_hold *hd = ctx;
    size_t last = (off + len - 1) / ST_SHM_PIECE;
    for (; hd->upto <= last; hd->upto++) {
        uint64_t o = (uint64_t)hd->upto * ST_SHM_PIECE;
        size_t k = hd->size - o < ST_SHM_PIECE ? (size_t)(hd->size - o) : ST_SHM_PIECE;
        if (psi_hash64(hd->data + o, k) != hd->list[hd->upto])
            return psi_fail(err, EIO, "shm store: object in segment %s: bytes %" PRIu64
                            "..%" PRIu64 " do not match their checksum (corrupted segment)",
                            hd->seg->name, o, o + k);
    }
    return 0;
}

static void shm_done(void *ctx)
{
    shm_hold *hd = ctx;
    free(hd->list);
    st_shm *s = hd->s;
    bool gone = false;

    /* A fork child inherited the mapping but not the hold: only the
     * process that took the hold gives it back. */
    if (hd->pid == getpid()) {
        pthread_mutex_lock(&s->lock);
        shm_hdr *h = hd->seg->hdr;
        hdr_lock(h);
        if (h->gen == hd->gen && h->holds > 0)
            h->holds--;
        gone = hdr_maybe_free(h, now_s());
        hdr_unlock(h);
        hd->seg->users--;
        if (gone && !hd->seg->own && !hd->seg->users)
            seg_drop(s, hd->seg, true);
        pthread_mutex_unlock(&s->lock);
    }
    free(hd);
}

/* Under s->lock: the table entry for a token's segment, mapped if needed. */
static shm_seg *seg_lookup(st_shm *s, const char *name, psi_err *err)
{
    shm_seg *g = seg_find(s, name);
    if (g)
        return g;
    shm_hdr *h;
    size_t len;
    if (seg_map(s, name, true, &h, &len, err) < 0)
        return NULL;
    g = seg_add(s, name, h, len, false);
    if (!g) {
        munmap(h, len);
        psi_fail(err, ENOMEM, "shm store: too many mapped segments");
    }
    return g;
}

/* Under s->lock: the segment a token names, and the generation it names. */
static shm_seg *seg_of_token(st_shm *s, const psi_token *tok, uint64_t *gen, psi_err *err)
{
    char name[ST_SHM_NAME_MAX + 1];
    if (st_shm_key_parse(tok->key, tok->key_len, name, gen) < 0) {
        psi_fail(err, EIO, "shm store: '%.*s' is not a shm object key", (int)tok->key_len,
                 tok->key);
        return NULL;
    }
    return seg_lookup(s, name, err);
}

static int st_shm_get(psi_store *base, const psi_token *tok, psi_obj *obj, psi_err *err)
{
    st_shm *s = (st_shm *)base;
    uint64_t gen = 0;
    shm_hold *hd = malloc(sizeof *hd);
    if (!hd)
        return psi_fail(err, ENOMEM, "shm store: out of memory");

    pthread_mutex_lock(&s->lock);
    shm_seg *g = seg_of_token(s, tok, &gen, err);
    int rc = -1;
    if (g) {
        shm_hdr *h = g->hdr;
        hdr_lock(h);
        if (h->gen != gen || h->state != SHM_READY)
            psi_fail(err, ENOENT, "shm store: object %.*s is gone (resolved already, expired, "
                     "or removed by psi gc)", (int)tok->key_len, tok->key);
        else if (h->size != tok->size || st_shm_need_bytes(h->size) > h->capacity)
            psi_fail(err, EIO, "shm store: object %.*s is %" PRIu64 " bytes, token says %" PRIu64,
                     (int)tok->key_len, tok->key, h->size, tok->size);
        else {
            h->holds++;
            rc = 0;
        }
        hdr_unlock(h);
        if (rc == 0) {
            g->users++;
            g->last_use = ++s->tick;
        }
    }
    pthread_mutex_unlock(&s->lock);
    if (rc < 0) {
        free(hd);
        return -1;
    }
    const uint8_t *data = (const uint8_t *)g->hdr + SHM_HDR;
    size_t n = st_shm_pieces(tok->size);
    *hd = (shm_hold){.s = s, .seg = g, .gen = gen, .pid = getpid(), .data = data,
                     .size = tok->size, .list = malloc(n * sizeof(uint64_t) + 1)};
    obj->data = data;
    obj->len = tok->size;
    obj->done = shm_done;
    obj->done_ctx = hd;
    /* The list is copied out before it is checked: what is checked is what
     * later pieces are compared with, whatever happens to the segment. */
    if (!hd->list) {
        psi_obj_release(obj);
        return psi_fail(err, ENOMEM, "shm store: out of memory");
    }
    memcpy(hd->list, data + st_shm_list_off(tok->size), n * sizeof(uint64_t));
    psi_hash128 a = st_shm_anchor(hd->list, n, tok->size);
    if (a.lo != tok->sum.lo || a.hi != tok->sum.hi) {
        psi_obj_release(obj);
        return psi_fail(err, EIO, "shm store: object %.*s: checksum list does not match the "
                        "token (corrupted segment)", (int)tok->key_len, tok->key);
    }
    obj->verify = shm_verify;
    return 0;
}

static int st_shm_release(psi_store *base, const psi_token *tok, psi_err *err)
{
    st_shm *s = (st_shm *)base;
    uint64_t gen = 0;
    pthread_mutex_lock(&s->lock);
    shm_seg *g = seg_of_token(s, tok, &gen, err);
    int rc = g ? 0 : -1;
    bool gone = false;
    if (g) {
        shm_hdr *h = g->hdr;
        hdr_lock(h);
        if (h->gen == gen && h->state == SHM_READY && h->lifetime != PSI_LIFE_TTL &&
            h->refs > 0)
            h->refs--;
        gone = hdr_maybe_free(h, now_s());
        hdr_unlock(h);
        if (gone && !g->own && !g->users)
            seg_drop(s, g, true);
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static int st_shm_exists(psi_store *base, const psi_token *tok)
{
    st_shm *s = (st_shm *)base;
    uint64_t gen = 0;
    psi_err e;
    pthread_mutex_lock(&s->lock);
    shm_seg *g = seg_of_token(s, tok, &gen, &e);
    int yes = 0;
    if (g) {
        hdr_lock(g->hdr);
        yes = g->hdr->gen == gen && g->hdr->state == SHM_READY;
        hdr_unlock(g->hdr);
    }
    pthread_mutex_unlock(&s->lock);
    return yes;
}

/* A fan-out: one more token for an object this process still has READY. */
static int st_shm_ref(psi_store *base, const psi_token *tok, psi_token *out, psi_err *err)
{
    st_shm *s = (st_shm *)base;
    uint64_t gen = 0;
    pthread_mutex_lock(&s->lock);
    shm_seg *g = seg_of_token(s, tok, &gen, err);
    int rc = -1;
    if (g) {
        shm_hdr *h = g->hdr;
        hdr_lock(h);
        /* refs > 0: an object whose last reference is gone may already be
         * free for reuse; the caller then puts again. */
        if (h->gen == gen && h->state == SHM_READY && h->size == tok->size &&
            (h->lifetime == PSI_LIFE_TTL || h->refs > 0)) {
            h->refs++;
            rc = 0;
        } else {
            psi_fail(err, ENOENT, "shm store: object %.*s is gone", (int)tok->key_len, tok->key);
        }
        hdr_unlock(h);
    }
    pthread_mutex_unlock(&s->lock);
    if (rc == 0)
        *out = *tok;
    return rc;
}

/* ---- ls ------------------------------------------------------------------- */

struct ls_ctx {
    psi_ls_fn fn;
    void *arg;
    int64_t now;
    int stop;
};

static void ls_visit(st_shm *s, const char *name, void *arg)
{
    struct ls_ctx *c = arg;
    shm_hdr *h;
    size_t len;
    psi_err e;

    if (c->stop || seg_map(s, name, false, &h, &len, &e) < 0)
        return;
    psi_obj_info o;
    memset(&o, 0, sizeof o);
    hdr_lock(h);
    bool ready = h->state == SHM_READY;
    snprintf(o.key, sizeof o.key, "%s.%" PRIx64, name, h->gen);
    o.size = h->size;
    o.age = c->now - h->put_time;
    o.refs = h->lifetime == PSI_LIFE_TTL ? -1 : (int64_t)h->refs;
    o.expires = h->expiry - c->now;
    o.lifetime = (int)h->lifetime;
    snprintf(o.where, sizeof o.where, "pid %d (%s), %" PRIu64 " MiB segment, %u readers",
             (int)h->owner_pid, owner_alive(h) ? "running" : "gone", h->capacity >> 20,
             h->holds);
    hdr_unlock(h);
    munmap(h, len);
    if (ready && c->fn(&o, c->arg))
        c->stop = 1;
}

static int st_shm_ls(psi_store *base, psi_ls_fn fn, void *arg, psi_err *err)
{
    struct ls_ctx c = {.fn = fn, .arg = arg, .now = now_s()};
    return shm_walk((st_shm *)base, ls_visit, &c, err);
}

/* ---- open / close --------------------------------------------------------- */

/* Every open handle of this process, for the exit-time cleanup. */
static pthread_mutex_t shm_all_lock = PTHREAD_MUTEX_INITIALIZER;
static st_shm *shm_all[8];

/* At exit, this process's FREE segments are left to the pool, warm, up to
 * keep_bytes; the rest are unlinked. READY ones stay for the readers of
 * their tokens. */
static void shm_atexit(void)
{
    pthread_mutex_lock(&shm_all_lock);
    for (size_t k = 0; k < sizeof shm_all / sizeof shm_all[0]; k++) {
        st_shm *s = shm_all[k];
        if (!s || s->pid != getpid())
            continue;
        uint64_t kept = 0;
        pthread_mutex_lock(&s->lock);
        for (size_t i = 0; i < s->nsegs; i++) {
            shm_seg *g = s->segs[i];
            char path[PATH_MAX];
            if (!g->own || path_of(s, g->name, path) < 0)
                continue;
            hdr_lock(g->hdr);
            bool is_free = g->hdr->state == SHM_FREE, keep = false;
            if (is_free && kept + g->hdr->capacity <= s->keep_bytes) {
                g->hdr->owner_pid = 0;
                g->hdr->owner_start = 0;
                g->hdr->idle_since = now_s();
                kept += g->hdr->capacity;
                keep = true;
            }
            hdr_unlock(g->hdr);
            if (is_free && !keep)
                unlink(path); /* the mapping stays valid for any late user */
        }
        pthread_mutex_unlock(&s->lock);
    }
    pthread_mutex_unlock(&shm_all_lock);
}

/* The default pool budget: a quarter of the tmpfs, at most 8 GiB. */
static uint64_t default_max(const char *dir)
{
    struct statvfs v;
    char parent[PATH_MAX];
    snprintf(parent, sizeof parent, "%s", dir);
    char *slash = strrchr(parent, '/');
    if (slash && slash != parent)
        *slash = '\0';
    if (statvfs(parent, &v) < 0)
        return 1ull << 30;
    uint64_t q = (uint64_t)v.f_blocks * v.f_frsize / 4;
    return q > (8ull << 30) ? 8ull << 30 : q < SHM_ALIGN * 4 ? SHM_ALIGN * 4 : q;
}

static int st_shm_open(const char *url, psi_store **out, psi_err *err)
{
    char dir[PATH_MAX];
    uint64_t max = 0, keep = 0;

    if (!url || !url[0]) {
        const char *env = getenv("PSI_STORE");
        url = env && strncmp(env, "shm://", 6) == 0 ? env : "shm://";
    }
    if (strlen(url) >= sizeof(((psi_store *)0)->url))
        return psi_fail(err, ENAMETOOLONG, "PSI_STORE: URL too long");
    if (st_shm_parse_url(url, dir, &max, &keep, err) < 0)
        return -1;
    if (!dir[0]) {
        struct stat st;
        if (stat("/dev/shm", &st) < 0 || !S_ISDIR(st.st_mode) || access("/dev/shm", W_OK) < 0)
            return psi_fail(err, ENOENT, "shm store: /dev/shm is not a writable directory (use "
                            "shm:///dir on a tmpfs, or another connector)");
        snprintf(dir, sizeof dir, "/dev/shm/psi-shm-%u", (unsigned)geteuid());
    }
    st_shm *s = calloc(1, sizeof *s);
    if (!s)
        return psi_fail(err, ENOMEM, "shm store: out of memory");
    s->base.ops = &psi_store_shm_ops;
    snprintf(s->base.url, sizeof s->base.url, "%s", url);
    snprintf(s->dir, sizeof s->dir, "%s", dir);
    s->max_bytes = max ? max : default_max(dir);
    s->keep_bytes = keep != UINT64_MAX ? keep : s->max_bytes / 4 < (1ull << 30) ? s->max_bytes / 4
                                                                              : 1ull << 30;
    pthread_mutex_init(&s->lock, NULL);
    s->pid = getpid();
    s->start = proc_start(s->pid);

    pthread_mutex_lock(&shm_all_lock);
    static bool registered;
    if (!registered)
        registered = atexit(shm_atexit) == 0;
    for (size_t k = 0; k < sizeof shm_all / sizeof shm_all[0]; k++)
        if (!shm_all[k]) {
            shm_all[k] = s;
            break;
        }
    pthread_mutex_unlock(&shm_all_lock);
    *out = &s->base;
    return 0;
}

static void shm_unregister(st_shm *s)
{
    pthread_mutex_lock(&shm_all_lock);
    for (size_t k = 0; k < sizeof shm_all / sizeof shm_all[0]; k++)
        if (shm_all[k] == s)
            shm_all[k] = NULL;
    pthread_mutex_unlock(&shm_all_lock);
}

/* Objects still resolved through this handle keep it: closing is only for
 * tools and tests, which release their objects first. */
static void st_shm_close(psi_store *base)
{
    st_shm *s = (st_shm *)base;
    shm_unregister(s);
    pthread_mutex_lock(&s->lock);
    while (s->nsegs) {
        shm_seg *g = s->segs[0];
        bool unlink_it = false;
        if (g->own && s->pid == getpid()) {
            hdr_lock(g->hdr);
            unlink_it = g->hdr->state == SHM_FREE;
            hdr_unlock(g->hdr);
        }
        seg_drop(s, g, unlink_it);
    }
    pthread_mutex_unlock(&s->lock);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

/* A fork child leaves the parent's pool alone: the mappings and the handle
 * are left as they are (objects the child inherited still point into
 * them), and the child opens its own pool on its next put. */
static void st_shm_forget(psi_store *base)
{
    shm_unregister((st_shm *)base);
}

const psi_store_ops psi_store_shm_ops = {
    .scheme = "shm",
    .id = PSI_CONN_SHM,
    .open = st_shm_open,
    .put = st_shm_put,
    .get = st_shm_get,
    .release = st_shm_release,
    .exists = st_shm_exists,
    .gc = st_shm_gc,
    .ls = st_shm_ls,
    .close = st_shm_close,
    .forget = st_shm_forget,
    .ref = st_shm_ref,
};
