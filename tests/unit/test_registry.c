/* Unit tests for the local registry (DESIGN §3) with real sockets: an entry
 * counts only while the kernel shows its inode listening where the
 * connection would go. PSI_RUNTIME_DIR points at a fresh temp directory. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "psi_registry.h"

static char g_dir[] = "/tmp/psi-test-registry-XXXXXX";

typedef struct listener {
    int fd;
    int port;
    ino_t inode;
    struct sockaddr_storage addr;
    socklen_t len;
} listener;

static ino_t fd_inode(int fd)
{
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    return st.st_ino;
}

/* A TCP listener on addr:0 (or addr:port). reuseport lets tests stack
 * several listeners on one port, as SO_REUSEPORT servers do. */
static int tcp_listen(listener *l, int family, const char *addr, int port, int reuseport)
{
    int one = 1;

    memset(l, 0, sizeof *l);
    l->fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (l->fd < 0)
        return -1;
    if (reuseport)
        setsockopt(l->fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&l->addr;
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        assert_int_equal(inet_pton(AF_INET, addr, &in->sin_addr), 1);
        l->len = sizeof *in;
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&l->addr;
        int v6only = 0;
        setsockopt(l->fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only);
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        assert_int_equal(inet_pton(AF_INET6, addr, &in6->sin6_addr), 1);
        l->len = sizeof *in6;
    }
    if (bind(l->fd, (struct sockaddr *)&l->addr, l->len) < 0 || listen(l->fd, 4) < 0) {
        close(l->fd);
        return -1;
    }
    assert_int_equal(getsockname(l->fd, (struct sockaddr *)&l->addr, &l->len), 0);
    l->port = ntohs(((struct sockaddr_in *)&l->addr)->sin_port); /* same offset in v6 */
    l->inode = fd_inode(l->fd);
    return 0;
}

static void tcp_listen_ok(listener *l, int family, const char *addr, int port, int reuseport)
{
    if (tcp_listen(l, family, addr, port, reuseport) < 0)
        fail_msg("cannot listen on %s port %d: %s", addr, port, strerror(errno));
}

static void register_as(const listener *l, const struct sockaddr *sa, socklen_t len,
                        ino_t inode, char *entry)
{
    psi_err err = {0};
    if (psi_registry_add(sa, len, inode, entry, PATH_MAX, &err) != 0)
        fail_msg("psi_registry_add: %s", err.msg);
}

static void register_listener(const listener *l, char *entry)
{
    register_as(l, (const struct sockaddr *)&l->addr, l->len, l->inode, entry);
}

static bool dest4(const char *addr, int port)
{
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    assert_int_equal(inet_pton(AF_INET, addr, &in.sin_addr), 1);
    return psi_registry_is_interposed((struct sockaddr *)&in, sizeof in);
}

static bool dest6(const char *addr, int port)
{
    struct sockaddr_in6 in6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};
    assert_int_equal(inet_pton(AF_INET6, addr, &in6.sin6_addr), 1);
    return psi_registry_is_interposed((struct sockaddr *)&in6, sizeof in6);
}

static bool file_exists(const char *path)
{
    return access(path, F_OK) == 0;
}

/* ---- runtime directory ------------------------------------------------ */

/* psi_runtime_dir caches its answer, so each refusal runs in a fresh child
 * that never asked before (this test runs first, before any lookup). */
static int runtime_dir_in_child(const char *dir)
{
    pid_t pid = fork();
    int status;

    char log[PATH_MAX], line[512] = "";
    FILE *f;

    snprintf(log, sizeof log, "%s/child.log", g_dir);
    assert_true(pid >= 0);
    if (pid == 0) {
        /* the refusal is logged: capture it instead of cluttering output */
        if (!freopen(log, "w", stderr))
            _exit(3);
        setenv("PSI_RUNTIME_DIR", dir, 1);
        _exit(psi_runtime_dir() ? 0 : 1);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    f = fopen(log, "r");
    assert_non_null(f);
    if (!fgets(line, sizeof line, f))
        line[0] = '\0';
    fclose(f);
    unlink(log);
    /* exactly one line when refused, naming the directory; none otherwise */
    if (WEXITSTATUS(status) == 1) {
        assert_non_null(strstr(line, "refused"));
        assert_non_null(strstr(line, dir));
    } else {
        assert_string_equal(line, "");
    }
    return WEXITSTATUS(status);
}

static void test_runtime_dir_refusals(void **state)
{
    char path[PATH_MAX];
    FILE *f;

    snprintf(path, sizeof path, "%s/fresh", g_dir);
    assert_int_equal(runtime_dir_in_child(path), 0); /* created 0700 */
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);

    snprintf(path, sizeof path, "%s/open", g_dir);
    assert_int_equal(mkdir(path, 0700), 0);
    assert_int_equal(chmod(path, 0777), 0);
    assert_int_equal(runtime_dir_in_child(path), 1); /* writable by others */
    assert_int_equal(chmod(path, 0720), 0);
    assert_int_equal(runtime_dir_in_child(path), 1); /* writable by group */

    snprintf(path, sizeof path, "%s/file", g_dir);
    f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(runtime_dir_in_child(path), 1); /* not a directory */

    if (geteuid() == 0) {
        snprintf(path, sizeof path, "%s/theirs", g_dir);
        assert_int_equal(mkdir(path, 0700), 0);
        assert_int_equal(chown(path, 65534, 65534), 0);
        assert_int_equal(runtime_dir_in_child(path), 1); /* another owner */
    }
}

