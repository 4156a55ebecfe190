/* pol_net: listening sockets and local addresses (see pol_net.h). */
#include "pol_net.h"
#include "psi_text.h"

#include <errno.h>
#include <ifaddrs.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TCP_LISTEN_STATE 0x0A     /* TCP_LISTEN in /proc/net/tcp's "st" column */
#define UNIX_ACCEPTCON 0x00010000 /* __SO_ACCEPTCON in /proc/net/unix "Flags" */

static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* ---- /proc/net/tcp{,6} ------------------------------------------------ */


/* The kernel prints each 32-bit word of the address with %08X as a host
 * integer, so the word's bytes come back by storing the value natively. */
static int parse_hex_addr(const char *s, size_t nwords, unsigned char *out)
{
    for (size_t w = 0; w < nwords; w++) {
        uint32_t v = 0;
        for (int i = 0; i < 8; i++) {
            int d = psi_hex_digit(*s++);
            if (d < 0)
                return -1;
            v = v << 4 | (uint32_t)d;
        }
        memcpy(out + 4 * w, &v, 4);
    }
    return 0;
}

/* "0100007F:1F90" or a 32-digit IPv6 form; fills l's family/addr/port. */
static int parse_local(const char *s, size_t len, pol_tcp_listener *l)
{
    const char *colon = memchr(s, ':', len);
    unsigned port = 0;

    if (!colon || (colon - s != 8 && colon - s != 32) || s + len - colon != 5)
        return -1;
    memset(l->addr, 0, sizeof l->addr);
    if (parse_hex_addr(s, (size_t)(colon - s) / 8, l->addr) < 0)
        return -1;
    l->family = colon - s == 8 ? AF_INET : AF_INET6;
    if (l->family == AF_INET6 && memcmp(l->addr, v4mapped, 12) == 0) {
        memmove(l->addr, l->addr + 12, 4);
        memset(l->addr + 4, 0, 12);
        l->family = AF_INET;
    }
    for (int i = 1; i <= 4; i++) {
        int d = psi_hex_digit(colon[i]);
        if (d < 0)
            return -1;
        port = port << 4 | (unsigned)d;
    }
    l->port = (int)port;
    return 0;
}

/* One line: "sl local rem st tx:rx tr:when retrnsmt uid timeout inode ..."
 * Returns 1 for a LISTEN socket (l filled), 0 otherwise. */
static int parse_tcp_line(char *line, pol_tcp_listener *l)
{
    char *save = NULL, *tok[10];
    int n = 0;

    for (char *t = strtok_r(line, " \t\n", &save); t && n < 10; t = strtok_r(NULL, " \t\n", &save))
        tok[n++] = t;
    if (n < 10 || strtol(tok[3], NULL, 16) != TCP_LISTEN_STATE)
        return 0;
    if (parse_local(tok[1], strlen(tok[1]), l) < 0)
        return 0;
    l->inode = (ino_t)strtoull(tok[9], NULL, 10);
    return l->inode != 0;
}

/* Returns 1 if fn stopped the scan, 0 if the file was read, -1 if not. */
static int scan_tcp_file(const char *path, int (*fn)(void *, const pol_tcp_listener *),
                         void *ctx)
{
    FILE *f = fopen(path, "re");
    char *line = NULL;
    size_t cap = 0;
    int stop = 0;

    if (!f)
        return -1;
    if (getline(&line, &cap, f) > 0) { /* the header */
        while (!stop && getline(&line, &cap, f) > 0) {
            pol_tcp_listener l;
            if (parse_tcp_line(line, &l))
                stop = fn(ctx, &l) != 0;
        }
    }
    free(line);
    fclose(f);
    return stop;
}

/* Listening TCP sockets of one family through NETLINK_SOCK_DIAG: the
 * kernel returns only sockets in LISTEN state, so the cost does not grow
 * with the number of established connections (/proc/net/tcp lists every
 * socket: a process with 1000 connections parsed 1000 lines per connect).
 * Returns 1 if fn stopped the walk, 0 at the end, -1 on any netlink error
 * (the caller then falls back to /proc). */
static int diag_tcp_listeners(int family, int (*fn)(void *, const pol_tcp_listener *),
                              void *ctx)
{
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (fd < 0)
        return -1;
    struct {
        struct nlmsghdr nlh;
        struct inet_diag_req_v2 req;
    } q;
    memset(&q, 0, sizeof(q));
    q.nlh.nlmsg_len = sizeof(q);
    q.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    q.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    q.req.sdiag_family = (unsigned char)family;
    q.req.sdiag_protocol = IPPROTO_TCP;
    q.req.idiag_states = 1u << TCP_LISTEN;
    struct sockaddr_nl nl = {.nl_family = AF_NETLINK};
    int rc = -1;
    if (sendto(fd, &q, sizeof(q), 0, (struct sockaddr *)&nl, sizeof(nl)) < 0)
        goto out;
    /* long: netlink messages are aligned to 4 bytes (NLMSG_ALIGN). */
    long buf[2048];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n <= 0)
            goto out;
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n);
             h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_type == NLMSG_DONE) {
                rc = 0;
                goto out;
            }
            if (h->nlmsg_type == NLMSG_ERROR ||
                h->nlmsg_len < NLMSG_LENGTH(sizeof(struct inet_diag_msg)))
                goto out;
            const struct inet_diag_msg *m = NLMSG_DATA(h);
            pol_tcp_listener l;
            memset(&l, 0, sizeof(l));
            l.family = m->idiag_family;
            l.port = ntohs(m->id.idiag_sport);
            l.inode = (ino_t)m->idiag_inode;
            memcpy(l.addr, m->id.idiag_src, family == AF_INET ? 4 : 16);
            if (fn(ctx, &l)) {
                rc = 1;
                goto out;
            }
        }
    }
