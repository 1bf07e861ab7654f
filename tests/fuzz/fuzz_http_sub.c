/*
 * fuzz_http_sub.c - the http:// subscriber's side of the wire: what it does
 * with a request once libmicrohttpd has read it (hl_handle() in
 * src/backends/http/http_request.c, the one function the daemon calls).
 * The input is a raw HTTP request; this file splits it as the daemon does
 * (request line, "Key: value" headers, body: HTTP parsing is
 * libmicrohttpd's, not fuzzed here) and hands it to hl_handle() of a real
 * subscriber listening in this process, with live subscriptions on
 * "orders" (group "g") and "a.b", whose messages a drain thread per
 * subscription acks at once. Reached: methods and paths (POST
 * /bus/<topic>, GET /bus/<topic>/events, others), topic names, the
 * Sluice-Uuid / Sluice-Meta-* percent-decoding into a message,
 * Sluice-Attempt / Sluice-Wait-Ack / Sluice-Timeout, max_body (64 KiB),
 * the delivery to every group and the answer chosen, which must be one of
 * the documented ones. Whatever the input: no crash, leak or hang.
 *
 * No socket per input: the earlier version wrote each input to the
 * daemon (a thread per connection), about 300 inputs a second; this one
 * runs thousands. Each input returns once the drain threads have taken
 * and freed what it queued, so its mallocs and frees balance (libFuzzer
 * runs a leak scan after any input where they do not).
 */
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sluice/sluice.h>

#include "backends/http/http_listen.h"
#include "fuzz.h"

#define PREFIX "/bus"
#define MAX_BODY 65536
#define MAX_HEADERS 128

static sl_subscriber *sub;
static sl_subscription *subs[2];
static const char *const topics[2] = {"orders", "a.b"};
static hl_listener *L;
static pthread_t drainer[2];
static atomic_bool stopping;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static unsigned long done[2]; /* messages taken, read, acked and freed per subscription */

/* Ack whatever arrives on subscription i (so Sluice-Wait-Ack requests are
 * answered) after reading it all, then count it. */
static void *drain(void *arg)
{
    int i = (int)(intptr_t)arg;
    while (!atomic_load(&stopping)) {
        sl_msg *m;
        if (sl_next(subs[i], &m, 50) == 0) {
            size_t len;
            (void)sl_msg_payload(m, &len);
            (void)sl_msg_uuid(m);
            for (size_t j = 0; j < sl_msg_meta_count(m); j++) {
                const char *k, *v;
                sl_msg_meta_at(m, j, &k, &v);
            }
            sl_msg_ack(m);
            sl_msg_unref(m);
            pthread_mutex_lock(&mu);
            done[i]++;
            pthread_cond_broadcast(&cv);
            pthread_mutex_unlock(&mu);
        }
    }
    return NULL;
}

static void stop(void)
{
    atomic_store(&stopping, true);
    pthread_join(drainer[0], NULL);
    pthread_join(drainer[1], NULL);
    sl_subscriber_close(sub);
}

/* A port the kernel had free a moment ago. */
static unsigned free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    unsigned p = 0;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &al) == 0)
        p = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return p;
}

/* Split raw bytes as libmicrohttpd would hand them over: the request
 * line's method and path (the query cut off), the header lines (value
 * without the blanks around it; a line without ':' is dropped), the body
 * after the empty line. in is NUL-terminated and cut up in place. */
