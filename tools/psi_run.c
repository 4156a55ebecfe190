/* psi run: start a program with the interposer preloaded.
 *
 * Everything the preload library would only warn about is an error here,
 * before the program starts: a user who typed `psi run` wants to know now
 * that PSI_THRESHOLD=12Q is ignored, not from a log line later. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "psi_config.h"
#include "psi_policy.h"
#include "psi_tool.h"

#define LIB_NAME "libpsinterpose.so"

enum { OPT_THRESHOLD = 256, OPT_STORE, OPT_PEER, OPT_PIPES, OPT_STATS, OPT_LOG,
       OPT_LOG_FILE, OPT_POLICY };

static const struct option run_options[] = {
    {"threshold", required_argument, NULL, OPT_THRESHOLD},
    {"store", required_argument, NULL, OPT_STORE},
    {"peer", required_argument, NULL, OPT_PEER},
    {"pipes", no_argument, NULL, OPT_PIPES},
    {"stats", required_argument, NULL, OPT_STATS},
    {"log", required_argument, NULL, OPT_LOG},
    {"log-file", required_argument, NULL, OPT_LOG_FILE},
    {"policy", required_argument, NULL, OPT_POLICY},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static int set_env(const char *name, const char *value)
{
    if (setenv(name, value, 1) < 0) {
        fprintf(stderr, "psi run: cannot set %s: %s\n", name, strerror(errno));
        return -1;
    }
    return 0;
}

/* Processes change directory; a relative PSI_STATS or PSI_LOG_FILE would
 * then scatter files, so paths are made absolute here. */
static int set_path_env(const char *name, const char *path)
{
    char cwd[PATH_MAX], abs[PATH_MAX * 2];

    if (path[0] == '/' || strcmp(path, "stderr") == 0 || !getcwd(cwd, sizeof cwd))
        return set_env(name, path);
    snprintf(abs, sizeof abs, "%s/%s", cwd, path);
    return set_env(name, abs);
}

/* Like set_path_env, for a variable where "stderr" is just a file name. */
static int set_abs_env(const char *name, const char *path)
{
    char cwd[PATH_MAX], abs[PATH_MAX * 2];

    if (path[0] == '/' || !getcwd(cwd, sizeof cwd))
        return set_env(name, path);
    snprintf(abs, sizeof abs, "%s/%s", cwd, path);
    return set_env(name, abs);
}

static int add_peer(const char *peer)
{
    const char *old = getenv("PSI_PEERS");
    static psi_config scratch; /* large; only the parse result is checked */
    psi_err e;
    char *joined;
    int rc;

    scratch.npeers = 0;
    if (psi_parse_peers(peer, &scratch, &e) < 0) {
        fprintf(stderr, "psi run: --peer: %s\n", e.msg);
        return -1;
    }
    if (!old || !*old)
        return set_env("PSI_PEERS", peer);
    if (asprintf(&joined, "%s,%s", old, peer) < 0)
        return -1;
    rc = set_env("PSI_PEERS", joined);
    free(joined);
    return rc;
}

static int opt_threshold(const char *arg)
{
    char num[32];
    uint64_t v;
    psi_err e;

    if (psi_parse_size(arg, &v, &e) < 0) {
        fprintf(stderr, "psi run: --threshold '%s': %s; expected a size such as 1048576, "
                "64K or 1MiB\n", arg, e.msg);
        return -1;
    }
    snprintf(num, sizeof num, "%" PRIu64, v);
    return set_env("PSI_THRESHOLD", num);
}

static int opt_store(const char *arg)
{
    psi_err e;

    if (!*arg || psi_check_store_url(arg, &e) < 0) {
        fprintf(stderr, "psi run: --store '%s': expected a URL starting with file://, "
                "shm://, redis:// or zmq://\n", arg);
        return -1;
    }
    return set_env("PSI_STORE", arg);
}

static int opt_log(const char *arg)
{
    if (psi_parse_log_level(arg) < 0) {
        fprintf(stderr, "psi run: --log '%s': expected error, warn, info or debug\n", arg);
        return -1;
    }
    return set_env("PSI_LOG", arg);
}

static int need_value(const char *opt, const char *arg)
{
    if (*arg)
        return 0;
    fprintf(stderr, "psi run: %s needs a file name\n", opt);
    return -1;
}

/* Applies one option. Returns 0, -1 (message printed) or 1 for --help. */
static int apply_option(int opt, const char *arg)
{
    switch (opt) {
    case OPT_THRESHOLD: return opt_threshold(arg);
    case OPT_STORE:     return opt_store(arg);
    case OPT_PEER:      return add_peer(arg);
    case OPT_PIPES:     return set_env("PSI_PIPES", "1");
    case OPT_STATS:     return need_value("--stats", arg) ?: set_path_env("PSI_STATS", arg);
    case OPT_LOG:       return opt_log(arg);
    case OPT_LOG_FILE:  return need_value("--log-file", arg) ?: set_path_env("PSI_LOG_FILE", arg);
    case OPT_POLICY:    return need_value("--policy", arg) ?: set_abs_env("PSI_POLICY", arg);
    case 'h':           return 1;
    default:            return -1;
    }
}

