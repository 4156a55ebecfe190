/* pol_report: merge and arithmetic of dry-run reports (see pol_report.h). */
#include "pol_report.h"
#include "psi_text.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

/* ---- display helpers ----------------------------------------------------- */

void pol_format_peer(const struct sockaddr *sa, socklen_t len, bool channel_is_pipe, char *buf,
                     size_t cap)
{
    char a[INET6_ADDRSTRLEN];
    if (channel_is_pipe) {
        snprintf(buf, cap, "pipe");
        return;
    }
    if (!sa || len < sizeof(sa_family_t)) {
        snprintf(buf, cap, "?");
        return;
    }
    if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, a, sizeof(a));
        snprintf(buf, cap, "%s:%u", a, ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, a, sizeof(a));
        snprintf(buf, cap, "[%s]:%u", a, ntohs(in6->sin6_port));
    } else if (sa->sa_family == AF_UNIX) {
        const struct sockaddr_un *un = (const struct sockaddr_un *)sa;
        size_t plen = len - offsetof(struct sockaddr_un, sun_path);
        if (len <= offsetof(struct sockaddr_un, sun_path) || plen == 0) {
            snprintf(buf, cap, "unix:(unnamed)");
        } else if (un->sun_path[0] == '\0') {
            /* abstract: the name is exactly plen - 1 bytes, NULs allowed */
            snprintf(buf, cap, "unix:@%.*s", (int)strnlen(un->sun_path + 1, plen - 1),
                     un->sun_path + 1);
        } else {
            snprintf(buf, cap, "unix:%.*s", (int)strnlen(un->sun_path, plen), un->sun_path);
        }
    } else {
        snprintf(buf, cap, "?");
    }
}

/* Length of the valid UTF-8 sequence at s, or 0. */
static size_t pol_utf8_len(const unsigned char *s)
{
    unsigned c = s[0];
    size_t n;
    unsigned min;
    if (c < 0x80)
        return 1;
    if ((c & 0xe0) == 0xc0)
        n = 2, min = 0x80;
    else if ((c & 0xf0) == 0xe0)
        n = 3, min = 0x800;
    else if ((c & 0xf8) == 0xf0)
        n = 4, min = 0x10000;
    else
        return 0;
    unsigned cp = c & (0x7f >> n);
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

int pol_json_string(const char *s, char *out, size_t cap)
{
    size_t o = 0;
#define PUT(ch)                  \
    do {                         \
        if (o + 1 >= cap)        \
            return -1;           \
        out[o++] = (char)(ch);   \
    } while (0)
    PUT('"');
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned c = *p;
        if (c == '"' || c == '\\') {
            PUT('\\');
            PUT(c);
            p++;
        } else if (c < 0x20) {
            if (o + 7 >= cap)
                return -1;
            o += (size_t)snprintf(out + o, cap - o, "\\u%04x", c);
            p++;
        } else {
            size_t n = pol_utf8_len(p);
            if (n == 0) {
                PUT(0xef); /* U+FFFD */
                PUT(0xbf);
                PUT(0xbd);
                p++;
            } else {
                for (size_t i = 0; i < n; i++)
                    PUT(p[i]);
                p += n;
            }
        }
    }
    PUT('"');
#undef PUT
    out[o] = '\0';
    return (int)o;
}

double pol_report_saved_pct(uint64_t bytes, uint64_t wire_after)
{
    if (bytes == 0 || wire_after >= bytes)
        return 0.0;
    return 100.0 * (double)(bytes - wire_after) / (double)bytes;
}

/* ---- the report ------------------------------------------------------------ */

void pol_report_init(pol_report *r)
{
    memset(r, 0, sizeof(*r));
}

void pol_report_free(pol_report *r)
{
    free(r->rows);
    free(r->procs);
    memset(r, 0, sizeof(*r));
}

