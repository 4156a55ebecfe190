/* psi_registry: the host-local registry of interposed listeners (DESIGN §3).
 *
 * Entries are files in <runtime>/registry/ whose *name* carries everything a
 * lookup needs, so a connect() reads one directory and, only if a name
 * matches, /proc/net; the file's one line is for people and `psi gc`:
 *
 *   tcp-<port>-<pid>-<inode>          "tcp 127.0.0.1 8080 <pid> <inode>"
 *                                     (IPv4 and IPv6 share the port space,
 *                                     the line says tcp or tcp6)
 *   unix-<h>-<pid>-<inode>            "unix <path> <pid> <inode>", h = 16 hex
 *                                     digits of xxh3-64 of the path, the path
 *                                     %-escaped; abstract names as "@name"
 *
 * The registry only proposes: an entry counts if the kernel still shows its
 * inode listening on that port or path, and if every listener that would
 * take the connection is registered (a replaced server is not). */
#include "psi_registry.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <xxhash.h>

#include "pol_net.h"
#include "psi_log.h"

#define MAX_CANDIDATES 64 /* registered listeners on one port we consider */
#define UNIX_KEY_MAX (sizeof(((struct sockaddr_un *)0)->sun_path) + 1)

/* A connect() destination or a listener's address, normalised. */
typedef struct endpoint {
    int family;              /* AF_INET (also for v4-mapped), AF_INET6, AF_UNIX */
    unsigned char addr[16];
    int port;
    char key[UNIX_KEY_MAX];  /* unix: path, or '@' + abstract name (raw bytes) */
    size_t key_len;
} endpoint;

static int endpoint_from(const struct sockaddr *sa, socklen_t len, endpoint *ep)
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

    memset(ep, 0, sizeof *ep);
    if (!sa || len < (socklen_t)sizeof(sa_family_t))
        return -1;
    if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const void *)sa;
        ep->family = AF_INET;
        memcpy(ep->addr, &in->sin_addr, 4);
        ep->port = ntohs(in->sin_port);
        return 0;
    }
    if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const void *)sa;
        const unsigned char *a = in6->sin6_addr.s6_addr;
        ep->family = memcmp(a, mapped, 12) == 0 ? AF_INET : AF_INET6;
        memcpy(ep->addr, ep->family == AF_INET ? a + 12 : a, ep->family == AF_INET ? 4 : 16);
        ep->port = ntohs(in6->sin6_port);
        return 0;
    }
    if (sa->sa_family == AF_UNIX) {
        const struct sockaddr_un *un = (const void *)sa;
        size_t off = offsetof(struct sockaddr_un, sun_path), n;
        if (len <= off)
            return -1; /* unnamed */
        n = len - off;
        if (n > sizeof un->sun_path)
            n = sizeof un->sun_path;
        ep->family = AF_UNIX;
        if (un->sun_path[0]) {
            ep->key_len = strnlen(un->sun_path, n);
            memcpy(ep->key, un->sun_path, ep->key_len);
        } else {
            if (n < 2)
                return -1;
            ep->key[0] = '@';
            memcpy(ep->key + 1, un->sun_path + 1, n - 1);
            ep->key_len = n;
        }
        return 0;
    }
    return -1;
}

/* The path as /proc/net/unix prints it: abstract names' 0 bytes as '@'. */
static void unix_proc_form(const endpoint *ep, char *out)
{
    for (size_t i = 0; i < ep->key_len; i++)
        out[i] = ep->key[i] ? ep->key[i] : '@';
    out[ep->key_len] = '\0';
}

/* "tcp-8080-" or "unix-0123456789abcdef-": what every entry for ep starts with. */
static void entry_prefix(const endpoint *ep, char *out, size_t cap)
{
    if (ep->family == AF_UNIX)
        snprintf(out, cap, "unix-%016llx-",
                 (unsigned long long)XXH3_64bits(ep->key, ep->key_len));
    else
        snprintf(out, cap, "tcp-%d-", ep->port);
}

static int registry_dir(char *out, size_t cap, bool create, psi_err *err)
{
    const char *rt = psi_runtime_dir();

    if (!rt)
        return psi_fail(err, EACCES, "no usable runtime directory (see the log)");
    if ((size_t)snprintf(out, cap, "%s/registry", rt) >= cap)
        return psi_fail(err, ENAMETOOLONG, "runtime directory path too long");
    if (create && mkdir(out, 0700) < 0 && errno != EEXIST)
        return psi_fail(err, errno, "cannot create '%s': %s", out, strerror(errno));
    return 0;
}

/* ---- adding ----------------------------------------------------------- */