/* ---- the environment as the library will see it ----------------------- */

static void count_warning(void *ctx, const char *var, const char *msg)
{
    fprintf(stderr, "psi run: %s\n", msg);
    ++*(int *)ctx;
}

static const char *env_get(const char *name)
{
    return getenv(name);
}

/* The library would pass everything through on a broken policy; psi run
 * refuses instead, listing every error (warnings are shown, not fatal).
 * A relative PSI_POLICY is made absolute: the program may chdir. */
static int check_policy(const char *path)
{
    static psi_policy pol; /* large: not on the stack */
    char abs[PATH_MAX * 2], cwd[PATH_MAX];
    int errors;

    if (path[0] != '/' && getcwd(cwd, sizeof cwd)) {
        snprintf(abs, sizeof abs, "%s/%s", cwd, path);
        path = abs;
    }
    errors = cmd_policy_load(path, &pol, stderr, NULL);
    if (errors) {
        fprintf(stderr, "psi run: not starting: the policy %s has %d error%s\n", path, errors,
                errors == 1 ? "" : "s");
        return -1;
    }
    return path == abs ? set_env("PSI_POLICY", abs) : 0;
}

/* Loads the final PSI_* environment as the library will; any warning the
 * library would print is an error here. */
static int check_environment(void)
{
    static psi_config cfg;
    const char *policy = getenv("PSI_POLICY");
    int warnings = 0;

    if (policy && *policy && check_policy(policy) < 0)
        return -1;
    psi_config_load(&cfg, env_get, count_warning, &warnings);
    if (warnings)
        fprintf(stderr, "psi run: not starting: fix or unset the variable%s above\n",
                warnings > 1 ? "s" : "");
    return warnings ? -1 : 0;
}

/* ---- finding and preloading the library ------------------------------- */

/* The library next to the psi binary (a build tree), else $PREFIX/lib for
 * an installed $PREFIX/bin/psi. Fills lib with a resolved absolute path. */
static int find_library(char *lib, size_t cap)
{
    static const char *const rel[] = {LIB_NAME, "../lib/" LIB_NAME};
    char exe[PATH_MAX], cand[PATH_MAX * 2];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);

    if (n < 0) {
        fprintf(stderr, "psi run: cannot read /proc/self/exe: %s\n", strerror(errno));
        return -1;
    }
    exe[n] = '\0';
    const char *dir = dirname(exe);
    for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
        char real[PATH_MAX];
        snprintf(cand, sizeof cand, "%s/%s", dir, rel[i]);
        if (access(cand, R_OK) == 0 && realpath(cand, real) && strlen(real) < cap) {
            strcpy(lib, real);
            return 0;
        }
    }
    fprintf(stderr, "psi run: cannot find %s in %s/ or %s/../lib/\n", LIB_NAME, dir, dir);
    return -1;
}

/* Is lib already one of the entries of an LD_PRELOAD list? */
static bool preload_has(const char *list, const char *lib)
{
    size_t n = strlen(lib);

    for (const char *p = list; *p;) {
        size_t len = strcspn(p, " :");
        if (len == n && strncmp(p, lib, n) == 0)
            return true;
        p += len;
        p += strspn(p, " :");
    }
    return false;
}

/* Puts the library in front of LD_PRELOAD (psi run, psi dry-run). */
int cmd_preload(void)
{
    char lib[PATH_MAX], *joined;
    const char *old = getenv("LD_PRELOAD");
    int rc;

    if (find_library(lib, sizeof lib) < 0)
        return -1;
    /* ld.so splits LD_PRELOAD on spaces and colons. */
    if (strpbrk(lib, " :")) {
        fprintf(stderr, "psi run: cannot preload '%s': the path contains a space or ':'\n",
                lib);
        return -1;
    }
    if (!old || !*old)
        return set_env("LD_PRELOAD", lib);
    if (preload_has(old, lib))
        return 0;
    if (asprintf(&joined, "%s:%s", lib, old) < 0)
        return -1;
    rc = set_env("LD_PRELOAD", joined);
    free(joined);
    return rc;
}

int cmd_run(int argc, char **argv)
{
    int opt;

    opterr = 0;
    optind = 1;
    /* '+': options stop at the program's name, so `psi run ls -l` works. */
    while ((opt = getopt_long(argc, argv, "+:h", run_options, NULL)) != -1) {
        if (opt == '?' || opt == ':')
            return cmd_bad_option("run", opt, argv);
        int rc = apply_option(opt, optarg);
        if (rc == 1) {
            cmd_help_print(stdout, "run");
            return 0;
        }
        if (rc < 0)
            return CMD_EXIT_USAGE;
    }
    if (optind >= argc)
        return cmd_usage_error("run", "no command given");
    if (check_environment() < 0 || cmd_preload() < 0)
        return CMD_EXIT_USAGE;
    fflush(NULL);
    execvp(argv[optind], argv + optind);
    fprintf(stderr, "psi run: cannot run '%s': %s\n", argv[optind], strerror(errno));
    return errno == ENOENT ? 127 : 126;
}
