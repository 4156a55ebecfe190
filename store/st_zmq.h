/* st_zmq: internals of the ZeroMQ peer store shared by the connector
 * (st_zmq.c), the object server (tools/psi_store_server.c) and the unit
 * tests: the private libzmq loader, the request/reply codec, the token key
 * codec and the URL parser. Wire format and key encoding: docs/store-zmq.md.
 */
#ifndef ST_ZMQ_H
#define ST_ZMQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <zmq.h>

#include "psi_err.h"
#include "psi_token.h"

/* ---- libzmq, loaded privately ------------------------------------------ */

/* The libzmq functions we call, resolved once from libzmq.so.5 (dlopen,
 * RTLD_LOCAL): the preload library gains no link-time dependency. */
typedef struct stz_api {
    void *(*ctx_new)(void);
    int (*ctx_set)(void *ctx, int opt, int val);
    int (*ctx_term)(void *ctx);
    void *(*socket)(void *ctx, int type);
    int (*close)(void *sock);
    int (*setsockopt)(void *sock, int opt, const void *val, size_t len);
    int (*bind)(void *sock, const char *ep);
    int (*connect)(void *sock, const char *ep);
    int (*msg_init)(zmq_msg_t *m);
    int (*msg_init_size)(zmq_msg_t *m, size_t n);
    int (*msg_init_data)(zmq_msg_t *m, void *data, size_t n, zmq_free_fn *ffn, void *hint);
    int (*msg_send)(zmq_msg_t *m, void *sock, int flags);
    int (*msg_recv)(zmq_msg_t *m, void *sock, int flags);
    int (*msg_close)(zmq_msg_t *m);
    int (*msg_copy)(zmq_msg_t *dst, zmq_msg_t *src);
    int (*msg_move)(zmq_msg_t *dst, zmq_msg_t *src);
    void *(*msg_data)(zmq_msg_t *m);
    size_t (*msg_size)(const zmq_msg_t *m);
    int (*msg_more)(const zmq_msg_t *m);
    int (*send)(void *sock, const void *buf, size_t n, int flags);
    int (*poll)(zmq_pollitem_t *items, int n, long timeout_ms);
    int (*err)(void);
    const char *(*strerror)(int e);
} stz_api;

/* The table, or NULL with err naming the library and the Debian package. */
const stz_api *stz_load(psi_err *err);

/* ---- protocol (docs/store-zmq.md, "Protocol") -------------------------- */

#define STZ_MAGIC0 'P'
#define STZ_MAGIC1 'Z'
#define STZ_VERSION 1
#define STZ_REQ_LEN 40    /* request header frame */
#define STZ_REP_LEN 32    /* reply header frame */
#define STZ_LS_REC_LEN 56 /* one object in an LS reply */
#define STZ_STATS_LEN 64  /* the STATS reply's data frame */
#define STZ_ADVERTISE_MAX 64 /* HOST:PORT in a PUT reply */
#define STZ_ERRMSG_MAX 200   /* an error reply's message frame */

enum stz_op {
    STZ_PUT = 1,     /* + payload frame; reply data: advertised HOST:PORT */
    STZ_GET = 2,     /* reply data: the payload */
    STZ_RELEASE = 3, /* drop one reference */
    STZ_LS = 4,      /* reply data: STZ_LS_REC_LEN records */
    STZ_STATS = 5,   /* reply data: STZ_STATS_LEN bytes */
    STZ_GC = 6,      /* drop expired objects now; v1 objects, v2 bytes */
    STZ_PING = 7,
};
#define STZ_OP_MAX STZ_PING

typedef struct stz_req {
    uint8_t op;
    uint32_t id;      /* echoed in the reply: stale replies are skipped */
    uint8_t lifetime; /* psi_lifetime: PUT and RELEASE */
    uint32_t ttl;     /* PUT: seconds, 0 = server default */
    uint64_t size;    /* PUT/GET/RELEASE: payload bytes */
    psi_hash128 sum;  /* PUT/GET/RELEASE: the object's xxh3-128 */
} stz_req;

typedef struct stz_rep {
    uint8_t op;
    uint32_t id;
    uint32_t status; /* 0 or an errno value (ENOSPC: store full, ENOENT) */
    uint64_t v1, v2; /* per op: PUT refs, GET size, GC objects/bytes */
} stz_rep;

void stz_req_encode(const stz_req *r, uint8_t out[STZ_REQ_LEN]);
/* Exactly STZ_REQ_LEN bytes, magic, version, known op and lifetime, zero
 * reserved bytes, size >= 1 for PUT/GET/RELEASE. 0 or -1 (EPROTO). */
int stz_req_decode(const uint8_t *in, size_t len, stz_req *r, psi_err *err);
/* The frames after the header: `more` frames in total after it (0 or 1),
 * the first of `len` bytes. PUT needs one payload frame of r->size bytes;
 * the other ops none. */
