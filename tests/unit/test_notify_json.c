/*
 * test_notify_json.c - the notification service's JSON written as text
 * (apps/notify/json_text.c: nf_json_quote, nf_text_json) against jansson's
 * own encoding of the same values: the request payloads, answers and
 * live-update events are written directly on the hot paths, and must be
 * byte for byte what json_dumps gave before (clients, the consumers and
 * the other servers parse them). And the consumer's scan of its own
 * payload form (nf_notice_text_scan) against jansson's parse of the same
 * text: it may refuse what jansson takes, never read it differently.
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
/* nf_int_text and nf_text_int write what printf's %lld does, at the ends
 * of the range and around each power of ten. */
static void integers_as_printf_writes_them(void **state)
{
    (void)state;
    int64_t v[96];
    size_t n = 0;
    v[n++] = 0;
    v[n++] = INT64_MIN;
    v[n++] = INT64_MAX;
    for (int64_t p = 1; n + 4 <= 96 && p <= INT64_MAX / 10; p *= 10) {
        v[n++] = p;
        v[n++] = p - 1;
        v[n++] = -p;
        v[n++] = -(p + 1);
    }
    for (size_t i = 0; i < n; i++) {
        char want[32], got[NF_INT_TEXT];
        snprintf(want, sizeof want, "%lld", (long long)v[i]);
        assert_int_equal(nf_int_text(got, v[i]), strlen(want));
        assert_string_equal(got, want);
        nf_text t = {0};
        nf_text_str(&t, "x");
        nf_text_int(&t, v[i]);
        assert_string_equal(t.p + 1, want);
        nf_text_free(&t);
    }
}

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
    value_same_as_jansson(json_pack("{s:s, s:i, s:s, s:s, s:s, s:I, s:I}", "order_sn", "01a2-\"x\"",
                                    "type", 3, "data", "h\xc3\xa9\tllo\n\x01", "create_time",
                                    "2026-12-06 10:00:00", "kind", "notice", "uid", (json_int_t)-42,
                                    "notification_count", (json_int_t)9007199254740993LL));
    value_same_as_jansson(json_pack("{s:I, s:s, s:b, s:b, s:n}", "changed", (json_int_t)0, "kind",
                                    "read", "t", 1, "f", 0, "none"));
    value_same_as_jansson(
        json_pack("[{s:i}, [], {}, [i, s, f, f, f]]", "a", 1, 2, "\"q\"", 1.5, -0.25, 1e300));
    value_same_as_jansson(json_pack("{s:{s:[i,i]}, s:s}", "nested", "x", 1, 2, "k\"e\\y\x02", "v"));
    value_same_as_jansson(json_object());
    value_same_as_jansson(json_array());
    value_same_as_jansson(json_integer(INT64_MIN));
    value_same_as_jansson(json_real(3.0));
}

/* What the scan gives for payload p (len n) must be what jansson decodes
 * from it, and jansson must see exactly those four keys. */
static void scan_agrees_with_jansson(const char *p, size_t n, const nf_notice_text *t)
{
    json_error_t e;
    json_t *j = json_loadb(p, n, 0, &e);
    if (!json_is_object(j))
        fail_msg("scan accepted %.*s, jansson did not: %s", (int)n, p, e.text);
    json_t *data = json_object_get(j, "data"), *time = json_object_get(j, "time");
    assert_int_equal(json_object_size(j), 4);
    assert_true(json_is_integer(json_object_get(j, "uid")) &&
                json_is_integer(json_object_get(j, "type")));
    assert_true(json_integer_value(json_object_get(j, "uid")) == t->uid);
    assert_true(json_integer_value(json_object_get(j, "type")) == t->type);
    assert_true(json_is_string(data) && json_is_string(time));
    assert_int_equal(json_string_length(data), t->data_len);
    assert_memory_equal(json_string_value(data), t->data, t->data_len);
    assert_int_equal(json_string_length(time), t->time_len);
    assert_memory_equal(json_string_value(time), t->time, t->time_len);
    json_decref(j);
}

