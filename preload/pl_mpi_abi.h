/* pl_mpi_abi: what differs between the MPICH and the Open MPI ABI, for the
 * logic files, which are compiled once per ABI (pl_mpi.h). Included by
 * pl_mpi_real.h right after mpi.h; everything else in the logic is written
 * once against mpi.h's names. */
#ifndef PL_MPI_ABI_H
#define PL_MPI_ABI_H

#include <mpi.h>
#include <stdbool.h>
#include <stdint.h>

#include "pl_mpi_msg.h"

#if defined(OMPI_MAJOR_VERSION)
#define PL_MPI_ABI_OMPI 1
#define PL_MPI_ABI_NAME "Open MPI"
#define PL_MPI_OPS pl_mpi_ops_ompi
/* Where the library lives when a binding opened it privately. */
#define PL_MPI_SONAMES {"libmpi.so.40"}
#elif defined(MPICH_VERSION)
#define PL_MPI_ABI_MPICH 1
#define PL_MPI_ABI_NAME "MPICH"
#define PL_MPI_OPS pl_mpi_ops_mpich
#define PL_MPI_SONAMES {"libmpi.so.12", "libmpich.so.12"}
#else
#error "mpi.h is neither MPICH's nor Open MPI's"
#endif

/* MPI-4 added the _c large-count functions and MPI_Isendrecv (MPICH 4 has
 * them; Open MPI 4.1 is MPI-3.1). PL_LARGE(large, c_call, call) is the _c
 * call when the caller was a _c variant; under MPI-3 the _c text is
 * dropped unread, and the hooks never pass large (pl_mpi_ops.large_ok). */
#if MPI_VERSION >= 4
#define PL_MPI_LARGE 1
#define PL_LARGE(large, c_call, call) ((large) ? (c_call) : (call))
#else
#define PL_MPI_LARGE 0
#define PL_LARGE(large, c_call, call) (call)
#endif

#ifdef PL_MPI_ABI_OMPI
/* Open MPI's predefined handles are addresses of objects in libmpi.so.40
 * (MPI_BYTE is &ompi_mpi_byte). Referring to them would make the library
 * depend on libmpi at load time, which a program without MPI does not
 * have; they are looked up at bind time like the functions, and mpi.h's
 * own macro is pointed at the result. A handle not listed here fails to
 * link (-z defs). */
#define PL_OMPI_OBJS(X)                                                                  \
    X(ompi_mpi_comm_world) X(ompi_mpi_byte) X(ompi_request_null) X(ompi_message_null)  \
    X(ompi_message_no_proc)
#define PL_OMPI_DECLARE(name) void *name;
typedef struct pl_ompi_objs {
    PL_OMPI_OBJS(PL_OMPI_DECLARE)
} pl_ompi_objs;
#undef PL_OMPI_DECLARE
extern pl_ompi_objs pl_ompi_obj;
#undef OMPI_PREDEFINED_GLOBAL
#define OMPI_PREDEFINED_GLOBAL(type, global) ((type)pl_ompi_obj.global)
#endif

/* The bytes a completed receive's status reports, read from the ABI's
 * fields rather than paying a library call on every receive. */
static inline uint64_t pl_mpi_status_bytes(const MPI_Status *st)
{
#ifdef PL_MPI_ABI_OMPI
    return (uint64_t)st->_ucount;
#else
    /* count_lo, and the bits of count_hi_and_cancelled above the
     * cancelled bit. */
    return (uint64_t)(uint32_t)st->count_lo |
           (uint64_t)((uint32_t)st->count_hi_and_cancelled >> 1) << 32;
#endif
}

/* A communicator as the stash's ABI-free key (pl_mpi_msg.h), and back. */
static inline uint64_t pl_mpi_comm_key(MPI_Comm c)
{
#ifdef PL_MPI_ABI_OMPI
    return (uint64_t)(uintptr_t)c;
#else
    return (uint64_t)(uint32_t)c;
#endif
}

static inline MPI_Comm pl_mpi_comm_of_key(uint64_t k)
{
#ifdef PL_MPI_ABI_OMPI
    return (MPI_Comm)(uintptr_t)k;
#else
    return (MPI_Comm)(uint32_t)k;
#endif
}

/* A well-mixed 32-bit number for a request handle (the request table). */
static inline uint32_t pl_mpi_req_hash(MPI_Request h)
{
#ifdef PL_MPI_ABI_OMPI
    uintptr_t v = (uintptr_t)h >> 4; /* objects are 16-byte aligned at least */
#else
    uint32_t v = (uint32_t)h;
#endif
    return (uint32_t)v * 2654435761u;
}

/* ---- message handles of ours ----------------------------------------------
 *
 * An MPI_Mprobe that had to receive a message hands back a handle of ours,
 * number n (pl_mpi_ent.handle, PL_MPI_FAKE_BASE | n). It must be a value
 * the MPI library never issues. MPICH: its handles have a non-zero kind in
 * the top two bits, ours use kind 0 with object nibble 0xE. Open MPI: its
 * handles are addresses of its own objects, ours are addresses inside a
 * block of ours (pl_mpi.c), so n wraps at PL_OMPI_FAKE_SPAN. */
#ifdef PL_MPI_ABI_OMPI
#define PL_OMPI_FAKE_SPAN 65536u
extern char pl_ompi_fake_msgs[PL_OMPI_FAKE_SPAN];
#endif

static inline MPI_Message pl_mpi_fake_msg(uint32_t handle)
{
#ifdef PL_MPI_ABI_OMPI
    return (MPI_Message)(void *)&pl_ompi_fake_msgs[(handle & ~PL_MPI_FAKE_MASK) %
                                                   PL_OMPI_FAKE_SPAN];
#else
    return (MPI_Message)handle;
#endif
}

/* true, and *handle its number, if m is one of ours. */
static inline bool pl_mpi_is_fake_msg(MPI_Message m, uint32_t *handle)
{
#ifdef PL_MPI_ABI_OMPI
    uintptr_t p = (uintptr_t)(void *)m, base = (uintptr_t)pl_ompi_fake_msgs;
    if (p < base || p - base >= PL_OMPI_FAKE_SPAN)
        return false;
    *handle = PL_MPI_FAKE_BASE | (uint32_t)(p - base);
    return true;
#else
    *handle = (uint32_t)m;
    return pl_mpi_fake_handle(*handle);
#endif
}

/* The next handle number after `last`, within what the ABI can express. */
static inline uint32_t pl_mpi_fake_next(uint32_t last)
{
#ifdef PL_MPI_ABI_OMPI
    return PL_MPI_FAKE_BASE | (((last & ~PL_MPI_FAKE_MASK) + 1) % PL_OMPI_FAKE_SPAN);
#else
    return PL_MPI_FAKE_BASE | (((last & ~PL_MPI_FAKE_MASK) + 1) & ~PL_MPI_FAKE_MASK);
#endif
}

#endif
