/* pl_bulk: sendfile, splice, vmsplice, copy_file_range, the mmsg calls,
 * FIONREAD and stdio on framed fds (DESIGN §3; docs/compatibility.md).
 *
 * The kernel moves these bytes without passing through write/read, so on a
 * direction that is framed (or may still become framed) the bytes are read
 * into user space and handed to the engine. Correctness over speed: only
 * sendfile of a large region keeps a zero-copy flavour, by mapping the file
 * and sending the mapping as one buffer, which the engine stores as one
 * token. */
#include "pl_bulk.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pl_engine.h"
#include "pl_real.h"
#include "psi_log.h"

#define PL_BOUNCE (64 * 1024)      /* small sendfile regions, chunk by chunk */
#define PL_COPY_MAX (1024 * 1024)  /* most one splice emulation moves per call */

bool pl_bulk_out_plain(const pl_state *st)
{
    return st->kind == PL_KIND_LISTENER || atomic_load(&st->out_mode) == PL_OUT_PLAIN;
}

bool pl_bulk_in_plain(pl_state *st)
{
    /* in_mode is read without in_lock: it only ever moves towards PLAIN or
     * FRAMED, and a stale DETECT merely sends a plain call through the
     * engine, which passes it on. */
    return st->kind == PL_KIND_LISTENER || (st->in_mode == PL_IN_PLAIN && !pl_has_ready(st));
}

static bool pl_nonblocking(int fd)
{
    int fl = REAL(fcntl)(fd, F_GETFL);
    return fl >= 0 && (fl & O_NONBLOCK);
}

static pl_io pl_io_for(pl_state *st, int fd, int flags)
{
    pl_io io = {.fd = fd, .sock = st->kind == PL_KIND_STREAM, .flags = flags};
    if (!io.sock)
        io.flags = 0; /* MSG_* mean nothing to writev/readv */
    return io;
}

/* Sends as much of p as the fd takes: everything on a blocking fd, up to
 * the first EAGAIN on a non-blocking one. Returns bytes sent, or -1 with
 * errno when nothing went. */
static ssize_t pl_send_some(pl_state *st, pl_io *io, const uint8_t *p, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ssize_t r = pl_send(st, io, p + done, n - done);
        if (r > 0) {
            done += (size_t)r;
            continue;
        }
        /* Interrupted before anything went: retried, where the kernel
         * restarts only under SA_RESTART (a spurious EINTR costs more than
         * a retry for the loops applications wrap around sendfile). */
        if (r < 0 && errno == EINTR && done == 0)
            continue;
        if (done > 0)
            break;
        if (r == 0)
            errno = EIO;
        return -1;
    }
    return (ssize_t)done;
}

/* Bytes already taken from their source: they must all go, so EAGAIN waits
 * for room and EINTR retries. */
static ssize_t pl_send_all(pl_state *st, pl_io *io, const uint8_t *p, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ssize_t r = pl_send(st, io, p + done, n - done);
        if (r > 0) {
            done += (size_t)r;
        } else if (r < 0 && errno == EINTR) {
            continue;
        } else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd pfd = {io->fd, POLLOUT, 0};
            if (REAL(poll)(&pfd, 1, -1) < 0 && errno != EINTR)
                break;
        } else {
            break;
        }
    }
    if (done < n) {
        psi_log(PSI_LOG_ERROR, "fd %d: %zu of %zu spliced bytes could not be sent: %s", io->fd,
                n - done, n, strerror(errno));
        return done > 0 ? (ssize_t)done : -1;
    }
    return (ssize_t)done;
}

/* The same for an fd we do not frame (or a file at an offset). */
static ssize_t pl_write_all(int fd, off_t *off, const uint8_t *p, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ssize_t r = off ? pwrite(fd, p + done, n - done, *off + (off_t)done)
                        : REAL(write)(fd, p + done, n - done);
        if (r > 0) {
            done += (size_t)r;
        } else if (r < 0 && errno == EINTR) {
            continue;
        } else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd pfd = {fd, POLLOUT, 0};
            if (REAL(poll)(&pfd, 1, -1) < 0 && errno != EINTR)
                break;
        } else {
            break;
        }
    }
    if (off)
        *off += (off_t)done;
    return done > 0 || n == 0 ? (ssize_t)done : -1;
}

/* ---- sendfile ---- */

/* A large region: map it and send it as one buffer. Returns -2 when the
 * file cannot be mapped (the caller falls back to the bounce buffer). */
