/* psi_err: errors as values with a message.
 *
 * Inside the core every fallible call returns 0 on success or -1 and fills a
 * psi_err: `code` is an errno value (EIO, EPROTO, ENOSPC, EINVAL...) that the
 * preload layer can hand to the application, and `msg` is one human line
 * naming what failed (a file, a key, a variable). */
#ifndef PSI_ERR_H
#define PSI_ERR_H

#include <stddef.h>

typedef struct psi_err {
    int code;
    char msg[256];
} psi_err;

/* Sets err (if not NULL) and returns -1, so callers can `return psi_fail(...)`. */
int psi_fail(psi_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

void psi_err_clear(psi_err *err);

#endif
