/* pl_epoll: the epoll overlay (DESIGN §4).
 *
 * Bytes we hold in user space (pl_state.ready) are invisible to the kernel,
 * so an fd whose next bytes sit in our hold queue would never be reported
 * by the real epoll. The overlay keeps, per epoll instance, a shadow of the
 * registrations of fds we track: (fd, state, events, epoll_data, armed,
 * last reported edge).
 *
 * - The shadow hangs off a pl_state of kind PL_KIND_EPOLL attached to the
 *   epoll fd at epoll_create, so dup, close and stale-number clearing work
 *   as for every other tracked fd; the last close frees it (finalize).
 *   Registrations are keyed by fd number, as the kernel's are, and refer to
 *   the member's state without a reference: a member's finalize (its open
 *   file description is gone, so the kernel dropped it too) removes it
 *   from every shadow.
 * - epoll_wait: with no shadowed fd held-ready, the real call runs
 *   unchanged. Otherwise the real call gets timeout 0 and EPOLLIN is merged
 *   in for each held-ready fd, carrying the application's epoll_data: into
 *   the kernel's event with the same data if there is one, else appended
 *   while maxevents allows (a rotating start keeps it fair).
 * - EPOLLET: a held-ready fd is reported once per edge, an edge being any
 *   growth of its held bytes (pl_state.ready_gen, bumped by pl_ready_update).
 *   EPOLLONESHOT: once reported (by us or by the kernel) the shadow entry is
 *   disarmed, and so is the kernel registration, until EPOLL_CTL_MOD.
 *   EPOLLEXCLUSIVE: each growth of a member's held bytes is reported by
 *   one exclusive registration only, the first whose wait claims it
 *   (pl_ep_claim); that one keeps reporting it (level) until the bytes are
 *   taken, the others stay quiet until the next growth.
 * - Nesting: an epoll fd is itself tracked, and pl_has_ready on it asks
 *   whether it has a held-ready member, so poll/select and an outer epoll
 *   see it readable.
 * - Wakeups: a thread asleep in the real epoll_wait cannot see bytes another
 *   thread leaves in our hold queue. Each shadow owns an eventfd registered
 *   in the real set with data PL_EP_MAGIC (filtered out of every result);
 *   when a watched state's bytes grow (pl_state.ep_watched is the cheap
 *   hint), pl_epoll_notify signals the eventfd of every shadow holding it.
 *   That also makes the epoll fd readable to the kernel, which wakes an
 *   outer epoll or a poll on it. A wakeup with nothing to report goes back
 *   to sleep for the rest of the timeout.
 *
 * Locks: the global list lock (rwlock) comes before a shadow's lock; a
 * shadow's lock comes before an inner (nested) shadow's. Member states are
 * read through atomics only, never under their in_lock from here, while
 * pl_epoll_notify runs under the member's in_lock. */
#include "pl_epoll.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>

#include "pl_engine.h"
#include "pl_real.h"

#define PL_EP_MAX_DEPTH 5 /* the kernel's own limit on epoll nesting */

typedef struct pl_ep_entry {
    int fd;
    pl_state *st; /* the member; valid while registered (see above) */
    uint32_t events;
    epoll_data_t data;
    bool armed;        /* false after an EPOLLONESHOT report, until MOD */
    unsigned seen_gen; /* EPOLLET: ready_gen at the last report */
} pl_ep_entry;

typedef struct pl_epoll {
    pthread_mutex_t lock;
    pl_ep_entry *ent;
    size_t n, cap, cursor;
    int epfd;           /* the number it was created at (oneshot disarm) */
    int efd;            /* the wakeup eventfd, -1 until a member is tracked;
                         * once it is in the real set, the state's
                         * ep_shadowing is set and results are filtered */
    atomic_int signalled;
    /* Some member may be held-ready: set by every growth of a member's
     * bytes (pl_epoll_notify) and by ADD/MOD, cleared by a scan that finds
     * nothing. A shadowed wait with no held bytes costs one load of it. */
    atomic_int hot;
    size_t n_oneshot;           /* entries with EPOLLONESHOT */
    atomic_size_t n_nested;     /* entries that are epoll fds themselves */
    struct pl_epoll *next; /* the global list, for pl_epoll_notify */
} pl_epoll;

