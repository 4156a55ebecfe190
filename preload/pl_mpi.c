/* pl_mpi: the logic behind the MPI hooks (docs/mpi.md).
 *
 * Send side: a message whose packed size passes the decision is packed if
 * its datatype is not contiguous, put into the store, and replaced by a
 * token message of PL_MPI_MSG_LEN bytes on the same communicator, tag and
 * destination, so MPI's matching order is the application's.
 *
 * Receive side: receives go straight into the application's buffer. A
 * completed receive of exactly PL_MPI_MSG_LEN bytes that carries our magic
 * and checksum is a token: it is resolved into the same buffer (unpacked
 * for derived types) and the status made to report the real size. A
 * payload below PL_MPI_MSG_LEN is never proxied, so a buffer big enough
 * for the payload always holds the token. Probes must report the real
 * size, so a probe that meets a PL_MPI_MSG_LEN-byte message receives it
 * into the stash (pl_mpi_msg.h), which every receive consults first. */
#include "pl_mpi.h"

#ifdef PL_HAVE_MPI
#include "pl_mpi_real.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pl_engine.h"
#include "pl_mpi_msg.h"
#include "pl_store.h"
#include "psi_log.h"
#include "psi_stats.h"

pl_mpi_real_table pl_mpi_real;

/* pl_mpi.h spells MPICH's types without mpi.h. */
_Static_assert(__builtin_types_compatible_p(MPI_Comm, pl_mpi_handle) &&
                   __builtin_types_compatible_p(MPI_Datatype, pl_mpi_handle) &&
                   __builtin_types_compatible_p(MPI_Request, pl_mpi_handle) &&
                   __builtin_types_compatible_p(MPI_Message, pl_mpi_handle) &&
                   __builtin_types_compatible_p(MPI_Count, pl_mpi_count) &&
                   MPI_ERR_INTERN == PL_MPI_ERR_INTERN,
               "mpi.h is not MPICH's: the MPI hooks speak the MPICH ABI");

/* ---- binding -------------------------------------------------------------- */

static pthread_once_t pl_mpi_bind_once = PTHREAD_ONCE_INIT;
static bool pl_mpi_bound;

/* RTLD_NEXT finds the MPI library when the program links it. A binding
 * that loads it privately (dlopen RTLD_LOCAL) hides it from RTLD_NEXT; then
 * the library is already mapped and RTLD_NOLOAD finds it by soname. */
static void *pl_mpi_sym(const char *name)
{
    static const char *const libs[] = {"libmpi.so.12", "libmpich.so.12", "libmpi.so.40"};
    void *p = dlsym(RTLD_NEXT, name);
    for (size_t i = 0; !p && i < sizeof libs / sizeof libs[0]; i++) {
        void *h = dlopen(libs[i], RTLD_LAZY | RTLD_NOLOAD);
        if (h)
            p = dlsym(h, name);
    }
    return p;
}

