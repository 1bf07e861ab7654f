/*
 * sluice/service.h - services: named RPC servers found through a registry
 * (go-micro's micro.Service), reached with sl_client_call (sluice/client.h).
 *
 *   static int greet(sl_call *c, void *user) {
 *       json_t *req = sl_call_json(c);                 // sluice/service_json.h
 *       ...
 *       return sl_call_reply_json(c, json_pack("{s:s}", "message", "Hello alice"));
 *   }
 *   sl_service_opts o; sl_service_opts_init(&o);
 *   o.name = "helloworld"; o.address = ":8080";
 *   sl_service *s; sl_service_new(&s, &o);
 *   sl_service_handle(s, "Helloworld.Greeting", greet, NULL);
 *   sl_service_run(s);          // until SIGINT/SIGTERM or sl_service_stop
 *   sl_service_free(s);
 *
 * Wire (HTTP/1.1, the shape of go-micro's HTTP server, so curl can call it):
 *   POST /  with header Micro-Endpoint: Helloworld.Greeting, or
 *   POST /Helloworld/Greeting
 *   Content-Type picks the codec: application/json (validated before the
 *   handler runs) or application/protobuf (bytes handed over as they are);
 *   anything else is answered 415. Request headers reach the handler as
 *   metadata (sl_call_meta, names case-insensitive); `Timeout` or
 *   `Micro-Timeout` (a Go duration such as "1.5s", "250ms", or a bare number
 *   of nanoseconds as go-micro sends it) sets the call's deadline. Errors are
 *   go-micro's JSON error {"id","code","detail","status"} with the matching
 *   HTTP status. Streaming endpoints answer with a chunked body: one message
 *   per line (application/x-ndjson), or Server-Sent Events when the request
 *   says Accept: text/event-stream. Their 200 goes out with the first
 *   message: a call refused before (by a wrapper or the handler) gets its
 *   error status and error JSON; an error after it is the last message.
 *   Built in: Debug.Health ({"status":"ok"}), Debug.Stats (counters), and
 *   GET /metrics (Prometheus text: calls, errors and latency by endpoint).
 *
 * Wire (gRPC, opts.grpc_address; the real gRPC C core over HTTP/2): a call
 * to /<package>.<Service>/<Method> reaches the endpoint "Service.Method"
 * (go-micro's mapping; "package.Service.Method" is tried too). Messages are
 * protobuf (the handler gets the bytes, content type application/protobuf),
 * or JSON when the client sends the metadata "sluice-content-type:
 * application/json". Metadata reaches the handler like headers; the gRPC
 * deadline becomes the call's deadline. Errors become gRPC statuses
 * (400 INVALID_ARGUMENT, 401 UNAUTHENTICATED, 403 PERMISSION_DENIED, 404
 * NOT_FOUND, unknown endpoint UNIMPLEMENTED, 408 DEADLINE_EXCEEDED, 413/429
 * RESOURCE_EXHAUSTED, 503 UNAVAILABLE, other INTERNAL) with the detail as
 * the status message. Streaming endpoints are server-streaming gRPC
 * methods: each sl_call_send is one message.
 *
 * Threads: handlers run on the service's worker threads (opts.threads), so
 * one handler may run concurrently with itself. Register handlers and
 * wrappers before start. sl_service_stop may be called from any thread.
 */
#ifndef SLUICE_SERVICE_H
#define SLUICE_SERVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "export.h"
#include "registry.h"
#include "router.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sl_service sl_service;
/* One incoming call; valid until its handler (and wrappers) return. */
typedef struct sl_call sl_call;

/* A handler: read the request, reply (sl_call_reply*), return 0. A negative
 * SL_E* return without a reply becomes an error answer: SL_EINVAL 400,
 * SL_EUNAUTH 401, SL_EDENIED 403, SL_ENOENT 404, SL_ETIMEDOUT 408,
 * SL_ETOOBIG 413, SL_ENOTSUP 415, SL_EUNAVAIL 503, anything else 500, with
 * sl_errmsg() as the detail (or use sl_call_error for your own). A handler
 * that returns 0 without replying answers an empty message ({} for JSON). */