static pthread_rwlock_t pl_ep_list_lock = PTHREAD_RWLOCK_INITIALIZER;
static pl_epoll *pl_ep_list;
static pthread_once_t pl_ep_once = PTHREAD_ONCE_INIT;

static void pl_ep_atfork_child(void)
{
    pthread_rwlock_init(&pl_ep_list_lock, NULL);
    for (pl_epoll *ep = pl_ep_list; ep; ep = ep->next)
        pthread_mutex_init(&ep->lock, NULL);
}

static void pl_ep_once_fn(void)
{
    pthread_atfork(NULL, NULL, pl_ep_atfork_child);
}

/* Attaches a fresh shadow to epfd. Caller: epoll_create, or epoll_ctl on
 * an epoll fd we did not see created (inherited across exec). */
static pl_state *pl_ep_attach(int epfd)
{
    pthread_once(&pl_ep_once, pl_ep_once_fn);
    pl_epoll *ep = calloc(1, sizeof(*ep));
    if (!ep)
        return NULL;
    pl_state *st = pl_state_new(PL_KIND_EPOLL);
    if (!st) {
        free(ep);
        return NULL;
    }
    pthread_mutex_init(&ep->lock, NULL);
    ep->epfd = epfd;
    ep->efd = -1;
    st->ep = ep;
    pthread_rwlock_wrlock(&pl_ep_list_lock);
    ep->next = pl_ep_list;
    pl_ep_list = ep;
    pthread_rwlock_unlock(&pl_ep_list_lock);
    if (pl_fd_attach(epfd, st) != 0)
        return NULL; /* beyond the table: the put above freed it */
    return st;
}

int pl_epoll_created(int fd)
{
    /* PSI_DISABLE or a broken policy: no fd is ever tracked, so no
     * shadow is needed (touch nothing). */
    if (fd >= 0 && !pl_g.passthrough) {
        int saved = errno;
        pl_ep_attach(fd);
        errno = saved;
    }
    return fd;
}

/* ---- readiness of one registration ------------------------------------ */

static bool pl_ep_has_ready_depth(pl_state *st, int depth);

static bool pl_ep_member_ready(pl_state *m, int depth)
{
    if (m->kind == PL_KIND_EPOLL)
        return depth < PL_EP_MAX_DEPTH && pl_ep_has_ready_depth(m, depth + 1);
    return atomic_load_explicit(&m->ready, memory_order_seq_cst) != 0;
}

/* Would a wait report e from held bytes? *gen gets the edge to record. */
static bool pl_ep_candidate(const pl_ep_entry *e, int depth, unsigned *gen)
{
    if (!e->armed || !(e->events & (EPOLLIN | EPOLLRDNORM)))
        return false;
    /* Generation first, then bytes: a racing growth yields at worst one
     * extra edge later, never a lost one. */
    *gen = atomic_load_explicit(&e->st->ready_gen, memory_order_seq_cst);
    if (!pl_ep_member_ready(e->st, depth))
        return false;
    /* An epoll member has no byte generations: it is reported as level. */
    if ((e->events & EPOLLET) && e->st->kind != PL_KIND_EPOLL && *gen == e->seen_gen)
        return false;
    return true;
}

/* Takes the hot hint for a scan. An epoll member's readiness has no
 * growth events of its own here, so a shadow holding one always scans. */
static bool pl_ep_take_hot(pl_epoll *ep)
{
    bool hot = atomic_exchange_explicit(&ep->hot, 0, memory_order_seq_cst) != 0;
    return hot || atomic_load_explicit(&ep->n_nested, memory_order_relaxed) > 0;
}

