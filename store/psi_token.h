/* psi_token: the proxy token codec. Layout: docs/protocol.md §4. */
#ifndef PSI_TOKEN_H
#define PSI_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#include "psi_err.h"

#define PSI_PROTO_VERSION 1     /* docs/protocol.md */
#define PSI_TOKEN_KEY_MAX 128   /* docs/protocol.md §4 */
#define PSI_TOKEN_FIXED 33      /* bytes before the key, §4 */
#define PSI_TOKEN_MIN_BODY (PSI_TOKEN_FIXED + 1 + 8)
#define PSI_TOKEN_MAX_BODY (PSI_TOKEN_FIXED + PSI_TOKEN_KEY_MAX + 8)

enum psi_conn_id { /* docs/protocol.md §4 */
    PSI_CONN_FILE = 1,
    PSI_CONN_SHM = 2,
    PSI_CONN_REDIS = 3,
    PSI_CONN_ZMQ = 4,
};

enum psi_lifetime { /* docs/protocol.md §4 */
    PSI_LIFE_REFCOUNT = 0,
    PSI_LIFE_TTL = 1,
    PSI_LIFE_EVICT_ON_READ = 2,
};

typedef struct psi_hash128 {
    uint64_t lo, hi;
} psi_hash128;

typedef struct psi_token {
    uint8_t connector;    /* psi_conn_id */
    uint8_t lifetime;     /* psi_lifetime */
    uint64_t size;        /* payload bytes, >= 1 */
    psi_hash128 sum;      /* xxh3-128 of the payload */
    uint32_t ttl;         /* seconds, 0 = connector default */
    uint8_t key_len;
    char key[PSI_TOKEN_KEY_MAX + 1]; /* NUL-terminated for convenience */
} psi_token;

/* Encoded body length: PSI_TOKEN_FIXED + key_len + 8. */
size_t psi_token_body_len(const psi_token *t);

/* Writes the body into out. Returns its length, or -1 (err) if the token is
 * invalid (bad key, size 0, unknown connector or lifetime) or cap too small. */
int psi_token_encode(const psi_token *t, uint8_t *out, size_t cap, psi_err *err);

/* Parses and validates a body of exactly `len` bytes. Returns 0, or -1 with
 * err->code = EIO and a message saying which check failed. */
int psi_token_decode(const uint8_t *in, size_t len, psi_token *out, psi_err *err);

/* Key rule of §4: 1..128 bytes of [0-9A-Za-z._-], first alphanumeric, no "..". */
int psi_key_valid(const char *key, size_t len);

/* 32 lowercase hex digits, high 64 bits first, NUL-terminated (33 bytes). */
void psi_hash_hex(const psi_hash128 *h, char out[33]);

#endif
