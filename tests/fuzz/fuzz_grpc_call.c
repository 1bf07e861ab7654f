/*
 * fuzz_grpc_call.c - what the gRPC transport of sl_service decodes from a
 * call, past the gRPC core's own HTTP/2 framing: the method path (to an
 * endpoint), the metadata (to the call's headers; sluice-content-type
 * picks the codec), the request message (bytes in one or more slices,
 * maybe gzip-compressed, as the core hands them over) and JSON messages
 * parsed - by the real sli_grpc_find_endpoint / sli_grpc_request on a
 * service with a JSON, a bytes and a streaming endpoint (not started: no
 * socket, so millions of executions are cheap).
 * Input: the method path up to '\n'; metadata lines "key:value" up to an
 * empty line; then byte F (bit 0: gzip-compressed, bit 1: no message,
 * bits 2-7: where to cut the message into slices) and the message.
 */
#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sluice/service.h>
#include <sluice/service_json.h>

#include "fuzz.h"
#include "service/grpc/grpc_int.h"

#define MAX_MD 32

static sl_service *svc;

static int nothing(sl_call *c, void *user)
{
    (void)c, (void)user;
    return 0;
}

static void stop(void)
{
    sl_service_free(svc);
    grpc_shutdown();
}

static void start(void)
{
    grpc_init();
    sl_service_opts o;
    sl_service_opts_init(&o);
    o.name = "helloworld";
    o.address = "127.0.0.1:0";
    o.registry = "none";
    if (sl_service_new(&svc, &o) != 0 ||
        sl_service_handle(svc, "Greeter.SayHello", nothing, NULL) != 0 ||
        sl_service_handle(svc, "Echo.Bytes", nothing, NULL) != 0 ||
        sl_service_handle_stream(svc, "Greeter.Stream", nothing, NULL) != 0) {
        fprintf(stderr, "fuzz_grpc_call: cannot make the service: %s\n", sl_errmsg());
        abort();
    }
    atexit(stop);
}

/* Read what a handler could read. */
static void walk(sl_call *c)
{
    size_t len;
    (void)sl_call_body(c, &len);
    (void)sl_call_meta(c, "authorization");
    (void)sl_call_meta(c, "Micro-Trace-Id");
    json_t *j = sl_call_json(c);
    if (j) {
        char *s = json_dumps(j, JSON_ENCODE_ANY);
        free(s);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!svc)
        start();
    if (size > 65536)
        return 0;
    const uint8_t *end = data + size, *nl = memchr(data, '\n', size);
    const uint8_t *p = nl ? nl + 1 : end;
    char method[512];
    size_t ml = (size_t)((nl ? nl : end) - data);
    memcpy(method, data, ml < sizeof method ? ml : sizeof method - 1);
    method[ml < sizeof method ? ml : sizeof method - 1] = 0;
    grpc_metadata md[MAX_MD];
    grpc_metadata_array mda = {.count = 0, .capacity = MAX_MD, .metadata = md};
    while (p < end && *p != '\n') {
        const uint8_t *e = memchr(p, '\n', (size_t)(end - p)), *le = e ? e : end;
        const uint8_t *colon = memchr(p, ':', (size_t)(le - p));
        if (colon && mda.count < MAX_MD) {
            md[mda.count].key = grpc_slice_from_copied_buffer((const char *)p, (size_t)(colon - p));
            md[mda.count].value =
                grpc_slice_from_copied_buffer((const char *)colon + 1, (size_t)(le - colon - 1));
            mda.count++;
        }
        p = e ? e + 1 : end;
    }
    if (p < end)
        p++; /* the empty line */
    unsigned flags = p < end ? *p++ : 2;
    size_t len = (size_t)(end - p), cut = len ? (flags >> 2) % (len + 1) : 0;
    grpc_slice parts[2] = {grpc_slice_from_copied_buffer((const char *)p, cut),
                           grpc_slice_from_copied_buffer((const char *)p + cut, len - cut)};
    grpc_byte_buffer *bb = NULL;
    if (!(flags & 2))
        bb = flags & 1 ? grpc_raw_compressed_byte_buffer_create(parts, 2, GRPC_COMPRESS_GZIP)
                       : grpc_raw_byte_buffer_create(parts, 2);
    char name[300], detail[300];
    svc_endpoint *ep = sli_grpc_find_endpoint(svc, method, name, sizeof name);
    if (ep) {
        sl_call c;
        gpr_timespec dl = flags & 0x80 ? gpr_inf_future(GPR_CLOCK_REALTIME)
                                       : gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                                      gpr_time_from_millis(flags, GPR_TIMESPAN));
        if (sli_grpc_request(&c, svc, ep, &mda, dl, bb, detail, sizeof detail) == GRPC_STATUS_OK) {
            walk(&c);
            sli_call_clear(&c);
        }
    }
    grpc_byte_buffer_destroy(bb);
    for (int i = 0; i < 2; i++)
        grpc_slice_unref(parts[i]);
    for (size_t i = 0; i < mda.count; i++) {
        grpc_slice_unref(md[i].key);
        grpc_slice_unref(md[i].value);
    }
    return 0;
}
