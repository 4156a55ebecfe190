/* zmq_peer: a plain libzmq program for the ZeroMQ integration tests
 * (t_zmq*.sh). It knows nothing of psinterpose; the tests run it with and
 * without the preload library and compare the bytes it records.
 *
 *   zmq_peer send   TYPE EP API OUT MSG...   send each MSG
 *   zmq_peer recv   TYPE EP API OUT N        receive N messages
 *   zmq_peer client TYPE EP API OUT MSG...   send each MSG, receive its reply
 *   zmq_peer echo   TYPE EP API OUT N        receive N messages, send each back
 *
 * TYPE: push pull pair req rep dealer router pub xpub sub. EP: bind:URL or
 * connect:URL; a bound peer creates OUT.ready once bound. API, for sending:
 * send const iov msg zc sendmsg; for receiving: recv msg recvmsg iov (a
 * client/echo receives with ZT_RAPI, an echo sends with ZT_SAPI; defaults
 * msg and send). MSG is frames separated by ',': SIZE random bytes, with a
 * prefix m (starts F5 50 53 5A, a token frame's header), e (F5 50 53 45, an
 * escape), x (F5 50 53 FF) or z (zero-copy: zmq_msg_init_data, counted),
 * or t:TEXT, or T:TEXT:SIZE (SIZE bytes starting with TEXT). A sender does not record a message whose first frame starts
 * with "skip" (a SUB filters it out).
 *
 * OUT holds, per frame received or sent: "F size more\n", then the first
 * min(size, ZT_TRUNC) bytes, then "\n"; a client writes replies to
 * OUT.reply. ZT_TRUNC also sets the zmq_recv buffer size. ZT_SUB: the SUB
 * subscription. ZT_SYNC=FILE, for a plain PUB that cannot see its
 * subscribers: the publisher sends one-frame "\1sync" messages until FILE
 * exists, then its messages; the SUB also subscribes to "\1sync", creates
 * FILE at the first one and never records or counts them.
 * Exit 3 on an inconsistency the program can see itself. */
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

static size_t trunc_at = SIZE_MAX;
static const char *sync_file; /* ZT_SYNC */
static atomic_int zc_freed;
static int zc_made;

static void die(const char *what)
{
    fprintf(stderr, "zmq_peer: %s: %s\n", what, zmq_strerror(zmq_errno()));
    exit(2);
}

static int sock_type(const char *t)
{
    static const struct { const char *n; int t; } types[] = {
        {"push", ZMQ_PUSH},     {"pull", ZMQ_PULL},     {"pair", ZMQ_PAIR},
        {"req", ZMQ_REQ},       {"rep", ZMQ_REP},       {"dealer", ZMQ_DEALER},
        {"router", ZMQ_ROUTER}, {"xpub", ZMQ_XPUB},     {"sub", ZMQ_SUB},
        {"pub", ZMQ_PUB},
    };
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (strcmp(t, types[i].n) == 0)
            return types[i].t;
    fprintf(stderr, "zmq_peer: unknown socket type %s\n", t);
    exit(2);
}

/* ---- frames ---------------------------------------------------------------- */

typedef struct frame {
    uint8_t *data;
    size_t len;
    int zc;
} frame;

typedef struct message {
    frame f[64];
    int n;
} message;

static void fill(uint8_t *p, size_t n, uint64_t seed)
{
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        memcpy(p + i, &x, 8);
    }
    for (; i < n; i++)
        p[i] = (uint8_t)(x >> (i % 8 * 8));
}

