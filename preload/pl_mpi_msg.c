/* pl_mpi_msg: token message codec and stash ordering (docs/mpi.md). */
#include "pl_mpi_msg.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "psi_le.h"

/* First byte 0xA7: not ASCII, not a small integer, not a common float
 * exponent byte, so user data rarely starts like this; the checksum over
 * the whole message makes a false match negligible (docs/mpi.md). */
const uint8_t pl_mpi_magic[PL_MPI_MAGIC_LEN] = {0xA7, 'P', 'S', 'I', '-', 'M', 'P', 'I',
                                                '-', 'T', 'O', 'K', 0x00, 0xC3, 0x5A, 0x96};

/* Layout, docs/mpi.md "Token message":
 *   0  magic[16]
 *  16  version u8, kind u8, body_len u16 LE, reserved u32 (0)
 *  24  payload bytes u64 LE
 *  32  token body (docs/protocol.md §4), body_len bytes; zero padding
 * 248  xxh3-64 of bytes 0..247, u64 LE */
#define OFF_VERSION 16
#define OFF_KIND 17
#define OFF_BODYLEN 18
#define OFF_BYTES 24
#define OFF_BODY 32

int pl_mpi_msg_encode(const pl_mpi_msg *m, uint8_t out[PL_MPI_MSG_LEN], psi_err *err)
{
    memset(out, 0, PL_MPI_MSG_LEN);
    memcpy(out, pl_mpi_magic, PL_MPI_MAGIC_LEN);
    out[OFF_VERSION] = PL_MPI_MSG_VERSION;
    out[OFF_KIND] = m->kind;
    psi_put_le64(out + OFF_BYTES, m->bytes);
    if (m->kind == PL_MPI_TOKEN) {
        int blen = psi_token_encode(&m->tok, out + OFF_BODY, PL_MPI_SUM_OFF - OFF_BODY, err);
        if (blen < 0)
            return -1;
        psi_put_le16(out + OFF_BODYLEN, (uint16_t)blen);
    } else if (m->kind != PL_MPI_INLINE) {
        return psi_fail(err, EINVAL, "mpi token message: unknown kind %u", (unsigned)m->kind);
    }
    psi_put_le64(out + PL_MPI_SUM_OFF, XXH3_64bits(out, PL_MPI_SUM_OFF));
    return 0;
}

bool pl_mpi_msg_is(const uint8_t *in, uint64_t len)
{
    return len == PL_MPI_MSG_LEN && memcmp(in, pl_mpi_magic, PL_MPI_MAGIC_LEN) == 0;
}

int pl_mpi_msg_decode(const uint8_t in[PL_MPI_MSG_LEN], pl_mpi_msg *m, psi_err *err)
{
    if (memcmp(in, pl_mpi_magic, PL_MPI_MAGIC_LEN) != 0)
        return psi_fail(err, EIO, "mpi token message: bad magic");
    if (psi_get_le64(in + PL_MPI_SUM_OFF) != XXH3_64bits(in, PL_MPI_SUM_OFF))
        return psi_fail(err, EIO, "mpi token message: checksum mismatch");
    if (in[OFF_VERSION] != PL_MPI_MSG_VERSION)
        return psi_fail(err, EIO, "mpi token message: version %u (this build speaks %u)",
                        (unsigned)in[OFF_VERSION], PL_MPI_MSG_VERSION);
    memset(m, 0, sizeof *m);
    m->kind = in[OFF_KIND];
    m->bytes = psi_get_le64(in + OFF_BYTES);
    size_t blen = psi_get_le16(in + OFF_BODYLEN);
    if (m->kind == PL_MPI_INLINE)
        return blen == 0 ? 0 : psi_fail(err, EIO, "mpi token message: inline with a body");
    if (m->kind != PL_MPI_TOKEN)
        return psi_fail(err, EIO, "mpi token message: unknown kind %u", (unsigned)m->kind);
    if (blen > PL_MPI_SUM_OFF - OFF_BODY)
        return psi_fail(err, EIO, "mpi token message: body length %zu too large", blen);
    if (psi_token_decode(in + OFF_BODY, blen, &m->tok, err) != 0)
        return -1;
    if (m->tok.size != m->bytes)
        return psi_fail(err, EIO, "mpi token message: token names %llu bytes, message says %llu",
                        (unsigned long long)m->tok.size, (unsigned long long)m->bytes);
    return 0;
}

/* ---- stash ---------------------------------------------------------------- */

bool pl_mpi_match(const pl_mpi_ent *e, const pl_mpi_pat *p)
{
    return e->comm == p->comm && (p->any_source || e->source == p->source) &&
           (p->any_tag || e->tag == p->tag);
}

void pl_mpi_stash_push(pl_mpi_stash *q, pl_mpi_ent *e)
{
    e->next = NULL;
    if (q->tail)
        q->tail->next = e;
    else
        q->head = e;
    q->tail = e;
    q->n++;
}

pl_mpi_ent *pl_mpi_stash_peek(pl_mpi_stash *q, const pl_mpi_pat *p)
{
    for (pl_mpi_ent *e = q->head; e; e = e->next)
        if (pl_mpi_match(e, p))
            return e;
    return NULL;
}

/* Unlinks e, which follows prev (NULL: e is the head), and returns it. */
static pl_mpi_ent *pl_mpi_stash_unlink(pl_mpi_stash *q, pl_mpi_ent *prev, pl_mpi_ent *e)
{
    if (prev)
        prev->next = e->next;
    else
        q->head = e->next;
    if (q->tail == e)
        q->tail = prev;
    q->n--;
    e->next = NULL;
    return e;
}

pl_mpi_ent *pl_mpi_stash_take(pl_mpi_stash *q, const pl_mpi_pat *p)
{
    pl_mpi_ent *prev = NULL;
    for (pl_mpi_ent *e = q->head; e; prev = e, e = e->next)
        if (pl_mpi_match(e, p))
            return pl_mpi_stash_unlink(q, prev, e);
    return NULL;
}

pl_mpi_ent *pl_mpi_stash_take_handle(pl_mpi_stash *q, uint32_t handle)
{
    pl_mpi_ent *prev = NULL;
    for (pl_mpi_ent *e = q->head; e; prev = e, e = e->next)
        if (e->handle == handle)
            return pl_mpi_stash_unlink(q, prev, e);
    return NULL;
}

void pl_mpi_ent_free(pl_mpi_ent *e)
{
    if (e)
        free(e->big);
    free(e);
}
