/*
 * fuzz_notify_http.c - the notification service's HTTP API (the real
 * apps/notify code: libmicrohttpd, its request checks, form, multipart and
 * JSON bodies, query strings, every route, the deferred publish and the
 * admin routes): a raw HTTP request from the fuzzer goes to the service
 * running in this process on loopback, queue mem://, store sqlite:// and
 * logs in a temporary directory, consumers in process (so accepted notices
 * reach the store and the SSE hub). The daemon runs in the fuzzer's thread
 * (web.threads 0) and each input is one connection handed to it
 * (fz_mhd_exchange), so thousands of inputs run a second. Whatever the
 * input, the service must answer or close, never crash, leak or hang.
 */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "app.h"
#include "fuzz.h"
#include "http/http.h"
#include "http_io.h"

static nf_app app; /* large (metrics) */
static nf_server *srv;
static nf_consumers *cons;
static nf_listener *lis;
static struct MHD_Daemon *daemon_;
static char dir[64];

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st, (void)flag, (void)f;
    return remove(p);
}

static void stop(void)
{
    nf_server_stop(srv);
    nf_consumers_stop(cons);
    nf_listener_stop(lis);
    nf_hub_free(app.hub);
    app.hub = NULL;
    nf_app_close(&app);
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void start(void)
{
    /* in memory when the system has it: the store's fsyncs are not what is fuzzed */
    snprintf(dir, sizeof dir, "%s/sl-fuzz-notify-XXXXXX",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    if (!mkdtemp(dir))
        abort();
    nf_config *c = &app.cfg;
    nf_config_defaults(c);
    snprintf(c->server_addr, sizeof c->server_addr, "127.0.0.1:0");
    snprintf(c->queue_url, sizeof c->queue_url, "mem://fuzz-notify");
    snprintf(c->store_url, sizeof c->store_url, "sqlite://%s/notice.db", dir);
    snprintf(c->log_dir, sizeof c->log_dir, "%s/logs", dir);
    snprintf(c->log_level, sizeof c->log_level, "error");
    snprintf(c->admin_token, sizeof c->admin_token, "fuzz-admin");
    c->threads = 0; /* the daemon runs in this thread: fz_mhd_exchange */
    c->max_body = 64 * 1024;
    c->consumers_in_process = true;
    app.fault_uid = -1;
    const char *step = "app";
    int rc = nf_app_open(&app, false);
    if (!rc && (step = "hub", rc = nf_hub_new(&app.hub, &app.metrics)) == 0 &&
        (step = "listener", rc = nf_listener_start(&app, &lis)) == 0 &&
        (step = "consumers", rc = nf_consumers_start(&app, 3, &cons)) == 0)
        step = "server", rc = nf_server_start(&app, &srv);
    if (rc) {
        fprintf(stderr, "fuzz_notify_http: cannot start the service (%s): %d %s\n", step, rc,
                sl_errmsg());
        abort();
    }
    daemon_ = nf_server_daemon(srv);
    atexit(stop);
}

/* Wait (a bounded while) until the in-process consumers have applied,
 * failed or parked every notice published so far, so that an input
 * returns with its work done: its mallocs and frees then balance, and
 * libFuzzer runs its leak scan only after inputs that really leave
 * something behind (it rescans after each unbalanced input, and gives up
 * leak detection altogether after a thousand of them). */
static void settle(void)
{
    nf_metrics *m = &app.metrics;
    for (int i = 0; i < 20000; i++) { /* at most ~2 s */
        bool idle = true;
        for (int t = 0; t < 2; t++)
            idle = idle && atomic_load(&m->processed[t]) + atomic_load(&m->failed[t]) +
                                   atomic_load(&m->parked[t]) >=
                               atomic_load(&m->published[t]);
        if (idle)
            return;
        struct timespec ts = {0, 100 * 1000};
        nanosleep(&ts, NULL);
    }
}

static void exchange(const uint8_t *data, size_t size)
{
    char resp[512];
    if (fz_mhd_exchange(daemon_, data, size, resp, sizeof resp) < 0)
        abort(); /* the daemon refused the connection: the harness is broken */
    settle();
}

int LLVMFuzzerInitialize(int *argc, char ***argv);

/* Start the service and warm what it builds on first use (the store's
 * statements and pages, route and metric tables, the message block
 * caches) with the requests of the seed corpus' kinds, so that inputs do
 * not pay for it and their mallocs and frees balance from the first on. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    start();
    static const char *const warm[] = {
        "POST /api/msg/product HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Content-Length: 37\r\n\r\n{\"uid\": 7, \"type\": 2, \"data\": \"warm\"}",
        "POST /api/msg/product HTTP/1.1\r\nHost: x\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 22\r\n\r\n"
        "uid=7&type=2&data=warm",
        "GET /api/msg/list?uid=7&page=0&size=10 HTTP/1.1\r\nHost: x\r\n\r\n",
        "POST /api/msg/read?uid=7&id=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        "GET /api/user/info?uid=7 HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /widget.js HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /api/admin/failed?limit=5 HTTP/1.1\r\nHost: x\r\nX-Admin-Token: fuzz-admin\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    };
    for (int round = 0; round < 50; round++)
        for (size_t i = 0; i < sizeof warm / sizeof warm[0]; i++)
            exchange((const uint8_t *)warm[i], strlen(warm[i]));
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!daemon_)
        LLVMFuzzerInitialize(NULL, NULL); /* the replay driver does not call it */
    if (size > 128 * 1024)
        return 0;
    exchange(data, size);
    return 0;
}
