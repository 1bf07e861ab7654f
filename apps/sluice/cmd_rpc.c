/*
 * cmd_rpc.c - the services side of the CLI (go-micro's `micro` tool):
 *   sluice services [--registry URL]            every service with live nodes
 *   sluice describe SERVICE [--registry URL]    its versions, nodes, endpoints, metadata
 *   sluice call SERVICE ENDPOINT [REQUEST] [--registry URL] [--timeout MS]
 *               [--metadata k=v]... [--address HOST:PORT]
 * REQUEST is JSON (default "{}"; "-" reads stdin). `call` prints the answer
 * on stdout; a service's error goes to stderr as its go-micro JSON error.
 * Exit: 0 ok, 1 not found / call failed, 2 bad arguments.
 */
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "sluice/client.h"
#include "sluice/registry.h"

static int open_registry(const char *cmd, const char *url, sl_registry **r)
{
    int rc = sl_registry_open(r, url);
    if (rc != 0)
        fprintf(stderr, "sluice %s: registry: %s (%s)\n", cmd, sl_strerror(rc), sl_errmsg());
    return rc;
}

static int cmp_name(const void *a, const void *b)
{
    const sl_reg_service *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : strcmp(x->version, y->version);
}

int cmd_services(int argc, char **argv)
{
    const char *reg = NULL;
    for (int i = 1; i < argc; i++) {
        const char *v;
        int r = cli_opt("services", argc, argv, &i, "--registry", &v);
        if (r == 1) {
            reg = v;
        } else if (cli_is_help(argv[i])) {
            printf("usage: sluice services [--registry URL]\n\nList every service with a live node "
                   "(name, version, node count).\n");
            return 0;
        } else {
            if (r == 0)
                fprintf(stderr, "sluice services: unexpected argument '%s'\n", argv[i]);
            return 2;
        }
    }
    sl_registry *r;
    if (open_registry("services", reg, &r) != 0)
        return 1;
    sl_reg_service *s;
    size_t n;
    int rc = sl_registry_list(r, &s, &n);
    if (rc != 0) {
        fprintf(stderr, "sluice services: %s (%s)\n", sl_strerror(rc), sl_errmsg());
        sl_registry_close(r);
        return 1;
    }
    qsort(s, n, sizeof *s, cmp_name);
    for (size_t i = 0; i < n; i++)
        printf("%s\t%s\t%zu node%s\n", s[i].name, s[i].version, s[i].n_nodes,
               s[i].n_nodes == 1 ? "" : "s");
    sl_reg_services_free(s, n);
    sl_registry_close(r);
    return 0;
}

static json_t *meta_obj(const sl_reg_meta *m, size_t n)
{
    json_t *o = json_object();
    for (size_t i = 0; i < n; i++)
        json_object_set_new(o, m[i].key, json_string(m[i].value));
    return o;
}

