/* semantics_prog: recv/send semantics on a framed TCP stream (issue 4 item 2).
 *
 *   semantics_prog PORT [fionread]
 *
 * Listens on 127.0.0.1:PORT, forks a client that connects once per case, and
 * checks in the server (and the client) that MSG_PEEK, MSG_WAITALL,
 * MSG_DONTWAIT, MSG_NOSIGNAL, MSG_TRUNC, EINTR (with and without SA_RESTART),
 * shutdown(SHUT_WR), close after a token, SO_LINGER and (with `fionread`)
 * ioctl FIONREAD behave as the kernel's would, byte-exactly. The test runs it
 * preloaded with PSI_PEERS listing the port and a low PSI_THRESHOLD, so the
 * stream is framed and the large writes below travel as tokens.
 *
 * The two sides keep step through two pipes; nothing waits on a clock except
 * the EINTR cases, whose timer is the thing under test. Exit 0: every check
 * passed; 1: a check failed (the message says which). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#define TOK (200 * 1024) /* above the test's PSI_THRESHOLD: a token */

static const char *who = "server";
static int p2c[2], c2p[2]; /* parent -> child, child -> parent */
static int port;
static int use_fionread;
static volatile sig_atomic_t sigpipes, alarms;

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "semantics %s: FAIL: ", who);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (errno %d %s)\n", errno, strerror(errno));
    va_end(ap);
    _exit(1);
}

/* The byte at offset i of the stream of case `c`. */
static unsigned char pat(int c, size_t i)
{
    return (unsigned char)(i * 131u + (i >> 9) + (unsigned)c * 17u);
}

static void fill(unsigned char *b, size_t n, int c, size_t off)
{
    for (size_t i = 0; i < n; i++)
        b[i] = pat(c, off + i);
}

static void expect(const unsigned char *b, size_t n, int c, size_t off, const char *what)
{
    for (size_t i = 0; i < n; i++)
        if (b[i] != pat(c, off + i))
            die("%s: byte %zu of %zu (stream offset %zu) is %u, expected %u", what, i, n,
                off + i, b[i], pat(c, off + i));
}

static void write_all(int fd, const unsigned char *p, size_t n, int flags)
{
    while (n > 0) {
        ssize_t r = send(fd, p, n, flags);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            die("send of %zu bytes", n);
        p += r;
        n -= (size_t)r;
    }
}

/* Sends stream bytes [off, off+n) of case c in one application write. */
static size_t send_part(int fd, int c, size_t off, size_t n)
{
    unsigned char *b = malloc(n ? n : 1);
    fill(b, n, c, off);
    write_all(fd, b, n, 0);
    free(b);
    return off + n;
}