static ssize_t pl_sendfile_mapped(pl_state *st, pl_io *io, int in_fd, off_t pos, size_t count)
{
    long pg = sysconf(_SC_PAGESIZE);
    off_t base = pos & ~((off_t)pg - 1);
    size_t skew = (size_t)(pos - base);
    void *m = mmap(NULL, count + skew, PROT_READ, MAP_SHARED, in_fd, base);
    if (m == MAP_FAILED)
        return -2;
    (void)madvise(m, count + skew, MADV_SEQUENTIAL);
    ssize_t r = pl_send_some(st, io, (const uint8_t *)m + skew, count);
    int saved = errno;
    munmap(m, count + skew);
    errno = saved;
    return r;
}

static ssize_t pl_sendfile_bounce(pl_state *st, pl_io *io, int in_fd, off_t pos, size_t count,
                                  bool seekable)
{
    uint8_t *buf = malloc(PL_BOUNCE);
    if (!buf) {
        errno = ENOMEM;
        return -1;
    }
    size_t done = 0;
    ssize_t ret = 0;
    while (done < count) {
        size_t want = count - done < PL_BOUNCE ? count - done : PL_BOUNCE;
        ssize_t got = seekable ? pread(in_fd, buf, want, pos + (off_t)done)
                               : REAL(read)(in_fd, buf, want);
        if (got < 0 && errno == EINTR && done == 0)
            continue;
        if (got <= 0) {
            ret = got < 0 && done == 0 ? -1 : 0;
            break;
        }
        /* A seekable source is re-read from the offset next time, so a
         * partial send is simply a shorter count; a pipe's bytes are gone. */
        ssize_t sent = seekable ? pl_send_some(st, io, buf, (size_t)got)
                                : pl_send_all(st, io, buf, (size_t)got);
        if (sent < 0) {
            ret = done == 0 ? -1 : 0;
            break;
        }
        done += (size_t)sent;
        if (sent < got)
            break;
    }
    int saved = errno;
    free(buf);
    errno = saved;
    return ret < 0 ? -1 : (ssize_t)done;
}

ssize_t pl_bulk_sendfile(pl_state *st, int out_fd, int in_fd, off_t *offset, size_t count)
{
    struct stat sb;
    if (fstat(in_fd, &sb) != 0)
        return -1;
    int acc = REAL(fcntl)(in_fd, F_GETFL);
    if (acc >= 0 && (acc & O_ACCMODE) == O_WRONLY) {
        errno = EBADF;
        return -1;
    }
    bool seekable = S_ISREG(sb.st_mode) || S_ISBLK(sb.st_mode);
    off_t pos = 0;
    if (offset) {
        if (!seekable) {
            errno = ESPIPE;
            return -1;
        }
        if (*offset < 0) {
            errno = EINVAL;
            return -1;
        }
        pos = *offset;
    } else if (seekable) {
        pos = lseek(in_fd, 0, SEEK_CUR);
        if (pos < 0)
            return -1;
    }
    if (S_ISREG(sb.st_mode)) {
        /* sendfile stops at end of file; so do we (and a mapping must not
         * reach past it). */
        if (pos >= sb.st_size)
            count = 0;
        else if (count > (uint64_t)(sb.st_size - pos))
            count = (size_t)(sb.st_size - pos);
    }
    if (count > 0x7ffff000)
        count = 0x7ffff000; /* the kernel's own cap per call */
    pl_io io = pl_io_for(st, out_fd, 0);
    ssize_t r = -2;
    if (count == 0)
        r = 0;
    else if (S_ISREG(sb.st_mode) && count >= pl_g.min_candidate && count >= PL_BOUNCE)
        r = pl_sendfile_mapped(st, &io, in_fd, pos, count);
    if (r == -2)
        r = pl_sendfile_bounce(st, &io, in_fd, pos, count, seekable);
    if (r < 0)
        return -1;
    int saved = errno;
    if (offset)
        *offset = pos + r;
    else if (seekable)
        (void)lseek(in_fd, pos + r, SEEK_SET);
    errno = saved;
    return r;
}

/* ---- splice, copy_file_range ---- */

pl_state *pl_bulk_engaged(int fd, bool out)
{
    pl_state *st = pl_state_get(fd);
    if (st && (out ? pl_bulk_out_plain(st) : pl_bulk_in_plain(st))) {
        pl_state_put(st);
        st = NULL;
    }
    return st;
}