typedef int (*sl_endpoint_fn)(sl_call *call, void *user);

/* A server wrapper (go-micro's server.HandlerWrapper): runs around every
 * call, outermost first; continues the chain with sl_call_next(). */
typedef int (*sl_wrapper_fn)(sl_call *call, void *user);

typedef struct sl_service_opts {
    const char *name;        /* required: [A-Za-z0-9._-]+ */
    const char *version;     /* default "latest" */
    const char *id;          /* default "<name>-<uuid>" */
    const char *address;     /* "host:port"; ":0" (default) = any free port on all interfaces */
    const char *advertise;   /* "host[:port]" registered for callers; default: the bound host, or
                                127.0.0.1 when bound to all interfaces (set it on a real network) */
    const char *registry;    /* registry URL; NULL = the default (sl_registry_open); "none" = do
                                not register */
    int64_t register_ttl_ms; /* default 30000 */
    int64_t register_interval_ms; /* default 10000 (re-register this often) */
    int64_t drain_timeout_ms;     /* graceful stop waits this long for calls (default 10000) */
    size_t max_body;              /* larger request bodies get 413 (default 4 MiB) */
    unsigned threads;             /* worker threads (default 8) */
    const sl_reg_meta *metadata;  /* the service's metadata, copied */
    size_t n_metadata;
    const char *grpc_address; /* also serve gRPC on "host:port" (":0" = any free port);
                                 NULL = no gRPC */
    bool grpc_only;           /* serve gRPC only (no HTTP listener; address is ignored) */
} sl_service_opts;

SL_API void sl_service_opts_init(sl_service_opts *o);

/* Create a service (nothing listens yet). Errors: SL_EINVAL naming the bad
 * option, SL_ENOMEM. */
SL_API int sl_service_new(sl_service **out, const sl_service_opts *opts);

/* Register a handler for endpoint "Service.Method" (SL_EEXIST when taken,
 * SL_EINVAL for a malformed name, SL_ESTATE after start). */
SL_API int sl_service_handle(sl_service *s, const char *endpoint, sl_endpoint_fn fn, void *user);
/* The same for a streaming endpoint: the handler sends any number of
 * messages with sl_call_send() and returns; the stream ends then. */
SL_API int sl_service_handle_stream(sl_service *s, const char *endpoint, sl_endpoint_fn fn,
                                    void *user);
/* Add a wrapper (before start). Wrappers run in the order added. */
SL_API int sl_service_wrap(sl_service *s, sl_wrapper_fn fn, void *user);

/* Listen and register (in the background: a registry that is down is retried
 * with a warning, and the service serves meanwhile). Returns once listening.
 * Errors: SL_EIO (address in use: the message says which), SL_ESTATE. */
SL_API int sl_service_start(sl_service *s);
/* Start if needed, block until SIGINT/SIGTERM or sl_service_stop, then stop
 * gracefully: deregister, stop accepting, drain in-flight calls up to
 * drain_timeout_ms. Returns 0 after a clean stop. */
SL_API int sl_service_run(sl_service *s);
/* Ask a running service to stop (any thread; returns at once). */
SL_API int sl_service_stop(sl_service *s);
/* Stop (gracefully, if running) and free. NULL is a no-op. */
SL_API void sl_service_free(sl_service *s);

/* "host:port" the service listens on (the real port when ":0" was asked),
 * valid after start; the node id. */
SL_API const char *sl_service_address(const sl_service *s);
/* "host:port" of the gRPC listener after start; NULL without one. */
SL_API const char *sl_service_grpc_address(const sl_service *s);
SL_API const char *sl_service_id(const sl_service *s);
SL_API const char *sl_service_name(const sl_service *s);

/* ---- pub/sub inside a service (go-micro's broker = any libsluice backend) ---- */

