/* st_redis: the pure parts of the Redis connector (docs/store-redis.md),
 * kept apart from the I/O so the unit tests reach them: the URL, Redis
 * Cluster's key slots, the choice of a home server among several, and how
 * a large object is cut into chunks. */
#ifndef ST_REDIS_H
#define ST_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "psi_err.h"

#define ST_REDIS_DEFAULT_URL "redis://127.0.0.1:6379"
#define ST_REDIS_MAX_SERVERS 16    /* servers named by one URL */
#define ST_REDIS_PREFIX_MAX 64
#define ST_REDIS_HOST_MAX 255
#define ST_REDIS_SLOTS 16384       /* Redis Cluster key slots */
#define ST_REDIS_MAX_BULK_DEFAULT ((size_t)512 << 20) /* proto-max-bulk-len */
#define ST_REDIS_CHUNK_MIN 1024

typedef struct st_redis_server {
    char host[ST_REDIS_HOST_MAX + 1]; /* name, IPv4, or IPv6 without brackets */
    int port;
} st_redis_server;

typedef struct st_redis_url {
    bool has_user, has_pass;
    char user[128];
    char pass[256];
    int nservers;
    st_redis_server servers[ST_REDIS_MAX_SERVERS];
    int db;                           /* SELECT; 0 by default */
    char prefix[ST_REDIS_PREFIX_MAX + 1];
    int connect_timeout_ms;           /* default 2000 */
    int timeout_ms;                   /* per command, default 10000 */
    size_t chunk;                     /* 0: the server's proto-max-bulk-len */
} st_redis_url;

/* redis://[[user]:password@]host[:port][,host[:port]...][/db][?opt=v&...]
 * Options: prefix=STR, timeout_ms=N, connect_timeout_ms=N, chunk=SIZE
 * (K/M/G binary suffixes). %XX escapes are decoded in user and password.
 * Returns 0, or -1 with EINVAL and a message naming what is wrong (the
 * password is never repeated in a message). */
int st_redis_url_parse(const char *url, st_redis_url *u, psi_err *err);

/* CRC16-XMODEM, as Redis Cluster uses it (cluster spec, appendix A). */
uint16_t st_redis_crc16(const void *buf, size_t len);

/* The Cluster slot of a key: of the first non-empty {hashtag} if any. */
unsigned st_redis_keyslot(const char *key, size_t len);

/* Rendezvous (highest random weight) hashing: the index of the server that
 * is `key`'s home. Depends only on the key and the servers' host:port, not
 * on their order in the URL. */
int st_redis_home(const char *key, size_t len, const st_redis_server *servers, int n);

/* How many chunks an object of `size` bytes takes with chunks of `chunk`
 * bytes (the last one may be shorter); and the length of chunk i. */
size_t st_redis_nchunks(uint64_t size, size_t chunk);
size_t st_redis_chunk_len(uint64_t size, size_t chunk, size_t i);

/* The chunk size for a put: the URL's chunk= if set, capped by the
 * server's proto-max-bulk-len (0: unknown, 512 MiB assumed). */
size_t st_redis_chunk_size(size_t url_chunk, size_t server_max_bulk);

#endif