static void notice_payloads_scan_as_jansson_reads_them(void **state)
{
    (void)state;
    nf_notice_text t;
    /* the routes' own form (apps/notify/http/routes.c) */
    const char *ok =
        "{\"uid\":42,\"type\":3,\"data\":\"bench notice 7\",\"time\":\"2026-12-07 01:02:03\"}";
    assert_true(nf_notice_text_scan(ok, strlen(ok), &t));
    assert_true(t.uid == 42 && t.type == 3);
    assert_int_equal(t.data_len, 14);
    assert_memory_equal(t.data, "bench notice 7", 14);
    scan_agrees_with_jansson(ok, strlen(ok), &t);
    const char *edge = "{\"uid\":0,\"type\":999999999999999999,\"data\":\"\",\"time\":\"\"}";
    assert_true(nf_notice_text_scan(edge, strlen(edge), &t));
    scan_agrees_with_jansson(edge, strlen(edge), &t);
    /* anything else is left to jansson */
    static const char *const other[] = {
        "{\"uid\":42,\"type\":3,\"data\":\"a\\\"b\",\"time\":\"\"}",    /* an escape */
        "{\"uid\":42,\"type\":3,\"data\":\"h\xc3\xa9\",\"time\":\"\"}", /* UTF-8 */
        "{\"uid\":42,\"type\":3,\"data\":\"a\tb\",\"time\":\"\"}",      /* a control byte */
        "{\"uid\": 42,\"type\":3,\"data\":\"x\",\"time\":\"\"}",        /* spacing */
        "{\"type\":3,\"uid\":42,\"data\":\"x\",\"time\":\"\"}",         /* order */
        "{\"uid\":42,\"type\":3,\"data\":\"x\"}",                       /* no time */
        "{\"uid\":42,\"type\":3,\"data\":\"x\",\"time\":\"\",\"k\":1}", /* more keys */
        "{\"uid\":-1,\"type\":3,\"data\":\"x\",\"time\":\"\"}",         /* negative */
        "{\"uid\":042,\"type\":3,\"data\":\"x\",\"time\":\"\"}",        /* leading zero */
        "{\"uid\":1234567890123456789,\"type\":3,\"data\":\"x\",\"time\":\"\"}", /* 19 digits */
        "{\"uid\":9999999999999999999,\"type\":3,\"data\":\"x\",\"time\":\"\"}", /* no overflow */
        "{\"uid\":4.5,\"type\":3,\"data\":\"x\",\"time\":\"\"}",                 /* a real */
        "{\"uid\":42,\"type\":3,\"data\":\"x\",\"time\":\"\"} ",                 /* trailing */
        "{\"uid\":42,\"type\":3,\"data\":\"x\",\"time\":\"",                     /* cut */
        "",
    };
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++)
        if (nf_notice_text_scan(other[i], strlen(other[i]), &t))
            fail_msg("scan took %s", other[i]);
    assert_false(nf_notice_text_scan(NULL, 0, &t));
    /* a NUL inside: jansson refuses it, so must the scan */
    const char nul[] = "{\"uid\":1,\"type\":1,\"data\":\"a\0b\",\"time\":\"\"}";
    assert_false(nf_notice_text_scan(nul, sizeof nul - 1, &t));
}

/* Random payloads near the routes' form (bytes changed, dropped, doubled):
 * whatever the scan accepts, jansson reads the same; and the unchanged
 * ones are accepted (the fast path is taken). */
static void mutated_payloads_never_disagree(void **state)
{
    (void)state;
    srand(7);
    char base[256], buf[300];
    nf_notice_text t;
    size_t accepted = 0;
    for (int round = 0; round < 50000; round++) {
        char data[40];
        size_t dn = (size_t)(rand() % 39);
        for (size_t i = 0; i < dn; i++) {
            char c = (char)(0x20 + rand() % 0x5f);
            data[i] = c == '"' || c == '\\' ? 'q' : c;
        }
        data[dn] = 0;
        int n =
            snprintf(base, sizeof base,
                     "{\"uid\":%d,\"type\":%d,\"data\":\"%s\",\"time\":\"2026-12-07 0%d:00:00\"}",
                     rand() % 100000, rand() % 10, data, rand() % 10);
        assert_true(nf_notice_text_scan(base, (size_t)n, &t));
        scan_agrees_with_jansson(base, (size_t)n, &t);
        size_t m = (size_t)n;
        memcpy(buf, base, m);
        for (int k = 1 + rand() % 3; k > 0; k--) {
            size_t at = (size_t)rand() % m;
            switch (rand() % 3) {
            case 0: buf[at] = (char)(rand() % 256); break;
            case 1:
                memmove(buf + at, buf + at + 1, m - at - 1);
                m--;
                break;
            default:
                if (m + 1 < sizeof buf) {
                    memmove(buf + at + 1, buf + at, m - at);
                    m++;
                }
            }
            if (m < 2)
                break;
        }
        if (nf_notice_text_scan(buf, m, &t)) {
            scan_agrees_with_jansson(buf, m, &t);
            accepted++;
        }
    }
    assert_true(accepted > 1000); /* many mutations (in data, digits) stay in the form */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_ascii_byte_is_quoted_as_jansson_does),
        cmocka_unit_test(utf8_and_mixed_text_is_kept),
        cmocka_unit_test(random_strings_match),
        cmocka_unit_test(events_and_values_match),
        cmocka_unit_test(integers_as_printf_writes_them),
        cmocka_unit_test(notice_payloads_scan_as_jansson_reads_them),
        cmocka_unit_test(mutated_payloads_never_disagree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
