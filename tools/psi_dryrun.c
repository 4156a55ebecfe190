/* psi dry-run: run a program tree in observe-only mode and report what a
 * policy would proxy (DESIGN §9, docs/guide.md "Dry run").
 *
 * Every process of the tree inherits PSI_DRYRUN=1, PSI_DRYRUN_OUT and
 * LD_PRELOAD, records its own sends and leaves one JSON file at exit; once
 * the command is done, the files are merged (pol_report) and rendered
 * (psi_report). The command's stdout is left to the command: the table goes
 * to stderr. */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pol_report.h"
#include "psi_config.h"
#include "psi_policy.h"
#include "psi_report.h"
#include "psi_tool.h"

enum { OPT_POLICY = 256, OPT_THRESHOLD, OPT_JSON, OPT_HTML };

static const struct option dry_options[] = {
    {"policy", required_argument, NULL, OPT_POLICY},
    {"threshold", required_argument, NULL, OPT_THRESHOLD},
    {"json", required_argument, NULL, OPT_JSON},
    {"html", required_argument, NULL, OPT_HTML},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

typedef struct dry_opts {
    const char *policy, *json, *html;
    char policy_abs[PATH_MAX];
    uint64_t threshold; /* 0: not given */
} dry_opts;

static int dry_setenv(const char *name, const char *value)
{
    if (setenv(name, value, 1) == 0)
        return 0;
    fprintf(stderr, "psi dry-run: cannot set %s: %s\n", name, strerror(errno));
    return -1;
}

static void dry_warning(void *ctx, const char *var, const char *msg)
{
    (void)var;
    fprintf(stderr, "psi dry-run: %s\n", msg);
    ++*(int *)ctx;
}

static const char *dry_getenv(const char *name)
{
    return getenv(name);
}

/* Options into the environment the tree will inherit; the final PSI_*
 * environment is then checked as the library will read it. */
static int dry_configure(dry_opts *o, uint64_t *threshold)
{
    static psi_config cfg;
    static psi_policy pol;
    int warnings = 0;

    if (o->threshold) {
        char num[32];
        snprintf(num, sizeof(num), "%" PRIu64, o->threshold);
        if (dry_setenv("PSI_THRESHOLD", num) < 0)
            return -1;
    }
    if (o->policy) {
        if (!realpath(o->policy, o->policy_abs))
            snprintf(o->policy_abs, sizeof(o->policy_abs), "%s", o->policy);
        if (dry_setenv("PSI_POLICY", o->policy_abs) < 0)
            return -1;
    }
    unsetenv("PSI_DISABLE"); /* a dry run that observes nothing is no use */
    psi_config_load(&cfg, dry_getenv, dry_warning, &warnings);
    if (warnings) {
        fprintf(stderr, "psi dry-run: not starting: fix or unset the variable%s above\n",
                warnings > 1 ? "s" : "");
        return -1;
    }
    *threshold = cfg.threshold;
    if (cfg.policy[0]) {
        /* The library would pass everything through with a broken policy
         * and observe nothing: refuse, as psi run does. */
        if (cmd_policy_load(cfg.policy, &pol, stderr, NULL) > 0) {
            fprintf(stderr, "psi dry-run: policy %s has errors (see above); not starting\n",
                    cfg.policy);
            return -1;
        }
        const char *env = getenv("PSI_THRESHOLD");
        psi_policy_apply_env(&pol, &cfg, env && *env);
        *threshold = pol.threshold ? pol.threshold : cfg.threshold;
    }
    return 0;
}

/* Removes the per-process files and the directory. */
static void dry_cleanup(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[PATH_MAX];
    if (d) {
        while ((e = readdir(d))) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            if (snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) < (int)sizeof(path))
                unlink(path);
        }
        closedir(d);
    }
    rmdir(dir);
}

/* Merges every finished process file ("dry.PID.json"). */
static void dry_merge(const char *dir, pol_report *r)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[PATH_MAX];
    if (!d) {
        fprintf(stderr, "psi dry-run: cannot read %s: %s\n", dir, strerror(errno));
        return;
    }
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (strncmp(e->d_name, "dry.", 4) != 0 || n < 10 || strcmp(e->d_name + n - 5, ".json"))
            continue;
        if (snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) >= (int)sizeof(path))
            continue;
        psi_err err = {0};
        if (pol_report_add_file(r, path, &err) != 0)
            fprintf(stderr, "psi dry-run: skipping %s: %s\n", e->d_name, err.msg);
    }
    closedir(d);
}

