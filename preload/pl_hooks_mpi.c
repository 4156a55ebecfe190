/* pl_hooks_mpi: the exported MPI entry points (docs/mpi.md).
 *
 * Each MPI_X and PMPI_X (the profiling name, so a binding or tool that
 * calls it directly is caught too) is a one-liner into the logic of the
 * MPI ABI this process runs (pl_mpi.h): MPICH's or Open MPI's, each built
 * if its mpi.h was there at build time. The _c forms are the MPI-4
 * large-count variants.
 *
 * Handles arrive at register width (pl_h) and pointers to handles and
 * statuses as void *, which is how both ABIs pass them on every Linux
 * calling convention we build for (x86-64, aarch64: an int and a pointer
 * argument each take one integer register or one 8-byte stack slot). That
 * is why this file does not include mpi.h, and why a call we do not
 * handle (an ABI we were not built for, a _c call under an MPI-3 library)
 * can go to the next MPI_X or PMPI_X with the caller's bits untouched. */
#include "pl_mpi.h"

#ifdef PL_HAVE_MPI
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

#include "pl_real.h"
#include "psi_log.h"

/* ---- which ABI ------------------------------------------------------------ */

static pthread_once_t pl_abi_once = PTHREAD_ONCE_INIT;
static atomic_bool pl_abi_known; /* read on every call: no pthread_once then */
static const pl_mpi_ops *pl_abi_ops;
static bool pl_abi_ompi; /* what pl_is_ompi found, for pl_err_intern */

/* Open MPI (libmpi.so.40) exports its predefined objects under these
 * names; every other MPI we meet on Linux (MPICH, Intel MPI, MVAPICH)
 * shares MPICH's ABI. A library a binding opened privately is found by
 * its soname. */
static bool pl_is_ompi(void)
{
    if (dlsym(RTLD_DEFAULT, "ompi_mpi_comm_world"))
        return true;
    void *h = dlopen("libmpi.so.40", RTLD_LAZY | RTLD_NOLOAD);
    return h && dlsym(h, "ompi_mpi_comm_world");
}

static void pl_abi_pick(void)
{
    const pl_mpi_ops *ops = NULL;
    bool ompi = pl_is_ompi();
#ifdef PL_HAVE_OMPI
    if (ompi)
        ops = &pl_mpi_ops_ompi;
#endif
#ifdef PL_HAVE_MPICH
    if (!ompi)
        ops = &pl_mpi_ops_mpich;
#endif
    if (!ops)
        psi_log(PSI_LOG_INFO, "MPI: %s ABI, which this build has no mpi.h for; MPI calls "
                "pass through untouched", ompi ? "Open MPI" : "MPICH");
    else if (!ops->bind())
        ops = NULL; /* bind said why */
    else
        psi_log(PSI_LOG_DEBUG, "MPI: %s ABI", ops->abi);
    pl_abi_ops = ops;
    pl_abi_ompi = ompi;
    atomic_store_explicit(&pl_abi_known, true, memory_order_release);
}

/* The logic of this process's MPI, or NULL: pass the call through. */
static inline const pl_mpi_ops *pl_abi(void)
{
    if (!atomic_load_explicit(&pl_abi_known, memory_order_acquire))
        pthread_once(&pl_abi_once, pl_abi_pick);
    return pl_abi_ops;
}

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

/* MPI_ERR_INTERN of the ABI in use, for a call with nowhere to go. Only
 * called after pl_abi(), so pl_abi_pick has set pl_abi_ompi. */
static int pl_err_intern(void)
{
    return pl_abi_ompi ? 17 : 16;
}

/* MPI_name and PMPI_name with parameters `params`: `call` (which may use
 * o, the ABI's table) when `ok`, else the next definition, called as
 * `args`. */
