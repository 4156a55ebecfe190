/* pl_zmq_rx: the receiving half of the ZeroMQ hooks (docs/zmq.md §5,
 * docs/protocol.md §7): a frame from a peer that announced X-Psi is
 * classified; a token is resolved through the store, an escape removed.
 * Every other frame is handed over as libzmq gave it. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pl_store.h"
#include "pl_zmq.h"
#include "pl_zmq_int.h"
#include "pl_zmqf.h"
#include "psi_log.h"
#include "psi_stats.h"

/* The receiving mirror of pl_zq_send_ours (pl_zmq.c): which frames may be ours. */
static bool pl_zq_recv_ours(const pl_zsock *z)
{
    switch (z->type) {
    case ZMQ_ROUTER: case ZMQ_SUB: case ZMQ_XSUB:
        return z->recv_more;
    case ZMQ_XPUB: case ZMQ_PUB:
        return false;
    default:
        return true;
    }
}

/* One received frame, classified. The application's bytes are
 * data[0..len): inside msg (plain, escaped) or inside obj (token). */
typedef struct pl_zrx {
    int kind;
    const uint8_t *data;
    size_t len;
    psi_obj obj;
} pl_zrx;

static int pl_zq_resolve(const psi_token *tok, pl_zrx *rx)
{
    psi_err err = {0};
    uint64_t t0 = pl_now_ns();
    if (pl_store_resolve(tok, &rx->obj, &err) != 0) {
        psi_log(PSI_LOG_ERROR, "zmq: cannot resolve token %s (%llu bytes): %s", tok->key,
                (unsigned long long)tok->size, err.msg);
        PSI_STAT_ADD(errors, 1);
        errno = EIO;
        return -1;
    }
    PSI_STAT_ADD(get_ns, pl_now_ns() - t0);
    PSI_STAT_ADD(tokens_resolved, 1);
    PSI_STAT_ADD(bytes_resolved, rx->obj.len);
    rx->data = rx->obj.data;
    rx->len = rx->obj.len;
    psi_log(PSI_LOG_DEBUG, "zmq: resolved token %s (%zu bytes)", tok->key, rx->len);
    return 0;
}

/* Receives one frame into msg (initialised by the caller) and classifies
 * it. Returns 0, or -1 with errno: the real call's, or EIO/EPROTO for a
 * frame of ours that cannot be decoded (consumed; later frames follow). */
static int pl_zq_recv_frame(void *s, pl_zsock *z, zmq_msg_t *msg, int flags, pl_zrx *rx)
{
    memset(rx, 0, sizeof(*rx));
    if (pl_zr.zmq_msg_recv(msg, s, flags) < 0)
        return -1;
    bool ours = pl_zq_recv_ours(z);
    if (z->type == ZMQ_ROUTER || z->type == ZMQ_SUB || z->type == ZMQ_XSUB)
        z->recv_more = pl_zr.zmq_msg_more(msg) != 0; /* only they look at it */
    rx->kind = PL_ZF_PLAIN;
    rx->data = pl_zr.zmq_msg_data(msg);
    rx->len = pl_zr.zmq_msg_size(msg);
    if (!ours || !pl_zf_needs_escape(rx->data, rx->len))
        return 0;
    int saved = errno; /* zmq_msg_gets sets EINVAL for a missing property */
    bool announced = pl_zr.zmq_msg_gets(msg, PL_ZQ_PROP) != NULL;
    errno = saved;
    if (!announced)
        return 0;
    psi_token tok;
    psi_err err = {0};
    int kind = pl_zf_classify(rx->data, rx->len, &tok, &err);
    if (kind < 0) {
        psi_log(PSI_LOG_ERROR, "zmq: bad frame from an interposed peer: %s", err.msg);
        PSI_STAT_ADD(errors, 1);
        errno = err.code == EPROTO ? EPROTO : EIO;
        return -1;
    }
    rx->kind = kind;
    if (kind == PL_ZF_ESCAPED) {
        rx->data += PL_ZF_HDR;
        rx->len -= PL_ZF_HDR;
        return 0;
    }
    return pl_zq_resolve(&tok, rx);
}

static void pl_zq_rx_done(pl_zrx *rx)
{
    if (rx->kind == PL_ZF_TOKEN)
        psi_obj_release(&rx->obj);
}