static bool pl_ep_any_ready(pl_epoll *ep, int depth)
{
    if (!atomic_load_explicit(&ep->hot, memory_order_seq_cst) &&
        !atomic_load_explicit(&ep->n_nested, memory_order_relaxed))
        return false;
    bool any = false;
    unsigned gen;
    pthread_mutex_lock(&ep->lock);
    /* Cleared before the scan: a growth during it sets the hint again. */
    if (pl_ep_take_hot(ep))
        for (size_t i = 0; i < ep->n && !any; i++)
            any = pl_ep_candidate(&ep->ent[i], depth, &gen);
    if (any)
        atomic_store_explicit(&ep->hot, 1, memory_order_seq_cst);
    pthread_mutex_unlock(&ep->lock);
    return any;
}

/* A nested member is held by the outer shadow's lock (pl_ep_forget takes
 * it before a member's *ep goes); the outermost is held by a reference. */
static bool pl_ep_has_ready_depth(pl_state *st, int depth)
{
    pl_epoll *ep = st->ep;
    if (!ep || !atomic_load_explicit(&st->ep_shadowing, memory_order_acquire))
        return false;
    return pl_ep_any_ready(ep, depth);
}

bool pl_epoll_has_ready(pl_state *st)
{
    /* No tracked member ever: one load, nothing dereferenced. */
    if (!atomic_load_explicit(&st->ep_shadowing, memory_order_acquire))
        return false;
    atomic_fetch_add_explicit(&st->refs, 1, memory_order_acq_rel);
    bool any = pl_ep_has_ready_depth(st, 0);
    pl_state_put(st);
    return any;
}

/* ---- wakeups ---------------------------------------------------------- */

static void pl_ep_signal(pl_epoll *ep)
{
    atomic_store_explicit(&ep->hot, 1, memory_order_seq_cst);
    if (ep->efd < 0 || atomic_exchange_explicit(&ep->signalled, 1, memory_order_seq_cst))
        return;
    int saved = errno;
    uint64_t one = 1;
    ssize_t w = REAL(write)(ep->efd, &one, sizeof(one));
    (void)w; /* EAGAIN: the counter is already huge, still readable */
    errno = saved;
}

static void pl_ep_drain(pl_epoll *ep)
{
    /* Clear the flag before reading: a notify racing with us either sees it
     * clear and signals again (one spurious wakeup) or has already stored
     * the bytes we are about to look at. */
    atomic_store_explicit(&ep->signalled, 0, memory_order_seq_cst);
    int saved = errno;
    uint64_t v;
    ssize_t r = REAL(read)(ep->efd, &v, sizeof(v));
    (void)r;
    errno = saved;
}

void pl_epoll_notify(pl_state *st)
{
    pthread_rwlock_rdlock(&pl_ep_list_lock);
    for (pl_epoll *ep = pl_ep_list; ep; ep = ep->next) {
        pthread_mutex_lock(&ep->lock);
        for (size_t i = 0; i < ep->n; i++)
            if (ep->ent[i].st == st && ep->ent[i].armed) {
                pl_ep_signal(ep);
                break;
            }
        pthread_mutex_unlock(&ep->lock);
    }
    pthread_rwlock_unlock(&pl_ep_list_lock);
}

/* ---- registrations ---------------------------------------------------- */

static pl_ep_entry *pl_ep_find(pl_epoll *ep, int fd)
{
    for (size_t i = 0; i < ep->n; i++)
        if (ep->ent[i].fd == fd)
            return &ep->ent[i];
    return NULL;
}

static void pl_ep_count(pl_epoll *ep, const pl_ep_entry *e, int d)
{
    if (e->events & EPOLLONESHOT)
        ep->n_oneshot += (size_t)d;
    if (e->st->kind == PL_KIND_EPOLL)
        atomic_fetch_add_explicit(&ep->n_nested, (size_t)d, memory_order_relaxed);
}

