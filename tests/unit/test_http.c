/*
 * test_http.c - behaviour of the http:// backend that the conformance suite
 * does not cover: option checking, the wire format as a foreign client sees
 * it (raw HTTP over a socket: status codes 200/400/404/405/413/503, the
 * Sluice- headers, %-encoded metadata), metadata that is not header-safe,
 * and the fault cases: no subscriber -> the publisher retries and reports
 * failure after its timeout; a subscriber that goes down and comes back
 * mid-run -> every message acked exactly once. And the Server-Sent Events
 * stream a browser reads (GET /PREFIX/<topic>/events).
 *
 * The subscriber is the server, so no outside service is needed; each test
 * listens on a free loopback port.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "testlib.h"

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    socklen_t len = sizeof sa;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

static char url_buf[256];
static const char *url_at(int port, const char *query)
{
    snprintf(url_buf, sizeof url_buf, "http://127.0.0.1:%d/bus%s%s", port, *query ? "?" : "",
             query);
    return url_buf;
}

/* Send a raw request (head without the final blank line) and return the
 * status code of the answer. */
static int raw_request(int port, const char *head, const char *body)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    char req[4096];
    int n = snprintf(req, sizeof req,
                     "%sHost: 127.0.0.1\r\nConnection: close\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     head, strlen(body), body);
    assert_true(n > 0 && (size_t)n < sizeof req);
    assert_int_equal(write(fd, req, (size_t)n), n);
    char resp[512] = "";
    size_t got = 0;
    ssize_t r;
    while (got < sizeof resp - 1 && (r = read(fd, resp + got, sizeof resp - 1 - got)) > 0)
        got += (size_t)r;
    close(fd);
    int status = 0;
    if (sscanf(resp, "HTTP/1.%*d %d", &status) != 1)
        fail_msg("no HTTP status in answer: %s", resp);
    return status;
}

static void options_are_checked(void **state)
{
    (void)state;
    sl_publisher *p = NULL;
    sl_subscriber *s = NULL;
    assert_int_equal(sl_publisher_open(&p, "http://127.0.0.1/bus"), SL_EINVAL); /* no port */
    assert_int_equal(sl_publisher_open(&p, "http://u:pw@127.0.0.1:1/bus"), SL_EINVAL);
    assert_int_equal(sl_publisher_open(&p, "http://127.0.0.1:1?nope=1"), SL_EBADOPT);
    assert_int_equal(sl_publisher_open(&p, "http://127.0.0.1:1?timeout=soon"), SL_EBADOPT);
    /* a publish that gives up before its first attempt */
    assert_int_equal(sl_publisher_open(&p, "http://127.0.0.1:1?timeout=0"), SL_EBADOPT);
    assert_int_equal(sl_subscriber_open(&s, "http://127.0.0.1:1?listen=nocolon"), SL_EBADOPT);
    assert_int_equal(sl_subscriber_open(&s, "http://127.0.0.1:1?listen=h:99999"), SL_EBADOPT);
    assert_int_equal(sl_subscriber_open(&s, "http://127.0.0.1:1?max_body=0"), SL_EBADOPT);
    assert_null(p);
    assert_null(s);
    /* one URL serves both sides: each accepts the other's options */
    int port = free_port();
    assert_int_equal(sl_publisher_open(&p, url_at(port, "listen=127.0.0.1:1&max_body=10")), 0);
    assert_int_equal(sl_subscriber_open(&s, url_at(port, "timeout=1s&backoff=5ms")), 0);
    unsigned f = sl_subscriber_features(s);
    assert_true(f & SL_FEAT_CONSUMER_GROUPS);
    assert_false(f & SL_FEAT_PERSISTENT);
    assert_false(f & SL_FEAT_LATE_SUBSCRIBERS);
    /* a second handle on the same address with other settings is refused */
    sl_subscriber *s2 = NULL;
    assert_int_equal(sl_subscriber_open(&s2, url_at(port, "max_body=10")), SL_EBUSY);
    assert_int_equal(sl_subscriber_open(&s2, url_at(port, "")), 0);
    sl_subscriber_close(s2);
    sl_subscriber_close(s);
    sl_publisher_close(p);
}

/* A publisher timeout over the listener's longest wait (5 minutes) still
 * publishes: the wait it asks for is capped (it was refused, 400, every
 * time). */
