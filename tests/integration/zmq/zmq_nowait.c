/* zmq_nowait: non-blocking sends until libzmq refuses (t_zmq_faults.sh).
 *
 *   zmq_nowait EP SIZE
 *
 * A PULL bound at EP and a PUSH connected to it in this process, both with
 * a high-water mark of 8 and small kernel buffers; the PULL does not read.
 * The PUSH sends SIZE-byte frames with ZMQ_DONTWAIT until EAGAIN, then the
 * PULL drains. Prints "sent N" and "received N"; exit 3 if a frame differs
 * or the counts disagree. Plain libzmq: the test counts the interposer's
 * stored frames from its log (none may be stored for the refused send). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

int main(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    size_t size = strtoull(argv[2], NULL, 10);
    void *ctx = zmq_ctx_new();
    void *pull = zmq_socket(ctx, ZMQ_PULL), *push = zmq_socket(ctx, ZMQ_PUSH);
    int hwm = 8, small = 4096;
    zmq_setsockopt(pull, ZMQ_RCVHWM, &hwm, sizeof(hwm));
    zmq_setsockopt(pull, ZMQ_RCVBUF, &small, sizeof(small));
    zmq_setsockopt(push, ZMQ_SNDHWM, &hwm, sizeof(hwm));
    zmq_setsockopt(push, ZMQ_SNDBUF, &small, sizeof(small));
    if (zmq_bind(pull, argv[1]) != 0 || zmq_connect(push, argv[1]) != 0)
        return 2;
    unsigned char *buf = malloc(size), *got = malloc(size);
    /* Wait for the connection: the first send blocks until it is up. */
    memset(buf, 0, size);
    if (zmq_send(push, buf, size, 0) < 0)
        return 2;
    long sent = 1, received = 0;
    for (;;) {
        memcpy(buf, &sent, sizeof(sent));
        int rc = zmq_send(push, buf, size, ZMQ_DONTWAIT);
        if (rc < 0) {
            if (zmq_errno() != EAGAIN)
                return 2;
            break;
        }
        sent++;
        if (sent > 1000000)
            return 3;
    }
    printf("sent %ld\n", sent);
    for (long i = 0; i < sent; i++) {
        int rc = zmq_recv(pull, got, size, 0);
        long c = 0;
        memcpy(&c, got, sizeof(c));
        if (rc != (int)size || c != i)
            return 3;
        received++;
    }
    printf("received %ld\n", received);
    int rc = zmq_recv(pull, got, size, ZMQ_DONTWAIT);
    if (rc >= 0 || zmq_errno() != EAGAIN)
        return 3; /* nothing more: the refused frame never went */
    zmq_close(push);
    zmq_close(pull);
    zmq_ctx_term(ctx);
    free(buf);
    free(got);
    return 0;
}
