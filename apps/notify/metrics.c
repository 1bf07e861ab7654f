/*
 * metrics.c - counters for /metrics, rendered in Prometheus text format.
 *
 * Every counter is a relaxed atomic in nf_metrics, so recording costs one
 * atomic add and never takes a lock. Routes get small indexes from a fixed
 * table filled once at start (nf_metrics_route), status codes map to a
 * fixed set of slots, latencies to fixed histogram buckets.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"

static const char *route_names[NF_ROUTE_MAX];
static int route_count;
static const int code_slots[NF_CODE_SLOTS] = {200, 204, 304, 400, 401, 403,
                                              404, 405, 413, 500, 503, 0};
static const double lat_le[NF_LAT_BUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                              0.05,   0.1,   0.25,   1.0,   0};
static const double commit_le[NF_COMMIT_BUCKETS] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                    0.01,   0.025,   0.05,   0.25,  0};
static const char *const topics[2] = {NF_TOPIC_NOTIFY, NF_TOPIC_READ};

/* Count us (microseconds) in a histogram: the bucket among le whose bound
 * it is within (the last one: +Inf), and the sum. */
static void hist_add(_Atomic uint64_t *bucket, _Atomic uint64_t *sum_us, const double *le, int n,
                     int64_t us)
{
    double s = (double)us / 1e6;
    int b = n - 1;
    for (int i = 0; i < n - 1; i++)
        if (s <= le[i]) {
            b = i;
            break;
        }
    atomic_fetch_add_explicit(&bucket[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(sum_us, (uint64_t)(us > 0 ? us : 0), memory_order_relaxed);
}

int nf_metrics_route(const char *name)
{
    for (int i = 0; i < route_count; i++)
        if (!strcmp(route_names[i], name))
            return i;
    if (route_count == NF_ROUTE_MAX)
        return NF_ROUTE_MAX - 1;
    route_names[route_count] = name;
    return route_count++;
}

int nf_topic_index(const char *topic)
{
    return topic && !strcmp(topic, NF_TOPIC_READ) ? 1 : 0;
}

void nf_metrics_request(nf_metrics *m, int route, int status, int64_t us)
{
    if (route < 0 || route >= NF_ROUTE_MAX)
        return;
    int slot = NF_CODE_SLOTS - 1;
    for (int i = 0; i < NF_CODE_SLOTS - 1; i++)
        if (code_slots[i] == status)
            slot = i;
    atomic_fetch_add_explicit(&m->req[route][slot], 1, memory_order_relaxed);
    hist_add(m->lat_bucket[route], &m->lat_sum_us[route], lat_le, NF_LAT_BUCKETS, us);
}

void nf_metrics_round(nf_metrics *m, size_t msgs, int64_t us)
{
    atomic_fetch_add_explicit(&m->rounds, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->round_msgs, msgs, memory_order_relaxed);
    hist_add(m->round_bucket, &m->round_sum_us, commit_le, NF_COMMIT_BUCKETS, us);
}

void nf_metrics_commit_wait(nf_metrics *m, int64_t us)
{
    hist_add(m->commit_wait_bucket, &m->commit_wait_sum_us, commit_le, NF_COMMIT_BUCKETS, us);
}

typedef struct sbuf {
    char *p;
    size_t len, cap;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0)
            return;
        if (b->p && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t ncap = (b->cap ? b->cap * 2 : 4096) + (size_t)n;
        char *np = realloc(b->p, ncap);
        if (!np)
            return;
        b->p = np;
        b->cap = ncap;
    }
}

#define LD(x) ((unsigned long long)atomic_load_explicit(&(x), memory_order_relaxed))

/* The samples of one histogram series (n buckets at le, the last +Inf):
 * cumulative buckets, _sum, _count. labels: "" or `key="value"`. */
static void render_hist(sbuf *b, const char *name, const char *labels, const double *le, int n,
                        _Atomic uint64_t *bucket, _Atomic uint64_t *sum_us)
{
    const char *sep = labels[0] ? "," : "";
    unsigned long long cum = 0;
    for (int i = 0; i < n; i++) {
        cum += LD(bucket[i]);
        if (i < n - 1)
            sb_printf(b, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep, le[i], cum);
        else
            sb_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep, cum);
    }
    const char *open = labels[0] ? "{" : "", *close = labels[0] ? "}" : "";
    sb_printf(b, "%s_sum%s%s%s %.6f\n%s_count%s%s%s %llu\n", name, open, labels, close,
              (double)LD(*sum_us) / 1e6, name, open, labels, close, cum);
}

static void render_http(sbuf *b, nf_metrics *m)
{
    sb_printf(b, "# HELP sluice_http_requests_total HTTP requests by route and status.\n"
                 "# TYPE sluice_http_requests_total counter\n");
    for (int r = 0; r < route_count; r++)
        for (int c = 0; c < NF_CODE_SLOTS; c++) {
            if (!LD(m->req[r][c]) && c != 0)
                continue;
            char code[16] = "other"; /* a status without a slot of its own */
            if (code_slots[c])
                snprintf(code, sizeof code, "%d", code_slots[c]);
            sb_printf(b, "sluice_http_requests_total{route=\"%s\",code=\"%s\"} %llu\n",
                      route_names[r], code, LD(m->req[r][c]));
        }
    sb_printf(b, "# HELP sluice_http_request_duration_seconds Handler latency by route.\n"
                 "# TYPE sluice_http_request_duration_seconds histogram\n");
    for (int r = 0; r < route_count; r++) {
        char labels[160];
        snprintf(labels, sizeof labels, "route=\"%s\"", route_names[r]);
        render_hist(b, "sluice_http_request_duration_seconds", labels, lat_le, NF_LAT_BUCKETS,
                    m->lat_bucket[r], &m->lat_sum_us[r]);
    }
}

