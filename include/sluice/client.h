/*
 * sluice/client.h - calling services (go-micro's client.Call).
 *
 *   sl_client *c; sl_client_new(&c, NULL);         // default registry
 *   sl_response *r;
 *   int rc = sl_client_call(c, "helloworld", "Helloworld.Greeting",
 *                           "{\"name\":\"alice\"}", 16, NULL, &r);
 *   if (r) { size_t n; const char *body = sl_response_body(r, &n); ... }
 *   sl_response_free(r); sl_client_free(c);
 *
 * A call resolves the service through the registry (cached; a registry
 * watch marks changed services for a fresh lookup, and when the registry
 * is unreachable the cached nodes are used), selects a node (random by
 * default, round-robin, filtered by version or metadata), POSTs the request
 * over a kept-alive HTTP connection, and on a connection failure or a 5xx
 * answer tries another node (up to `retries` more, with backoff, all
 * within the call's timeout). A node that refused a connection is avoided
 * for a few seconds by every call of the client.
 *
 * Threads: a client may be used from any number of threads at once.
 */
#ifndef SLUICE_CLIENT_H
#define SLUICE_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "export.h"
#include "registry.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sl_client sl_client;
typedef struct sl_response sl_response;
typedef struct sl_stream sl_stream;

enum { SL_SELECT_RANDOM = 0, SL_SELECT_ROUND_ROBIN = 1 };

typedef struct sl_client_opts {
    const char *registry;     /* registry URL; NULL = the default (sl_registry_open) */
    int selector;             /* SL_SELECT_RANDOM (default) or SL_SELECT_ROUND_ROBIN */
    const char *version;      /* only nodes of this version (NULL: any) */
    const sl_reg_meta *match; /* only nodes whose metadata holds every pair */
    size_t n_match;
    int retries;          /* more nodes tried after a failure (default 3) */
    int64_t timeout_ms;   /* a call's whole time, every try included (default 5000) */
    int64_t backoff_ms;   /* pause before a retry, doubled each time (default 10) */
    size_t max_response;  /* larger answers and stream messages fail with SL_ETOOBIG; a
                             stream reads ahead about this much (default 16 MiB) */
    int64_t cache_ttl_ms; /* look nodes up again at least this often (default 30000) */
} sl_client_opts;

SL_API void sl_client_opts_init(sl_client_opts *o);

/* Per-call options; NULL means all defaults. */
typedef struct sl_call_opts {
    const char *content_type;    /* default "application/json" */
    int64_t timeout_ms;          /* 0: the client's */
    int retries;                 /* < 0: the client's */
    const sl_reg_meta *metadata; /* sent as request headers (names [A-Za-z0-9-]) */
    size_t n_metadata;
    const char *address; /* "host:port": call this node, no discovery */
} sl_call_opts;

SL_API void sl_call_opts_init(sl_call_opts *o);

/* Create a client (the registry is opened on first use, so a registry that
 * is down now is not an error). opts NULL = defaults. */
SL_API int sl_client_new(sl_client **out, const sl_client_opts *opts);
SL_API void sl_client_free(sl_client *c);

/* Call service's endpoint with the request body. Returns 0 and *out for a
 * 2xx answer. On failure returns a negative code with the detail in
 * sl_errmsg(): the server's error (*out is set too, holding the go-micro
 * error JSON, status 4xx/5xx: SL_EINVAL 400, SL_EUNAUTH 401, SL_EDENIED
 * 403, SL_ENOENT 404, SL_ETIMEDOUT 408, SL_ETOOBIG 413, SL_ENOTSUP 415,
 * SL_EUNAVAIL 503, SL_EHANDLER other 5xx), or, with *out NULL: SL_ENOENT
 * (no such service), SL_EUNAVAIL (no node answered), SL_ETIMEDOUT, SL_EINVAL.
 * Blocks up to the call's timeout. */
SL_API int sl_client_call(sl_client *c, const char *service, const char *endpoint, const void *req,
                          size_t len, const sl_call_opts *opts, sl_response **out);

/* ---- client wrappers (go-micro's client.Wrapper) ---- */
typedef struct sl_client_req sl_client_req;
/* Runs around every sl_client_call of the client, outermost first; call
 * sl_client_req_next to go on (the innermost next performs the call with
 * its retries) and return its result. */
typedef int (*sl_client_wrapper_fn)(sl_client_req *req, void *user);
/* Add a wrapper; before the client's first call. */
SL_API int sl_client_wrap(sl_client *c, sl_client_wrapper_fn fn, void *user);
SL_API const char *sl_client_req_service(const sl_client_req *r);
SL_API const char *sl_client_req_endpoint(const sl_client_req *r);
/* Request metadata: read, or add/replace (sent as a header). */
SL_API const char *sl_client_req_meta(const sl_client_req *r, const char *key);
SL_API int sl_client_req_set_meta(sl_client_req *r, const char *key, const char *value);
SL_API int sl_client_req_next(sl_client_req *r);
/* The response so far (after next), NULL when none. */
SL_API const sl_response *sl_client_req_response(const sl_client_req *r);
/* Built-in: give every call a Micro-Trace-Id (a new UUID unless the
 * caller's metadata carries one), so a trace crosses services. */
SL_API int sl_client_wrap_trace(sl_client_req *r, void *user);

SL_API const void *sl_response_body(const sl_response *r, size_t *len);
SL_API int sl_response_status(const sl_response *r);
/* A response header by name (case-insensitive), NULL when absent. */
SL_API const char *sl_response_meta(const sl_response *r, const char *key);
/* "host:port" of the node that answered. */
SL_API const char *sl_response_node(const sl_response *r);
SL_API void sl_response_free(sl_response *r);

/* Call a streaming endpoint: *out yields the server's messages in order.
 * Over HTTP, messages are read ahead up to about max_response bytes; then
 * the stream stops reading until sl_stream_next has taken half of them
 * (the server's sends wait meanwhile).
 * To a gRPC node, the open waits for a connection that is still being made
 * (or made again after a failed attempt) up to the call's timeout_ms, then
 * fails with SL_ETIMEDOUT. */
SL_API int sl_client_stream(sl_client *c, const char *service, const char *endpoint,
                            const void *req, size_t len, const sl_call_opts *opts, sl_stream **out);
/* The next message (malloc'd, NUL-terminated, free it): 0; SL_ECLOSED at
 * the end of the stream; SL_ETIMEDOUT; SL_EIO when the connection broke;
 * when the server refused the call (an error status instead of a stream),
 * the code sl_client_call returns for it (SL_EUNAUTH, SL_EDENIED, ...) with
 * the server's detail in sl_errmsg(); SL_ETOOBIG after a message over
 * max_response (the stream ends there). */
SL_API int sl_stream_next(sl_stream *s, char **msg, size_t *len, int timeout_ms);
/* On a stream to a gRPC node (client streaming, bidirectional): send one
 * more message (req of sl_client_stream was the first, if any), and say
 * that no more will come. Blocking; one sender at a time; sl_stream_next
 * may run meanwhile on another thread. SL_ENOTSUP on HTTP nodes, SL_ECLOSED
 * once the call ended. */
SL_API int sl_stream_send(sl_stream *s, const void *msg, size_t len);
SL_API int sl_stream_close_send(sl_stream *s);
SL_API void sl_stream_close(sl_stream *s);

#ifdef __cplusplus
}
#endif
#endif
