/* pl_mpi_int: what the MPI logic files share (pl_mpi.c core, pl_mpi_send.c,
 * pl_mpi_recv.c, pl_mpi_wait.c, pl_mpi_ops.c). They are compiled once per
 * MPI ABI (pl_mpi.h), against that ABI's mpi.h, and each copy's names stay
 * inside it (Makefile: objcopy -G). */
#ifndef PL_MPI_INT_H
#define PL_MPI_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "pl_mpi.h"
#include "pl_mpi_msg.h"
#include "pl_mpi_real.h"

/* ---- requests we finish at completion (pl_mpi.c) ---- */

enum { PL_REQ_RECV = 1, PL_REQ_SEND = 2 };

typedef struct pl_mpi_req {
    struct pl_mpi_req *next;
    MPI_Request h;
    int kind;
    bool persistent; /* MPI_Recv_init: stays until MPI_Request_free */
    bool by_content; /* MPI_Isendrecv: see pl_mpi_after_recv_x */
    bool msg_live;   /* MPI sends r->msg: it must outlive the request */
    pl_mpi_ent *ent; /* the receive half was served from the stash */
    void *buf; /* PL_REQ_RECV: where the message lands */
    MPI_Count count;
    MPI_Datatype type;
    MPI_Comm comm;
    uint8_t msg[PL_MPI_MSG_LEN]; /* the token message in flight, if we sent one */
} pl_mpi_req;

void pl_mpi_req_add(pl_mpi_req *r);
/* Completion, in three steps, so that a handle MPI frees and hands to
 * another thread's new request never meets our entry for the old one:
 * claim (take the entry out) before any call that may complete or free
 * the request; then finish it if it completed (resolves a token, fixes
 * the status; frees the entry, or puts a persistent one back), add it back
 * if it did not, or drop it if MPI failed it. */
pl_mpi_req *pl_mpi_req_claim(MPI_Request h);
int pl_mpi_req_finish(pl_mpi_req *r, MPI_Status *st);
void pl_mpi_req_drop(pl_mpi_req *r);

/* ---- the stash (pl_mpi.c) ---- */

pl_mpi_pat pl_mpi_pat_of(MPI_Comm comm, int source, int tag);
/* The oldest stashed message a receive of (source, tag, comm) matches,
 * taken out; NULL if none (the common case costs one atomic load). */
pl_mpi_ent *pl_mpi_q_take(MPI_Comm comm, int source, int tag);
/* A probed message joins the stash, after every earlier one. */
void pl_mpi_q_push(pl_mpi_ent *e);
/* A probe answered from the stash: true and *st filled if it matches. */
bool pl_mpi_q_probe(MPI_Comm comm, int source, int tag, MPI_Status *st);
/* Handles of ours for messages an Mprobe took (pl_mpi_msg.h). */
MPI_Message pl_mpi_matched_handle(pl_mpi_ent *e);
/* The entry of our handle number `handle` (pl_mpi_is_fake_msg), taken out. */
pl_mpi_ent *pl_mpi_matched_take(uint32_t handle);

/* ---- datatypes, statuses, errors (pl_mpi.c) ---- */

/* Named types whose elements abut in memory: the payload is the buffer. */
bool pl_mpi_contiguous(MPI_Datatype type, MPI_Count size);
/* Packed bytes of (count, type), 0 if unknown or empty; *size the type's. */
uint64_t pl_mpi_bytes(MPI_Count count, MPI_Datatype type, MPI_Count *size);
void pl_mpi_status_set(MPI_Status *st, int source, int tag, uint64_t bytes);
/* Calls the communicator's error handler, as MPI does for its own errors
 * (the default handler aborts the job), and returns code. */
int pl_mpi_error(MPI_Comm comm, int code);

static inline void pl_mpi_status_out(MPI_Status *out, const MPI_Status *st)
{
    if (out != MPI_STATUS_IGNORE)
        *out = *st;
}

/* ---- delivery (pl_mpi.c) ---- */

/* Resolves a token into (buf, count, type); sets the status size. */
int pl_mpi_deliver_token(const pl_mpi_msg *m, void *buf, MPI_Count count, MPI_Datatype type,
                         MPI_Comm comm, MPI_Status *st);
/* Delivers a stashed message, fills st, frees e. */
int pl_mpi_deliver_ent(pl_mpi_ent *e, void *buf, MPI_Count count, MPI_Datatype type,
                       MPI_Comm comm, MPI_Status *st);
/* After a real receive completed with st: resolves a token it brought.
 * An MPI error code, not yet reported to the error handler. */
