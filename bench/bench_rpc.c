/*
 * bench_rpc.c - RPC over HTTP/JSON: sl_client_call -> sl_service on
 * loopback (64-byte JSON echo, 4 client threads with keep-alive) against a
 * bare libmicrohttpd JSON echo server (same thread pool, same JSON parse
 * and encode) driven by bare libcurl with the same connections, in the
 * same run. Prints p99 latency of both, then
 *   ratio: rpc_http_json ours=<calls/s> peer=<calls/s> ratio=<r> target=0.7
 * Knobs: SL_BENCH_CALLS (per side, default 40000), SL_BENCH_THREADS (4),
 * SL_BENCH_REPS (3, best of).
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/benchlib.h"
#include "sluice/client.h"
#include "sluice/service.h"
#include "sluice/service_json.h"

#define SERVER_THREADS 4

static char g_req[65];
static uint64_t g_calls, g_threads;

/* ---- ours ---- */
static int echo(sl_call *c, void *user)
{
    (void)user;
    return sl_call_reply_json(c, json_incref(sl_call_json(c)));
}

typedef struct side {
    const char *addr;
    sl_client *client; /* ours */
    int64_t *lat;
    uint64_t n;
} side;

static void *ours_worker(void *arg)
{
    side *w = arg;
    sl_call_opts co;
    sl_call_opts_init(&co);
    co.address = w->addr;
    for (uint64_t i = 0; i < w->n; i++) {
        int64_t t0 = bench_now_ns();
        sl_response *r;
        if (sl_client_call(w->client, "bench", "Bench.Echo", g_req, 64, &co, &r) != 0)
            bench_die("ours: call failed: %s", sl_errmsg());
        size_t len;
        sl_response_body(r, &len);
        if (len != 64)
            bench_die("ours: answer of %zu bytes", len);
        sl_response_free(r);
        w->lat[i] = bench_now_ns() - t0;
    }
    return NULL;
}

/* ---- peer: bare libmicrohttpd + bare libcurl ---- */
typedef struct pbuf {
    char *b;
    size_t len, cap;
} pbuf;

static enum MHD_Result peer_access(void *cls, struct MHD_Connection *conn, const char *url,
                                   const char *method, const char *version, const char *up,
                                   size_t *up_size, void **con_cls)
{
    (void)cls, (void)url, (void)method, (void)version;
    pbuf *p = *con_cls;
    if (!p) {
        *con_cls = calloc(1, sizeof(pbuf));
        return *con_cls ? MHD_YES : MHD_NO;
    }
    if (*up_size) {
        if (p->len + *up_size > p->cap) {
            p->cap = (p->len + *up_size) * 2;
            p->b = realloc(p->b, p->cap);
        }
        memcpy(p->b + p->len, up, *up_size);
        p->len += *up_size;
        *up_size = 0;
        return MHD_YES;
    }
    json_t *j = json_loadb(p->b, p->len, JSON_DECODE_ANY, NULL);
    char *out = j ? json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(j);
    if (!out)
        return MHD_NO;
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(out), out, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result ret = MHD_queue_response(conn, 200, r);
    MHD_destroy_response(r);
    return ret;
}

static void peer_done(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode t)
{
    (void)cls, (void)c, (void)t;
    pbuf *p = *con_cls;
    if (p) {
        free(p->b);
        free(p);
    }
    *con_cls = NULL;
}

static size_t sink(char *p, size_t sz, size_t n, void *ud)
{
    (void)p;
    *(size_t *)ud += sz * n;
    return sz * n;
}

