/* pl_mpi: the MPI hooks' view of the MPI logic (docs/mpi.md).
 *
 * Two MPI ABIs live on Linux: MPICH's (libmpi.so.12; MPICH, Intel MPI,
 * MVAPICH: handles are ints) and Open MPI's (libmpi.so.40: handles are
 * pointers, another MPI_Status). The logic (pl_mpi.c, pl_mpi_send.c,
 * pl_mpi_recv.c, pl_mpi_wait.c, pl_mpi_ops.c) is written against mpi.h and
 * compiled once per ABI whose mpi.h the build found (Makefile: MPI_ABIS),
 * each copy into the same library; pl_mpi_ns.h keeps their names apart.
 * Each copy exports one table of entry points, pl_mpi_ops.
 *
 * This header needs no mpi.h: the entry points take every handle at
 * register width (pl_h) and pointers to handles and statuses as void *.
 * The hooks (pl_hooks_mpi.c) pick the table of the MPI library in this
 * process, or, if there is none, call the next MPI_X with the caller's
 * arguments untouched. */
#ifndef PL_MPI_H
#define PL_MPI_H

#include <stdbool.h>
#include <stdint.h>

#if defined(PL_HAVE_MPICH) || defined(PL_HAVE_OMPI)
#define PL_HAVE_MPI 1
#endif

typedef uintptr_t pl_h;     /* MPI_Comm, MPI_Datatype, MPI_Request, MPI_Message */
typedef int64_t pl_mpi_count; /* MPI_Count: long (MPICH) or long long (Open MPI) */

/* Blocking modes first: mode < PL_MPI_ISEND is a blocking send. */
enum pl_mpi_send_mode { PL_MPI_SEND, PL_MPI_SSEND, PL_MPI_BSEND, PL_MPI_RSEND, PL_MPI_ISEND,
                        PL_MPI_ISSEND, PL_MPI_IBSEND, PL_MPI_IRSEND };

/* The entry points of one ABI's copy of the logic. `large`: the caller is
 * an MPI-4 _c variant, so the real call is the _c one too; a copy built
 * against an MPI-3 mpi.h has large_ok false and no isendrecv, and the
 * hooks pass those calls through. Pointers: req, message (a handle each),
 * status (an MPI_Status), reqs/statuses (arrays of them). */
typedef struct pl_mpi_ops {
    const char *abi;  /* "MPICH", "Open MPI": for log lines */
    bool large_ok;
    bool (*bind)(void); /* binds the real PMPI_*; false (logged) if it cannot */
    int (*send)(int mode, const void *buf, pl_mpi_count count, pl_h type, int dest, int tag,
                pl_h comm, void *req, bool large);
    int (*recv)(void *buf, pl_mpi_count count, pl_h type, int source, int tag, pl_h comm,
                void *status, bool large);
    int (*irecv)(void *buf, pl_mpi_count count, pl_h type, int source, int tag, pl_h comm,
                 void *req, bool large);
    int (*recv_init)(void *buf, pl_mpi_count count, pl_h type, int source, int tag,
                     pl_h comm, void *req, bool large);
    int (*sendrecv)(const void *sbuf, pl_mpi_count scount, pl_h stype, int dest, int stag,
                    void *rbuf, pl_mpi_count rcount, pl_h rtype, int source, int rtag,
                    pl_h comm, void *status, bool large);
    int (*sendrecv_replace)(void *buf, pl_mpi_count count, pl_h type, int dest, int stag,
                            int source, int rtag, pl_h comm, void *status, bool large);
    /* MPI_Isendrecv and MPI_Isendrecv_replace (replace: sbuf == rbuf);
     * NULL where mpi.h is MPI-3. */
    int (*isendrecv)(const void *sbuf, pl_mpi_count scount, pl_h stype, int dest, int stag,
                     void *rbuf, pl_mpi_count rcount, pl_h rtype, int source, int rtag,
                     pl_h comm, void *req, bool large, bool replace);
    int (*probe)(int source, int tag, pl_h comm, int *flag, void *status);
    int (*mprobe)(int source, int tag, pl_h comm, int *flag, void *message, void *status);
    int (*mrecv)(void *buf, pl_mpi_count count, pl_h type, void *message, void *status,
                 bool large);
    int (*imrecv)(void *buf, pl_mpi_count count, pl_h type, void *message, void *req,
                  bool large);
    int (*bcast)(void *buf, pl_mpi_count count, pl_h type, int root, pl_h comm, bool large);
    int (*request_free)(void *req);
    int (*cancel)(void *req);
    int (*wait)(void *req, void *status);
    int (*test)(void *req, int *flag, void *status);
    int (*waitany)(int n, void *reqs, int *index, int *flag, void *status);
    int (*waitall)(int n, void *reqs, int *flag, void *statuses);
    int (*waitsome)(int n, void *reqs, int *outcount, int *indices, void *statuses,
                    bool test);
} pl_mpi_ops;

#ifdef PL_HAVE_MPICH
extern const pl_mpi_ops pl_mpi_ops_mpich;
#endif
#ifdef PL_HAVE_OMPI
extern const pl_mpi_ops pl_mpi_ops_ompi;
#endif

#endif
