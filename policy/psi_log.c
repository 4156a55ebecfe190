/* psi_log: one line per call, one write(2) per line.
 *
 * The log may be written from inside the interposer's hooks, from a thread
 * that holds no lock, or from a signal handler that interrupted one. So:
 * format into a stack buffer (no malloc, no stdio stream, no lock), then
 * issue a single raw syscall, which neither re-enters our own write() hook
 * nor interleaves with other processes' lines on an O_APPEND file. */
#include "psi_log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define LOG_LINE_MAX 1024

static atomic_int log_level = PSI_LOG_WARN;
static atomic_int log_fd = 2;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

/* Opens PSI_LOG_FILE without going through libc's open(), which the preload
 * library may hook. Returns the fd or -1. */
static int log_open(const char *file)
{
    long fd;

    do
        fd = syscall(SYS_openat, AT_FDCWD, file,
                     O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    while (fd < 0 && errno == EINTR);
    return (int)fd;
}

static void log_write(int fd, const char *buf, size_t len)
{
    long n;

    /* A line is written whole or not at all; retry only if nothing went. */
    do
        n = syscall(SYS_write, fd, buf, len);
    while (n < 0 && errno == EINTR);
}

void psi_log_init(int level, const char *file)
{
    int saved = errno;
    int fd = 2;

    if (level < PSI_LOG_ERROR)
        level = PSI_LOG_ERROR;
    if (level > PSI_LOG_DEBUG)
        level = PSI_LOG_DEBUG;
    atomic_store(&log_level, level);

    if (file && file[0]) {
        fd = log_open(file);
        if (fd < 0) {
            int e = errno;
            fd = 2;
            atomic_store(&log_fd, fd);
            psi_log(PSI_LOG_WARN, "cannot open PSI_LOG_FILE '%s' (%s); logging to stderr",
                    file, strerror(e));
        }
    }
    int old = atomic_exchange(&log_fd, fd);
    if (old > 2 && old != fd)
        syscall(SYS_close, old);
    errno = saved;
}

int psi_log_enabled(int level)
{
    return level <= atomic_load_explicit(&log_level, memory_order_relaxed);
}

void psi_log(int level, const char *fmt, ...)
{
    char buf[LOG_LINE_MAX];
    int saved = errno; /* the application never sees our errno */
    va_list ap;
    int n, m;

    if (!psi_log_enabled(level))
        return;
    if (level < PSI_LOG_ERROR || level > PSI_LOG_DEBUG)
        level = PSI_LOG_ERROR;

    n = snprintf(buf, sizeof buf, "psi[%ld]: %s: ", (long)syscall(SYS_getpid),
                 level_names[level]);
    va_start(ap, fmt);
    m = vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;

    size_t len = (size_t)n + (size_t)m;
    if (len > sizeof buf - 2) {
        /* Cut long lines visibly rather than dropping their newline. */
        len = sizeof buf - 5;
        memcpy(buf + len, "...", 3);
        len += 3;
    }
    /* Messages are one line; a trailing newline from the caller is kept. */
    if (len == 0 || buf[len - 1] != '\n')
        buf[len++] = '\n';

    log_write(atomic_load_explicit(&log_fd, memory_order_relaxed), buf, len);
    errno = saved;
}
