/* pl_recv: the inbound half of the framing engine (docs/protocol.md §1, §3;
 * DESIGN §4).
 *
 * Reads go straight into the application's buffer and are decoded in place:
 * record headers are squeezed out, DATA payload stays where the kernel put
 * it. A small stage after the buffer (readv) catches the next header in the
 * same syscall. Bytes the application has not taken yet live in two queues:
 * `hold` (decoded: resolved tokens as mappings, and plain bytes) and `raw`
 * (read from the kernel after a token, not yet decoded). Both count in
 * st->ready, which the poll overlay reads without a lock. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pl_engine.h"
#include "pl_epoll.h"
#include "pl_io.h"
#include "pl_real.h"
#include "pl_store.h"
#include "psi_log.h"
#include "psi_stats.h"

#define PL_CONTINUE (-2) /* internal: nothing for the app yet, go round again */

static void pl_ready_update(pl_state *st)
{
    size_t n = st->raw_len - st->raw_off + pl_hold_bytes(st);
    size_t old = atomic_exchange_explicit(&st->ready, n, memory_order_seq_cst);
    if (n > old)
        pl_epoll_on_ready(st); /* an edge for EPOLLET; wakes a sleeping epoll_wait */
}

static int pl_hold_push(pl_state *st, const uint8_t *data, size_t len, psi_obj *obj)
{
    pl_seg *s = calloc(1, sizeof(*s));
    if (!s)
        return -1;
    s->data = data;
    s->len = len;
    if (obj)
        s->obj = *obj;
    if (st->hold_tail)
        st->hold_tail->next = s;
    else
        st->hold = s;
    st->hold_tail = s;
    return 0;
}

/* Copies plain bytes into a heap segment of their own. */
static int pl_hold_copy(pl_state *st, const uint8_t *p, size_t len)
{
    uint8_t *copy = malloc(len);
    if (!copy)
        return -1;
    memcpy(copy, p, len);
    psi_obj obj = {.data = copy, .len = len, .heap = copy};
    if (pl_hold_push(st, copy, len, &obj) != 0) {
        free(copy);
        return -1;
    }
    return 0;
}

static ssize_t pl_fail(pl_state *st, int code);

/* Copies take bytes from the front of s: plain held bytes, or a resolved
 * object's, checked as they are copied (psi_obj_copy). */
static int pl_take_checked(const pl_seg *s, uint8_t *dst, size_t take)
{
    if (!s->obj.verify) {
        memcpy(dst, s->data + s->off, take);
        return 0;
    }
    psi_err err = {0};
    if (psi_obj_copy(&s->obj, (size_t)(s->data - s->obj.data) + s->off, dst, take, &err) != 0) {
        psi_log(PSI_LOG_ERROR, "%s", err.msg);
        return -1;
    }
    return 0;
}

/* Copies up to n held bytes into buf (consuming them or not). Bytes of an
 * object its connector checks piece by piece are checked right before they
 * are copied; a piece that fails gives EIO, sticky, and nothing of it is
 * delivered. Returns the bytes copied, or -1 if none could be. */
static ssize_t pl_hold_take(pl_state *st, uint8_t *buf, size_t n, bool consume)
{
    size_t done = 0;
    pl_seg *s = st->hold;
    while (s && done < n) {
        size_t take = s->len - s->off;
        if (take > n - done)
            take = n - done;
        if (pl_take_checked(s, buf + done, take) != 0) {
            pl_fail(st, EIO);
            break;
        }
        done += take;
        if (!consume) {
            s = s->next;
            continue;
        }
        s->off += take;
        if (s->off == s->len) {
            st->hold = s->next;
            if (!st->hold)
                st->hold_tail = NULL;
            psi_obj_release(&s->obj);
            free(s);
            s = st->hold;
        }
    }
    if (consume)
        pl_ready_update(st);
    if (done == 0 && n > 0 && st->in_err) {
        errno = st->in_err;
        return -1;
    }
    return (ssize_t)done;
}