static pol_report_row *pol_report_find(pol_report *r, const pol_report_row *k)
{
    for (size_t i = 0; i < r->nrows; i++) {
        pol_report_row *x = &r->rows[i];
        if (strcmp(x->rule, k->rule) == 0 && strcmp(x->site, k->site) == 0 &&
            strcmp(x->peer, k->peer) == 0 && strcmp(x->channel, k->channel) == 0)
            return x;
    }
    if (r->nrows == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 32;
        pol_report_row *rows = realloc(r->rows, cap * sizeof(*rows));
        if (!rows)
            return NULL;
        r->rows = rows;
        r->cap = cap;
    }
    pol_report_row *x = &r->rows[r->nrows++];
    memset(x, 0, sizeof(*x));
    memcpy(x->rule, k->rule, sizeof(x->rule));
    memcpy(x->site, k->site, sizeof(x->site));
    memcpy(x->peer, k->peer, sizeof(x->peer));
    memcpy(x->channel, k->channel, sizeof(x->channel));
    return x;
}

static int pol_report_merge_row(pol_report *r, const pol_report_row *row)
{
    pol_report_row *x = pol_report_find(r, row);
    if (!x)
        return -1;
    x->sends += row->sends;
    x->bytes += row->bytes;
    x->proxied_sends += row->proxied_sends;
    x->proxied_bytes += row->proxied_bytes;
    x->wire_after += row->wire_after;
    return 0;
}

/* ---- a small JSON reader, for the files the preload writes ---------------- */

typedef struct jp {
    const char *s, *end, *p;
    psi_err *err;
} jp;

static int jp_fail(jp *j, const char *what)
{
    return psi_fail(j->err, EINVAL, "column %ld: %s", (long)(j->p - j->s) + 1, what);
}

static void jp_ws(jp *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static bool jp_eat(jp *j, char c)
{
    jp_ws(j);
    if (j->p < j->end && *j->p == c) {
        j->p++;
        return true;
    }
    return false;
}

static int jp_hex4(jp *j, unsigned *v)
{
    *v = 0;
    for (int i = 0; i < 4; i++) {
        if (j->p >= j->end)
            return jp_fail(j, "short \\u escape");
        char c = *j->p++;
        int d = psi_hex_digit(c);
        if (d < 0)
            return jp_fail(j, "bad \\u escape");
        *v = *v << 4 | (unsigned)d;
    }
    return 0;
}

/* A string into out (truncated to cap - 1 bytes; out may be NULL). */
static int jp_string(jp *j, char *out, size_t cap)
{
    size_t o = 0;
    if (!jp_eat(j, '"'))
        return jp_fail(j, "expected a string");
    while (j->p < j->end && *j->p != '"') {
        char buf[4];
        size_t n = 1;
        unsigned char c = (unsigned char)*j->p++;
        if (c == '\\') {
            if (j->p >= j->end)
                break;
            char e = *j->p++;
            static const char esc[] = "\"\"\\\\//b\bf\fn\nr\rt\t";
            const char *m = NULL;
            for (size_t i = 0; esc[i]; i += 2)
                if (esc[i] == e)
                    m = &esc[i + 1];
            if (m) {
                buf[0] = *m;
            } else if (e == 'u') {
                unsigned v;
                if (jp_hex4(j, &v) < 0)
                    return -1;
                if (v >= 0xd800 && v <= 0xdfff)
                    v = 0xfffd; /* surrogates: never written by the preload */
                if (v < 0x80) {
                    buf[0] = (char)v;
                } else if (v < 0x800) {
                    buf[0] = (char)(0xc0 | v >> 6);
                    buf[1] = (char)(0x80 | (v & 0x3f));
                    n = 2;
                } else {
                    buf[0] = (char)(0xe0 | v >> 12);
                    buf[1] = (char)(0x80 | ((v >> 6) & 0x3f));
                    buf[2] = (char)(0x80 | (v & 0x3f));
                    n = 3;
                }
            } else {
                j->p--;
                return jp_fail(j, "unknown escape");
            }
        } else if (c < 0x20) {
            j->p--;
            return jp_fail(j, "control character in string");
        } else {
            buf[0] = (char)c;
        }
        for (size_t i = 0; i < n; i++)
            if (out && o + 1 < cap)
                out[o++] = buf[i];
    }
    if (j->p >= j->end)
        return jp_fail(j, "unterminated string");
    j->p++;
    if (out && cap)
        out[o] = '\0';
    return 0;
}

static int jp_u64(jp *j, uint64_t *v)
{
    jp_ws(j);
    if (j->p >= j->end || *j->p < '0' || *j->p > '9')
        return jp_fail(j, "expected a non-negative integer");
    uint64_t x = 0;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
        unsigned d = (unsigned)(*j->p - '0');
        if (x > (UINT64_MAX - d) / 10)
            return jp_fail(j, "number out of range");
        x = x * 10 + d;
        j->p++;
    }
    *v = x;
    return 0;
}

