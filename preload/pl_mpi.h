/* pl_mpi: MPI point-to-point and Bcast through the profiling interface
 * (DESIGN §2, docs/mpi.md).
 *
 * pl_hooks_mpi.c exports MPI_X and PMPI_X (an alias, so bindings that call
 * PMPI_X directly are caught too); each is a one-liner into the pl_mpi_*
 * logic here. The real PMPI_X are found at run time with dlsym(RTLD_NEXT)
 * on first use, so the library has no link-time MPI dependency and a
 * program without MPI never reaches this code. Built only where mpi.h
 * (MPICH) is available at build time. */
#ifndef PL_MPI_H
#define PL_MPI_H

#if __has_include(<mpi.h>)
#define PL_HAVE_MPI 1
#include <mpi.h>
#include <stdbool.h>

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

/* Requests we must finish at completion (Wait/Test): true while any exist,
 * so the completion wrappers skip all bookkeeping otherwise. */
bool pl_mpi_have_reqs(void);

/* Blocking modes first: mode < PL_MPI_ISEND is a blocking send. */
enum pl_mpi_send_mode { PL_MPI_SEND, PL_MPI_SSEND, PL_MPI_BSEND, PL_MPI_RSEND, PL_MPI_ISEND,
                        PL_MPI_ISSEND, PL_MPI_IBSEND, PL_MPI_IRSEND };

/* The logic behind each hook (pl_mpi.c, pl_mpi_wait.c). `large`: the
 * caller is an MPI-4 _c variant, so the real call is the _c one too. */
int pl_mpi_send(int mode, const void *buf, MPI_Count count, MPI_Datatype type, int dest,
                int tag, MPI_Comm comm, MPI_Request *req, bool large);
int pl_mpi_recv(void *buf, MPI_Count count, MPI_Datatype type, int source, int tag,
                MPI_Comm comm, MPI_Status *status, bool large);
int pl_mpi_irecv(void *buf, MPI_Count count, MPI_Datatype type, int source, int tag,
                 MPI_Comm comm, MPI_Request *req, bool large);
int pl_mpi_sendrecv(const void *sbuf, MPI_Count scount, MPI_Datatype stype, int dest,
                    int stag, void *rbuf, MPI_Count rcount, MPI_Datatype rtype, int source,
                    int rtag, MPI_Comm comm, MPI_Status *status, bool large);
int pl_mpi_recv_init(void *buf, MPI_Count count, MPI_Datatype type, int source, int tag,
                     MPI_Comm comm, MPI_Request *req, bool large);
/* MPI_Isendrecv, and MPI_Isendrecv_replace (replace: sbuf == rbuf). */
int pl_mpi_isendrecv(const void *sbuf, MPI_Count scount, MPI_Datatype stype, int dest,
                     int stag, void *rbuf, MPI_Count rcount, MPI_Datatype rtype, int source,
                     int rtag, MPI_Comm comm, MPI_Request *req, bool large, bool replace);
int pl_mpi_sendrecv_replace(void *buf, MPI_Count count, MPI_Datatype type, int dest,
                            int stag, int source, int rtag, MPI_Comm comm, MPI_Status *status,
                            bool large);
int pl_mpi_probe(int source, int tag, MPI_Comm comm, int *flag, MPI_Status *status);
int pl_mpi_mprobe(int source, int tag, MPI_Comm comm, int *flag, MPI_Message *message,
                  MPI_Status *status);
int pl_mpi_mrecv(void *buf, MPI_Count count, MPI_Datatype type, MPI_Message *message,
                 MPI_Status *status, bool large);
int pl_mpi_imrecv(void *buf, MPI_Count count, MPI_Datatype type, MPI_Message *message,
                  MPI_Request *req, bool large);
int pl_mpi_bcast(void *buf, MPI_Count count, MPI_Datatype type, int root, MPI_Comm comm,
                 bool large);

/* Completion: `h` is the request's handle before the real call completed
 * it, st its status (never MPI_STATUS_IGNORE). Resolves a token a receive
 * got, frees what a proxied send kept. Returns an MPI error code. */
int pl_mpi_complete(MPI_Request h, MPI_Status *st);
/* Forgets a request the application frees. */
void pl_mpi_forget(MPI_Request h);

int pl_mpi_wait(MPI_Request *req, MPI_Status *status);
int pl_mpi_test(MPI_Request *req, int *flag, MPI_Status *status);
int pl_mpi_waitany(int n, MPI_Request reqs[], int *index, int *flag, MPI_Status *status);
int pl_mpi_waitall(int n, MPI_Request reqs[], int *flag, MPI_Status statuses[]);
int pl_mpi_waitsome(int n, MPI_Request reqs[], int *outcount, int indices[],
                    MPI_Status statuses[], bool test);

#endif /* __has_include(<mpi.h>) */
#endif
