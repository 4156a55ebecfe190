/* zmqbench: put + resolve throughput of a store URL (any connector), sizes
 * 1 KiB to 256 MiB, through the public store API.
 *
 *   cc -O2 -D_GNU_SOURCE -Ipolicy -Istore -o build/bench/zmqbench \
 *      tests/bench/zmqbench.c build/libpsicore.a -lxxhash -ldl -lpthread -lm
 *   build/bench/zmqbench URL [MAX_SIZE_MIB]
 *
 * Prints one markdown row per size: put MB/s, resolve (get + checksum +
 * release) MB/s, and the round trip of a whole put+resolve. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "psi_store.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: zmqbench URL [MAX_SIZE_MIB]\n");
        return 2;
    }
    size_t max = (argc > 2 ? (size_t)atol(argv[2]) : 256) << 20;
    psi_store *s;
    psi_err e = {0};
    if (psi_store_open(argv[1], &s, &e) < 0) {
        fprintf(stderr, "zmqbench: %s\n", e.msg);
        return 1;
    }
    uint8_t *buf = malloc(max);
    if (!buf)
        return 1;
    for (size_t i = 0; i < max; i++)
        buf[i] = (uint8_t)(i * 2654435761u >> 13);

    printf("| size | reps | put MB/s | resolve MB/s | put+resolve ms |\n|---|---|---|---|---|\n");
    for (size_t n = 1024; n <= max; n *= 4) {
        int reps = n <= (1u << 20) ? 200 : n <= (16u << 20) ? 20 : 4;
        double tput = 0, tget = 0;
        for (int r = 0; r < reps; r++) {
            psi_token tok;
            psi_obj o;
            buf[0] = (uint8_t)r; /* a new object every time: no dedup hits */
            buf[n - 1] = (uint8_t)(r >> 8);
            double t0 = now();
            if (psi_store_put(s, buf, n, NULL, &tok, &e) < 0) {
                fprintf(stderr, "zmqbench: put %zu: %s\n", n, e.msg);
                return 1;
            }
            double t1 = now();
            if (psi_store_resolve(s, &tok, &o, &e) < 0) {
                fprintf(stderr, "zmqbench: resolve %zu: %s\n", n, e.msg);
                return 1;
            }
            psi_obj_release(&o);
            double t2 = now();
            tput += t1 - t0;
            tget += t2 - t1;
        }
        char sz[32];
        if (n >= (1u << 20))
            snprintf(sz, sizeof sz, "%zu MiB", n >> 20);
        else
            snprintf(sz, sizeof sz, "%zu KiB", n >> 10);
        printf("| %s | %d | %.0f | %.0f | %.3f |\n", sz, reps, (double)n * reps / tput / 1e6,
               (double)n * reps / tget / 1e6, (tput + tget) / reps * 1e3);
        fflush(stdout);
    }
    psi_store_close(s);
    free(buf);
    return 0;
}
