/* pl_caller: call-site resolution with libunwind (DESIGN §7).
 *
 * Two costs, kept apart. Collecting return addresses costs about 10 ns a
 * frame (unw_backtrace, with libunwind's trace cache); naming one costs
 * 50-100 us (libunwind reads the module's ELF symbol table; a cursor walk
 * alone is ~500 ns a frame). So every call collects the first
 * PL_CALLER_KEY return addresses outside this library as a key; only a new
 * key walks with a cursor, and only a new return address is named. Sites
 * and frames are published lock-free and never change; the mutex only
 * orders writers. */
#define UNW_LOCAL_ONLY
#include <dlfcn.h>
#include <errno.h>
#include <libunwind.h>
#include <link.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pl_caller.h"

/* libunwind is loaded privately (dlopen, RTLD_LOCAL) and only when a policy
 * names a caller or a dry run reports call sites. Linking it would put its
 * unversioned _Unwind_* exception entry points in the global scope of every
 * interposed program, where libstdc++ and libgcc_s would bind to them: C++
 * exceptions would run on a different unwinder. */
#define PL_STR2(x) #x
#define PL_STR(x) PL_STR2(x) /* expands libunwind's name macros first */

static struct {
    int (*getcontext)(unw_context_t *);
    int (*init_local)(unw_cursor_t *, unw_context_t *);
    int (*step)(unw_cursor_t *);
    int (*get_reg)(unw_cursor_t *, unw_regnum_t, unw_word_t *);
    int (*get_proc_name)(unw_cursor_t *, char *, size_t, unw_word_t *);
    int (*get_proc_info)(unw_cursor_t *, unw_proc_info_t *);
    int (*backtrace)(void **, int);
} pl_unw;

static bool pl_unw_load(void)
{
    void *h = dlopen("libunwind.so.8", RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return false;
    *(void **)&pl_unw.getcontext = dlsym(h, PL_STR(unw_tdep_getcontext));
    *(void **)&pl_unw.init_local = dlsym(h, PL_STR(unw_init_local));
    *(void **)&pl_unw.step = dlsym(h, PL_STR(unw_step));
    *(void **)&pl_unw.get_reg = dlsym(h, PL_STR(unw_get_reg));
    *(void **)&pl_unw.get_proc_name = dlsym(h, PL_STR(unw_get_proc_name));
    *(void **)&pl_unw.get_proc_info = dlsym(h, PL_STR(unw_get_proc_info));
    *(void **)&pl_unw.backtrace = dlsym(h, "unw_backtrace");
    if (pl_unw.getcontext && pl_unw.init_local && pl_unw.step && pl_unw.get_reg &&
        pl_unw.get_proc_name && pl_unw.get_proc_info && pl_unw.backtrace)
        return true;
    memset(&pl_unw, 0, sizeof(pl_unw));
    return false;
}

/* From here on the libunwind names used below go through the table. */
#undef unw_getcontext
#undef unw_init_local
#undef unw_step
#undef unw_get_reg
#undef unw_get_proc_name
#undef unw_get_proc_info
#define unw_getcontext(uc) pl_unw.getcontext(uc)
#define unw_init_local(c, uc) pl_unw.init_local((c), (uc))
#define unw_step(c) pl_unw.step(c)
#define unw_get_reg(c, r, v) pl_unw.get_reg((c), (r), (v))
#define unw_get_proc_name(c, b, l, o) pl_unw.get_proc_name((c), (b), (l), (o))
#define unw_get_proc_info(c, pi) pl_unw.get_proc_info((c), (pi))
#define unw_backtrace(b, n) (pl_unw.backtrace ? pl_unw.backtrace((b), (n)) : 0)

#define PL_CALLER_NAME_MAX 256 /* longer (C++) names are truncated */
#define PL_CALLER_RAW 64       /* addresses collected for a key: ours + the key */
#define PL_CALLER_STEPS 256    /* a corrupt stack must not loop forever */
#define PL_CALLER_ARENA (2 << 20)
#define PL_CALLER_STRS 8192    /* interned strings; stops at 3/4 full */
#define PL_CALLER_FRAMES 4096  /* named return addresses; stops at 3/4 full */

/* A cached call site: immutable once published. */
typedef struct pl_site {
    uintptr_t key[PL_CALLER_KEY];
    size_t nkey;
    size_t n;
    const char *const *names;
    const char *callsite;
} pl_site;

/* A named return address: sites share frames (main, the event loop), and
 * naming one costs 50-100 us, so each is named once. Immutable. */
typedef struct pl_frame {
    uintptr_t ip;
    const char *name;
    const char *mod; /* module basename */
    uintptr_t off;
    bool libc;
} pl_frame;

/* One walk's results before interning; also what a thread gets back when
 * the cache is full. */
typedef struct pl_walk {
    size_t n;
    const char *names[PL_CALLER_MAX];
    char text[PL_CALLER_MAX][PL_CALLER_NAME_MAX];
    char callsite[PL_CALLER_NAME_MAX + 96];
} pl_walk;

static _Atomic(pl_site *) pl_slots[PL_CALLER_SITES];
static _Atomic(pl_frame *) pl_frame_slots[PL_CALLER_FRAMES];

/* Writer state, under pl_lock. */
static pthread_mutex_t pl_lock = PTHREAD_MUTEX_INITIALIZER;
static size_t pl_nsites, pl_nframes;
static const char *pl_strs[PL_CALLER_STRS];
static size_t pl_nstrs;
static _Alignas(16) char pl_arena[PL_CALLER_ARENA];
static size_t pl_arena_used;

static atomic_uint_fast64_t pl_hits, pl_misses;

/* Our module's address range, when we are a shared object (the preload
 * library). When the caller code is linked into the main program (unit
 * tests) the range stays empty and only pl_caller.c's own frames are
 * skipped: the rest of the program is the application. */
static uintptr_t pl_self_lo, pl_self_hi;

static pthread_once_t pl_once = PTHREAD_ONCE_INIT;
static pthread_key_t pl_walk_key;
static bool pl_walk_key_ok;
static _Thread_local pl_walk *pl_tls_walk;

/* ---- set-up and fork ------------------------------------------------- */

static int pl_find_self(struct dl_phdr_info *info, size_t size, void *data)
{
    uintptr_t addr = (uintptr_t)data, lo = UINTPTR_MAX, hi = 0;
    bool mine = false;
    (void)size;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD)
            continue;
        uintptr_t s = info->dlpi_addr + ph->p_vaddr, e = s + ph->p_memsz;
        lo = s < lo ? s : lo;
        hi = e > hi ? e : hi;
        mine |= addr >= s && addr < e;
    }
    if (!mine)
        return 0;
    if (info->dlpi_name && info->dlpi_name[0]) { /* "" is the main program */
        pl_self_lo = lo;
        pl_self_hi = hi;
    }
    return 1;
}

