/* pl_handoff: per-fd state across exec (see pl_handoff.h and
 * docs/exec-handoff.md for the format and the choices).
 *
 * Why one memfd rather than the environment: a handoff can carry megabytes
 * (a resolved token the application has not read yet), and building a large
 * environment string would need memory we cannot allocate in a vfork child
 * (it would leak into the parent). The memfd takes every byte by write(2)
 * straight from where it lies; only a short PSI_HANDOFF=<fd> goes into the
 * environment, built on the stack. */
#include "pl_handoff.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "pl_engine.h"
#include "pl_real.h"
#include "psi_log.h"
#include "psi_text.h"

#define PL_HANDOFF_MAGIC "PSIH 1\n" /* format version 1 (docs/exec-handoff.md) */

/* ---- export (runs in the exec'ing process, maybe a vfork child) -------- */

static bool pl_handoff_kind(const pl_state *st)
{
    return st->kind == PL_KIND_STREAM || st->kind == PL_KIND_PIPE ||
           st->kind == PL_KIND_LISTENER;
}

/* The state's object is open at fd in this process and survives exec. */
static bool pl_obj_at(const pl_state *st, int fd)
{
    int fdfl = fcntl(fd, F_GETFD);
    if (fdfl < 0 || (fdfl & FD_CLOEXEC))
        return false;
    struct stat sb;
    if (fstat(fd, &sb) != 0 || (uint64_t)sb.st_dev != st->key_dev ||
        (uint64_t)sb.st_ino != st->key_ino)
        return false;
    int fl = fcntl(fd, F_GETFL);
    return fl >= 0 && (fl & O_ACCMODE) == st->key_acc;
}


typedef struct pl_probe {
    const pl_state *st;
    int below; /* pl_seen_before: fds below this one */
} pl_probe;

static bool pl_seen_fn(int fd, pl_state *st, void *ctx)
{
    pl_probe *p = ctx;
    return fd < p->below && st == p->st;
}

static bool pl_alive_fn(int fd, pl_state *st, void *ctx)
{
    pl_probe *p = ctx;
    return st == p->st && pl_obj_at(st, fd);
}

/* Will the new image have this object open? On one of the state's own fds
 * without FD_CLOEXEC, or on 0-2 (a vfork child's dup2, which the table
 * never saw). Quadratic in tracked fds; exec is rare and tables are small. */
static bool pl_survives(const pl_state *st)
{
    for (int fd = 0; fd <= 2; fd++)
        if (pl_obj_at(st, fd))
            return true;
    pl_probe p = {.st = st};
    return pl_fdtab_each(pl_alive_fn, &p);
}

