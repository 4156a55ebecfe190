/* pl_hooks_zmq: the exported ZeroMQ hooks (docs/zmq.md). One line each;
 * the logic is in pl_zmq.c. zmq_sendmsg/zmq_recvmsg, the deprecated
 * aliases, go the same way as zmq_msg_send/zmq_msg_recv (never through the
 * real aliases, which would call back into our hooks). */
#include "pl_real.h"
#include "pl_zmq.h"

/* ---- sockets ------------------------------------------------------------- */

PL_EXPORT void *zmq_socket(void *ctx, int type) { return pl_zq_socket(ctx, type); }
PL_EXPORT int zmq_close(void *s) { return pl_zq_close(s); }
PL_EXPORT int zmq_bind(void *s, const char *ep) { return pl_zq_bind(s, ep); }
PL_EXPORT int zmq_connect(void *s, const char *ep) { return pl_zq_connect(s, ep); }
PL_EXPORT int zmq_disconnect(void *s, const char *ep) { return pl_zq_disconnect(s, ep); }

/* ---- sending --------------------------------------------------------------- */

PL_EXPORT int zmq_send(void *s, const void *buf, size_t len, int flags)
{
    return pl_zq_send(s, buf, len, flags);
}

PL_EXPORT int zmq_send_const(void *s, const void *buf, size_t len, int flags)
{
    return pl_zq_send_const(s, buf, len, flags);
}

PL_EXPORT int zmq_sendiov(void *s, struct iovec *iov, size_t count, int flags)
{
    return pl_zq_sendiov(s, iov, count, flags);
}

PL_EXPORT int zmq_msg_send(zmq_msg_t *msg, void *s, int flags) { return pl_zq_msg_send(msg, s, flags); }
PL_EXPORT int zmq_sendmsg(void *s, zmq_msg_t *msg, int flags) { return pl_zq_msg_send(msg, s, flags); }

/* ---- receiving ------------------------------------------------------------- */

PL_EXPORT int zmq_recv(void *s, void *buf, size_t len, int flags)
{
    return pl_zq_recv(s, buf, len, flags);
}

PL_EXPORT int zmq_recviov(void *s, struct iovec *iov, size_t *count, int flags)
{
    return pl_zq_recviov(s, iov, count, flags);
}

PL_EXPORT int zmq_msg_recv(zmq_msg_t *msg, void *s, int flags) { return pl_zq_msg_recv(msg, s, flags); }
PL_EXPORT int zmq_recvmsg(void *s, zmq_msg_t *msg, int flags) { return pl_zq_msg_recv(msg, s, flags); }
