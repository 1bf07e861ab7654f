/*
 * client_int.h - the client's parts: node cache and selection (client.c),
 * kept-alive curl handles and calls (client_call.c).
 */
#ifndef SLI_CLIENT_INT_H
#define SLI_CLIENT_INT_H

#include <pthread.h>
#include <stdbool.h>

#include "core/internal.h"
#include "sluice/client.h"

struct sl_response {
    int status; /* HTTP status (gRPC statuses mapped to the HTTP ones) */
    char *body;
    size_t len, cap, max;
    bool too_big;
    char node[300];
    char **hk, **hv;
    size_t nh;
};
/* Append one metadata pair (copied). */
int sli_response_add_meta(sl_response *r, const char *k, size_t kl, const char *v, size_t vl);

/* Idle curl easy handles (each keeps its connections alive). */
typedef struct sli_curl_pool {
    pthread_mutex_t mu;
    void **idle;
    size_t n, cap;
} sli_curl_pool;

void sli_curl_pool_init(sli_curl_pool *p);
void sli_curl_pool_clear(sli_curl_pool *p);

int sli_client_nodes(sl_client *c, const char *service, char ***addrs, size_t *n);
int sli_client_pick(sl_client *c, char **addrs, size_t n, const bool *tried);
void sli_client_avoid(sl_client *c, const char *addr);
const sl_client_opts *sli_client_opts(const sl_client *c);
/* The client's wrappers (client.c). */
typedef struct sli_client_wrapper {
    sl_client_wrapper_fn fn;
    void *user;
} sli_client_wrapper;
const sli_client_wrapper *sli_client_wrappers(sl_client *c, size_t *n);
sli_curl_pool *sli_client_pool(sl_client *c);
/* client_call.c, shared with client_stream.c (void * = CURL *). */
struct curl_slist *sli_client_headers(const char *service, const char *endpoint,
                                      const sl_call_opts *o, int64_t left_ms, bool stream, int *rc);
/* The code of an error answer (the mapping of sl_client_call) and its message "<service> at
 * <addr>: <status> <detail>" into msg (the detail of go-micro's error JSON, else the body). */
int sli_client_error(int status, const char *body, size_t len, const char *service,
                     const char *addr, char *msg, size_t cap);
void sli_client_set_common(void *h, const char *addr, const void *req, size_t len,
                           struct curl_slist *hd, int64_t left_ms, char *url, size_t urlcap);

/* grpc/grpc_client.c: one unary call to the gRPC node addr ("host:port")
 * within left_ms; fills r (body, status, metadata). 0, or SL_E* with
 * *retry set when another node may answer (unreachable, UNAVAILABLE). */
int sli_grpc_call(sl_client *c, const char *addr, const char *service, const char *endpoint,
                  const void *req, size_t len, const sl_call_opts *o, int64_t left_ms,
                  sl_response *r, bool *retry);
/* The client's gRPC channels (one per node, kept): grpc_client.c owns them. */
void **sli_client_grpc_slot(sl_client *c);
void sli_grpc_channels_free(void *channels);

#endif