static void pl_ep_remove_at(pl_epoll *ep, size_t i)
{
    pl_ep_count(ep, &ep->ent[i], -1);
    ep->ent[i] = ep->ent[--ep->n];
}

/* The eventfd goes into the real set with the first tracked member. */
static int pl_ep_wakeup_on(pl_state *st, pl_epoll *ep, int epfd)
{
    if (ep->efd >= 0)
        return 0;
    int efd = REAL(eventfd)(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (efd < 0)
        return -1;
    if (pl_fd_get(efd))
        pl_fd_detach(efd); /* a stale state at this number */
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = PL_EP_MAGIC};
    if (REAL(epoll_ctl)(epfd, EPOLL_CTL_ADD, efd, &ev) != 0) {
        REAL(close)(efd);
        return -1;
    }
    ep->efd = efd;
    atomic_store_explicit(&st->ep_shadowing, true, memory_order_seq_cst);
    return 0;
}

static void pl_ep_shadow(pl_state *st, int epfd, int op, int fd, const struct epoll_event *ev)
{
    pl_epoll *ep = st->ep;
    pthread_mutex_lock(&ep->lock);
    pl_ep_entry *e = pl_ep_find(ep, fd);
    pl_state *m = op == EPOLL_CTL_DEL ? NULL : pl_fd_get(fd);
    if (!m) {
        if (e)
            pl_ep_remove_at(ep, (size_t)(e - ep->ent));
        pthread_mutex_unlock(&ep->lock);
        return;
    }
    if (!e) {
        if (pl_ep_wakeup_on(st, ep, epfd) != 0)
            goto out; /* no overlay for this fd; the kernel still has it */
        if (ep->n == ep->cap) {
            size_t cap = ep->cap ? ep->cap * 2 : 8;
            pl_ep_entry *ne = realloc(ep->ent, cap * sizeof(*ne));
            if (!ne)
                goto out;
            ep->ent = ne;
            ep->cap = cap;
        }
        e = &ep->ent[ep->n++];
        e->fd = fd;
    } else {
        pl_ep_count(ep, e, -1);
    }
    e->st = m;
    e->events = ev->events;
    e->data = ev->data;
    e->armed = true;
    pl_ep_count(ep, e, 1);
    /* ADD and MOD make the kernel check readiness now, edge-triggered or
     * not: bytes already held count as a fresh edge. */
    e->seen_gen = atomic_load_explicit(&m->ready_gen, memory_order_seq_cst) - 1;
    atomic_store_explicit(&m->ep_watched, true, memory_order_seq_cst);
    unsigned gen;
    if (pl_ep_candidate(e, 0, &gen))
        pl_ep_signal(ep); /* a thread already asleep in epoll_wait must look */
out:
    pthread_mutex_unlock(&ep->lock);
}

static pthread_mutex_t pl_ep_attach_lock = PTHREAD_MUTEX_INITIALIZER;

int pl_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
    int r = REAL(epoll_ctl)(epfd, op, fd, ev);
    if (r != 0 || (op != EPOLL_CTL_DEL && !ev))
        return r;
    /* A member we do not track, on an epoll fd whose shadow never had one
     * (so has no entry to drop): nothing of ours to do. Two lookups, one
     * per fd, and one load. */
    if (op == EPOLL_CTL_DEL || !pl_fd_get(fd)) {
        pl_state *e = pl_fd_get(epfd);
        if (!e || !atomic_load_explicit(&e->ep_shadowing, memory_order_acquire))
            return r;
    }
    int saved = errno;
    pl_state *st = pl_state_get(epfd);
    if (!st && op != EPOLL_CTL_DEL && pl_fd_get(fd)) {
        /* An epoll fd from before we were loaded: shadow it from now on. */
        pthread_mutex_lock(&pl_ep_attach_lock);
        if (!pl_fd_get(epfd))
            pl_ep_attach(epfd);
        pthread_mutex_unlock(&pl_ep_attach_lock);
        st = pl_state_get(epfd);
    }
    if (st && st->kind == PL_KIND_EPOLL && st->ep)
        pl_ep_shadow(st, epfd, op, fd, ev);
    if (st)
        pl_state_put(st);
    errno = saved;
    return r;
}

