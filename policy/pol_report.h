/* pol_report: the data behind `psi dry-run` (DESIGN §9, docs/guide.md "Dry run").
 *
 * In dry-run mode every interposed process aggregates its sends into rows
 * (rule x call site x peer) and a log2 size histogram, and writes them at
 * exit as one JSON file into PSI_DRYRUN_OUT. `psi dry-run` merges those
 * files into one pol_report and renders it. The pure parts live here so the
 * preload library, the tool and the unit tests share them: the histogram
 * bucket, the peer's display form, JSON string escaping, the merge of a
 * process file, and the threshold sweep. No global state, no syscalls
 * except in pol_report_add_file. */
#ifndef POL_REPORT_H
#define POL_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "psi_err.h"

/* Bucket k holds send sizes in [2^k, 2^(k+1)); bucket 0 also holds 0. */
#define POL_REPORT_BUCKETS 64

/* What a proxied send puts on the wire instead of its payload: a record
 * header (5 bytes, docs/protocol.md §3) and a token body of 41 bytes plus
 * the key (§4). The file connector's key `<H>.<E>.<P>.<S>` (§5) is 32 hex
 * digits, a 10-digit expiry, a pid and a sequence number: taken as 60
 * bytes, the upper end of what real keys measure (51 to 60). */
#define POL_REPORT_TOKEN_WIRE (5 + 41 + 60)

/* The sweep's range: powers of two from 4 KiB to 256 MiB. The preload
 * records a call site for every send of at least the lowest of them. */
#define POL_SWEEP_MIN_LOG2 12
#define POL_SWEEP_MAX_LOG2 28

#define POL_REPORT_RULE_MAX 64
#define POL_REPORT_SITE_MAX 256
#define POL_REPORT_PEER_MAX 128

/* Call site of sends below the call-site threshold, all pooled. */
#define POL_REPORT_SMALL_SITE "(small sends)"
#define POL_REPORT_NO_RULE "(no rule)"

typedef struct pol_report_row {
    char rule[POL_REPORT_RULE_MAX];
    char site[POL_REPORT_SITE_MAX];
    char peer[POL_REPORT_PEER_MAX];
    char channel[8];             /* tcp, unix, pipe, ... */
    uint64_t sends, bytes;       /* every send observed */
    uint64_t proxied_sends, proxied_bytes; /* those the policy would proxy */
    uint64_t wire_after;         /* bytes on the wire had they been proxied */
} pol_report_row;

typedef struct pol_report_proc {
    long pid, ppid;
    char exe[256];
    char argv0[256];
} pol_report_proc;

typedef struct pol_report {
    pol_report_row *rows;
    size_t nrows, cap;
    pol_report_proc *procs;
    size_t nprocs, procs_cap;
    uint64_t hist_count[POL_REPORT_BUCKETS];
    uint64_t hist_bytes[POL_REPORT_BUCKETS];
    uint64_t threshold;          /* the default threshold of the run (display) */
} pol_report;

/* The histogram bucket of a send of n bytes: floor(log2(n)), 0 for 0 and 1. */
static inline int pol_report_bucket(uint64_t n)
{
    return n < 2 ? 0 : 63 - __builtin_clzll(n);
}

/* "127.0.0.1:8080", "[::1]:80", "unix:/path", "unix:@name", "unix:(unnamed)",
 * "pipe" (channel_is_pipe), "?" when the address is unknown. */
void pol_format_peer(const struct sockaddr *sa, socklen_t len, bool channel_is_pipe, char *buf,
                     size_t cap);

/* Writes s as a JSON string (with quotes) into out; bytes that are not valid
 * UTF-8 become U+FFFD. Returns the length written (excluding NUL), or -1 if
 * cap is too small. */
int pol_json_string(const char *s, char *out, size_t cap);

void pol_report_init(pol_report *r);
void pol_report_free(pol_report *r);

/* Merges one process's dry-run JSON text (the file the preload writes) into
 * r: rows with the same rule, site, peer and channel are summed, the
 * histogram is added, the process is listed. Returns 0, or -1 with err
 * ("column N: ...") and r unchanged. */
int pol_report_add_json(pol_report *r, const char *text, size_t len, psi_err *err);

/* Reads a file and merges it (pol_report_add_json). */
int pol_report_add_file(pol_report *r, const char *path, psi_err *err);

/* Sorts rows by bytes that would be proxied, then bytes, descending. */
void pol_report_sort(pol_report *r);

/* The sum of every row. */
void pol_report_totals(const pol_report *r, pol_report_row *out);

/* Bytes that a plain threshold t would move to the store: the sum of the
 * histogram's buckets whose lower bound is >= t. Exact when t is a power of
 * two (every bucket is then wholly above or wholly below t); otherwise the
 * bucket holding t is left out (a lower bound). The number of such sends:
 * pol_report_sweep_sends. */
uint64_t pol_report_sweep(const pol_report *r, uint64_t t);
uint64_t pol_report_sweep_sends(const pol_report *r, uint64_t t);

/* Percentage of bytes saved: 100 * (bytes - wire_after) / bytes, 0 if none. */
double pol_report_saved_pct(uint64_t bytes, uint64_t wire_after);

#endif