static void test_runtime_dir_env(void **state)
{
    const char *dir = psi_runtime_dir();
    assert_non_null(dir);
    assert_string_equal(dir, g_dir);
}

/* ---- TCP -------------------------------------------------------------- */

static void test_tcp_live_then_closed(void **state)
{
    char entry[PATH_MAX], want[PATH_MAX], line[256];
    listener l;
    FILE *f;

    tcp_listen_ok(&l, AF_INET, "127.0.0.1", 0, 0);
    register_listener(&l, entry);

    /* the name carries port, pid and inode; the line says the same */
    snprintf(want, sizeof want, "%s/registry/tcp-%d-%ld-%llu", g_dir, l.port, (long)getpid(),
             (unsigned long long)l.inode);
    assert_string_equal(entry, want);
    f = fopen(entry, "r");
    assert_non_null(f);
    assert_non_null(fgets(line, sizeof line, f));
    fclose(f);
    snprintf(want, sizeof want, "tcp 127.0.0.1 %d %ld %llu\n", l.port, (long)getpid(),
             (unsigned long long)l.inode);
    assert_string_equal(line, want);

    assert_true(dest4("127.0.0.1", l.port));
    assert_true(dest6("::ffff:127.0.0.1", l.port)); /* v4-mapped */
    assert_true(dest4("0.0.0.0", l.port));           /* reaches loopback */
    assert_false(dest4("127.0.0.1", l.port == 65535 ? 1 : l.port + 1));
    assert_false(dest4("127.0.0.2", l.port)); /* local, but the listener is not there */
    assert_true(file_exists(entry));          /* ...and its entry is still live */
    assert_true(dest4("127.0.0.1", l.port));

    close(l.fd);
    assert_false(dest4("127.0.0.1", l.port));
    /* the lookup saw the entry dead (our own pid, our namespace): pruned */
    assert_false(file_exists(entry));
}

static void test_tcp_wildcard_listener(void **state)
{
    char entry[PATH_MAX];
    listener l;

    tcp_listen_ok(&l, AF_INET, "0.0.0.0", 0, 0);
    register_listener(&l, entry);
    assert_true(dest4("127.0.0.1", l.port));
    assert_true(dest4("127.3.2.1", l.port));
    assert_false(dest4("192.0.2.1", l.port)); /* TEST-NET-1: not this host */
    assert_false(dest6("::1", l.port));       /* an IPv4 listener */
    close(l.fd);
    psi_registry_remove(entry);
    assert_false(file_exists(entry));
    psi_registry_remove(entry); /* a missing file is fine */
}

/* An entry names an inode; a different socket listening on the port (a
 * crashed server replaced by an unregistered one) must not count. */
static void test_tcp_entry_for_other_socket(void **state)
{
    char entry[PATH_MAX], entry2[PATH_MAX];
    listener plain, ours;

    tcp_listen_ok(&plain, AF_INET, "127.0.0.1", 0, 0); /* not interposed */
    tcp_listen_ok(&ours, AF_INET, "127.0.0.1", 0, 0);  /* interposed, other port */
    /* claims plain's port with ours' inode, then with an inode nobody has */
    register_as(&ours, (struct sockaddr *)&plain.addr, plain.len, ours.inode, entry);
    register_as(&ours, (struct sockaddr *)&plain.addr, plain.len, 1, entry2);
    assert_false(dest4("127.0.0.1", plain.port));
    close(plain.fd);
    close(ours.fd);
    psi_registry_remove(entry);
    psi_registry_remove(entry2);
}