out:
    close(fd);
    return rc;
}

int pol_tcp_listeners(int (*fn)(void *ctx, const pol_tcp_listener *l), void *ctx)
{
    int d4 = diag_tcp_listeners(AF_INET, fn, ctx);
    if (d4 == 1)
        return 0;
    if (d4 == 0) {
        int d6 = diag_tcp_listeners(AF_INET6, fn, ctx);
        if (d6 >= 0)
            return 0;
        /* No IPv6 in this kernel, or netlink refused it: /proc instead
         * (a listener seen twice is harmless to every caller). */
        (void)scan_tcp_file("/proc/net/tcp6", fn, ctx);
        return 0;
    }
    int r4 = scan_tcp_file("/proc/net/tcp", fn, ctx);

    if (r4 == 1)
        return 0;
    /* tcp6 is missing on hosts without IPv6, which is fine; without tcp
     * the picture is incomplete, and callers must not act on absences. */
    if (scan_tcp_file("/proc/net/tcp6", fn, ctx) == 1)
        return 0;
    return r4 < 0 ? -1 : 0;
}

/* ---- /proc/net/unix --------------------------------------------------- */

/* "Num: RefCount Protocol Flags Type St Inode [Path]"; the path is the rest
 * of the line after one space, and may itself contain spaces. */
static int parse_unix_line(char *line, ino_t *inode, const char **path)
{
    char *p = line;
    unsigned long flags = 0;

    for (int field = 0; field < 7; field++) {
        while (*p == ' ')
            p++;
        char *start = p;
        while (*p && *p != ' ' && *p != '\n')
            p++;
        if (p == start)
            return 0;
        if (field == 3)
            flags = strtoul(start, NULL, 16);
        if (field == 6)
            *inode = (ino_t)strtoull(start, NULL, 10);
    }
    if (!(flags & UNIX_ACCEPTCON))
        return 0;
    p[strcspn(p, "\n")] = '\0';
    *path = *p == ' ' ? p + 1 : p;
    return 1;
}

int pol_unix_listeners(int (*fn)(void *ctx, ino_t inode, const char *path), void *ctx)
{
    FILE *f = fopen("/proc/net/unix", "re");
    char *line = NULL;
    size_t cap = 0;

    if (!f)
        return -1;
    if (getline(&line, &cap, f) > 0) {
        while (getline(&line, &cap, f) > 0) {
            ino_t inode;
            const char *path;
            if (parse_unix_line(line, &inode, &path) && fn(ctx, inode, path))
                break;
        }
    }
    free(line);
    fclose(f);
    return 0;
}

/* ---- local addresses -------------------------------------------------- */

typedef struct ifcache {
    size_t n;
    struct { int family; unsigned char addr[16]; } a[];
} ifcache;

static _Atomic(ifcache *) g_ifcache;

/* Reads the interface addresses once. Addresses added later are not seen
 * (they are rare, and connect() must not pay a netlink round trip). */
static ifcache *ifcache_get(void)
{
    ifcache *c = atomic_load_explicit(&g_ifcache, memory_order_acquire), *expected = NULL;
    struct ifaddrs *ifa, *i;
    size_t n = 0;

    if (c)
        return c;
    if (getifaddrs(&ifa) < 0)
        return NULL;
    for (i = ifa; i; i = i->ifa_next)
        n += i->ifa_addr && (i->ifa_addr->sa_family == AF_INET ||
                             i->ifa_addr->sa_family == AF_INET6);
    c = calloc(1, sizeof *c + n * sizeof c->a[0]);
    if (c) {
        for (i = ifa; i; i = i->ifa_next) {
            if (!i->ifa_addr)
                continue;
            if (i->ifa_addr->sa_family == AF_INET) {
                c->a[c->n].family = AF_INET;
                memcpy(c->a[c->n++].addr, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, 4);
            } else if (i->ifa_addr->sa_family == AF_INET6) {
                c->a[c->n].family = AF_INET6;
                memcpy(c->a[c->n++].addr, &((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr, 16);
            }
        }
    }
    freeifaddrs(ifa);
    /* Two threads may race to fill the cache: the loser frees its copy. */
    if (c && !atomic_compare_exchange_strong(&g_ifcache, &expected, c)) {
        free(c);
        c = expected;
    }
    return c;
}

bool pol_addr_is_local(int family, const unsigned char *addr)
{
    static const unsigned char zero[16], loop6[16] = {[15] = 1};
    ifcache *c;

    if (family == AF_INET && (addr[0] == 127 || memcmp(addr, zero, 4) == 0))
        return true;
    if (family == AF_INET6 && (memcmp(addr, loop6, 16) == 0 || memcmp(addr, zero, 16) == 0))
        return true;
    if (family != AF_INET && family != AF_INET6)
        return false;
    c = ifcache_get();
    for (size_t i = 0; c && i < c->n; i++)
        if (c->a[i].family == family &&
            memcmp(c->a[i].addr, addr, family == AF_INET ? 4 : 16) == 0)
            return true;
    return false;
}

/* ---- processes -------------------------------------------------------- */

bool pol_pid_dead_here(pid_t pid)
{
    char path[64], mine[64], theirs[64];
    ssize_t a, b;

    if (pid <= 0 || (kill(pid, 0) < 0 && errno == ESRCH))
        return true;
    if (pid == getpid())
        return true;
    snprintf(path, sizeof path, "/proc/%ld/ns/net", (long)pid);
    a = readlink("/proc/self/ns/net", mine, sizeof mine);
    b = readlink(path, theirs, sizeof theirs);
    /* Unknown (no permission, a zombie): assume it listens elsewhere. */
    return a > 0 && a == b && memcmp(mine, theirs, (size_t)a) == 0;
}
