/* st_shm_data: an shm object's data area (docs/protocol.md §5a): the
 * payload, its piece checksums and the anchor a token carries, and the
 * streamed copy that fills it. No pool state here. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "psi_hash.h"
#include "st_shm.h"

/* Writes n bytes to the segment. The pages are shared and read later by
 * another process, so caching them here only evicts the sender's own data:
 * on x86-64 (SSE2 is part of the base ISA) they are written with streaming
 * stores, which skip the read-for-ownership of each destination line
 * (~1.3x faster here). Elsewhere, memcpy. */
#if defined(__SSE2__)
#include <emmintrin.h>
static void copy_stream(uint8_t *dst, const uint8_t *src, size_t n)
{
    size_t head = (16 - ((uintptr_t)dst & 15)) & 15;
    if (head > n)
        head = n;
    memcpy(dst, src, head);
    dst += head, src += head, n -= head;
    __m128i *d = (__m128i *)dst;
    const __m128i *sv = (const __m128i *)src;
    for (; n >= 64; n -= 64, d += 4, sv += 4) {
        __m128i a = _mm_loadu_si128(sv), b = _mm_loadu_si128(sv + 1);
        __m128i c = _mm_loadu_si128(sv + 2), e = _mm_loadu_si128(sv + 3);
        _mm_stream_si128(d, a);
        _mm_stream_si128(d + 1, b);
        _mm_stream_si128(d + 2, c);
        _mm_stream_si128(d + 3, e);
    }
    memcpy(d, sv, n);
}
#define copy_fence() _mm_sfence()
#else
#define copy_stream(d, s, n) memcpy((d), (s), (n))
#define copy_fence() ((void)0)
#endif

/* An object's data area: the payload, then (64-byte aligned) one xxh3-64
 * per ST_SHM_PIECE piece. The token's checksum is the anchor of that list
 * (docs/protocol.md §5a): a reader checks the list once against the token,
 * then each piece right before it is copied out, so the payload is read
 * from memory once instead of twice (hash, then copy). */
size_t st_shm_pieces(uint64_t size)
{
    return (size_t)((size + ST_SHM_PIECE - 1) / ST_SHM_PIECE);
}

uint64_t st_shm_list_off(uint64_t size)
{
    return (size + 63) & ~(uint64_t)63;
}

uint64_t st_shm_need_bytes(uint64_t size)
{
    return st_shm_list_off(size) + st_shm_pieces(size) * sizeof(uint64_t);
}

psi_hash128 st_shm_anchor(const uint64_t *list, size_t n, uint64_t size)
{
    uint64_t head[3] = {0, ST_SHM_PIECE, size};
    memcpy(&head[0], "PSISUMV1", 8);
    psi_hasher *h = psi_hasher_new();
    if (!h) /* out of memory: a sum no token carries, so the read fails */
        return (psi_hash128){0, 0};
    psi_hasher_update(h, head, sizeof head);
    psi_hasher_update(h, list, n * sizeof *list);
    return psi_hasher_done(h);
}

static void list_of(const uint8_t *p, uint64_t size, uint64_t *list)
{
    for (size_t i = 0, n = st_shm_pieces(size); i < n; i++) {
        uint64_t off = (uint64_t)i * ST_SHM_PIECE;
        list[i] = psi_hash64(p + off, size - off < ST_SHM_PIECE ? size - off : ST_SHM_PIECE);
    }
}

psi_hash128 st_shm_sum(const void *buf, size_t len)
{
    uint64_t *list = malloc(st_shm_pieces(len) * sizeof *list + 1);
    if (!list)
        return (psi_hash128){0, 0};
    list_of(buf, len, list);
    psi_hash128 h = st_shm_anchor(list, st_shm_pieces(len), len);
    free(list);
    return h;
}

/* Copies and checksums in one pass (DESIGN §8): each piece of the source is
 * hashed, then streamed into the segment while it is still in cache. The
 * checksum list goes after the payload. */
void st_shm_copy_summed(uint8_t *dst, const uint8_t *src, size_t len, psi_hash128 *sum)
{
    uint64_t *list = (uint64_t *)(dst + st_shm_list_off(len));
    for (size_t i = 0, n = st_shm_pieces(len); i < n; i++) {
        size_t off = i * ST_SHM_PIECE, k = len - off < ST_SHM_PIECE ? len - off : ST_SHM_PIECE;
        list[i] = psi_hash64(src + off, k);
        copy_stream(dst + off, src + off, k);
    }
    copy_fence(); /* streamed stores are visible before the object is published */
    *sum = st_shm_anchor(list, st_shm_pieces(len), len);
}

