/* pl_zmq: ZeroMQ message proxying behind the zmq_* hooks (docs/zmq.md).
 *
 * pl_hooks_zmq.c exports the hooks; each is one line into the pl_zq_*
 * function of the same call (pl_zmq.c: sockets and sending; pl_zmq_rx.c:
 * receiving). libzmq is never linked: its functions are
 * resolved with dlsym(RTLD_NEXT) the first time a hook runs (a program that
 * calls a zmq_* function has libzmq loaded), so programs without libzmq
 * never resolve anything. */
#ifndef PL_ZMQ_H
#define PL_ZMQ_H

#include <stddef.h>
#include <sys/uio.h>
#include <zmq.h>

void *pl_zq_socket(void *ctx, int type);
int pl_zq_close(void *s);
int pl_zq_bind(void *s, const char *ep);
int pl_zq_connect(void *s, const char *ep);
int pl_zq_disconnect(void *s, const char *ep);

int pl_zq_send(void *s, const void *buf, size_t len, int flags);
int pl_zq_send_const(void *s, const void *buf, size_t len, int flags);
int pl_zq_sendiov(void *s, struct iovec *iov, size_t count, int flags);
int pl_zq_msg_send(zmq_msg_t *msg, void *s, int flags);

int pl_zq_recv(void *s, void *buf, size_t len, int flags);
int pl_zq_recviov(void *s, struct iovec *iov, size_t *count, int flags);
int pl_zq_msg_recv(zmq_msg_t *msg, void *s, int flags);

/* PSI_ZMQ: when a socket may send tokens (docs/zmq.md §3). */
enum pl_zq_mode { PL_ZQ_OFF = 0, PL_ZQ_AUTO = 1, PL_ZQ_ON = 2 };

/* Parses a PSI_ZMQ value; NULL or "" is auto. -1 if invalid. */
int pl_zq_parse_mode(const char *v);

#endif
