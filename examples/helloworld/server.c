/*
 * server.c - go-micro's getting-started service in C: "helloworld" with the
 * endpoint Helloworld.Greeting ({"name":..} -> {"message":"Hello <name>"}).
 *
 *   helloworld-server [--address HOST:PORT] [--grpc HOST:PORT] [--registry URL] [--name NAME]
 *
 * Then, as in go-micro's README:
 *   curl -XPOST -H 'Content-Type: application/json' \
 *        -H 'Micro-Endpoint: Helloworld.Greeting' -d '{"name": "alice"}' \
 *        http://localhost:8080
 * It also has Helloworld.Stream (server streaming: {"name":..,"count":n}
 * answers n greetings) and runs until SIGINT/SIGTERM.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sluice/service.h>
#include <sluice/service_json.h>
#include <sluice/sluice.h>

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
    json_t *req = sl_call_json(c);
    const char *name = json_string_value(json_object_get(req, "name"));
    json_int_t n = json_integer_value(json_object_get(req, "count"));
    if (!name || n < 0 || n > 100000)
        return sl_call_error(c, 400, "want {\"name\": \"...\", \"count\": 0..100000}");
    for (json_int_t i = 0; i < n; i++) {
        int rc = sl_call_send_json(c, json_pack("{s:s+, s:I}", "message", "Hello ", name, "n", i));
        if (rc != 0)
            return rc; /* the caller went away */
    }
    return 0;
}

static void log_stderr(void *ctx, sl_log_level level, const char *component, const char *line)
{
    (void)ctx;
    if (level >= SL_LOG_INFO)
        fprintf(stderr, "[%s] %s\n", component, line);
}

int main(int argc, char **argv)
{
    sl_service_opts o;
    sl_service_opts_init(&o);
    o.name = "helloworld";
    o.address = ":8080";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--address") && i + 1 < argc)
            o.address = argv[++i];
        else if (!strcmp(argv[i], "--registry") && i + 1 < argc)
            o.registry = argv[++i];
        else if (!strcmp(argv[i], "--grpc") && i + 1 < argc)
            o.grpc_address = argv[++i];
        else if (!strcmp(argv[i], "--name") && i + 1 < argc)
            o.name = argv[++i];
        else if (!strcmp(argv[i], "--ttl") && i + 1 < argc) {
            o.register_ttl_ms = atoll(argv[++i]);
            o.register_interval_ms = o.register_ttl_ms / 3;
        } else {
            fprintf(stderr, "usage: helloworld-server [--address HOST:PORT] [--grpc HOST:PORT] "
                            "[--registry URL] [--name NAME] [--ttl MS]\n");
            return 2;
        }
    }
    sl_log_set(log_stderr, NULL, SL_LOG_INFO);
    sl_service *s;
    int rc = sl_service_new(&s, &o);
    if (rc == 0)
        rc = sl_service_handle(s, "Helloworld.Greeting", greeting, NULL);
    if (rc == 0)
        rc = sl_service_handle_stream(s, "Helloworld.Stream", stream, NULL);
    if (rc == 0)
        rc = sl_service_wrap(s, sl_wrap_trace, NULL);
    if (rc == 0)
        rc = sl_service_start(s);
    if (rc != 0) {
        fprintf(stderr, "helloworld-server: %s (%s)\n", sl_strerror(rc), sl_errmsg());
        sl_service_free(s);
        return 1;
    }
    printf("helloworld listening on %s\n", sl_service_address(s));
    if (sl_service_grpc_address(s))
        printf("helloworld gRPC on %s\n", sl_service_grpc_address(s));
    fflush(stdout);
    rc = sl_service_run(s);
    sl_service_free(s);
    return rc == 0 ? 0 : 1;
}
