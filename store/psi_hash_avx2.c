/* psi_hash_avx2: xxh3-128 compiled for AVX2 (see psi_hash.h for why).
 *
 * This file alone is built with -mavx2 (Makefile): nothing in it may run
 * before psi_hash.c has checked that the CPU has AVX2. xxhash is included
 * with XXH_INLINE_ALL, so every xxhash function here is a static copy
 * private to this file and cannot be picked by a caller of libxxhash. */
#include "psi_hash.h"

#if defined(__x86_64__) && defined(__AVX2__)
#define XXH_INLINE_ALL
#include <xxhash.h>

static void *avx2_new(void)
{
    XXH3_state_t *st = XXH3_createState();
    if (st)
        XXH3_128bits_reset(st);
    return st;
}

static void avx2_update(void *st, const void *p, size_t n)
{
    XXH3_128bits_update(st, p, n);
}

static psi_hash128 avx2_done(void *st)
{
    XXH128_hash_t h = XXH3_128bits_digest(st);
    XXH3_freeState(st);
    return (psi_hash128){.lo = h.low64, .hi = h.high64};
}

static psi_hash128 avx2_oneshot(const void *p, size_t n)
{
    XXH128_hash_t h = XXH3_128bits(p, n);
    return (psi_hash128){.lo = h.low64, .hi = h.high64};
}

static uint64_t avx2_oneshot64(const void *p, size_t n)
{
    return XXH3_64bits(p, n);
}

static const psi_hash_impl_ops avx2_ops = {
    .name = "avx2",
    .new_state = avx2_new,
    .update = avx2_update,
    .done = avx2_done,
    .oneshot = avx2_oneshot,
    .oneshot64 = avx2_oneshot64,
};

const psi_hash_impl_ops *const psi_hash_avx2_ops_ptr = &avx2_ops;
#else
const psi_hash_impl_ops *const psi_hash_avx2_ops_ptr = NULL;
#endif
