/* pl_hooks_mpi: the exported MPI entry points (docs/mpi.md).
 *
 * Each MPI_X and PMPI_X (the profiling name, so a binding or tool that
 * calls it directly is caught too) is a one-liner into pl_mpi.c. The _c
 * forms are the MPI-4 large-count variants MPICH 4 exports.
 *
 * Handles arrive at register width (pl_h) and pointers to them as void *:
 * in a program of another MPI ABI (Open MPI: handles are pointers) the
 * hook calls the next MPI_X or PMPI_X with the caller's bits untouched;
 * under MPICH (handles are ints) it narrows them for pl_mpi.c. That is why
 * this file does not include mpi.h. */
#include "pl_mpi.h"

#ifdef PL_HAVE_MPI
#include <dlfcn.h>
#include <stddef.h>

#include "pl_real.h"

typedef uintptr_t pl_h; /* a handle as the caller passed it */

/* The next definition of sym (the MPI library's), found once. */
static bool pl_forward(void **slot, const char *sym)
{
    void *p = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    if (!p) {
        p = dlsym(RTLD_NEXT, sym);
        __atomic_store_n(slot, p, __ATOMIC_RELEASE);
    }
    return p != NULL;
}

/* MPI_name and PMPI_name with parameters `params`, called as `args` when
 * forwarded, else `native`. */
