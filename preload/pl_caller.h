/* pl_caller: who is sending, for `caller=` rules and the dry-run report
 * (DESIGN §7).
 *
 * The stack is walked with libunwind, starting at the first frame outside
 * this library (the application's call into our hook, or libc's). A walk is
 * cheap; naming its frames is not (libunwind reads the ELF symbol table), so
 * names are cached per call site, keyed on the first PL_CALLER_KEY return
 * addresses outside the library. Only sends above the smallest candidate
 * size should get here: the matcher asks lazily, through pol_ctx.callers.
 *
 * Everything returned is interned for the life of the process, except when
 * the cache is full: then results live in a per-thread buffer that the
 * thread's next call overwrites. */
#ifndef PL_CALLER_H
#define PL_CALLER_H

#include <stddef.h>
#include <stdint.h>

#define PL_CALLER_MAX 32      /* frames named, innermost first */
#define PL_CALLER_KEY 4       /* return addresses in a cache key */
#define PL_CALLER_SITES 1024  /* cache slots; caching stops at 3/4 full */

/* Function names on the stack outside this library, innermost first, at
 * most PL_CALLER_MAX; "??" for a frame with no symbol. Matches
 * pol_ctx.callers; `arg` is unused and may be NULL. Never returns NULL
 * (*n may be 0). Thread-safe. */
const char *const *pl_callers(void *arg, size_t *n);

/* The innermost frame outside this library and libc, as
 * "func+0xOFF (module)", e.g. "send_blocks+0x2a (producer)"; a frame with
 * no symbol is "??+0xOFF (module)" with the offset from the module base. */
const char *pl_callsite(void);

/* Sets libunwind up (it opens a pipe and may read ELF files through our own
 * hooks): call it from pl_init before the hooks start tracking fds, so that
 * pipe is never mistaken for the application's. Idempotent; the first
 * pl_callers/pl_callsite calls it otherwise. */
void pl_caller_init(void);

/* Cache counters, for tests and stats. */
uint64_t pl_caller_cache_hits(void);
uint64_t pl_caller_cache_misses(void);
size_t pl_caller_cache_sites(void);

#endif
