/* pl_hooks_io: the data hooks (write/send/read/recv families).
 *
 * Each hook is a table lookup; an fd we do not track goes straight to the
 * real call. Tracked fds are described as a pl_io and handed to the engine. */
#include <errno.h>
#include <string.h>

#include "pl_engine.h"
#include "pl_real.h"

/* The engine needs the state for the whole call; a reference keeps it alive
 * if another thread closes the fd meanwhile. */
static ssize_t pl_sendv_hook(pl_io *io, const struct iovec *iov, int iovcnt)
{
    pl_state *st = pl_state_get(io->fd);
    if (!st)
        return io->sock ? REAL(sendmsg)(io->fd, io->msg, io->flags)
                        : REAL(writev)(io->fd, iov, iovcnt);
    ssize_t r = pl_sendv(st, io, iov, iovcnt);
    pl_state_put(st);
    return r;
}

static ssize_t pl_recvv_hook(pl_io *io, const struct iovec *iov, int iovcnt)
{
    pl_state *st = pl_state_get(io->fd);
    if (!st)
        return io->sock ? REAL(recvmsg)(io->fd, io->msg, io->flags)
                        : REAL(readv)(io->fd, iov, iovcnt);
    ssize_t r = pl_recvv(st, io, iov, iovcnt);
    pl_state_put(st);
    return r;
}

static ssize_t pl_send_hook(int fd, const void *buf, size_t n, bool sock, int flags,
                            struct msghdr *msg)
{
    pl_state *st = pl_state_get(fd);
    if (!st) {
        if (sock)
            return REAL(send)(fd, buf, n, flags);
        return REAL(write)(fd, buf, n);
    }
    pl_io io = {.fd = fd, .sock = sock, .flags = flags, .msg = msg};
    ssize_t r = pl_send(st, &io, buf, n);
    pl_state_put(st);
    return r;
}

static ssize_t pl_recv_hook(int fd, void *buf, size_t n, bool sock, int flags,
                            struct msghdr *msg)
{
    pl_state *st = pl_state_get(fd);
    if (!st) {
        if (sock)
            return REAL(recv)(fd, buf, n, flags);
        return REAL(read)(fd, buf, n);
    }
    pl_io io = {.fd = fd, .sock = sock, .flags = flags, .msg = msg};
    ssize_t r = pl_recv(st, &io, buf, n);
    pl_state_put(st);
    return r;
}

/* ---- write family ---- */

PL_EXPORT ssize_t write(int fd, const void *buf, size_t n)
{
    if (!pl_fd_get(fd))
        return REAL(write)(fd, buf, n);
    return pl_send_hook(fd, buf, n, false, 0, NULL);
}

PL_EXPORT ssize_t send(int fd, const void *buf, size_t n, int flags)
{
    if (!pl_fd_get(fd))
        return REAL(send)(fd, buf, n, flags);
    return pl_send_hook(fd, buf, n, true, flags, NULL);
}

PL_EXPORT ssize_t sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *sa,
                         socklen_t len)
{
    if (!pl_fd_get(fd))
        return REAL(sendto)(fd, buf, n, flags, sa, len);
    struct msghdr m = {.msg_name = (void *)sa, .msg_namelen = sa ? len : 0};
    return pl_send_hook(fd, buf, n, true, flags, &m);
}

PL_EXPORT ssize_t writev(int fd, const struct iovec *iov, int iovcnt)
{
    if (!pl_fd_get(fd))
        return REAL(writev)(fd, iov, iovcnt);
    pl_io io = {.fd = fd, .sock = false};
    return pl_sendv_hook(&io, iov, iovcnt);
}

PL_EXPORT ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
    if (!pl_fd_get(fd))
        return REAL(sendmsg)(fd, msg, flags);
    pl_io io = {.fd = fd, .sock = true, .flags = flags, .msg = (struct msghdr *)msg};
    return pl_sendv_hook(&io, msg->msg_iov, (int)msg->msg_iovlen);
}

/* ---- read family ---- */

PL_EXPORT ssize_t read(int fd, void *buf, size_t n)
{
    if (!pl_fd_get(fd))
        return REAL(read)(fd, buf, n);
    return pl_recv_hook(fd, buf, n, false, 0, NULL);
}

PL_EXPORT ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen)
{
    if (n > buflen || !pl_fd_get(fd))
        return REAL(__read_chk)(fd, buf, n, buflen); /* fails the check as glibc would */
    return pl_recv_hook(fd, buf, n, false, 0, NULL);
}

PL_EXPORT ssize_t recv(int fd, void *buf, size_t n, int flags)
{
    if (!pl_fd_get(fd))
        return REAL(recv)(fd, buf, n, flags);
    return pl_recv_hook(fd, buf, n, true, flags, NULL);
}

PL_EXPORT ssize_t __recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags)
{
    if (n > buflen || !pl_fd_get(fd))
        return REAL(__recv_chk)(fd, buf, n, buflen, flags);
    return pl_recv_hook(fd, buf, n, true, flags, NULL);
}

static ssize_t pl_recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *sa,
                           socklen_t *len)
{
    struct msghdr m = {.msg_name = sa, .msg_namelen = (sa && len) ? *len : 0};
    ssize_t r = pl_recv_hook(fd, buf, n, true, flags, sa && len ? &m : NULL);
    if (r >= 0 && sa && len)
        *len = m.msg_namelen;
    return r;
}

PL_EXPORT ssize_t recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *sa,
                           socklen_t *len)
{
    if (!pl_fd_get(fd))
        return REAL(recvfrom)(fd, buf, n, flags, sa, len);
    return pl_recvfrom(fd, buf, n, flags, sa, len);
}

PL_EXPORT ssize_t __recvfrom_chk(int fd, void *buf, size_t n, size_t buflen, int flags,
                                 struct sockaddr *sa, socklen_t *len)
{
    if (n > buflen || !pl_fd_get(fd))
        return REAL(__recvfrom_chk)(fd, buf, n, buflen, flags, sa, len);
    return pl_recvfrom(fd, buf, n, flags, sa, len);
}

PL_EXPORT ssize_t readv(int fd, const struct iovec *iov, int iovcnt)
{
    if (!pl_fd_get(fd))
        return REAL(readv)(fd, iov, iovcnt);
    pl_io io = {.fd = fd, .sock = false};
    return pl_recvv_hook(&io, iov, iovcnt);
}

PL_EXPORT ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
    if (!pl_fd_get(fd))
        return REAL(recvmsg)(fd, msg, flags);
    msg->msg_flags = 0;
    pl_io io = {.fd = fd, .sock = true, .flags = flags, .msg = msg};
    ssize_t r = pl_recvv_hook(&io, msg->msg_iov, (int)msg->msg_iovlen);
    if (r >= 0 && !io.ctl_seen)
        msg->msg_controllen = 0; /* bytes came from user space: no ancillary data */
    return r;
}
