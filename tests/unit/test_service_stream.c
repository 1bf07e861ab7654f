/*
 * test_service_stream.c - streaming calls over HTTP between sl_service and
 * sl_client on loopback (by address, no registry): how a refused stream is
 * answered, closing, and the client's limits on what it buffers.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sluice/client.h"
#include "sluice/service.h"
#include "sluice/service_json.h"
#include "testlib.h"

static atomic_bool g_refused_ran; /* T.Refused's handler ran (it must not) */
static atomic_bool g_release;     /* lets T.Idle's handler end */
static atomic_int g_flood_sent;   /* messages T.Flood sent so far */
static atomic_bool g_flood_done;  /* T.Flood's handler returned */
#define FLOOD_N 100000            /* T.Flood's messages: ~50 MB */
#define BIG_LINE (100 * 1024)     /* T.Big's second message */
#define CLIENT_MAX_RESPONSE (64 * 1024)

/* The wrapper refuses T.Refused before its handler runs, as an auth wrapper does. */
static int refuse(sl_call *c, void *user)
{
    (void)user;
    if (strcmp(sl_call_endpoint(c), "T.Refused") == 0) {
        sl_call_error(c, 403, "not for you");
        return SL_EDENIED;
    }
    return sl_call_next(c);
}

static int refused(sl_call *c, void *user)
{
    (void)user;
    atomic_store(&g_refused_ran, true);
    return sl_call_send(c, "{\"secret\":1}", 12);
}

static int denies(sl_call *c, void *user)
{
    (void)c, (void)user;
    return SL_EDENIED; /* before sending anything: the call's answer is 403 */
}

static int empty(sl_call *c, void *user)
{
    (void)c, (void)user;
    return 0;
}

static int one_then_fail(sl_call *c, void *user)
{
    (void)user;
    int rc = sl_call_send(c, "{\"n\":1}", 7);
    return rc ? rc : sl_call_error(c, 500, "broke after the first message");
}

static int idle(sl_call *c, void *user)
{
    (void)user;
    int rc = sl_call_send(c, "{\"n\":1}", 7);
    for (int i = 0; rc == 0 && i < 1000 && !atomic_load(&g_release); i++)
        tl_sleep_ms(10); /* sends nothing for up to 10 s */
    return rc ? rc : sl_call_send(c, "{\"n\":2}", 7);
}

static int big(sl_call *c, void *user)
{
    (void)user;
    int rc = sl_call_send(c, "{\"n\":1}", 7);
    char *m = malloc(BIG_LINE);
    if (rc == 0 && m) {
        memset(m, 'x', BIG_LINE);
        m[0] = m[BIG_LINE - 1] = '"';
        rc = sl_call_send(c, m, BIG_LINE);
    }
    free(m);
    return rc;
}

static int flood(sl_call *c, void *user)
{
    (void)user;
    char m[500];
    memset(m, ' ', sizeof m);
    int rc = 0;
    for (int i = 0; rc == 0 && i < FLOOD_N; i++) {
        int n = snprintf(m, sizeof m, "{\"i\":%d}", i);
        m[n] = ' '; /* padded to 500 bytes */
        if ((rc = sl_call_send(c, m, sizeof m)) == 0)
            atomic_fetch_add(&g_flood_sent, 1);
    }
    atomic_store(&g_flood_done, true);
    return rc;
}

static sl_service *start_service(void)
{
    sl_service_opts o;
    sl_service_opts_init(&o);
    o.name = "strm-test";
    o.address = "127.0.0.1:0";
    o.registry = "none";
    o.drain_timeout_ms = 5000;
    sl_service *s;
    assert_int_equal(sl_service_new(&s, &o), 0);
    assert_int_equal(sl_service_handle_stream(s, "T.Refused", refused, NULL), 0);
    assert_int_equal(sl_service_handle_stream(s, "T.Denies", denies, NULL), 0);
    assert_int_equal(sl_service_handle_stream(s, "T.Empty", empty, NULL), 0);
    assert_int_equal(sl_service_handle_stream(s, "T.OneThenFail", one_then_fail, NULL), 0);
    assert_int_equal(sl_service_handle_stream(s, "T.Idle", idle, NULL), 0);
    assert_int_equal(sl_service_handle_stream(s, "T.Big", big, NULL), 0);
    assert_int_equal(sl_service_handle_stream(s, "T.Flood", flood, NULL), 0);
    assert_int_equal(sl_service_wrap(s, refuse, NULL), 0);
    assert_int_equal(sl_service_start(s), 0);
    return s;
}