#define PL_MPI_HOOK(name, params, args, ok, call)                                \
    static int(*pl_next_##name) params;                                         \
    static int(*pl_pnext_##name) params;                                        \
    PL_EXPORT int MPI_##name params                                             \
    {                                                                           \
        const pl_mpi_ops *o = pl_abi();                                         \
        if (o && (ok))                                                          \
            return call;                                                        \
        return pl_forward((void **)&pl_next_##name, "MPI_" #name)               \
                   ? pl_next_##name args                                        \
                   : pl_err_intern();                                           \
    }                                                                           \
    PL_EXPORT int PMPI_##name params                                            \
    {                                                                           \
        const pl_mpi_ops *o = pl_abi();                                         \
        if (o && (ok))                                                          \
            return call;                                                        \
        return pl_forward((void **)&pl_pnext_##name, "PMPI_" #name)             \
                   ? pl_pnext_##name args                                       \
                   : pl_err_intern();                                           \
    }

/* A _c variant is ours only where the logic was built with them. */
#define OK(large) (!(large) || o->large_ok)


/* ---- sends ---------------------------------------------------------------- */

#define PL_MPI_SEND_HOOK(name, mode, ctype, large)                                           \
    PL_MPI_HOOK(name, (const void *buf, ctype count, pl_h type, int dest, int tag, pl_h comm), \
                (buf, count, type, dest, tag, comm), OK(large),                               \
                o->send(mode, buf, count, type, dest, tag, comm, NULL, large))

#define PL_MPI_ISEND_HOOK(name, mode, ctype, large)                                          \
    PL_MPI_HOOK(name,                                                                         \
                (const void *buf, ctype count, pl_h type, int dest, int tag, pl_h comm,      \
                 void *req),                                                                  \
                (buf, count, type, dest, tag, comm, req), OK(large),                          \
                o->send(mode, buf, count, type, dest, tag, comm, req, large))

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
                (buf, count, type, source, tag, comm, status), OK(large),                     \
                o->recv(buf, count, type, source, tag, comm, status, large))                  \
    PL_MPI_HOOK(Irecv##sfx,                                                                   \
                (void *buf, ctype count, pl_h type, int source, int tag, pl_h comm,          \
                 void *req),                                                                  \
                (buf, count, type, source, tag, comm, req), OK(large),                        \
                o->irecv(buf, count, type, source, tag, comm, req, large))                    \
    PL_MPI_HOOK(Recv_init##sfx,                                                               \
                (void *buf, ctype count, pl_h type, int source, int tag, pl_h comm,          \
                 void *req),                                                                  \
                (buf, count, type, source, tag, comm, req), OK(large),                        \
                o->recv_init(buf, count, type, source, tag, comm, req, large))                \
    PL_MPI_HOOK(Mrecv##sfx, (void *buf, ctype count, pl_h type, void *message, void *status), \
                (buf, count, type, message, status), OK(large),                               \
                o->mrecv(buf, count, type, message, status, large))                           \
    PL_MPI_HOOK(Imrecv##sfx, (void *buf, ctype count, pl_h type, void *message, void *req),   \
                (buf, count, type, message, req), OK(large),                                  \
                o->imrecv(buf, count, type, message, req, large))                             \
    PL_MPI_HOOK(Sendrecv##sfx,                                                                \
                (const void *sbuf, ctype scount, pl_h stype, int dest, int stag, void *rbuf,  \
                 ctype rcount, pl_h rtype, int source, int rtag, pl_h comm, void *status),    \
                (sbuf, scount, stype, dest, stag, rbuf, rcount, rtype, source, rtag, comm,    \
                 status),                                                                     \
                OK(large),                                                                    \
                o->sendrecv(sbuf, scount, stype, dest, stag, rbuf, rcount, rtype, source,     \
                            rtag, comm, status, large))                                       \
    PL_MPI_HOOK(Sendrecv_replace##sfx,                                                        \
                (void *buf, ctype count, pl_h type, int dest, int stag, int source, int rtag, \
                 pl_h comm, void *status),                                                    \
                (buf, count, type, dest, stag, source, rtag, comm, status), OK(large),        \
                o->sendrecv_replace(buf, count, type, dest, stag, source, rtag, comm, status, \
                                    large))                                                   \
    PL_MPI_HOOK(Isendrecv##sfx,                                                               \
                (const void *sbuf, ctype scount, pl_h stype, int dest, int stag, void *rbuf,  \
                 ctype rcount, pl_h rtype, int source, int rtag, pl_h comm, void *req),       \
                (sbuf, scount, stype, dest, stag, rbuf, rcount, rtype, source, rtag, comm,    \
                 req),                                                                        \
                o->isendrecv && OK(large),                                                    \
                o->isendrecv(sbuf, scount, stype, dest, stag, rbuf, rcount, rtype, source,    \
                             rtag, comm, req, large, false))                                  \
    PL_MPI_HOOK(Isendrecv_replace##sfx,                                                       \
                (void *buf, ctype count, pl_h type, int dest, int stag, int source, int rtag, \
                 pl_h comm, void *req),                                                       \
                (buf, count, type, dest, stag, source, rtag, comm, req),                      \
                o->isendrecv && OK(large),                                                    \
                o->isendrecv(buf, count, type, dest, stag, buf, count, type, source, rtag,    \
                             comm, req, large, true))                                         \
    PL_MPI_HOOK(Bcast##sfx, (void *buf, ctype count, pl_h type, int root, pl_h comm),         \
                (buf, count, type, root, comm), OK(large),                                    \
                o->bcast(buf, count, type, root, comm, large))

PL_MPI_RECV_HOOKS(, int, false)
PL_MPI_RECV_HOOKS(_c, pl_mpi_count, true)

/* ---- probes --------------------------------------------------------------- */

PL_MPI_HOOK(Probe, (int source, int tag, pl_h comm, void *status), (source, tag, comm, status),
            true, o->probe(source, tag, comm, NULL, status))
PL_MPI_HOOK(Iprobe, (int source, int tag, pl_h comm, int *flag, void *status),
            (source, tag, comm, flag, status), true, o->probe(source, tag, comm, flag, status))
PL_MPI_HOOK(Mprobe, (int source, int tag, pl_h comm, void *message, void *status),
            (source, tag, comm, message, status), true,
            o->mprobe(source, tag, comm, NULL, message, status))
PL_MPI_HOOK(Improbe, (int source, int tag, pl_h comm, int *flag, void *message, void *status),
            (source, tag, comm, flag, message, status), true,
            o->mprobe(source, tag, comm, flag, message, status))

/* ---- completion ----------------------------------------------------------- */

PL_MPI_HOOK(Wait, (void *req, void *status), (req, status), true, o->wait(req, status))
PL_MPI_HOOK(Test, (void *req, int *flag, void *status), (req, flag, status), true,
            o->test(req, flag, status))
PL_MPI_HOOK(Waitany, (int n, void *reqs, int *index, void *status), (n, reqs, index, status),
            true, o->waitany(n, reqs, index, NULL, status))
PL_MPI_HOOK(Testany, (int n, void *reqs, int *index, int *flag, void *status),
            (n, reqs, index, flag, status), true, o->waitany(n, reqs, index, flag, status))
PL_MPI_HOOK(Waitall, (int n, void *reqs, void *statuses), (n, reqs, statuses), true,
            o->waitall(n, reqs, NULL, statuses))
PL_MPI_HOOK(Testall, (int n, void *reqs, int *flag, void *statuses), (n, reqs, flag, statuses),
            true, o->waitall(n, reqs, flag, statuses))
PL_MPI_HOOK(Waitsome, (int n, void *reqs, int *outcount, int *indices, void *statuses),
            (n, reqs, outcount, indices, statuses), true,
            o->waitsome(n, reqs, outcount, indices, statuses, false))
PL_MPI_HOOK(Testsome, (int n, void *reqs, int *outcount, int *indices, void *statuses),
            (n, reqs, outcount, indices, statuses), true,
            o->waitsome(n, reqs, outcount, indices, statuses, true))
PL_MPI_HOOK(Request_free, (void *req), (req), true, o->request_free(req))
PL_MPI_HOOK(Cancel, (void *req), (req), true, o->cancel(req))

#endif /* PL_HAVE_MPI */
