/* Every wrapped MPI call, checked byte for byte (tests/integration/t_mpi*.sh).
 *
 *   mpi_calls p2p SIZE...   2 ranks: each point-to-point call, each size
 *   mpi_calls probe SIZE    n ranks: ranks 1.. send, rank 0 probes ANY_SOURCE,
 *                           mallocs the probed size and receives
 *   mpi_calls fanout SIZE DIR  rank 0 sends one buffer to every rank; lists
 *                           the store DIR before anyone receives; then Bcast
 *   mpi_calls threads SIZE  2 ranks, 4 threads each exchanging 8 messages
 *                           on their own tag (MPI_THREAD_MULTIPLE)
 *   mpi_calls lost SIZE DIR 2 ranks: the store DIR is emptied between the
 *                           send and the receive; prints the error class
 *
 * Every payload is a pattern of (case, size); receivers check it and print
 * "RECV case size xxh3" lines, senders "SEND case size xxh3"; the test
 * compares the two sets. Exit status 1 on any mismatch. */
#include <dirent.h>
#include <mpi.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

static int rank, nranks, failures;

#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "rank %d: FAIL %s:%d: ", rank, __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                                  \
            fprintf(stderr, "\n");                                         \
            failures++;                                                    \
        }                                                                  \
    } while (0)

static void fill(uint8_t *p, size_t n, int seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(i * 131u + (unsigned)seed * 7u + (i >> 11));
}

static int same(const uint8_t *p, size_t n, int seed)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != (uint8_t)(i * 131u + (unsigned)seed * 7u + (i >> 11)))
            return 0;
    return 1;
}

static void report(const char *dir, const char *name, size_t n, const void *p)
{
    printf("%s %s %zu %016llx\n", dir, name, n, (unsigned long long)XXH3_64bits(p, n));
}

/* Receiver-side checks shared by every case. */
static void got(const char *name, int seed, const uint8_t *buf, size_t n, MPI_Status *st,
                int source, int tag)
{
    int count = -1;
    if (st) {
        MPI_Get_count(st, MPI_BYTE, &count);
        CHECK(count == (int)n, "%s %zu: status count %d", name, n, count);
        CHECK(st->MPI_SOURCE == source, "%s %zu: source %d", name, n, st->MPI_SOURCE);
        CHECK(st->MPI_TAG == tag, "%s %zu: tag %d", name, n, st->MPI_TAG);
    }
    CHECK(same(buf, n, seed), "%s %zu: bytes differ", name, n);
    report("RECV", name, n, buf);
}

static void sent(const char *name, const uint8_t *buf, size_t n)
{
    report("SEND", name, n, buf);
}

/* ---- p2p: rank 0 sends, rank 1 receives (and both ways for Sendrecv) ---- */

