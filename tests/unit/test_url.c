/*
 * test_url.c - the strict URL parser (src/core/url.c): the accepted shapes,
 * a long list of malformed inputs that must be rejected with a message,
 * the typed option getters and the detection of unused options.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/url.h"
#include "testlib.h"

static sli_url *parse_ok(const char *s)
{
    sli_url *u = NULL;
    int rc = sli_url_parse(s, &u);
    if (rc)
        fail_msg("'%s' rejected: %s", s, sl_errmsg());
    assert_non_null(u);
    return u;
}

static void parses_full_url_with_user_password_host_port_path_query(void **state)
{
    (void)state;
    sli_url *u = parse_ok("amqp://guest:s3cret@broker.local:5672/vhost/x?heartbeat=10s&tls=true");
    assert_string_equal(u->scheme, "amqp");
    assert_string_equal(u->user, "guest");
    assert_string_equal(u->password, "s3cret");
    assert_string_equal(u->host, "broker.local");
    assert_int_equal(u->port, 5672);
    assert_string_equal(u->path, "/vhost/x");
    assert_int_equal(u->nopts, 2);
    assert_string_equal(u->opts[0].key, "heartbeat");
    assert_string_equal(u->opts[0].val, "10s");
    assert_string_equal(u->opts[1].key, "tls");
    assert_string_equal(u->raw,
                        "amqp://guest:s3cret@broker.local:5672/vhost/x?heartbeat=10s&tls=true");
    sli_url_free(u);
}

static void parses_minimal_and_optional_parts(void **state)
{
    (void)state;
    sli_url *u = parse_ok("mem://");
    assert_string_equal(u->scheme, "mem");
    assert_string_equal(u->host, "");
    assert_null(u->user);
    assert_null(u->password);
    assert_int_equal(u->port, 0);
    assert_string_equal(u->path, "");
    assert_int_equal(u->nopts, 0);
    sli_url_free(u);

    u = parse_ok("mem://bus");
    assert_string_equal(u->host, "bus");
    sli_url_free(u);

    u = parse_ok("sqlite:///var/lib/x.db");
    assert_string_equal(u->host, "");
    assert_string_equal(u->path, "/var/lib/x.db");
    sli_url_free(u);

    u = parse_ok("redis://user@h");
    assert_string_equal(u->user, "user");
    assert_null(u->password);
    sli_url_free(u);

    u = parse_ok("redis://:pw@h:1");
    assert_string_equal(u->user, "");
    assert_string_equal(u->password, "pw");
    assert_int_equal(u->port, 1);
    sli_url_free(u);

    u = parse_ok("x+y.z-1://h:65535?");
    assert_string_equal(u->scheme, "x+y.z-1");
    assert_int_equal(u->port, 65535);
    assert_int_equal(u->nopts, 0);
    sli_url_free(u);

    u = parse_ok("mem://h?k=");
    assert_int_equal(u->nopts, 1);
    assert_string_equal(u->opts[0].val, "");
    sli_url_free(u);
}

static void parses_ipv6_hosts(void **state)
{
    (void)state;
    sli_url *u = parse_ok("nats://[::1]:4222/");
    assert_string_equal(u->host, "::1");
    assert_int_equal(u->port, 4222);
    assert_string_equal(u->path, "/");
    sli_url_free(u);
    u = parse_ok("nats://[fe80::1:2]");
    assert_string_equal(u->host, "fe80::1:2");
    assert_int_equal(u->port, 0);
    sli_url_free(u);
    u = parse_ok("nats://[::ffff:127.0.0.1]:1");
    assert_string_equal(u->host, "::ffff:127.0.0.1");
    sli_url_free(u);
}

static void percent_decodes_user_password_path_and_query(void **state)
{
    (void)state;
    sli_url *u = parse_ok("pg://us%40er:p%3Ass%2Fw@h/db%20name?app%5Fname=a%26b%3Dc&x=%E2%9C%93");
    assert_string_equal(u->user, "us@er");
    assert_string_equal(u->password, "p:ss/w");
    assert_string_equal(u->path, "/db name");
    assert_string_equal(u->opts[0].key, "app_name");
    assert_string_equal(u->opts[0].val, "a&b=c");
    assert_string_equal(u->opts[1].val, "\xe2\x9c\x93");
    sli_url_free(u);
    u = parse_ok("mem://h?k=%2f%2F");
    assert_string_equal(u->opts[0].val, "//");
    sli_url_free(u);
}

static void rejects(const char *s, const char *detail)
{
    sli_url *u = (sli_url *)1;
    int rc = sli_url_parse(s, &u);
    if (rc != SL_EINVAL)
        fail_msg("'%s' accepted (rc %d), expected SL_EINVAL", s, rc);
    assert_null(u);
    const char *msg = sl_errmsg();
    assert_true(msg[0] != '\0');
    if (detail && !strstr(msg, detail))
        fail_msg("'%s': message '%s' does not mention '%s'", s, msg, detail);
}

static void rejects_malformed_urls_with_a_message(void **state)
{
    (void)state;
    rejects("", "empty");
    rejects("mem", "scheme");
    rejects("mem:/x", "scheme");
    rejects("mem:x", "scheme");
    rejects("://host", "empty scheme");
    rejects("MEM://x", "lower-case");
    rejects("mEm://x", "scheme");
    rejects("1mem://x", "lower-case");
    rejects("me_m://x", "scheme");
    rejects("mem://a b", "space");
    rejects(" mem://a", "space");
    rejects("mem://a\tb", NULL);
    rejects("mem://a\nb", NULL);
    rejects("mem://a\x7f", NULL);
    rejects("mem://a\xc3\xa9", "non-ASCII");
    rejects("mem://a#frag", "fragment");
    rejects("mem://a?x=1#f", "fragment");
    rejects("mem://a/%zz", "escape");
    rejects("mem://a/%4", "escape");
    rejects("mem://a/%", "escape");
    rejects("mem://a/b%00c", "%00");
    rejects("mem://a?k=%00", "%00");
    rejects("mem://u%0@a", "escape");
    rejects("mem://a:", "port");
    rejects("mem://a:0", "port");
    rejects("mem://a:65536", "port");
    rejects("mem://a:99999999999999999999", "port");
    rejects("mem://a:-1", "port");
    rejects("mem://a:12x", "port");
    rejects("mem://a:1:2", "port");
    rejects("mem://[::1", "]");
    rejects("mem://[]", "IPv6");
    rejects("mem://[::g]", "IPv6");
    rejects("mem://[::1]x", "after");
    rejects("mem://[::1]:", "port");
    rejects("mem://a?x=1&x=2", "twice");
    rejects("mem://a?=1", "empty option name");
    rejects("mem://a?x=1&", "trailing");
    rejects("mem://a?&x=1", "stray");
    rejects("mem://a?x=1&&y=2", "stray");
    rejects("mem://a?x", "'x'");
    rejects("mem://a?x=1&y", "'y'");
    rejects("mem://a?x=1?y=2", "second '?'");
    rejects("mem://a?x=<b>", "not allowed");
    rejects("mem://a\"b", "not allowed");
    rejects("mem://a/b\\c", "not allowed");
    rejects("mem://us er@a", NULL);
    rejects("mem://u<@a", "not allowed");
    rejects(NULL, "NULL");
}

static void rejects_over_long_url(void **state)
{
    (void)state;
    char *s = malloc(SLI_URL_MAX + 16);
    assert_non_null(s);
    strcpy(s, "mem://h/");
    memset(s + 8, 'a', SLI_URL_MAX - 8);
    s[SLI_URL_MAX] = '\0'; /* exactly the maximum: fine */
    sli_url *u = parse_ok(s);
    sli_url_free(u);
    s[SLI_URL_MAX] = 'a';
    s[SLI_URL_MAX + 1] = '\0';
    rejects(s, "longer");
    free(s);
    assert_int_equal(sli_url_parse("mem://", NULL), SL_EINVAL);
}