int stz_req_check(const stz_req *r, int more, size_t len, psi_err *err);

void stz_rep_encode(const stz_rep *r, uint8_t out[STZ_REP_LEN]);
int stz_rep_decode(const uint8_t *in, size_t len, stz_rep *r, psi_err *err);
/* A reply's data frame against its header: an error has a message frame;
 * GET's payload is v1 bytes; LS is whole records; STATS is STZ_STATS_LEN;
 * PUT's advertise string is short. `more` as for stz_req_check. */
int stz_rep_check(const stz_rep *r, int more, size_t len, psi_err *err);

typedef struct stz_ls_rec {
    psi_hash128 sum;
    uint64_t size;
    int64_t age, refs, expires;
    uint8_t lifetime;
} stz_ls_rec;

void stz_ls_encode(const stz_ls_rec *r, uint8_t out[STZ_LS_REC_LEN]);
void stz_ls_decode(const uint8_t in[STZ_LS_REC_LEN], stz_ls_rec *r);

typedef struct stz_stats {
    uint64_t objects, bytes, max_bytes, puts, gets, dedup_hits, refused_full, expired;
} stz_stats;

void stz_stats_encode(const stz_stats *s, uint8_t out[STZ_STATS_LEN]);
void stz_stats_decode(const uint8_t in[STZ_STATS_LEN], stz_stats *s);

/* ---- endpoints, keys, URLs (docs/store-zmq.md) -------------------------- */

enum stz_ep_kind {
    STZ_EP_DEFAULT = 1, /* ipc://<psi_runtime_dir()>/store.sock */
    STZ_EP_TCP = 2,
    STZ_EP_IPC = 3,
};

#define STZ_IPC_PATH_MAX 47 /* a path that fits a key as hex */
#define STZ_EP_STR_MAX 160

typedef struct stz_ep {
    int kind;          /* stz_ep_kind */
    int family;        /* STZ_EP_TCP: AF_INET or AF_INET6 */
    uint8_t addr[16];  /* network order */
    uint16_t port;
    char path[108];    /* STZ_EP_IPC */
} stz_ep;

/* "i<H>", "t<8 or 32 hex>-<port>-<H>" or "x<hex path>-<H>", H the 32 hex
 * digits of the hash. Returns the length, or -1 (ENAMETOOLONG: an ipc path
 * longer than STZ_IPC_PATH_MAX). */
int stz_key_encode(const stz_ep *ep, const psi_hash128 *sum, char out[PSI_TOKEN_KEY_MAX + 1],
                   psi_err *err);
/* Parses and validates a key; anything not exactly one of the forms above
 * is -1 with EIO and a message saying which part is wrong. */
int stz_key_decode(const char *key, size_t len, stz_ep *ep, psi_hash128 *sum, psi_err *err);

/* The libzmq endpoint: tcp://1.2.3.4:5, tcp://[::1]:5, ipc:///path. The
 * default endpoint needs the runtime dir: -1 (ENOENT) without one. */
int stz_ep_string(const stz_ep *ep, char *out, size_t cap, psi_err *err);
/* The socket path behind the default endpoint, or NULL. */
const char *stz_default_path(void);
/* Parses a --bind/--advertise style endpoint (tcp://H:P, ipc:///path) or
 * HOST:PORT (tcp). Numeric hosts and "localhost" only. */
int stz_ep_parse(const char *s, stz_ep *ep, psi_err *err);
bool stz_ep_loopback(const stz_ep *ep);
bool stz_ep_equal(const stz_ep *a, const stz_ep *b);

typedef struct stz_url {
    stz_ep ep;
    bool autostart;
    int timeout_ms;
} stz_url;

#define STZ_TIMEOUT_MS 5000

/* zmq://, zmq://host:port, zmq://[v6]:port, zmq:///path, each with an
 * optional ?autostart=0|1&timeout_ms=N. Host names other than numeric
 * addresses and "localhost" are resolved with getaddrinfo. */
int stz_url_parse(const char *url, stz_url *u, psi_err *err);

/* ---- connector helpers (st_zmq.c) ---------------------------------------- */

struct psi_store;
/* Is anything listening at ep? A plain connect, so a dead server costs no
 * request timeout. 0, or an errno value (ECONNREFUSED, ENOENT...). */
int stz_probe(const stz_ep *ep, int timeout_ms);
/* Starts the server for ep (st_zmq_start.c) unless another process is
 * doing so, and waits until it answers. 0, or -1 (ECONNREFUSED). */
int stz_autostart(const stz_ep *ep, psi_err *err);
/* The STATS of the server behind a zmq store handle. */
int stz_stats_get(struct psi_store *s, stz_stats *out, psi_err *err);

#endif