/* Runs argv with the environment set; returns its status as a shell would
 * report it (128 + signal), or 126/127 if it could not be started. */
static int dry_execute(char **argv)
{
    struct sigaction ign = {.sa_handler = SIG_IGN}, old_int, old_quit;
    sigemptyset(&ign.sa_mask);
    /* ^C goes to the whole foreground group: the command decides what to
     * do with it, and we stay to report what happened until then. */
    sigaction(SIGINT, &ign, &old_int);
    sigaction(SIGQUIT, &ign, &old_quit);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "psi dry-run: fork: %s\n", strerror(errno));
        return 126;
    }
    if (pid == 0) {
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGQUIT, &old_quit, NULL);
        execvp(argv[0], argv);
        fprintf(stderr, "psi dry-run: cannot run '%s': %s\n", argv[0], strerror(errno));
        _exit(errno == ENOENT ? 127 : 126);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGQUIT, &old_quit, NULL);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}

static int dry_write(const char *what, const char *path, const pol_report *r,
                     const report_meta *m, int (*render)(FILE *, const pol_report *,
                                                         const report_meta *))
{
    FILE *f = strcmp(path, "-") == 0 ? stdout : fopen(path, "w");
    if (!f) {
        fprintf(stderr, "psi dry-run: cannot write %s %s: %s\n", what, path, strerror(errno));
        return -1;
    }
    int rc = render(f, r, m);
    if (f != stdout ? fclose(f) != 0 : fflush(f) != 0)
        rc = -1;
    if (rc != 0)
        fprintf(stderr, "psi dry-run: error writing %s %s\n", what, path);
    return rc;
}

static double dry_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int cmd_dryrun(int argc, char **argv)
{
    dry_opts o = {0};
    int opt;

    opterr = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "+:h", dry_options, NULL)) != -1) {
        psi_err e;
        switch (opt) {
        case OPT_POLICY: o.policy = optarg; break;
        case OPT_JSON: o.json = optarg; break;
        case OPT_HTML: o.html = optarg; break;
        case OPT_THRESHOLD:
            if (psi_parse_size(optarg, &o.threshold, &e) < 0 || o.threshold == 0) {
                fprintf(stderr, "psi dry-run: --threshold '%s': expected a size such as "
                        "1048576, 64K or 1MiB\n", optarg);
                return CMD_EXIT_USAGE;
            }
            break;
        case 'h': cmd_help_print(stdout, "dry-run"); return 0;
        default: return cmd_bad_option("dry-run", opt, argv);
        }
    }
    if (optind >= argc)
        return cmd_usage_error("dry-run", "no command given");
    if ((o.policy && !*o.policy) || (o.json && !*o.json) || (o.html && !*o.html))
        return cmd_usage_error("dry-run", "an option needs a file name");

    uint64_t threshold = 0;
    if (dry_configure(&o, &threshold) < 0)
        return CMD_EXIT_USAGE;
    const char *tmpdir = getenv("TMPDIR");
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s/psi-dryrun.XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
    if (!mkdtemp(dir)) {
        fprintf(stderr, "psi dry-run: cannot create a directory in %s: %s\n",
                tmpdir && *tmpdir ? tmpdir : "/tmp", strerror(errno));
        return CMD_EXIT_FAIL;
    }
    if (dry_setenv("PSI_DRYRUN", "1") < 0 || dry_setenv("PSI_DRYRUN_OUT", dir) < 0 ||
        cmd_preload() < 0) {
        dry_cleanup(dir);
        return CMD_EXIT_USAGE;
    }

    double t0 = dry_now();
    int status = dry_execute(argv + optind);
    double secs = dry_now() - t0;

    pol_report r;
    pol_report_init(&r);
    dry_merge(dir, &r);
    dry_cleanup(dir);
    pol_report_sort(&r);
    report_meta m = {.argv = argv + optind,
                     .exit_status = status,
                     .threshold = threshold,
                     .policy = o.policy ? o.policy_abs : NULL,
                     .seconds = secs};
    report_text(stderr, &r, &m);
    int werr = 0;
    if (o.json && dry_write("JSON", o.json, &r, &m, report_json) < 0)
        werr = 1;
    if (o.html && dry_write("HTML", o.html, &r, &m, report_html) < 0)
        werr = 1;
    pol_report_free(&r);
    /* The command's status first: a dry run must not hide a failure. */
    return status ? status : werr ? CMD_EXIT_FAIL : 0;
}
