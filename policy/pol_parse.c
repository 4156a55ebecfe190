/* pol_parse: policy text into a psi_policy (docs/policy.md).
 *
 * Every statement is one line, so an error never hides the next line: the
 * parser reports it and moves on, and `psi policy check` lists every
 * problem at once. Names (connectors) may be used before they are
 * declared; they are resolved after the last line. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pol_internal.h"
#include "psi_store.h"
#include "psi_token.h"

#define TTL_MAX (30u * 24 * 3600) /* 30 days: longer is a leak, not a TTL */

/* ---- diagnostics -------------------------------------------------------- */

void pol_diag_add(pol_diags *d, bool warning, int line, int col, const char *fmt, ...)
{
    va_list ap;

    if (warning)
        d->warnings++;
    else
        d->errors++;
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 16;
        pol_diag *v = realloc(d->v, cap * sizeof *v);
        if (!v) {
            d->oom = true;
            return;
        }
        d->v = v;
        d->cap = cap;
    }
    pol_diag *g = &d->v[d->n++];
    g->warning = warning;
    g->line = line;
    g->col = col;
    va_start(ap, fmt);
    vsnprintf(g->msg, sizeof g->msg, fmt, ap);
    va_end(ap);
}

/* ---- parser state ------------------------------------------------------- */

/* A connector name used before the end of the file: resolved at the end. */
typedef struct pol_ref {
    int rule; /* index, or -1 for `defaults connector=` */
    char name[POL_NAME_MAX];
    int line, col;
} pol_ref;

typedef struct parser {
    psi_policy *p;
    pol_diags d;
    pol_line *ln;
    int line;
    int statements;
    size_t rules_seen;            /* rules written, including those past the cap */
    pol_ref refs[POL_MAX_RULES + 1];
    size_t nrefs;
    int thr_line, conn_line;      /* where `defaults` set them, 0 = not yet */
    psi_config *scratch;          /* for psi_parse_peers */
    pol_rule spare;               /* rules past the cap are checked, not kept */
} parser;

#define ERR(ps, col, ...) pol_diag_add(&(ps)->d, false, (ps)->line, (col), __VA_ARGS__)
#define WARN(ps, col, ...) pol_diag_add(&(ps)->d, true, (ps)->line, (col), __VA_ARGS__)

static const char *key_of(pol_tok *t)
{
    t->text[t->eq] = '\0'; /* split once; value() reads past it */
    return t->text;
}

static const char *value_of(const pol_tok *t)
{
    return t->text + t->eq + 1;
}

/* [A-Za-z0-9_][A-Za-z0-9_.-]*, shorter than POL_NAME_MAX. */
static bool name_ok(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n >= POL_NAME_MAX || !(isalnum((unsigned char)s[0]) || s[0] == '_'))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr("_.-", s[i]))
            return false;
    return true;
}

static int check_name(parser *ps, const char *what, const char *s, int col)
{
    if (name_ok(s))
        return 0;
    ERR(ps, col, "'%.80s' is not a valid %s name; expected letters, digits, '_', '.' or '-' "
        "(at most %d), starting with a letter, digit or '_'", s, what, POL_NAME_MAX - 1);
    return -1;
}

/* ---- values ------------------------------------------------------------- */

static int parse_size_val(parser *ps, const char *key, const char *s, int col, uint64_t *out)
{
    psi_err e;

    if (psi_parse_size(s, out, &e) == 0)
        return 0;
    ERR(ps, col, "%s '%.80s': %s; expected a size such as 65536, 64K or 1MiB", key, s, e.msg);
    return -1;
}

/* "30", "30s", "10m", "1h", "2d": seconds, 1 .. 30 days. */
static int parse_duration(parser *ps, const char *s, int col, uint32_t *out)
{
    uint64_t v = 0, mult = 1;
    const char *p = s;

    if (!isdigit((unsigned char)*p))
        goto bad;
    for (; isdigit((unsigned char)*p); p++) {
        v = v * 10 + (uint64_t)(*p - '0');
        if (v > TTL_MAX)
            goto range;
    }
    switch (*p) {
    case '\0': break;
    case 's': mult = 1; p++; break;
    case 'm': mult = 60; p++; break;
    case 'h': mult = 3600; p++; break;
    case 'd': mult = 86400; p++; break;
    default: goto bad;
    }
    if (*p)
        goto bad;
    v *= mult;
    if (v == 0 || v > TTL_MAX)
        goto range;
    *out = (uint32_t)v;
    return 0;
bad:
    ERR(ps, col, "ttl '%.80s' is not a duration; expected seconds or a number with s, m, h "
        "or d, such as 30s, 10m, 1h or 2d", s);
    return -1;
range:
    ERR(ps, col, "ttl '%.80s' is out of range; expected 1s to 30d", s);
    return -1;
}

