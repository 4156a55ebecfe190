/* psi_stats: per-process counters and the PSI_STATS line (DESIGN §9).
 *
 * Counters are relaxed atomics bumped on the slow (interposed) path only.
 * At exit the preload library appends one JSON object on one line to the
 * PSI_STATS file in a single O_APPEND write, so every process of a job can
 * share the file. `psi stats FILE` reads such a file back and sums it. */
#ifndef PSI_STATS_H
#define PSI_STATS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "psi_err.h"

typedef struct psi_stats {
    atomic_uint_fast64_t bytes_sent;       /* app bytes written to framed directions */
    atomic_uint_fast64_t bytes_proxied;    /* of those, bytes that went as tokens */
    atomic_uint_fast64_t tokens_sent;
    atomic_uint_fast64_t tokens_resolved;
    atomic_uint_fast64_t bytes_resolved;
    atomic_uint_fast64_t inline_fallbacks; /* store refused a put; sent as DATA */
    atomic_uint_fast64_t errors;           /* EIO/EPROTO returned to the app */
    atomic_uint_fast64_t put_ns;
    atomic_uint_fast64_t get_ns;
} psi_stats;

extern psi_stats psi_g_stats;

#define PSI_STAT_ADD(field, n) \
    atomic_fetch_add_explicit(&psi_g_stats.field, (uint64_t)(n), memory_order_relaxed)

/* A plain snapshot, also what `psi stats` sums into. */
typedef struct psi_stats_rec {
    uint64_t bytes_sent, bytes_proxied, tokens_sent, tokens_resolved,
        bytes_resolved, inline_fallbacks, errors;
    double put_seconds, get_seconds;
} psi_stats_rec;

void psi_stats_snapshot(const psi_stats *s, psi_stats_rec *out);

/* Formats the one-line JSON object (with trailing '\n') into buf.
 * Keys: pid, exe, bytes_sent, bytes_proxied, tokens_sent, tokens_resolved,
 * bytes_resolved, inline_fallbacks, errors, put_seconds, get_seconds.
 * Returns the length, or -1 if cap is too small. exe is JSON-escaped;
 * bytes of it that are not valid UTF-8 are written as U+FFFD. Seconds are
 * printed with 9 decimals from integers, whatever the process's locale. */
int psi_stats_format(const psi_stats_rec *r, pid_t pid, const char *exe, char *buf,
                     size_t cap);

/* Appends the line to `path` ("stderr" writes to fd 2) in one write.
 * Returns 0 or -1 with err set. */
int psi_stats_append(const char *path, const char *line, size_t len, psi_err *err);

/* Parses one line written by psi_stats_format (tolerating key order and
 * extra keys). Returns 0, or -1 with err saying what is wrong.
 * "pid" is required, missing counters read as 0, unknown keys may
 * hold any JSON value; pid and exe may be NULL (exe_cap 0) when not wanted.
 * Messages about the text start "column N:" (1-based). */
int psi_stats_parse_line(const char *line, psi_stats_rec *out, long *pid, char *exe,
                         size_t exe_cap, psi_err *err);

#endif
