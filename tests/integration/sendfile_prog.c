/* sendfile_prog: an ordinary program that moves files to a stream by every
 * path that bypasses write(2): sendfile, splice, vmsplice, sendmmsg, stdio.
 * It knows nothing about psinterpose; t_sendfile.sh runs it preloaded.
 *
 *   sendfile_prog tcp PORT STEP...   connect to 127.0.0.1:PORT, run the steps
 *                                     on the socket, shut down, close
 *   sendfile_prog stdout STEP...     run the steps on fd 1 / stdout
 *   sendfile_prog stdin OUT           read stdin with getc and fread to EOF into OUT
 *   sendfile_prog serve PORT OUT inq|mmsg
 *                                     accept one connection on 127.0.0.1:PORT,
 *                                     read it to EOF into OUT: `inq` polls, asks
 *                                     FIONREAD and checks a non-blocking read
 *                                     then returns at least that many bytes;
 *                                     `mmsg` reads with recvmmsg
 *
 * Steps (each sends FILE's bytes, all of them, in order):
 *   off:FILE      sendfile with an offset pointer; the file position must not move
 *   pos:FILE      sendfile with offset NULL; the file position must end at EOF
 *   splice:FILE   a child writes FILE into a pipe; splice pipe -> stream
 *   vmsplice:FILE vmsplice FILE's bytes (the stream must be a pipe)
 *   mmsg:FILE     sendmmsg, FILE split into 3 messages
 *   fdopen:FILE   fdopen(dup(fd), "w"), fwrite, check fileno, fclose
 *   fwrite:FILE   fwrite to stdout
 *   printf:FILE   printf("%s") of FILE (text) to stdout
 *   write:FILE    write(2)
 * Exit status 0, or 1 with a message naming the step that failed. */
#define _GNU_SOURCE /* splice, vmsplice, sendmmsg */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

static void die(const char *step, const char *what)
{
    fprintf(stderr, "sendfile_prog: %s: %s: %s\n", step, what, strerror(errno));
    exit(1);
}

static char *slurp(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0)
        die(path, "open");
    *len = (size_t)sb.st_size;
    char *p = malloc(*len + 1);
    size_t got = 0;
    while (got < *len) {
        ssize_t r = read(fd, p + got, *len - got);
        if (r <= 0)
            die(path, "read");
        got += (size_t)r;
    }
    p[*len] = '\0';
    close(fd);
    return p;
}

static void write_all(int fd, const char *p, size_t n, const char *step)
{
    while (n > 0) {
        ssize_t r = write(fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            die(step, "write");
        p += r;
        n -= (size_t)r;
    }
}

static void step_sendfile(int out, const char *path, int with_off)
{
    int fd = open(path, O_RDONLY);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0)
        die(path, "open");
    off_t off = 0;
    size_t left = (size_t)sb.st_size;
    while (left > 0) {
        ssize_t r = sendfile(out, fd, with_off ? &off : NULL, left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            die(path, "sendfile");
        left -= (size_t)r;
    }
    off_t pos = lseek(fd, 0, SEEK_CUR);
    if (with_off && (pos != 0 || off != sb.st_size)) {
        fprintf(stderr, "sendfile_prog: off:%s: file position %lld, offset %lld\n", path,
                (long long)pos, (long long)off);
        exit(1);
    }
    if (!with_off && pos != sb.st_size) {
        fprintf(stderr, "sendfile_prog: pos:%s: file position %lld after sendfile\n", path,
                (long long)pos);
        exit(1);
    }
    /* At EOF sendfile returns 0. */
    if (sendfile(out, fd, with_off ? &off : NULL, 4096) != 0)
        die(path, "sendfile at EOF");
    close(fd);
}

static void step_splice(int out, const char *path)
{
    size_t len;
    char *data = slurp(path, &len);
    int p[2];
    if (pipe(p) != 0)
        die(path, "pipe");
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        write_all(p[1], data, len, "splice writer");
        _exit(0);
    }
    close(p[1]);
    size_t moved = 0;
    for (;;) {
        ssize_t r = splice(p[0], NULL, out, NULL, 1 << 20, SPLICE_F_MOVE);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            die(path, "splice");
        if (r == 0)
            break;
        moved += (size_t)r;
    }
    close(p[0]);
    int st;
    waitpid(pid, &st, 0);
    if (moved != len) {
        fprintf(stderr, "sendfile_prog: splice:%s: moved %zu of %zu\n", path, moved, len);
        exit(1);
    }
    free(data);
}

