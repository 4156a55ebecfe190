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
 * into the stash (pl_mpi_msg.h), which every receive consults first.
 *
 * This file: binding, the stash and the request table, datatypes,
 * delivery and completion. Sends and Bcast are in pl_mpi_send.c, receives
 * and probes in pl_mpi_recv.c, Wait/Test in pl_mpi_wait.c, the entry
 * points' table in pl_mpi_ops.c, the exported symbols in pl_hooks_mpi.c.
 * Compiled once per MPI ABI (pl_mpi.h); what differs is in pl_mpi_abi.h. */
#include "pl_mpi_int.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "pl_engine.h"
#include "pl_mpi_msg.h"
#include "pl_store.h"
#include "psi_log.h"
#include "psi_stats.h"

pl_mpi_real_table pl_mpi_real;
#ifdef PL_MPI_ABI_OMPI
pl_ompi_objs pl_ompi_obj;
char pl_ompi_fake_msgs[PL_OMPI_FAKE_SPAN];
#endif

/* pl_mpi.h passes handles at register width and counts as int64_t. */
_Static_assert(sizeof(MPI_Comm) <= sizeof(pl_h) && sizeof(MPI_Datatype) <= sizeof(pl_h) &&
                   sizeof(MPI_Request) <= sizeof(pl_h) && sizeof(MPI_Message) <= sizeof(pl_h) &&
                   sizeof(MPI_Count) == sizeof(pl_mpi_count),
               "an MPI handle does not fit in a register");

/* ---- binding -------------------------------------------------------------- */

static pthread_once_t pl_mpi_bind_once = PTHREAD_ONCE_INIT;
static atomic_bool pl_mpi_bound; /* every symbol found */

/* The object every real symbol comes from, chosen once, by where `first` is.
 * RTLD_NEXT finds the MPI library when the program links it. A binding
 * that loads it privately (dlopen RTLD_LOCAL) hides it from RTLD_NEXT; then
 * the library is already mapped and RTLD_NOLOAD finds it by soname (that
 * handle is kept: we call into the library from then on). NULL: none. */
static void *pl_mpi_lib(const char *first)
{
    static const char *const libs[] = PL_MPI_SONAMES;
    if (dlsym(RTLD_NEXT, first))
        return RTLD_NEXT;
    for (size_t i = 0; i < sizeof libs / sizeof libs[0]; i++) {
        void *h = dlopen(libs[i], RTLD_LAZY | RTLD_NOLOAD);
        if (h && dlsym(h, first))
            return h;
        if (h)
            dlclose(h);
    }
    return NULL;
}

static void *pl_mpi_sym(void *lib, const char *name)
{
    return lib ? dlsym(lib, name) : NULL;
}

