/* psi_log: the interposer's own diagnostics.
 *
 * Lines go to stderr (fd 2) or to PSI_LOG_FILE, never to stdout, as one
 * write(2) each, prefixed "psi[PID]: LEVEL: ". The write is issued with
 * syscall(SYS_write) so it never re-enters the preload hooks. */
#ifndef PSI_LOG_H
#define PSI_LOG_H

#include <stdatomic.h>

enum psi_log_level {
    PSI_LOG_ERROR = 0,
    PSI_LOG_WARN = 1,
    PSI_LOG_INFO = 2,
    PSI_LOG_DEBUG = 3,
};

/* level: the most verbose level printed; file: NULL or "" for stderr. */
void psi_log_init(int level, const char *file);
int psi_log_enabled(int level);
void psi_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Logs at most once per `flag` (a `static atomic_int` owned by the caller). */
#define psi_log_once(flag, level, ...)                                        \
    do {                                                                      \
        if (!atomic_exchange_explicit(&(flag), 1, memory_order_relaxed))      \
            psi_log((level), __VA_ARGS__);                                    \
    } while (0)

#endif
