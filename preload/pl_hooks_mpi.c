/* pl_hooks_mpi: the exported MPI entry points (docs/mpi.md).
 *
 * Each MPI_X is a one-liner into pl_mpi.c; PMPI_X is an alias of it, so a
 * binding or tool that calls the profiling name directly is caught too.
 * The _c forms are the MPI-4 large-count variants MPICH 4 exports. */
#include "pl_mpi.h"

#ifdef PL_HAVE_MPI
#include "pl_real.h"

#define PL_MPI_ALIAS(name) \
    extern __typeof__(MPI_##name) PMPI_##name PL_EXPORT __attribute__((alias("MPI_" #name)));

/* ---- sends ---------------------------------------------------------------- */

#define PL_MPI_SEND_HOOK(name, mode, ctype, large)                                            \
    PL_EXPORT int MPI_##name(const void *buf, ctype count, MPI_Datatype type, int dest,      \
                             int tag, MPI_Comm comm)                                          \
    {                                                                                         \
        return pl_mpi_send(mode, buf, count, type, dest, tag, comm, NULL, large);             \
    }                                                                                         \
    PL_MPI_ALIAS(name)

#define PL_MPI_ISEND_HOOK(name, mode, ctype, large)                                           \
    PL_EXPORT int MPI_##name(const void *buf, ctype count, MPI_Datatype type, int dest,      \
                             int tag, MPI_Comm comm, MPI_Request *req)                        \
    {                                                                                         \
        return pl_mpi_send(mode, buf, count, type, dest, tag, comm, req, large);              \
    }                                                                                         \
    PL_MPI_ALIAS(name)

PL_MPI_SEND_HOOK(Send, PL_MPI_SEND, int, false)
PL_MPI_SEND_HOOK(Ssend, PL_MPI_SSEND, int, false)
PL_MPI_SEND_HOOK(Bsend, PL_MPI_BSEND, int, false)
PL_MPI_SEND_HOOK(Rsend, PL_MPI_RSEND, int, false)
PL_MPI_ISEND_HOOK(Isend, PL_MPI_ISEND, int, false)
PL_MPI_ISEND_HOOK(Issend, PL_MPI_ISSEND, int, false)
PL_MPI_ISEND_HOOK(Ibsend, PL_MPI_IBSEND, int, false)
PL_MPI_ISEND_HOOK(Irsend, PL_MPI_IRSEND, int, false)
PL_MPI_SEND_HOOK(Send_c, PL_MPI_SEND, MPI_Count, true)
PL_MPI_SEND_HOOK(Ssend_c, PL_MPI_SSEND, MPI_Count, true)
PL_MPI_SEND_HOOK(Bsend_c, PL_MPI_BSEND, MPI_Count, true)
PL_MPI_SEND_HOOK(Rsend_c, PL_MPI_RSEND, MPI_Count, true)
PL_MPI_ISEND_HOOK(Isend_c, PL_MPI_ISEND, MPI_Count, true)
PL_MPI_ISEND_HOOK(Issend_c, PL_MPI_ISSEND, MPI_Count, true)
PL_MPI_ISEND_HOOK(Ibsend_c, PL_MPI_IBSEND, MPI_Count, true)
PL_MPI_ISEND_HOOK(Irsend_c, PL_MPI_IRSEND, MPI_Count, true)

/* ---- receives ------------------------------------------------------------- */

