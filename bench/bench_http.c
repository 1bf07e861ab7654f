/*
 * bench_http.c - the http:// broker: one publisher thread sl_publish()es
 * 64-byte messages (one POST each, keep-alive) to a subscriber in the same
 * process whose consumer thread sl_next()s and acks them; against the bare
 * peer: libcurl POSTing the same 64 bytes on one kept-alive easy handle to a
 * bare libmicrohttpd server (the same daemon flags as the backend: a thread
 * per connection) whose handler copies the body into a locked queue that a
 * consumer thread pops. Same run, alternating, best of reps. Ends with
 *   ratio: http_pubsub ours=<msg/s> peer=<msg/s> ratio=<r> target=0.7
 * Knobs: SL_BENCH_MESSAGES (per side, default 20000), SL_BENCH_REPS (3).
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/benchlib.h"
#include "sluice/pubsub.h"
#include "sluice/error.h"

#define SIZE 64

static uint64_t g_n;

/* ---- ours ---- */

typedef struct consumer {
    sl_subscription *s;
    uint64_t n;
} consumer;

static void *ours_consume(void *arg)
{
    consumer *c = arg;
    for (uint64_t i = 0; i < c->n; i++) {
        sl_msg *m = NULL;
        if (sl_next(c->s, &m, 30000) != 0)
            bench_die("ours: next: %s", sl_errmsg());
        size_t len;
        const void *p = sl_msg_payload(m, &len);
        bench_check_seq(p, len, SIZE, i);
        sl_msg_ack(m);
        sl_msg_unref(m);
    }
    return NULL;
}

static double run_ours(const char *url)
{
    sl_subscriber *sub;
    sl_subscription *s;
    sl_publisher *pub;
    if (sl_subscriber_open(&sub, url) || sl_subscribe(sub, "bench", NULL, &s) ||
        sl_publisher_open(&pub, url))
        bench_die("ours: %s", sl_errmsg());
    consumer c = {s, g_n};
    pthread_t t;
    unsigned char buf[SIZE];
    int64_t t0 = bench_now_ns();
    pthread_create(&t, NULL, ours_consume, &c);
    for (uint64_t i = 0; i < g_n; i++) {
        bench_fill_seq(buf, SIZE, i);
        sl_msg *m;
        if (sl_msg_new(&m, buf, SIZE) || sl_publish(pub, "bench", &m, 1))
            bench_die("ours: publish: %s", sl_errmsg());
        sl_msg_unref(m);
    }
    pthread_join(t, NULL);
    double secs = (double)(bench_now_ns() - t0) / 1e9;
    sl_publisher_close(pub);
    sl_subscriber_close(sub);
    return (double)g_n / secs;
}

/* ---- peer: bare libcurl -> bare libmicrohttpd ---- */

typedef struct item {
    struct item *next;
    size_t len;
    unsigned char data[];
} item;

static pthread_mutex_t q_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t q_cond = PTHREAD_COND_INITIALIZER;
static item *q_head, *q_tail;

typedef struct req {
    unsigned char buf[4096];
    size_t len;
} req;

static enum MHD_Result peer_access(void *cls, struct MHD_Connection *conn, const char *url,
                                   const char *method, const char *version, const char *data,
                                   size_t *size, void **con_cls)
{
    (void)cls, (void)url, (void)method, (void)version;
    req *r = *con_cls;
    if (!r) {
        *con_cls = calloc(1, sizeof *r);
        return *con_cls ? MHD_YES : MHD_NO;
    }
    if (*size) {
        size_t n = *size < sizeof r->buf - r->len ? *size : sizeof r->buf - r->len;
        memcpy(r->buf + r->len, data, n);
        r->len += n;
        *size = 0;
        return MHD_YES;
    }
    item *it = malloc(sizeof *it + r->len);
    if (!it)
        return MHD_NO;
    it->next = NULL;
    it->len = r->len;
    memcpy(it->data, r->buf, r->len);
    pthread_mutex_lock(&q_mu);
    if (q_tail)
        q_tail->next = it;
    else
        q_head = it;
    q_tail = it;
    pthread_cond_signal(&q_cond);
    pthread_mutex_unlock(&q_mu);
    static const char ok[] = "taken\n";
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(sizeof ok - 1, (void *)ok, MHD_RESPMEM_PERSISTENT);
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return ret;
}

static void peer_done(void *cls, struct MHD_Connection *conn, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    (void)cls, (void)conn, (void)toe;
    free(*con_cls);
    *con_cls = NULL;
}

static void *peer_consume(void *arg)
{
    (void)arg;
    for (uint64_t i = 0; i < g_n; i++) {
        pthread_mutex_lock(&q_mu);
        while (!q_head)
            pthread_cond_wait(&q_cond, &q_mu);
        item *it = q_head;
        q_head = it->next;
        if (!q_head)
            q_tail = NULL;
        pthread_mutex_unlock(&q_mu);
        bench_check_seq(it->data, it->len, SIZE, i);
        free(it);
    }
    return NULL;
}

static size_t sink(char *p, size_t sz, size_t n, void *ud)
{
    (void)p, (void)ud;
    return sz * n;
}

static double run_peer(const char *url)
{
    CURL *h = curl_easy_init();
    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/octet-stream");
    hdrs = curl_slist_append(hdrs, "Expect:");
    unsigned char buf[SIZE];
    pthread_t t;
    int64_t t0 = bench_now_ns();
    pthread_create(&t, NULL, peer_consume, NULL);
    for (uint64_t i = 0; i < g_n; i++) {
        bench_fill_seq(buf, SIZE, i);
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, buf);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)SIZE);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink);
        curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
        long status = 0;
        if (curl_easy_perform(h) != CURLE_OK ||
            curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK || status != 200)
            bench_die("peer: POST failed (HTTP %ld)", status);
    }
    pthread_join(t, NULL);
    double secs = (double)(bench_now_ns() - t0) / 1e9;
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    return (double)g_n / secs;
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) ||
        getsockname(fd, (struct sockaddr *)&sa, &len))
        bench_die("no free port");
    close(fd);
    return ntohs(sa.sin_port);
}

int main(void)
{
    g_n = bench_env_u64("SL_BENCH_MESSAGES", 20000);
    uint64_t reps = bench_env_u64("SL_BENCH_REPS", 3);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
            MHD_USE_ITC,
        0, NULL, NULL, peer_access, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
        MHD_OPTION_NOTIFY_COMPLETED, peer_done, NULL, MHD_OPTION_END);
    if (!d)
        bench_die("peer: cannot start libmicrohttpd");
    char peer_url[64], our_url[64];
    snprintf(peer_url, sizeof peer_url, "http://127.0.0.1:%u/bench",
             MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT)->port);
    snprintf(our_url, sizeof our_url, "http://127.0.0.1:%d", free_port());
    double best_ours = 0, best_peer = 0;
    for (uint64_t r = 0; r < reps; r++) { /* alternate, best of reps */
        double x = run_ours(our_url);
        best_ours = x > best_ours ? x : best_ours;
        x = run_peer(peer_url);
        best_peer = x > best_peer ? x : best_peer;
    }
    MHD_stop_daemon(d);
    printf("http_pubsub: %llu messages of %d B, one publisher, one consumer, keep-alive\n",
           (unsigned long long)g_n, SIZE);
    bench_ratio_line("http_pubsub", best_ours, best_peer, 0.7);
    return 0;
}
