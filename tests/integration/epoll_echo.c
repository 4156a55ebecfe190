/* epoll_echo: a multi-threaded epoll echo server written for the test suite
 * (it knows nothing about psinterpose).
 *
 *   epoll_echo PORT WORKERS CONNS
 *
 * The main thread accepts CONNS connections on 127.0.0.1:PORT and hands
 * each, non-blocking, to a worker (round robin). Every worker has its own
 * epoll set, registrations are edge-triggered (EPOLLIN|EPOLLET|EPOLLRDHUP,
 * plus EPOLLOUT while output is pending), and odd workers add EPOLLONESHOT
 * and re-arm with EPOLL_CTL_MOD after each event. Workers wait with epoll_wait,
 * epoll_pwait and epoll_pwait2 in turn. A worker reads at most READ_BUDGET
 * bytes per event (fairness) and then re-arms with EPOLL_CTL_MOD, which
 * makes the kernel re-check readiness; everything read is echoed with one
 * write of all pending bytes. At EOF and once all is written, the
 * connection is closed. The process exits 0 when all CONNS are closed,
 * printing the bytes echoed. */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#define READ_CHUNK (1 << 20)
#define READ_BUDGET (4 << 20)
#define MAX_WORKERS 16

typedef struct conn {
    int fd;
    uint8_t *out;
    size_t len, off, cap;
    int eof;
    int want_out; /* EPOLLOUT is in the registration */
} conn;

typedef struct worker {
    int id, ep;
    pthread_t thr;
} worker;

static worker workers[MAX_WORKERS];
static int quit_fd; /* in every worker's set with data NULL: time to exit */
static atomic_int closed;
static int total_conns;
static atomic_ullong echoed;

static void die(const char *what)
{
    fprintf(stderr, "epoll_echo: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* EPOLLOUT only while output is pending: an always-writable socket would
 * otherwise report every re-arm, hiding whether input readiness works. */
static uint32_t conn_events(const worker *w, const conn *c)
{
    uint32_t ev = EPOLLIN | EPOLLET | EPOLLRDHUP;
    if (c->want_out)
        ev |= EPOLLOUT;
    return (w->id & 1) ? ev | EPOLLONESHOT : ev;
}

static void rearm(worker *w, conn *c)
{
    struct epoll_event ev = {.events = conn_events(w, c), .data.ptr = c};
    if (epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev) != 0)
        die("epoll_ctl MOD");
}

/* Writes what is pending; 0 when all of it went. */
static int flush_out(conn *c)
{
    while (c->off < c->len) {
        ssize_t n = write(c->fd, c->out + c->off, c->len - c->off);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 1;
            if (errno == EINTR)
                continue;
            die("write");
        }
        c->off += (size_t)n;
        atomic_fetch_add(&echoed, (unsigned long long)n);
    }
    c->off = c->len = 0;
    return 0;
}

/* Reads up to the budget; 1 if the budget ran out before EAGAIN/EOF. */
static int read_some(conn *c)
{
    size_t got = 0;
    while (!c->eof) {
        if (got >= READ_BUDGET)
            return 1;
        if (c->cap - c->len < READ_CHUNK) {
            size_t cap = c->cap ? c->cap * 2 : 2 * READ_CHUNK;
            while (cap - c->len < READ_CHUNK)
                cap *= 2;
            c->out = realloc(c->out, cap);
            if (!c->out)
                die("realloc");
            c->cap = cap;
        }
        ssize_t n = read(c->fd, c->out + c->len, READ_CHUNK);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            if (errno == EINTR)
                continue;
            die("read");
        }
        if (n == 0)
            c->eof = 1;
        c->len += (size_t)n;
        got += (size_t)n;
    }
    return 0;
}

static int wait_events(worker *w, struct epoll_event *evs, int max)
{
    sigset_t none;
    sigemptyset(&none);
    switch (w->id % 3) {
    case 0:
        return epoll_wait(w->ep, evs, max, -1);
    case 1:
        return epoll_pwait(w->ep, evs, max, 60000, &none);
    default: {
        struct timespec ts = {60, 0};
        return epoll_pwait2(w->ep, evs, max, &ts, &none);
    }
    }
}

static void *work(void *arg)
{
    worker *w = arg;
    struct epoll_event evs[8];
    for (;;) {
        int n = wait_events(w, evs, 8);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        if (n == 0) {
            fprintf(stderr, "epoll_echo: worker %d: no event for 60 s\n", w->id);
            exit(1);
        }
        for (int i = 0; i < n; i++) {
            conn *c = evs[i].data.ptr;
            if (!c)
                return NULL; /* quit_fd */
            int more = read_some(c);
            int pending = flush_out(c);
            if (c->eof && !pending) {
                close(c->fd); /* leaves the epoll set with it */
                free(c->out);
                free(c);
                if (atomic_fetch_add(&closed, 1) + 1 == total_conns) {
                    uint64_t one = 1;
                    if (write(quit_fd, &one, sizeof(one)) != sizeof(one))
                        die("write quit");
                }
                continue;
            }
            /* Oneshot needs re-arming after every event; a budget cut short
             * needs a fresh edge for the bytes still waiting. */
            if (more || (w->id & 1) || pending != c->want_out) {
                c->want_out = pending;
                rearm(w, c);
            }
        }
    }
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: epoll_echo PORT WORKERS CONNS\n");
        return 2;
    }
    int port = atoi(argv[1]), nw = atoi(argv[2]);
    total_conns = atoi(argv[3]);
    if (nw < 1 || nw > MAX_WORKERS || total_conns < 1)
        return 2;
    signal(SIGPIPE, SIG_IGN);
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(ls, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(ls, 64) != 0)
        die("bind/listen");
    quit_fd = eventfd(0, EFD_CLOEXEC);
    if (quit_fd < 0)
        die("eventfd");
    for (int i = 0; i < nw; i++) {
        workers[i].id = i;
        workers[i].ep = (i & 2) ? epoll_create(16) : epoll_create1(EPOLL_CLOEXEC);
        if (workers[i].ep < 0)
            die("epoll_create");
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
        if (epoll_ctl(workers[i].ep, EPOLL_CTL_ADD, quit_fd, &ev) != 0)
            die("epoll_ctl quit");
        if (pthread_create(&workers[i].thr, NULL, work, &workers[i]) != 0)
            die("pthread_create");
    }
    for (int k = 0; k < total_conns; k++) {
        int fd = accept(ls, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR) {
                k--;
                continue;
            }
            die("accept");
        }
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        conn *c = calloc(1, sizeof(*c));
        if (!c)
            die("calloc");
        c->fd = fd;
        worker *w = &workers[k % nw];
        struct epoll_event ev = {.events = conn_events(w, c), .data.ptr = c};
        if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev) != 0)
            die("epoll_ctl ADD");
    }
    close(ls);
    for (int i = 0; i < nw; i++)
        pthread_join(workers[i].thr, NULL);
    printf("echoed %llu\n", (unsigned long long)atomic_load(&echoed));
    return 0;
}
