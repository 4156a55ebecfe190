/* zmq_tput: PUSH/PULL throughput for tests/bench/zmq.sh. A plain libzmq
 * program; the bench runs it with and without the preload library.
 *
 *   zmq_tput pull EP SIZE COUNT READYFILE   binds, receives a start frame
 *                                           and COUNT frames, prints seconds
 *   zmq_tput push EP SIZE COUNT             connects, sends them
 *
 * Each frame differs in its first 8 bytes (so a content-addressed store
 * stores every one); the receiver checks every frame's size and counter. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc < 5)
        return 2;
    size_t size = strtoull(argv[3], NULL, 10);
    long count = strtol(argv[4], NULL, 10);
    void *ctx = zmq_ctx_new();
    if (strcmp(argv[1], "pull") == 0) {
        void *s = zmq_socket(ctx, ZMQ_PULL);
        if (zmq_bind(s, argv[2]) != 0)
            return 2;
        fclose(fopen(argv[5], "w"));
        zmq_msg_t m;
        zmq_msg_init(&m);
        zmq_msg_recv(&m, s, 0); /* start */
        double t0 = now();
        for (long i = 0; i < count; i++) {
            if (zmq_msg_recv(&m, s, 0) < 0 || zmq_msg_size(&m) != size)
                return 3;
            uint64_t c;
            memcpy(&c, zmq_msg_data(&m), sizeof(c));
            if (c != (uint64_t)i)
                return 3;
        }
        printf("%.6f\n", now() - t0);
        zmq_msg_close(&m);
        zmq_close(s);
    } else {
        void *s = zmq_socket(ctx, ZMQ_PUSH);
        if (zmq_connect(s, argv[2]) != 0)
            return 2;
        uint8_t *buf = malloc(size);
        for (size_t i = 0; i < size; i++)
            buf[i] = (uint8_t)(i * 131 + 7);
        zmq_send(s, "go", 2, 0);
        for (long i = 0; i < count; i++) {
            uint64_t c = (uint64_t)i;
            memcpy(buf, &c, sizeof(c));
            if (zmq_send(s, buf, size, 0) < 0)
                return 2;
        }
        zmq_close(s);
        free(buf);
    }
    zmq_ctx_term(ctx);
    return 0;
}