int pl_zq_recv(void *s, void *buf, size_t len, int flags)
{
    pl_zsock *z = pl_zq_lookup(s);
    if (!z)
        return ZREAL(zmq_recv, -1, s, buf, len, flags);
    pl_zq_depth++;
    zmq_msg_t m;
    pl_zr.zmq_msg_init(&m);
    pl_zrx rx;
    int rc = -1;
    if (pl_zq_recv_frame(s, z, &m, flags, &rx) == 0) {
        /* zmq_recv truncates to len and returns the frame's real size. */
        memcpy(buf, rx.data, rx.len < len ? rx.len : len);
        rc = pl_zq_count(rx.len);
        pl_zq_rx_done(&rx);
    }
    int e = errno;
    pl_zr.zmq_msg_close(&m);
    errno = e;
    pl_zq_depth--;
    return rc;
}

int pl_zq_recviov(void *s, struct iovec *iov, size_t *count, int flags)
{
    pl_zsock *z = pl_zq_lookup(s);
    if (!z || !iov || !count || *count == 0)
        return ZREAL(zmq_recviov, -1, s, iov, count, flags);
    pl_zq_depth++;
    /* As libzmq does it: up to *count frames of one message, each copied
     * into a buffer from malloc that the caller frees. */
    size_t max = *count;
    int nread = 0;
    bool more = true;
    *count = 0;
    for (size_t i = 0; more && i < max; i++) {
        zmq_msg_t m;
        pl_zr.zmq_msg_init(&m);
        pl_zrx rx;
        if (pl_zq_recv_frame(s, z, &m, flags, &rx) != 0) {
            int e = errno;
            pl_zr.zmq_msg_close(&m);
            errno = e;
            nread = -1;
            break;
        }
        iov[i].iov_len = rx.len;
        iov[i].iov_base = malloc(rx.len ? rx.len : 1);
        if (!iov[i].iov_base) {
            pl_zq_rx_done(&rx);
            pl_zr.zmq_msg_close(&m);
            errno = ENOMEM;
            nread = -1;
            break;
        }
        memcpy(iov[i].iov_base, rx.data, rx.len);
        more = pl_zr.zmq_msg_more(&m) != 0;
        pl_zq_rx_done(&rx);
        pl_zr.zmq_msg_close(&m);
        ++*count;
        ++nread;
    }
    pl_zq_depth--;
    return nread;
}

/* Moves the received frame's metadata (zmq_msg_gets) and more flag onto
 * the message that replaces it. The metadata reference moves with the
 * pointer, so closing `from` afterwards drops nothing. */
static void pl_zq_transplant(zmq_msg_t *from, zmq_msg_t *to)
{
    if (!pl_zq_layout_ok)
        return;
    unsigned char *f = (unsigned char *)from, *t = (unsigned char *)to;
    void *md;
    memcpy(&md, f, sizeof(md));
    memcpy(t, &md, sizeof(md));
    memset(f, 0, sizeof(md));
    t[PL_ZQ_FLAGS_AT] |= f[PL_ZQ_FLAGS_AT] & 1;
}

int pl_zq_msg_recv(zmq_msg_t *msg, void *s, int flags)
{
    pl_zsock *z = pl_zq_lookup(s);
    if (!z)
        return ZREAL(zmq_msg_recv, -1, msg, s, flags);
    pl_zq_depth++;
    pl_zrx rx;
    int rc = -1;
    if (pl_zq_recv_frame(s, z, msg, flags, &rx) == 0) {
        rc = pl_zq_count(rx.len);
        if (rx.kind != PL_ZF_PLAIN) {
            /* A copy, not the mapping: the application may write into a
             * received message, and store mappings are read-only. */
            zmq_msg_t nm;
            if (pl_zr.zmq_msg_init_size(&nm, rx.len) != 0) {
                rc = -1;
                errno = ENOMEM;
            } else {
                memcpy(pl_zr.zmq_msg_data(&nm), rx.data, rx.len);
                pl_zq_transplant(msg, &nm);
                pl_zr.zmq_msg_move(msg, &nm);
                pl_zr.zmq_msg_close(&nm);
            }
            pl_zq_rx_done(&rx);
        }
    } else if (errno == EIO || errno == EPROTO) {
        /* The frame was consumed: leave an empty message, as after a
         * successful receive of nothing. */
        int e = errno;
        pl_zr.zmq_msg_close(msg);
        pl_zr.zmq_msg_init(msg);
        errno = e;
    }
    pl_zq_depth--;
    return rc;
}