static ssize_t pl_copy_read(pl_state *in, int fd, off_t *off, uint8_t *buf, size_t n,
                            bool nonblock)
{
    if (in) {
        pl_io io = pl_io_for(in, fd, nonblock ? MSG_DONTWAIT : 0);
        if (nonblock && !io.sock && !pl_has_ready(in) && !pl_nonblocking(fd)) {
            struct pollfd p = {fd, POLLIN, 0};
            if (REAL(poll)(&p, 1, 0) == 0) {
                errno = EAGAIN;
                return -1;
            }
        }
        return pl_recv(in, &io, buf, n);
    }
    if (off) {
        ssize_t r = pread(fd, buf, n, *off);
        if (r > 0)
            *off += r;
        return r;
    }
    if (nonblock && !pl_nonblocking(fd)) {
        struct pollfd p = {fd, POLLIN, 0};
        if (REAL(poll)(&p, 1, 0) == 0) {
            errno = EAGAIN;
            return -1;
        }
    }
    return REAL(read)(fd, buf, n);
}

ssize_t pl_bulk_copy(int fd_in, off_t *off_in, int fd_out, off_t *off_out, size_t len,
                     bool nonblock)
{
    if (len == 0)
        return 0;
    pl_state *in = pl_bulk_engaged(fd_in, false);
    pl_state *out = pl_bulk_engaged(fd_out, true);
    size_t cap = len < PL_COPY_MAX ? len : PL_COPY_MAX;
    uint8_t *buf = malloc(cap);
    ssize_t r = -1;
    if (!buf) {
        errno = ENOMEM;
        goto done;
    }
    r = pl_copy_read(in, fd_in, off_in, buf, cap, nonblock);
    if (r <= 0)
        goto done;
    if (out) {
        pl_io io = pl_io_for(out, fd_out, 0);
        r = pl_send_all(out, &io, buf, (size_t)r);
    } else {
        r = pl_write_all(fd_out, off_out, buf, (size_t)r);
    }
done:;
    int saved = errno;
    free(buf);
    if (in)
        pl_state_put(in);
    if (out)
        pl_state_put(out);
    errno = saved;
    return r;
}

/* ---- sendmmsg, recvmmsg ---- */

static size_t pl_msg_len(const struct msghdr *m)
{
    size_t n = 0;
    for (size_t i = 0; i < m->msg_iovlen; i++)
        n += m->msg_iov[i].iov_len;
    return n;
}

int pl_bulk_sendmmsg(pl_state *st, int fd, struct mmsghdr *v, unsigned int n, int flags)
{
    if (n > 1024)
        n = 1024; /* UIO_MAXIOV: the kernel's cap */
    unsigned int i;
    for (i = 0; i < n; i++) {
        pl_io io = {.fd = fd, .sock = true, .flags = flags, .msg = &v[i].msg_hdr};
        ssize_t r = pl_sendv(st, &io, v[i].msg_hdr.msg_iov, (int)v[i].msg_hdr.msg_iovlen);
        if (r < 0) {
            if (i > 0)
                break; /* like the kernel: report what went, the error comes next call */
            return -1;
        }
        v[i].msg_len = (unsigned int)r;
        if ((size_t)r < pl_msg_len(&v[i].msg_hdr)) {
            i++;
            break; /* a short write of a stream: later messages would tear it */
        }
    }
    return (int)i;
}

static double pl_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int pl_bulk_recvmmsg(pl_state *st, int fd, struct mmsghdr *v, unsigned int n, int flags,
                     struct timespec *timeout)
{
    if (n > 1024)
        n = 1024;
    /* As in the kernel, the timeout is only checked after each message. */
    double end = timeout ? pl_mono() + (double)timeout->tv_sec + timeout->tv_nsec * 1e-9 : 0;
    int fl = flags & ~MSG_WAITFORONE;
    unsigned int i;
    for (i = 0; i < n; i++) {
        struct msghdr *m = &v[i].msg_hdr;
        m->msg_flags = 0;
        pl_io io = {.fd = fd, .sock = true, .flags = fl, .msg = m};
        ssize_t r = pl_recvv(st, &io, m->msg_iov, (int)m->msg_iovlen);
        if (r < 0) {
            if (i > 0)
                break;
            return -1;
        }
        if (!io.ctl_seen)
            m->msg_controllen = 0;
        v[i].msg_len = (unsigned int)r;
        if (r == 0) {
            i++;
            break; /* end of stream: every later message would be empty too */
        }
        if (flags & MSG_WAITFORONE)
            fl |= MSG_DONTWAIT;
        if (timeout && pl_mono() >= end) {
            i++;
            break;
        }
    }
    if (timeout) {
        double left = end - pl_mono();
        if (left < 0)
            left = 0;
        timeout->tv_sec = (time_t)left;
        timeout->tv_nsec = (long)((left - (double)timeout->tv_sec) * 1e9);
    }
    return (int)i;
}