static void pl_atfork_prepare(void)
{
    pthread_mutex_lock(&pl_lock);
}

static void pl_atfork_parent(void)
{
    pthread_mutex_unlock(&pl_lock);
}

static void pl_atfork_child(void)
{
    /* The forking thread held the lock, so the tables are whole; the
     * mutex itself is reborn rather than unlocked by a "different" owner. */
    pthread_mutex_init(&pl_lock, NULL);
}

static void pl_free_walk(void *p)
{
    free(p);
}

static void pl_caller_init_once(void)
{
    int saved = errno;
    dl_iterate_phdr(pl_find_self, (void *)(uintptr_t)pl_callers);
    pl_walk_key_ok = pthread_key_create(&pl_walk_key, pl_free_walk) == 0;
    pthread_atfork(pl_atfork_prepare, pl_atfork_parent, pl_atfork_child);
    if (!pl_unw_load())
        return; /* no libunwind: callers and call sites stay unknown */
    void *prime[2]; /* libunwind's own set-up happens here, not mid-send */
    unw_backtrace(prime, 2);
    errno = saved;
}

void pl_caller_init(void)
{
    pthread_once(&pl_once, pl_caller_init_once);
}

/* ---- keys -------------------------------------------------------------- */

static bool pl_in_self(uintptr_t ip)
{
    return ip >= pl_self_lo && ip < pl_self_hi;
}

/* Index of the first frame outside us: past the entry point's own frame
 * (found by its return address `ret`), then past our module. */
static size_t pl_first_outside(void *const *ips, size_t n, uintptr_t ret)
{
    size_t i = 0;
    while (i < n && (uintptr_t)ips[i] != ret)
        i++;
    if (i == n)
        i = 0; /* not found (should not happen): rely on the module range */
    while (i < n && pl_in_self((uintptr_t)ips[i]))
        i++;
    return i;
}

/* The first PL_CALLER_KEY return addresses outside us. A hit must stay
 * cheap on deep stacks (an interpreter's), so collect a few frames first
 * and more only if our own frames used them up. */
