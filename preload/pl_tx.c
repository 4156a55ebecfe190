/* pl_tx: the outbound half of the framing engine (docs/protocol.md §1, §3).
 *
 * Every application write on a framed direction becomes at most one record
 * header, sent with the payload in one writev/sendmsg. A write at or above
 * the threshold is put into the store and replaced by a TOKEN record. Counts
 * returned to the application are always application bytes. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>

#include "pl_dryrun.h"
#include "pl_engine.h"
#include "pl_io.h"
#include "pl_real.h"
#include "pl_store.h"
#include "psi_le.h"
#include "psi_log.h"
#include "psi_stats.h"

/* HELLO or ANSWER, a record header and a token body: the most the engine
 * ever sends of its own in one write. */
#define PL_PREFIX_MAX (PL_HELLO_LEN + PL_REC_HDR + PSI_TOKEN_MAX_BODY)

/* Writes up to this size are copied behind their header and sent with one
 * plain write instead of a gathered one. */
#define PL_SMALL_WRITE 1024


static size_t pl_record_header(uint8_t *p, uint8_t type, uint32_t len)
{
    p[0] = type;
    psi_put_le32(p + 1, len);
    return PL_REC_HDR;
}

/* The accepting side learns of HELLO at its first read; a server that writes
 * first would stay plain. So before its first write it peeks, without
 * blocking, for a HELLO that may already be waiting. */
static void pl_detect_early(pl_state *st, int fd)
{
    if (pthread_mutex_trylock(&st->in_lock) != 0)
        return; /* a reader is busy with this stream; it will decide */
    if (st->in_mode == PL_IN_DETECT && st->detect_len == 0 && st->raw_len == st->raw_off) {
        uint8_t peek[PL_HELLO_LEN];
        ssize_t r = REAL(recv)(fd, peek, sizeof(peek), MSG_PEEK | MSG_DONTWAIT);
        int d = r > 0 ? pl_detect(peek, (size_t)r) : PL_DETECT_PARTIAL;
        if (d == PL_DETECT_PLAIN) {
            st->in_mode = PL_IN_PLAIN;
            int und = PL_OUT_UNDECIDED;
            atomic_compare_exchange_strong(&st->out_mode, &und, PL_OUT_PLAIN);
        } else if (d == PL_DETECT_HELLO &&
                   REAL(recv)(fd, peek, sizeof(peek), MSG_DONTWAIT) == PL_HELLO_LEN) {
            memcpy(st->nonce, peek + 8, PL_NONCE_LEN);
            st->in_mode = PL_IN_FRAMED;
            int und = PL_OUT_UNDECIDED;
            atomic_compare_exchange_strong(&st->out_mode, &und, PL_OUT_ANSWER);
            psi_log(PSI_LOG_DEBUG, "fd %d: HELLO seen before first write; framing replies", fd);
        }
    }
    pthread_mutex_unlock(&st->in_lock);
}

/* HELLO or ANSWER owed before our next byte, into p. */
static size_t pl_greeting(pl_state *st, int mode, uint8_t *p)
{
    if (mode == PL_OUT_OFFER) {
        pl_hello_make(p, st->nonce, false);
        return PL_HELLO_LEN;
    }
    if (mode == PL_OUT_ANSWER) {
        pl_hello_make(p, st->nonce, true);
        return PL_HELLO_LEN;
    }
    return 0;
}

/* Like pl_kwrite_all, but the first bytes the kernel takes carry the
 * application's name and control (SCM_RIGHTS must travel with its write). */
static int pl_kwrite_all_msg(pl_io *io, const uint8_t *p, size_t len)
{
    for (;;) {
        struct iovec v = {(void *)p, len};
        ssize_t r = pl_kwrite(io, &v, 1, true);
        if (r > 0)
            return pl_kwrite_all(io, p + r, len - (size_t)r);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd pfd = {io->fd, POLLOUT, 0};
            if (REAL(poll)(&pfd, 1, -1) < 0 && errno != EINTR)
                return -1;
            continue;
        }
        if (r == 0)
            errno = EIO;
        return -1;
    }
}

