/* pl_bulk: paths that move bytes to or from a framed fd outside the core
 * data hooks (DESIGN §3, "written outside the hooks"): sendfile, splice,
 * vmsplice, copy_file_range, sendmmsg/recvmmsg, FIONREAD, and stdio.
 *
 * The hooks (pl_hooks_bulk.c) send untracked and plain fds to the real call;
 * everything here runs only for a tracked fd with a direction that is (or
 * may become) framed, and routes the bytes through pl_send/pl_recv. Which
 * choice each path gets is listed in docs/compatibility.md. */
#ifndef PL_BULK_H
#define PL_BULK_H

#include <stdbool.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>

#include "pl_state.h"

/* A direction the kernel can carry alone: plain for good, nothing held. */
bool pl_bulk_out_plain(const pl_state *st);
bool pl_bulk_in_plain(pl_state *st);
/* fd's state, with a reference the caller drops, if the engine must see its
 * outbound (out) or inbound bytes; NULL when the kernel can do it alone. */
pl_state *pl_bulk_engaged(int fd, bool out);

/* sendfile(2) into the framed fd out_fd (st is its state). A region at or
 * above the proxy threshold is mapped and sent as one buffer (one token);
 * smaller ones go through a bounce buffer. *offset semantics and counts are
 * sendfile's own. */
ssize_t pl_bulk_sendfile(pl_state *st, int out_fd, int in_fd, off_t *offset, size_t count);

/* splice(2) / copy_file_range(2) emulated with a read and a write, either of
 * which may go through the engine. Bytes read are always written in full
 * (waiting for room if need be): they are gone from fd_in. */
ssize_t pl_bulk_copy(int fd_in, off_t *off_in, int fd_out, off_t *off_out, size_t len,
                     bool nonblock);

/* sendmmsg/recvmmsg on a tracked stream socket: one engine call per message. */
int pl_bulk_sendmmsg(pl_state *st, int fd, struct mmsghdr *v, unsigned int n, int flags);
int pl_bulk_recvmmsg(pl_state *st, int fd, struct mmsghdr *v, unsigned int n, int flags,
                     struct timespec *timeout);

/* FIONREAD/SIOCINQ for a tracked fd: 1 with *out set, 0 when the kernel's
 * own answer is exact (the caller makes the real call), -1 with errno. */
int pl_bulk_inq(pl_state *st, int fd, int *out);

/* stdio. A FILE on a tracked fd that is not plain for good is made with
 * fopencookie, its reads and writes going through the engine. */
bool pl_bulk_wants_cookie(pl_state *st);
FILE *pl_bulk_fdopen(int fd, const char *mode); /* NULL + errno, or the FILE */
void pl_bulk_adopt_stdio(void);  /* at init, after the std fds were scanned */
void pl_bulk_exit_flush(void);   /* at exit, before stats are written */

#endif
