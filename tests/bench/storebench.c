/* storebench: put and resolve throughput of a store, through the same
 * calls the preload library makes (psi_store_put, psi_store_resolve,
 * psi_obj_release), for payloads of 1 KiB to 256 MiB.
 *
 *   storebench [-v BYTES] [URL...]     (no URL: the embedded file store)
 *
 * Each size runs enough reps to move about BYTES (default 1 GiB, or
 * PSI_BENCH_VOLUME) and at least 3. Every rep is one put, then one resolve
 * of that token (get, checksum, release of the reference) and the release
 * of the mapping; the table shows size / median time of each, in GB/s
 * (10^9 bytes per second). Prints one markdown table per URL; exit 1 if a
 * store cannot be opened or an operation fails. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "psi_store.h"

static const size_t sizes[] = {
    1u << 10, 16u << 10, 256u << 10, 1u << 20, 4u << 20, 16u << 20, 64u << 20, 256u << 20,
};
#define NSIZES (sizeof sizes / sizeof sizes[0])

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void size_name(size_t v, char *buf, size_t cap)
{
    if (v >= (1u << 20))
        snprintf(buf, cap, "%zu MiB", v >> 20);
    else
        snprintf(buf, cap, "%zu KiB", v >> 10);
}

/* One size: fills the three medians (seconds). Returns 0 or -1. */
static int bench_size(psi_store *s, const uint8_t *buf, size_t len, size_t reps,
                      double med[3])
{
    double *t[3];
    psi_err err = {0};
    int rc = 0;

    for (int k = 0; k < 3; k++)
        if (!(t[k] = malloc(reps * sizeof(double)))) {
            fprintf(stderr, "storebench: out of memory\n");
            for (int j = 0; j < k; j++)
                free(t[j]);
            return -1;
        }
    for (size_t i = 0; i < reps && rc == 0; i++) {
        psi_token tok;
        psi_obj obj;
        double t0 = now();
        if (psi_store_put(s, buf, len, NULL, &tok, &err) < 0) {
            fprintf(stderr, "storebench: %s: put %zu bytes: %s\n", s->url, len, err.msg);
            rc = -1;
            break;
        }
        double t1 = now();
        if (psi_store_resolve(s, &tok, &obj, &err) < 0) {
            fprintf(stderr, "storebench: %s: resolve %zu bytes: %s\n", s->url, len, err.msg);
            rc = -1;
            break;
        }
        psi_obj_release(&obj);
        double t2 = now();
        t[0][i] = t1 - t0;
        t[1][i] = t2 - t1;
        t[2][i] = t2 - t0;
    }
    for (int k = 0; k < 3; k++) {
        if (rc == 0)
            med[k] = median(t[k], reps);
        free(t[k]);
    }
    return rc;
}

static int bench_url(const char *url, uint64_t volume)
{
    psi_store *s;
    psi_err err = {0};
    uint8_t *buf = malloc(sizes[NSIZES - 1]);
    int rc = 0;

    if (!buf) {
        fprintf(stderr, "storebench: out of memory\n");
        return -1;
    }
    /* Bytes no two sizes share, so no put deduplicates against another. */
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < sizes[NSIZES - 1]; i += 8) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        memcpy(buf + i, &x, 8);
    }
    if (psi_store_open(url, &s, &err) < 0) {
        fprintf(stderr, "storebench: %s: %s\n", url ? url : "(default)", err.msg);
        free(buf);
        return -1;
    }
    printf("\n### %s\n\n", s->url);
    printf("| size | reps | put GB/s | get GB/s | put+get GB/s |\n");
    printf("|---:|---:|---:|---:|---:|\n");
    fflush(stdout);
    for (size_t i = 0; i < NSIZES && rc == 0; i++) {
        size_t len = sizes[i], reps = (size_t)(volume / len);
        double med[3];
        char name[32];
        if (reps < 3)
            reps = 3;
        buf[0] = (uint8_t)i; /* a different first byte per size: no dedup */
        if ((rc = bench_size(s, buf, len, reps, med)) < 0)
            break;
        size_name(len, name, sizeof name);
        printf("| %s | %zu | %.2f | %.2f | %.2f |\n", name, reps, (double)len / med[0] / 1e9,
               (double)len / med[1] / 1e9, (double)len / med[2] / 1e9);
        fflush(stdout);
    }
    psi_store_close(s);
    free(buf);
    return rc;
}

int main(int argc, char **argv)
{
    const char *v = getenv("PSI_BENCH_VOLUME");
    uint64_t volume = 1ull << 30;
    int opt, rc = 0;

    while ((opt = getopt(argc, argv, "v:h")) != -1) {
        if (opt == 'v') {
            v = optarg;
        } else {
            fprintf(stderr, "usage: storebench [-v BYTES] [URL...]\n");
            return opt == 'h' ? 0 : 2;
        }
    }
    if (v && *v) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(v, &end, 10);
        if (errno || *end || n == 0) {
            fprintf(stderr, "storebench: volume '%s' is not a positive byte count\n", v);
            return 2;
        }
        volume = n;
    }
    printf("Store throughput: median of each op over >= 3 reps moving ~%" PRIu64
           " MiB per size; GB/s = 10^9 B/s; get = resolve (get + xxh3 check + release of "
           "the reference) + psi_obj_release.\n", volume >> 20);
    if (optind == argc)
        return bench_url(NULL, volume) < 0;
    for (int i = optind; i < argc; i++)
        if (bench_url(argv[i], volume) < 0)
            rc = 1;
    return rc;
}