static void typed_getters_read_and_validate_options(void **state)
{
    (void)state;
    sli_url *u =
        parse_ok("x://h?b1=true&b2=0&b3=yes&b4=off&bad=maybe&n=42&big=18446744073709551615"
                 "&neg=-1&nn=12x&d1=250ms&d2=30s&d3=5m&d4=1h&d5=77&d6=3d&d7=&e=normal&e2=fast"
                 "&over=99999999999999999h&hours=2562047788015h&years=876001h&century=876000h");
    bool b;
    assert_int_equal(sli_url_opt_bool(u, "b1", false, &b), 0);
    assert_true(b);
    assert_int_equal(sli_url_opt_bool(u, "b2", true, &b), 0);
    assert_false(b);
    assert_int_equal(sli_url_opt_bool(u, "b3", false, &b), 0);
    assert_true(b);
    assert_int_equal(sli_url_opt_bool(u, "b4", true, &b), 0);
    assert_false(b);
    assert_int_equal(sli_url_opt_bool(u, "absent", true, &b), 0);
    assert_true(b);
    assert_int_equal(sli_url_opt_bool(u, "bad", false, &b), SL_EBADOPT);
    assert_non_null(strstr(sl_errmsg(), "bad=maybe"));

    uint64_t n;
    assert_int_equal(sli_url_opt_u64(u, "n", 1, 100, 7, &n), 0);
    assert_int_equal(n, 42);
    assert_int_equal(sli_url_opt_u64(u, "missing", 1, 100, 7, &n), 0);
    assert_int_equal(n, 7);
    assert_int_equal(sli_url_opt_u64(u, "big", 0, UINT64_MAX, 0, &n), 0);
    assert_true(n == UINT64_MAX);
    assert_int_equal(sli_url_opt_u64(u, "n", 50, 100, 7, &n), SL_EBADOPT);
    assert_non_null(strstr(sl_errmsg(), "range"));
    assert_int_equal(sli_url_opt_u64(u, "neg", 0, 100, 7, &n), SL_EBADOPT);
    assert_int_equal(sli_url_opt_u64(u, "nn", 0, 100, 7, &n), SL_EBADOPT);
    assert_non_null(strstr(sl_errmsg(), "nn=12x"));

    int64_t ms;
    assert_int_equal(sli_url_opt_ms(u, "d1", 0, &ms), 0);
    assert_int_equal(ms, 250);
    assert_int_equal(sli_url_opt_ms(u, "d2", 0, &ms), 0);
    assert_int_equal(ms, 30000);
    assert_int_equal(sli_url_opt_ms(u, "d3", 0, &ms), 0);
    assert_int_equal(ms, 300000);
    assert_int_equal(sli_url_opt_ms(u, "d4", 0, &ms), 0);
    assert_int_equal(ms, 3600000);
    assert_int_equal(sli_url_opt_ms(u, "d5", 0, &ms), 0);
    assert_int_equal(ms, 77);
    assert_int_equal(sli_url_opt_ms(u, "dx", 123, &ms), 0);
    assert_int_equal(ms, 123);
    assert_int_equal(sli_url_opt_ms(u, "d6", 0, &ms), SL_EBADOPT);
    assert_non_null(strstr(sl_errmsg(), "unit"));
    assert_int_equal(sli_url_opt_ms(u, "d7", 0, &ms), SL_EBADOPT);
    assert_int_equal(sli_url_opt_ms(u, "over", 0, &ms), SL_EBADOPT);
    /* bounded as milliseconds (100 years), not as a count: now + it and
       twice it stay within int64_t */
    assert_int_equal(sli_url_opt_ms(u, "hours", 0, &ms), SL_EBADOPT);
    assert_non_null(strstr(sl_errmsg(), "too large"));
    assert_int_equal(sli_url_opt_ms(u, "years", 0, &ms), SL_EBADOPT);
    assert_int_equal(sli_url_opt_ms(u, "century", 0, &ms), 0);
    assert_true(ms == 876000LL * 3600000);

    int e;
    assert_int_equal(sli_url_opt_enum(u, "e", "full|normal|off", 0, &e), 0);
    assert_int_equal(e, 1);
    assert_int_equal(sli_url_opt_enum(u, "ex", "full|normal|off", 2, &e), 0);
    assert_int_equal(e, 2);
    assert_int_equal(sli_url_opt_enum(u, "e2", "full|normal|off", 0, &e), SL_EBADOPT);
    assert_non_null(strstr(sl_errmsg(), "full|normal|off"));
    /* a prefix of a choice is not the choice */
    sli_url *v = parse_ok("x://h?e=norm&f=offf");
    assert_int_equal(sli_url_opt_enum(v, "e", "full|normal|off", 0, &e), SL_EBADOPT);
    assert_int_equal(sli_url_opt_enum(v, "f", "full|normal|off", 0, &e), SL_EBADOPT);
    sli_url_free(v);
    sli_url_free(u);
}

