/* pol_load: policy files and the environment (docs/policy.md §6, §7).
 *
 * A file is read whole (at most POL_FILE_MAX bytes) and handed to the
 * parser; everything that can be wrong with the file itself is one error
 * on line 0. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pol_internal.h"

/* ---- peers -------------------------------------------------------------- */

static bool peer_same(const psi_peer *a, const psi_peer *b)
{
    return a->kind == b->kind && a->family == b->family && a->port == b->port &&
           memcmp(a->addr, b->addr, sizeof a->addr) == 0 && strcmp(a->path, b->path) == 0;
}

/* Appends src to a peer table unless already there. Returns -1 when full. */
int pol_peer_append(psi_peer *v, size_t *n, size_t max, const psi_peer *src)
{
    for (size_t i = 0; i < *n; i++)
        if (peer_same(&v[i], src))
            return 0;
    if (*n >= max)
        return -1;
    v[(*n)++] = *src;
    return 0;
}

/* ---- files -------------------------------------------------------------- */

static int load_fail(const char *path, psi_policy *out, pol_diag_fn diag, void *ctx,
                     const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int load_fail(const char *path, psi_policy *out, pol_diag_fn diag, void *ctx,
                     const char *fmt, ...)
{
    pol_diag g = {.warning = false, .line = 0, .col = 0};
    va_list ap;

    pol_policy_init(out, path);
    va_start(ap, fmt);
    vsnprintf(g.msg, sizeof g.msg, fmt, ap);
    va_end(ap);
    if (diag)
        diag(ctx, path, &g);
    return 1;
}

int psi_policy_load(const char *path, psi_policy *out, pol_diag_fn diag, void *ctx)
{
    struct stat st;
    char *buf;
    size_t len = 0;
    int fd, rc;

    if (!path || !*path)
        return load_fail("", out, diag, ctx, "no policy file name given");
    if (strlen(path) >= PSI_PATH_MAX)
        return load_fail(path, out, diag, ctx, "path longer than %d bytes", PSI_PATH_MAX - 1);
    /* O_NONBLOCK: opening a FIFO must not wait for a writer. */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return load_fail(path, out, diag, ctx, "cannot open the policy file: %s",
                         strerror(errno));
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return load_fail(path, out, diag, ctx, "cannot stat the policy file: %s", strerror(e));
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return load_fail(path, out, diag, ctx, "is a directory; expected a policy file");
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return load_fail(path, out, diag, ctx, "not a regular file; expected a policy file");
    }
    if (st.st_size > POL_FILE_MAX) {
        close(fd);
        return load_fail(path, out, diag, ctx, "too large: %lld bytes; a policy file is at "
                         "most %d bytes (1 MiB)", (long long)st.st_size, POL_FILE_MAX);
    }
    buf = malloc(POL_FILE_MAX + 1);
    if (!buf) {
        close(fd);
        return load_fail(path, out, diag, ctx, "out of memory");
    }
    /* The file may grow between fstat and read: read one byte more than
     * allowed to notice. */
    for (;;) {
        ssize_t n = read(fd, buf + len, POL_FILE_MAX + 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            free(buf);
            close(fd);
            return load_fail(path, out, diag, ctx, "cannot read the policy file: %s",
                             strerror(e));
        }
        if (n == 0 || (len += (size_t)n) > POL_FILE_MAX)
            break;
    }
    close(fd);
    if (len > POL_FILE_MAX) {
        free(buf);
        return load_fail(path, out, diag, ctx, "too large: more than %d bytes (1 MiB)",
                         POL_FILE_MAX);
    }
    rc = psi_policy_parse(path, buf, len, out, diag, ctx);
    free(buf);
    return rc;
}

/* ---- environment -------------------------------------------------------- */

void psi_policy_apply_env(psi_policy *p, const psi_config *cfg, bool threshold_from_env)
{
    if (threshold_from_env) {
        p->threshold = cfg->threshold;
        p->threshold_from = POL_FROM_ENV;
    } else if (!p->has_threshold) {
        p->threshold = cfg->threshold;
        p->threshold_from = POL_FROM_BUILTIN;
    }
    for (size_t i = 0; i < cfg->npeers; i++)
        if (pol_peer_append(p->peers, &p->npeers, POL_MAX_PEERS, &cfg->peers[i]) < 0)
            break;
    pol_summarize(p);
}

size_t psi_policy_peers_into(const psi_policy *p, psi_config *cfg)
{
    size_t lost = 0;

    for (size_t i = 0; i < p->npeers; i++)
        if (pol_peer_append(cfg->peers, &cfg->npeers, PSI_MAX_PEERS, &p->peers[i]) < 0)
            lost++;
    return lost;
}
