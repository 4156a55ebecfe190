/* MPI bandwidth for tests/bench/mpi.sh.
 *
 *   mpi_bench pingpong SIZE...  2 ranks: ping-pong per size; rank 0 prints
 *                               "pingpong SIZE MBps" (2*SIZE*iters/time)
 *   mpi_bench latency SIZE N    2 ranks: N round trips of SIZE bytes; rank 0
 *                               prints "latency SIZE microseconds-per-round-trip"
 *   mpi_bench fanout SIZE REPS  n ranks: rank 0 sends one buffer to every
 *                               other rank, REPS times; prints
 *                               "fanout SIZE seconds-per-fanout"
 * Iterations per size: about 2 GiB of traffic, at least 3, at most 1000,
 * after one warm-up round trip. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    int rank, n;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &n);
    if (argc >= 3 && strcmp(argv[1], "pingpong") == 0) {
        for (int a = 2; a < argc; a++) {
            size_t sz = strtoull(argv[a], NULL, 0);
            long iters = (long)((2ull << 30) / (2 * sz));
            iters = iters < 3 ? 3 : iters > 1000 ? 1000 : iters;
            char *b = malloc(sz);
            memset(b, rank + 1, sz);
            int peer = 1 - rank;
            double t0 = 0;
            for (long i = -1; i < iters; i++) { /* i == -1: warm-up */
                if (i == 0) {
                    MPI_Barrier(MPI_COMM_WORLD);
                    t0 = MPI_Wtime();
                }
                b[i & 1023] = (char)i; /* new contents every round */
                if (rank == 0) {
                    MPI_Send(b, (int)sz, MPI_BYTE, peer, 1, MPI_COMM_WORLD);
                    MPI_Recv(b, (int)sz, MPI_BYTE, peer, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
                } else {
                    MPI_Recv(b, (int)sz, MPI_BYTE, peer, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
                    MPI_Send(b, (int)sz, MPI_BYTE, peer, 1, MPI_COMM_WORLD);
                }
            }
            double dt = MPI_Wtime() - t0;
            if (rank == 0)
                printf("pingpong %zu %.1f\n", sz, 2.0 * (double)sz * (double)iters / dt / 1e6);
            free(b);
        }
    } else if (argc == 4 && strcmp(argv[1], "latency") == 0) {
        size_t sz = strtoull(argv[2], NULL, 0);
        long iters = atol(argv[3]);
        char *b = calloc(1, sz);
        int peer = 1 - rank;
        double t0 = 0;
        for (long i = -100; i < iters; i++) { /* 100 warm-up round trips */
            if (i == 0) {
                MPI_Barrier(MPI_COMM_WORLD);
                t0 = MPI_Wtime();
            }
            if (rank == 0) {
                MPI_Send(b, (int)sz, MPI_BYTE, peer, 3, MPI_COMM_WORLD);
                MPI_Recv(b, (int)sz, MPI_BYTE, peer, 3, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            } else {
                MPI_Recv(b, (int)sz, MPI_BYTE, peer, 3, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
                MPI_Send(b, (int)sz, MPI_BYTE, peer, 3, MPI_COMM_WORLD);
            }
        }
        if (rank == 0)
            printf("latency %zu %.3f\n", sz, (MPI_Wtime() - t0) / (double)iters * 1e6);
        free(b);
    } else if (argc == 4 && strcmp(argv[1], "fanout") == 0) {
        size_t sz = strtoull(argv[2], NULL, 0);
        int reps = atoi(argv[3]);
        char *b = malloc(sz);
        memset(b, 7, sz);
        double t0 = 0;
        for (int i = -1; i < reps; i++) {
            MPI_Barrier(MPI_COMM_WORLD);
            if (i == 0)
                t0 = MPI_Wtime();
            if (rank == 0) {
                b[0] = (char)i;
                for (int k = 1; k < n; k++)
                    MPI_Send(b, (int)sz, MPI_BYTE, k, 2, MPI_COMM_WORLD);
            } else {
                MPI_Recv(b, (int)sz, MPI_BYTE, 0, 2, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            }
        }
        MPI_Barrier(MPI_COMM_WORLD);
        if (rank == 0)
            printf("fanout %zu %.4f\n", sz, (MPI_Wtime() - t0) / reps);
        free(b);
    } else {
        if (rank == 0)
            fprintf(stderr, "usage: mpi_bench pingpong SIZE... | latency SIZE N | "
                            "fanout SIZE REPS\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    MPI_Finalize();
    return 0;
}
