/* pl_proto: HELLO/ANSWER and the record decoder of docs/protocol.md.
 *
 * Everything here is pure: no syscalls, no allocation, no locks, so every
 * split point of every record is unit tested (tests/unit/test_pl_proto.c). */
#ifndef PL_PROTO_H
#define PL_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "psi_token.h"

#define PL_HELLO_LEN 24   /* docs/protocol.md §2 */
#define PL_NONCE_LEN 16   /* docs/protocol.md §2 */
#define PL_REC_HDR 5      /* docs/protocol.md §3 */
#define PL_REC_DATA 0x01  /* docs/protocol.md §3 */
#define PL_REC_TOKEN 0x02 /* docs/protocol.md §3 */
#define PL_DATA_MAX 0x7fffffffu /* docs/protocol.md §3: 1 <= DATA length <= 2^31-1 */

/* HELLO (answer = false) or ANSWER (answer = true) carrying nonce. */
void pl_hello_make(uint8_t out[PL_HELLO_LEN], const uint8_t nonce[PL_NONCE_LEN], bool answer);

enum pl_detect_result {
    PL_DETECT_PLAIN = 0,   /* a byte differs from HELLO: plain stream */
    PL_DETECT_PARTIAL = 1, /* every byte so far matches; need more */
    PL_DETECT_HELLO = 2,   /* 24 bytes, a version 1 HELLO */
    PL_DETECT_BADVER = 3,  /* HELLO magic with a version we cannot decode */
};

/* Classifies the first `len` bytes of an inbound direction. */
int pl_detect(const uint8_t *buf, size_t len);

/* Searches hay[0..n) for pat[0..m) (m <= 64). Returns the offset of the
 * first full match, or n if none; then *partial is the length of the longest
 * suffix of hay that is a proper prefix of pat (bytes that must be held back
 * until more data tells whether they start a match). */
size_t pl_find(const uint8_t *hay, size_t n, const uint8_t *pat, size_t m, size_t *partial);

/* The record decoder: a state machine fed any split of a framed stream. */
enum pl_rx_phase { PL_RX_HDR = 0, PL_RX_DATA = 1, PL_RX_TOKEN = 2 };

typedef struct pl_rx {
    uint8_t phase;
    uint8_t hdr_len;            /* header bytes gathered so far */
    uint8_t hdr[PL_REC_HDR];
    uint32_t left;              /* body bytes still to come (DATA or TOKEN) */
    uint32_t tok_len;           /* token body bytes gathered */
    uint8_t tok[PSI_TOKEN_MAX_BODY];
    char err[96];               /* why PL_RX_ERROR was returned */
} pl_rx;

enum pl_rx_event {
    PL_RX_ERROR = -1, /* malformed input: rx->err says what; the stream is dead */
    PL_RX_MORE = 0,   /* consumed what it could; see consumed/produced */
    PL_RX_TOKEN_READY = 1, /* a token body is complete in rx->tok[0..tok_len) */
};

void pl_rx_init(pl_rx *rx);

/* Decodes in[0..in_len): DATA payload bytes are moved to out[0..out_cap)
 * (memmove: `out` may alias `in` as long as out <= in), headers and token
 * bodies are kept in rx. Stops right after a complete token
 * (PL_RX_TOKEN_READY), or when out is full and the next byte is payload, or
 * when the input is used up. Reports bytes consumed and produced. */
int pl_rx_decode(pl_rx *rx, const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap,
                 size_t *consumed, size_t *produced);

/* After PL_RX_TOKEN_READY the caller takes the body and calls this. */
void pl_rx_token_taken(pl_rx *rx);

/* EOF here is clean (between records or inside a header, §3). */
bool pl_rx_eof_clean(const pl_rx *rx);

#endif
