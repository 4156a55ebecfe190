/* pl_dryrun: observe-only mode (PSI_DRYRUN, DESIGN §9).
 *
 * Nothing is framed, nothing is stored, nothing on the wire changes: stream
 * sockets and pipe write ends are tracked with both directions plain, every
 * send is written as the application asked, and what the policy would have
 * done with it is recorded. At exit the process writes one JSON file into
 * PSI_DRYRUN_OUT (format: pol_report.h) for `psi dry-run` to merge. */
#ifndef PL_DRYRUN_H
#define PL_DRYRUN_H

#include "pl_engine.h"

/* The real write, then the record. Same contract as pl_send / pl_sendv. */
ssize_t pl_dry_send(pl_state *st, pl_io *io, const void *buf, size_t n);
ssize_t pl_dry_sendv(pl_state *st, pl_io *io, const struct iovec *iov, int iovcnt);

/* A send the kernel made from a file or pipe without a buffer we can see
 * (sendfile, splice, copy_file_range into an observed fd): r bytes, one
 * send, as the real engine would proxy that call. */
void pl_dry_note(pl_state *st, ssize_t r);

/* The real call's result r on out_fd, recorded with pl_dry_note (splice). */
ssize_t pl_dry_noted(int out_fd, ssize_t r);

/* sendfile into an observed fd: the real call, recorded once per file
 * region as the engine would send it, however many calls move it. */
ssize_t pl_dry_sendfile(int out_fd, int in_fd, off_t *offset, size_t count,
                        ssize_t (*real)(int, int, off_t *, size_t));

/* A state that only observes: plain both ways, channel set. */
pl_state *pl_dry_state(int kind, int channel);

/* Forgets the parent's records in a forked child (they are the parent's). */
void pl_dry_atfork_child(void);

/* Writes this process's file into PSI_DRYRUN_OUT (exit time). */
void pl_dry_dump(void);

#endif