static void p2p(size_t n)
{
    uint8_t *s = malloc(n + 1), *r = malloc(n + 1);
    MPI_Status st;
    MPI_Request rq, rqs[3];
    int flag, idx, outc, inds[3];
    MPI_Comm c = MPI_COMM_WORLD;
    int peer = 1 - rank;

#define CASE(k) fill(s, n, k); memset(r, 0, n)
    /* 1 Send/Recv */
    CASE(1);
    if (rank == 0) { MPI_Send(s, (int)n, MPI_BYTE, 1, 11, c); sent("send", s, n); }
    else { MPI_Recv(r, (int)n, MPI_BYTE, 0, 11, c, &st); got("send", 1, r, n, &st, 0, 11); }
    /* 2 Ssend, received with MPI_STATUS_IGNORE */
    CASE(2);
    if (rank == 0) { MPI_Ssend(s, (int)n, MPI_BYTE, 1, 12, c); sent("ssend", s, n); }
    else { MPI_Recv(r, (int)n, MPI_BYTE, 0, 12, c, MPI_STATUS_IGNORE); got("ssend", 2, r, n, NULL, 0, 12); }
    /* 3 Bsend */
    CASE(3);
    if (rank == 0) {
        int bsz = (int)n + MPI_BSEND_OVERHEAD + 1024;
        void *b = malloc((size_t)bsz);
        MPI_Buffer_attach(b, bsz);
        MPI_Bsend(s, (int)n, MPI_BYTE, 1, 13, c);
        sent("bsend", s, n);
        MPI_Buffer_detach(&b, &bsz);
        free(b);
    } else { MPI_Recv(r, (int)n, MPI_BYTE, 0, 13, c, &st); got("bsend", 3, r, n, &st, 0, 13); }
    /* 4 Rsend: the receive is posted (Irecv) before the sender is told */
    CASE(4);
    if (rank == 1) MPI_Irecv(r, (int)n, MPI_BYTE, 0, 14, c, &rq);
    MPI_Barrier(c);
    if (rank == 0) { MPI_Rsend(s, (int)n, MPI_BYTE, 1, 14, c); sent("rsend", s, n); }
    else { MPI_Wait(&rq, &st); got("rsend", 4, r, n, &st, 0, 14); }
    /* 5 Isend/Irecv, Irecv posted before the send, ANY_SOURCE/ANY_TAG */
    CASE(5);
    if (rank == 1) MPI_Irecv(r, (int)n, MPI_BYTE, MPI_ANY_SOURCE, MPI_ANY_TAG, c, &rq);
    MPI_Barrier(c);
    if (rank == 0) { MPI_Isend(s, (int)n, MPI_BYTE, 1, 15, c, &rq); MPI_Wait(&rq, MPI_STATUS_IGNORE); sent("isend", s, n); }
    else { MPI_Wait(&rq, &st); got("isend", 5, r, n, &st, 0, 15); }
    /* 6 Issend, completed with a Test loop; Recv on the other side */
    CASE(6);
    if (rank == 0) {
        MPI_Issend(s, (int)n, MPI_BYTE, 1, 16, c, &rq);
        do MPI_Test(&rq, &flag, MPI_STATUS_IGNORE); while (!flag);
        sent("issend", s, n);
    } else {
        MPI_Irecv(r, (int)n, MPI_BYTE, 0, 16, c, &rq);
        do MPI_Test(&rq, &flag, &st); while (!flag);
        got("issend", 6, r, n, &st, 0, 16);
    }
    /* 7 Sendrecv: both ways at once */
    fill(s, n, 70 + rank); memset(r, 0, n);
    MPI_Sendrecv(s, (int)n, MPI_BYTE, peer, 17, r, (int)n, MPI_BYTE, peer, 17, c, &st);
    got(rank ? "sendrecv0" : "sendrecv1", 70 + peer, r, n, &st, peer, 17);
    sent(rank ? "sendrecv1" : "sendrecv0", s, n);
    /* 8 Sendrecv_replace */
    fill(s, n, 80 + rank);
    memcpy(r, s, n);
    MPI_Sendrecv_replace(r, (int)n, MPI_BYTE, peer, 18, peer, 18, c, &st);
    got(rank ? "replace0" : "replace1", 80 + peer, r, n, &st, peer, 18);
    sent(rank ? "replace1" : "replace0", s, n);
    /* 9 Probe ANY_SOURCE, Get_count, malloc, Recv */
    CASE(9);
    if (rank == 0) { MPI_Send(s, (int)n, MPI_BYTE, 1, 19, c); sent("probe", s, n); }
    else {
        int cnt;
        MPI_Probe(MPI_ANY_SOURCE, MPI_ANY_TAG, c, &st);
        MPI_Get_count(&st, MPI_BYTE, &cnt);
        CHECK(cnt == (int)n, "probe: count %d, want %zu", cnt, n);
        uint8_t *m = malloc((size_t)cnt);
        MPI_Recv(m, cnt, MPI_BYTE, st.MPI_SOURCE, st.MPI_TAG, c, &st);
        got("probe", 9, m, n, &st, 0, 19);
        free(m);
    }
    /* 10 Iprobe loop (probed twice), then Recv */
    CASE(10);
    if (rank == 0) { MPI_Send(s, (int)n, MPI_BYTE, 1, 20, c); sent("iprobe", s, n); }
    else {
        int cnt;
        do MPI_Iprobe(0, 20, c, &flag, &st); while (!flag);
        MPI_Iprobe(0, MPI_ANY_TAG, c, &flag, &st);
        MPI_Get_count(&st, MPI_BYTE, &cnt);
        CHECK(flag && cnt == (int)n, "iprobe: count %d", cnt);
        MPI_Recv(r, (int)n, MPI_BYTE, 0, 20, c, &st);
        got("iprobe", 10, r, n, &st, 0, 20);
    }
    /* 11 Mprobe/Mrecv */
    CASE(11);
    if (rank == 0) { MPI_Send(s, (int)n, MPI_BYTE, 1, 21, c); sent("mprobe", s, n); }
    else {
        MPI_Message msg;
        int cnt;
        MPI_Mprobe(MPI_ANY_SOURCE, 21, c, &msg, &st);
        MPI_Get_count(&st, MPI_BYTE, &cnt);
        CHECK(cnt == (int)n, "mprobe: count %d", cnt);
        MPI_Mrecv(r, cnt, MPI_BYTE, &msg, &st);
        got("mprobe", 11, r, n, &st, 0, 21);
    }
    /* 12 Improbe/Imrecv/Wait */
    CASE(12);
    if (rank == 0) { MPI_Send(s, (int)n, MPI_BYTE, 1, 22, c); sent("improbe", s, n); }
    else {
        MPI_Message msg;
        do MPI_Improbe(0, 22, c, &flag, &msg, &st); while (!flag);
        MPI_Imrecv(r, (int)n, MPI_BYTE, &msg, &rq);
        MPI_Wait(&rq, &st);
        got("improbe", 12, r, n, &st, 0, 22);
    }
    /* 13 three Irecvs completed by Waitall, Waitany, Waitsome, Testall, Testany, Testsome */
    const char *multi[6] = {"waitall", "waitany", "waitsome", "testall", "testany", "testsome"};
    for (int m = 0; m < 6; m++) {
        uint8_t *rb[3];
        MPI_Status sts[3];
        if (rank == 1) {
            for (int k = 0; k < 3; k++) {
                rb[k] = calloc(1, n);
                MPI_Irecv(rb[k], (int)n, MPI_BYTE, 0, 30 + k, c, &rqs[k]);
            }
        }
        MPI_Barrier(c);
        if (rank == 0) {
            for (int k = 2; k >= 0; k--) { /* tags arrive out of posting order */
                fill(s, n, 100 + m * 3 + k);
                MPI_Send(s, (int)n, MPI_BYTE, 1, 30 + k, c);
                char nm[32];
                snprintf(nm, sizeof nm, "%s%d", multi[m], k);
                sent(nm, s, n);
            }
            continue;
        }
        int done[3] = {0, 0, 0}, left = 3;
        MPI_Status one[3];
        switch (m) {
        case 0:
            MPI_Waitall(3, rqs, sts);
            for (int k = 0; k < 3; k++) one[k] = sts[k], done[k] = 1;
            break;
        case 3:
            do MPI_Testall(3, rqs, &flag, sts); while (!flag);
            for (int k = 0; k < 3; k++) one[k] = sts[k], done[k] = 1;
            break;
        default:
            while (left > 0) {
                if (m == 1) { MPI_Waitany(3, rqs, &idx, &st); one[idx] = st; done[idx] = 1; left--; }
                else if (m == 4) {
                    MPI_Testany(3, rqs, &idx, &flag, &st);
                    if (flag && idx != MPI_UNDEFINED) { one[idx] = st; done[idx] = 1; left--; }
                } else {
                    if (m == 2) MPI_Waitsome(3, rqs, &outc, inds, sts);
                    else MPI_Testsome(3, rqs, &outc, inds, sts);
                    for (int j = 0; j < outc && outc != MPI_UNDEFINED; j++) {
                        one[inds[j]] = sts[j]; done[inds[j]] = 1; left--;
                    }
                }
            }
        }
        for (int k = 0; k < 3; k++) {
            char nm[32];
            snprintf(nm, sizeof nm, "%s%d", multi[m], k);
            CHECK(done[k], "%s: request %d not done", nm, k);
            got(nm, 100 + m * 3 + k, rb[k], n, &one[k], 0, 30 + k);
            free(rb[k]);
        }
    }
#if MPI_VERSION >= 4 /* MPI-4 calls: MPICH 4; not Open MPI 4.1 (MPI-3.1) */
    /* 14 large-count variants */
    CASE(14);
    if (rank == 0) { MPI_Send_c(s, (MPI_Count)n, MPI_BYTE, 1, 40, c); sent("send_c", s, n); }
    else { MPI_Recv_c(r, (MPI_Count)n, MPI_BYTE, 0, 40, c, &st); got("send_c", 14, r, n, &st, 0, 40); }
    CASE(15);
    if (rank == 1) MPI_Irecv_c(r, (MPI_Count)n, MPI_BYTE, 0, 41, c, &rq);
    if (rank == 0) { MPI_Isend_c(s, (MPI_Count)n, MPI_BYTE, 1, 41, c, &rq); MPI_Wait(&rq, MPI_STATUS_IGNORE); sent("isend_c", s, n); }
    else { MPI_Wait(&rq, &st); got("isend_c", 15, r, n, &st, 0, 41); }
#endif
    /* 16 vector datatype on both sides: n/8 blocks of 4 bytes, stride 8 */
    if (n >= 64) {
        int blocks = (int)(n / 8);
        size_t packed = (size_t)blocks * 4;
        MPI_Datatype vec;
        MPI_Type_vector(blocks, 4, 8, MPI_BYTE, &vec);
        MPI_Type_commit(&vec);
        uint8_t *pk = malloc(packed);
        memset(s, 0xEE, n);
        fill(pk, packed, 16);
        for (int b = 0; b < blocks; b++) memcpy(s + (size_t)b * 8, pk + (size_t)b * 4, 4);
        memset(r, 0xEE, n);
        if (rank == 0) { MPI_Send(s, 1, vec, 1, 42, c); sent("vector", pk, packed); }
        else {
            MPI_Recv(r, 1, vec, 0, 42, c, &st);
            int cnt;
            MPI_Get_count(&st, MPI_BYTE, &cnt);
            CHECK(cnt == (int)packed, "vector: count %d want %zu", cnt, packed);
            for (int b = 0; b < blocks; b++) memcpy(pk + (size_t)b * 4, r + (size_t)b * 8, 4);
            CHECK(same(pk, packed, 16), "vector: payload differs");
            int gaps = 0;
            for (int b = 0; b < blocks; b++)
                gaps += r[(size_t)b * 8 + 5] != 0xEE;
            CHECK(gaps == 0, "vector: %d gap bytes written", gaps);
            report("RECV", "vector", packed, pk);
        }
        free(pk);
        MPI_Type_free(&vec);
    }
    /* 19 Ibsend and Irsend (the receive posted first) */
    CASE(19);
    if (rank == 1) MPI_Irecv(r, (int)n, MPI_BYTE, 0, 44, c, &rq);
    MPI_Barrier(c);
    if (rank == 0) {
        int bsz = (int)n + MPI_BSEND_OVERHEAD + 1024;
        void *b = malloc((size_t)bsz);
        MPI_Buffer_attach(b, bsz);
        MPI_Ibsend(s, (int)n, MPI_BYTE, 1, 44, c, &rq);
        MPI_Wait(&rq, MPI_STATUS_IGNORE);
        MPI_Buffer_detach(&b, &bsz);
        free(b);
        sent("ibsend", s, n);
    } else { MPI_Wait(&rq, &st); got("ibsend", 19, r, n, &st, 0, 44); }
    CASE(20);
    if (rank == 1) MPI_Irecv(r, (int)n, MPI_BYTE, 0, 45, c, &rq);
    MPI_Barrier(c);
    if (rank == 0) { MPI_Irsend(s, (int)n, MPI_BYTE, 1, 45, c, &rq); MPI_Wait(&rq, MPI_STATUS_IGNORE); sent("irsend", s, n); }
    else { MPI_Wait(&rq, &st); got("irsend", 20, r, n, &st, 0, 45); }
#if MPI_VERSION >= 4
    /* 21 Isendrecv and Isendrecv_replace, both ways */
    fill(s, n, 210 + rank); memset(r, 0, n);
    MPI_Isendrecv(s, (int)n, MPI_BYTE, peer, 46, r, (int)n, MPI_BYTE, peer, 46, c, &rq);
    /* MPICH 4.0.2 leaves MPI_Isendrecv's status stale: not checked. */
    MPI_Wait(&rq, &st);
    got(rank ? "isendrecv0" : "isendrecv1", 210 + peer, r, n, NULL, peer, 46);
    sent(rank ? "isendrecv1" : "isendrecv0", s, n);
    fill(s, n, 220 + rank); memcpy(r, s, n);
    MPI_Isendrecv_replace(r, (int)n, MPI_BYTE, peer, 47, peer, 47, c, &rq);
    MPI_Wait(&rq, &st);
    got(rank ? "ireplace0" : "ireplace1", 220 + peer, r, n, NULL, peer, 47);
    sent(rank ? "ireplace1" : "ireplace0", s, n);
#endif
    /* 22 a persistent receive, started twice */
    if (rank == 1) {
        MPI_Request pr;
        MPI_Recv_init(r, (int)n, MPI_BYTE, 0, 48, c, &pr);
        for (int k = 0; k < 2; k++) {
            memset(r, 0, n);
            MPI_Start(&pr);
            MPI_Wait(&pr, &st);
            got(k ? "persist1" : "persist0", 230 + k, r, n, &st, 0, 48);
        }
        MPI_Request_free(&pr);
    } else {
        for (int k = 0; k < 2; k++) {
            fill(s, n, 230 + k);
            MPI_Send(s, (int)n, MPI_BYTE, 1, 48, c);
            sent(k ? "persist1" : "persist0", s, n);
        }
    }
    /* 23 probe first, then each other kind of receive takes the probed
     * message (a token is held by the interposer after the probe) */
    const char *after[4] = {"probe-irecv", "probe-sendrecv", "probe-mprobe", "probe-isendrecv"};
    for (int k = 0; k < (MPI_VERSION >= 4 ? 4 : 3); k++) {
        fill(s, n, 240 + k); memset(r, 0, n);
        if (rank == 0) {
            MPI_Send(s, (int)n, MPI_BYTE, 1, 50 + k, c);
            sent(after[k], s, n);
            if (k == 1 || k == 3) MPI_Recv(NULL, 0, MPI_BYTE, 1, 60 + k, c, MPI_STATUS_IGNORE);
            continue;
        }
        MPI_Probe(0, 50 + k, c, &st);
        MPI_Message msg;
        switch (k) {
        case 0: MPI_Irecv(r, (int)n, MPI_BYTE, 0, 50, c, &rq); MPI_Wait(&rq, &st); break;
        case 1: MPI_Sendrecv(NULL, 0, MPI_BYTE, 0, 61, r, (int)n, MPI_BYTE, 0, 51, c, &st); break;
        case 2: MPI_Mprobe(0, 52, c, &msg, &st); MPI_Mrecv(r, (int)n, MPI_BYTE, &msg, &st); break;
        default:
#if MPI_VERSION >= 4
            MPI_Isendrecv(NULL, 0, MPI_BYTE, 0, 63, r, (int)n, MPI_BYTE, 0, 53, c, &rq);
            MPI_Wait(&rq, &st);
#endif
            break;
        }
        got(after[k], 240 + k, r, n, k == 3 ? NULL : &st, 0, 50 + k);
    }
#if MPI_VERSION >= 4
    /* 24 more large-count forms: Ssend_c, Sendrecv_c, Bcast_c (from rank 0) */
    CASE(24);
    if (rank == 0) { MPI_Ssend_c(s, (MPI_Count)n, MPI_BYTE, 1, 70, c); sent("ssend_c", s, n); }
    else { MPI_Recv(r, (int)n, MPI_BYTE, 0, 70, c, &st); got("ssend_c", 24, r, n, &st, 0, 70); }
    fill(s, n, 250 + rank); memset(r, 0, n);
    MPI_Sendrecv_c(s, (MPI_Count)n, MPI_BYTE, peer, 71, r, (MPI_Count)n, MPI_BYTE, peer, 71, c, &st);
    got(rank ? "sendrecv_c0" : "sendrecv_c1", 250 + peer, r, n, &st, peer, 71);
    sent(rank ? "sendrecv_c1" : "sendrecv_c0", s, n);
    fill(s, n, 26);
    if (rank == 0) { memcpy(r, s, n); sent("bcast_c", s, n); } else memset(r, 0, n);
    MPI_Bcast_c(r, (MPI_Count)n, MPI_BYTE, 0, c);
    if (rank == 1) got("bcast_c", 26, r, n, NULL, 0, 0);
#endif
    /* 25 sent as bytes, received as MPI_INT (and a contiguous derived type) */
    if (n % 4 == 0) {
        MPI_Datatype quad;
        MPI_Type_contiguous(4, MPI_BYTE, &quad);
        MPI_Type_commit(&quad);
        CASE(25);
        if (rank == 0) { MPI_Send(s, (int)n, MPI_BYTE, 1, 72, c); sent("as-int", s, n); }
        else {
            int cnt;
            MPI_Recv(r, (int)(n / 4), MPI_INT, 0, 72, c, &st);
            MPI_Get_count(&st, MPI_INT, &cnt);
            CHECK(cnt == (int)(n / 4), "as-int: %d ints", cnt);
            got("as-int", 25, r, n, &st, 0, 72);
        }
        CASE(27);
        if (rank == 0) { MPI_Send(s, (int)(n / 4), quad, 1, 73, c); sent("contig-type", s, n); }
        else { MPI_Recv(r, (int)(n / 4), quad, 0, 73, c, &st); got("contig-type", 27, r, n, &st, 0, 73); }
        MPI_Type_free(&quad);
    }
    /* 17 truncation: a buffer one byte short gives MPI_ERR_TRUNCATE */
    CASE(17);
    MPI_Comm tc;
    MPI_Comm_dup(c, &tc);
    MPI_Comm_set_errhandler(tc, MPI_ERRORS_RETURN);
    if (rank == 0) MPI_Send(s, (int)n, MPI_BYTE, 1, 43, tc);
    else {
        int rc = MPI_Recv(r, (int)n - 1, MPI_BYTE, 0, 43, tc, &st), cls = -1;
        MPI_Error_class(rc, &cls);
        CHECK(cls == MPI_ERR_TRUNCATE, "truncate %zu: error class %d, want %d", n, cls, MPI_ERR_TRUNCATE);
        printf("TRUNC %zu %d\n", n, cls == MPI_ERR_TRUNCATE);
    }
    MPI_Comm_free(&tc);
    /* 18 Bcast from rank 1 */
    fill(s, n, 18);
    if (rank == 1) { memcpy(r, s, n); sent("bcast", s, n); } else memset(r, 0, n);
    MPI_Bcast(r, (int)n, MPI_BYTE, 1, c);
    if (rank == 0) got("bcast", 18, r, n, NULL, 0, 0);
    MPI_Barrier(c);
    free(s);
    free(r);
}

