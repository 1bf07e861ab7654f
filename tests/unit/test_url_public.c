/*
 * test_url_public.c - sluice/url.h, the URL parser as applications see it:
 * parts through the getters, typed options, unused options rejected by name,
 * malformed URLs and NULL arguments refused with a message.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/error.h"
#include "sluice/url.h"
#include "testlib.h"

static void parts_come_back_decoded(void **state)
{
    (void)state;
    sl_url *u = NULL;
    assert_int_equal(sl_url_parse("mysql://us%40er:p%3Ass@db.local:3307/app?max_open_conns=8", &u),
                     0);
    assert_non_null(u);
    assert_string_equal(sl_url_scheme(u), "mysql");
    assert_string_equal(sl_url_user(u), "us@er");
    assert_string_equal(sl_url_password(u), "p:ss");
    assert_string_equal(sl_url_host(u), "db.local");
    assert_int_equal(sl_url_port(u), 3307);
    assert_string_equal(sl_url_path(u), "/app");
    uint64_t n = 0;
    assert_int_equal(sl_url_opt_u64(u, "max_open_conns", 0, 100, 64, &n), 0);
    assert_int_equal(n, 8);
    assert_int_equal(sl_url_check_unused(u), 0);
    sl_url_free(u);
}

static void absent_parts_and_defaults(void **state)
{
    (void)state;
    sl_url *u = NULL;
    assert_int_equal(sl_url_parse("postgres://127.0.0.1", &u), 0);
    assert_null(sl_url_user(u));
    assert_null(sl_url_password(u));
    assert_int_equal(sl_url_port(u), 0);
    assert_string_equal(sl_url_path(u), "");
    assert_null(sl_url_opt(u, "sslmode"));
    int64_t ms = 0;
    bool b = false;
    assert_int_equal(sl_url_opt_ms(u, "timeout", 1500, &ms), 0);
    assert_int_equal(ms, 1500);
    assert_int_equal(sl_url_opt_bool(u, "tls", true, &b), 0);
    assert_true(b);
    sl_url_free(u);
}

static void typed_options_are_validated(void **state)
{
    (void)state;
    sl_url *u = NULL;
    assert_int_equal(sl_url_parse("x://h/?t=2s&b=off&n=500&raw=a%20b", &u), 0);
    int64_t ms = 0;
    bool b = true;
    uint64_t n = 0;
    assert_int_equal(sl_url_opt_ms(u, "t", 0, &ms), 0);
    assert_int_equal(ms, 2000);
    assert_int_equal(sl_url_opt_bool(u, "b", true, &b), 0);
    assert_false(b);
    assert_int_equal(sl_url_opt_u64(u, "n", 0, 100, 1, &n), SL_EBADOPT);
    assert_non_null(strstr(sl_errmsg(), "n"));
    assert_string_equal(sl_url_opt(u, "raw"), "a b");
    assert_int_equal(sl_url_check_unused(u), 0);
    sl_url_free(u);
}

static void unused_option_is_named(void **state)
{
    (void)state;
    sl_url *u = NULL;
    assert_int_equal(sl_url_parse("mysql://h/db?max_open_conns=1&max_idel_conns=2", &u), 0);
    uint64_t n;
    assert_int_equal(sl_url_opt_u64(u, "max_open_conns", 0, 10, 1, &n), 0);
    assert_int_equal(sl_url_check_unused(u), SL_EBADOPT);
    assert_non_null(strstr(sl_errmsg(), "max_idel_conns"));
    sl_url_free(u);
}

static void malformed_and_null_are_refused(void **state)
{
    (void)state;
    const char *bad[] = {"",
                         "nohost",
                         "mysql:/h/db",
                         "my sql://h",
                         "mysql://h:0/db",
                         "mysql://h:70000/db",
                         "mysql://h/db#frag",
                         "mysql://h/%4",
                         "mysql://h/?a=1&a=2"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sl_url *u = (sl_url *)&bad; /* must be reset to NULL */
        int rc = sl_url_parse(bad[i], &u);
        if (rc != SL_EINVAL)
            fail_msg("'%s' gave %d", bad[i], rc);
        assert_null(u);
        assert_true(strlen(sl_errmsg()) > 0);
    }
    sl_url *u = NULL;
    assert_int_equal(sl_url_parse(NULL, &u), SL_EINVAL);
    assert_int_equal(sl_url_parse("x://h", NULL), SL_EINVAL);
    assert_null(sl_url_host(NULL));
    assert_int_equal(sl_url_check_unused(NULL), SL_EINVAL);
    uint64_t n;
    assert_int_equal(sl_url_opt_u64(NULL, "k", 0, 1, 0, &n), SL_EINVAL);
    sl_url_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parts_come_back_decoded),
        cmocka_unit_test(absent_parts_and_defaults),
        cmocka_unit_test(typed_options_are_validated),
        cmocka_unit_test(unused_option_is_named),
        cmocka_unit_test(malformed_and_null_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
