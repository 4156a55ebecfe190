/* The `psi` command's internals: one file per subcommand (DESIGN §1). */
#ifndef PSI_TOOL_H
#define PSI_TOOL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "psi_store.h"

/* Exit codes shared by every subcommand. */
#define CMD_EXIT_FAIL 1  /* the work failed (no valid stats line, a gc error) */
#define CMD_EXIT_USAGE 2 /* bad command line or environment */

/* Each subcommand gets argv with argv[0] = its own name. */
int cmd_run(int argc, char **argv);
int cmd_gc(int argc, char **argv);
int cmd_stats(int argc, char **argv);
int cmd_policy(int argc, char **argv);
int cmd_dryrun(int argc, char **argv);
int cmd_store(int argc, char **argv);
int cmd_store_server(int argc, char **argv);

/* Sets LD_PRELOAD to the library next to psi (psi_run.c). 0, or -1 with a
 * message printed. */
int cmd_preload(void);

/* Policy helpers shared by `psi policy` and `psi run` (psi_policy_cmd.c). */
struct psi_policy;
struct pol_diag;
/* Prints one diagnostic as FILE:LINE:COL: error|warning: MSG (FILE: ... for
 * line 0) to ctx, a FILE * (NULL: stderr). A pol_diag_fn. */
void cmd_policy_print_diag(void *ctx, const char *path, const struct pol_diag *d);
/* Loads a policy, printing every diagnostic to f. Returns the error count;
 * *warnings (if not NULL) gets the warning count. */
int cmd_policy_load(const char *path, struct psi_policy *p, FILE *f, int *warnings);

/* Prints `psi help CMD` (CMD NULL: the overview). Returns -1 if unknown. */
int cmd_help_print(FILE *f, const char *cmd);

/* Usage error: "psi CMD: message", then the command's usage, on stderr.
 * Returns CMD_EXIT_USAGE so callers can `return cmd_usage_error(...)`. */
int cmd_usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* For getopt_long's '?' and ':' (optstring starts with ':'): "unknown
 * option" or "option needs a value", then usage. Returns CMD_EXIT_USAGE. */
int cmd_bad_option(const char *cmd, int opt, char **argv);

/* "512 B", "1.5 KiB", "3.2 GiB": a byte count for people. */
void cmd_human_bytes(uint64_t v, char *buf, size_t cap);

/* The stores `psi store` and `psi gc` work on (psi_stores.c,
 * docs/store-cli.md). */
enum cmd_store_state {
    CMD_STORE_OK,          /* s is open */
    CMD_STORE_NOT_RUNNING, /* a default whose server is absent: no failure */
    CMD_STORE_UNAVAILABLE, /* configured (PSI_STORE, policy), connector not in
                              this build: the library sends inline, no failure */
    CMD_STORE_FAILED,      /* msg says why */
};

typedef struct cmd_store_entry {
    psi_store *s;          /* NULL unless CMD_STORE_OK */
    char connector[16];    /* the URL's scheme: "file", "redis" */
    char url[1024];        /* as configured, or "SCHEME (default)" */
    bool is_default;       /* an embedded default, not configured */
    int state;             /* cmd_store_state */
    char msg[256];
} cmd_store_entry;

typedef struct cmd_store_set {
    cmd_store_entry *v;
    size_t n, cap;
} cmd_store_set;

/* Fills set: the nurls URLs if any, else PSI_STORE, the connectors of the
 * policy (policy, else PSI_POLICY) and every compiled-in connector's
 * default; a store reached twice is listed once. Stores that cannot be
 * opened are entries with their state. Returns 0, or CMD_EXIT_USAGE (bad
 * URL or policy; message printed) or CMD_EXIT_FAIL (out of memory). */
int cmd_stores_open(const char *cmd, char *const *urls, size_t nurls, const char *policy,
                    cmd_store_set *set);
void cmd_stores_close(cmd_store_set *set);

/* The URL the connector reports, or the configured one if it did not open. */
const char *cmd_store_label(const cmd_store_entry *c);

/* An error that means "no server there" (ECONNREFUSED, ENOENT): a default
 * store failing so is not running, not broken. */
bool cmd_store_absent(int code);

#endif
