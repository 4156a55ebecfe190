/* st_zmq_proto: the ZeroMQ store's codecs and its private libzmq loader
 * (st_zmq.h). Wire format and key encoding: docs/store-zmq.md. */
#include "st_zmq.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "psi_le.h"
#include "psi_registry.h"
#include "psi_text.h"

/* ---- loader --------------------------------------------------------------- */

static stz_api stz_table;
static const stz_api *stz_loaded;
static char stz_load_error[200];
static pthread_once_t stz_once = PTHREAD_ONCE_INIT;

#define STZ_SYM(field, name)                                                  \
    do {                                                                      \
        *(void **)&stz_table.field = dlsym(h, name);                          \
        if (!stz_table.field) {                                               \
            snprintf(stz_load_error, sizeof stz_load_error,                   \
                     "libzmq.so.5 lacks %s (libzmq5 too old?)", name);        \
            return;                                                           \
        }                                                                     \
    } while (0)

static void stz_load_once(void)
{
    void *h = dlopen("libzmq.so.5", RTLD_LOCAL | RTLD_LAZY);
    if (!h) {
        snprintf(stz_load_error, sizeof stz_load_error,
                 "cannot load libzmq.so.5 (install the Debian package libzmq5): %s",
                 dlerror());
        return;
    }
    STZ_SYM(ctx_new, "zmq_ctx_new");
    STZ_SYM(ctx_set, "zmq_ctx_set");
    STZ_SYM(ctx_term, "zmq_ctx_term");
    STZ_SYM(socket, "zmq_socket");
    STZ_SYM(close, "zmq_close");
    STZ_SYM(setsockopt, "zmq_setsockopt");
    STZ_SYM(bind, "zmq_bind");
    STZ_SYM(connect, "zmq_connect");
    STZ_SYM(msg_init, "zmq_msg_init");
    STZ_SYM(msg_init_size, "zmq_msg_init_size");
    STZ_SYM(msg_init_data, "zmq_msg_init_data");
    STZ_SYM(msg_send, "zmq_msg_send");
    STZ_SYM(msg_recv, "zmq_msg_recv");
    STZ_SYM(msg_close, "zmq_msg_close");
    STZ_SYM(msg_copy, "zmq_msg_copy");
    STZ_SYM(msg_move, "zmq_msg_move");
    STZ_SYM(msg_data, "zmq_msg_data");
    STZ_SYM(msg_size, "zmq_msg_size");
    STZ_SYM(msg_more, "zmq_msg_more");
    STZ_SYM(send, "zmq_send");
    STZ_SYM(poll, "zmq_poll");
    STZ_SYM(err, "zmq_errno");
    STZ_SYM(strerror, "zmq_strerror");
    stz_loaded = &stz_table;
}

const stz_api *stz_load(psi_err *err)
{
    pthread_once(&stz_once, stz_load_once);
    if (!stz_loaded)
        psi_fail(err, ENOSYS, "zmq store: %s", stz_load_error);
    return stz_loaded;
}

/* ---- requests and replies ------------------------------------------------- */

/* Request header, 40 bytes:
 *   0 'P' 'Z'   2 version   3 op   4 id u32   8 lifetime   9..11 zero
 *   12 ttl u32  16 size u64  24 sum.lo u64  32 sum.hi u64 */
void stz_req_encode(const stz_req *r, uint8_t out[STZ_REQ_LEN])
{
    memset(out, 0, STZ_REQ_LEN);
    out[0] = STZ_MAGIC0;
    out[1] = STZ_MAGIC1;
    out[2] = STZ_VERSION;
    out[3] = r->op;
    psi_put_le32(out + 4, r->id);
    out[8] = r->lifetime;
    psi_put_le32(out + 12, r->ttl);
    psi_put_le64(out + 16, r->size);
    psi_put_le64(out + 24, r->sum.lo);
    psi_put_le64(out + 32, r->sum.hi);
}

static bool op_names_object(uint8_t op)
{
    return op == STZ_PUT || op == STZ_GET || op == STZ_RELEASE;
}

