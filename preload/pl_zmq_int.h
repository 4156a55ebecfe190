/* pl_zmq_int: what pl_zmq.c (binding, sockets, sending) and pl_zmq_rx.c
 * (receiving) share. Not an interface: see pl_zmq.h. */
#ifndef PL_ZMQ_INT_H
#define PL_ZMQ_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <stdatomic.h>
#include <zmq.h>

#define PL_ZQ_PROP "X-Psi"       /* docs/protocol.md §7 */
#define PL_ZQ_ANNOUNCE "X-Psi:1" /* property name and value, as ZMQ_METADATA wants it */

/* The libzmq functions the hooks call, hooked or not. */
#define PL_ZQ_FNS(X)                                                               \
    X(void *, zmq_socket, (void *ctx, int type))                                   \
    X(int, zmq_close, (void *s))                                                   \
    X(int, zmq_bind, (void *s, const char *ep))                                    \
    X(int, zmq_connect, (void *s, const char *ep))                                 \
    X(int, zmq_disconnect, (void *s, const char *ep))                              \
    X(int, zmq_setsockopt, (void *s, int opt, const void *v, size_t len))          \
    X(int, zmq_getsockopt, (void *s, int opt, void *v, size_t *len))               \
    X(int, zmq_send, (void *s, const void *buf, size_t len, int flags))            \
    X(int, zmq_send_const, (void *s, const void *buf, size_t len, int flags))      \
    X(int, zmq_sendiov, (void *s, struct iovec *iov, size_t count, int flags))     \
    X(int, zmq_msg_send, (zmq_msg_t * m, void *s, int flags))                      \
    X(int, zmq_recv, (void *s, void *buf, size_t len, int flags))                  \
    X(int, zmq_recviov, (void *s, struct iovec *iov, size_t *count, int flags))    \
    X(int, zmq_msg_recv, (zmq_msg_t * m, void *s, int flags))                      \
    X(int, zmq_msg_init, (zmq_msg_t * m))                                          \
    X(int, zmq_msg_init_size, (zmq_msg_t * m, size_t n))                           \
    X(int, zmq_msg_close, (zmq_msg_t * m))                                         \
    X(int, zmq_msg_move, (zmq_msg_t * dst, zmq_msg_t *src))                        \
    X(void *, zmq_msg_data, (zmq_msg_t * m))                                       \
    X(size_t, zmq_msg_size, (const zmq_msg_t *m))                                  \
    X(int, zmq_msg_more, (const zmq_msg_t *m))                                     \
    X(const char *, zmq_msg_gets, (const zmq_msg_t *m, const char *prop))          \
    X(void, zmq_version, (int *major, int *minor, int *patch))

#define PL_ZQ_PTR(ret, name, params) ret(*name) params;
typedef struct pl_zq_real {
    PL_ZQ_FNS(PL_ZQ_PTR)
} pl_zq_real;
#undef PL_ZQ_PTR

extern pl_zq_real pl_zr; /* bound on first use (pl_zmq.c) */

/* libzmq 4.1-4.3 (msg.hpp): every zmq_msg_t variant starts with its
 * metadata pointer and keeps its flags byte at offset 43, bit 0 = more.
 * Checked on a live message before it is relied on. */
#define PL_ZQ_FLAGS_AT 43
extern bool pl_zq_layout_ok;

/* Set while a hook runs: libzmq calls some of its own exported functions
 * (zmq_sendmsg calls zmq_msg_send), and those calls reach our hooks. */
extern _Thread_local int pl_zq_depth __attribute__((tls_model("initial-exec")));

/* The real call, for hooks that pass through: NULL (libzmq not found)
 * fails like a bad socket. */
#define ZREAL(name, fail, ...) \
    (pl_zr.name ? pl_zr.name(__VA_ARGS__) : (errno = ENOTSUP, fail))

#define PL_ZQ_CONN_MAX 16
#define PL_ZQ_TAB 4096 /* sockets tracked at once; more pass through unchanged */

typedef struct pl_zconn {
    char ep[128];
    struct sockaddr_storage sa;
    socklen_t len;
    time_t checked; /* when the registry last said this peer is interposed (0: never) */
} pl_zconn;

typedef struct pl_zsock {
    _Atomic(void *) s; /* first: pl_zq_add clears what follows it */
    int type;
    bool started;   /* the first bind/connect happened: announcement decided */
    bool announced; /* X-Psi set: we escape, and may send tokens */
    bool bound;     /* some zmq_bind: peers we cannot vouch for in auto mode */
    bool unknown;   /* an endpoint that is not tcp/ipc, or one we cannot parse */
    bool send_more; /* the next frame sent continues a message */
    bool recv_more; /* the next frame received continues a message */
    int nconn;
    pl_zconn conn[PL_ZQ_CONN_MAX];
} pl_zsock;

/* The state of an application socket, or NULL: pass the call through. */
pl_zsock *pl_zq_lookup(void *s);

/* A frame size as libzmq returns it (capped at INT_MAX). */
int pl_zq_count(size_t n);

#endif