/* Reads exactly n bytes (any flags the caller adds) and checks them. */
static void recv_exact(int fd, size_t n, int c, size_t off, const char *what)
{
    unsigned char *b = malloc(n ? n : 1);
    size_t got = 0;
    while (got < n) {
        ssize_t r = recv(fd, b + got, n - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            die("%s: recv after %zu of %zu bytes returned %zd", what, got, n, r);
        got += (size_t)r;
    }
    expect(b, n, c, off, what);
    free(b);
}

static void expect_eof(int fd, const char *what)
{
    unsigned char b[16];
    ssize_t r;
    do
        r = recv(fd, b, sizeof(b), 0);
    while (r < 0 && errno == EINTR);
    if (r != 0)
        die("%s: expected EOF, recv returned %zd", what, r);
}

static void sync_send(int *p)
{
    if (write(p[1], "x", 1) != 1)
        die("sync write");
}

static void sync_wait(int *p)
{
    char x;
    ssize_t r;
    do
        r = read(p[0], &x, 1);
    while (r < 0 && errno == EINTR);
    if (r != 1)
        die("sync read");
}

static int fionread(int fd)
{
    int v = -1;
    if (ioctl(fd, FIONREAD, &v) != 0)
        die("ioctl FIONREAD");
    return v;
}

/* ---- the cases: cli_N runs in the child, srv_N in the parent ---------- */

/* 1. MSG_PEEK across a DATA record, a token and the next record; reads in
 *    between; MSG_DONTWAIT and O_NONBLOCK on an empty framed socket. */
#define C1_TOTAL (100 + TOK + 50)
static void cli_1(int fd)
{
    size_t off = send_part(fd, 1, 0, 100);
    off = send_part(fd, 1, off, TOK);
    send_part(fd, 1, off, 50);
    /* Nothing came back yet (no ANSWER either): EAGAIN, not a block. */
    unsigned char b[8];
    if (recv(fd, b, sizeof(b), MSG_DONTWAIT) != -1 || (errno != EAGAIN && errno != EWOULDBLOCK))
        die("client: MSG_DONTWAIT on an empty socket did not fail with EAGAIN");
    sync_wait(p2c);
}

static void srv_1(int fd)
{
    unsigned char *b = malloc(C1_TOTAL);
    ssize_t r = recv(fd, b, 50, MSG_PEEK);
    if (r < 1 || r > 50)
        die("peek 50 returned %zd", r);
    expect(b, (size_t)r, 1, 0, "first peek");
    r = recv(fd, b, C1_TOTAL, MSG_PEEK | MSG_WAITALL);
    if (r != C1_TOTAL)
        die("peek|waitall of %d returned %zd", C1_TOTAL, r);
    expect(b, C1_TOTAL, 1, 0, "peek|waitall across DATA, token, DATA");
    if (use_fionread) {
        int v = fionread(fd);
        if (v != C1_TOTAL)
            die("FIONREAD after peeking everything is %d, expected %d", v, C1_TOTAL);
    }
    memset(b, 0, C1_TOTAL);
    r = recv(fd, b, 150, MSG_PEEK);
    if (r != 150)
        die("peek 150 with everything held returned %zd", r);
    expect(b, 150, 1, 0, "peek across the DATA/token boundary");
    recv_exact(fd, 60, 1, 0, "read 60 after peeks");
    r = recv(fd, b, 100, MSG_PEEK);
    if (r != 100)
        die("peek 100 at offset 60 returned %zd", r);
    expect(b, 100, 1, 60, "peek at offset 60");
    r = recv(fd, b, C1_TOTAL - 60, MSG_WAITALL);
    if (r != C1_TOTAL - 60)
        die("waitall read of the rest returned %zd", r);
    expect(b, C1_TOTAL - 60, 1, 60, "rest after peeks");
    if (use_fionread && fionread(fd) != 0)
        die("FIONREAD after reading everything is %d", fionread(fd));
    if (recv(fd, b, 10, MSG_DONTWAIT) != -1 || (errno != EAGAIN && errno != EWOULDBLOCK))
        die("MSG_DONTWAIT on an empty framed socket did not fail with EAGAIN");
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    if (read(fd, b, 10) != -1 || (errno != EAGAIN && errno != EWOULDBLOCK))
        die("read on an empty O_NONBLOCK framed socket did not fail with EAGAIN");
    fcntl(fd, F_SETFL, fl);
    sync_send(p2c);
    expect_eof(fd, "case 1");
    free(b);
}

/* 2. MSG_WAITALL across tokens: one call returns every byte. */
#define C2_TOTAL (10 + TOK + 10 + 300 * 1024 + 5)
static void cli_2(int fd)
{
    size_t off = send_part(fd, 2, 0, 10);
    off = send_part(fd, 2, off, TOK);
    off = send_part(fd, 2, off, 10);
    off = send_part(fd, 2, off, 300 * 1024);
    send_part(fd, 2, off, 5);
    sync_wait(p2c);
}

static void srv_2(int fd)
{
    unsigned char *b = malloc(C2_TOTAL);
    ssize_t r = recv(fd, b, C2_TOTAL, MSG_WAITALL);
    if (r != C2_TOTAL)
        die("MSG_WAITALL across tokens returned %zd of %d", r, C2_TOTAL);
    expect(b, C2_TOTAL, 2, 0, "waitall across tokens");
    free(b);
    sync_send(p2c);
    expect_eof(fd, "case 2");
}

/* 3. MSG_NOSIGNAL to a closed peer: EPIPE, and no SIGPIPE. */
static void cli_3(int fd)
{
    send_part(fd, 3, 0, 100);
    sync_wait(p2c); /* the server read the 100 bytes and closed */
    unsigned char *b = calloc(1, TOK);
    int err = 0;
    for (int i = 0; i < 100 && !err; i++) {
        size_t n = (i % 2) ? TOK : 100; /* tokens and small records */
        if (send(fd, b, n, MSG_NOSIGNAL) < 0)
            err = errno;
    }
    free(b);
    if (err != EPIPE)
        die("send MSG_NOSIGNAL to a closed peer failed with %d (%s), expected EPIPE", err,
            strerror(err));
    if (sigpipes)
        die("SIGPIPE raised despite MSG_NOSIGNAL");
}

static void srv_3(int fd)
{
    recv_exact(fd, 100, 3, 0, "case 3");
    close(fd);
    sync_send(p2c);
}

/* 4. MSG_TRUNC on a stream discards that many application bytes. */
#define C4_TOTAL (100 + TOK + 100)
static void cli_4(int fd)
{
    size_t off = send_part(fd, 4, 0, 100);
    off = send_part(fd, 4, off, TOK);
    send_part(fd, 4, off, 100);
    sync_wait(p2c);
}

static void srv_4(int fd)
{
    ssize_t r = recv(fd, NULL, 50, MSG_TRUNC | MSG_WAITALL);
    if (r != 50)
        die("MSG_TRUNC of 50 returned %zd", r);
    recv_exact(fd, 50, 4, 50, "after discarding 50");
    r = recv(fd, NULL, 100000, MSG_TRUNC | MSG_WAITALL);
    if (r != 100000)
        die("MSG_TRUNC of 100000 inside a token returned %zd", r);
    recv_exact(fd, C4_TOTAL - 100100, 4, 100100, "after discarding inside a token");
    sync_send(p2c);
    expect_eof(fd, "case 4");
}

/* 5. EINTR: a blocking read interrupted by a handler without SA_RESTART
 *    fails with EINTR and loses nothing; with SA_RESTART it goes on. */
static void on_alarm(int sig)
{
    (void)sig;
    alarms++;
}

static void on_alarm_go(int sig)
{
    (void)sig;
    alarms++;
    if (write(p2c[1], "g", 1) != 1)
        _exit(3);
}

static void arm(void (*h)(int), int flags)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = h;
    sa.sa_flags = flags;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, 0}, {0, 50 * 1000}};
    setitimer(ITIMER_REAL, &it, NULL);
}

