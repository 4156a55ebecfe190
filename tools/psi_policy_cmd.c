/* psi policy: check a policy file, or explain its decision for one send.
 *
 *   psi policy check FILE...
 *   psi policy explain FILE --channel C --size N [--peer A] [--direction D]
 *                           [--exe NAME] [--caller FN]...
 *
 * Diagnostics are printed as FILE:LINE:COL: error|warning: MSG (the form
 * compilers use, so editors can jump to them). docs/policy.md §8. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "psi_config.h"
#include "psi_policy.h"
#include "psi_store.h"
#include "psi_tool.h"

/* ---- diagnostics ---------------------------------------------------------- */

void cmd_policy_print_diag(void *ctx, const char *path, const pol_diag *d)
{
    FILE *f = ctx ? ctx : stderr;

    if (d->line > 0)
        fprintf(f, "%s:%d:%d: %s: %s\n", path, d->line, d->col,
                d->warning ? "warning" : "error", d->msg);
    else
        fprintf(f, "%s: %s: %s\n", path, d->warning ? "warning" : "error", d->msg);
}

typedef struct counts {
    FILE *f;
    int errors, warnings;
} counts;

static void count_diag(void *ctx, const char *path, const pol_diag *d)
{
    counts *c = ctx;

    cmd_policy_print_diag(c->f, path, d);
    if (d->warning)
        c->warnings++;
    else
        c->errors++;
}

int cmd_policy_load(const char *path, psi_policy *p, FILE *f, int *warnings)
{
    counts c = {f, 0, 0};

    psi_policy_load(path, p, count_diag, &c);
    if (warnings)
        *warnings = c.warnings;
    return c.errors;
}

static int policy_check(int argc, char **argv)
{
    static psi_policy pol; /* large: not on the stack */
    int errors = 0, warnings = 0;

    if (argc < 2)
        return cmd_usage_error("policy", "check: no policy file given");
    for (int i = 1; i < argc; i++) {
        int w = 0, e = cmd_policy_load(argv[i], &pol, stdout, &w);
        errors += e;
        warnings += w;
        printf("%s: %s: %zu rule%s, %d error%s, %d warning%s\n", argv[i],
               e ? "invalid" : "ok", pol.nrules, pol.nrules == 1 ? "" : "s", e,
               e == 1 ? "" : "s", w, w == 1 ? "" : "s");
    }
    if (argc > 2)
        printf("total: %d file%s, %d error%s, %d warning%s\n", argc - 1, argc == 2 ? "" : "s",
               errors, errors == 1 ? "" : "s", warnings, warnings == 1 ? "" : "s");
    return errors ? CMD_EXIT_USAGE : 0;
}

/* ---- explain -------------------------------------------------------------- */

enum { OPT_CHANNEL = 256, OPT_PEER, OPT_SIZE, OPT_DIRECTION, OPT_EXE, OPT_CALLER };

static const struct option explain_options[] = {
    {"channel", required_argument, NULL, OPT_CHANNEL},
    {"peer", required_argument, NULL, OPT_PEER},
    {"size", required_argument, NULL, OPT_SIZE},
    {"direction", required_argument, NULL, OPT_DIRECTION},
    {"exe", required_argument, NULL, OPT_EXE},
    {"caller", required_argument, NULL, OPT_CALLER},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

#define MAX_CALLERS 32

typedef struct explain_args {
    pol_ctx ctx;
    struct sockaddr_storage peer;
    const char *peer_text;
    const char *callers[MAX_CALLERS];
    size_t ncallers;
    bool has_channel, has_size;
} explain_args;

static int parse_channel(const char *s)
{
    for (int b = 1; b <= POL_CH_ZMQ; b <<= 1)
        if (strcmp(s, pol_channel_name(b)) == 0)
            return b;
    return 0;
}

/* ip:port, [v6]:port, unix:/path, unix:@abstract -> a sockaddr. */
static int parse_peer_addr(const char *s, explain_args *a)
{
    char host[INET6_ADDRSTRLEN + 2];
    const char *colon;
    char *end;
    long port;

    memset(&a->peer, 0, sizeof a->peer);
    if (strncmp(s, "unix:", 5) == 0) {
        struct sockaddr_un *un = (struct sockaddr_un *)&a->peer;
        const char *path = s + 5;
        size_t n = strlen(path);
        if (!n || n >= sizeof un->sun_path)
            return -1;
        un->sun_family = AF_UNIX;
        memcpy(un->sun_path, path, n);
        if (path[0] == '@')
            un->sun_path[0] = '\0';
        a->ctx.peer_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n +
                                      (path[0] != '@'));
        return 0;
    }
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':' || (size_t)(close - s - 1) >= sizeof host)
            return -1;
        memcpy(host, s + 1, (size_t)(close - s - 1));
        host[close - s - 1] = '\0';
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon || (size_t)(colon - s) >= sizeof host)
            return -1;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
    }
    errno = 0;
    port = strtol(colon + 1, &end, 10);
    if (!colon[1] || *end || errno || port < 0 || port > 65535)
        return -1;
    struct sockaddr_in *in = (struct sockaddr_in *)&a->peer;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a->peer;
    if (s[0] != '[' && inet_pton(AF_INET, host, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        a->ctx.peer_len = sizeof *in;
    } else if (s[0] == '[' && inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        a->ctx.peer_len = sizeof *in6;
    } else {
        return -1;
    }
    return 0;
}

