/* pl_fdtab: the fd -> state table and state lifetimes. */
#include "pl_state.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

_Atomic(pl_state *) *_Atomic pl_fdtab[PL_FD_CHUNKS];

/* Guards chunk creation and the free list; never taken on the fast path. */
static pthread_mutex_t pl_tab_lock = PTHREAD_MUTEX_INITIALIZER;
static pl_state *pl_free_list;

void (*pl_state_finalize)(pl_state *st);

static void pl_state_init_locks(pl_state *st)
{
    pthread_mutex_init(&st->out_lock, NULL);
    pthread_mutex_init(&st->in_lock, NULL);
}

pl_state *pl_state_new(int kind)
{
    pthread_mutex_lock(&pl_tab_lock);
    pl_state *st = pl_free_list;
    if (st)
        pl_free_list = st->next_free;
    pthread_mutex_unlock(&pl_tab_lock);
    if (!st) {
        st = malloc(sizeof(*st));
        if (!st)
            return NULL;
    }
    memset(st, 0, sizeof(*st));
    pl_state_init_locks(st);
    atomic_init(&st->refs, 1);
    atomic_init(&st->out_mode, PL_OUT_PLAIN);
    atomic_init(&st->ready, 0);
    st->kind = (uint8_t)kind;
    st->in_mode = PL_IN_PLAIN;
    pl_rx_init(&st->rx);
    return st;
}

static void pl_state_free(pl_state *st)
{
    if (pl_state_finalize)
        pl_state_finalize(st);
    pthread_mutex_destroy(&st->out_lock);
    pthread_mutex_destroy(&st->in_lock);
    pthread_mutex_lock(&pl_tab_lock);
    st->next_free = pl_free_list;
    pl_free_list = st;
    pthread_mutex_unlock(&pl_tab_lock);
}

void pl_state_put(pl_state *st)
{
    if (atomic_fetch_sub_explicit(&st->refs, 1, memory_order_acq_rel) == 1)
        pl_state_free(st);
}

pl_state *pl_state_get(int fd)
{
    pl_state *st = pl_fd_get(fd);
    if (st)
        atomic_fetch_add_explicit(&st->refs, 1, memory_order_acq_rel);
    return st;
}

static _Atomic(pl_state *) *pl_slot(int fd, bool create)
{
    if (fd < 0 || (unsigned)fd >= (unsigned)PL_FD_CHUNK * PL_FD_CHUNKS)
        return NULL;
    unsigned ci = (unsigned)fd / PL_FD_CHUNK;
    _Atomic(pl_state *) *chunk = atomic_load_explicit(&pl_fdtab[ci], memory_order_acquire);
    if (!chunk && create) {
        pthread_mutex_lock(&pl_tab_lock);
        chunk = atomic_load_explicit(&pl_fdtab[ci], memory_order_acquire);
        if (!chunk) {
            chunk = calloc(PL_FD_CHUNK, sizeof(*chunk));
            if (chunk)
                atomic_store_explicit(&pl_fdtab[ci], chunk, memory_order_release);
        }
        pthread_mutex_unlock(&pl_tab_lock);
    }
    return chunk ? &chunk[(unsigned)fd % PL_FD_CHUNK] : NULL;
}

/* vfork and posix_spawn children run on the parent's memory until they
 * exec: a dup2 or close there (subprocess's child sets up fds 0-2 that way)
 * must not rewrite the parent's table or drop its references. Such a child
 * is told apart by its pid; a pid change with separate memory is a fork
 * that skipped the atfork handlers (_Fork, raw clone), which simply takes
 * the table over. The check costs a getpid only on table changes, never on
 * the lookup path. */
static atomic_int pl_owner;

void pl_fdtab_set_owner(void)
{
    atomic_store(&pl_owner, (int)getpid());
}

bool pl_fdtab_shared_child(void)
{
    int owner = atomic_load(&pl_owner);
    int self = (int)getpid();
    if (owner == 0 || owner == self)
        return false;
    /* kcmp says whether two processes share one address space. Where it is
     * unavailable, assume the worst and leave the table alone. */
    int saved = errno;
    long same = syscall(SYS_kcmp, self, owner, KCMP_VM, 0, 0);
    bool gone = same < 0 && errno == ESRCH;
    errno = saved;
    if (same > 0 || gone) {
        atomic_store(&pl_owner, self);
        return false;
    }
    return true;
}

/* Once per state: the object's identity for an exec handoff. */
static void pl_state_note_key(pl_state *st, int fd)
{
    struct stat sb;
    if (st->key_ino || fstat(fd, &sb) != 0)
        return;
    int fl = fcntl(fd, F_GETFL);
    st->key_dev = (uint64_t)sb.st_dev;
    st->key_ino = (uint64_t)sb.st_ino;
    st->key_acc = fl >= 0 ? (fl & O_ACCMODE) : O_RDWR;
}

int pl_fd_attach(int fd, pl_state *st)
{
    if (pl_fdtab_shared_child()) {
        pl_state_put(st);
        return -1;
    }
    _Atomic(pl_state *) *slot = pl_slot(fd, true);
    if (!slot) {
        pl_state_put(st);
        return -1;
    }
    int saved = errno;
    pl_state_note_key(st, fd);
    errno = saved;
    pl_state *old = atomic_exchange_explicit(slot, st, memory_order_acq_rel);
    if (old)
        pl_state_put(old);
    return 0;
}

void pl_fd_dup(int fd, int fd2)
{
    pl_state *st = pl_state_get(fd);
    if (!st) {
        pl_fd_detach(fd2);
        return;
    }
    if (pl_fd_attach(fd2, st) != 0)
        return; /* fd2 beyond the table: it stays plain */
}

void pl_fd_detach(int fd)
{
    _Atomic(pl_state *) *slot = pl_slot(fd, false);
    if (!slot || !atomic_load(slot) || pl_fdtab_shared_child())
        return;
    pl_state *old = atomic_exchange_explicit(slot, NULL, memory_order_acq_rel);
    if (old)
        pl_state_put(old);
}

bool pl_fdtab_each(bool (*fn)(int fd, pl_state *st, void *ctx), void *ctx)
{
    for (unsigned ci = 0; ci < PL_FD_CHUNKS; ci++) {
        _Atomic(pl_state *) *chunk = atomic_load(&pl_fdtab[ci]);
        if (!chunk)
            continue;
        for (unsigned i = 0; i < PL_FD_CHUNK; i++) {
            pl_state *st = atomic_load(&chunk[i]);
            if (st && fn((int)(ci * PL_FD_CHUNK + i), st, ctx))
                return true;
        }
    }
    return false;
}

static bool pl_reinit_fn(int fd, pl_state *st, void *ctx)
{
    (void)fd;
    (void)ctx;
    pl_state_init_locks(st);
    return false;
}

void pl_fdtab_atfork_child(void)
{
    /* Another thread may have held a state lock at fork; the child has only
     * this thread, so every lock is re-initialised unlocked. The state
     * itself is whatever the parent's memory held at that instant. */
    pthread_mutex_init(&pl_tab_lock, NULL);
    pl_fdtab_set_owner();
    pl_fdtab_each(pl_reinit_fn, NULL);
}

static bool pl_count_fn(int fd, pl_state *st, void *ctx)
{
    (void)fd;
    (void)st;
    (*(size_t *)ctx)++;
    return false;
}

size_t pl_fdtab_count(void)
{
    size_t n = 0;
    pl_fdtab_each(pl_count_fn, &n);
    return n;
}