static void pl_mpi_bind_all(void)
{
    const char *missing = NULL;
    void *lib = pl_mpi_lib("PMPI_Send");
#define PL_MPI_BIND(name)                                         \
    *(void **)&pl_mpi_real.name = pl_mpi_sym(lib, "PMPI_" #name); \
    if (!pl_mpi_real.name && !missing)                            \
        missing = "PMPI_" #name;
    PL_MPI_REAL(PL_MPI_BIND)
#undef PL_MPI_BIND
#ifdef PL_MPI_ABI_OMPI
#define PL_OMPI_BIND(name)                                        \
    if (!(pl_ompi_obj.name = pl_mpi_sym(lib, #name)) && !missing) \
        missing = #name;
    PL_OMPI_OBJS(PL_OMPI_BIND)
#undef PL_OMPI_BIND
#endif
    if (missing) {
        psi_log(PSI_LOG_WARN, "MPI: %s not found in this %s library; MPI calls pass "
                "through untouched", missing, PL_MPI_ABI_NAME);
        return;
    }
    atomic_store_explicit(&pl_mpi_bound, true, memory_order_release);
}

bool pl_mpi_bind(void)
{
    if (atomic_load_explicit(&pl_mpi_bound, memory_order_acquire))
        return true;
    pthread_once(&pl_mpi_bind_once, pl_mpi_bind_all);
    return atomic_load_explicit(&pl_mpi_bound, memory_order_acquire);
}

/* ---- shared state: the stash, matched-message handles, requests ----------- */

static pthread_mutex_t pl_mpi_lock = PTHREAD_MUTEX_INITIALIZER;
static pl_mpi_stash pl_mpi_q;           /* probed messages, in match order */
static pl_mpi_stash pl_mpi_matched;     /* Mprobe'd, owned by a handle of ours */
static atomic_uint pl_mpi_nq;           /* pl_mpi_q.n, read without the lock */
static uint32_t pl_mpi_next_handle;

#define PL_REQ_BUCKETS 256
/* Written under pl_mpi_lock; a bucket's head is also read without it, so
 * that completing a request that is not ours (its bucket empty, the usual
 * case) takes no lock. That read cannot miss an entry: a request is added
 * by the call that creates it, before the application has its handle. */
static _Atomic(pl_mpi_req *) pl_mpi_reqs[PL_REQ_BUCKETS];
static atomic_uint pl_mpi_nreq;

bool pl_mpi_have_reqs(void)
{
    return atomic_load_explicit(&pl_mpi_nreq, memory_order_acquire) != 0;
}

static unsigned pl_req_bucket(MPI_Request h)
{
    return pl_mpi_req_hash(h) >> 24 & (PL_REQ_BUCKETS - 1);
}

void pl_mpi_req_add(pl_mpi_req *r)
{
    pthread_mutex_lock(&pl_mpi_lock);
    unsigned b = pl_req_bucket(r->h);
    r->next = atomic_load_explicit(&pl_mpi_reqs[b], memory_order_relaxed);
    atomic_store_explicit(&pl_mpi_reqs[b], r, memory_order_release);
    atomic_fetch_add(&pl_mpi_nreq, 1);
    pthread_mutex_unlock(&pl_mpi_lock);
}

pl_mpi_req *pl_mpi_req_claim(MPI_Request h)
{
    if (!pl_mpi_have_reqs() || h == MPI_REQUEST_NULL)
        return NULL;
    unsigned b = pl_req_bucket(h);
    if (!atomic_load_explicit(&pl_mpi_reqs[b], memory_order_acquire))
        return NULL;
    pthread_mutex_lock(&pl_mpi_lock);
    pl_mpi_req *prev = NULL, *r = atomic_load_explicit(&pl_mpi_reqs[b], memory_order_relaxed);
    while (r && r->h != h) {
        prev = r;
        r = r->next;
    }
    if (r) {
        if (prev)
            prev->next = r->next;
        else
            atomic_store_explicit(&pl_mpi_reqs[b], r->next, memory_order_relaxed);
        atomic_fetch_sub(&pl_mpi_nreq, 1);
    }
    pthread_mutex_unlock(&pl_mpi_lock);
    return r;
}

pl_mpi_pat pl_mpi_pat_of(MPI_Comm comm, int source, int tag)
{
    return (pl_mpi_pat){.comm = pl_mpi_comm_key(comm), .source = source, .tag = tag,
                        .any_source = source == MPI_ANY_SOURCE, .any_tag = tag == MPI_ANY_TAG};
}

/* The oldest stashed message a receive of (source, tag, comm) matches. */
pl_mpi_ent *pl_mpi_q_take(MPI_Comm comm, int source, int tag)
{
    if (atomic_load_explicit(&pl_mpi_nq, memory_order_acquire) == 0 ||
        source == MPI_PROC_NULL)
        return NULL;
    pl_mpi_pat p = pl_mpi_pat_of(comm, source, tag);
    pthread_mutex_lock(&pl_mpi_lock);
    pl_mpi_ent *e = pl_mpi_stash_take(&pl_mpi_q, &p);
    atomic_store(&pl_mpi_nq, (unsigned)pl_mpi_q.n);
    pthread_mutex_unlock(&pl_mpi_lock);
    return e;
}

/* A probed message joins the stash, after every earlier one. */
void pl_mpi_q_push(pl_mpi_ent *e)
{
    pthread_mutex_lock(&pl_mpi_lock);
    pl_mpi_stash_push(&pl_mpi_q, e);
    atomic_store(&pl_mpi_nq, (unsigned)pl_mpi_q.n);
    pthread_mutex_unlock(&pl_mpi_lock);
}

bool pl_mpi_q_probe(MPI_Comm comm, int source, int tag, MPI_Status *st)
{
    if (atomic_load_explicit(&pl_mpi_nq, memory_order_acquire) == 0 ||
        source == MPI_PROC_NULL)
        return false;
    pl_mpi_pat p = pl_mpi_pat_of(comm, source, tag);
    pthread_mutex_lock(&pl_mpi_lock);
    pl_mpi_ent *e = pl_mpi_stash_peek(&pl_mpi_q, &p);
    if (e) {
        memset(st, 0, sizeof *st);
        pl_mpi_status_set(st, e->source, e->tag, pl_mpi_ent_bytes(e));
    }
    pthread_mutex_unlock(&pl_mpi_lock);
    return e != NULL;
}

/* ---- datatypes ------------------------------------------------------------ */

/* Named types whose elements abut in memory: the payload is the buffer.
 * Derived types, and named pair types with padding (MPI_DOUBLE_INT), go
 * through MPI_Pack/MPI_Unpack. */
bool pl_mpi_contiguous(MPI_Datatype type, MPI_Count size)
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
uint64_t pl_mpi_bytes(MPI_Count count, MPI_Datatype type, MPI_Count *size)
{
    MPI_Count s = 0;
    if (count <= 0 || R(Type_size_x)(type, &s) != MPI_SUCCESS || s <= 0 ||
        s == MPI_UNDEFINED || count > INT64_MAX / s)
        return 0;
    if (size)
        *size = s;
    return (uint64_t)count * (uint64_t)s;
}

void pl_mpi_status_set(MPI_Status *st, int source, int tag, uint64_t bytes)
{
    st->MPI_SOURCE = source;
    st->MPI_TAG = tag;
    R(Status_set_elements_x)(st, MPI_BYTE, (MPI_Count)bytes);
    R(Status_set_cancelled)(st, 0);
}

/* Calls the communicator's error handler, as MPI does for its own errors
 * (the default handler aborts the job), and returns code. */
int pl_mpi_error(MPI_Comm comm, int code)
{
    R(Comm_call_errhandler)(comm, code);
    return code;
}

/* Writes n packed bytes into (buf, count, type). Sets *written to what
 * landed; MPI_ERR_TRUNCATE if the buffer holds less than n, as MPI would.
 * obj, if not NULL, is the resolved object src lies in: its bytes are
 * checked as they are copied (psi_obj_copy), or before MPI unpacks them. */
static int pl_unpack(const void *src, uint64_t n, const psi_obj *obj, void *buf,
                     MPI_Count count, MPI_Datatype type, MPI_Comm comm, uint64_t *written)
{
    psi_err err = {0};
    MPI_Count size = 0;
    uint64_t cap = pl_mpi_bytes(count, type, &size);
    uint64_t take = n < cap ? n : cap;
    *written = 0;
    if (take == 0)
        return n > cap ? MPI_ERR_TRUNCATE : MPI_SUCCESS;
    if (pl_mpi_contiguous(type, size)) {
        if (!obj)
            memcpy(buf, src, take);
        else if (psi_obj_copy(obj, 0, buf, take, &err) != 0)
            goto bad;
    } else {
        /* Whole elements only: a payload that ends inside an element came
         * from a sender whose type signature differs (docs/mpi.md). */
        MPI_Count full = (MPI_Count)(take / (uint64_t)size), pos = 0;
        take = (uint64_t)full * (uint64_t)size;
        if (obj && psi_obj_verify(obj, 0, take, &err) != 0)
            goto bad;
        if (full > 0 &&
            pl_mpi_unpack_x(src, (MPI_Count)take, &pos, buf, full, type, comm) != MPI_SUCCESS)
            return MPI_ERR_OTHER;
    }
    *written = take;
    return n > cap ? MPI_ERR_TRUNCATE : MPI_SUCCESS;
bad:
    PSI_STAT_ADD(errors, 1);
    psi_log(PSI_LOG_ERROR, "MPI receive: %s", err.msg);
    return MPI_ERR_OTHER;
}

/* Resolves a token into (buf, count, type) and sets the status size. */
int pl_mpi_deliver_token(const pl_mpi_msg *m, void *buf, MPI_Count count, MPI_Datatype type,
                            MPI_Comm comm, MPI_Status *st)
{
    psi_obj obj;
    psi_err err = {0};
    uint64_t t0 = pl_now_ns();
    if (pl_store_resolve_lazy(&m->tok, &obj, &err) != 0) {
        PSI_STAT_ADD(errors, 1);
        psi_log(PSI_LOG_ERROR, "MPI receive: token for %llu bytes not resolved: %s",
                (unsigned long long)m->bytes, err.msg);
        return MPI_ERR_OTHER;
    }
    uint64_t written = 0;
    int rc = pl_unpack(obj.data, obj.len, &obj, buf, count, type, comm, &written);
    psi_obj_release(&obj);
    PSI_STAT_ADD(get_ns, pl_now_ns() - t0);
    PSI_STAT_ADD(tokens_resolved, 1);
    PSI_STAT_ADD(bytes_resolved, written);
    psi_log(PSI_LOG_DEBUG, "MPI receive: resolved token %s (%llu bytes)", m->tok.key,
            (unsigned long long)m->bytes);
    R(Status_set_elements_x)(st, MPI_BYTE, (MPI_Count)(rc == MPI_SUCCESS ? m->bytes : written));
    return rc;
}

/* Delivers a stashed message and fills st; frees e. */
int pl_mpi_deliver_ent(pl_mpi_ent *e, void *buf, MPI_Count count, MPI_Datatype type,
                          MPI_Comm comm, MPI_Status *st)
{
    int rc;
    pl_mpi_status_set(st, e->source, e->tag, pl_mpi_ent_bytes(e));
    if (e->is_token) {
        rc = pl_mpi_deliver_token(&e->msg, buf, count, type, comm, st);
    } else {
        uint64_t written;
        rc = pl_unpack(e->big ? e->big : e->raw, pl_mpi_ent_bytes(e), NULL, buf, count, type,
                       comm, &written);
        if (rc != MPI_SUCCESS)
            R(Status_set_elements_x)(st, MPI_BYTE, (MPI_Count)written);
    }
    pl_mpi_ent_free(e);
    return rc;
}

/* The first PL_MPI_MSG_LEN bytes a receive put into (buf, count, type), or
 * NULL. For a derived type they are packed into *tmp (the whole elements
 * that cover them). */
static const uint8_t *pl_peek(const void *buf, MPI_Count count, MPI_Datatype type,
                              MPI_Comm comm, void **tmp)
{
    MPI_Count size = 0;
    uint64_t cap = pl_mpi_bytes(count, type, &size);
    *tmp = NULL;
    if (cap < PL_MPI_MSG_LEN)
        return NULL;
    MPI_Count k = (MPI_Count)((PL_MPI_MSG_LEN + (uint64_t)size - 1) / (uint64_t)size);
    return pl_mpi_pack(buf, k, type, size, (uint64_t)k * (uint64_t)size, comm, tmp);
}

/* After a real receive into (buf, count, type) completed with st: if it
 * brought a token, resolve it. Returns an MPI error code (not yet reported
 * to the error handler). by_content: the status's size cannot be trusted
 * (MPICH 4.0's MPI_Isendrecv leaves it stale), so only the bytes decide:
 * magic, checksum and token must all hold. */
int pl_mpi_after_recv_x(void *buf, MPI_Count count, MPI_Datatype type, MPI_Comm comm,
                           MPI_Status *st, bool by_content)
{
    MPI_Count n = PL_MPI_MSG_LEN;
    if (!by_content && (n = pl_mpi_status_bytes(st)) != PL_MPI_MSG_LEN)
        return MPI_SUCCESS;
    void *tmp;
    const uint8_t *p = pl_peek(buf, count, type, comm, &tmp);
    pl_mpi_msg m;
    psi_err err = {0};
    bool token = p && pl_mpi_msg_is(p, (uint64_t)n) && pl_mpi_msg_decode(p, &m, &err) == 0 &&
                 m.kind == PL_MPI_TOKEN;
    if (p && !token && pl_mpi_msg_is(p, (uint64_t)n))
        psi_log(PSI_LOG_DEBUG, "MPI receive: %d bytes with our magic taken as data: %s",
                PL_MPI_MSG_LEN, err.msg);
    free(tmp);
    return token ? pl_mpi_deliver_token(&m, buf, count, type, comm, st) : MPI_SUCCESS;
}

int pl_mpi_after_recv(void *buf, MPI_Count count, MPI_Datatype type, MPI_Comm comm,
                         MPI_Status *st)
{
    return pl_mpi_after_recv_x(buf, count, type, comm, st, false);
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
    pl_mpi_status_set(st, d->source, d->tag, d->bytes);
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
int pl_mpi_done_request(pl_mpi_ent *e, void *buf, MPI_Count count, MPI_Datatype type,
                           MPI_Comm comm, MPI_Request *req)
{
    pl_done *d = malloc(sizeof *d);
    if (!d) {
        pl_mpi_ent_free(e);
        return pl_mpi_error(comm, MPI_ERR_NO_MEM);
    }
    MPI_Status st;
    memset(&st, 0, sizeof st);
    d->err = pl_mpi_deliver_ent(e, buf, count, type, comm, &st);
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

void pl_mpi_watch_recv(void *buf, MPI_Count count, MPI_Datatype type, MPI_Comm comm,
                          MPI_Request h, bool persistent)
{
    /* A buffer smaller than a token message cannot take one; a token sent
     * to it truncates, as the real payload would have. */
    if (pl_mpi_bytes(count, type, NULL) < PL_MPI_MSG_LEN)
        return;
    pl_mpi_req *r = malloc(sizeof *r);
    if (!r) {
        psi_log(PSI_LOG_ERROR, "MPI receive: out of memory; a token it gets stays unresolved");
        return;
    }
    *r = (pl_mpi_req){.h = h, .kind = PL_REQ_RECV, .persistent = persistent, .buf = buf,
                      .count = count, .type = type, .comm = comm};
    pl_mpi_req_add(r);
}


int pl_mpi_req_finish(pl_mpi_req *r, MPI_Status *st)
{
    int rc = MPI_SUCCESS, cancelled = 0;
    if (r->ent) {
        rc = pl_mpi_deliver_ent(r->ent, r->buf, r->count, r->type, r->comm, st);
        r->ent = NULL;
    } else if (r->kind == PL_REQ_RECV) {
        R(Test_cancelled)(st, &cancelled);
        if (!cancelled && (r->by_content || st->MPI_SOURCE != MPI_PROC_NULL))
            rc = pl_mpi_after_recv_x(r->buf, r->count, r->type, r->comm, st, r->by_content);
    }
    if (rc != MPI_SUCCESS)
        pl_mpi_error(r->comm, rc);
    /* A cancelled proxied send leaves its object to the TTL and `psi gc`. */
    if (r->persistent)
        pl_mpi_req_add(r);
    else
        free(r);
    return rc;
}

void pl_mpi_req_drop(pl_mpi_req *r)
{
    if (r->persistent) {
        pl_mpi_req_add(r);
        return;
    }
    /* MPI may still be sending the token message from r->msg: it must
     * outlive the request, which nobody will complete. Kept, on purpose
     * (docs/mpi.md: about 330 bytes per freed proxied send). */
    if (r->msg_live)
        return;
    pl_mpi_ent_free(r->ent);
    free(r);
}

int pl_mpi_cancel(MPI_Request *req)
{
    /* Nothing of ours: a cancelled receive completes with no data, and
     * completion looks at the status before any token. */
    return R(Cancel)(req);
}

int pl_mpi_request_free(MPI_Request *req)
{
    /* Out of the table first: once MPI frees the handle, another thread's
     * new request may get the same value. */
    pl_mpi_req *r = pl_mpi_req_claim(*req);
    int rc = R(Request_free)(req);
    if (r && rc != MPI_SUCCESS) {
        pl_mpi_req_add(r);
        return rc;
    }
    if (r) {
        r->persistent = false;
        pl_mpi_req_drop(r);
    }
    return rc;
}

/* A handle of ours for a message we had to receive (pl_mpi_msg.h). */
MPI_Message pl_mpi_matched_handle(pl_mpi_ent *e)
{
    pthread_mutex_lock(&pl_mpi_lock);
    pl_mpi_next_handle = pl_mpi_fake_next(pl_mpi_next_handle);
    e->handle = pl_mpi_next_handle;
    pl_mpi_stash_push(&pl_mpi_matched, e);
    pthread_mutex_unlock(&pl_mpi_lock);
    return pl_mpi_fake_msg(e->handle);
}

pl_mpi_ent *pl_mpi_matched_take(uint32_t handle)
{
    pthread_mutex_lock(&pl_mpi_lock);
    pl_mpi_ent *e = pl_mpi_stash_take_handle(&pl_mpi_matched, handle);
    pthread_mutex_unlock(&pl_mpi_lock);
    return e;
}
