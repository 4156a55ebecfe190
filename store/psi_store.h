/* psi_store: the connector interface (DESIGN §6).
 *
 * A connector stores payloads and hands back tokens naming them. The token
 * carries the connector id, so a receiver resolves it through whichever
 * connector of that id it has configured (for the file connector: PSI_STORE
 * if it is a file:// URL, else the default directory).
 *
 * Life of an object: the sender calls psi_store_put (the connector copies
 * and hashes in one pass and fills the token); the receiver calls
 * psi_store_resolve (get + checksum check + release of this token's
 * reference) and later psi_obj_release when the application has taken every
 * byte. */
#ifndef PSI_STORE_H
#define PSI_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "psi_err.h"
#include "psi_hash.h"
#include "psi_token.h"

#define PSI_DEFAULT_TTL 3600 /* seconds: the safety net on every object */

typedef struct psi_store psi_store;

typedef struct psi_put_opts {
    uint8_t lifetime; /* psi_lifetime */
    uint32_t ttl;     /* seconds, 0 = PSI_DEFAULT_TTL */
} psi_put_opts;

/* A resolved payload. For file/shm objects `data` points into a mapping. */
typedef struct psi_obj {
    const uint8_t *data;
    size_t len;
    void *map_base; /* munmap(map_base, map_len) on release, if not NULL */
    size_t map_len;
    void *heap;     /* free(heap) on release, if not NULL */
    /* Called by psi_obj_release, if not NULL, after the unmap and free: a
     * connector whose memory is reused (the shm pool) drops the reader's
     * hold here, once the application has taken every byte. */
    void (*done)(void *ctx);
    void *done_ctx;
    /* If not NULL, the connector checks the payload itself, piece by piece
     * (the shm pool: each chunk against a checksum list the token anchors,
     * right before it is copied out, so the bytes are read from memory
     * once). Called with done_ctx; 0, or -1 with err (EIO). */
    int (*verify)(void *ctx, size_t off, size_t len, psi_err *err);
} psi_obj;

void psi_obj_release(psi_obj *o);

/* Checks bytes [off, off+len) of a resolved object before they are handed
 * to anyone (no-op for objects already checked whole at resolve). */
int psi_obj_verify(const psi_obj *o, size_t off, size_t len, psi_err *err);

/* Copies bytes [off, off+len) of a resolved object to dst, checking each
 * step right before copying it while it is still in cache, so the bytes
 * are read from memory once. 0, or -1 with err (EIO) when a step fails its
 * check; the steps before it were copied. */
int psi_obj_copy(const psi_obj *o, size_t off, void *dst, size_t len, psi_err *err);

typedef struct psi_gc_report {
    uint64_t objects_seen, refs_seen;
    uint64_t refs_expired, objects_removed, tmp_removed;
    uint64_t bytes_freed;
    uint64_t unknown_seen; /* names matching no store pattern: never removed */
} psi_gc_report;

/* One object, as `psi store ls` shows it. Unknown numbers are -1. */
typedef struct psi_obj_info {
    char key[PSI_TOKEN_KEY_MAX + 1];
    uint64_t size;
    int64_t age;      /* seconds since the put */
    int64_t refs;     /* token references not yet resolved */
    int64_t expires;  /* seconds until the TTL removes it */
    int lifetime;     /* psi_lifetime, -1 unknown */
    char where[96];   /* connector-specific: server, segment, owner pid */
} psi_obj_info;

/* Called once per object by ops->ls; a non-zero return stops the walk. */
typedef int (*psi_ls_fn)(const psi_obj_info *o, void *arg);

typedef struct psi_store_ops {
    const char *scheme; /* "file" */
    uint8_t id;         /* psi_conn_id */
    /* url NULL or "": the connector's default (what a token of this id
     * resolves through when the local store is another connector). */
    int (*open)(const char *url, psi_store **out, psi_err *err);
    /* Copies and hashes buf in one pass; fills every field of *tok. */
    int (*put)(psi_store *s, const void *buf, size_t len, const psi_put_opts *o,
               psi_token *tok, psi_err *err);
    /* Returns the payload named by tok (mapped if possible). No checksum. */
    int (*get)(psi_store *s, const psi_token *tok, psi_obj *obj, psi_err *err);
    /* Drops the reference this token holds (refcount, evict-on-read). */
    int (*release)(psi_store *s, const psi_token *tok, psi_err *err);
    int (*exists)(psi_store *s, const psi_token *tok);
    int (*gc)(psi_store *s, psi_gc_report *r, psi_err *err);
    /* Lists the objects this connector holds (NULL: cannot list). */
    int (*ls)(psi_store *s, psi_ls_fn fn, void *arg, psi_err *err);
    void (*close)(psi_store *s);
    /* In a fork child: let go of the handle without talking to any server
     * or touching state the parent still uses (NULL: close is fork-safe). */
    void (*forget)(psi_store *s);
    /* A new reference to the object tok names, as a new token in *out,
     * without copying the payload (a fan-out: one object, one reference per
     * receiver). NULL: the connector cannot; callers put again. */
    int (*ref)(psi_store *s, const psi_token *tok, psi_token *out, psi_err *err);
} psi_store_ops;