static void long_publisher_timeout_publishes(void **state)
{
    (void)state;
    int port = free_port();
    sl_subscriber *sub = NULL;
    sl_subscription *s = NULL;
    sl_publisher *p = NULL;
    assert_int_equal(sl_subscriber_open(&sub, url_at(port, "")), 0);
    assert_int_equal(sl_subscribe(sub, "long", NULL, &s), 0);
    assert_int_equal(sl_publisher_open(&p, url_at(port, "timeout=10m")), 0);
    sl_msg *m = NULL;
    assert_int_equal(sl_msg_new(&m, "x", 1), 0);
    assert_int_equal(sl_publish(p, "long", &m, 1), 0);
    sl_msg *got = NULL;
    assert_int_equal(sl_next(s, &got, 5000), 0);
    assert_string_equal(sl_msg_uuid(got), sl_msg_uuid(m));
    sl_msg_ack(got);
    sl_msg_unref(got);
    sl_msg_unref(m);
    sl_publisher_close(p);
    sl_subscriber_close(sub);
}

/* A browser stream (GET .../events) whose client stopped reading misses
 * events instead of holding the topic's publishers back: its queue filled
 * and every publish to the topic got 503, the live subscriber nothing. */
static void stalled_browser_stream_holds_no_publisher_back(void **state)
{
    (void)state;
    int port = free_port();
    sl_subscriber *sub = NULL;
    sl_subscription *s = NULL;
    sl_publisher *p = NULL;
    assert_int_equal(sl_subscriber_open(&sub, url_at(port, "queue=8")), 0);
    assert_int_equal(sl_subscribe(sub, "hot", NULL, &s), 0);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    const char get[] = "GET /bus/hot/events HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_int_equal(write(fd, get, sizeof get - 1), (ssize_t)(sizeof get - 1));
    tl_sleep_ms(200); /* the stream is open; it is never read */
    assert_int_equal(sl_publisher_open(&p, url_at(port, "timeout=3s")), 0);
    static char big[64 * 1024];
    memset(big, 'x', sizeof big);
    for (int i = 0; i < 200; i++) { /* ~13 MB: past the socket buffers */
        sl_msg *m = NULL;
        assert_int_equal(sl_msg_new(&m, big, sizeof big), 0);
        int rc = sl_publish(p, "hot", &m, 1);
        sl_msg_unref(m);
        if (rc)
            fail_msg("publish %d: %s (%s)", i, sl_strerror(rc), sl_errmsg());
        sl_msg *got = NULL;
        assert_int_equal(sl_next(s, &got, 5000), 0);
        sl_msg_ack(got);
        sl_msg_unref(got);
    }
    close(fd);
    sl_publisher_close(p);
    sl_subscriber_close(sub);
}

