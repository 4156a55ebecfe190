/* pl_io: the real kernel calls behind the engine. */
#include "pl_io.h"

#include <errno.h>
#include <poll.h>
#include <string.h>

#include "pl_real.h"

ssize_t pl_kread(pl_io *io, struct iovec *iov, int iovcnt, int strip)
{
    /* One buffer and nothing to report back: the plain call is cheaper
     * than the vector one (no iovec import in the kernel). */
    if (iovcnt == 1 && !io->sock)
        return REAL(read)(io->fd, iov[0].iov_base, iov[0].iov_len);
    if (iovcnt == 1 && !io->msg)
        return REAL(recv)(io->fd, iov[0].iov_base, iov[0].iov_len, io->flags & ~strip);
    if (!io->sock)
        return REAL(readv)(io->fd, iov, iovcnt);
    struct msghdr m;
    memset(&m, 0, sizeof(m));
    if (io->msg) {
        m.msg_name = io->msg->msg_name;
        m.msg_namelen = io->msg->msg_namelen;
        m.msg_control = io->msg->msg_control;
        m.msg_controllen = io->msg->msg_controllen;
    }
    m.msg_iov = iov;
    m.msg_iovlen = (size_t)iovcnt;
    ssize_t r = REAL(recvmsg)(io->fd, &m, io->flags & ~strip);
    if (r >= 0 && io->msg) {
        io->ctl_seen = true;
        io->msg->msg_namelen = m.msg_namelen;
        io->msg->msg_controllen = m.msg_controllen;
        io->msg->msg_flags = m.msg_flags;
        /* Ancillary data comes once; later reads of this call must not
         * report it again. */
        if (m.msg_controllen)
            io->msg = NULL;
    }
    return r;
}

ssize_t pl_kwrite(pl_io *io, const struct iovec *iov, int iovcnt, bool with_msg)
{
    if (iovcnt == 1 && !io->sock)
        return REAL(write)(io->fd, iov[0].iov_base, iov[0].iov_len);
    if (iovcnt == 1 && !(with_msg && io->msg))
        return REAL(send)(io->fd, iov[0].iov_base, iov[0].iov_len, io->flags);
    if (!io->sock)
        return REAL(writev)(io->fd, iov, iovcnt);
    struct msghdr m;
    memset(&m, 0, sizeof(m));
    if (with_msg && io->msg) {
        m.msg_name = io->msg->msg_name;
        m.msg_namelen = io->msg->msg_namelen;
        m.msg_control = io->msg->msg_control;
        m.msg_controllen = io->msg->msg_controllen;
    }
    m.msg_iov = (struct iovec *)iov;
    m.msg_iovlen = (size_t)iovcnt;
    return REAL(sendmsg)(io->fd, &m, io->flags);
}

int pl_kwrite_all(pl_io *io, const uint8_t *p, size_t len)
{
    while (len > 0) {
        struct iovec v = {(void *)p, len};
        ssize_t r = pl_kwrite(io, &v, 1, false);
        if (r > 0) {
            p += r;
            len -= (size_t)r;
        } else if (r < 0 && errno == EINTR) {
            continue;
        } else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd pfd = {io->fd, POLLOUT, 0};
            if (REAL(poll)(&pfd, 1, -1) < 0 && errno != EINTR)
                return -1;
        } else {
            if (r == 0)
                errno = EIO;
            return -1;
        }
    }
    return 0;
}
