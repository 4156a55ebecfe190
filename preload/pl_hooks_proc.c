/* pl_hooks_proc: exec and posix_spawn carry fd state to the new image
 * (pl_handoff.h; docs/exec-handoff.md).
 *
 * Every exec entry point glibc exports is hooked, since glibc's own
 * execl/execvp/... reach the kernel through its internal __execve, never
 * through our execve. Each hook builds the environment of the new image on
 * the stack (the caller's environ is never touched, so a failed exec leaves
 * nothing behind but a closed memfd) and calls the real function.
 *
 * vfork is deliberately not hooked. A C wrapper around vfork cannot return
 * in the child without wrecking the parent's stack, and turning it into
 * fork would change what programs rely on. Instead, everything that can run
 * in a vfork child (dup2, close, the exec hooks here) is safe on borrowed
 * memory: the fd table refuses changes in a child that shares its parent's
 * address space (pl_fdtab_shared_child), and the exec handoff only reads
 * the table, takes state locks with trylock for a bounded time and writes
 * to a memfd; it never allocates. The handoff finds each state's object by
 * device and inode in the new image, so the child's dup2 onto 0-2, which
 * the table never saw, is still followed. */
#include <errno.h>
#include <spawn.h>
#include <stdarg.h>
#include <unistd.h>

#include "pl_engine.h"
#include "pl_handoff.h"
#include "pl_real.h"

extern char **environ;

/* What to exec, for the one place that wraps it in a handoff. */
typedef struct pl_exec_call {
    int how; /* which real call */
    int fd;  /* fexecve, execveat: the fd or dirfd */
    const char *path;
    char *const *argv;
    int flags; /* execveat */
    pid_t *pid; /* posix_spawn* */
    const posix_spawn_file_actions_t *fa;
    const posix_spawnattr_t *attr;
} pl_exec_call;

enum { PL_EXECVE, PL_EXECVPE, PL_FEXECVE, PL_EXECVEAT, PL_SPAWN, PL_SPAWNP };

static int pl_exec_real(const pl_exec_call *c, char *const envp[])
{
    switch (c->how) {
    case PL_EXECVPE:
        return REAL(execvpe)(c->path, c->argv, envp);
    case PL_FEXECVE:
        return REAL(fexecve)(c->fd, c->argv, envp);
    case PL_EXECVEAT:
        return REAL(execveat)(c->fd, c->path, c->argv, envp, c->flags);
    case PL_SPAWN:
        return REAL(posix_spawn)(c->pid, c->path, c->fa, c->attr, c->argv, envp);
    case PL_SPAWNP:
        return REAL(posix_spawnp)(c->pid, c->path, c->fa, c->attr, c->argv, envp);
    default:
        return REAL(execve)(c->path, c->argv, envp);
    }
}

static int pl_exec(const pl_exec_call *c, char *const envp[])
{
    bool spawn = c->how == PL_SPAWN || c->how == PL_SPAWNP;
    int mfd = -1;
    if (pl_g.ready && pl_handoff_target_preloaded(envp))
        mfd = pl_handoff_export(spawn); /* a spawn's file actions are opaque: all states */
    if (mfd < 0)
        return pl_exec_real(c, envp);
    char *env[pl_handoff_env_count(envp) + 2];
    char var[32];
    pl_handoff_env(envp, mfd, env, var);
    int r = pl_exec_real(c, env);
    int saved = errno;
    REAL(close)(mfd); /* exec failed, or the spawned child has its copy */
    errno = saved;
    return r;
}

PL_EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
    pl_exec_call c = {.how = PL_EXECVE, .path = path, .argv = argv};
    return pl_exec(&c, envp);
}

PL_EXPORT int execv(const char *path, char *const argv[])
{
    pl_exec_call c = {.how = PL_EXECVE, .path = path, .argv = argv};
    return pl_exec(&c, environ);
}

PL_EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
    pl_exec_call c = {.how = PL_EXECVPE, .path = file, .argv = argv};
    return pl_exec(&c, envp);
}

PL_EXPORT int execvp(const char *file, char *const argv[])
{
    pl_exec_call c = {.how = PL_EXECVPE, .path = file, .argv = argv};
    return pl_exec(&c, environ);
}

PL_EXPORT int fexecve(int fd, char *const argv[], char *const envp[])
{
    pl_exec_call c = {.how = PL_FEXECVE, .fd = fd, .argv = argv};
    return pl_exec(&c, envp);
}

PL_EXPORT int execveat(int dirfd, const char *path, char *const argv[], char *const envp[],
                       int flags)
{
    pl_exec_call c = {.how = PL_EXECVEAT, .fd = dirfd, .path = path, .argv = argv, .flags = flags};
    return pl_exec(&c, envp);
}

/* The execl family: the variadic list becomes an argv on the stack. */
#define PL_COUNT_ARGS(arg, n)                                  \
    do {                                                       \
        va_list ap_;                                           \
        va_start(ap_, arg);                                    \
        for (n = 1; va_arg(ap_, const char *); n++)            \
            ;                                                  \
        va_end(ap_);                                           \
    } while (0)

/* argv from the list; envp_out, if not NULL, takes the argument after the
 * list's NULL (execle only: the others pass nothing there to read). */
#define PL_FILL_ARGS(arg, argv, n, envp_out)                   \
    do {                                                       \
        va_list ap_;                                           \
        va_start(ap_, arg);                                    \
        argv[0] = (char *)arg;                                 \
        for (size_t i_ = 1; i_ <= n; i_++)                     \
            argv[i_] = va_arg(ap_, char *);                    \
        char ***out_ = (envp_out);                             \
        if (out_)                                              \
            *out_ = va_arg(ap_, char **);                      \
        va_end(ap_);                                           \
    } while (0)

PL_EXPORT int execl(const char *path, const char *arg, ...)
{
    size_t n;
    PL_COUNT_ARGS(arg, n);
    char *argv[n + 1];
    PL_FILL_ARGS(arg, argv, n, (char ***)NULL);
    return execv(path, argv);
}

PL_EXPORT int execlp(const char *file, const char *arg, ...)
{
    size_t n;
    PL_COUNT_ARGS(arg, n);
    char *argv[n + 1];
    PL_FILL_ARGS(arg, argv, n, (char ***)NULL);
    return execvp(file, argv);
}

PL_EXPORT int execle(const char *path, const char *arg, ...)
{
    size_t n;
    PL_COUNT_ARGS(arg, n);
    char *argv[n + 1];
    char **envp = NULL;
    PL_FILL_ARGS(arg, argv, n, &envp);
    return execve(path, argv, envp);
}

PL_EXPORT int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
                          const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
    pl_exec_call c = {.how = PL_SPAWN, .pid = pid, .path = path, .fa = fa, .attr = attr,
                      .argv = argv};
    return pl_exec(&c, envp);
}

PL_EXPORT int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
                           const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
    pl_exec_call c = {.how = PL_SPAWNP, .pid = pid, .path = file, .fa = fa, .attr = attr,
                      .argv = argv};
    return pl_exec(&c, envp);
}