/* ---- threads: 4 threads per rank, each its own tag, Isend/Irecv + Wait,
 * Probe + Recv, Sendrecv at once (MPI_THREAD_MULTIPLE) ---------------- */

typedef struct thr_arg {
    size_t n;
    int k;
} thr_arg;

static void *thr_main(void *p)
{
    thr_arg *a = p;
    size_t n = a->n;
    int k = a->k, peer = 1 - rank;
    uint8_t *s = malloc(n), *r = malloc(n);
    char nm[32];
    for (int i = 0; i < 8; i++) {
        MPI_Request rq[2];
        MPI_Status st[2];
        int seed = 500 + k * 64 + i * 2 + rank;
        fill(s, n, seed);
        memset(r, 0, n);
        MPI_Irecv(r, (int)n, MPI_BYTE, peer, 90 + k, MPI_COMM_WORLD, &rq[0]);
        MPI_Isend(s, (int)n, MPI_BYTE, peer, 90 + k, MPI_COMM_WORLD, &rq[1]);
        MPI_Waitall(2, rq, st);
        snprintf(nm, sizeof nm, "thr%d.%d.%d", k, i, peer);
        got(nm, 500 + k * 64 + i * 2 + peer, r, n, &st[0], peer, 90 + k);
        snprintf(nm, sizeof nm, "thr%d.%d.%d", k, i, rank);
        sent(nm, s, n);
    }
    free(s);
    free(r);
    return NULL;
}

