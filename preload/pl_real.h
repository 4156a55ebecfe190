/* pl_real: the one table of real (next) libc functions.
 *
 * PL_HOOKS lists every symbol the preload library interposes, as
 * X(return type, name, parameter list). The list drives the function-pointer
 * table and its binding (dlsym RTLD_NEXT, once); each hook's body lives in a
 * pl_hooks_*.c file, three to six lines that look up the fd and dispatch.
 * Adding a hook is one line here plus its body. */
#ifndef PL_REAL_H
#define PL_REAL_H

#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>

#define PL_HOOKS(X)                                                                   \
    /* sockets and descriptors */                                                    \
    X(int, socket, (int domain, int type, int protocol))                             \
    X(int, socketpair, (int domain, int type, int protocol, int sv[2]))              \
    X(int, connect, (int fd, const struct sockaddr *sa, socklen_t len))              \
    X(int, bind, (int fd, const struct sockaddr *sa, socklen_t len))                 \
    X(int, listen, (int fd, int backlog))                                            \
    X(int, accept, (int fd, struct sockaddr *sa, socklen_t *len))                    \
    X(int, accept4, (int fd, struct sockaddr *sa, socklen_t *len, int flags))        \
    X(int, close, (int fd))                                                          \
    X(int, dup, (int fd))                                                            \
    X(int, dup2, (int fd, int fd2))                                                  \
    X(int, dup3, (int fd, int fd2, int flags))                                       \
    X(int, fcntl, (int fd, int cmd, ...))                                            \
    X(int, fcntl64, (int fd, int cmd, ...))                                          \
    X(int, pipe, (int fds[2]))                                                       \
    X(int, pipe2, (int fds[2], int flags))                                           \
    X(pid_t, fork, (void))                                                           \
    X(int, shutdown, (int fd, int how))                                              \
    /* descriptors that may reuse a number we track: clear stale state */            \
    X(int, open, (const char *path, int flags, ...))                                 \
    X(int, open64, (const char *path, int flags, ...))                               \
    X(int, openat, (int dirfd, const char *path, int flags, ...))                    \
    X(int, openat64, (int dirfd, const char *path, int flags, ...))                  \
    X(int, creat, (const char *path, mode_t mode))                                   \
    X(int, creat64, (const char *path, mode_t mode))                                 \
    X(int, fclose, (FILE * f))                                                       \
    X(int, eventfd, (unsigned int initval, int flags))                               \
    X(int, memfd_create, (const char *name, unsigned int flags))                     \
    /* data */                                                                       \
    X(ssize_t, write, (int fd, const void *buf, size_t n))                           \
    X(ssize_t, writev, (int fd, const struct iovec *iov, int iovcnt))                \
    X(ssize_t, send, (int fd, const void *buf, size_t n, int flags))                 \
    X(ssize_t, sendto,                                                               \
      (int fd, const void *buf, size_t n, int flags, const struct sockaddr *sa,      \
       socklen_t len))                                                               \
    X(ssize_t, sendmsg, (int fd, const struct msghdr *msg, int flags))               \
    X(ssize_t, read, (int fd, void *buf, size_t n))                                  \
    X(ssize_t, readv, (int fd, const struct iovec *iov, int iovcnt))                 \
    X(ssize_t, recv, (int fd, void *buf, size_t n, int flags))                       \
    X(ssize_t, recvfrom,                                                             \
      (int fd, void *buf, size_t n, int flags, struct sockaddr *sa, socklen_t *len)) \
    X(ssize_t, recvmsg, (int fd, struct msghdr *msg, int flags))                     \
    X(ssize_t, __read_chk, (int fd, void *buf, size_t n, size_t buflen))             \
    X(ssize_t, __recv_chk, (int fd, void *buf, size_t n, size_t buflen, int flags))  \
    X(ssize_t, __recvfrom_chk,                                                       \
      (int fd, void *buf, size_t n, size_t buflen, int flags, struct sockaddr *sa,   \
       socklen_t *len))                                                              \
    /* readiness */                                                                  \
    X(int, poll, (struct pollfd * fds, nfds_t nfds, int timeout))                    \
    X(int, __poll_chk, (struct pollfd * fds, nfds_t nfds, int timeout, size_t fdslen)) \
    X(int, ppoll,                                                                    \
      (struct pollfd * fds, nfds_t nfds, const struct timespec *ts,                  \
       const sigset_t *mask))                                                        \
    X(int, __ppoll_chk,                                                              \
      (struct pollfd * fds, nfds_t nfds, const struct timespec *ts,                  \
       const sigset_t *mask, size_t fdslen))                                         \
    X(int, select,                                                                   \
      (int nfds, fd_set *r, fd_set *w, fd_set *e, struct timeval *tv))               \
    X(int, pselect,                                                                  \
      (int nfds, fd_set *r, fd_set *w, fd_set *e, const struct timespec *ts,         \
       const sigset_t *mask))                                                        \
    /* epoll (pl_hooks_epoll.c) */                                                   \
    X(int, epoll_create, (int size))                                                 \
    X(int, epoll_create1, (int flags))                                               \
    X(int, epoll_ctl, (int epfd, int op, int fd, struct epoll_event *ev))            \
    X(int, epoll_wait, (int epfd, struct epoll_event *ev, int maxevents, int timeout)) \
    X(int, epoll_pwait,                                                              \
      (int epfd, struct epoll_event *ev, int maxevents, int timeout,                 \
       const sigset_t *mask))                                                        \
    X(int, epoll_pwait2,                                                             \
      (int epfd, struct epoll_event *ev, int maxevents, const struct timespec *ts,   \
       const sigset_t *mask))                                                        \
    /* bulk paths: sendfile, splice, mmsg, ioctl, stdio (pl_hooks_bulk.c) */         \
    X(ssize_t, sendfile, (int out_fd, int in_fd, off_t *offset, size_t count))       \
    X(ssize_t, sendfile64, (int out_fd, int in_fd, off64_t *offset, size_t count))   \
    X(ssize_t, splice,                                                               \
      (int fd_in, loff_t *off_in, int fd_out, loff_t *off_out, size_t len,           \
       unsigned int flags))                                                          \
    X(ssize_t, vmsplice,                                                             \
      (int fd, const struct iovec *iov, size_t n, unsigned int flags))               \
    X(ssize_t, copy_file_range,                                                      \
      (int fd_in, off64_t *off_in, int fd_out, off64_t *off_out, size_t len,         \
       unsigned int flags))                                                          \
    X(int, sendmmsg, (int fd, struct mmsghdr *v, unsigned int n, int flags))         \
    X(int, recvmmsg,                                                                 \
      (int fd, struct mmsghdr *v, unsigned int n, int flags,                         \
       struct timespec *timeout))                                                    \
    X(int, ioctl, (int fd, unsigned long req, ...))                                  \
    X(FILE *, fdopen, (int fd, const char *mode))                                    \
    /* processes: exec, spawn, vfork (pl_hooks_proc.c) */                            \
    X(int, execve, (const char *path, char *const argv[], char *const envp[]))       \
    X(int, execv, (const char *path, char *const argv[]))                            \
    X(int, execvp, (const char *file, char *const argv[]))                           \
    X(int, execvpe, (const char *file, char *const argv[], char *const envp[]))      \
    X(int, fexecve, (int fd, char *const argv[], char *const envp[]))                \
    X(int, execveat,                                                                 \
      (int dirfd, const char *path, char *const argv[], char *const envp[],          \
       int flags))                                                                   \
    X(int, execl, (const char *path, const char *arg, ...))                          \
    X(int, execle, (const char *path, const char *arg, ...))                         \
    X(int, execlp, (const char *file, const char *arg, ...))                         \
    X(int, posix_spawn,                                                              \
      (pid_t * pid, const char *path, const posix_spawn_file_actions_t *fa,          \
       const posix_spawnattr_t *attr, char *const argv[], char *const envp[]))       \
    X(int, posix_spawnp,                                                             \
      (pid_t * pid, const char *file, const posix_spawn_file_actions_t *fa,          \
       const posix_spawnattr_t *attr, char *const argv[], char *const envp[]))

#define PL_DECLARE_PTR(ret, name, params) ret(*name) params;
typedef struct pl_real_table {
    PL_HOOKS(PL_DECLARE_PTR)
} pl_real_table;
#undef PL_DECLARE_PTR

extern pl_real_table pl_real;

/* Binds every pointer once (pthread_once); safe to call from any hook. */
void pl_bind(void);

/* The trampoline to the real symbol: binds on first use, so a hook reached
 * before our constructor (another library's constructor) still works. */
#define REAL(name) (pl_real.name ? pl_real.name : (pl_bind(), pl_real.name))

/* Hooks are the only symbols the .so exports (DESIGN §1). */
#define PL_EXPORT __attribute__((visibility("default")))

#endif