/* Keeps kernel bytes we read but could not decode yet (after a token). */
static int pl_stash(pl_state *st, const uint8_t *p, size_t len)
{
    if (len == 0)
        return 0;
    if (st->raw_off == st->raw_len)
        st->raw_off = st->raw_len = 0;
    if (st->raw_len + len > st->raw_cap) {
        size_t cap = st->raw_cap ? st->raw_cap : 256;
        while (cap < st->raw_len + len)
            cap *= 2;
        uint8_t *nr = realloc(st->raw, cap);
        if (!nr)
            return -1;
        st->raw = nr;
        st->raw_cap = cap;
    }
    memcpy(st->raw + st->raw_len, p, len);
    st->raw_len += len;
    pl_ready_update(st);
    return 0;
}

static ssize_t pl_fail(pl_state *st, int code)
{
    st->in_err = code;
    PSI_STAT_ADD(errors, 1);
    errno = code;
    return -1;
}

/* A complete token body is in st->rx: resolve it into the hold queue. */
static int pl_resolve(pl_state *st, int fd)
{
    psi_token tok;
    psi_err err = {0};
    int rc = psi_token_decode(st->rx.tok, st->rx.tok_len, &tok, &err);
    pl_rx_token_taken(&st->rx);
    if (rc != 0) {
        psi_log(PSI_LOG_ERROR, "fd %d: bad token: %s", fd, err.msg);
        return EIO;
    }
    psi_obj obj;
    uint64_t t0 = pl_now_ns();
    if (pl_store_resolve_lazy(&tok, &obj, &err) != 0) {
        psi_log(PSI_LOG_ERROR, "fd %d: cannot resolve token %s (%llu bytes): %s", fd, tok.key,
                (unsigned long long)tok.size, err.msg);
        return err.code ? err.code : EIO;
    }
    PSI_STAT_ADD(get_ns, pl_now_ns() - t0);
    PSI_STAT_ADD(tokens_resolved, 1);
    PSI_STAT_ADD(bytes_resolved, obj.len);
    if (pl_hold_push(st, obj.data, obj.len, &obj) != 0) {
        psi_obj_release(&obj);
        return ENOMEM;
    }
    pl_ready_update(st);
    psi_log(PSI_LOG_DEBUG, "fd %d: resolved token %s (%zu bytes)", fd, tok.key, obj.len);
    return 0;
}

/* Decodes in[0..len) into out[0..cap). Input left after a token or a full
 * buffer is stashed (or, when `in` is the raw queue itself, left there).
 * Returns bytes produced, or -1 with errno once the stream is broken. */
static ssize_t pl_decode(pl_state *st, int fd, const uint8_t *in, size_t len, uint8_t *out,
                         size_t cap, bool from_raw)
{
    size_t used = 0, prod = 0;
    int broken = 0;
    while (used < len) {
        size_t c, p;
        int ev = pl_rx_decode(&st->rx, in + used, len - used, out + prod, cap - prod, &c, &p);
        used += c;
        prod += p;
        if (ev == PL_RX_ERROR) {
            psi_log(PSI_LOG_ERROR, "fd %d: malformed stream: %s", fd, st->rx.err);
            broken = EPROTO;
            break;
        }
        if (ev == PL_RX_TOKEN_READY) {
            broken = pl_resolve(st, fd);
            break;
        }
        if (c == 0 && p == 0)
            break; /* out is full */
    }
    if (from_raw) {
        st->raw_off += used;
        pl_ready_update(st);
    } else if (!broken && pl_stash(st, in + used, len - used) != 0) {
        broken = ENOMEM;
    }
    if (broken) {
        st->in_err = broken;
        PSI_STAT_ADD(errors, 1);
        if (prod == 0) {
            errno = broken;
            return -1;
        }
    }
    return (ssize_t)prod;
}

static void pl_became_plain(pl_state *st)
{
    st->in_mode = PL_IN_PLAIN;
    int und = PL_OUT_UNDECIDED;
    atomic_compare_exchange_strong(&st->out_mode, &und, PL_OUT_PLAIN);
}