int stz_req_decode(const uint8_t *in, size_t len, stz_req *r, psi_err *err)
{
    memset(r, 0, sizeof *r);
    if (len != STZ_REQ_LEN)
        return psi_fail(err, EPROTO, "request header is %zu bytes, expected %d", len,
                        STZ_REQ_LEN);
    if (in[0] != STZ_MAGIC0 || in[1] != STZ_MAGIC1)
        return psi_fail(err, EPROTO, "request has no PZ magic");
    if (in[2] != STZ_VERSION)
        return psi_fail(err, EPROTO, "request version %u, expected %d", in[2], STZ_VERSION);
    if (in[3] < STZ_PUT || in[3] > STZ_OP_MAX)
        return psi_fail(err, EPROTO, "unknown request op %u", in[3]);
    if (in[8] > PSI_LIFE_EVICT_ON_READ)
        return psi_fail(err, EPROTO, "unknown lifetime %u", in[8]);
    if (in[9] | in[10] | in[11])
        return psi_fail(err, EPROTO, "reserved request bytes are not zero");
    r->op = in[3];
    r->id = psi_get_le32(in + 4);
    r->lifetime = in[8];
    r->ttl = psi_get_le32(in + 12);
    r->size = psi_get_le64(in + 16);
    r->sum.lo = psi_get_le64(in + 24);
    r->sum.hi = psi_get_le64(in + 32);
    if (op_names_object(r->op) && r->size == 0)
        return psi_fail(err, EPROTO, "request op %u names an object of 0 bytes", r->op);
    return 0;
}

int stz_req_check(const stz_req *r, int more, size_t len, psi_err *err)
{
    if (r->op == STZ_PUT) {
        if (more != 1)
            return psi_fail(err, EPROTO, "PUT has %d payload frames, expected 1", more);
        if (len != r->size)
            return psi_fail(err, EPROTO, "PUT payload is %zu bytes, header says %llu", len,
                            (unsigned long long)r->size);
        return 0;
    }
    if (more != 0)
        return psi_fail(err, EPROTO, "request op %u has %d extra frames", r->op, more);
    return 0;
}

/* Reply header, 32 bytes:
 *   0 'P' 'Z'   2 version   3 op   4 id u32   8 status u32   12 zero u32
 *   16 v1 u64   24 v2 u64 */
void stz_rep_encode(const stz_rep *r, uint8_t out[STZ_REP_LEN])
{
    memset(out, 0, STZ_REP_LEN);
    out[0] = STZ_MAGIC0;
    out[1] = STZ_MAGIC1;
    out[2] = STZ_VERSION;
    out[3] = r->op;
    psi_put_le32(out + 4, r->id);
    psi_put_le32(out + 8, r->status);
    psi_put_le64(out + 16, r->v1);
    psi_put_le64(out + 24, r->v2);
}

int stz_rep_decode(const uint8_t *in, size_t len, stz_rep *r, psi_err *err)
{
    memset(r, 0, sizeof *r);
    if (len != STZ_REP_LEN)
        return psi_fail(err, EPROTO, "reply header is %zu bytes, expected %d", len,
                        STZ_REP_LEN);
    if (in[0] != STZ_MAGIC0 || in[1] != STZ_MAGIC1)
        return psi_fail(err, EPROTO, "reply has no PZ magic");
    if (in[2] != STZ_VERSION)
        return psi_fail(err, EPROTO, "reply version %u, expected %d", in[2], STZ_VERSION);
    if (in[3] < STZ_PUT || in[3] > STZ_OP_MAX)
        return psi_fail(err, EPROTO, "unknown reply op %u", in[3]);
    if (psi_get_le32(in + 12) != 0)
        return psi_fail(err, EPROTO, "reserved reply bytes are not zero");
    r->op = in[3];
    r->id = psi_get_le32(in + 4);
    r->status = psi_get_le32(in + 8);
    r->v1 = psi_get_le64(in + 16);
    r->v2 = psi_get_le64(in + 24);
    if (r->status > 4095)
        return psi_fail(err, EPROTO, "reply status %u is not an errno value", r->status);
    return 0;
}

int stz_rep_check(const stz_rep *r, int more, size_t len, psi_err *err)
{
    bool data = r->status != 0 || r->op == STZ_PUT || r->op == STZ_GET || r->op == STZ_LS ||
                r->op == STZ_STATS;
    if (more != (data ? 1 : 0))
        return psi_fail(err, EPROTO, "reply op %u (status %u) has %d data frames, expected %d",
                        r->op, r->status, more, data ? 1 : 0);
    if (r->status != 0) {
        if (len > STZ_ERRMSG_MAX)
            return psi_fail(err, EPROTO, "error message of %zu bytes", len);
        return 0;
    }
    switch (r->op) {
    case STZ_PUT:
        if (len > STZ_ADVERTISE_MAX)
            return psi_fail(err, EPROTO, "PUT reply advertises %zu bytes", len);
        return 0;
    case STZ_GET:
        if (len != r->v1)
            return psi_fail(err, EPROTO, "GET reply payload is %zu bytes, header says %llu",
                            len, (unsigned long long)r->v1);
        return 0;
    case STZ_LS:
        if (len % STZ_LS_REC_LEN != 0)
            return psi_fail(err, EPROTO, "LS reply of %zu bytes is not whole records", len);
        return 0;
    case STZ_STATS:
        if (len != STZ_STATS_LEN)
            return psi_fail(err, EPROTO, "STATS reply is %zu bytes, expected %d", len,
                            STZ_STATS_LEN);
        return 0;
    default:
        return 0;
    }
}

