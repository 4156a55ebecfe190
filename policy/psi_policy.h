/* psi_policy: the policy file (DESIGN §7, docs/policy.md).
 *
 * A policy is an ordered list of rules; the first rule that matches a send
 * decides what happens to it. It also declares named connectors, interposed
 * peers, and defaults (threshold, connector). Parsing never stops at the
 * first error: every problem is reported with file:line:col, so
 * `psi policy check` can list them all.
 *
 * The matcher is pure (no syscalls, no allocation) and is called by the
 * preload library for every candidate send, and by `psi policy explain`. */
#ifndef PSI_POLICY_H
#define PSI_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "psi_config.h"
#include "psi_err.h"

enum pol_channel { /* bit flags, so a rule can name several */
    POL_CH_TCP = 1 << 0,
    POL_CH_UNIX = 1 << 1,
    POL_CH_PIPE = 1 << 2,
    POL_CH_UDP = 1 << 3,
    POL_CH_MPI = 1 << 4,
    POL_CH_ZMQ = 1 << 5,
    POL_CH_ANY = 0x3f,
};

enum pol_direction { POL_DIR_SEND = 1, POL_DIR_RECV = 2, POL_DIR_ANY = 3 };

enum pol_action { POL_ACT_PROXY = 1, POL_ACT_PASS = 2, POL_ACT_LOG = 3 };

#define POL_NAME_MAX 64
#define POL_GLOB_MAX 256
#define POL_MAX_RULES 256
#define POL_MAX_CONNECTORS 32
#define POL_MAX_PEERS PSI_MAX_PEERS
#define POL_FILE_MAX (1 << 20) /* a policy larger than 1 MiB is refused */

/* A named connector: `connector NAME URL`. */
typedef struct pol_connector {
    char name[POL_NAME_MAX];
    char url[PSI_PATH_MAX];
    int line;
    int col;                  /* of NAME, for diagnostics */
} pol_connector;

/* What a send looks like to the matcher. */
typedef struct pol_ctx {
    int channel;                   /* one POL_CH_* bit */
    int direction;                 /* POL_DIR_SEND or POL_DIR_RECV */
    const struct sockaddr *peer;   /* NULL for pipes, or when unknown */
    socklen_t peer_len;
    uint64_t size;
    const char *exe;               /* basename of the executable */
    /* The caller, computed only if a rule needs it (it costs a stack walk):
     * returns the function names on the stack, innermost first, or NULL. */
    const char *const *(*callers)(void *arg, size_t *n);
    void *callers_arg;
} pol_ctx;

typedef struct pol_rule {
    char name[POL_NAME_MAX];  /* "rule NAME:" or "rule#N" when unnamed */
    int line, col;            /* where the rule starts */
    /* match; a field left unset matches anything */
    int channels;             /* POL_CH_* bits, POL_CH_ANY if unset */
    int direction;            /* POL_DIR_*, POL_DIR_ANY if unset */
    bool has_net;             /* peer=ADDR[/PREFIX] */
    int family;               /* AF_INET or AF_INET6 */
    unsigned char net[16];
    int prefix;
    int port_lo, port_hi;     /* port=N or port=A-B; -1 when unset */
    char unix_glob[POL_GLOB_MAX];  /* peer=unix:GLOB */
    uint64_t size_min, size_max;   /* size=A..B, inclusive; 0..UINT64_MAX */
    char exe_glob[POL_GLOB_MAX];
    char caller_glob[POL_GLOB_MAX];
    /* action */
    int action;               /* POL_ACT_* */
    int connector;            /* index into policy connectors, -1 = default */
    int lifetime;             /* psi_lifetime, -1 = default (refcount) */
    uint32_t ttl;             /* seconds, 0 = default */
    bool has_threshold;       /* proxy threshold=N: overrides the default */
    uint64_t threshold;
} pol_rule;

typedef struct psi_policy {
    char path[PSI_PATH_MAX];
    pol_rule rules[POL_MAX_RULES];
    size_t nrules;
    pol_connector connectors[POL_MAX_CONNECTORS];
    size_t nconnectors;
    psi_peer peers[POL_MAX_PEERS]; /* `peer` declarations, like PSI_PEERS */
    size_t npeers;
    bool has_threshold;       /* `defaults threshold=N` */
    uint64_t threshold;
    int default_connector;    /* `defaults connector=NAME`, -1 = the env/built-in one */
    bool needs_callers;       /* some rule has caller= */
    uint64_t min_candidate;   /* smallest size any proxy rule could act on */
    /* Additions (docs/policy.md §9). After psi_policy_parse, `threshold`
     * always holds the effective default threshold (the file's `defaults
     * threshold=`, else PSI_DEFAULT_THRESHOLD); psi_policy_apply_env may
     * replace it. Pass p->threshold to psi_policy_decide. */
    int threshold_from;       /* POL_FROM_*: where `threshold` came from */
    bool has_log;             /* some rule's action is log */
} psi_policy;

