/* pl_mpi_send: the send side of the MPI hooks, and Bcast (docs/mpi.md).
 *
 * A message whose packed size passes the decision is packed if its
 * datatype is not contiguous, put into the store, and replaced by a token
 * message of PL_MPI_MSG_LEN bytes on the same communicator, tag and
 * destination, so MPI's matching order is the application's. */
#include "pl_mpi_int.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "pl_engine.h"
#include "pl_store.h"
#include "psi_log.h"
#include "psi_stats.h"

/* ---- send side ------------------------------------------------------------ */

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
    uint64_t sample; /* pl_fan_sample of the buffer as stored */
    psi_token tok;
} pl_fan = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* xxh3-64 over the first, middle and last 4 KiB of a buffer (overlapping,
 * or all of it, when it is smaller). */
#define PL_FAN_WINDOW 4096
static uint64_t pl_fan_sample(const void *buf, uint64_t bytes)
{
    const uint8_t *p = buf;
    size_t w = bytes < PL_FAN_WINDOW ? (size_t)bytes : PL_FAN_WINDOW;
    uint64_t h = XXH3_64bits(p, w);
    h = XXH3_64bits_withSeed(p + (bytes - w) / 2, w, h);
    return XXH3_64bits_withSeed(p + (bytes - w), w, h);
}