/* Tries to send buf as a token. Returns n, -1 (errno) if the token could not
 * be written, or 0 if the store refused the object (send it inline). */
static ssize_t pl_send_token(pl_state *st, pl_io *io, uint8_t *pre, size_t plen,
                             const void *buf, size_t n, const pol_decision *d)
{
    static atomic_int warned;
    psi_token tok;
    psi_err err = {0};
    uint64_t t0 = pl_now_ns();
    int slot = pl_store_route(d, st->peer_len ? (const struct sockaddr *)&st->peer : NULL,
                              st->peer_len);
    if (pl_store_put(buf, n, d, slot, &tok, &err) != 0) {
        PSI_STAT_ADD(inline_fallbacks, 1);
        psi_log_once(warned, PSI_LOG_WARN, "store refused a %zu-byte object (%s); sending inline",
                     n, err.msg);
        return 0;
    }
    PSI_STAT_ADD(put_ns, pl_now_ns() - t0);
    int blen = psi_token_encode(&tok, pre + plen + PL_REC_HDR, PSI_TOKEN_MAX_BODY, &err);
    if (blen < 0) {
        psi_log(PSI_LOG_ERROR, "token encode failed: %s", err.msg);
        return 0;
    }
    plen += pl_record_header(pre + plen, PL_REC_TOKEN, (uint32_t)blen);
    plen += (size_t)blen;
    if (pl_kwrite_all_msg(io, pre, plen) != 0)
        return -1;
    atomic_store(&st->out_mode, PL_OUT_FRAMED);
    PSI_STAT_ADD(tokens_sent, 1);
    PSI_STAT_ADD(bytes_proxied, n);
    PSI_STAT_ADD(bytes_sent, n);
    psi_log(PSI_LOG_DEBUG, "fd %d: sent %zu bytes as token %s", io->fd, n, tok.key);
    return (ssize_t)n;
}

/* A DATA record, or the continuation of an open one. */
static ssize_t pl_send_data(pl_state *st, pl_io *io, uint8_t *pre, size_t plen,
                            const void *buf, size_t n)
{
    struct iovec iov[2];
    if (st->data_left > 0) {
        size_t len = n < st->data_left ? n : st->data_left;
        iov[0] = (struct iovec){(void *)buf, len};
        ssize_t r = pl_kwrite(io, iov, 1, true);
        if (r > 0) {
            st->data_left -= (uint32_t)r;
            PSI_STAT_ADD(bytes_sent, r);
        }
        return r;
    }
    uint32_t len = n > PL_DATA_MAX ? PL_DATA_MAX : (uint32_t)n;
    plen += pl_record_header(pre + plen, PL_REC_DATA, len);
    iov[0] = (struct iovec){pre, plen};
    iov[1] = (struct iovec){(void *)buf, len};
    ssize_t r;
    if (len <= PL_SMALL_WRITE) {
        /* Small messages: one contiguous buffer and the plain call cost
         * less than gathering (the copy is a few cache lines). */
        uint8_t one[PL_PREFIX_MAX + PL_SMALL_WRITE];
        memcpy(one, pre, plen);
        memcpy(one + plen, buf, len);
        struct iovec v = {one, plen + len};
        r = pl_kwrite(io, &v, 1, true);
    } else {
        r = pl_kwrite(io, iov, 2, true);
    }
    if (r < 0)
        return -1; /* nothing went: the record was never started */
    atomic_store(&st->out_mode, PL_OUT_FRAMED);
    size_t accepted;
    if ((size_t)r < plen) {
        /* The kernel took part of our own bytes; finish them now, the record
         * is promised to the peer. */
        if (pl_kwrite_all(io, pre + r, plen - (size_t)r) != 0)
            return -1;
        accepted = 0;
    } else {
        accepted = (size_t)r - plen;
    }
    st->data_left = len - (uint32_t)accepted;
    if (accepted == 0) {
        /* Header out, no payload yet: send payload so the app sees progress
         * (a blocking fd waits here as the real call would; a non-blocking
         * one may get EAGAIN, and its retry continues the open record). */
        iov[0] = (struct iovec){(void *)buf, len};
        r = pl_kwrite(io, iov, 1, false);
        if (r < 0)
            return -1;
        accepted = (size_t)r;
        st->data_left -= (uint32_t)r;
    }
    PSI_STAT_ADD(bytes_sent, accepted);
    return (ssize_t)accepted;
}