/* Digits only, 1..65535. Returns the port or -1. */
static long port_num(const char *s, size_t n)
{
    long v = 0;

    if (n == 0 || n > 5)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v >= 1 && v <= 65535 ? v : -1;
}

static int parse_port(parser *ps, pol_rule *r, const char *s, int col)
{
    const char *dash = strchr(s, '-');
    long lo, hi;

    if (dash) {
        lo = port_num(s, (size_t)(dash - s));
        hi = port_num(dash + 1, strlen(dash + 1));
    } else {
        lo = hi = port_num(s, strlen(s));
    }
    if (lo < 0 || hi < 0) {
        ERR(ps, col, "port '%.80s' is not valid; expected a number from 1 to 65535, or a "
            "range A-B such as 8000-8100", s);
        return -1;
    }
    if (lo > hi) {
        ERR(ps, col, "port range '%.80s' is empty: %ld is larger than %ld", s, lo, hi);
        return -1;
    }
    r->port_lo = (int)lo;
    r->port_hi = (int)hi;
    return 0;
}

static int parse_sizes(parser *ps, pol_rule *r, const char *s, int col)
{
    const char *dots = strstr(s, "..");
    char lo[64];
    size_t n;

    if (!dots || (dots == s && !dots[2]) || strstr(dots + 2, "..")) {
        ERR(ps, col, "size '%.80s' is not a range; expected MIN..MAX, MIN.. or ..MAX, "
            "such as 1MiB..64MiB", s);
        return -1;
    }
    n = (size_t)(dots - s);
    if (n >= sizeof lo) {
        ERR(ps, col, "size '%.80s': minimum too long", s);
        return -1;
    }
    memcpy(lo, s, n);
    lo[n] = '\0';
    if (n && parse_size_val(ps, "size minimum", lo, col, &r->size_min) < 0)
        return -1;
    if (dots[2] &&
        parse_size_val(ps, "size maximum", dots + 2, col + (int)n + 2, &r->size_max) < 0)
        return -1;
    if (r->size_min > r->size_max) {
        ERR(ps, col, "size range '%.80s' is empty: the minimum is larger than the maximum", s);
        return -1;
    }
    return 0;
}

static int parse_channels(parser *ps, pol_rule *r, const char *s, int col)
{
    static const char *const names[] = {"tcp", "unix", "pipe", "udp", "mpi", "zmq"};
    const char *p = s;

    r->channels = 0;
    for (;;) {
        size_t n = strcspn(p, ",");
        int bit = 0;
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            if (strlen(names[i]) == n && strncmp(p, names[i], n) == 0)
                bit = 1 << i;
        if (!bit) {
            ERR(ps, col + (int)(p - s), "'%.*s' is not a channel; expected tcp, unix, pipe, "
                "udp, mpi or zmq (a comma list such as tcp,unix)", (int)(n > 40 ? 40 : n), p);
            return -1;
        }
        r->channels |= bit;
        if (!p[n])
            return 0;
        p += n + 1;
    }
}

static int parse_glob(parser *ps, const char *key, const char *s, int col, char *dst)
{
    const char *what;
    int off;

    if (strlen(s) >= POL_GLOB_MAX) {
        ERR(ps, col, "%s pattern longer than %d bytes", key, POL_GLOB_MAX - 1);
        return -1;
    }
    if ((off = pol_glob_check(s, &what)) >= 0) {
        ERR(ps, col + off, "%s pattern '%.80s': %s", key, s, what);
        return -1;
    }
    strcpy(dst, s);
    return 0;
}