static void parse_message(const char *spec, int idx, message *m)
{
    char *copy = strdup(spec), *save = NULL;
    m->n = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        frame *f = &m->f[m->n];
        memset(f, 0, sizeof(*f));
        if (strncmp(tok, "T:", 2) == 0 && strchr(tok + 2, ':')) {
            /* T:TEXT:SIZE: SIZE bytes that start with TEXT (a topic) */
            const char *colon = strchr(tok + 2, ':');
            size_t tl = (size_t)(colon - tok - 2);
            f->len = strtoull(colon + 1, NULL, 10);
            f->data = malloc(f->len > tl ? f->len : tl);
            fill(f->data, f->len, (uint64_t)idx * 1000 + (uint64_t)m->n + 1);
            memcpy(f->data, tok + 2, tl);
            if (f->len < tl)
                f->len = tl;
        } else if (strncmp(tok, "t:", 2) == 0) {
            f->len = strlen(tok + 2);
            f->data = malloc(f->len + 1);
            memcpy(f->data, tok + 2, f->len);
        } else {
            char kind = (tok[0] >= '0' && tok[0] <= '9') ? 0 : tok[0];
            f->len = strtoull(kind ? tok + 1 : tok, NULL, 10);
            f->data = malloc(f->len ? f->len : 1);
            fill(f->data, f->len, (uint64_t)idx * 1000 + (uint64_t)m->n + 1);
            static const uint8_t hdr[3] = {0xF5, 0x50, 0x53};
            if (kind == 'm' || kind == 'e' || kind == 'x') {
                memcpy(f->data, hdr, f->len < 3 ? f->len : 3);
                if (f->len >= 4)
                    f->data[3] = kind == 'm' ? 0x5A : kind == 'e' ? 0x45 : 0xFF;
            }
            f->zc = kind == 'z';
        }
        m->n++;
    }
    free(copy);
}

static void record(FILE *out, const void *p, size_t size, int more)
{
    fprintf(out, "F %zu %d\n", size, more);
    fwrite(p, 1, size < trunc_at ? size : trunc_at, out);
    fputc('\n', out);
}

/* ---- sending ----------------------------------------------------------------- */

static void zc_free(void *data, void *hint)
{
    (void)hint;
    free(data);
    atomic_fetch_add(&zc_freed, 1);
}

static void send_frame(void *s, const char *api, frame *f, int flags)
{
    int rc;
    if (f->zc) {
        zmq_msg_t m;
        zmq_msg_init_data(&m, f->data, f->len, zc_free, NULL);
        zc_made++;
        rc = zmq_msg_send(&m, s, flags);
        f->data = NULL; /* libzmq owns it now */
        if (rc >= 0 && zmq_msg_size(&m) != 0) {
            fprintf(stderr, "zmq_peer: a sent message was not emptied\n");
            exit(3);
        }
    } else if (strcmp(api, "send") == 0 || strcmp(api, "iov") == 0) {
        rc = zmq_send(s, f->data, f->len, flags);
    } else if (strcmp(api, "const") == 0) {
        rc = zmq_send_const(s, f->data, f->len, flags); /* f->data lives until exit */
    } else {
        zmq_msg_t m;
        zmq_msg_init_size(&m, f->len);
        memcpy(zmq_msg_data(&m), f->data, f->len);
        rc = strcmp(api, "sendmsg") == 0 ? zmq_sendmsg(s, &m, flags) : zmq_msg_send(&m, s, flags);
        if (rc < 0)
            zmq_msg_close(&m);
    }
    if (rc < 0)
        die("send");
    if ((size_t)rc != f->len) {
        fprintf(stderr, "zmq_peer: send returned %d for a %zu-byte frame\n", rc, f->len);
        exit(3);
    }
}

/* Sends one message; records it unless its first frame says "skip". */
static void send_message(void *s, const char *api, message *m, FILE *out, const uint8_t *prefix,
                         size_t plen)
{
    bool keep = !(m->f[0].len >= 4 && memcmp(m->f[0].data, "skip", 4) == 0);
    if (keep && out)
        for (int i = 0; i < m->n; i++)
            record(out, m->f[i].data, m->f[i].len, i < m->n - 1);
    if (prefix) /* a ROUTER's reply: the routing id first */
        if (zmq_send(s, prefix, plen, ZMQ_SNDMORE) < 0)
            die("send routing id");
    if (strcmp(api, "iov") == 0) {
        struct iovec iov[64];
        for (int i = 0; i < m->n; i++)
            iov[i] = (struct iovec){m->f[i].data, m->f[i].len};
        int rc = zmq_sendiov(s, iov, (size_t)m->n, m->n > 1 ? ZMQ_SNDMORE : 0);
        if (rc < 0)
            die("zmq_sendiov");
        if ((size_t)rc != m->f[m->n - 1].len) {
            fprintf(stderr, "zmq_peer: zmq_sendiov returned %d\n", rc);
            exit(3);
        }
        return;
    }
    for (int i = 0; i < m->n; i++)
        send_frame(s, api, &m->f[i], i < m->n - 1 ? ZMQ_SNDMORE : 0);
}

