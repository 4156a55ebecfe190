/* pl_mpi_real: the table of real PMPI functions (pl_mpi.c binds it), for
 * the logic files, compiled once per ABI (pl_mpi.h). */
#ifndef PL_MPI_REAL_H
#define PL_MPI_REAL_H

#include <limits.h>

#include "pl_mpi_abi.h"

/* Every real function the wrappers call, by its name without PMPI_. The
 * pointer types come from mpi.h's own prototypes. */
#define PL_MPI_REAL3(X)                                                                   \
    X(Send) X(Ssend) X(Bsend) X(Rsend) X(Isend) X(Issend) X(Ibsend) X(Irsend)             \
    X(Recv) X(Irecv) X(Recv_init) X(Sendrecv) X(Sendrecv_replace)                         \
    X(Wait) X(Waitall) X(Waitany) X(Waitsome)                                             \
    X(Test) X(Testall) X(Testany) X(Testsome)                                             \
    X(Probe) X(Iprobe) X(Mprobe) X(Improbe) X(Mrecv) X(Imrecv)                            \
    X(Bcast) X(Request_free) X(Cancel)                                                    \
    /* helpers */                                                                         \
    X(Type_size_x) X(Type_get_envelope) X(Type_get_extent_x) X(Pack) X(Unpack)            \
    X(Get_elements_x) X(Status_set_elements_x) X(Status_set_cancelled) X(Test_cancelled)  \
    X(Comm_call_errhandler) X(Comm_test_inter) X(Comm_size) X(Comm_rank) X(Scatter)       \
    X(Grequest_start) X(Grequest_complete)

#if PL_MPI_LARGE
#define PL_MPI_REAL4(X)                                                                   \
    X(Send_c) X(Ssend_c) X(Bsend_c) X(Rsend_c) X(Isend_c) X(Issend_c) X(Ibsend_c)         \
    X(Irsend_c) X(Recv_c) X(Irecv_c) X(Recv_init_c) X(Sendrecv_c) X(Sendrecv_replace_c)   \
    X(Mrecv_c) X(Imrecv_c) X(Bcast_c) X(Isendrecv) X(Isendrecv_c) X(Isendrecv_replace)    \
    X(Isendrecv_replace_c) X(Pack_c) X(Unpack_c)
#else
#define PL_MPI_REAL4(X)
#endif

#define PL_MPI_REAL(X) PL_MPI_REAL3(X) PL_MPI_REAL4(X)

#define PL_MPI_DECLARE(name) __typeof__(PMPI_##name) *name;
typedef struct pl_mpi_real_table {
    PL_MPI_REAL(PL_MPI_DECLARE)
} pl_mpi_real_table;
#undef PL_MPI_DECLARE

extern pl_mpi_real_table pl_mpi_real;

/* Binds the table once. false (and one log line) if this process has no
 * MPI library of this ABI to bind to. It is the ops table's bind: the
 * hooks call the entry points only after it returned true (pl_hooks_mpi.c,
 * pl_abi_pick), so the entry points do not check again. */
bool pl_mpi_bind(void);

#define R(name) (pl_mpi_real.name)

/* ---- byte counts past INT_MAX -------------------------------------------
 * Pack, unpack and a matched receive of MPI_BYTEs with an MPI_Count size:
 * the _c functions under MPI-4; under MPI-3 the int ones, and
 * MPI_ERR_COUNT past INT_MAX (such a payload is then sent as it is). */

static inline int pl_mpi_pack_x(const void *in, MPI_Count count, MPI_Datatype type, void *out,
                                MPI_Count outsize, MPI_Count *pos, MPI_Comm comm)
{
#if PL_MPI_LARGE
    return R(Pack_c)(in, count, type, out, outsize, pos, comm);
#else
    if (count > INT_MAX || outsize > INT_MAX || *pos > INT_MAX)
        return MPI_ERR_COUNT;
    int p = (int)*pos;
    int rc = R(Pack)(in, (int)count, type, out, (int)outsize, &p, comm);
    *pos = p;
    return rc;
#endif
}

static inline int pl_mpi_unpack_x(const void *in, MPI_Count insize, MPI_Count *pos, void *out,
                                  MPI_Count count, MPI_Datatype type, MPI_Comm comm)
{
#if PL_MPI_LARGE
    return R(Unpack_c)(in, insize, pos, out, count, type, comm);
#else
    if (count > INT_MAX || insize > INT_MAX || *pos > INT_MAX)
        return MPI_ERR_COUNT;
    int p = (int)*pos;
    int rc = R(Unpack)(in, (int)insize, &p, out, (int)count, type, comm);
    *pos = p;
    return rc;
#endif
}

static inline int pl_mpi_mrecv_bytes(void *buf, MPI_Count n, MPI_Message *m, MPI_Status *st)
{
#if PL_MPI_LARGE
    return R(Mrecv_c)(buf, n, MPI_BYTE, m, st);
#else
    return n > INT_MAX ? MPI_ERR_COUNT : R(Mrecv)(buf, (int)n, MPI_BYTE, m, st);
#endif
}

#endif