/* ---- FIONREAD / SIOCINQ ----
 *
 * The answer is never more than a read would return at once, where we can
 * tell cheaply: decoded bytes held in user space if there are any; else, on
 * a framed stream, the payload the kernel's bytes will yield (the rest of an
 * open DATA record, or of the next one whose header is already there: peeked
 * on sockets); 0 while only headers or a token body are in flight. A pipe
 * still detecting (nothing of it read yet) reports the kernel's count: such
 * a pipe is almost always plain, and its bytes cannot be peeked. */

static size_t pl_inq_framed(pl_state *st, int fd, size_t k)
{
    if (st->raw_off < st->raw_len)
        return 0; /* undecoded bytes after a token: the next read decodes them */
    if (st->rx.phase == PL_RX_DATA)
        return k < st->rx.left ? k : st->rx.left;
    if (st->rx.phase != PL_RX_HDR || st->rx.hdr_len != 0 || st->kind != PL_KIND_STREAM ||
        k <= PL_REC_HDR)
        return 0;
    uint8_t h[PL_REC_HDR];
    if (REAL(recv)(fd, h, sizeof(h), MSG_PEEK | MSG_DONTWAIT) != PL_REC_HDR || h[0] != PL_REC_DATA)
        return 0;
    size_t len = (size_t)h[1] | (size_t)h[2] << 8 | (size_t)h[3] << 16 | (size_t)h[4] << 24;
    return k - PL_REC_HDR < len ? k - PL_REC_HDR : len;
}

static size_t pl_inq_seek(pl_state *st, int fd, size_t k)
{
    if (st->kind != PL_KIND_STREAM)
        return 0;
    uint8_t peek[4096];
    ssize_t r = REAL(recv)(fd, peek, k < sizeof(peek) ? k : sizeof(peek), MSG_PEEK | MSG_DONTWAIT);
    if (r <= 0)
        return 0;
    size_t partial;
    size_t pos = pl_find(peek, (size_t)r, st->answer, PL_HELLO_LEN, &partial);
    return pos < (size_t)r ? pos : (size_t)r - partial;
}

int pl_bulk_inq(pl_state *st, int fd, int *out)
{
    if (st->kind == PL_KIND_LISTENER)
        return 0;
    if (pthread_mutex_trylock(&st->in_lock) != 0) {
        /* A reader is inside the engine (blocked in the kernel): whatever
         * arrives is its. Plain streams still get the kernel's count. */
        if (st->in_mode == PL_IN_PLAIN)
            return 0;
        *out = 0;
        return 1;
    }
    int ret = 1;
    size_t held = pl_hold_bytes(st);
    size_t ans = 0;
    if (held > 0) {
        ans = held;
    } else if (st->in_mode == PL_IN_PLAIN && st->raw_off == st->raw_len) {
        ret = 0;
    } else {
        int k = 0;
        if (REAL(ioctl)(fd, FIONREAD, &k) != 0) {
            ret = -1;
        } else if (st->in_mode == PL_IN_FRAMED) {
            ans = pl_inq_framed(st, fd, (size_t)k);
        } else if (st->in_mode == PL_IN_SEEK) {
            ans = pl_inq_seek(st, fd, (size_t)k);
        } else if (st->in_mode == PL_IN_DETECT && st->detect_len == 0) {
            ans = (size_t)k;
            if (st->kind == PL_KIND_STREAM && k > 0) {
                uint8_t peek[PL_HELLO_LEN];
                ssize_t r = REAL(recv)(fd, peek, sizeof(peek), MSG_PEEK | MSG_DONTWAIT);
                if (r > 0 && pl_detect(peek, (size_t)r) != PL_DETECT_PLAIN)
                    ans = 0; /* a HELLO, or what may be one */
            }
        }
    }
    pthread_mutex_unlock(&st->in_lock);
    if (ret == 1)
        *out = ans > INT_MAX ? INT_MAX : (int)ans;
    return ret;
}