static void threads(size_t n)
{
    pthread_t t[4];
    thr_arg a[4];
    for (int k = 0; k < 4; k++) {
        a[k] = (thr_arg){n, k};
        pthread_create(&t[k], NULL, thr_main, &a[k]);
    }
    for (int k = 0; k < 4; k++)
        pthread_join(t[k], NULL);
}

/* ---- lost: the object behind a token is gone before the receive -------- */

static void lost(size_t n, const char *dir)
{
    uint8_t *b = malloc(n);
    fill(b, n, 400);
    MPI_Comm c;
    MPI_Comm_dup(MPI_COMM_WORLD, &c);
    MPI_Comm_set_errhandler(c, MPI_ERRORS_RETURN);
    if (rank == 0) {
        MPI_Send(b, (int)n, MPI_BYTE, 1, 80, c);
        MPI_Barrier(c);
    } else {
        MPI_Barrier(c); /* the token waits in MPI; empty the store under it */
        DIR *d = opendir(dir);
        struct dirent *e;
        char path[8192];
        while (d && (e = readdir(d)))
            if (e->d_name[0] != '.') {
                snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
                unlink(path);
            }
        if (d)
            closedir(d);
        int rc = MPI_Recv(b, (int)n, MPI_BYTE, 0, 80, c, MPI_STATUS_IGNORE), cls = -1;
        MPI_Error_class(rc, &cls);
        printf("LOST class=%d other=%d\n", cls, cls == MPI_ERR_OTHER);
    }
    MPI_Comm_free(&c);
    free(b);
}

