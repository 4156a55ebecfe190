/* psi_stats: the per-process counters and their one-line JSON form (DESIGN §9).
 *
 * The line is written at exit, possibly from a process whose locale makes
 * printf("%f") print a decimal comma, so numbers are formatted from integers
 * only. The parser is for our own lines (and hand-edited ones): a flat JSON
 * object, keys in any order, unknown keys skipped whatever their value. */
#include "psi_stats.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

psi_stats psi_g_stats;

void psi_stats_snapshot(const psi_stats *s, psi_stats_rec *out)
{
#define LOAD(f) atomic_load_explicit(&s->f, memory_order_relaxed)
    out->bytes_sent = LOAD(bytes_sent);
    out->bytes_proxied = LOAD(bytes_proxied);
    out->tokens_sent = LOAD(tokens_sent);
    out->tokens_resolved = LOAD(tokens_resolved);
    out->bytes_resolved = LOAD(bytes_resolved);
    out->inline_fallbacks = LOAD(inline_fallbacks);
    out->errors = LOAD(errors);
    out->put_seconds = (double)LOAD(put_ns) / 1e9;
    out->get_seconds = (double)LOAD(get_ns) / 1e9;
#undef LOAD
}

/* ---- formatting ------------------------------------------------------- */

struct out {
    char *buf;
    size_t cap, len;
    bool full;
};

static void put_bytes(struct out *o, const char *s, size_t n)
{
    if (o->full || o->len + n >= o->cap) {
        o->full = true;
        return;
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
}

static void put_str(struct out *o, const char *s)
{
    put_bytes(o, s, strlen(s));
}

static void put_u64(struct out *o, uint64_t v)
{
    char tmp[24];
    put_bytes(o, tmp, (size_t)snprintf(tmp, sizeof tmp, "%" PRIu64, v));
}

/* Seconds with nanosecond digits, built from integers (locale-proof). */
static void put_seconds(struct out *o, double s)
{
    char tmp[48];
    uint64_t ns = s > 0 && s < 1.8e10 ? (uint64_t)(s * 1e9 + 0.5) : 0;

    put_bytes(o, tmp, (size_t)snprintf(tmp, sizeof tmp, "%" PRIu64 ".%09" PRIu64,
                                       ns / 1000000000u, ns % 1000000000u));
}

/* Length of a valid UTF-8 sequence at s (of at most n bytes), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    size_t len;
    uint32_t cp;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        len = 2, cp = s[0] & 0x1f;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        len = 3, cp = s[0] & 0x0f;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        len = 4, cp = s[0] & 0x07;
    else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    /* Overlong forms, surrogates and values past U+10FFFF are invalid. */
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/* JSON string body. A path is bytes, JSON is Unicode: bytes that are not
 * valid UTF-8 become U+FFFD, so the line stays valid JSON for any reader. */
static void put_json_string(struct out *o, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);

    put_bytes(o, "\"", 1);
    while (n) {
        char esc[7] = "\\u00";
        size_t l;
        switch (*p) {
        case '"':  put_bytes(o, "\\\"", 2); l = 1; break;
        case '\\': put_bytes(o, "\\\\", 2); l = 1; break;
        case '\n': put_bytes(o, "\\n", 2); l = 1; break;
        case '\r': put_bytes(o, "\\r", 2); l = 1; break;
        case '\t': put_bytes(o, "\\t", 2); l = 1; break;
        default:
            if (*p < 0x20 || *p == 0x7f) {
                esc[4] = hex[*p >> 4];
                esc[5] = hex[*p & 15];
                put_bytes(o, esc, 6);
                l = 1;
            } else if ((l = utf8_len(p, n)) == 0) {
                put_str(o, "\\ufffd");
                l = 1;
            } else {
                put_bytes(o, (const char *)p, l);
            }
        }
        p += l;
        n -= l;
    }
    put_bytes(o, "\"", 1);
}

int psi_stats_format(const psi_stats_rec *r, pid_t pid, const char *exe, char *buf,
                     size_t cap)
{
    struct out o = {buf, cap, 0, false};
    const struct { const char *key; uint64_t v; } counters[] = {
        {"bytes_sent", r->bytes_sent},           {"bytes_proxied", r->bytes_proxied},
        {"tokens_sent", r->tokens_sent},         {"tokens_resolved", r->tokens_resolved},
        {"bytes_resolved", r->bytes_resolved},   {"inline_fallbacks", r->inline_fallbacks},
        {"errors", r->errors},
    };
    char pidbuf[24];

    snprintf(pidbuf, sizeof pidbuf, "{\"pid\":%ld", (long)pid);
    put_str(&o, pidbuf);
    put_str(&o, ",\"exe\":");
    put_json_string(&o, exe ? exe : "");
    for (size_t i = 0; i < sizeof counters / sizeof counters[0]; i++) {
        put_str(&o, ",\"");
        put_str(&o, counters[i].key);
        put_str(&o, "\":");
        put_u64(&o, counters[i].v);
    }
    put_str(&o, ",\"put_seconds\":");
    put_seconds(&o, r->put_seconds);
    put_str(&o, ",\"get_seconds\":");
    put_seconds(&o, r->get_seconds);
    put_str(&o, "}\n");
    if (o.full)
        return -1;
    buf[o.len] = '\0';
    return (int)o.len;
}

/* ---- appending -------------------------------------------------------- */

/* Raw syscalls: the preload library hooks open/write/close, and this runs
 * inside it at exit. O_APPEND plus one write keeps processes' lines whole. */
int psi_stats_append(const char *path, const char *line, size_t len, psi_err *err)
{
    int saved = errno;
    long fd = 2, n;
    int rc = 0;

    if (!path || !*path)
        return psi_fail(err, EINVAL, "no stats file given");
    if (strcmp(path, "stderr") != 0) {
        do
            fd = syscall(SYS_openat, AT_FDCWD, path,
                         O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        while (fd < 0 && errno == EINTR);
        if (fd < 0) {
            rc = psi_fail(err, errno, "cannot open stats file '%s': %s", path, strerror(errno));
            errno = saved;
            return rc;
        }
    }
    do
        n = syscall(SYS_write, fd, line, len);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        rc = psi_fail(err, errno, "cannot write stats file '%s': %s", path, strerror(errno));
    else if ((size_t)n != len)
        rc = psi_fail(err, EIO, "short write to stats file '%s' (%ld of %zu bytes)", path, n,
                      len);
    if (fd != 2)
        syscall(SYS_close, fd);
    errno = saved;
    return rc;
}