#define C5_A (TOK + 10)
static void cli_5(int fd)
{
    size_t off = send_part(fd, 5, 0, 10); /* framed from here on */
    sync_wait(p2c);                       /* the server got EINTR */
    off = send_part(fd, 5, off, TOK);
    off = send_part(fd, 5, off, 10);
    off = send_part(fd, 5, off, 100);
    sync_wait(p2c); /* the server got 100 of 1000 (waitall, interrupted) */
    off = send_part(fd, 5, off, 900);
    sync_wait(p2c); /* SA_RESTART: the alarm went off during the read */
    off = send_part(fd, 5, off, TOK);
    send_part(fd, 5, off, 10);
    sync_wait(p2c);
}

static void srv_5(int fd)
{
    unsigned char b[4096];
    size_t off = 0;
    recv_exact(fd, 10, 5, off, "case 5 start");
    off += 10;
    arm(on_alarm, 0);
    ssize_t r = recv(fd, b, sizeof(b), 0);
    if (r != -1 || errno != EINTR || alarms != 1)
        die("blocking recv with a non-SA_RESTART handler returned %zd (alarms %d), expected EINTR",
            r, (int)alarms);
    sync_send(p2c);
    recv_exact(fd, C5_A, 5, off, "bytes after EINTR");
    off += C5_A;
    unsigned char *w = malloc(1000);
    arm(on_alarm, 0);
    r = recv(fd, w, 1000, MSG_WAITALL);
    if (r != 100)
        die("MSG_WAITALL interrupted after 100 bytes returned %zd (alarms %d)", r, (int)alarms);
    expect(w, 100, 5, off, "waitall interrupted");
    off += 100;
    sync_send(p2c);
    recv_exact(fd, 900, 5, off, "bytes after interrupted waitall");
    off += 900;
    free(w);
    arm(on_alarm_go, SA_RESTART); /* the handler lets the client send */
    unsigned char *big = malloc(C5_A);
    r = recv(fd, big, C5_A, MSG_WAITALL);
    if (r != C5_A || alarms != 3)
        die("recv across a SA_RESTART signal returned %zd of %d (alarms %d)", r, C5_A,
            (int)alarms);
    expect(big, C5_A, 5, off, "SA_RESTART read");
    free(big);
    signal(SIGALRM, SIG_DFL);
    sync_send(p2c);
    expect_eof(fd, "case 5");
}

