/* pl_mpi_recv: receives, send-receives and probes (docs/mpi.md).
 *
 * Every receive looks in the stash first (messages a probe had to take in,
 * pl_mpi.c), then goes straight into the application's buffer; a token
 * that lands there is resolved in place (pl_mpi_after_recv), now for a
 * blocking call, at completion for a nonblocking one. */
#include "pl_mpi_int.h"

#include <stdlib.h>
#include <string.h>

#include "psi_log.h"
#include "psi_stats.h"

/* ---- receive side --------------------------------------------------------- */

static int pl_real_recv(void *buf, MPI_Count c, MPI_Datatype t, int source, int tag,
                        MPI_Comm comm, MPI_Status *st, bool large)
{
    return PL_LARGE(large, R(Recv_c)(buf, c, t, source, tag, comm, st),
                    R(Recv)(buf, (int)c, t, source, tag, comm, st));
}

int pl_mpi_recv(void *buf, MPI_Count count, MPI_Datatype type, int source, int tag,
                MPI_Comm comm, MPI_Status *status, bool large)
{
    MPI_Status st;
    int rc;
    pl_mpi_ent *e = pl_mpi_q_take(comm, source, tag);
    if (e) {
        rc = pl_mpi_deliver_ent(e, buf, count, type, comm, &st);
    } else {
        rc = pl_real_recv(buf, count, type, source, tag, comm, &st, large);
        if (rc != MPI_SUCCESS || source == MPI_PROC_NULL) {
            pl_mpi_status_out(status, &st);
            return rc; /* MPI has reported its own error */
        }
        rc = pl_mpi_after_recv(buf, count, type, comm, &st);
    }
    pl_mpi_status_out(status, &st);
    return rc == MPI_SUCCESS ? rc : pl_mpi_error(comm, rc);
}

int pl_mpi_irecv(void *buf, MPI_Count count, MPI_Datatype type, int source, int tag,
                 MPI_Comm comm, MPI_Request *req, bool large)
{
    pl_mpi_ent *e = pl_mpi_q_take(comm, source, tag);
    if (e)
        return pl_mpi_done_request(e, buf, count, type, comm, req);
    int rc = PL_LARGE(large, R(Irecv_c)(buf, count, type, source, tag, comm, req),
                      R(Irecv)(buf, (int)count, type, source, tag, comm, req));
    if (rc == MPI_SUCCESS && source != MPI_PROC_NULL)
        pl_mpi_watch_recv(buf, count, type, comm, *req, false);
    return rc;
}

/* A persistent receive: every completion is checked for a token until the
 * request is freed. (Persistent sends are not proxied: docs/mpi.md.) */
int pl_mpi_recv_init(void *buf, MPI_Count count, MPI_Datatype type, int source, int tag,
                     MPI_Comm comm, MPI_Request *req, bool large)
{
    int rc = PL_LARGE(large, R(Recv_init_c)(buf, count, type, source, tag, comm, req),
                      R(Recv_init)(buf, (int)count, type, source, tag, comm, req));
    if (rc == MPI_SUCCESS && source != MPI_PROC_NULL)
        pl_mpi_watch_recv(buf, count, type, comm, *req, true);
    return rc;
}

/* ---- Sendrecv ------------------------------------------------------------- */

/* Sendrecv once the outgoing message is decided (sbuf may be a token
 * message by now). replace: sbuf is rbuf, the application's
 * MPI_Sendrecv_replace buffer. */
static int pl_sendrecv_do(const void *sbuf, MPI_Count scount, MPI_Datatype stype, int dest,
                          int stag, void *rbuf, MPI_Count rcount, MPI_Datatype rtype,
                          int source, int rtag, MPI_Comm comm, MPI_Status *status, bool large,
                          bool replace)
{
    MPI_Status st;
    int rc;
    pl_mpi_ent *e = pl_mpi_q_take(comm, source, rtag);
    if (e) {
        /* The receive half is served already; the send half keeps
         * Sendrecv's progress guarantee through a receive from nowhere,
         * and has taken its bytes (even from rbuf) before e lands there. */
        rc = PL_LARGE(large,
                      R(Sendrecv_c)(sbuf, scount, stype, dest, stag, NULL, 0, MPI_BYTE,
                                    MPI_PROC_NULL, 0, comm, &st),
                      R(Sendrecv)(sbuf, (int)scount, stype, dest, stag, NULL, 0, MPI_BYTE,
                                  MPI_PROC_NULL, 0, comm, &st));
        if (rc != MPI_SUCCESS) {
            pl_mpi_ent_free(e);
            return rc;
        }
        rc = pl_mpi_deliver_ent(e, rbuf, rcount, rtype, comm, &st);
    } else {
        if (replace)
            rc = PL_LARGE(large,
                          R(Sendrecv_replace_c)(rbuf, rcount, rtype, dest, stag, source, rtag,
                                                comm, &st),
                          R(Sendrecv_replace)(rbuf, (int)rcount, rtype, dest, stag, source,
                                              rtag, comm, &st));
        else
            rc = PL_LARGE(large,
                          R(Sendrecv_c)(sbuf, scount, stype, dest, stag, rbuf, rcount, rtype,
                                        source, rtag, comm, &st),
                          R(Sendrecv)(sbuf, (int)scount, stype, dest, stag, rbuf, (int)rcount,
                                      rtype, source, rtag, comm, &st));
        if (rc != MPI_SUCCESS || source == MPI_PROC_NULL) {
            pl_mpi_status_out(status, &st);
            return rc;
        }
        rc = pl_mpi_after_recv(rbuf, rcount, rtype, comm, &st);
    }
    pl_mpi_status_out(status, &st);
    return rc == MPI_SUCCESS ? rc : pl_mpi_error(comm, rc);
}