static void pl_became_framed(pl_state *st, int fd)
{
    memcpy(st->nonce, st->detect + 8, PL_NONCE_LEN);
    st->in_mode = PL_IN_FRAMED;
    st->detect_len = 0;
    int und = PL_OUT_UNDECIDED;
    atomic_compare_exchange_strong(&st->out_mode, &und, PL_OUT_ANSWER);
    psi_log(PSI_LOG_DEBUG, "fd %d: peer sent HELLO; inbound is framed", fd);
}

/* Bytes gathered as a possible HELLO were plain after all: the stream is
 * plain, and they go to the application as they are. */
static ssize_t pl_detect_plain(pl_state *st)
{
    pl_became_plain(st);
    if (pl_hold_copy(st, st->detect, st->detect_len) != 0)
        return pl_fail(st, ENOMEM);
    st->detect_len = 0;
    pl_ready_update(st);
    return PL_CONTINUE;
}

/* First bytes of an inbound direction we must check for HELLO. */
static ssize_t pl_recv_detect(pl_state *st, pl_io *io, uint8_t *buf, size_t n)
{
    if (st->detect_len == 0) {
        /* Read into the application's buffer: a plain stream (almost every
         * stream) costs nothing more than the real call. */
        struct iovec v = {buf, n};
        ssize_t r = pl_kread(io, &v, 1, MSG_WAITALL);
        if (r <= 0) {
            if (r == 0)
                pl_became_plain(st);
            return r;
        }
        size_t k = (size_t)r < PL_HELLO_LEN ? (size_t)r : PL_HELLO_LEN;
        int d = pl_detect(buf, k);
        if (d == PL_DETECT_PLAIN) {
            pl_became_plain(st);
            return r;
        }
        memcpy(st->detect, buf, k);
        st->detect_len = k;
        if (pl_stash(st, buf + k, (size_t)r - k) != 0)
            return pl_fail(st, ENOMEM);
    } else {
        struct iovec v = {st->detect + st->detect_len, PL_HELLO_LEN - st->detect_len};
        ssize_t r = pl_kread(io, &v, 1, MSG_WAITALL);
        if (r < 0)
            return r;
        if (r == 0) /* the stream ended inside what looked like HELLO */
            return pl_detect_plain(st);
        st->detect_len += (size_t)r;
    }
    int d = pl_detect(st->detect, st->detect_len);
    if (d == PL_DETECT_BADVER) {
        psi_log(PSI_LOG_ERROR, "fd %d: peer speaks psinterpose protocol version %u; this build speaks %u",
                io->fd, st->detect[4], PSI_PROTO_VERSION);
        return pl_fail(st, EPROTO);
    }
    if (d == PL_DETECT_HELLO) {
        pl_became_framed(st, io->fd);
    } else if (d == PL_DETECT_PLAIN) {
        return pl_detect_plain(st); /* it started like HELLO but is not */
    }
    return PL_CONTINUE;
}

