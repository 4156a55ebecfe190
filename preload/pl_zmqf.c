/* pl_zmqf: the ZeroMQ frame codec (docs/protocol.md §7). */
#include "pl_zmqf.h"

#include <errno.h>
#include <string.h>

void pl_zf_header(uint8_t out[PL_ZF_HDR], uint8_t kind)
{
    out[0] = 0xF5;
    out[1] = 0x50;
    out[2] = 0x53;
    out[3] = kind;
}

int pl_zf_token_encode(const psi_token *tok, uint8_t *out, size_t cap, psi_err *err)
{
    if (cap < PL_ZF_HDR)
        return psi_fail(err, ENOSPC, "zmq token frame: %zu-byte buffer too small", cap);
    pl_zf_header(out, PL_ZF_KIND_TOKEN);
    int blen = psi_token_encode(tok, out + PL_ZF_HDR, cap - PL_ZF_HDR, err);
    return blen < 0 ? -1 : PL_ZF_HDR + blen;
}

int pl_zf_classify(const uint8_t *p, size_t n, psi_token *tok, psi_err *err)
{
    if (!pl_zf_needs_escape(p, n))
        return PL_ZF_PLAIN;
    switch (p[3]) {
    case PL_ZF_KIND_ESCAPE:
        return PL_ZF_ESCAPED;
    case PL_ZF_KIND_TOKEN:
        if (psi_token_decode(p + PL_ZF_HDR, n - PL_ZF_HDR, tok, err) != 0)
            return -1;
        return PL_ZF_TOKEN;
    default:
        return psi_fail(err, EPROTO,
                        "zmq frame of unknown kind 0x%02x from a peer that announced X-Psi "
                        "(a newer psinterpose?)",
                        p[3]);
    }
}

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/un.h>

static int pl_zf_tcp(const char *hp, struct sockaddr_storage *sa, socklen_t *len)
{
    const char *semi = strrchr(hp, ';'); /* tcp://source;destination */
    if (semi)
        hp = semi + 1;
    const char *colon = strrchr(hp, ':');
    if (!colon || colon == hp || !colon[1])
        return -1;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 1 || port > 65535)
        return -1;
    char host[64];
    size_t hl = (size_t)(colon - hp);
    if (hp[0] == '[') {
        if (hl < 3 || hp[hl - 1] != ']')
            return -1;
        hp++;
        hl -= 2;
    }
    if (hl == 0 || hl >= sizeof(host))
        return -1;
    memcpy(host, hp, hl);
    host[hl] = '\0';
    memset(sa, 0, sizeof(*sa));
    struct sockaddr_in *v4 = (struct sockaddr_in *)sa;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)sa;
    if (strcmp(host, "localhost") == 0)
        strcpy(host, "127.0.0.1");
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        *len = sizeof(*v4);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        *len = sizeof(*v6);
        return 0;
    }
    return -1; /* a name: resolving it here could block on DNS */
}

int pl_zf_endpoint(const char *ep, struct sockaddr_storage *sa, socklen_t *len)
{
    if (!ep)
        return -1;
    if (strncmp(ep, "tcp://", 6) == 0)
        return pl_zf_tcp(ep + 6, sa, len);
    if (strncmp(ep, "ipc://", 6) != 0)
        return -1;
    const char *path = ep + 6;
    struct sockaddr_un *un = (struct sockaddr_un *)sa;
    size_t pl = strlen(path);
    if (pl == 0 || pl >= sizeof(un->sun_path) || strcmp(path, "*") == 0)
        return -1;
    memset(sa, 0, sizeof(*sa));
    un->sun_family = AF_UNIX;
    memcpy(un->sun_path, path, pl);
    if (path[0] == '@') { /* abstract namespace, as libzmq spells it */
        un->sun_path[0] = '\0';
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + pl);
    } else {
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + pl + 1);
    }
    return 0;
}
