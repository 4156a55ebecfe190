/* pl_io helpers: the real kernel calls the engine makes on behalf of a pl_io. */
#ifndef PL_IO_H
#define PL_IO_H

#include "pl_engine.h"

/* One real read into iov (recvmsg for sockets, with the app's flags minus
 * `strip`; readv otherwise). Copies name/control results back to io->msg. */
ssize_t pl_kread(pl_io *io, struct iovec *iov, int iovcnt, int strip);

/* One real write of iov (sendmsg with the app's flags for sockets, writev
 * otherwise). `with_msg` attaches the app's name/control (first send only). */
ssize_t pl_kwrite(pl_io *io, const struct iovec *iov, int iovcnt, bool with_msg);

/* Writes all of p, waiting for POLLOUT on EAGAIN and retrying EINTR: used
 * for the interposer's own bytes (HELLO, headers, tokens), which must never
 * be left half-sent. Returns 0 or -1 with errno. */
int pl_kwrite_all(pl_io *io, const uint8_t *p, size_t len);

#endif
