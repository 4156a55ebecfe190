/* psi_hash_impl.h: the xxh3 wrappers behind psi_hash_impl_ops, written once
 * and compiled twice: by psi_hash.c against libxxhash, and by
 * psi_hash_avx2.c with xxhash inlined and -mavx2. The includer defines
 * PSI_HASH_OPS_DECL (the ops table's declaration) and PSI_HASH_OPS_NAME,
 * and includes xxhash.h first. Not a normal header: no include guard. */

static void *impl_new(void)
{
    XXH3_state_t *st = XXH3_createState();
    if (st)
        XXH3_128bits_reset(st);
    return st;
}

static void impl_update(void *st, const void *p, size_t n)
{
    XXH3_128bits_update(st, p, n);
}

static psi_hash128 impl_done(void *st)
{
    XXH128_hash_t h = XXH3_128bits_digest(st);
    XXH3_freeState(st);
    return (psi_hash128){.lo = h.low64, .hi = h.high64};
}

static psi_hash128 impl_oneshot(const void *p, size_t n)
{
    XXH128_hash_t h = XXH3_128bits(p, n);
    return (psi_hash128){.lo = h.low64, .hi = h.high64};
}

static uint64_t impl_oneshot64(const void *p, size_t n)
{
    return XXH3_64bits(p, n);
}

PSI_HASH_OPS_DECL = {
    .name = PSI_HASH_OPS_NAME,
    .new_state = impl_new,
    .update = impl_update,
    .done = impl_done,
    .oneshot = impl_oneshot,
    .oneshot64 = impl_oneshot64,
};