static void render_ingest(sbuf *b, nf_metrics *m)
{
    sb_printf(b,
              "# HELP sluice_ingest_rounds_total Queue commits of the HTTP loops' batches.\n"
              "# TYPE sluice_ingest_rounds_total counter\nsluice_ingest_rounds_total %llu\n"
              "# HELP sluice_ingest_round_messages_total Messages those commits queued.\n"
              "# TYPE sluice_ingest_round_messages_total counter\n"
              "sluice_ingest_round_messages_total %llu\n",
              LD(m->rounds), LD(m->round_msgs));
    sb_printf(b, "# HELP sluice_ingest_round_seconds Time of a queue commit round (publish and its "
                 "fsync).\n# TYPE sluice_ingest_round_seconds histogram\n");
    render_hist(b, "sluice_ingest_round_seconds", "", commit_le, NF_COMMIT_BUCKETS, m->round_bucket,
                &m->round_sum_us);
    sb_printf(
        b, "# HELP sluice_ingest_commit_wait_seconds A POST's wait from its loop's batch to its "
           "answer (the durability wait).\n# TYPE sluice_ingest_commit_wait_seconds histogram\n");
    render_hist(b, "sluice_ingest_commit_wait_seconds", "", commit_le, NF_COMMIT_BUCKETS,
                m->commit_wait_bucket, &m->commit_wait_sum_us);
}

static void render_queue(sbuf *b, nf_metrics *m)
{
    static const struct {
        const char *name, *type, *help;
        size_t off;
    } series[] = {
        {"sluice_queue_published_total", "counter", "Messages this process published.",
         offsetof(nf_metrics, published)},
        {"sluice_queue_publish_failed_total", "counter", "Publishes that failed (answered 503).",
         offsetof(nf_metrics, publish_failed)},
        {"sluice_consumer_processed_total", "counter", "Messages applied to the store.",
         offsetof(nf_metrics, processed)},
        {"sluice_consumer_failed_total", "counter", "Handler failures (retried with backoff).",
         offsetof(nf_metrics, failed)},
        {"sluice_consumer_parked_total", "counter", "Messages parked in failed_queues.",
         offsetof(nf_metrics, parked)},
    };
    for (size_t s = 0; s < sizeof series / sizeof series[0]; s++) {
        _Atomic uint64_t *v = (_Atomic uint64_t *)(void *)((char *)m + series[s].off);
        sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", series[s].name, series[s].help, series[s].name,
                  series[s].type);
        for (int t = 0; t < 2; t++)
            sb_printf(b, "%s{topic=\"%s\"} %llu\n", series[s].name, topics[t], LD(v[t]));
    }
    sb_printf(b, "# HELP sluice_queue_depth Published by this process and not yet applied here.\n"
                 "# TYPE sluice_queue_depth gauge\n");
    for (int t = 0; t < 2; t++) {
        long long d = (long long)LD(m->published[t]) - (long long)LD(m->processed[t]) -
                      (long long)LD(m->parked[t]);
        sb_printf(b, "sluice_queue_depth{topic=\"%s\"} %lld\n", topics[t], d > 0 ? d : 0);
    }
    sb_printf(b, "# HELP sluice_consumer_lag_seconds Publish-to-handle delay of the last message.\n"
                 "# TYPE sluice_consumer_lag_seconds gauge\n");
    for (int t = 0; t < 2; t++)
        sb_printf(b, "sluice_consumer_lag_seconds{topic=\"%s\"} %.3f\n", topics[t],
                  (double)atomic_load(&m->lag_ms[t]) / 1e3);
    sb_printf(b, "# HELP sluice_consumer_handler_seconds Handler latency (sum and count).\n"
                 "# TYPE sluice_consumer_handler_seconds summary\n");
    for (int t = 0; t < 2; t++)
        sb_printf(b,
                  "sluice_consumer_handler_seconds_sum{topic=\"%s\"} %.6f\n"
                  "sluice_consumer_handler_seconds_count{topic=\"%s\"} %llu\n",
                  topics[t], (double)LD(m->handle_sum_us[t]) / 1e6, topics[t],
                  LD(m->handle_count[t]));
    sb_printf(b,
              "# HELP sluice_sse_clients Open event streams.\n# TYPE sluice_sse_clients gauge\n"
              "sluice_sse_clients %lld\n",
              (long long)atomic_load(&m->sse_clients));
    sb_printf(b,
              "# HELP sluice_events_published_total Live-update events published by consumers.\n"
              "# TYPE sluice_events_published_total counter\nsluice_events_published_total %llu\n"
              "# HELP sluice_events_dropped_total Live-update events dropped (best-effort).\n"
              "# TYPE sluice_events_dropped_total counter\nsluice_events_dropped_total %llu\n",
              LD(m->events_published), LD(m->events_dropped));
    sb_printf(b,
              "# HELP sluice_http_timeouts_total Connections closed past web.read_timeout / "
              "write_timeout.\n"
              "# TYPE sluice_http_timeouts_total counter\n"
              "sluice_http_timeouts_total{kind=\"read\"} "
              "%llu\nsluice_http_timeouts_total{kind=\"write\"} %llu\n",
              LD(m->http_timeouts[0]), LD(m->http_timeouts[1]));
    sb_printf(
        b,
        "# HELP sluice_log_suppressed_total Repeated warnings not written (rate limit, log.c).\n"
        "# TYPE sluice_log_suppressed_total counter\nsluice_log_suppressed_total %llu\n",
        (unsigned long long)nf_log_suppressed_total());
}

char *nf_metrics_render(nf_metrics *m)
{
    sbuf b = {0};
    render_http(&b, m);
    render_ingest(&b, m);
    render_queue(&b, m);
    return b.p;
}