static void foreign_posts_get_clear_status_codes(void **state)
{
    (void)state;
    int port = free_port();
    sl_subscriber *sub = NULL;
    assert_int_equal(sl_subscriber_open(&sub, url_at(port, "max_body=64")), 0);
    /* no subscription yet: refused, so the sender keeps the message */
    assert_int_equal(raw_request(port, "POST /bus/t1 HTTP/1.1\r\n", "x"), 503);
    sl_subscription *s = NULL;
    assert_int_equal(sl_subscribe(sub, "t1", NULL, &s), 0);
    assert_int_equal(raw_request(port, "PUT /bus/t1 HTTP/1.1\r\n", "x"), 405);
    assert_int_equal(raw_request(port, "GET /bus/t1 HTTP/1.1\r\n", ""), 404); /* not /events */
    assert_int_equal(raw_request(port, "POST /other/t1 HTTP/1.1\r\n", "x"), 404);
    assert_int_equal(raw_request(port, "POST /bus/ HTTP/1.1\r\n", "x"), 404);
    char big[100];
    memset(big, 'b', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(raw_request(port, "POST /bus/t1 HTTP/1.1\r\n", big), 413);
    assert_int_equal(raw_request(port, "POST /bus/t1 HTTP/1.1\r\nSluice-Meta-k: %zz\r\n", "x"),
                     400);
    assert_int_equal(raw_request(port, "POST /bus/t1 HTTP/1.1\r\nSluice-Attempt: -1\r\n", "x"),
                     400);
    assert_int_equal(raw_request(port, "POST /bus/t1 HTTP/1.1\r\nSluice-Uuid: a%00b\r\n", "x"),
                     400);
    /* ids go into event streams as they are: a line break forged events */
    assert_int_equal(
        raw_request(port, "POST /bus/t1 HTTP/1.1\r\nSluice-Uuid: x%0Adata: forged\r\n", "x"), 400);
    assert_int_equal(raw_request(port, "POST /bus/t1 HTTP/1.1\r\nSluice-Uuid: a%09b\r\n", "x"),
                     400);
    /* %00 in the path: not the topic before it */
    assert_int_equal(raw_request(port, "POST /bus/t1%00more HTTP/1.1\r\n", "x"), 404);
    sl_msg *m = NULL;
    assert_int_equal(sl_next(s, &m, 0), SL_ETIMEDOUT); /* none of those was taken */
    /* a well-formed foreign message, with %-encoded metadata */
    assert_int_equal(raw_request(port,
                                 "POST /bus/t1 HTTP/1.1\r\nSluice-Uuid: id%201\r\n"
                                 "Sluice-Meta-Trace%2DID: caf%C3%A9\r\nSluice-Meta-Plain: v\r\n"
                                 "Sluice-Attempt: 3\r\n",
                                 "hello"),
                     200);
    assert_int_equal(sl_next(s, &m, 5000), 0);
    assert_string_equal(sl_msg_uuid(m), "id 1");
    size_t len;
    const char *p = sl_msg_payload(m, &len);
    assert_int_equal(len, 5);
    assert_memory_equal(p, "hello", 5);
    assert_string_equal(sl_msg_meta_get(m, "trace-id"), "caf\xc3\xa9");
    assert_string_equal(sl_msg_meta_get(m, "plain"), "v");
    assert_int_equal(sl_msg_meta_count(m), 2);
    assert_int_equal(sl_msg_deliveries(m), 3);
    assert_string_equal(sl_msg_topic(m), "t1");
    sl_msg_ack(m);
    sl_msg_unref(m);
    /* our publisher maps a 413 to SL_ETOOBIG at once (no retries) */
    sl_publisher *pub = NULL;
    assert_int_equal(sl_publisher_open(&pub, url_at(port, "max_body=64&timeout=30s")), 0);
    sl_msg *bigm = NULL;
    assert_int_equal(sl_msg_new(&bigm, big, sizeof big), 0);
    int64_t t0 = tl_now_ms();
    assert_int_equal(sl_publish(pub, "t1", &bigm, 1), SL_ETOOBIG);
    assert_true(tl_now_ms() - t0 < 10000);
    sl_msg_unref(bigm);
    sl_publisher_close(pub);
    /* without any Sluice- header: a fresh uuid, no metadata */
    assert_int_equal(raw_request(port, "POST /bus/t1 HTTP/1.1\r\n", "plain"), 200);
    assert_int_equal(sl_next(s, &m, 5000), 0);
    assert_int_equal(strlen(sl_msg_uuid(m)), SL_UUID_LEN);
    assert_int_equal(sl_msg_meta_count(m), 0);
    sl_msg_ack(m);
    sl_msg_unref(m);
    sl_subscriber_close(sub);
}

static void metadata_that_is_not_header_safe_survives(void **state)
{
    (void)state;
    int port = free_port();
    sl_subscriber *sub = NULL;
    sl_publisher *pub = NULL;
    assert_int_equal(sl_subscriber_open(&sub, url_at(port, "")), 0);
    sl_subscription *s = NULL;
    assert_int_equal(sl_subscribe(sub, "a topic/with slash", NULL, &s), 0);
    assert_int_equal(sl_publisher_open(&pub, url_at(port, "")), 0);
    sl_msg *m = NULL;
    assert_int_equal(sl_msg_new_with_uuid(&m, "uuid with spaces: and %", "\0\1\2", 3), 0);
    const char *kv[][2] = {{"UpperCase", "MiXeD"},
                           {"sp ace", " lead and trail "},
                           {"k=v&x", "tab\there\nnl\r"},
                           {"ключ", "значение ✓"},
                           {"pct%", "100%"},
                           {"empty", ""}};
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
        assert_int_equal(sl_msg_meta_set(m, kv[i][0], kv[i][1]), 0);
    assert_int_equal(sl_publish(pub, "a topic/with slash", &m, 1), 0);
    sl_msg *got = NULL;
    assert_int_equal(sl_next(s, &got, 5000), 0);
    assert_true(sl_msg_equal(m, got));
    assert_string_equal(sl_msg_meta_get(got, "UpperCase"), "MiXeD");
    assert_string_equal(sl_msg_meta_get(got, "k=v&x"), "tab\there\nnl\r");
    assert_string_equal(sl_msg_meta_get(got, "ключ"), "значение ✓");
    sl_msg_ack(got);
    sl_msg_unref(got);
    sl_msg_unref(m);
    sl_publisher_close(pub);
    sl_subscriber_close(sub);
}

/* Nobody listening, then a listener without a subscription on the topic:
 * either way the publisher retries until its timeout and reports it. */
static void publisher_retries_then_reports_failure(void **state)
{
    (void)state;
    int port = free_port();
    sl_publisher *pub = NULL;
    assert_int_equal(sl_publisher_open(&pub, url_at(port, "timeout=600ms&backoff=10ms")), 0);
    sl_msg *m = NULL;
    assert_int_equal(sl_msg_new(&m, "x", 1), 0);
    for (int round = 0; round < 2; round++) {
        sl_subscriber *sub = NULL;
        if (round == 1)
            assert_int_equal(sl_subscriber_open(&sub, url_at(port, "")), 0);
        size_t published = 99;
        sl_publish_opts o;
        sl_publish_opts_init(&o);
        o.published = &published;
        int64_t t0 = tl_now_ms();
        assert_int_equal(sl_publish_ex(pub, "nobody", &m, 1, &o), SL_EUNAVAIL);
        int64_t took = tl_now_ms() - t0;
        assert_true(took >= 590 && took < 15000);
        assert_int_equal(published, 0);
        assert_non_null(strstr(sl_errmsg(), round ? "HTTP 503" : "127.0.0.1"));
        sl_subscriber_close(sub);
    }
    sl_msg_unref(m);
    sl_publisher_close(pub);
}

typedef struct bg_pub {
    const char *url;
    size_t n;
    int rc;
    size_t published;
} bg_pub;

static void *publish_waiting(void *arg)
{
    bg_pub *b = arg;
    sl_publisher *pub = NULL;
    b->rc = sl_publisher_open(&pub, b->url);
    for (size_t i = 0; b->rc == 0 && i < b->n; i++) {
        char payload[32];
        snprintf(payload, sizeof payload, "%zu", i);
        sl_msg *m = NULL;
        sl_msg_new(&m, payload, strlen(payload));
        sl_publish_opts o;
        sl_publish_opts_init(&o);
        o.flags = SL_PUBLISH_WAIT_ACK;
        o.timeout_ms = 60000;
        b->rc = sl_publish_ex(pub, "jobs", &m, 1, &o);
        sl_msg_unref(m);
        if (b->rc == 0)
            b->published++;
    }
    sl_publisher_close(pub);
    return NULL;
}

/* The subscriber goes down with a message in hand and comes back: the
 * waiting publisher is answered 503, retries (connection refused while it
 * is down) and every message ends up acked exactly once. */
static void subscriber_down_and_back_acks_each_once(void **state)
{
    (void)state;
    size_t n = tl_scaled(60, 20);
    int port = free_port();
    char url[256];
    snprintf(url, sizeof url, "%s", url_at(port, "backoff=10ms"));
    unsigned *acks = calloc(n, sizeof *acks);
    assert_non_null(acks);
    sl_subscribe_opts so;
    sl_subscribe_opts_init(&so);
    so.group = "workers";
    sl_subscriber *sub = NULL;
    sl_subscription *s = NULL;
    assert_int_equal(sl_subscriber_open(&sub, url), 0);
    assert_int_equal(sl_subscribe(sub, "jobs", &so, &s), 0);
    bg_pub b = {.url = url, .n = n};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, publish_waiting, &b), 0);
    size_t done = 0;
    unsigned redelivered = 0;
    for (int phase = 0; done < n; phase++) {
        assert_true(phase < 4);
        sl_msg *m = NULL;
        while (done < n) {
            assert_int_equal(sl_next(s, &m, 20000), 0);
            char payload[32] = "";
            size_t len;
            const void *p = sl_msg_payload(m, &len);
            memcpy(payload, p, len < 31 ? len : 31);
            size_t i = strtoul(payload, NULL, 10);
            assert_true(i < n);
            if (sl_msg_deliveries(m) > 1)
                redelivered++;
            if (phase == 0 && done == n / 2)
                break; /* keep m unacked and go down */
            assert_int_equal(sl_msg_ack(m), 0);
            acks[i]++;
            done++;
            sl_msg_unref(m);
        }
        if (done < n) {
            assert_int_equal(sl_subscriber_close(sub), 0); /* down, m unacked */
            assert_int_equal(sl_msg_ack(m), 0);            /* too late: harmless */
            sl_msg_unref(m);
            tl_sleep_ms(200); /* the publisher meets a closed port meanwhile */
            assert_int_equal(sl_subscriber_open(&sub, url), 0);
            assert_int_equal(sl_subscribe(sub, "jobs", &so, &s), 0);
        }
    }
    pthread_join(t, NULL);
    assert_int_equal(b.rc, 0);
    assert_int_equal(b.published, n);
    for (size_t i = 0; i < n; i++)
        if (acks[i] != 1)
            fail_msg("message %zu acked %u times", i, acks[i]);
    assert_int_equal(redelivered, 1); /* the one in hand at the crash, sent again */
    sl_msg *none = NULL;
    assert_int_equal(sl_next(s, &none, 200), SL_ETIMEDOUT);
    sl_subscriber_close(sub);
    free(acks);
}

