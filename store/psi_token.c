/* psi_token: the proxy token codec. Layout: docs/protocol.md §4.
 *
 * Field offsets of the token body (docs/protocol.md §4):
 *   0 version | 1 connector | 2 lifetime | 3 key length K | 4 payload length
 *   u64 | 12 xxh3-128 lo, hi | 28 ttl u32 | 32 reserved | 33 key | 33+K xxh3-64
 *
 * The decoder is the trust boundary of the data plane: a body comes off a
 * socket from a peer we believe is interposed, but nothing else is assumed.
 * Every field is checked before anything downstream (a connector, a path)
 * sees it. */
#include "psi_token.h"

#include <errno.h>
#include <string.h>
#include <xxhash.h>

#include "psi_err.h"
#include "psi_le.h"

enum {
    OFF_VERSION = 0,
    OFF_CONNECTOR = 1,
    OFF_LIFETIME = 2,
    OFF_KEY_LEN = 3,
    OFF_SIZE = 4,
    OFF_SUM = 12,
    OFF_TTL = 28,
    OFF_RESERVED = 32,
    OFF_KEY = PSI_TOKEN_FIXED,
    CHECKSUM_LEN = 8,
};

static int is_alnum(unsigned char c)
{
    /* Not isalnum(): that depends on the locale, the wire format must not. */
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

int psi_key_valid(const char *key, size_t len)
{
    if (!key || len < 1 || len > PSI_TOKEN_KEY_MAX)
        return 0;
    if (!is_alnum((unsigned char)key[0]))
        return 0;
    for (size_t i = 1; i < len; i++) {
        unsigned char c = (unsigned char)key[i];
        if (!is_alnum(c) && c != '.' && c != '_' && c != '-')
            return 0;
        if (c == '.' && key[i - 1] == '.')
            return 0;
    }
    return 1;
}

void psi_hash_hex(const psi_hash128 *h, char out[33])
{
    static const char digits[] = "0123456789abcdef";

    /* High 64 bits first, so the name reads as one 128-bit number (§5). */
    for (int i = 0; i < 16; i++) {
        out[i] = digits[(h->hi >> (60 - 4 * i)) & 0xf];
        out[16 + i] = digits[(h->lo >> (60 - 4 * i)) & 0xf];
    }
    out[32] = '\0';
}

size_t psi_token_body_len(const psi_token *t)
{
    return PSI_TOKEN_FIXED + (size_t)t->key_len + CHECKSUM_LEN;
}

static int connector_known(unsigned v)
{
    return v >= PSI_CONN_FILE && v <= PSI_CONN_ZMQ;
}

static int lifetime_known(unsigned v)
{
    return v <= PSI_LIFE_EVICT_ON_READ;
}

int psi_token_encode(const psi_token *t, uint8_t *out, size_t cap, psi_err *err)
{
    if (!psi_key_valid(t->key, t->key_len))
        return psi_fail(err, EINVAL, "token encode: invalid key (length %u)",
                        (unsigned)t->key_len);
    if (t->size == 0)
        return psi_fail(err, EINVAL, "token encode: payload length 0");
    if (!connector_known(t->connector))
        return psi_fail(err, EINVAL, "token encode: unknown connector %u",
                        (unsigned)t->connector);
    if (!lifetime_known(t->lifetime))
        return psi_fail(err, EINVAL, "token encode: unknown lifetime %u",
                        (unsigned)t->lifetime);

    size_t len = psi_token_body_len(t);
    if (cap < len)
        return psi_fail(err, ENOBUFS, "token encode: body needs %zu bytes, buffer has %zu",
                        len, cap);

    out[OFF_VERSION] = PSI_PROTO_VERSION;
    out[OFF_CONNECTOR] = t->connector;
    out[OFF_LIFETIME] = t->lifetime;
    out[OFF_KEY_LEN] = t->key_len;
    psi_put_le64(out + OFF_SIZE, t->size);
    psi_put_le64(out + OFF_SUM, t->sum.lo);
    psi_put_le64(out + OFF_SUM + 8, t->sum.hi);
    psi_put_le32(out + OFF_TTL, t->ttl);
    out[OFF_RESERVED] = 0;
    memcpy(out + OFF_KEY, t->key, t->key_len);
    psi_put_le64(out + OFF_KEY + t->key_len, XXH3_64bits(out, OFF_KEY + t->key_len));
    return (int)len;
}

/* The checks that need no field but the length byte, and the checksum.
 * The version is checked first: a body of another version may have another
 * layout, so "version 2" is a truer message than a length or checksum one. */
static int decode_frame(const uint8_t *in, size_t len, psi_err *err)
{
    if (len == 0)
        return psi_fail(err, EIO, "token: length mismatch: empty body");
    if (in[OFF_VERSION] != PSI_PROTO_VERSION)
        return psi_fail(err, EIO, "token: version %u, this build decodes version %d",
                        (unsigned)in[OFF_VERSION], PSI_PROTO_VERSION);
    if (len <= OFF_KEY_LEN)
        return psi_fail(err, EIO, "token: length mismatch: %zu bytes is shorter than the "
                        "fixed header", len);

    size_t k = in[OFF_KEY_LEN];
    if (k < 1 || k > PSI_TOKEN_KEY_MAX)
        return psi_fail(err, EIO, "token: key length %zu out of range 1..%d", k,
                        PSI_TOKEN_KEY_MAX);
    if (len != PSI_TOKEN_FIXED + k + CHECKSUM_LEN)
        return psi_fail(err, EIO, "token: length mismatch: body is %zu bytes, key length "
                        "%zu needs %zu", len, k, PSI_TOKEN_FIXED + k + CHECKSUM_LEN);

    uint64_t want = psi_get_le64(in + OFF_KEY + k);
    if (XXH3_64bits(in, OFF_KEY + k) != want)
        return psi_fail(err, EIO, "token: body checksum mismatch");
    return 0;
}

int psi_token_decode(const uint8_t *in, size_t len, psi_token *out, psi_err *err)
{
    if (decode_frame(in, len, err) < 0)
        return -1;

    /* The checksum only proves the body is what the sender wrote; the
     * sender may still be buggy or hostile, so every field is checked. */
    psi_token t = {0};
    t.connector = in[OFF_CONNECTOR];
    t.lifetime = in[OFF_LIFETIME];
    t.key_len = in[OFF_KEY_LEN];
    t.size = psi_get_le64(in + OFF_SIZE);
    t.sum.lo = psi_get_le64(in + OFF_SUM);
    t.sum.hi = psi_get_le64(in + OFF_SUM + 8);
    t.ttl = psi_get_le32(in + OFF_TTL);
    memcpy(t.key, in + OFF_KEY, t.key_len);
    t.key[t.key_len] = '\0';
    /* Byte 32 is reserved: written as 0, not checked, like HELLO's flags. A
     * layout change that gives it a meaning bumps the version anyway. */

    if (!connector_known(t.connector))
        return psi_fail(err, EIO, "token: unknown connector %u", (unsigned)t.connector);
    if (!lifetime_known(t.lifetime))
        return psi_fail(err, EIO, "token: unknown lifetime %u", (unsigned)t.lifetime);
    if (t.size == 0)
        return psi_fail(err, EIO, "token: payload length 0");
    if (!psi_key_valid(t.key, t.key_len))
        return psi_fail(err, EIO, "token: invalid key (length %u)", (unsigned)t.key_len);

    *out = t;
    return 0;
}