#define PL_MPI_RECV_HOOKS(suffix, ctype, large)                                               \
    PL_EXPORT int MPI_Recv##suffix(void *buf, ctype count, MPI_Datatype type, int source,    \
                                   int tag, MPI_Comm comm, MPI_Status *status)                \
    {                                                                                         \
        return pl_mpi_recv(buf, count, type, source, tag, comm, status, large);               \
    }                                                                                         \
    PL_MPI_ALIAS(Recv##suffix)                                                                \
    PL_EXPORT int MPI_Irecv##suffix(void *buf, ctype count, MPI_Datatype type, int source,   \
                                    int tag, MPI_Comm comm, MPI_Request *req)                 \
    {                                                                                         \
        return pl_mpi_irecv(buf, count, type, source, tag, comm, req, large);                 \
    }                                                                                         \
    PL_MPI_ALIAS(Irecv##suffix)                                                               \
    PL_EXPORT int MPI_Mrecv##suffix(void *buf, ctype count, MPI_Datatype type,               \
                                    MPI_Message *message, MPI_Status *status)                 \
    {                                                                                         \
        return pl_mpi_mrecv(buf, count, type, message, status, large);                        \
    }                                                                                         \
    PL_MPI_ALIAS(Mrecv##suffix)                                                               \
    PL_EXPORT int MPI_Imrecv##suffix(void *buf, ctype count, MPI_Datatype type,              \
                                     MPI_Message *message, MPI_Request *req)                  \
    {                                                                                         \
        return pl_mpi_imrecv(buf, count, type, message, req, large);                          \
    }                                                                                         \
    PL_MPI_ALIAS(Imrecv##suffix)                                                              \
    PL_EXPORT int MPI_Sendrecv##suffix(const void *sbuf, ctype scount, MPI_Datatype stype,   \
                                       int dest, int stag, void *rbuf, ctype rcount,          \
                                       MPI_Datatype rtype, int source, int rtag,              \
                                       MPI_Comm comm, MPI_Status *status)                     \
    {                                                                                         \
        return pl_mpi_sendrecv(sbuf, scount, stype, dest, stag, rbuf, rcount, rtype, source,  \
                               rtag, comm, status, large);                                    \
    }                                                                                         \
    PL_MPI_ALIAS(Sendrecv##suffix)                                                            \
    PL_EXPORT int MPI_Sendrecv_replace##suffix(void *buf, ctype count, MPI_Datatype type,    \
                                               int dest, int stag, int source, int rtag,      \
                                               MPI_Comm comm, MPI_Status *status)             \
    {                                                                                         \
        return pl_mpi_sendrecv_replace(buf, count, type, dest, stag, source, rtag, comm,      \
                                       status, large);                                        \
    }                                                                                         \
    PL_MPI_ALIAS(Sendrecv_replace##suffix)                                                    \
    PL_EXPORT int MPI_Isendrecv##suffix(const void *sbuf, ctype scount, MPI_Datatype stype,  \
                                        int dest, int stag, void *rbuf, ctype rcount,         \
                                        MPI_Datatype rtype, int source, int rtag,             \
                                        MPI_Comm comm, MPI_Request *req)                      \
    {                                                                                         \
        return pl_mpi_isendrecv(sbuf, scount, stype, dest, stag, rbuf, rcount, rtype, source, \
                                rtag, comm, req, large, false);                               \
    }                                                                                         \
    PL_MPI_ALIAS(Isendrecv##suffix)                                                           \
    PL_EXPORT int MPI_Isendrecv_replace##suffix(void *buf, ctype count, MPI_Datatype type,   \
                                                int dest, int stag, int source, int rtag,     \
                                                MPI_Comm comm, MPI_Request *req)              \
    {                                                                                         \
        return pl_mpi_isendrecv(buf, count, type, dest, stag, buf, count, type, source, rtag, \
                                comm, req, large, true);                                      \
    }                                                                                         \
    PL_MPI_ALIAS(Isendrecv_replace##suffix)                                                   \
    PL_EXPORT int MPI_Recv_init##suffix(void *buf, ctype count, MPI_Datatype type,           \
                                        int source, int tag, MPI_Comm comm, MPI_Request *req) \
    {                                                                                         \
        return pl_mpi_recv_init(buf, count, type, source, tag, comm, req, large);             \
    }                                                                                         \
    PL_MPI_ALIAS(Recv_init##suffix)                                                           \
    PL_EXPORT int MPI_Bcast##suffix(void *buf, ctype count, MPI_Datatype type, int root,     \
                                    MPI_Comm comm)                                            \
    {                                                                                         \
        return pl_mpi_bcast(buf, count, type, root, comm, large);                             \
    }                                                                                         \
    PL_MPI_ALIAS(Bcast##suffix)

PL_MPI_RECV_HOOKS(, int, false)
PL_MPI_RECV_HOOKS(_c, MPI_Count, true)

/* ---- probes --------------------------------------------------------------- */

PL_EXPORT int MPI_Probe(int source, int tag, MPI_Comm comm, MPI_Status *status)
{
    return pl_mpi_probe(source, tag, comm, NULL, status);
}
PL_MPI_ALIAS(Probe)

PL_EXPORT int MPI_Iprobe(int source, int tag, MPI_Comm comm, int *flag, MPI_Status *status)
{
    return pl_mpi_probe(source, tag, comm, flag, status);
}
PL_MPI_ALIAS(Iprobe)

PL_EXPORT int MPI_Mprobe(int source, int tag, MPI_Comm comm, MPI_Message *message,
                         MPI_Status *status)
{
    return pl_mpi_mprobe(source, tag, comm, NULL, message, status);
}
PL_MPI_ALIAS(Mprobe)

PL_EXPORT int MPI_Improbe(int source, int tag, MPI_Comm comm, int *flag, MPI_Message *message,
                          MPI_Status *status)
{
    return pl_mpi_mprobe(source, tag, comm, flag, message, status);
}
PL_MPI_ALIAS(Improbe)

/* ---- completion ----------------------------------------------------------- */

PL_EXPORT int MPI_Wait(MPI_Request *req, MPI_Status *status)
{
    return pl_mpi_wait(req, status);
}
PL_MPI_ALIAS(Wait)

PL_EXPORT int MPI_Test(MPI_Request *req, int *flag, MPI_Status *status)
{
    return pl_mpi_test(req, flag, status);
}
PL_MPI_ALIAS(Test)

PL_EXPORT int MPI_Waitany(int n, MPI_Request reqs[], int *index, MPI_Status *status)
{
    return pl_mpi_waitany(n, reqs, index, NULL, status);
}
PL_MPI_ALIAS(Waitany)

PL_EXPORT int MPI_Testany(int n, MPI_Request reqs[], int *index, int *flag, MPI_Status *status)
{
    return pl_mpi_waitany(n, reqs, index, flag, status);
}
PL_MPI_ALIAS(Testany)

PL_EXPORT int MPI_Waitall(int n, MPI_Request reqs[], MPI_Status statuses[])
{
    return pl_mpi_waitall(n, reqs, NULL, statuses);
}
PL_MPI_ALIAS(Waitall)

PL_EXPORT int MPI_Testall(int n, MPI_Request reqs[], int *flag, MPI_Status statuses[])
{
    return pl_mpi_waitall(n, reqs, flag, statuses);
}
PL_MPI_ALIAS(Testall)

PL_EXPORT int MPI_Waitsome(int n, MPI_Request reqs[], int *outcount, int indices[],
                           MPI_Status statuses[])
{
    return pl_mpi_waitsome(n, reqs, outcount, indices, statuses, false);
}
PL_MPI_ALIAS(Waitsome)

PL_EXPORT int MPI_Testsome(int n, MPI_Request reqs[], int *outcount, int indices[],
                           MPI_Status statuses[])
{
    return pl_mpi_waitsome(n, reqs, outcount, indices, statuses, true);
}
PL_MPI_ALIAS(Testsome)

PL_EXPORT int MPI_Request_free(MPI_Request *req)
{
    if (!pl_mpi_bind())
        return MPI_ERR_INTERN;
    MPI_Request h = *req;
    int rc = pl_mpi_real.Request_free(req);
    if (rc == MPI_SUCCESS)
        pl_mpi_forget(h);
    return rc;
}
PL_MPI_ALIAS(Request_free)

/* Cancel needs nothing of ours: a cancelled receive completes with no
 * data, and completion looks at the status before any token. */
PL_EXPORT int MPI_Cancel(MPI_Request *req)
{
    return pl_mpi_bind() ? pl_mpi_real.Cancel(req) : MPI_ERR_INTERN;
}
PL_MPI_ALIAS(Cancel)

#endif /* PL_HAVE_MPI */