static void step_vmsplice(int out, const char *path)
{
    size_t len;
    char *data = slurp(path, &len);
    size_t done = 0;
    while (done < len) {
        struct iovec v = {data + done, len - done};
        ssize_t r = vmsplice(out, &v, 1, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            die(path, "vmsplice");
        done += (size_t)r;
    }
    /* Not freed: vmsplice lends the pages to the pipe until the reader
     * takes them, so they must not be reused. */
}

static void step_mmsg(int out, const char *path)
{
    size_t len;
    char *data = slurp(path, &len);
    size_t a = len / 3, b = len / 3;
    struct iovec v[3] = {{data, a}, {data + a, b}, {data + a + b, len - a - b}};
    struct mmsghdr m[3];
    memset(m, 0, sizeof(m));
    for (int i = 0; i < 3; i++) {
        m[i].msg_hdr.msg_iov = &v[i];
        m[i].msg_hdr.msg_iovlen = 1;
    }
    int sent = 0;
    while (sent < 3) {
        int r = sendmmsg(out, m + sent, (unsigned)(3 - sent), 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            die(path, "sendmmsg");
        for (int i = sent; i < sent + r; i++) {
            if (m[i].msg_len != v[i].iov_len) { /* finish a short one by hand */
                write_all(out, (char *)v[i].iov_base + m[i].msg_len, v[i].iov_len - m[i].msg_len,
                          "mmsg");
            }
        }
        sent += r;
    }
    free(data);
}

static void step_fdopen(int out, const char *path)
{
    size_t len;
    char *data = slurp(path, &len);
    int fd = dup(out);
    FILE *f = fdopen(fd, "w");
    if (!f)
        die(path, "fdopen");
    if (fileno(f) != fd) {
        fprintf(stderr, "sendfile_prog: fdopen:%s: fileno %d, expected %d\n", path, fileno(f), fd);
        exit(1);
    }
    /* Small pieces first (stdio buffers them), then the rest in one call. */
    size_t head = len < 100 ? len : 100;
    for (size_t i = 0; i < head; i++)
        fputc(data[i], f);
    if (fwrite(data + head, 1, len - head, f) != len - head)
        die(path, "fwrite");
    if (fclose(f) != 0)
        die(path, "fclose");
    free(data);
}

static void run(int out, int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        char *spec = argv[i];
        char *path = strchr(spec, ':');
        if (!path) {
            fprintf(stderr, "sendfile_prog: bad step %s\n", spec);
            exit(2);
        }
        *path++ = '\0';
        size_t len;
        if (!strcmp(spec, "off") || !strcmp(spec, "pos")) {
            step_sendfile(out, path, !strcmp(spec, "off"));
        } else if (!strcmp(spec, "splice")) {
            step_splice(out, path);
        } else if (!strcmp(spec, "vmsplice")) {
            fflush(stdout);
            step_vmsplice(out, path);
        } else if (!strcmp(spec, "mmsg")) {
            step_mmsg(out, path);
        } else if (!strcmp(spec, "fdopen")) {
            step_fdopen(out, path);
        } else if (!strcmp(spec, "fwrite")) {
            char *d = slurp(path, &len);
            if (fwrite(d, 1, len, stdout) != len)
                die(path, "fwrite");
            free(d);
        } else if (!strcmp(spec, "printf")) {
            char *d = slurp(path, &len);
            if (printf("%s", d) != (int)len)
                die(path, "printf");
            free(d);
        } else if (!strcmp(spec, "write")) {
            char *d = slurp(path, &len);
            fflush(stdout); /* keep stdio's bytes and ours in program order */
            write_all(out, d, len, "write");
            free(d);
        } else {
            fprintf(stderr, "sendfile_prog: unknown step %s\n", spec);
            exit(2);
        }
    }
}

static void serve(int port, const char *out, const char *mode)
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(l, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(l, 4) != 0)
        die("serve", "listen");
    int s = accept(l, NULL, NULL);
    if (s < 0)
        die("serve", "accept");
    FILE *f = fopen(out, "wb");
    static char buf[4][256 * 1024];
    unsigned long checks = 0, nonzero = 0;
    for (;;) {
        ssize_t got;
        if (!strcmp(mode, "mmsg")) {
            struct iovec v[4];
            struct mmsghdr m[4];
            memset(m, 0, sizeof(m));
            for (int i = 0; i < 4; i++) {
                v[i] = (struct iovec){buf[i], sizeof(buf[i])};
                m[i].msg_hdr.msg_iov = &v[i];
                m[i].msg_hdr.msg_iovlen = 1;
            }
            int n = recvmmsg(s, m, 4, MSG_WAITFORONE, NULL);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                die("serve", "recvmmsg");
            got = 0;
            for (int i = 0; i < n; i++) {
                fwrite(buf[i], 1, m[i].msg_len, f);
                got += m[i].msg_len;
            }
        } else {
            struct pollfd p = {s, POLLIN, 0};
            if (poll(&p, 1, 30000) <= 0)
                die("serve", "poll");
            int k = -1;
            if (ioctl(s, FIONREAD, &k) != 0 || k < 0)
                die("serve", "ioctl FIONREAD");
            got = recv(s, buf[0], sizeof(buf[0]), MSG_DONTWAIT);
            if (got < 0 && (errno == EAGAIN || errno == EINTR)) {
                if (k > 0) {
                    fprintf(stderr, "sendfile_prog: FIONREAD said %d, a read would block\n", k);
                    exit(1);
                }
                continue;
            }
            if (got < 0)
                die("serve", "recv");
            size_t want = (size_t)k < sizeof(buf[0]) ? (size_t)k : sizeof(buf[0]);
            if (got > 0 && (size_t)got < want) {
                fprintf(stderr, "sendfile_prog: FIONREAD said %d, read returned %zd\n", k, got);
                exit(1);
            }
            checks++;
            nonzero += k > 0;
            fwrite(buf[0], 1, (size_t)got, f);
        }
        if (got == 0)
            break;
    }
    fclose(f);
    close(s);
    close(l);
    if (!strcmp(mode, "inq"))
        fprintf(stderr, "sendfile_prog: %lu FIONREAD checks, %lu non-zero\n", checks, nonzero);
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "stdin")) {
        FILE *o = fopen(argv[2], "wb");
        int c;
        for (int i = 0; i < 10 && (c = getc(stdin)) != EOF; i++)
            fputc(c, o);
        static char b[1 << 20];
        size_t n;
        while ((n = fread(b, 1, sizeof(b), stdin)) > 0)
            fwrite(b, 1, n, o);
        if (ferror(stdin))
            die("stdin", "fread");
        if (fileno(stdin) != 0) {
            fprintf(stderr, "sendfile_prog: fileno(stdin) is %d\n", fileno(stdin));
            return 1;
        }
        return fclose(o) == 0 ? 0 : 1;
    }
    if (argc == 5 && !strcmp(argv[1], "serve")) {
        serve(atoi(argv[2]), argv[3], argv[4]);
        return 0;
    }
    if (argc >= 3 && !strcmp(argv[1], "tcp")) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2])),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        if (connect(s, (struct sockaddr *)&a, sizeof(a)) != 0)
            die("connect", argv[2]);
        run(s, argc - 3, argv + 3);
        shutdown(s, SHUT_WR);
        char b[64];
        while (read(s, b, sizeof(b)) > 0) /* wait for the server to finish reading */
            ;
        close(s);
        return 0;
    }
    if (argc >= 2 && !strcmp(argv[1], "stdout")) {
        run(1, argc - 2, argv + 2);
        if (fflush(stdout) != 0)
            die("stdout", "fflush");
        return 0;
    }
    fprintf(stderr, "usage: sendfile_prog tcp PORT STEP... | stdout STEP...\n");
    return 2;
}
