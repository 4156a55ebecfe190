/* pl_init: load-time set-up and exit-time stats (DESIGN §5, §7, §9). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pl_bulk.h"
#include "pl_caller.h"
#include "pl_dryrun.h"
#include "pl_engine.h"
#include "pl_store.h"
#include "psi_hash.h"
#include "pl_handoff.h"
#include "pl_epoll.h"
#include "pl_real.h"
#include "psi_log.h"
#include "psi_registry.h"
#include "psi_stats.h"

pl_global pl_g;

static pthread_once_t pl_init_once = PTHREAD_ONCE_INIT;

/* Set while this thread runs the initialiser: loading the config may
 * resolve PSI_PEERS host names, and an NSS module's socket calls come back
 * through our hooks, which must not wait on the initialisation they are
 * part of. */
static _Thread_local int pl_initializing;

static const char *pl_getenv(const char *name)
{
    return getenv(name);
}

/* Config warnings arrive before the log is set up; keep them until it is. */
typedef struct pl_warnings {
    char text[8][320];
    int n;
} pl_warnings;

static void pl_config_warn(void *ctx, const char *var, const char *msg)
{
    pl_warnings *w = ctx;
    (void)var;
    if (w->n < 8)
        snprintf(w->text[w->n++], sizeof(w->text[0]), "%s", msg);
}

static void pl_finalize(pl_state *st)
{
    if (st->kind == PL_KIND_LISTENER && st->reg_entry[0] && st->reg_pid == getpid())
        psi_registry_remove(st->reg_entry);
    pl_engine_finalize(st);
    pl_epoll_finalize(st);
}

/* A forked child counts only its own traffic: its stats line and the
 * parent's are summed by `psi stats`, so inherited counts would be counted
 * twice. */
static void pl_stats_reset(void)
{
    atomic_uint_fast64_t *f[] = {&psi_g_stats.bytes_sent,      &psi_g_stats.bytes_proxied,
                                 &psi_g_stats.tokens_sent,     &psi_g_stats.tokens_resolved,
                                 &psi_g_stats.bytes_resolved,  &psi_g_stats.inline_fallbacks,
                                 &psi_g_stats.errors,          &psi_g_stats.put_ns,
                                 &psi_g_stats.get_ns};
    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
        atomic_store_explicit(f[i], 0, memory_order_relaxed);
}

static void pl_atfork_child(void)
{
    pl_fdtab_atfork_child();
    pl_store_atfork_child();
    pl_stats_reset();
    if (pl_g.dryrun)
        pl_dry_atfork_child();
}

static void pl_init_once_fn(void)
{
    int saved = errno;
    pl_initializing = 1;
    pl_bind();
    pl_warnings w = {.n = 0};
    psi_config_load(&pl_g.cfg, pl_getenv, pl_config_warn, &w);
    psi_log_init(pl_g.cfg.log_level, pl_g.cfg.log_file);
    for (int i = 0; i < w.n; i++)
        psi_log(PSI_LOG_WARN, "%s", w.text[i]);
    if (pl_policy_init() != 0)
        pl_g.passthrough = true;
    if (pl_g.cfg.disable)
        pl_g.passthrough = true;
    pl_g.dryrun = pl_g.cfg.dryrun && !pl_g.passthrough;
    if (pl_g.dryrun)
        pl_caller_init(); /* before fds are tracked: libunwind opens a pipe */
    /* The checksum implementation is picked now, while the process is
     * (almost always) single threaded: its pthread_once fast path is an
     * atomic load that race detectors (helgrind) do not model. */
    (void)psi_hash_impl();
    pl_state_finalize = pl_finalize;
    pthread_atfork(NULL, NULL, pl_atfork_child);
    pl_fdtab_set_owner();
    pl_g.ready = true;
    pl_handoff_import(); /* before the scan: a handed-off state wins */
    pl_scan_std_fds();
    pl_bulk_adopt_stdio(); /* FILEs on framed std fds go through the engine */
    pl_initializing = 0;
    errno = saved;
}

void pl_init(void)
{
    if (!pl_initializing)
        pthread_once(&pl_init_once, pl_init_once_fn);
}

/* The constructor and destructor attributes are GCC/Clang extensions; a
 * preload library has no other hook to run at load and at exit. */
__attribute__((constructor)) static void pl_ctor(void)
{
    pl_init();
}

__attribute__((destructor)) static void pl_dtor(void)
{
    if (pl_g.ready)
        pl_bulk_exit_flush(); /* bytes still in our stdio buffers count */
    if (pl_g.ready && pl_g.dryrun) {
        int saved = errno;
        pl_dry_dump();
        errno = saved;
    }
    if (!pl_g.ready || !pl_g.cfg.stats[0])
        return;
    int saved = errno;
    psi_stats_rec rec;
    psi_stats_snapshot(&psi_g_stats, &rec);
    char line[2048];
    int len = psi_stats_format(&rec, getpid(), program_invocation_short_name, line,
                               sizeof(line));
    psi_err err = {0};
    if (len > 0 && psi_stats_append(pl_g.cfg.stats, line, (size_t)len, &err) != 0)
        psi_log(PSI_LOG_WARN, "PSI_STATS=%s: %s", pl_g.cfg.stats, err.msg);
    errno = saved;
}
