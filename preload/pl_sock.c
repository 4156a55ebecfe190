/* pl_sock: who frames what, decided at connect, accept, listen and pipe
 * (docs/protocol.md §1, DESIGN §3). */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "pl_dryrun.h"
#include "pl_engine.h"
#include "pl_io.h"
#include "pl_real.h"
#include "psi_log.h"
#include "psi_registry.h"
#include "psi_store.h"

void pl_random(void *buf, size_t n)
{
    uint8_t *p = buf;
    while (n > 0) {
        ssize_t r = getrandom(p, n, GRND_NONBLOCK);
        if (r <= 0)
            break;
        p += r;
        n -= (size_t)r;
    }
    if (n > 0) {
        /* No entropy yet (early boot): a nonce only has to be unlikely to
         * appear in the peer's plain bytes, so a clock mix will do. */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)getpid();
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            p[i] = (uint8_t)x;
        }
    }
}

static bool pl_stream_family(int family)
{
    return family == AF_INET || family == AF_INET6 || family == AF_UNIX;
}

static bool pl_is_stream_socket(int fd)
{
    int type = 0, domain = 0;
    socklen_t l = sizeof(type);
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l) != 0 || type != SOCK_STREAM)
        return false;
    l = sizeof(domain);
    return getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &l) == 0 && pl_stream_family(domain);
}

/* Channel and peer address, for policy matching and dry-run reports. */
static void pl_note_peer(pl_state *st, int fd)
{
    st->peer_len = sizeof(st->peer);
    if (getpeername(fd, (struct sockaddr *)&st->peer, &st->peer_len) != 0)
        st->peer_len = 0;
    int family = st->peer_len ? st->peer.ss_family : AF_UNSPEC;
    if (family == AF_UNSPEC) {
        int domain = 0;
        socklen_t l = sizeof(domain);
        if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &l) == 0)
            family = domain;
    }
    st->channel = family == AF_UNIX ? POL_CH_UNIX : POL_CH_TCP;
}

/* A connect still in progress has no peer yet: use the destination. */
static void pl_note_dest(pl_state *st, const struct sockaddr *sa, socklen_t len)
{
    if (len > sizeof(st->peer))
        len = sizeof(st->peer);
    memcpy(&st->peer, sa, len);
    st->peer_len = len;
    st->channel = sa->sa_family == AF_UNIX ? POL_CH_UNIX : POL_CH_TCP;
}

int pl_should_offer(int fd, const struct sockaddr *sa, socklen_t len)
{
    /* A store connector's own connections (Redis, a ZeroMQ object server,
     * made by libzmq's I/O thread) are never framed: they carry the store's
     * protocol, not the app's. */
    if (!pl_g.ready || pl_g.passthrough || pl_g.dryrun || psi_store_thread_internal() || !sa ||
        len < sizeof(sa_family_t) || !pl_stream_family(sa->sa_family) ||
        !pl_is_stream_socket(fd))
        return 0;
    int saved = errno;
    int how = psi_peers_match(&pl_g.cfg, sa, len)      ? PL_OFFER_LISTED
              : psi_registry_is_interposed(sa, len) ? PL_OFFER_REGISTRY
                                                    : 0;
    errno = saved;
    return how;
}

/* Dry run: a stream socket is observed, never offered HELLO. */
static void pl_dry_on_connected(int fd, const struct sockaddr *sa, socklen_t len, bool in_progress)
{
    if (!pl_g.ready || pl_g.passthrough || !sa || len < sizeof(sa_family_t) ||
        !pl_stream_family(sa->sa_family) || !pl_is_stream_socket(fd))
        return;
    pl_state *st = pl_dry_state(PL_KIND_STREAM, 0);
    if (!st)
        return;
    if (in_progress)
        pl_note_dest(st, sa, len);
    else
        pl_note_peer(st, fd);
    pl_fd_attach(fd, st);
}

void pl_on_connected(int fd, const struct sockaddr *sa, socklen_t len, int how, bool in_progress)
{
    if (pl_g.dryrun) {
        pl_dry_on_connected(fd, sa, len, in_progress);
        return;
    }
    pl_state *st = pl_state_new(PL_KIND_STREAM);
    if (!st)
        return;
    pl_note_dest(st, sa, len);
    pl_random(st->nonce, sizeof(st->nonce));
    pl_hello_make(st->answer, st->nonce, true);
    st->in_mode = PL_IN_SEEK;
    atomic_store(&st->out_mode, PL_OUT_OFFER);
    /* HELLO travels with the first bytes we write, never alone: a server
     * that only writes and then closes would find our HELLO unread in its
     * receive buffer, and closing a socket with unread data sends RST,
     * which can destroy the tail of what it sent us. */
    (void)in_progress;
    psi_log(PSI_LOG_DEBUG, "fd %d: peer is interposed (%s); offering HELLO", fd,
            how == PL_OFFER_LISTED ? "PSI_PEERS" : "registry");
    pl_fd_attach(fd, st);
}

void pl_on_accepted(int listener, int fd)
{
    if (!pl_g.ready || pl_g.passthrough)
        return;
    pl_state *ls = pl_fd_get(listener);
    if (!(ls && ls->kind == PL_KIND_LISTENER) && !pl_is_stream_socket(fd))
        return;
    if (pl_g.dryrun) {
        pl_state *ds = pl_dry_state(PL_KIND_STREAM, 0); /* never detects HELLO */
        if (ds) {
            pl_note_peer(ds, fd);
            pl_fd_attach(fd, ds);
        }
        return;
    }
    pl_state *st = pl_state_new(PL_KIND_STREAM);
    if (!st)
        return;
    pl_note_peer(st, fd);
    st->in_mode = PL_IN_DETECT;
    atomic_store(&st->out_mode, PL_OUT_UNDECIDED);
    pl_fd_attach(fd, st);
}