static size_t pl_key(uintptr_t ret, uintptr_t key[PL_CALLER_KEY])
{
    void *ips[PL_CALLER_RAW];
    for (int want = PL_CALLER_RAW / 4;; want = PL_CALLER_RAW) {
        int got = unw_backtrace(ips, want);
        size_t n = got > 0 ? (size_t)got : 0, k = 0;
        for (size_t i = pl_first_outside(ips, n, ret); i < n && k < PL_CALLER_KEY; i++)
            key[k++] = (uintptr_t)ips[i];
        if (k == PL_CALLER_KEY || got < want || want == PL_CALLER_RAW)
            return k;
    }
}

static uint64_t pl_key_hash(const uintptr_t *key, size_t nkey)
{
    uint64_t h = nkey;
    for (size_t i = 0; i < nkey; i++) {
        h = (h ^ key[i]) * 0x9e3779b97f4a7c15ull;
        h ^= h >> 29;
    }
    return h;
}

static const pl_site *pl_lookup(const uintptr_t *key, size_t nkey, uint64_t h)
{
    for (size_t i = 0; i < PL_CALLER_SITES; i++) {
        pl_site *s = atomic_load_explicit(&pl_slots[(h + i) % PL_CALLER_SITES],
                                          memory_order_acquire);
        if (!s)
            return NULL;
        if (s->nkey == nkey && memcmp(s->key, key, nkey * sizeof(*key)) == 0)
            return s;
    }
    return NULL;
}

/* ---- interning ----------------------------------------------------------- */

static void *pl_arena_alloc(size_t size)
{
    size_t at = (pl_arena_used + 15) & ~(size_t)15;
    if (at > PL_CALLER_ARENA || size > PL_CALLER_ARENA - at)
        return NULL;
    pl_arena_used = at + size;
    return pl_arena + at;
}

static uint64_t pl_str_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

/* Capacity is checked by the caller, so this cannot fail half-way. */
static const char *pl_intern(const char *s)
{
    uint64_t h = pl_str_hash(s);
    size_t i = h % PL_CALLER_STRS;
    for (; pl_strs[i]; i = (i + 1) % PL_CALLER_STRS)
        if (strcmp(pl_strs[i], s) == 0)
            return pl_strs[i];
    size_t len = strlen(s) + 1;
    char *copy = pl_arena_alloc(len);
    memcpy(copy, s, len);
    pl_strs[i] = copy;
    pl_nstrs++;
    return copy;
}

/* ---- naming (the slow path) -------------------------------------------- */

static const char *pl_basename(const char *path)
{
    const char *slash = path ? strrchr(path, '/') : NULL;
    return slash ? slash + 1 : (path && path[0] ? path : "??");
}

static bool pl_is_libc(const char *base)
{
    return strncmp(base, "libc.so", 7) == 0 || strncmp(base, "libc-", 5) == 0;
}

/* Names the cursor's frame into buf ("??" when it has no symbol); *off is
 * from the function start, else from the module base, else the address. */
static void pl_name_frame(unw_cursor_t *cur, uintptr_t ip, const Dl_info *dl, bool have_dl,
                          char *buf, size_t cap, uintptr_t *off)
{
    unw_word_t uoff = 0;
    unw_proc_info_t pi;
    int r = unw_get_proc_name(cur, buf, cap, &uoff);
    /* In a module without .symtab (Debian's libc) libunwind answers with the
     * nearest exported symbol before ip, whatever its size: a wrong name.
     * The unwind info knows where the function really starts; a name whose
     * start differs belongs to another function. ENOMEM: truncated, fine. */
    if ((r == 0 || r == -UNW_ENOMEM) && buf[0] &&
        (unw_get_proc_info(cur, &pi) != 0 || pi.start_ip == 0 || pi.start_ip == ip - uoff)) {
        *off = uoff;
        return;
    }
    if (have_dl && dl->dli_sname && dl->dli_saddr) {
        snprintf(buf, cap, "%s", dl->dli_sname);
        *off = ip - (uintptr_t)dl->dli_saddr;
        return;
    }
    snprintf(buf, cap, "??");
    *off = have_dl ? ip - (uintptr_t)dl->dli_fbase : ip;
}

static uint64_t pl_ip_hash(uintptr_t ip)
{
    uint64_t h = ip * 0x9e3779b97f4a7c15ull;
    return h ^ (h >> 29);
}

/* The frame at ip: cached, or named now (into scratch, PL_CALLER_NAME_MAX
 * bytes) and cached if there is room. */
