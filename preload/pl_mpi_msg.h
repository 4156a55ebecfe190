/* pl_mpi_msg: the MPI token message and the probe stash (docs/mpi.md).
 *
 * Nothing here needs mpi.h: communicators are compared as integers, and the
 * wildcards are flags in the pattern, so the codec and the stash ordering
 * are unit-tested without MPI running. */
#ifndef PL_MPI_MSG_H
#define PL_MPI_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "psi_err.h"
#include "psi_token.h"

/* A token message is exactly this many bytes (docs/mpi.md, "Token
 * message"). A payload smaller than this is never proxied, so a receive
 * buffer that could hold the real payload can always hold the token. */
#define PL_MPI_MSG_LEN 256
#define PL_MPI_MAGIC_LEN 16
#define PL_MPI_MSG_VERSION 1
#define PL_MPI_SUM_OFF (PL_MPI_MSG_LEN - 8)

enum pl_mpi_kind {   /* docs/mpi.md */
    PL_MPI_TOKEN = 1,  /* the payload is the object the token names */
    PL_MPI_INLINE = 2, /* Bcast only: the payload follows as a real Bcast */
};

typedef struct pl_mpi_msg {
    uint8_t kind;     /* pl_mpi_kind */
    uint64_t bytes;   /* the real payload, packed bytes */
    psi_token tok;    /* PL_MPI_TOKEN only */
} pl_mpi_msg;

extern const uint8_t pl_mpi_magic[PL_MPI_MAGIC_LEN];

/* Writes the PL_MPI_MSG_LEN bytes of m into out. 0, or -1 (err) if the
 * token does not encode. */
int pl_mpi_msg_encode(const pl_mpi_msg *m, uint8_t out[PL_MPI_MSG_LEN], psi_err *err);

/* Cheap test: does a message of `len` bytes starting with `in` look like
 * ours (length and magic)? */
bool pl_mpi_msg_is(const uint8_t *in, uint64_t len);

/* Full check and parse: length, magic, version, kind, checksum, token
 * body, and that the token's size is the payload size. 0, or -1 with err
 * (EIO) naming the failed check. */
int pl_mpi_msg_decode(const uint8_t in[PL_MPI_MSG_LEN], pl_mpi_msg *m, psi_err *err);

/* ---- the stash ----------------------------------------------------------
 *
 * A probe that meets a message of PL_MPI_MSG_LEN bytes must receive it to
 * see whether it is a token (MPI has no peek). Such messages wait here, in
 * the order MPI matched them, until a receive or probe asks for them;
 * every receive looks here before MPI. */

typedef struct pl_mpi_pat {
    uint64_t comm;
    int source, tag;
    bool any_source, any_tag;
} pl_mpi_pat;

typedef struct pl_mpi_ent {
    struct pl_mpi_ent *next;
    uint64_t comm;
    int source, tag;   /* of the real message */
    uint32_t handle;   /* MPI_Message of ours, once Mprobe matched it */
    bool is_token;     /* else `raw` is a user message of PL_MPI_MSG_LEN bytes */
    pl_mpi_msg msg;    /* is_token */
    uint8_t raw[PL_MPI_MSG_LEN];
    /* A user message of another size (a probe that lost a race with
     * another thread's receive took in the next one): its bytes, malloc'd.
     * pl_mpi_ent_free releases them. */
    uint8_t *big;
    uint64_t big_len;
} pl_mpi_ent;

void pl_mpi_ent_free(pl_mpi_ent *e);

typedef struct pl_mpi_stash {
    pl_mpi_ent *head, *tail;
    size_t n;
} pl_mpi_stash;

bool pl_mpi_match(const pl_mpi_ent *e, const pl_mpi_pat *p);
void pl_mpi_stash_push(pl_mpi_stash *q, pl_mpi_ent *e);
/* The oldest entry the pattern matches, left in place (probe) or taken out
 * (receive); NULL if none. */
pl_mpi_ent *pl_mpi_stash_peek(pl_mpi_stash *q, const pl_mpi_pat *p);
pl_mpi_ent *pl_mpi_stash_take(pl_mpi_stash *q, const pl_mpi_pat *p);
/* The entry whose handle (pl_mpi_ent.handle) is `handle`, taken out; NULL
 * if none. */
pl_mpi_ent *pl_mpi_stash_take_handle(pl_mpi_stash *q, uint32_t handle);

/* The payload size a stash entry reports to a probe. */
static inline uint64_t pl_mpi_ent_bytes(const pl_mpi_ent *e)
{
    return e->is_token ? e->msg.bytes : e->big ? e->big_len : PL_MPI_MSG_LEN;
}

/* ---- handles of stashed matched messages ----------------------------------
 *
 * An MPI_Mprobe that had to receive a message hands back a handle of ours.
 * MPICH's own handles have a non-zero kind in the top two bits; ours use
 * kind 0 with object nibble 0xE, which MPICH never issues. */
#define PL_MPI_FAKE_BASE 0x0E000000u
#define PL_MPI_FAKE_MASK 0xFF000000u
static inline bool pl_mpi_fake_handle(uint32_t h)
{
    return (h & PL_MPI_FAKE_MASK) == PL_MPI_FAKE_BASE;
}

#endif