/* peer=ADDR[/PREFIX] or peer=unix:GLOB */
static int parse_peer_cond(parser *ps, pol_rule *r, const char *s, int col)
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    char addr[128];
    const char *slash;
    size_t n;
    long prefix = -1;

    if (strncmp(s, "unix:", 5) == 0) {
        if (!s[5]) {
            ERR(ps, col + 5, "empty unix path pattern; expected peer=unix:/path/*.sock or "
                "peer=unix:@abstract");
            return -1;
        }
        return parse_glob(ps, "peer unix", s + 5, col + 5, r->unix_glob);
    }
    slash = strchr(s, '/');
    n = slash ? (size_t)(slash - s) : strlen(s);
    if (n >= sizeof addr)
        n = sizeof addr - 1;
    memcpy(addr, s, n);
    addr[n] = '\0';
    if (addr[0] == '[' && n > 2 && addr[n - 1] == ']') {
        memmove(addr, addr + 1, n - 2);
        addr[n - 2] = '\0';
    }
    memset(r->net, 0, sizeof r->net);
    if (inet_pton(AF_INET, addr, r->net) == 1) {
        r->family = AF_INET;
    } else if (inet_pton(AF_INET6, addr, r->net) == 1) {
        r->family = AF_INET6;
    } else {
        char *colon = strrchr(addr, ':');
        unsigned char tmp[4];
        if (colon) {
            *colon = '\0';
            if (inet_pton(AF_INET, addr, tmp) == 1) {
                ERR(ps, col + (int)(colon - addr), "peer= takes no port; write it as a "
                    "separate condition: port=%s", colon + 1);
                return -1;
            }
        }
        ERR(ps, col, "'%.80s' is not an address; expected an IPv4 or IPv6 address with an "
            "optional /PREFIX (10.0.0.0/8, fd00::/8), or unix:GLOB (host names are not "
            "allowed)", s);
        return -1;
    }
    int max = r->family == AF_INET ? 32 : 128;
    if (slash) {
        const char *q = slash + 1;
        prefix = 0;
        if (!*q || strlen(q) > 3)
            prefix = -1;
        for (; *q && prefix >= 0; q++)
            prefix = isdigit((unsigned char)*q) ? prefix * 10 + (*q - '0') : -1;
        if (prefix < 0 || prefix > max) {
            ERR(ps, col + (int)(slash - s) + 1, "prefix '/%.20s' is out of range for %s; "
                "expected /0 to /%d", slash + 1, r->family == AF_INET ? "IPv4" : "IPv6", max);
            return -1;
        }
    } else {
        prefix = max;
    }
    /* ::ffff:a.b.c.d/N is the IPv4 network a.b.c.d/(N-96): the matcher sees
     * v4-mapped peers as IPv4. */
    if (r->family == AF_INET6 && prefix >= 96 && memcmp(r->net, mapped, 12) == 0) {
        memmove(r->net, r->net + 12, 4);
        memset(r->net + 4, 0, 12);
        r->family = AF_INET;
        prefix -= 96;
    }
    r->prefix = (int)prefix;
    /* Host bits below the prefix: the user probably meant the network, but
     * may have mistyped the prefix; say what the rule means. */
    bool host_bits = false;
    int alen = r->family == AF_INET ? 4 : 16;
    for (int b = (int)prefix; b < alen * 8; b++)
        if (r->net[b / 8] & (0x80 >> (b % 8))) {
            host_bits = true;
            r->net[b / 8] &= (unsigned char)~(0x80 >> (b % 8));
        }
    if (host_bits) {
        char net[INET6_ADDRSTRLEN];
        inet_ntop(r->family, r->net, net, sizeof net);
        WARN(ps, col, "peer '%.80s' has host bits set below the prefix; it means %s/%d", s,
             net, r->prefix);
    }
    r->has_net = true;
    return 0;
}

/* ---- rules -------------------------------------------------------------- */

enum { K_CHANNEL, K_DIRECTION, K_PEER, K_PORT, K_SIZE, K_EXE, K_CALLER, K_NCOND };
static const char *const cond_keys[K_NCOND] = {"channel", "direction", "peer", "port",
                                               "size", "exe", "caller"};

static int cond_key(const char *k)
{
    for (int i = 0; i < K_NCOND; i++)
        if (strcmp(k, cond_keys[i]) == 0)
            return i;
    return -1;
}