/* ---- waiting ---------------------------------------------------------- */

static int pl_ep_real(int epfd, struct epoll_event *ev, int max, int how,
                      const struct timespec *ts, const sigset_t *mask)
{
    if (how == PL_EP_PWAIT2 && REAL(epoll_pwait2))
        return pl_real.epoll_pwait2(epfd, ev, max, ts, mask);
    int ms = -1;
    if (ts) {
        /* Round up, as the kernel does for the millisecond calls. */
        long long v = (long long)ts->tv_sec * 1000 + (ts->tv_nsec + 999999) / 1000000;
        ms = v > INT32_MAX ? INT32_MAX : (int)v;
    }
    if (how == PL_EP_WAIT)
        return REAL(epoll_wait)(epfd, ev, max, ms);
    return REAL(epoll_pwait)(epfd, ev, max, ms, mask);
}

/* Drops our eventfd's event from a result; drains it when seen. */
static int pl_ep_filter(pl_epoll *ep, struct epoll_event *ev, int k)
{
    int out = 0;
    bool seen = false;
    for (int i = 0; i < k; i++) {
        if (ev[i].data.u64 == PL_EP_MAGIC) {
            seen = true;
            continue;
        }
        ev[out++] = ev[i];
    }
    if (seen)
        pl_ep_drain(ep);
    return out;
}

/* Disarms a oneshot registration in the kernel too, so it does not report
 * the fd a second time before the application re-arms it. */
static void pl_ep_kernel_disarm(pl_epoll *ep, pl_ep_entry *e)
{
    if (pl_fd_get(e->fd) != e->st)
        return; /* that number is another file now */
    struct epoll_event off = {.events = EPOLLONESHOT, .data = e->data};
    int saved = errno;
    REAL(epoll_ctl)(ep->epfd, EPOLL_CTL_MOD, e->fd, &off);
    errno = saved;
}

static int pl_ep_find_event(const struct epoll_event *ev, int k, uint64_t data)
{
    for (int i = 0; i < k; i++)
        if (ev[i].data.u64 == data)
            return i;
    return -1;
}

/* EPOLLEXCLUSIVE: the kernel wakes one exclusive waiter (or a few) for new
 * data; for bytes held in user space, the first shadow to claim a
 * generation of them reports it, and only that shadow, until the next
 * growth. The claim packs the generation and a shadow id into one word. */
static bool pl_ep_claim(pl_state *st, unsigned gen, const pl_epoll *ep)
{
    uint64_t me = (uint64_t)gen << 32 | ((uint64_t)(uintptr_t)ep & 0xffffffffu);
    uint64_t cur = atomic_load_explicit(&st->excl_claim, memory_order_seq_cst);
    if (cur == me)
        return true; /* ours: level-triggered, report again */
    if ((uint32_t)(cur >> 32) == gen)
        return false; /* another shadow took this generation */
    return atomic_compare_exchange_strong(&st->excl_claim, &cur, me);
}