/* After we sent HELLO: plain bytes until the ANSWER carrying our nonce. */
static ssize_t pl_recv_seek(pl_state *st, pl_io *io, uint8_t *buf, size_t n)
{
    uint8_t small[256];
    uint8_t *w = buf;
    size_t cap = n;
    if (n < sizeof(small)) { /* room for the held-back bytes plus a read */
        w = small;
        cap = sizeof(small);
    }
    memcpy(w, st->seek_held, st->seek_len);
    /* Read no more than the application asked for: the small buffer only
     * makes room for the held-back bytes, it is not a read-ahead. */
    size_t room = cap - st->seek_len;
    struct iovec v = {w + st->seek_len, n < room ? n : room};
    ssize_t r = pl_kread(io, &v, 1, MSG_WAITALL);
    if (r < 0)
        return r;
    size_t total = st->seek_len + (size_t)r;
    size_t partial;
    size_t pos = pl_find(w, total, st->answer, PL_HELLO_LEN, &partial);
    size_t deliver;
    if (pos < total) {
        if (pl_stash(st, w + pos + PL_HELLO_LEN, total - pos - PL_HELLO_LEN) != 0)
            return pl_fail(st, ENOMEM);
        st->in_mode = PL_IN_FRAMED;
        st->seek_len = 0;
        deliver = pos;
        psi_log(PSI_LOG_DEBUG, "fd %d: ANSWER seen; inbound is framed", io->fd);
    } else if (r == 0) {
        deliver = total; /* EOF: held-back bytes were plain */
        st->seek_len = 0;
    } else {
        deliver = total - partial;
        memcpy(st->seek_held, w + deliver, partial);
        st->seek_len = partial;
    }
    if (w != buf) {
        size_t direct = deliver < n ? deliver : n;
        memcpy(buf, w, direct);
        if (deliver > direct && pl_hold_copy(st, w + direct, deliver - direct) != 0)
            return pl_fail(st, ENOMEM);
        pl_ready_update(st);
        deliver = direct;
    }
    if (deliver == 0 && r > 0)
        return PL_CONTINUE;
    return (ssize_t)deliver;
}

/* The kernel gave bytes but none are the application's yet (a record
 * header, or part of one, or a token body): not EOF, go round again. */
static ssize_t pl_progress(ssize_t prod)
{
    return prod == 0 ? PL_CONTINUE : prod;
}

/* The kernel reported EOF on a framed direction: clean between records or
 * inside a header, a protocol error inside a body (docs/protocol.md §3). */
static ssize_t pl_eof(pl_state *st, int fd)
{
    if (pl_rx_eof_clean(&st->rx))
        return 0;
    psi_log(PSI_LOG_ERROR, "fd %d: stream ended inside a %s record", fd,
            st->rx.phase == PL_RX_DATA ? "DATA" : "TOKEN");
    return pl_fail(st, EPROTO);
}

/* Small reads (ping-pong messages) go through a stack buffer with one
 * plain read of the message and the next header; cheaper than a vector
 * read into the application's buffer plus a stage. */
#define PL_SMALL_READ 1024

static ssize_t pl_recv_small(pl_state *st, pl_io *io, uint8_t *buf, size_t n)
{
    uint8_t tmp[PL_SMALL_READ + PL_REC_HDR];
    struct iovec v = {tmp, n + PL_REC_HDR};
    ssize_t r = pl_kread(io, &v, 1, MSG_WAITALL);
    if (r < 0)
        return r;
    if (r == 0)
        return pl_eof(st, io->fd);
    return pl_progress(pl_decode(st, io->fd, tmp, (size_t)r, buf, n, false));
}

/* A framed direction: read into buf plus a small stage, decode in place. */
static ssize_t pl_recv_framed(pl_state *st, pl_io *io, uint8_t *buf, size_t n)
{
    if (n <= PL_SMALL_READ)
        return pl_recv_small(st, io, buf, n);
    uint8_t stage[PL_REC_HDR];
    struct iovec v[2] = {{buf, n}, {stage, sizeof(stage)}};
    ssize_t r = pl_kread(io, v, 2, MSG_WAITALL);
    if (r < 0)
        return r;
    if (r == 0)
        return pl_eof(st, io->fd);
    size_t in_buf = (size_t)r < n ? (size_t)r : n;
    size_t extra = (size_t)r - in_buf;
    size_t raw_before = st->raw_len - st->raw_off;
    ssize_t prod = pl_decode(st, io->fd, buf, in_buf, buf, n, false);
    if (extra == 0)
        return pl_progress(prod);
    if (prod < 0 || st->in_err || st->raw_len - st->raw_off > raw_before || st->hold) {
        /* Decoding stopped before the end of buf: the stage comes after. */
        if (pl_stash(st, stage, extra) != 0)
            return pl_fail(st, ENOMEM);
        return pl_progress(prod);
    }
    ssize_t more = pl_decode(st, io->fd, stage, extra, buf + prod, n - (size_t)prod, false);
    if (more < 0)
        return prod > 0 ? prod : -1;
    return pl_progress(prod + more);
}