/* ---- receiving --------------------------------------------------------------- */

static uint8_t *rbuf;
static size_t rbuf_len;

/* Receives one whole message; copies of its frames go into m (when m is
 * not NULL: an echo sends them back) and are recorded (a ROUTER's routing
 * id is kept apart in id, not recorded). */
static void recv_message(void *s, int type, const char *api, FILE *out, message *m, uint8_t *id,
                         size_t *idlen)
{
    int more = 1, i = 0;
    if (m)
        m->n = 0;
    if (strcmp(api, "iov") == 0) {
        struct iovec iov[64];
        size_t count = 64;
        int rc = zmq_recviov(s, iov, &count, 0);
        if (rc < 0 || (size_t)rc != count)
            die("zmq_recviov");
        for (size_t k = 0; k < count; k++) {
            int last = k == count - 1;
            if (type == ZMQ_ROUTER && k == 0) {
                memcpy(id, iov[k].iov_base, iov[k].iov_len);
                *idlen = iov[k].iov_len;
            } else {
                record(out, iov[k].iov_base, iov[k].iov_len, !last);
                if (m)
                    m->f[m->n++] = (frame){iov[k].iov_base, iov[k].iov_len, 0};
                else
                    free(iov[k].iov_base);
                continue;
            }
            free(iov[k].iov_base);
        }
        return;
    }
    while (more) {
        const uint8_t *p;
        size_t size;
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        if (strcmp(api, "recv") == 0) {
            int rc = zmq_recv(s, rbuf, rbuf_len, 0);
            if (rc < 0)
                die("zmq_recv");
            p = rbuf;
            size = (size_t)rc;
        } else {
            int rc = strcmp(api, "recvmsg") == 0 ? zmq_recvmsg(s, &msg, 0) : zmq_msg_recv(&msg, s, 0);
            if (rc < 0)
                die("zmq_msg_recv");
            p = zmq_msg_data(&msg);
            size = zmq_msg_size(&msg);
            if ((size_t)rc != size) {
                fprintf(stderr, "zmq_peer: receive returned %d for a %zu-byte frame\n", rc, size);
                exit(3);
            }
        }
        int rcvmore = 0;
        size_t l = sizeof(rcvmore);
        zmq_getsockopt(s, ZMQ_RCVMORE, &rcvmore, &l);
        if (strcmp(api, "recv") != 0) {
            /* The message itself must agree with the socket, and keep the
             * connection's metadata. */
            if (zmq_msg_more(&msg) != rcvmore || !zmq_msg_gets(&msg, "Socket-Type")) {
                fprintf(stderr, "zmq_peer: msg more=%d, RCVMORE=%d, Socket-Type=%s\n",
                        zmq_msg_more(&msg), rcvmore, zmq_msg_gets(&msg, "Socket-Type"));
                exit(3);
            }
        }
        more = rcvmore;
        if (sync_file && i == 0 && !more && size == 5 && memcmp(p, "\1sync", 5) == 0) {
            /* The publisher's handshake, not a message (ZT_SYNC). */
            FILE *f = fopen(sync_file, "w");
            if (f)
                fclose(f);
            zmq_msg_close(&msg);
            more = 1;
            continue;
        }
        if (type == ZMQ_ROUTER && i == 0) {
            memcpy(id, p, size);
            *idlen = size;
        } else {
            record(out, p, size, more);
            if (m) {
                frame *f = &m->f[m->n++];
                f->len = size < trunc_at ? size : trunc_at;
                f->data = malloc(f->len ? f->len : 1);
                memcpy(f->data, p, f->len);
                f->zc = 0;
            }
        }
        zmq_msg_close(&msg);
        i++;
    }
}

static void free_message(message *m)
{
    for (int i = 0; i < m->n; i++)
        free(m->f[i].data);
    m->n = 0;
}