int pl_mpi_sendrecv(const void *sbuf, MPI_Count scount, MPI_Datatype stype, int dest,
                    int stag, void *rbuf, MPI_Count rcount, MPI_Datatype rtype, int source,
                    int rtag, MPI_Comm comm, MPI_Status *status, bool large)
{
    uint8_t msg[PL_MPI_MSG_LEN];
    if (pl_mpi_tokenize(sbuf, scount, stype, dest, comm, msg))
        return pl_sendrecv_do(msg, PL_MPI_MSG_LEN, MPI_BYTE, dest, stag, rbuf, rcount, rtype,
                              source, rtag, comm, status, large, false);
    return pl_sendrecv_do(sbuf, scount, stype, dest, stag, rbuf, rcount, rtype, source, rtag,
                          comm, status, large, false);
}

int pl_mpi_sendrecv_replace(void *buf, MPI_Count count, MPI_Datatype type, int dest,
                            int stag, int source, int rtag, MPI_Comm comm, MPI_Status *status,
                            bool large)
{
    uint8_t msg[PL_MPI_MSG_LEN];
    /* Proxied, the outgoing bytes are in msg: the halves no longer share
     * a buffer. */
    if (pl_mpi_tokenize(buf, count, type, dest, comm, msg))
        return pl_sendrecv_do(msg, PL_MPI_MSG_LEN, MPI_BYTE, dest, stag, buf, count, type,
                              source, rtag, comm, status, large, false);
    return pl_sendrecv_do(buf, count, type, dest, stag, buf, count, type, source, rtag, comm,
                          status, large, true);
}

#if PL_MPI_LARGE /* MPI_Isendrecv is MPI-4 */
/* Nonblocking send-receive: the token message (if any) lives in the
 * request's entry; the receive half is resolved at completion, or was
 * served from the stash and is delivered then. */
int pl_mpi_isendrecv(const void *sbuf, MPI_Count scount, MPI_Datatype stype, int dest,
                     int stag, void *rbuf, MPI_Count rcount, MPI_Datatype rtype, int source,
                     int rtag, MPI_Comm comm, MPI_Request *req, bool large, bool replace)
{
    pl_mpi_req *r = calloc(1, sizeof *r);
    if (!r)
        return pl_mpi_error(comm, MPI_ERR_NO_MEM);
    bool proxied = pl_mpi_tokenize(sbuf, scount, stype, dest, comm, r->msg);
    if (proxied) {
        sbuf = r->msg;
        scount = PL_MPI_MSG_LEN;
        stype = MPI_BYTE;
    }
    r->ent = pl_mpi_q_take(comm, source, rtag);
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
        pl_mpi_ent_free(r->ent);
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
                                pl_mpi_bytes(rcount, rtype, NULL) < PL_MPI_MSG_LEN)) {
        free(r); /* nothing of ours to finish */
        return rc;
    }
    pl_mpi_req_add(r);
    return rc;
}
#endif

/* ---- probes --------------------------------------------------------------- */

/* Receives a PL_MPI_MSG_LEN-byte message MPI matched into a new stash
 * entry: a probe must see its real size, and MPI has no peek. */
static pl_mpi_ent *pl_capture(MPI_Message *m, MPI_Comm comm, uint64_t bytes)
{
    pl_mpi_ent *e = calloc(1, sizeof *e);
    MPI_Status st;
    if (!e)
        return NULL;
    if (bytes != PL_MPI_MSG_LEN) {
        /* Not the message the probe saw (another thread took that one):
         * MPI matched it to us all the same, so it is kept whole. */
        e->big = malloc(bytes ? (size_t)bytes : 1);
        e->big_len = bytes;
    }
    if ((bytes != PL_MPI_MSG_LEN && !e->big) ||
        pl_mpi_mrecv_bytes(e->big ? (void *)e->big : e->raw, (MPI_Count)bytes, m, &st) !=
            MPI_SUCCESS) {
        pl_mpi_ent_free(e);
        return NULL;
    }
    e->comm = pl_mpi_comm_key(comm);
    e->source = st.MPI_SOURCE;
    e->tag = st.MPI_TAG;
    psi_err err = {0};
    e->is_token = !e->big && pl_mpi_msg_is(e->raw, PL_MPI_MSG_LEN) &&
                  pl_mpi_msg_decode(e->raw, &e->msg, &err) == 0 && e->msg.kind == PL_MPI_TOKEN;
    return e;
}

