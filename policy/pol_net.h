/* pol_net: what the registry needs to know about this host's sockets.
 *
 * Policy internals (not for preload/ or tools/): the listening sockets the
 * kernel reports in /proc/net/{tcp,tcp6,unix}, read in this process's
 * network namespace, and whether an address belongs to this host. */
#ifndef POL_NET_H
#define POL_NET_H

#include <stdbool.h>
#include <sys/types.h>

/* A TCP listener as /proc/net/tcp{,6} shows it. addr is in network order;
 * an AF_INET6 listener bound to a v4-mapped address is reported as AF_INET. */
typedef struct pol_tcp_listener {
    int family;
    unsigned char addr[16];
    int port;
    ino_t inode;
} pol_tcp_listener;

/* Calls fn for every TCP socket in state LISTEN; stops early when fn returns
 * non-zero. Returns 0, or -1 (errno) if /proc/net/tcp could not be read
 * (tcp6 may be absent: no IPv6). */
int pol_tcp_listeners(int (*fn)(void *ctx, const pol_tcp_listener *l), void *ctx);

/* Calls fn for every unix socket with __SO_ACCEPTCON (listening). `path` is
 * the kernel's rendering: the path, or '@' then the abstract name with its
 * 0 bytes shown as '@'; "" for unnamed. Stops early when fn returns
 * non-zero. Returns 0 or -1 (errno). */
int pol_unix_listeners(int (*fn)(void *ctx, ino_t inode, const char *path), void *ctx);

/* True for loopback, the wildcard (connect() to it reaches this host) and any
 * address assigned to a local interface (getifaddrs, read once and cached).
 * family is AF_INET (4 bytes) or AF_INET6 (16 bytes, not v4-mapped). */
bool pol_addr_is_local(int family, const unsigned char *addr);

/* True if pid is gone, or lives in our network namespace, so a registry
 * entry of it that /proc/net does not show is really dead (and not merely
 * listening in another namespace that shares the runtime directory). */
bool pol_pid_dead_here(pid_t pid);

#endif
