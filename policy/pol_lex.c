/* pol_lex: one policy line into words (docs/policy.md §1).
 *
 * The language is line-oriented, so the lexer sees one line at a time and
 * never needs to recover across lines: an error here costs one line. */
#include <stdio.h>
#include <string.h>

#include "pol_internal.h"

int pol_col(const char *s, size_t off)
{
    int col = 1;

    /* UTF-8 continuation bytes (10xxxxxx) do not start a character. */
    for (size_t i = 0; i < off; i++)
        col += ((unsigned char)s[i] & 0xC0) != 0x80;
    return col;
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

int pol_lex_line(const char *s, size_t n, pol_line *out, int *err_col, char *err,
                 size_t cap)
{
    size_t i = 0;

    out->ntok = 0;
    out->end_col = pol_col(s, n);
    for (;;) {
        while (i < n && is_blank(s[i]))
            i++;
        if (i >= n || s[i] == '#')
            return 0;
        if (out->ntok == POL_LINE_TOKENS) {
            *err_col = pol_col(s, i);
            snprintf(err, cap, "more than %d words on one line", POL_LINE_TOKENS);
            return -1;
        }
        pol_tok *t = &out->tok[out->ntok];
        size_t len = 0, start = i;
        t->col = pol_col(s, i);
        t->eq = -1;
        t->vcol = 0;
        t->quoted = false;
        while (i < n && !is_blank(s[i])) {
            char c = s[i];
            if (c == '"') {
                size_t q = i++;
                t->quoted = true;
                if (t->eq >= 0 && (size_t)t->eq + 1 == len)
                    t->vcol = pol_col(s, i); /* key="value": point inside */
                for (;;) {
                    if (i >= n) {
                        *err_col = pol_col(s, q);
                        snprintf(err, cap, "unterminated quoted string; expected a closing '\"'");
                        return -1;
                    }
                    c = s[i];
                    if (c == '"')
                        break;
                    if (c == '\\' && i + 1 < n && (s[i + 1] == '"' || s[i + 1] == '\\'))
                        c = s[++i];
                    if (len >= POL_TOKEN_MAX)
                        goto too_long;
                    t->text[len++] = c;
                    i++;
                }
                i++; /* the closing quote */
                continue;
            }
            if (c == '=' && t->eq < 0) {
                t->eq = (int)len;
                t->vcol = pol_col(s, i + 1);
            }
            if (len >= POL_TOKEN_MAX)
                goto too_long;
            t->text[len++] = c;
            i++;
        }
        t->text[len] = '\0';
        out->ntok++;
        continue;
too_long:
        *err_col = pol_col(s, start);
        snprintf(err, cap, "word longer than %d bytes", POL_TOKEN_MAX);
        return -1;
    }
}
