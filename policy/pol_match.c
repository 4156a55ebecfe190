/* pol_match: the rule matcher (docs/policy.md §5).
 *
 * psi_policy_decide runs in the preload library for every candidate send,
 * so it is pure: no syscalls, no allocation, no locks, and the stack walk
 * (the callers callback) happens at most once per decision, and only for a
 * rule whose every other condition already holds. Explanations for `psi
 * policy explain` share the same code path with a reason buffer. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include "pol_internal.h"
#include "psi_token.h"

/* ---- names ---------------------------------------------------------------- */

const char *pol_channel_name(int channel_bit)
{
    switch (channel_bit) {
    case POL_CH_TCP: return "tcp";
    case POL_CH_UNIX: return "unix";
    case POL_CH_PIPE: return "pipe";
    case POL_CH_UDP: return "udp";
    case POL_CH_MPI: return "mpi";
    case POL_CH_ZMQ: return "zmq";
    default: return "?";
    }
}

const char *pol_action_name(int action)
{
    switch (action) {
    case POL_ACT_PROXY: return "proxy";
    case POL_ACT_PASS: return "pass";
    case POL_ACT_LOG: return "log";
    default: return "?";
    }
}

const char *pol_lifetime_name(int lifetime)
{
    switch (lifetime) {
    case -1: return "default";
    case PSI_LIFE_REFCOUNT: return "refcount";
    case PSI_LIFE_TTL: return "ttl";
    case PSI_LIFE_EVICT_ON_READ: return "evict-on-read";
    default: return "?";
    }
}

void pol_size_str(uint64_t v, char *buf, size_t cap)
{
    static const char *const units[] = {"", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    size_t u = 0;

    while (u + 1 < sizeof units / sizeof units[0] && v >= 1024 && v % 1024 == 0) {
        v /= 1024;
        u++;
    }
    snprintf(buf, cap, "%llu%s", (unsigned long long)v, units[u]);
}

/* ---- globs ---------------------------------------------------------------- */

/* Matches one bracket expression at p against c. Returns a pointer past
 * the ']' and sets *ok, or NULL if the bracket is unterminated. */
static const char *glob_class(const char *p, unsigned char c, bool *ok)
{
    bool neg = false, hit = false;

    p++; /* '[' */
    if (*p == '!' || *p == '^')
        neg = true, p++;
    if (*p == ']') { /* a leading ']' is literal */
        hit = c == ']';
        p++;
    }
    while (*p && *p != ']') {
        unsigned char lo = (unsigned char)*p, hi;
        if (lo == '\\' && p[1])
            lo = (unsigned char)*++p;
        p++;
        hi = lo;
        if (*p == '-' && p[1] && p[1] != ']') {
            p++;
            hi = (unsigned char)*p;
            if (hi == '\\' && p[1])
                hi = (unsigned char)*++p;
            p++;
        }
        if (c >= lo && c <= hi)
            hit = true;
    }
    if (*p != ']')
        return NULL;
    *ok = hit != neg;
    return p + 1;
}

/* Iterative matcher with one backtrack point (the last '*'): linear in
 * practice, no recursion, no allocation. '*' matches '/' too. */
bool pol_glob(const char *pattern, const char *s)
{
    const char *p = pattern, *star_p = NULL, *star_s = NULL;

    while (*s) {
        if (*p == '*') {
            while (*p == '*')
                p++;
            if (!*p)
                return true;
            star_p = p;
            star_s = s;
            continue;
        }
        if (*p == '?') {
            p++, s++;
            continue;
        }
        if (*p == '[') {
            bool ok = false;
            const char *next = glob_class(p, (unsigned char)*s, &ok);
            if (next && ok) {
                p = next, s++;
                continue;
            }
            if (!next && *s == '[') { /* unterminated: a literal '[' */
                p++, s++;
                continue;
            }
        } else {
            const char *q = p;
            if (*q == '\\' && q[1])
                q++;
            if (*q && *q == *s) {
                p = q + 1, s++;
                continue;
            }
        }
        if (!star_p)
            return false;
        p = star_p;
        s = ++star_s;
    }
    while (*p == '*')
        p++;
    return !*p;
}

int pol_glob_check(const char *pattern, const char **what)
{
    for (const char *p = pattern; *p; p++) {
        if (*p == '\\') {
            if (!p[1]) {
                *what = "trailing '\\'; write '\\\\' for a literal backslash";
                return (int)(p - pattern);
            }
            p++;
        } else if (*p == '[') {
            bool ok;
            const char *end = glob_class(p, 0, &ok);
            if (!end) {
                *what = "unterminated '['; write '\\[' for a literal '['";
                return (int)(p - pattern);
            }
            p = end - 1;
        }
    }
    return -1;
}

/* ---- summary -------------------------------------------------------------- */

void pol_summarize(psi_policy *p)
{
    uint64_t min = p->threshold; /* the default decision, when no rule matches */

    p->needs_callers = false;
    p->has_log = false;
    for (size_t i = 0; i < p->nrules; i++) {
        const pol_rule *r = &p->rules[i];
        if (r->caller_glob[0])
            p->needs_callers = true;
        if (r->action == POL_ACT_LOG)
            p->has_log = true;
        if (r->action == POL_ACT_PROXY) {
            uint64_t t = pol_rule_threshold(r, p->threshold);
            uint64_t at = r->size_min > t ? r->size_min : t;
            if (at <= r->size_max && at < min)
                min = at;
        }
    }
    p->min_candidate = min;
}

/* ---- matching ------------------------------------------------------------- */

/* The peer as the matcher sees it: IPv4 (v4-mapped IPv6 folded in), IPv6,
 * or a unix path ("@name" for abstract sockets, "" unnamed). */
typedef struct peer_view {
    int family; /* AF_INET, AF_INET6, AF_UNIX or 0 (none) */
    unsigned char addr[16];
    int port;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];
} peer_view;