/* Adds held-ready registrations to the kernel's k events. */
static int pl_ep_merge(pl_epoll *ep, struct epoll_event *ev, int k, int max)
{
    /* No kernel event to match oneshots against and no member marked hot:
     * nothing to add, and no lock to take (the common idle wake-up). */
    if (k == 0 && !atomic_load_explicit(&ep->hot, memory_order_seq_cst) &&
        !atomic_load_explicit(&ep->n_nested, memory_order_relaxed))
        return 0;
    pthread_mutex_lock(&ep->lock);
    int kernel = k;
    /* The kernel disarmed its oneshot registrations it just reported. */
    for (size_t i = 0; i < ep->n && kernel > 0 && ep->n_oneshot > 0; i++) {
        pl_ep_entry *e = &ep->ent[i];
        if ((e->events & EPOLLONESHOT) && e->armed &&
            pl_ep_find_event(ev, kernel, e->data.u64) >= 0)
            e->armed = false;
    }
    size_t n = pl_ep_take_hot(ep) ? ep->n : 0;
    size_t start = n ? ep->cursor % n : 0;
    bool again = false; /* a registration that will still be ready */
    for (size_t j = 0; j < n; j++) {
        pl_ep_entry *e = &ep->ent[(start + j) % n];
        unsigned gen;
        if (!pl_ep_candidate(e, 0, &gen))
            continue;
        if ((e->events & EPOLLEXCLUSIVE) && !pl_ep_claim(e->st, gen, ep))
            continue;
        uint32_t in = e->events & (EPOLLIN | EPOLLRDNORM);
        int at = pl_ep_find_event(ev, kernel, e->data.u64);
        if (at >= 0) {
            ev[at].events |= in;
        } else if (k < max) {
            ev[k].events = in;
            ev[k].data = e->data;
            k++;
        } else {
            ep->cursor = (start + j) % n; /* first one left out goes first next time */
            again = true;
            break;
        }
        e->seen_gen = gen;
        if (e->events & EPOLLONESHOT) {
            e->armed = false;
            if (at < 0)
                pl_ep_kernel_disarm(ep, e);
        } else if (!(e->events & EPOLLET)) {
            again = true; /* level-triggered: reported until the bytes are taken */
        }
    }
    if (again)
        atomic_store_explicit(&ep->hot, 1, memory_order_seq_cst);
    pthread_mutex_unlock(&ep->lock);
    return k;
}

static struct timespec pl_ep_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t;
}

/* Time left until deadline (never negative). */
static struct timespec pl_ep_left(struct timespec deadline)
{
    struct timespec now = pl_ep_now(), d = {0, 0};
    long long ns = ((long long)deadline.tv_sec - now.tv_sec) * 1000000000LL +
                   (deadline.tv_nsec - now.tv_nsec);
    if (ns > 0) {
        d.tv_sec = ns / 1000000000LL;
        d.tv_nsec = ns % 1000000000LL;
    }
    return d;
}

static int pl_ep_wait_shadowed(pl_state *st, int epfd, struct epoll_event *ev, int max,
                               int how, const struct timespec *ts, const sigset_t *mask)
{
    pl_epoll *ep = st->ep;
    struct timespec deadline = {0, 0};
    /* A zero timeout is a poll: one round, no clock. */
    bool poll_only = ts && ts->tv_sec == 0 && ts->tv_nsec == 0;
    if (ts && !poll_only) {
        deadline = pl_ep_now();
        deadline.tv_sec += ts->tv_sec;
        deadline.tv_nsec += ts->tv_nsec;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
    }
    for (;;) {
        bool any = pl_ep_any_ready(ep, 0);
        struct timespec zero = {0, 0}, left;
        const struct timespec *t = ts;
        if (any)
            t = &zero;
        else if (ts)
            t = (left = pl_ep_left(deadline), &left);
        int k = pl_ep_real(epfd, ev, max, how, t, mask);
        if (k < 0) {
            if (errno != EINTR || !any)
                return -1;
            k = 0; /* interrupted, but we have events of our own to report */
        }
        k = pl_ep_filter(ep, ev, k);
        int saved = errno;
        k = pl_ep_merge(ep, ev, k, max);
        errno = saved;
        if (k > 0 || poll_only)
            return k;
        if (ts) {
            struct timespec l = pl_ep_left(deadline);
            if (l.tv_sec == 0 && l.tv_nsec == 0)
                return 0;
        }
        /* Woken for bytes another thread took first: sleep again. */
    }
}

