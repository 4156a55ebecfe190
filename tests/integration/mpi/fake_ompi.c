/* A stand-in for Open MPI's libmpi (tests/integration/t_mpi_foreign.sh):
 * its handles are pointers, as Open MPI's are, and it exports
 * ompi_mpi_comm_world as Open MPI does. Each function checks that the
 * handles arrive with all 64 bits and returns a code naming itself. */
#include <stdint.h>
#include <stdio.h>

int ompi_mpi_comm_world = 1;

#define COMM ((void *)0x7f00deadbeef0001ull)
#define TYPE ((void *)0x7f00cafef00d0002ull)

static int check(const char *fn, void *type, void *comm)
{
    if (type != TYPE || comm != COMM) {
        fprintf(stderr, "%s: handles changed: type %p comm %p\n", fn, type, comm);
        return -1;
    }
    return 0;
}

int MPI_Send(const void *buf, int count, void *type, int dest, int tag, void *comm)
{
    return check("MPI_Send", type, comm) ? -1 : count == 7 && dest == 3 && tag == 9 ? 101 : -2;
}

int PMPI_Send(const void *buf, int count, void *type, int dest, int tag, void *comm)
{
    return check("PMPI_Send", type, comm) ? -1 : count == 7 && dest == 3 && tag == 9 ? 102 : -2;
}

/* Twelve arguments: comm and status travel on the stack. */
int MPI_Sendrecv(const void *sbuf, int sc, void *stype, int dest, int stag, void *rbuf, int rc,
                 void *rtype, int source, int rtag, void *comm, void *status)
{
    if (check("MPI_Sendrecv", stype, comm) || check("MPI_Sendrecv", rtype, comm))
        return -1;
    return sc == 1 && dest == 2 && stag == 3 && rc == 4 && source == 5 && rtag == 6 &&
                   status == (void *)0x1234
               ? 103
               : -2;
}

int MPI_Waitall(int n, void *reqs, void *statuses)
{
    return n == 2 && reqs == (void *)0x5678 && statuses == (void *)0x9abc ? 104 : -2;
}

int MPI_Bcast_c(void *buf, long count, void *type, int root, void *comm)
{
    return check("MPI_Bcast_c", type, comm) ? -1 : count == (1l << 40) && root == 1 ? 105 : -2;
}
