/* pingpong: a plain TCP benchmark program for tests/bench/run.sh.
 *
 *   pingpong server PORT
 *   pingpong client PORT ping   ROUNDS MSGSIZE   (e.g. 20000 64)
 *   pingpong client PORT stream COUNT  MSGSIZE   (e.g. 8 67108864)
 *
 * ping: the client writes MSGSIZE bytes, the server reads them and writes
 * them back, ROUNDS times. stream: the client writes COUNT messages of
 * MSGSIZE bytes (one write call each, continued on a short write), then
 * half-closes; the server reads to EOF and answers one byte. The client
 * prints "seconds=S bytes=B" (wall time of the exchange) on stdout.
 * The server learns the mode from a one-byte preamble. It knows nothing
 * about psinterpose; run.sh runs it with and without LD_PRELOAD. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            die("write");
        p += w;
        n -= (size_t)w;
    }
}

/* Reads exactly n bytes; returns 0, or 1 at EOF before the first byte. */
static int read_all(int fd, char *p, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, p + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            die("read");
        if (r == 0) {
            if (got == 0)
                return 1;
            fprintf(stderr, "pingpong: EOF after %zu of %zu bytes\n", got, n);
            exit(1);
        }
        got += (size_t)r;
    }
    return 0;
}

static void nodelay(int fd)
{
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
        die("setsockopt");
}

static int server(int port)
{
    int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (ls < 0 || setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
        die("socket");
    if (bind(ls, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(ls, 1) < 0)
        die("bind/listen");
    int c = accept(ls, NULL, NULL);
    if (c < 0)
        die("accept");
    close(ls);
    nodelay(c);
    char mode;
    uint32_t msg;
    if (read_all(c, &mode, 1) || read_all(c, (char *)&msg, sizeof msg))
        die("preamble");
    if (mode == 'p') {
        char *buf = malloc(msg);
        while (!read_all(c, buf, msg))
            write_all(c, buf, msg);
        free(buf);
    } else {
        size_t cap = 16u << 20;
        char *buf = malloc(cap);
        for (;;) {
            ssize_t r = read(c, buf, cap);
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0)
                die("read");
            if (r == 0)
                break;
        }
        write_all(c, "k", 1);
        free(buf);
    }
    close(c);
    return 0;
}

static int client(int port, const char *mode, long count, long msg)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        die("connect");
    nodelay(fd);
    char pre[5] = {mode[0] == 'p' ? 'p' : 's'};
    uint32_t m = (uint32_t)msg;
    memcpy(pre + 1, &m, sizeof m);
    write_all(fd, pre, sizeof pre);

    char *buf = malloc((size_t)msg), *back = malloc((size_t)msg);
    if (!buf || !back)
        die("malloc");
    for (long i = 0; i < msg; i++)
        buf[i] = (char)(rand() & 0xff);
    double t0 = now();
    if (pre[0] == 'p') {
        for (long i = 0; i < count; i++) {
            write_all(fd, buf, (size_t)msg);
            if (read_all(fd, back, (size_t)msg))
                die("early EOF");
        }
    } else {
        for (long i = 0; i < count; i++) {
            memcpy(buf, &i, sizeof i); /* every message different */
            write_all(fd, buf, (size_t)msg);
        }
        shutdown(fd, SHUT_WR);
        if (read_all(fd, back, 1))
            die("no answer");
    }
    double t = now() - t0;
    printf("seconds=%.6f bytes=%ld\n", t, count * msg);
    close(fd);
    free(buf);
    free(back);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "server") == 0)
        return server(atoi(argv[2]));
    if (argc == 6 && strcmp(argv[1], "client") == 0)
        return client(atoi(argv[2]), argv[3], atol(argv[4]), atol(argv[5]));
    fprintf(stderr, "usage: pingpong server PORT | pingpong client PORT ping|stream COUNT MSGSIZE\n");
    return 2;
}
