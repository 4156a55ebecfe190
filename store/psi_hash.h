/* psi_hash: xxh3-128, the token's checksum (docs/protocol.md §4), through
 * the fastest implementation this CPU runs.
 *
 * Debian's libxxhash is built for the x86-64 baseline (SSE2): ~19 GB/s on
 * data in cache here. Compiled for AVX2 the same function runs at ~46 GB/s,
 * and the hash is what a put costs besides its one copy. The result is the
 * same bits either way (xxh3 is defined independently of its vector code);
 * test_hash checks both against libxxhash. */
#ifndef PSI_HASH_H
#define PSI_HASH_H

#include <stddef.h>
#include <stdint.h>

#include "psi_token.h"

typedef struct psi_hasher psi_hasher;

/* A streaming hash: new, update chunk by chunk, done (frees it). new
 * returns NULL when out of memory. */
psi_hasher *psi_hasher_new(void);
void psi_hasher_update(psi_hasher *h, const void *p, size_t n);
psi_hash128 psi_hasher_done(psi_hasher *h);

/* xxh3-128 of a buffer, in the token's representation. */
psi_hash128 psi_hash_buf(const void *buf, size_t len);

/* xxh3-64 (seed 0) of a buffer: the shm connector's chunk checksums. */
uint64_t psi_hash64(const void *buf, size_t len);

/* Which implementation runs: "avx2" or "sse2/generic". PSI_HASH_GENERIC=1
 * in the environment forces the generic one (for tests and comparisons). */
const char *psi_hash_impl(void);

/* The two implementations, for tests. */
typedef struct psi_hash_impl_ops {
    const char *name;
    void *(*new_state)(void);
    void (*update)(void *st, const void *p, size_t n);
    psi_hash128 (*done)(void *st);
    psi_hash128 (*oneshot)(const void *p, size_t n);
    uint64_t (*oneshot64)(const void *p, size_t n);
} psi_hash_impl_ops;

extern const psi_hash_impl_ops psi_hash_generic_ops;
/* NULL when this build has no AVX2 variant (not x86-64). */
extern const psi_hash_impl_ops *const psi_hash_avx2_ops_ptr;
int psi_hash_cpu_has_avx2(void);

#endif