/* Several listeners may take a connection (SO_REUSEPORT); the most
 * specific address wins, and all such listeners must be registered. */
static void test_tcp_most_specific_listener(void **state)
{
    char entry[PATH_MAX];
    listener any, lo, lo2;

    tcp_listen_ok(&any, AF_INET, "0.0.0.0", 0, 1);
    register_listener(&any, entry);
    assert_true(dest4("127.0.0.1", any.port));
    tcp_listen_ok(&lo, AF_INET, "127.0.0.1", any.port, 1); /* unregistered, more specific */
    assert_false(dest4("127.0.0.1", any.port));
    assert_true(dest4("127.0.0.2", any.port)); /* only the wildcard takes this one */

    char entry_lo[PATH_MAX];
    register_listener(&lo, entry_lo);
    assert_true(dest4("127.0.0.1", any.port));
    tcp_listen_ok(&lo2, AF_INET, "127.0.0.1", any.port, 1); /* a second, unregistered */
    assert_false(dest4("127.0.0.1", any.port));

    close(lo2.fd);
    close(lo.fd);
    close(any.fd);
    psi_registry_remove(entry);
    psi_registry_remove(entry_lo);
}

static void test_tcp_ipv6(void **state)
{
    char entry[PATH_MAX];
    listener l;

    if (tcp_listen(&l, AF_INET6, "::1", 0, 0) < 0)
        skip(); /* no IPv6 on this host */
    register_listener(&l, entry);
    assert_true(dest6("::1", l.port));
    assert_false(dest4("127.0.0.1", l.port));
    close(l.fd);
    assert_false(dest6("::1", l.port));

    /* a dual-stack "::" listener takes IPv4 too */
    tcp_listen_ok(&l, AF_INET6, "::", 0, 0);
    register_listener(&l, entry);
    assert_true(dest6("::1", l.port));
    assert_true(dest4("127.0.0.1", l.port));
    assert_true(dest6("::ffff:127.0.0.1", l.port));
    close(l.fd);
    psi_registry_remove(entry);
}

static void test_bad_addresses(void **state)
{
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = 0};
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    char entry[PATH_MAX];
    psi_err err;

    inet_pton(AF_INET, "127.0.0.1", &in.sin_addr);
    assert_int_equal(psi_registry_add((struct sockaddr *)&in, sizeof in, 5, entry, sizeof entry,
                                      &err), -1); /* no port */
    assert_int_equal(psi_registry_add((struct sockaddr *)&un, offsetof(struct sockaddr_un, sun_path),
                                      5, entry, sizeof entry, &err), -1); /* unnamed */
    assert_false(psi_registry_is_interposed((struct sockaddr *)&in, sizeof in));
    assert_false(psi_registry_is_interposed((struct sockaddr *)&in, sizeof in - 1));
    assert_false(psi_registry_is_interposed(NULL, 0));
}

/* ---- unix ------------------------------------------------------------- */

static int unix_listen(listener *l, const char *path, size_t path_len)
{
    struct sockaddr_un *un = (struct sockaddr_un *)&l->addr;

    memset(l, 0, sizeof *l);
    l->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(l->fd >= 0);
    un->sun_family = AF_UNIX;
    memcpy(un->sun_path, path, path_len);
    l->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + path_len);
    assert_int_equal(bind(l->fd, (struct sockaddr *)un, l->len), 0);
    assert_int_equal(listen(l->fd, 4), 0);
    l->inode = fd_inode(l->fd);
    return 0;
}

static bool dest_unix(const char *path, size_t path_len)
{
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    memcpy(un.sun_path, path, path_len);
    return psi_registry_is_interposed((struct sockaddr *)&un,
                                      (socklen_t)(offsetof(struct sockaddr_un, sun_path) + path_len));
}