static int jp_skip(jp *j, int depth);

static int jp_skip_container(jp *j, char close, bool keys, int depth)
{
    if (jp_eat(j, close))
        return 0;
    do {
        if (keys && (jp_string(j, NULL, 0) < 0 || (!jp_eat(j, ':') && jp_fail(j, "expected ':'"))))
            return -1;
        if (jp_skip(j, depth + 1) < 0)
            return -1;
    } while (jp_eat(j, ','));
    return jp_eat(j, close) ? 0 : jp_fail(j, "expected ',' or a closing bracket");
}

/* Skips any value (an unknown key's). */
static int jp_skip(jp *j, int depth)
{
    if (depth > 32)
        return jp_fail(j, "nested too deeply");
    jp_ws(j);
    if (j->p >= j->end)
        return jp_fail(j, "expected a value");
    char c = *j->p;
    if (c == '"')
        return jp_string(j, NULL, 0);
    if (c == '{' || c == '[') {
        j->p++;
        return jp_skip_container(j, c == '{' ? '}' : ']', c == '{', depth);
    }
    const char *start = j->p;
    while (j->p < j->end && (strchr("+-.eE", *j->p) || (*j->p >= '0' && *j->p <= '9') ||
                             (*j->p >= 'a' && *j->p <= 'z')))
        j->p++;
    return j->p > start ? 0 : jp_fail(j, "expected a value");
}

/* Iterates over an object: calls fn for each key with j at the value. */
static int jp_object(jp *j, int (*fn)(jp *j, const char *key, void *ctx), void *ctx)
{
    if (!jp_eat(j, '{'))
        return jp_fail(j, "expected '{'");
    if (jp_eat(j, '}'))
        return 0;
    do {
        char key[64];
        if (jp_string(j, key, sizeof(key)) < 0)
            return -1;
        if (!jp_eat(j, ':'))
            return jp_fail(j, "expected ':'");
        if (fn(j, key, ctx) < 0)
            return -1;
    } while (jp_eat(j, ','));
    return jp_eat(j, '}') ? 0 : jp_fail(j, "expected ',' or '}'");
}

static int jp_array(jp *j, int (*fn)(jp *j, void *ctx), void *ctx)
{
    if (!jp_eat(j, '['))
        return jp_fail(j, "expected '['");
    if (jp_eat(j, ']'))
        return 0;
    do {
        if (fn(j, ctx) < 0)
            return -1;
    } while (jp_eat(j, ','));
    return jp_eat(j, ']') ? 0 : jp_fail(j, "expected ',' or ']'");
}

/* What one process file holds, before it is merged. */
typedef struct pol_proc_file {
    pol_report_proc proc;
    pol_report_row *rows;
    size_t nrows, cap;
    uint64_t hist_count[POL_REPORT_BUCKETS], hist_bytes[POL_REPORT_BUCKETS];
    uint64_t threshold;
    bool has_pid;
} pol_proc_file;

static int pol_row_key(jp *j, const char *key, void *ctx)
{
    pol_report_row *row = ctx;
    if (strcmp(key, "rule") == 0)
        return jp_string(j, row->rule, sizeof(row->rule));
    if (strcmp(key, "site") == 0)
        return jp_string(j, row->site, sizeof(row->site));
    if (strcmp(key, "peer") == 0)
        return jp_string(j, row->peer, sizeof(row->peer));
    if (strcmp(key, "channel") == 0)
        return jp_string(j, row->channel, sizeof(row->channel));
    if (strcmp(key, "sends") == 0)
        return jp_u64(j, &row->sends);
    if (strcmp(key, "bytes") == 0)
        return jp_u64(j, &row->bytes);
    if (strcmp(key, "proxied_sends") == 0)
        return jp_u64(j, &row->proxied_sends);
    if (strcmp(key, "proxied_bytes") == 0)
        return jp_u64(j, &row->proxied_bytes);
    if (strcmp(key, "wire_after") == 0)
        return jp_u64(j, &row->wire_after);
    return jp_skip(j, 1);
}

