/* st_zmq_start: finding a ZeroMQ object server, and starting the
 * node-local one on demand (docs/store-zmq.md §2, "Started on demand").
 *
 * Runs inside the application, in whatever thread put first: the server is
 * started detached (double fork + setsid) with raw system calls between
 * the fork and the exec, so none of our locks, hooks or malloc run there,
 * and the application never sees a child of ours. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "psi_log.h"
#include "psi_registry.h"
#include "psi_store.h"
#include "st_zmq.h"

#define STZ_START_WAIT_MS 5000 /* for an auto-started server to answer */
#define STZ_AUTO_IDLE_EXIT "600" /* an auto-started server's --idle-exit */

/* ---- probe ----------------------------------------------------------------- */

/* Is anything listening at ep? A plain connect, answered at once by the
 * kernel (ECONNREFUSED, ENOENT), so a dead server costs no request
 * timeout. 0, or an errno value. */
int stz_probe(const stz_ep *ep, int timeout_ms)
{
    struct sockaddr_storage ss = {0};
    socklen_t sl;
    int fam;

    if (ep->kind == STZ_EP_TCP) {
        fam = ep->family;
        if (fam == AF_INET) {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            a->sin_family = AF_INET;
            a->sin_port = htons(ep->port);
            memcpy(&a->sin_addr, ep->addr, 4);
            sl = sizeof *a;
        } else {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            a->sin6_family = AF_INET6;
            a->sin6_port = htons(ep->port);
            memcpy(&a->sin6_addr, ep->addr, 16);
            sl = sizeof *a;
        }
    } else {
        const char *path = ep->kind == STZ_EP_IPC ? ep->path : stz_default_path();
        struct sockaddr_un *a = (struct sockaddr_un *)&ss;
        if (!path || strlen(path) >= sizeof a->sun_path)
            return ENAMETOOLONG;
        fam = AF_UNIX;
        a->sun_family = AF_UNIX;
        strcpy(a->sun_path, path);
        sl = sizeof *a;
    }
    int fd = socket(fam, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return errno;
    int rc = 0;
    if (connect(fd, (struct sockaddr *)&ss, sl) < 0) {
        rc = errno;
        if (rc == EINPROGRESS) {
            struct pollfd p = {fd, POLLOUT, 0};
            int n = poll(&p, 1, timeout_ms);
            socklen_t el = sizeof rc;
            if (n == 0)
                rc = ETIMEDOUT;
            else if (n < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &rc, &el) < 0)
                rc = errno;
        }
    }
    close(fd);
    return rc;
}

/* ---- auto-start ----------------------------------------------------------- */

/* The psi binary: PSI_STORE_SERVER_BIN, else psi next to the code we run
 * in (build/psi beside build/libpsinterpose.so; ../bin/psi from an
 * installed lib dir), else on PATH. */
static int stz_server_bin(char *out, size_t cap)
{
    const char *env = getenv("PSI_STORE_SERVER_BIN");
    Dl_info info;

    if (env && *env)
        return snprintf(out, cap, "%s", env) < (int)cap && access(out, X_OK) == 0 ? 0 : -1;
    if (dladdr((void *)&psi_store_zmq_ops, &info) && info.dli_fname) {
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%s", info.dli_fname);
        char *slash = strrchr(dir, '/');
        if (slash) {
            *slash = '\0';
            if (snprintf(out, cap, "%s/psi", dir) < (int)cap && access(out, X_OK) == 0)
                return 0;
            if (snprintf(out, cap, "%s/../bin/psi", dir) < (int)cap && access(out, X_OK) == 0)
                return 0;
        }
    }
    const char *path = getenv("PATH");
    while (path && *path) {
        const char *colon = strchrnul(path, ':');
        int n = (int)(colon - path);
        if (n > 0 && snprintf(out, cap, "%.*s/psi", n, path) < (int)cap &&
            access(out, X_OK) == 0)
            return 0;
        path = *colon ? colon + 1 : colon;
    }
    return -1;
}

/* The server's environment: ours without LD_PRELOAD, with PSI_DISABLE=1. */
static char **stz_server_env(void)
{
    extern char **environ;
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = calloc(n + 2, sizeof *env), **o = env;
    if (!env)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "LD_PRELOAD=", 11) != 0 &&
            strncmp(environ[i], "PSI_DISABLE=", 12) != 0)
            *o++ = environ[i];
    *o++ = "PSI_DISABLE=1";
    *o = NULL;
    return env;
}

