/* psi store-server: the node-local object server of the ZeroMQ store
 * (DESIGN §6, docs/store-zmq.md).
 *
 * One thread, one ROUTER socket bound to every --bind endpoint. Objects are
 * kept as the zmq messages they arrived in, so a GET reply shares the
 * stored buffer (zmq_msg_copy) instead of copying it. A one-second tick
 * drops objects past their TTL and checks --idle-exit. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "psi_config.h"
#include "psi_hash.h"
#include "psi_store.h"
#include "psi_tool.h"
#include "st_zmq.h"

#define SRV_MAX_BINDS 8
#define SRV_TICK_MS 1000
#define SRV_MAX_TTL (30u * 86400) /* a TTL above this is clamped */
#define SRV_COPY_MAX (64u << 10)   /* objects up to this size are copied */

typedef struct srv_obj {
    struct srv_obj *next;
    psi_hash128 sum;
    uint64_t size;
    zmq_msg_t msg;   /* the payload as received */
    time_t created, expiry;
    int64_t refs;    /* refcount and evict-on-read tokens not yet released */
    bool ttl_pinned; /* a TTL-lifetime put: kept until expiry */
    uint8_t lifetime; /* of the first put, for ls */
} srv_obj;

typedef struct srv {
    const stz_api *z;
    void *ctx, *sock;
    srv_obj **tab;
    size_t nbuckets;
    stz_stats st;
    char advertise[STZ_ADVERTISE_MAX + 1];
    time_t last_activity;
} srv;

static volatile sig_atomic_t srv_stop;

static void srv_on_signal(int sig)
{
    srv_stop = sig;
}

static void __attribute__((format(printf, 1, 2))) srv_log(const char *fmt, ...)
{
    char ts[32];
    time_t now = time(NULL);
    struct tm tm;
    va_list ap;

    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
    fprintf(stderr, "%s psi store-server[%ld]: ", ts, (long)getpid());
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* ---- the object table ----------------------------------------------------- */

static srv_obj **srv_slot(srv *s, const psi_hash128 *sum, uint64_t size)
{
    srv_obj **pp = &s->tab[sum->lo & (s->nbuckets - 1)];
    for (; *pp; pp = &(*pp)->next)
        if ((*pp)->sum.lo == sum->lo && (*pp)->sum.hi == sum->hi && (*pp)->size == size)
            break;
    return pp;
}

static void srv_grow(srv *s)
{
    size_t n = s->nbuckets * 2;
    srv_obj **t = calloc(n, sizeof *t);
    if (!t)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < s->nbuckets; i++)
        for (srv_obj *o = s->tab[i], *next; o; o = next) {
            next = o->next;
            o->next = t[o->sum.lo & (n - 1)];
            t[o->sum.lo & (n - 1)] = o;
        }
    free(s->tab);
    s->tab = t;
    s->nbuckets = n;
}

static void srv_remove(srv *s, srv_obj **pp)
{
    srv_obj *o = *pp;
    *pp = o->next;
    s->st.objects--;
    s->st.bytes -= o->size;
    s->z->msg_close(&o->msg); /* the buffer lives on while a GET reply holds it */
    free(o);
}

/* Drops every object past its TTL (all of them if `all`). */
static void srv_expire(srv *s, time_t now, uint64_t *n, uint64_t *bytes)
{
    for (size_t i = 0; i < s->nbuckets; i++)
        for (srv_obj **pp = &s->tab[i]; *pp;) {
            if ((*pp)->expiry <= now) {
                *n += 1;
                *bytes += (*pp)->size;
                srv_remove(s, pp);
            } else {
                pp = &(*pp)->next;
            }
        }
}

/* ---- requests ------------------------------------------------------------- */

static void srv_send(srv *s, zmq_msg_t *id, const stz_rep *rep, zmq_msg_t *data)
{
    uint8_t hdr[STZ_REP_LEN];

    stz_rep_encode(rep, hdr);
    if (s->z->msg_send(id, s->sock, ZMQ_SNDMORE) < 0 ||
        s->z->send(s->sock, hdr, sizeof hdr, data ? ZMQ_SNDMORE : 0) < 0 ||
        (data && s->z->msg_send(data, s->sock, 0) < 0))
        srv_log("reply to a peer failed: %s", s->z->strerror(s->z->err()));
    if (data)
        s->z->msg_close(data);
}

