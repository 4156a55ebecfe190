/* pl_handoff: carrying per-fd state across exec (DESIGN §5, docs/exec-handoff.md).
 *
 * exec wipes user space: the decoder state of a framed stream, the bytes we
 * hold for the application, the open DATA record we owe the peer. Before an
 * exec (and for the child of posix_spawn) every state that may survive is
 * written to a memfd without FD_CLOEXEC, and PSI_HANDOFF=<memfd number> goes
 * into the new image's environment. The new image's constructor reads it,
 * re-attaches each state to whichever of its fds is the same open object
 * (matched by device, inode and access mode, so dup2 onto 0/1/2 in a vfork
 * child or a spawn file action is followed), closes the memfd and drops the
 * variable so grandchildren never see it.
 *
 * Nothing here allocates or mutates shared memory on the export side: the
 * caller may be a vfork child running on its parent's memory. */
#ifndef PL_HANDOFF_H
#define PL_HANDOFF_H

#include <stdbool.h>
#include <stddef.h>

#define PL_HANDOFF_ENV "PSI_HANDOFF"

/* Writes the handoff for an exec. all_states false (an exec in this
 * process): only states whose object will survive it, open on one of their
 * own fds without FD_CLOEXEC or on fd 0, 1 or 2; true: every tracked state
 * (posix_spawn, whose file actions we cannot see). Returns the memfd (no FD_CLOEXEC) or -1 when there is
 * nothing to hand off, or no way to (errno is preserved). */
int pl_handoff_export(bool all_states);

/* envp for the new image: a copy of `envp` without any PSI_HANDOFF entry,
 * plus PSI_HANDOFF=memfd. `out` has room for n_envp(envp) + 2 pointers and
 * `var` for 32 bytes (both on the caller's stack). */
size_t pl_handoff_env_count(char *const envp[]);
void pl_handoff_env(char *const envp[], int memfd, char **out, char var[32]);

/* True when envp preloads this library, so the new image can take a handoff. */
bool pl_handoff_target_preloaded(char *const envp[]);

/* The new image: restores states from PSI_HANDOFF, if set (pl_init). */
void pl_handoff_import(void);

#endif
