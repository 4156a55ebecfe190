/* psi_registry: the host-local registry of interposed listeners (DESIGN §3).
 *
 * An interposed process that listens on a TCP or Unix stream socket drops one
 * small file into <runtime>/registry/ describing (family, address, port or
 * path, pid, socket inode). A connecting process offers HELLO to a local
 * address only if an entry for that port/path names an inode that is still a
 * listening socket there, per /proc/net/{tcp,tcp6,unix}; so a crashed or
 * replaced server is never mistaken for an interposed one. */
#ifndef PSI_REGISTRY_H
#define PSI_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "psi_err.h"

/* The per-user runtime directory, created 0700 on first use:
 * $XDG_RUNTIME_DIR/psi if that is set and writable, else /tmp/psi-<uid>.
 * PSI_RUNTIME_DIR overrides both (tests use it). Returns NULL on failure. */
const char *psi_runtime_dir(void);

/* Registers a listening socket: `sa` is its bound address (getsockname),
 * `inode` its socket inode (fstat st_ino). Writes the entry's path into
 * `entry` (for psi_registry_remove). Returns 0 or -1 with err. */
int psi_registry_add(const struct sockaddr *sa, socklen_t len, ino_t inode, char *entry,
                     size_t entry_cap, psi_err *err);

/* Removes an entry written by psi_registry_add (ignores a missing file). */
void psi_registry_remove(const char *entry);

/* True if `sa` (a connect() destination) is a local address with a live
 * registry entry whose inode is still listening on that port or path. */
bool psi_registry_is_interposed(const struct sockaddr *sa, socklen_t len);

/* Removes entries whose inode no longer listens. Returns the number removed. */
/* An entry whose process is alive in another network namespace is kept
 * (its listener is invisible in our /proc/net, not gone); so are files
 * the registry did not write. Temp files of dead writers are removed. */
int psi_registry_gc(psi_err *err);

#endif