static void test_unix_path(void **state)
{
    char path[108], other[108], entry[PATH_MAX], want[PATH_MAX];
    listener l, plain;

    snprintf(path, sizeof path, "%s/s.sock", g_dir);
    snprintf(other, sizeof other, "%s/t.sock", g_dir);
    unix_listen(&l, path, strlen(path) + 1);
    register_listener(&l, entry);
    snprintf(want, sizeof want, "%s/registry/unix-", g_dir);
    assert_true(strncmp(entry, want, strlen(want)) == 0);
    assert_int_equal(strspn(entry + strlen(want), "0123456789abcdef"), 16);

    assert_true(dest_unix(path, strlen(path) + 1));
    assert_true(dest_unix(path, strlen(path))); /* without the NUL */
    assert_false(dest_unix(other, strlen(other) + 1));

    /* the path is unlinked and re-bound by a server that is not ours */
    unlink(path);
    unix_listen(&plain, path, strlen(path) + 1);
    assert_false(dest_unix(path, strlen(path) + 1));
    close(plain.fd);
    unlink(path);

    close(l.fd);
    assert_false(dest_unix(path, strlen(path) + 1));
    psi_registry_remove(entry);
}

static void test_unix_abstract(void **state)
{
    char name[64], entry[PATH_MAX];
    size_t n;
    listener l;

    n = (size_t)snprintf(name + 1, sizeof name - 1, "psi-test-%ld", (long)getpid()) + 1;
    name[0] = '\0';
    unix_listen(&l, name, n);
    register_listener(&l, entry);
    assert_true(dest_unix(name, n));
    assert_false(dest_unix(name, n - 1)); /* abstract names are length-exact */
    assert_false(dest_unix(name + 1, n - 1)); /* the same text as a file path */
    close(l.fd);
    assert_false(dest_unix(name, n));
    psi_registry_remove(entry);
}

/* ---- gc --------------------------------------------------------------- */

static int count_entries(void)
{
    char path[PATH_MAX];
    struct dirent *de;
    int n = 0;
    DIR *d;

    snprintf(path, sizeof path, "%s/registry", g_dir);
    d = opendir(path);
    assert_non_null(d);
    while ((de = readdir(d)))
        n += de->d_name[0] != '.' || strncmp(de->d_name, ".tmp-", 5) == 0;
    closedir(d);
    return n;
}

static void test_gc(void **state)
{
    char live_entry[PATH_MAX], dead_entry[PATH_MAX], unix_entry[PATH_MAX], path[PATH_MAX];
    char sock[108];
    listener live, dead, ul;
    psi_err err;
    FILE *f;

    assert_int_equal(count_entries(), 0); /* earlier tests cleaned up */

    tcp_listen_ok(&live, AF_INET, "127.0.0.1", 0, 0);
    tcp_listen_ok(&dead, AF_INET, "127.0.0.1", 0, 0);
    snprintf(sock, sizeof sock, "%s/gc.sock", g_dir);
    unix_listen(&ul, sock, strlen(sock) + 1);
    register_listener(&live, live_entry);
    register_listener(&dead, dead_entry);
    register_listener(&ul, unix_entry);
    close(dead.fd);

    /* debris: a dead writer's temp file, and a file that is not ours */
    snprintf(path, sizeof path, "%s/registry/.tmp-999999999-tcp-1-999999999-1", g_dir);
    f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    snprintf(path, sizeof path, "%s/registry/README", g_dir);
    f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);

    assert_int_equal(psi_registry_gc(&err), 2);
    assert_true(file_exists(live_entry));
    assert_true(file_exists(unix_entry));
    assert_false(file_exists(dead_entry));
    assert_true(file_exists(path));
    assert_true(dest4("127.0.0.1", live.port));

    close(ul.fd);
    unlink(sock);
    assert_int_equal(psi_registry_gc(&err), 1);
    assert_false(file_exists(unix_entry));
    close(live.fd);
    assert_int_equal(psi_registry_gc(&err), 1);
    assert_int_equal(psi_registry_gc(&err), 0);
    unlink(path);
}

/* ---- fixture ---------------------------------------------------------- */

static int setup(void **state)
{
    if (!mkdtemp(g_dir))
        return -1;
    return setenv("PSI_RUNTIME_DIR", g_dir, 1);
}

static int teardown(void **state)
{
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_runtime_dir_refusals), /* first: see its comment */
        cmocka_unit_test(test_runtime_dir_env),
        cmocka_unit_test(test_tcp_live_then_closed),
        cmocka_unit_test(test_tcp_wildcard_listener),
        cmocka_unit_test(test_tcp_entry_for_other_socket),
        cmocka_unit_test(test_tcp_most_specific_listener),
        cmocka_unit_test(test_tcp_ipv6),
        cmocka_unit_test(test_bad_addresses),
        cmocka_unit_test(test_unix_path),
        cmocka_unit_test(test_unix_abstract),
        cmocka_unit_test(test_gc),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
