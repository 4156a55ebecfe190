/* st_shm: the shared-memory pool connector's testable pieces. */
#ifndef ST_SHM_H
#define ST_SHM_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "psi_err.h"
#include "psi_token.h"

#define ST_SHM_NAME_MAX 52 /* s<pid>-<nonce>-<seq>: three groups of <= 16 hex */

/* A segment name: 's', then three '-'-separated groups of 1..16 lowercase
 * hex digits. Anything else (paths, dots, upper case) is refused. */
int st_shm_name_valid(const char *name, size_t len);

/* A token key "<segment>.<gen hex>". Returns 0 or -1 (not a shm key). */
int st_shm_key_parse(const char *key, size_t len, char name[ST_SHM_NAME_MAX + 1],
                     uint64_t *gen);

/* shm://, shm:///dir, with ?max=SIZE&keep=SIZE. dir "" = the default pool,
 * max 0 = the default budget, keep UINT64_MAX = the default. */
int st_shm_parse_url(const char *url, char dir[PATH_MAX], uint64_t *max_bytes,
                     uint64_t *keep_bytes, psi_err *err);

/* ---- the data area (st_shm_data.c, docs/protocol.md §5a) ---- */

#define ST_SHM_PIECE (256u << 10) /* checksummed piece: fits L2 */

/* Pieces of a payload, where their checksum list starts (64-byte aligned
 * after the payload), and the bytes payload and list need together. */
size_t st_shm_pieces(uint64_t size);
uint64_t st_shm_list_off(uint64_t size);
uint64_t st_shm_need_bytes(uint64_t size);

/* The checksum a token carries: xxh3-128 of the piece list (with the piece
 * size and the payload length in front). */
psi_hash128 st_shm_anchor(const uint64_t *list, size_t n, uint64_t size);

/* The checksum an shm token carries for these bytes. */
psi_hash128 st_shm_sum(const void *buf, size_t len);

/* Copies len bytes into a data area and writes its piece list, in one pass
 * over the source (each piece hashed, then streamed while in cache). */
void st_shm_copy_summed(uint8_t *dst, const uint8_t *src, size_t len, psi_hash128 *sum);

#endif