/* Read from fd until want appears in what was read (or 10 s pass). */
static bool read_until(int fd, char *buf, size_t cap, size_t *len, const char *want)
{
    int64_t deadline = tl_now_ms() + 10000;
    while (!strstr(buf, want) && tl_now_ms() < deadline && *len < cap - 1) {
        ssize_t r = read(fd, buf + *len, cap - 1 - *len);
        if (r <= 0)
            return false;
        *len += (size_t)r;
        buf[*len] = '\0';
    }
    return strstr(buf, want) != NULL;
}

static void sse_stream_gets_each_message_as_an_event(void **state)
{
    (void)state;
    int port = free_port();
    sl_subscriber *sub = NULL;
    sl_publisher *pub = NULL;
    assert_int_equal(sl_subscriber_open(&sub, url_at(port, "")), 0);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    const char *req =
        "GET /bus/news/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n";
    assert_int_equal(write(fd, req, strlen(req)), (ssize_t)strlen(req));
    static char buf[65536];
    size_t len = 0;
    buf[0] = '\0';
    assert_true(read_until(fd, buf, sizeof buf, &len, ": stream open"));
    assert_non_null(strstr(buf, "HTTP/1.1 200"));
    assert_non_null(strstr(buf, "text/event-stream"));
    /* the stream makes the topic live: publishing to it succeeds */
    assert_int_equal(sl_publisher_open(&pub, url_at(port, "timeout=5s")), 0);
    sl_msg *m[2];
    assert_int_equal(sl_msg_new_with_uuid(&m[0], "ev-1", "line1\nline2", 11), 0);
    assert_int_equal(sl_msg_new_with_uuid(&m[1], "ev-2", "caf\xc3\xa9", 5), 0);
    assert_int_equal(sl_publish(pub, "news", m, 2), 0);
    assert_true(read_until(fd, buf, sizeof buf, &len, "id: ev-2"));
    assert_true(read_until(fd, buf, sizeof buf, &len, "data: caf\xc3\xa9\n\n"));
    assert_non_null(strstr(buf, "id: ev-1\nevent: message\ndata: line1\ndata: line2\n\n"));
    assert_true(strstr(buf, "id: ev-1") < strstr(buf, "id: ev-2"));
    /* the browser goes away: the topic has no subscription left */
    close(fd);
    int64_t t0 = tl_now_ms();
    int rc;
    while ((rc = raw_request(port, "POST /bus/news HTTP/1.1\r\n", "x")) == 200 &&
           tl_now_ms() - t0 < 10000)
        tl_sleep_ms(50);
    assert_int_equal(rc, 503);
    sl_msg_unref(m[0]);
    sl_msg_unref(m[1]);
    sl_publisher_close(pub);
    sl_subscriber_close(sub);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(options_are_checked),
        cmocka_unit_test(foreign_posts_get_clear_status_codes),
        cmocka_unit_test(long_publisher_timeout_publishes),
        cmocka_unit_test(stalled_browser_stream_holds_no_publisher_back),
        cmocka_unit_test(metadata_that_is_not_header_safe_survives),
        cmocka_unit_test(publisher_retries_then_reports_failure),
        cmocka_unit_test(subscriber_down_and_back_acks_each_once),
        cmocka_unit_test(sse_stream_gets_each_message_as_an_event),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