static void split(char *in, size_t size, hl_request *q, hl_header *h)
{
    char *end = in + size, *p = in;
    *q = (hl_request){.method = "", .url = "", .headers = h};
    char *nl = memchr(p, '\n', (size_t)(end - p));
    char *line = p;
    p = nl ? nl + 1 : end;
    if (nl)
        *nl = 0;
    line[strcspn(line, "\r")] = 0;
    char *sp = strchr(line, ' ');
    q->method = line;
    if (sp) {
        *sp = 0;
        char *url = sp + 1;
        url[strcspn(url, " ?")] = 0;
        q->url = url;
    }
    while (p < end) {
        nl = memchr(p, '\n', (size_t)(end - p));
        line = p;
        p = nl ? nl + 1 : end;
        if (nl)
            *nl = 0;
        size_t n = strlen(line);
        if (n && line[n - 1] == '\r')
            line[--n] = 0;
        if (n == 0)
            break; /* the end of the headers */
        char *colon = strchr(line, ':');
        if (!colon || colon == line || q->n_headers == MAX_HEADERS)
            continue;
        *colon = 0;
        char *v = colon + 1;
        v += strspn(v, " \t");
        for (size_t vl = strlen(v); vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t');)
            v[--vl] = 0;
        h[q->n_headers++] = (hl_header){line, v};
    }
    q->body = p < end ? p : NULL;
    q->len = (size_t)(end - p);
    for (size_t i = 0; i < q->n_headers; i++)
        if (strcasecmp(h[i].key, "Content-Length") == 0 &&
            strtoull(h[i].value, NULL, 10) > MAX_BODY)
            q->too_big = true;
    if (q->len > MAX_BODY)
        q->too_big = true;
    if (q->too_big || strcmp(q->method, "POST") != 0)
        q->body = NULL, q->len = 0; /* read and dropped by the daemon */
}

static void start(void)
{
    char url[128];
    unsigned port = 0;
    int rc = -1;
    for (int tries = 0; tries < 20 && rc != 0; tries++) {
        port = free_port();
        snprintf(url, sizeof url, "http://127.0.0.1:%u" PREFIX "?max_body=%d&queue=64", port,
                 MAX_BODY);
        rc = port ? sl_subscriber_open(&sub, url) : -1;
    }
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    o.group = "g";
    if (rc != 0 || sl_subscribe(sub, topics[0], &o, &subs[0]) != 0) {
        fprintf(stderr, "fuzz_http_sub: cannot subscribe: %s\n", sl_errmsg());
        abort();
    }
    sl_subscribe_opts_init(&o);
    if (sl_subscribe(sub, topics[1], &o, &subs[1]) != 0 ||
        pthread_create(&drainer[0], NULL, drain, (void *)(intptr_t)0) != 0 ||
        pthread_create(&drainer[1], NULL, drain, (void *)(intptr_t)1) != 0) {
        fprintf(stderr, "fuzz_http_sub: cannot subscribe: %s\n", sl_errmsg());
        abort();
    }
    if (!(L = sli_httpb_listener("127.0.0.1", (int)port)))
        abort();
    atexit(stop);
}

static void handle(char *in, size_t size)
{
    hl_header h[MAX_HEADERS];
    hl_request q;
    split(in, size, &q, h);
    unsigned long before[2];
    pthread_mutex_lock(&mu);
    memcpy(before, done, sizeof before);
    pthread_mutex_unlock(&mu);
    hl_answer a;
    hl_handle(L, &q, &a);
    if (a.sse)
        return; /* the stream itself is http_sse.c's, under the daemon */
    switch (a.status) {
    case 200:
    case 400:
    case 404:
    case 405:
    case 413:
    case 500:
    case 503:
    case 504: break;
    default:
        fprintf(stderr, "fuzz_http_sub: undocumented answer %u (%s)\n", a.status, a.why);
        abort();
    }
    if (!a.why[0])
        abort(); /* every answer says why */
    if (a.status != 200 && a.status != 504)
        return;
    /* Queued (taken, or taken and not acked within a short Sluice-Timeout):
     * wait until its drain thread has freed it (a message never delivered
     * is a bug: -timeout reports the hang). */
    for (int i = 0; i < 2; i++) {
        if (strcmp(q.url + strlen(PREFIX) + 1, topics[i]) != 0)
            continue;
        pthread_mutex_lock(&mu);
        while (done[i] == before[i])
            pthread_cond_wait(&cv, &mu);
        pthread_mutex_unlock(&mu);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv);

/* Start the subscriber and warm what it caches (the message block caches
 * of this thread and the drain threads) with a few hundred messages, so
 * that an input's mallocs and frees balance from the first one on. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    start();
    static const char *const warm[] = {
        "POST " PREFIX "/orders HTTP/1.1\r\nSluice-Meta-k: v\r\n\r\nwarm",
        "POST " PREFIX "/a.b HTTP/1.1\r\nSluice-Meta-k: v\r\n\r\nwarm",
        "POST " PREFIX "/orders HTTP/1.1\r\nSluice-Wait-Ack: 1\r\n\r\nwarm",
    };
    char buf[128];
    for (int i = 0; i < 3000; i++) { /* every thread's cache full: > 256 blocks each */
        size_t n = strlen(warm[i % 3]);
        memcpy(buf, warm[i % 3], n + 1);
        handle(buf, n);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!L)
        LLVMFuzzerInitialize(NULL, NULL); /* the replay driver does not call it */
    if (size > 128 * 1024)
        return 0;
    char *in = malloc(size + 1);
    if (!in)
        return 0;
    memcpy(in, data, size);
    in[size] = 0;
    handle(in, size);
    free(in);
    return 0;
}