struct psi_store {
    const psi_store_ops *ops;
    char url[1024];
};

/* Opens the connector a URL names: file:///dir. NULL or "" opens the
 * embedded default (file store in psi_store_default_dir()). */
int psi_store_open(const char *url, psi_store **out, psi_err *err);
void psi_store_close(psi_store *s);

/* The default file store directory: /dev/shm/psi-<uid> if /dev/shm is a
 * writable directory, else <psi_runtime_dir()>/store; NULL if neither is
 * usable. Chosen once per process. PSI_STORE_DIR is not a public variable;
 * use PSI_STORE=file:///dir. */
const char *psi_store_default_dir(void);

int psi_store_put(psi_store *s, const void *buf, size_t len, const psi_put_opts *o,
                  psi_token *tok, psi_err *err);

/* ops->ref, or -1 with err->code ENOTSUP when the connector has none. */
int psi_store_ref(psi_store *s, const psi_token *tok, psi_token *out, psi_err *err);

/* Resolves a token: picks the connector by tok->connector (using `local`
 * when its id matches, else opening that connector's default), gets the
 * payload, checks length and xxh3-128 (EIO on mismatch), then releases the
 * token's reference. Returns 0 or -1 with err (EIO and a clear message). */
int psi_store_resolve(psi_store *local, const psi_token *tok, psi_obj *obj, psi_err *err);

/* Like psi_store_resolve, but an object whose connector checks it piece by
 * piece (obj->verify) is returned before it is checked whole: the caller
 * calls psi_obj_verify on each range before copying it out. */
int psi_store_resolve_lazy(psi_store *local, const psi_token *tok, psi_obj *obj, psi_err *err);

/* The checksum a token of this connector carries for these bytes: xxh3-128
 * of the payload, or for shm the anchor of its chunk list (protocol §5a). */
psi_hash128 psi_token_sum(uint8_t connector, const void *buf, size_t len);

/* psi_hash_buf and the streaming hasher: psi_hash.h. */

/* Non-zero while this thread runs connector code: the preload hooks pass
 * the connector's own I/O (hiredis, libzmq sockets) straight through and
 * never offer framing on its connections (DESIGN §5). */
extern _Thread_local int psi_store_internal;
#define PSI_STORE_ENTER() (psi_store_internal++)
#define PSI_STORE_LEAVE() (psi_store_internal--)

/* Non-zero in connector code (psi_store_internal) and in the background
 * threads of the zmq connector's libzmq context, which do its socket I/O
 * but never run our code: they are recognised by the thread name that
 * PSI_ZMQ_THREAD_PREFIX gives them ("31415/ZMQbg/..."). What the hooks
 * check before framing a connection. */
int psi_store_thread_internal(void);
#define PSI_ZMQ_THREAD_PREFIX 31415

/* Bounded retries of a get that failed for a reason that may pass (server
 * restarting, connection reset): PSI_STORE_RETRIES attempts after the first
 * (default 6), waiting PSI_STORE_BACKOFF_MS (default 20) doubled each time,
 * capped at 1 s. */
int psi_store_transient(int code);

/* Connectors known to this build, for `psi gc` and lookup by id/scheme. */
const psi_store_ops *psi_store_ops_by_id(uint8_t id);
const psi_store_ops *psi_store_ops_by_scheme(const char *scheme, size_t len);

/* In a fork child: lets go of a handle (ops->forget, else close). */
void psi_store_forget(psi_store *s);
/* In a fork child: forgets the per-connector default stores of resolve. */
void psi_store_atfork_child(void);

extern const psi_store_ops psi_store_file_ops;
extern const psi_store_ops psi_store_shm_ops;
extern const psi_store_ops psi_store_zmq_ops; /* st_zmq.c, docs/store-zmq.md */
extern const psi_store_ops psi_store_redis_ops;

#endif
