/*
 * examples/router - watermill's "your first app", on the sluice router.
 *
 *   producer thread --> incoming_messages --> [handler "transform"]
 *                                                 | publishes
 *                                                 v
 *                       processed_messages --> [handler "printer"] --> stdout
 *
 * The transform handler upper-cases each event and republishes it; it runs
 * under router-level middlewares: metrics (outermost), the retry+poison
 * policy, correlation id, and a recoverer. The printer publishes nothing.
 * SIGINT/SIGTERM close the router gracefully (signals plugin); otherwise
 * the program stops after the printer saw COUNT messages and prints the
 * handlers' metrics.
 *
 *   usage: example_router [URL] [COUNT]     (default mem://example-router 5)
 *
 * Only the public API (sluice/sluice.h) is used.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sluice/sluice.h>

typedef struct app {
    sl_publisher *pub;
    sl_router *r;
    int count;
    _Atomic int printed;
    pthread_mutex_t mu;
    pthread_cond_t cond;
} app;

/* Publish COUNT events, one every 100 ms (watermill's producer: one a second). */
static void *producer(void *arg)
{
    app *a = arg;
    for (int i = 1; i <= a->count && sl_router_running(a->r, 0) == 0; i++) {
        char body[64], corr[32];
        int n = snprintf(body, sizeof body, "event #%d: hello, sluice", i);
        snprintf(corr, sizeof corr, "req-%d", i);
        sl_msg *m;
        if (sl_msg_new(&m, body, (size_t)n) != 0)
            break;
        sl_msg_meta_set(m, "correlation_id", corr);
        if (sl_publish(a->pub, "incoming_messages", &m, 1) != 0)
            fprintf(stderr, "producer: %s\n", sl_errmsg());
        sl_msg_unref(m);
        sl_ctx_wait(NULL, 100);
    }
    return NULL;
}

/* Transform: upper-case the payload into a new message for the printer. */
static int transform(sl_ctx *ctx, sl_msg *in, sl_msg_list *out, void *user)
{
    (void)ctx;
    (void)user;
    size_t len;
    const char *p = sl_msg_payload(in, &len);
    char buf[256];
    int n = snprintf(buf, sizeof buf, "processed: ");
    for (size_t i = 0; i < len && (size_t)n < sizeof buf - 1; i++)
        buf[n++] = (char)(p[i] >= 'a' && p[i] <= 'z' ? p[i] - 'a' + 'A' : p[i]);
    sl_msg *m;
    int rc = sl_msg_new(&m, buf, (size_t)n);
    if (rc)
        return rc;
    if ((rc = sl_msg_list_push(out, m)) != 0)
        sl_msg_unref(m);
    return rc;
}

/* Printer: print and count; publishes nothing. */
static int printer(sl_ctx *ctx, sl_msg *in, sl_msg_list *out, void *user)
{
    (void)ctx;
    (void)out;
    app *a = user;
    size_t len;
    const char *p = sl_msg_payload(in, &len);
    const char *corr = sl_msg_meta_get(in, "correlation_id");
    printf("printer: %.*s (correlation_id=%s, uuid=%s)\n", (int)len, p, corr ? corr : "-",
           sl_msg_uuid(in));
    fflush(stdout);
    pthread_mutex_lock(&a->mu);
    atomic_fetch_add(&a->printed, 1);
    pthread_cond_signal(&a->cond);
    pthread_mutex_unlock(&a->mu);
    return 0;
}

static void *run_router(void *r)
{
    int rc = sl_router_run(r);
    if (rc)
        fprintf(stderr, "router: %s (%s)\n", sl_strerror(rc), sl_errmsg());
    return NULL;
}

static void print_stats(const sl_handler_stats *s, void *user)
{
    (void)user;
    printf("metrics: handler=%s calls=%llu ok=%llu failed=%llu mean=%.0fus max=%lluus\n",
           s->handler, (unsigned long long)s->calls, (unsigned long long)s->ok,
           (unsigned long long)s->failed, s->calls ? (double)s->sum_us / (double)s->calls : 0.0,
           (unsigned long long)s->max_us);
}

