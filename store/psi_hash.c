/* psi_hash: picks the xxh3-128 implementation once (psi_hash.h). */
#include "psi_hash.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define PSI_HASH_OPS_DECL const psi_hash_impl_ops psi_hash_generic_ops
#define PSI_HASH_OPS_NAME "sse2/generic"
#include "psi_hash_impl.h"

int psi_hash_cpu_has_avx2(void)
{
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    /* GCC/clang builtin reading CPUID (and the OS's XSAVE support): the
     * portable way to ask, short of parsing CPUID by hand. */
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2");
#else
    return 0;
#endif
}

static const psi_hash_impl_ops *impl = &psi_hash_generic_ops;
static pthread_once_t impl_once = PTHREAD_ONCE_INIT;

static void impl_pick(void)
{
    const char *g = getenv("PSI_HASH_GENERIC");
    if (psi_hash_avx2_ops_ptr && psi_hash_cpu_has_avx2() && !(g && strcmp(g, "1") == 0))
        impl = psi_hash_avx2_ops_ptr;
}

static const psi_hash_impl_ops *ops(void)
{
    pthread_once(&impl_once, impl_pick);
    return impl;
}

/* The state remembers which implementation made it: a hasher is used
 * by one thread from new to done, and impl never changes after the pick. */
struct psi_hasher {
    const psi_hash_impl_ops *ops;
    void *st;
};

psi_hasher *psi_hasher_new(void)
{
    psi_hasher *h = malloc(sizeof *h);
    if (!h)
        return NULL;
    h->ops = ops();
    h->st = h->ops->new_state();
    if (!h->st) {
        free(h);
        return NULL;
    }
    return h;
}

void psi_hasher_update(psi_hasher *h, const void *p, size_t n)
{
    h->ops->update(h->st, p, n);
}

psi_hash128 psi_hasher_done(psi_hasher *h)
{
    psi_hash128 r = h->ops->done(h->st);
    free(h);
    return r;
}

psi_hash128 psi_hash_buf(const void *buf, size_t len)
{
    return ops()->oneshot(buf, len);
}

uint64_t psi_hash64(const void *buf, size_t len)
{
    return ops()->oneshot64(buf, len);
}

const char *psi_hash_impl(void)
{
    return ops()->name;
}