static void parse_cond(parser *ps, pol_rule *r, pol_tok *t, int *seen_col)
{
    const char *k, *v;
    int key;

    if (t->eq <= 0) {
        ERR(ps, t->col, "expected a condition KEY=VALUE such as channel=tcp, got '%.80s'",
            t->text);
        return;
    }
    k = key_of(t);
    v = value_of(t);
    key = cond_key(k);
    if (key < 0) {
        if (strcmp(k, "connector") == 0 || strcmp(k, "lifetime") == 0 ||
            strcmp(k, "ttl") == 0 || strcmp(k, "threshold") == 0)
            ERR(ps, t->col, "'%s' is an option of the proxy action; write it after "
                "'=> proxy'", k);
        else
            ERR(ps, t->col, "unknown condition '%.60s'; expected channel, direction, peer, "
                "port, size, exe or caller", k);
        return;
    }
    if (seen_col[key]) {
        ERR(ps, t->col, "'%s' given twice in one rule (first at column %d); a rule's "
            "conditions must all hold, so write one", k, seen_col[key]);
        return;
    }
    seen_col[key] = t->col;
    if (!*v) {
        ERR(ps, t->vcol, "empty value for '%s'", k);
        return;
    }
    switch (key) {
    case K_CHANNEL: parse_channels(ps, r, v, t->vcol); break;
    case K_DIRECTION:
        if (strcmp(v, "send") == 0)
            r->direction = POL_DIR_SEND;
        else if (strcmp(v, "recv") == 0)
            r->direction = POL_DIR_RECV;
        else
            ERR(ps, t->vcol, "direction '%.60s' is not valid; expected send or recv", v);
        break;
    case K_PEER: parse_peer_cond(ps, r, v, t->vcol); break;
    case K_PORT: parse_port(ps, r, v, t->vcol); break;
    case K_SIZE: parse_sizes(ps, r, v, t->vcol); break;
    case K_EXE:
        if (strchr(v, '/'))
            ERR(ps, t->vcol + (int)(strchr(v, '/') - v), "exe= is matched against the "
                "program's basename, which has no '/'; expected a name or glob such as "
                "python3*");
        else
            parse_glob(ps, "exe", v, t->vcol, r->exe_glob);
        break;
    case K_CALLER: parse_glob(ps, "caller", v, t->vcol, r->caller_glob); break;
    }
}

static void add_ref(parser *ps, int rule, const char *name, int col)
{
    if (ps->nrefs >= sizeof ps->refs / sizeof ps->refs[0])
        return;
    pol_ref *f = &ps->refs[ps->nrefs++];
    f->rule = rule;
    snprintf(f->name, sizeof f->name, "%s", name);
    f->line = ps->line;
    f->col = col;
}

enum { O_CONNECTOR, O_LIFETIME, O_TTL, O_THRESHOLD, O_N };
static const char *const opt_keys[O_N] = {"connector", "lifetime", "ttl", "threshold"};

static void parse_option(parser *ps, pol_rule *r, int idx, pol_tok *t, int *seen_col)
{
    const char *k, *v;
    int key = -1;

    if (t->eq <= 0) {
        ERR(ps, t->col, "expected an option KEY=VALUE after '%s', got '%.80s'",
            pol_action_name(r->action), t->text);
        return;
    }
    k = key_of(t);
    v = value_of(t);
    for (int i = 0; i < O_N; i++)
        if (strcmp(k, opt_keys[i]) == 0)
            key = i;
    if (r->action != POL_ACT_PROXY) {
        ERR(ps, t->col, "'%s' takes no options; '%.60s' %s", pol_action_name(r->action), k,
            key >= 0 ? "is an option of 'proxy'" : "is not an option of any action");
        return;
    }
    if (key < 0) {
        if (cond_key(k) >= 0)
            ERR(ps, t->col, "'%s' is a condition; write it before '=>'", k);
        else
            ERR(ps, t->col, "unknown option '%.60s' of proxy; expected connector, lifetime, "
                "ttl or threshold", k);
        return;
    }
    if (seen_col[key]) {
        ERR(ps, t->col, "'%s' given twice in one rule (first at column %d)", k, seen_col[key]);
        return;
    }
    seen_col[key] = t->col;
    if (!*v) {
        ERR(ps, t->vcol, "empty value for '%s'", k);
        return;
    }
    switch (key) {
    case O_CONNECTOR:
        if (check_name(ps, "connector", v, t->vcol) == 0)
            add_ref(ps, idx, v, t->vcol);
        break;
    case O_LIFETIME:
        if (strcmp(v, "refcount") == 0)
            r->lifetime = PSI_LIFE_REFCOUNT;
        else if (strcmp(v, "ttl") == 0)
            r->lifetime = PSI_LIFE_TTL;
        else if (strcmp(v, "evict-on-read") == 0)
            r->lifetime = PSI_LIFE_EVICT_ON_READ;
        else
            ERR(ps, t->vcol, "lifetime '%.60s' is not valid; expected refcount, ttl or "
                "evict-on-read", v);
        break;
    case O_TTL: parse_duration(ps, v, t->vcol, &r->ttl); break;
    case O_THRESHOLD:
        if (parse_size_val(ps, "threshold", v, t->vcol, &r->threshold) == 0)
            r->has_threshold = true;
        break;
    }
}

