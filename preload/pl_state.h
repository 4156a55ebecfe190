/* pl_state: per open-file-description state and the fd table (DESIGN §5).
 *
 * One refcounted pl_state per open file description we interpose; every fd
 * that dup/dup2/dup3/F_DUPFD makes points at the same object. The fd table
 * is a two-level sparse array read without locks: an fd we do not track
 * costs two loads and a branch, nothing else. States are never returned to
 * malloc: freed ones go on a free list and are reused, so a racing lookup
 * (an application using an fd while another thread closes it) reads valid,
 * if stale, memory rather than freed memory. */
#ifndef PL_STATE_H
#define PL_STATE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "pl_proto.h"
#include "psi_store.h"

enum pl_kind {
    PL_KIND_STREAM = 1,   /* connected TCP or Unix stream socket */
    PL_KIND_LISTENER = 2, /* a listening socket: only its registry entry */
    PL_KIND_PIPE = 3,     /* a pipe or FIFO end (or socketpair end, later) */
    PL_KIND_EPOLL = 4,    /* an epoll instance: its shadow registrations (pl_epoll.c) */
};

/* Outbound direction (docs/protocol.md §1). */
enum pl_out_mode {
    PL_OUT_PLAIN = 0,     /* never framed */
    PL_OUT_UNDECIDED = 1, /* accepting side before HELLO was seen: plain so far */
    PL_OUT_OFFER = 2,     /* HELLO goes before the next byte we send */
    PL_OUT_ANSWER = 3,    /* ANSWER goes before the next byte we send */
    PL_OUT_FRAMED = 4,
};

/* Inbound direction. */
enum pl_in_mode {
    PL_IN_PLAIN = 0,
    PL_IN_DETECT = 1, /* first bytes not yet checked for HELLO */
    PL_IN_SEEK = 2,   /* we sent HELLO: plain bytes until ANSWER */
    PL_IN_FRAMED = 3,
};

/* A run of decoded bytes the application has not taken yet. */
typedef struct pl_seg {
    struct pl_seg *next;
    const uint8_t *data;
    size_t len, off;
    psi_obj obj; /* what to release when the segment is used up */
} pl_seg;

typedef struct pl_state {
    atomic_int refs;  /* fds pointing here, plus calls in flight */
    uint8_t kind;
    uint8_t channel;  /* POL_CH_* bit (psi_policy.h): tcp, unix or pipe */
    struct sockaddr_storage peer; /* the connected peer, for policy matching */
    socklen_t peer_len;           /* 0 when unknown (pipes) */

    /* outbound, under out_lock */
    pthread_mutex_t out_lock;
    atomic_int out_mode;
    uint32_t data_left; /* app bytes still owed to an open DATA record */
    uint32_t early_peeks; /* PL_OUT_UNDECIDED writes that peeked for HELLO */

    /* inbound, under in_lock */
    pthread_mutex_t in_lock;
    int in_mode;
    int in_err;          /* sticky errno once the inbound stream is broken */
    pl_rx rx;
    uint8_t detect[PL_HELLO_LEN];
    size_t detect_len;
    uint8_t answer[PL_HELLO_LEN]; /* the ANSWER we seek (PL_IN_SEEK) */
    uint8_t seek_held[PL_HELLO_LEN];
    size_t seek_len;
    pl_seg *hold, *hold_tail;     /* decoded bytes not yet taken */
    uint8_t *raw;                 /* bytes read from the kernel, not yet decoded */
    size_t raw_len, raw_off, raw_cap;
    atomic_size_t ready;          /* hold + raw bytes, read by the poll overlay without in_lock */
    atomic_uint ready_gen;        /* bumped whenever `ready` grows (EPOLLET edges) */
    atomic_uint_fast64_t excl_claim; /* EPOLLEXCLUSIVE: generation << 32 | claiming shadow */
    atomic_bool ep_watched;       /* some epoll shadow holds this state (pl_epoll.c) */
    struct pl_epoll *ep;          /* PL_KIND_EPOLL: the shadow registrations */
    /* PL_KIND_EPOLL: our wakeup eventfd is in the real set, so the shadow
     * has (or had) a tracked member. Lives here, not in *ep, so the fast
     * paths read it without a reference: a state is never freed, only
     * recycled, while *ep is freed when the epoll fd closes. */
    atomic_bool ep_shadowing;

    uint8_t nonce[PL_NONCE_LEN];  /* ours (OFFER) or the peer's (ANSWER) */

    /* The open object this state belongs to, taken when it is first
     * attached: an exec handoff finds it again by these, whatever fd number
     * the new image has it on (pl_handoff.c). */
    uint64_t key_dev, key_ino;
    int key_acc;                  /* O_ACCMODE: tells a pipe's two ends apart */

    char reg_entry[512];          /* listener: registry file to remove */
    pid_t reg_pid;                /* only the registering process removes it */
    struct pl_state *next_free;
} pl_state;

/* Decoded bytes waiting in the hold queue. Under in_lock. */
static inline size_t pl_hold_bytes(const pl_state *st)
{
    size_t n = 0;
    for (const pl_seg *s = st->hold; s; s = s->next)
        n += s->len - s->off;
    return n;
}

#define PL_FD_CHUNK 1024
#define PL_FD_CHUNKS 1024 /* tracks fds below 1M; higher fds are never touched */

extern _Atomic(pl_state *) *_Atomic pl_fdtab[PL_FD_CHUNKS];

/* The fast path: one table lookup, no lock, no allocation, no syscall. */
static inline pl_state *pl_fd_get(int fd)
{
    if ((unsigned)fd >= (unsigned)PL_FD_CHUNK * PL_FD_CHUNKS)
        return NULL;
    _Atomic(pl_state *) *chunk =
        atomic_load_explicit(&pl_fdtab[(unsigned)fd / PL_FD_CHUNK], memory_order_acquire);
    if (!chunk)
        return NULL;
    return atomic_load_explicit(&chunk[(unsigned)fd % PL_FD_CHUNK], memory_order_acquire);
}

/* A new state with refs = 1 (for the fd it will be attached to). */
pl_state *pl_state_new(int kind);

/* Points fd at st (taking over one reference). An old state at fd is
 * dropped. Returns 0, or -1 if fd is out of range or memory ran out. */
int pl_fd_attach(int fd, pl_state *st);

/* Makes fd2 another name for the state of fd (dup). */
void pl_fd_dup(int fd, int fd2);

/* Forgets fd (close, or a stale number reused by the kernel). */
void pl_fd_detach(int fd);

/* Lookup for a call that will use the state: takes a reference that
 * pl_state_put drops. NULL if fd is not tracked. */
pl_state *pl_state_get(int fd);
void pl_state_put(pl_state *st);

/* Called when the last reference goes: releases held bytes, removes a
 * listener's registry entry. Set by the engine. */
extern void (*pl_state_finalize)(pl_state *st);

/* fork support: re-initialises every state lock in the child. */
void pl_fdtab_atfork_child(void);

/* Records the pid that owns this copy of the table (pl_init, fork child). */
void pl_fdtab_set_owner(void);

/* True in a child that runs on its parent's memory (vfork, a CLONE_VM
 * clone): the table is the parent's, and must not change. */
bool pl_fdtab_shared_child(void);

/* Calls fn for every tracked fd in increasing order; stops early and
 * returns true when fn does. Slow path only (fork, exec, tests). */
bool pl_fdtab_each(bool (*fn)(int fd, pl_state *st, void *ctx), void *ctx);

/* Number of fds currently tracked (tests, stats). */
size_t pl_fdtab_count(void);

#endif