static int pol_row_item(jp *j, void *ctx)
{
    pol_proc_file *f = ctx;
    if (f->nrows == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 16;
        pol_report_row *rows = realloc(f->rows, cap * sizeof(*rows));
        if (!rows)
            return psi_fail(j->err, ENOMEM, "out of memory");
        f->rows = rows;
        f->cap = cap;
    }
    pol_report_row *row = &f->rows[f->nrows];
    memset(row, 0, sizeof(*row));
    if (jp_object(j, pol_row_key, row) < 0)
        return -1;
    f->nrows++;
    return 0;
}

typedef struct pol_bucket {
    uint64_t log2, count, bytes;
    bool has_log2;
} pol_bucket;

static int pol_bucket_key(jp *j, const char *key, void *ctx)
{
    pol_bucket *b = ctx;
    if (strcmp(key, "log2") == 0) {
        b->has_log2 = true;
        return jp_u64(j, &b->log2);
    }
    if (strcmp(key, "count") == 0)
        return jp_u64(j, &b->count);
    if (strcmp(key, "bytes") == 0)
        return jp_u64(j, &b->bytes);
    return jp_skip(j, 1);
}

static int pol_bucket_item(jp *j, void *ctx)
{
    pol_proc_file *f = ctx;
    pol_bucket b = {0};
    if (jp_object(j, pol_bucket_key, &b) < 0)
        return -1;
    if (!b.has_log2 || b.log2 >= POL_REPORT_BUCKETS)
        return jp_fail(j, "histogram bucket without a log2 in 0..63");
    f->hist_count[b.log2] += b.count;
    f->hist_bytes[b.log2] += b.bytes;
    return 0;
}

static int pol_proc_key(jp *j, const char *key, void *ctx)
{
    pol_proc_file *f = ctx;
    uint64_t v;
    if (strcmp(key, "pid") == 0 || strcmp(key, "ppid") == 0) {
        if (jp_u64(j, &v) < 0)
            return -1;
        if (key[0] == 'p' && key[1] == 'i') {
            f->proc.pid = (long)v;
            f->has_pid = true;
        } else {
            f->proc.ppid = (long)v;
        }
        return 0;
    }
    if (strcmp(key, "exe") == 0)
        return jp_string(j, f->proc.exe, sizeof(f->proc.exe));
    if (strcmp(key, "argv0") == 0)
        return jp_string(j, f->proc.argv0, sizeof(f->proc.argv0));
    if (strcmp(key, "threshold") == 0)
        return jp_u64(j, &f->threshold);
    if (strcmp(key, "rows") == 0)
        return jp_array(j, pol_row_item, f);
    if (strcmp(key, "histogram") == 0)
        return jp_array(j, pol_bucket_item, f);
    return jp_skip(j, 1);
}