static sl_client *client(void)
{
    sl_client_opts o;
    sl_client_opts_init(&o);
    o.registry = "sqlite:///nonexistent-dir-for-tests/registry.db"; /* never used: by address */
    o.retries = 0;
    o.max_response = CLIENT_MAX_RESPONSE;
    sl_client *c;
    assert_int_equal(sl_client_new(&c, &o), 0);
    return c;
}

static sl_stream *open_stream(sl_client *c, sl_service *s, const char *ep)
{
    sl_call_opts co;
    sl_call_opts_init(&co);
    co.address = sl_service_address(s);
    sl_stream *st;
    assert_int_equal(sl_client_stream(c, "strm-test", ep, "{}", 2, &co, &st), 0);
    return st;
}

/* The HTTP status a raw POST of {} to /<path> is answered with (the body into body). */
static int http_status(sl_service *s, const char *path, char *body, size_t cap)
{
    int port = atoi(strrchr(sl_service_address(s), ':') + 1);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    char req[256];
    int n = snprintf(req, sizeof req,
                     "POST /%s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     "Content-Length: 2\r\nConnection: close\r\n\r\n{}",
                     path);
    assert_int_equal(write(fd, req, (size_t)n), n);
    char resp[4096];
    size_t got = 0;
    ssize_t r;
    while (got < sizeof resp - 1 && (r = read(fd, resp + got, sizeof resp - 1 - got)) > 0)
        got += (size_t)r;
    close(fd);
    resp[got] = 0;
    int status = 0;
    assert_int_equal(sscanf(resp, "HTTP/1.1 %d", &status), 1);
    const char *b = strstr(resp, "\r\n\r\n");
    snprintf(body, cap, "%s", b ? b + 4 : "");
    return status;
}

static void a_stream_refused_before_its_first_message_is_answered_with_the_error(void **state)
{
    (void)state;
    atomic_store(&g_refused_ran, false);
    sl_service *s = start_service();
    char body[1024];
    /* on the wire: the error's status and go-micro's error JSON, not 200 */
    assert_int_equal(http_status(s, "T/Refused", body, sizeof body), 403);
    json_t *e = json_loads(body, 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(e, "code")), 403);
    assert_string_equal(json_string_value(json_object_get(e, "detail")), "not for you");
    json_decref(e);
    assert_int_equal(http_status(s, "T/Denies", body, sizeof body), 403);
    assert_int_equal(http_status(s, "T/Empty", body, sizeof body), 200);
    assert_false(atomic_load(&g_refused_ran));

    /* the client reports the code unary calls get, not the error as a message */
    sl_client *c = client();
    const char *eps[] = {"T.Refused", "T.Denies"};
    for (int i = 0; i < 2; i++) {
        sl_stream *st = open_stream(c, s, eps[i]);
        char *m = NULL;
        size_t n;
        assert_int_equal(sl_stream_next(st, &m, &n, 5000), SL_EDENIED);
        assert_null(m);
        assert_non_null(strstr(sl_errmsg(), "403"));
        assert_int_equal(sl_stream_next(st, &m, &n, 5000), SL_EDENIED); /* it stays */
        sl_stream_close(st);
    }
    sl_stream *st = open_stream(c, s, "T.Nope"); /* 404 before any stream started */
    char *m = NULL;
    size_t n;
    assert_int_equal(sl_stream_next(st, &m, &n, 5000), SL_ENOENT);
    assert_null(m);
    sl_stream_close(st);
    st = open_stream(c, s, "T.Empty");
    assert_int_equal(sl_stream_next(st, &m, &n, 5000), SL_ECLOSED);
    sl_stream_close(st);
    /* a stream that failed after its first message: 200 went out, the error is the last
       message */
    st = open_stream(c, s, "T.OneThenFail");
    assert_int_equal(sl_stream_next(st, &m, &n, 5000), 0);
    assert_string_equal(m, "{\"n\":1}");
    free(m);
    assert_int_equal(sl_stream_next(st, &m, &n, 5000), 0);
    assert_non_null(strstr(m, "broke after the first message"));
    free(m);
    assert_int_equal(sl_stream_next(st, &m, &n, 5000), SL_ECLOSED);
    sl_stream_close(st);
    assert_false(atomic_load(&g_refused_ran));
    sl_client_free(c);
    sl_service_free(s);
}

