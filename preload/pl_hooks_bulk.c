/* pl_hooks_bulk: calls that move bytes past write/read (sendfile, splice,
 * vmsplice, copy_file_range, sendmmsg/recvmmsg), FIONREAD, and fdopen.
 *
 * An untracked fd, or one whose direction is plain for good, gets the real
 * call (zero copy stays zero copy). The rest is pl_bulk.c. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <unistd.h>

#include "pl_bulk.h"
#include "pl_dryrun.h"
#include "pl_engine.h"
#include "pl_real.h"

/* pl_bulk_engaged after the fast path's one lookup: an untracked fd takes
 * no reference. */
static pl_state *pl_engaged(int fd, bool out)
{
    return pl_fd_get(fd) ? pl_bulk_engaged(fd, out) : NULL;
}


/* ---- sendfile ---- */

PL_EXPORT ssize_t sendfile(int out_fd, int in_fd, off_t *offset, size_t count)
{
    if (pl_g.dryrun && pl_fd_get(out_fd))
        return pl_dry_sendfile(out_fd, in_fd, offset, count, REAL(sendfile));
    pl_state *st = pl_engaged(out_fd, true);
    if (!st)
        return REAL(sendfile)(out_fd, in_fd, offset, count);
    ssize_t r = pl_bulk_sendfile(st, out_fd, in_fd, offset, count);
    pl_state_put(st);
    return r;
}

/* off64_t and off_t are the same type on every 64-bit ABI this builds for. */
_Static_assert(sizeof(off64_t) == sizeof(off_t), "sendfile64 assumes a 64-bit off_t");

PL_EXPORT ssize_t sendfile64(int out_fd, int in_fd, off64_t *offset, size_t count)
{
    return sendfile(out_fd, in_fd, (off_t *)offset, count);
}

/* ---- splice family ---- */

/* One lookup per fd; pl_bulk_copy takes the references. */
static bool pl_copy_engaged(int fd_in, int fd_out)
{
    pl_state *in = pl_fd_get(fd_in), *out = pl_fd_get(fd_out);
    return (in && !pl_bulk_in_plain(in)) || (out && !pl_bulk_out_plain(out));
}

PL_EXPORT ssize_t splice(int fd_in, loff_t *off_in, int fd_out, loff_t *off_out, size_t len,
                         unsigned int flags)
{
    if (pl_g.dryrun && pl_fd_get(fd_out))
        return pl_dry_noted(fd_out, REAL(splice)(fd_in, off_in, fd_out, off_out, len, flags));
    if (!pl_copy_engaged(fd_in, fd_out))
        return REAL(splice)(fd_in, off_in, fd_out, off_out, len, flags);
    return pl_bulk_copy(fd_in, (off_t *)off_in, fd_out, (off_t *)off_out, len,
                        flags & SPLICE_F_NONBLOCK);
}

PL_EXPORT ssize_t copy_file_range(int fd_in, off64_t *off_in, int fd_out, off64_t *off_out,
                                  size_t len, unsigned int flags)
{
    if (!pl_copy_engaged(fd_in, fd_out))
        return REAL(copy_file_range)(fd_in, off_in, fd_out, off_out, len, flags);
    if (flags != 0) {
        errno = EINVAL;
        return -1;
    }
    return pl_bulk_copy(fd_in, (off_t *)off_in, fd_out, (off_t *)off_out, len, false);
}

PL_EXPORT ssize_t vmsplice(int fd, const struct iovec *iov, size_t n, unsigned int flags)
{
    if (!pl_fd_get(fd))
        return REAL(vmsplice)(fd, iov, n, flags);
    pl_state *st = pl_state_get(fd);
    if (!st)
        return REAL(vmsplice)(fd, iov, n, flags);
    int acc = REAL(fcntl)(fd, F_GETFL) & O_ACCMODE;
    ssize_t r;
    pl_io io = {.fd = fd, .sock = false};
    if (acc != O_RDONLY && !pl_bulk_out_plain(st))
        r = pl_sendv(st, &io, iov, (int)n);
    else if (acc == O_RDONLY && !pl_bulk_in_plain(st))
        r = pl_recvv(st, &io, iov, (int)n);
    else
        r = REAL(vmsplice)(fd, iov, n, flags);
    pl_state_put(st);
    return r;
}

/* ---- sendmmsg, recvmmsg ---- */

PL_EXPORT int sendmmsg(int fd, struct mmsghdr *v, unsigned int n, int flags)
{
    pl_state *st = pl_engaged(fd, true);
    if (!st)
        return REAL(sendmmsg)(fd, v, n, flags);
    int r = pl_bulk_sendmmsg(st, fd, v, n, flags);
    pl_state_put(st);
    return r;
}

PL_EXPORT int recvmmsg(int fd, struct mmsghdr *v, unsigned int n, int flags,
                       struct timespec *timeout)
{
    pl_state *st = pl_engaged(fd, false);
    if (!st)
        return REAL(recvmmsg)(fd, v, n, flags, timeout);
    int r = pl_bulk_recvmmsg(st, fd, v, n, flags, timeout);
    pl_state_put(st);
    return r;
}

/* ---- ioctl ---- */

/* ioctl's third argument is a pointer or an integer depending on the
 * request; like fcntl's, it is read as a pointer-sized value and passed on
 * unchanged (the same register either way on x86-64 and AArch64). */
PL_EXPORT int ioctl(int fd, unsigned long req, ...)
{
    va_list ap;
    va_start(ap, req);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    if (req != FIONREAD || !pl_fd_get(fd)) /* SIOCINQ == FIONREAD */
        return REAL(ioctl)(fd, req, arg);
    pl_state *st = pl_state_get(fd);
    if (!st)
        return REAL(ioctl)(fd, req, arg);
    if (!arg) {
        pl_state_put(st);
        errno = EFAULT;
        return -1;
    }
    int v = 0;
    int r = pl_bulk_inq(st, fd, &v);
    pl_state_put(st);
    if (r == 0)
        return REAL(ioctl)(fd, req, arg);
    if (r < 0)
        return -1;
    *(int *)arg = v;
    return 0;
}

/* ---- stdio ---- */

PL_EXPORT FILE *fdopen(int fd, const char *mode)
{
    if (!pl_fd_get(fd))
        return REAL(fdopen)(fd, mode);
    return pl_bulk_fdopen(fd, mode);
}