#define PL_MPI_HOOK(name, params, args, native)                                  \
    static int(*pl_next_##name) params;                                         \
    static int(*pl_pnext_##name) params;                                        \
    PL_EXPORT int MPI_##name params                                             \
    {                                                                           \
        if (pl_mpi_foreign())                                                   \
            return pl_forward((void **)&pl_next_##name, "MPI_" #name)           \
                       ? pl_next_##name args                                    \
                       : PL_MPI_ERR_INTERN;                                     \
        return native;                                                          \
    }                                                                           \
    PL_EXPORT int PMPI_##name params                                            \
    {                                                                           \
        if (pl_mpi_foreign())                                                   \
            return pl_forward((void **)&pl_pnext_##name, "PMPI_" #name)         \
                       ? pl_pnext_##name args                                   \
                       : PL_MPI_ERR_INTERN;                                     \
        return native;                                                          \
    }

#define H(x) ((pl_mpi_handle)(x))

/* ---- sends ---------------------------------------------------------------- */

#define PL_MPI_SEND_HOOK(name, mode, ctype, large)                                           \
    PL_MPI_HOOK(name, (const void *buf, ctype count, pl_h type, int dest, int tag, pl_h comm), \
                (buf, count, type, dest, tag, comm),                                          \
                pl_mpi_send(mode, buf, count, H(type), dest, tag, H(comm), NULL, large))

#define PL_MPI_ISEND_HOOK(name, mode, ctype, large)                                          \
    PL_MPI_HOOK(name,                                                                         \
                (const void *buf, ctype count, pl_h type, int dest, int tag, pl_h comm,      \
                 void *req),                                                                  \
                (buf, count, type, dest, tag, comm, req),                                     \
                pl_mpi_send(mode, buf, count, H(type), dest, tag, H(comm), req, large))

PL_MPI_SEND_HOOK(Send, PL_MPI_SEND, int, false)
PL_MPI_SEND_HOOK(Ssend, PL_MPI_SSEND, int, false)
PL_MPI_SEND_HOOK(Bsend, PL_MPI_BSEND, int, false)
PL_MPI_SEND_HOOK(Rsend, PL_MPI_RSEND, int, false)
PL_MPI_ISEND_HOOK(Isend, PL_MPI_ISEND, int, false)
PL_MPI_ISEND_HOOK(Issend, PL_MPI_ISSEND, int, false)
PL_MPI_ISEND_HOOK(Ibsend, PL_MPI_IBSEND, int, false)
PL_MPI_ISEND_HOOK(Irsend, PL_MPI_IRSEND, int, false)
PL_MPI_SEND_HOOK(Send_c, PL_MPI_SEND, pl_mpi_count, true)
PL_MPI_SEND_HOOK(Ssend_c, PL_MPI_SSEND, pl_mpi_count, true)
PL_MPI_SEND_HOOK(Bsend_c, PL_MPI_BSEND, pl_mpi_count, true)
PL_MPI_SEND_HOOK(Rsend_c, PL_MPI_RSEND, pl_mpi_count, true)
PL_MPI_ISEND_HOOK(Isend_c, PL_MPI_ISEND, pl_mpi_count, true)
PL_MPI_ISEND_HOOK(Issend_c, PL_MPI_ISSEND, pl_mpi_count, true)
PL_MPI_ISEND_HOOK(Ibsend_c, PL_MPI_IBSEND, pl_mpi_count, true)
PL_MPI_ISEND_HOOK(Irsend_c, PL_MPI_IRSEND, pl_mpi_count, true)

/* ---- receives, send-receives, Bcast (plain and _c) ------------------------ */

#define PL_MPI_RECV_HOOKS(sfx, ctype, large)                                                 \
    PL_MPI_HOOK(Recv##sfx,                                                                    \
                (void *buf, ctype count, pl_h type, int source, int tag, pl_h comm,          \
                 void *status),                                                               \
                (buf, count, type, source, tag, comm, status),                                \
                pl_mpi_recv(buf, count, H(type), source, tag, H(comm), status, large))        \
    PL_MPI_HOOK(Irecv##sfx,                                                                   \
                (void *buf, ctype count, pl_h type, int source, int tag, pl_h comm,          \
                 void *req),                                                                  \
                (buf, count, type, source, tag, comm, req),                                   \
                pl_mpi_irecv(buf, count, H(type), source, tag, H(comm), req, large))          \
    PL_MPI_HOOK(Recv_init##sfx,                                                               \
                (void *buf, ctype count, pl_h type, int source, int tag, pl_h comm,          \
                 void *req),                                                                  \
                (buf, count, type, source, tag, comm, req),                                   \
                pl_mpi_recv_init(buf, count, H(type), source, tag, H(comm), req, large))      \
    PL_MPI_HOOK(Mrecv##sfx, (void *buf, ctype count, pl_h type, void *message, void *status), \
                (buf, count, type, message, status),                                          \
                pl_mpi_mrecv(buf, count, H(type), message, status, large))                    \
    PL_MPI_HOOK(Imrecv##sfx, (void *buf, ctype count, pl_h type, void *message, void *req),   \
                (buf, count, type, message, req),                                             \
                pl_mpi_imrecv(buf, count, H(type), message, req, large))                      \
    PL_MPI_HOOK(Sendrecv##sfx,                                                                \
                (const void *sbuf, ctype scount, pl_h stype, int dest, int stag, void *rbuf,  \
                 ctype rcount, pl_h rtype, int source, int rtag, pl_h comm, void *status),    \
                (sbuf, scount, stype, dest, stag, rbuf, rcount, rtype, source, rtag, comm,    \
                 status),                                                                     \
                pl_mpi_sendrecv(sbuf, scount, H(stype), dest, stag, rbuf, rcount, H(rtype),   \
                                source, rtag, H(comm), status, large))                        \
    PL_MPI_HOOK(Sendrecv_replace##sfx,                                                        \
                (void *buf, ctype count, pl_h type, int dest, int stag, int source, int rtag, \
                 pl_h comm, void *status),                                                    \
                (buf, count, type, dest, stag, source, rtag, comm, status),                   \
                pl_mpi_sendrecv_replace(buf, count, H(type), dest, stag, source, rtag,        \
                                        H(comm), status, large))                              \
    PL_MPI_HOOK(Isendrecv##sfx,                                                               \
                (const void *sbuf, ctype scount, pl_h stype, int dest, int stag, void *rbuf,  \
                 ctype rcount, pl_h rtype, int source, int rtag, pl_h comm, void *req),       \
                (sbuf, scount, stype, dest, stag, rbuf, rcount, rtype, source, rtag, comm,    \
                 req),                                                                        \
                pl_mpi_isendrecv(sbuf, scount, H(stype), dest, stag, rbuf, rcount, H(rtype),  \
                                 source, rtag, H(comm), req, large, false))                   \
    PL_MPI_HOOK(Isendrecv_replace##sfx,                                                       \
                (void *buf, ctype count, pl_h type, int dest, int stag, int source, int rtag, \
                 pl_h comm, void *req),                                                       \
                (buf, count, type, dest, stag, source, rtag, comm, req),                      \
                pl_mpi_isendrecv(buf, count, H(type), dest, stag, buf, count, H(type),        \
                                 source, rtag, H(comm), req, large, true))                    \
    PL_MPI_HOOK(Bcast##sfx, (void *buf, ctype count, pl_h type, int root, pl_h comm),         \
                (buf, count, type, root, comm),                                               \
                pl_mpi_bcast(buf, count, H(type), root, H(comm), large))

PL_MPI_RECV_HOOKS(, int, false)
PL_MPI_RECV_HOOKS(_c, pl_mpi_count, true)

/* ---- probes --------------------------------------------------------------- */

PL_MPI_HOOK(Probe, (int source, int tag, pl_h comm, void *status), (source, tag, comm, status),
            pl_mpi_probe(source, tag, H(comm), NULL, status))
PL_MPI_HOOK(Iprobe, (int source, int tag, pl_h comm, int *flag, void *status),
            (source, tag, comm, flag, status), pl_mpi_probe(source, tag, H(comm), flag, status))
PL_MPI_HOOK(Mprobe, (int source, int tag, pl_h comm, void *message, void *status),
            (source, tag, comm, message, status),
            pl_mpi_mprobe(source, tag, H(comm), NULL, message, status))
PL_MPI_HOOK(Improbe, (int source, int tag, pl_h comm, int *flag, void *message, void *status),
            (source, tag, comm, flag, message, status),
            pl_mpi_mprobe(source, tag, H(comm), flag, message, status))

/* ---- completion ----------------------------------------------------------- */

PL_MPI_HOOK(Wait, (void *req, void *status), (req, status), pl_mpi_wait(req, status))
PL_MPI_HOOK(Test, (void *req, int *flag, void *status), (req, flag, status),
            pl_mpi_test(req, flag, status))
PL_MPI_HOOK(Waitany, (int n, void *reqs, int *index, void *status), (n, reqs, index, status),
            pl_mpi_waitany(n, reqs, index, NULL, status))
PL_MPI_HOOK(Testany, (int n, void *reqs, int *index, int *flag, void *status),
            (n, reqs, index, flag, status), pl_mpi_waitany(n, reqs, index, flag, status))
PL_MPI_HOOK(Waitall, (int n, void *reqs, void *statuses), (n, reqs, statuses),
            pl_mpi_waitall(n, reqs, NULL, statuses))
PL_MPI_HOOK(Testall, (int n, void *reqs, int *flag, void *statuses), (n, reqs, flag, statuses),
            pl_mpi_waitall(n, reqs, flag, statuses))
PL_MPI_HOOK(Waitsome, (int n, void *reqs, int *outcount, int *indices, void *statuses),
            (n, reqs, outcount, indices, statuses),
            pl_mpi_waitsome(n, reqs, outcount, indices, statuses, false))
PL_MPI_HOOK(Testsome, (int n, void *reqs, int *outcount, int *indices, void *statuses),
            (n, reqs, outcount, indices, statuses),
            pl_mpi_waitsome(n, reqs, outcount, indices, statuses, true))
PL_MPI_HOOK(Request_free, (void *req), (req), pl_mpi_request_free(req))
PL_MPI_HOOK(Cancel, (void *req), (req), pl_mpi_cancel(req))

#endif /* PL_HAVE_MPI */