/* The human line of an entry; unix paths %-escaped so it stays one line. */
static void entry_line(const endpoint *ep, ino_t inode, char *out, size_t cap)
{
    char addr[INET6_ADDRSTRLEN], esc[UNIX_KEY_MAX * 3 + 1];
    size_t n = 0;

    if (ep->family == AF_UNIX) {
        for (size_t i = 0; i < ep->key_len; i++) {
            unsigned char c = (unsigned char)ep->key[i];
            if (c <= 0x20 || c == '%' || c >= 0x7f)
                n += (size_t)sprintf(esc + n, "%%%02X", c);
            else
                esc[n++] = (char)c;
        }
        esc[n] = '\0';
        snprintf(out, cap, "unix %s %ld %llu\n", esc, (long)getpid(),
                 (unsigned long long)inode);
        return;
    }
    inet_ntop(ep->family, ep->addr, addr, sizeof addr);
    snprintf(out, cap, "%s %s %d %ld %llu\n", ep->family == AF_INET ? "tcp" : "tcp6", addr,
             ep->port, (long)getpid(), (unsigned long long)inode);
}

static int write_file(int dfd, const char *name, const char *text, psi_err *err)
{
    int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    size_t len = strlen(text);

    if (fd < 0)
        return psi_fail(err, errno, "cannot create registry file '%s': %s", name,
                        strerror(errno));
    if (write(fd, text, len) != (ssize_t)len) {
        int e = errno ? errno : EIO;
        close(fd);
        unlinkat(dfd, name, 0);
        return psi_fail(err, e, "cannot write registry file '%s': %s", name, strerror(e));
    }
    close(fd);
    return 0;
}

/* Written under a temporary name and renamed, so a reader never sees a
 * half-written entry. */
static int write_entry(const char *dir, const char *name, ino_t inode, const char *line,
                       psi_err *err)
{
    char tmp[64];
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = 0;

    if (dfd < 0)
        return psi_fail(err, errno, "cannot open '%s': %s", dir, strerror(errno));
    snprintf(tmp, sizeof tmp, ".tmp-%ld-%llu", (long)getpid(), (unsigned long long)inode);
    if (write_file(dfd, tmp, line, err) < 0) {
        rc = -1;
    } else if (renameat(dfd, tmp, dfd, name) < 0) {
        int e = errno;
        unlinkat(dfd, tmp, 0);
        rc = psi_fail(err, e, "cannot rename registry entry '%s': %s", name, strerror(e));
    }
    close(dfd);
    return rc;
}

int psi_registry_add(const struct sockaddr *sa, socklen_t len, ino_t inode, char *entry,
                     size_t entry_cap, psi_err *err)
{
    char dir[PATH_MAX], name[NAME_MAX + 1], line[512];
    endpoint ep;

    if (endpoint_from(sa, len, &ep) < 0)
        return psi_fail(err, EINVAL, "not a bound TCP or named unix socket address");
    if (ep.family != AF_UNIX && ep.port == 0)
        return psi_fail(err, EINVAL, "socket has no port yet");
    if (registry_dir(dir, sizeof dir, true, err) < 0)
        return -1;
    entry_prefix(&ep, name, sizeof name);
    snprintf(name + strlen(name), sizeof name - strlen(name), "%ld-%llu", (long)getpid(),
             (unsigned long long)inode);
    if (!entry || (size_t)snprintf(entry, entry_cap, "%s/%s", dir, name) >= entry_cap)
        return psi_fail(err, ENAMETOOLONG, "registry entry path does not fit");
    entry_line(&ep, inode, line, sizeof line);
    return write_entry(dir, name, inode, line, err);
}

void psi_registry_remove(const char *entry)
{
    int saved = errno;

    if (entry && *entry)
        unlink(entry);
    errno = saved;
}

/* ---- entry names ------------------------------------------------------ */

typedef struct entry_id {
    pid_t pid;
    ino_t inode;
} entry_id;

/* Parses the "<pid>-<inode>" that follows an entry's prefix. */
static int parse_tail(const char *s, entry_id *id)
{
    char *end;
    long pid = strtol(s, &end, 10);
    unsigned long long ino;

    if (end == s || *end != '-' || pid <= 0)
        return -1;
    s = end + 1;
    ino = strtoull(s, &end, 10);
    if (end == s || *end || ino == 0)
        return -1;
    id->pid = (pid_t)pid;
    id->inode = (ino_t)ino;
    return 0;
}

/* ---- lookup ----------------------------------------------------------- */

typedef struct lookup {
    const endpoint *dest;
    char proc_path[UNIX_KEY_MAX];
    entry_id cand[MAX_CANDIDATES];
    char cand_name[MAX_CANDIDATES][NAME_MAX + 1];
    bool cand_alive[MAX_CANDIDATES];
    size_t ncand;
    int best;            /* score of the listeners that would take the connect */
    bool best_registered;/* ...and whether all of them are registered */
} lookup;