/* 6. shutdown(SHUT_WR) right after a token: the peer reads every byte, then
 *    EOF, and can still answer (half-close). */
#define C6_UP (100 + 300 * 1024 + 20)
#define C6_DOWN (50 + TOK)
static void cli_6(int fd)
{
    size_t off = send_part(fd, 6, 0, 100);
    off = send_part(fd, 6, off, 300 * 1024);
    send_part(fd, 6, off, 20);
    if (shutdown(fd, SHUT_WR) != 0)
        die("shutdown");
    recv_exact(fd, C6_DOWN, 60, 0, "reply after half-close");
    expect_eof(fd, "case 6 client");
}

static void srv_6(int fd)
{
    recv_exact(fd, C6_UP, 6, 0, "bytes before the peer's shutdown");
    expect_eof(fd, "case 6 server");
    size_t off = send_part(fd, 60, 0, 50);
    send_part(fd, 60, off, TOK);
    close(fd);
}

/* 7/8. close right after a large token (8: with SO_LINGER set). */
#define C7_TOTAL (1024 * 1024 + 7)
static void cli_close(int fd, int c, int linger)
{
    if (linger) {
        struct linger l = {1, 10};
        if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l)) != 0)
            die("SO_LINGER");
    }
    size_t off = send_part(fd, c, 0, 1024 * 1024);
    send_part(fd, c, off, 7);
}

static void srv_close(int fd, int c)
{
    recv_exact(fd, C7_TOTAL, c, 0, "bytes written just before close");
    expect_eof(fd, "close after token");
}

static void cli_7(int fd) { cli_close(fd, 7, 0); }
static void srv_7(int fd) { srv_close(fd, 7); }
static void cli_8(int fd) { cli_close(fd, 8, 1); }
static void srv_8(int fd) { srv_close(fd, 8); }

typedef struct { const char *name; void (*cli)(int); void (*srv)(int); } scase;
static const scase cases[] = {
    {"peek/dontwait", cli_1, srv_1}, {"waitall", cli_2, srv_2},
    {"nosignal", cli_3, srv_3},      {"trunc", cli_4, srv_4},
    {"eintr", cli_5, srv_5},         {"shutdown", cli_6, srv_6},
    {"close", cli_7, srv_7},         {"linger", cli_8, srv_8},
};
#define NCASES (int)(sizeof(cases) / sizeof(cases[0]))

static void on_sigpipe(int sig)
{
    (void)sig;
    sigpipes++;
}

static void client(void)
{
    who = "client";
    signal(SIGPIPE, on_sigpipe);
    for (int i = 0; i < NCASES; i++) {
        sync_wait(p2c); /* the server is ready for case i */
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
            die("connect for case %s", cases[i].name);
        cases[i].cli(fd);
        close(fd);
        sync_send(c2p);
    }
    exit(0); /* atexit: the interposer writes its PSI_STATS line */
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    port = atoi(argv[1]);
    use_fionread = argc > 2 && strcmp(argv[2], "fionread") == 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(ls, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(ls, 8) != 0)
        die("listen on %d", port);
    if (pipe(p2c) != 0 || pipe(c2p) != 0)
        die("pipe");
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0)
        client();
    for (int i = 0; i < NCASES; i++) {
        sync_send(p2c);
        int fd = accept(ls, NULL, NULL);
        if (fd < 0)
            die("accept for case %s", cases[i].name);
        cases[i].srv(fd);
        sync_wait(c2p);
        close(fd);
        printf("ok %s\n", cases[i].name);
    }
    int st;
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        die("client exited with status %d", st);
    printf("all %d cases passed%s\n", NCASES, use_fionread ? "" : " (FIONREAD not checked)");
    return 0;
}