/* Starts bin detached: double fork + setsid, stdio to logfd. Raw system
 * calls only between the forks and the exec: this may run in any thread of
 * any program, and nothing of ours (locks, hooks, malloc) is safe there. */
static int stz_spawn(const char *bin, char *const argv[], char *const envp[], int nullfd,
                     int logfd)
{
    /* No exit signal for the intermediate child: the application's SIGCHLD
     * handler (and its waitpid(-1)) never sees it; we reap it with
     * __WCLONE. */
    long pid = syscall(SYS_clone, 0, 0, 0, 0, 0);
    if (pid < 0)
        return -1;
    if (pid == 0) {
        syscall(SYS_setsid);
        long gpid = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
        if (gpid == 0) {
            syscall(SYS_dup3, nullfd, 0, 0);
            syscall(SYS_dup3, logfd, 1, 0);
            syscall(SYS_dup3, logfd, 2, 0);
#ifdef SYS_close_range
            syscall(SYS_close_range, 3, ~0u, 0);
#endif
            syscall(SYS_execve, bin, argv, envp);
            syscall(SYS_exit_group, 127);
        }
        syscall(SYS_exit_group, gpid < 0 ? 1 : 0);
    }
    int st = 0, r;
    while ((r = waitpid((pid_t)pid, &st, __WCLONE)) < 0 && errno == EINTR)
        ;
    if (r < 0)
        return 0; /* reaped by someone else; the probe tells */
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

/* No server answers at ep: start one, unless another process is doing so
 * (the lock file), and wait until it answers. */
int stz_autostart(const stz_ep *ep, psi_err *err)
{
    static atomic_int started_logged;
    char eps[STZ_EP_STR_MAX], lock[PATH_MAX], logp[PATH_MAX], bin[PATH_MAX];
    const char *rt = psi_runtime_dir();

    if (!rt)
        return psi_fail(err, ECONNREFUSED, "zmq store: no runtime directory to start a "
                        "server in");
    if (stz_ep_string(ep, eps, sizeof eps, err) < 0)
        return -1;
    const char *tag = ep->kind == STZ_EP_DEFAULT ? "store" : "store-tcp";
    snprintf(lock, sizeof lock, "%s/%s.lock", rt, tag);
    snprintf(logp, sizeof logp, "%s/%s.log", rt, tag);
    if (stz_server_bin(bin, sizeof bin) < 0)
        return psi_fail(err, ECONNREFUSED, "zmq store %s: no server, and no psi binary to "
                        "start one (set PSI_STORE_SERVER_BIN)", eps);

    int lfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (lfd < 0)
        return psi_fail(err, ECONNREFUSED, "zmq store %s: lock %s: %s", eps, lock,
                        strerror(errno));
    while (flock(lfd, LOCK_EX) < 0 && errno == EINTR)
        ;
    int rc = 0;
    if (stz_probe(ep, 1000) != 0) {
        char **envp = stz_server_env();
        int nullfd = open("/dev/null", O_RDWR | O_CLOEXEC);
        int logfd = open(logp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
        char *argv[] = {bin, "store-server", "--bind", eps, "--foreground",
                        "--idle-exit", STZ_AUTO_IDLE_EXIT, NULL};
        if (!envp || nullfd < 0 || logfd < 0 || stz_spawn(bin, argv, envp, nullfd, logfd) < 0)
            rc = psi_fail(err, ECONNREFUSED, "zmq store %s: cannot start %s store-server: %s",
                          eps, bin, strerror(errno));
        free(envp);
        if (nullfd >= 0)
            close(nullfd);
        if (logfd >= 0)
            close(logfd);
        for (int waited = 0; rc == 0 && stz_probe(ep, 1000) != 0; waited += 10) {
            if (waited >= STZ_START_WAIT_MS) {
                rc = psi_fail(err, ECONNREFUSED, "zmq store %s: started %s store-server, but "
                              "it did not answer within %d ms (see %s)", eps, bin,
                              STZ_START_WAIT_MS, logp);
                break;
            }
            struct timespec ts = {0, 10 * 1000000L};
            nanosleep(&ts, NULL);
        }
        if (rc == 0)
            psi_log_once(started_logged, PSI_LOG_INFO, "zmq store: started %s store-server "
                         "on %s (log %s)", bin, eps, logp);
    }
    flock(lfd, LOCK_UN);
    close(lfd);
    return rc;
}