static void closing_a_stream_does_not_wait_for_the_server(void **state)
{
    (void)state;
    atomic_store(&g_release, false);
    sl_service *s = start_service();
    sl_client *c = client();
    sl_stream *st = open_stream(c, s, "T.Idle");
    char *m;
    size_t n;
    assert_int_equal(sl_stream_next(st, &m, &n, 5000), 0);
    free(m);
    /* the server sends nothing now: close must not wait for it */
    int64_t t0 = tl_now_ms();
    sl_stream_close(st);
    int64_t took = tl_now_ms() - t0;
    atomic_store(&g_release, true);
    assert_in_range(took, 0, 300);
    sl_client_free(c);
    sl_service_free(s);
}

static void a_stream_line_over_max_response_fails_the_stream(void **state)
{
    (void)state;
    sl_service *s = start_service();
    sl_client *c = client();
    sl_stream *st = open_stream(c, s, "T.Big");
    char *m;
    size_t n;
    assert_int_equal(sl_stream_next(st, &m, &n, 5000), 0);
    assert_string_equal(m, "{\"n\":1}");
    free(m);
    m = NULL;
    assert_int_equal(sl_stream_next(st, &m, &n, 5000), SL_ETOOBIG);
    assert_null(m);
    assert_int_equal(sl_stream_next(st, &m, &n, 5000), SL_ETOOBIG);
    sl_stream_close(st);
    sl_client_free(c);
    sl_service_free(s);
}

static void a_reader_that_falls_behind_holds_the_sender_back(void **state)
{
    (void)state;
    atomic_store(&g_flood_sent, 0);
    atomic_store(&g_flood_done, false);
    sl_service *s = start_service();
    sl_client *c = client();
    sl_stream *st = open_stream(c, s, "T.Flood");
    char *m;
    size_t n;
    assert_int_equal(sl_stream_next(st, &m, &n, 5000), 0);
    free(m);
    /* not reading: the client stops taking data, so the handler blocks once the
       buffers between (the service's queue, the sockets') are full */
    int last = -1;
    for (int64_t end = tl_now_ms() + 20000; tl_now_ms() < end && !atomic_load(&g_flood_done);) {
        int now = atomic_load(&g_flood_sent);
        if (now == last)
            break;
        last = now;
        tl_sleep_ms(500);
    }
    assert_false(atomic_load(&g_flood_done));
    assert_in_range(atomic_load(&g_flood_sent), 1, FLOOD_N / 2);
    /* reading on resumes the transfer, nothing lost or out of order */
    for (int i = 1; i < 3000; i++) {
        assert_int_equal(sl_stream_next(st, &m, &n, 5000), 0);
        assert_int_equal(n, 500);
        int got = -1;
        assert_int_equal(sscanf(m, "{\"i\":%d}", &got), 1);
        assert_int_equal(got, i);
        free(m);
    }
    sl_stream_close(st);
    sl_client_free(c);
    sl_service_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_stream_refused_before_its_first_message_is_answered_with_the_error),
        cmocka_unit_test(closing_a_stream_does_not_wait_for_the_server),
        cmocka_unit_test(a_stream_line_over_max_response_fails_the_stream),
        cmocka_unit_test(a_reader_that_falls_behind_holds_the_sender_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