static ssize_t pl_recv_take(pl_state *st, pl_io *io, uint8_t *buf, size_t n)
{
    for (;;) {
        if (st->hold) {
            ssize_t got = pl_hold_take(st, buf, n, true);
            if (got < 0)
                return -1;
            /* Held bytes used up: digest what follows them (headers, a
             * token), so `ready` never counts bytes that yield nothing and
             * the poll overlay never reports a read that would block. */
            if (!st->hold && st->raw_off < st->raw_len)
                (void)pl_decode(st, io->fd, st->raw + st->raw_off, st->raw_len - st->raw_off, buf,
                                0, true);
            return got;
        }
        if (st->in_err) {
            errno = st->in_err;
            return -1;
        }
        ssize_t r;
        if (st->raw_off < st->raw_len) {
            r = pl_decode(st, io->fd, st->raw + st->raw_off, st->raw_len - st->raw_off, buf, n,
                          true);
            if (r != 0)
                return r;
            continue;
        }
        switch (st->in_mode) {
        case PL_IN_DETECT:
            r = pl_recv_detect(st, io, buf, n);
            break;
        case PL_IN_SEEK:
            r = pl_recv_seek(st, io, buf, n);
            break;
        case PL_IN_FRAMED:
            r = pl_recv_framed(st, io, buf, n);
            /* Only headers or a token arrived: read again (a non-blocking
             * fd gets EAGAIN from the kernel, as it should). */
            if (r == 0 && (st->hold || st->raw_off < st->raw_len || !pl_rx_eof_clean(&st->rx) ||
                           st->in_err))
                r = PL_CONTINUE;
            break;
        default: {
            struct iovec v = {buf, n};
            r = pl_kread(io, &v, 1, 0);
        }
        }
        if (r != PL_CONTINUE)
            return r;
    }
}

/* Takes up to n more bytes from behind the hold queue (raw bytes, then the
 * kernel, with io's flags) and appends them to it. Returns what was added,
 * 0 at EOF, or -1 with errno. */
static ssize_t pl_hold_fill(pl_state *st, pl_io *io, size_t n)
{
    size_t cap = n < 65536 ? n : 65536;
    uint8_t *tmp = malloc(cap);
    if (!tmp)
        return pl_fail(st, ENOMEM);
    pl_seg *old = st->hold, *old_tail = st->hold_tail;
    st->hold = st->hold_tail = NULL; /* so pl_recv_take reads past them */
    pl_io take = *io;
    take.flags &= ~MSG_PEEK;
    ssize_t r = pl_recv_take(st, &take, tmp, cap);
    /* Name and control the kernel reported went into the app's msghdr:
     * say so, or the recvmsg hook clears them (and SCM_RIGHTS fds leak). */
    io->ctl_seen = take.ctl_seen;
    io->msg = take.msg;
    /* Order: what was held, what we took, what was queued meanwhile. */
    pl_seg *rest = st->hold, *rest_tail = st->hold_tail;
    st->hold = old;
    st->hold_tail = old_tail;
    psi_obj obj = {.data = tmp, .len = r > 0 ? (size_t)r : 0, .heap = tmp};
    if (r <= 0 || pl_hold_push(st, tmp, (size_t)r, &obj) != 0) {
        free(tmp);
        if (r > 0)
            r = pl_fail(st, ENOMEM);
    }
    if (rest) {
        if (st->hold_tail)
            st->hold_tail->next = rest;
        else
            st->hold = rest;
        st->hold_tail = rest_tail;
    }
    pl_ready_update(st);
    return r;
}

/* MSG_PEEK on a stream we decode: take the bytes into the hold queue, then
 * copy without consuming. Like the kernel's, a peek blocks only when
 * nothing is there, takes in whatever more a socket has without blocking
 * (so a peek for more than is held makes progress), and with MSG_WAITALL
 * waits for all n bytes or EOF. */