int cmd_describe(int argc, char **argv)
{
    const char *reg = NULL, *name = NULL;
    for (int i = 1; i < argc; i++) {
        const char *v;
        int r = cli_opt("describe", argc, argv, &i, "--registry", &v);
        if (r == 1)
            reg = v;
        else if (r < 0)
            return 2;
        else if (cli_is_help(argv[i])) {
            printf("usage: sluice describe SERVICE [--registry URL]\n\nPrint the service's "
                   "versions, nodes, endpoints and metadata as JSON.\n");
            return 0;
        } else if (!name)
            name = argv[i];
        else {
            fprintf(stderr, "sluice describe: unexpected argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (!name) {
        fprintf(stderr, "usage: sluice describe SERVICE [--registry URL]\n");
        return 2;
    }
    sl_registry *r;
    if (open_registry("describe", reg, &r) != 0)
        return 1;
    sl_reg_service *s;
    size_t n;
    int rc = sl_registry_lookup(r, name, &s, &n);
    if (rc != 0) {
        fprintf(stderr, "sluice describe: %s (%s)\n", sl_strerror(rc), sl_errmsg());
        sl_registry_close(r);
        return 1;
    }
    json_t *out = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *eps = json_array(), *nodes = json_array();
        for (size_t e = 0; e < s[i].n_endpoints; e++)
            json_array_append_new(
                eps, json_pack("{s:s, s:o}", "name", s[i].endpoints[e].name, "metadata",
                               meta_obj(s[i].endpoints[e].metadata, s[i].endpoints[e].n_metadata)));
        for (size_t k = 0; k < s[i].n_nodes; k++)
            json_array_append_new(
                nodes, json_pack("{s:s, s:s, s:o}", "id", s[i].nodes[k].id, "address",
                                 s[i].nodes[k].address, "metadata",
                                 meta_obj(s[i].nodes[k].metadata, s[i].nodes[k].n_metadata)));
        json_array_append_new(out, json_pack("{s:s, s:s, s:o, s:o, s:o}", "name", s[i].name,
                                             "version", s[i].version, "metadata",
                                             meta_obj(s[i].metadata, s[i].n_metadata), "endpoints",
                                             eps, "nodes", nodes));
    }
    char *txt = json_dumps(out, JSON_INDENT(2));
    printf("%s\n", txt ? txt : "[]");
    free(txt);
    json_decref(out);
    sl_reg_services_free(s, n);
    sl_registry_close(r);
    return 0;
}

static char *read_all(FILE *f, size_t *len)
{
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    size_t got;
    while (b && (got = fread(b + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            char *nb = cap < (64u << 20) ? realloc(b, cap *= 2) : NULL;
            if (!nb) {
                free(b);
                return NULL;
            }
            b = nb;
        }
    }
    *len = n;
    return b;
}

int cmd_call(int argc, char **argv)
{
    const char *reg = NULL, *pos[3] = {NULL, NULL, NULL};
    size_t npos = 0;
    sl_reg_meta meta[32];
    sl_call_opts co;
    sl_call_opts_init(&co);
    uint64_t timeout = 0;
    bool raw = false; /* --protobuf: the request is protobuf bytes (from stdin), the answer too */
    for (int i = 1; i < argc; i++) {
        const char *v;
        int r;
        if (!strcmp(argv[i], "--protobuf")) {
            raw = true;
            co.content_type = "application/protobuf";
        } else if ((r = cli_opt("call", argc, argv, &i, "--registry", &v)) == 1) {
            reg = v;
        } else if (r == 0 && (r = cli_opt("call", argc, argv, &i, "--address", &v)) == 1) {
            co.address = v;
        } else if (r == 0 && (r = cli_opt("call", argc, argv, &i, "--timeout", &v)) == 1) {
            if (cli_parse_u64("call", "--timeout", v, 1, 3600000, &timeout) != 0)
                return 2;
        } else if (r == 0 && (r = cli_opt("call", argc, argv, &i, "--metadata", &v)) == 1) {
            const char *eq = strchr(v, '=');
            if (!eq || eq == v || co.n_metadata == 32) {
                fprintf(stderr, "sluice call: --metadata wants k=v (at most 32), got '%s'\n", v);
                return 2;
            }
            meta[co.n_metadata].key = strndup(v, (size_t)(eq - v));
            meta[co.n_metadata].value = eq + 1;
            co.n_metadata++;
        } else if (r < 0) {
            return 2;
        } else if (cli_is_help(argv[i])) {
            printf(
                "usage: sluice call SERVICE ENDPOINT [REQUEST|-] [--registry URL] [--timeout MS]\n"
                "                  [--metadata k=v]... [--address HOST:PORT|grpc://HOST:PORT]\n"
                "                  [--protobuf]\n\n"
                "Call ENDPOINT (Service.Method) of SERVICE with a JSON request (default {};\n"
                "- reads stdin) and print the answer. With --protobuf the request is raw\n"
                "protobuf bytes read from stdin (< file.bin) and the answer's bytes are\n"
                "written as they are. Nodes are reached over HTTP or gRPC, as registered\n"
                "(or as --address says). Exit 1 when the call fails.\n");
            return 0;
        } else if (npos < 3) {
            pos[npos++] = argv[i];
        } else {
            fprintf(stderr, "sluice call: unexpected argument '%s'\n", argv[i]);
            return 2;
        }
    }
    int ret = 2;
    char *body = NULL;
    sl_client *c = NULL;
    sl_response *resp = NULL;
    if (npos < 2) {
        fprintf(stderr, "usage: sluice call SERVICE ENDPOINT [REQUEST|-] [options] (--help)\n");
        goto out;
    }
    size_t len;
    if (raw && npos == 3 && strcmp(pos[2], "-") != 0) {
        fprintf(stderr,
                "sluice call: --protobuf reads the request from stdin (give - or nothing)\n");
        goto out;
    }
    if (raw || (npos == 3 && strcmp(pos[2], "-") == 0)) {
        body = read_all(stdin, &len);
    } else {
        body = strdup(npos == 3 ? pos[2] : "{}");
        len = body ? strlen(body) : 0;
    }
    json_error_t jerr;
    json_t *check = body && !raw ? json_loadb(body, len, JSON_DECODE_ANY, &jerr) : NULL;
    if (body && raw) {
        check = json_null();
    } else if (!check) {
        fprintf(stderr, "sluice call: the request is not valid JSON: %s (line %d column %d)\n",
                body ? jerr.text : "cannot read it", jerr.line, jerr.column);
        goto out;
    }
    json_decref(check);
    co.metadata = meta;
    co.timeout_ms = (int64_t)timeout;
    sl_client_opts o;
    sl_client_opts_init(&o);
    o.registry = reg;
    ret = 1;
    if (sl_client_new(&c, &o) != 0)
        goto out;
    int rc = sl_client_call(c, pos[0], pos[1], body, len, &co, &resp);
    if (rc == 0) {
        size_t n;
        const char *ans = sl_response_body(resp, &n);
        fwrite(ans, 1, n, stdout);
        if (!raw)
            putchar('\n');
        ret = 0;
    } else if (resp) {
        size_t n;
        const char *ans = sl_response_body(resp, &n);
        fwrite(ans, 1, n, stderr);
        fputc('\n', stderr);
    } else {
        fprintf(stderr, "sluice call: %s (%s)\n", sl_strerror(rc), sl_errmsg());
    }
out:
    for (size_t i = 0; i < co.n_metadata; i++)
        free((char *)meta[i].key);
    sl_response_free(resp);
    sl_client_free(c);
    free(body);
    return ret;
}