/* LS record: sum.lo sum.hi size age refs expires (u64/i64 each), lifetime,
 * 7 zero bytes. */
void stz_ls_encode(const stz_ls_rec *r, uint8_t out[STZ_LS_REC_LEN])
{
    memset(out, 0, STZ_LS_REC_LEN);
    psi_put_le64(out, r->sum.lo);
    psi_put_le64(out + 8, r->sum.hi);
    psi_put_le64(out + 16, r->size);
    psi_put_le64(out + 24, (uint64_t)r->age);
    psi_put_le64(out + 32, (uint64_t)r->refs);
    psi_put_le64(out + 40, (uint64_t)r->expires);
    out[48] = r->lifetime;
}

void stz_ls_decode(const uint8_t in[STZ_LS_REC_LEN], stz_ls_rec *r)
{
    r->sum.lo = psi_get_le64(in);
    r->sum.hi = psi_get_le64(in + 8);
    r->size = psi_get_le64(in + 16);
    r->age = (int64_t)psi_get_le64(in + 24);
    r->refs = (int64_t)psi_get_le64(in + 32);
    r->expires = (int64_t)psi_get_le64(in + 40);
    r->lifetime = in[48];
}

void stz_stats_encode(const stz_stats *s, uint8_t out[STZ_STATS_LEN])
{
    const uint64_t v[8] = {s->objects, s->bytes, s->max_bytes, s->puts,
                           s->gets, s->dedup_hits, s->refused_full, s->expired};
    for (int i = 0; i < 8; i++)
        psi_put_le64(out + 8 * i, v[i]);
}

void stz_stats_decode(const uint8_t in[STZ_STATS_LEN], stz_stats *s)
{
    uint64_t *v[8] = {&s->objects, &s->bytes, &s->max_bytes, &s->puts,
                      &s->gets, &s->dedup_hits, &s->refused_full, &s->expired};
    for (int i = 0; i < 8; i++)
        *v[i] = psi_get_le64(in + 8 * i);
}

/* ---- keys ----------------------------------------------------------------- */

static const char hexd[] = "0123456789abcdef";

static char *hex_put(char *o, const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        *o++ = hexd[b[i] >> 4];
        *o++ = hexd[b[i] & 15];
    }
    return o;
}

/* Lowercase hex only: a key has exactly one spelling. */
#define hex_nib psi_hex_digit_lower

