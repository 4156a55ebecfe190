/* redisbench: put and resolve throughput of the Redis connector, for
 * tests/bench/redis.sh (compared there with redis-benchmark's SET/GET).
 *
 *   redisbench URL SIZE COUNT
 *
 * Puts COUNT distinct payloads of SIZE bytes (each differs in its first 8
 * bytes, so every put uploads: no dedup), then resolves every token (GET,
 * length and xxh3-128 check, release). Prints one line:
 *   put_ops_per_s get_ops_per_s
 * Linked with build/libpsicore.a; no preload involved. */
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
    psi_store *s;
    psi_err err = {0};

    if (argc != 4) {
        fprintf(stderr, "usage: redisbench URL SIZE COUNT\n");
        return 2;
    }
    size_t size = strtoull(argv[2], NULL, 10);
    int count = atoi(argv[3]);
    if (size < 8 || count < 1) {
        fprintf(stderr, "redisbench: SIZE >= 8 and COUNT >= 1\n");
        return 2;
    }
    if (psi_store_open(argv[1], &s, &err) < 0) {
        fprintf(stderr, "redisbench: %s\n", err.msg);
        return 1;
    }
    unsigned char *buf = malloc(size);
    psi_token *tok = calloc((size_t)count, sizeof *tok);
    if (!buf || !tok)
        return 1;
    for (size_t i = 0; i < size; i++)
        buf[i] = (unsigned char)(i * 131 + 7);

    psi_put_opts o = {.lifetime = PSI_LIFE_REFCOUNT, .ttl = 600};
    double t0 = now();
    for (int i = 0; i < count; i++) {
        uint64_t v = (uint64_t)i ^ ((uint64_t)time(NULL) << 32);
        memcpy(buf, &v, sizeof v);
        if (psi_store_put(s, buf, size, &o, &tok[i], &err) < 0) {
            fprintf(stderr, "redisbench: put %d: %s\n", i, err.msg);
            return 1;
        }
    }
    double t1 = now();
    for (int i = 0; i < count; i++) {
        psi_obj obj;
        if (psi_store_resolve(s, &tok[i], &obj, &err) < 0) {
            fprintf(stderr, "redisbench: resolve %d: %s\n", i, err.msg);
            return 1;
        }
        psi_obj_release(&obj);
    }
    double t2 = now();
    printf("%.1f %.1f\n", count / (t1 - t0), count / (t2 - t1));
    psi_store_close(s);
    free(buf);
    free(tok);
    return 0;
}