/* ---- probe: every other rank sends its own size; rank 0 probes ANY_SOURCE */

static void probe_any(size_t n)
{
    if (rank != 0) {
        size_t mine = n + (size_t)rank * 4096;
        uint8_t *s = malloc(mine);
        fill(s, mine, 200 + rank);
        char nm[32];
        snprintf(nm, sizeof nm, "any%d", rank);
        MPI_Send(s, (int)mine, MPI_BYTE, 0, 50 + rank, MPI_COMM_WORLD);
        sent(nm, s, mine);
        free(s);
        return;
    }
    for (int k = 1; k < nranks; k++) {
        MPI_Status st;
        int cnt;
        MPI_Probe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &st);
        MPI_Get_count(&st, MPI_BYTE, &cnt);
        int src = st.MPI_SOURCE;
        CHECK(cnt == (int)(n + (size_t)src * 4096), "probe any from %d: count %d", src, cnt);
        uint8_t *m = malloc((size_t)cnt);
        MPI_Recv(m, cnt, MPI_BYTE, src, st.MPI_TAG, MPI_COMM_WORLD, &st);
        char nm[32];
        snprintf(nm, sizeof nm, "any%d", src);
        got(nm, 200 + src, m, (size_t)cnt, &st, src, 50 + src);
        free(m);
    }
}