static void rule_init(pol_rule *r)
{
    memset(r, 0, sizeof *r);
    r->channels = POL_CH_ANY;
    r->direction = POL_DIR_ANY;
    r->port_lo = r->port_hi = -1;
    r->size_max = UINT64_MAX;
    r->connector = -1;
    r->lifetime = -1;
}

static void parse_rule(parser *ps)
{
    pol_line *ln = ps->ln;
    pol_tok *t = ln->tok;
    size_t idx = ps->rules_seen++;
    pol_rule *r = idx < POL_MAX_RULES ? &ps->p->rules[idx] : &ps->spare;
    int i = 1, seen_cond[K_NCOND] = {0}, seen_opt[O_N] = {0};
    const char *name = NULL;
    int name_col = 0;

    rule_init(r);
    if (idx < POL_MAX_RULES)
        ps->p->nrules = idx + 1;
    r->line = ps->line;
    r->col = t[0].col;
    if (idx == POL_MAX_RULES)
        ERR(ps, t[0].col, "more than %d rules; merge rules or raise POL_MAX_RULES",
            POL_MAX_RULES);

    /* "rule:", "rule NAME:", "rule NAME :", "rule :" */
    if (strcmp(t[0].text, "rule:") != 0) {
        size_t n = i < ln->ntok ? strlen(t[i].text) : 0;
        if (i < ln->ntok && strcmp(t[i].text, ":") == 0) {
            i++;
        } else if (i < ln->ntok && t[i].eq < 0 && n > 1 && t[i].text[n - 1] == ':') {
            t[i].text[n - 1] = '\0';
            name = t[i].text, name_col = t[i].col;
            i++;
        } else if (i + 1 < ln->ntok && t[i].eq < 0 && strcmp(t[i + 1].text, ":") == 0) {
            name = t[i].text, name_col = t[i].col;
            i += 2;
        } else {
            ERR(ps, i < ln->ntok ? t[i].col : ln->end_col,
                "expected 'rule NAME:' or 'rule:' before the conditions");
            return;
        }
    }
    if (name) {
        if (check_name(ps, "rule", name, name_col) < 0)
            return;
        for (size_t j = 0; j < idx && j < POL_MAX_RULES; j++)
            if (strcmp(ps->p->rules[j].name, name) == 0) {
                ERR(ps, name_col, "rule name '%s' already used at line %d", name,
                    ps->p->rules[j].line);
                return;
            }
        memcpy(r->name, name, strlen(name) + 1); /* check_name: it fits */
    } else {
        snprintf(r->name, sizeof r->name, "rule#%zu", idx + 1);
    }

    /* "size=1M..=>" would otherwise cascade into odd errors about sizes,
     * "pass" and a missing action. */
    for (int j = i; j < ln->ntok && strcmp(t[j].text, "=>") != 0; j++) {
        const char *arrow = strstr(t[j].text, "=>");
        if (arrow) {
            ERR(ps, t[j].col + (int)(arrow - t[j].text), "put blanks around '=>'");
            return;
        }
    }
    for (; i < ln->ntok && strcmp(t[i].text, "=>") != 0; i++)
        parse_cond(ps, r, &t[i], seen_cond);
    if (i >= ln->ntok) {
        ERR(ps, ln->end_col, "expected '=>' and an action (proxy, pass or log)");
        return;
    }
    if (++i >= ln->ntok) {
        ERR(ps, ln->end_col, "expected an action after '=>': proxy, pass or log");
        return;
    }
    if (strcmp(t[i].text, "proxy") == 0)
        r->action = POL_ACT_PROXY;
    else if (strcmp(t[i].text, "pass") == 0)
        r->action = POL_ACT_PASS;
    else if (strcmp(t[i].text, "log") == 0)
        r->action = POL_ACT_LOG;
    else {
        ERR(ps, t[i].col, "unknown action '%.60s'; expected proxy, pass or log", t[i].text);
        return;
    }
    for (i++; i < ln->ntok; i++)
        parse_option(ps, r, (int)idx, &t[i], seen_opt);
}

