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

#define PSI_HASH_OPS_DECL static const psi_hash_impl_ops avx2_ops
#define PSI_HASH_OPS_NAME "avx2"
#include "psi_hash_impl.h"

const psi_hash_impl_ops *const psi_hash_avx2_ops_ptr = &avx2_ops;
#else
const psi_hash_impl_ops *const psi_hash_avx2_ops_ptr = NULL;
#endif