/* ---- fanout: one buffer to every rank, stored once; then Bcast ---------- */

static void count_store(const char *dir, int *objects, int *refs)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    *objects = *refs = 0;
    if (!d)
        return;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l == 32)
            (*objects)++;
        else if (l > 32 && e->d_name[32] == '.')
            (*refs)++;
    }
    closedir(d);
}

static void fanout(size_t n, const char *dir)
{
    uint8_t *b = malloc(n);
    int objects, refs;
    if (rank == 0) {
        fill(b, n, 300);
        for (int k = 1; k < nranks; k++)
            MPI_Send(b, (int)n, MPI_BYTE, k, 60, MPI_COMM_WORLD);
        sent("fanout", b, n);
        count_store(dir, &objects, &refs);
        printf("STORE objects=%d refs=%d\n", objects, refs);
        MPI_Barrier(MPI_COMM_WORLD);
    } else {
        MPI_Status st;
        MPI_Barrier(MPI_COMM_WORLD);
        memset(b, 0, n);
        MPI_Recv(b, (int)n, MPI_BYTE, 0, 60, MPI_COMM_WORLD, &st);
        got("fanout", 300, b, n, &st, 0, 60);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0) fill(b, n, 301), sent("bcast", b, n);
    else memset(b, 0, n);
    MPI_Bcast(b, (int)n, MPI_BYTE, 0, MPI_COMM_WORLD);
    if (rank != 0) got("bcast", 301, b, n, NULL, 0, 0);
    MPI_Barrier(MPI_COMM_WORLD);
    free(b);
}