/* ---- stdio ----
 *
 * glibc's FILE functions reach the kernel through internal write/read calls
 * that no preload library can interpose, so a FILE made the ordinary way on
 * a framed fd would put raw bytes into the stream. Instead a FILE for any
 * tracked fd that is not plain for good is made with fopencookie: its reads
 * and writes go through the engine, and a large fwrite (glibc hands blocks
 * bigger than the buffer to the write function whole) is a token.
 *
 * fileno() must keep working (programs poll the fd of a FILE), so the
 * cookie FILE gets the fd as its _fileno. glibc uses _fileno of a cookie
 * FILE only to tell an open stream from a closed one (it sets it to -2
 * itself), so any value but -1 is safe. The cookie keeps a reference on the
 * state: the fclose hook forgets the fd before glibc flushes the buffer. */

typedef struct pl_cookie {
    int fd;
    pl_state *st;
    FILE *f;
    struct pl_cookie *next;
} pl_cookie;

static pthread_mutex_t pl_cookies_lock = PTHREAD_MUTEX_INITIALIZER;
static pl_cookie *pl_cookies; /* live cookie FILEs, flushed before exit stats */

static ssize_t pl_ck_read(void *c, char *buf, size_t n)
{
    pl_cookie *ck = c;
    pl_io io = pl_io_for(ck->st, ck->fd, 0);
    return pl_recv(ck->st, &io, buf, n);
}

static ssize_t pl_ck_write(void *c, const char *buf, size_t n)
{
    /* Like glibc's own file write: all of it, or stop at the first error
     * (the FILE then reports it). */
    pl_cookie *ck = c;
    pl_io io = pl_io_for(ck->st, ck->fd, 0);
    size_t done = 0;
    while (done < n) {
        ssize_t r = pl_send(ck->st, &io, buf + done, n - done);
        if (r <= 0)
            return done > 0 ? (ssize_t)done : -1;
        done += (size_t)r;
    }
    return (ssize_t)done;
}

static int pl_ck_seek(void *c, off64_t *pos, int whence)
{
    (void)c;
    (void)pos;
    (void)whence;
    errno = ESPIPE; /* sockets and pipes never seek */
    return -1;
}

static int pl_ck_close(void *c)
{
    pl_cookie *ck = c;
    pthread_mutex_lock(&pl_cookies_lock);
    for (pl_cookie **pp = &pl_cookies; *pp; pp = &(*pp)->next) {
        if (*pp == ck) {
            *pp = ck->next;
            break;
        }
    }
    pthread_mutex_unlock(&pl_cookies_lock);
    if (pl_fd_get(ck->fd) == ck->st)
        pl_fd_detach(ck->fd);
    pl_state_put(ck->st);
    int r = REAL(close)(ck->fd);
    free(ck);
    return r;
}

bool pl_bulk_wants_cookie(pl_state *st)
{
    return st->kind != PL_KIND_LISTENER && (!pl_bulk_out_plain(st) || !pl_bulk_in_plain(st));
}

static FILE *pl_cookie_file(int fd, pl_state *st, const char *mode)
{
    pl_cookie *ck = calloc(1, sizeof(*ck));
    if (!ck) {
        errno = ENOMEM;
        return NULL;
    }
    ck->fd = fd;
    ck->st = st;
    cookie_io_functions_t fns = {pl_ck_read, pl_ck_write, pl_ck_seek, pl_ck_close};
    FILE *f = fopencookie(ck, mode, fns);
    if (!f) {
        free(ck);
        return NULL;
    }
    f->_fileno = fd;
    ck->f = f;
    pthread_mutex_lock(&pl_cookies_lock);
    ck->next = pl_cookies;
    pl_cookies = ck;
    pthread_mutex_unlock(&pl_cookies_lock);
    return f;
}

FILE *pl_bulk_fdopen(int fd, const char *mode)
{
    /* fdopen's own checks (mode against the fd's access mode) first: a
     * FILE made by the real call and closed again costs nothing. */
    int fl = REAL(fcntl)(fd, F_GETFL);
    if (fl < 0)
        return NULL;
    int acc = fl & O_ACCMODE;
    bool rd = mode[0] == 'r' || strchr(mode, '+');
    bool wr = mode[0] != 'r' || strchr(mode, '+');
    if (!mode[0] || !strchr("rwa", mode[0]) || (rd && acc == O_WRONLY) || (wr && acc == O_RDONLY)) {
        errno = EINVAL;
        return NULL;
    }
    pl_state *st = pl_state_get(fd);
    if (st && !pl_bulk_wants_cookie(st)) {
        pl_state_put(st);
        st = NULL;
    }
    if (!st)
        return REAL(fdopen)(fd, mode);
    FILE *f = pl_cookie_file(fd, st, mode);
    if (!f)
        pl_state_put(st);
    else
        psi_log(PSI_LOG_DEBUG, "fd %d: fdopen on a framed fd; FILE goes through the engine", fd);
    return f;
}