static void srv_send_buf(srv *s, zmq_msg_t *id, const stz_rep *rep, const void *buf, size_t n)
{
    zmq_msg_t m;
    if (s->z->msg_init_size(&m, n) < 0) {
        srv_log("out of memory for a %zu-byte reply", n);
        return;
    }
    memcpy(s->z->msg_data(&m), buf, n);
    srv_send(s, id, rep, &m);
}

static void __attribute__((format(printf, 4, 5)))
srv_error(srv *s, zmq_msg_t *id, stz_rep *rep, const char *fmt, ...)
{
    char msg[STZ_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    srv_send_buf(s, id, rep, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
}

static void srv_put(srv *s, zmq_msg_t *id, const stz_req *q, stz_rep *rep, zmq_msg_t *payload)
{
    time_t now = time(NULL);
    uint32_t ttl = q->ttl ? q->ttl : PSI_DEFAULT_TTL;
    if (ttl > SRV_MAX_TTL)
        ttl = SRV_MAX_TTL;

    srv_obj **pp = srv_slot(s, &q->sum, q->size), *o = *pp;
    if (!o) {
        if (q->size > s->st.max_bytes - s->st.bytes) {
            s->st.refused_full++;
            rep->status = ENOSPC;
            srv_error(s, id, rep, "store full: %" PRIu64 " of %" PRIu64 " bytes used, "
                      "object of %" PRIu64 " bytes refused", s->st.bytes, s->st.max_bytes,
                      q->size);
            return;
        }
        /* The name must be the content's: a put under another object's
         * hash would poison every later dedup hit. */
        psi_hash128 h = psi_hash_buf(s->z->msg_data(payload), q->size);
        if (h.lo != q->sum.lo || h.hi != q->sum.hi) {
            rep->status = EPROTO;
            srv_error(s, id, rep, "payload does not match its xxh3-128");
            return;
        }
        o = calloc(1, sizeof *o);
        if (!o) {
            rep->status = ENOMEM;
            srv_error(s, id, rep, "out of memory");
            return;
        }
        o->sum = q->sum;
        o->size = q->size;
        o->created = now;
        o->lifetime = q->lifetime;
        /* A small message may be a slice of libzmq's shared receive
         * buffer, which it would pin for as long as we keep it: copy. */
        if (q->size <= SRV_COPY_MAX) {
            if (s->z->msg_init_size(&o->msg, q->size) < 0) {
                free(o);
                rep->status = ENOMEM;
                srv_error(s, id, rep, "out of memory");
                return;
            }
            memcpy(s->z->msg_data(&o->msg), s->z->msg_data(payload), q->size);
        } else {
            s->z->msg_init(&o->msg);
            s->z->msg_move(&o->msg, payload);
        }
        *pp = o;
        s->st.objects++;
        s->st.bytes += o->size;
        if (s->st.objects > s->nbuckets)
            srv_grow(s);
    } else {
        s->st.dedup_hits++;
    }
    if (q->lifetime == PSI_LIFE_TTL)
        o->ttl_pinned = true;
    else
        o->refs++;
    if (now + (time_t)ttl > o->expiry)
        o->expiry = now + (time_t)ttl;
    s->st.puts++;
    rep->v1 = (uint64_t)o->refs;
    srv_send_buf(s, id, rep, s->advertise, strlen(s->advertise));
}

static void srv_ls(srv *s, zmq_msg_t *id, stz_rep *rep)
{
    zmq_msg_t m;
    time_t now = time(NULL);
    if (s->z->msg_init_size(&m, s->st.objects * STZ_LS_REC_LEN) < 0) {
        rep->status = ENOMEM;
        srv_error(s, id, rep, "out of memory");
        return;
    }
    uint8_t *p = s->z->msg_data(&m);
    for (size_t i = 0; i < s->nbuckets; i++)
        for (srv_obj *o = s->tab[i]; o; o = o->next, p += STZ_LS_REC_LEN) {
            stz_ls_rec r = {.sum = o->sum, .size = o->size, .age = now - o->created,
                            .refs = o->refs, .expires = o->expiry - now,
                            .lifetime = o->lifetime};
            stz_ls_encode(&r, p);
        }
    rep->v1 = s->st.objects;
    srv_send(s, id, rep, &m);
}

static void srv_request(srv *s, zmq_msg_t *id, const stz_req *q, zmq_msg_t *payload)
{
    stz_rep rep = {.op = q->op, .id = q->id};
    srv_obj **pp, *o;
    zmq_msg_t m;
    uint8_t buf[STZ_STATS_LEN];

    switch (q->op) {
    case STZ_PUT:
        srv_put(s, id, q, &rep, payload);
        return;
    case STZ_GET:
        o = *srv_slot(s, &q->sum, q->size);
        if (!o) {
            rep.status = ENOENT;
            srv_error(s, id, &rep, "no such object");
            return;
        }
        s->z->msg_init(&m);
        s->z->msg_copy(&m, &o->msg); /* shares the buffer, no copy */
        s->st.gets++;
        rep.v1 = o->size;
        srv_send(s, id, &rep, &m);
        return;
    case STZ_RELEASE:
        /* Releasing a gone object is not an error: it expired, or the
         * token was delivered twice. */
        pp = srv_slot(s, &q->sum, q->size);
        if ((o = *pp) && q->lifetime != PSI_LIFE_TTL) {
            if (o->refs > 0)
                o->refs--;
            rep.v1 = (uint64_t)o->refs;
            if (o->refs == 0 && !o->ttl_pinned)
                srv_remove(s, pp);
        }
        srv_send(s, id, &rep, NULL);
        return;
    case STZ_LS:
        srv_ls(s, id, &rep);
        return;
    case STZ_STATS:
        stz_stats_encode(&s->st, buf);
        srv_send_buf(s, id, &rep, buf, sizeof buf);
        return;
    case STZ_GC:
        srv_expire(s, time(NULL), &rep.v1, &rep.v2);
        s->st.expired += rep.v1;
        srv_send(s, id, &rep, NULL);
        return;
    case STZ_PING:
        rep.v1 = q->size > 0 && *srv_slot(s, &q->sum, q->size) != NULL;
        srv_send(s, id, &rep, NULL);
        return;
    }
}

/* Receives one whole message (identity, header, at most one payload frame
 * kept) and answers it. A message whose header does not decode is dropped
 * with a log line: its id cannot be trusted for a reply. */
static int srv_one(srv *s)
{
    const stz_api *z = s->z;
    zmq_msg_t id, hdr, payload, extra;
    stz_req q;
    psi_err e = {0};
    int more = 0, rc = 0;

    z->msg_init(&id);
    z->msg_init(&hdr);
    z->msg_init(&payload);
    if (z->msg_recv(&id, s->sock, ZMQ_DONTWAIT) < 0) {
        rc = z->err() == EAGAIN ? 1 : -1;
        goto out;
    }
    bool have_hdr = z->msg_more(&id) && z->msg_recv(&hdr, s->sock, 0) >= 0;
    if (have_hdr && z->msg_more(&hdr)) {
        z->msg_recv(&payload, s->sock, 0);
        more = 1;
        /* Frames past the payload are counted and dropped: a multipart
         * message arrives whole, so these receives never wait. */
        for (int again = z->msg_more(&payload); again; more++) {
            z->msg_init(&extra);
            z->msg_recv(&extra, s->sock, 0);
            again = z->msg_more(&extra);
            z->msg_close(&extra);
        }
    }
    s->last_activity = time(NULL);
    if (!have_hdr || stz_req_decode(z->msg_data(&hdr), z->msg_size(&hdr), &q, &e) < 0) {
        /* At most one line a second: a broken or hostile peer must not
         * fill the log. */
        static time_t last;
        static unsigned long quiet;
        if (s->last_activity != last) {
            srv_log("dropped a malformed request: %s (and %lu more since the last such line)",
                    have_hdr ? e.msg : "no header frame", quiet);
            last = s->last_activity;
            quiet = 0;
        } else {
            quiet++;
        }
        goto out;
    }
    if (stz_req_check(&q, more, z->msg_size(&payload), &e) < 0) {
        stz_rep rep = {.op = q.op, .id = q.id, .status = EPROTO};
        srv_error(s, &id, &rep, "%s", e.msg);
        goto out;
    }
    srv_request(s, &id, &q, &payload);
out:
    z->msg_close(&id);
    z->msg_close(&hdr);
    z->msg_close(&payload);
    return rc;
}

/* ---- start-up ------------------------------------------------------------- */

static const struct option srv_options[] = {
    {"bind", required_argument, NULL, 'b'},
    {"advertise", required_argument, NULL, 'a'},
    {"max-bytes", required_argument, NULL, 'm'},
    {"foreground", no_argument, NULL, 'f'},
    {"idle-exit", required_argument, NULL, 'i'},
    {"log-file", required_argument, NULL, 'l'},
    {"status", optional_argument, NULL, 's'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* Fork twice and leave the session, so the server outlives whoever
 * started it and is nobody's child. The caller's process waits on a pipe
 * until the server has bound every endpoint (libzmq's context must be made
 * after the forks), then exits 0, or 1 if the server could not start.
 * Returns the pipe's write end in the server, or -1. */
static int srv_daemonize(void)
{
    int p[2];
    char c;

    if (pipe(p) < 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid > 0) {
        close(p[1]);
        ssize_t n;
        while ((n = read(p[0], &c, 1)) < 0 && errno == EINTR)
            ;
        exit(n == 1 ? 0 : CMD_EXIT_FAIL);
    }
    close(p[0]);
    setsid();
    pid = fork();
    if (pid < 0)
        _exit(CMD_EXIT_FAIL);
    if (pid > 0)
        _exit(0);
    return p[1];
}

/* The server is up: let the starter go, and keep no terminal open but the
 * log (stderr). */
static void srv_detached(int ready_fd)
{
    int fd = open("/dev/null", O_RDWR);
    if (fd >= 0) {
        dup2(fd, 0);
        dup2(fd, 1);
        if (fd > 2)
            close(fd);
    }
    if (write(ready_fd, "1", 1) < 0)
        srv_log("cannot tell the starter we are up: %s", strerror(errno));
    close(ready_fd);
}

/* One bind; an ipc endpoint a live server answers on is refused (libzmq
 * would silently take the socket file over). */
static int srv_bind(srv *s, const char *ep)
{
    stz_ep e;
    psi_err err = {0};

    if (stz_ep_parse(ep, &e, &err) < 0) {
        fprintf(stderr, "psi store-server: --bind %s: %s\n", ep, err.msg);
        return -1;
    }
    if (e.kind == STZ_EP_IPC && stz_probe(&e, 1000) == 0) {
        fprintf(stderr, "psi store-server: a server already answers on %s\n", ep);
        return -1;
    } else if (!stz_ep_loopback(&e)) {
        srv_log("warning: %s is not a loopback address; anyone who can reach it can read "
                "and write objects (no authentication)", ep);
    }
    if (s->z->bind(s->sock, ep) < 0) {
        fprintf(stderr, "psi store-server: cannot bind %s: %s\n", ep,
                s->z->strerror(s->z->err()));
        return -1;
    }
    srv_log("listening on %s", ep);
    return 0;
}

static uint64_t srv_default_max(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || psz <= 0)
        return 1ull << 30;
    return (uint64_t)pages * (uint64_t)psz / 4;
}

int cmd_store_server_status(const char *url);

/* Under LD_PRELOAD=libpsinterpose (started by hand inside `psi run`), the
 * hooks would register our endpoints as interposed listeners and peers
 * would frame the store's own connections: run again without it. */
static void srv_unpreload(int argc, char **argv)
{
    const char *pre = getenv("LD_PRELOAD");
    if (!pre || !strstr(pre, "libpsinterpose"))
        return;
    char **v = calloc((size_t)argc + 2, sizeof *v);
    if (!v)
        return;
    v[0] = "psi";
    memcpy(v + 1, argv, (size_t)argc * sizeof *v);
    unsetenv("LD_PRELOAD");
    setenv("PSI_DISABLE", "1", 1);
    execv("/proc/self/exe", v);
    free(v); /* exec failed: carry on interposed */
}

int cmd_store_server(int argc, char **argv)
{
    const char *binds[SRV_MAX_BINDS], *log_file = NULL, *status_url = NULL;
    char defbind[STZ_EP_STR_MAX];
    int nbinds = 0, foreground = 0, opt;
    long idle_exit = 0;
    bool status = false;
    srv s = {0};
    psi_err e = {0};

    s.st.max_bytes = srv_default_max();
    optind = 1;
    while ((opt = getopt_long(argc, argv, ":h", srv_options, NULL)) != -1) {
        char *end;
        switch (opt) {
        case 'b':
            if (nbinds == SRV_MAX_BINDS)
                return cmd_usage_error("store-server", "at most %d --bind", SRV_MAX_BINDS);
            binds[nbinds++] = optarg;
            break;
        case 'a': {
            stz_ep a;
            if (strlen(optarg) > STZ_ADVERTISE_MAX || stz_ep_parse(optarg, &a, &e) < 0 ||
                a.kind != STZ_EP_TCP)
                return cmd_usage_error("store-server", "--advertise '%s': expected a numeric "
                                       "HOST:PORT ([v6]:PORT)", optarg);
            snprintf(s.advertise, sizeof s.advertise, "%s", optarg);
            break;
        }
        case 'm':
            if (psi_parse_size(optarg, &s.st.max_bytes, &e) < 0 || s.st.max_bytes == 0)
                return cmd_usage_error("store-server", "--max-bytes '%s': expected a size "
                                       "like 512M or 4GiB", optarg);
            break;
        case 'f':
            foreground = 1;
            break;
        case 'i':
            idle_exit = strtol(optarg, &end, 10);
            if (!*optarg || *end || idle_exit < 0)
                return cmd_usage_error("store-server", "--idle-exit '%s': expected seconds",
                                       optarg);
            break;
        case 'l':
            log_file = optarg;
            break;
        case 's':
            status = true;
            status_url = optarg;
            break;
        case 'h':
            cmd_help_print(stdout, "store-server");
            return 0;
        default:
            return cmd_bad_option("store-server", opt, argv);
        }
    }
    if (optind < argc)
        return cmd_usage_error("store-server", "unexpected argument '%s'", argv[optind]);
    if (status)
        return cmd_store_server_status(status_url);
    srv_unpreload(argc, argv);

    if (!(s.z = stz_load(&e))) {
        fprintf(stderr, "psi store-server: %s\n", e.msg);
        return CMD_EXIT_FAIL;
    }
    if (nbinds == 0) {
        stz_ep d = {.kind = STZ_EP_DEFAULT};
        if (stz_ep_string(&d, defbind, sizeof defbind, &e) < 0) {
            fprintf(stderr, "psi store-server: %s\n", e.msg);
            return CMD_EXIT_FAIL;
        }
        binds[nbinds++] = defbind;
    }
    if (log_file && !freopen(log_file, "a", stderr)) {
        fprintf(stdout, "psi store-server: cannot open log file %s\n", log_file);
        return CMD_EXIT_FAIL;
    }
    setvbuf(stderr, NULL, _IOLBF, 0);

    int ready_fd = -1;
    if (!foreground && (ready_fd = srv_daemonize()) < 0) {
        fprintf(stderr, "psi store-server: fork: %s\n", strerror(errno));
        return CMD_EXIT_FAIL;
    }
    s.ctx = s.z->ctx_new();
    s.sock = s.ctx ? s.z->socket(s.ctx, ZMQ_ROUTER) : NULL;
    int zero = 0;
    if (!s.sock || s.z->setsockopt(s.sock, ZMQ_LINGER, &zero, sizeof zero) < 0) {
        fprintf(stderr, "psi store-server: %s\n", s.z->strerror(s.z->err()));
        return CMD_EXIT_FAIL;
    }
    for (int i = 0; i < nbinds; i++)
        if (srv_bind(&s, binds[i]) < 0)
            return CMD_EXIT_FAIL;
    /* The starter returns only once the endpoints answer: it can connect
     * at once. */
    if (ready_fd >= 0)
        srv_detached(ready_fd);

    struct sigaction sa = {.sa_handler = srv_on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    s.nbuckets = 1024;
    s.tab = calloc(s.nbuckets, sizeof *s.tab);
    if (!s.tab)
        return CMD_EXIT_FAIL;
    s.last_activity = time(NULL);
    char maxb[32];
    cmd_human_bytes(s.st.max_bytes, maxb, sizeof maxb);
    srv_log("ready: max %s, idle exit %lds%s%s", maxb, idle_exit,
            s.advertise[0] ? ", advertising " : "", s.advertise);

    time_t last_tick = time(NULL);
    while (!srv_stop) {
        zmq_pollitem_t it = {.socket = s.sock, .events = ZMQ_POLLIN};
        int n = s.z->poll(&it, 1, SRV_TICK_MS);
        if (n < 0 && s.z->err() != EINTR) {
            srv_log("zmq_poll: %s", s.z->strerror(s.z->err()));
            break;
        }
        if (n > 0)
            for (int i = 0; i < 256 && srv_one(&s) == 0; i++)
                ;
        time_t now = time(NULL);
        if (now != last_tick) {
            uint64_t gone = 0, bytes = 0;
            srv_expire(&s, now, &gone, &bytes);
            if (gone) {
                s.st.expired += gone;
                srv_log("expired %" PRIu64 " objects (%" PRIu64 " bytes)", gone, bytes);
            }
            last_tick = now;
            if (idle_exit > 0 && s.st.objects == 0 && now - s.last_activity >= idle_exit) {
                srv_log("idle for %lds with no objects: exiting", idle_exit);
                break;
            }
        }
    }
    if (srv_stop)
        srv_log("exiting on signal %d with %" PRIu64 " objects", (int)srv_stop, s.st.objects);
    uint64_t n = 0, b = 0;
    srv_expire(&s, (time_t)INT64_MAX, &n, &b);
    free(s.tab);
    s.z->close(s.sock);
    s.z->ctx_term(s.ctx);
    for (int i = 0; i < nbinds; i++)
        if (strncmp(binds[i], "ipc://", 6) == 0)
            unlink(binds[i] + 6);
    return 0;
}

/* ---- --status ------------------------------------------------------------- */

static int status_row(const psi_obj_info *o, void *arg)
{
    char sz[32];
    cmd_human_bytes(o->size, sz, sizeof sz);
    printf("%-48s %10s %6" PRId64 "s %4" PRId64 " %7" PRId64 "s\n", o->key, sz, o->age,
           o->refs, o->expires);
    return 0;
}

/* Prints what a running server holds: one summary line, then one line per
 * object. Exit 1 if no server answers. */
int cmd_store_server_status(const char *url)
{
    psi_store *st;
    psi_err e = {0};

    if (psi_store_open(url && *url ? url : "zmq://?autostart=0", &st, &e) < 0 ||
        st->ops->id != PSI_CONN_ZMQ) {
        fprintf(stderr, "psi store-server: --status %s: %s\n", url ? url : "",
                e.msg[0] ? e.msg : "not a zmq:// URL");
        return CMD_EXIT_USAGE;
    }
    stz_stats x;
    int rc = 0;
    char b[32], m[32];
    if (stz_stats_get(st, &x, &e) < 0) {
        fprintf(stderr, "psi store-server: %s\n", e.msg);
        psi_store_close(st);
        return CMD_EXIT_FAIL;
    }
    cmd_human_bytes(x.bytes, b, sizeof b);
    cmd_human_bytes(x.max_bytes, m, sizeof m);
    printf("objects %" PRIu64 " bytes %" PRIu64 " (%s of %s) puts %" PRIu64 " gets %" PRIu64
           " dedup_hits %" PRIu64 " refused_full %" PRIu64 " expired %" PRIu64 "\n",
           x.objects, x.bytes, b, m, x.puts, x.gets, x.dedup_hits, x.refused_full, x.expired);
    if (x.objects > 0 && st->ops->ls(st, status_row, NULL, &e) < 0) {
        fprintf(stderr, "psi store-server: %s\n", e.msg);
        rc = CMD_EXIT_FAIL;
    }
    psi_store_close(st);
    return rc;
}
