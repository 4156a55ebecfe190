/* pl_mpi_real: the table of real PMPI functions (pl_mpi.c binds it).
 * Only for files that include MPICH's mpi.h. */
#ifndef PL_MPI_REAL_H
#define PL_MPI_REAL_H

#include <mpi.h>

#include "pl_mpi.h"

/* Every real function the wrappers call, by its name without PMPI_. The
 * pointer types come from mpi.h's own prototypes. */
#define PL_MPI_REAL(X)                                                                    \
    X(Send) X(Ssend) X(Bsend) X(Rsend) X(Isend) X(Issend)                                 \
    X(Send_c) X(Ssend_c) X(Bsend_c) X(Rsend_c) X(Isend_c) X(Issend_c)                     \
    X(Recv) X(Irecv) X(Recv_c) X(Irecv_c)                                                 \
    X(Sendrecv) X(Sendrecv_replace) X(Sendrecv_c) X(Sendrecv_replace_c)                   \
    X(Wait) X(Waitall) X(Waitany) X(Waitsome)                                             \
    X(Test) X(Testall) X(Testany) X(Testsome)                                             \
    X(Probe) X(Iprobe) X(Mprobe) X(Improbe) X(Mrecv) X(Imrecv) X(Mrecv_c) X(Imrecv_c)     \
    X(Bcast) X(Bcast_c) X(Request_free) X(Cancel)                                         \
    X(Ibsend) X(Irsend) X(Ibsend_c) X(Irsend_c) X(Recv_init) X(Recv_init_c)               \
    X(Isendrecv) X(Isendrecv_c) X(Isendrecv_replace) X(Isendrecv_replace_c)               \
    /* helpers */                                                                         \
    X(Type_size_x) X(Type_get_envelope) X(Type_get_extent_x) X(Pack_c) X(Unpack_c)        \
    X(Get_elements_x) X(Status_set_elements_x) X(Status_set_cancelled) X(Test_cancelled)                    \
    X(Comm_call_errhandler) X(Comm_test_inter) X(Comm_size) X(Comm_rank) X(Scatter)       \
    X(Grequest_start) X(Grequest_complete)

#define PL_MPI_DECLARE(name) __typeof__(PMPI_##name) *name;
typedef struct pl_mpi_real_table {
    PL_MPI_REAL(PL_MPI_DECLARE)
} pl_mpi_real_table;
#undef PL_MPI_DECLARE

extern pl_mpi_real_table pl_mpi_real;

/* Binds the table once. false (and one log line) if this process has no
 * MPI library to bind to: the wrapper then returns MPI_ERR_INTERN. */
bool pl_mpi_bind(void);

#define R(name) (pl_mpi_real.name)

#endif
