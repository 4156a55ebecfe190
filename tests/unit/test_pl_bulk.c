/* pl_bulk (sendfile, splice emulation, FIONREAD, cookie FILEs) over real
 * socketpairs, pipes and files. The hooks are not linked: the engine and
 * pl_bulk are called directly, and the peer is decoded with pl_recv. Every
 * case checks bytes and counts exactly. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "pl_bulk.h"
#include "pl_engine.h"
#include "pl_state.h"
#include "psi_stats.h"

#define THRESHOLD 4096

static char g_root[64];

static uint8_t *pattern(size_t len, unsigned seed)
{
    uint8_t *p = malloc(len);
    assert_non_null(p);
    uint32_t x = 0x12345u + seed;
    for (size_t i = 0; i < len; i++) {
        x = x * 1103515245u + 12345u;
        p[i] = (uint8_t)(x >> 16);
    }
    return p;
}

/* A framed pair: w writes sv[0], r reads sv[1]. */
typedef struct pair {
    int sv[2];
    pl_state *w, *r;
} pair;

static void pair_open(pair *p)
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, p->sv), 0);
    p->w = pl_state_new(PL_KIND_STREAM);
    p->r = pl_state_new(PL_KIND_STREAM);
    atomic_store(&p->w->out_mode, PL_OUT_FRAMED);
    p->r->in_mode = PL_IN_FRAMED;
    assert_int_equal(pl_fd_attach(p->sv[0], p->w), 0);
    assert_int_equal(pl_fd_attach(p->sv[1], p->r), 0);
}

static void pair_close(pair *p)
{
    pl_fd_detach(p->sv[0]);
    pl_fd_detach(p->sv[1]);
    close(p->sv[0]);
    close(p->sv[1]);
}

static void recv_expect(pair *p, const uint8_t *want, size_t n)
{
    uint8_t *got = malloc(n ? n : 1);
    size_t off = 0;
    while (off < n) {
        pl_io io = {.fd = p->sv[1], .sock = true};
        ssize_t r = pl_recv(p->r, &io, got + off, n - off);
        assert_true(r > 0);
        off += (size_t)r;
    }
    assert_memory_equal(got, want, n);
    free(got);
}

static int make_file(const uint8_t *data, size_t n)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/f.XXXXXX", g_root);
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    assert_int_equal(write(fd, data, n), (ssize_t)n);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    return fd;
}

/* Offsets, counts and end of file as sendfile(2) has them; a large region
 * is one token. */
