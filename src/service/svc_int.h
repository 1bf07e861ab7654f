/*
 * svc_int.h - the insides of sl_service and sl_call, shared by the service
 * core (service.c), the HTTP transport (http_server.c), calls (call.c) and
 * streams (stream.c). Never installed.
 */
#ifndef SLI_SVC_INT_H
#define SLI_SVC_INT_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "core/internal.h"
#include "sluice/service.h"
#include "sluice/service_json.h"

#define SVC_LAT_BUCKETS 12 /* latency histogram: 100us .. 10s, then +Inf */
extern const double sli_svc_lat_bounds_s[SVC_LAT_BUCKETS];

typedef struct svc_endpoint {
    char *name;
    sl_endpoint_fn fn;
    void *user;
    bool stream;
    _Atomic uint64_t calls, errors, lat_sum_us;
    _Atomic uint64_t lat_buckets[SVC_LAT_BUCKETS + 1];
} svc_endpoint;

typedef struct svc_wrapper {
    sl_wrapper_fn fn;
    void *user;
} svc_wrapper;

typedef struct svc_stream svc_stream;

struct sl_service {
    char *name, *version, *id, *address_opt, *advertise_opt, *registry_url;
    char advertised[300]; /* "host:port" in the registry */
    sl_reg_meta *meta;
    size_t nmeta;
    int64_t ttl_ms, interval_ms, drain_ms;
    size_t max_body;
    unsigned threads;

    svc_endpoint *eps;
    size_t neps;
    svc_wrapper *wraps;
    size_t nwraps;

    void *http;                /* http_server.c's daemon */
    atomic_bool http_draining; /* set by sli_http_quiesce: new connections are refused */
    bool http_external;        /* set before start: the daemon gets no thread (sli_http_daemon) */
    char bound[300];           /* "host:port" */
    char *grpc_address_opt;    /* NULL: no gRPC */
    bool grpc_only;
    void *grpc; /* grpc/grpc_server.c's server */
    char grpc_bound[300], grpc_advertised[300];

    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool started, stopping, stopped;
    pthread_t reg_thread;
    bool reg_thread_started;
    int wake_fd; /* eventfd: sl_service_stop wakes run() */

    /* pub/sub (service_pubsub.c) */
    sl_router *router;
    pthread_t router_thread;
    bool router_running;
    sl_subscriber **subs;
    size_t nsubs;
    pthread_mutex_t pub_mu;
    char **pub_urls;
    sl_publisher **pubs;
    size_t npubs;

    _Atomic int inflight;
    _Atomic uint64_t calls, errors, unknown;
    int64_t started_wall_ms;
};

typedef struct svc_hdr {
    char *key, *value;
} svc_hdr;

struct sl_call {
    sl_service *svc;
    svc_endpoint *ep;
    const char *endpoint;
    char ctype[128];
    bool is_json;
    char *body;
    size_t len;
    json_t *json;
    svc_hdr *req_h;
    size_t nreq_h;
    svc_hdr *resp_h;
    size_t nresp_h;
    int64_t deadline_ms; /* mono ms; -1 none */
    int64_t start_ns;
    int status;
    bool replied;
    char *reply;
    size_t reply_len;
    size_t wrap_i;
    svc_stream *stream;
    /* A transport that sends stream messages itself (gRPC): sl_call_send
     * goes there instead of to `stream`. */
    int (*send_fn)(sl_call *c, const void *data, size_t len);
    int (*recv_fn)(sl_call *c, char **msg, size_t *len);
    void *send_ctx;
};

/* service.c */
svc_endpoint *sli_svc_find(sl_service *s, const char *endpoint);
/* Run the wrapper chain and the handler; fills the call's reply or error. */
void sli_svc_dispatch(sl_call *c);
/* Prometheus text of the service's metrics (malloc'd). */
char *sli_svc_metrics_text(sl_service *s, size_t *len);

/* service_pubsub.c */
int sli_svc_pubsub_start(sl_service *s);
void sli_svc_pubsub_stop(sl_service *s); /* drains handlers */
void sli_svc_pubsub_free(sl_service *s);

/* call.c */
void sli_call_init(sl_call *c, sl_service *s, const char *endpoint, const char *ctype);
void sli_call_clear(sl_call *c);
int sli_call_add_req_header(sl_call *c, const char *k, const char *v);
/* go-micro error JSON for (service, status, detail) (malloc'd). */
char *sli_svc_error_json(const char *id, int status, const char *detail, size_t *len);
const char *sli_http_status_text(int status);
int sli_svc_status_of(int err);
/* Parse a Timeout header: Go duration or bare nanoseconds -> ms (>= 0). */
int sli_svc_parse_timeout(const char *v, int64_t *ms);

/* stream.c */
svc_stream *sli_stream_new(sl_call *c, bool sse);
int sli_stream_send(svc_stream *st, const void *data, size_t len);
void sli_stream_done(svc_stream *st);
/* Whether a message was sent; with wait, once one was or the stream is done. */
bool sli_stream_sent(svc_stream *st, bool wait);
/* Copy up to max bytes of what is queued into buf, waiting for some;
 * 0 = end of stream (done and drained, or closed). */
size_t sli_stream_read(svc_stream *st, char *buf, size_t max, bool *end);
/* The reader went away: senders get SL_ECLOSED. */
void sli_stream_close(svc_stream *st);
void sli_stream_free(svc_stream *st);

/* grpc/grpc_server.c (SL_HAVE_SERVICE_GRPC) */
int sli_grpc_start(sl_service *s);
void sli_grpc_quiesce(sl_service *s); /* no new calls */
void sli_grpc_stop(sl_service *s);    /* cancels what still runs, frees */

/* http_server.c */
int sli_http_start(sl_service *s);
/* Stop accepting new connections (in-flight calls go on). */
void sli_http_quiesce(sl_service *s);
void sli_http_stop(sl_service *s);
/* The daemon (struct MHD_Daemon *) of a service started with http_external
 * set: no thread of its own, the caller drives it with MHD_run() and hands
 * it connections with MHD_add_connection() (the fuzz target does). */
void *sli_http_daemon(sl_service *s);

#endif
