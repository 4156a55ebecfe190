/* pl_dryrun: observe-only mode (see pl_dryrun.h, docs/guide.md "Dry run").
 *
 * Every send on a tracked fd is written exactly as the application asked,
 * then recorded under (rule, call site, peer) with what proxying would have
 * made of it. Only dry-run processes get here, so one mutex guards the
 * whole table: it is the slow path by definition.
 *
 * Counting "as proxying would": the real engine takes a proxied send whole
 * (one token, the full count returned), so a write the kernel takes in part
 * and the program then finishes is one send. Each state remembers where an
 * unfinished logical send stands (pl_dry_pending); a later write that
 * continues it is not counted again. */
#include "pl_dryrun.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pl_caller.h"
#include "pl_io.h"
#include "pl_real.h"
#include "pol_report.h"
#include "psi_log.h"

#define PL_DRY_ROWS 1024        /* distinct (rule, site, peer) per process */
#define PL_DRY_INDEX 2048       /* open-addressing index into rows, a power of two */
#define PL_DRY_PENDING 64       /* states with an unfinished send at once */
#define PL_DRY_FP_BYTES 32      /* bytes of head and tail fingerprinted */
#define PL_DRY_GATHER_MAX 8192  /* pl_sendv gathers small writevs up to this */

typedef struct pl_dry_row {
    int rule;                   /* decision's rule, -1: none */
    const char *site;           /* interned by pl_callsite, or a literal */
    uint8_t channel;
    char peer[POL_REPORT_PEER_MAX];
    uint64_t sends, bytes, proxied_sends, proxied_bytes, wire_after;
} pl_dry_row;

/* The rest of a send the kernel took in part. A continuation is a write of
 * at most `left` bytes starting at `next` (the program goes on from where
 * the kernel stopped, perhaps in smaller pieces), or, when the program
 * copied the rest elsewhere (Python's data[k:]), a write of exactly `left`
 * bytes with the same head and tail (fingerprint). */
typedef struct pl_dry_pending {
    const pl_state *st;         /* NULL: slot free */
    const uint8_t *next;
    size_t left;
    uint64_t fp;
    bool fp_valid;
} pl_dry_pending;

static struct {
    pthread_mutex_t lock;
    uint16_t index[PL_DRY_INDEX]; /* row number + 1, 0: empty */
    size_t nrows;
    uint64_t dropped;             /* sends not recorded: table full */
    pl_dry_row rows[PL_DRY_ROWS];
    uint64_t hist_count[POL_REPORT_BUCKETS], hist_bytes[POL_REPORT_BUCKETS];
    pl_dry_pending pend[PL_DRY_PENDING];
    size_t npending; /* slots in use: 0 spares every send the scan */
} pl_dry = {.lock = PTHREAD_MUTEX_INITIALIZER};

pl_state *pl_dry_state(int kind, int channel)
{
    pl_state *st = pl_state_new(kind);
    if (!st)
        return NULL;
    st->channel = (uint8_t)channel;
    st->in_mode = PL_IN_PLAIN;
    atomic_store(&st->out_mode, PL_OUT_PLAIN);
    return st;
}

void pl_dry_atfork_child(void)
{
    /* The records so far are the parent's, which writes them itself. */
    pthread_mutex_init(&pl_dry.lock, NULL);
    memset(pl_dry.index, 0, sizeof(pl_dry.index));
    pl_dry.nrows = 0;
    pl_dry.dropped = 0;
    memset(pl_dry.hist_count, 0, sizeof(pl_dry.hist_count));
    memset(pl_dry.hist_bytes, 0, sizeof(pl_dry.hist_bytes));
    memset(pl_dry.pend, 0, sizeof(pl_dry.pend));
    pl_dry.npending = 0;
}

/* ---- what a send is ---------------------------------------------------------- */

/* The peer's display form, cached per thread: a program talks to few peers
 * and formatting an address on every small send is measurable. */
static const char *pl_dry_peer(const pl_state *st)
{
    static _Thread_local struct {
        const pl_state *st;
        socklen_t len;
        uint8_t channel;
        struct sockaddr_storage peer;
        char text[POL_REPORT_PEER_MAX];
    } c;
    if (c.st != st || c.len != st->peer_len || c.channel != st->channel ||
        memcmp(&c.peer, &st->peer, st->peer_len) != 0) {
        c.st = st;
        c.len = st->peer_len;
        c.channel = st->channel;
        memcpy(&c.peer, &st->peer, st->peer_len);
        pol_format_peer((const struct sockaddr *)&st->peer, st->peer_len,
                        st->channel == POL_CH_PIPE, c.text, sizeof(c.text));
    }
    return c.text;
}

