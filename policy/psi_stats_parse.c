/* psi_stats_parse_line: reads back one PSI_STATS line for `psi stats`.
 *
 * A small parser for a flat JSON object: keys in any order, unknown keys
 * skipped whatever their value (so later versions may add fields), our keys
 * type-checked. Every error names the 1-based column where it was found.
 * Numbers are converted by hand so the result never depends on the locale. */
#include "psi_stats.h"
#include "psi_text.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define KEY_MAX 64
#define NEST_MAX 32 /* deepest unknown value we skip */

typedef struct parser {
    const char *s;
    size_t pos;
    psi_err *err;
} parser;

typedef struct number {
    bool negative, integer, overflow;
    uint64_t u;   /* the magnitude, if integer and !overflow */
    double d;
} number;

__attribute__((format(printf, 2, 3))) static int perr(parser *p, const char *fmt, ...)
{
    char what[200];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return psi_fail(p->err, EINVAL, "column %zu: %s", p->pos + 1, what);
}

static void skip_ws(parser *p)
{
    while (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' || p->s[p->pos] == '\r' ||
           p->s[p->pos] == '\n')
        p->pos++;
}

static int expect(parser *p, char c, const char *what)
{
    skip_ws(p);
    if (p->s[p->pos] != c)
        return p->s[p->pos] ? perr(p, "expected %s", what)
                            : perr(p, "line ends where %s was expected", what);
    p->pos++;
    return 0;
}

/* ---- strings ---------------------------------------------------------- */

static int hex4(parser *p, unsigned *out)
{
    unsigned v = 0;

    for (int i = 0; i < 4; i++) {
        char c = p->s[p->pos];
        int d = psi_hex_digit(c);
        if (d < 0)
            return perr(p, "\\u needs 4 hex digits");
        v = v << 4 | (unsigned)d;
        p->pos++;
    }
    *out = v;
    return 0;
}

/* Appends code point cp as UTF-8 to out (if out is not NULL). */
static int put_cp(parser *p, char *out, size_t cap, size_t *len, unsigned cp)
{
    char u[4];
    size_t n;

    if (cp < 0x80)
        u[0] = (char)cp, n = 1;
    else if (cp < 0x800)
        u[0] = (char)(0xc0 | cp >> 6), u[1] = (char)(0x80 | (cp & 0x3f)), n = 2;
    else if (cp < 0x10000)
        u[0] = (char)(0xe0 | cp >> 12), u[1] = (char)(0x80 | ((cp >> 6) & 0x3f)),
        u[2] = (char)(0x80 | (cp & 0x3f)), n = 3;
    else
        u[0] = (char)(0xf0 | cp >> 18), u[1] = (char)(0x80 | ((cp >> 12) & 0x3f)),
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3f)), u[3] = (char)(0x80 | (cp & 0x3f)), n = 4;
    if (!out)
        return 0;
    if (*len + n >= cap)
        return perr(p, "string longer than %zu bytes", cap - 1);
    memcpy(out + *len, u, n);
    *len += n;
    return 0;
}

/* \uXXXX, with a following \uXXXX when the first is a high surrogate. */
static int unicode_escape(parser *p, char *out, size_t cap, size_t *len)
{
    unsigned cp, lo;

    if (hex4(p, &cp) < 0)
        return -1;
    if (cp >= 0xd800 && cp <= 0xdbff) {
        if (p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u')
            return perr(p, "unpaired UTF-16 surrogate");
        p->pos += 2;
        if (hex4(p, &lo) < 0)
            return -1;
        if (lo < 0xdc00 || lo > 0xdfff)
            return perr(p, "unpaired UTF-16 surrogate");
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
    } else if (cp >= 0xdc00 && cp <= 0xdfff) {
        return perr(p, "unpaired UTF-16 surrogate");
    } else if (cp == 0) {
        return perr(p, "\\u0000 is not allowed in a string");
    }
    return put_cp(p, out, cap, len, cp);
}

/* Parses a string at p->pos (the opening quote) into out (NUL-terminated),
 * or just skips it when out is NULL. */
static int parse_string(parser *p, char *out, size_t cap)
{
    static const char simple[] = "\"\"\\\\//b\bf\fn\nr\rt\t";
    size_t len = 0;

    if (expect(p, '"', "a string") < 0)
        return -1;
    for (;;) {
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c == '\0')
            return perr(p, "unterminated string");
        if (c < 0x20)
            return perr(p, "control character in a string");
        p->pos++;
        if (c == '"')
            break;
        if (c == '\\') {
            char e = p->s[p->pos];
            const char *m = e ? strchr(simple, e) : NULL;
            if (e == 'u') {
                p->pos++;
                if (unicode_escape(p, out, cap, &len) < 0)
                    return -1;
                continue;
            }
            /* simple[] pairs an escape letter with its byte; only even
             * positions are letters. */
            if (!m || (m - simple) % 2 != 0) {
                p->pos--; /* point at the backslash */
                return perr(p, "unknown escape '\\%c'", e ? e : '0');
            }
            p->pos++;
            c = (unsigned char)m[1];
        }
        if (out) {
            if (len + 1 >= cap)
                return perr(p, "string longer than %zu bytes", cap - 1);
            out[len++] = (char)c;
        }
    }
    if (out)
        out[len] = '\0';
    return 0;
}

