/* pl_hooks_poll: the readiness overlay (DESIGN §4).
 *
 * Bytes we hold in user space are invisible to the kernel. When any polled
 * fd has such bytes, the real call is made with a zero timeout and those
 * fds are reported readable on top of what the kernel says. Otherwise the
 * real call runs untouched. */
#include <errno.h>
#include <string.h>

#include "pl_engine.h"
#include "pl_real.h"

static bool pl_fd_ready(int fd)
{
    pl_state *st = pl_fd_get(fd);
    return st && pl_has_ready(st);
}

/* Marks held-readable fds; returns how many polled fds have any revents. */
static int pl_poll_merge(struct pollfd *fds, nfds_t nfds, int kernel)
{
    if (kernel < 0)
        for (nfds_t i = 0; i < nfds; i++)
            fds[i].revents = 0; /* the zero-timeout call failed (EINTR): report ours */
    int n = 0;
    for (nfds_t i = 0; i < nfds; i++) {
        if (fds[i].fd >= 0 && (fds[i].events & (POLLIN | POLLRDNORM)) && pl_fd_ready(fds[i].fd))
            fds[i].revents |= (short)(fds[i].events & (POLLIN | POLLRDNORM));
        n += fds[i].revents != 0;
    }
    return n;
}

static bool pl_poll_any_ready(struct pollfd *fds, nfds_t nfds)
{
    for (nfds_t i = 0; i < nfds; i++)
        if (fds[i].fd >= 0 && (fds[i].events & (POLLIN | POLLRDNORM)) && pl_fd_ready(fds[i].fd))
            return true;
    return false;
}

PL_EXPORT int poll(struct pollfd *fds, nfds_t nfds, int timeout)
{
    if (!pl_poll_any_ready(fds, nfds))
        return REAL(poll)(fds, nfds, timeout);
    return pl_poll_merge(fds, nfds, REAL(poll)(fds, nfds, 0));
}

PL_EXPORT int __poll_chk(struct pollfd *fds, nfds_t nfds, int timeout, size_t fdslen)
{
    if (fdslen / sizeof(*fds) < nfds || !pl_poll_any_ready(fds, nfds))
        return REAL(__poll_chk)(fds, nfds, timeout, fdslen);
    return pl_poll_merge(fds, nfds, REAL(poll)(fds, nfds, 0));
}

PL_EXPORT int ppoll(struct pollfd *fds, nfds_t nfds, const struct timespec *ts,
                    const sigset_t *mask)
{
    if (!pl_poll_any_ready(fds, nfds))
        return REAL(ppoll)(fds, nfds, ts, mask);
    struct timespec zero = {0, 0};
    return pl_poll_merge(fds, nfds, REAL(ppoll)(fds, nfds, &zero, mask));
}

PL_EXPORT int __ppoll_chk(struct pollfd *fds, nfds_t nfds, const struct timespec *ts,
                          const sigset_t *mask, size_t fdslen)
{
    if (fdslen / sizeof(*fds) < nfds || !pl_poll_any_ready(fds, nfds))
        return REAL(__ppoll_chk)(fds, nfds, ts, mask, fdslen);
    struct timespec zero = {0, 0};
    return pl_poll_merge(fds, nfds, REAL(ppoll)(fds, nfds, &zero, mask));
}

/* select: the read set's fds with held bytes, or -1 if none. */
static int pl_select_ready(int nfds, fd_set *r, fd_set *held)
{
    int any = 0;
    FD_ZERO(held);
    if (!r)
        return 0;
    for (int fd = 0; fd < nfds && fd < FD_SETSIZE; fd++)
        if (FD_ISSET(fd, r) && pl_fd_ready(fd)) {
            FD_SET(fd, held);
            any++;
        }
    return any;
}

static int pl_select_merge(int nfds, fd_set *r, fd_set *w, fd_set *e, fd_set *held, int kernel)
{
    if (kernel < 0) {
        if (r)
            FD_ZERO(r);
        if (w)
            FD_ZERO(w);
        if (e)
            FD_ZERO(e);
    }
    int n = 0;
    for (int fd = 0; fd < nfds && fd < FD_SETSIZE; fd++) {
        if (FD_ISSET(fd, held))
            FD_SET(fd, r);
        n += (r && FD_ISSET(fd, r)) + (w && FD_ISSET(fd, w)) + (e && FD_ISSET(fd, e));
    }
    return n;
}

PL_EXPORT int select(int nfds, fd_set *r, fd_set *w, fd_set *e, struct timeval *tv)
{
    fd_set held;
    if (!pl_select_ready(nfds, r, &held))
        return REAL(select)(nfds, r, w, e, tv);
    struct timeval zero = {0, 0};
    int k = REAL(select)(nfds, r, w, e, &zero);
    return pl_select_merge(nfds, r, w, e, &held, k);
}

PL_EXPORT int pselect(int nfds, fd_set *r, fd_set *w, fd_set *e, const struct timespec *ts,
                      const sigset_t *mask)
{
    fd_set held;
    if (!pl_select_ready(nfds, r, &held))
        return REAL(pselect)(nfds, r, w, e, ts, mask);
    struct timespec zero = {0, 0};
    int k = REAL(pselect)(nfds, r, w, e, &zero, mask);
    return pl_select_merge(nfds, r, w, e, &held, k);
}
