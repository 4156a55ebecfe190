/* pl_mpi_ops: this ABI's copy of the logic as the table the hooks call
 * (pl_mpi.h). Each adapter turns register-width handles into this mpi.h's
 * types: an int for MPICH (the low 32 bits the caller passed), a pointer
 * for Open MPI. */
#include "pl_mpi_int.h"

#define C(h, type) ((type)(h))

static int op_send(int mode, const void *buf, pl_mpi_count count, pl_h type, int dest, int tag,
                   pl_h comm, void *req, bool large)
{
    return pl_mpi_send(mode, buf, count, C(type, MPI_Datatype), dest, tag, C(comm, MPI_Comm),
                       req, large);
}

static int op_recv(void *buf, pl_mpi_count count, pl_h type, int source, int tag, pl_h comm,
                   void *status, bool large)
{
    return pl_mpi_recv(buf, count, C(type, MPI_Datatype), source, tag, C(comm, MPI_Comm),
                       status, large);
}

static int op_irecv(void *buf, pl_mpi_count count, pl_h type, int source, int tag, pl_h comm,
                    void *req, bool large)
{
    return pl_mpi_irecv(buf, count, C(type, MPI_Datatype), source, tag, C(comm, MPI_Comm), req,
                        large);
}

static int op_recv_init(void *buf, pl_mpi_count count, pl_h type, int source, int tag,
                        pl_h comm, void *req, bool large)
{
    return pl_mpi_recv_init(buf, count, C(type, MPI_Datatype), source, tag, C(comm, MPI_Comm),
                            req, large);
}

static int op_sendrecv(const void *sbuf, pl_mpi_count scount, pl_h stype, int dest, int stag,
                       void *rbuf, pl_mpi_count rcount, pl_h rtype, int source, int rtag,
                       pl_h comm, void *status, bool large)
{
    return pl_mpi_sendrecv(sbuf, scount, C(stype, MPI_Datatype), dest, stag, rbuf, rcount,
                           C(rtype, MPI_Datatype), source, rtag, C(comm, MPI_Comm), status,
                           large);
}

static int op_sendrecv_replace(void *buf, pl_mpi_count count, pl_h type, int dest, int stag,
                               int source, int rtag, pl_h comm, void *status, bool large)
{
    return pl_mpi_sendrecv_replace(buf, count, C(type, MPI_Datatype), dest, stag, source, rtag,
                                   C(comm, MPI_Comm), status, large);
}

#if PL_MPI_LARGE
static int op_isendrecv(const void *sbuf, pl_mpi_count scount, pl_h stype, int dest, int stag,
                        void *rbuf, pl_mpi_count rcount, pl_h rtype, int source, int rtag,
                        pl_h comm, void *req, bool large, bool replace)
{
    return pl_mpi_isendrecv(sbuf, scount, C(stype, MPI_Datatype), dest, stag, rbuf, rcount,
                            C(rtype, MPI_Datatype), source, rtag, C(comm, MPI_Comm), req, large,
                            replace);
}
#endif

static int op_probe(int source, int tag, pl_h comm, int *flag, void *status)
{
    return pl_mpi_probe(source, tag, C(comm, MPI_Comm), flag, status);
}

static int op_mprobe(int source, int tag, pl_h comm, int *flag, void *message, void *status)
{
    return pl_mpi_mprobe(source, tag, C(comm, MPI_Comm), flag, message, status);
}

static int op_mrecv(void *buf, pl_mpi_count count, pl_h type, void *message, void *status,
                    bool large)
{
    return pl_mpi_mrecv(buf, count, C(type, MPI_Datatype), message, status, large);
}

static int op_imrecv(void *buf, pl_mpi_count count, pl_h type, void *message, void *req,
                     bool large)
{
    return pl_mpi_imrecv(buf, count, C(type, MPI_Datatype), message, req, large);
}

static int op_bcast(void *buf, pl_mpi_count count, pl_h type, int root, pl_h comm, bool large)
{
    return pl_mpi_bcast(buf, count, C(type, MPI_Datatype), root, C(comm, MPI_Comm), large);
}

static int op_request_free(void *req)
{
    return pl_mpi_request_free(req);
}

static int op_cancel(void *req)
{
    return pl_mpi_cancel(req);
}

static int op_wait(void *req, void *status)
{
    return pl_mpi_wait(req, status);
}

static int op_test(void *req, int *flag, void *status)
{
    return pl_mpi_test(req, flag, status);
}

static int op_waitany(int n, void *reqs, int *index, int *flag, void *status)
{
    return pl_mpi_waitany(n, reqs, index, flag, status);
}

static int op_waitall(int n, void *reqs, int *flag, void *statuses)
{
    return pl_mpi_waitall(n, reqs, flag, statuses);
}

static int op_waitsome(int n, void *reqs, int *outcount, int *indices, void *statuses,
                       bool test)
{
    return pl_mpi_waitsome(n, reqs, outcount, indices, statuses, test);
}

/* The one name this copy keeps global (Makefile: objcopy -G). */
extern const pl_mpi_ops PL_MPI_OPS;
const pl_mpi_ops PL_MPI_OPS = {
    .abi = PL_MPI_ABI_NAME,
    .large_ok = PL_MPI_LARGE,
    .bind = pl_mpi_bind,
    .send = op_send,
    .recv = op_recv,
    .irecv = op_irecv,
    .recv_init = op_recv_init,
    .sendrecv = op_sendrecv,
    .sendrecv_replace = op_sendrecv_replace,
#if PL_MPI_LARGE
    .isendrecv = op_isendrecv,
#endif
    .probe = op_probe,
    .mprobe = op_mprobe,
    .mrecv = op_mrecv,
    .imrecv = op_imrecv,
    .bcast = op_bcast,
    .request_free = op_request_free,
    .cancel = op_cancel,
    .wait = op_wait,
    .test = op_test,
    .waitany = op_waitany,
    .waitall = op_waitall,
    .waitsome = op_waitsome,
};