static void pl_mpi_bind_all(void)
{
    const char *missing = NULL;
#define PL_MPI_BIND(name)                                         \
    *(void **)&pl_mpi_real.name = pl_mpi_sym("PMPI_" #name);     \
    if (!pl_mpi_real.name && !missing)                            \
        missing = "PMPI_" #name;
    PL_MPI_REAL(PL_MPI_BIND)
#undef PL_MPI_BIND
    if (missing) {
        psi_log(PSI_LOG_ERROR, "MPI: %s not found in this process (psinterpose supports "
                "the MPICH 4 ABI: Debian package libmpich12)", missing);
        return;
    }
    pl_mpi_bound = true;
}

bool pl_mpi_bind(void)
{
    pthread_once(&pl_mpi_bind_once, pl_mpi_bind_all);
    return pl_mpi_bound;
}

static pthread_once_t pl_mpi_abi_once = PTHREAD_ONCE_INIT;
static bool pl_mpi_is_foreign;

/* Open MPI (libmpi.so.40) is the other ABI on Linux; it exports its
 * predefined objects under these names. Everything else we meet (MPICH,
 * Intel MPI, MVAPICH) shares MPICH's. */
static void pl_mpi_abi_detect(void)
{
    pl_mpi_is_foreign = dlsym(RTLD_DEFAULT, "ompi_mpi_comm_world") != NULL ||
                        pl_mpi_sym("ompi_mpi_comm_world") != NULL;
    if (pl_mpi_is_foreign)
        psi_log(PSI_LOG_INFO, "MPI: Open MPI ABI; MPI calls pass through untouched");
}

bool pl_mpi_foreign(void)
{
    pthread_once(&pl_mpi_abi_once, pl_mpi_abi_detect);
    return pl_mpi_is_foreign;
}

/* ---- shared state: the stash, matched-message handles, requests ----------- */

static pthread_mutex_t pl_mpi_lock = PTHREAD_MUTEX_INITIALIZER;
static pl_mpi_stash pl_mpi_q;           /* probed messages, in match order */
static pl_mpi_stash pl_mpi_matched;     /* Mprobe'd, owned by a handle of ours */
static atomic_uint pl_mpi_nq;           /* pl_mpi_q.n, read without the lock */
static uint32_t pl_mpi_next_handle;

enum { PL_REQ_RECV = 1, PL_REQ_SEND = 2 };

typedef struct pl_mpi_req {
    struct pl_mpi_req *next;
    MPI_Request h;
    int kind;
    bool persistent; /* MPI_Recv_init: stays until MPI_Request_free */
    bool by_content; /* MPI_Isendrecv: see pl_after_recv_x */
    bool msg_live;   /* MPI sends r->msg: it must outlive the request */
    pl_mpi_ent *ent; /* the receive half was served from the stash */
    void *buf; /* PL_REQ_RECV: where the message lands */
    MPI_Count count;
    MPI_Datatype type;
    MPI_Comm comm;
    uint8_t msg[PL_MPI_MSG_LEN]; /* the token message in flight, if we sent one */
} pl_mpi_req;

#define PL_REQ_BUCKETS 256
static pl_mpi_req *pl_mpi_reqs[PL_REQ_BUCKETS];
static atomic_uint pl_mpi_nreq;

bool pl_mpi_have_reqs(void)
{
    return atomic_load_explicit(&pl_mpi_nreq, memory_order_acquire) != 0;
}

static unsigned pl_req_bucket(MPI_Request h)
{
    return ((unsigned)h * 2654435761u) >> 24 & (PL_REQ_BUCKETS - 1);
}

static void pl_req_add(pl_mpi_req *r)
{
    pthread_mutex_lock(&pl_mpi_lock);
    unsigned b = pl_req_bucket(r->h);
    r->next = pl_mpi_reqs[b];
    pl_mpi_reqs[b] = r;
    atomic_fetch_add(&pl_mpi_nreq, 1);
    pthread_mutex_unlock(&pl_mpi_lock);
}

/* The entry of h, unlinked unless persistent (`all`: unlink those too). */
static pl_mpi_req *pl_req_take(MPI_Request h, bool all)
{
    if (!pl_mpi_have_reqs() || h == MPI_REQUEST_NULL)
        return NULL;
    pthread_mutex_lock(&pl_mpi_lock);
    pl_mpi_req **pp = &pl_mpi_reqs[pl_req_bucket(h)], *r;
    while ((r = *pp) && r->h != h)
        pp = &r->next;
    if (r && (all || !r->persistent)) {
        *pp = r->next;
        atomic_fetch_sub(&pl_mpi_nreq, 1);
    }
    pthread_mutex_unlock(&pl_mpi_lock);
    return r;
}

static pl_mpi_pat pl_pat(MPI_Comm comm, int source, int tag)
{
    return (pl_mpi_pat){.comm = (uint64_t)(uint32_t)comm, .source = source, .tag = tag,
                        .any_source = source == MPI_ANY_SOURCE, .any_tag = tag == MPI_ANY_TAG};
}

/* The oldest stashed message a receive of (source, tag, comm) matches. */
static pl_mpi_ent *pl_stash_take(MPI_Comm comm, int source, int tag)
{
    if (atomic_load_explicit(&pl_mpi_nq, memory_order_acquire) == 0 ||
        source == MPI_PROC_NULL)
        return NULL;
    pl_mpi_pat p = pl_pat(comm, source, tag);
    pthread_mutex_lock(&pl_mpi_lock);
    pl_mpi_ent *e = pl_mpi_stash_take(&pl_mpi_q, &p);
    atomic_store(&pl_mpi_nq, (unsigned)pl_mpi_q.n);
    pthread_mutex_unlock(&pl_mpi_lock);
    return e;
}

/* ---- datatypes ------------------------------------------------------------ */

/* Named types whose elements abut in memory: the payload is the buffer.
 * Derived types, and named pair types with padding (MPI_DOUBLE_INT), go
 * through MPI_Pack/MPI_Unpack. */
static bool pl_contiguous(MPI_Datatype type, MPI_Count size)
{
    int ni, na, nt, comb;
    MPI_Count lb, extent;
    if (R(Type_get_envelope)(type, &ni, &na, &nt, &comb) != MPI_SUCCESS ||
        comb != MPI_COMBINER_NAMED)
        return false;
    return R(Type_get_extent_x)(type, &lb, &extent) == MPI_SUCCESS && lb == 0 &&
           extent == size;
}

/* Packed bytes of (count, type), 0 if unknown, empty or not representable. */
static uint64_t pl_bytes(MPI_Count count, MPI_Datatype type, MPI_Count *size)
{
    MPI_Count s = 0;
    if (count <= 0 || R(Type_size_x)(type, &s) != MPI_SUCCESS || s <= 0 ||
        s == MPI_UNDEFINED || count > INT64_MAX / s)
        return 0;
    if (size)
        *size = s;
    return (uint64_t)count * (uint64_t)s;
}

static void pl_status_set(MPI_Status *st, int source, int tag, uint64_t bytes)
{
    st->MPI_SOURCE = source;
    st->MPI_TAG = tag;
    R(Status_set_elements_x)(st, MPI_BYTE, (MPI_Count)bytes);
    R(Status_set_cancelled)(st, 0);
}

/* Calls the communicator's error handler, as MPI does for its own errors
 * (the default handler aborts the job), and returns code. */
static int pl_mpi_error(MPI_Comm comm, int code)
{
    R(Comm_call_errhandler)(comm, code);
    return code;
}

static double pl_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Writes n packed bytes into (buf, count, type). Sets *written to what
 * landed; MPI_ERR_TRUNCATE if the buffer holds less than n, as MPI would. */
static int pl_unpack(const void *src, uint64_t n, void *buf, MPI_Count count,
                     MPI_Datatype type, MPI_Comm comm, uint64_t *written)
{
    MPI_Count size = 0;
    uint64_t cap = pl_bytes(count, type, &size);
    uint64_t take = n < cap ? n : cap;
    *written = 0;
    if (take == 0)
        return n > cap ? MPI_ERR_TRUNCATE : MPI_SUCCESS;
    if (pl_contiguous(type, size)) {
        memcpy(buf, src, take);
    } else {
        /* Whole elements only: a payload that ends inside an element came
         * from a sender whose type signature differs (docs/mpi.md). */
        MPI_Count full = (MPI_Count)(take / (uint64_t)size), pos = 0;
        take = (uint64_t)full * (uint64_t)size;
        if (full > 0 && R(Unpack_c)(src, (MPI_Count)take, &pos, buf, full, type, comm) !=
                            MPI_SUCCESS)
            return MPI_ERR_OTHER;
    }
    *written = take;
    return n > cap ? MPI_ERR_TRUNCATE : MPI_SUCCESS;
}

/* Resolves a token into (buf, count, type) and sets the status size. */
static int pl_deliver_token(const pl_mpi_msg *m, void *buf, MPI_Count count, MPI_Datatype type,
                            MPI_Comm comm, MPI_Status *st)
{
    psi_obj obj;
    psi_err err = {0};
    double t0 = pl_now();
    if (pl_store_resolve(&m->tok, &obj, &err) != 0) {
        PSI_STAT_ADD(errors, 1);
        psi_log(PSI_LOG_ERROR, "MPI receive: token for %llu bytes not resolved: %s",
                (unsigned long long)m->bytes, err.msg);
        return MPI_ERR_OTHER;
    }
    uint64_t written = 0;
    int rc = pl_unpack(obj.data, obj.len, buf, count, type, comm, &written);
    psi_obj_release(&obj);
    PSI_STAT_ADD(get_ns, (uint64_t)((pl_now() - t0) * 1e9));
    PSI_STAT_ADD(tokens_resolved, 1);
    PSI_STAT_ADD(bytes_resolved, written);
    R(Status_set_elements_x)(st, MPI_BYTE, (MPI_Count)(rc == MPI_SUCCESS ? m->bytes : written));
    return rc;
}

/* Delivers a stashed message and fills st; frees e. */
static int pl_deliver_ent(pl_mpi_ent *e, void *buf, MPI_Count count, MPI_Datatype type,
                          MPI_Comm comm, MPI_Status *st)
{
    int rc;
    pl_status_set(st, e->source, e->tag, pl_mpi_ent_bytes(e));
    if (e->is_token) {
        rc = pl_deliver_token(&e->msg, buf, count, type, comm, st);
    } else {
        uint64_t written;
        rc = pl_unpack(e->raw, PL_MPI_MSG_LEN, buf, count, type, comm, &written);
        if (rc != MPI_SUCCESS)
            R(Status_set_elements_x)(st, MPI_BYTE, (MPI_Count)written);
    }
    free(e);
    return rc;
}

/* The first PL_MPI_MSG_LEN bytes a receive put into (buf, count, type), or
 * NULL. For a derived type they are packed into tmp (whole elements). */
static const uint8_t *pl_peek(const void *buf, MPI_Count count, MPI_Datatype type,
                              MPI_Comm comm, uint8_t **tmp)
{
    MPI_Count size = 0;
    uint64_t cap = pl_bytes(count, type, &size);
    *tmp = NULL;
    if (cap < PL_MPI_MSG_LEN)
        return NULL;
    if (pl_contiguous(type, size))
        return buf;
    MPI_Count k = (MPI_Count)((PL_MPI_MSG_LEN + (uint64_t)size - 1) / (uint64_t)size), pos = 0;
    *tmp = malloc((size_t)k * (size_t)size);
    if (!*tmp || R(Pack_c)(buf, k, type, *tmp, k * size, &pos, comm) != MPI_SUCCESS) {
        free(*tmp);
        *tmp = NULL;
        return NULL;
    }
    return *tmp;
}

/* After a real receive into (buf, count, type) completed with st: if it
 * brought a token, resolve it. Returns an MPI error code (not yet reported
 * to the error handler). by_content: the status's size cannot be trusted
 * (MPICH 4.0's MPI_Isendrecv leaves it stale), so only the bytes decide:
 * magic, checksum and token must all hold. */
static int pl_after_recv_x(void *buf, MPI_Count count, MPI_Datatype type, MPI_Comm comm,
                           MPI_Status *st, bool by_content)
{
    MPI_Count n = PL_MPI_MSG_LEN;
    if (!by_content &&
        (R(Get_elements_x)(st, MPI_BYTE, &n) != MPI_SUCCESS || n != PL_MPI_MSG_LEN))
        return MPI_SUCCESS;
    uint8_t *tmp;
    const uint8_t *p = pl_peek(buf, count, type, comm, &tmp);
    pl_mpi_msg m;
    psi_err err = {0};
    bool token = p && pl_mpi_msg_is(p, (uint64_t)n) && pl_mpi_msg_decode(p, &m, &err) == 0 &&
                 m.kind == PL_MPI_TOKEN;
    if (p && !token && pl_mpi_msg_is(p, (uint64_t)n))
        psi_log(PSI_LOG_DEBUG, "MPI receive: %d bytes with our magic taken as data: %s",
                PL_MPI_MSG_LEN, err.msg);
    free(tmp);
    return token ? pl_deliver_token(&m, buf, count, type, comm, st) : MPI_SUCCESS;
}

static int pl_after_recv(void *buf, MPI_Count count, MPI_Datatype type, MPI_Comm comm,
                         MPI_Status *st)
{
    return pl_after_recv_x(buf, count, type, comm, st, false);
}

/* ---- send side ------------------------------------------------------------ */

/* The policy context of every MPI send: channel mpi, no peer address. */
static pl_state pl_mpi_chan = {.channel = POL_CH_MPI};

static bool pl_mpi_sending(void)
{
    return pl_g.ready && !pl_g.passthrough && !pl_g.dryrun;
}

/* The last contiguous buffer stored, so that the same buffer sent to
 * another rank (a fan-out) takes a new reference to the same object
 * instead of a second copy. A repeat to the same rank is the common
 * "buffer reused with new contents" case and is simply put again. */
static struct {
    pthread_mutex_t lock;
    bool valid;
    const void *buf;
    uint64_t bytes;
    MPI_Comm comm;
    int dest, connector;
    psi_token tok;
} pl_fan = {.lock = PTHREAD_MUTEX_INITIALIZER};

static int pl_put(const void *src, uint64_t bytes, const pol_decision *d, const void *cache_buf,
                  MPI_Comm comm, int dest, psi_token *tok, psi_err *err)
{
    if (cache_buf) {
        psi_token last;
        bool try = false;
        pthread_mutex_lock(&pl_fan.lock);
        if (pl_fan.valid && pl_fan.buf == cache_buf && pl_fan.bytes == bytes &&
            pl_fan.comm == comm && pl_fan.dest != dest && pl_fan.connector == d->connector) {
            last = pl_fan.tok;
            try = true;
        }
        pthread_mutex_unlock(&pl_fan.lock);
        if (try) {
            psi_hash128 h = psi_hash_buf(src, (size_t)bytes);
            psi_err ignored = {0};
            if (h.lo == last.sum.lo && h.hi == last.sum.hi &&
                pl_store_ref(&last, d, tok, &ignored) == 0)
                return 0;
        }
    }
    if (pl_store_put(src, (size_t)bytes, d, tok, err) != 0)
        return -1;
    if (cache_buf) {
        pthread_mutex_lock(&pl_fan.lock);
        pl_fan.valid = true;
        pl_fan.buf = cache_buf;
        pl_fan.bytes = bytes;
        pl_fan.comm = comm;
        pl_fan.dest = dest;
        pl_fan.connector = d->connector;
        pl_fan.tok = *tok;
        pthread_mutex_unlock(&pl_fan.lock);
    }
    return 0;
}

/* The packed payload of (buf, count, type): buf itself when contiguous,
 * else a copy in *heap. NULL on failure. */
static const void *pl_pack(const void *buf, MPI_Count count, MPI_Datatype type, MPI_Count size,
                           uint64_t bytes, MPI_Comm comm, void **heap)
{
    *heap = NULL;
    if (pl_contiguous(type, size))
        return buf;
    MPI_Count pos = 0;
    *heap = malloc((size_t)bytes);
    if (!*heap || R(Pack_c)(buf, count, type, *heap, (MPI_Count)bytes, &pos, comm) !=
                      MPI_SUCCESS || (uint64_t)pos != bytes) {
        free(*heap);
        *heap = NULL;
        return NULL;
    }
    return *heap;
}

/* The decision for `bytes` of MPI payload: proxy or not. */
static bool pl_want(uint64_t bytes, pol_decision *d)
{
    if (!pl_mpi_sending() || bytes < PL_MPI_MSG_LEN || bytes < pl_g.min_candidate)
        return false;
    pl_decide(&pl_mpi_chan, bytes, d);
    if (d->action == POL_ACT_LOG)
        pl_log_send(&pl_mpi_chan, -1, bytes, d);
    return d->action == POL_ACT_PROXY;
}

/* Stores (buf, count, type) if the decision says so and writes the token
 * message into msg. 1: send msg instead; 0: send the real message. */
static int pl_tokenize(const void *buf, MPI_Count count, MPI_Datatype type, int dest,
                       MPI_Comm comm, uint8_t msg[PL_MPI_MSG_LEN])
{
    static atomic_int warned;
    MPI_Count size = 0;
    pol_decision d;
    if (dest == MPI_PROC_NULL || !pl_mpi_sending())
        return 0;
    uint64_t bytes = pl_bytes(count, type, &size);
    PSI_STAT_ADD(bytes_sent, bytes);
    if (!pl_want(bytes, &d))
        return 0;
    void *heap;
    const void *src = pl_pack(buf, count, type, size, bytes, comm, &heap);
    if (!src)
        return 0;
    pl_mpi_msg m = {.kind = PL_MPI_TOKEN, .bytes = bytes};
    psi_err err = {0};
    double t0 = pl_now();
    int rc = pl_put(src, bytes, &d, heap ? NULL : buf, comm, dest, &m.tok, &err);
    free(heap);
    if (rc != 0) {
        PSI_STAT_ADD(inline_fallbacks, 1);
        psi_log_once(warned, PSI_LOG_WARN,
                     "MPI send: store refused a %llu-byte object (%s); sending it as is",
                     (unsigned long long)bytes, err.msg);
        return 0;
    }
    PSI_STAT_ADD(put_ns, (uint64_t)((pl_now() - t0) * 1e9));
    if (pl_mpi_msg_encode(&m, msg, &err) != 0) {
        psi_log(PSI_LOG_ERROR, "MPI send: token message: %s", err.msg);
        return 0;
    }
    PSI_STAT_ADD(tokens_sent, 1);
    PSI_STAT_ADD(bytes_proxied, bytes);
    return 1;
}

static int pl_real_send(int mode, const void *buf, MPI_Count c, MPI_Datatype t, int dest,
                        int tag, MPI_Comm comm, MPI_Request *req, bool large)
{
    int n = (int)c;
    switch (mode) {
    case PL_MPI_SSEND:
        return large ? R(Ssend_c)(buf, c, t, dest, tag, comm) : R(Ssend)(buf, n, t, dest, tag, comm);
    case PL_MPI_BSEND:
        return large ? R(Bsend_c)(buf, c, t, dest, tag, comm) : R(Bsend)(buf, n, t, dest, tag, comm);
    case PL_MPI_RSEND:
        return large ? R(Rsend_c)(buf, c, t, dest, tag, comm) : R(Rsend)(buf, n, t, dest, tag, comm);
    case PL_MPI_ISEND:
        return large ? R(Isend_c)(buf, c, t, dest, tag, comm, req)
                     : R(Isend)(buf, n, t, dest, tag, comm, req);
    case PL_MPI_ISSEND:
        return large ? R(Issend_c)(buf, c, t, dest, tag, comm, req)
                     : R(Issend)(buf, n, t, dest, tag, comm, req);
    case PL_MPI_IBSEND:
        return large ? R(Ibsend_c)(buf, c, t, dest, tag, comm, req)
                     : R(Ibsend)(buf, n, t, dest, tag, comm, req);
    case PL_MPI_IRSEND:
        return large ? R(Irsend_c)(buf, c, t, dest, tag, comm, req)
                     : R(Irsend)(buf, n, t, dest, tag, comm, req);
    default:
        return large ? R(Send_c)(buf, c, t, dest, tag, comm) : R(Send)(buf, n, t, dest, tag, comm);
    }
}

int pl_mpi_send(int mode, const void *buf, MPI_Count count, MPI_Datatype type, int dest,
                int tag, MPI_Comm comm, MPI_Request *req, bool large)
{
    if (!pl_mpi_bind())
        return MPI_ERR_INTERN;
    if (mode < PL_MPI_ISEND) {
        uint8_t msg[PL_MPI_MSG_LEN];
        if (pl_tokenize(buf, count, type, dest, comm, msg))
            return pl_real_send(mode, msg, PL_MPI_MSG_LEN, MPI_BYTE, dest, tag, comm, NULL,
                                false);
        return pl_real_send(mode, buf, count, type, dest, tag, comm, NULL, large);
    }
    /* A nonblocking send's token message must live until completion. */
    pl_mpi_req *r = malloc(sizeof *r);
    if (!r || !pl_tokenize(buf, count, type, dest, comm, r->msg)) {
        free(r);
        return pl_real_send(mode, buf, count, type, dest, tag, comm, req, large);
    }
    int rc = pl_real_send(mode, r->msg, PL_MPI_MSG_LEN, MPI_BYTE, dest, tag, comm, req, false);
    if (rc != MPI_SUCCESS) {
        free(r);
        return rc;
    }
    r->h = *req;
    r->kind = PL_REQ_SEND;
    r->persistent = false;
    r->by_content = false;
    r->msg_live = true;
    r->ent = NULL;
    pl_req_add(r);
    return rc;
}

/* ---- receive side --------------------------------------------------------- */

static int pl_real_recv(void *buf, MPI_Count c, MPI_Datatype t, int source, int tag,
                        MPI_Comm comm, MPI_Status *st, bool large)
{
    return large ? R(Recv_c)(buf, c, t, source, tag, comm, st)
                 : R(Recv)(buf, (int)c, t, source, tag, comm, st);
}

static void pl_status_out(MPI_Status *out, const MPI_Status *st)
{
    if (out != MPI_STATUS_IGNORE)
        *out = *st;
}

int pl_mpi_recv(void *buf, MPI_Count count, MPI_Datatype type, int source, int tag,
                MPI_Comm comm, MPI_Status *status, bool large)
{
    if (!pl_mpi_bind())
        return MPI_ERR_INTERN;
    MPI_Status st;
    int rc;
    pl_mpi_ent *e = pl_stash_take(comm, source, tag);
    if (e) {
        rc = pl_deliver_ent(e, buf, count, type, comm, &st);
    } else {
        rc = pl_real_recv(buf, count, type, source, tag, comm, &st, large);
        if (rc != MPI_SUCCESS || source == MPI_PROC_NULL) {
            pl_status_out(status, &st);
            return rc; /* MPI has reported its own error */
        }
        rc = pl_after_recv(buf, count, type, comm, &st);
    }
    pl_status_out(status, &st);
    return rc == MPI_SUCCESS ? rc : pl_mpi_error(comm, rc);
}

/* ---- requests completed at once (generalized requests) -------------------
 *
 * A nonblocking receive or matched receive served from the stash is done
 * before it returns; MPI still needs a request of its own, unique, that
 * reports our status: a generalized request, completed immediately. */

typedef struct pl_done {
    int source, tag, err;
    uint64_t bytes;
} pl_done;

static int pl_done_query(void *extra, MPI_Status *st)
{
    pl_done *d = extra;
    pl_status_set(st, d->source, d->tag, d->bytes);
    st->MPI_ERROR = d->err;
    return d->err;
}

static int pl_done_free(void *extra)
{
    free(extra);
    return MPI_SUCCESS;
}

static int pl_done_cancel(void *extra, int complete)
{
    (void)extra;
    (void)complete;
    return MPI_SUCCESS;
}

/* Delivers e into (buf, count, type) now and makes *req a completed
 * request reporting it. */
static int pl_done_request(pl_mpi_ent *e, void *buf, MPI_Count count, MPI_Datatype type,
                           MPI_Comm comm, MPI_Request *req)
{
    pl_done *d = malloc(sizeof *d);
    if (!d) {
        free(e);
        return pl_mpi_error(comm, MPI_ERR_NO_MEM);
    }
    MPI_Status st;
    memset(&st, 0, sizeof st);
    d->err = pl_deliver_ent(e, buf, count, type, comm, &st);
    d->source = st.MPI_SOURCE;
    d->tag = st.MPI_TAG;
    MPI_Count n = 0;
    R(Get_elements_x)(&st, MPI_BYTE, &n);
    d->bytes = (uint64_t)n;
    int rc = R(Grequest_start)(pl_done_query, pl_done_free, pl_done_cancel, d, req);
    if (rc != MPI_SUCCESS) {
        free(d);
        return rc;
    }
    return R(Grequest_complete)(*req);
}

static void pl_watch_recv(void *buf, MPI_Count count, MPI_Datatype type, MPI_Comm comm,
                          MPI_Request h, bool persistent)
{
    /* A buffer smaller than a token message cannot take one; a token sent
     * to it truncates, as the real payload would have. */
    if (pl_bytes(count, type, NULL) < PL_MPI_MSG_LEN)
        return;
    pl_mpi_req *r = malloc(sizeof *r);
    if (!r) {
        psi_log(PSI_LOG_ERROR, "MPI receive: out of memory; a token it gets stays unresolved");
        return;
    }
    *r = (pl_mpi_req){.h = h, .kind = PL_REQ_RECV, .persistent = persistent, .buf = buf,
                      .count = count, .type = type, .comm = comm};
    pl_req_add(r);
}

int pl_mpi_irecv(void *buf, MPI_Count count, MPI_Datatype type, int source, int tag,
                 MPI_Comm comm, MPI_Request *req, bool large)
{
    if (!pl_mpi_bind())
        return MPI_ERR_INTERN;
    pl_mpi_ent *e = pl_stash_take(comm, source, tag);
    if (e)
        return pl_done_request(e, buf, count, type, comm, req);
    int rc = large ? R(Irecv_c)(buf, count, type, source, tag, comm, req)
                   : R(Irecv)(buf, (int)count, type, source, tag, comm, req);
    if (rc == MPI_SUCCESS && source != MPI_PROC_NULL)
        pl_watch_recv(buf, count, type, comm, *req, false);
    return rc;
}

/* A persistent receive: every completion is checked for a token until the
 * request is freed. (Persistent sends are not proxied: docs/mpi.md.) */
int pl_mpi_recv_init(void *buf, MPI_Count count, MPI_Datatype type, int source, int tag,
                     MPI_Comm comm, MPI_Request *req, bool large)
{
    if (!pl_mpi_bind())
        return MPI_ERR_INTERN;
    int rc = large ? R(Recv_init_c)(buf, count, type, source, tag, comm, req)
                   : R(Recv_init)(buf, (int)count, type, source, tag, comm, req);
    if (rc == MPI_SUCCESS && source != MPI_PROC_NULL)
        pl_watch_recv(buf, count, type, comm, *req, true);
    return rc;
}

int pl_mpi_complete(MPI_Request h, MPI_Status *st)
{
    pl_mpi_req *r = pl_req_take(h, false);
    if (!r)
        return MPI_SUCCESS;
    int rc = MPI_SUCCESS, cancelled = 0;
    if (r->ent) {
        rc = pl_deliver_ent(r->ent, r->buf, r->count, r->type, r->comm, st);
        r->ent = NULL;
    } else if (r->kind == PL_REQ_RECV) {
        R(Test_cancelled)(st, &cancelled);
        if (!cancelled && (r->by_content || st->MPI_SOURCE != MPI_PROC_NULL))
            rc = pl_after_recv_x(r->buf, r->count, r->type, r->comm, st, r->by_content);
    }
    if (rc != MPI_SUCCESS)
        pl_mpi_error(r->comm, rc);
    /* A cancelled proxied send leaves its object to the TTL and `psi gc`. */
    if (!r->persistent)
        free(r);
    return rc;
}

int pl_mpi_cancel(MPI_Request *req)
{
    /* Nothing of ours: a cancelled receive completes with no data, and
     * completion looks at the status before any token. */
    return pl_mpi_bind() ? R(Cancel)(req) : MPI_ERR_INTERN;
}

int pl_mpi_request_free(MPI_Request *req)
{
    if (!pl_mpi_bind())
        return MPI_ERR_INTERN;
    MPI_Request h = *req;
    int rc = R(Request_free)(req);
    if (rc != MPI_SUCCESS)
        return rc;
    pl_mpi_req *r = pl_req_take(h, true);
    if (r && r->msg_live) {
        /* MPI may still be sending the token message from r->msg: it must
         * outlive the request, which nobody will complete. Kept, on
         * purpose (docs/mpi.md: ~300 bytes per freed proxied send). */
        return rc;
    }
    if (r)
        free(r->ent);
    free(r);
    return rc;
}

/* ---- Sendrecv ------------------------------------------------------------- */

int pl_mpi_sendrecv(const void *sbuf, MPI_Count scount, MPI_Datatype stype, int dest,
                    int stag, void *rbuf, MPI_Count rcount, MPI_Datatype rtype, int source,
                    int rtag, MPI_Comm comm, MPI_Status *status, bool large)
{
    if (!pl_mpi_bind())
        return MPI_ERR_INTERN;
    uint8_t msg[PL_MPI_MSG_LEN];
    if (pl_tokenize(sbuf, scount, stype, dest, comm, msg)) {
        sbuf = msg;
        scount = PL_MPI_MSG_LEN;
        stype = MPI_BYTE;
    }
    MPI_Status st;
    int rc;
    pl_mpi_ent *e = pl_stash_take(comm, source, rtag);
    if (e) {
        /* The receive half is served already; the send half keeps
         * Sendrecv's progress guarantee through a receive from nowhere. */
        rc = large ? R(Sendrecv_c)(sbuf, scount, stype, dest, stag, NULL, 0, MPI_BYTE,
                                   MPI_PROC_NULL, 0, comm, &st)
                   : R(Sendrecv)(sbuf, (int)scount, stype, dest, stag, NULL, 0, MPI_BYTE,
                                 MPI_PROC_NULL, 0, comm, &st);
        if (rc != MPI_SUCCESS) {
            free(e);
            return rc;
        }
        rc = pl_deliver_ent(e, rbuf, rcount, rtype, comm, &st);
    } else {
        rc = large ? R(Sendrecv_c)(sbuf, scount, stype, dest, stag, rbuf, rcount, rtype, source,
                                   rtag, comm, &st)
                   : R(Sendrecv)(sbuf, (int)scount, stype, dest, stag, rbuf, (int)rcount, rtype,
                                 source, rtag, comm, &st);
        if (rc != MPI_SUCCESS || source == MPI_PROC_NULL) {
            pl_status_out(status, &st);
            return rc;
        }
        rc = pl_after_recv(rbuf, rcount, rtype, comm, &st);
    }
    pl_status_out(status, &st);
    return rc == MPI_SUCCESS ? rc : pl_mpi_error(comm, rc);
}

int pl_mpi_sendrecv_replace(void *buf, MPI_Count count, MPI_Datatype type, int dest,
                            int stag, int source, int rtag, MPI_Comm comm, MPI_Status *status,
                            bool large)
{
    if (!pl_mpi_bind())
        return MPI_ERR_INTERN;
    uint8_t msg[PL_MPI_MSG_LEN];
    bool proxied = pl_tokenize(buf, count, type, dest, comm, msg);
    pl_mpi_ent *e = pl_stash_take(comm, source, rtag);
    if (proxied || e) {
        /* The outgoing bytes are in msg (or still in buf, with the incoming
         * ones in the stash): the two halves no longer share a buffer. */
        const void *sbuf = proxied ? (const void *)msg : buf;
        MPI_Count sc = proxied ? PL_MPI_MSG_LEN : count;
        MPI_Datatype stp = proxied ? MPI_BYTE : type;
        bool slarge = proxied ? false : large;
        if (e) {
            MPI_Status st;
            int rc = slarge ? R(Sendrecv_c)(sbuf, sc, stp, dest, stag, NULL, 0, MPI_BYTE,
                                            MPI_PROC_NULL, 0, comm, &st)
                            : R(Sendrecv)(sbuf, (int)sc, stp, dest, stag, NULL, 0, MPI_BYTE,
                                          MPI_PROC_NULL, 0, comm, &st);
            if (rc != MPI_SUCCESS) {
                free(e);
                return rc;
            }
            rc = pl_deliver_ent(e, buf, count, type, comm, &st);
            pl_status_out(status, &st);
            return rc == MPI_SUCCESS ? rc : pl_mpi_error(comm, rc);
        }
        return pl_mpi_sendrecv(msg, PL_MPI_MSG_LEN, MPI_BYTE, dest, stag, buf, count, type,
                               source, rtag, comm, status, large);
    }
    MPI_Status st;
    int rc = large ? R(Sendrecv_replace_c)(buf, count, type, dest, stag, source, rtag, comm, &st)
                   : R(Sendrecv_replace)(buf, (int)count, type, dest, stag, source, rtag, comm,
                                         &st);
    if (rc != MPI_SUCCESS || source == MPI_PROC_NULL) {
        pl_status_out(status, &st);
        return rc;
    }
    rc = pl_after_recv(buf, count, type, comm, &st);
    pl_status_out(status, &st);
    return rc == MPI_SUCCESS ? rc : pl_mpi_error(comm, rc);
}

/* Nonblocking send-receive: the token message (if any) lives in the
 * request's entry; the receive half is resolved at completion, or was
 * served from the stash and is delivered then. */
int pl_mpi_isendrecv(const void *sbuf, MPI_Count scount, MPI_Datatype stype, int dest,
                     int stag, void *rbuf, MPI_Count rcount, MPI_Datatype rtype, int source,
                     int rtag, MPI_Comm comm, MPI_Request *req, bool large, bool replace)
{
    if (!pl_mpi_bind())
        return MPI_ERR_INTERN;
    pl_mpi_req *r = calloc(1, sizeof *r);
    if (!r)
        return pl_mpi_error(comm, MPI_ERR_NO_MEM);
    bool proxied = pl_tokenize(sbuf, scount, stype, dest, comm, r->msg);
    if (proxied) {
        sbuf = r->msg;
        scount = PL_MPI_MSG_LEN;
        stype = MPI_BYTE;
    }
    r->ent = pl_stash_take(comm, source, rtag);
    int rc;
    if (r->ent || proxied || !replace) {
        void *rb = r->ent ? NULL : rbuf;
        MPI_Count rc_ = r->ent ? 0 : rcount;
        MPI_Datatype rt = r->ent ? MPI_BYTE : rtype;
        int src = r->ent ? MPI_PROC_NULL : source;
        /* Replace with a stashed message: it lands in buf at completion,
         * after the send half has taken buf's bytes. */
        rc = large ? R(Isendrecv_c)(sbuf, scount, stype, dest, stag, rb, rc_, rt, src, rtag, comm,
                                  req)
                 : R(Isendrecv)(sbuf, (int)scount, stype, dest, stag, rb, (int)rc_, rt, src, rtag,
                                comm, req);
    } else {
        rc = large ? R(Isendrecv_replace_c)(rbuf, rcount, rtype, dest, stag, source, rtag, comm,
                                            req)
                   : R(Isendrecv_replace)(rbuf, (int)rcount, rtype, dest, stag, source, rtag,
                                          comm, req);
    }
    if (rc != MPI_SUCCESS) {
        free(r->ent);
        free(r);
        return rc;
    }
    r->h = *req;
    r->kind = source == MPI_PROC_NULL && !r->ent ? PL_REQ_SEND : PL_REQ_RECV;
    r->by_content = true;
    r->msg_live = proxied;
    r->buf = rbuf;
    r->count = rcount;
    r->type = rtype;
    r->comm = comm;
    if (!proxied && !r->ent && (r->kind == PL_REQ_SEND ||
                                pl_bytes(rcount, rtype, NULL) < PL_MPI_MSG_LEN)) {
        free(r); /* nothing of ours to finish */
        return rc;
    }
    pl_req_add(r);
    return rc;
}

/* ---- probes --------------------------------------------------------------- */

/* Receives a PL_MPI_MSG_LEN-byte message MPI matched into a new stash
 * entry: a probe must see its real size, and MPI has no peek. */
static pl_mpi_ent *pl_capture(MPI_Message *m, MPI_Comm comm)
{
    pl_mpi_ent *e = calloc(1, sizeof *e);
    MPI_Status st;
    if (!e)
        return NULL;
    if (R(Mrecv)(e->raw, PL_MPI_MSG_LEN, MPI_BYTE, m, &st) != MPI_SUCCESS) {
        free(e);
        return NULL;
    }
    e->comm = (uint64_t)(uint32_t)comm;
    e->source = st.MPI_SOURCE;
    e->tag = st.MPI_TAG;
    psi_err err = {0};
    e->is_token = pl_mpi_msg_is(e->raw, PL_MPI_MSG_LEN) &&
                  pl_mpi_msg_decode(e->raw, &e->msg, &err) == 0 && e->msg.kind == PL_MPI_TOKEN;
    return e;
}

static uint64_t pl_status_bytes(MPI_Status *st)
{
    MPI_Count n = 0;
    return R(Get_elements_x)(st, MPI_BYTE, &n) == MPI_SUCCESS ? (uint64_t)n : 0;
}

int pl_mpi_probe(int source, int tag, MPI_Comm comm, int *flag, MPI_Status *status)
{
    if (!pl_mpi_bind())
        return MPI_ERR_INTERN;
    pl_mpi_pat p = pl_pat(comm, source, tag);
    for (;;) {
        if (atomic_load_explicit(&pl_mpi_nq, memory_order_acquire) && source != MPI_PROC_NULL) {
            MPI_Status st;
            bool hit = false;
            pthread_mutex_lock(&pl_mpi_lock);
            pl_mpi_ent *e = pl_mpi_stash_peek(&pl_mpi_q, &p);
            if (e) {
                memset(&st, 0, sizeof st);
                pl_status_set(&st, e->source, e->tag, pl_mpi_ent_bytes(e));
                hit = true;
            }
            pthread_mutex_unlock(&pl_mpi_lock);
            if (hit) {
                if (flag)
                    *flag = 1;
                pl_status_out(status, &st);
                return MPI_SUCCESS;
            }
        }
        MPI_Status st;
        int rc = flag ? R(Iprobe)(source, tag, comm, flag, &st) : R(Probe)(source, tag, comm, &st);
        if (rc != MPI_SUCCESS || (flag && !*flag) || source == MPI_PROC_NULL ||
            pl_status_bytes(&st) != PL_MPI_MSG_LEN) {
            pl_status_out(status, &st);
            return rc;
        }
        /* Maybe a token: take that very message (the earliest from its
         * source with its tag) into the stash, then answer from there. */
        MPI_Message m;
        int found = 0;
        rc = R(Improbe)(st.MPI_SOURCE, st.MPI_TAG, comm, &found, &m, &st);
        if (rc != MPI_SUCCESS)
            return rc;
        if (!found)
            continue; /* another thread took it */
        pl_mpi_ent *e = pl_capture(&m, comm);
        if (!e)
            return pl_mpi_error(comm, MPI_ERR_OTHER);
        pthread_mutex_lock(&pl_mpi_lock);
        pl_mpi_stash_push(&pl_mpi_q, e);
        atomic_store(&pl_mpi_nq, (unsigned)pl_mpi_q.n);
        pthread_mutex_unlock(&pl_mpi_lock);
    }
}

/* A handle of ours for a message we had to receive (pl_mpi_msg.h). */
static MPI_Message pl_matched_handle(pl_mpi_ent *e)
{
    pthread_mutex_lock(&pl_mpi_lock);
    pl_mpi_next_handle = (pl_mpi_next_handle + 1) & ~PL_MPI_FAKE_MASK;
    uint32_t h = PL_MPI_FAKE_BASE | pl_mpi_next_handle;
    e->handle = h;
    pl_mpi_stash_push(&pl_mpi_matched, e);
    pthread_mutex_unlock(&pl_mpi_lock);
    return (MPI_Message)h;
}

static pl_mpi_ent *pl_matched_take(MPI_Message m)
{
    pthread_mutex_lock(&pl_mpi_lock);
    pl_mpi_ent *prev = NULL, *e;
    for (e = pl_mpi_matched.head; e && e->handle != (uint32_t)m; prev = e, e = e->next)
        ;
    if (e) {
        if (prev)
            prev->next = e->next;
        else
            pl_mpi_matched.head = e->next;
        if (pl_mpi_matched.tail == e)
            pl_mpi_matched.tail = prev;
        pl_mpi_matched.n--;
    }
    pthread_mutex_unlock(&pl_mpi_lock);
    return e;
}

int pl_mpi_mprobe(int source, int tag, MPI_Comm comm, int *flag, MPI_Message *message,
                  MPI_Status *status)
{
    if (!pl_mpi_bind())
        return MPI_ERR_INTERN;
    MPI_Status st;
    pl_mpi_ent *e = pl_stash_take(comm, source, tag);
    if (!e) {
        int rc = flag ? R(Improbe)(source, tag, comm, flag, message, &st)
                      : R(Mprobe)(source, tag, comm, message, &st);
        if (rc != MPI_SUCCESS || (flag && !*flag) || *message == MPI_MESSAGE_NO_PROC ||
            pl_status_bytes(&st) != PL_MPI_MSG_LEN) {
            pl_status_out(status, &st);
            return rc;
        }
        e = pl_capture(message, comm);
        if (!e)
            return pl_mpi_error(comm, MPI_ERR_OTHER);
    }
    if (flag)
        *flag = 1;
    memset(&st, 0, sizeof st);
    pl_status_set(&st, e->source, e->tag, pl_mpi_ent_bytes(e));
    *message = pl_matched_handle(e);
    pl_status_out(status, &st);
    return MPI_SUCCESS;
}

int pl_mpi_mrecv(void *buf, MPI_Count count, MPI_Datatype type, MPI_Message *message,
                 MPI_Status *status, bool large)
{
    if (!pl_mpi_bind())
        return MPI_ERR_INTERN;
    MPI_Status st;
    if (pl_mpi_fake_handle((uint32_t)*message)) {
        pl_mpi_ent *e = pl_matched_take(*message);
        if (!e)
            return pl_mpi_error(MPI_COMM_WORLD, MPI_ERR_REQUEST);
        MPI_Comm comm = (MPI_Comm)(uint32_t)e->comm;
        *message = MPI_MESSAGE_NULL;
        int rc = pl_deliver_ent(e, buf, count, type, comm, &st);
        pl_status_out(status, &st);
        return rc == MPI_SUCCESS ? rc : pl_mpi_error(comm, rc);
    }
    bool noproc = *message == MPI_MESSAGE_NO_PROC;
    int rc = large ? R(Mrecv_c)(buf, count, type, message, &st)
                   : R(Mrecv)(buf, (int)count, type, message, &st);
    /* Our Mprobe captured every PL_MPI_MSG_LEN-byte message, so a real
     * handle is never a token; a message MPI matched for someone else
     * (PMPI_Mprobe from a tool loaded after us) still is checked. */
    if (rc == MPI_SUCCESS && !noproc)
        rc = pl_after_recv(buf, count, type, MPI_COMM_WORLD, &st);
    pl_status_out(status, &st);
    return rc;
}

int pl_mpi_imrecv(void *buf, MPI_Count count, MPI_Datatype type, MPI_Message *message,
                  MPI_Request *req, bool large)
{
    if (!pl_mpi_bind())
        return MPI_ERR_INTERN;
    if (pl_mpi_fake_handle((uint32_t)*message)) {
        pl_mpi_ent *e = pl_matched_take(*message);
        if (!e)
            return pl_mpi_error(MPI_COMM_WORLD, MPI_ERR_REQUEST);
        *message = MPI_MESSAGE_NULL;
        return pl_done_request(e, buf, count, type, (MPI_Comm)(uint32_t)e->comm, req);
    }
    bool noproc = *message == MPI_MESSAGE_NO_PROC;
    int rc = large ? R(Imrecv_c)(buf, count, type, message, req)
                   : R(Imrecv)(buf, (int)count, type, message, req);
    if (rc == MPI_SUCCESS && !noproc)
        pl_watch_recv(buf, count, type, MPI_COMM_WORLD, *req, false);
    return rc;
}

/* ---- Bcast ---------------------------------------------------------------- */

/* Every rank must come to the same answer from what it alone knows: the
 * size, and a threshold the job's environment sets alike everywhere. */
static bool pl_bcast_big(uint64_t bytes)
{
    const psi_policy *p = pl_g.policy;
    uint64_t t = p && p->has_threshold ? p->threshold : pl_g.cfg.threshold;
    return pl_mpi_sending() && bytes >= t && bytes >= PL_MPI_MSG_LEN;
}

static int pl_real_bcast(void *buf, MPI_Count count, MPI_Datatype type, int root, MPI_Comm comm,
                         bool large)
{
    return large ? R(Bcast_c)(buf, count, type, root, comm)
                 : R(Bcast)(buf, (int)count, type, root, comm);
}

/* At the root: one object, one reference per other rank, each rank's token
 * message in its slot of msgs. false: broadcast inline. */
static bool pl_bcast_store(const void *buf, MPI_Count count, MPI_Datatype type, MPI_Count size,
                           uint64_t bytes, MPI_Comm comm, int root, int n, uint8_t *msgs)
{
    pol_decision d;
    void *heap;
    psi_err err = {0};
    if (!pl_want(bytes, &d))
        return false;
    const void *src = pl_pack(buf, count, type, size, bytes, comm, &heap);
    if (!src)
        return false;
    double t0 = pl_now();
    pl_mpi_msg m = {.kind = PL_MPI_TOKEN, .bytes = bytes};
    psi_token first;
    bool have = false, ok = true;
    for (int r = 0; r < n && ok; r++) {
        if (r == root)
            continue;
        if (!have) {
            ok = pl_store_put(src, (size_t)bytes, &d, &first, &err) == 0;
            m.tok = first;
            have = ok;
        } else if (pl_store_ref(&first, &d, &m.tok, &err) != 0) {
            ok = pl_store_put(src, (size_t)bytes, &d, &m.tok, &err) == 0;
        }
        ok = ok && pl_mpi_msg_encode(&m, msgs + (size_t)r * PL_MPI_MSG_LEN, &err) == 0;
    }
    free(heap);
    if (!ok) {
        /* References already made expire with their TTL (psi gc). */
        PSI_STAT_ADD(inline_fallbacks, 1);
        psi_log(PSI_LOG_WARN, "MPI Bcast: store refused a %llu-byte object (%s); "
                "broadcasting it as is", (unsigned long long)bytes, err.msg);
        return false;
    }
    PSI_STAT_ADD(put_ns, (uint64_t)((pl_now() - t0) * 1e9));
    PSI_STAT_ADD(tokens_sent, (uint64_t)(n - 1));
    PSI_STAT_ADD(bytes_proxied, bytes);
    return true;
}

int pl_mpi_bcast(void *buf, MPI_Count count, MPI_Datatype type, int root, MPI_Comm comm,
                 bool large)
{
    if (!pl_mpi_bind())
        return MPI_ERR_INTERN;
    MPI_Count size = 0;
    uint64_t bytes = pl_bytes(count, type, &size);
    int inter = 0, n = 0, rank = 0;
    if (!pl_bcast_big(bytes) || R(Comm_test_inter)(comm, &inter) != MPI_SUCCESS || inter ||
        R(Comm_size)(comm, &n) != MPI_SUCCESS || n < 2 ||
        R(Comm_rank)(comm, &rank) != MPI_SUCCESS)
        return pl_real_bcast(buf, count, type, root, comm, large);
    int rc;
    if (rank == root) {
        PSI_STAT_ADD(bytes_sent, bytes);
        uint8_t *msgs = calloc((size_t)n, PL_MPI_MSG_LEN);
        pl_mpi_msg in = {.kind = PL_MPI_INLINE, .bytes = bytes};
        psi_err err = {0};
        bool proxied = msgs && pl_bcast_store(buf, count, type, size, bytes, comm, root, n, msgs);
        if (msgs && !proxied)
            for (int r = 0; r < n; r++)
                pl_mpi_msg_encode(&in, msgs + (size_t)r * PL_MPI_MSG_LEN, &err);
        if (!msgs)
            return pl_mpi_error(comm, MPI_ERR_NO_MEM);
        rc = R(Scatter)(msgs, PL_MPI_MSG_LEN, MPI_BYTE, MPI_IN_PLACE, PL_MPI_MSG_LEN, MPI_BYTE,
                        root, comm);
        free(msgs);
        if (rc == MPI_SUCCESS && !proxied)
            rc = pl_real_bcast(buf, count, type, root, comm, large);
        return rc;
    }
    uint8_t raw[PL_MPI_MSG_LEN];
    rc = R(Scatter)(NULL, PL_MPI_MSG_LEN, MPI_BYTE, raw, PL_MPI_MSG_LEN, MPI_BYTE, root, comm);
    if (rc != MPI_SUCCESS)
        return rc;
    pl_mpi_msg m;
    psi_err err = {0};
    if (pl_mpi_msg_decode(raw, &m, &err) != 0 || m.bytes != bytes) {
        PSI_STAT_ADD(errors, 1);
        psi_log(PSI_LOG_ERROR, "MPI Bcast from root %d: bad token message (%s); do all ranks "
                "run with the same PSI_THRESHOLD and the library preloaded?", root,
                err.msg[0] ? err.msg : "size differs");
        return pl_mpi_error(comm, MPI_ERR_OTHER);
    }
    if (m.kind == PL_MPI_INLINE)
        return pl_real_bcast(buf, count, type, root, comm, large);
    MPI_Status st;
    memset(&st, 0, sizeof st);
    rc = pl_deliver_token(&m, buf, count, type, comm, &st);
    return rc == MPI_SUCCESS ? rc : pl_mpi_error(comm, rc);
}

#endif /* PL_HAVE_MPI */