static void peer_view_of(const pol_ctx *c, peer_view *v)
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    const struct sockaddr *sa = c->peer;

    v->family = 0;
    if (!sa || c->peer_len < (socklen_t)sizeof(sa_family_t))
        return;
    if (sa->sa_family == AF_INET && c->peer_len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        v->family = AF_INET;
        memcpy(v->addr, &in->sin_addr, 4);
        v->port = ntohs(in->sin_port);
    } else if (sa->sa_family == AF_INET6 &&
               c->peer_len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        const unsigned char *a = in6->sin6_addr.s6_addr;
        if (memcmp(a, mapped, 12) == 0) {
            v->family = AF_INET;
            memcpy(v->addr, a + 12, 4);
        } else {
            v->family = AF_INET6;
            memcpy(v->addr, a, 16);
        }
        v->port = ntohs(in6->sin6_port);
    } else if (sa->sa_family == AF_UNIX) {
        const struct sockaddr_un *un = (const struct sockaddr_un *)sa;
        size_t off = offsetof(struct sockaddr_un, sun_path);
        size_t n = c->peer_len > off ? (size_t)c->peer_len - off : 0;
        if (n > sizeof un->sun_path)
            n = sizeof un->sun_path;
        v->family = AF_UNIX;
        if (n && un->sun_path[0] == '\0') {
            /* Abstract: '@' then the name, its 0 bytes shown as '@' like
             * /proc/net/unix does. */
            v->path[0] = '@';
            for (size_t i = 1; i < n; i++)
                v->path[i] = un->sun_path[i] ? un->sun_path[i] : '@';
            v->path[n] = '\0';
        } else {
            n = strnlen(un->sun_path, n);
            memcpy(v->path, un->sun_path, n);
            v->path[n] = '\0';
        }
    }
}

static bool in_net(const pol_rule *r, const peer_view *v)
{
    int bits = r->prefix, i = 0;

    if (v->family != r->family)
        return false;
    for (; bits >= 8; bits -= 8, i++)
        if (v->addr[i] != r->net[i])
            return false;
    if (bits) {
        unsigned char mask = (unsigned char)(0xFF << (8 - bits));
        if ((v->addr[i] & mask) != (r->net[i] & mask))
            return false;
    }
    return true;
}

