/* psi_err: errors as values with a message (see psi_err.h). */
#include "psi_err.h"

#include <stdarg.h>
#include <stdio.h>

int psi_fail(psi_err *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        /* A message longer than msg is cut, never overflowed: it is one
         * human line, and its head names what failed. */
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

void psi_err_clear(psi_err *err)
{
    if (err) {
        err->code = 0;
        err->msg[0] = '\0';
    }
}