/* ---- other statements --------------------------------------------------- */

static void parse_defaults(parser *ps)
{
    pol_line *ln = ps->ln;

    if (ln->ntok == 1) {
        ERR(ps, ln->end_col, "expected threshold=SIZE and/or connector=NAME after 'defaults'");
        return;
    }
    for (int i = 1; i < ln->ntok; i++) {
        pol_tok *t = &ln->tok[i];
        if (t->eq <= 0) {
            ERR(ps, t->col, "expected threshold=SIZE or connector=NAME, got '%.80s'", t->text);
            continue;
        }
        const char *k = key_of(t), *v = value_of(t);
        if (strcmp(k, "threshold") == 0) {
            if (ps->thr_line) {
                ERR(ps, t->col, "default threshold already set at line %d", ps->thr_line);
                continue;
            }
            ps->thr_line = ps->line;
            if (parse_size_val(ps, "threshold", v, t->vcol, &ps->p->threshold) == 0) {
                ps->p->has_threshold = true;
                ps->p->threshold_from = POL_FROM_FILE;
            }
        } else if (strcmp(k, "connector") == 0) {
            if (ps->conn_line) {
                ERR(ps, t->col, "default connector already set at line %d", ps->conn_line);
                continue;
            }
            ps->conn_line = ps->line;
            if (check_name(ps, "connector", v, t->vcol) == 0)
                add_ref(ps, -1, v, t->vcol);
        } else {
            ERR(ps, t->col, "unknown default '%.60s'; expected threshold or connector", k);
        }
    }
}

static void parse_connector(parser *ps)
{
    pol_line *ln = ps->ln;
    pol_tok *t = ln->tok;
    psi_policy *p = ps->p;
    psi_err e;

    if (ln->ntok < 3 || t[1].eq >= 0) {
        ERR(ps, ln->ntok > 1 ? t[1].col : ln->end_col,
            "expected 'connector NAME URL', such as 'connector scratch file:///scratch/psi'");
        return;
    }
    if (ln->ntok > 3) {
        ERR(ps, t[3].col, "unexpected '%.60s' after the connector URL", t[3].text);
        return;
    }
    if (check_name(ps, "connector", t[1].text, t[1].col) < 0)
        return;
    for (size_t i = 0; i < p->nconnectors; i++)
        if (strcmp(p->connectors[i].name, t[1].text) == 0) {
            ERR(ps, t[1].col, "connector '%s' already declared at line %d", t[1].text,
                p->connectors[i].line);
            return;
        }
    const char *url = t[2].text;
    if (strlen(url) >= PSI_PATH_MAX) {
        ERR(ps, t[2].col, "connector URL longer than %d bytes", PSI_PATH_MAX - 1);
        return;
    }
    if (!*url || psi_check_store_url(url, &e) < 0) {
        ERR(ps, t[2].col, "'%.80s' is not a store URL; expected file:///dir, shm://, "
            "redis://[:pass@]host:port[/db] or zmq://...", url);
        return;
    }
    if (strncmp(url, "file://", 7) == 0 && url[7] != '/') {
        ERR(ps, t[2].col + 7, "a file:// URL needs an absolute directory, such as "
            "file:///var/tmp/psi");
        return;
    }
    if (p->nconnectors >= POL_MAX_CONNECTORS) {
        ERR(ps, t[0].col, "more than %d connectors", POL_MAX_CONNECTORS);
        return;
    }
    size_t slen = strcspn(url, ":");
    const psi_store_ops *ops = psi_store_ops_by_scheme(url, slen);
    psi_store *probe = NULL;
    if (!ops) {
        WARN(ps, t[2].col, "connector '%s': %.*s:// connectors are not available in this "
             "build; sends through it will go inline", t[1].text, (int)slen, url);
    } else if (ops->open(url, &probe, &e) < 0) {
        /* The connector's own parser: opening connects to nothing and
         * creates nothing (connectors connect at their first put). */
        ERR(ps, t[2].col, "connector '%s': %s", t[1].text, e.msg);
        return;
    } else {
        ops->close(probe);
    }
    pol_connector *c = &p->connectors[p->nconnectors++];
    memcpy(c->name, t[1].text, strlen(t[1].text) + 1); /* name_ok: it fits */
    strcpy(c->url, url);
    c->line = ps->line;
    c->col = t[1].col;
}

