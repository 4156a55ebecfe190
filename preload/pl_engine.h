/* pl_engine: the framing engine behind the data hooks (DESIGN §3, §4).
 *
 * Hooks look the fd up; for a tracked fd they describe the call as a pl_io
 * (which real call to use, the application's flags and msghdr) and hand it
 * here. The engine speaks docs/protocol.md on framed directions and is a
 * pass-through on plain ones. */
#ifndef PL_ENGINE_H
#define PL_ENGINE_H

#include <stdbool.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "pl_state.h"
#include "psi_config.h"
#include "psi_policy.h"

typedef struct pl_io {
    int fd;
    bool sock;          /* use recvmsg/sendmsg (flags apply), else readv/writev */
    int flags;          /* the application's MSG_* flags */
    struct msghdr *msg; /* the application's msghdr (name, control), or NULL */
    bool ctl_seen;      /* a real recvmsg reported name/control back into msg */
} pl_io;

/* Process-wide settings, filled by pl_init before any hook does real work. */
typedef struct pl_global {
    psi_config cfg;
    bool ready;       /* config loaded */
    bool passthrough; /* PSI_DISABLE, or a policy error: touch nothing */
    bool dryrun;      /* PSI_DRYRUN: observe and record, never frame or store */
    struct psi_policy *policy; /* PSI_POLICY, loaded; NULL: threshold only */
    uint64_t min_candidate;    /* no send below this size can be proxied */
} pl_global;

extern pl_global pl_g;

void pl_init(void); /* idempotent; the constructor calls it */

/* Data path. Both take and release the state's direction lock. */
ssize_t pl_send(pl_state *st, pl_io *io, const void *buf, size_t n);
ssize_t pl_recv(pl_state *st, pl_io *io, void *buf, size_t n);

/* Vector forms: framed directions handle one iovec at a time (a short
 * count is legal on a stream) and loop only where the kernel would. */
ssize_t pl_sendv(pl_state *st, pl_io *io, const struct iovec *iov, int iovcnt);
ssize_t pl_recvv(pl_state *st, pl_io *io, const struct iovec *iov, int iovcnt);

/* Bytes the application can read without the kernel (poll overlay). */
bool pl_epoll_has_ready(pl_state *st); /* pl_epoll.c: an epoll fd with held-ready members */
static inline bool pl_has_ready(pl_state *st)
{
    if (st->kind == PL_KIND_EPOLL)
        return pl_epoll_has_ready(st);
    return atomic_load_explicit(&st->ready, memory_order_acquire) != 0;
}

/* Socket lifecycle (pl_sock.c). */
enum { PL_OFFER_LISTED = 1, PL_OFFER_REGISTRY = 2 };
/* 0, or why the destination is known to be interposed. */
int pl_should_offer(int fd, const struct sockaddr *sa, socklen_t len);
void pl_on_connected(int fd, const struct sockaddr *sa, socklen_t len, int how,
                     bool in_progress);
void pl_on_accepted(int listener, int fd);
void pl_on_listen(int fd);
void pl_on_pipe(int fds[2]);
void pl_on_shutdown(int fd, int how);
void pl_scan_std_fds(void);

/* Policy (pl_policy.c). pl_policy_init loads PSI_POLICY: -1 on errors
 * (the caller then passes everything through). pl_decide is the decision
 * for a send of n bytes on st; pl_log_send reports a `log` action. */
int pl_policy_init(void);
void pl_decide(pl_state *st, uint64_t n, pol_decision *d);
/* The same for a send with no fd state (ZeroMQ): channel is a POL_CH_* bit,
 * peer may be NULL (peer_len 0). */
void pl_decide_for(int channel, const struct sockaddr *peer, socklen_t peer_len, uint64_t n,
                   pol_decision *d);
void pl_log_send(pl_state *st, int fd, uint64_t n, const pol_decision *d);
/* The same for a send with no fd state; where: "on socket 0x...", "to rank 3". */
void pl_log_send_for(int channel, const char *where, uint64_t n, const pol_decision *d);

/* Called before a state is recycled. */
void pl_engine_finalize(pl_state *st);

/* Random bytes for nonces (getrandom, with a clock fallback). */
void pl_random(void *buf, size_t n);

#endif