int pl_mpi_probe(int source, int tag, MPI_Comm comm, int *flag, MPI_Status *status)
{
    for (;;) {
        MPI_Status st;
        if (pl_mpi_q_probe(comm, source, tag, &st)) {
            if (flag)
                *flag = 1;
            pl_mpi_status_out(status, &st);
            return MPI_SUCCESS;
        }
        int rc = flag ? R(Iprobe)(source, tag, comm, flag, &st) : R(Probe)(source, tag, comm, &st);
        if (rc != MPI_SUCCESS || (flag && !*flag) || source == MPI_PROC_NULL ||
            pl_mpi_status_bytes(&st) != PL_MPI_MSG_LEN) {
            pl_mpi_status_out(status, &st);
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
        pl_mpi_ent *e = pl_capture(&m, comm, pl_mpi_status_bytes(&st));
        if (!e)
            return pl_mpi_error(comm, MPI_ERR_OTHER);
        pl_mpi_q_push(e);
    }
}

int pl_mpi_mprobe(int source, int tag, MPI_Comm comm, int *flag, MPI_Message *message,
                  MPI_Status *status)
{
    MPI_Status st;
    pl_mpi_ent *e = pl_mpi_q_take(comm, source, tag);
    if (!e) {
        int rc = flag ? R(Improbe)(source, tag, comm, flag, message, &st)
                      : R(Mprobe)(source, tag, comm, message, &st);
        if (rc != MPI_SUCCESS || (flag && !*flag) || *message == MPI_MESSAGE_NO_PROC ||
            pl_mpi_status_bytes(&st) != PL_MPI_MSG_LEN) {
            pl_mpi_status_out(status, &st);
            return rc;
        }
        e = pl_capture(message, comm, PL_MPI_MSG_LEN);
        if (!e)
            return pl_mpi_error(comm, MPI_ERR_OTHER);
    }
    if (flag)
        *flag = 1;
    memset(&st, 0, sizeof st);
    pl_mpi_status_set(&st, e->source, e->tag, pl_mpi_ent_bytes(e));
    *message = pl_mpi_matched_handle(e);
    pl_mpi_status_out(status, &st);
    return MPI_SUCCESS;
}

int pl_mpi_mrecv(void *buf, MPI_Count count, MPI_Datatype type, MPI_Message *message,
                 MPI_Status *status, bool large)
{
    MPI_Status st;
    uint32_t ours;
    if (pl_mpi_is_fake_msg(*message, &ours)) {
        pl_mpi_ent *e = pl_mpi_matched_take(ours);
        if (!e)
            return pl_mpi_error(MPI_COMM_WORLD, MPI_ERR_REQUEST);
        MPI_Comm comm = pl_mpi_comm_of_key(e->comm);
        *message = MPI_MESSAGE_NULL;
        int rc = pl_mpi_deliver_ent(e, buf, count, type, comm, &st);
        pl_mpi_status_out(status, &st);
        return rc == MPI_SUCCESS ? rc : pl_mpi_error(comm, rc);
    }
    bool noproc = *message == MPI_MESSAGE_NO_PROC;
    int rc = PL_LARGE(large, R(Mrecv_c)(buf, count, type, message, &st),
                      R(Mrecv)(buf, (int)count, type, message, &st));
    /* Our Mprobe captured every PL_MPI_MSG_LEN-byte message, so a real
     * handle is never a token; a message MPI matched for someone else
     * (PMPI_Mprobe from a tool loaded after us) still is checked. */
    if (rc == MPI_SUCCESS && !noproc)
        rc = pl_mpi_after_recv(buf, count, type, MPI_COMM_WORLD, &st);
    pl_mpi_status_out(status, &st);
    return rc;
}

int pl_mpi_imrecv(void *buf, MPI_Count count, MPI_Datatype type, MPI_Message *message,
                  MPI_Request *req, bool large)
{
    uint32_t ours;
    if (pl_mpi_is_fake_msg(*message, &ours)) {
        pl_mpi_ent *e = pl_mpi_matched_take(ours);
        if (!e)
            return pl_mpi_error(MPI_COMM_WORLD, MPI_ERR_REQUEST);
        *message = MPI_MESSAGE_NULL;
        return pl_mpi_done_request(e, buf, count, type, pl_mpi_comm_of_key(e->comm), req);
    }
    bool noproc = *message == MPI_MESSAGE_NO_PROC;
    int rc = PL_LARGE(large, R(Imrecv_c)(buf, count, type, message, req),
                      R(Imrecv)(buf, (int)count, type, message, req));
    if (rc == MPI_SUCCESS && !noproc)
        pl_mpi_watch_recv(buf, count, type, MPI_COMM_WORLD, *req, false);
    return rc;
}
