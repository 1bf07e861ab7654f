/*
 * bench_grpc_notify.c - the notification service's two ways in, side by
 * side on one `sluice notify serve` (embedded default: sqlite:// queue and
 * store in a scratch directory, consumers in process): Notify over gRPC
 * (sl_client_call, protobuf NoticeRequest) against POST /api/msg/product
 * over HTTP (libcurl, kept-alive connections), same notices, same client
 * threads, both durable before the answer. Information, not a target of
 * its own:
 *   ratio: grpc_notify ours=<gRPC notices/s> peer=<HTTP notices/s> ratio=<r> target=1.0
 * Knobs: SL_BENCH_CALLS (per side, default 4000), SL_BENCH_THREADS (8).
 * The sluice binary is found beside the bench directory (<build>/sluice).
 */
#include <curl/curl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/benchlib.h"
#include "sluice/client.h"

static uint64_t g_calls, g_threads;
static char g_http[128], g_grpc[160];
static _Atomic uint64_t g_uid;

/* NoticeRequest{uid=1, type=2, data=3} encoded by hand (varints and a string). */
static size_t put_varint(unsigned char *p, uint64_t v)
{
    size_t n = 0;
    do {
        p[n] = (unsigned char)(v & 0x7f);
        v >>= 7;
        if (v)
            p[n] |= 0x80;
        n++;
    } while (v);
    return n;
}

static size_t notice_req(unsigned char *p, uint64_t uid)
{
    static const char data[] = "a benchmark notice of about sixty-four bytes, padded....";
    size_t n = 0;
    p[n++] = 0x08;
    n += put_varint(p + n, uid);
    p[n++] = 0x10;
    n += put_varint(p + n, 1);
    p[n++] = 0x1a;
    n += put_varint(p + n, sizeof data - 1);
    memcpy(p + n, data, sizeof data - 1);
    return n + sizeof data - 1;
}

typedef struct side {
    sl_client *client;
    uint64_t n;
} side;

static void *grpc_worker(void *arg)
{
    side *w = arg;
    sl_call_opts co;
    sl_call_opts_init(&co);
    co.address = g_grpc;
    co.content_type = "application/protobuf";
    co.timeout_ms = 30000;
    for (uint64_t i = 0; i < w->n; i++) {
        unsigned char req[160];
        size_t len = notice_req(req, 1 + atomic_fetch_add(&g_uid, 1) % 1000);
        sl_response *r;
        if (sl_client_call(w->client, "notice", "Producer.Notify", req, len, &co, &r) != 0)
            bench_die("gRPC Notify failed: %s", sl_errmsg());
        sl_response_free(r);
    }
    return NULL;
}

static size_t sink(char *p, size_t sz, size_t n, void *ud)
{
    (void)p, (void)ud;
    return sz * n;
}

static void *http_worker(void *arg)
{
    side *w = arg;
    CURL *h = curl_easy_init();
    char url[200];
    snprintf(url, sizeof url, "%s/api/msg/product", g_http);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    for (uint64_t i = 0; i < w->n; i++) {
        char body[200];
        snprintf(body, sizeof body,
                 "uid=%llu&type=1&data=a+benchmark+notice+of+about+sixty-four+bytes,+padded....",
                 (unsigned long long)(1 + atomic_fetch_add(&g_uid, 1) % 1000));
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        long status = 0;
        if (curl_easy_perform(h) != CURLE_OK ||
            (curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status), status != 200))
            bench_die("HTTP product failed (status %ld)", status);
    }
    curl_easy_cleanup(h);
    return NULL;
}

static double run(bool grpc, sl_client *c)
{
    pthread_t t[64];
    side w[64];
    int64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < g_threads; i++) {
        w[i] = (side){c, g_calls / g_threads};
        pthread_create(&t[i], NULL, grpc ? grpc_worker : http_worker, &w[i]);
    }
    for (uint64_t i = 0; i < g_threads; i++)
        pthread_join(t[i], NULL);
    return (double)(g_calls / g_threads * g_threads) / ((double)(bench_now_ns() - t0) / 1e9);
}

int main(void)
{
    g_calls = bench_env_u64("SL_BENCH_CALLS", 4000);
    g_threads = bench_env_u64("SL_BENCH_THREADS", 8);
    if (g_threads == 0 || g_threads > 64)
        bench_die("SL_BENCH_THREADS in 1..64");
    char self[PATH_MAX], sluice[PATH_MAX + 16], dir[] = "/tmp/sl-bench-grpc-notify-XXXXXX";
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    if (sl <= 0)
        bench_die("cannot find myself");
    self[sl] = 0;
    *strrchr(self, '/') = 0; /* <build>/bench */
    snprintf(sluice, sizeof sluice, "%s/../sluice", self);
    if (!mkdtemp(dir))
        bench_die("mkdtemp");
    char out[PATH_MAX];
    snprintf(out, sizeof out, "%s/serve.out", dir);
    pid_t pid = fork();
    if (pid == 0) {
        char err[PATH_MAX];
        snprintf(err, sizeof err, "%s/serve.err", dir);
        if (chdir(dir) != 0 || !freopen(out, "w", stdout) || !freopen(err, "w", stderr))
            _exit(127);
        setenv("SLUICE_WEB_SERVER_ADDR", "127.0.0.1:0", 1);
        setenv("SLUICE_GRPC_SERVER_ADDR", "127.0.0.1:0", 1);
        setenv("SLUICE_WEB_DEBUG", "false", 1);
        setenv("SLUICE_QUEUE_URL", "sqlite://./queue.db", 1);
        setenv("SLUICE_STORE_URL", "sqlite://./notice.db", 1);
        setenv("SLUICE_LOG_DIR", "logs", 1);
        execl(sluice, sluice, "notify", "serve", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 300 && !(g_http[0] && g_grpc[0]); i++) {
        usleep(100000);
        FILE *f = fopen(out, "r");
        char line[512];
        while (f && fgets(line, sizeof line, f)) {
            char *p;
            char hostport[100];
            if ((p = strstr(line, "listening on http://")) &&
                sscanf(p + 20, "%99[^/ ]", hostport) == 1)
                snprintf(g_http, sizeof g_http, "http://%s", hostport);
            if ((p = strstr(line, "gRPC notice.Producer on ")))
                snprintf(g_grpc, sizeof g_grpc, "grpc://%.*s", (int)strcspn(p + 24, "\n"), p + 24);
        }
        if (f)
            fclose(f);
    }
    if (!g_http[0] || !g_grpc[0]) {
        kill(pid, SIGKILL);
        bench_die("sluice notify serve did not start (%s; see %s/serve.err)", sluice, dir);
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    sl_client *c;
    sl_client_opts co;
    sl_client_opts_init(&co);
    co.retries = 0;
    if (sl_client_new(&c, &co))
        bench_die("client: %s", sl_errmsg());
    double ours = run(true, c), peer = run(false, NULL);
    printf("grpc_notify: %llu notices x %llu threads per side, durable (sqlite:// queue), one "
           "server\n",
           (unsigned long long)g_calls, (unsigned long long)g_threads);
    sl_client_free(c);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "bench_grpc_notify: could not remove %s\n", dir);
    bench_ratio_line("grpc_notify", ours, peer, 1.0);
    return 0;
}
