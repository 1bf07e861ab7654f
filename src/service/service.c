/*
 * service.c - sl_service: a named RPC server registered in a registry.
 *
 * Life: new -> handle/wrap -> start (listen through the HTTP transport,
 * then a registration thread registers the node and re-registers it every
 * register_interval_ms, retrying with backoff and a warning while the
 * registry is unreachable) -> run (waits for SIGINT/SIGTERM or stop) ->
 * graceful stop (deregister, stop accepting, drain in-flight calls up to
 * drain_timeout_ms, stop the transport) -> free.
 *
 * Calls run the wrappers in the order added, then the handler (call.c has
 * the call itself). Every call is counted per endpoint (calls, errors,
 * latency histogram) for Debug.Stats and GET /metrics.
 */
#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "service/svc_int.h"

const double sli_svc_lat_bounds_s[SVC_LAT_BUCKETS] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                      0.01,   0.025,   0.05,   0.1,   1,      10};

void sl_service_opts_init(sl_service_opts *o)
{
    memset(o, 0, sizeof *o);
    o->version = "latest";
    o->address = ":0";
    o->register_ttl_ms = 30000;
    o->register_interval_ms = 10000;
    o->drain_timeout_ms = 10000;
    o->max_body = 4u << 20;
    o->threads = 8;
}

static bool name_ok(const char *n, bool endpoint)
{
    if (!n || !*n || strlen(n) > 200)
        return false;
    int dots = 0;
    for (const char *p = n; *p; p++) {
        if (*p == '.')
            dots++;
        else if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-')
            return false;
    }
    return !endpoint || (dots == 1 && n[0] != '.' && n[strlen(n) - 1] != '.');
}

static char *dup_or(const char *s, const char *def)
{
    return strdup(s && *s ? s : def);
}

static int builtin_health(sl_call *c, void *user);
static int builtin_stats(sl_call *c, void *user);

int sl_service_new(sl_service **out, const sl_service_opts *o)
{
    if (!out || !o)
        return sli_err(SL_EINVAL, "sl_service_new: NULL argument");
    *out = NULL;
    if (!name_ok(o->name, false))
        return sli_err(SL_EINVAL, "service: bad name '%s' (letters, digits, '.', '_', '-')",
                       o->name ? o->name : "(null)");
    if (o->register_ttl_ms <= 0 || o->register_interval_ms <= 0 ||
        o->register_interval_ms >= o->register_ttl_ms)
        return sli_err(SL_EINVAL, "service: register_interval_ms must be > 0 and below "
                                  "register_ttl_ms");
    if (o->grpc_only && !o->grpc_address)
        return sli_err(SL_EINVAL, "service: grpc_only without a grpc_address");
#ifndef SL_HAVE_SERVICE_GRPC
    if (o->grpc_address)
        return sli_err(SL_ENOTSUP, "service: this libsluice was built without gRPC");
#endif
    if (o->threads == 0 || o->threads > 1024 || o->max_body == 0 || o->drain_timeout_ms < 0)
        return sli_err(SL_EINVAL, "service: threads (1..1024), max_body (> 0) and "
                                  "drain_timeout_ms (>= 0) must be set");
    sl_service *s = calloc(1, sizeof *s);
    if (!s)
        return sli_err(SL_ENOMEM, "out of memory");
    char uuid[SL_UUID_LEN + 1], id[300];
    sl_uuid_v7(uuid);
    snprintf(id, sizeof id, "%s-%s", o->name, uuid);
    s->name = strdup(o->name);
    s->version = dup_or(o->version, "latest");
    s->id = dup_or(o->id, id);
    s->address_opt = dup_or(o->address, ":0");
    s->advertise_opt = o->advertise && *o->advertise ? strdup(o->advertise) : NULL;
    s->registry_url = o->registry ? strdup(o->registry) : NULL;
    s->grpc_address_opt = o->grpc_address ? strdup(o->grpc_address) : NULL;
    s->grpc_only = o->grpc_only;
    s->ttl_ms = o->register_ttl_ms;
    s->interval_ms = o->register_interval_ms;
    s->drain_ms = o->drain_timeout_ms;
    s->max_body = o->max_body;
    s->threads = o->threads;
    s->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->pub_mu, NULL);
    sli_cond_init(&s->cv);
    int rc =
        (!s->name || !s->version || !s->id || !s->address_opt || s->wake_fd < 0) ? SL_ENOMEM : 0;
    if (rc == 0 && o->n_metadata) {
        s->meta = calloc(o->n_metadata, sizeof *s->meta);
        for (size_t i = 0; s->meta && i < o->n_metadata; i++) {
            if (!o->metadata[i].key || !o->metadata[i].value) {
                rc = SL_EINVAL;
                break;
            }
            s->meta[i].key = strdup(o->metadata[i].key);
            s->meta[i].value = strdup(o->metadata[i].value);
            s->nmeta = i + 1;
        }
        if (!s->meta)
            rc = SL_ENOMEM;
    }
    if (rc == 0)
        rc = sl_service_handle(s, "Debug.Health", builtin_health, NULL);
    if (rc == 0)
        rc = sl_service_handle(s, "Debug.Stats", builtin_stats, NULL);
    if (rc != 0) {
        sl_service_free(s);
        return sli_err(rc, rc == SL_EINVAL ? "service: metadata with a NULL key or value"
                                           : "service: out of memory");
    }
    *out = s;
    return 0;
}

