/* PSI_PEERS: the list of destinations known to be interposed (DESIGN §3).
 *
 * Parsed once at load time (names resolved then, never on connect), matched
 * on every connect() to decide whether to offer HELLO. */
#include "psi_config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#define ENTRY_MAX 512 /* longest entry we quote back in a message */

/* ---- parsing ---------------------------------------------------------- */

static int peer_room(psi_config *cfg, const char *entry, psi_err *err)
{
    if (cfg->npeers >= PSI_MAX_PEERS)
        return psi_fail(err, ENOSPC, "'%s': more than %d peers", entry, PSI_MAX_PEERS);
    return 0;
}

/* A v4-mapped IPv6 address (::ffff:a.b.c.d) is the IPv4 host; store it as
 * such so one comparison covers both spellings. */
static void peer_set_addr(psi_peer *p, int family, const void *addr)
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

    p->kind = PSI_PEER_INET;
    memset(p->addr, 0, sizeof p->addr);
    if (family == AF_INET6 && memcmp(addr, mapped, 12) == 0) {
        p->family = AF_INET;
        memcpy(p->addr, (const unsigned char *)addr + 12, 4);
    } else {
        p->family = family;
        memcpy(p->addr, addr, family == AF_INET ? 4 : 16);
    }
}

static bool peer_same(const psi_peer *a, const psi_peer *b)
{
    return a->kind == b->kind && a->family == b->family && a->port == b->port &&
           memcmp(a->addr, b->addr, sizeof a->addr) == 0 && strcmp(a->path, b->path) == 0;
}

/* Appends p unless an identical peer is already listed. */
static void peer_push(psi_config *cfg, const psi_peer *p)
{
    for (size_t i = 0; i < cfg->npeers; i++)
        if (peer_same(&cfg->peers[i], p))
            return;
    cfg->peers[cfg->npeers++] = *p;
}

static int parse_unix(const char *entry, const char *path, psi_config *cfg, psi_err *err)
{
    psi_peer p = {.kind = PSI_PEER_UNIX, .port = -1};
    size_t n = strlen(path);

    if (n == 0 || (path[0] == '@' && n == 1))
        return psi_fail(err, EINVAL, "'%s': empty unix socket path", entry);
    /* Filesystem paths need room for their NUL in sun_path; an abstract
     * "@name" is stored with its '@' in place of the leading 0 byte. */
    if (n >= sizeof p.path)
        return psi_fail(err, ENAMETOOLONG, "'%s': unix socket path longer than %zu bytes",
                        entry, sizeof p.path - 1);
    if (peer_room(cfg, entry, err) < 0)
        return -1;
    memcpy(p.path, path, n + 1);
    peer_push(cfg, &p);
    return 0;
}

static int parse_port(const char *entry, const char *s, int *port, psi_err *err)
{
    long v = 0;

    if (strcmp(s, "*") == 0) {
        *port = -1;
        return 0;
    }
    if (!*s)
        return psi_fail(err, EINVAL, "'%s': missing port", entry);
    for (const char *p = s; *p; p++) {
        if (!isdigit((unsigned char)*p) || (v = v * 10 + (*p - '0')) > 65535)
            return psi_fail(err, EINVAL, "'%s': port '%s' is not a number from 1 to 65535 or *",
                            entry, s);
    }
    if (v == 0)
        return psi_fail(err, EINVAL, "'%s': port 0 is not a destination", entry);
    *port = (int)v;
    return 0;
}