static bool pl_ep_on(const pl_state *st)
{
    return st && atomic_load_explicit(&st->ep_shadowing, memory_order_acquire);
}

/* A reference to epfd's shadow for a wait that uses it. */
static pl_state *pl_ep_hold(int epfd)
{
    pl_state *st = pl_state_get(epfd);
    if (st && (st->kind != PL_KIND_EPOLL || !st->ep)) {
        pl_state_put(st);
        st = NULL;
    }
    return st;
}

int pl_epoll_wait(int epfd, struct epoll_event *ev, int maxevents, int how,
                  const struct timespec *ts, const sigset_t *mask)
{
    /* Nothing of ours is registered (the common case, every event loop's
     * epoll fd is tracked): one lookup and one load, then the real call,
     * untouched, with no reference taken. */
    pl_state *e = pl_fd_get(epfd);
    if (maxevents <= 0 || !pl_ep_on(e)) {
        int k = pl_ep_real(epfd, ev, maxevents, how, ts, mask);
        /* A first tracked member added meanwhile may have put our eventfd
         * in: then its event must be filtered out and ours merged in. (An
         * epoll fd we had no state for may have got one meanwhile.) */
        if (k <= 0 || !pl_ep_on(e ? e : pl_fd_get(epfd)))
            return k;
        pl_state *st = pl_ep_hold(epfd);
        if (!st)
            return k;
        int saved = errno;
        k = pl_ep_filter(st->ep, ev, k);
        k = pl_ep_merge(st->ep, ev, k, maxevents);
        errno = saved;
        /* Only our wakeup: not a timeout, wait again (the timeout starts
         * over in this one race, a bounded overrun). */
        if (k == 0)
            k = pl_ep_wait_shadowed(st, epfd, ev, maxevents, how, ts, mask);
        saved = errno;
        pl_state_put(st);
        errno = saved;
        return k;
    }
    pl_state *st = pl_ep_hold(epfd);
    if (!st) /* closed or reused meanwhile: the real call reports it */
        return pl_ep_real(epfd, ev, maxevents, how, ts, mask);
    int k = pl_ep_wait_shadowed(st, epfd, ev, maxevents, how, ts, mask);
    int saved = errno;
    pl_state_put(st);
    errno = saved;
    return k;
}

/* ---- lifetimes -------------------------------------------------------- */

static void pl_ep_forget(pl_state *m)
{
    pthread_rwlock_rdlock(&pl_ep_list_lock);
    for (pl_epoll *ep = pl_ep_list; ep; ep = ep->next) {
        pthread_mutex_lock(&ep->lock);
        for (size_t i = 0; i < ep->n;)
            if (ep->ent[i].st == m)
                pl_ep_remove_at(ep, i);
            else
                i++;
        pthread_mutex_unlock(&ep->lock);
    }
    pthread_rwlock_unlock(&pl_ep_list_lock);
}

void pl_epoll_finalize(pl_state *st)
{
    if (atomic_load(&st->ep_watched)) {
        pl_ep_forget(st);
        atomic_store(&st->ep_watched, false);
    }
    pl_epoll *ep = st->ep;
    if (!ep)
        return;
    atomic_store_explicit(&st->ep_shadowing, false, memory_order_seq_cst);
    st->ep = NULL;
    pthread_rwlock_wrlock(&pl_ep_list_lock);
    for (pl_epoll **pp = &pl_ep_list; *pp; pp = &(*pp)->next)
        if (*pp == ep) {
            *pp = ep->next;
            break;
        }
    pthread_rwlock_unlock(&pl_ep_list_lock);
    int saved = errno;
    if (ep->efd >= 0)
        REAL(close)(ep->efd);
    errno = saved;
    pthread_mutex_destroy(&ep->lock);
    free(ep->ent);
    free(ep);
}