static int pl_put(const void *src, uint64_t bytes, const pol_decision *d, const void *cache_buf,
                  MPI_Comm comm, int dest, psi_token *tok, psi_err *err)
{
    if (cache_buf) {
        psi_token last;
        uint64_t sample = 0;
        bool try = false;
        pthread_mutex_lock(&pl_fan.lock);
        if (pl_fan.valid && pl_fan.buf == cache_buf && pl_fan.bytes == bytes &&
            pl_fan.comm == comm && pl_fan.dest != dest && pl_fan.connector == d->connector) {
            last = pl_fan.tok;
            sample = pl_fan.sample;
            try = true;
        }
        pthread_mutex_unlock(&pl_fan.lock);
        /* Only the full hash proves the contents are the stored object's.
         * But a buffer refilled with new data (a loop over ranks that
         * writes before each send) almost always differs in a sampled
         * window too: comparing 12 KiB first spares it a hash of the whole
         * payload before pl_store_put reads and hashes it all again. */
        if (try && pl_fan_sample(src, bytes) == sample) {
            psi_hash128 h = psi_token_sum(last.connector, src, (size_t)bytes);
            psi_err ignored = {0};
            if (h.lo == last.sum.lo && h.hi == last.sum.hi &&
                pl_store_ref(&last, d, tok, &ignored) == 0)
                return 0;
        }
    }
    if (pl_store_put(src, (size_t)bytes, d, pl_store_route_unknown(d), tok, err) != 0)
        return -1;
    if (cache_buf) {
        uint64_t sample = pl_fan_sample(src, bytes);
        pthread_mutex_lock(&pl_fan.lock);
        pl_fan.valid = true;
        pl_fan.sample = sample;
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

const void *pl_mpi_pack(const void *buf, MPI_Count count, MPI_Datatype type, MPI_Count size,
                           uint64_t bytes, MPI_Comm comm, void **heap)
{
    *heap = NULL;
    if (pl_mpi_contiguous(type, size))
        return buf;
    MPI_Count pos = 0;
    *heap = malloc((size_t)bytes);
    if (!*heap ||
        pl_mpi_pack_x(buf, count, type, *heap, (MPI_Count)bytes, &pos, comm) != MPI_SUCCESS ||
        (uint64_t)pos != bytes) {
        free(*heap);
        *heap = NULL;
        return NULL;
    }
    return *heap;
}

/* The decision for `bytes` of MPI payload to rank dest (-1: a Bcast's
 * root): proxy or not. Channel mpi, no peer address. */
static bool pl_want(uint64_t bytes, int dest, pol_decision *d)
{
    if (!pl_mpi_sending() || bytes < PL_MPI_MSG_LEN || bytes < pl_g.min_candidate)
        return false;
    pl_decide_for(POL_CH_MPI, NULL, 0, bytes, d);
    if (d->action == POL_ACT_LOG) {
        char where[32];
        snprintf(where, sizeof where, dest >= 0 ? "to rank %d" : "as Bcast root", dest);
        pl_log_send_for(POL_CH_MPI, where, bytes, d);
    }
    return d->action == POL_ACT_PROXY;
}

/* Stores (buf, count, type) if the decision says so and writes the token
 * message into msg. 1: send msg instead; 0: send the real message. */
int pl_mpi_tokenize(const void *buf, MPI_Count count, MPI_Datatype type, int dest,
                       MPI_Comm comm, uint8_t msg[PL_MPI_MSG_LEN])
{
    static atomic_int warned;
    MPI_Count size = 0;
    pol_decision d;
    if (dest == MPI_PROC_NULL || !pl_mpi_sending())
        return 0;
    uint64_t bytes = pl_mpi_bytes(count, type, &size);
    PSI_STAT_ADD(bytes_sent, bytes);
    if (!pl_want(bytes, dest, &d))
        return 0;
    void *heap;
    const void *src = pl_mpi_pack(buf, count, type, size, bytes, comm, &heap);
    if (!src)
        return 0;
    pl_mpi_msg m = {.kind = PL_MPI_TOKEN, .bytes = bytes};
    psi_err err = {0};
    uint64_t t0 = pl_now_ns();
    int rc = pl_put(src, bytes, &d, heap ? NULL : buf, comm, dest, &m.tok, &err);
    free(heap);
    if (rc != 0) {
        PSI_STAT_ADD(inline_fallbacks, 1);
        psi_log_once(warned, PSI_LOG_WARN,
                     "MPI send: store refused a %llu-byte object (%s); sending it as is",
                     (unsigned long long)bytes, err.msg);
        return 0;
    }
    PSI_STAT_ADD(put_ns, pl_now_ns() - t0);
    if (pl_mpi_msg_encode(&m, msg, &err) != 0) {
        psi_log(PSI_LOG_ERROR, "MPI send: token message: %s", err.msg);
        return 0;
    }
    PSI_STAT_ADD(tokens_sent, 1);
    PSI_STAT_ADD(bytes_proxied, bytes);
    psi_log(PSI_LOG_DEBUG, "MPI send of %llu bytes to rank %d as token %s",
            (unsigned long long)bytes, dest, m.tok.key);
    return 1;
}

static int pl_real_send(int mode, const void *buf, MPI_Count c, MPI_Datatype t, int dest,
                        int tag, MPI_Comm comm, MPI_Request *req, bool large)
{
    int n = (int)c;
    switch (mode) {
    case PL_MPI_SSEND:
        return PL_LARGE(large, R(Ssend_c)(buf, c, t, dest, tag, comm),
                        R(Ssend)(buf, n, t, dest, tag, comm));
    case PL_MPI_BSEND:
        return PL_LARGE(large, R(Bsend_c)(buf, c, t, dest, tag, comm),
                        R(Bsend)(buf, n, t, dest, tag, comm));
    case PL_MPI_RSEND:
        return PL_LARGE(large, R(Rsend_c)(buf, c, t, dest, tag, comm),
                        R(Rsend)(buf, n, t, dest, tag, comm));
    case PL_MPI_ISEND:
        return PL_LARGE(large, R(Isend_c)(buf, c, t, dest, tag, comm, req),
                        R(Isend)(buf, n, t, dest, tag, comm, req));
    case PL_MPI_ISSEND:
        return PL_LARGE(large, R(Issend_c)(buf, c, t, dest, tag, comm, req),
                        R(Issend)(buf, n, t, dest, tag, comm, req));
    case PL_MPI_IBSEND:
        return PL_LARGE(large, R(Ibsend_c)(buf, c, t, dest, tag, comm, req),
                        R(Ibsend)(buf, n, t, dest, tag, comm, req));
    case PL_MPI_IRSEND:
        return PL_LARGE(large, R(Irsend_c)(buf, c, t, dest, tag, comm, req),
                        R(Irsend)(buf, n, t, dest, tag, comm, req));
    default:
        return PL_LARGE(large, R(Send_c)(buf, c, t, dest, tag, comm),
                        R(Send)(buf, n, t, dest, tag, comm));
    }
}

int pl_mpi_send(int mode, const void *buf, MPI_Count count, MPI_Datatype type, int dest,
                int tag, MPI_Comm comm, MPI_Request *req, bool large)
{
    if (mode < PL_MPI_ISEND) {
        uint8_t msg[PL_MPI_MSG_LEN];
        if (pl_mpi_tokenize(buf, count, type, dest, comm, msg))
            return pl_real_send(mode, msg, PL_MPI_MSG_LEN, MPI_BYTE, dest, tag, comm, NULL,
                                false);
        return pl_real_send(mode, buf, count, type, dest, tag, comm, NULL, large);
    }
    /* A nonblocking send's token message must live until completion: it
     * moves into the request's entry (allocated only for a token). */
    uint8_t msg[PL_MPI_MSG_LEN];
    if (!pl_mpi_tokenize(buf, count, type, dest, comm, msg))
        return pl_real_send(mode, buf, count, type, dest, tag, comm, req, large);
    pl_mpi_req *r = calloc(1, sizeof *r);
    if (!r)
        return pl_mpi_error(comm, MPI_ERR_NO_MEM); /* the object expires with its TTL */
    memcpy(r->msg, msg, sizeof msg);
    int rc = pl_real_send(mode, r->msg, PL_MPI_MSG_LEN, MPI_BYTE, dest, tag, comm, req, false);
    if (rc != MPI_SUCCESS) {
        free(r);
        return rc;
    }
    r->h = *req;
    r->kind = PL_REQ_SEND;
    r->msg_live = true;
    pl_mpi_req_add(r);
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
    return PL_LARGE(large, R(Bcast_c)(buf, count, type, root, comm),
                    R(Bcast)(buf, (int)count, type, root, comm));
}

/* At the root: one object, one reference per other rank, each rank's token
 * message in its slot of msgs. false: broadcast inline. */
static bool pl_bcast_store(const void *buf, MPI_Count count, MPI_Datatype type, MPI_Count size,
                           uint64_t bytes, MPI_Comm comm, int root, int n, uint8_t *msgs)
{
    pol_decision d;
    void *heap;
    psi_err err = {0};
    if (!pl_want(bytes, -1, &d))
        return false;
    const void *src = pl_mpi_pack(buf, count, type, size, bytes, comm, &heap);
    if (!src)
        return false;
    uint64_t t0 = pl_now_ns();
    pl_mpi_msg m = {.kind = PL_MPI_TOKEN, .bytes = bytes};
    psi_token first;
    bool have = false, ok = true;
    int slot = pl_store_route_unknown(&d);
    for (int r = 0; r < n && ok; r++) {
        if (r == root)
            continue;
        if (!have) {
            ok = pl_store_put(src, (size_t)bytes, &d, slot, &first, &err) == 0;
            m.tok = first;
            have = ok;
        } else if (pl_store_ref(&first, &d, &m.tok, &err) != 0) {
            ok = pl_store_put(src, (size_t)bytes, &d, slot, &m.tok, &err) == 0;
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
    PSI_STAT_ADD(put_ns, pl_now_ns() - t0);
    PSI_STAT_ADD(tokens_sent, (uint64_t)(n - 1));
    PSI_STAT_ADD(bytes_proxied, bytes);
    psi_log(PSI_LOG_DEBUG, "MPI Bcast of %llu bytes as object %.32s, %d references",
            (unsigned long long)bytes, first.key, n - 1);
    return true;
}

int pl_mpi_bcast(void *buf, MPI_Count count, MPI_Datatype type, int root, MPI_Comm comm,
                 bool large)
{
    MPI_Count size = 0;
    uint64_t bytes = pl_mpi_bytes(count, type, &size);
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
    rc = pl_mpi_deliver_token(&m, buf, count, type, comm, &st);
    return rc == MPI_SUCCESS ? rc : pl_mpi_error(comm, rc);
}
