/* threads_prog: 4 writer threads and 1 reader thread on one framed TCP
 * connection, in one process (issue 4, items 4 and 6).
 *
 *   threads_prog PORT
 *
 * Listens on 127.0.0.1:PORT and connects to itself (the test lists the port
 * in PSI_PEERS, so the connection is framed). Each writer sends MSGS
 * self-describing messages with one write(2) each, every 10th above the
 * test's PSI_THRESHOLD (a token); the reader reads with varying sizes and
 * checks every message: its content, and that each writer's messages come
 * in order. The interposer serialises the writes of one connection, so a
 * message is never split by another thread's. Run under helgrind by
 * t_threads.sh. Exit 0: every byte checked. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define WRITERS 4
#define MSGS 60
#define BIG (160 * 1024)

typedef struct {
    uint32_t magic, writer, seq, len;
} hdr;
#define MAGIC 0x70736921u

static int wfd;

static void die(const char *what)
{
    fprintf(stderr, "threads_prog: FAIL: %s (errno %d %s)\n", what, errno, strerror(errno));
    exit(1);
}

static unsigned char pat(uint32_t w, uint32_t s, size_t i)
{
    return (unsigned char)(i * 7u + w * 31u + s * 13u + (i >> 8));
}

static size_t msg_len(uint32_t w, uint32_t s)
{
    return s % 10 == 9 ? BIG + w : (s * 97u + w * 11u) % 900 + 1;
}

static void *writer(void *arg)
{
    uint32_t w = (uint32_t)(uintptr_t)arg;
    unsigned char *m = malloc(sizeof(hdr) + BIG + WRITERS);
    for (uint32_t s = 0; s < MSGS; s++) {
        size_t n = msg_len(w, s);
        hdr h = {MAGIC, w, s, (uint32_t)n};
        memcpy(m, &h, sizeof(h));
        for (size_t i = 0; i < n; i++)
            m[sizeof(h) + i] = pat(w, s, i);
        /* One write per message: the interposer sends it as one record. */
        ssize_t r = write(wfd, m, sizeof(h) + n);
        if (r != (ssize_t)(sizeof(h) + n))
            die("short or failed write of a message");
    }
    free(m);
    return NULL;
}

static int rfd;

static void read_exact(unsigned char *p, size_t n, size_t *step)
{
    while (n > 0) {
        size_t want = n < *step ? n : *step;
        ssize_t r = read(rfd, p, want);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            die("reader: read failed or EOF in a message");
        p += r;
        n -= (size_t)r;
        *step = *step * 3 % 70001 + 1; /* varying read sizes */
    }
}

static void *reader(void *arg)
{
    (void)arg;
    uint32_t next[WRITERS] = {0};
    unsigned char *m = malloc(BIG + WRITERS);
    size_t step = 1;
    for (int k = 0; k < WRITERS * MSGS; k++) {
        hdr h;
        read_exact((unsigned char *)&h, sizeof(h), &step);
        if (h.magic != MAGIC || h.writer >= WRITERS || h.seq != next[h.writer] ||
            h.len != msg_len(h.writer, h.seq))
            die("reader: bad message header (split or reordered message)");
        read_exact(m, h.len, &step);
        for (size_t i = 0; i < h.len; i++)
            if (m[i] != pat(h.writer, h.seq, i))
                die("reader: bad byte in a message");
        next[h.writer]++;
    }
    unsigned char x;
    if (read(rfd, &x, 1) != 0)
        die("reader: expected EOF after every message");
    free(m);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(ls, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(ls, 1) != 0)
        die("listen");
    wfd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(wfd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
        die("connect");
    rfd = accept(ls, NULL, NULL);
    if (rfd < 0)
        die("accept");
    pthread_t rt, wt[WRITERS];
    pthread_create(&rt, NULL, reader, NULL);
    for (uintptr_t i = 0; i < WRITERS; i++)
        pthread_create(&wt[i], NULL, writer, (void *)i);
    for (int i = 0; i < WRITERS; i++)
        pthread_join(wt[i], NULL);
    shutdown(wfd, SHUT_WR);
    pthread_join(rt, NULL);
    close(wfd);
    close(rfd);
    close(ls);
    printf("threads_prog: %d writers x %d messages checked\n", WRITERS, MSGS);
    return 0;
}
