/*
 * test_notify_json.c - the notification service's hand-written JSON
 * string literals (apps/notify/http: nf_json_quote) against jansson's own
 * encoding of the same strings: the request payloads and answers are
 * written as text on the hot path, and must be byte for byte what
 * json_dumps gave before (clients and the consumers parse them).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_ascii_byte_is_quoted_as_jansson_does),
        cmocka_unit_test(utf8_and_mixed_text_is_kept),
        cmocka_unit_test(random_strings_match),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