/* Does process pid still have the interposer mapped? A registered process
 * may have exec'd an image without it (LD_PRELOAD dropped, a static or
 * setuid binary) and kept the listening socket: its inode still listens,
 * but HELLO would reach an application that cannot decode it. */
static bool pid_interposed(pid_t pid)
{
    if (pid == getpid())
        return true; /* this process runs this code, preloaded or linked */
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/%ld/maps", (long)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return false; /* gone, or not ours to read: do not offer */
    bool found = false;
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, "/libpsinterpose") != NULL;
    fclose(f);
    return found;
}

/* Is inode one of the registered candidates? Marks it alive: the kernel
 * shows it listening on the entry's port or path. It counts as registered
 * only while the registering process still runs the interposer. */
static bool mark_alive(lookup *lk, ino_t inode)
{
    bool found = false;

    for (size_t i = 0; i < lk->ncand; i++) {
        if (lk->cand[i].inode == inode) {
            lk->cand_alive[i] = true;
            found = found || pid_interposed(lk->cand[i].pid);
        }
    }
    return found;
}

/* Records a listener that would accept the destination with `score`: the
 * kernel hands the connection to the most specific one, so only those
 * count, and all of them must be ours (SO_REUSEPORT may share a port). */
static void consider(lookup *lk, int score, bool registered)
{
    if (score > lk->best) {
        lk->best = score;
        lk->best_registered = registered;
    } else if (score == lk->best) {
        lk->best_registered = lk->best_registered && registered;
    }
}

/* How specifically listener l covers destination d (0: it does not). */
static int tcp_score(const pol_tcp_listener *l, const endpoint *d)
{
    static const unsigned char zero[16];
    size_t alen = d->family == AF_INET ? 4 : 16;

    if (l->port != d->port)
        return 0;
    if (l->family == d->family && memcmp(l->addr, d->addr, alen) == 0)
        return 3;
    if (l->family == d->family && memcmp(l->addr, zero, alen) == 0)
        return 2;
    /* A dual-stack "::" listener also takes IPv4 connections. */
    if (l->family == AF_INET6 && d->family == AF_INET && memcmp(l->addr, zero, 16) == 0)
        return 1;
    return 0;
}

static int on_tcp(void *ctx, const pol_tcp_listener *l)
{
    lookup *lk = ctx;
    bool registered;
    int score;

    if (l->port != lk->dest->port)
        return 0;
    /* Alive even if it does not cover this destination (a listener on
     * 127.0.0.1 when we connect to 127.0.0.2): its entry stays. */
    registered = mark_alive(lk, l->inode);
    score = tcp_score(l, lk->dest);
    if (score)
        consider(lk, score, registered);
    return 0;
}

static int on_unix(void *ctx, ino_t inode, const char *path)
{
    lookup *lk = ctx;
    bool registered = mark_alive(lk, inode);

    if (strcmp(path, lk->proc_path) == 0)
        consider(lk, 1, registered);
    return 0;
}

/* Collects the registry entries for dest's port or path. */
static void collect(lookup *lk, DIR *d)
{
    char prefix[64];
    struct dirent *de;
    size_t plen;

    entry_prefix(lk->dest, prefix, sizeof prefix);
    plen = strlen(prefix);
    while ((de = readdir(d)) && lk->ncand < MAX_CANDIDATES) {
        entry_id id;
        if (strncmp(de->d_name, prefix, plen) != 0 || parse_tail(de->d_name + plen, &id) < 0)
            continue;
        lk->cand[lk->ncand] = id;
        lk->cand_alive[lk->ncand] = false;
        memcpy(lk->cand_name[lk->ncand], de->d_name, strlen(de->d_name) + 1);
        lk->ncand++;
    }
}

/* Drops entries the scan showed dead; the lookup already paid for it. */
static void prune(const lookup *lk, DIR *d)
{
    for (size_t i = 0; i < lk->ncand; i++)
        if (!lk->cand_alive[i] && pol_pid_dead_here(lk->cand[i].pid))
            unlinkat(dirfd(d), lk->cand_name[i], 0);
}

static bool dest_is_local(endpoint *d)
{
    static const unsigned char zero[16];

    if (d->family == AF_UNIX)
        return true;
    if (!pol_addr_is_local(d->family, d->addr))
        return false;
    /* connect() to the wildcard reaches the loopback address. */
    if (d->family == AF_INET && memcmp(d->addr, zero, 4) == 0)
        d->addr[0] = 127, d->addr[3] = 1;
    else if (d->family == AF_INET6 && memcmp(d->addr, zero, 16) == 0)
        d->addr[15] = 1;
    return true;
}