static const char *const *explain_callers(void *arg, size_t *n)
{
    explain_args *a = arg;

    *n = a->ncallers;
    return a->ncallers ? a->callers : NULL;
}

static int explain_option(int opt, const char *arg, explain_args *a)
{
    psi_err e;

    switch (opt) {
    case OPT_CHANNEL:
        if (!(a->ctx.channel = parse_channel(arg)))
            return cmd_usage_error("policy", "--channel '%s': expected tcp, unix, pipe, udp, "
                                   "mpi or zmq", arg);
        a->has_channel = true;
        return 0;
    case OPT_PEER:
        if (parse_peer_addr(arg, a) < 0)
            return cmd_usage_error("policy", "--peer '%s': expected ip:port, [v6addr]:port, "
                                   "unix:/path or unix:@abstract", arg);
        a->ctx.peer = (const struct sockaddr *)&a->peer;
        a->peer_text = arg;
        return 0;
    case OPT_SIZE:
        if (psi_parse_size(arg, &a->ctx.size, &e) < 0)
            return cmd_usage_error("policy", "--size '%s': %s; expected a size such as "
                                   "4096, 64K or 4MiB", arg, e.msg);
        a->has_size = true;
        return 0;
    case OPT_DIRECTION:
        if (strcmp(arg, "send") == 0)
            a->ctx.direction = POL_DIR_SEND;
        else if (strcmp(arg, "recv") == 0)
            a->ctx.direction = POL_DIR_RECV;
        else
            return cmd_usage_error("policy", "--direction '%s': expected send or recv", arg);
        return 0;
    case OPT_EXE:
        a->ctx.exe = strrchr(arg, '/') ? strrchr(arg, '/') + 1 : arg;
        return 0;
    case OPT_CALLER:
        if (a->ncallers == MAX_CALLERS)
            return cmd_usage_error("policy", "more than %d --caller options", MAX_CALLERS);
        a->callers[a->ncallers++] = arg;
        return 0;
    default:
        return CMD_EXIT_USAGE;
    }
}

static void connector_desc(const psi_policy *p, int idx, const psi_config *cfg, char *buf,
                           size_t cap)
{
    if (idx >= 0) {
        snprintf(buf, cap, "%s (%s)", p->connectors[idx].name, p->connectors[idx].url);
    } else if (cfg->store_url[0]) {
        snprintf(buf, cap, "the default: PSI_STORE=%s", cfg->store_url);
    } else {
        const char *dir = psi_store_default_dir();
        snprintf(buf, cap, "the default: built-in file store (file://%s)", dir ? dir : "?");
    }
}

static const char *threshold_origin(const psi_policy *p)
{
    switch (p->threshold_from) {
    case POL_FROM_ENV: return "PSI_THRESHOLD";
    case POL_FROM_FILE: return "the policy's defaults";
    default: return "built-in";
    }
}

static void print_decision(const psi_policy *p, const explain_args *a, const pol_decision *d,
                           const psi_config *cfg)
{
    char buf[PSI_PATH_MAX + 128], sz[32], thr[32];
    const pol_rule *r = d->rule >= 0 ? &p->rules[d->rule] : NULL;

    pol_size_str(a->ctx.size, sz, sizeof sz);
    pol_size_str(d->threshold, thr, sizeof thr);
    if (!r)
        printf("no rule matches: default decision: %s, because size %s is %s the default "
               "threshold %s (%s)\n", pol_action_name(d->action), sz,
               d->action == POL_ACT_PROXY ? "at least" : "below", thr, threshold_origin(p));
    else
        printf("decision: %s (rule '%s', %s:%d)\n", pol_action_name(d->action), r->name,
               p->path, r->line);
    printf("  action:    %s\n", pol_action_name(d->action));
    if (d->action == POL_ACT_PROXY) {
        connector_desc(p, d->connector, cfg, buf, sizeof buf);
        printf("  connector: %s\n", buf);
        printf("  lifetime:  %s\n", d->lifetime < 0 ? "refcount (default)"
                                                    : pol_lifetime_name(d->lifetime));
        if (d->ttl)
            printf("  ttl:       %us\n", (unsigned)d->ttl);
        else
            printf("  ttl:       the connector's default\n");
    } else if (d->action == POL_ACT_LOG) {
        printf("  (the send passes through unchanged, and one line is logged)\n");
    }
    printf("  threshold: %s (%s)\n", thr,
           r && r->action == POL_ACT_PROXY && r->has_threshold ? "the rule's"
                                                               : threshold_origin(p));
}