/* A std FILE never touched yet (no buffer, nothing pending) can be swapped. */
static bool pl_file_untouched(FILE *f)
{
    return f->_IO_buf_base == NULL && f->_IO_write_ptr == f->_IO_write_base &&
           f->_IO_read_ptr == f->_IO_read_end;
}

/* stdout and stdin on framed pipes. The options, and why this one:
 * - glibc's FILE vtables are private and validated (_IO_vtable_check), so
 *   the existing stdout FILE cannot be taught to write through us;
 * - hooking the printf/puts/fwrite/putc family misses the inlined and
 *   internal paths (putc_unlocked is a macro on the buffer) and still leaves
 *   the FILE's own flushes raw;
 * - framing fd 1 only after the program's first direct write(1) cannot
 *   work: stdio's raw bytes are invisible to us, before and after;
 * - not framing a stdio stdout at all would be safe but is undecidable in
 *   advance (we cannot know whether the program will use stdio).
 * glibc's stdout/stdin are assignable variables that every stdio call reads
 * (printf, puts, putchar, scanf, getchar, fwrite(stdout, ...)), so at load
 * time, before any program code runs, the variable is pointed at a cookie
 * FILE on the same fd. What remains unsafe is a FILE* captured before our
 * constructor (the original object): it is never used by ordinary code, and
 * pl_bulk_exit_flush reports it if it was (docs/compatibility.md). */
static FILE *pl_std_orig[2];

static void pl_adopt_std(int fd, FILE **slot, const char *mode)
{
    pl_state *st = pl_fd_get(fd);
    if (!st || !pl_bulk_wants_cookie(st))
        return;
    if (!pl_file_untouched(*slot)) {
        /* Something wrote through stdio before we got control (another
         * library's constructor): its bytes may sit raw in the pipe, so
         * the fd is never framed. */
        psi_log(PSI_LOG_INFO, "fd %d: std%s was used before the interposer started; left unframed",
                fd, fd ? "out" : "in");
        pl_fd_detach(fd);
        return;
    }
    st = pl_state_get(fd);
    if (!st)
        return;
    FILE *f = pl_cookie_file(fd, st, mode);
    if (!f) {
        pl_state_put(st);
        pl_fd_detach(fd); /* no safe FILE: the fd stays plain */
        return;
    }
    pl_std_orig[fd] = *slot;
    *slot = f;
    psi_log(PSI_LOG_DEBUG, "fd %d: std%s goes through the engine", fd, fd ? "out" : "in");
}

void pl_bulk_adopt_stdio(void)
{
    if (pl_g.passthrough || pl_g.dryrun)
        return;
    int saved = errno;
    /* stdin only where pipes are framed in this run (PSI_PIPES): a writer
     * offers on a pipe only with PSI_PIPES set, so without it every stdin
     * pipe is plain and glibc's own stdin FILE stays untouched. */
    if (pl_g.cfg.pipes)
        pl_adopt_std(0, &stdin, "r");
    pl_adopt_std(1, &stdout, "w");
    errno = saved;
}

void pl_bulk_exit_flush(void)
{
    int saved = errno;
    /* glibc flushes FILEs after every destructor; ours must be out before
     * the stats line is written. A FILE another thread holds is left. */
    pthread_mutex_lock(&pl_cookies_lock);
    for (pl_cookie *ck = pl_cookies; ck; ck = ck->next) {
        if (ftrylockfile(ck->f) == 0) {
            fflush_unlocked(ck->f);
            funlockfile(ck->f);
        }
    }
    pthread_mutex_unlock(&pl_cookies_lock);
    if (pl_std_orig[1] && !pl_file_untouched(pl_std_orig[1]))
        psi_log(PSI_LOG_ERROR,
                "the original stdout FILE was written after stdout was framed (a FILE* "
                "captured before the interposer started); the stream is corrupt");
    errno = saved;
}
