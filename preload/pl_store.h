/* pl_store: the process's store connectors, opened on first use. */
#ifndef PL_STORE_H
#define PL_STORE_H

#include "psi_policy.h"
#include "psi_store.h"

#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

/* The store slot for a send: the connector the rule named; else, when the
 * default store is remote (redis://, zmq://) and the peer is on this host
 * (pipe, unix socket, loopback, one of our addresses), the shm pool unless
 * PSI_ROUTE=fixed; else the default (slot 0). */
int pl_store_route(const pol_decision *d, const struct sockaddr *peer, socklen_t peer_len);

/* The same for a channel that hides which peer gets the payload (MPI ranks,
 * ZeroMQ sockets): the rule's connector, else the default store, as for a
 * peer that may be on another host. */
int pl_store_route_unknown(const pol_decision *d);

/* Puts through a slot from pl_store_route; d gives lifetime and ttl. */
int pl_store_put(const void *buf, size_t n, const pol_decision *d, int slot, psi_token *tok,
                 psi_err *err);
/* A new reference to tok's object in the connector that made it (a
 * fan-out); -1 if the connector cannot, and the caller puts again. */
int pl_store_ref(const psi_token *tok, const pol_decision *d, psi_token *out, psi_err *err);
int pl_store_resolve(const psi_token *tok, psi_obj *obj, psi_err *err);
/* For the stream engine, which checks each range with psi_obj_verify
 * right before copying it out (psi_store_resolve_lazy). */
int pl_store_resolve_lazy(const psi_token *tok, psi_obj *obj, psi_err *err);
/* In a fork child: the parent's store handles are let go, not used. */
void pl_store_atfork_child(void);

/* The clock of the put_ns and get_ns statistics (CLOCK_MONOTONIC, in
 * nanoseconds): PSI_STAT_ADD(put_ns, pl_now_ns() - t0). */
static inline uint64_t pl_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#endif
