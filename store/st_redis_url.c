/* st_redis_url: the Redis connector's URL, key slots, home servers and
 * chunk arithmetic (st_redis.h, docs/store-redis.md). No I/O here. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "psi_config.h"
#include "psi_text.h"
#include "st_redis.h"

/* ---- URL ----------------------------------------------------------------- */

#define URL_FAIL(err, url, ...) url_fail((err), (url), __VA_ARGS__)

/* "PSI_STORE: malformed redis URL: <what>". The URL itself is not shown:
 * it may hold a password. */
__attribute__((format(printf, 3, 4))) static int url_fail(psi_err *err, const char *url,
                                                          const char *fmt, ...)
{
    char what[200];
    va_list ap;

    (void)url;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return psi_fail(err, EINVAL, "PSI_STORE: malformed redis URL: %s", what);
}

/* A decimal number in [lo, hi] filling exactly [s, s+n). */
static bool parse_int(const char *s, size_t n, long lo, long hi, long *v)
{
    long x = 0;

    if (n == 0 || n > 10)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        x = x * 10 + (s[i] - '0');
    }
    if (x < lo || x > hi)
        return false;
    *v = x;
    return true;
}

/* A size filling exactly [s, s+n), spelled as PSI_THRESHOLD is
 * (psi_parse_size), in [lo, hi]. */
static bool parse_size(const char *s, size_t n, uint64_t lo, uint64_t hi, size_t *v)
{
    char buf[32];
    uint64_t x;
    psi_err e;

    if (n >= sizeof buf)
        return false;
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (psi_parse_size(buf, &x, &e) < 0 || x < lo || x > hi)
        return false;
    *v = (size_t)x;
    return true;
}

static bool host_char(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           c == '.' || c == '-' || c == '_';
}

/* One host[:port] or [v6]:port, exactly [s, s+n). */
static int parse_server(const char *url, const char *s, size_t n, st_redis_server *sv,
                        psi_err *err)
{
    const char *host = s, *port = NULL;
    size_t hn;

    if (n == 0)
        return URL_FAIL(err, url, "empty server in the host list (expected host:port)");
    if (s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close)
            return URL_FAIL(err, url, "'[' without ']' in server '%.*s'", (int)n, s);
        host = s + 1;
        hn = (size_t)(close - host);
        for (size_t i = 0; i < hn; i++)
            if (psi_hex_digit(host[i]) < 0 && host[i] != ':' && host[i] != '.')
                return URL_FAIL(err, url, "bad IPv6 address '[%.*s]'", (int)hn, host);
        if (close + 1 < s + n) {
            if (close[1] != ':')
                return URL_FAIL(err, url, "junk after ']' in server '%.*s'", (int)n, s);
            port = close + 2;
        }
    } else {
        const char *colon = memchr(s, ':', n);
        hn = colon ? (size_t)(colon - s) : n;
        port = colon ? colon + 1 : NULL;
        for (size_t i = 0; i < hn; i++)
            if (!host_char(s[i]))
                return URL_FAIL(err, url, "bad character '%c' in host '%.*s'", s[i], (int)hn,
                                s);
    }
    if (hn == 0)
        return URL_FAIL(err, url, "empty host in server '%.*s'", (int)n, s);
    if (hn > ST_REDIS_HOST_MAX)
        return URL_FAIL(err, url, "host name longer than %d bytes", ST_REDIS_HOST_MAX);
    memcpy(sv->host, host, hn);
    sv->host[hn] = '\0';
    sv->port = 6379;
    if (port) {
        long p;
        size_t pn = (size_t)(s + n - port);
        if (!parse_int(port, pn, 1, 65535, &p))
            return URL_FAIL(err, url, "bad port '%.*s' for host '%s' (expected 1..65535)",
                            (int)pn, port, sv->host);
        sv->port = (int)p;
    }
    return 0;
}

static bool prefix_ok(const char *s)
{
    for (; *s; s++)
        if (!host_char(*s) && *s != ':' && *s != '/')
            return false;
    return true;
}

/* ?name=value&... */
static int parse_query(const char *url, const char *q, st_redis_url *u, psi_err *err)
{
    while (*q) {
        size_t n = strcspn(q, "&");
        const char *eq = memchr(q, '=', n);
        if (!eq)
            return URL_FAIL(err, url, "option '%.*s' has no value (expected name=value)",
                            (int)n, q);
        size_t kn = (size_t)(eq - q), vn = n - kn - 1;
        const char *v = eq + 1;
        long x;
        if (kn == 6 && memcmp(q, "prefix", 6) == 0) {
            if (psi_pct_decode(v, vn, u->prefix, sizeof u->prefix) < 0 || !prefix_ok(u->prefix))
                return URL_FAIL(err, url, "prefix '%.*s': at most %d characters of "
                                "[0-9A-Za-z._:/-]", (int)vn, v, ST_REDIS_PREFIX_MAX);
        } else if (kn == 10 && memcmp(q, "timeout_ms", 10) == 0) {
            if (!parse_int(v, vn, 1, 3600000, &x))
                return URL_FAIL(err, url, "timeout_ms='%.*s' (expected 1..3600000)", (int)vn,
                                v);
            u->timeout_ms = (int)x;
        } else if (kn == 18 && memcmp(q, "connect_timeout_ms", 18) == 0) {
            if (!parse_int(v, vn, 1, 3600000, &x))
                return URL_FAIL(err, url, "connect_timeout_ms='%.*s' (expected 1..3600000)",
                                (int)vn, v);
            u->connect_timeout_ms = (int)x;
        } else if (kn == 5 && memcmp(q, "chunk", 5) == 0) {
            if (!parse_size(v, vn, ST_REDIS_CHUNK_MIN, ST_REDIS_MAX_BULK_DEFAULT, &u->chunk))
                return URL_FAIL(err, url, "chunk='%.*s' (expected a size from 1K to 512M)",
                                (int)vn, v);
        } else {
            return URL_FAIL(err, url, "unknown option '%.*s' (known: prefix, timeout_ms, "
                            "connect_timeout_ms, chunk)", (int)kn, q);
        }
        q += n;
        if (*q == '&')
            q++;
    }
    return 0;
}