void pl_on_listen(int fd)
{
    if (!pl_g.ready || pl_g.passthrough || pl_g.dryrun || psi_store_thread_internal() ||
        !pl_is_stream_socket(fd))
        return;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    struct stat sb;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0 || fstat(fd, &sb) != 0)
        return;
    /* listen() on an unbound TCP socket binds an ephemeral port only inside
     * the kernel call: such a listener has no known port yet, and stays
     * unregistered (peers can still list it in PSI_PEERS). */
    if ((ss.ss_family == AF_INET && ((struct sockaddr_in *)&ss)->sin_port == 0) ||
        (ss.ss_family == AF_INET6 && ((struct sockaddr_in6 *)&ss)->sin6_port == 0))
        return;
    pl_state *st = pl_state_new(PL_KIND_LISTENER);
    if (!st)
        return;
    psi_err err = {0};
    if (psi_registry_add((struct sockaddr *)&ss, len, sb.st_ino, st->reg_entry,
                         sizeof(st->reg_entry), &err) != 0) {
        static atomic_int warned;
        psi_log_once(warned, PSI_LOG_WARN,
                     "cannot register listener in the local registry (%s); local peers "
                     "will not find this process without PSI_PEERS",
                     err.msg);
        st->reg_entry[0] = '\0';
    }
    st->reg_pid = getpid();
    pl_fd_attach(fd, st);
}

void pl_on_pipe(int fds[2])
{
    pl_fd_detach(fds[0]);
    pl_fd_detach(fds[1]);
    if (!pl_g.ready || pl_g.passthrough)
        return;
    if (pl_g.dryrun) {
        /* Only the write end is observed; the reader is left alone. */
        pl_state *w = pl_dry_state(PL_KIND_PIPE, POL_CH_PIPE);
        if (w)
            pl_fd_attach(fds[1], w);
        return;
    }
    pl_state *r = pl_state_new(PL_KIND_PIPE);
    if (r) {
        r->channel = POL_CH_PIPE;
        r->in_mode = PL_IN_DETECT; /* a reader always detects */
        pl_fd_attach(fds[0], r);
    }
    if (pl_g.cfg.pipes) {
        pl_state *w = pl_state_new(PL_KIND_PIPE);
        if (w) {
            w->channel = POL_CH_PIPE;
            pl_random(w->nonce, sizeof(w->nonce));
            atomic_store(&w->out_mode, PL_OUT_OFFER);
            pl_fd_attach(fds[1], w);
        }
    }
}

static bool pl_same_file(int a, int b)
{
    struct stat sa, sb;
    return fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

void pl_scan_std_fds(void)
{
    /* A program started in a pipeline gets its pipe ends as fds 0 and 1,
     * made by a parent whose state did not survive exec. */
    if (pl_g.passthrough)
        return;
    struct stat sb;
    if (pl_g.dryrun) {
        /* Dry run: every inherited pipe or FIFO we write is observed. */
        for (int fd = 0; fd <= 2; fd++) {
            int f = fcntl(fd, F_GETFL);
            if (f < 0 || pl_fd_get(fd) || (f & O_ACCMODE) == O_RDONLY || fstat(fd, &sb) != 0 ||
                !S_ISFIFO(sb.st_mode))
                continue;
            pl_state *w = pl_dry_state(PL_KIND_PIPE, POL_CH_PIPE);
            if (w)
                pl_fd_attach(fd, w);
        }
        return;
    }
    /* An exec handoff (pl_handoff.c) already restored what the parent
     * knew; a guess never replaces it. */
    pl_state *w1 = pl_fd_get(1);
    if (w1 && w1->kind == PL_KIND_PIPE && atomic_load(&w1->out_mode) == PL_OUT_OFFER &&
        pl_same_file(1, 2)) {
        int offer = PL_OUT_OFFER; /* the same rule as below, for an inherited writer */
        atomic_compare_exchange_strong(&w1->out_mode, &offer, PL_OUT_PLAIN);
    }
    int fl = fcntl(0, F_GETFL);
    if (fl >= 0 && !pl_fd_get(0) && (fl & O_ACCMODE) != O_WRONLY && fstat(0, &sb) == 0 &&
        S_ISFIFO(sb.st_mode)) {
        pl_state *r = pl_state_new(PL_KIND_PIPE);
        if (r) {
            r->channel = POL_CH_PIPE;
            r->in_mode = PL_IN_DETECT;
            pl_fd_attach(0, r);
        }
    }
    fl = fcntl(1, F_GETFL);
    if (pl_g.cfg.pipes && fl >= 0 && !w1 && (fl & O_ACCMODE) == O_WRONLY && fstat(1, &sb) == 0 &&
        S_ISFIFO(sb.st_mode)) {
        /* Our own log lines go to fd 2 unframed; if fd 2 is the same pipe,
         * framing fd 1 would interleave them into records. */
        if (pl_same_file(1, 2)) {
            psi_log(PSI_LOG_INFO, "stdout and stderr share a pipe; not framing stdout");
            return;
        }
        pl_state *w = pl_state_new(PL_KIND_PIPE);
        if (w) {
            w->channel = POL_CH_PIPE;
            pl_random(w->nonce, sizeof(w->nonce));
            atomic_store(&w->out_mode, PL_OUT_OFFER);
            pl_fd_attach(1, w);
        }
    }
}

void pl_on_shutdown(int fd, int how)
{
    (void)fd;
    (void)how;
    /* Nothing is ever queued: our own bytes are written before the call
     * that produced them returns, so there is nothing to flush here. */
}