/* Lazily computed stack, shared by every rule of one decision. */
typedef struct callers_cache {
    bool done;
    const char *const *v;
    size_t n;
} callers_cache;

static bool callers_match(const pol_rule *r, const pol_ctx *c, callers_cache *cc)
{
    if (!cc->done) {
        cc->done = true;
        cc->n = 0;
        cc->v = c->callers ? c->callers(c->callers_arg, &cc->n) : NULL;
    }
    for (size_t i = 0; cc->v && i < cc->n; i++)
        if (cc->v[i] && pol_glob(r->caller_glob, cc->v[i]))
            return true;
    return false;
}

/* ---- reasons (explain only) ---------------------------------------------- */

static void say(char *buf, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void say(char *buf, size_t cap, const char *fmt, ...)
{
    va_list ap;

    if (!buf || !cap)
        return;
    va_start(ap, fmt);
    vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
}

static void channels_str(int bits, char *buf, size_t cap)
{
    size_t len = 0;

    buf[0] = '\0';
    for (int b = 1; b <= POL_CH_ZMQ; b <<= 1)
        if (bits & b)
            len += (size_t)snprintf(buf + len, len < cap ? cap - len : 0, "%s%s",
                                    len ? "," : "", pol_channel_name(b));
}

static void net_str(const pol_rule *r, char *buf, size_t cap)
{
    char a[INET6_ADDRSTRLEN];

    inet_ntop(r->family, r->net, a, sizeof a);
    snprintf(buf, cap, "%s/%d", a, r->prefix);
}

static void peer_str(const peer_view *v, char *buf, size_t cap)
{
    char a[INET6_ADDRSTRLEN];

    if (v->family == AF_UNIX) {
        snprintf(buf, cap, "unix:%s", v->path[0] ? v->path : "(unnamed)");
        return;
    }
    inet_ntop(v->family, v->addr, a, sizeof a);
    snprintf(buf, cap, v->family == AF_INET6 ? "[%s]:%d" : "%s:%d", a, v->port);
}

static const char *dir_name(int d)
{
    return d == POL_DIR_SEND ? "send" : d == POL_DIR_RECV ? "recv" : "send or recv";
}

/* Checks r against c in order of cost, the caller last. With buf, writes
 * why not (or "matches"). `cc` NULL: the stack is never asked for, and a
 * caller= condition fails (used only by explain of a single rule through
 * psi_policy_explain_rule, which passes its own cache). */
static bool rule_match(const psi_policy *p, const pol_rule *r, const pol_ctx *c,
                       callers_cache *cc, char *buf, size_t cap)
{
    char x[160], y[160];
    peer_view v;

    if (!(r->channels & c->channel)) {
        if (buf)
            channels_str(r->channels, y, sizeof y);
        say(buf, cap, "channel is %s, rule wants %s", pol_channel_name(c->channel), y);
        return false;
    }
    if (!(r->direction & c->direction)) {
        say(buf, cap, "direction is %s, rule wants %s", dir_name(c->direction),
            dir_name(r->direction));
        return false;
    }
    if (c->size < r->size_min || c->size > r->size_max) {
        if (buf) {
            pol_size_str(c->size, x, sizeof x);
            char lo[32] = "", hi[32] = "";
            if (r->size_min)
                pol_size_str(r->size_min, lo, sizeof lo);
            if (r->size_max != UINT64_MAX)
                pol_size_str(r->size_max, hi, sizeof hi);
            say(buf, cap, "size %s is outside %s..%s", x, lo, hi);
        }
        return false;
    }
    if (r->has_net || r->port_lo >= 0 || r->unix_glob[0]) {
        peer_view_of(c, &v);
        if (v.family == 0) {
            if (buf && r->has_net)
                net_str(r, y, sizeof y);
            else if (buf && r->unix_glob[0])
                snprintf(y, sizeof y, "unix:%.150s", r->unix_glob);
            else if (buf && r->port_lo == r->port_hi)
                snprintf(y, sizeof y, "port %d", r->port_lo);
            else if (buf)
                snprintf(y, sizeof y, "port %d-%d", r->port_lo, r->port_hi);
            say(buf, cap, "the send has no peer address, rule wants %s%s",
                r->has_net || r->unix_glob[0] ? "peer " : "", y);
            return false;
        }
        if (buf)
            peer_str(&v, x, sizeof x);
        if (r->has_net && !in_net(r, &v)) {
            if (buf)
                net_str(r, y, sizeof y);
            say(buf, cap, "peer %s is not in %s", x, y);
            return false;
        }
        if (r->port_lo >= 0 && (v.family == AF_UNIX || v.port < r->port_lo ||
                                v.port > r->port_hi)) {
            if (v.family == AF_UNIX)
                say(buf, cap, "peer %s has no port, rule wants port %d-%d", x, r->port_lo,
                    r->port_hi);
            else if (r->port_lo == r->port_hi)
                say(buf, cap, "port %d is not %d", v.port, r->port_lo);
            else
                say(buf, cap, "port %d is not in %d-%d", v.port, r->port_lo, r->port_hi);
            return false;
        }
        if (r->unix_glob[0] && (v.family != AF_UNIX || !pol_glob(r->unix_glob, v.path))) {
            say(buf, cap, "peer %s does not match unix:%s", x, r->unix_glob);
            return false;
        }
    }
    if (r->exe_glob[0] && (!c->exe || !pol_glob(r->exe_glob, c->exe))) {
        if (c->exe)
            say(buf, cap, "exe '%s' does not match '%s'", c->exe, r->exe_glob);
        else
            say(buf, cap, "exe unknown, rule wants '%s'", r->exe_glob);
        return false;
    }
    if (r->caller_glob[0] && (!cc || !callers_match(r, c, cc))) {
        if (cc && cc->v && cc->n)
            say(buf, cap, "no function on the stack matches '%s'", r->caller_glob);
        else
            say(buf, cap, "call stack unknown, rule wants caller '%s'", r->caller_glob);
        return false;
    }
    if (buf) {
        uint64_t t = pol_rule_threshold(r, p->threshold);
        if (r->action == POL_ACT_PROXY && c->size < t) {
            pol_size_str(c->size, x, sizeof x);
            pol_size_str(t, y, sizeof y);
            say(buf, cap, "matches, but size %s is below the threshold %s: the send passes",
                x, y);
        } else {
            say(buf, cap, "matches");
        }
    }
    return true;
}

/* ---- decisions ------------------------------------------------------------ */

void psi_policy_decide(const psi_policy *p, const pol_ctx *c, uint64_t threshold,
                       pol_decision *out)
{
    callers_cache cc = {.done = false};

    out->rule = -1;
    out->connector = p ? p->default_connector : -1;
    out->lifetime = -1;
    out->ttl = 0;
    out->threshold = threshold;
    for (size_t i = 0; p && i < p->nrules; i++) {
        const pol_rule *r = &p->rules[i];
        if (!rule_match(p, r, c, &cc, NULL, 0))
            continue;
        out->rule = (int)i;
        out->action = r->action;
        if (r->action == POL_ACT_PROXY) {
            out->threshold = pol_rule_threshold(r, threshold);
            if (c->size < out->threshold) {
                out->action = POL_ACT_PASS;
                return;
            }
            if (r->connector >= 0)
                out->connector = r->connector;
            out->lifetime = r->lifetime;
            out->ttl = r->ttl;
        }
        return;
    }
    out->action = c->size >= threshold ? POL_ACT_PROXY : POL_ACT_PASS;
}

bool psi_policy_explain_rule(const psi_policy *p, size_t i, const pol_ctx *c, char *buf,
                             size_t cap)
{
    callers_cache cc = {.done = false};

    if (!p || i >= p->nrules) {
        say(buf, cap, "no such rule");
        return false;
    }
    return rule_match(p, &p->rules[i], c, &cc, buf, cap);
}
