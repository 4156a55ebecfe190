/* psi_config: the PSI_* environment (DESIGN §7), parsed once.
 *
 * Every variable is optional. An empty value means "not set" (so
 * `PSI_THRESHOLD= prog` behaves like no PSI_THRESHOLD at all). A value that
 * does not parse gets exactly one warning naming the variable, what was
 * expected and the default kept. Peers are in psi_peers.c. */
#include "psi_config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "psi_log.h"

/* ---- sizes ------------------------------------------------------------ */

struct size_suffix {
    const char *name;
    uint64_t mult;
};

#define KI ((uint64_t)1024)
#define KD ((uint64_t)1000)

/* Compared case-insensitively: "64k", "64KiB" and "64kib" are all 65536;
 * the two-letter "?B" forms are decimal, as disks and networks count. */
static const struct size_suffix size_suffixes[] = {
    {"", 1},
    {"B", 1},
    {"K", KI},          {"KiB", KI},          {"KB", KD},
    {"M", KI * KI},     {"MiB", KI * KI},     {"MB", KD * KD},
    {"G", KI * KI * KI}, {"GiB", KI * KI * KI}, {"GB", KD * KD * KD},
    {"T", KI * KI * KI * KI}, {"TiB", KI * KI * KI * KI}, {"TB", KD * KD * KD * KD},
};

static int size_mult(const char *suffix, uint64_t *mult)
{
    for (size_t i = 0; i < sizeof size_suffixes / sizeof size_suffixes[0]; i++) {
        if (strcasecmp(suffix, size_suffixes[i].name) == 0) {
            *mult = size_suffixes[i].mult;
            return 0;
        }
    }
    return -1;
}

int psi_parse_size(const char *s, uint64_t *out, psi_err *err)
{
    uint64_t v = 0, mult;
    const char *p = s;

    if (!s || !*s)
        return psi_fail(err, EINVAL, "empty");
    if (!isdigit((unsigned char)*p))
        return psi_fail(err, EINVAL, "does not start with a digit");
    for (; isdigit((unsigned char)*p); p++) {
        if (__builtin_mul_overflow(v, 10, &v) ||
            __builtin_add_overflow(v, (uint64_t)(*p - '0'), &v))
            return psi_fail(err, ERANGE, "too large for 64 bits");
    }
    if (size_mult(p, &mult) < 0)
        return psi_fail(err, EINVAL, "unknown suffix '%s'", p);
    if (__builtin_mul_overflow(v, mult, &v))
        return psi_fail(err, ERANGE, "too large for 64 bits");
    /* A threshold of 0 would ask to proxy 0-byte writes, which carry no
     * payload; every size we parse must be at least one byte. */
    if (v == 0)
        return psi_fail(err, EINVAL, "0 is not allowed, a size must be at least 1 byte");
    *out = v;
    return 0;
}

/* Renders a size the way a user would write it back ("1MiB", "64K"...). */
static void size_name(uint64_t v, char *buf, size_t cap)
{
    static const char *const units[] = {"", "KiB", "MiB", "GiB", "TiB"};
    size_t u = 0;

    while (u + 1 < sizeof units / sizeof units[0] && v >= 1024 && v % 1024 == 0) {
        v /= 1024;
        u++;
    }
    snprintf(buf, cap, "%llu%s", (unsigned long long)v, units[u]);
}

/* ---- small enums ------------------------------------------------------ */

int psi_parse_log_level(const char *s)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};

    if (!s)
        return -1;
    for (int i = 0; i < 4; i++)
        if (strcasecmp(s, names[i]) == 0)
            return i;
    if (strcasecmp(s, "warning") == 0)
        return PSI_LOG_WARN;
    if (s[0] >= '0' && s[0] <= '3' && s[1] == '\0')
        return s[0] - '0';
    return -1;
}

int psi_parse_bool(const char *s)
{
    static const char *const yes[] = {"1", "yes", "true", "on"};
    static const char *const no[] = {"0", "no", "false", "off", ""};

    if (!s)
        return 0;
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
        if (strcasecmp(s, yes[i]) == 0)
            return 1;
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        if (strcasecmp(s, no[i]) == 0)
            return 0;
    return -1;
}

int psi_check_store_url(const char *s, psi_err *err)
{
    static const char *const schemes[] = {"file://", "shm://", "redis://", "zmq://"};

    if (!s || !*s)
        return 0;
    for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++)
        if (strncmp(s, schemes[i], strlen(schemes[i])) == 0)
            return 0;
    return psi_fail(err, EINVAL, "'%s' is not a store URL", s);
}

/* ---- loading ---------------------------------------------------------- */

struct loader {
    psi_config *cfg;
    const char *(*get)(const char *name);
    psi_config_warn_fn warn;
    void *ctx;
};

/* Reports one bad value: "VAR='value': what was wrong; expected ...; using
 * the default X". Long values are cut so the line stays readable. */