static void unused_options_are_reported_by_name(void **state)
{
    (void)state;
    sli_url *u = parse_ok("mem://h?known=1&typo=2");
    assert_non_null(sli_url_opt(u, "known"));
    assert_null(sli_url_opt(u, "absent"));
    assert_int_equal(sli_url_check_unused(u), SL_EBADOPT);
    assert_non_null(strstr(sl_errmsg(), "'typo'"));
    assert_non_null(strstr(sl_errmsg(), "mem://"));
    assert_string_equal(sli_url_opt(u, "typo"), "2");
    assert_int_equal(sli_url_check_unused(u), 0);
    sli_url_free(u);
    u = parse_ok("mem://h");
    assert_int_equal(sli_url_check_unused(u), 0);
    sli_url_free(u);
    sli_url_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parses_full_url_with_user_password_host_port_path_query),
        cmocka_unit_test(parses_minimal_and_optional_parts),
        cmocka_unit_test(parses_ipv6_hosts),
        cmocka_unit_test(percent_decodes_user_password_path_and_query),
        cmocka_unit_test(rejects_malformed_urls_with_a_message),
        cmocka_unit_test(rejects_over_long_url),
        cmocka_unit_test(typed_getters_read_and_validate_options),
        cmocka_unit_test(unused_options_are_reported_by_name),
    };
    return cmocka_run_group_tests_name("url", tests, NULL, NULL);
}