/* Call sites are looked up only where a decision could depend on them:
 * sends of at least the sweep's lowest threshold, or of the policy's
 * smallest candidate. Smaller sends share one row per rule and peer. */
static const char *pl_dry_site(uint64_t n)
{
    uint64_t min = (uint64_t)1 << POL_SWEEP_MIN_LOG2;
    if (pl_g.min_candidate < min)
        min = pl_g.min_candidate;
    if (n < min)
        return POL_REPORT_SMALL_SITE;
    const char *s = pl_callsite();
    return s ? s : "?";
}

static uint64_t pl_dry_hash(int rule, const char *site, uint8_t channel, const char *peer)
{
    uint64_t h = 1469598103934665603ull ^ (uint64_t)(uintptr_t)site ^ ((uint64_t)rule << 40) ^
                 channel;
    for (const char *p = peer; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    return h ^ (h >> 29);
}

static pl_dry_row *pl_dry_row_get(int rule, const char *site, uint8_t channel, const char *peer)
{
    uint64_t h = pl_dry_hash(rule, site, channel, peer);
    for (size_t i = 0; i < PL_DRY_INDEX; i++) {
        uint16_t *slot = &pl_dry.index[(h + i) & (PL_DRY_INDEX - 1)];
        if (*slot == 0) {
            if (pl_dry.nrows == PL_DRY_ROWS)
                return NULL;
            pl_dry_row *r = &pl_dry.rows[pl_dry.nrows++];
            memset(r, 0, sizeof(*r));
            r->rule = rule;
            r->site = site;
            r->channel = channel;
            snprintf(r->peer, sizeof(r->peer), "%s", peer);
            *slot = (uint16_t)pl_dry.nrows;
            return r;
        }
        pl_dry_row *r = &pl_dry.rows[*slot - 1];
        if (r->rule == rule && r->site == site && r->channel == channel &&
            strcmp(r->peer, peer) == 0)
            return r;
    }
    return NULL;
}

/* Records one logical send of n bytes (under pl_dry.lock). */
static void pl_dry_record(int rule, const char *site, uint8_t channel, const char *peer,
                          uint64_t n, bool proxied)
{
    int k = pol_report_bucket(n);
    pl_dry.hist_count[k]++;
    pl_dry.hist_bytes[k] += n;
    pl_dry_row *r = pl_dry_row_get(rule, site, channel, peer);
    if (!r) {
        pl_dry.dropped++;
        return;
    }
    r->sends++;
    r->bytes += n;
    if (proxied) {
        r->proxied_sends++;
        r->proxied_bytes += n;
        r->wire_after += POL_REPORT_TOKEN_WIRE;
    } else {
        r->wire_after += n;
    }
}

/* ---- continuation of partial writes ----------------------------------------- */

static uint64_t pl_dry_fp(const uint8_t *p, size_t n)
{
    uint64_t h = 14695981039346656037ull ^ n;
    size_t head = n < PL_DRY_FP_BYTES ? n : PL_DRY_FP_BYTES;
    for (size_t i = 0; i < head; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    for (size_t i = n - head; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

static pl_dry_pending *pl_dry_pending_of(const pl_state *st)
{
    if (pl_dry.npending == 0)
        return NULL;
    for (size_t i = 0; i < PL_DRY_PENDING; i++)
        if (pl_dry.pend[i].st == st)
            return &pl_dry.pend[i];
    return NULL;
}

static bool pl_dry_continues(const pl_dry_pending *pe, const uint8_t *p, size_t n)
{
    if (!pe || !p || n == 0 || n > pe->left)
        return false;
    if (p == pe->next)
        return true;
    return n == pe->left && pe->fp_valid && pl_dry_fp(p, n) == pe->fp;
}

/* The kernel took `taken` of the n bytes at p: remember the rest. */
static void pl_dry_remember(const pl_state *st, pl_dry_pending *pe, const uint8_t *p, size_t n,
                            size_t taken)
{
    if (!pe) {
        for (size_t i = 0; i < PL_DRY_PENDING && !pe; i++)
            if (!pl_dry.pend[i].st)
                pe = &pl_dry.pend[i];
        if (!pe)
            return; /* 64 unfinished sends at once: the next one counts anew */
        pl_dry.npending++;
    }
    pe->st = st;
    pe->next = p + taken;
    pe->left = n - taken;
    pe->fp_valid = true;
    pe->fp = pl_dry_fp(p + taken, n - taken);
}

/* One segment of what the application wrote: its bytes p[0..n), of which
 * the kernel took `taken`. Returns false once a segment was not wholly
 * taken (the later ones were not written at all). */
static bool pl_dry_segment(pl_state *st, const char *peer, const uint8_t *p, size_t n,
                           size_t taken, const pol_decision *d, const char *site)
{
    pl_dry_pending *pe = pl_dry_pending_of(st);
    if (pl_dry_continues(pe, p, n)) {
        pe->left -= taken;
        if (pe->left == 0) {
            pe->st = NULL;
            pl_dry.npending--;
        } else {
            /* Went on from the same place: the rest lies past this call's
             * buffer, which only the pointer can vouch for now. */
            pe->next = p + taken;
            if (n == taken + pe->left)
                pe->fp = pl_dry_fp(p + taken, pe->left);
            else
                pe->fp_valid = false;
        }
        return taken == n;
    }
    if (pe) {
        pe->st = NULL; /* the program gave up on the rest: that send is counted */
        pl_dry.npending--;
        pe = NULL;
    }
    if (taken == 0)
        return false;
    pl_dry_record(d->rule, site, st->channel, peer, n, d->action == POL_ACT_PROXY);
    if (taken < n && p)
        pl_dry_remember(st, pe, p, n, taken);
    return taken == n;
}

/* What the engine would decide for one logical send of n bytes. Below the
 * smallest candidate the real engine does not ask; the decision is still
 * taken here for the rule's name, and is PASS. */
static void pl_dry_decide(pl_state *st, size_t n, pol_decision *d)
{
    pl_decide(st, n, d);
    if (n < pl_g.min_candidate && d->action == POL_ACT_PROXY)
        d->action = POL_ACT_PASS;
}

/* Records a write of iov[0..iovcnt) that returned r, segment by segment. */
static void pl_dry_account(pl_state *st, const struct iovec *iov, int iovcnt, ssize_t r,
                           bool gathered)
{
    if (r <= 0)
        return;
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    const char *peer = pl_dry_peer(st);
    if (gathered) {
        /* pl_sendv sends a small writev as one record: one send. Its rest,
         * if the kernel took part, is not recognised by pointer. */
        pol_decision d;
        pl_dry_decide(st, total, &d);
        const char *site = pl_dry_site(total);
        pthread_mutex_lock(&pl_dry.lock);
        pl_dry_segment(st, peer, NULL, total, (size_t)r, &d, site);
        pthread_mutex_unlock(&pl_dry.lock);
        return;
    }
    size_t left = (size_t)r;
    for (int i = 0; i < iovcnt; i++) {
        size_t n = iov[i].iov_len;
        if (n == 0)
            continue;
        size_t taken = left < n ? left : n;
        left -= taken;
        pol_decision d;
        const char *site = POL_REPORT_SMALL_SITE;
        /* The decision and the stack walk happen outside the lock; for a
         * continuation they are wasted, which is rare. */
        pl_dry_decide(st, n, &d);
        site = pl_dry_site(n);
        pthread_mutex_lock(&pl_dry.lock);
        bool whole = pl_dry_segment(st, peer, iov[i].iov_base, n, taken, &d, site);
        pthread_mutex_unlock(&pl_dry.lock);
        if (!whole)
            break;
    }
}

void pl_dry_note(pl_state *st, ssize_t r)
{
    if (r <= 0)
        return;
    int saved = errno;
    pol_decision d;
    pl_dry_decide(st, (size_t)r, &d);
    const char *site = pl_dry_site((size_t)r);
    const char *peer = pl_dry_peer(st);
    pthread_mutex_lock(&pl_dry.lock);
    pl_dry_record(d.rule, site, st->channel, peer, (uint64_t)r, d.action == POL_ACT_PROXY);
    pthread_mutex_unlock(&pl_dry.lock);
    errno = saved;
}

ssize_t pl_dry_send(pl_state *st, pl_io *io, const void *buf, size_t n)
{
    pthread_mutex_lock(&st->out_lock);
    struct iovec v = {(void *)buf, n};
    ssize_t r = pl_kwrite(io, &v, 1, true);
    int saved = errno;
    pl_dry_account(st, &v, 1, r, false);
    pthread_mutex_unlock(&st->out_lock);
    errno = saved;
    return r;
}

ssize_t pl_dry_sendv(pl_state *st, pl_io *io, const struct iovec *iov, int iovcnt)
{
    /* One real writev, as the application asked; recorded the way pl_sendv
     * would have sent it: small writevs gathered into one record, else one
     * send (one token, if large enough) per segment. */
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    bool gathered = total < pl_g.min_candidate && iovcnt > 1 && total <= PL_DRY_GATHER_MAX;
    pthread_mutex_lock(&st->out_lock);
    ssize_t r = pl_kwrite(io, iov, iovcnt, true);
    int saved = errno;
    pl_dry_account(st, iov, iovcnt, r, gathered);
    pthread_mutex_unlock(&st->out_lock);
    errno = saved;
    return r;
}

/* ---- the process file -------------------------------------------------------- */

static const char *pl_dry_channel_name(int ch)
{
    switch (ch) {
    case POL_CH_TCP: return "tcp";
    case POL_CH_UNIX: return "unix";
    case POL_CH_PIPE: return "pipe";
    case POL_CH_UDP: return "udp";
    default: return "?";
    }
}

static const char *pl_dry_rule_name(int rule, char *buf, size_t cap)
{
    if (rule < 0)
        return POL_REPORT_NO_RULE;
    if (pl_g.policy && (size_t)rule < pl_g.policy->nrules)
        return pl_g.policy->rules[rule].name;
    snprintf(buf, cap, "rule#%d", rule + 1);
    return buf;
}

/* Appends printf output to a growing buffer; *len stays put on failure. */
typedef struct pl_dry_buf {
    char *p;
    size_t len, cap;
    bool failed;
} pl_dry_buf;

__attribute__((format(printf, 2, 3))) static void pl_dry_put(pl_dry_buf *b, const char *fmt, ...)
{
    for (int tries = 0; tries < 2 && !b->failed; tries++) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = true;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap * 2 + (size_t)n;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

static void pl_dry_put_str(pl_dry_buf *b, const char *key, const char *s, const char *sep)
{
    char esc[POL_REPORT_SITE_MAX * 3 + 8];
    if (pol_json_string(s, esc, sizeof(esc)) < 0)
        snprintf(esc, sizeof(esc), "\"?\"");
    pl_dry_put(b, "\"%s\":%s%s", key, esc, sep);
}

static int pl_dry_write_file(const char *path, const char *data, size_t len)
{
    int fd = REAL(open)(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    while (len > 0) {
        ssize_t w = REAL(write)(fd, data, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            REAL(close)(fd);
            return -1;
        }
        data += w;
        len -= (size_t)w;
    }
    return REAL(close)(fd);
}

void pl_dry_dump(void)
{
    const char *dir = getenv("PSI_DRYRUN_OUT");
    if (!dir || !*dir) {
        psi_log(PSI_LOG_INFO, "PSI_DRYRUN without PSI_DRYRUN_OUT: nothing written");
        return;
    }
    pthread_mutex_lock(&pl_dry.lock);
    pl_dry_buf b = {.cap = 4096 + pl_dry.nrows * 768};
    b.p = malloc(b.cap);
    if (!b.p) {
        pthread_mutex_unlock(&pl_dry.lock);
        return;
    }
    char exe[PATH_MAX] = "?";
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0)
        exe[n] = '\0';
    const psi_policy *pol = pl_g.policy;
    uint64_t threshold = pol && pol->has_threshold ? pol->threshold : pl_g.cfg.threshold;
    pl_dry_put(&b, "{\"pid\":%ld,\"ppid\":%ld,", (long)getpid(), (long)getppid());
    pl_dry_put_str(&b, "exe", exe, ",");
    pl_dry_put_str(&b, "argv0", program_invocation_name, ",");
    pl_dry_put(&b, "\"threshold\":%llu,\"dropped\":%llu,\n\"rows\":[",
               (unsigned long long)threshold, (unsigned long long)pl_dry.dropped);
    for (size_t i = 0; i < pl_dry.nrows; i++) {
        const pl_dry_row *r = &pl_dry.rows[i];
        char rb[32];
        pl_dry_put(&b, "%s\n{", i ? "," : "");
        pl_dry_put_str(&b, "rule", pl_dry_rule_name(r->rule, rb, sizeof(rb)), ",");
        pl_dry_put_str(&b, "site", r->site, ",");
        pl_dry_put_str(&b, "peer", r->peer, ",");
        pl_dry_put_str(&b, "channel", pl_dry_channel_name(r->channel), ",");
        pl_dry_put(&b,
                   "\"sends\":%llu,\"bytes\":%llu,\"proxied_sends\":%llu,"
                   "\"proxied_bytes\":%llu,\"wire_after\":%llu}",
                   (unsigned long long)r->sends, (unsigned long long)r->bytes,
                   (unsigned long long)r->proxied_sends, (unsigned long long)r->proxied_bytes,
                   (unsigned long long)r->wire_after);
    }
    pl_dry_put(&b, "],\n\"histogram\":[");
    bool first = true;
    for (int k = 0; k < POL_REPORT_BUCKETS; k++) {
        if (!pl_dry.hist_count[k])
            continue;
        pl_dry_put(&b, "%s{\"log2\":%d,\"count\":%llu,\"bytes\":%llu}", first ? "" : ",", k,
                   (unsigned long long)pl_dry.hist_count[k],
                   (unsigned long long)pl_dry.hist_bytes[k]);
        first = false;
    }
    pl_dry_put(&b, "]}\n");
    pthread_mutex_unlock(&pl_dry.lock);
    if (b.failed) {
        free(b.p);
        psi_log(PSI_LOG_WARN, "dry run: out of memory formatting the report");
        return;
    }
    /* Written under a temporary name and renamed, so `psi dry-run` never
     * reads half a file from a process still exiting. */
    char tmp[PATH_MAX], path[PATH_MAX];
    snprintf(tmp, sizeof(tmp), "%s/.tmp.%ld", dir, (long)getpid());
    snprintf(path, sizeof(path), "%s/dry.%ld.json", dir, (long)getpid());
    if (pl_dry_write_file(tmp, b.p, b.len) != 0 || rename(tmp, path) != 0)
        psi_log(PSI_LOG_WARN, "dry run: cannot write %s: %s", path, strerror(errno));
    free(b.p);
}

/* ---- sendfile and splice into observed fds ------------------------------- */

/* Dry run: the real call, then the record (observed fds are plain both
 * ways, so the engine never sees these bytes). */
ssize_t pl_dry_noted(int out_fd, ssize_t r)
{
    pl_state *st = r > 0 ? pl_state_get(out_fd) : NULL;
    if (st) {
        pl_dry_note(st, r);
        pl_state_put(st);
    }
    return r;
}

/* Dry run of sendfile, counted as the engine would send it: the engine
 * takes a whole file region in one call (one token if large), while the
 * real call here may move less (a pipe's capacity) and be called again for
 * the rest. So the region is recorded once, at its first call, and later
 * calls that continue it (same out and in fd, next offset) are not. */
static struct {
    pthread_mutex_t lock;
    struct {
        int out_fd, in_fd;
        off_t next;
        size_t left;
    } pend[64];
} pl_dry_sf = {.lock = PTHREAD_MUTEX_INITIALIZER};

ssize_t pl_dry_sendfile(int out_fd, int in_fd, off_t *offset, size_t count,
                               ssize_t (*real)(int, int, off_t *, size_t))
{
    off_t start = offset ? *offset : lseek(in_fd, 0, SEEK_CUR);
    struct stat sb;
    size_t region = count;
    if (start >= 0 && fstat(in_fd, &sb) == 0 && S_ISREG(sb.st_mode))
        region = sb.st_size > start ? (size_t)(sb.st_size - start) : 0;
    if (region > count)
        region = count;
    ssize_t r = real(out_fd, in_fd, offset, count);
    if (r <= 0)
        return r;
    int saved = errno;
    size_t logical = 0;
    unsigned slot = (unsigned)out_fd % 64;
    pthread_mutex_lock(&pl_dry_sf.lock);
    bool cont = pl_dry_sf.pend[slot].left > 0 && pl_dry_sf.pend[slot].out_fd == out_fd &&
                pl_dry_sf.pend[slot].in_fd == in_fd && pl_dry_sf.pend[slot].next == start;
    if (cont) {
        size_t took = (size_t)r < pl_dry_sf.pend[slot].left ? (size_t)r : pl_dry_sf.pend[slot].left;
        pl_dry_sf.pend[slot].left -= took;
        pl_dry_sf.pend[slot].next += (off_t)took;
    } else {
        logical = region > (size_t)r ? region : (size_t)r;
        pl_dry_sf.pend[slot].out_fd = out_fd;
        pl_dry_sf.pend[slot].in_fd = in_fd;
        pl_dry_sf.pend[slot].next = start + r;
        pl_dry_sf.pend[slot].left = logical - (size_t)r;
    }
    pthread_mutex_unlock(&pl_dry_sf.lock);
    if (!cont)
        pl_dry_noted(out_fd, (ssize_t)logical);
    errno = saved;
    return r;
}