static bool hex_get(const char *s, size_t n, uint8_t *out)
{
    for (size_t i = 0; i < n; i++) {
        int hi = hex_nib(s[2 * i]), lo = hex_nib(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

static bool hash_get(const char *s, psi_hash128 *sum)
{
    uint8_t b[16];
    if (!hex_get(s, 16, b))
        return false;
    sum->hi = sum->lo = 0;
    for (int i = 0; i < 8; i++) {
        sum->hi = sum->hi << 8 | b[i];
        sum->lo = sum->lo << 8 | b[8 + i];
    }
    return true;
}

int stz_key_encode(const stz_ep *ep, const psi_hash128 *sum, char out[PSI_TOKEN_KEY_MAX + 1],
                   psi_err *err)
{
    char h[33], *o = out;
    psi_hash_hex(sum, h);
    switch (ep->kind) {
    case STZ_EP_DEFAULT:
        *o++ = 'i';
        break;
    case STZ_EP_TCP:
        *o++ = 't';
        o = hex_put(o, ep->addr, ep->family == AF_INET6 ? 16 : 4);
        o += sprintf(o, "-%u-", (unsigned)ep->port);
        break;
    case STZ_EP_IPC: {
        size_t n = strlen(ep->path);
        if (n == 0 || n > STZ_IPC_PATH_MAX)
            return psi_fail(err, ENAMETOOLONG, "zmq store ipc://%s: a token can name an ipc "
                            "path of 1..%d bytes; use tcp:// or the default zmq://",
                            ep->path, STZ_IPC_PATH_MAX);
        *o++ = 'x';
        o = hex_put(o, (const uint8_t *)ep->path, n);
        *o++ = '-';
        break;
    }
    default:
        return psi_fail(err, EINVAL, "zmq store: endpoint of unknown kind %d", ep->kind);
    }
    memcpy(o, h, 33);
    return (int)(o - out) + 32;
}

static int key_bad(psi_err *err, const char *key, size_t len, const char *why)
{
    return psi_fail(err, EIO, "zmq store: token key '%.*s' is not a zmq store key: %s",
                    (int)(len > 64 ? 64 : len), key, why);
}

int stz_key_decode(const char *key, size_t len, stz_ep *ep, psi_hash128 *sum, psi_err *err)
{
    memset(ep, 0, sizeof *ep);
    if (len < 33 || len > PSI_TOKEN_KEY_MAX)
        return key_bad(err, key, len, "wrong length");
    const char *h = key + len - 32;
    if (!hash_get(h, sum))
        return key_bad(err, key, len, "the hash is not 32 lowercase hex digits");
    switch (key[0]) {
    case 'i':
        if (len != 33)
            return key_bad(err, key, len, "'i' keys are 33 bytes");
        ep->kind = STZ_EP_DEFAULT;
        return 0;
    case 't': {
        const char *p = key + 1, *dash = memchr(p, '-', len - 1);
        if (!dash)
            return key_bad(err, key, len, "no '-' after the address");
        size_t an = (size_t)(dash - p);
        if (an != 8 && an != 32)
            return key_bad(err, key, len, "the address is neither 8 nor 32 hex digits");
        if (!hex_get(p, an / 2, ep->addr))
            return key_bad(err, key, len, "the address is not lowercase hex");
        const char *q = dash + 1;
        unsigned port = 0;
        int digits = 0;
        while (q < h && *q >= '0' && *q <= '9' && digits < 6) {
            port = port * 10 + (unsigned)(*q++ - '0');
            digits++;
        }
        if (digits == 0 || (digits > 1 && dash[1] == '0') || port == 0 || port > 65535)
            return key_bad(err, key, len, "the port is not 1..65535 without leading zeros");
        if (q + 1 != h || *q != '-')
            return key_bad(err, key, len, "no '-' between the port and the hash");
        ep->kind = STZ_EP_TCP;
        ep->family = an == 8 ? AF_INET : AF_INET6;
        ep->port = (uint16_t)port;
        return 0;
    }
    case 'x': {
        size_t pn = len - 1 - 1 - 32;
        if (len < 1 + 2 + 1 + 32 || key[len - 33] != '-' || pn % 2 != 0 ||
            pn / 2 > STZ_IPC_PATH_MAX)
            return key_bad(err, key, len, "malformed ipc path");
        if (!hex_get(key + 1, pn / 2, (uint8_t *)ep->path))
            return key_bad(err, key, len, "the ipc path is not lowercase hex");
        ep->path[pn / 2] = '\0';
        if (ep->path[0] != '/' || strlen(ep->path) != pn / 2)
            return key_bad(err, key, len, "the ipc path is not absolute");
        ep->kind = STZ_EP_IPC;
        return 0;
    }
    default:
        return key_bad(err, key, len, "unknown endpoint kind");
    }
}

/* ---- endpoints ------------------------------------------------------------ */

const char *stz_default_path(void)
{
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    static char path[256];
    static const char *rt;

    /* psi_runtime_dir caches its answer once it succeeds; so do we. */
    const char *d = psi_runtime_dir();
    if (!d)
        return NULL;
    pthread_mutex_lock(&lock);
    if (rt != d && (size_t)snprintf(path, sizeof path, "%s/store.sock", d) < sizeof path)
        rt = d;
    pthread_mutex_unlock(&lock);
    return rt == d ? path : NULL;
}

int stz_ep_string(const stz_ep *ep, char *out, size_t cap, psi_err *err)
{
    char a[INET6_ADDRSTRLEN];
    int n;

    switch (ep->kind) {
    case STZ_EP_DEFAULT: {
        const char *p = stz_default_path();
        if (!p)
            return psi_fail(err, ENOENT, "zmq store: no runtime directory for the node-local "
                            "endpoint (set PSI_RUNTIME_DIR)");
        n = snprintf(out, cap, "ipc://%s", p);
        break;
    }
    case STZ_EP_TCP:
        inet_ntop(ep->family, ep->addr, a, sizeof a);
        n = snprintf(out, cap, ep->family == AF_INET6 ? "tcp://[%s]:%u" : "tcp://%s:%u", a,
                     (unsigned)ep->port);
        break;
    case STZ_EP_IPC:
        n = snprintf(out, cap, "ipc://%s", ep->path);
        break;
    default:
        return psi_fail(err, EINVAL, "zmq store: endpoint of unknown kind %d", ep->kind);
    }
    if (n < 0 || (size_t)n >= cap)
        return psi_fail(err, ENAMETOOLONG, "zmq store: endpoint too long");
    return 0;
}

/* host (no brackets) -> address; resolve: also ask getaddrinfo. */
static int host_parse(const char *host, bool resolve, stz_ep *ep)
{
    if (inet_pton(AF_INET, host, ep->addr) == 1) {
        ep->family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, host, ep->addr) == 1) {
        ep->family = AF_INET6;
        return 0;
    }
    if (strcmp(host, "localhost") == 0) {
        ep->family = AF_INET;
        memcpy(ep->addr, "\x7f\0\0\x01", 4);
        return 0;
    }
    if (!resolve)
        return -1;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    if (getaddrinfo(host, NULL, &hints, &ai) != 0 || !ai)
        return -1;
    int rc = -1;
    for (struct addrinfo *i = ai; i && rc < 0; i = i->ai_next) {
        if (i->ai_family == AF_INET) {
            memcpy(ep->addr, &((struct sockaddr_in *)i->ai_addr)->sin_addr, 4);
            ep->family = AF_INET;
            rc = 0;
        } else if (i->ai_family == AF_INET6) {
            memcpy(ep->addr, &((struct sockaddr_in6 *)i->ai_addr)->sin6_addr, 16);
            ep->family = AF_INET6;
            rc = 0;
        }
    }
    freeaddrinfo(ai);
    return rc;
}

/* HOST:PORT or [V6]:PORT of `len` bytes into ep (STZ_EP_TCP). */
static int hostport_parse(const char *s, size_t len, bool resolve, stz_ep *ep, const char *what,
                          psi_err *err)
{
    char host[256];
    const char *colon;
    size_t hn;

    if (len > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (!close || close + 1 >= s + len || close[1] != ':')
            return psi_fail(err, EINVAL, "%s: malformed [address]:port in '%.*s'", what,
                            (int)len, s);
        hn = (size_t)(close - s - 1);
        colon = close + 1;
        if (hn == 0 || hn >= sizeof host)
            return psi_fail(err, EINVAL, "%s: bad address in '%.*s'", what, (int)len, s);
        memcpy(host, s + 1, hn);
    } else {
        colon = memrchr(s, ':', len);
        if (!colon)
            return psi_fail(err, EINVAL, "%s: no port in '%.*s' (expected host:port)", what,
                            (int)len, s);
        hn = (size_t)(colon - s);
        if (hn == 0 || hn >= sizeof host || memchr(s, ':', hn))
            return psi_fail(err, EINVAL, "%s: bad host in '%.*s' (IPv6 needs [brackets])",
                            what, (int)len, s);
        memcpy(host, s, hn);
    }
    host[hn] = '\0';
    const char *p = colon + 1, *end = s + len;
    unsigned port = 0;
    if (p == end || end - p > 5)
        return psi_fail(err, EINVAL, "%s: bad port in '%.*s'", what, (int)len, s);
    for (; p < end; p++) {
        if (*p < '0' || *p > '9')
            return psi_fail(err, EINVAL, "%s: bad port in '%.*s'", what, (int)len, s);
        port = port * 10 + (unsigned)(*p - '0');
    }
    if (port == 0 || port > 65535)
        return psi_fail(err, EINVAL, "%s: port %u out of range in '%.*s'", what, port, (int)len,
                        s);
    if (host_parse(host, resolve, ep) < 0)
        return psi_fail(err, EINVAL, "%s: cannot resolve host '%s'", what, host);
    ep->kind = STZ_EP_TCP;
    ep->port = (uint16_t)port;
    return 0;
}

static int ipc_path_set(const char *p, size_t n, stz_ep *ep, const char *what, psi_err *err)
{
    if (n == 0 || p[0] != '/')
        return psi_fail(err, EINVAL, "%s: ipc path '%.*s' is not absolute", what, (int)n, p);
    if (n >= sizeof ep->path)
        return psi_fail(err, ENAMETOOLONG, "%s: ipc path '%.*s' is too long", what, (int)n, p);
    memcpy(ep->path, p, n);
    ep->path[n] = '\0';
    ep->kind = STZ_EP_IPC;
    return 0;
}

int stz_ep_parse(const char *s, stz_ep *ep, psi_err *err)
{
    memset(ep, 0, sizeof *ep);
    if (strncmp(s, "tcp://", 6) == 0)
        return hostport_parse(s + 6, strlen(s + 6), false, ep, "endpoint", err);
    if (strncmp(s, "ipc://", 6) == 0)
        return ipc_path_set(s + 6, strlen(s + 6), ep, "endpoint", err);
    if (strstr(s, "://"))
        return psi_fail(err, EINVAL, "endpoint '%s': only tcp:// and ipc:// are supported", s);
    return hostport_parse(s, strlen(s), false, ep, "endpoint", err);
}

bool stz_ep_loopback(const stz_ep *ep)
{
    static const uint8_t v6lo[16] = {[15] = 1};
    if (ep->kind != STZ_EP_TCP)
        return true;
    if (ep->family == AF_INET)
        return ep->addr[0] == 127;
    return memcmp(ep->addr, v6lo, 16) == 0;
}

bool stz_ep_equal(const stz_ep *a, const stz_ep *b)
{
    if (a->kind != b->kind)
        return false;
    switch (a->kind) {
    case STZ_EP_TCP:
        return a->family == b->family && a->port == b->port &&
               memcmp(a->addr, b->addr, a->family == AF_INET6 ? 16 : 4) == 0;
    case STZ_EP_IPC:
        return strcmp(a->path, b->path) == 0;
    default:
        return true;
    }
}

/* ---- URLs ----------------------------------------------------------------- */

static int query_parse(const char *q, stz_url *u, const char *url, psi_err *err)
{
    while (*q) {
        const char *amp = strchr(q, '&');
        size_t n = amp ? (size_t)(amp - q) : strlen(q);
        char *end;
        if (n > 10 && strncmp(q, "autostart=", 10) == 0 && n == 11 &&
            (q[10] == '0' || q[10] == '1')) {
            u->autostart = q[10] == '1';
        } else if (n > 11 && strncmp(q, "timeout_ms=", 11) == 0) {
            long v = strtol(q + 11, &end, 10);
            if (end != q + n || v < 1 || v > 600000)
                return psi_fail(err, EINVAL, "PSI_STORE '%s': timeout_ms must be 1..600000",
                                url);
            u->timeout_ms = (int)v;
        } else {
            return psi_fail(err, EINVAL, "PSI_STORE '%s': unknown parameter '%.*s' (known: "
                            "autostart=0|1, timeout_ms=N)", url, (int)n, q);
        }
        q += n;
        if (*q == '&')
            q++;
    }
    return 0;
}

int stz_url_parse(const char *url, stz_url *u, psi_err *err)
{
    memset(u, 0, sizeof *u);
    u->timeout_ms = STZ_TIMEOUT_MS;
    if (strncmp(url, "zmq://", 6) != 0)
        return psi_fail(err, EINVAL, "PSI_STORE: '%s' is not a zmq:// URL", url);
    const char *p = url + 6, *q = strchr(p, '?');
    size_t n = q ? (size_t)(q - p) : strlen(p);
    int rc;

    if (n == 0) {
        u->ep.kind = STZ_EP_DEFAULT;
        u->autostart = true;
        rc = 0;
    } else if (p[0] == '/') {
        if (n > STZ_IPC_PATH_MAX)
            return psi_fail(err, ENAMETOOLONG, "PSI_STORE '%s': a token can name an ipc path "
                            "of at most %d bytes; use a shorter path, tcp:// or zmq://", url,
                            STZ_IPC_PATH_MAX);
        rc = ipc_path_set(p, n, &u->ep, "PSI_STORE", err);
    } else {
        if (memchr(p, '/', n))
            return psi_fail(err, EINVAL, "PSI_STORE '%s': expected zmq://host:port (no path)",
                            url);
        rc = hostport_parse(p, n, true, &u->ep, "PSI_STORE", err);
    }
    if (rc < 0)
        return -1;
    if (q && query_parse(q + 1, u, url, err) < 0)
        return -1;
    if (u->autostart && !stz_ep_loopback(&u->ep))
        return psi_fail(err, EINVAL, "PSI_STORE '%s': autostart needs a local endpoint", url);
    return 0;
}