static void parse_peer_stmt(parser *ps)
{
    pol_line *ln = ps->ln;
    psi_policy *p = ps->p;
    psi_err e;

    if (ln->ntok == 1) {
        ERR(ps, ln->end_col, "expected 'peer ADDR': host:port, host:*, [v6addr]:port, "
            "unix:/path or unix:@abstract");
        return;
    }
    for (int i = 1; i < ln->ntok; i++) {
        pol_tok *t = &ln->tok[i];
        ps->scratch->npeers = 0;
        if (psi_parse_peers(t->text, ps->scratch, &e) < 0) {
            ERR(ps, t->col, "%s; expected host:port, host:*, [v6addr]:port, unix:/path or "
                "unix:@abstract", e.msg);
            continue;
        }
        for (size_t j = 0; j < ps->scratch->npeers; j++)
            if (pol_peer_append(p->peers, &p->npeers, POL_MAX_PEERS, &ps->scratch->peers[j]) < 0) {
                ERR(ps, t->col, "more than %d peers", POL_MAX_PEERS);
                break;
            }
    }
}

static void parse_statement(parser *ps)
{
    const char *kw = ps->ln->tok[0].text;

    ps->statements++;
    if (strcmp(kw, "rule") == 0 || strcmp(kw, "rule:") == 0)
        parse_rule(ps);
    else if (strcmp(kw, "defaults") == 0)
        parse_defaults(ps);
    else if (strcmp(kw, "connector") == 0)
        parse_connector(ps);
    else if (strcmp(kw, "peer") == 0)
        parse_peer_stmt(ps);
    else
        ERR(ps, ps->ln->tok[0].col, "unknown statement '%.60s'; expected defaults, connector, "
            "peer or rule", kw);
}

/* ---- whole text --------------------------------------------------------- */

/* A NUL byte or invalid UTF-8 (overlongs, surrogates, > U+10FFFF
 * included): a binary file, or text in another encoding. Returns the
 * offset of the first bad byte, or -1. */
