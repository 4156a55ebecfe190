/* psi_config: the PSI_* environment, parsed once.
 *
 * The environment is the public interface (DESIGN §7). Every variable is
 * optional; a value that does not parse gets one warning naming the variable
 * and the default is kept. Parsing never allocates after psi_config_load
 * returns and never calls into the preload hooks. */
#ifndef PSI_CONFIG_H
#define PSI_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "psi_err.h"

#define PSI_DEFAULT_THRESHOLD ((uint64_t)1 << 20) /* 1 MiB, DESIGN §8 */
#define PSI_MAX_PEERS 64
#define PSI_PATH_MAX 1024

enum psi_peer_kind { PSI_PEER_INET = 1, PSI_PEER_UNIX = 2 };

/* One PSI_PEERS entry: "host:port", "host:*", "[v6]:port", "unix:/path".
 * Hosts are numeric addresses or names resolved once at load time. */
typedef struct psi_peer {
    int kind;
    int family;              /* AF_INET or AF_INET6 for PSI_PEER_INET */
    unsigned char addr[16];  /* network order; 4 bytes used for AF_INET */
    int port;                /* 0..65535, or -1 for any port */
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
} psi_peer;

typedef struct psi_config {
    uint64_t threshold;          /* PSI_THRESHOLD */
    char store_url[PSI_PATH_MAX];/* PSI_STORE, "" = embedded default file store */
    psi_peer peers[PSI_MAX_PEERS];
    size_t npeers;               /* PSI_PEERS */
    bool pipes;                  /* PSI_PIPES: offer framing on pipes we write */
    int log_level;               /* PSI_LOG: psi_log_level, default WARN */
    char log_file[PSI_PATH_MAX]; /* PSI_LOG_FILE, "" = stderr */
    char stats[PSI_PATH_MAX];    /* PSI_STATS: a path, "stderr", or "" = off */
    bool disable;                /* PSI_DISABLE: pass everything through */
    bool dryrun;                 /* PSI_DRYRUN: observe only (policy issue) */
    char policy[PSI_PATH_MAX];   /* PSI_POLICY, "" = none */
    bool route_fixed;            /* PSI_ROUTE=fixed: no shm for same-host peers */
} psi_config;

/* Called once per problem found while loading: `var` is the variable name,
 * `msg` a complete sentence. */
typedef void (*psi_config_warn_fn)(void *ctx, const char *var, const char *msg);

/* Fills cfg with defaults, then applies the environment read through
 * `get` (getenv in production, a table in tests). Never fails: bad values
 * are reported through `warn` (may be NULL) and the default is kept. An
 * empty value counts as unset. A bad PSI_PEERS drops the whole list.
 * Host names in PSI_PEERS are resolved here with getaddrinfo, which may
 * open sockets (DNS, nss modules): call it with the preload library's
 * reentrancy guard set. */
void psi_config_load(psi_config *cfg, const char *(*get)(const char *name),
                     psi_config_warn_fn warn, void *ctx);

/* "1048576", "64K", "64KiB", "1M", "1MiB", "2G", "2GiB" (binary, 1024^n);
 * "1KB", "1MB", "1GB" (decimal, 1000^n). Case-insensitive suffix, optional
 * 'B'/'b' after a bare number, no sign, no spaces, no overflow.
 * Also "T"/"TiB" (1024^4) and "TB" (1000^4). Zero is rejected: no size we
 * parse (a threshold) can be 0. Returns 0 or -1 with err set; err->msg says
 * what is wrong without repeating the value ("unknown suffix 'Q'"). */
int psi_parse_size(const char *s, uint64_t *out, psi_err *err);

/* Parses a comma-separated peer list into cfg->peers. Returns 0, or -1 with
 * err naming the bad entry (cfg->npeers then holds the entries before it).
 * Entries are appended after cfg->npeers existing ones; whitespace around
 * an entry and empty entries ("a,,b", a trailing comma) are ignored. A name
 * is resolved with getaddrinfo and adds every address it has (up to
 * PSI_MAX_PEERS); a v4-mapped IPv6 address is stored as IPv4. Abstract
 * unix sockets are written "unix:@name". */
int psi_parse_peers(const char *s, psi_config *cfg, psi_err *err);

/* "error" | "warn" | "info" | "debug" (or 0..3). Returns level or -1. */
int psi_parse_log_level(const char *s);

/* True for "1", "yes", "true", "on" (any case); false for "0", "no",
 * "false", "off", ""; -1 for anything else. */
int psi_parse_bool(const char *s);

/* Does the destination address of a connect() match a configured peer?
 * IPv4, IPv6 and v4-mapped IPv6 compare as addresses (so ::ffff:1.2.3.4
 * matches a 1.2.3.4 peer); unix paths compare exactly. */
bool psi_peers_match(const psi_config *cfg, const struct sockaddr *sa, socklen_t len);

/* PSI_STORE check: "" (the default) or a URL whose scheme is file://,
 * shm://, redis:// or zmq://. The connector validates the rest when it
 * opens. Returns 0 or -1 with err. */
int psi_check_store_url(const char *s, psi_err *err);

#endif