static int add_endpoint(sl_service *s, const char *endpoint, sl_endpoint_fn fn, void *user,
                        bool stream)
{
    if (!s || !fn || !name_ok(endpoint, true))
        return sli_err(SL_EINVAL, "service: bad endpoint '%s' (want Service.Method)",
                       endpoint ? endpoint : "(null)");
    if (s->started)
        return sli_err(SL_ESTATE, "service: add endpoints before start");
    if (sli_svc_find(s, endpoint))
        return sli_err(SL_EEXIST, "service: endpoint %s registered twice", endpoint);
    svc_endpoint *eps = realloc(s->eps, (s->neps + 1) * sizeof *eps);
    if (!eps)
        return sli_err(SL_ENOMEM, "out of memory");
    s->eps = eps;
    svc_endpoint *e = &eps[s->neps];
    memset(e, 0, sizeof *e);
    e->name = strdup(endpoint);
    if (!e->name)
        return sli_err(SL_ENOMEM, "out of memory");
    e->fn = fn;
    e->user = user;
    e->stream = stream;
    s->neps++;
    return 0;
}

int sl_service_handle(sl_service *s, const char *endpoint, sl_endpoint_fn fn, void *user)
{
    return add_endpoint(s, endpoint, fn, user, false);
}

int sl_service_handle_stream(sl_service *s, const char *endpoint, sl_endpoint_fn fn, void *user)
{
    return add_endpoint(s, endpoint, fn, user, true);
}

int sl_service_wrap(sl_service *s, sl_wrapper_fn fn, void *user)
{
    if (!s || !fn)
        return sli_err(SL_EINVAL, "sl_service_wrap: NULL argument");
    if (s->started)
        return sli_err(SL_ESTATE, "service: add wrappers before start");
    svc_wrapper *w = realloc(s->wraps, (s->nwraps + 1) * sizeof *w);
    if (!w)
        return sli_err(SL_ENOMEM, "out of memory");
    s->wraps = w;
    w[s->nwraps++] = (svc_wrapper){fn, user};
    return 0;
}

svc_endpoint *sli_svc_find(sl_service *s, const char *endpoint)
{
    for (size_t i = 0; i < s->neps; i++)
        if (strcmp(s->eps[i].name, endpoint) == 0)
            return &s->eps[i];
    return NULL;
}

/* ---- calls ---- */

int sl_call_next(sl_call *c)
{
    if (!c || !c->ep)
        return sli_err(SL_EINVAL, "sl_call_next: not inside a call");
    if (c->wrap_i < c->svc->nwraps) {
        svc_wrapper *w = &c->svc->wraps[c->wrap_i++];
        return w->fn(c, w->user);
    }
    if (c->wrap_i > c->svc->nwraps)
        return 0; /* the handler ran already: a second next is a no-op */
    c->wrap_i = c->svc->nwraps + 1;
    sli_err_clear();
    int rc = c->ep->fn(c, c->ep->user);
    if (rc < 0 && !(c->replied && c->status != 200)) {
        const char *detail = sl_errmsg();
        sl_call_error(c, sli_svc_status_of(rc), "%s", *detail ? detail : sl_strerror(rc));
    }
    return rc;
}

void sli_svc_dispatch(sl_call *c)
{
    c->wrap_i = 0;
    sl_call_next(c);
    svc_endpoint *e = c->ep;
    uint64_t us = (uint64_t)((sli_mono_ns() - c->start_ns) / 1000);
    atomic_fetch_add_explicit(&e->calls, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->svc->calls, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&e->lat_sum_us, us, memory_order_relaxed);
    size_t b = 0;
    while (b < SVC_LAT_BUCKETS && (double)us / 1e6 > sli_svc_lat_bounds_s[b])
        b++;
    atomic_fetch_add_explicit(&e->lat_buckets[b], 1, memory_order_relaxed);
    if (c->status >= 400) {
        atomic_fetch_add_explicit(&e->errors, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&c->svc->errors, 1, memory_order_relaxed);
    }
}

/* ---- built-in endpoints and wrappers ---- */

static int builtin_health(sl_call *c, void *user)
{
    (void)user;
    const char *ok = "{\"status\":\"ok\"}";
    return sl_call_reply(c, ok, strlen(ok));
}