int pl_mpi_after_recv(void *buf, MPI_Count count, MPI_Datatype type, MPI_Comm comm,
                      MPI_Status *st);
int pl_mpi_after_recv_x(void *buf, MPI_Count count, MPI_Datatype type, MPI_Comm comm,
                        MPI_Status *st, bool by_content);
/* Remembers a nonblocking receive so completion checks it for a token. */
void pl_mpi_watch_recv(void *buf, MPI_Count count, MPI_Datatype type, MPI_Comm comm,
                       MPI_Request h, bool persistent);
/* Delivers e now; *req becomes a completed (generalized) request. */
int pl_mpi_done_request(pl_mpi_ent *e, void *buf, MPI_Count count, MPI_Datatype type,
                        MPI_Comm comm, MPI_Request *req);

/* ---- send side (pl_mpi_send.c) ---- */

/* Stores (buf, count, type) if the decision says so and writes the token
 * message into msg. 1: send msg instead; 0: send the real message. */
int pl_mpi_tokenize(const void *buf, MPI_Count count, MPI_Datatype type, int dest,
                    MPI_Comm comm, uint8_t msg[PL_MPI_MSG_LEN]);
/* The packed payload of (buf, count, type): buf itself when contiguous,
 * else a copy in *heap. NULL on failure. */
const void *pl_mpi_pack(const void *buf, MPI_Count count, MPI_Datatype type, MPI_Count size,
                        uint64_t bytes, MPI_Comm comm, void **heap);

/* ---- the entry points, in this ABI's types (pl_mpi_ops.c adapts them) ---- */

/* Requests we must finish at completion (Wait/Test): true while any exist,
 * so the completion wrappers skip all bookkeeping otherwise. */
bool pl_mpi_have_reqs(void);

int pl_mpi_send(int mode, const void *buf, MPI_Count count, MPI_Datatype type, int dest,
                int tag, MPI_Comm comm, MPI_Request *req, bool large);
int pl_mpi_recv(void *buf, MPI_Count count, MPI_Datatype type, int source, int tag,
                MPI_Comm comm, MPI_Status *status, bool large);
int pl_mpi_irecv(void *buf, MPI_Count count, MPI_Datatype type, int source, int tag,
                 MPI_Comm comm, MPI_Request *req, bool large);
int pl_mpi_recv_init(void *buf, MPI_Count count, MPI_Datatype type, int source, int tag,
                     MPI_Comm comm, MPI_Request *req, bool large);
int pl_mpi_sendrecv(const void *sbuf, MPI_Count scount, MPI_Datatype stype, int dest,
                    int stag, void *rbuf, MPI_Count rcount, MPI_Datatype rtype, int source,
                    int rtag, MPI_Comm comm, MPI_Status *status, bool large);
int pl_mpi_sendrecv_replace(void *buf, MPI_Count count, MPI_Datatype type, int dest,
                            int stag, int source, int rtag, MPI_Comm comm, MPI_Status *status,
                            bool large);
#if PL_MPI_LARGE
int pl_mpi_isendrecv(const void *sbuf, MPI_Count scount, MPI_Datatype stype, int dest,
                     int stag, void *rbuf, MPI_Count rcount, MPI_Datatype rtype, int source,
                     int rtag, MPI_Comm comm, MPI_Request *req, bool large, bool replace);
#endif
int pl_mpi_probe(int source, int tag, MPI_Comm comm, int *flag, MPI_Status *status);
int pl_mpi_mprobe(int source, int tag, MPI_Comm comm, int *flag, MPI_Message *message,
                  MPI_Status *status);
int pl_mpi_mrecv(void *buf, MPI_Count count, MPI_Datatype type, MPI_Message *message,
                 MPI_Status *status, bool large);
int pl_mpi_imrecv(void *buf, MPI_Count count, MPI_Datatype type, MPI_Message *message,
                  MPI_Request *req, bool large);
int pl_mpi_bcast(void *buf, MPI_Count count, MPI_Datatype type, int root, MPI_Comm comm,
                 bool large);
int pl_mpi_request_free(MPI_Request *req);
int pl_mpi_cancel(MPI_Request *req);
int pl_mpi_wait(MPI_Request *req, MPI_Status *status);
int pl_mpi_test(MPI_Request *req, int *flag, MPI_Status *status);
int pl_mpi_waitany(int n, MPI_Request reqs[], int *index, int *flag, MPI_Status *status);
int pl_mpi_waitall(int n, MPI_Request reqs[], int *flag, MPI_Status *statuses);
int pl_mpi_waitsome(int n, MPI_Request reqs[], int *outcount, int indices[],
                    MPI_Status *statuses, bool test);

#endif
