/* pl_hooks_fd: descriptor lifecycle hooks.
 *
 * Sockets, pipes and dups decide or share state; every other call that
 * returns a new fd clears any stale state left at that number (libc can
 * close fds behind our back, e.g. in fclose of an fdopen'd socket). */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "pl_engine.h"
#include "pl_real.h"

/* A new fd from the kernel is never one we track yet. */
static inline int pl_fresh(int fd)
{
    if (fd >= 0 && pl_fd_get(fd)) {
        int saved = errno;
        pl_fd_detach(fd);
        errno = saved;
    }
    return fd;
}

PL_EXPORT int socket(int domain, int type, int protocol)
{
    return pl_fresh(REAL(socket)(domain, type, protocol));
}

PL_EXPORT int socketpair(int domain, int type, int protocol, int sv[2])
{
    int r = REAL(socketpair)(domain, type, protocol, sv);
    if (r == 0) {
        pl_fresh(sv[0]);
        pl_fresh(sv[1]);
    }
    return r;
}

PL_EXPORT int connect(int fd, const struct sockaddr *sa, socklen_t len)
{
    /* Whether the peer is interposed is decided before connecting: a server
     * that accepts once and closes its listener (socat, nc) would otherwise
     * vanish from /proc/net before the registry could be checked. */
    pl_init();
    pl_fresh(fd);
    int offer = pl_should_offer(fd, sa, len);
    int r = REAL(connect)(fd, sa, len);
    if ((offer || pl_g.dryrun) && (r == 0 || errno == EINPROGRESS)) {
        int saved = errno;
        pl_on_connected(fd, sa, len, offer, r != 0);
        errno = saved;
    }
    return r;
}

PL_EXPORT int bind(int fd, const struct sockaddr *sa, socklen_t len)
{
    return REAL(bind)(fd, sa, len);
}

PL_EXPORT int listen(int fd, int backlog)
{
    /* Register before the socket starts listening: a client that sees the
     * port open must already find the entry. */
    pl_init();
    pl_state *st = pl_fd_get(fd);
    bool fresh = !(st && st->kind == PL_KIND_LISTENER);
    if (fresh)
        pl_on_listen(fd);
    int r = REAL(listen)(fd, backlog);
    int saved = errno;
    if (r != 0 && fresh)
        pl_fd_detach(fd); /* drops the entry again */
    else if (r == 0 && fresh && !pl_fd_get(fd))
        pl_on_listen(fd); /* the kernel just chose the port (unbound socket) */
    errno = saved;
    return r;
}

static int pl_accepted(int listener, int fd)
{
    if (fd >= 0) {
        int saved = errno;
        pl_fresh(fd);
        pl_on_accepted(listener, fd);
        errno = saved;
    }
    return fd;
}

PL_EXPORT int accept(int fd, struct sockaddr *sa, socklen_t *len)
{
    return pl_accepted(fd, REAL(accept)(fd, sa, len));
}

PL_EXPORT int accept4(int fd, struct sockaddr *sa, socklen_t *len, int flags)
{
    return pl_accepted(fd, REAL(accept4)(fd, sa, len, flags));
}

PL_EXPORT int close(int fd)
{
    if (pl_fd_get(fd))
        pl_fd_detach(fd);
    return REAL(close)(fd);
}

PL_EXPORT int shutdown(int fd, int how)
{
    if (pl_fd_get(fd))
        pl_on_shutdown(fd, how);
    return REAL(shutdown)(fd, how);
}

static int pl_duped(int fd, int r)
{
    if (r >= 0 && r != fd) {
        int saved = errno;
        pl_fd_dup(fd, r);
        errno = saved;
    }
    return r;
}

PL_EXPORT int dup(int fd)
{
    return pl_duped(fd, REAL(dup)(fd));
}

PL_EXPORT int dup2(int fd, int fd2)
{
    return pl_duped(fd, REAL(dup2)(fd, fd2));
}

PL_EXPORT int dup3(int fd, int fd2, int flags)
{
    return pl_duped(fd, REAL(dup3)(fd, fd2, flags));
}

/* fcntl's third argument is an int or a pointer depending on cmd. Reading
 * it as a pointer-sized integer and passing it on unchanged is how every
 * fcntl wrapper on the x86-64 and AArch64 ABIs works: both kinds arrive in
 * the same integer register. */
static int pl_fcntl(int (*real)(int, int, ...), int fd, int cmd, unsigned long arg)
{
    int r = real(fd, cmd, arg);
    if (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC)
        return pl_duped(fd, r);
    return r;
}

PL_EXPORT int fcntl(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    unsigned long arg = va_arg(ap, unsigned long);
    va_end(ap);
    return pl_fcntl(REAL(fcntl), fd, cmd, arg);
}

PL_EXPORT int fcntl64(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    unsigned long arg = va_arg(ap, unsigned long);
    va_end(ap);
    return pl_fcntl(REAL(fcntl64) ? pl_real.fcntl64 : REAL(fcntl), fd, cmd, arg);
}

PL_EXPORT int pipe(int fds[2])
{
    pl_init();
    int r = REAL(pipe)(fds);
    if (r == 0) {
        int saved = errno;
        pl_on_pipe(fds);
        errno = saved;
    }
    return r;
}

PL_EXPORT int pipe2(int fds[2], int flags)
{
    pl_init();
    int r = REAL(pipe2)(fds, flags);
    if (r == 0) {
        int saved = errno;
        pl_on_pipe(fds);
        errno = saved;
    }
    return r;
}

PL_EXPORT pid_t fork(void)
{
    pl_init(); /* so the child inherits a bound, configured library */
    return REAL(fork)();
}

/* open(2) and friends take a mode only with O_CREAT or O_TMPFILE. */
static mode_t pl_open_mode(int flags, va_list ap)
{
    if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE)
        return (mode_t)va_arg(ap, unsigned int);
    return 0;
}

PL_EXPORT int open(const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t mode = pl_open_mode(flags, ap);
    va_end(ap);
    return pl_fresh(REAL(open)(path, flags, mode));
}

PL_EXPORT int open64(const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t mode = pl_open_mode(flags, ap);
    va_end(ap);
    return pl_fresh((REAL(open64) ? pl_real.open64 : REAL(open))(path, flags, mode));
}

PL_EXPORT int openat(int dirfd, const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t mode = pl_open_mode(flags, ap);
    va_end(ap);
    return pl_fresh(REAL(openat)(dirfd, path, flags, mode));
}

PL_EXPORT int openat64(int dirfd, const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t mode = pl_open_mode(flags, ap);
    va_end(ap);
    return pl_fresh((REAL(openat64) ? pl_real.openat64 : REAL(openat))(dirfd, path, flags, mode));
}

PL_EXPORT int creat(const char *path, mode_t mode)
{
    return pl_fresh(REAL(creat)(path, mode));
}

PL_EXPORT int creat64(const char *path, mode_t mode)
{
    return pl_fresh((REAL(creat64) ? pl_real.creat64 : REAL(creat))(path, mode));
}

PL_EXPORT int fclose(FILE *f)
{
    int fd = f ? fileno(f) : -1;
    if (fd >= 0 && pl_fd_get(fd))
        pl_fd_detach(fd); /* glibc closes the fd internally, past our close hook */
    return REAL(fclose)(f);
}

PL_EXPORT int eventfd(unsigned int initval, int flags)
{
    return pl_fresh(REAL(eventfd)(initval, flags));
}

PL_EXPORT int memfd_create(const char *name, unsigned int flags)
{
    return pl_fresh(REAL(memfd_create)(name, flags));
}