/* Resolves a host name; adds every address it has, until the table fills. */
static int resolve_host(const char *entry, const char *host, int port, psi_config *cfg,
                        psi_err *err)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res, *ai;
    size_t before = cfg->npeers;
    int rc = getaddrinfo(host, NULL, &hints, &res);

    if (rc != 0)
        return psi_fail(err, EINVAL, "'%s': cannot resolve '%s' (%s)", entry, host,
                        gai_strerror(rc));
    for (ai = res; ai; ai = ai->ai_next) {
        psi_peer p = {.port = port};
        if (ai->ai_family == AF_INET)
            peer_set_addr(&p, AF_INET, &((struct sockaddr_in *)ai->ai_addr)->sin_addr);
        else if (ai->ai_family == AF_INET6)
            peer_set_addr(&p, AF_INET6, &((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr);
        else
            continue;
        if (cfg->npeers >= PSI_MAX_PEERS)
            break;
        peer_push(cfg, &p);
    }
    freeaddrinfo(res);
    if (cfg->npeers == before && before >= PSI_MAX_PEERS)
        return peer_room(cfg, entry, err);
    return 0;
}

static int parse_inet(const char *entry, char *s, psi_config *cfg, psi_err *err)
{
    unsigned char addr[16] = {0};
    char *host = s, *colon;
    psi_peer p = {0};
    int port = 0;

    if (s[0] == '[') {
        char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return psi_fail(err, EINVAL, "'%s': expected [v6addr]:port", entry);
        *close = '\0';
        host = s + 1;
        colon = close + 1;
        if (inet_pton(AF_INET6, host, addr) != 1)
            return psi_fail(err, EINVAL, "'%s': '%s' is not an IPv6 address", entry, host);
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return psi_fail(err, EINVAL, "'%s': missing ':port'", entry);
        if (memchr(s, ':', (size_t)(colon - s)))
            return psi_fail(err, EINVAL, "'%s': write IPv6 addresses in brackets, as [::1]:5000",
                            entry);
        *colon = '\0';
        if (!*host)
            return psi_fail(err, EINVAL, "'%s': missing host", entry);
    }
    if (parse_port(entry, colon + 1, &port, err) < 0)
        return -1;

    if (s[0] == '[') {
        peer_set_addr(&p, AF_INET6, addr);
    } else if (inet_pton(AF_INET, host, addr) == 1) {
        peer_set_addr(&p, AF_INET, addr);
    } else {
        return resolve_host(entry, host, port, cfg, err);
    }
    if (peer_room(cfg, entry, err) < 0)
        return -1;
    p.port = port;
    peer_push(cfg, &p);
    return 0;
}

static int parse_entry(const char *entry, psi_config *cfg, psi_err *err)
{
    char buf[ENTRY_MAX];

    if (strncmp(entry, "unix:", 5) == 0)
        return parse_unix(entry, entry + 5, cfg, err);
    if (strlen(entry) >= sizeof buf)
        return psi_fail(err, EINVAL, "'%.40s...': entry too long", entry);
    strcpy(buf, entry); /* parse_inet cuts it in place */
    return parse_inet(entry, buf, cfg, err);
}

int psi_parse_peers(const char *s, psi_config *cfg, psi_err *err)
{
    char entry[ENTRY_MAX];

    if (!s)
        return 0;
    while (*s) {
        const char *end = strchr(s, ',');
        size_t n = end ? (size_t)(end - s) : strlen(s);

        /* Trim the blanks a user puts after commas or around the list. */
        while (n && isspace((unsigned char)*s))
            s++, n--;
        while (n && isspace((unsigned char)s[n - 1]))
            n--;
        if (n >= sizeof entry)
            return psi_fail(err, EINVAL, "'%.40s...': entry too long", s);
        if (n) {
            memcpy(entry, s, n);
            entry[n] = '\0';
            if (parse_entry(entry, cfg, err) < 0)
                return -1;
        }
        if (!end)
            break;
        s = end + 1;
    }
    return 0;
}

/* ---- matching --------------------------------------------------------- */

static bool match_inet(const psi_config *cfg, int family, const unsigned char *addr, int port)
{
    size_t alen = family == AF_INET ? 4 : 16;

    for (size_t i = 0; i < cfg->npeers; i++) {
        const psi_peer *p = &cfg->peers[i];
        if (p->kind == PSI_PEER_INET && p->family == family &&
            (p->port == -1 || p->port == port) && memcmp(p->addr, addr, alen) == 0)
            return true;
    }
    return false;
}

/* Compares a connect() unix address with "path" or "@abstract" peers. */
static bool match_unix(const psi_config *cfg, const struct sockaddr_un *sun, socklen_t len)
{
    size_t off = offsetof(struct sockaddr_un, sun_path);
    size_t n;

    if (len <= off)
        return false; /* unnamed */
    n = len - off;
    if (n > sizeof sun->sun_path)
        n = sizeof sun->sun_path;
    if (sun->sun_path[0] != '\0')
        n = strnlen(sun->sun_path, n);

    for (size_t i = 0; i < cfg->npeers; i++) {
        const psi_peer *p = &cfg->peers[i];
        if (p->kind != PSI_PEER_UNIX)
            continue;
        /* "@name" always means an abstract socket, never a file "@name". */
        if (sun->sun_path[0] != '\0') {
            if (p->path[0] != '@' && strlen(p->path) == n &&
                memcmp(p->path, sun->sun_path, n) == 0)
                return true;
        } else if (p->path[0] == '@' && strlen(p->path) == n &&
                   memcmp(p->path + 1, sun->sun_path + 1, n - 1) == 0) {
            return true;
        }
    }
    return false;
}

bool psi_peers_match(const psi_config *cfg, const struct sockaddr *sa, socklen_t len)
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

    if (!cfg || !sa || cfg->npeers == 0 || len < (socklen_t)sizeof(sa_family_t))
        return false;
    switch (sa->sa_family) {
    case AF_INET: {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        if (len < (socklen_t)sizeof *in)
            return false;
        return match_inet(cfg, AF_INET, (const unsigned char *)&in->sin_addr,
                          ntohs(in->sin_port));
    }
    case AF_INET6: {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        const unsigned char *a = in6->sin6_addr.s6_addr;
        if (len < (socklen_t)sizeof *in6)
            return false;
        if (memcmp(a, mapped, 12) == 0)
            return match_inet(cfg, AF_INET, a + 12, ntohs(in6->sin6_port));
        return match_inet(cfg, AF_INET6, a, ntohs(in6->sin6_port));
    }
    case AF_UNIX:
        return match_unix(cfg, (const struct sockaddr_un *)sa, len);
    default:
        return false;
    }
}
