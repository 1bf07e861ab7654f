/*
 * fuzz_http_sub.c - the http:// subscriber's side of the wire (the real
 * src/backends/http code under libmicrohttpd): a raw HTTP request from the
 * fuzzer goes to a subscriber listening on loopback in this process, with
 * live subscriptions on "orders" (group "g") and "a.b", whose messages a
 * drain thread per subscription acks at once (one thread taking turns
 * waited 20 ms on the idle one per message: the queue filled and POSTs
 * waited for room, tens of ms an input). Reached: the POST /bus/<topic> route, topic names,
 * the Sluice-Uuid / Sluice-Meta-* percent-decoding into a message,
 * Sluice-Attempt / Sluice-Wait-Ack / Sluice-Timeout, max_body (64 KiB),
 * the Server-Sent Events route, other methods and paths. Whatever the
 * input, the subscriber must answer or close, never crash, leak or hang
 * (libFuzzer's -timeout). Each input is one connection handed to the
 * subscriber's daemon over a socketpair (fz_mhd_exchange; the daemon keeps
 * its thread per connection, as requests block for room or acks).
 */
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sluice/sluice.h>

#include "backends/http/http_listen.h"
#include "fuzz.h"
#include "http_io.h"

static sl_subscriber *sub;
static sl_subscription *subs[2];
static unsigned port;
static struct MHD_Daemon *daemon_;
static pthread_t drainer[2];
static atomic_bool stopping;

/* Ack whatever arrives on subscription *arg, so Sluice-Wait-Ack requests
 * are answered. */
static void *drain(void *arg)
{
    sl_subscription *s = *(sl_subscription **)arg;
    while (!atomic_load(&stopping)) {
        sl_msg *m;
        if (sl_next(s, &m, 50) == 0) {
            size_t len;
            (void)sl_msg_payload(m, &len);
            for (size_t j = 0; j < sl_msg_meta_count(m); j++) {
                const char *k, *v;
                sl_msg_meta_at(m, j, &k, &v);
            }
            sl_msg_ack(m);
            sl_msg_unref(m);
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

static void start(void)
{
    char url[128];
    int rc = -1;
    for (int tries = 0; tries < 20 && rc != 0; tries++) {
        port = free_port();
        snprintf(url, sizeof url, "http://127.0.0.1:%u/bus?max_body=65536&queue=64", port);
        rc = port ? sl_subscriber_open(&sub, url) : -1;
    }
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    o.group = "g";
    if (rc != 0 || sl_subscribe(sub, "orders", &o, &subs[0]) != 0) {
        fprintf(stderr, "fuzz_http_sub: cannot subscribe: %s\n", sl_errmsg());
        abort();
    }
    sl_subscribe_opts_init(&o);
    if (sl_subscribe(sub, "a.b", &o, &subs[1]) != 0 ||
        pthread_create(&drainer[0], NULL, drain, &subs[0]) != 0 ||
        pthread_create(&drainer[1], NULL, drain, &subs[1]) != 0) {
        fprintf(stderr, "fuzz_http_sub: cannot subscribe: %s\n", sl_errmsg());
        abort();
    }
    if (!(daemon_ = sli_httpb_daemon("127.0.0.1", (int)port)))
        abort();
    atexit(stop);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!sub)
        start();
    if (size > 128 * 1024)
        return 0;
    char resp[512];
    if (fz_mhd_exchange(daemon_, data, size, resp, sizeof resp) < 0)
        abort(); /* the daemon refused the connection: the harness is broken */
    return 0;
}