enum pol_from { POL_FROM_BUILTIN = 0, POL_FROM_FILE = 1, POL_FROM_ENV = 2 };

/* One diagnostic: severity, position, message. */
typedef struct pol_diag {
    bool warning;             /* false: error */
    int line, col;            /* 1-based; 0 when about the whole file */
    char msg[256];
} pol_diag;

typedef void (*pol_diag_fn)(void *ctx, const char *path, const pol_diag *d);

/* Parses text[0..len) as a policy named `path` (used in messages). Reports
 * every error and warning through `diag` (may be NULL). Returns the number
 * of errors (0: the policy is usable). Warnings: a rule that can never match
 * because an earlier rule shadows it, and the like. */
int psi_policy_parse(const char *path, const char *text, size_t len, psi_policy *out,
                     pol_diag_fn diag, void *ctx);

/* Reads and parses a file: missing, unreadable, empty, binary (a NUL byte or
 * invalid UTF-8) and larger-than-POL_FILE_MAX files are errors with a clear
 * message, reported through `diag` with line 0. Returns the error count. */
int psi_policy_load(const char *path, psi_policy *out, pol_diag_fn diag, void *ctx);

/* Applies the environment on top of the file (env wins, for one run):
 * PSI_THRESHOLD sets the default threshold, PSI_PEERS adds peers. `cfg` is
 * the already-loaded environment. With threshold_from_env false, a file
 * without `defaults threshold=` takes cfg->threshold (the built-in 1 MiB).
 * PSI_STORE needs nothing here: a decision's connector -1 means "the
 * PSI_STORE / built-in connector", and `defaults connector=` (when given)
 * is already folded into every decision. Recomputes min_candidate. */
void psi_policy_apply_env(psi_policy *p, const psi_config *cfg, bool threshold_from_env);

/* Appends the policy's `peer` declarations to cfg->peers (duplicates
 * skipped, up to PSI_MAX_PEERS), so psi_peers_match(cfg, ...) covers
 * PSI_PEERS and the policy alike. Returns how many did not fit. */
size_t psi_policy_peers_into(const psi_policy *p, psi_config *cfg);

/* The decision for one send. */
typedef struct pol_decision {
    int rule;        /* index of the matching rule, -1: no rule matched */
    int action;      /* POL_ACT_*: with no rule, PROXY when size >= threshold, else PASS */
    int connector;   /* index, or -1 for the default connector */
    int lifetime;
    uint32_t ttl;
    uint64_t threshold; /* the threshold that applied */
} pol_decision;

/* First match wins. `threshold` is the default (env or policy defaults).
 * A matching proxy rule proxies only sizes >= its threshold (its own, or
 * the default); below it the send passes, and `rule` still names the rule.
 * `connector` is the rule's, else `defaults connector=`, else -1. The
 * callers callback is invoked at most once per call, and only when a rule
 * with caller= has every other condition matched.
 *
 * Fast path for callers: when c->size < p->min_candidate and !p->has_log,
 * the decision is PASS whichever rule matches, so decide need not be called
 * (and no stack walked). Pure: no syscalls, no allocation. */
void psi_policy_decide(const psi_policy *p, const pol_ctx *c, uint64_t threshold,
                       pol_decision *out);

/* Why rule `i` does or does not match c: writes a short reason ("channel is
 * pipe, rule wants tcp") into buf. Returns true if it matches. */
bool psi_policy_explain_rule(const psi_policy *p, size_t i, const pol_ctx *c, char *buf,
                             size_t cap);

/* fnmatch-style glob: '*', '?', '[...]'; used for exe, caller, unix paths. */
bool pol_glob(const char *pattern, const char *s);

const char *pol_channel_name(int channel_bit);
const char *pol_action_name(int action);
/* "refcount", "ttl", "evict-on-read"; "default" for -1. */
const char *pol_lifetime_name(int lifetime);

/* A size as a user would write it: "4MiB", "1500", "64KiB". */
void pol_size_str(uint64_t v, char *buf, size_t cap);

#endif