/* A token is all-or-nothing: on a non-blocking fd with no room at all, the
 * write fails with EAGAIN before the payload is stored. (With a little room
 * the token's ~80 bytes are finished with a short wait; see pl_kwrite_all.) */
static bool pl_would_block(pl_io *io)
{
    if (!(io->flags & MSG_DONTWAIT)) {
        int fl = REAL(fcntl)(io->fd, F_GETFL);
        if (fl < 0 || !(fl & O_NONBLOCK))
            return false;
    }
    struct pollfd p = {io->fd, POLLOUT, 0};
    if (REAL(poll)(&p, 1, 0) == 0) {
        errno = EAGAIN;
        return true;
    }
    return false;
}

ssize_t pl_send(pl_state *st, pl_io *io, const void *buf, size_t n)
{
    if (pl_g.dryrun)
        return pl_dry_send(st, io, buf, n);
    pthread_mutex_lock(&st->out_lock);
    int mode = atomic_load(&st->out_mode);
    /* A peer that never writes to us is plain, or offered HELLO at connect:
     * peeking on the first writes is enough, and spares a plain download
     * server a syscall per write for the life of the connection. */
    if (mode == PL_OUT_UNDECIDED && st->early_peeks < 64) {
        st->early_peeks++;
        pl_detect_early(st, io->fd);
        mode = atomic_load(&st->out_mode);
    }
    ssize_t r;
    if (mode == PL_OUT_PLAIN || mode == PL_OUT_UNDECIDED || n == 0) {
        struct iovec v = {(void *)buf, n};
        r = pl_kwrite(io, &v, 1, true);
    } else {
        uint8_t pre[PL_PREFIX_MAX];
        size_t plen = pl_greeting(st, mode, pre);
        r = 0;
        pol_decision d;
        if (st->data_left == 0 && n >= pl_g.min_candidate) {
            pl_decide(st, n, &d);
            if (d.action == POL_ACT_LOG)
                pl_log_send(st, io->fd, n, &d);
            /* A non-blocking fd with no room fails with EAGAIN before
             * anything is stored, as the kernel would. */
            if (d.action == POL_ACT_PROXY)
                r = pl_would_block(io) ? -1 : pl_send_token(st, io, pre, plen, buf, n, &d);
        }
        if (r == 0)
            r = pl_send_data(st, io, pre, plen, buf, n);
    }
    pthread_mutex_unlock(&st->out_lock);
    return r;
}

ssize_t pl_sendv(pl_state *st, pl_io *io, const struct iovec *iov, int iovcnt)
{
    if (pl_g.dryrun)
        return pl_dry_sendv(st, io, iov, iovcnt);
    /* A framed writev is one write per iovec: a short count after the first
     * segment is a legal partial write of a stream. Large segments each
     * become a token; small neighbours are gathered so a writev of many
     * small pieces stays one record. */
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    if (total < pl_g.min_candidate && iovcnt > 1 && total <= 8192) {
        uint8_t tmp[8192];
        size_t off = 0;
        for (int i = 0; i < iovcnt; i++) {
            memcpy(tmp + off, iov[i].iov_base, iov[i].iov_len);
            off += iov[i].iov_len;
        }
        return pl_send(st, io, tmp, off);
    }
    ssize_t done = 0;
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len == 0)
            continue;
        ssize_t r = pl_send(st, io, iov[i].iov_base, iov[i].iov_len);
        if (r < 0)
            return done > 0 ? done : -1;
        done += r;
        if ((size_t)r < iov[i].iov_len)
            break;
    }
    return done;
}