static void sendfile_semantics(void **unused)
{
    (void)unused;
    pair p;
    pair_open(&p);
    size_t n = 200000;
    uint8_t *data = pattern(n, 1);
    int fd = make_file(data, n);

    uint64_t tok0 = atomic_load(&psi_g_stats.tokens_sent);
    off_t off = 1000;
    assert_int_equal(pl_bulk_sendfile(p.w, p.sv[0], fd, &off, 150000), 150000);
    assert_int_equal(off, 151000);
    assert_int_equal(lseek(fd, 0, SEEK_CUR), 0); /* the file position did not move */
    assert_int_equal(atomic_load(&psi_g_stats.tokens_sent), tok0 + 1);
    recv_expect(&p, data + 1000, 150000);

    /* offset NULL: the file position is used and advanced */
    assert_int_equal(lseek(fd, 5, SEEK_SET), 5);
    assert_int_equal(pl_bulk_sendfile(p.w, p.sv[0], fd, NULL, 100), 100);
    assert_int_equal(lseek(fd, 0, SEEK_CUR), 105);
    recv_expect(&p, data + 5, 100);

    /* past the end: short count, then 0 */
    off = (off_t)n - 10;
    assert_int_equal(pl_bulk_sendfile(p.w, p.sv[0], fd, &off, 100), 10);
    assert_int_equal(off, (off_t)n);
    assert_int_equal(pl_bulk_sendfile(p.w, p.sv[0], fd, &off, 100), 0);
    recv_expect(&p, data + n - 10, 10);

    /* a negative offset and a write-only source fail like the kernel */
    off = -1;
    assert_int_equal(pl_bulk_sendfile(p.w, p.sv[0], fd, &off, 100), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(atomic_load(&psi_g_stats.tokens_sent), tok0 + 1);
    close(fd);
    free(data);
    pair_close(&p);
}

/* A pipe's bytes spliced into a framed socket, and a framed socket's
 * decoded bytes spliced into a pipe. */
static void splice_emulation(void **unused)
{
    (void)unused;
    pair p;
    pair_open(&p);
    int pp[2];
    assert_int_equal(pipe(pp), 0);
    uint8_t *data = pattern(30000, 2);
    assert_int_equal(write(pp[1], data, 30000), 30000);
    assert_int_equal(pl_bulk_copy(pp[0], NULL, p.sv[0], NULL, 1 << 20, false), 30000);
    recv_expect(&p, data, 30000);

    /* nothing in the pipe, SPLICE_F_NONBLOCK: EAGAIN, nothing consumed */
    assert_int_equal(pl_bulk_copy(pp[0], NULL, p.sv[0], NULL, 100, true), -1);
    assert_int_equal(errno, EAGAIN);

    /* framed in -> plain pipe out */
    pl_io io = {.fd = p.sv[0], .sock = true};
    assert_int_equal(pl_send(p.w, &io, data, 20000), 20000); /* a token */
    size_t got = 0;
    while (got < 20000) {
        ssize_t r = pl_bulk_copy(p.sv[1], NULL, pp[1], NULL, 20000 - got, false);
        assert_true(r > 0);
        got += (size_t)r;
    }
    uint8_t back[20000];
    size_t off = 0;
    while (off < sizeof(back)) {
        ssize_t r = read(pp[0], back + off, sizeof(back) - off);
        assert_true(r > 0);
        off += (size_t)r;
    }
    assert_memory_equal(back, data, sizeof(back));
    close(pp[0]);
    close(pp[1]);
    free(data);
    pair_close(&p);
}

/* FIONREAD never promises more than a read returns. */
static void inq_counts_application_bytes(void **unused)
{
    (void)unused;
    pair p;
    pair_open(&p);
    uint8_t *data = pattern(20000, 3);
    pl_io io = {.fd = p.sv[0], .sock = true};
    int k = -1;
    assert_int_equal(pl_bulk_inq(p.r, p.sv[1], &k), 1);
    assert_int_equal(k, 0); /* nothing there */

    assert_int_equal(pl_send(p.w, &io, data, 3000), 3000); /* DATA */
    assert_int_equal(pl_bulk_inq(p.r, p.sv[1], &k), 1);
    assert_int_equal(k, 3000); /* the kernel holds 3005 bytes: a header and 3000 */
    recv_expect(&p, data, 1000);
    assert_int_equal(pl_bulk_inq(p.r, p.sv[1], &k), 1);
    assert_int_equal(k, 2000); /* inside the record */
    recv_expect(&p, data + 1000, 2000);

    assert_int_equal(pl_send(p.w, &io, data, 20000), 20000); /* a token */
    assert_int_equal(pl_bulk_inq(p.r, p.sv[1], &k), 1);
    assert_int_equal(k, 0); /* a token body resolves only on read */
    recv_expect(&p, data, 100);
    assert_int_equal(pl_bulk_inq(p.r, p.sv[1], &k), 1);
    assert_int_equal(k, 19900); /* held in user space */
    recv_expect(&p, data + 100, 19900);

    /* a plain stream is the kernel's own answer */
    p.r->in_mode = PL_IN_PLAIN;
    assert_int_equal(pl_bulk_inq(p.r, p.sv[1], &k), 0);
    free(data);
    pair_close(&p);
}

/* A FILE on a framed fd goes through the engine; fileno works. */
static void fdopen_cookie_file(void **unused)
{
    (void)unused;
    pair p;
    pair_open(&p);
    uint8_t *data = pattern(50000, 4);
    int fd = dup(p.sv[0]);
    pl_fd_dup(p.sv[0], fd);
    FILE *f = pl_bulk_fdopen(fd, "w");
    assert_non_null(f);
    assert_int_equal(fileno(f), fd);
    for (int i = 0; i < 10; i++)
        assert_int_equal(fputc(data[i], f), data[i]);
    assert_int_equal(fwrite(data + 10, 1, 49990, f), 49990);
    assert_int_equal(fclose(f), 0);
    assert_null(pl_fd_get(fd)); /* closed with the FILE */
    recv_expect(&p, data, 50000);

    /* read mode on a write-only fd fails like fdopen */
    int pp[2];
    assert_int_equal(pipe(pp), 0);
    assert_null(pl_bulk_fdopen(pp[1], "r"));
    assert_int_equal(errno, EINVAL);
    close(pp[0]);
    close(pp[1]);
    free(data);
    pair_close(&p);
}

static int rm_tree(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", g_root);
    return system(cmd);
}

static int group_setup(void **unused)
{
    (void)unused;
    snprintf(g_root, sizeof(g_root), "/tmp/psi-bulk-XXXXXX");
    if (!mkdtemp(g_root))
        return -1;
    char url[256];
    snprintf(url, sizeof(url), "file://%s/store", g_root);
    setenv("PSI_STORE", url, 1);
    pl_init();
    pl_g.cfg.threshold = THRESHOLD;
    pl_g.min_candidate = THRESHOLD;
    snprintf(pl_g.cfg.store_url, sizeof(pl_g.cfg.store_url), "%s", url);
    pl_g.passthrough = false;
    pl_fd_detach(0);
    pl_fd_detach(1);
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

static int group_teardown(void **unused)
{
    (void)unused;
    return rm_tree() == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sendfile_semantics),
        cmocka_unit_test(splice_emulation),
        cmocka_unit_test(inq_counts_application_bytes),
        cmocka_unit_test(fdopen_cookie_file),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