/* ---- numbers ---------------------------------------------------------- */

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static double scale10(double d, long e)
{
    for (; e > 0; e--)
        d *= 10;
    for (; e < 0; e++)
        d /= 10;
    return d;
}

static int parse_number(parser *p, number *n)
{
    long exp10 = 0, e = 0;
    bool eneg = false;

    memset(n, 0, sizeof *n);
    n->integer = true;
    skip_ws(p);
    if (p->s[p->pos] == '-')
        n->negative = true, p->pos++;
    if (!is_digit(p->s[p->pos]))
        return perr(p, "expected a number");
    for (; is_digit(p->s[p->pos]); p->pos++) {
        unsigned d = (unsigned)(p->s[p->pos] - '0');
        if (__builtin_mul_overflow(n->u, 10, &n->u) || __builtin_add_overflow(n->u, d, &n->u))
            n->overflow = true;
        n->d = n->d * 10 + d;
    }
    if (p->s[p->pos] == '.') {
        p->pos++;
        n->integer = false;
        if (!is_digit(p->s[p->pos]))
            return perr(p, "expected a digit after '.'");
        for (; is_digit(p->s[p->pos]); p->pos++, exp10--)
            n->d = n->d * 10 + (p->s[p->pos] - '0');
    }
    if (p->s[p->pos] == 'e' || p->s[p->pos] == 'E') {
        p->pos++;
        n->integer = false;
        if (p->s[p->pos] == '+' || p->s[p->pos] == '-')
            eneg = p->s[p->pos++] == '-';
        if (!is_digit(p->s[p->pos]))
            return perr(p, "expected a digit in the exponent");
        for (; is_digit(p->s[p->pos]); p->pos++)
            if (e < 100000)
                e = e * 10 + (p->s[p->pos] - '0');
    }
    n->d = scale10(n->d, exp10 + (eneg ? -e : e));
    if (n->negative)
        n->d = -n->d;
    return 0;
}

/* ---- values ----------------------------------------------------------- */

static int skip_literal(parser *p)
{
    static const char *const lits[] = {"true", "false", "null"};

    for (int i = 0; i < 3; i++) {
        size_t n = strlen(lits[i]);
        if (strncmp(p->s + p->pos, lits[i], n) == 0) {
            p->pos += n;
            return 0;
        }
    }
    return perr(p, "expected a value");
}

/* Skips any JSON value (an unknown key's), nested ones included. */
static int skip_value(parser *p, int depth)
{
    number n;
    char c;

    skip_ws(p);
    c = p->s[p->pos];
    if (c == '"')
        return parse_string(p, NULL, 0);
    if (c == '-' || is_digit(c))
        return parse_number(p, &n);
    if (c != '{' && c != '[')
        return skip_literal(p);
    if (depth >= NEST_MAX)
        return perr(p, "values nested deeper than %d", NEST_MAX);
    p->pos++;
    skip_ws(p);
    if (p->s[p->pos] == (c == '{' ? '}' : ']')) {
        p->pos++;
        return 0;
    }
    for (;;) {
        if (c == '{' && (parse_string(p, NULL, 0) < 0 || expect(p, ':', "':'") < 0))
            return -1;
        if (skip_value(p, depth + 1) < 0)
            return -1;
        skip_ws(p);
        if (p->s[p->pos] == ',') {
            p->pos++;
            continue;
        }
        return expect(p, c == '{' ? '}' : ']', c == '{' ? "',' or '}'" : "',' or ']'");
    }
}

/* ---- our keys --------------------------------------------------------- */

