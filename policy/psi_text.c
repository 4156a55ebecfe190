/* psi_text: hex digits and %XX escapes (psi_text.h). */
#include "psi_text.h"

int psi_hex_digit_lower(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

bool psi_is_lower_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (psi_hex_digit_lower((unsigned char)s[i]) < 0)
            return false;
    return true;
}

int psi_hex_digit(int c)
{
    return c >= 'A' && c <= 'F' ? c - 'A' + 10 : psi_hex_digit_lower(c);
}

int psi_pct_decode(const char *s, size_t n, char *out, size_t cap)
{
    size_t k = 0;

    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            if (i + 2 >= n)
                return -1;
            int hi = psi_hex_digit(s[i + 1]), lo = hi < 0 ? -1 : psi_hex_digit(s[i + 2]);
            if (lo < 0 || (c = hi * 16 + lo) == 0)
                return -1;
            i += 2;
        }
        if (k + 1 >= cap)
            return -2;
        out[k++] = (char)c;
    }
    out[k] = '\0';
    return 0;
}
