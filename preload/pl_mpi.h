/* pl_mpi: MPI point-to-point and Bcast through the profiling interface
 * (DESIGN §2, docs/mpi.md).
 *
 * pl_hooks_mpi.c exports MPI_X and PMPI_X (so bindings that call PMPI_X
 * directly are caught too); each is a one-liner into the pl_mpi_* logic
 * here. The real PMPI_X are found at run time with dlsym(RTLD_NEXT) on
 * first use, so the library has no link-time MPI dependency and a program
 * without MPI never reaches this code.
 *
 * The logic speaks the MPICH ABI (libmpich.so.12: handles are ints). This
 * header does not include mpi.h: the hooks take every handle at register
 * width, so a program of another ABI (Open MPI, whose handles are
 * pointers) is passed straight to its own library, bit for bit
 * (pl_mpi_foreign). pl_mpi.c checks that these types are MPICH's. Built
 * only where MPICH's mpi.h is available at build time. */
#ifndef PL_MPI_H
#define PL_MPI_H

#if __has_include(<mpi.h>)
#define PL_HAVE_MPI 1
#include <stdbool.h>
#include <stdint.h>

/* MPICH's handle and count types, spelled without mpi.h. */
typedef int pl_mpi_handle;        /* MPI_Comm, MPI_Datatype, MPI_Request, MPI_Message */
typedef long pl_mpi_count;        /* MPI_Count */
typedef struct MPI_Status pl_mpi_status;

#define PL_MPI_ERR_INTERN 16      /* MPI_ERR_INTERN in MPICH 4 */

/* true when the MPI library in this process is not of the MPICH ABI; the
 * hooks then call the next MPI_X / PMPI_X with the caller's arguments. */
bool pl_mpi_foreign(void);

/* Binds the real functions once. false (and one log line) if this process
 * has no MPI library to bind to: the hook returns MPI_ERR_INTERN. */
bool pl_mpi_bind(void);

/* Requests we must finish at completion (Wait/Test): true while any exist,
 * so the completion wrappers skip all bookkeeping otherwise. */
bool pl_mpi_have_reqs(void);

/* Blocking modes first: mode < PL_MPI_ISEND is a blocking send. */
enum pl_mpi_send_mode { PL_MPI_SEND, PL_MPI_SSEND, PL_MPI_BSEND, PL_MPI_RSEND, PL_MPI_ISEND,
                        PL_MPI_ISSEND, PL_MPI_IBSEND, PL_MPI_IRSEND };

/* The logic behind each hook (pl_mpi.c, pl_mpi_wait.c). `large`: the
 * caller is an MPI-4 _c variant, so the real call is the _c one too. */
int pl_mpi_send(int mode, const void *buf, pl_mpi_count count, pl_mpi_handle type, int dest,
                int tag, pl_mpi_handle comm, pl_mpi_handle *req, bool large);
int pl_mpi_recv(void *buf, pl_mpi_count count, pl_mpi_handle type, int source, int tag,
                pl_mpi_handle comm, pl_mpi_status *status, bool large);
int pl_mpi_irecv(void *buf, pl_mpi_count count, pl_mpi_handle type, int source, int tag,
                 pl_mpi_handle comm, pl_mpi_handle *req, bool large);
int pl_mpi_recv_init(void *buf, pl_mpi_count count, pl_mpi_handle type, int source, int tag,
                     pl_mpi_handle comm, pl_mpi_handle *req, bool large);
int pl_mpi_sendrecv(const void *sbuf, pl_mpi_count scount, pl_mpi_handle stype, int dest,
                    int stag, void *rbuf, pl_mpi_count rcount, pl_mpi_handle rtype, int source,
                    int rtag, pl_mpi_handle comm, pl_mpi_status *status, bool large);
int pl_mpi_sendrecv_replace(void *buf, pl_mpi_count count, pl_mpi_handle type, int dest,
                            int stag, int source, int rtag, pl_mpi_handle comm,
                            pl_mpi_status *status, bool large);
/* MPI_Isendrecv, and MPI_Isendrecv_replace (replace: sbuf == rbuf). */
int pl_mpi_isendrecv(const void *sbuf, pl_mpi_count scount, pl_mpi_handle stype, int dest,
                     int stag, void *rbuf, pl_mpi_count rcount, pl_mpi_handle rtype, int source,
                     int rtag, pl_mpi_handle comm, pl_mpi_handle *req, bool large, bool replace);
int pl_mpi_probe(int source, int tag, pl_mpi_handle comm, int *flag, pl_mpi_status *status);
int pl_mpi_mprobe(int source, int tag, pl_mpi_handle comm, int *flag, pl_mpi_handle *message,
                  pl_mpi_status *status);
int pl_mpi_mrecv(void *buf, pl_mpi_count count, pl_mpi_handle type, pl_mpi_handle *message,
                 pl_mpi_status *status, bool large);
int pl_mpi_imrecv(void *buf, pl_mpi_count count, pl_mpi_handle type, pl_mpi_handle *message,
                  pl_mpi_handle *req, bool large);
int pl_mpi_bcast(void *buf, pl_mpi_count count, pl_mpi_handle type, int root,
                 pl_mpi_handle comm, bool large);

int pl_mpi_request_free(pl_mpi_handle *req);
int pl_mpi_cancel(pl_mpi_handle *req);

int pl_mpi_wait(pl_mpi_handle *req, pl_mpi_status *status);
int pl_mpi_test(pl_mpi_handle *req, int *flag, pl_mpi_status *status);
int pl_mpi_waitany(int n, pl_mpi_handle reqs[], int *index, int *flag, pl_mpi_status *status);
int pl_mpi_waitall(int n, pl_mpi_handle reqs[], int *flag, pl_mpi_status *statuses);
int pl_mpi_waitsome(int n, pl_mpi_handle reqs[], int *outcount, int indices[],
                    pl_mpi_status *statuses, bool test);

#endif /* __has_include(<mpi.h>) */
#endif
