/* psi stats: sums PSI_STATS lines (DESIGN §9) into a table or one JSON
 * object. A bad line is reported with its file and line number and skipped:
 * one truncated line from a killed process must not hide the rest. */
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "psi_stats.h"
#include "psi_tool.h"

#define EXE_MAX 4096
#define EXE_SHOWN 24 /* table column width for the program name */
#define NCOLS 11

typedef struct row {
    long pid;
    char exe[EXE_SHOWN + 1];
    psi_stats_rec r;
} row;

typedef struct rows {
    row *v;
    size_t n, cap;
} rows;

typedef struct stats_opts {
    bool raw_bytes, json;
} stats_opts;

static const struct option stats_options[] = {
    {"bytes", no_argument, NULL, 'b'},
    {"json", no_argument, NULL, 'j'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* The table shows the program's base name, cut to the column. */
static void short_exe(const char *exe, char *out)
{
    const char *base = strrchr(exe, '/');

    snprintf(out, EXE_SHOWN + 1, "%.*s", EXE_SHOWN, base && base[1] ? base + 1 : exe);
}

static int rows_push(rows *rs, long pid, const char *exe, const psi_stats_rec *r)
{
    if (rs->n == rs->cap) {
        size_t cap = rs->cap ? rs->cap * 2 : 64;
        row *v = realloc(rs->v, cap * sizeof *v);
        if (!v)
            return -1;
        rs->v = v;
        rs->cap = cap;
    }
    rs->v[rs->n].pid = pid;
    short_exe(exe, rs->v[rs->n].exe);
    rs->v[rs->n].r = *r;
    rs->n++;
    return 0;
}

static bool blank(const char *s)
{
    return s[strspn(s, " \t\r\n")] == '\0';
}

/* Reads one file's lines into rs. Returns -1 if it cannot be opened. */
static int read_file(const char *name, rows *rs)
{
    FILE *f = strcmp(name, "-") == 0 ? stdin : fopen(name, "re");
    static char exe[EXE_MAX];
    char *line = NULL;
    size_t cap = 0;
    long lineno = 0;

    if (!f) {
        fprintf(stderr, "psi stats: cannot open %s: %m\n", name);
        return -1;
    }
    while (getline(&line, &cap, f) >= 0) {
        psi_stats_rec r;
        long pid;
        psi_err e;
        lineno++;
        if (blank(line))
            continue;
        if (psi_stats_parse_line(line, &r, &pid, exe, sizeof exe, &e) < 0)
            fprintf(stderr, "%s:%ld: warning: %s; line skipped\n", name, lineno, e.msg);
        else if (rows_push(rs, pid, exe, &r) < 0)
            fprintf(stderr, "psi stats: out of memory\n");
    }
    free(line);
    if (f != stdin)
        fclose(f);
    return 0;
}

static void sum_rows(const rows *rs, psi_stats_rec *t)
{
    memset(t, 0, sizeof *t);
    for (size_t i = 0; i < rs->n; i++) {
        const psi_stats_rec *r = &rs->v[i].r;
        t->bytes_sent += r->bytes_sent;
        t->bytes_proxied += r->bytes_proxied;
        t->tokens_sent += r->tokens_sent;
        t->tokens_resolved += r->tokens_resolved;
        t->bytes_resolved += r->bytes_resolved;
        t->inline_fallbacks += r->inline_fallbacks;
        t->errors += r->errors;
        t->put_seconds += r->put_seconds;
        t->get_seconds += r->get_seconds;
    }
}

static void print_json(size_t n, const psi_stats_rec *t)
{
    printf("{\"processes\":%zu,\"bytes_sent\":%" PRIu64 ",\"bytes_proxied\":%" PRIu64
           ",\"tokens_sent\":%" PRIu64 ",\"tokens_resolved\":%" PRIu64
           ",\"bytes_resolved\":%" PRIu64 ",\"inline_fallbacks\":%" PRIu64
           ",\"errors\":%" PRIu64 ",\"put_seconds\":%.9f,\"get_seconds\":%.9f}\n",
           n, t->bytes_sent, t->bytes_proxied, t->tokens_sent, t->tokens_resolved,
           t->bytes_resolved, t->inline_fallbacks, t->errors, t->put_seconds, t->get_seconds);
}

/* ---- the table -------------------------------------------------------- */

static const char *const headers[NCOLS] = {
    "PID", "EXE", "SENT", "PROXIED", "TOK_SENT", "TOK_RES", "RESOLVED",
    "INLINE", "ERRORS", "PUT_S", "GET_S",
};

typedef char cell[32];

static void fmt_bytes(uint64_t v, const stats_opts *o, char *out)
{
    if (o->raw_bytes)
        snprintf(out, sizeof(cell), "%" PRIu64, v);
    else
        cmd_human_bytes(v, out, sizeof(cell));
}

static void fmt_row(const char *pid, const char *exe, const psi_stats_rec *r,
                    const stats_opts *o, cell *c)
{
    snprintf(c[0], sizeof c[0], "%s", pid);
    snprintf(c[1], sizeof c[1], "%s", exe);
    fmt_bytes(r->bytes_sent, o, c[2]);
    fmt_bytes(r->bytes_proxied, o, c[3]);
    snprintf(c[4], sizeof c[4], "%" PRIu64, r->tokens_sent);
    snprintf(c[5], sizeof c[5], "%" PRIu64, r->tokens_resolved);
    fmt_bytes(r->bytes_resolved, o, c[6]);
    snprintf(c[7], sizeof c[7], "%" PRIu64, r->inline_fallbacks);
    snprintf(c[8], sizeof c[8], "%" PRIu64, r->errors);
    snprintf(c[9], sizeof c[9], "%.3f", r->put_seconds);
    snprintf(c[10], sizeof c[10], "%.3f", r->get_seconds);
}

static void print_line(cell *c, const int *w)
{
    for (int i = 0; i < NCOLS; i++) /* the name left-aligned, numbers right */
        printf(i == 1 ? "%-*s" : "%*s", w[i], c[i]), fputs(i + 1 < NCOLS ? "  " : "\n", stdout);
}

static void widen(cell *c, int *w)
{
    for (int i = 0; i < NCOLS; i++)
        if ((int)strlen(c[i]) > w[i])
            w[i] = (int)strlen(c[i]);
}

static int print_table(const rows *rs, const psi_stats_rec *total, const stats_opts *o)
{
    cell *cells = calloc(rs->n + 2, sizeof(cell[NCOLS]));
    char pid[24], what[32];
    int w[NCOLS] = {0};

    if (!cells)
        return -1;
    for (int i = 0; i < NCOLS; i++)
        snprintf(cells[i], sizeof(cell), "%s", headers[i]);
    for (size_t i = 0; i < rs->n; i++) {
        snprintf(pid, sizeof pid, "%ld", rs->v[i].pid);
        fmt_row(pid, rs->v[i].exe, &rs->v[i].r, o, cells + (i + 1) * NCOLS);
    }
    snprintf(what, sizeof what, "(%zu process%s)", rs->n, rs->n == 1 ? "" : "es");
    fmt_row("TOTAL", what, total, o, cells + (rs->n + 1) * NCOLS);
    for (size_t i = 0; i < rs->n + 2; i++)
        widen(cells + i * NCOLS, w);
    for (size_t i = 0; i < rs->n + 2; i++)
        print_line(cells + i * NCOLS, w);
    free(cells);
    return 0;
}

int cmd_stats(int argc, char **argv)
{
    stats_opts o = {false, false};
    rows rs = {0};
    psi_stats_rec total;
    int opt, rc = 0;

    opterr = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, ":h", stats_options, NULL)) != -1) {
        switch (opt) {
        case 'b': o.raw_bytes = true; break;
        case 'j': o.json = true; break;
        case 'h': cmd_help_print(stdout, "stats"); return 0;
        default:  return cmd_bad_option("stats", opt, argv);
        }
    }
    if (optind >= argc)
        return cmd_usage_error("stats", "no file given");
    for (int i = optind; i < argc; i++)
        if (read_file(argv[i], &rs) < 0)
            rc = CMD_EXIT_FAIL;
    if (rs.n == 0) {
        fprintf(stderr, "psi stats: no valid stats line found\n");
        free(rs.v);
        return CMD_EXIT_FAIL;
    }
    sum_rows(&rs, &total);
    if (o.json)
        print_json(rs.n, &total);
    else if (print_table(&rs, &total, &o) < 0)
        rc = CMD_EXIT_FAIL;
    free(rs.v);
    return rc;
}