static int value_u64(parser *p, const char *key, uint64_t *out)
{
    size_t at;
    number n;

    skip_ws(p);
    at = p->pos;
    if (parse_number(p, &n) < 0)
        return -1;
    if (!n.integer || n.negative || n.overflow) {
        p->pos = at;
        return perr(p, "\"%s\" must be a non-negative integer below 2^64", key);
    }
    *out = n.u;
    return 0;
}

static int value_seconds(parser *p, const char *key, double *out)
{
    size_t at;
    number n;

    skip_ws(p);
    at = p->pos;
    if (parse_number(p, &n) < 0)
        return -1;
    if (n.negative && n.d != 0) {
        p->pos = at;
        return perr(p, "\"%s\" must not be negative", key);
    }
    *out = n.d < 0 ? 0 : n.d;
    return 0;
}

static int value_pid(parser *p, long *out)
{
    size_t at;
    number n;

    skip_ws(p);
    at = p->pos;
    if (parse_number(p, &n) < 0)
        return -1;
    if (!n.integer || n.negative || n.overflow || n.u == 0 || n.u > 0x7fffffff) {
        p->pos = at;
        return perr(p, "\"pid\" must be a positive integer");
    }
    *out = (long)n.u;
    return 0;
}

typedef struct fields {
    psi_stats_rec *rec;
    long *pid;
    char *exe;       /* NULL: the caller does not want it */
    size_t exe_cap;
    bool have_pid;
} fields;

static int parse_member(parser *p, fields *f, const char *key)
{
    psi_stats_rec *r = f->rec;
    const struct { const char *key; uint64_t *v; } counters[] = {
        {"bytes_sent", &r->bytes_sent},         {"bytes_proxied", &r->bytes_proxied},
        {"tokens_sent", &r->tokens_sent},       {"tokens_resolved", &r->tokens_resolved},
        {"bytes_resolved", &r->bytes_resolved}, {"inline_fallbacks", &r->inline_fallbacks},
        {"errors", &r->errors},
    };

    for (size_t i = 0; i < sizeof counters / sizeof counters[0]; i++)
        if (strcmp(key, counters[i].key) == 0)
            return value_u64(p, key, counters[i].v);
    if (strcmp(key, "put_seconds") == 0)
        return value_seconds(p, key, &r->put_seconds);
    if (strcmp(key, "get_seconds") == 0)
        return value_seconds(p, key, &r->get_seconds);
    if (strcmp(key, "pid") == 0) {
        f->have_pid = true;
        return value_pid(p, f->pid);
    }
    if (strcmp(key, "exe") == 0) {
        skip_ws(p);
        if (p->s[p->pos] != '"')
            return perr(p, "\"exe\" must be a string");
        return parse_string(p, f->exe, f->exe_cap);
    }
    return skip_value(p, 0);
}

static int parse_object(parser *p, fields *f)
{
    char key[KEY_MAX];

    if (expect(p, '{', "'{' (a stats line is one JSON object)") < 0)
        return -1;
    skip_ws(p);
    if (p->s[p->pos] == '}') {
        p->pos++;
        return 0;
    }
    for (;;) {
        size_t at;
        skip_ws(p);
        at = p->pos;
        /* An over-long key is no key of ours: skip it with its value. */
        if (parse_string(p, key, sizeof key) < 0) {
            p->pos = at;
            key[0] = '\0';
            if (parse_string(p, NULL, 0) < 0)
                return -1;
        }
        if (expect(p, ':', "':' after a key") < 0 || parse_member(p, f, key) < 0)
            return -1;
        skip_ws(p);
        if (p->s[p->pos] == ',') {
            p->pos++;
            continue;
        }
        return expect(p, '}', "',' or '}'");
    }
}

int psi_stats_parse_line(const char *line, psi_stats_rec *out, long *pid, char *exe,
                         size_t exe_cap, psi_err *err)
{
    parser p = {line, 0, err};
    fields f = {out, pid, exe_cap ? exe : NULL, exe ? exe_cap : 0, false};
    long pid_dummy;

    if (!line || !out)
        return psi_fail(err, EINVAL, "no line");
    if (!pid)
        f.pid = &pid_dummy;
    memset(out, 0, sizeof *out);
    if (exe && exe_cap)
        exe[0] = '\0';
    skip_ws(&p);
    if (!line[p.pos])
        return psi_fail(err, EINVAL, "empty line");
    if (parse_object(&p, &f) < 0)
        return -1;
    skip_ws(&p);
    if (line[p.pos])
        return perr(&p, "unexpected text after the object");
    if (!f.have_pid)
        return psi_fail(err, EINVAL, "no \"pid\" key");
    return 0;
}