static void pl_frame_info(unw_cursor_t *cur, uintptr_t ip, char *scratch, pl_frame *out)
{
    uint64_t h = pl_ip_hash(ip);
    for (size_t i = 0; i < PL_CALLER_FRAMES; i++) {
        pl_frame *f = atomic_load_explicit(&pl_frame_slots[(h + i) % PL_CALLER_FRAMES],
                                           memory_order_acquire);
        if (!f)
            break;
        if (f->ip == ip) {
            *out = *f;
            return;
        }
    }

    Dl_info dl;
    /* ip - 1: a return address may be past the end of a function that ends
     * in a call (noreturn), i.e. in the next function. */
    bool have_dl = dladdr((void *)(ip - 1), &dl) != 0;
    out->ip = ip;
    out->mod = pl_basename(have_dl ? dl.dli_fname : NULL);
    out->libc = pl_is_libc(out->mod);
    pl_name_frame(cur, ip, &dl, have_dl, scratch, PL_CALLER_NAME_MAX, &out->off);
    out->name = scratch;

    pthread_mutex_lock(&pl_lock);
    size_t need = sizeof(pl_frame) + 16 + strlen(out->name) + 1 + 16 + strlen(out->mod) + 1 + 16;
    if (pl_nframes < PL_CALLER_FRAMES / 4 * 3 && pl_nstrs + 2 <= PL_CALLER_STRS / 4 * 3 &&
        need <= PL_CALLER_ARENA - pl_arena_used) {
        size_t i = h % PL_CALLER_FRAMES;
        pl_frame *f;
        while ((f = atomic_load_explicit(&pl_frame_slots[i], memory_order_relaxed)) &&
               f->ip != ip)
            i = (i + 1) % PL_CALLER_FRAMES;
        if (!f) { /* else another thread named it first */
            f = pl_arena_alloc(sizeof(*f));
            *f = *out;
            f->name = pl_intern(out->name);
            f->mod = pl_intern(out->mod);
            atomic_store_explicit(&pl_frame_slots[i], f, memory_order_release);
            pl_nframes++;
        }
        out->name = f->name; /* interned: the walk's names stay valid */
        out->mod = f->mod;
    }
    pthread_mutex_unlock(&pl_lock);
}

/* Walks the whole stack (up to PL_CALLER_MAX frames past ours) and names it.
 * A cursor walk, not unw_backtrace, because names need the cursor; the
 * frames to skip are found the same way as for the key. */
static void pl_walk_stack(uintptr_t ret, pl_walk *w)
{
    unw_context_t uc;
    unw_cursor_t cur;
    void *ips[PL_CALLER_STEPS];
    size_t n = 0;

    w->n = 0;
    snprintf(w->callsite, sizeof(w->callsite), "??");
    if (unw_getcontext(&uc) != 0 || unw_init_local(&cur, &uc) != 0)
        return;
    do {
        unw_word_t ip;
        if (unw_get_reg(&cur, UNW_REG_IP, &ip) != 0 || ip == 0)
            break;
        ips[n++] = (void *)ip;
    } while (n < PL_CALLER_STEPS && unw_step(&cur) > 0);

    size_t first = pl_first_outside(ips, n, ret);
    if (unw_init_local(&cur, &uc) != 0)
        return;
    for (size_t i = 0; i < first; i++)
        if (unw_step(&cur) <= 0)
            return;

    bool have_site = false;
    char libc_site[sizeof(w->callsite)] = "";
    for (size_t i = first; i < n && w->n < PL_CALLER_MAX; i++) {
        pl_frame f;
        pl_frame_info(&cur, (uintptr_t)ips[i], w->text[w->n], &f);
        w->names[w->n++] = f.name;
        /* The call site is the application's, not libc's (fwrite -> write),
         * unless the stack is nothing but libc. */
        if (!have_site && !(f.libc && libc_site[0])) {
            snprintf(f.libc ? libc_site : w->callsite, sizeof(w->callsite), "%s+0x%lx (%s)",
                     f.name, (unsigned long)f.off, f.mod);
            have_site = !f.libc;
        }
        if (i + 1 < n && unw_step(&cur) <= 0)
            break;
    }
    if (!have_site && libc_site[0])
        memcpy(w->callsite, libc_site, sizeof(libc_site));
}