static int builtin_stats(sl_call *c, void *user)
{
    (void)user;
    sl_service *s = c->svc;
    json_t *eps = json_object();
    for (size_t i = 0; eps && i < s->neps; i++)
        json_object_set_new(eps, s->eps[i].name,
                            json_pack("{s:I, s:I}", "calls",
                                      (json_int_t)atomic_load(&s->eps[i].calls), "errors",
                                      (json_int_t)atomic_load(&s->eps[i].errors)));
    int64_t now = sli_wall_ms();
    return sl_call_reply_json(
        c, json_pack(
               "{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:i, s:o}", "service", s->name, "version",
               s->version, "id", s->id, "started", (json_int_t)(s->started_wall_ms / 1000),
               "uptime", (json_int_t)((now - s->started_wall_ms) / 1000), "requests",
               (json_int_t)atomic_load(&s->calls), "errors", (json_int_t)atomic_load(&s->errors),
               "unknown_endpoint", (json_int_t)atomic_load(&s->unknown), "threads", (int)s->threads,
               "endpoints", eps));
}

int sl_wrap_log(sl_call *c, void *user)
{
    (void)user;
    int rc = sl_call_next(c);
    sli_log(c->status >= 500 ? SL_LOG_WARN : SL_LOG_INFO, "service", "%s %s %d %lldus",
            c->svc->name, c->endpoint, c->status,
            (long long)((sli_mono_ns() - c->start_ns) / 1000));
    return rc;
}

int sl_wrap_trace(sl_call *c, void *user)
{
    (void)user;
    const char *id = sl_call_meta(c, "Micro-Trace-Id");
    char uuid[SL_UUID_LEN + 1];
    if (!id || !*id || strlen(id) > 128) {
        sl_uuid_v7(uuid);
        id = uuid;
        sl_call_set_req_meta(c, "Micro-Trace-Id", id); /* replaces a long one for the handler */
        id = sl_call_meta(c, "Micro-Trace-Id");
    }
    sl_call_set_meta(c, "Micro-Trace-Id", id);
    return sl_call_next(c);
}

int sl_wrap_deadline(sl_call *c, void *user)
{
    (void)user;
    if (c->deadline_ms >= 0 && sli_mono_ms() >= c->deadline_ms) {
        sl_call_error(c, 408, "deadline passed before %s started", c->endpoint);
        return SL_ETIMEDOUT;
    }
    return sl_call_next(c);
}

/* Writes the text into b[0 .. cap) as far as it fits; returns its whole length. */
static size_t metrics_write(sl_service *s, char *b, size_t cap)
{
    size_t n = 0;
#define OUT(...) n += (size_t)snprintf(n < cap ? b + n : NULL, n < cap ? cap - n : 0, __VA_ARGS__)
    OUT("# HELP sluice_service_calls_total Calls answered, by endpoint.\n"
        "# TYPE sluice_service_calls_total counter\n");
    for (size_t i = 0; i < s->neps; i++)
        OUT("sluice_service_calls_total{service=\"%s\",endpoint=\"%s\"} %llu\n", s->name,
            s->eps[i].name, (unsigned long long)atomic_load(&s->eps[i].calls));
    OUT("# HELP sluice_service_errors_total Calls answered with an error, by endpoint.\n"
        "# TYPE sluice_service_errors_total counter\n");
    for (size_t i = 0; i < s->neps; i++)
        OUT("sluice_service_errors_total{service=\"%s\",endpoint=\"%s\"} %llu\n", s->name,
            s->eps[i].name, (unsigned long long)atomic_load(&s->eps[i].errors));
    OUT("# HELP sluice_service_latency_seconds Time to answer a call, by endpoint.\n"
        "# TYPE sluice_service_latency_seconds histogram\n");
    for (size_t i = 0; i < s->neps; i++) {
        uint64_t cum = 0;
        for (size_t k = 0; k <= SVC_LAT_BUCKETS; k++) {
            cum += atomic_load(&s->eps[i].lat_buckets[k]);
            if (k < SVC_LAT_BUCKETS)
                OUT("sluice_service_latency_seconds_bucket{service=\"%s\",endpoint=\"%s\",le=\"%"
                    "g\"} "
                    "%llu\n",
                    s->name, s->eps[i].name, sli_svc_lat_bounds_s[k], (unsigned long long)cum);
            else
                OUT("sluice_service_latency_seconds_bucket{service=\"%s\",endpoint=\"%s\",le=\"+"
                    "Inf\"} "
                    "%llu\n",
                    s->name, s->eps[i].name, (unsigned long long)cum);
        }
        OUT("sluice_service_latency_seconds_sum{service=\"%s\",endpoint=\"%s\"} %.6f\n", s->name,
            s->eps[i].name, (double)atomic_load(&s->eps[i].lat_sum_us) / 1e6);
        OUT("sluice_service_latency_seconds_count{service=\"%s\",endpoint=\"%s\"} %llu\n", s->name,
            s->eps[i].name, (unsigned long long)cum);
    }
#undef OUT
    return n;
}

char *sli_svc_metrics_text(sl_service *s, size_t *len)
{
    size_t cap = 4096 + s->neps * 2048;
    for (;;) { /* names may be long: grow to what the text took (counters may grow meanwhile) */
        char *b = malloc(cap);
        if (!b)
            return NULL;
        size_t n = metrics_write(s, b, cap);
        if (n < cap) {
            *len = n;
            return b;
        }
        free(b);
        cap = n + 1024;
    }
}
