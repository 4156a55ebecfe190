/* pl_proto: HELLO/ANSWER and the record decoder. Layouts: docs/protocol.md. */
#include "pl_proto.h"

#include <stdio.h>
#include <string.h>

#include "psi_le.h"

/* docs/protocol.md §2 */
static const uint8_t pl_hello_magic[4] = {0xF5, 'P', 'S', 'H'};
static const uint8_t pl_answer_magic[4] = {0xF5, 'P', 'S', 'A'};

void pl_hello_make(uint8_t out[PL_HELLO_LEN], const uint8_t nonce[PL_NONCE_LEN], bool answer)
{
    memcpy(out, answer ? pl_answer_magic : pl_hello_magic, 4);
    out[4] = PSI_PROTO_VERSION;
    out[5] = 0; /* flags */
    out[6] = 0; /* reserved */
    out[7] = 0;
    memcpy(out + 8, nonce, PL_NONCE_LEN);
}

int pl_detect(const uint8_t *buf, size_t len)
{
    if (len == 0)
        return PL_DETECT_PARTIAL; /* nothing differs yet; buf may be NULL */
    size_t magic = len < 4 ? len : 4;
    if (memcmp(buf, pl_hello_magic, magic) != 0)
        return PL_DETECT_PLAIN;
    if (len > 4 && buf[4] != PSI_PROTO_VERSION)
        return PL_DETECT_BADVER;
    /* flags (byte 5) are ignored by receivers; reserved bytes and the
     * nonce carry no fixed value, so they cannot be checked. */
    return len >= PL_HELLO_LEN ? PL_DETECT_HELLO : PL_DETECT_PARTIAL;
}

size_t pl_find(const uint8_t *hay, size_t n, const uint8_t *pat, size_t m, size_t *partial)
{
    /* Patterns here are 24 bytes and matches are rare, so a direct scan
     * with a memchr on the first byte beats building a KMP table. */
    *partial = 0;
    if (m == 0)
        return 0; /* the empty pattern; pat[0] below needs m >= 1 */
    const uint8_t *p = hay;
    const uint8_t *end = hay + n;
    while (p < end && (p = memchr(p, pat[0], (size_t)(end - p))) != NULL) {
        size_t avail = (size_t)(end - p);
        size_t cmp = avail < m ? avail : m;
        if (memcmp(p, pat, cmp) == 0) {
            if (cmp == m)
                return (size_t)(p - hay);
            *partial = avail; /* a prefix of pat runs to the end of hay */
            return n;
        }
        p++;
    }
    return n;
}

void pl_rx_init(pl_rx *rx)
{
    memset(rx, 0, sizeof(*rx));
    rx->phase = PL_RX_HDR;
}

/* A complete header: check it and enter the body phase. */
static int pl_rx_header(pl_rx *rx)
{
    uint32_t len = psi_get_le32(rx->hdr + 1);
    rx->hdr_len = 0;
    switch (rx->hdr[0]) {
    case PL_REC_DATA:
        if (len == 0 || len > PL_DATA_MAX) {
            snprintf(rx->err, sizeof(rx->err), "DATA record of length %u", len);
            return PL_RX_ERROR;
        }
        rx->phase = PL_RX_DATA;
        rx->left = len;
        return PL_RX_MORE;
    case PL_REC_TOKEN:
        if (len < PSI_TOKEN_MIN_BODY || len > PSI_TOKEN_MAX_BODY) {
            snprintf(rx->err, sizeof(rx->err), "TOKEN record of length %u (allowed %d..%d)",
                     len, PSI_TOKEN_MIN_BODY, PSI_TOKEN_MAX_BODY);
            return PL_RX_ERROR;
        }
        rx->phase = PL_RX_TOKEN;
        rx->left = len;
        rx->tok_len = 0;
        return PL_RX_MORE;
    default:
        snprintf(rx->err, sizeof(rx->err), "unknown record type 0x%02x", rx->hdr[0]);
        return PL_RX_ERROR;
    }
}

int pl_rx_decode(pl_rx *rx, const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap,
                 size_t *consumed, size_t *produced)
{
    size_t i = 0, o = 0;
    int ev = PL_RX_MORE;
    if (rx->err[0] != '\0') {
        /* The stream is dead: never decode past a malformed header (the
         * bytes after it are not records), whatever the caller does. */
        *consumed = 0;
        *produced = 0;
        return PL_RX_ERROR;
    }
    while (i < in_len && ev == PL_RX_MORE) {
        if (rx->phase == PL_RX_HDR) {
            size_t take = PL_REC_HDR - rx->hdr_len;
            if (take > in_len - i)
                take = in_len - i;
            memcpy(rx->hdr + rx->hdr_len, in + i, take);
            rx->hdr_len += (uint8_t)take;
            i += take;
            if (rx->hdr_len == PL_REC_HDR)
                ev = pl_rx_header(rx);
        } else if (rx->phase == PL_RX_DATA) {
            size_t take = rx->left;
            if (take > in_len - i)
                take = in_len - i;
            if (take > out_cap - o)
                take = out_cap - o;
            if (take == 0)
                break; /* out is full */
            if (out + o != in + i)
                memmove(out + o, in + i, take);
            i += take;
            o += take;
            rx->left -= (uint32_t)take;
            if (rx->left == 0)
                rx->phase = PL_RX_HDR;
        } else {
            size_t take = rx->left;
            if (take > in_len - i)
                take = in_len - i;
            memcpy(rx->tok + rx->tok_len, in + i, take);
            rx->tok_len += (uint32_t)take;
            rx->left -= (uint32_t)take;
            i += take;
            if (rx->left == 0)
                ev = PL_RX_TOKEN_READY;
        }
    }
    *consumed = i;
    *produced = o;
    return ev;
}

void pl_rx_token_taken(pl_rx *rx)
{
    rx->phase = PL_RX_HDR;
    rx->tok_len = 0;
}

bool pl_rx_eof_clean(const pl_rx *rx)
{
    return rx->phase == PL_RX_HDR && rx->err[0] == '\0';
}
