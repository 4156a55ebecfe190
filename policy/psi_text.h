/* psi_text: the small text decoders every parser here needs once. */
#ifndef PSI_TEXT_H
#define PSI_TEXT_H

#include <stdbool.h>
#include <stddef.h>

/* The value of a hex digit (either case), or -1. */
int psi_hex_digit(int c);

/* The value of a lowercase hex digit, or -1: for names that must have one
 * spelling only (store keys, the exec handoff). */
int psi_hex_digit_lower(int c);

/* Whether s[0, n) is all lowercase hex digits (true for n == 0): the
 * hash part of a store key. */
bool psi_is_lower_hex(const char *s, size_t n);

/* Decodes s[0, n) with %XX escapes into out (cap bytes, NUL included).
 * Returns 0; -1 for a bad or truncated escape or an escaped NUL; -2 if the
 * result does not fit. */
int psi_pct_decode(const char *s, size_t n, char *out, size_t cap);

#endif