int main(int argc, char **argv)
{
    int provided = 0;
    if (argc >= 2 && strcmp(argv[1], "threads") == 0) {
        MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
        if (provided != MPI_THREAD_MULTIPLE) {
            fprintf(stderr, "MPI_THREAD_MULTIPLE not provided (%d)\n", provided);
            MPI_Abort(MPI_COMM_WORLD, 4);
        }
    } else {
        MPI_Init(&argc, &argv);
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);
    /* One file per rank: ranks share mpiexec's stdout and would interleave. */
    char out[4096];
    snprintf(out, sizeof out, "out.%d", rank);
    if (!freopen(out, "w", stdout))
        MPI_Abort(MPI_COMM_WORLD, 3);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 3 && strcmp(argv[1], "p2p") == 0) {
        for (int i = 2; i < argc; i++)
            p2p(strtoull(argv[i], NULL, 0));
    } else if (argc == 3 && strcmp(argv[1], "probe") == 0) {
        probe_any(strtoull(argv[2], NULL, 0));
    } else if (argc == 3 && strcmp(argv[1], "threads") == 0) {
        threads(strtoull(argv[2], NULL, 0));
    } else if (argc == 4 && strcmp(argv[1], "lost") == 0) {
        lost(strtoull(argv[2], NULL, 0), argv[3]);
    } else if (argc == 4 && strcmp(argv[1], "fanout") == 0) {
        fanout(strtoull(argv[2], NULL, 0), argv[3]);
    } else {
        if (rank == 0)
            fprintf(stderr, "usage: mpi_calls p2p SIZE... | probe SIZE | fanout SIZE DIR\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    printf("DONE rank=%d failures=%d\n", rank, failures);
    MPI_Finalize();
    return failures ? 1 : 0;
}