int st_redis_url_parse(const char *url, st_redis_url *u, psi_err *err)
{
    memset(u, 0, sizeof *u);
    strcpy(u->prefix, "psi:");
    u->connect_timeout_ms = 2000;
    u->timeout_ms = 10000;

    if (!url || strncmp(url, "redis://", 8) != 0)
        return URL_FAIL(err, url, "expected redis://[[user]:password@]host:port[/db]");
    if (strlen(url) >= 1024)
        return URL_FAIL(err, url, "longer than 1023 bytes");
    const char *p = url + 8;
    size_t auth_n = strcspn(p, "/?");
    const char *at = NULL;
    for (size_t i = 0; i < auth_n; i++)
        if (p[i] == '@')
            at = p + i; /* the last '@': an unescaped one in a password is taken too */
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (!colon)
            return URL_FAIL(err, url, "credentials must be [user]:password@ (no ':' before "
                            "'@')");
        size_t un = (size_t)(colon - p), pn = (size_t)(at - colon - 1);
        int rc = psi_pct_decode(p, un, u->user, sizeof u->user);
        if (rc < 0)
            return URL_FAIL(err, url, rc == -1 ? "bad %%XX escape in the user name"
                                               : "user name longer than 127 bytes");
        rc = psi_pct_decode(colon + 1, pn, u->pass, sizeof u->pass);
        if (rc < 0)
            return URL_FAIL(err, url, rc == -1 ? "bad %%XX escape in the password"
                                               : "password longer than 255 bytes");
        if (pn == 0)
            return URL_FAIL(err, url, "empty password before '@'");
        u->has_user = un > 0;
        u->has_pass = true;
        auth_n -= (size_t)(at + 1 - p);
        p = at + 1;
    }
    if (auth_n == 0)
        return URL_FAIL(err, url, "no host (expected host:port)");
    const char *hend = p + auth_n;
    while (p < hend) {
        /* A comma splits servers; inside [...] there is none to find. */
        const char *comma = memchr(p, ',', (size_t)(hend - p));
        size_t n = comma ? (size_t)(comma - p) : (size_t)(hend - p);
        if (u->nservers == ST_REDIS_MAX_SERVERS)
            return URL_FAIL(err, url, "more than %d servers", ST_REDIS_MAX_SERVERS);
        if (parse_server(url, p, n, &u->servers[u->nservers], err) < 0)
            return -1;
        for (int i = 0; i < u->nservers; i++)
            if (strcmp(u->servers[i].host, u->servers[u->nservers].host) == 0 &&
                u->servers[i].port == u->servers[u->nservers].port)
                return URL_FAIL(err, url, "server %s:%d named twice", u->servers[i].host,
                                u->servers[i].port);
        u->nservers++;
        p += n;
        if (comma) {
            p++;
            if (p == hend)
                return URL_FAIL(err, url, "empty server after ',' (expected host:port)");
        }
    }
    if (*p == '/') {
        size_t n = strcspn(++p, "?");
        long db = 0;
        if (n > 0 && !parse_int(p, n, 0, 1000000, &db))
            return URL_FAIL(err, url, "bad database '/%.*s' (expected a number, e.g. /0)",
                            (int)n, p);
        u->db = (int)db;
        p += n;
    }
    if (*p == '?')
        return parse_query(url, p + 1, u, err);
    return 0;
}

/* ---- slots, homes, chunks -------------------------------------------------- */

uint16_t st_redis_crc16(const void *buf, size_t len)
{
    const uint8_t *p = buf;
    uint16_t crc = 0;

    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)(p[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (uint16_t)(crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1);
    }
    return crc;
}

unsigned st_redis_keyslot(const char *key, size_t len)
{
    const char *open = memchr(key, '{', len);
    if (open) {
        size_t rest = len - (size_t)(open + 1 - key);
        const char *close = memchr(open + 1, '}', rest);
        if (close && close > open + 1) {
            key = open + 1;
            len = (size_t)(close - key);
        }
    }
    return st_redis_crc16(key, len) & (ST_REDIS_SLOTS - 1);
}

int st_redis_home(const char *key, size_t len, const st_redis_server *servers, int n)
{
    int best = 0;
    uint64_t best_w = 0;

    for (int i = 0; i < n; i++) {
        char id[ST_REDIS_HOST_MAX + 16];
        int idn = snprintf(id, sizeof id, "%s:%d", servers[i].host, servers[i].port);
        uint64_t w = XXH3_64bits_withSeed(key, len, XXH3_64bits(id, (size_t)idn));
        if (i == 0 || w > best_w) {
            best = i;
            best_w = w;
        }
    }
    return best;
}

size_t st_redis_nchunks(uint64_t size, size_t chunk)
{
    if (size == 0 || chunk == 0)
        return 0;
    return (size_t)((size + chunk - 1) / chunk);
}

size_t st_redis_chunk_len(uint64_t size, size_t chunk, size_t i)
{
    uint64_t off = (uint64_t)i * chunk;
    if (off >= size)
        return 0;
    return size - off < chunk ? (size_t)(size - off) : chunk;
}

size_t st_redis_chunk_size(size_t url_chunk, size_t server_max_bulk)
{
    size_t max = server_max_bulk ? server_max_bulk : ST_REDIS_MAX_BULK_DEFAULT;
    return url_chunk && url_chunk < max ? url_chunk : max;
}