__attribute__((format(printf, 4, 5))) static void
bad_value(struct loader *ld, const char *var, const char *val, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    int n = snprintf(msg, sizeof msg, "%s='%.80s%s': ", var, val,
                     strlen(val) > 80 ? "..." : "");

    va_start(ap, fmt);
    vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
    va_end(ap);
    if (ld->warn)
        ld->warn(ld->ctx, var, msg);
}

/* Returns the variable's value, or NULL when unset or empty. */
static const char *env_value(struct loader *ld, const char *var)
{
    const char *v = ld->get ? ld->get(var) : NULL;
    return v && *v ? v : NULL;
}

static void load_threshold(struct loader *ld)
{
    const char *v = env_value(ld, "PSI_THRESHOLD");
    char def[32];
    psi_err e;

    if (!v || psi_parse_size(v, &ld->cfg->threshold, &e) == 0)
        return;
    size_name(PSI_DEFAULT_THRESHOLD, def, sizeof def);
    bad_value(ld, "PSI_THRESHOLD", v,
              "%s; expected a size such as 1048576, 64K or 1MiB; using the default %s",
              e.msg, def);
}

/* Copies a path-like value; one that does not fit keeps the default. */
static void load_string(struct loader *ld, const char *var, char *dst, const char *what)
{
    const char *v = env_value(ld, var);

    if (!v)
        return;
    if (strlen(v) >= PSI_PATH_MAX) {
        bad_value(ld, var, v, "longer than %d bytes; using %s", PSI_PATH_MAX - 1, what);
        return;
    }
    strcpy(dst, v);
}

static void load_store(struct loader *ld)
{
    const char *v = env_value(ld, "PSI_STORE");

    if (v && psi_check_store_url(v, NULL) < 0) {
        bad_value(ld, "PSI_STORE", v,
                  "expected a URL starting with file://, shm://, redis:// or zmq://; "
                  "using the default file store");
        return;
    }
    load_string(ld, "PSI_STORE", ld->cfg->store_url, "the default file store");
}

static void load_peers(struct loader *ld)
{
    const char *v = env_value(ld, "PSI_PEERS");
    psi_err e;

    if (!v || psi_parse_peers(v, ld->cfg, &e) == 0)
        return;
    /* All or nothing: a half-read peer list would frame toward some peers
     * and not others, which is harder to diagnose than none. */
    ld->cfg->npeers = 0;
    bad_value(ld, "PSI_PEERS", v,
              "%s; expected host:port, [v6addr]:port, host:* or unix:/path, "
              "separated by commas; using no peers",
              e.msg);
}

/* PSI_ROUTE: "auto" (default: same-host peers use the shm pool when the
 * default store is remote) or "fixed" (every object to the default store). */
static void load_route(struct loader *ld, bool *fixed)
{
    const char *v = env_value(ld, "PSI_ROUTE");
    if (!v)
        return;
    if (strcasecmp(v, "auto") == 0 || strcasecmp(v, "fixed") == 0)
        *fixed = strcasecmp(v, "fixed") == 0;
    else
        bad_value(ld, "PSI_ROUTE", v, "expected auto or fixed; using auto");
}

static void load_bool(struct loader *ld, const char *var, bool *dst)
{
    const char *v = env_value(ld, var);
    int b;

    if (!v)
        return;
    b = psi_parse_bool(v);
    if (b < 0) {
        bad_value(ld, var, v, "expected 1/0, yes/no, true/false or on/off; using the default %s",
                  *dst ? "on" : "off");
        return;
    }
    *dst = b;
}

static void load_log_level(struct loader *ld)
{
    const char *v = env_value(ld, "PSI_LOG");
    int l;

    if (!v)
        return;
    l = psi_parse_log_level(v);
    if (l < 0) {
        bad_value(ld, "PSI_LOG", v, "expected error, warn, info or debug; using the default warn");
        return;
    }
    ld->cfg->log_level = l;
}

void psi_config_load(psi_config *cfg, const char *(*get)(const char *name),
                     psi_config_warn_fn warn, void *ctx)
{
    struct loader ld = {cfg, get, warn, ctx};

    memset(cfg, 0, sizeof *cfg);
    cfg->threshold = PSI_DEFAULT_THRESHOLD;
    cfg->log_level = PSI_LOG_WARN;

    load_threshold(&ld);
    load_store(&ld);
    load_peers(&ld);
    load_bool(&ld, "PSI_PIPES", &cfg->pipes);
    load_log_level(&ld);
    load_string(&ld, "PSI_LOG_FILE", cfg->log_file, "stderr");
    load_string(&ld, "PSI_STATS", cfg->stats, "no stats");
    load_bool(&ld, "PSI_DISABLE", &cfg->disable);
    load_route(&ld, &cfg->route_fixed);
    load_bool(&ld, "PSI_DRYRUN", &cfg->dryrun);
    load_string(&ld, "PSI_POLICY", cfg->policy, "no policy");
}
