/* pol_internal: what the policy parser, linter and matcher share.
 *
 * Not for preload/ or tools/: they use psi_policy.h only. */
#ifndef POL_INTERNAL_H
#define POL_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "psi_policy.h"

/* ---- lexer (pol_lex.c) ------------------------------------------------- */

#define POL_LINE_TOKENS 64          /* words on one line */
#define POL_TOKEN_MAX PSI_PATH_MAX  /* a URL is the longest value we keep */

/* One word of a line, quotes removed. A word "key=value" (the first '='
 * outside quotes) is split: text[0..eq) is the key, text+eq+1 the value. */
typedef struct pol_tok {
    char text[POL_TOKEN_MAX + 1];
    int col;     /* 1-based column (in characters) of the word */
    int eq;      /* index of the '=' in text, -1 if none */
    int vcol;    /* column of the value's first character (after a quote) */
    bool quoted; /* some part of the word was quoted */
} pol_tok;

typedef struct pol_line {
    pol_tok tok[POL_LINE_TOKENS];
    int ntok;
    int end_col; /* column just after the last character of the line */
} pol_line;

/* Splits one line (no '\n') into words: blanks separate words, '"' quotes
 * (with \" and \\ escapes), '#' at the start of a word begins a comment.
 * Returns 0, or -1 with *err_col and err set (the line is unusable). */
int pol_lex_line(const char *s, size_t n, pol_line *out, int *err_col, char *err,
                 size_t cap);

/* The 1-based column of byte `off` of s, counting UTF-8 characters. */
int pol_col(const char *s, size_t off);

/* ---- diagnostics (pol_parse.c) ----------------------------------------- */

typedef struct pol_diags {
    pol_diag *v;
    size_t n, cap;
    int errors, warnings;
    bool oom; /* a diagnostic could not be stored: counted, not shown */
} pol_diags;

void pol_diag_add(pol_diags *d, bool warning, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Resets a policy to "no statements": built-in threshold, no connectors. */
void pol_policy_init(psi_policy *out, const char *path);

/* ---- files and environment (pol_load.c) --------------------------------- */

/* Appends src to a peer table unless already there. Returns -1 when full. */
int pol_peer_append(psi_peer *v, size_t *n, size_t max, const psi_peer *src);

/* ---- lint (pol_lint.c) -------------------------------------------------- */

/* Warnings about a parsed, error-free policy: rules that can never match,
 * rules shadowed by an earlier rule, proxy rules that never proxy, unused
 * connectors. `used[i]` says whether connector i is referenced. */
void pol_lint(const psi_policy *p, const bool *used, pol_diags *d);

/* Can rule r match any send at all? false with a reason when it cannot. */
bool pol_rule_satisfiable(const pol_rule *r, char *why, size_t cap);

/* Does every send that matches `later` also match `earlier`? Sound (never
 * says yes wrongly), not complete; docs/policy.md §7 lists what it sees. */
bool pol_rule_covers(const pol_rule *earlier, const pol_rule *later);

/* Checks glob syntax: returns -1 if fine, else the byte offset of the
 * problem with *what set ("unterminated '['", "trailing '\\'"). */
int pol_glob_check(const char *pattern, const char **what);

/* ---- matcher (pol_match.c) --------------------------------------------- */

/* Recomputes needs_callers, has_log and min_candidate from the rules and
 * p->threshold. */
void pol_summarize(psi_policy *p);

/* The threshold a proxy rule applies: its own, else `def`. */
static inline uint64_t pol_rule_threshold(const pol_rule *r, uint64_t def)
{
    return r->has_threshold ? r->threshold : def;
}

#endif
