/*
 * fuzz_rpc_http.c - the RPC server (sl_service over libmicrohttpd, the real
 * src/service code): a raw HTTP request from the fuzzer goes to a service
 * listening on loopback in this process, with a JSON endpoint
 * (Helloworld.Greeting), a server-streaming one (Helloworld.Stream) and a
 * bytes endpoint answering any content type (Echo.Bytes, protobuf bodies
 * pass through it). Routing (Micro-Endpoint, /Service/Method), codecs by
 * content type, metadata headers, deadlines, body limits and the built-in
 * Debug.* endpoints are all reached. The daemon runs in the fuzzer's
 * thread (http_external) and each input is one connection handed to it
 * (fz_mhd_exchange), so thousands of inputs run a second. Whatever the
 * input, the server must answer or close, never crash, leak or hang
 * (libFuzzer's -timeout).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sluice/service.h>
#include <sluice/service_json.h>

#include "fuzz.h"
#include "http_io.h"
#include "service/svc_int.h"

static sl_service *svc;
static struct MHD_Daemon *daemon_;

static int greeting(sl_call *c, void *user)
{
    (void)user;
    const char *name = json_string_value(json_object_get(sl_call_json(c), "name"));
    if (!name)
        return sl_call_error(c, 400, "want {\"name\": \"...\"}");
    return sl_call_reply_json(c, json_pack("{s:s+}", "message", "Hello ", name));
}

static int stream(sl_call *c, void *user)
{
    (void)user;
    json_int_t n = json_integer_value(json_object_get(sl_call_json(c), "count"));
    for (json_int_t i = 0; i < n && i < 3; i++) {
        int rc = sl_call_send_json(c, json_pack("{s:I}", "n", i));
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int echo(sl_call *c, void *user)
{
    (void)user;
    size_t len;
    const void *body = sl_call_body(c, &len);
    const char *trace = sl_call_meta(c, "Micro-Trace-Id");
    if (trace)
        sl_call_set_meta(c, "Micro-Trace-Id", trace);
    return sl_call_reply(c, body, len);
}

static void stop(void)
{
    sl_service_stop(svc);
    sl_service_free(svc);
}

static void start(void)
{
    sl_service_opts o;
    sl_service_opts_init(&o);
    o.name = "helloworld";
    o.address = "127.0.0.1:0";
    o.registry = "none";
    o.max_body = 64 * 1024;
    o.threads = 2;
    o.drain_timeout_ms = 2000;
    if (sl_service_new(&svc, &o) != 0 ||
        sl_service_handle(svc, "Helloworld.Greeting", greeting, NULL) != 0 ||
        sl_service_handle_stream(svc, "Helloworld.Stream", stream, NULL) != 0 ||
        sl_service_handle(svc, "Echo.Bytes", echo, NULL) != 0 ||
        (svc->http_external = true, sl_service_start(svc)) != 0) {
        fprintf(stderr, "fuzz_rpc_http: cannot start the service: %s\n", sl_errmsg());
        abort();
    }
    daemon_ = sli_http_daemon(svc);
    if (!daemon_)
        abort();
    atexit(stop);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!svc)
        start();
    if (size > 128 * 1024)
        return 0;
    char resp[512];
    if (fz_mhd_exchange(daemon_, data, size, resp, sizeof resp) < 0)
        abort(); /* the daemon refused the connection: the harness is broken */
    return 0;
}
