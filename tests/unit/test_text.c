/* psi_text: hex digits and %XX escapes, every error path. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "psi_text.h"

static void test_hex_digits(void **state)
{
    (void)state;
    for (int c = 0; c < 256; c++) {
        int any = c >= '0' && c <= '9'   ? c - '0'
                  : c >= 'a' && c <= 'f' ? c - 'a' + 10
                  : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                         : -1;
        assert_int_equal(psi_hex_digit(c), any);
        assert_int_equal(psi_hex_digit_lower(c), c >= 'A' && c <= 'F' ? -1 : any);
    }
}

static void test_is_lower_hex(void **state)
{
    (void)state;
    assert_true(psi_is_lower_hex("0123456789abcdef", 16));
    assert_true(psi_is_lower_hex("", 0));
    /* Only n bytes count. */
    assert_true(psi_is_lower_hex("abcX", 3));
    assert_false(psi_is_lower_hex("abcX", 4));
    const char *bad[] = {"A", "0F", "g", "-", " ", "a.b", "\xe1"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (psi_is_lower_hex(bad[i], strlen(bad[i])))
            fail_msg("'%s' accepted", bad[i]);
}

static void test_pct_decode(void **state)
{
    (void)state;
    char out[16];
    assert_int_equal(psi_pct_decode("a%2Fb%2fc", 9, out, sizeof out), 0);
    assert_string_equal(out, "a/b/c");
    assert_int_equal(psi_pct_decode("", 0, out, sizeof out), 0);
    assert_string_equal(out, "");
    /* Only n bytes count: an escape cut by n is truncated. */
    assert_int_equal(psi_pct_decode("x%41", 3, out, sizeof out), -1);
    assert_int_equal(psi_pct_decode("x%41", 4, out, sizeof out), 0);
    assert_string_equal(out, "xA");
    const char *bad[] = {"%", "%4", "%zz", "%4g", "%00", "a%0"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(psi_pct_decode(bad[i], strlen(bad[i]), out, sizeof out), -1);
    /* cap counts the NUL. */
    assert_int_equal(psi_pct_decode("abc", 3, out, 4), 0);
    assert_int_equal(psi_pct_decode("abcd", 4, out, 4), -2);
    assert_int_equal(psi_pct_decode("%41%42%43%44", 12, out, 4), -2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hex_digits),
        cmocka_unit_test(test_is_lower_hex),
        cmocka_unit_test(test_pct_decode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
