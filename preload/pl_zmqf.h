/* pl_zmqf: the ZeroMQ frame codec (docs/protocol.md §7, docs/zmq.md).
 *
 * On a connection whose peer announced "X-Psi" in its ZMTP handshake, a
 * frame of at least 4 bytes that starts with F5 50 53 ("\xF5PS") is ours:
 *
 *   F5 50 53 5A ('Z') + token body (§4)    a proxied frame
 *   F5 50 53 45 ('E') + the real frame     a real frame that began with F5 50 53
 *
 * Every other frame is the application's, byte for byte. A sender that
 * announced X-Psi escapes every real frame that starts with the prefix, so
 * the mapping is exact in both directions. Pure code: no libzmq, no I/O. */
#ifndef PL_ZMQF_H
#define PL_ZMQF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "psi_err.h"
#include "psi_token.h"

#define PL_ZF_HDR 4                                    /* docs/protocol.md §7 */
#define PL_ZF_KIND_TOKEN 0x5A                          /* 'Z' */
#define PL_ZF_KIND_ESCAPE 0x45                         /* 'E' */
#define PL_ZF_TOKEN_MAX (PL_ZF_HDR + PSI_TOKEN_MAX_BODY) /* largest token frame */

/* The 4-byte header of a frame of `kind`, into out. */
void pl_zf_header(uint8_t out[PL_ZF_HDR], uint8_t kind);

/* True if a real frame p[0..n) must be escaped: it could be read as ours. */
static inline bool pl_zf_needs_escape(const void *p, size_t n)
{
    const uint8_t *b = p;
    return n >= PL_ZF_HDR && b[0] == 0xF5 && b[1] == 0x50 && b[2] == 0x53;
}

/* Writes the token frame for tok into out. Returns its length, or -1 with
 * err if the token cannot be encoded. */
int pl_zf_token_encode(const psi_token *tok, uint8_t *out, size_t cap, psi_err *err);

enum pl_zf_kind {
    PL_ZF_PLAIN = 0,   /* the application's frame, unchanged */
    PL_ZF_ESCAPED = 1, /* the application's frame is p[PL_ZF_HDR..n) */
    PL_ZF_TOKEN = 2,   /* *tok names the payload */
};

/* Classifies a frame received from a peer that announced X-Psi. Returns a
 * pl_zf_kind, or -1 with err: EPROTO for a header kind this build does not
 * know (a newer sender), EIO for a token body that fails §4's checks. */
int pl_zf_classify(const uint8_t *p, size_t n, psi_token *tok, psi_err *err);

#endif

#ifndef PL_ZMQF_EP_DECL
#define PL_ZMQF_EP_DECL
#include <sys/socket.h>
/* Parses a zmq_connect endpoint into the address libzmq will connect to:
 * tcp://[src;]host:port with host an IPv4 or [IPv6] literal or "localhost"
 * (127.0.0.1), ipc:///path, ipc://@abstract. Returns 0, or -1 for any other
 * form (another transport, a host name to resolve, a malformed endpoint). */
int pl_zf_endpoint(const char *ep, struct sockaddr_storage *sa, socklen_t *len);
#endif
