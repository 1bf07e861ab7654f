/*
 * grpc_client.c - sl_client_call to a gRPC node (the registry says
 * transport=grpc, or opts.address is "grpc://host:port"), on the gRPC C
 * core. One channel per node address, kept for the client's life (HTTP/2
 * multiplexes every call of every thread on it). The method is go-micro's
 * "/<service>.<Service>/<Method>" for the endpoint "Service.Method" of the
 * service <service>; the body goes as one message (protobuf, or JSON with
 * the metadata sluice-content-type: application/json); the call's metadata
 * goes as gRPC metadata (keys lower-cased). The answer's status is mapped
 * back to the HTTP statuses the rest of the client speaks, its initial and
 * trailing metadata become the response's metadata, and a failed call's
 * detail is sl_errmsg().
 */
#include <ctype.h>
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "service/grpc/grpc_int.h"
#include "service/svc_int.h"

typedef struct channels {
    pthread_mutex_t mu;
    char **addr;
    grpc_channel **ch;
    size_t n;
} channels;

static pthread_mutex_t slot_mu = PTHREAD_MUTEX_INITIALIZER;

/* One pluck queue per calling thread, kept for its life (a queue per call
 * costs an allocation and its teardown on every call). */
static pthread_key_t cq_key;
static pthread_once_t cq_once = PTHREAD_ONCE_INIT;

static void cq_free(void *p)
{
    grpc_completion_queue_shutdown(p);
    grpc_completion_queue_destroy(p);
    grpc_shutdown();
}

static void cq_key_init(void)
{
    pthread_key_create(&cq_key, cq_free);
}

static grpc_completion_queue *thread_cq(void)
{
    pthread_once(&cq_once, cq_key_init);
    grpc_completion_queue *cq = pthread_getspecific(cq_key);
    if (!cq) {
        grpc_init(); /* the queue outlives a client that is freed first */
        cq = grpc_completion_queue_create_for_pluck(NULL);
        if (cq)
            pthread_setspecific(cq_key, cq);
        else
            grpc_shutdown();
    }
    return cq;
}

grpc_channel *sli_grpc_channel(sl_client *c, const char *addr, size_t max_response)
{
    void **slot = sli_client_grpc_slot(c);
    pthread_mutex_lock(&slot_mu);
    if (!*slot) {
        channels *cs = calloc(1, sizeof *cs);
        if (cs) {
            pthread_mutex_init(&cs->mu, NULL);
            grpc_init();
        }
        *slot = cs;
    }
    channels *cs = *slot;
    pthread_mutex_unlock(&slot_mu);
    if (!cs)
        return NULL;
    grpc_channel *ch = NULL;
    pthread_mutex_lock(&cs->mu);
    for (size_t i = 0; i < cs->n && !ch; i++)
        if (!strcmp(cs->addr[i], addr))
            ch = cs->ch[i];
    if (!ch) {
        char **na = realloc(cs->addr, (cs->n + 1) * sizeof *na);
        if (na)
            cs->addr = na;
        grpc_channel **nc = na ? realloc(cs->ch, (cs->n + 1) * sizeof *nc) : NULL;
        if (nc)
            cs->ch = nc;
        char *a = nc ? strdup(addr) : NULL;
        if (a) {
            grpc_arg args[1] = {
                {.type = GRPC_ARG_INTEGER,
                 .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
                 .value.integer = max_response > INT32_MAX ? INT32_MAX : (int)max_response}};
            grpc_channel_args cargs = {1, args};
            grpc_channel_credentials *creds = grpc_insecure_credentials_create();
            ch = grpc_channel_create(addr, creds, &cargs);
            grpc_channel_credentials_release(creds);
            cs->addr[cs->n] = a;
            cs->ch[cs->n++] = ch;
        }
    }
    pthread_mutex_unlock(&cs->mu);
    return ch;
}

void sli_grpc_channels_free(void *p)
{
    channels *cs = p;
    if (!cs)
        return;
    for (size_t i = 0; i < cs->n; i++) {
        grpc_channel_destroy(cs->ch[i]);
        free(cs->addr[i]);
    }
    free(cs->ch);
    free(cs->addr);
    pthread_mutex_destroy(&cs->mu);
    free(cs);
    grpc_shutdown();
}