int pol_report_add_json(pol_report *r, const char *text, size_t len, psi_err *err)
{
    jp j = {.s = text, .end = text + len, .p = text, .err = err};
    pol_proc_file *f = calloc(1, sizeof(*f));
    if (!f)
        return psi_fail(err, ENOMEM, "out of memory");
    int rc = jp_object(&j, pol_proc_key, f);
    if (rc == 0) {
        jp_ws(&j);
        if (j.p != j.end)
            rc = jp_fail(&j, "trailing characters after the object");
        else if (!f->has_pid)
            rc = psi_fail(err, EINVAL, "no \"pid\"");
    }
    /* Make room first, so a failure leaves r as it was. */
    if (rc == 0 && r->nprocs == r->procs_cap) {
        size_t cap = r->procs_cap ? r->procs_cap * 2 : 8;
        pol_report_proc *p = realloc(r->procs, cap * sizeof(*p));
        if (!p) {
            rc = psi_fail(err, ENOMEM, "out of memory");
        } else {
            r->procs = p;
            r->procs_cap = cap;
        }
    }
    if (rc == 0 && r->cap - r->nrows < f->nrows) {
        size_t cap = r->cap ? r->cap : 32;
        while (cap - r->nrows < f->nrows)
            cap *= 2;
        pol_report_row *rows = realloc(r->rows, cap * sizeof(*rows));
        if (!rows) {
            rc = psi_fail(err, ENOMEM, "out of memory");
        } else {
            r->rows = rows;
            r->cap = cap;
        }
    }
    if (rc == 0) {
        for (size_t i = 0; i < f->nrows; i++)
            pol_report_merge_row(r, &f->rows[i]); /* cannot fail: room was made */
        for (int k = 0; k < POL_REPORT_BUCKETS; k++) {
            r->hist_count[k] += f->hist_count[k];
            r->hist_bytes[k] += f->hist_bytes[k];
        }
        r->procs[r->nprocs++] = f->proc;
        if (f->threshold && !r->threshold)
            r->threshold = f->threshold;
    }
    free(f->rows);
    free(f);
    return rc;
}

int pol_report_add_file(pol_report *r, const char *path, psi_err *err)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return psi_fail(err, errno, "cannot open %s: %s", path, strerror(errno));
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (cap - len < 65536) {
            if (cap >= ((size_t)64 << 20)) {
                free(buf);
                fclose(fp);
                return psi_fail(err, EFBIG, "%s: larger than 64 MiB", path);
            }
            cap = cap ? cap * 2 : 65536;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(fp);
                return psi_fail(err, ENOMEM, "out of memory");
            }
            buf = nb;
        }
        size_t n = fread(buf + len, 1, cap - len, fp);
        len += n;
        if (n == 0)
            break;
    }
    bool bad = ferror(fp);
    fclose(fp);
    int rc = bad ? psi_fail(err, EIO, "cannot read %s", path)
                 : pol_report_add_json(r, buf, len, err);
    free(buf);
    return rc;
}

static int pol_row_cmp(const void *a, const void *b)
{
    const pol_report_row *x = a, *y = b;
    if (x->proxied_bytes != y->proxied_bytes)
        return x->proxied_bytes < y->proxied_bytes ? 1 : -1;
    if (x->bytes != y->bytes)
        return x->bytes < y->bytes ? 1 : -1;
    int c = strcmp(x->rule, y->rule);
    if (c == 0)
        c = strcmp(x->site, y->site);
    return c ? c : strcmp(x->peer, y->peer);
}

void pol_report_sort(pol_report *r)
{
    if (r->nrows > 1)
        qsort(r->rows, r->nrows, sizeof(r->rows[0]), pol_row_cmp);
}

void pol_report_totals(const pol_report *r, pol_report_row *out)
{
    memset(out, 0, sizeof(*out));
    snprintf(out->rule, sizeof(out->rule), "TOTAL");
    for (size_t i = 0; i < r->nrows; i++) {
        out->sends += r->rows[i].sends;
        out->bytes += r->rows[i].bytes;
        out->proxied_sends += r->rows[i].proxied_sends;
        out->proxied_bytes += r->rows[i].proxied_bytes;
        out->wire_after += r->rows[i].wire_after;
    }
}

/* Buckets whose lower bound 2^k (1 for k = 0, whose range starts at 0) is
 * at least t. */
static int pol_first_bucket(uint64_t t)
{
    if (t <= 1)
        return 0;
    int k = pol_report_bucket(t);
    return (t & (t - 1)) ? k + 1 : k;
}

uint64_t pol_report_sweep(const pol_report *r, uint64_t t)
{
    uint64_t sum = 0;
    for (int k = pol_first_bucket(t); k < POL_REPORT_BUCKETS; k++)
        sum += r->hist_bytes[k];
    return sum;
}

uint64_t pol_report_sweep_sends(const pol_report *r, uint64_t t)
{
    uint64_t sum = 0;
    for (int k = pol_first_bucket(t); k < POL_REPORT_BUCKETS; k++)
        sum += r->hist_count[k];
    return sum;
}