/* Handle the messages of topic on the backend at url with fn, on the
 * service's router (so router middlewares apply: sl_service_router), in the
 * consumer group `group` (NULL: the service's name, so instances of a
 * service compete and different services each get every message). fn
 * returning 0 acks, an error nacks (redelivered). Handlers start with the
 * service and drain at its stop. Call before start. Errors: SL_EINVAL,
 * SL_ESTATE, backend errors from opening url. */
SL_API int sl_service_subscribe(sl_service *s, const char *url, const char *topic,
                                const char *group, sl_handler_fn fn, void *user);
/* The router behind sl_service_subscribe (created on first use), to add
 * middlewares before start; NULL before any subscribe. */
SL_API sl_router *sl_service_router(sl_service *s);
/* Publish msg (borrowed) to topic on the backend at url; the publisher is
 * opened on first use and kept until the service is freed. Any thread. */
SL_API int sl_service_publish(sl_service *s, const char *url, const char *topic, sl_msg *msg);

/* ---- inside a handler or wrapper ---- */
SL_API sl_service *sl_call_service(const sl_call *c);
SL_API const char *sl_call_endpoint(const sl_call *c);
SL_API const char *sl_call_content_type(const sl_call *c);
SL_API const void *sl_call_body(const sl_call *c, size_t *len);
/* Request metadata (header) by name, case-insensitive; NULL when absent. */
SL_API const char *sl_call_meta(const sl_call *c, const char *key);
/* Milliseconds left before the caller's deadline; -1 when there is none. */
SL_API int64_t sl_call_remaining_ms(const sl_call *c);
/* In a wrapper: set request metadata for the wrappers after it and the
 * handler (every earlier value of key is replaced; value NULL removes key).
 * Names [A-Za-z0-9-], values without control characters: SL_EINVAL. */
SL_API int sl_call_set_req_meta(sl_call *c, const char *key, const char *value);
/* Add response metadata (a header; names [A-Za-z0-9-]). */
SL_API int sl_call_set_meta(sl_call *c, const char *key, const char *value);
/* Reply with a body in the request's content type (copied). Once per call. */
SL_API int sl_call_reply(sl_call *c, const void *data, size_t len);
/* Answer a go-micro error with HTTP status (400..599) and a detail. */
SL_API int sl_call_error(sl_call *c, int status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Streaming endpoints: send one message. SL_ECLOSED once the caller went
 * away (stop sending then). Blocks while the caller reads slowly. */
SL_API int sl_call_send(sl_call *c, const void *data, size_t len);
/* In a streaming handler of a gRPC call (client streaming, bidirectional):
 * the client's next message (malloc'd, free it; the first message is the
 * request, sl_call_body). Blocks until one arrives. SL_ECLOSED once the
 * client finished sending; SL_ECANCELED when the call was cancelled or its
 * deadline passed; SL_ENOTSUP on HTTP (whose requests are one message).
 * sl_call_send may run at the same time on another thread. */
SL_API int sl_call_recv(sl_call *c, char **msg, size_t *len);
/* In a wrapper: run the rest of the chain (next wrappers, then the handler)
 * and return its result. */
SL_API int sl_call_next(sl_call *c);
/* The HTTP status the call is answered with so far (200 before any error). */
SL_API int sl_call_status(const sl_call *c);

/* ---- built-in wrappers (add with sl_service_wrap(s, fn, NULL)) ---- */
/* One log line per call through the library logger: endpoint, status, µs. */
SL_API int sl_wrap_log(sl_call *c, void *user);
/* Trace id: keeps the caller's Micro-Trace-Id or makes one (a UUID; also in
 * place of one over 128 bytes), and returns it in the response's
 * Micro-Trace-Id header. */
SL_API int sl_wrap_trace(sl_call *c, void *user);
/* Refuse calls whose deadline passed before the handler could start (408). */
SL_API int sl_wrap_deadline(sl_call *c, void *user);

#ifdef __cplusplus
}
#endif
#endif