static int http_of(grpc_status_code s)
{
    switch (s) {
    case GRPC_STATUS_OK: return 200;
    case GRPC_STATUS_INVALID_ARGUMENT:
    case GRPC_STATUS_FAILED_PRECONDITION:
    case GRPC_STATUS_OUT_OF_RANGE: return 400;
    case GRPC_STATUS_UNAUTHENTICATED: return 401;
    case GRPC_STATUS_PERMISSION_DENIED: return 403;
    case GRPC_STATUS_NOT_FOUND:
    case GRPC_STATUS_UNIMPLEMENTED: return 404;
    case GRPC_STATUS_DEADLINE_EXCEEDED: return 408;
    case GRPC_STATUS_ALREADY_EXISTS: return 409;
    case GRPC_STATUS_RESOURCE_EXHAUSTED: return 413;
    case GRPC_STATUS_UNAVAILABLE: return 503;
    default: return 500;
    }
}

int sli_grpc_code(grpc_status_code s)
{
    switch (s) {
    case GRPC_STATUS_INVALID_ARGUMENT:
    case GRPC_STATUS_FAILED_PRECONDITION:
    case GRPC_STATUS_OUT_OF_RANGE: return SL_EINVAL;
    case GRPC_STATUS_UNAUTHENTICATED: return SL_EUNAUTH;
    case GRPC_STATUS_PERMISSION_DENIED: return SL_EDENIED;
    case GRPC_STATUS_NOT_FOUND:
    case GRPC_STATUS_UNIMPLEMENTED: return SL_ENOENT;
    case GRPC_STATUS_DEADLINE_EXCEEDED: return SL_ETIMEDOUT;
    case GRPC_STATUS_ALREADY_EXISTS: return SL_EEXIST;
    case GRPC_STATUS_RESOURCE_EXHAUSTED: return SL_ETOOBIG;
    case GRPC_STATUS_UNAVAILABLE: return SL_EUNAVAIL;
    default: return SL_EHANDLER;
    }
}

/* "/<service>.<Svc>/<Method>" for endpoint "Svc.Method". */
int sli_grpc_method_path(const char *service, const char *endpoint, char *out, size_t cap)
{
    const char *dot = strrchr(endpoint, '.');
    if (!dot || dot == endpoint || !dot[1])
        return sli_err(SL_EINVAL, "gRPC call: endpoint '%s' is not Service.Method", endpoint);
    int w = snprintf(out, cap, "/%s.%.*s/%s", service, (int)(dot - endpoint), endpoint, dot + 1);
    return w > 0 && (size_t)w < cap ? 0 : sli_err(SL_EINVAL, "gRPC call: endpoint name too long");
}

/* The call's metadata as gRPC metadata (slices owned: freed by md_free). */
int sli_grpc_md_build(const sl_call_opts *o, grpc_metadata *md, size_t *n)
{
    *n = 0;
    const char *ct = o->content_type && *o->content_type ? o->content_type : "application/json";
    if (!strncasecmp(ct, "application/json", 16)) {
        md[(*n)++] = (grpc_metadata){.key = grpc_slice_from_static_string("sluice-content-type"),
                                     .value = grpc_slice_from_static_string("application/json")};
    }
    for (size_t i = 0; i < o->n_metadata && *n < 64; i++) {
        char key[128];
        size_t k = 0;
        const char *src = o->metadata[i].key ? o->metadata[i].key : "";
        for (; *src && k + 1 < sizeof key; src++)
            key[k++] = (char)tolower((unsigned char)*src);
        key[k] = 0;
        grpc_slice ks = grpc_slice_from_copied_string(key);
        grpc_slice vs =
            grpc_slice_from_copied_string(o->metadata[i].value ? o->metadata[i].value : "");
        if (!k || !grpc_header_key_is_legal(ks) || !grpc_header_nonbin_value_is_legal(vs)) {
            grpc_slice_unref(ks);
            grpc_slice_unref(vs);
            for (size_t j = 0; j < *n; j++) {
                grpc_slice_unref(md[j].key);
                grpc_slice_unref(md[j].value);
            }
            return sli_err(SL_EINVAL, "call metadata: bad key or value ('%.64s')",
                           o->metadata[i].key ? o->metadata[i].key : "(null)");
        }
        md[(*n)++] = (grpc_metadata){.key = ks, .value = vs};
    }
    return 0;
}

