/* Calls fake_ompi.c's functions the way an Open MPI program would; prints
 * each return code (tests/integration/t_mpi_foreign.sh). */
#include <stdio.h>

#define COMM ((void *)0x7f00deadbeef0001ull)
#define TYPE ((void *)0x7f00cafef00d0002ull)

int MPI_Send(const void *buf, int count, void *type, int dest, int tag, void *comm);
int PMPI_Send(const void *buf, int count, void *type, int dest, int tag, void *comm);
int MPI_Sendrecv(const void *sbuf, int sc, void *stype, int dest, int stag, void *rbuf, int rc,
                 void *rtype, int source, int rtag, void *comm, void *status);
int MPI_Waitall(int n, void *reqs, void *statuses);
int MPI_Bcast_c(void *buf, long count, void *type, int root, void *comm);

int main(void)
{
    char b[8];
    printf("%d %d %d %d %d\n", MPI_Send(b, 7, TYPE, 3, 9, COMM), PMPI_Send(b, 7, TYPE, 3, 9, COMM),
           MPI_Sendrecv(b, 1, TYPE, 2, 3, b, 4, TYPE, 5, 6, COMM, (void *)0x1234),
           MPI_Waitall(2, (void *)0x5678, (void *)0x9abc),
           MPI_Bcast_c(b, 1l << 40, TYPE, 1, COMM));
    return 0;
}
