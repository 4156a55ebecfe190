/* The `psi` command's internals: one file per subcommand (DESIGN §1). */
#ifndef PSI_TOOL_H
#define PSI_TOOL_H

#include <stdint.h>
#include <stdio.h>

/* Exit codes shared by every subcommand. */
#define CMD_EXIT_FAIL 1  /* the work failed (no valid stats line, a gc error) */
#define CMD_EXIT_USAGE 2 /* bad command line or environment */

/* Each subcommand gets argv with argv[0] = its own name. */
int cmd_run(int argc, char **argv);
int cmd_gc(int argc, char **argv);
int cmd_stats(int argc, char **argv);

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

#endif