void sli_grpc_md_free(grpc_metadata *md, size_t n)
{
    for (size_t j = 0; j < n; j++) {
        grpc_slice_unref(md[j].key);
        grpc_slice_unref(md[j].value);
    }
}

static void take_meta(sl_response *r, const grpc_metadata_array *a)
{
    for (size_t i = 0; i < a->count; i++)
        sli_response_add_meta(r, (const char *)GRPC_SLICE_START_PTR(a->metadata[i].key),
                              GRPC_SLICE_LENGTH(a->metadata[i].key),
                              (const char *)GRPC_SLICE_START_PTR(a->metadata[i].value),
                              GRPC_SLICE_LENGTH(a->metadata[i].value));
}

int sli_grpc_call(sl_client *c, const char *addr, const char *service, const char *endpoint,
                  const void *req, size_t len, const sl_call_opts *o, int64_t left_ms,
                  sl_response *r, bool *retry)
{
    *retry = false;
    char path[512];
    grpc_metadata md[66];
    size_t nmd;
    int rc = sli_grpc_method_path(service, endpoint, path, sizeof path);
    if (rc || (rc = sli_grpc_md_build(o, md, &nmd)) != 0)
        return rc;
    grpc_channel *ch = sli_grpc_channel(c, addr, r->max);
    grpc_completion_queue *cq = ch ? thread_cq() : NULL;
    if (!cq) {
        for (size_t j = 0; j < nmd; j++) {
            grpc_slice_unref(md[j].key);
            grpc_slice_unref(md[j].value);
        }
        return sli_err(SL_ENOMEM, "out of memory");
    }
    gpr_timespec deadline =
        gpr_time_add(gpr_now(GPR_CLOCK_REALTIME), gpr_time_from_millis(left_ms, GPR_TIMESPAN));
    grpc_slice method = grpc_slice_from_copied_string(path);
    grpc_call *call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, method, NULL,
                                               deadline, NULL);
    grpc_slice_unref(method);
    grpc_slice body = grpc_slice_from_copied_buffer(req ? req : "", len);
    grpc_byte_buffer *send = grpc_raw_byte_buffer_create(&body, 1);
    grpc_slice_unref(body);
    grpc_byte_buffer *recv = NULL;
    grpc_metadata_array initial, trailing;
    grpc_metadata_array_init(&initial);
    grpc_metadata_array_init(&trailing);
    grpc_status_code status = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();
    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = nmd;
    ops[0].data.send_initial_metadata.metadata = nmd ? md : NULL;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &trailing;
    ops[5].data.recv_status_on_client.status = &status;
    ops[5].data.recv_status_on_client.status_details = &details;
    bool ok =
        call && grpc_call_start_batch(call, ops, 6, call, NULL) == GRPC_CALL_OK &&
        grpc_completion_queue_pluck(cq, call, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type ==
            GRPC_OP_COMPLETE;
    if (!ok) {
        rc = sli_err(SL_EIO, "gRPC call to %s failed to start", addr);
    } else {
        take_meta(r, &initial);
        take_meta(r, &trailing);
        r->status = http_of(status);
        if (status == GRPC_STATUS_OK) {
            rc = recv ? sli_grpc_bytes(recv, &r->body, &r->len) : 0;
            r->cap = r->len;
        } else {
            char *d = grpc_slice_to_c_string(details);
            /* the go-micro error JSON an HTTP node would have answered */
            r->body = sli_svc_error_json(service, r->status, d ? d : "", &r->len);
            r->cap = r->len;
            rc = sli_err(sli_grpc_code(status), "%s %s on %s: %s", service, endpoint, addr,
                         d ? d : "");
            gpr_free(d);
            *retry = status == GRPC_STATUS_UNAVAILABLE;
        }
    }
    grpc_byte_buffer_destroy(send);
    if (recv)
        grpc_byte_buffer_destroy(recv);
    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&initial);
    grpc_metadata_array_destroy(&trailing);
    for (size_t j = 0; j < nmd; j++) {
        grpc_slice_unref(md[j].key);
        grpc_slice_unref(md[j].value);
    }
    if (call)
        grpc_call_unref(call);
    return rc;
}