static const char *env_get(const char *name)
{
    return getenv(name);
}

static int policy_explain(int argc, char **argv)
{
    static psi_policy pol;
    static psi_config cfg;
    static explain_args a;
    const char *file = NULL;
    pol_decision d;
    char why[256], sz[32];
    int opt;

    memset(&a, 0, sizeof a);
    a.ctx.direction = POL_DIR_SEND;
    a.ctx.callers = explain_callers;
    a.ctx.callers_arg = &a;
    opterr = 0;
    optind = 1;
    /* argv[0] is "explain"; FILE may come before or after the options. */
    while ((opt = getopt_long(argc, argv, ":h", explain_options, NULL)) != -1) {
        if (opt == '?' || opt == ':')
            return cmd_bad_option("policy", opt, argv);
        if (opt == 'h') {
            cmd_help_print(stdout, "policy");
            return 0;
        }
        int rc = explain_option(opt, optarg, &a);
        if (rc)
            return rc;
    }
    if (optind + 1 != argc)
        return cmd_usage_error("policy", optind >= argc ? "explain: no policy file given"
                                                        : "explain: one policy file only");
    file = argv[optind];
    if (!a.has_channel || !a.has_size)
        return cmd_usage_error("policy", "explain: --channel and --size are required");

    psi_config_load(&cfg, env_get, NULL, NULL);
    if (cmd_policy_load(file, &pol, stderr, NULL) > 0) {
        fprintf(stderr, "psi policy explain: %s has errors (see above)\n", file);
        return CMD_EXIT_USAGE;
    }
    psi_policy_apply_env(&pol, &cfg, getenv("PSI_THRESHOLD") && *getenv("PSI_THRESHOLD"));

    pol_size_str(a.ctx.size, sz, sizeof sz);
    printf("send: channel=%s direction=%s peer=%s size=%s exe=%s caller=",
           pol_channel_name(a.ctx.channel), a.ctx.direction == POL_DIR_SEND ? "send" : "recv",
           a.peer_text ? a.peer_text : "(none)", sz, a.ctx.exe ? a.ctx.exe : "(unknown)");
    for (size_t i = 0; i < a.ncallers; i++)
        printf("%s%s", i ? "," : "", a.callers[i]);
    printf("%s\n", a.ncallers ? "" : "(unknown)");

    psi_policy_decide(&pol, &a.ctx, pol.threshold, &d);
    for (size_t i = 0; i < pol.nrules; i++) {
        const pol_rule *r = &pol.rules[i];
        bool m = psi_policy_explain_rule(&pol, i, &a.ctx, why, sizeof why);
        if (!m)
            printf("rule '%s' (%s:%d): no: %s\n", r->name, file, r->line, why);
        else if (strcmp(why, "matches") == 0)
            printf("rule '%s' (%s:%d): MATCH\n", r->name, file, r->line);
        else
            printf("rule '%s' (%s:%d): MATCH (%s)\n", r->name, file, r->line, why);
        if (m)
            break;
    }
    print_decision(&pol, &a, &d, &cfg);
    return 0;
}

/* ---- dispatch ------------------------------------------------------------- */

int cmd_policy(int argc, char **argv)
{
    if (argc < 2)
        return cmd_usage_error("policy", "expected 'check' or 'explain'");
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        cmd_help_print(stdout, "policy");
        return 0;
    }
    if (strcmp(argv[1], "check") == 0) {
        for (int i = 2; i < argc; i++)
            if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
                cmd_help_print(stdout, "policy");
                return 0;
            }
        return policy_check(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "explain") == 0)
        return policy_explain(argc - 1, argv + 1);
    return cmd_usage_error("policy", "unknown subcommand '%s'; expected 'check' or 'explain'",
                           argv[1]);
}