static ssize_t pl_recv_peek(pl_state *st, pl_io *io, uint8_t *buf, size_t n)
{
    size_t have = pl_hold_bytes(st);
    while (have < n) {
        pl_io more = *io;
        bool wait = have == 0 || (io->flags & MSG_WAITALL);
        if (!wait) {
            if (!io->sock)
                break; /* read(2) has no per-call MSG_DONTWAIT */
            more.flags |= MSG_DONTWAIT;
        }
        ssize_t r = pl_hold_fill(st, &more, n - have);
        io->ctl_seen |= more.ctl_seen;
        io->msg = more.msg;
        if (r <= 0) {
            if (have > 0)
                break; /* EOF, EAGAIN or an error after some bytes: later */
            return r;
        }
        have = pl_hold_bytes(st);
    }
    return pl_hold_take(st, buf, n, false);
}

/* MSG_TRUNC on a stream (Linux): discard up to n application bytes and
 * return how many; the kernel must never see the flag, or it would discard
 * framing bytes. Blocks like a read of n; with MSG_WAITALL, for all n. */
static ssize_t pl_recv_discard(pl_state *st, pl_io *io, size_t n)
{
    uint8_t scratch[4096];
    size_t done = 0;
    ssize_t r;
    do {
        size_t want = n - done < sizeof(scratch) ? n - done : sizeof(scratch);
        r = pl_recv_take(st, io, scratch, want);
        if (r > 0)
            done += (size_t)r;
    } while (r > 0 && done < n && ((io->flags & MSG_WAITALL) || pl_has_ready(st)));
    return done > 0 ? (ssize_t)done : r;
}

ssize_t pl_recv(pl_state *st, pl_io *io, void *buf, size_t n)
{
    pthread_mutex_lock(&st->in_lock);
    ssize_t r;
    if (n == 0 || (st->in_mode == PL_IN_PLAIN && !st->hold && st->raw_off == st->raw_len)) {
        struct iovec v = {buf, n};
        r = pl_kread(io, &v, 1, 0);
    } else if ((io->flags & MSG_TRUNC) && !(io->flags & MSG_PEEK)) {
        io->flags &= ~MSG_TRUNC;
        r = pl_recv_discard(st, io, n);
    } else if (io->flags & MSG_PEEK) {
        io->flags &= ~MSG_TRUNC; /* PEEK|TRUNC: peeked into buf (buf needed) */
        r = pl_recv_peek(st, io, buf, n);
    } else {
        size_t done = 0;
        do {
            r = pl_recv_take(st, io, (uint8_t *)buf + done, n - done);
            if (r > 0)
                done += (size_t)r;
        } while (r > 0 && done < n && (io->flags & MSG_WAITALL));
        if (done > 0)
            r = (ssize_t)done;
    }
    pthread_mutex_unlock(&st->in_lock);
    return r;
}

ssize_t pl_recvv(pl_state *st, pl_io *io, const struct iovec *iov, int iovcnt)
{
    ssize_t done = 0;
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len == 0)
            continue;
        ssize_t r = pl_recv(st, io, iov[i].iov_base, iov[i].iov_len);
        if (r < 0)
            return done > 0 ? done : -1;
        done += r;
        if ((size_t)r < iov[i].iov_len)
            break;
        /* Only continue into the next segment if it will not block: more
         * is already waiting in user space. */
        if (!(io->flags & MSG_WAITALL) && !pl_has_ready(st))
            break;
    }
    return done;
}

void pl_engine_finalize(pl_state *st)
{
    while (st->hold) {
        pl_seg *s = st->hold;
        st->hold = s->next;
        psi_obj_release(&s->obj);
        free(s);
    }
    st->hold_tail = NULL;
    free(st->raw);
    st->raw = NULL;
    st->raw_len = st->raw_off = st->raw_cap = 0;
}