static void *peer_worker(void *arg)
{
    side *w = arg;
    CURL *h = curl_easy_init();
    char url[128];
    snprintf(url, sizeof url, "http://%s/", w->addr);
    struct curl_slist *hd = curl_slist_append(NULL, "Content-Type: application/json");
    hd = curl_slist_append(hd, "Micro-Endpoint: Bench.Echo");
    hd = curl_slist_append(hd, "Expect:");
    for (uint64_t i = 0; i < w->n; i++) {
        int64_t t0 = bench_now_ns();
        size_t got = 0;
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, g_req);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, 64L);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &got);
        if (curl_easy_perform(h) != CURLE_OK || got != 64)
            bench_die("peer: call failed");
        w->lat[i] = bench_now_ns() - t0;
    }
    curl_slist_free_all(hd);
    curl_easy_cleanup(h);
    return NULL;
}

static double run(bool ours, const char *addr, sl_client *c, int64_t *p99_us)
{
    pthread_t t[64];
    side w[64];
    int64_t *lat = malloc(g_calls * sizeof *lat);
    uint64_t per = g_calls / g_threads;
    int64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < g_threads; i++) {
        w[i] = (side){addr, c, lat + i * per, per};
        pthread_create(&t[i], NULL, ours ? ours_worker : peer_worker, &w[i]);
    }
    for (uint64_t i = 0; i < g_threads; i++)
        pthread_join(t[i], NULL);
    double secs = (double)(bench_now_ns() - t0) / 1e9;
    *p99_us = bench_percentile(lat, per * g_threads, 99) / 1000;
    free(lat);
    return (double)(per * g_threads) / secs;
}

int main(void)
{
    g_calls = bench_env_u64("SL_BENCH_CALLS", 40000);
    g_threads = bench_env_u64("SL_BENCH_THREADS", 4);
    uint64_t reps = bench_env_u64("SL_BENCH_REPS", 3);
    if (g_threads > 64)
        bench_die("SL_BENCH_THREADS at most 64");
    /* a 64-byte JSON document */
    snprintf(g_req, sizeof g_req, "{\"name\":\"%s\"}",
             "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz0");
    if (strlen(g_req) != 64)
        bench_die("request is %zu bytes", strlen(g_req));
    curl_global_init(CURL_GLOBAL_DEFAULT);

    sl_service_opts o;
    sl_service_opts_init(&o);
    o.name = "bench";
    o.address = "127.0.0.1:0";
    o.registry = "none";
    o.threads = SERVER_THREADS;
    sl_service *s;
    if (sl_service_new(&s, &o) || sl_service_handle(s, "Bench.Echo", echo, NULL) ||
        sl_service_start(s))
        bench_die("service: %s", sl_errmsg());
    sl_client *c;
    sl_client_opts co;
    sl_client_opts_init(&co);
    co.retries = 0;
    if (sl_client_new(&c, &co))
        bench_die("client: %s", sl_errmsg());

    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_TURBO, 0, NULL, NULL, peer_access,
        NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_THREAD_POOL_SIZE,
        (unsigned)SERVER_THREADS, MHD_OPTION_NOTIFY_COMPLETED, peer_done, NULL, MHD_OPTION_END);
    if (!d)
        bench_die("peer: cannot start libmicrohttpd");
    char peer_addr[64];
    snprintf(peer_addr, sizeof peer_addr, "127.0.0.1:%u",
             MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT)->port);

    double best_ours = 0, best_peer = 0;
    int64_t p99_ours = 0, p99_peer = 0;
    for (uint64_t r = 0; r < reps; r++) { /* alternate, best of reps */
        int64_t p;
        double x = run(true, sl_service_address(s), c, &p);
        if (x > best_ours)
            best_ours = x, p99_ours = p;
        x = run(false, peer_addr, NULL, &p);
        if (x > best_peer)
            best_peer = x, p99_peer = p;
    }
    printf("rpc_http_json: %llu calls x %llu threads, 64 B JSON echo, keep-alive\n",
           (unsigned long long)g_calls, (unsigned long long)g_threads);
    printf("p99 latency: ours=%lldus peer=%lldus\n", (long long)p99_ours, (long long)p99_peer);
    sl_client_free(c);
    sl_service_free(s);
    MHD_stop_daemon(d);
    bench_ratio_line("rpc_http_json", best_ours, best_peer, 0.7);
    return 0;
}