static long binary_at(const unsigned char *s, size_t n)
{
    size_t i = 0;

    while (i < n) {
        unsigned c = s[i];
        size_t k;
        uint32_t cp;
        if (c == 0)
            return (long)i;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF)
            k = 1, cp = c & 0x1F;
        else if (c >= 0xE0 && c <= 0xEF)
            k = 2, cp = c & 0x0F;
        else if (c >= 0xF0 && c <= 0xF4)
            k = 3, cp = c & 0x07;
        else
            return (long)i;
        for (size_t j = 1; j <= k; j++) {
            if (i + j >= n || (s[i + j] & 0xC0) != 0x80)
                return (long)i;
            cp = cp << 6 | (s[i + j] & 0x3F);
        }
        if ((k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return (long)i;
        i += k + 1;
    }
    return -1;
}

static int diag_cmp(const void *a, const void *b)
{
    const pol_diag *x = a, *y = b;

    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    if (x->col != y->col)
        return x->col < y->col ? -1 : 1;
    return 0;
}

/* Emits the collected diagnostics in file order (a stable sort: equal
 * positions keep the order they were found in) and frees them. */
static void flush_diags(pol_diags *d, const char *path, pol_diag_fn fn, void *ctx)
{
    for (size_t i = 1; i < d->n; i++) /* insertion sort: stable, n is small */
        for (size_t j = i; j > 0 && diag_cmp(&d->v[j - 1], &d->v[j]) > 0; j--) {
            pol_diag t = d->v[j];
            d->v[j] = d->v[j - 1];
            d->v[j - 1] = t;
        }
    for (size_t i = 0; fn && i < d->n; i++)
        fn(ctx, path, &d->v[i]);
    if (fn && d->oom) {
        pol_diag g = {.warning = false, .line = 0, .col = 0};
        snprintf(g.msg, sizeof g.msg, "out of memory: some diagnostics were not shown");
        fn(ctx, path, &g);
    }
    free(d->v);
    d->v = NULL;
    d->n = d->cap = 0;
}

void pol_policy_init(psi_policy *out, const char *path)
{
    memset(out, 0, sizeof *out);
    snprintf(out->path, sizeof out->path, "%s", path ? path : "");
    out->threshold = PSI_DEFAULT_THRESHOLD;
    out->threshold_from = POL_FROM_BUILTIN;
    out->default_connector = -1;
    out->min_candidate = PSI_DEFAULT_THRESHOLD;
}

/* Connector names used by rules and defaults, declared anywhere. */
static void resolve_refs(parser *ps, bool *used)
{
    psi_policy *p = ps->p;

    for (size_t i = 0; i < ps->nrefs; i++) {
        pol_ref *f = &ps->refs[i];
        int found = -1;
        for (size_t j = 0; j < p->nconnectors; j++)
            if (strcmp(p->connectors[j].name, f->name) == 0)
                found = (int)j;
        if (found < 0) {
            pol_diag_add(&ps->d, false, f->line, f->col, "connector '%s' is not declared; "
                         "declare it with 'connector %s URL'", f->name, f->name);
            continue;
        }
        used[found] = true;
        if (f->rule < 0)
            p->default_connector = found;
        else if ((size_t)f->rule < POL_MAX_RULES)
            p->rules[f->rule].connector = found;
    }
}

static int parse_all(parser *ps, const char *path, const char *text, size_t len)
{
    psi_policy *p = ps->p;
    long bad = binary_at((const unsigned char *)text, len);
    bool used[POL_MAX_CONNECTORS] = {false};

    if (bad >= 0) {
        int line = 1;
        for (long i = 0; i < bad; i++)
            line += text[i] == '\n';
        pol_diag_add(&ps->d, false, 0, 0, "not a text file: %s at byte %ld (line %d); a "
                     "policy is UTF-8 text", text[bad] ? "invalid UTF-8" : "a NUL byte",
                     bad, line);
        return -1;
    }
    for (size_t off = 0; off < len;) {
        const char *s = text + off;
        const char *nl = memchr(s, '\n', len - off);
        size_t n = nl ? (size_t)(nl - s) : len - off;
        char msg[160];
        int col;

        off += n + (nl != NULL);
        ps->line++;
        if (pol_lex_line(s, n, ps->ln, &col, msg, sizeof msg) < 0) {
            ps->statements++;
            pol_diag_add(&ps->d, false, ps->line, col, "%s", msg);
            continue;
        }
        if (ps->ln->ntok)
            parse_statement(ps);
    }
    if (ps->statements == 0) {
        pol_diag_add(&ps->d, false, 0, 0, "%s: no statements (only blank lines and "
                     "comments); expected defaults, connector, peer or rule lines",
                     len ? "empty policy" : "empty file");
        return -1;
    }
    resolve_refs(ps, used);
    pol_summarize(p);
    if (ps->d.errors == 0)
        pol_lint(p, used, &ps->d);
    (void)path;
    return 0;
}

int psi_policy_parse(const char *path, const char *text, size_t len, psi_policy *out,
                     pol_diag_fn diag, void *ctx)
{
    parser ps = {.p = out};
    int errors;

    pol_policy_init(out, path);
    ps.ln = malloc(sizeof *ps.ln);
    ps.scratch = malloc(sizeof *ps.scratch);
    if (!ps.ln || !ps.scratch) {
        pol_diag_add(&ps.d, false, 0, 0, "out of memory");
    } else {
        memset(ps.scratch, 0, sizeof *ps.scratch);
        parse_all(&ps, path, text ? text : "", text ? len : 0);
    }
    free(ps.ln);
    free(ps.scratch);
    errors = ps.d.errors;
    flush_diags(&ps.d, path, diag, ctx);
    return errors;
}