static int setup(sl_router *r, sl_subscriber *sub, app *a, sl_metrics **metrics)
{
    sl_middleware mw;
    sl_retry_opts ro;
    sl_retry_opts_init(&ro);
    ro.max_retries = 3;
    ro.initial_ms = 50;
    sl_poison_opts po = {.pub = a->pub, .topic = "poison_queue"};
    sl_plugin sig;
    if (sl_mw_metrics(&mw, metrics) || sl_router_add_middleware(r, mw) ||
        sl_mw_retry_poison(&mw, &ro, &po) || sl_router_add_middleware(r, mw) ||
        sl_mw_correlation(&mw) || sl_router_add_middleware(r, mw) || sl_mw_recoverer(&mw, false) ||
        sl_router_add_middleware(r, mw) || sl_plugin_signals(&sig) || sl_router_add_plugin(r, sig))
        return -1;
    sl_handler_opts o;
    sl_handler_opts_init(&o);
    o.name = "transform";
    o.sub = sub;
    o.topic = "incoming_messages";
    o.subscribe.group = "transform";
    o.pub = a->pub;
    o.pub_topic = "processed_messages";
    o.fn = transform;
    if (sl_router_add_handler(r, &o, NULL))
        return -1;
    sl_handler_opts_init(&o);
    o.name = "printer";
    o.sub = sub;
    o.topic = "processed_messages";
    o.subscribe.group = "printer";
    o.fn = printer;
    o.user = a;
    return sl_router_add_handler(r, &o, NULL) ? -1 : 0;
}

int main(int argc, char **argv)
{
    const char *url = argc > 1 ? argv[1] : "mem://example-router";
    app a = {.count = argc > 2 ? atoi(argv[2]) : 5};
    pthread_mutex_init(&a.mu, NULL);
    pthread_cond_init(&a.cond, NULL);
    sl_subscriber *sub;
    sl_router *r;
    sl_metrics *metrics;
    if (a.count <= 0 || sl_publisher_open(&a.pub, url) || sl_subscriber_open(&sub, url) ||
        sl_router_new(&r, NULL)) {
        fprintf(stderr, "usage: example_router [URL] [COUNT>0]: %s\n", sl_errmsg());
        return 2;
    }
    a.r = r;
    if (setup(r, sub, &a, &metrics)) {
        fprintf(stderr, "example_router: setup: %s\n", sl_errmsg());
        return 1;
    }
    pthread_t rt, pt;
    pthread_create(&rt, NULL, run_router, r);
    if (sl_router_running(r, 5000)) {
        fprintf(stderr, "example_router: not running: %s\n", sl_errmsg());
        return 1;
    }
    pthread_create(&pt, NULL, producer, &a);
    pthread_mutex_lock(&a.mu); /* until COUNT printed (or a signal closed the router) */
    while (atomic_load(&a.printed) < a.count && sl_router_running(r, 0) == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&a.cond, &a.mu, &ts);
    }
    pthread_mutex_unlock(&a.mu);
    bool interrupted = sl_router_running(r, 0) != 0; /* a signal closed it */
    pthread_join(pt, NULL);
    unsigned cut = 0;
    int rc = sl_router_close(r, 5000, &cut);
    pthread_join(rt, NULL);
    sl_metrics_foreach(metrics, print_stats, NULL);
    printf("closed: %s, %u handler call(s) cut off, %d message(s) printed\n", sl_strerror(rc), cut,
           atomic_load(&a.printed));
    sl_router_free(r);
    sl_subscriber_close(sub);
    sl_publisher_close(a.pub);
    if (rc != 0)
        return 1;
    return interrupted || atomic_load(&a.printed) == a.count ? 0 : 1;
}