int main(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: zmq_peer send|recv|client|echo TYPE EP API OUT ARGS...\n");
        return 2;
    }
    const char *role = argv[1], *ep = argv[3], *api = argv[4], *outp = argv[5];
    int type = sock_type(argv[2]);
    if (getenv("ZT_TRUNC"))
        trunc_at = strtoull(getenv("ZT_TRUNC"), NULL, 10);
    rbuf_len = trunc_at != SIZE_MAX ? trunc_at : (size_t)80 << 20;
    rbuf = malloc(rbuf_len ? rbuf_len : 1);
    const char *rapi = getenv("ZT_RAPI") ? getenv("ZT_RAPI") : "msg";
    const char *sapi = getenv("ZT_SAPI") ? getenv("ZT_SAPI") : "send";

    void *ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, type);
    if (!s)
        die("zmq_socket");
    sync_file = getenv("ZT_SYNC");
    if (type == ZMQ_SUB) {
        const char *sub = getenv("ZT_SUB") ? getenv("ZT_SUB") : "";
        zmq_setsockopt(s, ZMQ_SUBSCRIBE, sub, strlen(sub));
        if (sync_file)
            zmq_setsockopt(s, ZMQ_SUBSCRIBE, "\1sync", 5);
    }
    if (strncmp(ep, "bind:", 5) == 0) {
        if (zmq_bind(s, ep + 5) != 0)
            die("zmq_bind");
        char ready[4096];
        snprintf(ready, sizeof(ready), "%s.ready", outp);
        FILE *r = fopen(ready, "w");
        if (r)
            fclose(r);
    } else if (zmq_connect(s, ep + 8) != 0) {
        die("zmq_connect");
    }
    FILE *out = fopen(outp, "w");
    if (!out)
        die(outp);

    if (strcmp(role, "send") == 0 || strcmp(role, "client") == 0) {
        FILE *reply = NULL;
        if (strcmp(role, "client") == 0) {
            char rp[4096];
            snprintf(rp, sizeof(rp), "%s.reply", outp);
            reply = fopen(rp, "w");
        }
        if (type == ZMQ_XPUB) {
            /* Wait for the subscriber's subscription: a PUB drops what it
             * sends before it. */
            uint8_t sub[256];
            if (zmq_recv(s, sub, sizeof(sub), 0) < 0)
                die("xpub: wait for a subscription");
        }
        if (type == ZMQ_PUB && sync_file) {
            /* A plain PUB cannot see its subscribers: announce until the
             * subscriber says it hears us (bounded: 30 s). */
            for (int k = 0; k < 3000 && access(sync_file, F_OK) != 0; k++) {
                if (zmq_send(s, "\1sync", 5, 0) < 0)
                    die("pub: sync");
                struct timespec ts = {0, 10000000};
                nanosleep(&ts, NULL);
            }
            if (access(sync_file, F_OK) != 0) {
                fprintf(stderr, "zmq_peer: no subscriber heard the publisher\n");
                exit(2);
            }
        }
        message *keep = calloc((size_t)argc, sizeof(message));
        for (int i = 6; i < argc; i++) {
            message *m = &keep[i];
            parse_message(argv[i], i, m);
            send_message(s, api, m, out, NULL, 0);
            if (reply)
                recv_message(s, type, rapi, reply, NULL, NULL, NULL);
        }
        if (reply)
            fclose(reply);
        fclose(out);
        zmq_close(s);
        zmq_ctx_term(ctx);
        for (int i = 6; i < argc; i++)
            free_message(&keep[i]);
        free(keep);
        printf("zc_made %d zc_freed %d\n", zc_made, atomic_load(&zc_freed));
        return zc_made == atomic_load(&zc_freed) ? 0 : 3;
    }
    long n = argc > 6 ? strtol(argv[6], NULL, 10) : 1;
    for (long i = 0; i < n; i++) {
        message m = {0};
        uint8_t id[256];
        size_t idlen = 0;
        bool echo = strcmp(role, "echo") == 0;
        recv_message(s, type, api, out, echo ? &m : NULL, id, &idlen);
        if (echo) {
            send_message(s, sapi, &m, NULL, type == ZMQ_ROUTER ? id : NULL, idlen);
            free_message(&m);
        }
    }
    fclose(out);
    zmq_close(s);
    zmq_ctx_term(ctx);
    printf("received %ld messages\n", n);
    return 0;
}