static int pl_put(int fd, const void *buf, size_t n)
{
    const uint8_t *p = buf;
    while (n > 0) {
        ssize_t r = REAL(write)(fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static char *pl_hex(char *out, const void *buf, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    const uint8_t *p = buf;
    if (n == 0)
        *out++ = '-';
    for (size_t i = 0; i < n; i++) {
        *out++ = digits[p[i] >> 4];
        *out++ = digits[p[i] & 15];
    }
    *out = '\0';
    return out;
}

/* A state in use by another thread (a blocked read holds in_lock in the
 * kernel) is not waited for: that thread's call dies with the exec anyway,
 * and the fields it has not touched yet are what we write. */
static bool pl_lock_briefly(pthread_mutex_t *m)
{
    for (int i = 0; i < 200; i++) {
        if (pthread_mutex_trylock(m) == 0)
            return true;
        sched_yield();
    }
    return false;
}

static int pl_write_state(int mfd, pl_state *st)
{
    /* 2 hex digits a byte; the largest fields are the token body, the
     * peer address and a listener's registry path. */
    char line[2 * (PSI_TOKEN_MAX_BODY + sizeof(st->peer) + sizeof(st->reg_entry)) + 1024];
    char tk[2 * PSI_TOKEN_MAX_BODY + 2], pe[2 * sizeof(st->peer) + 2],
        re[2 * sizeof(st->reg_entry) + 2];
    char rh[2 * PL_REC_HDR + 2], dt[2 * PL_HELLO_LEN + 2], an[2 * PL_HELLO_LEN + 2],
        sk[2 * PL_HELLO_LEN + 2], nc[2 * PL_NONCE_LEN + 2];
    bool in_locked = pl_lock_briefly(&st->in_lock);
    bool out_locked = pl_lock_briefly(&st->out_lock);
    size_t tok_len = st->rx.tok_len <= PSI_TOKEN_MAX_BODY ? st->rx.tok_len : 0;
    pl_hex(tk, st->rx.tok, tok_len);
    pl_hex(pe, &st->peer, st->peer_len <= sizeof(st->peer) ? st->peer_len : 0);
    pl_hex(re, st->reg_entry, strnlen(st->reg_entry, sizeof(st->reg_entry)));
    pl_hex(rh, st->rx.hdr, st->rx.hdr_len <= PL_REC_HDR ? st->rx.hdr_len : 0);
    pl_hex(dt, st->detect, st->detect_len <= PL_HELLO_LEN ? st->detect_len : 0);
    pl_hex(an, st->answer, PL_HELLO_LEN);
    pl_hex(sk, st->seek_held, st->seek_len <= PL_HELLO_LEN ? st->seek_len : 0);
    pl_hex(nc, st->nonce, PL_NONCE_LEN);
    size_t hold = pl_hold_bytes(st);
    size_t raw = st->raw_len - st->raw_off;
    int len = snprintf(line, sizeof(line),
                       "S k=%u c=%u d=%llx i=%llx a=%d om=%d dl=%u ep=%u im=%d ie=%d rp=%u "
                       "rh=%s rl=%u tk=%s dt=%s an=%s sk=%s nc=%s pe=%s re=%s rpid=%d hl=%zu "
                       "rw=%zu\n",
                       st->kind, st->channel, (unsigned long long)st->key_dev,
                       (unsigned long long)st->key_ino, st->key_acc, atomic_load(&st->out_mode),
                       st->data_left, st->early_peeks, st->in_mode, st->in_err, st->rx.phase, rh,
                       st->rx.left, tk, dt, an, sk, nc, pe, re, (int)st->reg_pid, hold, raw);
    int rc = len > 0 && (size_t)len < sizeof(line) ? pl_put(mfd, line, (size_t)len) : -1;
    /* Held bytes of a piecewise-checked object are checked before they
     * are handed to the next program, as a read would. */
    for (const pl_seg *s = st->hold; s && rc == 0; s = s->next) {
        psi_err err = {0};
        if (psi_obj_verify(&s->obj, (size_t)(s->data - s->obj.data) + s->off, s->len - s->off,
                           &err) != 0) {
            psi_log(PSI_LOG_ERROR, "exec handoff: %s", err.msg);
            rc = -1;
            break;
        }
        rc = pl_put(mfd, s->data + s->off, s->len - s->off);
    }
    if (rc == 0 && raw > 0)
        rc = pl_put(mfd, st->raw + st->raw_off, raw);
    if (out_locked)
        pthread_mutex_unlock(&st->out_lock);
    if (in_locked)
        pthread_mutex_unlock(&st->in_lock);
    return rc;
}

typedef struct pl_export {
    int mfd;
    bool all;
    int written;
    int rc;
} pl_export;

static bool pl_export_fn(int fd, pl_state *st, void *ctx)
{
    pl_export *x = ctx;
    if (fd == x->mfd || !pl_handoff_kind(st) || !st->key_ino)
        return false;
    pl_probe p = {.st = st, .below = fd};
    if (pl_fdtab_each(pl_seen_fn, &p)) /* written at its lowest fd already */
        return false;
    if (!x->all && !pl_survives(st))
        return false;
    if (pl_write_state(x->mfd, st) != 0) {
        x->rc = -1;
        return true;
    }
    x->written++;
    return false;
}

int pl_handoff_export(bool all_states)
{
    if (!pl_g.ready || pl_g.passthrough || pl_g.dryrun)
        return -1;
    int saved = errno;
    /* The raw syscall: no hook, no FD_CLOEXEC (it must reach the new image). */
    int mfd = (int)syscall(SYS_memfd_create, "psi-handoff", 0);
    if (mfd < 0) {
        errno = saved;
        return -1;
    }
    pl_export x = {.mfd = mfd, .all = all_states};
    if (pl_put(mfd, PL_HANDOFF_MAGIC, strlen(PL_HANDOFF_MAGIC)) != 0)
        x.rc = -1;
    else
        pl_fdtab_each(pl_export_fn, &x);
    if (x.rc == 0 && x.written > 0 && pl_put(mfd, "E\n", 2) == 0) {
        errno = saved;
        return mfd;
    }
    if (x.rc != 0)
        psi_log(PSI_LOG_WARN, "cannot write the exec handoff; the new program starts "
                              "without the state of inherited streams");
    REAL(close)(mfd);
    errno = saved;
    return -1;
}

/* ---- the environment of the new image ---------------------------------- */

static bool pl_is_handoff_var(const char *e)
{
    size_t n = strlen(PL_HANDOFF_ENV);
    return strncmp(e, PL_HANDOFF_ENV, n) == 0 && e[n] == '=';
}

size_t pl_handoff_env_count(char *const envp[])
{
    size_t n = 0;
    while (envp && envp[n])
        n++;
    return n;
}

void pl_handoff_env(char *const envp[], int memfd, char **out, char var[32])
{
    size_t k = 0;
    for (size_t i = 0; envp && envp[i]; i++)
        if (!pl_is_handoff_var(envp[i]))
            out[k++] = envp[i];
    snprintf(var, 32, "%s=%d", PL_HANDOFF_ENV, memfd);
    out[k++] = var;
    out[k] = NULL;
}

/* Our file name, as LD_PRELOAD names it (set once, by pl_handoff_import). */
static char pl_self_name[256];

bool pl_handoff_target_preloaded(char *const envp[])
{
    if (!pl_self_name[0])
        return false;
    for (size_t i = 0; envp && envp[i]; i++)
        if (strncmp(envp[i], "LD_PRELOAD=", 11) == 0)
            return strstr(envp[i] + 11, pl_self_name) != NULL;
    return false;
}

/* ---- import (the new image's constructor) ------------------------------ */

typedef struct pl_cursor {
    const char *p, *end;
} pl_cursor;

static int pl_unhex(const char *s, size_t slen, uint8_t *out, size_t cap, size_t *n)
{
    *n = 0;
    if (slen == 1 && s[0] == '-')
        return 0;
    if (slen % 2 || slen / 2 > cap)
        return -1;
    for (size_t i = 0; i < slen; i += 2) {
        int v = 0;
        for (int j = 0; j < 2; j++) {
            char c = s[i + (size_t)j];
            int d = psi_hex_digit_lower(c);
            if (d < 0)
                return -1;
            v = v * 16 + d;
        }
        out[(*n)++] = (uint8_t)v;
    }
    return 0;
}

/* The value of key `k` in one S line, as a pointer and length. */
static bool pl_field(const char *line, size_t len, const char *k, const char **v, size_t *vlen)
{
    size_t kl = strlen(k);
    const char *p = line, *end = line + len;
    while (p < end) {
        const char *sp = memchr(p, ' ', (size_t)(end - p));
        const char *tokend = sp ? sp : end;
        if ((size_t)(tokend - p) > kl && memcmp(p, k, kl) == 0 && p[kl] == '=') {
            *v = p + kl + 1;
            *vlen = (size_t)(tokend - *v);
            return true;
        }
        p = tokend + 1;
    }
    return false;
}

static bool pl_num(const char *line, size_t len, const char *k, int base, unsigned long long *out)
{
    const char *v;
    size_t vl;
    char tmp[32];
    if (!pl_field(line, len, k, &v, &vl) || vl == 0 || vl >= sizeof(tmp))
        return false;
    memcpy(tmp, v, vl);
    tmp[vl] = '\0';
    char *e;
    errno = 0;
    *out = strtoull(tmp, &e, base);
    return *e == '\0' && errno == 0;
}

static bool pl_bytes(const char *line, size_t len, const char *k, void *out, size_t cap,
                     size_t *n)
{
    const char *v;
    size_t vl;
    return pl_field(line, len, k, &v, &vl) && pl_unhex(v, vl, out, cap, n) == 0;
}

/* Builds a state from one S line; *hold and *raw say how many blob bytes
 * follow the line. NULL if the line is malformed. */
static pl_state *pl_parse_state(const char *line, size_t len, size_t *hold, size_t *raw)
{
    unsigned long long k, c, d, i, a, om, dl, ep, im, ie, rp, rl, rpid, hl, rw;
    if (!pl_num(line, len, "k", 10, &k) || !pl_num(line, len, "c", 10, &c) ||
        !pl_num(line, len, "d", 16, &d) || !pl_num(line, len, "i", 16, &i) ||
        !pl_num(line, len, "a", 10, &a) || !pl_num(line, len, "om", 10, &om) ||
        !pl_num(line, len, "dl", 10, &dl) || !pl_num(line, len, "ep", 10, &ep) ||
        !pl_num(line, len, "im", 10, &im) || !pl_num(line, len, "ie", 10, &ie) ||
        !pl_num(line, len, "rp", 10, &rp) || !pl_num(line, len, "rl", 10, &rl) ||
        !pl_num(line, len, "rpid", 10, &rpid) || !pl_num(line, len, "hl", 10, &hl) ||
        !pl_num(line, len, "rw", 10, &rw))
        return NULL;
    if ((k != PL_KIND_STREAM && k != PL_KIND_PIPE && k != PL_KIND_LISTENER) ||
        om > PL_OUT_FRAMED || im > PL_IN_FRAMED || rp > PL_RX_TOKEN)
        return NULL;
    pl_state *st = pl_state_new((int)k);
    if (!st)
        return NULL;
    st->channel = (uint8_t)c;
    st->key_dev = d;
    st->key_ino = i;
    st->key_acc = (int)a;
    atomic_store(&st->out_mode, (int)om);
    st->data_left = (uint32_t)dl;
    st->early_peeks = (uint32_t)ep;
    st->in_mode = (int)im;
    st->in_err = (int)ie;
    st->rx.phase = (uint8_t)rp;
    st->rx.left = (uint32_t)rl;
    st->reg_pid = (pid_t)rpid;
    size_t n;
    bool ok = pl_bytes(line, len, "rh", st->rx.hdr, PL_REC_HDR, &n);
    st->rx.hdr_len = (uint8_t)n;
    ok = ok && pl_bytes(line, len, "tk", st->rx.tok, PSI_TOKEN_MAX_BODY, &n);
    st->rx.tok_len = (uint32_t)n;
    ok = ok && pl_bytes(line, len, "dt", st->detect, PL_HELLO_LEN, &st->detect_len);
    ok = ok && pl_bytes(line, len, "an", st->answer, PL_HELLO_LEN, &n);
    ok = ok && pl_bytes(line, len, "sk", st->seek_held, PL_HELLO_LEN, &st->seek_len);
    ok = ok && pl_bytes(line, len, "nc", st->nonce, PL_NONCE_LEN, &n);
    ok = ok && pl_bytes(line, len, "pe", &st->peer, sizeof(st->peer), &n);
    st->peer_len = (socklen_t)n;
    ok = ok && pl_bytes(line, len, "re", st->reg_entry, sizeof(st->reg_entry) - 1, &n);
    if (!ok) {
        pl_state_put(st);
        return NULL;
    }
    st->reg_entry[n] = '\0';
    *hold = hl;
    *raw = rw;
    return st;
}

/* Held bytes become one segment that maps the memfd (not a copy); the
 * bytes still to be decoded go to the raw queue. */
static int pl_restore_bytes(pl_state *st, int mfd, const uint8_t *base, size_t off, size_t hold,
                            size_t raw)
{
    if (hold > 0) {
        size_t page = (size_t)sysconf(_SC_PAGESIZE);
        size_t start = off & ~(page - 1);
        size_t map_len = off - start + hold;
        void *m = mmap(NULL, map_len, PROT_READ, MAP_PRIVATE, mfd, (off_t)start);
        pl_seg *s = m == MAP_FAILED ? NULL : calloc(1, sizeof(*s));
        if (!s) {
            if (m != MAP_FAILED)
                munmap(m, map_len);
            return -1;
        }
        s->data = (const uint8_t *)m + (off - start);
        s->len = hold;
        s->obj.data = s->data;
        s->obj.len = hold;
        s->obj.map_base = m;
        s->obj.map_len = map_len;
        st->hold = st->hold_tail = s;
    }
    if (raw > 0) {
        st->raw = malloc(raw);
        if (!st->raw)
            return -1;
        memcpy(st->raw, base + off + hold, raw);
        st->raw_len = st->raw_cap = raw;
    }
    atomic_store(&st->ready, hold + raw);
    return 0;
}

/* Open fds of the new image that could carry a state: sockets and FIFOs. */
static int pl_list_fds(int *fds, int cap, int skip)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return 0;
    int dfd = dirfd(d);
    struct dirent *e;
    while ((e = readdir(d)) && n < cap) {
        char *end;
        long fd = strtol(e->d_name, &end, 10);
        struct stat sb;
        if (*end || e->d_name[0] == '.' || fd == dfd || fd == skip || fstat((int)fd, &sb) != 0 ||
            !(S_ISSOCK(sb.st_mode) || S_ISFIFO(sb.st_mode)))
            continue;
        fds[n++] = (int)fd;
    }
    closedir(d);
    return n;
}

/* Gives st to every listed fd that is its object; drops it if none is. */
static int pl_adopt(pl_state *st, const int *fds, int nfds)
{
    int first = -1, count = 0;
    for (int j = 0; j < nfds; j++) {
        struct stat sb;
        int fl = fcntl(fds[j], F_GETFL);
        if (fstat(fds[j], &sb) != 0 || fl < 0 || (uint64_t)sb.st_dev != st->key_dev ||
            (uint64_t)sb.st_ino != st->key_ino || (fl & O_ACCMODE) != st->key_acc ||
            pl_fd_get(fds[j]))
            continue;
        if (first < 0) {
            if (pl_fd_attach(fds[j], st) != 0)
                return 0;
            first = fds[j];
        } else {
            pl_fd_dup(first, fds[j]);
        }
        count++;
    }
    if (first < 0)
        pl_state_put(st);
    return count;
}

static void pl_note_self_name(void)
{
    Dl_info info;
    if (dladdr((void *)pl_handoff_import, &info) && info.dli_fname) {
        const char *slash = strrchr(info.dli_fname, '/');
        snprintf(pl_self_name, sizeof(pl_self_name), "%s",
                 slash ? slash + 1 : info.dli_fname);
    }
}

void pl_handoff_import(void)
{
    pl_note_self_name();
    const char *env = getenv(PL_HANDOFF_ENV);
    if (!env)
        return;
    char v[32];
    snprintf(v, sizeof(v), "%s", env);
    unsetenv(PL_HANDOFF_ENV); /* grandchildren must never see it */
    char *end;
    long mfd = strtol(v, &end, 10);
    struct stat sb;
    if (*end || mfd < 0 || mfd > 1 << 20 || fstat((int)mfd, &sb) != 0 || !S_ISREG(sb.st_mode) ||
        sb.st_size < (off_t)strlen(PL_HANDOFF_MAGIC)) {
        psi_log(PSI_LOG_WARN, "%s=%s does not name a handoff; ignored", PL_HANDOFF_ENV, v);
        return;
    }
    size_t size = (size_t)sb.st_size;
    const uint8_t *base = mmap(NULL, size, PROT_READ, MAP_PRIVATE, (int)mfd, 0);
    if (base == MAP_FAILED) {
        REAL(close)((int)mfd);
        return;
    }
    bool usable = !pl_g.passthrough && !pl_g.dryrun;
    int fds[4096];
    int nfds = usable ? pl_list_fds(fds, 4096, (int)mfd) : 0;
    size_t off = strlen(PL_HANDOFF_MAGIC);
    int states = 0, attached = 0;
    bool bad = memcmp(base, PL_HANDOFF_MAGIC, off) != 0;
    while (!bad && off < size && base[off] == 'S') {
        const char *line = (const char *)base + off;
        const char *nl = memchr(line, '\n', size - off);
        if (!nl) {
            bad = true;
            break;
        }
        size_t len = (size_t)(nl - line), hold = 0, raw = 0;
        pl_state *st = pl_parse_state(line, len, &hold, &raw);
        off += len + 1;
        if (!st || hold > size - off || raw > size - off - hold) {
            if (st)
                pl_state_put(st);
            bad = true;
            break;
        }
        states++;
        if (usable && pl_restore_bytes(st, (int)mfd, base, off, hold, raw) == 0)
            attached += pl_adopt(st, fds, nfds);
        else
            pl_state_put(st);
        off += hold + raw;
    }
    if (bad || off + 2 > size || memcmp(base + off, "E\n", 2) != 0)
        psi_log(PSI_LOG_WARN, "exec handoff: malformed record at byte %zu; streams after it "
                              "start without state", off);
    psi_log(PSI_LOG_DEBUG, "exec handoff: %d states, %d fds restored", states, attached);
    munmap((void *)base, size);
    REAL(close)((int)mfd);
}
