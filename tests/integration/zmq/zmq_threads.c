/* zmq_threads: several threads open, use and close ZeroMQ sockets at once
 * (t_zmq_faults.sh), in one process: the interposer's socket table is read
 * without a lock and must keep each thread's socket apart.
 *
 *   zmq_threads EP THREADS MESSAGES SIZE
 *
 * A PULL bound at EP; each thread repeatedly opens a PUSH, connects it to
 * EP, sends one two-frame message ([tid, seq], SIZE bytes derived from
 * them) and closes it. The main thread receives every message and checks
 * every byte. Prints "ok N"; exit 3 on any mismatch. Plain libzmq. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

static void *ctx;
static const char *ep;
static int nmsg;
static size_t size;

static void fill(uint8_t *p, size_t n, uint32_t tid, uint32_t seq)
{
    uint64_t x = ((uint64_t)tid << 32 | seq) * 0x9e3779b97f4a7c15ull + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (uint8_t)x;
    }
}

static void *sender(void *arg)
{
    uint32_t tid = (uint32_t)(uintptr_t)arg;
    uint8_t *buf = malloc(size);
    for (int i = 0; i < nmsg; i++) {
        void *s = zmq_socket(ctx, ZMQ_PUSH);
        if (!s || zmq_connect(s, ep) != 0)
            exit(2);
        uint32_t hdr[2] = {tid, (uint32_t)i};
        fill(buf, size, tid, (uint32_t)i);
        if (zmq_send(s, hdr, sizeof(hdr), ZMQ_SNDMORE) < 0 || zmq_send(s, buf, size, 0) < 0)
            exit(2);
        zmq_close(s); /* linger: the message still goes */
    }
    free(buf);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 5)
        return 2;
    ep = argv[1];
    int nthreads = atoi(argv[2]);
    nmsg = atoi(argv[3]);
    size = strtoull(argv[4], NULL, 10);
    ctx = zmq_ctx_new();
    void *pull = zmq_socket(ctx, ZMQ_PULL);
    if (zmq_bind(pull, ep) != 0)
        return 2;
    pthread_t th[64];
    for (int t = 0; t < nthreads; t++)
        pthread_create(&th[t], NULL, sender, (void *)(uintptr_t)t);
    uint8_t *want = malloc(size), *got = malloc(size);
    for (int k = 0; k < nthreads * nmsg; k++) {
        uint32_t hdr[2];
        int more = 0;
        size_t l = sizeof(more);
        if (zmq_recv(pull, hdr, sizeof(hdr), 0) != (int)sizeof(hdr))
            return 3;
        zmq_getsockopt(pull, ZMQ_RCVMORE, &more, &l);
        if (!more || zmq_recv(pull, got, size, 0) != (int)size)
            return 3;
        fill(want, size, hdr[0], hdr[1]);
        if (memcmp(want, got, size) != 0) {
            fprintf(stderr, "thread %u message %u differs\n", hdr[0], hdr[1]);
            return 3;
        }
    }
    for (int t = 0; t < nthreads; t++)
        pthread_join(th[t], NULL);
    printf("ok %d\n", nthreads * nmsg);
    zmq_close(pull);
    zmq_ctx_term(ctx);
    return 0;
}