/* Publishes w under key; NULL when the cache is full. */
static const pl_site *pl_insert(const uintptr_t *key, size_t nkey, uint64_t h,
                                const pl_walk *w)
{
    pthread_mutex_lock(&pl_lock);
    const pl_site *found = pl_lookup(key, nkey, h); /* another thread won */
    if (found)
        goto out;
    /* Worst case, every string new and every block padded. */
    size_t need = sizeof(pl_site) + 16 + w->n * sizeof(char *) + 16 +
                  strlen(w->callsite) + 1 + 16;
    for (size_t i = 0; i < w->n; i++)
        need += strlen(w->names[i]) + 1 + 16;
    if (pl_nsites >= PL_CALLER_SITES / 4 * 3 ||
        pl_nstrs + w->n + 1 > PL_CALLER_STRS / 4 * 3 ||
        need > PL_CALLER_ARENA - pl_arena_used)
        goto out;

    pl_site *s = pl_arena_alloc(sizeof(*s));
    const char **names = pl_arena_alloc((w->n ? w->n : 1) * sizeof(*names));
    for (size_t i = 0; i < w->n; i++)
        names[i] = pl_intern(w->names[i]);
    memcpy(s->key, key, nkey * sizeof(*key));
    s->nkey = nkey;
    s->n = w->n;
    s->names = names;
    s->callsite = pl_intern(w->callsite);
    size_t i = h % PL_CALLER_SITES;
    while (atomic_load_explicit(&pl_slots[i], memory_order_relaxed))
        i = (i + 1) % PL_CALLER_SITES;
    atomic_store_explicit(&pl_slots[i], s, memory_order_release);
    pl_nsites++;
    found = s;
out:
    pthread_mutex_unlock(&pl_lock);
    return found;
}

static pl_walk *pl_thread_walk(void)
{
    if (!pl_tls_walk) {
        pl_tls_walk = malloc(sizeof(*pl_tls_walk));
        if (pl_tls_walk && pl_walk_key_ok)
            pthread_setspecific(pl_walk_key, pl_tls_walk);
    }
    return pl_tls_walk;
}

/* The site for the stack above `ret`: cached, or this thread's walk when
 * the cache is full (*walk set, NULL return). */
static const pl_site *pl_resolve(uintptr_t ret, pl_walk **walk)
{
    uintptr_t key[PL_CALLER_KEY];
    *walk = NULL;
    pl_caller_init();
    if (!pl_unw.backtrace)
        return NULL; /* libunwind could not be loaded */
    size_t nkey = pl_key(ret, key);
    uint64_t h = pl_key_hash(key, nkey);
    const pl_site *s = pl_lookup(key, nkey, h);
    if (s) {
        atomic_fetch_add_explicit(&pl_hits, 1, memory_order_relaxed);
        return s;
    }
    atomic_fetch_add_explicit(&pl_misses, 1, memory_order_relaxed);
    pl_walk *w = pl_thread_walk();
    if (!w)
        return NULL;
    pl_walk_stack(ret, w);
    s = pl_insert(key, nkey, h, w);
    if (!s)
        *walk = w;
    return s;
}

/* ---- the API --------------------------------------------------------------- */

/* noinline: the entry points find where the caller's frames start by their
 * own return address, so they must have a frame of their own. */
__attribute__((noinline)) const char *const *pl_callers(void *arg, size_t *n)
{
    static const char *const none[1] = {"??"};
    int saved = errno;
    (void)arg;
    uintptr_t ret = (uintptr_t)__builtin_extract_return_addr(__builtin_return_address(0));
    pl_walk *w;
    const pl_site *s = pl_resolve(ret, &w);
    const char *const *out = none;
    *n = 0;
    if (s) {
        out = s->names;
        *n = s->n;
    } else if (w) {
        out = w->names;
        *n = w->n;
    }
    errno = saved;
    return out;
}

__attribute__((noinline)) const char *pl_callsite(void)
{
    int saved = errno;
    uintptr_t ret = (uintptr_t)__builtin_extract_return_addr(__builtin_return_address(0));
    pl_walk *w;
    const pl_site *s = pl_resolve(ret, &w);
    const char *out = s ? s->callsite : w ? w->callsite : "??";
    errno = saved;
    return out;
}

uint64_t pl_caller_cache_hits(void)
{
    return atomic_load(&pl_hits);
}

uint64_t pl_caller_cache_misses(void)
{
    return atomic_load(&pl_misses);
}

size_t pl_caller_cache_sites(void)
{
    pthread_mutex_lock(&pl_lock);
    size_t n = pl_nsites;
    pthread_mutex_unlock(&pl_lock);
    return n;
}
