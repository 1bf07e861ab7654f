/*
 * client.c - calls helloworld through the registry, like go-micro's client
 * example:  helloworld-client [--registry URL] [NAME]
 * Prints the answer's message; exits non-zero on failure.
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include <sluice/client.h>
#include <sluice/sluice.h>

int main(int argc, char **argv)
{
    sl_client_opts o;
    sl_client_opts_init(&o);
    const char *name = "John";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--registry") && i + 1 < argc)
            o.registry = argv[++i];
        else
            name = argv[i];
    }
    sl_client *c;
    if (sl_client_new(&c, &o) != 0)
        return 1;
    json_t *req = json_pack("{s:s}", "name", name);
    char *body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    sl_response *r;
    int rc = sl_client_call(c, "helloworld", "Helloworld.Greeting", body, strlen(body), NULL, &r);
    free(body);
    if (rc != 0) {
        fprintf(stderr, "helloworld-client: %s (%s)\n", sl_strerror(rc), sl_errmsg());
        sl_response_free(r);
        sl_client_free(c);
        return 1;
    }
    size_t n;
    const char *out = sl_response_body(r, &n);
    json_t *ans = json_loadb(out, n, 0, NULL);
    const char *msg = json_string_value(json_object_get(ans, "message"));
    printf("%s\n", msg ? msg : "(no message)");
    json_decref(ans);
    sl_response_free(r);
    sl_client_free(c);
    return msg ? 0 : 1;
}