bool psi_registry_is_interposed(const struct sockaddr *sa, socklen_t len)
{
    int saved = errno;
    char dir[PATH_MAX];
    endpoint dest;
    lookup *lk;
    DIR *d;
    bool found = false;

    if (endpoint_from(sa, len, &dest) < 0 || (dest.family != AF_UNIX && dest.port == 0) ||
        !dest_is_local(&dest) || registry_dir(dir, sizeof dir, false, NULL) < 0)
        goto out;
    /* ~20 KiB of names: too big for a hook's stack, and connect() only. */
    lk = calloc(1, sizeof *lk);
    if (!lk)
        goto out;
    lk->dest = &dest;
    d = opendir(dir);
    if (d)
        collect(lk, d);
    if (lk->ncand) {
        int rc;
        if (dest.family == AF_UNIX) {
            unix_proc_form(&dest, lk->proc_path);
            rc = pol_unix_listeners(on_unix, lk);
        } else {
            rc = pol_tcp_listeners(on_tcp, lk);
        }
        found = lk->best > 0 && lk->best_registered;
        if (rc == 0) /* only a complete scan can call an entry dead */
            prune(lk, d);
    }
    if (d)
        closedir(d);
    free(lk);
out:
    errno = saved;
    return found;
}

/* ---- gc --------------------------------------------------------------- */

typedef struct live_set {
    struct { ino_t inode; int port; } *v; /* port -1: a unix listener */
    size_t n, cap;
} live_set;

static int live_push(live_set *s, ino_t inode, int port)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        void *v = realloc(s->v, cap * sizeof s->v[0]);
        if (!v)
            return -1;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n].inode = inode;
    s->v[s->n].port = port;
    s->n++;
    return 0;
}

static int gc_on_tcp(void *ctx, const pol_tcp_listener *l)
{
    return live_push(ctx, l->inode, l->port) < 0;
}

/* An inode is bound to one path for its life, so a listening inode is
 * enough to keep a unix entry. */
static int gc_on_unix(void *ctx, ino_t inode, const char *path)
{
    return live_push(ctx, inode, -1) < 0;
}

/* Is the entry `name` (tcp-... or unix-...) still a listening socket? */
static bool entry_alive(const live_set *s, const char *name, entry_id *id)
{
    unsigned long long hash;
    int port = -1, off = 0;

    if (sscanf(name, "tcp-%d-%n", &port, &off) == 1 && off > 0) {
        if (parse_tail(name + off, id) < 0)
            return true; /* not ours to judge */
        for (size_t i = 0; i < s->n; i++)
            if (s->v[i].inode == id->inode && s->v[i].port == port)
                return true;
        return false;
    }
    if (sscanf(name, "unix-%16llx-%n", &hash, &off) == 1 && off > 0) {
        if (parse_tail(name + off, id) < 0)
            return true;
        for (size_t i = 0; i < s->n; i++)
            if (s->v[i].inode == id->inode && s->v[i].port == -1)
                return true;
        return false;
    }
    return true; /* a file we did not write: leave it */
}

/* A temporary file left by a writer that died between write and rename. */
static bool stale_tmp(const char *name)
{
    long pid;

    return sscanf(name, ".tmp-%ld-", &pid) == 1 && pol_pid_dead_here((pid_t)pid) &&
           pid != (long)getpid();
}

int psi_registry_gc(psi_err *err)
{
    char dir[PATH_MAX];
    live_set live = {0};
    struct dirent *de;
    int removed = 0;
    DIR *d;

    if (registry_dir(dir, sizeof dir, false, err) < 0)
        return -1;
    d = opendir(dir);
    if (!d) {
        if (errno == ENOENT)
            return 0;
        return psi_fail(err, errno, "cannot read '%s': %s", dir, strerror(errno));
    }
    /* Without a complete picture of the listeners, removing anything could
     * drop live entries: fail instead. */
    if (pol_tcp_listeners(gc_on_tcp, &live) < 0 || pol_unix_listeners(gc_on_unix, &live) < 0) {
        closedir(d);
        free(live.v);
        return psi_fail(err, EIO, "cannot read /proc/net: %s", strerror(errno));
    }
    while ((de = readdir(d))) {
        entry_id id = {0};
        bool dead = de->d_name[0] == '.' ? stale_tmp(de->d_name)
                                          : !entry_alive(&live, de->d_name, &id) &&
                                                pol_pid_dead_here(id.pid);
        if (!dead)
            continue;
        if (unlinkat(dirfd(d), de->d_name, 0) == 0)
            removed++;
    }
    closedir(d);
    free(live.v);
    return removed;
}
