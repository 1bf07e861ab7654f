/*
 * test_notify_json.c - the notification service's JSON written as text
 * (apps/notify/json_text.c: nf_json_quote, nf_text_json) against jansson's
 * own encoding of the same values: the request payloads, answers and
 * live-update events are written directly on the hot paths, and must be
 * byte for byte what json_dumps gave before (clients, the consumers and
 * the other servers parse them).
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_text.h"
#include "testlib.h"

/* nf_json_quote(s) must equal json_dumps(json_string(s)) */
static void same_as_jansson(const char *s)
{
    json_t *j = json_string(s);
    assert_non_null(j); /* s is valid UTF-8 */
    char *want = json_dumps(j, JSON_ENCODE_ANY);
    char *got = nf_json_quote(s);
    assert_non_null(want);
    assert_non_null(got);
    if (strcmp(want, got))
        fail_msg("quoting %s: got %s, jansson %s", s, got, want);
    free(want);
    free(got);
    json_decref(j);
}

static void every_ascii_byte_is_quoted_as_jansson_does(void **state)
{
    (void)state;
    for (int c = 1; c < 0x80; c++) {
        char s[4] = {'a', (char)c, 'z', 0};
        same_as_jansson(s);
    }
    same_as_jansson("");
}

static void utf8_and_mixed_text_is_kept(void **state)
{
    (void)state;
    static const char *const cases[] = {
        "h\xc3\xa9llo w\xc3\xb6rld",          /* 2-byte sequences */
        "\xe2\x80\xa8 line sep \xe2\x80\xa9", /* U+2028/2029: not escaped by jansson either */
        "\xf0\x9f\x94\x94 bell",              /* 4-byte sequence */
        "tab\there \"quoted\" back\\slash /slash\r\n\x01\x1f\x7f",
        "<script>alert('x')</script>&amp;",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        same_as_jansson(cases[i]);
}

static void random_strings_match(void **state)
{
    (void)state;
    srand(42);
    char s[64];
    for (int round = 0; round < 20000; round++) {
        size_t n = (size_t)(rand() % 63);
        for (size_t i = 0; i < n; i++)
            s[i] = (char)(1 + rand() % 0x7f); /* ASCII, controls included */
        s[n] = 0;
        same_as_jansson(s);
    }
}

/* nf_text_json(v) must equal json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) */
static void value_same_as_jansson(json_t *v)
{
    assert_non_null(v);
    char *want = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    nf_text t = {0};
    nf_text_json(&t, v);
    char *got = nf_text_take(&t);
    assert_non_null(want);
    assert_non_null(got);
    if (strcmp(want, got))
        fail_msg("got %s, jansson %s", got, want);
    free(want);
    free(got);
    json_decref(v);
}

static void events_and_values_match(void **state)
{
    (void)state;
    /* a notice event as the consumer and the emitter build it */
    value_same_as_jansson(json_pack("{s:s, s:i, s:s, s:s, s:s, s:I, s:I}", "order_sn", "01a2-\"x\"", "type", 3,
                                    "data", "h\xc3\xa9\tllo\n\x01", "create_time", "2026-12-06 10:00:00", "kind",
                                    "notice", "uid", (json_int_t)-42, "notification_count",
                                    (json_int_t)9007199254740993LL));
    value_same_as_jansson(json_pack("{s:I, s:s, s:b, s:b, s:n}", "changed", (json_int_t)0, "kind", "read", "t",
                                    1, "f", 0, "none"));
    value_same_as_jansson(json_pack("[{s:i}, [], {}, [i, s, f, f, f]]", "a", 1, 2, "\"q\"", 1.5, -0.25, 1e300));
    value_same_as_jansson(json_pack("{s:{s:[i,i]}, s:s}", "nested", "x", 1, 2, "k\"e\\y\x02", "v"));
    value_same_as_jansson(json_object());
    value_same_as_jansson(json_array());
    value_same_as_jansson(json_integer(INT64_MIN));
    value_same_as_jansson(json_real(3.0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_ascii_byte_is_quoted_as_jansson_does),
        cmocka_unit_test(utf8_and_mixed_text_is_kept),
        cmocka_unit_test(random_strings_match),
        cmocka_unit_test(events_and_values_match),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
